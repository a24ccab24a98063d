"""Alert -> symptom and scope: the shipped `alertmap.yaml`, extended by the user's file.

Label values become scope only through `SCOPE_FIELDS`: each has a strict pattern and a
check that the thing exists on this host. A value that fails is left out and the
diagnosis says so; it is never passed on "as is". The result is plain data (a `Scope`
model) handed to the pipeline; nothing here builds a command line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from sysdiag.playbook import SYMPTOMS

from .alerts import Alert

#: an alert may carry its symptom as this label (Prometheus rule `labels:`)
SYMPTOM_LABEL = "sysdiag_symptom"

# Interface names: at most 15 bytes (IFNAMSIZ - 1), no '/', no whitespace, not '.'/'..'.
# Stricter than the kernel on purpose: only the characters real names use.
_IFACE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,14}$")
# systemd unit names (systemd.unit(5)); only the kinds that own a cgroup
_UNIT = re.compile(r"^[A-Za-z0-9:_.\\@-]{1,200}\.(service|scope|slice)$")
_CONTEXT_VALUE = 256


@dataclass(frozen=True)
class AlertRule:
    symptom: str
    scope: dict[str, str] = field(default_factory=dict)  # scope field -> label name
    context: tuple[str, ...] = ()


@dataclass
class Mapped:
    """What to diagnose for an alert, or why nothing (symptom None)."""
    symptom: Optional[str]
    scope: dict[str, str] = field(default_factory=dict)  # pipeline Scope fields
    context: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    reason: Optional[str] = None


class AlertMapError(ValueError):
    """A mapping file is wrong; the message names the file and the entry."""


class HostView:
    """Where the mapper checks that a scope value exists (a root for tests)."""

    def __init__(self, sys_root: Path = Path("/sys")):
        self.sys_root = Path(sys_root)

    def iface_exists(self, name: str) -> bool:
        return (self.sys_root / "class/net" / name).exists()

    def unit_cgroup(self, unit: str) -> Optional[str]:
        """The cgroup path of a systemd unit, as the pipeline's --cgroup takes it."""
        for base in ("fs/cgroup", "fs/cgroup/systemd", "fs/cgroup/unified"):
            for slice_ in ("system.slice", "user.slice"):
                if (self.sys_root / base / slice_ / unit).is_dir():
                    return f"/{slice_}/{unit}"
        return None


def _iface(value: str, host: HostView) -> tuple[Optional[tuple[str, str]], Optional[str]]:
    if not _IFACE.match(value) or value in (".", ".."):
        return None, f"label value {value[:40]!r} is not an interface name: scope left out"
    if not host.iface_exists(value):
        return None, f"interface {value} does not exist on this host: scope left out"
    return ("iface", value), None


def _unit(value: str, host: HostView) -> tuple[Optional[tuple[str, str]], Optional[str]]:
    if not _UNIT.match(value) or "/" in value:
        return None, f"label value {value[:40]!r} is not a systemd unit name: scope left out"
    cgroup = host.unit_cgroup(value)
    if cgroup is None:
        return None, f"unit {value} has no cgroup now (stopped or failed): scope left out"
    return ("cgroup", cgroup), None


#: scope field in the YAML -> check(value, host) -> ((pipeline field, value) | None, note)
SCOPE_FIELDS: dict[str, Callable[[str, HostView], tuple[Optional[tuple[str, str]],
                                                         Optional[str]]]] = {
    "iface": _iface,
    "unit": _unit,
}


class AlertMap:
    def __init__(self, rules: dict[str, AlertRule], host: Optional[HostView] = None):
        self.rules = rules
        self.host = host or HostView()

    @classmethod
    def load(cls, extra: Optional[Path] = None, host: Optional[HostView] = None) -> "AlertMap":
        shipped = resources.files("sysdiag.serve").joinpath("alertmap.yaml")
        rules = _parse(shipped.read_text(encoding="utf-8"), "alertmap.yaml (shipped)")
        if extra is not None:
            try:
                text = Path(extra).read_text(encoding="utf-8")
            except OSError as err:
                raise AlertMapError(f"--alertmap {extra}: {err.strerror}") from err
            rules.update(_parse(text, str(extra)))
        return cls(rules, host)

    def map(self, alert: Alert) -> Mapped:
        symptom, rule = self._symptom(alert)
        if symptom is None:
            return Mapped(symptom=None, reason=rule)
        assert isinstance(rule, AlertRule)
        mapped = Mapped(symptom=symptom)
        for scope_field, label in rule.scope.items():
            value = alert.labels.get(label)
            if value is None:
                continue
            found, note = SCOPE_FIELDS[scope_field](value, self.host)
            if found:
                mapped.scope[found[0]] = found[1]
            if note:
                mapped.notes.append(f"{label}: {note}")
        for label in rule.context:
            if label in alert.labels:
                mapped.context[label] = alert.labels[label][:_CONTEXT_VALUE]
        return mapped

    def _symptom(self, alert: Alert) -> tuple[Optional[str], Any]:
        named = alert.symptom or alert.labels.get(SYMPTOM_LABEL)
        rule = self.rules.get(alert.name)
        if named is not None:
            if named not in SYMPTOMS:
                return None, (f"symptom {named[:40]!r} is not one of `sysdiag symptoms`")
            return named, AlertRule(symptom=named, scope=rule.scope if rule else {},
                                    context=rule.context if rule else ())
        if rule is None:
            return None, (f"no mapping for alert {alert.name[:80]!r} (add it to an "
                          "--alertmap file, or give the label sysdiag_symptom)")
        return rule.symptom, rule


def _parse(text: str, source: str) -> dict[str, AlertRule]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise AlertMapError(f"{source}: not valid YAML: {err}") from err
    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(
            doc.get("alerts"), dict):
        raise AlertMapError(f"{source}: expected `version: 1` and an `alerts:` mapping "
                            "(see docs/serve.md \"Alert mapping\")")
    rules = {}
    for name, entry in doc["alerts"].items():
        where = f"{source}: alerts.{name}"
        if not isinstance(entry, dict) or set(entry) - {"symptom", "scope", "context"}:
            raise AlertMapError(f"{where}: expected keys symptom, scope, context")
        symptom = entry.get("symptom")
        if symptom not in SYMPTOMS:
            raise AlertMapError(f"{where}.symptom: {symptom!r} is not a symptom (one of "
                                f"{', '.join(SYMPTOMS)})")
        scope = entry.get("scope", {})
        if not isinstance(scope, dict) or any(k not in SCOPE_FIELDS or not isinstance(v, str)
                                              for k, v in scope.items()):
            raise AlertMapError(f"{where}.scope: expected FIELD: LABEL with FIELD one of "
                                f"{', '.join(SCOPE_FIELDS)}")
        context = entry.get("context", [])
        if not isinstance(context, list) or not all(isinstance(c, str) for c in context):
            raise AlertMapError(f"{where}.context: expected a list of label names")
        rules[str(name)] = AlertRule(symptom=symptom, scope=dict(scope), context=tuple(context))
    return rules
