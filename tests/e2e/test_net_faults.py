"""Real network faults, made here inside network namespaces this test creates, diagnosed by
the installed `diagnose` scoped as a user would scope it (`--netns NAME`, `--iface IF`).

Each test builds two namespaces joined by a veth pair (netfaults.lab), injects one fault
(a qdisc, a sysctl, a socket that never reads, a listener that never accepts...), runs
traffic that stops by itself within 60 s, checks with the kernel's own counters that the
fault is real, runs `diagnose --symptom S --format json`, and removes everything in
`finally` (deleting the namespaces removes their links, qdiscs, routes and sysctls; the two
global sysctls, nf_conntrack_max and netdev_max_backlog, are restored by global_sysctl).
No packet leaves the namespaces; only processes started here are killed.

Symptoms covered: packet-loss (qdisc overflow, UDP receive buffer, softnet backlog, MTU
mismatch, rp_filter, ingress policer), connection-failures (accept queue, no listener, no
route, ARP failure, ephemeral ports, conntrack full), slow-throughput (tbf and htb shapers,
offloads off, receive window), high-latency (bufferbloat, accept queue, conntrack full);
confounders: two simultaneous drop sites, and look-alike drop sites where only one counter
rises now.
"""
from __future__ import annotations

import time

import pytest

import netfaults as nf
from harness import diagnose, find, ranking, summary

pytestmark = [pytest.mark.e2e, pytest.mark.live, pytest.mark.root, pytest.mark.slow,
              pytest.mark.usefixtures("as_root"),
              pytest.mark.skipif(nf.can_run_lab() is not None, reason=str(nf.can_run_lab()))]

#: how long each fault's traffic runs: set-up + a 2 s window + diagnose's own start-up
RUN_S = 15


def _evidence_fields(hyp: dict) -> set[str]:
    return {ev.get("field") for ev in hyp.get("evidence", [])}


def _qdisc(ns: str, ifname: str, kind: str) -> dict:
    found = [q for q in nf.qdiscs(ns, ifname) if q["kind"] == kind]
    assert found, nf.qdiscs(ns, ifname)
    return found[0]


# -- packet-loss -------------------------------------------------------------------------

def test_tbf_overflowing_on_a_veth_is_qdisc_overflow(accuracy):
    with nf.lab("qdof") as lab:
        lab.sh(lab.a, "tc", "qdisc", "add", "dev", lab.if_a, "root", "tbf", "rate", "1mbit",
               "burst", "16kb", "limit", "32kb")
        lab.start(lab.b, nf.UDP_SINK, RUN_S, lab.addr_b, 9000)
        # ~20 Mbit/s into a 1 Mbit/s shaper with a 32 kB queue: the queue overflows
        lab.start(lab.a, nf.UDP_FLOOD, RUN_S, lab.addr_b, 9000, 1200, 2000, 1, "-")
        report = diagnose("packet-loss", netns=lab.a, iface=lab.if_a)
        assert _qdisc(lab.a, lab.if_a, "tbf")["drops"] > 100
    hyp, = accuracy.check(report, "tc-qdisc-overflow", names=[lab.if_a, "tbf"])
    assert "dropped_per_s" in _evidence_fields(hyp)


def test_udp_receiver_that_never_reads_is_rcvbuf_overflow(accuracy):
    with nf.lab("urcv") as lab:
        lab.start(lab.b, nf.UDP_DEAF_RECEIVER, RUN_S, lab.addr_b, 5353, 4096)
        lab.start(lab.a, nf.UDP_FLOOD, RUN_S, lab.addr_b, 5353, 512, 2000, 1, "-")
        time.sleep(0.5)
        report = diagnose("packet-loss", netns=lab.b)
        assert nf.snmp(lab.b)["UdpRcvbufErrors"] > 100
    accuracy.check(report, "net-udp-rcvbuf-overflow", names=["5353"])


