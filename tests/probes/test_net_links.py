"""net-links: netlink message decoding, /proc/net/dev + sysfs parsing, rates, fixture tree.

The *_MSG constants are real RTM_NEWLINK messages (base64) captured with pyroute2
from a 6.18 kernel: va/vb a veth pair across two namespaces with a tbf on va,
vd a veth enslaved to bridge br0, lo, and a virtio NIC eth0.
"""
from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from sysdiag.facts import NetLink
from sysdiag.probes.base import ProbeContext
from sysdiag.probes.netlink.links import (
    LINK_COUNTERS, STATS64_FIELDS, LinkReading, NetLinksProbe, link_facts, parse_duplex,
    parse_proc_net_dev, parse_speed, reading_from_ifinfmsg)
from sysdiag.probes.netlink.rtnl import unpack_u64s
from sysdiag.probes.parse import ParseError

FIXTURE = Path(__file__).resolve().parents[2].parent / "shared/fixtures/procfs"

LINK_VA = """
2AUAABAAAgD/AAAAWiUAAAAAAQACAAAAQxABAAAAAAAHAAMAdmEAAAgADQDoAwAABQAQAAYAAAAFABEAAAAAAAUAQwAAAAAA
CAAEANwFAAAIADIARAAAAAgAMwD//wAACAAbAAAAAAAIAB4AAAAAAAgAPQAAAAAACAAfAAIAAAAIACgA//8AAAgAKQAAAAEA
CAA6AAAAAQAIAD8AAAABAAgAQAAAAAEACAA7APj/BwAIADwA//8AAAgAQgAAAAAACAAgAAIAAAAFACEAAQAAAAgAIwACAAAA
CAAvAAEAAAAIADAAAQAAAAYARAAAAAAABgBFAAAAAAAFACcAAAAAAAoAAQBGdTaNbL8AAAoAAgD///////8AAMwAFwAPAAAA
AAAAAJoAAAAAAAAAehIAAAAAAACsxgIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAGQABwAPAAAAmgAAAHoSAACsxgIA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAMACsABQACAAAAAAAQABIACQABAHZldGgAAAAACAAlAAAAAAAIAAUAAgAAAAgABgB0YmYAMAMaAIwAAgCIAAEA
AAAAAAAAAAAAAAAAAQAAAAEAAAABAAAAAQAAAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAQJwAA6AMAAAAAAAAAAAAAAAAAAAAAAAABAAAAoAIKAAgAAQAQAACA
FAAFAP//AABgDQEA4KgAAOgDAAD0AAIAAAAAAEAAAADcBQAAAQAAAAEAAAABAAAAAQAAAP////+gDwAA6AMAAAAAAACAOgkA
gFEBAAMAAABYAgAAEAAAAAAAAAABAAAAAQAAAAEAAABg6gAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAQAAAAAAAAAAAAAA
ECcAAOgDAAABAAAAAAAAAAAAAAABAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAAAIDuNgAAAAAAAAAAAAEAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAEAAAAAAAA//8AAP////8BAAAAAAAAAAAAAAAAAAAANAEDACYAAAAAAAAABgAAAAAAAACwAQAA
AAAAAAAAAAAAAAAABgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAGAAAAAAAAAAYAAAAAAAAAsAEAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABgAAAAAAAAAGAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAACwAQAAAAAAALABAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA8AAYA
BwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAUAAcAAAAAAAAAAAAAAAAA
AAAAAAUACAAAAAAAJAAOAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABAA+gAQAQYA=
"""

