"""conntrack: /proc/sys/net/netfilter and /proc/net/stat/nf_conntrack, never ctnetlink.

STAT_6_18 is this 6.18 host's own /proc/net/stat/nf_conntrack after 7 invalid packets
in a test namespace (two CPUs; `entries` is a gauge repeated on each line).
"""
from __future__ import annotations

import os
import re
import shutil
import sys

import pytest
from netstack_helpers import netns, probe_in_netns, run
from probe_helpers import run_one, write_tree

from sysdiag.facts import Conntrack
from sysdiag.probes.base import ProbeContext
from sysdiag.probes.netfilter.modules import read_kernel_modules
from sysdiag.probes.parse import ParseError
from sysdiag.probes.procfs.conntrack import (
    NOT_LOADED, STAT_COLUMNS, ConntrackProbe, ConntrackSample, conntrack_fact, parse_net_stat)

HEADER = ("entries  clashres found new invalid ignore delete chainlength insert insert_failed "
          "drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n")
STAT_6_18 = HEADER + (
    "0000001e  00000000 00000000 00000000 0000000e 00000000 00000000 00000000 00000000 "
    "00000000 00000000 00000000 00000000  00000000 00000000 00000000 00000000\n"
    "0000001e  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 "
    "00000000 00000000 00000000 00000000  00000000 00000000 00000000 00000000\n")


def line(**cols: int) -> str:
    names = HEADER.split()
    return " ".join(f"{cols.get(n, 0):08x}" for n in names) + "\n"


def test_parse_this_hosts_file():
    table = parse_net_stat(STAT_6_18, "nf_conntrack")
    assert table.entries == 30  # not 60: a gauge repeated per CPU
    assert table.total("invalid") == 14 and table.total("drop") == 0
    assert len(table.per_cpu["invalid"]) == 2
    assert set(STAT_COLUMNS) <= set(table.per_cpu)


def test_columns_are_found_by_header_name():
    # an older kernel's layout (3.x: searched, new, delete_list ...) still maps by name
    text = ("entries searched found new invalid ignore delete delete_list insert insert_failed "
            "drop early_drop icmp_error expect_new expect_create expect_delete search_restart\n"
            "00000005 00000001 00000002 00000003 00000004 00000000 00000000 00000000 00000009 "
            "0000000a 0000000b 0000000c 00000000 00000000 00000000 00000000 00000000\n")
    table = parse_net_stat(text, "nf_conntrack")
    assert (table.total("invalid"), table.total("drop"), table.total("early_drop")) == (4, 11, 12)
    assert table.total("clashres") is None  # that kernel did not have it


@pytest.mark.parametrize("text, problem", [
    ("", "empty file"),
    (HEADER, "header only"),
    (HEADER + "0000001e 00000000\n", "2 columns"),
    (HEADER + line().replace("00000000", "zzzzzzzz", 1), "hex"),
    ("0000001e 00000000\n0000001e 00000000\n", "name the columns"),
])
def test_parse_rejects_malformed(text, problem):
    with pytest.raises(ParseError, match=problem):
        parse_net_stat(text, "/proc/net/stat/nf_conntrack")


def test_fact_sums_cpus_and_rates_unwrap_each_cpu():
    before = parse_net_stat(HEADER + line(entries=9, drop=0xFFFFFFF0, invalid=5)
                            + line(entries=9, drop=3, invalid=1), "s")
    after = parse_net_stat(HEADER + line(entries=10, drop=0x10, invalid=25)
                           + line(entries=10, drop=7, invalid=1), "s")
    first = ConntrackSample(count=90, max=100, buckets=25, stat=before)
    last = ConntrackSample(count=95, max=100, buckets=25, stat=after)
    fact = conntrack_fact(first, last, 2.0, "src")
    assert fact.pct == 95.0 and fact.max_per_bucket == 4.0 and fact.stat_entries == 10
    assert fact.drop_total == 0x10 + 7 and fact.invalid_total == 26
    # CPU 0 wrapped: 0x20 more drops; CPU 1: 4 more -> 36 over 2 s
    assert fact.drop_per_s == 18.0 and fact.invalid_per_s == 10.0
    assert fact.early_drop_per_s == 0.0
    one = conntrack_fact(None, last, None, "src")
    assert one.drop_per_s is None and one.drop_total == 23


def test_fact_without_stat_file_or_limits():
    fact = conntrack_fact(None, ConntrackSample(count=3, max=None, buckets=None, stat=None),
                          None, "src")
    assert fact.count == 3 and fact.pct is None and fact.drop_total is None
    assert fact.max_per_bucket is None


def test_captured_tree(tmp_path):
    ctx = write_tree(tmp_path, {
        "proc/sys/net/netfilter/nf_conntrack_count": "235000\n",
        "proc/sys/net/netfilter/nf_conntrack_max": "262144\n",
        "proc/sys/net/netfilter/nf_conntrack_buckets": "65536\n",
        "proc/net/stat/nf_conntrack": HEADER + line(entries=235000, drop=12, early_drop=40)
        + line(entries=235000, drop=1, insert_failed=2),
    })
    outcome, facts = run_one(ConntrackProbe(), ctx)
    assert outcome.status == "ok", outcome.reason
    (fact,) = facts
    assert isinstance(fact, Conntrack)
    assert fact.pct == pytest.approx(89.65, abs=0.01) and fact.max_per_bucket == 4.0
    assert (fact.drop_total, fact.early_drop_total, fact.insert_failed_total) == (13, 40, 2)
    assert fact.drop_per_s is None  # one sample in a captured tree