def test_bursts_over_a_tiny_softnet_backlog_are_backlog_drops(accuracy):
    """netdev_max_backlog is global: lowered to 2 for ~10 s, restored in finally. RPS on the
    receiving veth steers every packet to CPU 1's backlog while the sender runs on CPU 0,
    so 100-packet bursts arrive faster than the IPI-driven softirq drains them."""
    with nf.lab("bklg") as lab:
        lab.sh(lab.b, "sh", "-c", f"echo 2 > /sys/class/net/{lab.if_b}/queues/rx-0/rps_cpus")
        lab.start(lab.b, nf.UDP_SINK, RUN_S, lab.addr_b, 9000)
        before = nf.softnet_dropped()
        with nf.global_sysctl("net/core/netdev_max_backlog", "2"):
            lab.start(lab.a, nf.UDP_FLOOD, 10, lab.addr_b, 9000, 64, 20000, 100, "-", cpu=0)
            report = diagnose("packet-loss", netns=lab.b, iface=lab.if_b)
            assert nf.softnet_dropped()[1] > before.get(1, 0)
    accuracy.check(report, "nic-backlog-drop", names=["cpu 1"])


def test_veth_mtu_mismatch_drops_large_frames(accuracy):
    """In namespace a: jmb0 (MTU 9000) is paired with jmb1 (MTU 1500), which is bridged
    with the veth to b. 4000-byte datagrams from jmb0 are dropped at the pair."""
    with nf.lab("mtu") as lab:
        lab.sh(lab.a, "ip", "addr", "flush", "dev", lab.if_a)
        lab.sh(lab.a, "ip", "link", "add", "jmb0", "mtu", "9000", "type", "veth",
               "peer", "name", "jmb1")
        lab.sh(lab.a, "ip", "link", "add", "br0", "type", "bridge")
        for port in ("jmb1", lab.if_a):
            lab.sh(lab.a, "ip", "link", "set", port, "master", "br0")
        for link in ("jmb0", "jmb1", "br0"):
            lab.sh(lab.a, "ip", "link", "set", link, "up")
        lab.sh(lab.a, "ip", "addr", "add", f"{lab.addr_a}/24", "dev", "jmb0")
        lab.start(lab.b, nf.UDP_SINK, RUN_S, lab.addr_b, 9000)
        lab.start(lab.a, nf.UDP_FLOOD, RUN_S, lab.addr_b, 9000, 4000, 200, 1, "-")
        report = diagnose("packet-loss", netns=lab.a, iface="jmb0")
        assert nf.link_stats(lab.a, "jmb0")["stats64"]["tx"]["dropped"] > 50
    accuracy.check(report, "net-mtu-mismatch", names=["jmb0", "jmb1"])


def test_strict_rp_filter_drops_an_asymmetric_source(accuracy):
    """b routes 10.99.0.0/24 out of another interface (alt0); a sends from 10.99.0.1 over
    the veth, so b's strict reverse-path filter (rp_filter=1) drops every datagram."""
    with nf.lab("rpf") as lab:
        lab.sh(lab.b, "ip", "link", "add", "alt0", "type", "veth", "peer", "name", "alt1")
        for link in ("alt0", "alt1"):
            lab.sh(lab.b, "ip", "link", "set", link, "up")
        lab.sh(lab.b, "ip", "route", "add", "10.99.0.0/24", "dev", "alt0")
        lab.sysctl(lab.b, "net.ipv4.conf.all.rp_filter", "1")
        lab.sysctl(lab.b, f"net.ipv4.conf.{lab.if_b}.rp_filter", "1")
        lab.sh(lab.a, "ip", "addr", "add", "10.99.0.1/32", "dev", lab.if_a)
        # ARP from the veth's own address: b's ARP also checks the reverse path, and would
        # otherwise refuse to answer a request sourced from 10.99.0.1
        lab.sysctl(lab.a, f"net.ipv4.conf.{lab.if_a}.arp_announce", "2")
        lab.start(lab.b, nf.UDP_SINK, RUN_S, "0.0.0.0", 9000)
        lab.start(lab.a, nf.UDP_FLOOD, RUN_S, lab.addr_b, 9000, 200, 500, 1, "10.99.0.1")
        time.sleep(0.5)
        report = diagnose("packet-loss", netns=lab.b, iface=lab.if_b)
        assert nf.snmp(lab.b)["TcpExtIPReversePathFilter"] > 50
    accuracy.check(report, "net-rp-filter-drop", names=[lab.if_b])