LINK_VD = """
OAcAABAAAgD/AAAAVycAAAAAAQADAAAAQxABAAAAAAAHAAMAdmQAAAgADQDoAwAABQAQAAYAAAAFABEAAAAAAAUAQwAAAAAA
CAAEANwFAAAIADIARAAAAAgAMwD//wAACAAbAAAAAAAIAB4AAQAAAAgAPQABAAAACAAfAAIAAAAIACgA//8AAAgAKQAAAAEA
CAA6AAAAAQAIAD8AAAABAAgAQAAAAAEACAA7APj/BwAIADwA//8AAAgAQgAAAAAACAAgAAIAAAAIAAoABQAAAAUAIQABAAAA
CAAjAAIAAAAIAC8AAQAAAAgAMAABAAAABgBEAAAAAAAGAEUAAAAAAAUAJwAAAAAACgABAOJh/CbWyQAACgACAP///////wAA
zAAXAEgCAAAAAAAACAAAAAAAAAAQ7QoAAAAAAJACAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAZAAHAEgCAAAIAAAA
EO0KAJACAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAwAKwAFAAIAAAAAAGwBEgAJAAEAdmV0aAAAAAALAAQAYnJpZGdlAABQAQUABQABAAAAAAAGAAIA
IAAAAAgAAwACAAAABQAEAAAAAAAFAAUAAAAAAAUABgAAAAAABQAHAAAAAAAFABwAAAAAAAUACAABAAAABQAJAAEAAAAFABsA
AQAAAAUAHgABAAAABQAKAAAAAAAFAAwAAAAAAAwADQCAAOJh/CbWyQwADgCAAOJh/CbWyQYADwABgAAABgAQAAAAAAAGABEA
AYAAAAYAEgABAAAABQATAAAAAAAFABQAAAAAAAUAHQAAAAAABgAfAAAAAAAFACAAAAAAAAUAIwAAAAAABQAkAAAAAAAFACEA
AAAAAAUAJwAAAAAABQAoAAAAAAAFACsAAAAAAAwAFQAAAAAAAAAAAAwAFgAAAAAAAAAAAAwAFwAAAAAAAAAAAAUAGQABAAAA
CAAlAAACAAAIACYAAAAAAAgAKQAAAAAACAAqAAAAAAAIAAUABAAAAAwABgBub3F1ZXVlADADGgCMAAIAiAABAAAAAAAAAAAA
AAAAAAEAAAABAAAAAQAAAAEAAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAECcAAOgDAAAAAAAAAAAAAAAAAAAAAAAAAQAAAKACCgAIAAEAEAAAgBQABQD//wAA
YQ0BAGR1AADoAwAA9AACAAAAAABAAAAA3AUAAAEAAAABAAAAAQAAAAEAAAD/////oA8AAOgDAAAAAAAAgDoJAIBRAQADAAAA
WAIAABAAAAAAAAAAAQAAAAEAAAABAAAAYOoAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAEAAAAAAAAAAAAAABAnAADoAwAA
AQAAAAAAAAAAAAAAAQAAAAAAAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAACA7jYAAAAAAAAAAAABAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAABAAAAAAAAP//AAD/////AQAAAAAAAAAAAAAAAAAAADQBAwAmAAAAAAAAAAgAAAAAAAAAIAIAAAAAAAAAAAAA
AAAAAAgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACAAAAAAAAAAIAAAAAAAAACACAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAgAAAAAAAAACAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAIAIAAAAAAAAgAgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAPAAGAAcAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAFAAHAAAAAAAAAAAAAAAAAAAAAAAFAAgA
AAAAACQADgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAQAPoAEAEGA
"""

