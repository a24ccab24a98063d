"""routes: RTM_NEWROUTE decoding, /proc/net/route and ipv6_route, the Routes fact, the
cap on huge tables, and a live namespace checked against `ip -j route`.

The *_6_18 texts and RT_* messages are this 6.18 host's (its IPv4 and IPv6 default routes).
"""
from __future__ import annotations

import base64
import json
import os
import socket
import struct
import subprocess

import pytest
from netstack_helpers import netns, run
from probe_helpers import run_one, write_tree

from sysdiag.facts import Routes
from sysdiag.probes.base import ProbeContext
from sysdiag.probes.netlink import routes as routes_mod
from sysdiag.probes.netlink.nldump import iter_attrs
from sysdiag.probes.netlink.routes import (
    RTN_BLACKHOLE, RTN_UNICAST, Nexthop, Route, RoutesProbe, parse_ipv6_route,
    parse_proc_net_route, route_from_rtmsg, routes_fact)
from sysdiag.probes.parse import ParseError

ROUTE_6_18 = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
"""
IPV6_ROUTE_6_18 = """\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0
00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo
fd000000000000000000000000000002 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000003 00000000 80200001     eth0
fe8000000000000000fc00fffe000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001     eth0
ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000003 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
"""
#: default via 192.0.2.1 dev eth0 (ifindex 4), table main
RT_DEFAULT_V4 = "AgAAAP4DAAEAAAAACAAPAP4AAAAIAAUAwAACAQgABAAEAAAA"
#: default via fd00::1 dev eth0 metric 1024
RT_DEFAULT_V6 = ("CgAAAP4DAAEAAAAACAAPAP4AAAAIAAYAAAQAABQABQD9AAAAAAAAAAAAAAAAAAABCAAEAAQAAAAkAAw"
                 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAFABQAAAAAAA==")


def rtmsg(family: int, dst_len: int, rtype: int = RTN_UNICAST, table: int = 254,
          flags: int = 0, attrs: bytes = b"") -> bytes:
    return struct.pack("=BBBBBBBBI", family, dst_len, 0, 0, table, 3, 0, rtype, flags) + attrs


def nla(kind: int, payload: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(payload), kind) + payload
    return data + bytes(-len(data) % 4)


def test_real_default_routes_decode():
    v4 = route_from_rtmsg(base64.b64decode(RT_DEFAULT_V4))
    assert v4.is_default and v4.table == 254 and v4.family == socket.AF_INET
    assert v4.nexthops == (Nexthop(gateway="192.0.2.1", oif=4, linkdown=False),)
    v6 = route_from_rtmsg(base64.b64decode(RT_DEFAULT_V6))
    assert v6.is_default and v6.priority == 1024 and v6.nexthops[0].gateway == "fd00::1"


def test_multipath_linkdown_table_and_reject_types():
    hop = lambda gw, ifindex, flags: (  # noqa: E731 - struct rtnexthop + RTA_GATEWAY
        struct.pack("=HBBi", 8 + 8, flags, 0, ifindex) + nla(5, socket.inet_aton(gw)))
    body = rtmsg(socket.AF_INET, 0, attrs=nla(9, hop("10.0.0.1", 3, 0x10) + hop("10.0.1.1", 5, 0)))
    route = route_from_rtmsg(body)
    assert [(h.gateway, h.oif, h.linkdown) for h in route.nexthops] == \
        [("10.0.0.1", 3, True), ("10.0.1.1", 5, False)]
    # a table id above 255 is only in RTA_TABLE (rtm_table says RT_TABLE_COMPAT 252)
    assert route_from_rtmsg(rtmsg(socket.AF_INET, 24, table=252,
                                  attrs=nla(15, struct.pack("=I", 1000)))).table == 1000
    blackhole = route_from_rtmsg(rtmsg(socket.AF_INET, 8, rtype=RTN_BLACKHOLE,
                                       attrs=nla(1, socket.inet_aton("10.0.0.0"))))
    assert not blackhole.is_default and blackhole.dst == "10.0.0.0"
    # RTA_VIA: an IPv4 route through an IPv6 gateway
    via = nla(18, struct.pack("=H", socket.AF_INET6) + socket.inet_pton(socket.AF_INET6, "fe80::1"))
    assert route_from_rtmsg(rtmsg(socket.AF_INET, 0, attrs=via)).nexthops[0].gateway == "fe80::1"
    with pytest.raises(ParseError, match="shorter than struct rtmsg"):
        route_from_rtmsg(b"\x02\x00")


def test_iter_attrs_stops_at_a_truncated_attribute():
    good = nla(4, struct.pack("=I", 7))
    assert list(iter_attrs(good + struct.pack("=HH", 40, 5) + b"xx")) == [(4, struct.pack("=I", 7))]


def test_proc_net_route_of_this_host():
    default, subnet = parse_proc_net_route(ROUTE_6_18)
    assert default.is_default and default.nexthops[0].gateway == "192.0.2.1"
    assert default.nexthops[0].dev == "eth0" and default.nexthops[0].linkdown is None
    assert (subnet.dst, subnet.dst_len, subnet.nexthops[0].gateway) == ("192.0.2.0", 24, None)


def test_ipv6_route_leaves_out_local_multicast_and_the_null_entry():
    routes = parse_ipv6_route(IPV6_ROUTE_6_18)
    assert [(r.dst, r.dst_len) for r in routes] == [("fd00::", 64), ("fe80::", 64), ("::", 0)]
    assert routes[2].nexthops[0].gateway == "fd00::1"


@pytest.mark.parametrize("parser, text, problem", [
    (parse_proc_net_route, "", "header"),
    (parse_proc_net_route, "Iface\tDestination\neth0\t00000000\n", "columns"),
    (parse_proc_net_route, ROUTE_6_18.replace("010200C0", "0102ZZC0"), "hex address"),
    (parse_proc_net_route, ROUTE_6_18.replace("\t0003\t", "\tflags\t"), "bad number"),
    (parse_ipv6_route, "fd00 40\n", "10 columns"),
    (parse_ipv6_route, IPV6_ROUTE_6_18.replace("00000400", "0000040Z"), "bad hex"),
])
def test_parsers_reject_malformed(parser, text, problem):
    with pytest.raises(ParseError, match=problem):
        parser(text)


def test_fact_from_this_hosts_files_and_metric_order():
    fact = routes_fact(parse_proc_net_route(ROUTE_6_18), parse_ipv6_route(IPV6_ROUTE_6_18), {},
                       "/proc/net/route")
    assert isinstance(fact, Routes)
    assert (fact.has_default_v4, fact.default_gateway_v4, fact.default_dev_v4) == \
        (True, "192.0.2.1", "eth0")
    assert (fact.has_default_v6, fact.default_gateway_v6, fact.routes_v4, fact.routes_v6) == \
        (True, "fd00::1", 2, 3)
    assert fact.default_linkdown_v4 is None and fact.reject_routes == 0
    # two defaults: the lower metric wins; IPv6 absent; an unreachable route counts
    routes = [Route(socket.AF_INET, 0, priority=200, nexthops=(Nexthop("10.0.0.9", 2),)),
              Route(socket.AF_INET, 0, priority=100, nexthops=(Nexthop("10.0.0.1", 3, linkdown=True),)),
              Route(socket.AF_INET, 16, type=7, dst="10.9.0.0"),
              Route(socket.AF_INET, 0, table=100, nexthops=(Nexthop("10.0.0.5", 2),))]
    fact = routes_fact(routes, None, {2: "eth0", 3: "eth1"}, "netlink")
    assert (fact.defaults_v4, fact.default_gateway_v4, fact.default_dev_v4) == (2, "10.0.0.1", "eth1")
    assert fact.default_linkdown_v4 is True and fact.reject_routes == 1 and fact.routes_v4 == 3
    assert fact.has_default_v6 is None and fact.routes_v6 is None
    none = routes_fact([], [], {}, "x")
    assert none.has_default_v4 is False and none.has_default_v6 is False and none.routes_v4 == 0


def test_captured_tree(tmp_path):
    ctx = write_tree(tmp_path, {"proc/net/route": ROUTE_6_18})
    outcome, facts = run_one(RoutesProbe(), ctx)
    assert outcome.status == "ok", outcome.reason
    assert facts[0].has_default_v4 and facts[0].has_default_v6 is None


def test_fixture_tree_has_no_routes(tree_ctx):
    outcome, facts = run_one(RoutesProbe(), tree_ctx)
    assert outcome.status == "unavailable" and "proc/net/route" in outcome.reason
    assert facts == []


@pytest.mark.live
def test_live_host_matches_proc_net_route():
    outcome, facts = run_one(RoutesProbe(), ProbeContext())
    assert outcome.status == "ok", outcome.reason
    offline = RoutesProbe()._sample_files(ProbeContext())
    live = facts[0]
    assert (live.has_default_v4, live.default_gateway_v4, live.default_dev_v4, live.routes_v4) == \
        (offline.has_default_v4, offline.default_gateway_v4, offline.default_dev_v4,
         offline.routes_v4)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create namespaces")


@pytest.mark.live
@pytest.mark.root
@needs_root
def test_live_namespace_against_ip_route(monkeypatch):
    with netns("rt") as ns:
        try:
            run("ip", "-n", ns, "link", "add", "rt0", "type", "veth", "peer", "name", "rt1")
        except subprocess.CalledProcessError as err:
            pytest.skip(f"no veth: {err.stderr.strip()}")
        for cmd in (["link", "set", "rt0", "up"], ["link", "set", "rt1", "up"],
                    ["addr", "add", "10.232.0.1/24", "dev", "rt0"],
                    ["-6", "addr", "add", "fd99::1/64", "dev", "rt0", "nodad"],
                    ["route", "add", "default", "via", "10.232.0.254", "metric", "50"],
                    ["route", "add", "default", "via", "10.232.0.253", "metric", "100"],
                    ["route", "add", "blackhole", "10.99.0.0/16"],
                    ["route", "add", "unreachable", "10.98.0.0/16"],
                    ["route", "add", "10.50.0.0/16", "via", "10.232.0.9", "table", "77"]):
            run("ip", "-n", ns, *cmd)
        probe = RoutesProbe(netns=ns)
        fact = probe.sample(ProbeContext())
        main = json.loads(run("ip", "-n", ns, "-j", "route", "show", "table", "main"))
        main6 = json.loads(run("ip", "-n", ns, "-6", "-j", "route", "show", "table", "main"))
        assert fact.routes_v4 == len(main) and fact.routes_v6 == len(main6)
        assert (fact.defaults_v4, fact.default_gateway_v4, fact.default_dev_v4) == \
            (2, "10.232.0.254", "rt0")
        assert fact.reject_routes == 2 and fact.has_default_v6 is False
        assert fact.default_linkdown_v4 is False
        # the peer goes down: no carrier on rt0, and the kernel marks its routes linkdown
        run("ip", "-n", ns, "link", "set", "rt1", "down")
        assert RoutesProbe(netns=ns).sample(ProbeContext()).default_linkdown_v4 is True
        # a table bigger than the cap is read only up to it, and says so
        monkeypatch.setattr(routes_mod, "MAX_ROUTES", 3)
        probe = RoutesProbe(netns=ns)
        capped = probe.sample(ProbeContext())
        assert capped.routes_v4 == 3 and any("lower bound" in w for w in probe.warnings)
        # the socket still serves the next dump
        main6 = json.loads(run("ip", "-n", ns, "-6", "-j", "route", "show", "table", "main"))
        assert capped.routes_v6 == len(main6) > 0
