"""Live network probe tests in network namespaces the tests create (marked live + root).

Two namespaces joined by a veth pair (va in A, vb in B) carry bounded UDP traffic
from A to B's address; nothing is sent outside them. The probes are checked
against `ip -s -s -j link` and `tc -s -j qdisc/class`. Namespaces are deleted and
started processes reaped in `finally`, also when a test fails.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from sysdiag.probes.base import ProbeContext
from sysdiag.probes.netlink.links import NetLinksProbe
from sysdiag.probes.netlink.qdiscs import QdiscsProbe
from sysdiag.probes.procfs.softnet import SoftnetProbe
from sysdiag.probes.runner import run_probes

pytestmark = [pytest.mark.live, pytest.mark.root]

if os.geteuid() != 0:
    pytest.skip("needs root to create network namespaces", allow_module_level=True)
if shutil.which("ip") is None or shutil.which("tc") is None:
    pytest.skip("needs iproute2 (ip, tc)", allow_module_level=True)

ADDR_A, ADDR_B = "10.231.7.1", "10.231.7.2"

#: a bounded UDP sender run inside namespace A: COUNT datagrams of SIZE bytes to DST,
#: spread evenly over SPREAD seconds (0: as fast as possible), never blocking (a full
#: socket buffer waits a millisecond), giving up after SPREAD + 5 seconds
SENDER = """
import socket, sys, time
dst, count, size, spread = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
start = time.monotonic()
sent, end = 0, start + spread + 5
while sent < count and time.monotonic() < end:
    due = start + spread * sent / count
    if time.monotonic() < due:
        time.sleep(due - time.monotonic())
    try:
        s.sendto(b"x" * size, (dst, 9))
        sent += 1
    except BlockingIOError:
        time.sleep(0.001)
