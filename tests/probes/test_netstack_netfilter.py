"""netfilter: module state, backends, nftables rule decoding, gating, and a live namespace
whose drop rule counts packets; plus the proof that running every network-stack probe
leaves the kernel's module list unchanged.

The NFT_* messages are this 6.18 host's answers for the ruleset in RULES (a test
namespace): chains inp (policy drop) and fwdc, rules 4 (ct state invalid counter drop),
5 (tcp dport 22 counter accept), 6 (udp dport 53 counter reject), 8 (ip saddr drop).
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
from netstack_helpers import netns, proc_modules, run
from probe_helpers import run_one, write_tree

from sysdiag.facts import Netfilter, NetfilterRule
from sysdiag.probes.base import ProbeContext
from sysdiag.probes.netfilter import ruleset as ruleset_mod
from sysdiag.probes.netfilter.modules import (
    KernelModules, parse_modules_builtin, parse_proc_modules, read_kernel_modules)
from sysdiag.probes.netfilter.legacy import LegacyRule, LegacyTable
from sysdiag.probes.netfilter.ruleset import (
    NetfilterProbe, NetfilterSample, NftRule, NftRuleset, backends,
    chain_policy_drop, parse_tables_names, rule_facts, rule_from_msg)
from sysdiag.probes.parse import ParseError

RULES = """\
table inet filt {
  chain inp {
    type filter hook input priority 0; policy drop;
    ct state invalid counter drop
    tcp dport 22 counter accept
    udp dport 53 counter reject
    counter
  }
  chain fwdc {
    type filter hook forward priority 0; policy accept;
  }
  chain userc {
    ip saddr 10.0.0.0/8 drop
  }
}
"""
NFT_CHAIN_INP = ("AQAAAgkAAQBmaWx0AAAAAAgAAwBpbnAADAACAAAAAAAAAAABFAAEAAgAAQAAAAABCAACAAAAAAAIAAUAAAAA"
                 "AAsABwBmaWx0ZXIAAAgACgAAAAABCAAGAAAAAAQ=")
NFT_CHAIN_FWDC = ("AQAAAgkAAQBmaWx0AAAAAAkAAwBmd2RjAAAAAAwAAgAAAAAAAAAAAhQABAAIAAEAAAAAAggAAgAAAAAACAAF"
                  "AAAAAAELAAcAZmlsdGVyAAAIAAoAAAAAAQgABgAAAAAA")
NFT_CHAIN_USERC = "AQAAAgkAAQBmaWx0AAAAAAoAAwB1c2VyYwAAAAwAAgAAAAAAAAAAAwgABgAAAAAB"
NFT_RULE_4 = """
AQAAAgkAAQBmaWx0AAAAAAgAAgBpbnAADAADAAAAAAAAAAAE+AAEACAAAQAHAAEAY3QAABQAAgAIAAEAAAAAAQgAAgAAAAAA
TAABAAwAAQBiaXR3aXNlADwAAgAIAAEAAAAAAQgAAgAAAAABCAADAAAAAAQIAAYAAAAAAAwABAAIAAEAAQAAAAwABQAIAAEA
AAAAACwAAQAIAAEAY21wACAAAgAIAAEAAAAAAQgAAgAAAAABDAADAAgAAQAAAAAALAABAAwAAQBjb3VudGVyABwAAgAMAAEA
AAAAAAAAAAAMAAIAAAAAAAAAAAAwAAEADgABAGltbWVkaWF0ZQAAABwAAgAIAAEAAAAAABAAAgAMAAIACAABAAAAAAA=
"""
NFT_RULE_5 = """
AQAAAgkAAQBmaWx0AAAAAAgAAgBpbnAADAADAAAAAAAAAAAFDAAGAAAAAAAAAAAEEAEEACQAAQAJAAEAbWV0YQAAAAAUAAIA
CAACAAAAABAIAAEAAAAAASwAAQAIAAEAY21wACAAAgAIAAEAAAAAAQgAAgAAAAAADAADAAUAAQAGAAAANAABAAwAAQBwYXls
b2FkACQAAgAIAAEAAAAAAQgAAgAAAAACCAADAAAAAAIIAAQAAAAAAiwAAQAIAAEAY21wACAAAgAIAAEAAAAAAQgAAgAAAAAA
DAADAAYAAQAAFgAALAABAAwAAQBjb3VudGVyABwAAgAMAAEAAAAAAAAAAAAMAAIAAAAAAAAAAAAwAAEADgABAGltbWVkaWF0
ZQAAABwAAgAIAAEAAAAAABAAAgAMAAIACAABAAAAAAE=
"""
NFT_RULE_6 = """
AQAAAgkAAQBmaWx0AAAAAAgAAgBpbnAADAADAAAAAAAAAAAGDAAGAAAAAAAAAAAFBAEEACQAAQAJAAEAbWV0YQAAAAAUAAIA
CAACAAAAABAIAAEAAAAAASwAAQAIAAEAY21wACAAAgAIAAEAAAAAAQgAAgAAAAAADAADAAUAAQARAAAANAABAAwAAQBwYXls
b2FkACQAAgAIAAEAAAAAAQgAAgAAAAACCAADAAAAAAIIAAQAAAAAAiwAAQAIAAEAY21wACAAAgAIAAEAAAAAAQgAAgAAAAAA
DAADAAYAAQAANQAALAABAAwAAQBjb3VudGVyABwAAgAMAAEAAAAAAAAAAAAMAAIAAAAAAAAAAAAkAAEACwABAHJlamVjdAAA
FAACAAgAAQAAAAACBQACAAEAAAA=
"""
NFT_RULE_8 = """
AQAAAgkAAQBmaWx0AAAAAAoAAgB1c2VyYwAAAAwAAwAAAAAAAAAACOQABAAkAAEACQABAG1ldGEAAAAAFAACAAgAAgAAAAAP
CAABAAAAAAEsAAEACAABAGNtcAAgAAIACAABAAAAAAEIAAIAAAAAAAwAAwAFAAEAAgAAADQAAQAMAAEAcGF5bG9hZAAkAAIA
CAABAAAAAAEIAAIAAAAAAQgAAwAAAAAMCAAEAAAAAAEsAAEACAABAGNtcAAgAAIACAABAAAAAAEIAAIAAAAAAAwAAwAFAAEA
CgAAADAAAQAOAAEAaW1tZWRpYXRlAAAAHAACAAgAAQAAAAAAEAACAAwAAgAIAAEAAAAAAA==
"""
#: /proc/modules lines as a Debian 12 kernel prints them
PROC_MODULES = """\
nft_chain_nat 16384 0 - Live 0x0000000000000000
nf_tables 286720 1 nft_chain_nat, Live 0x0000000000000000
nfnetlink 20480 1 nf_tables, Live 0x0000000000000000
tcp_diag 16384 0 - Live 0x0000000000000000
inet_diag 24576 1 tcp_diag, Live 0x0000000000000000
x_tables 53248 0 - Unloading 0x0000000000000000
"""


def b64(text: str) -> bytes:
    return base64.b64decode("".join(text.split()))


# ---- module state -------------------------------------------------------------------

def test_parse_proc_modules():
    modules = parse_proc_modules(PROC_MODULES)
    assert modules["nf_tables"] == "Live" and modules["x_tables"] == "Unloading"
    with pytest.raises(ParseError, match="line 2"):
        parse_proc_modules("a 1 0 - Live 0x0\nbroken line\n")
    assert parse_proc_modules("") == {}


def test_parse_modules_builtin():
    assert parse_modules_builtin("kernel/net/ipv4/inet_diag.ko\nkernel/net/netfilter/"
                                 "nf-conntrack.ko\n\n") == frozenset({"inet_diag",
                                                                       "nf_conntrack"})


def test_present_and_safe_by_kernel_kind():
    loaded = KernelModules(supported=True, loaded=frozenset({"nf_tables", "nfnetlink"}),
                           builtin=frozenset({"inet_diag"}))
    assert loaded.present("nf_tables") is True and loaded.present("inet-diag") is True
    assert loaded.present("tcp_diag") is False
    assert loaded.safe("nfnetlink", "nf_tables") and not loaded.safe("inet_diag", "tcp_diag")
    assert "tcp_diag not loaded" in loaded.why_not("inet_diag", "tcp_diag")
    monolithic = KernelModules(supported=False)  # CONFIG_MODULES=n: nothing can be loaded
    assert monolithic.present("tcp_diag") is None and monolithic.safe("tcp_diag")
    unknown = KernelModules(supported=None)  # a captured tree without /proc/modules
    assert unknown.present("nf_tables") is None and not unknown.safe("nf_tables")
    assert "cannot tell" in unknown.why_not("nf_tables")


def test_read_kernel_modules_from_a_tree(tmp_path):
    ctx = write_tree(tmp_path, {"proc/modules": PROC_MODULES,
                                "sys/module/nf_conntrack/parameters/hashsize": "65536\n",
                                "sys/module/tcp_diag/initstate": "live\n"})
    live = ProbeContext(proc_root=ctx.proc_root, sys_root=ctx.sys_root, live=True)
    modules = read_kernel_modules(live)
    assert modules.supported is True
    assert modules.loaded == {"nft_chain_nat", "nf_tables", "nfnetlink", "tcp_diag",
                              "inet_diag"}  # not x_tables: it is unloading
    assert modules.present("nf_conntrack") is True  # built in: /sys/module without initstate
    assert modules.present("x_tables") is False
    captured = read_kernel_modules(write_tree(tmp_path / "c", {"proc/loadavg": "0\n"}))
    assert captured.supported is None
    nomod = ProbeContext(proc_root=tmp_path / "c" / "proc", sys_root=ctx.sys_root, live=True)
    assert read_kernel_modules(nomod).supported is False


# ---- nftables messages --------------------------------------------------------------

def test_real_rule_messages():
    r4, r5, r6, r8 = (rule_from_msg(b64(t)) for t in (NFT_RULE_4, NFT_RULE_5, NFT_RULE_6,
                                                        NFT_RULE_8))
    assert r4 == NftRule("inet", "filt", "inp", 4, "drop", 0, 0, True)
    assert (r5.verdict, r5.packets, r5.ct_invalid) == (None, 0, False)  # accept
    assert (r6.verdict, r6.handle) == ("reject", 6)
    assert (r8.verdict, r8.chain, r8.packets) == ("drop", "userc", None)  # no counter
    with pytest.raises(ParseError, match="nfgenmsg"):
        rule_from_msg(b"\x01")


def test_real_chain_messages():
    assert chain_policy_drop(base64.b64decode(NFT_CHAIN_INP)) is True
    assert chain_policy_drop(base64.b64decode(NFT_CHAIN_FWDC)) is False
    assert chain_policy_drop(base64.b64decode(NFT_CHAIN_USERC)) is False  # not a base chain


def test_tables_names():
    assert parse_tables_names(None) is None and parse_tables_names("") == ""
    assert parse_tables_names("nat\nfilter\nmangle\n") == "filter,mangle,nat"


def sample(nft, reason=None, legacy=None):
    return NetfilterSample(modules=KernelModules(supported=False),
                           backends=dict.fromkeys(("nf_tables", "ip_tables", "ip6_tables",
                                                   "conntrack", "br_netfilter"), True),
                           legacy_v4=legacy, legacy_v6=None, nft=nft, reason=reason)


def test_rule_facts_rates_order_and_cap(monkeypatch):
    monkeypatch.setattr(ruleset_mod, "MAX_RULES", 2)
    rules = lambda scale: [NftRule("inet", "t", "c", h, "drop", p * scale, p * 100 * scale,  # noqa: E731
                                   False) for h, p in ((1, 1), (2, 50), (3, 7))]
    first, last = sample(NftRuleset(drop_rules=rules(1))), sample(NftRuleset(drop_rules=rules(3)))
    facts, omitted = rule_facts(first, last, 2.0)
    assert [(f.handle, f.packets_total, f.packets_per_s) for f in facts] == \
        [(2, 150, 50.0), (3, 21, 7.0)]
    assert omitted == 1 and all(isinstance(f, NetfilterRule) for f in facts)
    assert rule_facts(None, last, None)[0][0].packets_per_s is None


def test_summary_counts_both_backends():
    legacy = LegacyTable("ip", "filter", rules=3, drop_policies=1, drop_rules=(
        LegacyRule("ip", "filter", "FORWARD", 0, "drop", 5, 300, False),
        LegacyRule("ip", "filter", "INPUT", 2, "reject", 9, 900, False)))
    last = sample(NftRuleset(tables=1, rules=4), legacy="filter")
    last.legacy = [legacy]
    facts = NetfilterProbe().facts(ProbeContext(), None, last, None)
    summary = facts[0]
    assert isinstance(summary, Netfilter) and summary.rule_counters_available is True
    assert (summary.legacy_rules, summary.legacy_drop_rules, summary.legacy_drop_policies) == \
        (3, 1, 1)
    assert summary.both_backends_in_use is True
    rules = {(f.chain, f.handle): f for f in facts[1:]}
    assert rules[("FORWARD", 0)].policy is True and rules[("INPUT", 2)].policy is False
    assert rules[("INPUT", 2)].backend == "iptables-legacy" and rules[("INPUT", 2)].verdict == \
        "reject"
    # listed legacy tables that could not be read: counts unknown, and why
    unread = sample(NftRuleset(tables=1), legacy="filter")
    unread.legacy_reason = "iptables-legacy rules need CAP_NET_ADMIN (run sysdiag as root)"
    (summary,) = NetfilterProbe().facts(ProbeContext(), None, unread, None)
    assert summary.legacy_rules is None and summary.both_backends_in_use is None
    assert summary.rule_counters_available is False and "CAP_NET_ADMIN" in \
        summary.rule_counters_reason


# ---- gating and trees ------------------------------------------------------------------

def forbid_netlink(monkeypatch, *modules):
    def forbidden(*args, **kwargs):
        raise AssertionError("a netfilter netlink socket was opened")

    for module in modules:
        monkeypatch.setattr(module, "open_netlink", forbidden)


def test_nothing_is_asked_when_nf_tables_is_not_loaded(monkeypatch):
    monkeypatch.setattr(ruleset_mod, "read_kernel_modules",
                        lambda ctx: KernelModules(supported=True, loaded=frozenset({"x"})))
    forbid_netlink(monkeypatch, ruleset_mod)
    outcome, facts = run_one(NetfilterProbe(), ProbeContext())
    assert outcome.status == "ok", outcome.reason
    (summary,) = facts
    assert summary.rule_counters_available is False and summary.nft_rules is None
    assert "nfnetlink, nf_tables not loaded" in summary.rule_counters_reason


def test_unprivileged_run_says_what_is_needed(monkeypatch):
    forbid_netlink(monkeypatch, ruleset_mod)
    monkeypatch.setattr(ruleset_mod, "read_kernel_modules",
                        lambda ctx: KernelModules(supported=False))
    outcome, facts = run_one(NetfilterProbe(), ProbeContext(euid=1000))
    assert "CAP_NET_ADMIN" in facts[0].rule_counters_reason


def test_fixture_tree(tree_ctx):
    outcome, facts = run_one(NetfilterProbe(), tree_ctx)
    assert outcome.status == "ok", outcome.reason
    (summary,) = facts
    assert summary.modules_supported is None and "captured tree" in summary.rule_counters_reason
    assert summary.ip_tables is None and summary.conntrack is None


def test_backends_from_files_alone(tmp_path):
    ctx = write_tree(tmp_path, {"proc/net/ip_tables_names": "filter\n",
                                "proc/net/stat/nf_conntrack": "entries\n0\n"})
    found = backends(ctx, KernelModules(supported=None))
    assert found == {"nf_tables": None, "ip_tables": True, "ip6_tables": None,
                     "conntrack": True, "br_netfilter": None}


# ---- live ----------------------------------------------------------------------------------

#: sends N datagrams to 10.0.0.1 port 53 (its own address: local delivery through input)
SENDER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[1])):
    s.sendto(b'q', ('10.0.0.1', 53))
"""