LINK_BR0 = """
WAcAABAAAgD/AAAAVycAAAAAAQAFAAAAAhAAAAAAAAAIAAMAYnIwAAgADQDoAwAABQAQAAIAAAAFABEAAAAAAAUAQwABAAAA
CAAEANwFAAAIADIARAAAAAgAMwD//wAACAAbAAAAAAAIAB4AAAAAAAgAPQAAAAAACAAfAAEAAAAIACgA//8AAAgAKQAAAAEA
CAA6AAAAAQAIAD8AAAABAAgAQAAAAAEACAA7APj/BwAIADwA//8AAAgAQgAAAAAACAAgAAEAAAAFACEAAAAAAAgAIwABAAAA
CAAvAAAAAAAIADAAAQAAAAYARAAAAAAABgBFAAAAAAAFACcAAAAAAAoAAQDiYfwm1skAAAoAAgD///////8AAMwAFwAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAGQABwAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAMACsABQACAAAAAACcARIACwABAGJyaWRnZQAAjAECAAwAEAAAAAAAAAAAAAwAEQAAAAAAAAAAAAwAEgAAAAAA
AAAAAAwAEwAAAAAAAAAAAAgAAQDcBQAACAACAMgAAAAIAAMA0AcAAAgABAAwdQAACAAFAAAAAAAGAAYAAIAAAAUABwAAAAAA
BgAJAAAAAAAMAAsAgADiYfwm1skMAAoAgADiYfwm1skGAAwAAAAAAAgADQAAAAAABQAOAAAAAAAFAA8AAAAAAAoAFAABgMIA
AAAAAAwALgAAAAAAHwAAAAgAMAAAAAAACAAxAAAAAAAFABYAAQAAAAUAFwABAAAABQAYAAAAAAAFABkAAAAAAAUAKgAAAAAA
CAAaABAAAAAIABsAABAAAAgAHAACAAAACAAdAAIAAAAFACsAAgAAAAUALAABAAAADAAeAGQAAAAAAAAADAAfAJBlAAAAAAAA
DAAgAJxjAAAAAAAADAAhANQwAAAAAAAADAAiAOgDAAAAAAAADAAjADQMAAAAAAAABQAkAAAAAAAFACUAAAAAAAUAJgAAAAAA
CQAGAG5vb3AAAAAAMAMaAIwAAgCIAAEAAAAAAAAAAAAAAAAAAQAAAAEAAAABAAAAAQAAAAAAAAABAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAQJwAA6AMAAAAAAAAAAAAA
AAAAAAAAAAABAAAAoAIKAAgAAQAAAAAAFAAFAP//AAD9FQEARG8AAOgDAAD0AAIAAAAAAEAAAADcBQAAAQAAAAEAAAABAAAA
AQAAAP////+gDwAA6AMAAAAAAACAOgkAgFEBAAMAAABYAgAAEAAAAAAAAAABAAAAAQAAAAEAAABg6gAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAQAAAAAAAAAAAAAAECcAAOgDAAABAAAAAAAAAAAAAAABAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAAAA
AAAAAIDuNgAAAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAEAAAAAAAA//8AAP////8BAAAAAAAAAAAAAAAAAAAA
NAEDACYAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAA8AAYABwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAUAAcAAAAAAAAAAAAAAAAAAAAAAAUACAAAAAAAJAAOAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
BAA+gAQAQYA=
"""

LINK_LO = """
vAUAABAAAgD/AAAAWiUAAAAABAMBAAAASQABAAAAAAAHAAMAbG8AAAgADQDoAwAABQAQAAAAAAAFABEAAAAAAAUAQwABAAAA
CAAEAAAAAQAIADIAAAAAAAgAMwAAAAAACAAbAAAAAAAIAB4AAAAAAAgAPQAAAAAACAAfAAEAAAAIACgA//8AAAgAKQAAAAEA
CAA6AAAAAQAIAD8AAAABAAgAQAAAAAEACAA7APj/BwAIADwA//8AAAgAQgAAAAAACAAgAAEAAAAFACEAAQAAAAgAIwAAAAAA
CAAvAAAAAAAIADAAAAAAAAYARAAAAAAABgBFAAAAAAAFACcAAAAAAAoAAQAAAAAAAAAAAAoAAgAAAAAAAAAAAMwAFwAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAGQABwAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAMACsABQACAAAAAAAMAAYAbm9xdWV1ZQAwAxoAjAACAIgAAQAAAAAAAAAAAAAAAAABAAAAAQAAAAEAAAABAAAA
AAAAAAEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAEAAAABAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAABAnAADoAwAAAAAAAAAAAAAAAAAAAAAAAAEAAACgAgoACAABAAAAAIAUAAUA//8AAF8NAQBEiwAA6AMAAPQAAgAAAAAA
QAAAAAAAAQABAAAAAQAAAAEAAAABAAAA/////6APAADoAwAA/////4A6CQCAUQEAAwAAAFgCAAAQAAAAAAAAAAEAAAABAAAA
AQAAAGDqAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAD/////AAAAAAAAAAAQJwAA6AMAAAEAAAAAAAAAAAAAAAEAAAAAAAAA
AAAAAAEAAAAAAAAAAAAAAAAAAAAAAAAAgO42AAAAAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAQAAAAAAAD//wAA
/////wEAAAAAAAAAAAAAAAAAAAA0AQMAJgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAADwABgAHAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABQABwAAAAAAAAAAAAAAAAAAAAAABQAIAAAAAAAkAA4AAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAEAD6ABABBgA==
"""

