"""User page faults by process (faults.bpf.c on exceptions:page_fault_user): splits a
fault storm (vmstat pgfault) by the process causing it."""
from __future__ import annotations

from typing import Any

from sysdiag.facts import Fact, PageFaults

from ..base import ProbeContext
from ..registry import register_probe
from .base import Readout, TracingProbe, Trace

MAX_ROWS = 20


@register_probe
class FaultsProbe(TracingProbe):
    name = "ebpf-faults"
    provides = ("page_faults",)
    description = "user page faults by process (eBPF exceptions:page_fault_user)"
    program = "faults.bpf.c"
    tracepoints = ("exceptions:page_fault_user",)
    event_rate_from = (("vmstat", "pgfault_per_s", 1.0),)
    cost_ns_per_event = 300.0  # bench_ebpf.py: ~9 % extra CPU at 290k faults/s
    scoped = True

    def read_maps(self, trace: Trace) -> dict[str, Any]:
        return {"rows": [(k.value, v.comm.decode(errors="replace"), v.faults, v.writes,
                          v.protection) for k, v in trace.bpf["faults"].items()]}

    def build_facts(self, ctx: ProbeContext, readout: Readout) -> list[Fact]:
        return facts_from_rows(readout.data["rows"], readout.duration_s)


def facts_from_rows(rows: list[tuple[int, str, int, int, int]], window_s: float) -> list[Fact]:
    total = sum(r[2] for r in rows)
    ranked = sorted(rows, key=lambda r: -r[2])[:MAX_ROWS]
    return [PageFaults(
        source="bpf:exceptions:page_fault_user", pid=pid, comm=comm,
        window_s=round(window_s, 3), faults_total=faults,
        faults_per_s=round(faults / window_s, 1) if window_s > 0 else None,
        write_faults_total=writes, protection_faults_total=prot,
        share_pct=round(100.0 * faults / total, 2) if total else None)
        for pid, comm, faults, writes, prot in ranked]
