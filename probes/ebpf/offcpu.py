"""Off-CPU time in uninterruptible sleep (D) by task and wait reason (offcpu.bpf.c).

The wait reason is the first kernel frame outside the scheduler on the task's stack
when it went to sleep: what /proc/PID/wchan shows, but for every wait in the window
and with how long it lasted. A task still in D when tracing ends is reported with the
wait in progress, so a stall that began during the window shows even though it never
ended. Brief D waits of kernel threads are normal: look at the time, not the count.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional

from sysdiag.facts import Fact, OffCpuWait

from ..base import ProbeContext, Unavailable
from ..registry import register_probe
from .base import Readout, TracingProbe, Trace
from .tracefs import EventFormat, flag_table

#: the most (task, reason) rows reported, longest total wait first
MAX_ROWS = 30
STACK_FRAMES = 6

#: frames of the scheduler itself; the wait reason is the first frame after them. The
#: stack also starts with the tracing machinery (bpf_*, perf_*, trace_*) when a
#: tracepoint program asks for it.
_SCHED_PREFIXES = ("__schedule", "schedule", "preempt_schedule", "io_schedule", "__traceiter",
                   "bpf_", "perf_", "trace_", "__bpf", "__perf", "__trace",
                   # completion waits are scheduler helpers too (kernel/sched/completion.c):
                   # what waits for the completion is the frame after them
                   "wait_for_completion", "__wait_for_common", "wait_for_common",
                   "do_wait_for_common")
_SCHED_NAMES = {"schedule_timeout", "schedule_hrtimeout_range", "schedule_preempt_disabled",
                "io_schedule_timeout"}


def d_state_bit(fmt: EventFormat) -> int:
    for bit, name in flag_table(fmt.print_fmt, "prev_state").items():
        if name == "D":
            return bit
    raise Unavailable("sched:sched_switch's format names no D state bit; this kernel's "
                      "layout is not supported")


def wait_reason(frames: list[str]) -> str:
    """The first frame that is not the scheduler or tracing (the "wchan").

    >>> wait_reason(["bpf_prog_x", "__schedule", "schedule", "request_wait_answer", "fuse_simple_request"])
    'request_wait_answer'
    >>> wait_reason(["__schedule", "schedule", "io_schedule", "folio_wait_bit_common"])
    'folio_wait_bit_common'
    >>> wait_reason([])
    'unknown'
    """
    rest = waiting_frames(frames)
    return rest[0] if rest else (_name(frames[-1]) if frames else "unknown")


def _name(frame: str) -> str:
    return frame.split("+", 1)[0]


def waiting_frames(frames: list[str]) -> list[str]:
    """The frames from the wait reason outwards (scheduler and tracing frames dropped)."""
    for i, frame in enumerate(frames):
        name = _name(frame)
        if name in _SCHED_NAMES or name.startswith(_SCHED_PREFIXES):
            continue
        return [_name(f) for f in frames[i:]]
    return []


@register_probe
class OffcpuProbe(TracingProbe):
    name = "ebpf-offcpu"
    provides = ("offcpu_wait",)
    description = "off-CPU time in D state by task and wait reason (eBPF sched_switch + stacks)"
    program = "offcpu.bpf.c"
    tracepoints = ("sched:sched_switch",)
    event_rate_from = (("cpu", "ctxt_per_s", 1.0),)
    cost_ns_per_event = 450.0  # bench_ebpf.py: ~5 % extra CPU on a 150k/s pipe ping-pong
    scoped = True

    def cflags(self, ctx: ProbeContext, formats: dict[str, EventFormat]) -> list[str]:
        return [f"-DSTATE_D={d_state_bit(formats['sched:sched_switch']):#x}"]

    def read_maps(self, trace: Trace) -> dict[str, Any]:
        b = trace.bpf
        now_ns = time.monotonic_ns()
        stacks = b["stacks"]
        stack_cache: dict[int, list[str]] = {}

        def frames(stackid: int) -> list[str]:
            if stackid < 0:
                return []
            if stackid not in stack_cache:
                try:
                    addrs = list(stacks.walk(stackid))
                except KeyError:
                    addrs = []
                stack_cache[stackid] = [b.ksym(a).decode(errors="replace") for a in addrs]
            return stack_cache[stackid]

        done = [(k.pid, k.comm.decode(errors="replace"), frames(k.stackid), v.total_ns, v.count,
                 v.max_ns) for k, v in b["waits"].items()]
        ongoing = [(k.value, v.comm.decode(errors="replace"), frames(v.stackid),
                    max(0, now_ns - v.ts)) for k, v in b["start"].items()
                   if v.ts >= trace.started_ns]
        return {"done": done, "ongoing": ongoing}

    def build_facts(self, ctx: ProbeContext, readout: Readout) -> list[Fact]:
        return facts_from_waits(readout.data["done"], readout.data["ongoing"],
                                readout.duration_s, lambda pid: _tgid(ctx, pid))


def _tgid(ctx: ProbeContext, tid: int) -> Optional[int]:
    text = ctx.read_optional(ctx.proc(tid, "status")) if ctx.proc(tid).exists() else None
    for line in (text or "").splitlines():
        if line.startswith("Tgid:"):
            return int(line.split()[1])
    return None


def facts_from_waits(done: list[tuple], ongoing: list[tuple], window_s: float,
                     tgid_of: Callable[[int], Optional[int]]) -> list[Fact]:
    """done: (pid, comm, frames, total_ns, count, max_ns); ongoing: (pid, comm, frames, ns)."""
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    for pid, comm, frames, total_ns, count, max_ns in done:
        reason = wait_reason(frames)
        row = rows.setdefault((pid, reason), {"comm": comm, "frames": frames, "total": 0,
                                              "count": 0, "max": 0, "ongoing": None})
        row["total"] += total_ns
        row["count"] += count
        row["max"] = max(row["max"], max_ns)
    for pid, comm, frames, ns in ongoing:
        reason = wait_reason(frames)
        row = rows.setdefault((pid, reason), {"comm": comm, "frames": frames, "total": 0,
                                              "count": 0, "max": 0, "ongoing": None})
        row["total"] += ns
        row["count"] += 1
        row["max"] = max(row["max"], ns)
        row["ongoing"] = ns
    ranked = sorted(rows.items(), key=lambda kv: -kv[1]["total"])[:MAX_ROWS]
    out: list[Fact] = []
    for (pid, reason), row in ranked:
        stack = " <- ".join(waiting_frames(row["frames"])[:STACK_FRAMES])
        out.append(OffCpuWait(
            source="bpf:sched:sched_switch", pid=pid, tgid=tgid_of(pid), comm=row["comm"],
            wait_reason=reason, stack=stack, window_s=round(window_s, 3),
            waits_total=row["count"], wait_ms_total=round(row["total"] / 1e6, 3),
            max_wait_ms=round(row["max"] / 1e6, 3), blocked_now=row["ongoing"] is not None,
            ongoing_ms=round(row["ongoing"] / 1e6, 3) if row["ongoing"] is not None else None,
            wait_pct_of_window=round(100.0 * row["total"] / 1e9 / window_s, 2)
            if window_s > 0 else None))
    return out