@pytest.mark.live
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create namespaces")
@pytest.mark.skipif(shutil.which("nft") is None, reason="needs nft to write test rules")
def test_live_namespace_rule_counters_against_nft():
    modules = read_kernel_modules(ProbeContext())
    if not modules.safe("nfnetlink", "nf_tables"):
        pytest.skip("nf_tables is not loaded here (and the test must not load it)")
    with netns("nf") as ns:
        run("ip", "-n", ns, "addr", "add", "10.0.0.1/32", "dev", "lo")
        rules = Path(f"/tmp/sysdiag-nft-{os.getpid()}.nft")
        try:
            rules.write_text(RULES)
            run("ip", "netns", "exec", ns, "nft", "-f", str(rules))
        finally:
            rules.unlink()
        probe = NetfilterProbe(netns=ns)
        ctx = ProbeContext()
        first = probe.sample(ctx)
        run("ip", "netns", "exec", ns, sys.executable, "-c", SENDER, "40")
        time.sleep(0.1)
        last = probe.sample(ctx)
        facts = probe.facts(ctx, first, last, 0.5)
        summary = next(f for f in facts if isinstance(f, Netfilter))
        assert (summary.nft_tables, summary.nft_chains, summary.nft_rules) == (1, 3, 5)
        assert (summary.nft_drop_rules, summary.nft_drop_policies) == (3, 1)
        assert summary.rule_counters_available is True
        rules_by_handle = {f.handle: f for f in facts if isinstance(f, NetfilterRule)}
        reject = rules_by_handle[6]
        assert reject.verdict == "reject" and reject.packets_total == 40
        assert reject.packets_per_s == 80.0  # 40 over the 0.5 s we said elapsed
        assert rules_by_handle[4].matches_ct_invalid is True
        listed = json.loads(run("ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset"))
        counters = {}
        for item in listed["nftables"]:
            rule = item.get("rule")
            for expr in (rule or {}).get("expr", []):
                if "counter" in expr:
                    counters[rule["handle"]] = expr["counter"]["packets"]
        assert counters[6] == reject.packets_total and counters[4] == \
            rules_by_handle[4].packets_total


