"""/proc/loadavg: load averages and task counts.

Load counts tasks in R *and* D state, so a high load with idle CPUs points at
tasks blocked in uninterruptible sleep, not at CPU demand (KNOWLEDGE.md §2.10).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from sysdiag.facts import Fact, LoadAvg

from ..base import Probe, ProbeContext
from ..parse import ParseError, to_float, to_int
from ..registry import register_probe
from .cpus import online_cpu_count


@dataclass(frozen=True)
class LoadavgReading:
    load1: float
    load5: float
    load15: float
    runnable: int
    tasks_total: int
    last_pid: Optional[int]


def parse_loadavg(text: str, source: str = "/proc/loadavg") -> LoadavgReading:
    """Parse "0.02 0.04 0.05 1/497 11947".

    >>> parse_loadavg("0.02 0.04 0.05 1/497 11947\\n").tasks_total
    497
    """
    fields = text.split()
    if len(fields) < 4:
        raise ParseError(source, f"expected 'load1 load5 load15 running/total lastpid', "
                                 f"got {text.strip()[:80]!r}")
    running, slash, total = fields[3].partition("/")
    if not slash:
        raise ParseError(source, f"field 4 should be 'running/total', got {fields[3]!r}")
    return LoadavgReading(
        load1=to_float(fields[0], source, "load1"),
        load5=to_float(fields[1], source, "load5"),
        load15=to_float(fields[2], source, "load15"),
        runnable=to_int(running, source, "running tasks"),
        tasks_total=to_int(total, source, "total tasks"),
        last_pid=to_int(fields[4], source, "last pid") if len(fields) > 4 else None,
    )


@register_probe
class LoadavgProbe(Probe):
    name = "loadavg"
    provides = ("loadavg",)
    description = "load averages and runnable/total task counts (/proc/loadavg)"
    sampled = False  # gauges: one reading, taken while the window runs

    def sample(self, ctx: ProbeContext) -> LoadavgReading:
        path = ctx.proc("loadavg")
        return parse_loadavg(ctx.read_text(path), str(path))

    def facts(self, ctx: ProbeContext, first: object, last: LoadavgReading,
              elapsed_s: Optional[float]) -> list[Fact]:
        cpus = online_cpu_count(ctx)
        return [LoadAvg(
            source=str(ctx.proc("loadavg")),
            load1=last.load1, load5=last.load5, load15=last.load15,
            runnable=last.runnable, tasks_total=last.tasks_total, last_pid=last.last_pid,
            load1_per_cpu=round(last.load1 / cpus, 3) if cpus else None,
        )]
