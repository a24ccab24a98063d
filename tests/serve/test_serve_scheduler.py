"""The scheduler and the diagnosis child without HTTP: several workers run diagnoses at
once but never two of one symptom, and a child that overruns its deadline is killed with
everything it started."""
from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from test_serve_units import fake_sys

from sysdiag.serve import scheduler as scheduler_mod
from sysdiag.serve import worker as worker_mod
from sysdiag.serve.alertmap import AlertMap
from sysdiag.serve.alerts import Alert
from sysdiag.serve.audit import AuditLog
from sysdiag.serve.config import ServeConfig
from sysdiag.serve.scheduler import Scheduler
from sysdiag.serve.store import Store
from sysdiag.serve.worker import EXIT_INCOMPLETE, EXIT_OK, Result, run_in_child

#: two diagnoses of process-hang (different cgroups) and one each of two other symptoms
ALERTS = [Alert("HostSystemdServiceCrashed", "firing", {"name": "a.service"}),
          Alert("HostSystemdServiceCrashed", "firing", {"name": "b.service"}),
          Alert("AppSlow", "firing", {"sysdiag_symptom": "high-latency"}),
          Alert("AppBusy", "firing", {"sysdiag_symptom": "high-cpu"})]


class FakeChild:
    """Stands in for run_in_child: records who runs at the same time."""

    def __init__(self, run_s: float = 0.3) -> None:
        self.run_s = run_s
        self.running: list[str] = []
        self.most_at_once = 0
        self.overlaps: list[tuple[str, ...]] = []  # two of one symptom at once
        self.jobs: list[dict] = []

    async def __call__(self, job: dict) -> Result:
        self.jobs.append(job)
        if job["symptom"] in self.running:
            self.overlaps.append((job["symptom"], *self.running))
        self.running.append(job["symptom"])
        self.most_at_once = max(self.most_at_once, len(self.running))
        await asyncio.sleep(self.run_s)
        self.running.remove(job["symptom"])
        return Result(EXIT_OK, self.run_s, report={"hypotheses": []}, markdown="")


def _run_alerts(tmp_path: Path, workers: int) -> list:
    amap = AlertMap.load(host=fake_sys(tmp_path / "sys", units=["a.service", "b.service"]))
    config = ServeConfig(workers=workers, any_instance=True, window_s=1.0)
    store = Store()

    async def main() -> list:
        audit = AuditLog(tmp_path / "audit.jsonl")
        sched = Scheduler(config, store, audit, amap)
        await sched.start()
        try:
            lines = [sched.submit(a, "test") for a in ALERTS]
            assert [line["outcome"] for line in lines] == ["queued"] * 4, lines
            end = time.monotonic() + 10
            while any(r.status in ("queued", "running") for r in store.records.values()):
                assert time.monotonic() < end, "diagnoses did not finish"
                await asyncio.sleep(0.02)
        finally:
            await sched.stop()
            audit.close()
        return list(store.records.values())

    return asyncio.run(main())


@pytest.mark.parametrize("workers, most", [(1, 1), (2, 2), (4, 3)])
def test_workers_run_at_once_but_never_two_of_one_symptom(tmp_path, monkeypatch, workers,
                                                          most):
    child = FakeChild()
    monkeypatch.setattr(scheduler_mod, "run_in_child", child)
    records = _run_alerts(tmp_path, workers)
    assert sorted(r.status for r in records) == ["done"] * 4
    assert sorted(j["symptom"] for j in child.jobs) == [
        "high-cpu", "high-latency", "process-hang", "process-hang"]
    # three symptoms: with 4 workers still at most 3 at once, the two process-hang apart
    assert child.most_at_once == most
    assert not child.overlaps, child.overlaps
    scopes = sorted(str(j["scope"]) for j in child.jobs if j["symptom"] == "process-hang")
    assert scopes == ["{'cgroup': '/system.slice/a.service'}",
                      "{'cgroup': '/system.slice/b.service'}"]


#: stands in for `python -m sysdiag.serve.worker`: starts a grandchild, then never answers
HANGING_CHILD = """#!/bin/sh
sleep 300 &
echo $! > "{pidfile}"
exec sleep 300
"""
CRASHING_CHILD = """#!/bin/sh
echo "Traceback: something broke" >&2
exit 7
"""


def _fake_interpreter(tmp_path: Path, text: str, monkeypatch) -> None:
    path = tmp_path / "fake-python"
    path.write_text(text)
    path.chmod(0o755)
    monkeypatch.setattr(worker_mod.sys, "executable", str(path))


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_a_child_that_overruns_is_killed_with_its_process_group(tmp_path, monkeypatch):
    pidfile = tmp_path / "grandchild.pid"
    _fake_interpreter(tmp_path, HANGING_CHILD.format(pidfile=pidfile), monkeypatch)
    monkeypatch.setattr(worker_mod, "GRACE_S", 0.3)
    started = time.monotonic()
    result = asyncio.run(run_in_child({"symptom": "high-cpu", "deadline_s": 0.2}))
    took = time.monotonic() - started
    grandchild = int(pidfile.read_text())
    try:
        assert result.exit_code == EXIT_INCOMPLETE and result.report is None
        assert "overran its deadline (0.2 s + 0.3 s)" in result.error
        assert took < 5, took
        end = time.monotonic() + 5
        while _alive(grandchild) and time.monotonic() < end:
            time.sleep(0.05)
        assert not _alive(grandchild), "the child's own child outlived the kill"
    finally:
        if _alive(grandchild):
            os.kill(grandchild, signal.SIGKILL)


def test_a_child_that_dies_without_a_result_is_a_failed_diagnosis(tmp_path, monkeypatch):
    _fake_interpreter(tmp_path, CRASHING_CHILD, monkeypatch)
    result = asyncio.run(run_in_child({"symptom": "high-cpu", "deadline_s": 5.0}))
    assert result.exit_code == EXIT_INCOMPLETE and result.report is None
    assert result.error == ("the diagnosis process ended with status 7 without a result: "
                            "Traceback: something broke")
