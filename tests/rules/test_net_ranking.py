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