def test_ingress_policer_drops_inbound_traffic(accuracy):
    with nf.lab("ipol") as lab:
        lab.sh(lab.b, "tc", "qdisc", "add", "dev", lab.if_b, "handle", "ffff:", "ingress")
        police = lab.sh(lab.b, "tc", "filter", "add", "dev", lab.if_b, "parent", "ffff:",
                        "protocol", "ip", "u32", "match", "u32", "0", "0", "police", "rate",
                        "1mbit", "burst", "10k", "drop", check=False)
        if police.returncode != 0:
            pytest.skip(f"kernel cannot police (act_police not built in, no module loads "
                        f"here): {police.stderr.strip()}")
        lab.start(lab.b, nf.UDP_SINK, RUN_S, lab.addr_b, 9000)
        lab.start(lab.a, nf.UDP_FLOOD, RUN_S, lab.addr_b, 9000, 1200, 2000, 1, "-")
        report = diagnose("packet-loss", netns=lab.b, iface=lab.if_b)
    accuracy.check(report, "tc-ingress-policer", names=[lab.if_b])


# -- connection-failures -----------------------------------------------------------------

@pytest.mark.parametrize("symptom", ["connection-failures", "high-latency"])
def test_listener_that_never_accepts_overflows_its_accept_queue(accuracy, symptom):
    with nf.lab("acq") as lab:
        lab.start(lab.b, nf.TCP_DEAF_LISTENER, RUN_S, lab.addr_b, 8080, 1)
        lab.start(lab.a, nf.CONNECT_LOOP, 10, lab.addr_b, 8080, 20)
        time.sleep(0.5)
        report = diagnose(symptom, netns=lab.b)
        assert nf.snmp(lab.b)["TcpExtListenOverflows"] > 5
    accuracy.check(report, "net-accept-queue-overflow", names=["8080"])


def test_connects_to_a_closed_port_are_no_listener(accuracy):
    with nf.lab("nol") as lab:
        conn = lab.start(lab.a, nf.CONNECT_LOOP, 8, lab.addr_b, 8081, 20)
        time.sleep(0.5)
        report = diagnose("connection-failures", netns=lab.b)
        assert "ECONNREFUSED=" in lab.finish(conn)
    hyp, = accuracy.check(report, "net-no-listener")
    # counters are all the kernel keeps of a refused connect (no eBPF here): the resets
    # b sent are the evidence
    assert "tcp_out_rsts_per_s" in _evidence_fields(hyp)


def test_connects_without_a_route_are_no_route(accuracy):
    with nf.lab("nrt") as lab:
        # 10.88.0.5 is off-link and a has no default route: the SYN never leaves a
        conn = lab.start(lab.a, nf.CONNECT_LOOP, 8, "10.88.0.5", 443, 20)
        time.sleep(0.5)
        report = diagnose("connection-failures", netns=lab.a)
        assert "ENETUNREACH=" in lab.finish(conn)
    hyp, = accuracy.check(report, "net-no-route")
    assert "ip_out_no_routes_per_s" in _evidence_fields(hyp)


def test_connects_to_an_unowned_on_link_address_fail_arp(accuracy):
    with nf.lab("arp") as lab:
        conn = lab.start(lab.a, nf.CONNECT_LOOP, 10, "10.77.0.99", 443, 5)
        time.sleep(1.0)  # the first resolution attempts fail (3 probes, 1 s apart)
        report = diagnose("connection-failures", netns=lab.a, iface=lab.if_a)
        neigh = lab.sh(lab.a, "ip", "neigh", "show", "10.77.0.99").stdout
        assert "INCOMPLETE" in neigh or "FAILED" in neigh, neigh
        lab.finish(conn)
    accuracy.check(report, "net-arp-resolution-failure", names=["10.77.0.99", lab.if_a])


