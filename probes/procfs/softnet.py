"""/proc/net/softnet_stat: per-CPU packet processing, backlog drops and NAPI squeezes.

One line per *online* CPU of 8-digit hex u32 counters that wrap. The width grew
with the kernel (KNOWLEDGE.md §2.1): 9 columns (2.6.x: processed, dropped,
time_squeeze, five retired zeros, cpu_collision), 10 (+received_rps, 2.6.36),
11 (+flow_limit_count, 3.11), 13 (+backlog length, CPU id; 5.10), 15 (+input and
process queue lengths; 6.x). Columns are read by position and missing tail columns
are unknown. With CPUs offline the line number is not the CPU id, hence column 13.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from sysdiag.facts import Fact, SoftnetCpu

from ..base import Probe, ProbeContext, rate
from ..drop_summary import drop_summary
from ..parse import ParseError
from ..registry import register_probe
from .netstat import read_sysctl

MIN_COLUMNS = 9
WRAP = 1 << 32


@dataclass(frozen=True)
class SoftnetLine:
    cpu: int
    processed: int
    dropped: int
    time_squeeze: int
    received_rps: Optional[int] = None
    flow_limit_count: Optional[int] = None
    backlog_len: Optional[int] = None


def parse_softnet_stat(text: str, source: str = "/proc/net/softnet_stat") -> list[SoftnetLine]:
    """Parse the hex columns by position; the CPU id is column 13 or the line index.

    >>> parse_softnet_stat("0000000a 00000002 00000000 0 0 0 0 0 0 0 0 00000005 00000003")[0]
    SoftnetLine(cpu=3, processed=10, dropped=2, time_squeeze=0, received_rps=0, \
flow_limit_count=0, backlog_len=5)
    """
    out = []
    for index, line in enumerate(text.splitlines()):
        cols = line.split()
        if not cols:
            continue
        if len(cols) < MIN_COLUMNS:
            raise ParseError(source, f"line {index + 1}: {len(cols)} columns, expected at least "
                                     f"{MIN_COLUMNS} (processed dropped time_squeeze ...)")
        try:
            values = [int(col, 16) for col in cols]
        except ValueError:
            raise ParseError(source, f"line {index + 1}: expected hex numbers, "
                                     f"got {line.strip()[:80]!r}") from None

        def col(n: int) -> Optional[int]:  # 1-based, as in KNOWLEDGE.md §2.1
            return values[n - 1] if len(values) >= n else None

        cpu = col(13)
        out.append(SoftnetLine(
            cpu=index if cpu is None else cpu,
            processed=values[0], dropped=values[1], time_squeeze=values[2],
            received_rps=col(10), flow_limit_count=col(11), backlog_len=col(12)))
    if not out:
        raise ParseError(source, "no CPU lines (empty file)")
    cpus = [line.cpu for line in out]
    if len(set(cpus)) != len(cpus):
        raise ParseError(source, f"CPU ids repeat ({cpus[:16]}); the file is not softnet_stat")
    return out


def _sysctl(ctx: ProbeContext, name: str) -> Optional[int]:
    text = read_sysctl(ctx, "net", "core", name)
    if text is None or not text.strip():
        return None
    try:
        return int(text.split()[0])
    except ValueError:
        raise ParseError(str(ctx.proc("sys", "net", "core", name)),
                         f"expected a number, got {text.strip()[:40]!r}") from None


@dataclass(frozen=True)
class SoftnetSample:
    lines: list[SoftnetLine]
    sysctls: dict[str, Optional[int]]


def softnet_facts(first: Optional[list[SoftnetLine]], last: list[SoftnetLine],
                  elapsed_s: Optional[float], source: str,
                  sysctls: Optional[dict[str, Optional[int]]] = None) -> list[SoftnetCpu]:
    before = {line.cpu: line for line in first or ()}
    facts = []
    for now in last:
        prev = before.get(now.cpu)

        def per_s(name: str) -> Optional[float]:
            if prev is None:
                return None
            value = rate(getattr(prev, name), getattr(now, name), elapsed_s, wraps_at=WRAP)
            return None if value is None else round(value, 3)

        facts.append(SoftnetCpu(
            source=source, cpu=now.cpu,
            processed_total=now.processed, processed_per_s=per_s("processed"),
            dropped_total=now.dropped, dropped_per_s=per_s("dropped"),
            time_squeeze_total=now.time_squeeze, time_squeeze_per_s=per_s("time_squeeze"),
            received_rps_total=now.received_rps, received_rps_per_s=per_s("received_rps"),
            flow_limit_count_total=now.flow_limit_count,
            flow_limit_count_per_s=per_s("flow_limit_count"),
            backlog_len=now.backlog_len,
            **(sysctls or {}),
        ))
    return facts


@register_probe
class SoftnetProbe(Probe):
    name = "softnet"
    provides = ("softnet", "drop_counters")
    description = ("per-CPU packet processing: backlog drops, NAPI budget squeezes, RPS "
                   "(/proc/net/softnet_stat)")
    netns_scoped = True

    def sample(self, ctx: ProbeContext) -> SoftnetSample:
        path = ctx.net("softnet_stat")
        lines = parse_softnet_stat(ctx.read_text(path), str(path))
        # global sysctls: a non-initial network namespace's /proc/sys lacks them (None)
        sysctls = {name: _sysctl(ctx, name)
                   for name in ("netdev_max_backlog", "netdev_budget", "netdev_budget_usecs")}
        return SoftnetSample(lines=lines, sysctls=sysctls)

    def facts(self, ctx: ProbeContext, first: Optional[SoftnetSample], last: SoftnetSample,
              elapsed_s: Optional[float]) -> list[Fact]:
        source = str(ctx.net("softnet_stat"))
        cpus = softnet_facts(first.lines if first else None, last.lines, elapsed_s, source,
                             last.sysctls)
        summary = drop_summary("softnet", cpus, ("dropped_per_s",), lambda f: f"cpu {f.cpu}",
                               source)
        return [*cpus, summary] if summary else list(cpus)
