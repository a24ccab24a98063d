"""Neighbour (ARP/ND) tables: entries by state, overflows and failed resolutions.

Live: RTM_GETNEIGH (entries of the namespace, by NUD state), RTM_GETNEIGHTBL (per table:
gc_thresh1/2/3, the kernel's entry count and struct ndt_stats with table_fulls and
res_failed), read as streams (nldump.py). The tables and their limits are global: the
kernel count and gc_thresh3 cover every namespace, the dump only this one. gc_thresh*
come from /proc/sys/net/ipv{4,6}/neigh/default/ (initial namespace only), else from
netlink. `unresolved_discards` exists only in /proc/net/stat/{arp,ndisc}_cache (hex,
one line per CPU, like nf_conntrack).

Captured tree: /proc/net/arp (IPv4 entries; its flags cannot tell INCOMPLETE from
FAILED) and /proc/net/stat/{arp,ndisc}_cache.

NeighEntry facts are emitted only for INCOMPLETE/FAILED entries, at most MAX_ENTRIES.
"""
from __future__ import annotations

import os
import socket
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple, Optional

from sysdiag.facts import Fact, NeighEntry, NeighTable

from ..base import Probe, ProbeContext, Unavailable, pct, rate
from ..parse import SYSCTL_BYTES, ParseError, to_int
from ..procfs.conntrack import NetStatTable, parse_net_stat
from ..registry import register_probe
from .nldump import (NETLINK_ROUTE, DumpInterrupted, addr_str, attr_str, attr_u32, dump,
                     iter_attrs, open_netlink, set_strict)
from .routes import _retrying, dump_links, dump_routes

RTM_GETNEIGH, RTM_GETNEIGHTBL = 30, 66
NDA_DST, NDA_CACHEINFO = 1, 3
#: struct nda_cacheinfo counts clock_t ticks (USER_HZ) ago: confirmed, used, updated, refcnt
_CACHEINFO = struct.Struct("=IIII")
USER_HZ = os.sysconf("SC_CLK_TCK")
NDTA_NAME, NDTA_THRESH1, NDTA_THRESH2, NDTA_THRESH3, NDTA_CONFIG, NDTA_STATS = 1, 2, 3, 4, 5, 7
MAX_ENTRIES = 100

#: NUD_* bits (include/uapi/linux/neighbour.h) -> NeighTable field
NUD_STATES = {0x01: "incomplete", 0x02: "reachable", 0x04: "stale", 0x08: "delay",
              0x10: "probe", 0x20: "failed", 0x40: "noarp", 0x80: "permanent"}
STATE_FIELDS = tuple(NUD_STATES.values())
#: struct ndt_stats (u64 each), in order; table_fulls arrived in 2.6.x last
NDT_STATS = ("allocs", "destroys", "hash_grows", "res_failed", "lookups", "hits",
             "rcv_probes_mcast", "rcv_probes_ucast", "periodic_gc_runs", "forced_gc_runs",
             "table_fulls")
#: NeighTable counters (each _total and _per_s)
COUNTERS = ("table_fulls", "res_failed", "forced_gc_runs", "unresolved_discards")
FAMILIES = {socket.AF_INET: "ipv4", socket.AF_INET6: "ipv6"}
TABLES = {"ipv4": "arp_cache", "ipv6": "ndisc_cache"}
ATF_COM, ATF_PERM = 0x2, 0x4
WRAP = 1 << 32

_NDMSG = struct.Struct("=BxHiHBB")  # family pad pad ifindex state flags type


@dataclass(frozen=True)
class BadEntry:
    family: str
    address: str
    ifname: str
    ifindex: Optional[int]
    state: str  # incomplete | failed
    #: seconds since a packet was last sent to it / since its state last changed
    used_age_s: Optional[float] = None
    updated_age_s: Optional[float] = None


class NdEntry(NamedTuple):
    """What one RTM_NEWNEIGH message says of one entry."""

    family: str
    ifindex: int
    state: int  # NUD_* bit
    address: Optional[str]
    used_age_s: Optional[float] = None
    updated_age_s: Optional[float] = None