LINK_ETH0 = """
6AUAABAAAgD/AAAAWiUAAAAAAQAEAAAAQxABAAAAAAAJAAMAZXRoMAAAAAAIAA0A6AMAAAUAEAAGAAAABQARAAAAAAAFAEMA
AAAAAAgABAB4BQAACAAyAEQAAAAIADMA//8AAAgAGwAAAAAACAAeAAAAAAAIAD0AAAAAAAgAHwABAAAACAAoAP//AAAIACkA
AAABAAgAOgAAAAEACAA/AAAAAQAIAEAAAAABAAgAOwAAAAEACAA8AP//AAAIAEIAAAAAAAgAIAABAAAABQAhAAEAAAAIACMA
AgAAAAgALwABAAAACAAwAAEAAAAGAEQADAAAAAYARQAAAAAABQAnAAAAAAAKAAEAAvwAAAABAAAKAAIA////////AADMABcA
ZgYAAAAAAADzAwAAAAAAAF8k9gIAAAAAzycCAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABkAAcAZgYAAPMDAABfJPYC
zycCAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAADAArAAUAAgAAAAAACgA2AAL8AAAAAQAADwAGAHBmaWZvX2Zhc3QAADADGgCMAAIAiAABAAAAAAAAAAAA
AAAAAAEAAAABAAAAAQAAAAEAAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAECcAAOgDAAAAAAAAAAAAAAAAAAAAAAAAAQAAAKACCgAIAAEAAAAAgBQABQD//wAA
FAAAAKBoAADoAwAA9AACAAAAAABAAAAAeAUAAAAAAAABAAAAAQAAAAEAAAD/////oA8AAOgDAAAAAAAAgDoJAIBRAQADAAAA
WAIAABAAAAAAAAAAAQAAAAEAAAABAAAAYOoAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAEAAAAAAAAAAAAAABAnAADoAwAA
AQAAAAAAAAAAAAAAAQAAAAAAAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAACA7jYAAAAAAAAAAAABAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAABAAAAAAAAP//AAD/////AQAAAAAAAAAAAAAAAAAAADQBAwAmAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACgAAAAAAAAAKAAAAAAAAAHADAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAACgAgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAPAAGAAcAAAAAAAAA
AQAAAAAAAAAAAAAAAAAAAAkAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAFAAHAAAAAAAAAAAAAAAAAAAAAAAFAAgA
AAAAACQADgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAwAOAB2aXJ0aW8yAAsAOQB2aXJ0aW8AAAQAPoAEAEGA
"""


def decode(b64: str) -> ifinfmsg:
    msg = ifinfmsg(bytearray(base64.b64decode("".join(b64.split()))))
    msg.decode()
    return msg


# ---------------------------------------------------------------- netlink messages

def test_veth_with_peer_in_another_namespace():
    r = reading_from_ifinfmsg(decode(LINK_VA))
    assert (r.ifname, r.ifindex, r.link_kind) == ("va", 2, "veth")
    assert (r.operstate, r.carrier, r.admin_up) == ("up", True, True)
    assert (r.mtu, r.tx_queue_len, r.qdisc) == (1500, 1000, "tbf")
    # the peer vb is ifindex 2 in the namespace with netnsid 0
    assert (r.link_ifindex, r.peer_netnsid, r.master_ifindex) == (2, 0, None)
    assert r.counters["tx_bytes"] == 181932 and r.counters["tx_packets"] == 154
    assert r.counters["carrier_changes"] == 2
    assert set(r.counters) == set(LINK_COUNTERS)


def test_stats64_raw_decoding_agrees_with_pyroute2_and_adds_rx_nohandler():
    msg = decode(LINK_ETH0)
    r = reading_from_ifinfmsg(msg)
    decoded = msg.get_attr("IFLA_STATS64")  # pyroute2 knows only the first 23 fields
    for name in LINK_COUNTERS:
        if name in decoded:
            assert r.counters[name] == decoded[name], name
    assert "rx_nohandler" not in decoded and r.counters["rx_nohandler"] == 0
    assert r.counters["rx_bytes"] == 49685599