def test_tiny_local_port_range_is_ephemeral_port_exhaustion(accuracy):
    with nf.lab("eph") as lab:
        lab.sysctl(lab.a, "net.ipv4.ip_local_port_range", "40000 40009")
        lab.start(lab.b, nf.TCP_SINK, RUN_S, lab.addr_b, 5001)
        hold = lab.start(lab.a, nf.CONNECT_HOLD, RUN_S, lab.addr_b, 5001, 12)
        assert "EADDRNOTAVAIL=" in hold.stdout.readline()  # the 11th connect already fails
        conn = lab.start(lab.a, nf.CONNECT_LOOP, 8, lab.addr_b, 5001, 20)
        report = diagnose("connection-failures", netns=lab.a)
        assert "EADDRNOTAVAIL=" in lab.finish(conn)
    accuracy.check(report, "net-ephemeral-port-exhaustion", names=[f"{lab.addr_b}:5001"])


@pytest.mark.parametrize("symptom", ["connection-failures", "packet-loss"])
def test_conntrack_table_at_its_limit_drops_new_flows(accuracy, symptom):
    """nf_conntrack_max is global (read-only in other namespaces): it is lowered to 64 for
    the ~10 s of the diagnosis and restored in finally. b tracks connections (an nft rule
    with `ct state`); 64 held connections fill the table, new ones are dropped."""
    with nf.lab("ctf") as lab:
        lab.sh(lab.b, "nft", "add table inet sdx_e2e; "
               "add chain inet sdx_e2e input { type filter hook input priority 0; policy accept; }; "
               "add rule inet sdx_e2e input ct state new counter accept")
        lab.start(lab.b, nf.TCP_SINK, RUN_S, lab.addr_b, 5001)
        with nf.global_sysctl("net/netfilter/nf_conntrack_max", "64"):
            hold = lab.start(lab.a, nf.CONNECT_HOLD, 12, lab.addr_b, 5001, 64)
            hold.stdout.readline()
            lab.start(lab.a, nf.CONNECT_LOOP, 10, lab.addr_b, 5001, 20)
            report = diagnose(symptom, netns=lab.b)
            count = int(lab.sh(lab.b, "cat", "/proc/sys/net/netfilter/nf_conntrack_count").stdout)
            assert count >= 64
    accuracy.check(report, "nf-conntrack-full", names=["conntrack"])


# -- slow-throughput ---------------------------------------------------------------------

def test_tbf_shaper_caps_a_bulk_transfer(accuracy):
    with nf.lab("tbfs") as lab:
        lab.sh(lab.a, "tc", "qdisc", "add", "dev", lab.if_a, "root", "tbf", "rate", "4mbit",
               "burst", "32kb", "latency", "50ms")
        lab.start(lab.b, nf.TCP_SINK, RUN_S, lab.addr_b, 5001)
        lab.start(lab.a, nf.TCP_BULK, RUN_S, lab.addr_b, 5001)
        time.sleep(1.0)  # past slow start, at the shaper's rate
        report = diagnose("slow-throughput", netns=lab.a, iface=lab.if_a)
        assert _qdisc(lab.a, lab.if_a, "tbf")["overlimits"] > 10  # held back: shaping
    accuracy.check(report, "tc-shaper-limit", names=[lab.if_a, "tbf"])


def test_htb_class_at_its_ceiling_caps_a_bulk_transfer(accuracy):
    with nf.lab("htbs") as lab:
        lab.sh(lab.a, "tc", "qdisc", "add", "dev", lab.if_a, "root", "handle", "1:", "htb",
               "default", "10")
        lab.sh(lab.a, "tc", "class", "add", "dev", lab.if_a, "parent", "1:", "classid", "1:10",
               "htb", "rate", "3mbit", "ceil", "3mbit")
        lab.start(lab.b, nf.TCP_SINK, RUN_S, lab.addr_b, 5001)
        lab.start(lab.a, nf.TCP_BULK, RUN_S, lab.addr_b, 5001)
        time.sleep(1.0)
        report = diagnose("slow-throughput", netns=lab.a, iface=lab.if_a)
        assert _qdisc(lab.a, lab.if_a, "htb")["overlimits"] > 10  # held back: shaping
    accuracy.check(report, "tc-shaper-limit", names=[lab.if_a, "htb"])


