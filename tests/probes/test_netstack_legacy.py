"""iptables-legacy through IPT_SO_GET_ENTRIES: the entry walk on a real blob, malformed blobs,
and a live namespace checked against `iptables-legacy -L -v -x -n` (run only where it cannot
load a module).

FILTER_6_18 is the filter table this 6.18 host returned (zlib + base64) for:
  -A INPUT -p udp --dport 53 -j DROP
  -A INPUT -m conntrack --ctstate INVALID -j DROP
  -N MYCHAIN; -A MYCHAIN -s 10.0.0.0/8 -j REJECT; -A INPUT -j MYCHAIN
  -P FORWARD DROP
  -A INPUT -m state --state INVALID -j DROP
  -A INPUT -m state --state ESTABLISHED -j ACCEPT
with valid_hooks 14, hook_entry (-, 0, 1560, 1712, -), underflow (-, 1408, 1560, 1712, -).
"""
from __future__ import annotations

import base64
import os
import re
import shutil
import sys
import zlib

import pytest
from netstack_helpers import netns, run

from sysdiag.facts import Netfilter, NetfilterRule
from sysdiag.probes.base import ProbeContext
from sysdiag.probes.netfilter.legacy import LegacyRule, parse_entries, read_table
from sysdiag.probes.netfilter.modules import read_kernel_modules
from sysdiag.probes.netfilter.ruleset import NetfilterProbe
from sysdiag.probes.parse import ParseError
from sysdiag.probes.scope import run_in_netns

FILTER_6_18 = (
    "eNpjYKAuEITSCxhOMDBhkTdgKE0pwGvC//+mDKZwngYB+/4DAQMNgQVjAiM2f5xgSM7PyyspSkzOxqaNmWHQAUYo"
    "RgUDHb4FDDOwphNC7vrBTtvQGkbxrjAY4314hS8TyeH7b5DmK3q4i4UMd9GjHOIYlOG1Aau4A4NrUJB/EE59vpHO"
    "Ho6efjjluWDhSrd0F+Tq5eocgksfrTM2ufnh9yCNX/yyDAwA7qpJ/g==")
HOOK_ENTRY = {1: 0, 2: 1560, 3: 1712}
UNDERFLOW = {1: 1408, 2: 1560, 3: 1712}


def blob() -> bytes:
    return zlib.decompress(base64.b64decode(FILTER_6_18))


def test_walk_of_a_real_table():
    table = parse_entries(blob(), "ip", "filter", HOOK_ENTRY, UNDERFLOW)
    # INPUT has 5 rules, MYCHAIN 1 (its closing RETURN is not a rule), FORWARD/OUTPUT none
    assert table.rules == 6 and table.drop_policies == 1
    assert [(r.chain, r.number, r.verdict, r.ct_invalid) for r in table.drop_rules] == [
        ("INPUT", 1, "drop", False),
        ("INPUT", 2, "drop", True),     # -m conntrack --ctstate INVALID
        ("INPUT", 4, "drop", True),     # -m state --state INVALID
        ("FORWARD", 0, "drop", False),  # the policy
        ("MYCHAIN", 1, "reject", False),
    ]
    assert all(isinstance(r, LegacyRule) and r.packets == 0 for r in table.drop_rules)


@pytest.mark.parametrize("cut, problem", [(100, "truncated"), (1000, "do not fit")])
def test_truncated_blob(cut, problem):
    with pytest.raises(ParseError, match=problem):
        parse_entries(blob()[:cut], "ip", "filter", HOOK_ENTRY, UNDERFLOW)


def test_bad_offsets():
    data = bytearray(blob())
    data[90:92] = (4).to_bytes(2, "little")  # next_offset of the first entry: 4 bytes
    with pytest.raises(ParseError, match="do not fit"):
        parse_entries(bytes(data), "ip", "filter", HOOK_ENTRY, UNDERFLOW)