@pytest.mark.live
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for every probe path")
def test_running_every_network_stack_probe_leaves_the_module_list_unchanged():
    """The guarantee behind all the gating: /proc/modules is the same before and after
    every probe of this set ran, live, in this namespace and in a fresh one."""
    before = proc_modules()
    if before is None:
        pytest.skip("this kernel has no module support (no /proc/modules): nothing can be "
                    "loaded, so there is nothing to compare; the gating itself is tested with "
                    "a simulated module list above")
    from sysdiag.probes.registry import all_probes
    from sysdiag.probes.runner import run_probes

    names = ["sysctl", "conntrack", "sockets", "neigh", "routes", "netfilter"]
    registry = all_probes()
    collection = run_probes([registry[n]() for n in names], ProbeContext(), window_s=0.2,
                            deadline_s=30)
    assert {o.probe for o in collection.outcomes} == set(names)
    with netns("mods") as ns:
        for cls in (registry["sockets"], registry["neigh"], registry["routes"],
                    registry["netfilter"]):
            probe = cls(netns=ns)
            try:
                probe.sample(ProbeContext())
            except Exception as err:  # an unavailable outcome is fine; loading is not
                assert "not loaded" in str(err) or "namespace" in str(err), err
    assert proc_modules() == before


def test_no_probe_sends_an_autoloading_request_when_modules_are_missing(monkeypatch):
    """Simulate a modular kernel with nothing loaded: every probe of this set still runs,
    and none opens a sock_diag or netfilter netlink socket (the requests that autoload)."""
    from sysdiag.probes.netlink import sockets as sockets_mod
    from sysdiag.probes.registry import all_probes
    from sysdiag.probes.runner import run_probes

    nothing = KernelModules(supported=True, loaded=frozenset({"ext4"}))
    for module in (sockets_mod, ruleset_mod):
        monkeypatch.setattr(module, "read_kernel_modules", lambda ctx: nothing)
    # neigh and routes use rtnetlink, which is core and never loads a module
    forbid_netlink(monkeypatch, sockets_mod, ruleset_mod)
    names = ["sysctl", "conntrack", "sockets", "neigh", "routes", "netfilter"]
    registry = all_probes()
    collection = run_probes([registry[n]() for n in names], ProbeContext(), window_s=0.1,
                            deadline_s=30)
    statuses = {o.probe: o.status for o in collection.outcomes}
    assert statuses["sockets"] == "ok" and statuses["netfilter"] == "ok", statuses
    summary = next(f for f in collection.facts if f.kind == "socket_summary")
    assert summary.method == "procfs"


def test_root_only_table_names_are_a_warning_not_a_failure(tmp_path, monkeypatch):
    """/proc/net/ip_tables_names is mode 0440: as another user it cannot be read."""
    ctx = write_tree(tmp_path, {"proc/net/ip_tables_names": "filter\n"})
    real = ProbeContext.read_optional

    def refuse(self, path):
        if path.name.endswith("_tables_names"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(self, path)

    monkeypatch.setattr(ProbeContext, "read_optional", refuse)
    outcome, facts = run_one(NetfilterProbe(), ctx)
    assert outcome.status == "ok", outcome.reason
    summary = facts[0]
    assert summary.ip_tables is True and summary.legacy_tables_v4 is None
    assert summary.legacy_rules is None and "run sysdiag as root" in summary.rule_counters_reason
