"""Queueing disciplines and HTB classes: what `tc -s -d qdisc` / `tc -s -d class` show.

One RTM_GETQDISC dump for every interface, one RTM_GETTCLASS dump per interface
that has an HTB qdisc (the kernel dumps classes of one device at a time).
Statistics come from TCA_STATS2 (gnet_stats_basic + gnet_stats_queue + the
kind's TCA_STATS_APP), parameters from TCA_OPTIONS (KNOWLEDGE.md §2.5, §2.13).
"""
from __future__ import annotations

import struct
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from sysdiag.facts import Fact, Qdisc, TcClass

from ..base import Probe, ProbeContext, pct, rate
from ..drop_summary import drop_summary
from ..parse import ParseError
from ..registry import register_probe
from .links import RTM_GETLINK, link_names
from .nldump import NETLINK_ROUTE, attr_map, attr_str, dump_all, open_netlink
from .rtnl import TC_H_ROOT, format_handle, format_parent, require_live

#: qdiscs whose counters are the sums of their children's
SUMS = ("mq", "mqprio")

#: counters that are u32 in the kernel structs (they wrap); sent_bytes is u64
U32_COUNTERS = frozenset({"sent_packets", "dropped", "overlimits", "requeues",
                          "direct_packets", "lended", "borrowed", "giants"})
QDISC_COUNTERS = ("sent_bytes", "sent_packets", "dropped", "overlimits", "requeues",
                  "direct_packets")
CLASS_COUNTERS = ("sent_bytes", "sent_packets", "dropped", "overlimits", "lended",
                  "borrowed", "giants")

#: scheduler ticks per microsecond: PSCHED_SHIFT is 6 (one tick = 64 ns) since 2.6.31
DEFAULT_TICKS_PER_US = 1000 / 64

TCA_STATS_PKT64 = 8  # u64 packet count once it no longer fits TCA_STATS_BASIC's u32
TCA_TBF_RATE64 = 4  # u64 rate in bytes/s once it no longer fits tc_ratespec's u32


@dataclass(frozen=True)
class TcReading:
    """One qdisc or class as read at one moment."""

    ifindex: int
    handle: int
    parent: int
    kind: str
    counters: Mapping[str, int] = field(default_factory=dict)
    #: gauges and parameters (backlog, tokens, rates, limits)
    values: Mapping[str, int] = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, int, int, str]:
        return (self.ifindex, self.handle, self.parent, self.kind)


def parse_psched(text: Optional[str]) -> float:
    """Scheduler ticks per microsecond from /proc/net/psched, the way tc computes it.

    >>> parse_psched("000003e8 00000040 000f4240 3b9aca00")
    15.625
    """
    if text is None:
        return DEFAULT_TICKS_PER_US
    try:
        t2us, us2t, clock_res = (int(x, 16) for x in text.split()[:3])
    except ValueError:
        raise ParseError("/proc/net/psched",
                         f"expected 4 hex numbers, got {text.strip()[:60]!r}") from None
    if us2t == 0 or clock_res == 0:
        raise ParseError("/proc/net/psched", f"zero divisor in {text.strip()[:60]!r}")
    if clock_res == 1_000_000_000:  # iproute2's compatibility rule for ns-resolution kernels
        t2us = us2t
    return t2us / us2t * (clock_res / 1_000_000)


#: struct tcmsg: family, (pad), ifindex, handle, parent, info
_TCMSG = struct.Struct("=BxxxiIII")
RTM_GETQDISC, RTM_GETTCLASS = 38, 42
# attribute types (include/uapi/linux/rtnetlink.h, gen_stats.h, pkt_sched.h)
TCA_KIND, TCA_OPTIONS, TCA_STATS, TCA_STATS2 = 1, 2, 3, 7
TCA_STATS_BASIC, TCA_STATS_QUEUE, TCA_STATS_APP = 1, 3, 4
TCA_TBF_PARMS = 1
TCA_HTB_PARMS, TCA_HTB_INIT, TCA_HTB_RATE64, TCA_HTB_CEIL64 = 1, 2, 6, 7
#: fq_codel and codel number these alike
CODEL_ATTRS = {1: "target_us", 2: "limit_packets", 3: "interval_us"}

