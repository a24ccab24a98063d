"""Network interfaces: type, state, queueing and the counters of `ip -s -s link`.

Live: one RTM_GETLINK dump (IFLA_STATS64, struct rtnl_link_stats64) in the probed
namespace, plus speed/duplex from /sys/class/net/IF. Captured tree: /proc/net/dev
and /sys/class/net/IF/{statistics/*,mtu,operstate,...}; /proc/net/dev folds some
counters together (KNOWLEDGE.md §2.4), so those are read from sysfs or left unknown.
"""
from __future__ import annotations

import errno
import os
import struct
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Optional

from sysdiag.facts import Fact, NetLink

from ..base import Probe, ProbeContext, pct, rate
from ..drop_summary import drop_summary
from ..parse import ParseError, to_int
from ..registry import register_probe
from .nldump import (NETLINK_ROUTE, attr_map, attr_str, attr_u32, dump_all, iter_attrs,
                     open_netlink)
from .rtnl import unpack_u64s

#: the link counters derive-drop-site.yaml reads (nic-ring, link-errors, link-*-dropped)
LINK_DROP_RATES = ("rx_missed_errors_per_s", "rx_fifo_errors_per_s", "rx_over_errors_per_s",
                   "rx_crc_errors_per_s", "rx_frame_errors_per_s", "rx_length_errors_per_s",
                   "rx_dropped_per_s", "tx_dropped_per_s")

#: the counters a NetLink fact reports, each as <name>_total and <name>_per_s
LINK_COUNTERS = (
    "rx_bytes", "tx_bytes", "rx_packets", "tx_packets",
    "rx_errors", "rx_dropped", "rx_missed_errors", "rx_fifo_errors", "rx_over_errors",
    "rx_crc_errors", "rx_frame_errors", "rx_length_errors", "rx_nohandler",
    "tx_errors", "tx_dropped", "tx_carrier_errors", "collisions", "carrier_changes",
)
#: counters the kernel keeps as u32 (the rest are u64)
U32_COUNTERS = frozenset({"carrier_changes"})

#: struct rtnl_link_stats64 (include/uapi/linux/if_link.h), in order; older kernels
#: stop after tx_compressed (23 fields) or rx_nohandler (24)
STATS64_FIELDS = (
    "rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_errors", "tx_errors",
    "rx_dropped", "tx_dropped", "multicast", "collisions", "rx_length_errors",
    "rx_over_errors", "rx_crc_errors", "rx_frame_errors", "rx_fifo_errors",
    "rx_missed_errors", "tx_aborted_errors", "tx_carrier_errors", "tx_fifo_errors",
    "tx_heartbeat_errors", "tx_window_errors", "rx_compressed", "tx_compressed",
    "rx_nohandler", "rx_otherhost_dropped",
)

#: /proc/net/dev columns after "IF:" (net/core/net-procfs.c dev_seq_printf_stats)
PROC_NET_DEV_COLUMNS = (
    "rx_bytes", "rx_packets", "rx_errs", "rx_drop", "rx_fifo", "rx_frame", "rx_compressed",
    "rx_multicast", "tx_bytes", "tx_packets", "tx_errs", "tx_drop", "tx_fifo", "tx_colls",
    "tx_carrier", "tx_compressed",
)
#: /proc/net/dev columns that are one kernel counter each. The others are sums:
#: drop = rx_dropped + rx_missed_errors, frame = length + over + crc + frame,
#: carrier = carrier + aborted + window + heartbeat.
PROC_NET_DEV_EXACT = {
    "rx_bytes": "rx_bytes", "rx_packets": "rx_packets", "rx_errs": "rx_errors",
    "rx_fifo": "rx_fifo_errors", "tx_bytes": "tx_bytes", "tx_packets": "tx_packets",
    "tx_errs": "tx_errors", "tx_drop": "tx_dropped", "tx_colls": "collisions",
}

ARPHRD_LOOPBACK = 772
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")


@dataclass(frozen=True)
class LinkReading:
    """One interface as read at one moment."""

    ifname: str
    source: str
    ifindex: Optional[int] = None
    link_kind: str = "unknown"
    operstate: Optional[str] = None
    carrier: Optional[bool] = None
    admin_up: Optional[bool] = None
    mtu: Optional[int] = None
    tx_queue_len: Optional[int] = None
    qdisc: Optional[str] = None
    master: Optional[str] = None
    master_ifindex: Optional[int] = None
    link_ifindex: Optional[int] = None
    peer_netnsid: Optional[int] = None
    speed_mbps: Optional[int] = None
    duplex: Optional[str] = None
    counters: Mapping[str, int] = field(default_factory=dict)