def test_offloads_switched_off_on_a_veth(accuracy):
    with nf.lab("ofl") as lab:
        for ns, ifname in ((lab.a, lab.if_a), (lab.b, lab.if_b)):
            lab.sh(ns, "ethtool", "-K", ifname, "tso", "off", "gso", "off", "gro", "off",
                   "sg", "off", "tx", "off")
        lab.start(lab.b, nf.TCP_SINK, RUN_S, lab.addr_b, 5001)
        lab.start(lab.a, nf.TCP_BULK, RUN_S, lab.addr_b, 5001)
        report = diagnose("slow-throughput", netns=lab.a, iface=lab.if_a)
        features = lab.sh(lab.a, "ethtool", "-k", lab.if_a).stdout
        assert "tcp-segmentation-offload: off" in features, features
    accuracy.check(report, "nic-offloads-off", names=[lab.if_a])


def test_slow_reader_with_a_small_buffer_limits_the_window(accuracy):
    with nf.lab("rwin") as lab:
        lab.start(lab.b, nf.TCP_SLOW_READER, RUN_S, lab.addr_b, 5001, 4096)
        lab.start(lab.a, nf.TCP_BULK, RUN_S, lab.addr_b, 5001)
        time.sleep(0.5)
        report = diagnose("slow-throughput", netns=lab.b)
        assert nf.snmp(lab.b)["TcpExtTCPToZeroWindowAdv"] > 5
    accuracy.check(report, "net-window-buffer-limited")


# -- high-latency ------------------------------------------------------------------------

def test_deep_tbf_queue_under_a_bulk_transfer_is_bufferbloat(accuracy):
    with nf.lab("blt") as lab:
        # 4 MB of queue at 4 Mbit/s: up to 8 s of standing queue, nothing dropped
        lab.sh(lab.a, "tc", "qdisc", "add", "dev", lab.if_a, "root", "tbf", "rate", "4mbit",
               "burst", "32kb", "limit", "4mb")
        lab.start(lab.b, nf.TCP_SINK, RUN_S, lab.addr_b, 5001)
        lab.start(lab.a, nf.TCP_BULK, RUN_S, lab.addr_b, 5001)
        time.sleep(1.0)
        report = diagnose("high-latency", netns=lab.a, iface=lab.if_a)
        tbf = _qdisc(lab.a, lab.if_a, "tbf")
        assert tbf["backlog"] > 20000 and tbf["drops"] == 0, tbf
    accuracy.check(report, "tc-bufferbloat", names=[lab.if_a, "tbf"])


def test_loss_beyond_the_namespace_is_path_loss(accuracy):
    """b polices what it receives (ingress redirected to an ifb with a small tbf queue), so
    a's bulk transfer loses segments outside a: a sees retransmits, no local drops."""
    with nf.lab("ploss") as lab:
        lab.sh(lab.b, "ip", "link", "add", "ifbp", "type", "ifb")
        lab.sh(lab.b, "ip", "link", "set", "ifbp", "up")
        lab.sh(lab.b, "tc", "qdisc", "add", "dev", "ifbp", "root", "tbf", "rate", "8mbit",
               "burst", "16kb", "limit", "20kb")
        lab.sh(lab.b, "tc", "qdisc", "add", "dev", lab.if_b, "handle", "ffff:", "ingress")
        lab.sh(lab.b, "tc", "filter", "add", "dev", lab.if_b, "parent", "ffff:", "protocol",
               "ip", "u32", "match", "u32", "0", "0", "action", "mirred", "egress",
               "redirect", "dev", "ifbp")
        lab.start(lab.b, nf.TCP_SINK, RUN_S, lab.addr_b, 5001)
        lab.start(lab.a, nf.TCP_BULK, RUN_S, lab.addr_b, 5001)
        time.sleep(1.0)
        report = diagnose("high-latency", netns=lab.a, iface=lab.if_a)
        counters = nf.snmp(lab.a)
        assert counters["TcpRetransSegs"] > 0.01 * counters["TcpOutSegs"], counters
    accuracy.check(report, "net-path-loss-retrans")


# -- confounders -------------------------------------------------------------------------

