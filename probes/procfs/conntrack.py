"""Connection tracking: table fill and per-CPU statistics (KNOWLEDGE.md §2.2, §5.G).

/proc/sys/net/netfilter/nf_conntrack_{count,max,buckets} (count is a per-namespace
gauge; max and buckets are global) and /proc/net/stat/nf_conntrack: a header line,
then one line of 8-digit hex u32 counters per possible CPU. Its first column,
`entries`, is a global gauge repeated on every line: it is not summed; the other
columns are per-CPU counters and are. Columns are found by the header's names
(older kernels print other columns), and `clashres` is what `conntrack -S` calls
clash_resolve.

Nothing here loads nf_conntrack: when it is not loaded the files are missing and the
probe is unavailable. The `conntrack` tool and ctnetlink are never used (they load
nf_conntrack_netlink).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

from sysdiag.facts import Conntrack, Fact

from ..base import Probe, ProbeContext, Unavailable, pct, rate
from ..parse import SYSCTL_BYTES, ParseError, to_int
from ..registry import register_probe

WRAP = 1 << 32
NOT_LOADED = "nf_conntrack is not loaded (no connection tracking on this host)"

#: /proc/net/stat/nf_conntrack header name -> Conntrack field stem (<stem>_total, _per_s)
STAT_COLUMNS = {
    "drop": "drop",
    "early_drop": "early_drop",
    "insert_failed": "insert_failed",
    "invalid": "invalid",
    "clashres": "clash_resolve",
    "search_restart": "search_restart",
    "found": "found",
    "chainlength": "chainlength",
    "insert": "insert",
    "icmp_error": "icmp_error",
}


@dataclass(frozen=True)
class NetStatTable:
    """A /proc/net/stat/* file: the `entries` gauge and per-CPU counters by column name."""

    entries: Optional[int]
    per_cpu: Mapping[str, tuple[int, ...]]

    def total(self, column: str) -> Optional[int]:
        values = self.per_cpu.get(column)
        return None if values is None else sum(values)

    def rate(self, before: Optional["NetStatTable"], column: str,
             elapsed_s: Optional[float]) -> Optional[float]:
        """Per-second rate of a column, each CPU's u32 counter unwrapped on its own."""
        if before is None:
            return None
        now, then = self.per_cpu.get(column), before.per_cpu.get(column)
        if now is None or then is None or len(now) != len(then):
            return None
        rates = [rate(a, b, elapsed_s, wraps_at=WRAP) for a, b in zip(then, now)]
        if any(r is None for r in rates):
            return None
        return round(sum(rates), 3)  # type: ignore[arg-type]


def parse_net_stat(text: str, source: str) -> NetStatTable:
    """Parse a /proc/net/stat/ file (nf_conntrack, arp_cache, ndisc_cache).

    >>> t = parse_net_stat('''entries  clashres found new invalid
    ... 0000002a  00000001 00000010 00000000 00000003
    ... 0000002a  00000002 00000020 00000000 00000004
    ... ''', "nf_conntrack")
    >>> t.entries, t.total("invalid"), t.total("clashres")
    (42, 7, 3)
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ParseError(source, "empty file (expected a header line and one line per CPU)")
    names = lines[0].split()
    if not names or any(not n.replace("_", "").isalnum() or n[0].isdigit() for n in names):
        raise ParseError(source, f"first line should name the columns, got {lines[0][:80]!r}")
    if len(lines) < 2:
        raise ParseError(source, "header only, no per-CPU lines (truncated?)")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        cols = line.split()
        if len(cols) != len(names):
            raise ParseError(source, f"line {number}: {len(cols)} columns, the header names "
                                     f"{len(names)}")
        try:
            rows.append([int(col, 16) for col in cols])
        except ValueError:
            raise ParseError(source, f"line {number}: expected hex numbers, "
                                     f"got {line.strip()[:80]!r}") from None
    per_cpu = {name: tuple(row[i] for row in rows) for i, name in enumerate(names)}
    entries = per_cpu.pop("entries", None)
    return NetStatTable(entries=None if entries is None else entries[0], per_cpu=per_cpu)


def parse_one_int(text: Optional[str], source: str) -> Optional[int]:
    if text is None:
        return None
    value = text.strip()
    if not value:
        raise ParseError(source, "empty file (expected one integer)")
    return to_int(value, source, "value")


@dataclass(frozen=True)
class ConntrackSample:
    count: Optional[int]
    max: Optional[int]
    buckets: Optional[int]
    stat: Optional[NetStatTable]


def conntrack_fact(first: Optional[ConntrackSample], last: ConntrackSample,
                   elapsed_s: Optional[float], source: str) -> Conntrack:
    values: dict[str, object] = {}
    for column, stem in STAT_COLUMNS.items():
        values[f"{stem}_total"] = None if last.stat is None else last.stat.total(column)
        values[f"{stem}_per_s"] = (None if last.stat is None or first is None else
                                   last.stat.rate(first.stat, column, elapsed_s))
    ratio = (round(last.max / last.buckets, 2)
             if last.max is not None and last.buckets else None)
    return Conntrack(source=source, count=last.count, max=last.max, buckets=last.buckets,
                     pct=pct(last.count, last.max), max_per_bucket=ratio,
                     stat_entries=None if last.stat is None else last.stat.entries,
                     **values)  # type: ignore[arg-type]


@register_probe
class ConntrackProbe(Probe):
    name = "conntrack"
    provides = ("conntrack",)
    description = ("connection tracking table: entries vs nf_conntrack_max and per-CPU drop/"
                   "early_drop/insert_failed/invalid counters (/proc, never ctnetlink)")
    netns_scoped = True  # per-namespace count; /proc/sys reads follow the thread

    def _sysctl(self, ctx: ProbeContext, name: str) -> Optional[int]:
        path = ctx.proc("sys", "net", "netfilter", name)
        try:
            text = ctx.read_text(path, SYSCTL_BYTES)
        except FileNotFoundError:
            if name != "nf_conntrack_max":
                return None
            path = ctx.proc("sys", "net", name)  # the old alias, initial namespace only
            text = ctx.read_optional(path)
        return parse_one_int(text, str(path))

    def sample(self, ctx: ProbeContext) -> ConntrackSample:
        stat_path = ctx.net("stat", "nf_conntrack")
        stat_text = ctx.read_optional(stat_path)
        count = self._sysctl(ctx, "nf_conntrack_count")
        if count is None and stat_text is None:
            raise Unavailable(NOT_LOADED)
        if stat_text is None:
            self.warn(f"{stat_path} missing: drop/early_drop/insert_failed counters unknown")
        return ConntrackSample(
            count=count, max=self._sysctl(ctx, "nf_conntrack_max"),
            buckets=self._sysctl(ctx, "nf_conntrack_buckets"),
            stat=None if stat_text is None else parse_net_stat(stat_text, str(stat_path)))

    def facts(self, ctx: ProbeContext, first: Optional[ConntrackSample], last: ConntrackSample,
              elapsed_s: Optional[float]) -> list[Fact]:
        source = str(ctx.proc("sys", "net", "netfilter", "nf_conntrack_count"))
        return [conntrack_fact(first, last, elapsed_s, source)]