print(sent)
"""


def run(*args: str) -> str:
    return subprocess.run(list(args), check=True, capture_output=True, text=True,
                          timeout=20).stdout


def send(ns: str, count: int, size: int = 1200, spread_s: float = 0.0) -> int:
    out = run("ip", "netns", "exec", ns, sys.executable, "-c", SENDER, ADDR_B, str(count),
              str(size), str(spread_s))
    return int(out.strip())


@pytest.fixture
def netns_pair() -> Iterator[tuple[str, str]]:
    """Namespaces A and B, veth va (A, 10.231.7.1) <-> vb (B, 10.231.7.2), a tbf on va."""
    tag = f"sdtest{os.getpid()}"
    ns_a, ns_b = f"{tag}a", f"{tag}b"
    created = []
    try:
        for ns in (ns_a, ns_b):
            run("ip", "netns", "add", ns)
            created.append(ns)
        run("ip", "-n", ns_a, "link", "add", "va", "type", "veth", "peer", "name", "vb",
            "netns", ns_b)
        for ns, dev, addr in ((ns_a, "va", ADDR_A), (ns_b, "vb", ADDR_B)):
            run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            run("ip", "-n", ns, "link", "set", dev, "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
        run("tc", "-n", ns_a, "qdisc", "add", "dev", "va", "root", "tbf", "rate", "1mbit",
            "burst", "32kbit", "latency", "400ms")
        yield ns_a, ns_b
    except subprocess.CalledProcessError as err:
        pytest.skip(f"cannot build the test namespaces: {err.cmd}: {err.stderr.strip()}")
    finally:
        leftovers = []
        for ns in created:
            for _ in range(5):
                done = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True,
                                      timeout=20)
                if done.returncode == 0 or not Path("/run/netns", ns).exists():
                    break
                time.sleep(0.2)
            else:
                leftovers.append(f"{ns}: {done.stderr.strip()}")
        if leftovers:
            pytest.fail(f"could not delete test namespaces: {leftovers}")


def by_name(facts, kind):
    return {f.ifname: f for f in facts if f.kind == kind}


def test_links_match_ip_json(netns_pair):
    ns_a, ns_b = netns_pair
    assert send(ns_a, 50, size=200) == 50
    time.sleep(0.5)  # let the shaper drain
    probe = NetLinksProbe(netns=ns_a)
    ctx = ProbeContext()
    facts = by_name(probe.facts(ctx, None, probe.sample(ctx), None), "net_link")
    ip_json = {d["ifname"]: d for d in json.loads(run("ip", "-n", ns_a, "-s", "-s", "-j", "link"))}
    assert set(facts) == set(ip_json) == {"lo", "va"}
    va, ref = facts["va"], ip_json["va"]
    assert (va.ifindex, va.link_kind, va.qdisc, va.mtu, va.operstate) == (
        ref["ifindex"], "veth", "tbf", ref["mtu"], "up")
    # the peer is in namespace B: ifindex and netnsid as `ip` shows them ("link_index")
    assert va.link_ifindex == ref["link_index"] and va.peer_netnsid == ref["link_netnsid"]
    assert va.link_ifname is None
    rx, tx = ref["stats64"]["rx"], ref["stats64"]["tx"]
    # IPv6 neighbour discovery may add a few packets between the two reads
    assert 0 <= tx["packets"] - va.tx_packets_total <= 5
    assert 0 <= tx["bytes"] - va.tx_bytes_total <= 1500
    assert va.tx_packets_total >= 50
    assert 0 <= rx["packets"] - va.rx_packets_total <= 5
    for ours, theirs in (("rx_errors", rx["errors"]), ("rx_dropped", rx["dropped"]),
                         ("rx_missed_errors", rx["missed_errors"]),
                         ("rx_crc_errors", rx["crc_errors"]), ("tx_errors", tx["errors"]),
                         ("tx_dropped", tx["dropped"]), ("collisions", tx["collisions"]),
                         ("carrier_changes", tx["carrier_changes"])):
        assert getattr(va, f"{ours}_total") == theirs, ours
    assert facts["lo"].link_kind == "loopback"


def test_tbf_drops_and_overlimits_rise(netns_pair):
    ns_a, _ = netns_pair
    ctx = ProbeContext()
    qdiscs, links = QdiscsProbe(netns=ns_a), NetLinksProbe(netns=ns_a)
    first_q, first_l, t0 = qdiscs.sample(ctx), links.sample(ctx), time.monotonic()
    # 1 Mbit/s is 104 datagrams of 1200 bytes a second; the tbf queue holds ~45
    sent = send(ns_a, 2000)
    last_q, last_l = qdiscs.sample(ctx), links.sample(ctx)
    elapsed = time.monotonic() - t0
    tbf = by_name(qdiscs.facts(ctx, first_q, last_q, elapsed), "qdisc")["va"]
    va = by_name(links.facts(ctx, first_l, last_l, elapsed), "net_link")["va"]
    assert sent == 2000
    assert (tbf.qdisc_kind, tbf.root, tbf.parent) == ("tbf", True, "root")
    assert (tbf.rate_bps, tbf.burst_bytes, tbf.limit_bytes) == (1_000_000, 4096, 54096)
    dropped = tbf.dropped_per_s * elapsed
    assert dropped == pytest.approx(tbf.dropped_total, abs=1)  # fresh qdisc: all in window
    assert 2000 - 200 <= tbf.dropped_total < 2000
    assert tbf.overlimits_per_s > 0 and tbf.sent_packets_per_s > 0
    assert va.tx_packets_per_s > 0
    # what the qdisc sent, the veth transmitted (ND packets bypass nothing: same path)
    assert va.tx_packets_total == pytest.approx(tbf.sent_packets_total, abs=5)
    ref = next(q for q in json.loads(run("tc", "-n", ns_a, "-s", "-j", "qdisc", "show",
                                         "dev", "va")) if q["kind"] == "tbf")
    assert ref["drops"] == tbf.dropped_total  # drops stop when the sender stops
    assert ref["handle"] == tbf.handle


def test_htb_classes_borrow_and_match_tc(netns_pair):
    ns_a, _ = netns_pair
    tc = ("tc", "-n", ns_a)
    run(*tc, "qdisc", "replace", "dev", "va", "root", "handle", "1:", "htb", "default", "10")
    run(*tc, "class", "add", "dev", "va", "parent", "1:", "classid", "1:1", "htb",
        "rate", "10mbit", "ceil", "10mbit")
    run(*tc, "class", "add", "dev", "va", "parent", "1:1", "classid", "1:10", "htb",
        "rate", "1mbit", "ceil", "5mbit")
    ctx = ProbeContext()
    probe = QdiscsProbe(netns=ns_a)
    first, t0 = probe.sample(ctx), time.monotonic()
    send(ns_a, 600)
    last = probe.sample(ctx)
    facts = probe.facts(ctx, first, last, time.monotonic() - t0)
    htb = by_name(facts, "qdisc")["va"]
    assert (htb.qdisc_kind, htb.handle, htb.default_class_minor, htb.default_class) == (
        "htb", "1:", 0x10, "1:10")
    classes = {f.classid: f for f in facts if f.kind == "tc_class"}
    assert set(classes) == {"1:1", "1:10"}
    leaf, inner = classes["1:10"], classes["1:1"]
    assert (leaf.parent, leaf.rate_bps, leaf.ceil_bps, leaf.level) == ("1:1", 1_000_000,
                                                                       5_000_000, 0)
    assert inner.parent == "root" and inner.rate_bps == 10_000_000
    # above its 1mbit rate the leaf sends on tokens borrowed from 1:1
    assert leaf.borrowed_total > 0 and leaf.borrowed_per_s > 0
    assert inner.lended_total >= leaf.borrowed_total
    # tc has no JSON for classes: read its text
    text = run(*tc, "-s", "class", "show", "dev", "va", "classid", "1:10")
    assert text.startswith("class htb 1:10 parent 1:1 ")
    sent = int(re.search(r"Sent (\d+) bytes", text).group(1))
    borrowed = int(re.search(r"borrowed: (\d+)", text).group(1))
    # the shaper may still be draining the leaf's queue
    assert 0 <= sent - leaf.sent_bytes_total <= 100_000
    assert 0 <= borrowed - leaf.borrowed_total <= 100


def test_runner_reports_rates_for_the_namespace(netns_pair):
    ns_a, _ = netns_pair
    sender = subprocess.Popen(
        # ~10 Mbit/s for 2.5 s into the 1 Mbit/s shaper
        ["ip", "netns", "exec", ns_a, sys.executable, "-c", SENDER, ADDR_B, "2500", "1200",
         "2.5"],
        stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.2)
        collection = run_probes([NetLinksProbe(netns=ns_a), QdiscsProbe(netns=ns_a),
                                 SoftnetProbe()], ProbeContext(), window_s=1.0, deadline_s=15)
    finally:
        if sender.poll() is None:
            sender.kill()
        sender.wait(timeout=10)
    assert [o.status for o in collection.outcomes] == ["ok", "ok", "ok"]
    tbf = by_name(collection.facts, "qdisc")["va"]
    assert tbf.dropped_per_s > 0 and tbf.overlimits_per_s > 0
    assert tbf.backlog_bytes is not None
    # traffic through the veth passes the per-CPU input backlog of some CPU
    softnet = [f for f in collection.facts if f.kind == "softnet"]
    assert sum(f.processed_per_s for f in softnet) > 0


#: run inside a fresh namespace: sample, cause exactly known events, sample again
NETSTAT_CHILD = """
import json, socket, time
from sysdiag.probes.base import ProbeContext
from sysdiag.probes.procfs.netstat import NetstatProbe
ctx, probe = ProbeContext(), NetstatProbe()
first, t0 = probe.sample(ctx), time.monotonic()
for _ in range(7):  # nothing listens on 127.0.0.1:9: SYN -> RST
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", 9))
    except ConnectionRefusedError:
        pass
    s.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(5):
    u.sendto(b"x", ("127.0.0.1", 9))