@dataclass
class TableReading:
    """One family's table at one moment."""

    family: str
    source: str
    states: Optional[Counter] = None  # state name -> count; None: entries not listed
    #: the states the source can tell apart (/proc/net/arp: unresolved and permanent)
    known_states: tuple[str, ...] = STATE_FIELDS
    entries: Optional[int] = None
    kernel_entries: Optional[int] = None
    thresh: dict[int, Optional[int]] = field(default_factory=dict)  # 1/2/3 -> value
    #: u64 totals from NDTA_STATS (table_fulls, res_failed, forced_gc_runs)
    stats: dict[str, int] = field(default_factory=dict)
    #: /proc/net/stat/*_cache (per-CPU u32 counters), when readable
    stat_table: Optional[NetStatTable] = None


@dataclass
class NeighSample:
    tables: dict[str, TableReading]
    bad: list[BadEntry]
    bad_count: Counter  # family -> INCOMPLETE/FAILED entries (including those over the cap)
    gateways: frozenset[str] = frozenset()


def entry_from_ndmsg(body: bytes) -> Optional[NdEntry]:
    """One RTM_NEWNEIGH payload; None for a family other than IPv4/IPv6."""
    if len(body) < _NDMSG.size:
        raise ParseError("netlink RTM_GETNEIGH", f"message of {len(body)} bytes is shorter "
                                                 "than struct ndmsg")
    family, _, ifindex, state, _, _ = _NDMSG.unpack_from(body)
    name = FAMILIES.get(family)
    if name is None:
        return None
    dst = used = updated = None
    for kind, payload in iter_attrs(body, _NDMSG.size):
        if kind == NDA_DST:
            dst = addr_str(family, payload)
        elif kind == NDA_CACHEINFO and len(payload) >= _CACHEINFO.size:
            # `ip -s neigh` prints these as "used U/C/P": a FAILED entry nobody has sent
            # to for minutes is an old failure, not traffic being lost now
            _, used_ticks, updated_ticks, _ = _CACHEINFO.unpack_from(payload)
            used, updated = used_ticks / USER_HZ, updated_ticks / USER_HZ
    return NdEntry(name, ifindex, state, dst, used, updated)


def state_name(state: int) -> Optional[str]:
    """The NeighTable field for a NUD state (one bit is set; NUD_NONE has none)."""
    return NUD_STATES.get(state)