def test_physical_loopback_bridge_and_master():
    assert reading_from_ifinfmsg(decode(LINK_ETH0)).link_kind == "physical"
    lo = reading_from_ifinfmsg(decode(LINK_LO))
    assert (lo.link_kind, lo.operstate, lo.mtu, lo.link_ifindex) == ("loopback", "unknown", 65536,
                                                                     None)
    br = reading_from_ifinfmsg(decode(LINK_BR0))
    vd = reading_from_ifinfmsg(decode(LINK_VD))
    assert (br.link_kind, br.ifindex) == ("bridge", 5)
    assert (vd.link_kind, vd.master_ifindex, vd.link_ifindex, vd.peer_netnsid) == ("veth", 5, 4,
                                                                                   None)


def test_message_without_a_name_is_an_error():
    msg = ifinfmsg()
    msg["index"] = 7
    with pytest.raises(ParseError, match="index 7 has no IFLA_IFNAME"):
        reading_from_ifinfmsg(msg)


def test_message_built_in_memory_uses_the_decoded_stats():
    msg = ifinfmsg()
    msg["index"], msg["flags"], msg["ifi_type"] = 9, 0, 1
    msg["attrs"] = [("IFLA_IFNAME", "x0"), ("IFLA_STATS64", {"rx_bytes": 5, "rx_dropped": 1})]
    r = reading_from_ifinfmsg(msg)
    assert r.counters == {"rx_bytes": 5, "rx_dropped": 1}
    assert (r.link_kind, r.admin_up, r.carrier, r.operstate) == ("unknown", False, None, None)


