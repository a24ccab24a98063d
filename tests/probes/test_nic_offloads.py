"""offloads: the generic-netlink codec on hand-built messages, ethtool's flag grouping,
and live cross-checks against `ethtool -k/-g/-l/-c` (which the probe never runs)."""
from __future__ import annotations

import errno
import shutil
import struct
import subprocess

import pytest

from sysdiag.probes.base import ProbeContext
from sysdiag.probes.netlink import ethtool as E
from sysdiag.probes.netlink.genl import (NLMSG_DONE, NLMSG_ERROR, GenlSocket, NetlinkError, attr,
                                        attrs, messages)
from sysdiag.probes.scope import run_in_netns

from netns_helpers import need_root_and_ip, netns, run, tag, veth
from probe_helpers import run_one

NAMES = ["tx-scatter-gather", "tx-checksum-ipv4", "tx-checksum-ip-generic", "",
         "tx-tcp-segmentation", "tx-tcp6-segmentation", "tx-generic-segmentation", "rx-gro",
         "rx-lro", "rx-checksum", "tx-scatter-gather-fraglist", "highdma"]


def u32(value: int) -> bytes:
    return struct.pack("=I", value)


def compact(bits: set[int], size: int = len(NAMES)) -> bytes:
    words = [0] * ((size + 31) // 32)
    for bit in bits:
        words[bit // 32] |= 1 << (bit % 32)
    return attr(E.BITSET_NOMASK) + attr(E.BITSET_SIZE, u32(size)) + \
        attr(E.BITSET_VALUE, struct.pack(f"={len(words)}I", *words))


def verbose(names: list[str], values: set[str] = frozenset(), nomask: bool = True) -> bytes:
    """A verbose bitset listing `names`; without NOMASK it is a mask and only the names
    in `values` carry the VALUE flag."""
    bits = b"".join(attr(E.BITS_BIT, attr(E.BIT_INDEX, u32(NAMES.index(n))) +
                         attr(E.BIT_NAME, n.encode() + b"\0") +
                         (attr(E.BIT_VALUE) if n in values else b""), nested=True)
                    for n in names)
    return (attr(E.BITSET_NOMASK) if nomask else b"") + attr(E.BITSET_BITS, bits, nested=True)


def header(ifname: str, index: int = 2) -> bytes:
    return attr(E.A_HEADER, attr(E.HEADER_DEV_INDEX, u32(index)) +
                attr(E.HEADER_DEV_NAME, ifname.encode() + b"\0"), nested=True)


def idx(*names: str) -> set[int]:
    return {NAMES.index(n) for n in names}


def features_reply(ifname: str, hw: set[int], active: set[int], nochange: set[int]) -> bytes:
    return header(ifname) + attr(E.FEATURES_HW, compact(hw), nested=True) + \
        attr(3, compact(active), nested=True) + \
        attr(E.FEATURES_ACTIVE, compact(active), nested=True) + \
        attr(E.FEATURES_NOCHANGE, compact(nochange), nested=True)


def strset_reply(names: list[str]) -> bytes:
    strings = b"".join(attr(E.STRINGS_STRING, attr(E.STRING_INDEX, u32(i)) +
                            attr(E.STRING_VALUE, n.encode() + b"\0"), nested=True)
                       for i, n in enumerate(names) if n)
    one = attr(E.STRINGSET_ID, u32(E.ETH_SS_FEATURES)) + attr(2, u32(len(names))) + \
        attr(E.STRINGSET_STRINGS, strings, nested=True)
    other = attr(E.STRINGSET_ID, u32(1)) + attr(E.STRINGSET_STRINGS, b"", nested=True)
    return header("") + attr(E.STRSET_STRINGSETS, attr(E.STRINGSETS_STRINGSET, other, nested=True)
                             + attr(E.STRINGSETS_STRINGSET, one, nested=True), nested=True)


# ---- codec -------------------------------------------------------------------------------

def test_attributes_round_trip_and_truncation():
    blob = attr(1, b"abc") + attr(2, attr(3, u32(9)), nested=True)
    parsed = list(attrs(blob))
    assert parsed[0] == (1, b"abc") and parsed[1][0] == 2  # nested flag masked off
    assert list(attrs(parsed[1][1])) == [(3, u32(9))]
    with pytest.raises(ValueError, match="claims 12 bytes, 8 left"):
        list(attrs(attr(1, b"12345678")[:8]))


def test_feature_names_from_strset():
    assert E.parse_feature_names([strset_reply(NAMES)]) == NAMES
    assert E.parse_feature_names([header("x")]) == []


def test_compact_and_verbose_bitsets_agree():
    names = ["rx-gro", "tx-tcp6-segmentation"]
    expected = frozenset(names)
    assert E.parse_bitset(compact(idx(*names)), NAMES) == expected
    assert E.parse_bitset(verbose(names), NAMES) == expected
    # without NOMASK a verbose bitset lists the mask; VALUE marks the set bits
    masked = verbose(["rx-gro", "rx-lro", "highdma"], values={"rx-gro", "highdma"},
                     nomask=False)
    assert E.parse_bitset(masked, NAMES) == {"rx-gro", "highdma"}
    # a bit beyond the names the kernel gave (newer kernel than string set): kept by number
    assert E.parse_bitset(compact({40}, size=41), NAMES) == {"bit40"}


@pytest.mark.parametrize("name, pattern, hit", [
    ("tx-checksum-ipv4", "tx-checksum-*", True), ("tx-checksumming", "tx-checksum-*", False),
    ("tx-scatter-gather", "tx-scatter-gather*", True),
    ("tx-scatter-gather-fraglist", "tx-scatter-gather*", True),
    ("tx-tcp-mangleid-segmentation", "tx-tcp*-segmentation", True),
    ("tx-tcp-segmentation", "tx-tcp*-segmentation", True),
    ("tx-udp-segmentation", "tx-tcp*-segmentation", False),
    ("rx-gro", "rx-gro", True), ("rx-gro-hw", "rx-gro", False),
])
def test_pattern_match(name, pattern, hit):
    assert E.pattern_match(name, pattern) is hit


def test_groups_like_ethtool_k():
    hw = idx("tx-scatter-gather", "tx-checksum-ip-generic", "tx-tcp-segmentation",
             "tx-tcp6-segmentation", "tx-generic-segmentation", "rx-gro")
    active = idx("tx-scatter-gather", "tx-checksum-ip-generic", "tx-tcp6-segmentation",
                 "tx-generic-segmentation", "rx-checksum", "highdma")
    ifname, state = E.parse_features(features_reply("eth0", hw, active, idx("highdma")), NAMES)
    assert ifname == "eth0"
    values = E.offloads(state)
    # any member active -> on; every member fixed -> fixed
    assert (values["tso"], values["tso_fixed"]) == (True, False)
    assert (values["tx_csum"], values["tx_csum_fixed"]) == (True, False)
    assert (values["sg"], values["sg_fixed"]) == (True, False)  # fraglist is fixed, sg not
    assert (values["gro"], values["gro_fixed"]) == (False, False)  # off but changeable
    assert (values["lro"], values["lro_fixed"]) == (False, True)
    assert (values["rx_csum"], values["rx_csum_fixed"]) == (True, True)  # on [fixed]
    (fact,) = E.reading_facts(E.EthtoolReading("eth0", features=state))
    assert fact.off_changeable == "gro" and fact.off_changeable_count == 1
    # nochange wins over hw
    _, nochange = E.parse_features(features_reply("x", hw, active, idx("rx-gro")), NAMES)
    assert E.offloads(nochange)["gro_fixed"] is True


def test_unknown_group_is_none_not_false():
    state = E.FeatureState(frozenset({"rx-gro"}), frozenset(), frozenset(), frozenset())
    values = E.offloads(state)
    assert values["tso"] is None and values["tso_fixed"] is None
    assert values["gro"] is False and values["gro_fixed"] is True


def test_rings_channels_coalesce_values():
    block = header("eth0") + attr(2, u32(4096)) + attr(5, u32(4096)) + attr(6, u32(512)) + \
        attr(9, u32(1024))
    assert E.parse_values(block, E.RINGS) == ("eth0", {"rx_max": 4096, "tx_max": 4096,
                                                       "rx": 512, "tx": 1024})
    coalesce = header("eth0") + attr(2, u32(50)) + attr(3, u32(0)) + attr(11, b"\x01")
    name, values = E.parse_values(coalesce, E.COALESCE_U32, E.COALESCE_U8)
    reading = E.EthtoolReading("eth0", rings={"rx_max": 4096, "tx_max": 4096, "rx": 512,
                                              "tx": 1024},
                               channels={"combined_max": 8, "combined": 1, "rx_max": 0},
                               coalesce=values)
    facts = {f.kind: f for f in E.reading_facts(reading)}
    assert facts["nic_rings"].rx_pct_of_max == 12.5 and facts["nic_rings"].tx == 1024
    chan = facts["nic_channels"]
    assert (chan.combined, chan.combined_max, chan.rx, chan.rx_max) == (1, 8, None, None)
    co = facts["nic_coalesce"]
    assert (co.rx_usecs, co.rx_frames, co.adaptive_rx, co.adaptive_tx) == (50, 0, True, None)
    # all maxima 0: ethtool's n/a everywhere, no fact
    assert E.reading_facts(E.EthtoolReading("lo", rings={"rx_max": 0, "tx_max": 0})) == []


class FakeSocket:
    """Plays back datagrams for GenlSocket."""

    def __init__(self, datagrams: list[bytes]):
        self.datagrams = list(datagrams)
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def recv(self, size: int) -> bytes:
        return self.datagrams.pop(0)

    def close(self) -> None:
        pass


def nlmsg(msg_type: int, payload: bytes, flags: int = 0) -> bytes:
    return struct.pack("=IHHII", 16 + len(payload), msg_type, flags, 1, 0) + payload


def fake_genl(datagrams: list[bytes]) -> GenlSocket:
    sock = GenlSocket.__new__(GenlSocket)
    sock.sock, sock.seq = FakeSocket(datagrams), 0
    return sock


def test_dump_collects_replies_and_stops_at_done():
    genl = b"\x0b\x01\x00\x00"
    sock = fake_genl([nlmsg(21, genl + b"AAAA") + nlmsg(21, genl + b"BBBB"),
                      nlmsg(NLMSG_DONE, u32(0))])
    assert sock.dump(21, 11) == [b"AAAA", b"BBBB"]
    assert len(list(messages(sock.sock.sent[0]))) == 1


def test_dump_error_and_interrupted_retry():
    sock = fake_genl([nlmsg(NLMSG_ERROR, struct.pack("=i", -errno.EOPNOTSUPP) + b"\0" * 16)])
    with pytest.raises(NetlinkError) as err:
        sock.dump(21, 15)
    assert err.value.errno == errno.EOPNOTSUPP
    genl = b"\x0b\x01\x00\x00"
    interrupted = nlmsg(21, genl + b"OLD!", flags=0x10) + nlmsg(NLMSG_DONE, u32(0), flags=0x10)
    sock = fake_genl([interrupted, nlmsg(21, genl + b"NEW!") + nlmsg(NLMSG_DONE, u32(0))])
    assert sock.dump(21, 11) == [b"NEW!"]


# ---- live ------------------------------------------------------------------------------

ETHTOOL = shutil.which("ethtool")
LONG = {"rx_csum": "rx-checksumming", "tx_csum": "tx-checksumming", "sg": "scatter-gather",
        "tso": "tcp-segmentation-offload", "gso": "generic-segmentation-offload",
        "gro": "generic-receive-offload", "lro": "large-receive-offload"}


def ethtool(*args: str, ns: str | None = None) -> str:
    prefix = ["ip", "netns", "exec", ns] if ns else []
    return subprocess.run([*prefix, ETHTOOL, *args], capture_output=True, text=True,
                          timeout=20).stdout


def ethtool_k(text: str) -> dict[str, tuple[bool, bool]]:
    """legacy flag -> (on, fixed) as `ethtool -k` prints it (a group is fixed when all of
    its indented features are)."""
    out: dict[str, tuple[bool, bool]] = {}
    current, subs = None, []

    def close():
        if current is not None and subs:
            out[current] = (out[current][0], all(subs))

    for line in text.splitlines()[1:]:
        name, _, rest = line.strip().partition(": ")
        on, fixed = rest.startswith("on"), "[fixed]" in rest
        if line.startswith("\t"):
            subs.append(fixed)
            continue
        close()
        current, subs = name, []
        out[name] = (on, fixed)
    close()
    return out


def by_kind(facts, kind):
    return {f.ifname: f for f in facts if f.kind == kind}


def ethtool_value(text: str, section: str, key: str):
    """`ethtool -g/-l` value under "Pre-set maximums" or "Current hardware settings"."""
    part = text.split(section, 1)[1]
    for line in part.splitlines()[1:]:
        if line.startswith(f"{key}:"):
            value = line.split(":", 1)[1].strip()
            return None if value == "n/a" else int(value)
    return None


needs_ethtool = pytest.mark.skipif(ETHTOOL is None, reason="ethtool not installed (apt install "
                                   "ethtool) for the cross-check")


@pytest.mark.live
@needs_ethtool
def test_live_offloads_match_ethtool_k():
    outcome, facts = run_one(E.OffloadsProbe(), ProbeContext())
    assert outcome.status == "ok", outcome.reason
    offloads = by_kind(facts, "nic_offloads")
    assert offloads and all(f.source == "netlink ethtool features" for f in offloads.values())
    for ifname, fact in offloads.items():
        ref = ethtool_k(ethtool("-k", ifname))
        for key, long in LONG.items():
            assert (getattr(fact, key), getattr(fact, f"{key}_fixed")) == ref[long], \
                (ifname, key)


@pytest.mark.live
@needs_ethtool
def test_live_rings_channels_coalesce_match_ethtool():
    _, facts = run_one(E.OffloadsProbe(), ProbeContext())
    for ifname, rings in by_kind(facts, "nic_rings").items():
        text = ethtool("-g", ifname)
        assert rings.rx_max == ethtool_value(text, "Pre-set maximums", "RX")
        assert rings.tx == ethtool_value(text, "Current hardware settings", "TX")
    for ifname, chan in by_kind(facts, "nic_channels").items():
        text = ethtool("-l", ifname)
        for ours, theirs in (("combined", "Combined"), ("rx", "RX"), ("tx", "TX")):
            assert getattr(chan, f"{ours}_max") == ethtool_value(text, "Pre-set maximums",
                                                                  theirs), (ifname, ours)
            assert getattr(chan, ours) == ethtool_value(text, "Current hardware settings",
                                                         theirs), (ifname, ours)
    for ifname, co in by_kind(facts, "nic_coalesce").items():
        text = ethtool("-c", ifname)
        values = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
        assert co.rx_usecs == int(values["rx-usecs"]) and co.tx_frames == int(values["tx-frames"])
        assert text.split("Adaptive RX: ", 1)[1].startswith("on" if co.adaptive_rx else "off")


@pytest.mark.live
def test_ioctl_fallback_agrees_with_netlink():
    netlink = run_one(E.OffloadsProbe(), ProbeContext())[1]
    outcome, ioctl = run_one(E.OffloadsProbe(use_netlink=False), ProbeContext())
    assert outcome.status == "ok", outcome.reason
    fields = ["tso", "gso", "gro", "lro", "sg", "rx_csum", "tx_csum", "off_changeable"]
    fields += [f"{f}_fixed" for f in fields[:7]]
    def values(facts):
        return {n: [getattr(f, k) for k in fields]
                for n, f in by_kind(facts, "nic_offloads").items()}

    assert values(netlink) == values(ioctl)
    assert {n: (f.rx, f.rx_max) for n, f in by_kind(netlink, "nic_rings").items()} == \
        {n: (f.rx, f.rx_max) for n, f in by_kind(ioctl, "nic_rings").items()}
    assert {n: f.model_dump(exclude={"source"}) for n, f in
            by_kind(netlink, "nic_channels").items()} == \
        {n: f.model_dump(exclude={"source"}) for n, f in by_kind(ioctl, "nic_channels").items()}


@pytest.fixture
def veth_ns():
    need_root_and_ip()
    name = tag("o")
    with netns(name), veth(tag("g"), tag("h"), name):
        yield name, tag("g"), tag("h")


@pytest.mark.live
@pytest.mark.root
@needs_ethtool
def test_gro_toggled_inside_a_namespace(veth_ns):
    ns, a, b = veth_ns
    ctx = ProbeContext(netns_path=f"/run/netns/{ns}", netns_label=f"netns {ns}",
                       ifaces=frozenset({a}))
    probe = E.OffloadsProbe()
    # a test sets up the fault with ethtool, inside the namespace only (the veth goes away
    # with it)
    run("ip", "netns", "exec", ns, ETHTOOL, "-K", a, "gro", "on")
    on = by_kind(run_one(probe, ctx)[1], "nic_offloads")
    assert set(on) == {a} and on[a].gro is True and on[a].gro_fixed is False
    run("ip", "netns", "exec", ns, ETHTOOL, "-K", a, "gro", "off")
    off = by_kind(run_one(probe, ctx)[1], "nic_offloads")[a]
    assert off.gro is False and "gro" in off.off_changeable.split(",")
    assert ethtool_k(ethtool("-k", a, ns=ns))["generic-receive-offload"] == (False, False)
    # the host's namespace never saw the veth
    assert a not in by_kind(run_one(probe, ProbeContext())[1], "nic_offloads")
    # veth: channels (rx/tx) but no rings, and the probe reads them inside
    chan = by_kind(run_one(probe, ctx)[1], "nic_channels")[a]
    text = ethtool("-l", a, ns=ns)
    assert chan.rx_max == ethtool_value(text, "Pre-set maximums", "RX")
    assert not by_kind(run_one(probe, ctx)[1], "nic_rings")


@pytest.mark.live
@pytest.mark.root
def test_netlink_socket_opens_in_the_namespace(veth_ns):
    ns, a, b = veth_ns
    readings = run_in_netns(f"/run/netns/{ns}", lambda: E.read_netlink(print))
    assert set(readings) == {"lo", a, b}


def test_captured_tree_is_unavailable(tree_ctx):
    outcome, _ = run_one(E.OffloadsProbe(), tree_ctx)
    assert outcome.status == "unavailable" and "live kernel" in outcome.reason
