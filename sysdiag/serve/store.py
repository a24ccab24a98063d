"""Diagnosis records: what was asked, for which alerts, and what came out.

Kept in memory (the newest `keep` records) and, with a state directory, written to
`DIR/diagnoses/ID.json` when they change, so a restart still serves them.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

_ID = re.compile(r"^[0-9a-f]{16}$")

#: statuses: queued -> running -> done | failed
FINAL = ("done", "failed")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def valid_id(value: str) -> bool:
    return bool(_ID.match(value))


@dataclass
class Delivery:
    destination: str  # "webhook" | "slack"
    target: str  # scheme://host[:port] only: incoming-webhook paths are secrets
    status: str = "pending"  # pending | delivered | failed
    attempts: int = 0
    http_status: Optional[int] = None
    error: Optional[str] = None
    at: Optional[str] = None


@dataclass
class Diagnosis:
    id: str
    symptom: str
    scope: dict[str, str]
    status: str = "queued"
    created_at: str = field(default_factory=now_iso)
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    duration_s: Optional[float] = None
    exit_code: Optional[int] = None
    error: Optional[str] = None
    #: the alerts this diagnosis answers: fingerprint -> {name, labels, status, ...}
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    context: dict[str, str] = field(default_factory=dict)
    report: Optional[dict[str, Any]] = None
    markdown: Optional[str] = None
    deliveries: list[Delivery] = field(default_factory=list)
    #: monotonic creation time (reuse window); not part of the record's JSON
    created_mono: float = field(default_factory=time.monotonic, repr=False)

    @classmethod
    def new(cls, symptom: str, scope: dict[str, str]) -> "Diagnosis":
        return cls(id=secrets.token_hex(8), symptom=symptom, scope=dict(scope))

    def summary(self) -> dict[str, Any]:
        top = (self.report or {}).get("hypotheses") or []
        return {"id": self.id, "status": self.status, "symptom": self.symptom,
                "scope": self.scope, "created_at": self.created_at,
                "finished_at": self.finished_at, "exit_code": self.exit_code,
                "alerts": sorted({a["name"] for a in self.alerts.values()}),
                "top_hypothesis": top[0]["id"] if top else None}

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("created_mono")
        data.pop("markdown")
        return data


class Store:
    def __init__(self, keep: int = 500, state_dir: Optional[Path] = None):
        self.keep = keep
        self.records: "OrderedDict[str, Diagnosis]" = OrderedDict()
        #: fingerprint -> newest diagnosis id for that alert
        self.by_fingerprint: dict[str, str] = {}
        self.dir = Path(state_dir) / "diagnoses" if state_dir else None
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._load()

    def add(self, record: Diagnosis) -> None:
        self.records[record.id] = record
        self._evict()
        self.save(record)

    def get(self, diag_id: str) -> Optional[Diagnosis]:
        return self.records.get(diag_id) if valid_id(diag_id) else None

    def link(self, fp: str, record: Diagnosis) -> None:
        self.by_fingerprint[fp] = record.id

    def for_fingerprint(self, fp: str) -> Optional[Diagnosis]:
        diag_id = self.by_fingerprint.get(fp)
        return self.records.get(diag_id) if diag_id else None

    def recent(self, limit: int = 50) -> list[Diagnosis]:
        return list(reversed(self.records.values()))[:limit]

    def save(self, record: Diagnosis) -> None:
        if self.dir is None:
            return
        path = self.dir / f"{record.id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**record.to_json(), "markdown": record.markdown}))
        os.replace(tmp, path)

    def _evict(self) -> None:
        while len(self.records) > self.keep:
            old_id = next((i for i, r in self.records.items() if r.status in FINAL), None)
            if old_id is None:  # everything is in flight; the scheduler bounds that
                return
            old = self.records.pop(old_id)
            for fp in list(old.alerts):
                if self.by_fingerprint.get(fp) == old_id:
                    del self.by_fingerprint[fp]

    def _load(self) -> None:
        assert self.dir is not None
        files = sorted(self.dir.glob("*.json"), key=lambda p: p.stat().st_mtime)[-self.keep:]
        for path in files:
            try:
                data = json.loads(path.read_text())
                data["deliveries"] = [Delivery(**d) for d in data.get("deliveries", [])]
                record = Diagnosis(**data)
            except (OSError, ValueError, TypeError) as err:
                raise ValueError(f"--state-dir: {path}: not a diagnosis record ({err}); "
                                 "move it away") from err
            if record.status not in FINAL:  # the previous process stopped mid-run
                record.status, record.error = "failed", "the service stopped before it finished"
            # loaded records are never reused: their monotonic clock is gone
            record.created_mono = float("-inf")
            self.records[record.id] = record
            for fp in record.alerts:
                self.by_fingerprint[fp] = record.id