@pytest.mark.parametrize("name", ["", "a" * 40, "fil/ter", "nat;x"])
def test_table_names_are_checked_before_asking(name):
    with pytest.raises(ParseError, match="not a table name"):
        read_table("ip", name)


#: sends N datagrams to 10.0.0.1:53 (its own address): INPUT rule 1 drops them
SENDER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[1])):
    s.sendto(b'q' * 10, ('10.0.0.1', 53))
"""


def iptables_counters(ns: str, binary: str) -> dict[tuple[str, int], tuple[int, int]]:
    """(chain, rule number) -> (packets, bytes); policies as number 0."""
    out = run("ip", "netns", "exec", ns, binary, "-L", "-v", "-x", "-n", "--line-numbers")
    counters, chain = {}, None
    for line in out.splitlines():
        head = re.match(r"Chain (\S+) \((?:policy \S+ (\d+) packets, (\d+) bytes)?", line)
        if head:
            chain = head.group(1)
            if head.group(2) is not None:
                counters[(chain, 0)] = (int(head.group(2)), int(head.group(3)))
            continue
        cols = line.split()
        if cols and cols[0].isdigit():
            counters[(chain, int(cols[0]))] = (int(cols[1]), int(cols[2]))
    return counters


@pytest.mark.live
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create namespaces")
@pytest.mark.skipif(shutil.which("iptables-legacy") is None, reason="needs iptables-legacy")
def test_live_namespace_against_iptables_legacy():
    modules = read_kernel_modules(ProbeContext())
    # iptables-legacy itself may load ip_tables, iptable_filter, x_tables and matches
    if modules.supported is not False:
        pytest.skip("this kernel can load modules, and iptables-legacy might load some")
    with netns("ipt") as ns:
        run("ip", "-n", ns, "addr", "add", "10.0.0.1/32", "dev", "lo")
        for rule in (["-A", "INPUT", "-p", "udp", "--dport", "53", "-j", "DROP"],
                     ["-A", "INPUT", "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"],
                     ["-P", "FORWARD", "DROP"]):
            run("ip", "netns", "exec", ns, "iptables-legacy", *rule)
        run("ip", "netns", "exec", ns, "ip6tables-legacy", "-A", "OUTPUT", "-p", "tcp",
            "--dport", "1", "-j", "REJECT")
        # sampled the way --netns does it: in a thread inside the namespace, so that
        # /proc/thread-self/net and the raw socket are the namespace's
        path = f"/run/netns/{ns}"
        probe = NetfilterProbe()
        ctx = ProbeContext(netns_path=path)
        first = run_in_netns(path, lambda: probe.sample(ctx))
        run("ip", "netns", "exec", ns, sys.executable, "-c", SENDER, "25")
        last = run_in_netns(path, lambda: probe.sample(ctx))
        facts = probe.facts(ctx, first, last, 0.5)
        summary = next(f for f in facts if isinstance(f, Netfilter))
        assert (summary.legacy_tables_v4, summary.legacy_tables_v6) == ("filter", "filter")
        assert (summary.legacy_rules, summary.legacy_drop_rules, summary.legacy_drop_policies) \
            == (3, 3, 1)
        assert summary.rule_counters_available is True, summary.rule_counters_reason
        rules = {(f.family, f.chain, f.handle): f for f in facts
                 if isinstance(f, NetfilterRule) and f.backend == "iptables-legacy"}
        udp = rules[("ip", "INPUT", 1)]
        assert udp.packets_total == 25 and udp.packets_per_s == 50.0
        assert rules[("ip", "INPUT", 2)].matches_ct_invalid is True
        assert rules[("ip", "FORWARD", 0)].policy is True
        assert rules[("ip6", "OUTPUT", 1)].verdict == "reject"
        listed = iptables_counters(ns, "iptables-legacy")
        for (family, chain, number), fact in rules.items():
            if family == "ip":
                assert listed[(chain, number)] == (fact.packets_total, fact.bytes_total)