_BASIC = struct.Struct("=QI")  # gnet_stats_basic: bytes, packets
_QUEUE = struct.Struct("=5I")  # gnet_stats_queue: qlen, backlog, drops, requeues, overlimits
_OLD_STATS = struct.Struct("=Q7I")  # tc_stats: bytes, packets, drops, overlimits, bps, pps,
#                                      qlen, backlog
#: tc_tbf_qopt: rate (tc_ratespec, its u32 rate at offset 8), peakrate, limit, buffer, mtu
_TBF_QOPT = struct.Struct("=8xI12xII")
_HTB_GLOB = struct.Struct("=8xI4xI")  # tc_htb_glob: version, rate2quantum, defcls, debug,
#                                       direct_pkts
#: tc_htb_opt: rate and ceil (tc_ratespec each), buffer, cbuffer, quantum, level, prio
_HTB_OPT = struct.Struct("=8xI8xI12xII")
_HTB_XSTATS = struct.Struct("=IIIii")  # tc_htb_xstats: lends, borrows, giants, tokens, ctokens


def _u64(payload: Optional[bytes]) -> Optional[int]:
    if payload is None or len(payload) < 8:
        return None
    return struct.unpack_from("=Q", payload)[0]


def _unpack(layout: struct.Struct, payload: Optional[bytes]) -> Optional[tuple]:
    """The struct's fields, or None when the attribute is missing or too short."""
    if payload is None or len(payload) < layout.size:
        return None
    return layout.unpack_from(payload)


def _stats(attrs: Mapping[int, bytes]) -> tuple[dict[str, int], dict[str, int],
                                                 Optional[bytes]]:
    """(counters, gauges, the TCA_STATS_APP payload) from TCA_STATS2, or TCA_STATS."""
    counters: dict[str, int] = {}
    gauges: dict[str, int] = {}
    if TCA_STATS2 in attrs:
        stats2 = attr_map(attrs[TCA_STATS2])
        basic = _unpack(_BASIC, stats2.get(TCA_STATS_BASIC))
        if basic is not None:
            counters["sent_bytes"], counters["sent_packets"] = basic
        pkt64 = _u64(stats2.get(TCA_STATS_PKT64))
        if pkt64 is not None:
            counters["sent_packets"] = pkt64
        queue = _unpack(_QUEUE, stats2.get(TCA_STATS_QUEUE))
        if queue is not None:
            qlen, backlog, drops, requeues, overlimits = queue
            counters.update(dropped=drops, overlimits=overlimits, requeues=requeues)
            gauges.update(backlog_bytes=backlog, backlog_packets=qlen)
        return counters, gauges, stats2.get(TCA_STATS_APP)
    old = _unpack(_OLD_STATS, attrs.get(TCA_STATS))  # kernels before 2.6.x STATS2
    if old is not None:
        sent_bytes, packets, drops, overlimits, _, _, qlen, backlog = old
        counters.update(sent_bytes=sent_bytes, sent_packets=packets, dropped=drops,
                        overlimits=overlimits)
        gauges.update(backlog_bytes=backlog, backlog_packets=qlen)
    return counters, gauges, None


def _qdisc_params(kind: str, options: Optional[bytes],
                  ticks_per_us: float) -> tuple[dict[str, int], dict[str, int]]:
    """(parameters, counters) from a qdisc's TCA_OPTIONS payload."""
    params: dict[str, int] = {}
    counters: dict[str, int] = {}
    if options is None:
        return params, counters
    if kind == "tbf":
        nested = attr_map(options)
        parms = _unpack(_TBF_QOPT, nested.get(TCA_TBF_PARMS))
        if parms is not None:
            rate32, limit, buffer = parms
            rate_bytes = _u64(nested.get(TCA_TBF_RATE64)) or rate32
            params["rate_bps"] = rate_bytes * 8
            params["limit_bytes"] = limit
            # `buffer` is the bucket as transmit time at `rate`, in scheduler ticks
            params["burst_bytes"] = round(rate_bytes * buffer / ticks_per_us / 1e6)
    elif kind == "htb":
        init = _unpack(_HTB_GLOB, attr_map(options).get(TCA_HTB_INIT))
        if init is not None:
            params["default_class_minor"], counters["direct_packets"] = init
    elif kind in ("fq_codel", "codel"):
        for attr_type, payload in attr_map(options).items():
            if attr_type in CODEL_ATTRS and len(payload) >= 4:
                params[CODEL_ATTRS[attr_type]] = struct.unpack_from("=I", payload)[0]
    elif kind in ("pfifo", "bfifo", "pfifo_head_drop"):
        if len(options) >= 4:  # struct tc_fifo_qopt { __u32 limit; }
            limit = struct.unpack_from("=I", options)[0]
            params["limit_bytes" if kind == "bfifo" else "limit_packets"] = limit
    return params, counters


