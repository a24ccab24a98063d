"""/proc/vmstat: paging, reclaim, swap, compaction and OOM counters.

Counters are events or pages since boot; the facts carry rates over the
window next to a few totals (KNOWLEDGE.md §2.8). Names moved between kernels:
`allocstall` became `allocstall_<zone>` (4.10), and before 4.8 the scan and
steal counters were per zone (`pgscan_direct_normal`, ...). `_counter` sums
what this kernel has.
"""
from __future__ import annotations

from typing import Optional

from sysdiag.facts import Fact, VmStat

from ..base import Probe, ProbeContext, delta, pct, rate
from ..parse import parse_name_value
from ..registry import register_probe

ZONES = ("dma", "dma32", "normal", "movable", "high", "device")

#: VmStat rate field -> counter name
RATE_FIELDS = {
    "pgfault_per_s": "pgfault", "pgmajfault_per_s": "pgmajfault",
    "pswpin_per_s": "pswpin", "pswpout_per_s": "pswpout",
    "pgscan_kswapd_per_s": "pgscan_kswapd", "pgscan_direct_per_s": "pgscan_direct",
    "pgsteal_kswapd_per_s": "pgsteal_kswapd", "pgsteal_direct_per_s": "pgsteal_direct",
    "allocstall_per_s": "allocstall", "compact_stall_per_s": "compact_stall",
    "compact_fail_per_s": "compact_fail", "thp_fault_fallback_per_s": "thp_fault_fallback",
    "workingset_refault_anon_per_s": "workingset_refault_anon",
    "workingset_refault_file_per_s": "workingset_refault_file",
}
TOTAL_FIELDS = {
    "pgmajfault_total": "pgmajfault", "pswpin_total": "pswpin", "pswpout_total": "pswpout",
    "allocstall_total": "allocstall", "pgscan_direct_total": "pgscan_direct",
    "compact_stall_total": "compact_stall", "oom_kill_total": "oom_kill",
}
GAUGE_FIELDS = ("nr_dirty", "nr_writeback", "nr_dirty_threshold",
                "nr_dirty_background_threshold")


def parse_vmstat(text: str, source: str = "/proc/vmstat") -> dict[str, int]:
    """Parse "name value" lines."""
    return parse_name_value(text, source)


def _counter(values: dict[str, int], name: str) -> Optional[int]:
    """A counter by its current name, or the sum of its per-zone ancestors."""
    if name in values:
        return values[name]
    parts = [values[f"{name}_{zone}"] for zone in ZONES if f"{name}_{zone}" in values]
    return sum(parts) if parts else None


def vmstat_fact(source: str, first: Optional[dict[str, int]], last: dict[str, int],
                elapsed_s: Optional[float]) -> VmStat:
    def now(name: str) -> Optional[int]:
        return _counter(last, name)

    def before(name: str) -> Optional[int]:
        return _counter(first, name) if first is not None else None

    fields: dict[str, object] = {}
    for field, name in RATE_FIELDS.items():
        value = rate(before(name), now(name), elapsed_s)
        fields[field] = None if value is None else round(value, 2)
    fields.update({field: now(name) for field, name in TOTAL_FIELDS.items()})
    fields.update({name: last.get(name) for name in GAUGE_FIELDS})
    fields["oom_kill_delta"] = delta(before("oom_kill"), now("oom_kill"))

    scanned = _sum_delta(first, last, ("pgscan_kswapd", "pgscan_direct"))
    stolen = _sum_delta(first, last, ("pgsteal_kswapd", "pgsteal_direct"))
    if scanned and stolen is not None:
        fields["reclaim_efficiency_pct"] = pct(stolen, scanned)
    fields["dirty_of_threshold_pct"] = pct(last.get("nr_dirty"), last.get("nr_dirty_threshold"))
    return VmStat(source=source, **fields)


def _sum_delta(first: Optional[dict[str, int]], last: dict[str, int],
               names: tuple[str, ...]) -> Optional[int]:
    if first is None:
        return None
    total = 0
    for name in names:
        d = delta(_counter(first, name), _counter(last, name))
        if d is None:
            return None
        total += d
    return total


@register_probe
class VmstatProbe(Probe):
    name = "vmstat"
    provides = ("vmstat",)
    description = "paging, reclaim, swap, compaction and OOM-kill rates (/proc/vmstat)"

    def sample(self, ctx: ProbeContext) -> dict[str, int]:
        path = ctx.proc("vmstat")
        return parse_vmstat(ctx.read_text(path), str(path))

    def facts(self, ctx: ProbeContext, first: Optional[dict[str, int]], last: dict[str, int],
              elapsed_s: Optional[float]) -> list[Fact]:
        return [vmstat_fact(str(ctx.proc("vmstat")), first, last, elapsed_s)]