def classify(info_kind: Optional[str], ifi_type: Optional[int], flags: Optional[int],
             has_device: Optional[bool]) -> str:
    """The interface's kind: the rtnl link kind when it has one, else loopback/physical."""
    if info_kind:
        return info_kind
    if ifi_type == ARPHRD_LOOPBACK or (flags is not None and flags & IFF_LOOPBACK):
        return "loopback"
    if has_device:
        return "physical"
    return "unknown"


def normalize_operstate(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    state = value.strip().lower()
    return state if state in OPERSTATES else "unknown"


#: struct ifinfomsg: family, (pad), type, index, flags, change
_IFINFOMSG = struct.Struct("=BxHiII")
# attribute types (include/uapi/linux/if_link.h)
IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_QDISC, IFLA_MASTER, IFLA_TXQLEN = 3, 4, 5, 6, 10, 13
IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_STATS64, IFLA_CARRIER = 16, 18, 23, 33
IFLA_CARRIER_CHANGES, IFLA_LINK_NETNSID, IFLA_PARENT_DEV_NAME = 35, 37, 56
IFLA_INFO_KIND = 1  # inside IFLA_LINKINFO
RTM_GETLINK = 18


def reading_from_link_msg(body: bytes, source: str = "netlink RTM_GETLINK") -> LinkReading:
    """Turn one RTM_NEWLINK message (the bytes after struct nlmsghdr) into a LinkReading."""
    if len(body) < _IFINFOMSG.size:
        raise ParseError(source, f"RTM_NEWLINK of {len(body)} bytes is shorter than "
                                 "struct ifinfomsg")
    _, ifi_type, index, flags, _ = _IFINFOMSG.unpack_from(body)
    attrs = attr_map(body, _IFINFOMSG.size)
    ifname = attr_str(attrs.get(IFLA_IFNAME))
    if not ifname:
        raise ParseError(source, f"link with index {index} has no IFLA_IFNAME")
    stats = attrs.get(IFLA_STATS64)
    counters = ({k: v for k, v in unpack_u64s(stats, STATS64_FIELDS).items()
                 if k in LINK_COUNTERS} if stats is not None else {})
    carrier_changes = attr_u32(attrs.get(IFLA_CARRIER_CHANGES))
    if carrier_changes is not None:
        counters["carrier_changes"] = carrier_changes
    linkinfo = attrs.get(IFLA_LINKINFO)
    info_kind = attr_str(attr_map(linkinfo).get(IFLA_INFO_KIND)) if linkinfo else None
    operstate = attrs.get(IFLA_OPERSTATE)
    carrier = attrs.get(IFLA_CARRIER)
    netnsid = attrs.get(IFLA_LINK_NETNSID)
    return LinkReading(
        ifname=ifname,
        source=source,
        ifindex=index,
        # IFLA_PARENT_DEV_NAME (5.17+) names the bus device behind a physical interface;
        # without it the probe looks for /sys/class/net/IF/device
        link_kind=classify(info_kind, ifi_type, flags,
                           True if attr_str(attrs.get(IFLA_PARENT_DEV_NAME)) else None),
        operstate=(OPERSTATES[operstate[0]] if operstate and operstate[0] < len(OPERSTATES)
                   else "unknown" if operstate else None),
        carrier=bool(carrier[0]) if carrier else None,
        admin_up=bool(flags & IFF_UP),
        mtu=attr_u32(attrs.get(IFLA_MTU)),
        tx_queue_len=attr_u32(attrs.get(IFLA_TXQLEN)),
        qdisc=attr_str(attrs.get(IFLA_QDISC)),
        master_ifindex=attr_u32(attrs.get(IFLA_MASTER)) or None,
        link_ifindex=attr_u32(attrs.get(IFLA_LINK)) or None,
        # s32 in the kernel (nla_put_s32)
        peer_netnsid=struct.unpack_from("=i", netnsid)[0] if netnsid and len(netnsid) >= 4
        else None,
        counters=counters,
    )


def dump_links(netns: Optional[str] = None) -> list[bytes]:
    """Every RTM_NEWLINK message of one dump in the current (or the named) namespace."""
    sock = open_netlink(NETLINK_ROUTE, netns)
    with closing(sock):
        return dump_all(sock, RTM_GETLINK, _IFINFOMSG.pack(0, 0, 0, 0, 0))


def link_names(messages: list[bytes]) -> dict[int, str]:
    """ifindex -> name from RTM_NEWLINK messages (only the header and IFLA_IFNAME read)."""
    names = {}
    for body in messages:
        if len(body) < _IFINFOMSG.size:
            continue
        index = _IFINFOMSG.unpack_from(body)[2]
        for kind, payload in iter_attrs(body, _IFINFOMSG.size):
            if kind == IFLA_IFNAME:
                names[index] = attr_str(payload) or f"ifindex{index}"
                break
    return names


def reading_from_ifinfmsg(msg: Any, source: str = "netlink RTM_GETLINK") -> LinkReading:
    """A message pyroute2 decoded (ifinfmsg: the tests' captured kernel messages) or built
    in memory, through the same decoder as the live dump."""
    length = (msg.get("header") or {}).get("length")
    if length:  # decoded from bytes: decode those bytes here
        return reading_from_link_msg(bytes(msg.data[msg.offset + 16: msg.offset + length]),
                                     source)
    # built in memory: encode a copy without IFLA_STATS64 (pyroute2 would fill the stats
    # fields not given with zeros) and take the given stats fields as they are
    copy = type(msg)()
    for key in ("family", "ifi_type", "index", "flags", "change"):
        copy[key] = msg.get(key) or 0
    copy["attrs"] = [a for a in msg.get("attrs", ()) if a[0] != "IFLA_STATS64"]
    copy.encode()
    reading = reading_from_link_msg(bytes(copy.data[16:]), source)
    stats = {k: v for k, v in (msg.get_attr("IFLA_STATS64") or {}).items()
             if k in LINK_COUNTERS}
    return replace(reading, counters={**reading.counters, **stats}) if stats else reading


def parse_proc_net_dev(text: str, source: str = "/proc/net/dev") -> dict[str, dict[str, int]]:
    """Parse /proc/net/dev: interface -> its 16 columns (names in PROC_NET_DEV_COLUMNS).

    >>> parse_proc_net_dev('''Inter-|   Receive |  Transmit
    ...  face |bytes    packets errs drop fifo frame compressed multicast|bytes ...
    ...     lo: 3245 30 0 0 0 0 0 0 3245 30 0 0 0 0 0 0
    ... ''')["lo"]["rx_packets"]
    30
    """
    lines = text.splitlines()
    if len(lines) < 2 or "|" not in lines[0] or "|" not in lines[1]:
        raise ParseError(source, "expected two header lines ('Inter-|   Receive ...'); "
                                 "is this /proc/net/dev?")
    rows: dict[str, dict[str, int]] = {}
    for number, line in enumerate(lines[2:], start=3):
        if not line.strip():
            continue
        name, colon, rest = line.partition(":")
        values = rest.split()
        if not colon or len(values) != len(PROC_NET_DEV_COLUMNS):
            raise ParseError(source, f"line {number}: expected 'IF: ' and "
                                     f"{len(PROC_NET_DEV_COLUMNS)} numbers, "
                                     f"got {line.strip()[:80]!r}")
        rows[name.strip()] = {col: to_int(value, source, f"line {number} {col}")
                              for col, value in zip(PROC_NET_DEV_COLUMNS, values)}
    return rows


def counters_from_proc_net_dev(row: Mapping[str, int]) -> dict[str, int]:
    """The LINK_COUNTERS that /proc/net/dev reports unfolded."""
    return {counter: row[col] for col, counter in PROC_NET_DEV_EXACT.items() if col in row}


def _read_attr(ctx: ProbeContext, path: Path) -> Optional[str]:
    """One sysfs attribute, stripped; None when missing or refused (EINVAL: a link that is
    down has no speed/duplex/carrier to report)."""
    try:
        text = ctx.read_optional(path)
    except OSError as err:
        if err.errno in (errno.EINVAL, errno.ENODEV, errno.EOPNOTSUPP):
            return None
        raise
    if text is None:
        return None
    return text.strip()


def _attr_int(ctx: ProbeContext, base: Path, name: str, base16: bool = False) -> Optional[int]:
    text = _read_attr(ctx, base / name)
    if text is None or text == "":
        return None
    try:
        return int(text, 16 if base16 else 10)
    except ValueError:
        raise ParseError(str(base / name), f"expected a number, got {text[:40]!r}") from None


def parse_speed(text: Optional[str]) -> Optional[int]:
    """/sys/class/net/IF/speed in Mb/s; -1 and unknown values are None."""
    if text is None or not text.strip():
        return None
    try:
        value = int(text.strip())
    except ValueError:
        return None
    # SPEED_UNKNOWN is -1; some drivers print it as an unsigned 4294967295
    return value if 0 < value < 0xFFFFFFFF else None


def parse_duplex(text: Optional[str]) -> Optional[str]:
    value = (text or "").strip().lower()
    return value if value in ("full", "half") else None


def sysfs_link_extras(ctx: ProbeContext, ifname: str,
                      ifindex: Optional[int]) -> dict[str, Any]:
    """speed, duplex and whether a device backs the interface, from /sys/class/net/IF.
    Empty when sysfs shows another namespace's interface under that name."""
    base = ctx.sys("class", "net", ifname)
    if not os.path.isdir(base):
        return {}
    if ifindex is not None and _attr_int(ctx, base, "ifindex") not in (None, ifindex):
        return {}  # /sys belongs to another network namespace
    return {
        "speed_mbps": parse_speed(_read_attr(ctx, base / "speed")),
        "duplex": parse_duplex(_read_attr(ctx, base / "duplex")),
        "has_device": os.path.lexists(base / "device"),
    }


def _sysfs_kind(ctx: ProbeContext, base: Path, ifi_type: Optional[int],
                flags: Optional[int]) -> str:
    """The interface kind from sysfs alone (captured trees have no rtnl link kind)."""
    uevent = _read_attr(ctx, base / "uevent") or ""
    for line in uevent.splitlines():
        if line.startswith("DEVTYPE="):
            return line.split("=", 1)[1].strip() or "unknown"
    if os.path.isdir(base / "bridge"):
        return "bridge"
    if os.path.isdir(base / "bonding"):
        return "bond"
    if os.path.lexists(base / "tun_flags"):
        return "tun"
    return classify(None, ifi_type, flags, os.path.lexists(base / "device"))


def read_sysfs_link(ctx: ProbeContext, ifname: str,
                    net_dev_row: Optional[Mapping[str, int]]) -> LinkReading:
    """One interface from a captured tree: /sys/class/net/IF and its /proc/net/dev row."""
    base = ctx.sys("class", "net", ifname)
    counters: dict[str, int] = {}
    source = str(ctx.net("dev"))
    if net_dev_row is not None:
        counters.update(counters_from_proc_net_dev(net_dev_row))
    if not os.path.isdir(base):
        return LinkReading(ifname=ifname, source=source, counters=counters)
    stats_dir = base / "statistics"
    if os.path.isdir(stats_dir):
        source = str(stats_dir)
        for name in LINK_COUNTERS:
            if name != "carrier_changes":
                value = _attr_int(ctx, stats_dir, name)
                if value is not None:
                    counters[name] = value
    carrier_changes = _attr_int(ctx, base, "carrier_changes")
    if carrier_changes is not None:
        counters["carrier_changes"] = carrier_changes
    ifindex = _attr_int(ctx, base, "ifindex")
    iflink = _attr_int(ctx, base, "iflink")
    flags = _attr_int(ctx, base, "flags", base16=True)
    carrier = _attr_int(ctx, base, "carrier")
    master = None
    if os.path.islink(base / "master"):
        master = os.path.basename(os.readlink(base / "master"))
    return LinkReading(
        ifname=ifname,
        source=source,
        ifindex=ifindex,
        link_kind=_sysfs_kind(ctx, base, _attr_int(ctx, base, "type"), flags),
        operstate=normalize_operstate(_read_attr(ctx, base / "operstate")),
        carrier=None if carrier is None else bool(carrier),
        admin_up=None if flags is None else bool(flags & IFF_UP),
        mtu=_attr_int(ctx, base, "mtu"),
        tx_queue_len=_attr_int(ctx, base, "tx_queue_len"),
        master=master,
        # iflink == ifindex for an interface with no parent or peer
        link_ifindex=iflink if iflink not in (None, 0, ifindex) else None,
        speed_mbps=parse_speed(_read_attr(ctx, base / "speed")),
        duplex=parse_duplex(_read_attr(ctx, base / "duplex")),
        counters=counters,
    )


def link_facts(first: Optional[Mapping[str, LinkReading]], last: Mapping[str, LinkReading],
               elapsed_s: Optional[float]) -> list[NetLink]:
    """NetLink facts from readings keyed by ifname; rates where both samples saw the same
    interface (same ifindex: a recreated interface restarts its counters)."""
    names = {r.ifindex: r.ifname for r in last.values() if r.ifindex is not None}
    facts = []
    for ifname, now in sorted(last.items()):
        before = (first or {}).get(ifname)
        if before is not None and before.ifindex != now.ifindex:
            before = None
        values: dict[str, Any] = {}
        for counter in LINK_COUNTERS:
            total = now.counters.get(counter)
            values[f"{counter}_total"] = total
            values[f"{counter}_per_s"] = None if before is None else _round(rate(
                before.counters.get(counter), total, elapsed_s,
                wraps_at=1 << 32 if counter in U32_COUNTERS else None))
        speed_bits = now.speed_mbps * 1_000_000 if now.speed_mbps else None
        for way in ("rx", "tx"):
            per_s = values[f"{way}_bytes_per_s"]
            values[f"{way}_util_pct"] = pct(None if per_s is None else per_s * 8, speed_bits)
        facts.append(NetLink(
            source=now.source,
            ifname=ifname,
            ifindex=now.ifindex,
            link_kind=now.link_kind,
            operstate=now.operstate,
            carrier=now.carrier,
            admin_up=now.admin_up,
            mtu=now.mtu,
            tx_queue_len=now.tx_queue_len,
            qdisc=now.qdisc,
            master=now.master or names.get(now.master_ifindex),
            master_ifindex=now.master_ifindex,
            link_ifindex=now.link_ifindex,
            link_ifname=names.get(now.link_ifindex) if now.peer_netnsid is None else None,
            peer_netnsid=now.peer_netnsid,
            speed_mbps=now.speed_mbps,
            duplex=now.duplex,
            **values,
        ))
    return facts


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 3)