def reading_from_tc_msg(body: bytes, ticks_per_us: float = DEFAULT_TICKS_PER_US,
                        is_class: bool = False) -> TcReading:
    """Turn one RTM_NEWQDISC (or, with is_class, RTM_NEWTCLASS) message, the bytes after
    struct nlmsghdr, into a reading."""
    source = "netlink RTM_GETTCLASS" if is_class else "netlink RTM_GETQDISC"
    if len(body) < _TCMSG.size:
        raise ParseError(source, f"message of {len(body)} bytes is shorter than struct tcmsg")
    _, ifindex, handle, parent, _ = _TCMSG.unpack_from(body)
    attrs = attr_map(body, _TCMSG.size)
    kind = attr_str(attrs.get(TCA_KIND))
    if not kind:
        raise ParseError(source, f"tc object {format_handle(handle)} on "
                                 f"ifindex {ifindex} has no TCA_KIND")
    counters, values, app = _stats(attrs)
    options = attrs.get(TCA_OPTIONS)
    if is_class and kind == "htb":
        nested = attr_map(options) if options is not None else {}
        parms = _unpack(_HTB_OPT, nested.get(TCA_HTB_PARMS))
        if parms is not None:
            rate32, ceil32, level, prio = parms
            rate_bytes = _u64(nested.get(TCA_HTB_RATE64)) or rate32
            ceil_bytes = _u64(nested.get(TCA_HTB_CEIL64)) or ceil32
            values.update(rate_bps=rate_bytes * 8, ceil_bps=ceil_bytes * 8, level=level,
                          prio=prio)
        xstats = _unpack(_HTB_XSTATS, app)
        if xstats is not None:
            lends, borrows, giants, tokens, ctokens = xstats
            counters.update(lended=lends, borrowed=borrows, giants=giants)
            # the kernel reports token levels in scheduler ticks
            values.update(tokens_us=round(tokens / ticks_per_us),
                          ctokens_us=round(ctokens / ticks_per_us))
    elif not is_class:
        params, extra = _qdisc_params(kind, options, ticks_per_us)
        values.update(params)
        counters.update(extra)
    return TcReading(ifindex=ifindex, handle=handle, parent=parent, kind=kind,
                     counters=counters, values=values)


def reading_from_tcmsg(msg: Any, ticks_per_us: float = DEFAULT_TICKS_PER_US,
                       is_class: bool = False) -> TcReading:
    """A message pyroute2 decoded (tcmsg: the tests' captured kernel messages) or built in
    memory (encoded first), through the same decoder as the live dump."""
    if not (msg.get("header") or {}).get("length"):
        msg.encode()
    length = msg["header"]["length"]
    return reading_from_tc_msg(bytes(msg.data[msg.offset + 16: msg.offset + length]),
                               ticks_per_us, is_class)