listeners = []
for _ in range(3):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    listeners.append(s)
time.sleep(0.05)
facts = probe.facts(ctx, first, probe.sample(ctx), time.monotonic() - t0)
print(json.dumps([f.to_engine() for f in facts]))
"""


def test_netstat_counts_known_events_in_a_fresh_namespace(netns_pair):
    _, ns_b = netns_pair
    out = run("ip", "netns", "exec", ns_b, sys.executable, "-c", NETSTAT_CHILD)
    facts = {f["kind"]: f for f in json.loads(out)}
    c, s = facts["net_counters"], facts["sockstat"]
    # per-namespace MIBs: a fresh namespace saw only what the child did
    assert c["tcp_active_opens_total"] == 7
    assert c["tcp_attempt_fails_total"] == 7
    assert c["tcp_out_rsts_total"] == 7
    assert c["udp_no_ports_total"] == 5
    assert c["tcp_out_segs_total"] >= 7 and c["tcp_out_segs_per_s"] > 0
    assert s["tcp_inuse"] == 3  # the three listeners
    # tcp_mem/udp_mem are global sysctls that only the initial namespace's /proc/sys shows
    assert "tcp_mem_max_pages" not in s and "udp_mem_max_pages" not in s
    assert s["frag_high_thresh_bytes"] > 0  # per namespace


@pytest.mark.live
def test_links_in_the_current_namespace_agree_with_sysfs():
    probe = NetLinksProbe()
    ctx = ProbeContext()
    facts = by_name(probe.facts(ctx, None, probe.sample(ctx), None), "net_link")
    sysfs = Path("/sys/class/net")
    assert set(facts) == {p.name for p in sysfs.iterdir()}
    for name, fact in facts.items():
        assert fact.ifindex == int((sysfs / name / "ifindex").read_text())
        # rx_nohandler is past the 23 fields pyroute2 decodes: read from the raw struct
        nohandler = sysfs / name / "statistics" / "rx_nohandler"
        if nohandler.exists():
            assert fact.rx_nohandler_total == int(nohandler.read_text())
    assert facts["lo"].link_kind == "loopback"
    assert facts["lo"].speed_mbps is None  # reading lo's speed fails with EINVAL
