"""rps-xps: CPU masks, queue directories on written trees, the fixture tree, and a live
multi-queue veth pair whose RPS/XPS settings the test sets and removes."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from sysdiag.probes.base import ProbeContext
from sysdiag.probes.parse import ParseError
from sysdiag.probes.sysfs.queues import (QueueReading, RpsXpsProbe, parse_cpumask, queue_fact,
                                         read_queues)

from netns_helpers import need_root_and_ip, tag, veth
from probe_helpers import run_one, write_tree


@pytest.mark.parametrize("text, cpus", [
    ("0", set()), ("00000000", set()), ("3\n", {0, 1}), ("ff", set(range(8))),
    ("00000000,00000003", {0, 1}), ("00000001,00000000", {32}),
    ("80000000,00000000,00000001", {0, 95}), ("FFFF", set(range(16))),
])
def test_cpumask(text, cpus):
    assert parse_cpumask(text) == cpus


@pytest.mark.parametrize("text", ["", "\n", "0x3", "xyz", "3,", "123456789", "0-3"])
def test_bad_cpumask(text):
    with pytest.raises(ParseError, match="mask"):
        parse_cpumask(text, "rps_cpus")


def queue_tree(root: Path, ifname: str = "eth0") -> ProbeContext:
    q = f"sys/class/net/{ifname}/queues"
    files = {
        f"{q}/rx-0/rps_cpus": "00000000,00000003\n", f"{q}/rx-0/rps_flow_cnt": "2048\n",
        f"{q}/rx-1/rps_cpus": "00000000,00000000\n", f"{q}/rx-1/rps_flow_cnt": "0\n",
        f"{q}/rx-10/rps_cpus": "00000000,00000004\n", f"{q}/rx-10/rps_flow_cnt": "0\n",
        f"{q}/tx-0/xps_cpus": "1\n", f"{q}/tx-0/xps_rxqs": "0\n", f"{q}/tx-0/tx_maxrate": "0\n",
        f"{q}/tx-0/tx_timeout": "3\n", f"{q}/tx-0/byte_queue_limits/limit": "30000\n",
        f"{q}/tx-0/byte_queue_limits/inflight": "1514\n",
        f"{q}/tx-0/byte_queue_limits/stall_cnt": "0\n",
        f"{q}/tx-1/xps_cpus": "0\n", f"{q}/tx-1/xps_rxqs": "2\n", f"{q}/tx-1/tx_maxrate": "100\n",
        f"{q}/tx-1/tx_timeout": "1\n", f"{q}/tx-1/byte_queue_limits/limit": "4500\n",
        f"{q}/tx-1/byte_queue_limits/inflight": "0\n",
        f"{q}/tx-1/byte_queue_limits/stall_cnt": "2\n",
        "proc/sys/net/core/rps_sock_flow_entries": "32768\n",
    }
    return write_tree(root, files)


def test_read_queues_on_a_written_tree(tmp_path):
    ctx = queue_tree(tmp_path)
    reading = read_queues(ctx, "eth0", ctx.sys("class/net/eth0/queues"))
    assert (reading.rx_queues, reading.tx_queues) == (3, 2)
    assert reading.rps == (frozenset({0, 1}), frozenset(), frozenset({2}))  # rx-0, 1, 10
    assert reading.tx_timeout == 4 and reading.bql_stall == 2
    fact = queue_fact("src", reading, None, None, 32768)
    assert (fact.rps_enabled_queues, fact.rps_cpus, fact.rps_cpu_count) == (2, "0-2", 3)
    assert fact.rps_flow_cnt_total == 2048 and fact.rfs_enabled is True
    assert (fact.xps_enabled_queues, fact.xps_rxqs_enabled_queues) == (1, 1)
    assert (fact.tx_maxrate_mbps, fact.tx_maxrate_queues) == (100, 1)
    assert (fact.bql_limit_min_bytes, fact.bql_inflight_bytes) == (4500, 1514)
    assert fact.tx_timeout_total == 4 and fact.tx_timeout_per_s is None


def test_rates_and_rfs_needs_both_tables():
    before = QueueReading("eth0", 1, 1, tx_timeout=4, bql_stall=0, rps_flow_cnt=(0,))
    now = QueueReading("eth0", 1, 1, tx_timeout=10, bql_stall=1, rps_flow_cnt=(0,))
    fact = queue_fact("src", now, before, 2.0, 32768)
    assert fact.tx_timeout_per_s == 3.0 and fact.bql_stall_per_s == 0.5
    assert fact.rfs_enabled is False  # global table but no per-queue flow counts
    assert queue_fact("src", now, None, None, None).rfs_enabled is None  # unknown
    assert fact.rps_cpus is None and fact.xps_enabled_queues is None  # not applicable


def test_probe_on_a_written_tree(tmp_path):
    ctx = queue_tree(tmp_path)
    (tmp_path / "sys/class/net/lo").mkdir()  # no queues/ directory: said, not guessed
    outcome, facts = run_one(RpsXpsProbe(), ctx)
    assert outcome.status == "ok", outcome.reason
    (fact,) = facts
    assert fact.ifname == "eth0" and fact.rps_sock_flow_entries == 32768
    assert fact.source == str(ctx.sys("class/net/eth0/queues"))
    assert any("no queues/ directory for lo" in w for w in outcome.warnings)
    ctx.ifaces = frozenset({"lo"})
    assert run_one(RpsXpsProbe(), ctx)[1] == []


def test_malformed_mask_fails_naming_the_file(tmp_path):
    ctx = write_tree(tmp_path, {"sys/class/net/eth0/queues/rx-0/rps_cpus": "zz\n"})
    outcome, _ = run_one(RpsXpsProbe(), ctx)
    assert outcome.status == "failed"
    assert re.search(r"rx-0/rps_cpus: expected a hex CPU mask", outcome.reason)


def test_foreign_namespace_is_unavailable_with_a_reason():
    ctx = ProbeContext(netns_path="/run/netns/x", netns_label="network namespace 'x'")
    outcome, _ = run_one(RpsXpsProbe(), ctx)
    assert outcome.status == "unavailable"
    assert "not network namespace 'x'" in outcome.reason


def test_fixture_tree(tree_ctx):
    outcome, facts = run_one(RpsXpsProbe(), tree_ctx)
    assert outcome.status == "ok" and facts == []  # the fixture's sysfs has no queues/
    assert any("no queues/ directory for eth0" in w for w in outcome.warnings)


@pytest.fixture
def multiqueue_veth():
    need_root_and_ip()
    a, b = tag("q"), tag("r")
    with veth(a, b, None, "numrxqueues", "2", "numtxqueues", "2"):
        yield a, Path("/sys/class/net", a, "queues")


@pytest.mark.live
@pytest.mark.root
def test_live_rps_and_xps_settings(multiqueue_veth):
    # a test may set up a fault; the veth and its settings go away with the pair
    ifname, queues = multiqueue_veth
    (queues / "rx-0/rps_cpus").write_text("3")
    (queues / "rx-0/rps_flow_cnt").write_text("256")
    (queues / "tx-1/xps_cpus").write_text("1")
    ctx = ProbeContext(ifaces=frozenset({ifname}))
    outcome, facts = run_one(RpsXpsProbe(), ctx, window_s=0.2)
    assert outcome.status == "ok", outcome.reason
    (fact,) = facts
    ncpu = os.cpu_count() or 1
    expect = {0, 1} & set(range(ncpu))
    assert (fact.rx_queues, fact.tx_queues) == (2, 2)
    assert fact.rps_enabled_queues == 1 and fact.rps_cpu_count == len(expect)
    assert fact.rps_flow_cnt_total == 256  # rounded up to a power of two by the kernel
    entries = int(Path("/proc/sys/net/core/rps_sock_flow_entries").read_text())
    assert fact.rps_sock_flow_entries == entries and fact.rfs_enabled is (entries > 0)
    assert fact.xps_enabled_queues == 1
    assert fact.tx_timeout_total == 0 and fact.tx_timeout_per_s == 0
    assert fact.tx_maxrate_mbps is None


@pytest.mark.live
def test_live_host_every_interface():
    outcome, facts = run_one(RpsXpsProbe(), ProbeContext())
    assert outcome.status == "ok", outcome.reason
    assert {f.ifname for f in facts} == set(os.listdir("/sys/class/net"))
    for fact in facts:
        rx = [q for q in os.listdir(f"/sys/class/net/{fact.ifname}/queues") if q[:3] == "rx-"]
        assert fact.rx_queues == len(rx)
