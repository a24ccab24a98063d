"""namespaces: ns link parsing, captured and written trees, live namespaces the tests
create, and the NIC probes under --netns/--pid/--iface through `sysdiag collect`."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from sysdiag.facts import Scope
from sysdiag.probes.base import ProbeContext
from sysdiag.probes.netlink.netns import (NamespacesProbe, named_namespaces, parse_ns_link,
                                          read_ns)
from sysdiag.probes.parse import ParseError

from netns_helpers import collect, kinds, need_root_and_ip, netns, process_in, tag, \
    veth_namespace
from probe_helpers import run_one, write_tree


@pytest.mark.parametrize("text, expected", [
    ("net:[4026531993]", ("net", 4026531993)), ("mnt:[4026531840]\n", ("mnt", 4026531840)),
    ("pid_for_children:[4026531836]", ("pid_for_children", 4026531836)),
])
def test_parse_ns_link(text, expected):
    assert parse_ns_link(text) == expected


@pytest.mark.parametrize("text", ["", "net:", "net:[]", "net:[12a]", "socket:[123] x", "4026531"])
def test_bad_ns_link(text):
    with pytest.raises(ParseError, match="expected 'TYPE:\\[INODE\\]'"):
        parse_ns_link(text, "/proc/1/ns/net")


def ns_files(proc: int, **inodes: int) -> dict[str, str]:
    return {f"proc/{proc}/ns/{t}": f"{t}:[{i}]" for t, i in inodes.items()}


HOST = dict(mnt=10, net=20, pid=30, uts=40, ipc=50, user=60, cgroup=70, time=80)


def test_written_tree_groups_processes(tmp_path):
    files = {**ns_files(1, **HOST), **ns_files(7, **HOST),
             **ns_files(300, **{**HOST, "net": 21}), **ns_files(301, **{**HOST, "net": 21}),
             **ns_files(400, **{**HOST, "net": 22, "mnt": 11, "pid": 31}),
             "proc/300/comm": "nginx\n", "proc/400/comm": "app\n", "proc/1/comm": "init\n"}
    ctx = write_tree(tmp_path, files)
    ctx.scope = Scope(pid=400)
    outcome, facts = run_one(NamespacesProbe(), ctx)
    assert outcome.status == "ok", outcome.reason
    nets = {f.inode: f for f in facts if f.kind == "net_namespace"}
    assert {i: (f.pids, f.sample_pid) for i, f in nets.items()} == {
        20: (2, 1), 21: (2, 300), 22: (1, 400)}
    assert nets[21].sample_comm == "nginx" and nets[20].is_host and not nets[21].is_host
    assert nets[22].in_scope and not nets[20].in_scope
    assert nets[20].is_own is None  # a captured tree has no "own"
    assert list(nets)[0] == 22  # the one in scope first
    (proc,) = [f for f in facts if f.kind == "process_namespaces"]
    assert (proc.pid, proc.comm, proc.net_ns, proc.mnt_ns) == (400, "app", 22, 11)
    assert proc.differs_from_host == "mnt,net,pid" and proc.containerized is True


def test_same_namespaces_as_host_and_unknown_host(tmp_path):
    ctx = write_tree(tmp_path, {**ns_files(1, **HOST), **ns_files(9, **{**HOST, "net": 99})})
    ctx.scope = Scope(pid=9)
    (proc,) = [f for f in run_one(NamespacesProbe(), ctx)[1] if f.kind == "process_namespaces"]
    assert proc.differs_from_host == "net" and proc.containerized is False
    bare = write_tree(tmp_path / "b", ns_files(9, net=99))
    bare.scope = Scope(pid=9)
    facts = run_one(NamespacesProbe(), bare)[1]
    (proc,) = [f for f in facts if f.kind == "process_namespaces"]
    assert proc.differs_from_host is None and proc.containerized is None  # no PID 1 to compare
    assert all(f.is_host is None for f in facts if f.kind == "net_namespace")


def test_one_odd_process_does_not_hide_the_others(tmp_path):
    ctx = write_tree(tmp_path, {**ns_files(1, net=20), "proc/5/ns/net": "garbage",
                                "proc/6/ns/net": "mnt:[10]"})
    outcome, facts = run_one(NamespacesProbe(), ctx)
    assert outcome.status == "ok"
    assert [(f.inode, f.pids) for f in facts] == [(20, 1)]
    assert any("proc/5/ns/net" in w and "TYPE:[INODE]" in w for w in outcome.warnings)
    assert any("proc/6/ns/net" in w and "expected 'net'" in w for w in outcome.warnings)


def test_read_ns_missing_and_wrong_type(tmp_path):
    ctx = write_tree(tmp_path, {"proc/3/ns/net": "mnt:[1]"})
    assert read_ns(ctx, 4, "net") is None
    with pytest.raises(ParseError, match="names a 'mnt' namespace"):
        read_ns(ctx, 3, "net")


def test_stale_names_under_run_netns(tmp_path):
    (tmp_path / "left-behind").write_text("")  # a name whose bind mount is gone
    assert named_namespaces(str(tmp_path)) == ({}, ["left-behind"])
    assert named_namespaces(str(tmp_path / "absent")) == ({}, [])


def test_fixture_tree(tree_ctx):
    tree_ctx.scope = Scope(pid=26231)
    outcome, facts = run_one(NamespacesProbe(), tree_ctx)
    assert outcome.status == "ok", outcome.reason
    (net,) = [f for f in facts if f.kind == "net_namespace"]
    assert (net.inode, net.pids, net.sample_pid, net.sample_comm) == (4026531993, 1, 26231, "vim")
    assert net.in_scope and net.name is None
    (proc,) = [f for f in facts if f.kind == "process_namespaces"]
    assert (proc.net_ns, proc.mnt_ns, proc.pid_ns) == (4026531993, 4026531840, None)
    assert all(f.source.startswith(str(tree_ctx.proc_root)) for f in facts)


# ---- live ------------------------------------------------------------------------------

@pytest.mark.live
@pytest.mark.root
def test_live_named_and_populated_namespaces():
    need_root_and_ip()
    name = tag("n")
    with netns(name):
        ino = os.stat(f"/run/netns/{name}").st_ino
        facts = run_one(NamespacesProbe(), ProbeContext())[1]
        nets = {f.inode: f for f in facts if f.kind == "net_namespace"}
        assert nets[ino].name == name and nets[ino].pids == 0 and nets[ino].sample_pid is None
        assert nets[ino].is_host is False and nets[ino].is_own is False
        own = nets[os.stat("/proc/self/ns/net").st_ino]
        assert own.is_own and own.is_host and own.in_scope and own.pids >= 1
        with process_in(name) as pid:
            ctx = ProbeContext(scope=Scope(pid=pid), netns_path=f"/proc/{pid}/ns/net")
            facts = run_one(NamespacesProbe(), ctx)[1]
        nets = {f.inode: f for f in facts if f.kind == "net_namespace"}
        assert (nets[ino].pids, nets[ino].sample_pid, nets[ino].sample_comm) == (1, pid, "sleep")
        assert nets[ino].in_scope and not nets[own.inode].in_scope
        (proc,) = [f for f in facts if f.kind == "process_namespaces"]
        # `ip netns exec` also gives the process a mount namespace of its own (for /sys)
        assert proc.differs_from_host == "mnt,net" and proc.containerized is False


@pytest.fixture
def ns_with_veths():
    yield from veth_namespace()


@pytest.mark.live
@pytest.mark.root
@pytest.mark.slow
def test_nic_probes_under_netns_scope(ns_with_veths):
    a, b, c, d = (tag(x) for x in "abcd")
    snap = collect("--netns", ns_with_veths)
    coverage = {c["probe"]: c for c in snap["coverage"]}
    assert coverage["rps-xps"]["status"] == "unavailable"
    assert "sysfs shows only sysdiag's own network namespace" in coverage["rps-xps"]["reason"]
    assert coverage["offloads"]["status"] == "ok" and coverage["interrupts"]["status"] == "ok"
    assert {f["ifname"] for f in kinds(snap, "nic_offloads")} == {"lo", a, b, c, d}
    assert not kinds(snap, "irq_spread")  # veths raise no interrupts
    assert kinds(snap, "softirq_summary")  # softirqs are per CPU, whatever the namespace
    netns_facts = {f["name"]: f for f in kinds(snap, "net_namespace") if f.get("name")}
    assert netns_facts[ns_with_veths]["in_scope"] and netns_facts[ns_with_veths]["pids"] == 0
    assert sum(f["in_scope"] for f in kinds(snap, "net_namespace")) == 1

    snap = collect("--netns", ns_with_veths, "--iface", a)
    assert {f["ifname"] for f in kinds(snap, "nic_offloads")} == {a, b}
    assert {f["ifname"] for f in kinds(snap, "nic_channels")} == {a, b}


@pytest.mark.live
@pytest.mark.root
@pytest.mark.slow
def test_pid_scope_reports_its_namespaces(ns_with_veths):
    with process_in(ns_with_veths) as pid:
        snap = collect("--pid", str(pid))
    (proc,) = kinds(snap, "process_namespaces")
    assert proc["pid"] == pid and proc["differs_from_host"] == "mnt,net"
    assert proc["net_ns"] == os.stat(f"/run/netns/{ns_with_veths}").st_ino
    assert {f["ifname"] for f in kinds(snap, "nic_offloads")} == {"lo", *(tag(x) for x in "abcd")}


@pytest.mark.live
@pytest.mark.root
@pytest.mark.slow
def test_iface_scope_in_own_namespace():
    need_root_and_ip()
    with_sys = Path("/sys/class/net/eth0/device").exists()
    snap = collect("--iface", "lo")
    assert {f["ifname"] for f in kinds(snap, "net_link")} == {"lo"}
    assert {f["ifname"] for f in kinds(snap, "nic_queues")} == {"lo"}
    assert {f["ifname"] for f in kinds(snap, "nic_offloads")} == {"lo"}
    assert not kinds(snap, "irq_spread")
    if with_sys:
        snap = collect("--iface", "eth0")
        assert {f["ifname"] for f in kinds(snap, "irq_spread")} == {"eth0"}