def test_qdisc_overflow_and_rcvbuf_overflow_at_once(accuracy):
    """Two drop sites in namespace a at once: its egress tbf overflows (a -> b) and a UDP
    socket in a that never reads overflows (b -> a). Both must be in the top 3."""
    with nf.lab("two") as lab:
        lab.sh(lab.a, "tc", "qdisc", "add", "dev", lab.if_a, "root", "tbf", "rate", "1mbit",
               "burst", "16kb", "limit", "32kb")
        lab.start(lab.b, nf.UDP_SINK, RUN_S, lab.addr_b, 9000)
        lab.start(lab.a, nf.UDP_DEAF_RECEIVER, RUN_S, lab.addr_a, 5353, 4096)
        lab.start(lab.a, nf.UDP_FLOOD, RUN_S, lab.addr_b, 9000, 1200, 2000, 1, "-")
        lab.start(lab.b, nf.UDP_FLOOD, RUN_S, lab.addr_a, 5353, 512, 2000, 1, "-")
        time.sleep(0.5)
        report = diagnose("packet-loss", netns=lab.a)
        assert _qdisc(lab.a, lab.if_a, "tbf")["drops"] > 100
        assert nf.snmp(lab.a)["UdpRcvbufErrors"] > 100
    accuracy.check(report, ["tc-qdisc-overflow", "net-udp-rcvbuf-overflow"],
                   names=[[lab.if_a], ["5353"]])


def _past_rcvbuf_errors(lab: nf.Lab) -> int:
    """A short burst at a deaf UDP socket in a, over before the diagnosis: its drops and
    UdpRcvbufErrors stay (counted since boot of the namespace) but no longer rise."""
    lab.start(lab.a, nf.UDP_DEAF_RECEIVER, RUN_S, lab.addr_a, 5353, 4096)
    lab.finish(lab.start(lab.b, nf.UDP_FLOOD, 1, lab.addr_a, 5353, 512, 2000, 1, "-"))
    errors = nf.snmp(lab.a)["UdpRcvbufErrors"]
    assert errors > 100
    return errors


def test_rising_qdisc_drops_rank_above_old_rcvbuf_errors(accuracy):
    with nf.lab("lka") as lab:
        past = _past_rcvbuf_errors(lab)
        lab.sh(lab.a, "tc", "qdisc", "add", "dev", lab.if_a, "root", "tbf", "rate", "1mbit",
               "burst", "16kb", "limit", "32kb")
        lab.start(lab.b, nf.UDP_SINK, RUN_S, lab.addr_b, 9000)
        lab.start(lab.a, nf.UDP_FLOOD, RUN_S, lab.addr_b, 9000, 1200, 2000, 1, "-")
        report = diagnose("packet-loss", netns=lab.a)
        assert nf.snmp(lab.a)["UdpRcvbufErrors"] == past  # flat during the window
    accuracy.check(report, "tc-qdisc-overflow", names=[lab.if_a])
    assert "net-udp-rcvbuf-overflow" not in ranking(report), summary(report)


def test_rising_rcvbuf_errors_rank_above_old_qdisc_drops(accuracy):
    with nf.lab("lkb") as lab:
        lab.sh(lab.a, "tc", "qdisc", "add", "dev", lab.if_a, "root", "tbf", "rate", "1mbit",
               "burst", "16kb", "limit", "32kb")
        lab.start(lab.b, nf.UDP_SINK, RUN_S, lab.addr_b, 9000)
        lab.finish(lab.start(lab.a, nf.UDP_FLOOD, 1, lab.addr_b, 9000, 1200, 2000, 1, "-"))
        old_drops = _qdisc(lab.a, lab.if_a, "tbf")["drops"]
        assert old_drops > 100
        lab.start(lab.a, nf.UDP_DEAF_RECEIVER, RUN_S, lab.addr_a, 5353, 4096)
        lab.start(lab.b, nf.UDP_FLOOD, RUN_S, lab.addr_a, 5353, 512, 2000, 1, "-")
        time.sleep(0.5)
        report = diagnose("packet-loss", netns=lab.a)
        assert _qdisc(lab.a, lab.if_a, "tbf")["drops"] == old_drops  # flat now
    accuracy.check(report, "net-udp-rcvbuf-overflow", names=["5353"])
    qdisc = find(report, "tc-qdisc-overflow")
    assert qdisc is None, summary(report)