def test_old_max_alias_and_missing_stat_file(tmp_path):
    ctx = write_tree(tmp_path, {"proc/sys/net/netfilter/nf_conntrack_count": "7\n",
                                "proc/sys/net/nf_conntrack_max": "65536\n"})
    probe = ConntrackProbe()
    outcome, facts = run_one(probe, ctx)
    assert outcome.status == "ok" and facts[0].max == 65536 and facts[0].drop_total is None
    assert any("nf_conntrack" in w for w in outcome.warnings)


def test_not_loaded_is_unavailable_with_the_reason(tmp_path):
    # a tree with netfilter sysctls (nf_log) but no conntrack files
    ctx = write_tree(tmp_path, {"proc/sys/net/netfilter/nf_log_all_netns": "0\n"})
    outcome, facts = run_one(ConntrackProbe(), ctx)
    assert (outcome.status, outcome.reason, facts) == ("unavailable", NOT_LOADED, [])


def test_fixture_tree_has_no_conntrack(tree_ctx):
    outcome, _ = run_one(ConntrackProbe(), tree_ctx)
    assert outcome.status == "unavailable" and outcome.reason == NOT_LOADED


def test_bad_count_fails_naming_the_file(tmp_path):
    ctx = write_tree(tmp_path, {"proc/sys/net/netfilter/nf_conntrack_count": "lots\n"})
    outcome, _ = run_one(ConntrackProbe(), ctx)
    assert outcome.status == "failed" and "nf_conntrack_count" in outcome.reason


def _conntrack_loaded() -> bool:
    return os.path.exists("/proc/sys/net/netfilter/nf_conntrack_count")


@pytest.mark.live
def test_live_host():
    outcome, facts = run_one(ConntrackProbe(), ProbeContext(), window_s=0.2)
    if not _conntrack_loaded():
        assert outcome.status == "unavailable" and outcome.reason == NOT_LOADED
        return
    assert outcome.status == "ok", outcome.reason
    (fact,) = facts
    assert fact.max and fact.buckets and fact.drop_per_s is not None


#: sends N TCP segments with SYN+FIN (an invalid flag combination) to 127.0.0.1
INVALID_SENDER = """
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
for i in range(int(sys.argv[1])):
    s.sendto(struct.pack('!HHIIBBHHH', 40000 + i, 9, 0, 0, 5 << 4, 0x03, 1024, 0, 0),
             ('127.0.0.1', 0))
"""
#: sends one UDP datagram to each of N ports on 127.0.0.1 (N new conntrack entries)
UDP_SENDER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for port in range(21000, 21000 + int(sys.argv[1])):
    s.sendto(b'x', ('127.0.0.1', port))
"""


@pytest.mark.live
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a network namespace")
@pytest.mark.skipif(shutil.which("nft") is None, reason="needs nft to make the namespace track")
def test_live_namespace_counts_and_invalid_match_conntrack_tool():
    if not _conntrack_loaded():
        pytest.skip("nf_conntrack is not loaded here (and the test must not load it)")
    modules = read_kernel_modules(ProbeContext())
    if not modules.safe("nf_tables", "nfnetlink"):
        pytest.skip("nft would load nf_tables")
    with netns("ct") as ns:
        # a conntrack rule makes the namespace register its conntrack hooks
        run("ip", "netns", "exec", ns, "nft", "add table inet sdt; add chain inet sdt out "
            "{ type filter hook output priority 0; }; add rule inet sdt out ct state new counter")
        run("ip", "netns", "exec", ns, sys.executable, "-c", UDP_SENDER, "25")
        run("ip", "netns", "exec", ns, sys.executable, "-c", INVALID_SENDER, "7")
        outcome, facts = probe_in_netns(ns, "conntrack")
        assert outcome["status"] == "ok", outcome
        (fact,) = facts
        assert fact.count == 25 and fact.stat_entries == 25
        assert fact.invalid_total >= 7  # counted at output and again at input
        if shutil.which("conntrack") and modules.safe("nf_conntrack_netlink"):
            assert run("ip", "netns", "exec", ns, "conntrack", "-C").strip() == "25"
            stats = run("ip", "netns", "exec", ns, "conntrack", "-S")
            sums: dict[str, int] = {}
            for key, value in re.findall(r"(\w+)=(\d+)", stats):
                sums[key] = sums.get(key, 0) + int(value)
            assert fact.invalid_total == sums["invalid"]
            assert fact.drop_total == sums["drop"] and fact.early_drop_total == sums["early_drop"]
            assert fact.insert_failed_total == sums["insert_failed"]
            assert fact.search_restart_total == sums["search_restart"]
            assert fact.clash_resolve_total == sums["clash_resolve"]
