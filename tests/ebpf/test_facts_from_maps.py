"""The pure halves of the probes: copied map contents -> facts."""
from __future__ import annotations

import pytest

from sysdiag.probes.ebpf import biolat, drops, faults, offcpu, runqlat, tcpretrans

NAMES = {2: "NOT_SPECIFIED", 3: "NO_SOCKET", 12: "NETFILTER_DROP"}


def test_drops_merge_by_reason_location_protocol_and_rank():
    ksym = {0x10: "nf_hook_slow", 0x20: "__udp4_lib_rcv"}.get
    rows = [(12, 0x10, 0x0800, 5), (12, 0x10, 0x0800, 7), (3, 0x20, 0x0800, 40),
            (99, 0x20, 0x86DD, 1), (3, 0, 0x0800, 2)]
    facts = drops.facts_from_rows(rows, 2.0, NAMES, ksym)
    assert [(f.reason, f.location, f.drops_total) for f in facts] == [
        ("NO_SOCKET", "__udp4_lib_rcv", 40), ("NETFILTER_DROP", "nf_hook_slow", 12),
        ("NO_SOCKET", "unknown", 2), ("UNKNOWN_99", "__udp4_lib_rcv", 1)]
    assert facts[0].drops_per_s == 20.0 and facts[0].reason_code == 3
    assert facts[3].protocol == "ipv6"


def test_drops_without_a_reason_field():
    facts = drops.facts_from_rows([(0, 0x10, 0x0806, 3)], 1.0, None, lambda a: "arp_rcv")
    assert facts[0].reason == "NOT_REPORTED" and facts[0].reason_code is None
    assert facts[0].protocol == "arp"


def test_runqlat_host_per_cpu_and_scope():
    data = {"per_cpu": {0: {1: 10, 11: 10}, 1: {2: 5}}, "sums": {0: 20_000, 1: 10},
            "scope": {11: 4}, "scope_sum": 5000}
    facts = runqlat.facts_from_readout(data, 2.0, "pid 7")
    host, cpu0, cpu1, scope = facts
    assert (host.scope, host.cpu, host.samples_total) == ("host", None, 25)
    assert cpu0.cpu == 0 and cpu0.p50_us == 2 and cpu0.p99_us == 2048 and cpu0.avg_us == 1000.0
    assert cpu0.over_1ms_pct == 50.0 and cpu1.over_1ms_pct == 0.0
    assert scope.scope == "pid 7" and scope.samples_total == 4 and scope.avg_us == 1250.0
    assert host.hist_log2_us == [0, 10, 5] + [0] * 8 + [10]


def test_runqlat_no_samples():
    facts = runqlat.facts_from_readout({"per_cpu": {}, "sums": {}}, 1.0, None)
    assert len(facts) == 1 and facts[0].samples_total == 0 and facts[0].p50_us is None


def test_offcpu_merges_done_and_ongoing_waits_by_reason():
    fuse = ["__schedule", "schedule", "request_wait_answer", "fuse_simple_request"]
    io = ["__schedule", "schedule", "io_schedule", "folio_wait_bit_common", "filemap_fault"]
    done = [(10, "reader", fuse, 200_000_000, 2, 150_000_000),
            (11, "kworker/0:1", io, 1_000_000, 4, 400_000)]
    ongoing = [(10, "reader", fuse, 900_000_000)]
    facts = offcpu.facts_from_waits(done, ongoing, 1.0, {10: 10}.get)
    first, second = facts
    assert (first.pid, first.wait_reason, first.waits_total) == (10, "request_wait_answer", 3)
    assert first.wait_ms_total == 1100.0 and first.max_wait_ms == 900.0
    assert first.blocked_now and first.ongoing_ms == 900.0 and first.wait_pct_of_window == 110.0
    assert first.stack == "request_wait_answer <- fuse_simple_request" and first.tgid == 10
    assert second.wait_reason == "folio_wait_bit_common" and not second.blocked_now
    assert second.tgid is None


def test_tcpretrans_flows():
    v4 = bytes([10, 0, 0, 1]) + bytes(12)
    v6 = bytes(15) + b"\x01"
    rows = [(v4, bytes([10, 0, 0, 2]) + bytes(12), 5000, 80, 2, 1, 3),
            (v6, v6, 1, 2, 10, 2, 9)]
    facts = tcpretrans.facts_from_rows(rows, 3.0, 10, {1: "ESTABLISHED", 2: "SYN_SENT"})
    assert [(f.family, f.saddr, f.daddr, f.state, f.retransmits_total) for f in facts] == [
        ("ipv6", "::1", "::1", "SYN_SENT", 9), ("ipv4", "10.0.0.1", "10.0.0.2", "ESTABLISHED", 3)]
    assert facts[1].retransmits_per_s == 1.0


def test_biolat_per_device_and_op():
    hist = [((8 << 20) | 0, 2, 7, 3), ((8 << 20) | 0, 2, 10, 1), ((8 << 20) | 0, 1, 4, 2)]
    sums = [((8 << 20) | 0, 2, 1000), ((8 << 20) | 0, 1, 20)]
    facts = biolat.facts_from_maps(hist, sums, 1.0, lambda ma, mi: "sda" if (ma, mi) == (8, 0) else None)
    read, write = facts
    assert (read.dev, read.device, read.op, read.ios_total, read.avg_us) == ("8:0", "sda", "read", 2, 10.0)
    assert (write.op, write.ios_total, write.p50_us, write.max_us, write.avg_us) == ("write", 4, 128, 1024, 250.0)


def test_faults_rank_and_share():
    rows = [(1, "a", 10, 9, 0), (2, "b", 30, 1, 2)]
    facts = faults.facts_from_rows(rows, 2.0)
    assert [(f.pid, f.share_pct, f.faults_per_s) for f in facts] == [(2, 75.0, 15.0), (1, 25.0, 5.0)]
    assert facts[0].protection_faults_total == 2


@pytest.mark.parametrize("frames, reason", [
    (["bpf_prog_1", "perf_trace_run_bpf_submit", "__schedule", "schedule",
      "schedule_timeout", "wait_for_completion", "submit_bio_wait"], "submit_bio_wait"),
    (["__schedule", "schedule", "schedule_preempt_disabled", "__mutex_lock.constprop.0+0x1a"],
     "__mutex_lock.constprop.0"),
    (["__schedule", "schedule"], "schedule"),
])
def test_wait_reason(frames, reason):
    assert offcpu.wait_reason(frames) == reason
