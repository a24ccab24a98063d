"""Run-queue latency per CPU, and for the --pid/--cgroup scope (runqlat.bpf.c).

A task waits in the run queue from its wakeup (or from being preempted while still
runnable) until it runs. A long wait with little CPU use elsewhere points at
placement (cpuset, affinity, RT tasks); long waits everywhere at CPU saturation.
"""
from __future__ import annotations

import os
from typing import Any

from sysdiag.facts import Fact, RunqLatency

from ..base import ProbeContext, Unavailable
from ..registry import register_probe
from .base import Readout, TracingProbe, Trace
from .hist import HistSummary, summarize
from .tracefs import EventFormat, flag_table


def state_mask(fmt: EventFormat) -> int:
    """Every task-state bit sched_switch prints for prev_state (0xff on 6.x)."""
    flags = flag_table(fmt.print_fmt, "prev_state")
    if not flags:
        raise Unavailable("sched:sched_switch's format has no prev_state flag table; "
                          "this kernel's layout is not supported")
    mask = 0
    for bit in flags:
        mask |= bit
    return mask


def _fact(scope: str, cpu: Any, summary: HistSummary, window_s: float) -> RunqLatency:
    return RunqLatency(
        source="bpf:sched:sched_wakeup,sched_wakeup_new,sched_switch", scope=scope, cpu=cpu,
        window_s=round(window_s, 3), samples_total=summary.samples,
        samples_per_s=round(summary.samples / window_s, 1) if window_s > 0 else None,
        avg_us=summary.avg, p50_us=summary.p50, p90_us=summary.p90, p99_us=summary.p99,
        max_us=summary.max, over_1ms_pct=summary.share_at_least(1024),
        hist_log2_us=summary.buckets)


@register_probe
class RunqlatProbe(TracingProbe):
    name = "ebpf-runqlat"
    provides = ("runq_latency",)
    description = "run-queue latency histogram per CPU and for the scope (eBPF, sched tracepoints)"
    program = "runqlat.bpf.c"
    tracepoints = ("sched:sched_wakeup", "sched:sched_wakeup_new", "sched:sched_switch")
    # every context switch and wakeup runs the program: about two events per switch
    event_rate_from = (("cpu", "ctxt_per_s", 2.0),)
    cost_ns_per_event = 1500.0  # bench_ebpf.py: ~27-30 % extra CPU on a 100k/s pipe ping-pong
    scoped = True

    def cflags(self, ctx: ProbeContext, formats: dict[str, EventFormat]) -> list[str]:
        mask = state_mask(formats["sched:sched_switch"])
        return [f"-DSTATE_MASK={mask:#x}", f"-DMAX_CPUS={max(os.cpu_count() or 1, 1)}"]

    def read_maps(self, trace: Trace) -> dict[str, Any]:
        b = trace.bpf
        per_cpu: dict[int, dict[int, int]] = {}
        for k, v in b["hist_cpu"].items():
            per_cpu.setdefault(k.cpu, {})[k.slot] = v.value
        sums = {k.value: v.value for k, v in b["sum_cpu"].items()}
        data: dict[str, Any] = {"per_cpu": per_cpu, "sums": sums}
        if trace.scope_label is not None:
            data["scope"] = {k.value: v.value for k, v in b["hist_scope"].items()}
            data["scope_sum"] = b["sum_scope"][0].value
        return data

    def build_facts(self, ctx: ProbeContext, readout: Readout) -> list[Fact]:
        return facts_from_readout(readout.data, readout.duration_s, readout.trace.scope_label)


def facts_from_readout(data: dict[str, Any], window_s: float, scope_label: Any) -> list[Fact]:
    """Facts from the copied maps: every CPU together, each CPU, and the scope."""
    per_cpu, sums = data["per_cpu"], data["sums"]
    all_slots: dict[int, int] = {}
    for slots in per_cpu.values():
        for slot, count in slots.items():
            all_slots[slot] = all_slots.get(slot, 0) + count
    out: list[Fact] = [_fact("host", None, summarize(all_slots, sum(sums.values())), window_s)]
    for cpu in sorted(per_cpu):
        out.append(_fact("host", cpu, summarize(per_cpu[cpu], sums.get(cpu)), window_s))
    if scope_label is not None:
        out.append(_fact(scope_label, None, summarize(data["scope"], data["scope_sum"]),
                         window_s))
    return out