def table_from_ndtmsg(body: bytes) -> Optional[tuple[str, dict[str, Any]]]:
    """(family, {name, thresh1..3, entries, stats}) from a table-level RTM_NEWNEIGHTBL
    payload; None for per-device parameter messages (no NDTA_THRESH) and other families."""
    if len(body) < 4:
        raise ParseError("netlink RTM_GETNEIGHTBL", "message shorter than struct ndtmsg")
    family = FAMILIES.get(body[0])
    attrs = dict(iter_attrs(body, 4))
    if family is None or NDTA_THRESH3 not in attrs:
        return None
    info: dict[str, Any] = {"name": attr_str(attrs.get(NDTA_NAME)),
                            "thresh": {i: attr_u32(attrs.get(a)) for i, a in
                                       ((1, NDTA_THRESH1), (2, NDTA_THRESH2),
                                        (3, NDTA_THRESH3))}}
    config = attrs.get(NDTA_CONFIG)
    if config is not None and len(config) >= 8:
        info["entries"] = struct.unpack_from("=I", config, 4)[0]  # after key_len, entry_size
    stats = attrs.get(NDTA_STATS)
    if stats is not None:
        count = min(len(stats) // 8, len(NDT_STATS))
        info["stats"] = dict(zip(NDT_STATS, struct.unpack_from(f"={count}Q", stats)))
    return family, info


def parse_proc_net_arp(text: str, source: str = "/proc/net/arp") -> list[tuple[str, int, str]]:
    """(address, flags, device) per line of /proc/net/arp.

    >>> parse_proc_net_arp('''IP address       HW type     Flags       HW address            Mask     Device
    ... 192.0.2.1        0x1         0x2         02:fc:00:00:00:05     *        eth0''')
    [('192.0.2.1', 2, 'eth0')]
    """
    lines = text.splitlines()
    if not lines or not lines[0].startswith("IP address"):
        raise ParseError(source, "expected a header line starting with 'IP address'")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        cols = line.split()
        if not cols:
            continue
        if len(cols) != 6:
            raise ParseError(source, f"line {number}: {len(cols)} columns, expected 6 "
                                     f"(address type flags hwaddr mask device)")
        try:
            flags = int(cols[2], 16)
        except ValueError:
            raise ParseError(source, f"line {number}: flags {cols[2]!r} are not hex") from None
        rows.append((cols[0], flags, cols[5]))
    return rows


def table_facts(first: Optional[NeighSample], last: NeighSample,
                elapsed_s: Optional[float]) -> list[NeighTable]:
    out = []
    for family, now in sorted(last.tables.items()):
        before = first.tables.get(family) if first else None
        values: dict[str, Any] = {}
        for counter in COUNTERS:
            total, per_s = _counter(counter, before, now, elapsed_s)
            values[f"{counter}_total"], values[f"{counter}_per_s"] = total, per_s
        if now.states is not None:
            values.update({name: now.states.get(name, 0) for name in now.known_states})
        used = now.kernel_entries if now.kernel_entries is not None else now.entries
        thresh3 = now.thresh.get(3)
        out.append(NeighTable(
            source=now.source, family=family, table=TABLES[family], entries=now.entries,
            kernel_entries=now.kernel_entries, gc_thresh1=now.thresh.get(1),
            gc_thresh2=now.thresh.get(2), gc_thresh3=thresh3,
            thresh3_pct=pct(used, thresh3),
            entries_omitted=max(0, last.bad_count.get(family, 0) -
                                sum(1 for b in last.bad if b.family == family)),
            **values))
    return out


def _counter(name: str, before: Optional[TableReading], now: TableReading,
             elapsed_s: Optional[float]) -> tuple[Optional[int], Optional[float]]:
    if name in now.stats:  # netlink u64: no wrap
        then = before.stats.get(name) if before else None
        per_s = rate(then, now.stats[name], elapsed_s)
        return now.stats[name], None if per_s is None else round(per_s, 3)
    if now.stat_table is not None:
        per_s = now.stat_table.rate(before.stat_table if before else None, name, elapsed_s)
        return now.stat_table.total(name), per_s
    return None, None


def entry_facts(last: NeighSample) -> list[NeighEntry]:
    return [NeighEntry(source=last.tables[b.family].source, family=b.family,
                       address=b.address, ifname=b.ifname, ifindex=b.ifindex, state=b.state,
                       used_age_s=b.used_age_s, updated_age_s=b.updated_age_s,
                       is_default_gateway=(b.address in last.gateways) if last.gateways
                       else None)
            for b in last.bad if b.family in last.tables]


@register_probe
class NeighProbe(Probe):
    name = "neigh"
    provides = ("neigh_table", "neigh_entry")
    description = ("neighbour (ARP/ND) tables: entries by state vs gc_thresh, table_fulls, "
                   "res_failed, and unresolved entries (netlink; /proc/net/arp offline)")
    netns_scoped = True  # --netns/--pid: sampled inside that namespace (probes/scope.py)

    def __init__(self, netns: Optional[str] = None) -> None:
        super().__init__()
        #: a named namespace (/run/netns/NAME) to read instead of the current one
        self.netns = netns

    def sample(self, ctx: ProbeContext) -> NeighSample:
        sample = self._sample_netlink() if ctx.live else self._sample_files(ctx)
        for family, reading in sample.tables.items():
            version = family[-1]
            for i in (1, 2, 3):
                value = self._sysctl(ctx, f"ipv{version}", f"gc_thresh{i}")
                if value is not None:
                    reading.thresh[i] = value
            if reading.stat_table is None:
                reading.stat_table = self._stat(ctx, TABLES[family])
            if reading.kernel_entries is None and reading.stat_table is not None:
                reading.kernel_entries = reading.stat_table.entries
        return sample

    def _sysctl(self, ctx: ProbeContext, ip: str, name: str) -> Optional[int]:
        path = ctx.proc("sys", "net", ip, "neigh", "default", name)
        try:
            text = ctx.read_text(path, SYSCTL_BYTES)
        except FileNotFoundError:
            return None
        return to_int(text.strip(), str(path), "value")

    def _stat(self, ctx: ProbeContext, table: str) -> Optional[NetStatTable]:
        path = ctx.net("stat", table)
        text = ctx.read_optional(path)
        return None if text is None else parse_net_stat(text, str(path))

    def _sample_netlink(self) -> NeighSample:
        sock = open_netlink(NETLINK_ROUTE, self.netns)
        try:
            set_strict(sock)
            ifnames = _retrying(dump_links, sock)
            tables, bad, bad_count = _retrying(self._dump_neigh, sock, ifnames)
            for _, body in dump(sock, RTM_GETNEIGHTBL, bytes(4), seq=3):
                found = table_from_ndtmsg(body)
                if found is None or found[0] not in tables:
                    continue
                family, info = found
                reading = tables[family]
                reading.thresh.update({k: v for k, v in info["thresh"].items() if v is not None})
                reading.kernel_entries = info.get("entries")
                reading.stats = {k: v for k, v in info.get("stats", {}).items()
                                 if k in COUNTERS}
            gateways: frozenset[str] = frozenset()
            if bad:  # only then is it worth a route dump
                gateways = frozenset(self._gateways(sock))
        finally:
            sock.close()
        return NeighSample(tables=tables, bad=bad, bad_count=bad_count, gateways=gateways)

    def _dump_neigh(self, sock: socket.socket, ifnames: Mapping[int, str]
                    ) -> tuple[dict[str, TableReading], list[BadEntry], Counter]:
        tables = {family: TableReading(family=family, source="netlink RTM_GETNEIGH",
                                       states=Counter(), entries=0)
                  for family in FAMILIES.values()}
        bad: list[BadEntry] = []
        bad_count: Counter = Counter()
        request = _NDMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0, 0)
        for _, body in dump(sock, RTM_GETNEIGH, request, seq=2):
            entry = entry_from_ndmsg(body)
            if entry is None:
                continue
            family, ifindex, dst = entry.family, entry.ifindex, entry.address
            reading = tables[family]
            reading.entries = (reading.entries or 0) + 1
            name = state_name(entry.state)
            if name is not None and reading.states is not None:
                reading.states[name] += 1
            if name in ("incomplete", "failed") and dst is not None:
                bad_count[family] += 1
                if len(bad) < MAX_ENTRIES:
                    bad.append(BadEntry(family=family, address=dst,
                                        ifname=ifnames.get(ifindex, str(ifindex)),
                                        ifindex=ifindex, state=name,
                                        used_age_s=entry.used_age_s,
                                        updated_age_s=entry.updated_age_s))
        return tables, bad, bad_count

    def _gateways(self, sock: socket.socket) -> set[str]:
        gateways = set()
        for seq, family in ((4, socket.AF_INET), (5, socket.AF_INET6)):
            try:
                routes, _ = _retrying(dump_routes, sock, family, seq)
            except (OSError, DumpInterrupted) as err:
                self.warn(f"default gateways not read: {err}")
                continue
            gateways |= {hop.gateway for r in routes if r.is_default
                         for hop in r.nexthops if hop.gateway}
        return gateways

    def _sample_files(self, ctx: ProbeContext) -> NeighSample:
        arp_path = ctx.net("arp")
        arp_text = ctx.read_optional(arp_path)
        tables: dict[str, TableReading] = {}
        bad: list[BadEntry] = []
        bad_count: Counter = Counter()
        if arp_text is not None:
            rows = parse_proc_net_arp(arp_text, str(arp_path))
            unresolved = [r for r in rows if not r[1] & ATF_COM]
            tables["ipv4"] = TableReading(
                family="ipv4", source=str(arp_path), entries=len(rows),
                states=Counter(incomplete=len(unresolved),
                               permanent=sum(1 for r in rows if r[1] & ATF_PERM)),
                known_states=("incomplete", "permanent"))
            bad_count["ipv4"] = len(unresolved)
            bad = [BadEntry(family="ipv4", address=a, ifname=dev, ifindex=None,
                            state="incomplete") for a, _, dev in unresolved[:MAX_ENTRIES]]
        for family, table in TABLES.items():
            stat_path = ctx.net("stat", table)
            if family not in tables and stat_path.exists():
                tables[family] = TableReading(family=family, source=str(stat_path))
        if not tables:
            raise Unavailable(f"neither {arp_path} nor {ctx.proc('net', 'stat')}/"
                              "{arp,ndisc}_cache is in the captured tree")
        return NeighSample(tables=tables, bad=bad, bad_count=bad_count)

    def facts(self, ctx: ProbeContext, first: Optional[NeighSample], last: NeighSample,
              elapsed_s: Optional[float]) -> list[Fact]:
        return [*table_facts(first, last, elapsed_s), *entry_facts(last)]
