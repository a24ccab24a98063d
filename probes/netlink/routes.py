"""The main routing table: default routes, their gateways and devices (ip route).

Live: RTM_GETROUTE dumps per family (IPv4, IPv6), read as a stream (nldump.py) and
capped at MAX_ROUTES per family, since a router with a full table holds ~1M routes; the
table filter is applied by the kernel where it can (strict dump checking, 4.20+) and
again here. Captured tree: /proc/net/route (IPv4 main table, host-order hex) and
/proc/net/ipv6_route (every table: local and multicast routes and the kernel's null
entry are left out so the count matches the main table).

Counters of routing failures (Ip OutNoRoutes, IpExt InNoRoutes) are in `netstat`.
"""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from typing import Iterator, Optional

from sysdiag.facts import Fact, Routes

from ..base import Probe, ProbeContext, Unavailable
from ..parse import ParseError
from ..registry import register_probe
from .nldump import (NETLINK_ROUTE, DumpInterrupted, addr_str, attr_str, attr_u32, dump,
                     iter_attrs, open_netlink, set_strict)

RTM_GETLINK, RTM_GETROUTE = 18, 26
RT_TABLE_MAIN = 254
RTN_UNICAST, RTN_LOCAL, RTN_BROADCAST, RTN_ANYCAST, RTN_MULTICAST = 1, 2, 3, 4, 5
RTN_BLACKHOLE, RTN_UNREACHABLE, RTN_PROHIBIT = 6, 7, 8
REJECT_TYPES = (RTN_BLACKHOLE, RTN_UNREACHABLE, RTN_PROHIBIT)
RTNH_F_LINKDOWN = 0x10
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_MULTIPATH, RTA_TABLE, RTA_VIA = 1, 4, 5, 6, 9, 15, 18
IFLA_IFNAME = 3
#: routes decoded per family; the rest of a larger table is not counted (a warning says so)
MAX_ROUTES = 20000
DUMP_RETRIES = 3

_RTMSG = struct.Struct("=BBBBBBBBI")  # family dst_len src_len tos table protocol scope type flags
_RTNH = struct.Struct("=HBBi")  # rtnexthop: len flags hops ifindex

# /proc/net/route flags and /proc/net/ipv6_route RTF_* flags
RTF_GATEWAY = 0x2
RTF_REJECT = 0x200
RTF_ANYCAST = 0x100000
RTF_LOCAL = 0x80000000


@dataclass(frozen=True)
class Nexthop:
    gateway: Optional[str] = None
    oif: Optional[int] = None
    dev: Optional[str] = None  # captured trees name the device directly
    linkdown: Optional[bool] = None  # unknown in /proc/net/route


@dataclass(frozen=True)
class Route:
    family: int  # socket.AF_INET / AF_INET6
    dst_len: int
    table: int = RT_TABLE_MAIN
    type: int = RTN_UNICAST
    dst: Optional[str] = None
    priority: Optional[int] = None
    nexthops: tuple[Nexthop, ...] = field(default_factory=tuple)

    @property
    def is_default(self) -> bool:
        return self.dst_len == 0 and self.type == RTN_UNICAST


def route_from_rtmsg(body: bytes) -> Route:
    """Decode one RTM_NEWROUTE payload (struct rtmsg and its attributes)."""
    if len(body) < _RTMSG.size:
        raise ParseError("netlink RTM_GETROUTE", f"message of {len(body)} bytes is shorter "
                                                 "than struct rtmsg")
    family, dst_len, _, _, table, _, _, rtype, flags = _RTMSG.unpack_from(body)
    attrs = {}
    multipath: list[Nexthop] = []
    for kind, payload in iter_attrs(body, _RTMSG.size):
        if kind == RTA_MULTIPATH:
            multipath = list(_nexthops(family, payload))
        else:
            attrs.setdefault(kind, payload)
    table = attr_u32(attrs.get(RTA_TABLE)) or table
    gateway = addr_str(family, attrs.get(RTA_GATEWAY)) or _via(attrs.get(RTA_VIA))
    if not multipath and (gateway is not None or RTA_OIF in attrs):
        multipath = [Nexthop(gateway=gateway, oif=attr_u32(attrs.get(RTA_OIF)),
                             linkdown=bool(flags & RTNH_F_LINKDOWN))]
    return Route(family=family, dst_len=dst_len, table=table, type=rtype,
                 dst=addr_str(family, attrs.get(RTA_DST)),
                 priority=attr_u32(attrs.get(RTA_PRIORITY)), nexthops=tuple(multipath))


def _via(payload: Optional[bytes]) -> Optional[str]:
    """RTA_VIA (struct rtvia: u16 family, address): an IPv4 route via an IPv6 gateway."""
    if payload is None or len(payload) < 2:
        return None
    family = struct.unpack_from("=H", payload)[0]
    return addr_str(family, payload[2:])


