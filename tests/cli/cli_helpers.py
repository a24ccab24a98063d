"""Helpers for the front-door tests: reports built by hand (for the renderers)
and the installed console scripts (for end-to-end runs)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from sysdiag.engine.results import Evidence, Hypothesis, RuledOut
from sysdiag.facts import HostInfo, ProbeOutcome, Scope
from sysdiag.report.models import BelowThreshold, Exoneration, FollowUp, Report

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SYSDIAG = str(BIN / "sysdiag")
DIAGNOSE = str(BIN / "diagnose")

#: a process name an attacker could choose: a terminal colour escape, rich markup,
#: markdown/HTML, an OSC title sequence and a bidi override
EVIL = "\x1b[31m[bold]evil</td>*x*\x1b]0;pwned\x07\u202e"


def run(argv: list[str], timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)


def make_hypothesis(hid: str = "cpu-runaway-userspace", score: float = 0.8,
                    comm: str = "stress", **kw: Any) -> Hypothesis:
    ev = Evidence(fact="process:4242", kind="process", field="cpu_pct", value=99.5,
                  source="/proc/4242/stat", rule=f"{hid}.one-pid", weight=3,
                  text=f"{comm} (pid 4242) used 99.5% of a CPU")
    against = Evidence(fact="cpu", kind="cpu", field="system_pct", value=3.0,
                       source="/proc/stat", rule=f"{hid}.system", weight=-1,
                       text="little system time")
    data: dict[str, Any] = dict(
        id=hid, title="A process spins in user space", subject=f"pid 4242 ({comm})",
        score=score, certainty="confirmed" if score >= 0.8 else "likely", severity="high",
        evidence=[ev], against=[against], explanation=f"{comm} burns a CPU",
        next_commands=["pidstat -u -t -p 4242 1 5"], references=["https://example.org/x"])
    data.update(kw)
    return Hypothesis(**data)


def make_report(**kw: Any) -> Report:
    data: dict[str, Any] = dict(
        sysdiag_version="0.1.0", generated_at="2026-01-01T00:00:00Z",
        host=HostInfo(hostname="web-1", source="/proc/sys/kernel/hostname",
                      kernel_release="6.1.0", cpu_count=2, virtualization="vm",
                      virtualization_detail="kvm"),
        symptom="high-cpu", window_s=5.0, source="live", scope=Scope(), threshold=0.5,
        hypotheses=[make_hypothesis()], hypotheses_total=1,
        below_threshold=[BelowThreshold(id="cpu-saturation", title="CPU demand",
                                        subject="host", score=0.3, certainty="possible")],
        ruled_out=[RuledOut(id="cpu-steal-time", title="steal", reason="steal 0% (< 5)",
                            failed_condition="cpu.steal_pct >= 5", actual=0.0)],
        exonerated=[Exoneration(resource="memory", summary="memory: 71% available, no swapping",
                                probes=["memory", "vmstat"], ruled_out=["mem-thrashing"])],
        coverage=[ProbeOutcome(probe="cpu", status="ok", duration_s=5.0, facts=3),
                  ProbeOutcome(probe="psi", status="unavailable",
                               reason="kernel built without CONFIG_PSI"),
                  ProbeOutcome(probe="softnet", status="skipped",
                               reason="probe not implemented in this version")],
        follow_ups=[FollowUp(hypothesis="cpu-runaway-userspace", argv=["ps", "-eo", "comm"],
                             exit_code=0, output="COMMAND\nstress\n", duration_s=0.01)],
        timings={"total_s": 5.2})
    data.update(kw)
    return Report(**data)