@register_probe
class NetLinksProbe(Probe):
    name = "net-links"
    provides = ("net_link", "drop_counters")
    description = ("network interfaces: kind, state, MTU, qdisc, master/peer and the "
                   "packet, error and drop counters (netlink; /proc/net/dev + sysfs offline)")
    timeout_s = 5.0
    netns_scoped = True

    def __init__(self, netns: Optional[str] = None) -> None:
        super().__init__()
        #: a named namespace (/run/netns/NAME) to read instead of the current one
        self.netns = netns

    def sample(self, ctx: ProbeContext) -> dict[str, LinkReading]:
        if ctx.live:
            return self._sample_netlink(ctx)
        return self._sample_files(ctx)

    def _sample_netlink(self, ctx: ProbeContext) -> dict[str, LinkReading]:
        readings = {}
        for body in dump_links(self.netns):
            reading = reading_from_link_msg(body)
            # /sys/class/net shows the namespace sysfs was mounted in: only for our own
            if self.netns is None and not ctx.foreign_netns:
                extras = sysfs_link_extras(ctx, reading.ifname, reading.ifindex)
                kind = reading.link_kind
                if kind == "unknown" and extras.get("has_device"):
                    kind = "physical"
                reading = replace(reading, link_kind=kind, speed_mbps=extras.get("speed_mbps"),
                                  duplex=extras.get("duplex"))
            readings[reading.ifname] = reading
        return readings

    def _sample_files(self, ctx: ProbeContext) -> dict[str, LinkReading]:
        dev_path = ctx.net("dev")
        dev_text = ctx.read_optional(dev_path)
        rows = parse_proc_net_dev(dev_text, str(dev_path)) if dev_text is not None else {}
        class_net = ctx.sys("class", "net")
        in_sysfs = set(os.listdir(class_net)) if os.path.isdir(class_net) else set()
        if dev_text is None and not in_sysfs:
            raise FileNotFoundError(errno.ENOENT, "neither /proc/net/dev nor /sys/class/net "
                                    "in the captured tree", str(dev_path))
        readings = {}
        for ifname in sorted(set(rows) | in_sysfs):
            readings[ifname] = read_sysfs_link(ctx, ifname, rows.get(ifname))
        missing = sorted(set(rows) - in_sysfs)
        if missing and in_sysfs:
            self.warn(f"{class_net}: no entry for {', '.join(missing[:10])}; "
                      "their kind, state and error split are unknown")
        return readings

    def facts(self, ctx: ProbeContext, first: Optional[dict[str, LinkReading]],
              last: dict[str, LinkReading], elapsed_s: Optional[float]) -> list[Fact]:
        # relations are resolved over every link, then --iface keeps its own
        links = [f for f in link_facts(first, last, elapsed_s) if ctx.wants_iface(f.ifname)]
        summary = drop_summary("links", links, LINK_DROP_RATES, lambda f: f"dev {f.ifname}",
                               "net-links probe")
        return [*links, summary] if summary else links
