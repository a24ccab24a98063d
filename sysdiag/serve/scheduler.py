"""From alerts to diagnoses: deduplication, the bounded queue, the workers, delivery.

- An alert is known by its fingerprint (`alerts.fingerprint`). A firing alert whose
  diagnosis is in flight, or finished less than `reuse_window_s` ago, reuses it.
- Alerts that ask the same question (same symptom and scope) while one is queued or
  running join it: at most one diagnosis per host, symptom and scope is in flight, and
  at most one per symptom runs at a time.
- At most `queue_size` diagnoses wait; beyond that an alert is refused and the sender is
  told when to retry (HTTP 503 + Retry-After; Alertmanager retries 5xx, and the retry
  reuses whatever was accepted the first time).
- A resolved alert is acknowledged on its diagnosis; nothing runs.

All methods except the worker loops run on the event loop and never block: the
diagnosis itself runs in a child process (`worker.run_in_child`).
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from typing import Any, Optional

import httpx

from .alertmap import AlertMap
from .alerts import Alert
from .audit import AuditLog
from .config import ServeConfig
from .deliver import deliver, slack_payload, webhook_payload
from .store import Diagnosis, Store, now_iso
from .worker import EXIT_USAGE, run_in_child

Key = tuple[str, tuple[tuple[str, str], ...]]


class Scheduler:
    def __init__(self, config: ServeConfig, store: Store, audit: AuditLog, alertmap: AlertMap):
        self.config = config
        self.store = store
        self.audit = audit
        self.alertmap = alertmap
        self.host_names = config.host_names()
        self.queue: asyncio.Queue[Diagnosis] = asyncio.Queue()
        self.inflight: dict[Key, Diagnosis] = {}
        self.running = 0
        self.resolved: deque[dict[str, Any]] = deque(maxlen=config.keep)
        self._symptom_locks: dict[str, asyncio.Lock] = {}
        self._durations: deque[float] = deque(maxlen=20)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._client: Optional[httpx.AsyncClient] = None

    # ---- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        self._client = httpx.AsyncClient(follow_redirects=False)
        for n in range(self.config.workers):
            self._spawn(self._worker(n))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- accepting alerts -----------------------------------------------------------

    @property
    def queued(self) -> int:
        return self.queue.qsize()

    def retry_after_s(self) -> int:
        per_run = (sum(self._durations) / len(self._durations)) if self._durations else \
            (self.config.window_s or 5.0) + 2.0
        return max(1, math.ceil(per_run * (self.queued + 1) / self.config.workers))

    def submit(self, alert: Alert, source: str) -> dict[str, Any]:
        """Decide what to do with one alert; returns its line of the HTTP answer."""
        fp = alert.fingerprint
        base = {"alert": alert.name, "fingerprint": fp, "status": alert.status}
        if not self._for_this_host(alert):
            return self._note(base, "skipped", reason=f"instance "
                              f"{alert.labels.get('instance', '')[:80]!r} is not this host")
        if alert.status == "resolved":
            return self._resolve(alert, base)
        mapped = self.alertmap.map(alert)
        if mapped.symptom is None:
            return self._note(base, "unmapped", reason=mapped.reason)
        entry = self._alert_entry(alert, source)

        known = self.store.for_fingerprint(fp)
        if known is not None and (known.status in ("queued", "running") or
                                  time.monotonic() - known.created_mono <
                                  self.config.reuse_window_s):
            known.alerts[fp] = {**known.alerts.get(fp, entry), "last_seen": now_iso(),
                                "status": "firing"}
            return self._note(base, "reused", diagnosis=known)

        key: Key = (mapped.symptom, tuple(sorted(mapped.scope.items())))
        joined = self.inflight.get(key)
        if joined is not None:
            self._attach(joined, fp, entry, mapped.notes, mapped.context)
            return self._note(base, "joined", diagnosis=joined)

        if self.queued >= self.config.queue_size:
            return self._note(base, "rejected", reason=f"queue full ({self.queued} waiting); "
                              f"retry after {self.retry_after_s()} s")
        record = Diagnosis.new(mapped.symptom, mapped.scope)
        self._attach(record, fp, entry, mapped.notes, mapped.context)
        self.store.add(record)
        self.inflight[key] = record
        self.queue.put_nowait(record)
        return self._note(base, "queued", diagnosis=record)

    def _resolve(self, alert: Alert, base: dict[str, Any]) -> dict[str, Any]:
        fp = alert.fingerprint
        at = now_iso()
        record = self.store.for_fingerprint(fp)
        if record is not None:
            record.alerts[fp] = {**record.alerts[fp], "status": "resolved", "resolved_at": at,
                                 "ends_at": alert.ends_at}
            self.store.save(record)
        self.resolved.appendleft({"alert": alert.name, "fingerprint": fp, "resolved_at": at,
                                  "ends_at": alert.ends_at,
                                  "diagnosis": record.id if record else None})
        return self._note(base, "acknowledged", diagnosis=record)

    def _for_this_host(self, alert: Alert) -> bool:
        instance = alert.labels.get("instance")
        if self.config.any_instance or instance is None:
            return True
        host = instance
        if host.startswith("["):  # [v6]:port
            host = host[1:].split("]", 1)[0]
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        return host.lower() in self.host_names

    @staticmethod
    def _alert_entry(alert: Alert, source: str) -> dict[str, Any]:
        return {"name": alert.name, "labels": dict(alert.labels),
                "annotations": dict(alert.annotations), "status": "firing",
                "starts_at": alert.starts_at, "generator_url": alert.generator_url,
                "source": source, "source_fingerprint": alert.source_fingerprint,
                "first_seen": now_iso()}

    def _attach(self, record: Diagnosis, fp: str, entry: dict[str, Any], notes: list[str],
                context: dict[str, str]) -> None:
        record.alerts[fp] = entry
        record.notes.extend(n for n in notes if n not in record.notes)
        record.context.update(context)
        self.store.link(fp, record)

    def _note(self, base: dict[str, Any], outcome: str, diagnosis: Optional[Diagnosis] = None,
              reason: Optional[str] = None) -> dict[str, Any]:
        line = {**base, "outcome": outcome}
        if diagnosis is not None:
            line.update(diagnosis=diagnosis.id, symptom=diagnosis.symptom, scope=diagnosis.scope)
        if reason:
            line["reason"] = reason
        self.audit.event(f"alert_{outcome}", **line)
        return line

    # ---- running --------------------------------------------------------------------

    async def _worker(self, n: int) -> None:
        while True:
            record = await self.queue.get()
            lock = self._symptom_locks.setdefault(record.symptom, asyncio.Lock())
            async with lock:
                await self._run(record, n)

    async def _run(self, record: Diagnosis, worker: int) -> None:
        self.running += 1
        record.status, record.started_at = "running", now_iso()
        self.audit.event("diagnosis_started", diagnosis=record.id, symptom=record.symptom,
                         scope=record.scope, alerts=sorted(record.alerts), worker=worker)
        job = {"symptom": record.symptom, "scope": record.scope,
               "window_s": self.config.window_s, "deadline_s": self.config.deadline_s,
               "rules_dirs": [str(d) for d in self.config.rules_dirs]}
        try:
            result = await run_in_child(job)
        finally:
            self.running -= 1
            self.inflight.pop((record.symptom, tuple(sorted(record.scope.items()))), None)
        self._durations.append(result.duration_s)
        record.exit_code, record.duration_s = result.exit_code, result.duration_s
        record.report, record.markdown, record.error = result.report, result.markdown, \
            result.error
        record.status = "failed" if result.report is None or \
            result.exit_code == EXIT_USAGE else "done"
        record.finished_at = now_iso()
        self.store.save(record)
        self.audit.event("diagnosis_finished", diagnosis=record.id, symptom=record.symptom,
                         scope=record.scope, alerts=sorted(record.alerts),
                         alertnames=sorted({a["name"] for a in record.alerts.values()}),
                         exit_code=record.exit_code, duration_s=record.duration_s,
                         status=record.status, error=record.error)
        if self.config.destinations:
            self._spawn(self._deliver(record))

    async def _deliver(self, record: Diagnosis) -> None:
        assert self._client is not None
        link = f"{self.config.public_url.rstrip('/')}/diagnoses/{record.id}" \
            if self.config.public_url else None
        for dest in self.config.destinations:
            payload = slack_payload(record, link) if dest.kind == "slack" else \
                webhook_payload(record, link)
            result = await deliver(self._client, dest, payload, self.config.delivery)
            record.deliveries.append(result)
            self.audit.event("delivery", diagnosis=record.id, destination=dest.kind,
                             target=dest.target, outcome=result.status,
                             attempts=result.attempts, http_status=result.http_status,
                             error=result.error)
        self.store.save(record)
