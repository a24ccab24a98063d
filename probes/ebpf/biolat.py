"""Block I/O latency by device and operation (biolat.bpf.c on block_rq_issue and
block_rq_complete): the device's own time per request, as a histogram, where
/proc/diskstats only gives an average."""
from __future__ import annotations

from typing import Any, Optional

from sysdiag.facts import BlockIoLatency, Fact

from ..base import ProbeContext
from ..registry import register_probe
from .base import Readout, TracingProbe, Trace
from .hist import summarize

OPS = {1: "read", 2: "write", 3: "discard", 4: "flush", 0: "other"}


def split_dev(dev: int) -> tuple[int, int]:
    """The kernel's dev_t inside the kernel: major in the top 12 bits, minor in the low 20.

    >>> split_dev((259 << 20) | 1)
    (259, 1)
    """
    return dev >> 20, dev & 0xFFFFF


def device_name(ctx: ProbeContext, major: int, minor: int) -> Optional[str]:
    text = ctx.read_optional(ctx.sys("dev/block", f"{major}:{minor}", "uevent"))
    for line in (text or "").splitlines():
        if line.startswith("DEVNAME="):
            return line.split("=", 1)[1].strip()
    return None


@register_probe
class BiolatProbe(TracingProbe):
    name = "ebpf-biolat"
    provides = ("block_io_latency",)
    description = "block I/O latency histogram by device and operation (eBPF block tracepoints)"
    program = "biolat.bpf.c"
    tracepoints = ("block:block_rq_issue", "block:block_rq_complete")
    event_rate_from = (("block_device", "reads_per_s", 2.0), ("block_device", "writes_per_s", 2.0))
    cost_ns_per_event = 400.0  # bench_ebpf.py: ~1.5 % extra CPU at 4k fsyncs/s

    def read_maps(self, trace: Trace) -> dict[str, Any]:
        b = trace.bpf
        return {"hist": [(k.dev, k.op, k.slot, v.value) for k, v in b["hist"].items()],
                "sums": [(k.dev, k.op, v.value) for k, v in b["sums"].items()]}

    def build_facts(self, ctx: ProbeContext, readout: Readout) -> list[Fact]:
        return facts_from_maps(readout.data["hist"], readout.data["sums"], readout.duration_s,
                               lambda major, minor: device_name(ctx, major, minor))


def facts_from_maps(hist: list[tuple[int, int, int, int]], sums: list[tuple[int, int, int]],
                    window_s: float, name_of) -> list[Fact]:
    slots: dict[tuple[int, int], dict[int, int]] = {}
    for dev, op, slot, count in hist:
        slots.setdefault((dev, op), {})[slot] = count
    total_us = {(dev, op): value for dev, op, value in sums}
    out: list[Fact] = []
    for (dev, op), by_slot in sorted(slots.items()):
        summary = summarize(by_slot, total_us.get((dev, op)))
        major, minor = split_dev(dev)
        out.append(BlockIoLatency(
            source="bpf:block:block_rq_issue,block_rq_complete", dev=f"{major}:{minor}",
            device=name_of(major, minor), op=OPS.get(op, "other"), window_s=round(window_s, 3),
            ios_total=summary.samples,
            ios_per_s=round(summary.samples / window_s, 2) if window_s > 0 else None,
            avg_us=summary.avg, p50_us=summary.p50, p90_us=summary.p90, p99_us=summary.p99,
            max_us=summary.max, hist_log2_us=summary.buckets))
    return out