@pytest.mark.parametrize("size, expected", [
    (0, {}),
    (23 * 8, {n: i for i, n in enumerate(STATS64_FIELDS[:23])}),  # before 4.6: no rx_nohandler
    (25 * 8 + 4, {n: i for i, n in enumerate(STATS64_FIELDS)}),   # a future tail is ignored
])
def test_unpack_u64s_tolerates_short_and_long_structs(size, expected):
    payload = b"".join(i.to_bytes(8, "little" if os.sys.byteorder == "little" else "big")
                       for i in range(size // 8)) + b"\0" * (size % 8)
    assert unpack_u64s(payload, STATS64_FIELDS) == expected


# ---------------------------------------------------------------- /proc/net/dev, sysfs

# this host's /proc/net/dev (6.18)
PROC_NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    3245      30    0    0    0     0          0         0     3245      30    0    0    0     0       0          0
  ifb0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  eth0: 47943349    1564    3    7    1     2          0         0   132292     945    0    4    0     5       6          0
vethf345468:     648       8    0    0    0     0          0         0      438       5    0    0    0     0       0          0
"""


def test_parse_proc_net_dev():
    rows = parse_proc_net_dev(PROC_NET_DEV)
    assert list(rows) == ["lo", "ifb0", "eth0", "vethf345468"]
    eth0 = rows["eth0"]
    assert (eth0["rx_bytes"], eth0["rx_packets"], eth0["rx_errs"], eth0["rx_drop"]) == (
        47943349, 1564, 3, 7)
    assert (eth0["tx_drop"], eth0["tx_colls"], eth0["tx_carrier"]) == (4, 5, 6)
    assert rows["vethf345468"]["rx_bytes"] == 648


@pytest.mark.parametrize("text, problem", [
    ("", "two header lines"),
    ("lo: 1 2 3\n", "two header lines"),
    (PROC_NET_DEV[:-60], "line 6: expected 'IF: ' and 16 numbers"),  # truncated last row
    (PROC_NET_DEV.replace("47943349", "4794x349"), "line 5 rx_bytes"),
    (PROC_NET_DEV.replace("  eth0:", "  eth0 "), "line 5"),
])
def test_parse_proc_net_dev_rejects_bad_input(text, problem):
    with pytest.raises(ParseError, match=problem):
        parse_proc_net_dev(text, "/proc/net/dev")


def test_parse_proc_net_dev_with_headers_only():
    assert parse_proc_net_dev("\n".join(PROC_NET_DEV.splitlines()[:2]) + "\n") == {}


@pytest.mark.parametrize("text, expected", [
    ("1000\n", 1000), ("-1\n", None), ("4294967295\n", None), ("", None), (None, None),
    ("fast", None), ("0", None)])
def test_parse_speed(text, expected):
    assert parse_speed(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("full\n", "full"), ("half", "half"), ("unknown\n", None), (None, None)])
def test_parse_duplex(text, expected):
    assert parse_duplex(text) == expected


def write_tree(root: Path, files: dict[str, str], links: dict[str, str] = {}) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for rel, target in links.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, root / rel)


def test_captured_tree_prefers_sysfs_statistics(tmp_path):
    net = "sys/class/net/"
    write_tree(tmp_path, {
        "proc/net/dev": PROC_NET_DEV,
        # eth0 enslaved to br0, with the split counters in statistics/
        net + "eth0/ifindex": "4\n", net + "eth0/iflink": "4\n", net + "eth0/type": "1\n",
        net + "eth0/flags": "0x1103\n", net + "eth0/mtu": "9000\n", net + "eth0/carrier": "1\n",
        net + "eth0/operstate": "up\n", net + "eth0/tx_queue_len": "1000\n",
        net + "eth0/speed": "-1\n", net + "eth0/duplex": "unknown\n",
        net + "eth0/carrier_changes": "9\n", net + "eth0/uevent": "INTERFACE=eth0\nIFINDEX=4\n",
        net + "eth0/statistics/rx_dropped": "5\n", net + "eth0/statistics/rx_missed_errors": "2\n",
        net + "eth0/statistics/rx_bytes": "47943349\n",
        net + "eth0/device/vendor": "0x1af4\n",
        # a bridge, known by its DEVTYPE
        net + "br0/ifindex": "7\n", net + "br0/iflink": "7\n", net + "br0/type": "1\n",
        net + "br0/uevent": "DEVTYPE=bridge\nINTERFACE=br0\nIFINDEX=7\n",
        net + "br0/operstate": "down\n",
        # a veth whose peer is ifindex 12
        net + "veth1/ifindex": "11\n", net + "veth1/iflink": "12\n",
        net + "veth1/operstate": "lowerlayerdown\n", net + "veth1/flags": "0x1002\n",
    }, links={net + "eth0/master": "../br0"})
    ctx = ProbeContext(proc_root=tmp_path / "proc", sys_root=tmp_path / "sys", live=False)
    probe = NetLinksProbe()
    facts = {f.ifname: f for f in probe.facts(ctx, None, probe.sample(ctx), None)}
    assert set(facts) == {"lo", "ifb0", "eth0", "vethf345468", "br0", "veth1"}
    eth0 = facts["eth0"]
    assert eth0.source.endswith("class/net/eth0/statistics")
    # rx_dropped from sysfs (/proc/net/dev's drop = dropped + missed = 7)
    assert (eth0.rx_dropped_total, eth0.rx_missed_errors_total) == (5, 2)
    assert (eth0.rx_errors_total, eth0.tx_dropped_total, eth0.collisions_total) == (3, 4, 5)
    assert eth0.tx_carrier_errors_total is None  # /proc/net/dev's carrier is a sum
    assert (eth0.link_kind, eth0.master, eth0.mtu, eth0.speed_mbps, eth0.duplex) == (
        "physical", "br0", 9000, None, None)
    assert (eth0.admin_up, eth0.carrier, eth0.carrier_changes_total) == (True, True, 9)
    assert eth0.rx_bytes_per_s is None  # one sample: no rates
    assert facts["br0"].link_kind == "bridge" and facts["br0"].operstate == "down"
    assert facts["br0"].rx_bytes_total is None  # not in /proc/net/dev: unknown, not 0
    veth = facts["veth1"]
    assert (veth.link_ifindex, veth.admin_up, veth.operstate) == (12, False, "lowerlayerdown")
    lo = facts["lo"]  # only in /proc/net/dev
    assert (lo.link_kind, lo.rx_packets_total, lo.rx_dropped_total) == ("unknown", 30, None)
    assert any("no entry for ifb0, lo, vethf345468" in w for w in probe.warnings)


def test_captured_tree_without_any_source_fails(tmp_path):
    ctx = ProbeContext(proc_root=tmp_path / "proc", sys_root=tmp_path / "sys", live=False)
    with pytest.raises(FileNotFoundError, match="neither /proc/net/dev nor /sys/class/net"):
        NetLinksProbe().sample(ctx)


@pytest.mark.skipif(not FIXTURE.is_dir(), reason="shared fixture tree not present")
def test_fixture_tree():
    ctx = ProbeContext(proc_root=FIXTURE / "proc", sys_root=FIXTURE / "sys", live=False)
    probe = NetLinksProbe()
    facts = {f.ifname: f for f in probe.facts(ctx, None, probe.sample(ctx), None)}
    assert set(facts) == {"vethf345468", "lo", "docker0", "eth0"}
    eth0 = facts["eth0"]
    assert (eth0.ifindex, eth0.link_kind, eth0.operstate, eth0.carrier) == (2, "physical", "up",
                                                                            True)
    assert (eth0.speed_mbps, eth0.duplex, eth0.mtu, eth0.tx_queue_len) == (1000, "full", 1500, 1000)
    assert (eth0.rx_bytes_total, eth0.tx_packets_total) == (874354587, 732147)
    assert eth0.carrier_changes_total == 2
    assert eth0.rx_dropped_total is None and eth0.rx_bytes_per_s is None
    assert facts["lo"].rx_bytes_total == 1664039048


# ---------------------------------------------------------------- facts and rates

def reading(ifname="eth0", ifindex=2, **counters) -> LinkReading:
    return LinkReading(ifname=ifname, source="test", ifindex=ifindex, counters=counters)


def test_rates_over_the_window():
    first = {"eth0": reading(rx_bytes=1_000, rx_dropped=10, carrier_changes=(1 << 32) - 2)}
    last = {"eth0": LinkReading(ifname="eth0", source="test", ifindex=2, speed_mbps=100,
                                counters={"rx_bytes": 2_501_000, "rx_dropped": 30,
                                          "carrier_changes": 1})}
    (fact,) = link_facts(first, last, 2.0)
    assert fact.rx_bytes_per_s == 1_250_000.0
    assert fact.rx_util_pct == 10.0  # 10 Mb/s of 100
    assert fact.rx_dropped_total == 30 and fact.rx_dropped_per_s == 10.0
    assert fact.carrier_changes_per_s == 1.5  # u32 counter wrapped: 3 changes in 2 s
    assert fact.tx_bytes_total is None and fact.tx_bytes_per_s is None and fact.tx_util_pct is None


def test_no_rate_for_a_recreated_interface_or_a_reset_counter():
    first = {"eth0": reading(rx_bytes=5_000, tx_bytes=10), "gone0": reading("gone0", 9)}
    last = {"eth0": reading(ifindex=3, rx_bytes=100, tx_bytes=20)}
    (fact,) = link_facts(first, last, 1.0)
    assert fact.rx_bytes_per_s is None and fact.tx_bytes_per_s is None
    first = {"eth0": reading(rx_bytes=5_000, tx_bytes=10)}
    last = {"eth0": reading(rx_bytes=100, tx_bytes=20)}
    (fact,) = link_facts(first, last, 1.0)
    assert fact.rx_bytes_per_s is None and fact.tx_bytes_per_s == 10.0


def test_master_and_peer_names_resolve_within_the_namespace():
    last = {r.ifname: r for r in map(reading_from_ifinfmsg, map(decode, (LINK_VA, LINK_VD,
                                                                          LINK_BR0, LINK_LO)))}
    facts = {f.ifname: f for f in link_facts(None, last, None)}
    assert facts["vd"].master == "br0" and facts["vd"].link_ifname is None  # vc not dumped here
    # va's peer index 2 lives in another namespace: it must not resolve to this namespace's
    # ifindex 2 (va itself)
    assert facts["va"].link_ifindex == 2 and facts["va"].link_ifname is None
    assert all(isinstance(f, NetLink) and f.fact_id == f"net_link:{f.ifname}"
               for f in facts.values())


@pytest.mark.live
def test_a_missing_namespace_is_unavailable_and_not_created():
    from sysdiag.probes.base import Unavailable

    name = f"sysdiag-test-absent-{os.getpid()}"
    with pytest.raises(Unavailable, match=f"network namespace '{name}' does not exist"):
        NetLinksProbe(netns=name).sample(ProbeContext())
    assert not Path("/run/netns", name).exists()  # pyroute2 would create it by default