def _nexthops(family: int, payload: bytes) -> Iterator[Nexthop]:
    offset = 0
    while offset + _RTNH.size <= len(payload):
        length, flags, _, ifindex = _RTNH.unpack_from(payload, offset)
        if length < _RTNH.size:
            break
        attrs = dict(iter_attrs(payload, offset + _RTNH.size, offset + length))
        yield Nexthop(gateway=addr_str(family, attrs.get(RTA_GATEWAY)), oif=ifindex,
                      linkdown=bool(flags & RTNH_F_LINKDOWN))
        offset += (length + 3) & ~3


def _hex_ipv4(value: str, source: str) -> str:
    try:
        # the kernel prints the network-order address as a host-order integer
        return socket.inet_ntoa(struct.pack("=I", int(value, 16)))
    except (ValueError, struct.error):
        raise ParseError(source, f"expected an 8-digit hex address, got {value[:20]!r}") from None


def parse_proc_net_route(text: str, source: str = "/proc/net/route") -> list[Route]:
    """IPv4 main-table routes from /proc/net/route.

    >>> r = parse_proc_net_route('''Iface\\tDestination\\tGateway \\tFlags\\tRefCnt\\tUse\\tMetric\\tMask
    ... eth0\\t00000000\\t010200C0\\t0003\\t0\\t0\\t0\\t00000000\\t0\\t0\\t0''')[0]
    >>> r.is_default, r.nexthops[0].gateway, r.nexthops[0].dev
    (True, '192.0.2.1', 'eth0')
    """
    lines = text.splitlines()
    if not lines or not lines[0].startswith("Iface"):
        raise ParseError(source, "expected a header line starting with 'Iface'")
    routes = []
    for number, line in enumerate(lines[1:], start=2):
        cols = line.split()
        if not cols:
            continue
        if len(cols) < 8:
            raise ParseError(source, f"line {number}: {len(cols)} columns, expected 11")
        try:
            flags, metric = int(cols[3], 16), int(cols[6])
            mask = int(cols[7], 16)
        except ValueError:
            raise ParseError(source, f"line {number}: bad number in {line.strip()[:80]!r}") \
                from None
        dst = _hex_ipv4(cols[1], source)
        gateway = _hex_ipv4(cols[2], source) if flags & RTF_GATEWAY else None
        rtype = RTN_UNREACHABLE if flags & RTF_REJECT else RTN_UNICAST
        routes.append(Route(family=socket.AF_INET, dst_len=bin(mask).count("1"), type=rtype,
                            dst=dst, priority=metric,
                            nexthops=(Nexthop(gateway=gateway, dev=cols[0]),)))
    return routes


def parse_ipv6_route(text: str, source: str = "/proc/net/ipv6_route") -> list[Route]:
    """IPv6 routes from /proc/net/ipv6_route, without local, anycast and multicast routes
    and the kernel's null entry (those live in the local table, not main).

    Columns: dst dst_len src src_len nexthop metric refcnt use flags device (hex).

    >>> r = parse_ipv6_route('00000000000000000000000000000000 00 '
    ...     '00000000000000000000000000000000 00 fd000000000000000000000000000001 '
    ...     '00000400 00000002 00000000 00000003     eth0')[0]
    >>> r.is_default, r.nexthops[0].gateway, r.priority
    (True, 'fd00::1', 1024)
    """
    routes = []
    for number, line in enumerate(text.splitlines(), start=1):
        cols = line.split()
        if not cols:
            continue
        if len(cols) != 10 or len(cols[0]) != 32 or len(cols[4]) != 32:
            raise ParseError(source, f"line {number}: expected 10 columns with 32-digit hex "
                                     f"addresses, got {line.strip()[:80]!r}")
        try:
            dst = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(cols[0]))
            nexthop = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(cols[4]))
            dst_len, metric, flags = int(cols[1], 16), int(cols[5], 16), int(cols[8], 16)
        except ValueError:
            raise ParseError(source, f"line {number}: bad hex in {line.strip()[:80]!r}") \
                from None
        dev = cols[9]
        if flags & (RTF_LOCAL | RTF_ANYCAST) or (dst_len == 8 and dst == "ff00::"):
            continue
        if flags & RTF_REJECT and dev == "lo" and dst_len == 0 and metric == 0xFFFFFFFF:
            continue  # ip6_null_entry, present on every host
        rtype = RTN_UNREACHABLE if flags & RTF_REJECT else RTN_UNICAST
        gateway = nexthop if flags & RTF_GATEWAY else None
        routes.append(Route(family=socket.AF_INET6, dst_len=dst_len, type=rtype, dst=dst,
                            priority=metric, nexthops=(Nexthop(gateway=gateway, dev=dev),)))
    return routes


