"""Incoming alerts: the Alertmanager webhook payload (version "4") and a generic JSON form,
both turned into `Alert`s. Everything here is data from the network: it is checked for
shape and size, and the errors name the field so a sender can fix its template.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

#: bounds on what one payload may carry (Alertmanager's `max_alerts` defaults to 0: no limit)
MAX_ALERTS = 200
MAX_LABELS = 64
MAX_LABEL_NAME = 128
MAX_LABEL_VALUE = 1024

_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # Prometheus label names
_AM_FINGERPRINT = re.compile(r"^[0-9a-f]{1,32}$")


class PayloadError(ValueError):
    """The payload is not what the endpoint accepts; the message names the field (HTTP 400)."""


@dataclass(frozen=True)
class Alert:
    name: str
    status: str  # "firing" | "resolved"
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    starts_at: Optional[str] = None
    ends_at: Optional[str] = None
    generator_url: Optional[str] = None
    #: Alertmanager's own fingerprint, kept for the reader; ours is `fingerprint`
    source_fingerprint: Optional[str] = None
    #: the generic form may name the symptom directly
    symptom: Optional[str] = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)


def fingerprint(labels: Mapping[str, str]) -> str:
    """Stable id of an alert: a hash of its sorted label set (the same labels give the same
    fingerprint whichever form or order they arrive in; Alertmanager's is per instance)."""
    canonical = json.dumps(sorted(labels.items()), separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def parse_alertmanager(doc: Any) -> tuple[list[Alert], dict[str, Any]]:
    """Alerts of an Alertmanager webhook payload, and its group fields (receiver, groupKey,
    externalURL...) for the record."""
    if not isinstance(doc, dict):
        raise PayloadError("body: expected a JSON object (the Alertmanager webhook payload)")
    version = doc.get("version")
    if version != "4":
        raise PayloadError(f"version: expected \"4\" (Alertmanager webhook payload), got "
                           f"{_short(version)}")
    _status(doc.get("status"), "status")
    common = _labels(doc.get("commonLabels", {}), "commonLabels")
    raw = doc.get("alerts")
    if not isinstance(raw, list) or not raw:
        raise PayloadError("alerts: expected a non-empty list of alerts")
    if len(raw) > MAX_ALERTS:
        raise PayloadError(f"alerts: {len(raw)} alerts in one payload, at most {MAX_ALERTS} "
                           "(set max_alerts in the Alertmanager webhook_config)")
    alerts = []
    for i, item in enumerate(raw):
        where = f"alerts[{i}]"
        if not isinstance(item, dict):
            raise PayloadError(f"{where}: expected an object")
        labels = {**common, **_labels(item.get("labels"), f"{where}.labels")}
        name = labels.get("alertname")
        if not name:
            raise PayloadError(f"{where}.labels.alertname: missing")
        fp = item.get("fingerprint")
        alerts.append(Alert(
            name=name, status=_status(item.get("status"), f"{where}.status"), labels=labels,
            annotations=_labels(item.get("annotations", {}), f"{where}.annotations",
                                names=False),
            starts_at=_opt_str(item.get("startsAt"), f"{where}.startsAt"),
            ends_at=_opt_str(item.get("endsAt"), f"{where}.endsAt"),
            generator_url=_opt_str(item.get("generatorURL"), f"{where}.generatorURL"),
            source_fingerprint=fp if isinstance(fp, str) and _AM_FINGERPRINT.match(fp) else None))
    group = {k: doc.get(k) for k in ("receiver", "groupKey", "externalURL", "truncatedAlerts")
             if isinstance(doc.get(k), (str, int))}
    return alerts, group


def parse_generic(doc: Any) -> list[Alert]:
    """The generic form: `{"alerts": [ALERT, ...]}` or one ALERT, where ALERT is
    `{"name": str, "status": "firing"|"resolved" (default firing), "labels": {str: str},
    "symptom": str (optional)}`."""
    if isinstance(doc, dict) and "alerts" in doc:
        items = doc["alerts"]
        if not isinstance(items, list) or not items:
            raise PayloadError("alerts: expected a non-empty list of alerts")
    elif isinstance(doc, dict):
        items = [doc]
    else:
        raise PayloadError("body: expected a JSON object: {\"alerts\": [...]} or one alert")
    if len(items) > MAX_ALERTS:
        raise PayloadError(f"alerts: {len(items)} alerts in one payload, at most {MAX_ALERTS}")
    alerts = []
    for i, item in enumerate(items):
        where = f"alerts[{i}]"
        if not isinstance(item, dict):
            raise PayloadError(f"{where}: expected an object")
        labels = _labels(item.get("labels", {}), f"{where}.labels")
        name = item.get("name", labels.get("alertname"))
        if not isinstance(name, str) or not name or len(name) > MAX_LABEL_VALUE:
            raise PayloadError(f"{where}.name: expected the alert name (a non-empty string)")
        labels.setdefault("alertname", name)
        symptom = item.get("symptom")
        if symptom is not None and not isinstance(symptom, str):
            raise PayloadError(f"{where}.symptom: expected a string (see `sysdiag symptoms`)")
        alerts.append(Alert(name=name, status=_status(item.get("status", "firing"),
                                                      f"{where}.status"),
                            labels=labels, symptom=symptom))
    return alerts


def _status(value: Any, where: str) -> str:
    if value not in ("firing", "resolved"):
        raise PayloadError(f"{where}: expected \"firing\" or \"resolved\", got {_short(value)}")
    return value


def _labels(value: Any, where: str, names: bool = True) -> dict[str, str]:
    if value is None:
        raise PayloadError(f"{where}: missing")
    if not isinstance(value, dict):
        raise PayloadError(f"{where}: expected an object of string values")
    if len(value) > MAX_LABELS:
        raise PayloadError(f"{where}: {len(value)} entries, at most {MAX_LABELS}")
    out = {}
    for key, val in value.items():
        if names and (len(key) > MAX_LABEL_NAME or not _LABEL_NAME.match(key)):
            raise PayloadError(f"{where}: {_short(key)} is not a label name")
        if not isinstance(val, str):
            raise PayloadError(f"{where}.{key[:MAX_LABEL_NAME]}: expected a string")
        out[key[:MAX_LABEL_NAME]] = val[:MAX_LABEL_VALUE]
    return out


def _opt_str(value: Any, where: str) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{where}: expected a string")
    return value[:MAX_LABEL_VALUE]


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
