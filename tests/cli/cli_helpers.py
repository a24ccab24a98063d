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


def busy_host_facts(comm: str = "stress") -> list:
    """Facts of a 2-CPU host saturated by one spinning process: cpu-saturation and
    cpu-runaway-userspace territory (KNOWLEDGE.md §5.A), memory healthy."""
    from sysdiag.facts import (CpuSummary, LoadAvg, Memory, Pressure, Process, TaskSummary,
                               VmStat)

    return [
        HostInfo(hostname="busy-1", source="/proc/sys/kernel/hostname", kernel_release="6.1.0",
                 cpu_count=2, virtualization="vm", virtualization_detail="kvm", uptime_s=86400),
        CpuSummary(cpu_count=2, busy_pct=99.0, user_pct=95.0, system_pct=3.0, idle_pct=1.0,
                   iowait_pct=0.0, irq_pct=0.0, softirq_pct=1.0, steal_pct=0.0,
                   kernel_share_of_busy_pct=4.0, saturated_cpus=2, idle_cpus=0,
                   min_idle_pct=0.5, procs_running=6, procs_blocked=0,
                   runqueue_over_cpus_samples=2, ctxt_per_s=900.0, forks_per_s=1.0,
                   source="/proc/stat"),
        Pressure(resource="cpu", some_avg10=60.0, some_avg60=55.0, some_avg300=30.0,
                 some_window_pct=62.0, source="/proc/pressure/cpu"),
        Pressure(resource="memory", some_avg10=0.0, full_avg10=0.0, some_window_pct=0.0,
                 full_window_pct=0.0, source="/proc/pressure/memory"),
        LoadAvg(load1=6.0, load5=5.0, load15=3.0, runnable=6, tasks_total=120,
                load1_per_cpu=3.0, source="/proc/loadavg"),
        Memory(mem_total_bytes=8 << 30, mem_free_bytes=4 << 30, mem_available_bytes=6 << 30,
               available_pct=75.0, swap_total_bytes=0, swap_free_bytes=0, source="/proc/meminfo"),
        VmStat(pgmajfault_per_s=0.0, pswpin_per_s=0.0, pswpout_per_s=0.0,
               pgscan_direct_per_s=0.0, allocstall_per_s=0.0, compact_stall_per_s=0.0,
               thp_fault_fallback_per_s=0.0, oom_kill_delta=0, source="/proc/vmstat"),
        Process(pid=4242, ppid=1, comm=comm, state="R", state_first="R", state_stable=True,
                threads=2, cpu_pct=190.0, user_cpu_pct=186.0, system_cpu_pct=4.0,
                cpu_time_delta_s=9.5, run_delay_pct=35.0, rss_bytes=50 << 20, uid=1000,
                age_s=600.0, source="/proc/4242"),
        TaskSummary(processes=60, threads=150, running=6, uninterruptible=0, zombies=0,
                    stopped=0, uninterruptible_stable=0, source="/proc"),
    ]


def busy_snapshot(comm: str = "stress", coverage: list | None = None):
    from sysdiag.facts import Snapshot

    facts = busy_host_facts(comm)
    cov = coverage if coverage is not None else [
        ProbeOutcome(probe=p, status="ok", duration_s=0.01)
        for p in ("host", "cpu", "psi", "loadavg", "memory", "vmstat", "processes", "klog")]
    return Snapshot(sysdiag_version="0.1.0", created_at="2026-01-01T00:00:00Z", host=facts[0],
                    window_s=5.0, live=True, facts=facts, coverage=cov)