def _rates(before: Optional[TcReading], now: TcReading, names: tuple[str, ...],
           elapsed_s: Optional[float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        total = now.counters.get(name)
        out[f"{name}_total"] = total
        value = None
        if before is not None:
            value = rate(before.counters.get(name), total, elapsed_s,
                         wraps_at=1 << 32 if name in U32_COUNTERS else None)
        out[f"{name}_per_s"] = None if value is None else round(value, 3)
    return out


def _bits_pct(bytes_per_s: Optional[float], bits: Optional[int]) -> Optional[float]:
    return pct(None if bytes_per_s is None else bytes_per_s * 8, bits)


def qdisc_facts(first: Optional[Mapping[tuple, TcReading]], last: Mapping[tuple, TcReading],
                ifnames: Mapping[int, str], elapsed_s: Optional[float],
                source: str = "netlink RTM_GETQDISC") -> list[Qdisc]:
    facts = []
    for key, now in sorted(last.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        before = (first or {}).get(key)
        counts = _rates(before, now, QDISC_COUNTERS, elapsed_s)
        v = now.values
        facts.append(Qdisc(
            source=source, ifname=ifnames.get(now.ifindex, f"ifindex{now.ifindex}"),
            ifindex=now.ifindex, qdisc_kind=now.kind, handle=format_handle(now.handle),
            parent=format_parent(now.parent), root=now.parent == TC_H_ROOT,
            backlog_bytes=v.get("backlog_bytes"), backlog_packets=v.get("backlog_packets"),
            rate_bps=v.get("rate_bps"), burst_bytes=v.get("burst_bytes"),
            limit_bytes=v.get("limit_bytes"), limit_packets=v.get("limit_packets"),
            target_us=v.get("target_us"), interval_us=v.get("interval_us"),
            default_class_minor=v.get("default_class_minor"),
            default_class=(format_handle(now.handle & 0xFFFF0000 | v["default_class_minor"])
                           if v.get("default_class_minor") else None),
            rate_used_pct=_bits_pct(counts["sent_bytes_per_s"], v.get("rate_bps")),
            **counts,
        ))
    return facts


def class_facts(first: Optional[Mapping[tuple, TcReading]], last: Mapping[tuple, TcReading],
                ifnames: Mapping[int, str], elapsed_s: Optional[float],
                source: str = "netlink RTM_GETTCLASS") -> list[TcClass]:
    facts = []
    for key, now in sorted(last.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        before = (first or {}).get(key)
        counts = _rates(before, now, CLASS_COUNTERS, elapsed_s)
        counts.pop("giants_per_s")
        v = now.values
        facts.append(TcClass(
            source=source, ifname=ifnames.get(now.ifindex, f"ifindex{now.ifindex}"),
            ifindex=now.ifindex, class_kind=now.kind, classid=format_handle(now.handle),
            parent=format_parent(now.parent), level=v.get("level"), prio=v.get("prio"),
            rate_bps=v.get("rate_bps"), ceil_bps=v.get("ceil_bps"),
            rate_used_pct=_bits_pct(counts["sent_bytes_per_s"], v.get("rate_bps")),
            ceil_used_pct=_bits_pct(counts["sent_bytes_per_s"], v.get("ceil_bps")),
            tokens_us=v.get("tokens_us"), ctokens_us=v.get("ctokens_us"),
            backlog_bytes=v.get("backlog_bytes"), backlog_packets=v.get("backlog_packets"),
            **counts,
        ))
    return facts


@dataclass(frozen=True)
class TcSample:
    ifnames: Mapping[int, str]
    qdiscs: Mapping[tuple, TcReading]
    classes: Mapping[tuple, TcReading]


@register_probe
class QdiscsProbe(Probe):
    name = "qdiscs"
    provides = ("qdisc", "tc_class", "drop_counters")
    description = ("qdiscs and HTB classes with sent/dropped/overlimits/requeues, backlog "
                   "and shaping parameters (netlink, like tc -s -d qdisc/class)")
    timeout_s = 5.0
    netns_scoped = True

    def __init__(self, netns: Optional[str] = None) -> None:
        super().__init__()
        #: a named namespace (/run/netns/NAME) to read instead of the current one
        self.netns = netns

    def check(self, ctx: ProbeContext) -> None:
        super().check(ctx)
        require_live(ctx)

    def sample(self, ctx: ProbeContext) -> TcSample:
        require_live(ctx)
        ticks_per_us = parse_psched(ctx.read_optional(ctx.net("psched")))
        sock = open_netlink(NETLINK_ROUTE, self.netns)
        with closing(sock):
            ifnames = link_names(dump_all(sock, RTM_GETLINK, bytes(16)))
            qdiscs = {}
            for body in dump_all(sock, RTM_GETQDISC, _TCMSG.pack(0, 0, 0, 0, 0)):
                reading = reading_from_tc_msg(body, ticks_per_us)
                qdiscs[reading.key] = reading
            classes = {}
            for ifindex in sorted({r.ifindex for r in qdiscs.values() if r.kind == "htb"}):
                for body in dump_all(sock, RTM_GETTCLASS, _TCMSG.pack(0, ifindex, 0, 0, 0)):
                    reading = reading_from_tc_msg(body, ticks_per_us, is_class=True)
                    if reading.kind == "htb":
                        classes[reading.key] = reading
        return TcSample(ifnames=ifnames, qdiscs=qdiscs, classes=classes)

    def facts(self, ctx: ProbeContext, first: Optional[TcSample], last: TcSample,
              elapsed_s: Optional[float]) -> list[Fact]:
        out: list[Fact] = []
        out.extend(qdisc_facts(first.qdiscs if first else None, last.qdiscs, last.ifnames,
                               elapsed_s))
        out.extend(class_facts(first.classes if first else None, last.classes, last.ifnames,
                               elapsed_s))
        out = [f for f in out if ctx.wants_iface(f.ifname)]  # --iface
        # mq/mqprio report the sum of their per-queue children, which report themselves
        summary = drop_summary(
            "qdiscs", [f for f in out if isinstance(f, Qdisc) and f.qdisc_kind not in SUMS],
            ("dropped_per_s",), lambda f: f"dev {f.ifname} qdisc {f.qdisc_kind} {f.handle}",
            "qdiscs probe")
        return [*out, summary] if summary else out
