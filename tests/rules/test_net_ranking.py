"""Look-alike ranking for the network rules: the same loss counted at different places on
the packet path. Only the location of the counter that rises *now* tells the cause, so
the rising one must rank first and its look-alikes with only old (since boot) counts must
be ruled out; a root cause ranks above its consequences (KNOWLEDGE §7)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from rule_case_helpers import build_facts

from sysdiag.engine import load_rulebase, run_engine

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"


@pytest.fixture(scope="module")
def rulebase():
    return load_rulebase()


def candidates(symptom: str) -> list[str]:
    return yaml.safe_load((PLAYBOOKS / f"{symptom}.yaml").read_text(encoding="utf-8"))["hypotheses"]


def ranked(rulebase, facts, symptom="packet-loss"):
    result = run_engine(rulebase, build_facts(facts), candidates(symptom), [])
    assert not result.rule_errors, result.rule_errors
    return result


def order(result) -> list[str]:
    return [h.id for h in result.hypotheses]


SOFTNET_NOW = {"kind": "softnet", "cpu": 1, "processed_total": 800000, "dropped_total": 9000,
               "dropped_per_s": 350.0, "time_squeeze_total": 0, "time_squeeze_per_s": 0.0}
SOFTNET_OLD = {**SOFTNET_NOW, "dropped_per_s": 0.0}
RING_NOW = {"kind": "net_link", "ifname": "eth0", "link_kind": "physical",
            "rx_missed_errors_total": 12000, "rx_missed_errors_per_s": 500.0,
            "rx_fifo_errors_per_s": 0.0}
RING_OLD = {**RING_NOW, "rx_missed_errors_per_s": 0.0}
INGRESS_OLD = {"kind": "qdisc", "ifname": "eth0", "qdisc_kind": "ingress", "handle": "ffff:",
               "parent": "ingress", "root": False, "dropped_total": 4000, "dropped_per_s": 0.0}
INGRESS_NOW = {**INGRESS_OLD, "dropped_per_s": 90.0}
REASM_NOW = {"kind": "net_counters", "ip_reasm_fails_total": 700, "ip_reasm_fails_per_s": 60.0,
             "ip_reasm_timeout_per_s": 0.0, "ip6_reasm_fails_per_s": 0.0}
REASM_OLD = {**REASM_NOW, "ip_reasm_fails_per_s": 0.0}


@pytest.mark.parametrize("facts,first,ruled_out", [
    ([SOFTNET_NOW, RING_OLD], "nic-backlog-drop", "nic-rx-ring-overflow"),
    ([SOFTNET_OLD, RING_NOW], "nic-rx-ring-overflow", "nic-backlog-drop"),
    ([INGRESS_NOW, RING_OLD], "tc-ingress-policer", "nic-rx-ring-overflow"),
    ([INGRESS_OLD, RING_NOW], "nic-rx-ring-overflow", "tc-ingress-policer"),
    ([REASM_NOW, SOFTNET_OLD], "net-frag-reassembly", "nic-backlog-drop"),
    ([REASM_OLD, SOFTNET_NOW], "nic-backlog-drop", "net-frag-reassembly"),
], ids=["backlog-now-vs-ring-old", "ring-now-vs-backlog-old", "policer-now-vs-ring-old",
        "ring-now-vs-policer-old", "reassembly-now-vs-backlog-old", "backlog-now-vs-reassembly-old"])
def test_the_rising_counter_ranks_first(rulebase, facts, first, ruled_out):
    result = ranked(rulebase, facts)
    assert order(result)[0] == first, order(result)
    assert ruled_out not in order(result), "the look-alike with only old counts must be ruled out"
    reason = next(r.reason for r in result.ruled_out if r.id == ruled_out)
    assert "flat-while-elsewhere" in reason, reason


def test_both_rising_both_reported(rulebase):
    """Two real drop sites at once: neither is evidence against the other."""
    result = ranked(rulebase, [SOFTNET_NOW, RING_NOW])
    assert {"nic-backlog-drop", "nic-rx-ring-overflow"} <= set(order(result))


def test_one_cpu_doing_all_receive_work_is_the_root_cause(rulebase):
    """softnet squeezes on CPU 0 with CPU 1 idle -> rx_softirq_saturated ->
    rx_concentrated_on_one_cpu -> nic-irq-rss-imbalance, ranked above the squeeze and
    the ring overflow it causes, and linked to them."""
    facts = [
        RING_NOW,
        {"kind": "softnet", "cpu": 0, "processed_total": 9000000, "dropped_total": 0,
         "dropped_per_s": 0.0, "time_squeeze_total": 5000, "time_squeeze_per_s": 60.0},
        {"kind": "cpu_core", "cpu": 0, "softirq_pct": 92.0, "idle_pct": 0.0},
        {"kind": "cpu_core", "cpu": 1, "softirq_pct": 0.3, "idle_pct": 96.0},
        {"kind": "cpu", "cpu_count": 2, "saturated_cpus": 1, "idle_cpus": 1, "busy_pct": 50.0},
    ]
    result = ranked(rulebase, facts)
    ids = order(result)
    assert ids.index("nic-irq-rss-imbalance") < ids.index("nic-napi-squeeze") \
        < ids.index("nic-rx-ring-overflow"), ids
    root = next(h for h in result.hypotheses if h.id == "nic-irq-rss-imbalance")
    assert root.subject == "cpu 0"
    assert set(root.causes) >= {"nic-napi-squeeze", "nic-rx-ring-overflow"}
    ring = next(h for h in result.hypotheses if h.id == "nic-rx-ring-overflow")
    assert "nic-irq-rss-imbalance" in ring.caused_by

    def depth(node) -> int:
        return 1 + max((depth(c) for c in node.children), default=0)
    # weighing rule <- rx_concentrated_on_one_cpu <- rx_softirq_saturated (3 levels)
    assert max(depth(n) for n in root.derivation) >= 3


def test_subjects_name_the_object(rulebase):
    result = ranked(rulebase, [SOFTNET_NOW, RING_NOW, INGRESS_NOW])
    subjects = {h.id: h.subject for h in result.hypotheses}
    assert subjects["nic-backlog-drop"] == "cpu 1"
    assert subjects["nic-rx-ring-overflow"] == "dev eth0"
    assert subjects["tc-ingress-policer"] == "dev eth0 qdisc ingress ffff:"
    ring = next(h for h in result.hypotheses if h.id == "nic-rx-ring-overflow")
    assert "ethtool -S eth0" in ring.next_commands


def test_a_quiet_host_reports_nothing(rulebase):
    """Counters present and flat everywhere: no network finding for any symptom."""
    facts = [
        {**SOFTNET_OLD, "dropped_total": 0},
        {**RING_OLD, "rx_missed_errors_total": 0, "rx_crc_errors_per_s": 0.0,
         "carrier_changes_per_s": 0.0, "duplex": "full", "speed_mbps": 10000},
        {"kind": "net_counters", "retrans_pct": 0.0, "tcp_out_segs_per_s": 50.0,
         "tcp_out_rsts_per_s": 0.0, "udp_no_ports_per_s": 0.0, "ip_frag_fails_per_s": 0.0,
         "tcpext_mtup_fail_per_s": 0.0, "ip_reasm_fails_total": 0, "ip_reasm_fails_per_s": 0.0},
        {"kind": "qdisc", "ifname": "eth0", "qdisc_kind": "fq_codel", "handle": "0:", "parent": "root",
         "root": True, "dropped_total": 0, "dropped_per_s": 0.0, "backlog_packets": 0,
         "sent_packets_per_s": 20.0},
        {"kind": "sockstat", "tcp_tw": 10, "tcp_alloc": 30, "tcp_mem_pages": 5,
         "tcp_mem_min_pages": 45000, "tcp_mem_pressure_pages": 60000, "tcp_mem_max_pages": 90000},
    ]
    for symptom in ("packet-loss", "connection-failures", "slow-throughput", "high-latency"):
        result = ranked(rulebase, facts, symptom)
        assert not result.hypotheses, (symptom, [(h.id, h.subject) for h in result.hypotheses])


# ---- look-alikes on the facts of the sockets, conntrack, neigh and netfilter probes ----

LISTENER_FULL = {"kind": "tcp_listener", "family": "ipv4", "local_addr": "0.0.0.0", "local_port": 8080,
                 "inode": 4711, "accept_queue": 129, "backlog": 128, "queue_pct": 100.8, "syn_recv": 3}
LISTENER_IDLE = {**LISTENER_FULL, "accept_queue": 0, "queue_pct": 0.0}
ACCEPT_OVERFLOW = {"kind": "net_counters", "tcpext_listen_overflows_total": 900,
                   "tcpext_listen_overflows_per_s": 25.0, "tcpext_listen_drops_per_s": 25.0,
                   "tcpext_req_q_full_drop_per_s": 0.0, "tcpext_req_q_full_do_cookies_per_s": 0.0}
SYN_FLOOD = {"kind": "net_counters", "tcpext_listen_overflows_total": 0, "tcpext_listen_overflows_per_s": 0.0,
             "tcpext_req_q_full_drop_per_s": 0.0, "tcpext_req_q_full_do_cookies_per_s": 400.0}
SYN_FLOOD_LOG = {"kind": "klog", "signature": "syn-flood", "subject": "8080", "count": 1, "recent": True}


def test_a_full_accept_queue_ranks_above_the_syn_flood_look_alike(rulebase):
    """ListenOverflows rise and the listener's Recv-Q is at its backlog, the request queue
    counters are flat: the application does not accept fast enough, no SYN flood."""
    result = ranked(rulebase, [ACCEPT_OVERFLOW, LISTENER_FULL], "connection-failures")
    assert order(result)[0] == "net-accept-queue-overflow", order(result)
    assert "net-syn-queue-flood" not in order(result)
    first = result.hypotheses[0]
    assert first.certainty == "confirmed"
    assert any(e.field == "local_port" and e.value == 8080 for e in first.evidence)


def test_a_syn_flood_ranks_above_the_accept_queue_look_alike(rulebase):
    """Cookies are sent and the kernel logged the SYN-flood line (which also names a full
    listener), but ListenOverflows are flat and the accept queue is empty."""
    result = ranked(rulebase, [SYN_FLOOD, SYN_FLOOD_LOG, LISTENER_IDLE], "connection-failures")
    assert order(result)[0] == "net-syn-queue-flood", order(result)
    assert "net-accept-queue-overflow" not in order(result)
    reason = next(r.reason for r in result.ruled_out if r.id == "net-accept-queue-overflow")
    assert "net-accept-queue-overflow.flat" in reason, reason


CT_FULL = {"kind": "conntrack", "count": 262144, "max": 262144, "pct": 100.0, "drop_total": 5000,
           "drop_per_s": 80.0, "early_drop_per_s": 300.0, "insert_failed_per_s": 0.0, "invalid_per_s": 0.0}
CT_CALM = {**CT_FULL, "count": 4000, "pct": 1.5, "drop_total": 0, "drop_per_s": 0.0, "early_drop_per_s": 0.0}
FW = {"kind": "netfilter", "rule_counters_available": True, "nf_tables": True, "nft_rules": 40,
      "nft_drop_rules": 1, "nft_drop_policies": 0}
DROP_RULE_NOW = {"kind": "netfilter_rule", "backend": "nftables", "family": "inet", "table": "filter",
                 "chain": "input", "handle": 9, "verdict": "drop", "packets_total": 90000,
                 "packets_per_s": 120.0}
DROP_RULE_FLAT = {**DROP_RULE_NOW, "packets_per_s": 0.0}


def test_conntrack_full_ranks_above_a_quiet_drop_rule(rulebase):
    """New connections fail; the table is at nf_conntrack_max and drops, the firewall's drop
    rule has old counts only: the table is the cause, the rule is not reported."""
    result = ranked(rulebase, [CT_FULL, FW, DROP_RULE_FLAT], "connection-failures")
    assert order(result)[0] == "nf-conntrack-full", order(result)
    assert "nf-rule-drop" not in order(result)
    assert result.hypotheses[0].certainty == "confirmed"


def test_a_rising_drop_rule_ranks_above_a_calm_conntrack_table(rulebase):
    result = ranked(rulebase, [CT_CALM, FW, DROP_RULE_NOW], "connection-failures")
    assert order(result)[0] == "nf-rule-drop", order(result)
    assert "nf-conntrack-full" not in order(result)
    reason = next(r.reason for r in result.ruled_out if r.id == "nf-conntrack-full")
    assert "far-below-max" in reason, reason
    rule = result.hypotheses[0]
    assert any(e.field == "chain" and e.value == "input" for e in rule.evidence)


QDISC_SLOW = {"kind": "qdisc", "ifname": "eth0", "qdisc_kind": "pfifo_fast", "handle": "0:", "parent": "root",
              "root": True, "dropped_total": 100, "dropped_per_s": 1.0}
NF_TRACED = {"kind": "skb_drop", "reason": "NETFILTER_DROP", "location": "nf_hook_slow", "protocol": "ipv4",
             "window_s": 5.0, "drops_total": 600}


def test_the_firewall_verdict_ranks_above_a_qdisc_that_drops_a_little(rulebase):
    """The qdisc drops 1/s while the tracer sees the firewall drop 120/s: the qdisc is not
    where the loss is (its finding, with the eBPF verdict attached to the same subject, is
    ruled out), the firewall is."""
    result = ranked(rulebase, [QDISC_SLOW, NF_TRACED, FW, DROP_RULE_NOW])
    assert order(result)[0] == "nf-rule-drop", order(result)
    assert "tc-qdisc-overflow" not in order(result), [(h.id, h.subject) for h in result.hypotheses]
    reason = next(r.reason for r in result.ruled_out if r.id == "tc-qdisc-overflow")
    assert "tc-qdisc-overflow.ebpf-netfilter-drop (-3)" in reason, reason


def test_counter_and_tracer_weigh_one_qdisc_finding(rulebase):
    """The qdisc counter and the eBPF queue drops are one finding on that qdisc; the
    host-wide eBPF finding ranks below it and points to it."""
    traced = {**NF_TRACED, "reason": "QDISC_DROP", "location": "__dev_queue_xmit", "drops_total": 60}
    result = ranked(rulebase, [{**QDISC_SLOW, "dropped_per_s": 40.0}, traced])
    qdisc = [h for h in result.hypotheses if h.id == "tc-qdisc-overflow"]
    assert [h.subject for h in qdisc] == ["dev eth0 qdisc pfifo_fast 0:", "host"], qdisc
    placed, host = qdisc
    assert placed.certainty == "confirmed" and host.certainty == "likely"
    assert {"tc-qdisc-overflow.qdisc-dropping", "tc-qdisc-overflow.ebpf-qdisc-drop-located"} \
        <= {e.rule for e in placed.evidence}
    assert any(e.rule == "tc-qdisc-overflow.ebpf-drops-located" for e in host.against)


GATEWAY_FAILED = {"kind": "neigh_entry", "family": "ipv4", "address": "10.0.0.1", "ifname": "eth0",
                  "state": "failed", "is_default_gateway": True}
ARP_TABLE_OK = {"kind": "neigh_table", "family": "ipv4", "table": "arp_cache", "gc_thresh3": 1024,
                "thresh3_pct": 2.0, "table_fulls_total": 0, "table_fulls_per_s": 0.0,
                "res_failed_total": 40, "res_failed_per_s": 1.0}
ARP_TABLE_FULL = {**ARP_TABLE_OK, "thresh3_pct": 100.0, "table_fulls_total": 900, "table_fulls_per_s": 12.0,
                  "res_failed_per_s": 0.0}
PEER_INCOMPLETE = {**GATEWAY_FAILED, "address": "10.0.0.77", "state": "incomplete", "is_default_gateway": False}


def test_an_unanswering_gateway_ranks_above_the_table_overflow_look_alike(rulebase):
    result = ranked(rulebase, [GATEWAY_FAILED, ARP_TABLE_OK], "connection-failures")
    assert order(result)[0] == "net-arp-resolution-failure", order(result)
    assert result.hypotheses[0].subject == "dev eth0"
    assert "net-neigh-table-overflow" not in order(result)


def test_a_full_neighbour_table_ranks_above_the_unresolved_entries_it_causes(rulebase):
    result = ranked(rulebase, [PEER_INCOMPLETE, ARP_TABLE_FULL], "connection-failures")
    assert order(result)[0] == "net-neigh-table-overflow", order(result)
    assert "net-arp-resolution-failure" not in order(result)