def routes_fact(v4: list[Route], v6: Optional[list[Route]], ifnames: dict[int, str],
                source: str) -> Routes:
    """The Routes fact from main-table routes (v6 None: IPv6 absent)."""
    values: dict[str, object] = {}
    for suffix, routes in (("v4", v4), ("v6", v6)):
        if routes is None:
            continue
        main = [r for r in routes if r.table == RT_TABLE_MAIN]
        defaults = sorted((r for r in main if r.is_default),
                          key=lambda r: r.priority if r.priority is not None else 0)
        values[f"defaults_{suffix}"] = len(defaults)
        values[f"routes_{suffix}"] = len(main)
        values[f"has_default_{suffix}"] = bool(defaults)
        if defaults and defaults[0].nexthops:
            hop = defaults[0].nexthops[0]
            values[f"default_gateway_{suffix}"] = hop.gateway
            values[f"default_dev_{suffix}"] = hop.dev or ifnames.get(hop.oif or -1)
            values[f"default_linkdown_{suffix}"] = hop.linkdown
    reject = sum(1 for r in [*v4, *(v6 or [])]
                 if r.table == RT_TABLE_MAIN and r.type in REJECT_TYPES)
    return Routes(source=source, reject_routes=reject, **values)  # type: ignore[arg-type]


def _retrying(fn, *args):  # type: ignore[no-untyped-def]
    for attempt in range(DUMP_RETRIES):
        try:
            return fn(*args)
        except DumpInterrupted:
            if attempt == DUMP_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def dump_links(sock: socket.socket) -> dict[int, str]:
    """ifindex -> name from an RTM_GETLINK dump."""
    names = {}
    request = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0)  # struct ifinfomsg
    for _, body in dump(sock, RTM_GETLINK, request, seq=1):
        if len(body) < 16:
            continue
        ifindex = struct.unpack_from("=i", body, 4)[0]
        for kind, payload in iter_attrs(body, 16):
            if kind == IFLA_IFNAME:
                names[ifindex] = attr_str(payload) or str(ifindex)
                break
    return names


def dump_routes(sock: socket.socket, family: int, seq: int,
                limit: Optional[int] = None) -> tuple[list[Route], bool]:
    """Main-table routes of one family, and whether the dump was cut at `limit`
    (default MAX_ROUTES)."""
    limit = MAX_ROUTES if limit is None else limit
    request = _RTMSG.pack(family, 0, 0, 0, RT_TABLE_MAIN, 0, 0, 0, 0)
    request += struct.pack("=HHI", 8, RTA_TABLE, RT_TABLE_MAIN)  # honoured under strict checking
    routes: list[Route] = []
    messages = dump(sock, RTM_GETROUTE, request, seq=seq)
    for _, body in messages:
        route = route_from_rtmsg(body)
        if route.table != RT_TABLE_MAIN:
            continue
        if len(routes) >= limit:
            # read the rest unparsed: the kernel refuses another dump on this socket (EBUSY)
            # until this one is finished
            for _ in messages:
                pass
            return routes, True
        routes.append(route)
    return routes, False


@register_probe
class RoutesProbe(Probe):
    name = "routes"
    provides = ("routes",)
    description = ("main routing table: default route per family with gateway and device, "
                   "route counts, reject routes (netlink; /proc/net/route offline)")
    sampled = False
    netns_scoped = True  # --netns/--pid: sampled inside that namespace (probes/scope.py)

    def __init__(self, netns: Optional[str] = None) -> None:
        super().__init__()
        #: a named namespace (/run/netns/NAME) to read instead of the current one
        self.netns = netns

    def sample(self, ctx: ProbeContext) -> Routes:
        if ctx.live:
            return self._sample_netlink()
        return self._sample_files(ctx)

    def _sample_netlink(self) -> Routes:
        sock = open_netlink(NETLINK_ROUTE, self.netns)
        try:
            set_strict(sock)
            ifnames = _retrying(dump_links, sock)
            v4, cut4 = _retrying(dump_routes, sock, socket.AF_INET, 2)
            try:
                v6: Optional[list[Route]]
                v6, cut6 = _retrying(dump_routes, sock, socket.AF_INET6, 3)
            except OSError as err:  # EAFNOSUPPORT: IPv6 disabled or not built
                self.warn(f"IPv6 routes not read: {err}")
                v6, cut6 = None, False
        finally:
            sock.close()
        for family, cut in (("IPv4", cut4), ("IPv6", cut6)):
            if cut:
                self.warn(f"{family} main table has more than {MAX_ROUTES} routes; only the "
                          "first were read, so the route count is a lower bound")
        return routes_fact(v4, v6, ifnames, "netlink RTM_GETROUTE")

    def _sample_files(self, ctx: ProbeContext) -> Routes:
        path4, path6 = ctx.net("route"), ctx.net("ipv6_route")
        text4, text6 = ctx.read_optional(path4), ctx.read_optional(path6)
        if text4 is None:
            raise Unavailable(f"{path4} is not in the captured tree")
        v6 = None if text6 is None else parse_ipv6_route(text6, str(path6))
        return routes_fact(parse_proc_net_route(text4, str(path4)), v6, {}, str(path4))

    def facts(self, ctx: ProbeContext, first: object, last: Routes,
              elapsed_s: Optional[float]) -> list[Fact]:
        return [last]
