"""/proc/stat: CPU time split (whole host and per CPU), run queue, context switches.

CPU times are cumulative clock ticks; the facts are shares of the window's
ticks, so the tick length never matters. `guest` is already inside `user`
and is not added again (KNOWLEDGE.md §2.10).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from sysdiag.facts import CpuCore, CpuSummary, Fact

from ..base import Probe, ProbeContext, pct, rate
from ..parse import ParseError, to_int
from ..registry import register_probe

#: the columns of a cpu line, in order; older kernels print fewer (steal since 2.6.11)
CPU_COLUMNS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
               "guest", "guest_nice")
SATURATED_BUSY_PCT = 90.0
IDLE_CPU_PCT = 30.0


@dataclass(frozen=True)
class CpuTimes:
    user: int = 0
    nice: int = 0
    system: int = 0
    idle: int = 0
    iowait: int = 0
    irq: int = 0
    softirq: int = 0
    steal: int = 0

    @property
    def total(self) -> int:
        # guest/guest_nice are included in user/nice; not counted twice
        return (self.user + self.nice + self.system + self.idle + self.iowait
                + self.irq + self.softirq + self.steal)

    def minus(self, other: "CpuTimes") -> Optional["CpuTimes"]:
        """Ticks between two readings; None if a counter went backwards
        (CPU hot-unplugged and back: its counters restart)."""
        values = {name: getattr(self, name) - getattr(other, name)
                  for name in CpuTimes.__dataclass_fields__}
        if any(v < 0 for v in values.values()):
            return None
        return CpuTimes(**values)


@dataclass(frozen=True)
class StatReading:
    total: CpuTimes
    cpus: dict[int, CpuTimes] = field(default_factory=dict)
    ctxt: Optional[int] = None
    forks: Optional[int] = None  # the `processes` line
    procs_running: Optional[int] = None
    procs_blocked: Optional[int] = None
    btime: Optional[int] = None


def _cpu_times(fields: list[str], source: str, name: str) -> CpuTimes:
    if len(fields) < 4:
        raise ParseError(source, f"line {name!r} has {len(fields)} time columns, expected "
                                 "at least 4 (user nice system idle)")
    values = [to_int(v, source, f"{name} {col}") for col, v in zip(CPU_COLUMNS, fields)]
    return CpuTimes(**dict(zip(CPU_COLUMNS[:8], values[:8])))


def parse_stat(text: str, source: str = "/proc/stat") -> StatReading:
    """Parse /proc/stat (the `intr` and `softirq` lines are skipped unsplit)."""
    total: Optional[CpuTimes] = None
    cpus: dict[int, CpuTimes] = {}
    scalars: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if name == "cpu":
            total = _cpu_times(rest.split(), source, "cpu")
        elif name.startswith("cpu") and name[3:].isdigit():
            cpus[int(name[3:])] = _cpu_times(rest.split(), source, name)
        elif name in ("ctxt", "processes", "procs_running", "procs_blocked", "btime"):
            scalars[name] = to_int(rest.strip(), source, name)
    if total is None:
        raise ParseError(source, "no 'cpu' summary line (empty or truncated file?)")
    if not cpus:
        raise ParseError(source, "no per-CPU 'cpuN' lines (truncated file?)")
    return StatReading(total=total, cpus=cpus, ctxt=scalars.get("ctxt"),
                       forks=scalars.get("processes"),
                       procs_running=scalars.get("procs_running"),
                       procs_blocked=scalars.get("procs_blocked"), btime=scalars.get("btime"))


@dataclass(frozen=True)
class CpuShares:
    """Percent of the window's ticks, for one CPU or all of them."""
    busy: float
    user: float
    system: float
    idle: float
    iowait: float
    irq: float
    softirq: float
    steal: float


def cpu_shares(d: CpuTimes) -> Optional[CpuShares]:
    """Shares of a tick delta; None when no tick passed."""
    whole = d.total
    if whole <= 0:
        return None

    def share(value: int) -> float:
        return round(100.0 * value / whole, 2)

    return CpuShares(busy=round(100.0 - share(d.idle) - share(d.iowait), 2),
                     user=share(d.user + d.nice), system=share(d.system), idle=share(d.idle),
                     iowait=share(d.iowait), irq=share(d.irq), softirq=share(d.softirq),
                     steal=share(d.steal))


def cpu_facts(source: str, first: Optional[StatReading], last: StatReading,
              elapsed_s: Optional[float]) -> list[Fact]:
    """CpuSummary and one CpuCore per CPU from one or two readings."""
    cpu_count = len(last.cpus)
    per_cpu: dict[int, Optional[CpuShares]] = {}
    for cpu, times in sorted(last.cpus.items()):
        before = first.cpus.get(cpu) if first else None
        d = times.minus(before) if before is not None else None
        per_cpu[cpu] = cpu_shares(d) if d is not None else None
    total_delta = last.total.minus(first.total) if first else None
    total = cpu_shares(total_delta) if total_delta is not None else None
    measured = [s for s in per_cpu.values() if s is not None]

    samples = [r for r in (first, last) if r is not None and r.procs_running is not None]
    fields: dict[str, object] = dict(
        procs_running=last.procs_running, procs_blocked=last.procs_blocked,
        # procs_running counts the task reading /proc/stat (us) too: leave it out here
        runqueue_over_cpus_samples=(sum(r.procs_running - 1 > cpu_count for r in samples)
                                    if samples else None),
        ctxt_per_s=_rounded(rate(first and first.ctxt, last.ctxt, elapsed_s)),
        forks_per_s=_rounded(rate(first and first.forks, last.forks, elapsed_s)),
        steal_pct_since_boot=pct(last.total.steal, last.total.total),
    )
    if total is not None:
        fields.update(busy_pct=total.busy, user_pct=total.user, system_pct=total.system,
                      idle_pct=total.idle, iowait_pct=total.iowait, irq_pct=total.irq,
                      softirq_pct=total.softirq, steal_pct=total.steal,
                      kernel_share_of_busy_pct=pct(total.system + total.irq + total.softirq,
                                                   total.busy))
    if measured:
        fields.update(saturated_cpus=sum(s.busy >= SATURATED_BUSY_PCT for s in measured),
                      idle_cpus=sum(s.idle + s.iowait >= IDLE_CPU_PCT for s in measured),
                      min_idle_pct=round(min(s.idle + s.iowait for s in measured), 2))
    facts: list[Fact] = [CpuSummary(source=source, cpu_count=cpu_count, **fields)]
    for cpu, s in per_cpu.items():
        facts.append(CpuCore(source=source, cpu=cpu) if s is None else CpuCore(
            source=source, cpu=cpu, busy_pct=s.busy, user_pct=s.user, system_pct=s.system,
            idle_pct=s.idle, iowait_pct=s.iowait, softirq_pct=s.softirq, steal_pct=s.steal))
    return facts


def _rounded(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 2)


@register_probe
class CpuProbe(Probe):
    name = "cpu"
    provides = ("cpu", "cpu_core")
    description = "CPU time split per CPU over the window, run queue, context switches (/proc/stat)"

    def sample(self, ctx: ProbeContext) -> StatReading:
        path = ctx.proc("stat")
        return parse_stat(ctx.read_text(path), str(path))

    def facts(self, ctx: ProbeContext, first: Optional[StatReading], last: StatReading,
              elapsed_s: Optional[float]) -> list[Fact]:
        return cpu_facts(str(ctx.proc("stat")), first, last, elapsed_s)
