"""Scope: reading another network namespace (--netns, --pid) and one interface (--iface).

Unit tests check the paths and the relation rules; live tests (root) build namespaces
and veth pairs, check that only the probing thread changes namespace, and run
`sysdiag collect` scoped to them.
"""
from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from sysdiag.errors import InputError
from sysdiag.facts import Scope
from sysdiag.pipeline import Options, probe_context
from sysdiag.probes.base import Probe, ProbeContext, Unavailable
from sysdiag.probes.runner import run_probes
from sysdiag.probes.scope import (LinkInfo, ScopeError, entered_netns, links_sysfs, related,
                                  resolve_netns, run_in_netns, scope_context)

from netns_helpers import SYSDIAG, collect, kinds, process_in, run, tag, veth_namespace

def own_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


# ---- paths and relations ---------------------------------------------------------------

def test_net_paths_follow_the_scope(tmp_path):
    assert ProbeContext().net("dev") == Path("/proc/net/dev")
    scoped = ProbeContext(netns_path="/run/netns/x")
    assert scoped.net("dev") == Path("/proc/thread-self/net/dev")
    assert scoped.foreign_netns and not ProbeContext().foreign_netns
    tree = ProbeContext(proc_root=tmp_path, live=False, scope=Scope(pid=42))
    assert tree.net("snmp") == tmp_path / "42/net/snmp"
    assert ProbeContext(proc_root=tmp_path, live=False).net() == tmp_path / "net"


def test_wants_iface():
    assert ProbeContext().wants_iface("anything")
    ctx = ProbeContext(ifaces=frozenset({"va", "br0"}))
    assert ctx.wants_iface("va") and ctx.wants_iface("br0") and not ctx.wants_iface("lo")


LINKS = [LinkInfo("lo", 1), LinkInfo("eth0", 2), LinkInfo("br0", 3),
         LinkInfo("va", 4, master=3, link=5), LinkInfo("vb", 5, link=4),
         LinkInfo("bond0", 6), LinkInfo("eth1", 7, master=6), LinkInfo("eth2", 8, master=6),
         LinkInfo("eth0.10", 9, link=2), LinkInfo("vx", 10, link=10)]


@pytest.mark.parametrize("iface, expected", [
    ("va", {"va", "vb", "br0"}),  # peer and bridge
    ("vb", {"vb", "va"}),
    ("br0", {"br0", "va"}),  # its ports
    ("bond0", {"bond0", "eth1", "eth2"}),  # its slaves
    ("eth1", {"eth1", "bond0"}),  # one hop only: not the other slave
    ("eth0", {"eth0", "eth0.10"}),  # vlan on top
    ("eth0.10", {"eth0.10", "eth0"}),  # its parent
    ("vx", {"vx"}),  # iflink pointing at itself is no relation
    ("lo", {"lo"}),
    ("ghost", {"ghost"}),
])
def test_related_interfaces_one_hop(iface, expected):
    assert related(iface, LINKS) == expected


def _sys_tree(root: Path) -> ProbeContext:
    net = root / "sys/class/net"
    for name, index, iflink in (("br0", 3, 3), ("va", 4, 5), ("vb", 5, 4), ("lo", 1, 1)):
        (net / name).mkdir(parents=True)
        (net / name / "ifindex").write_text(f"{index}\n")
        (net / name / "iflink").write_text(f"{iflink}\n")
    os.symlink("../br0", net / "va" / "master")
    (root / "proc").mkdir()
    return ProbeContext(proc_root=root / "proc", sys_root=root / "sys", live=False)


def test_links_from_a_captured_sysfs(tmp_path):
    links = {link.ifname: link for link in links_sysfs(_sys_tree(tmp_path))}
    assert links["va"] == LinkInfo("va", 4, master=3, link=5)
    assert links["br0"] == LinkInfo("br0", 3)
    assert links_sysfs(ProbeContext(sys_root=tmp_path / "nothing", live=False)) == []


def test_iface_scope_on_a_captured_tree(tmp_path):
    ctx = _sys_tree(tmp_path)
    ctx.scope = Scope(iface="va")
    assert scope_context(ctx).ifaces == {"va", "vb", "br0"}
    ctx.scope, ctx.ifaces = Scope(iface="nope0"), None
    with pytest.raises(ScopeError, match="--iface nope0: no such interface in .*class/net"):
        scope_context(ctx)


def test_iface_from_a_process_net_dev_in_a_captured_tree(tmp_path):
    ctx = _sys_tree(tmp_path)
    dev = tmp_path / "proc/77/net/dev"
    dev.parent.mkdir(parents=True)
    dev.write_text("Inter-| Receive | Transmit\n face |bytes\n  cni0: 1 2 3 4 5 6 7 8 9 10 11 12 "
                   "13 14 15 16\n")
    ctx.scope = Scope(pid=77, iface="cni0")
    assert scope_context(ctx).ifaces == {"cni0"}


def test_captured_tree_has_no_netns_to_enter(tmp_path):
    ctx = ProbeContext(proc_root=tmp_path, live=False, scope=Scope(pid=1, netns="x"))
    assert resolve_netns(ctx) is None
    with pytest.raises(InputError, match="--netns x: a captured tree has no named namespaces"):
        probe_context(Options(proc_root=tmp_path, scope=Scope(netns="x")))


def test_scope_errors_name_the_option():
    with pytest.raises(ScopeError, match="--netns sd-no-such: no such namespace"):
        resolve_netns(ProbeContext(scope=Scope(netns="sd-no-such")))
    with pytest.raises(ScopeError, match="--pid 999999999: no such process"):
        resolve_netns(ProbeContext(scope=Scope(pid=999_999_999)))


def test_own_namespace_needs_no_entering():
    assert resolve_netns(ProbeContext(scope=Scope(pid=os.getpid()))) is None
    assert resolve_netns(ProbeContext()) is None


class _WhereProbe(Probe):
    """Records the network namespace each sample ran in."""

    name = "where"
    provides = ("none",)

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def sample(self, ctx):
        self.seen.append(own_inode())
        return None

    def facts(self, ctx, first, last, elapsed_s):
        return []


class _ScopedWhereProbe(_WhereProbe):
    name = "where-scoped"
    netns_scoped = True


def test_runner_leaves_probes_in_place_without_a_foreign_namespace():
    probes = [_WhereProbe(), _ScopedWhereProbe()]
    run_probes(probes, ProbeContext(), window_s=0.05, deadline_s=10)
    assert [p.seen for p in probes] == [[own_inode()] * 2] * 2


# ---- live: entering namespaces ------------------------------------------------------------

@pytest.fixture
def ns_with_veths():
    yield from veth_namespace()


@pytest.mark.live
@pytest.mark.root
def test_only_the_calling_thread_enters(ns_with_veths):
    path = f"/run/netns/{ns_with_veths}"
    target = os.stat(path).st_ino
    before = own_inode()
    seen = {}

    def body():
        with entered_netns(path):
            seen["inside"] = own_inode()
            seen["main_meanwhile"] = os.stat(f"/proc/{os.getpid()}/task/{os.getpid()}/ns/net"
                                             ).st_ino
            seen["dev"] = Path("/proc/thread-self/net/dev").read_text()
            seen["somaxconn"] = Path("/proc/sys/net/core/somaxconn").read_text().strip()
        seen["after"] = own_inode()

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(10)
    assert seen["inside"] == target != before
    assert seen["main_meanwhile"] == before  # the main thread never moved
    assert seen["after"] == before == own_inode()
    assert tag("a") in seen["dev"] and "eth0" not in seen["dev"]
    assert seen["somaxconn"] == "777"


@pytest.mark.live
@pytest.mark.root
def test_entering_fails_with_a_reason(ns_with_veths):
    with pytest.raises(Unavailable, match="no longer exists"):
        run_in_netns("/run/netns/sd-gone-away", lambda: None)
    with pytest.raises(Unavailable, match="not a network namespace"):
        run_in_netns("/proc/self/ns/uts", lambda: None)
    with pytest.raises(TimeoutError, match="longer than 0.1 s"):
        run_in_netns(f"/run/netns/{ns_with_veths}", lambda: threading.Event().wait(1),
                     timeout_s=0.1)
    assert run_in_netns(f"/run/netns/{ns_with_veths}", own_inode) == \
        os.stat(f"/run/netns/{ns_with_veths}").st_ino


@pytest.mark.live
@pytest.mark.root
def test_runner_samples_scoped_probes_inside(ns_with_veths):
    ctx = probe_context(Options(scope=Scope(netns=ns_with_veths)))
    assert ctx.netns_path == f"/run/netns/{ns_with_veths}"
    probes = [_WhereProbe(), _ScopedWhereProbe()]
    run_probes(probes, ctx, window_s=0.05, deadline_s=10)
    assert probes[0].seen == [own_inode()] * 2
    assert probes[1].seen == [os.stat(ctx.netns_path).st_ino] * 2


@pytest.mark.live
@pytest.mark.root
def test_pid_and_netns_must_agree(ns_with_veths):
    with process_in(ns_with_veths) as pid:
        ctx = probe_context(Options(scope=Scope(netns=ns_with_veths, pid=pid)))
        assert ctx.netns_path is not None
        with pytest.raises(InputError, match="name different network namespaces"):
            probe_context(Options(scope=Scope(netns=ns_with_veths, pid=os.getpid())))


@pytest.mark.live
@pytest.mark.root
@pytest.mark.slow
def test_collect_scoped_to_a_named_namespace(ns_with_veths):
    a, b, c, d = (tag(x) for x in "abcd")
    run("tc", "-n", ns_with_veths, "qdisc", "add", "dev", a, "root", "tbf", "rate", "1mbit",
        "burst", "32kbit", "latency", "400ms")
    snap = collect("--netns", ns_with_veths)
    assert snap["scope"]["netns"] == ns_with_veths
    links = {f["ifname"]: f for f in kinds(snap, "net_link")}
    assert set(links) == {"lo", a, b, c, d}  # that namespace's, none of the host's
    assert links[a]["link_ifname"] == b and links[a]["qdisc"] == "tbf"
    qdiscs = {(f["ifname"], f["qdisc_kind"]) for f in kinds(snap, "qdisc")}
    assert (a, "tbf") in qdiscs and all(name != "eth0" for name, _ in qdiscs)
    (sysctl,) = kinds(snap, "sysctl")
    assert sysctl["somaxconn"] == 777  # /proc/sys read from inside
    (counters,) = kinds(snap, "net_counters")
    assert counters["source"].startswith("/proc/thread-self/net")


@pytest.mark.live
@pytest.mark.root
@pytest.mark.slow
def test_collect_scoped_to_one_interface_and_its_peer(ns_with_veths):
    a, b = tag("a"), tag("b")
    snap = collect("--netns", ns_with_veths, "--iface", a)
    assert {f["ifname"] for f in kinds(snap, "net_link")} == {a, b}
    assert {f["ifname"] for f in kinds(snap, "qdisc")} <= {a, b}


@pytest.mark.live
@pytest.mark.root
@pytest.mark.slow
def test_collect_scoped_by_pid_reads_its_namespace(ns_with_veths):
    with process_in(ns_with_veths) as pid:
        snap = collect("--pid", str(pid))
    assert {f["ifname"] for f in kinds(snap, "net_link")} == {"lo", *(tag(x) for x in "abcd")}
    assert snap["scope"]["pid"] == pid


@pytest.mark.live
@pytest.mark.root
def test_unknown_interface_in_the_namespace_is_a_usage_error(ns_with_veths):
    out = subprocess.run([str(SYSDIAG), "collect", "-o", "-", "--netns", ns_with_veths,
                          "--iface", "eth0"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert f"--iface eth0: no such interface in network namespace '{ns_with_veths}'" in \
        out.stderr


LISTENER = ("import socket, time; s = socket.socket(); s.bind(('0.0.0.0', 45678)); s.listen(7); "
            "print('up', flush=True); time.sleep(60)")


@pytest.mark.live
@pytest.mark.root
@pytest.mark.slow
def test_collect_scoped_routes_neighbours_and_sockets(ns_with_veths):
    a = tag("a")
    run("ip", "-n", ns_with_veths, "addr", "add", "10.77.0.1/24", "dev", a)
    run("ip", "-n", ns_with_veths, "route", "add", "default", "via", "10.77.0.2", "dev", a)
    listener = subprocess.Popen(["ip", "netns", "exec", ns_with_veths, "python3", "-c",
                                 LISTENER], stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "up"
        snap = collect("--netns", ns_with_veths)
    finally:
        listener.kill()
        listener.wait(timeout=10)
        listener.stdout.close()
    (routes,) = kinds(snap, "routes")
    assert (routes["has_default_v4"], routes["default_dev_v4"], routes["default_gateway_v4"]) \
        == (True, a, "10.77.0.2")
    # that namespace's one listener, none of the host's
    assert {f["local_port"] for f in kinds(snap, "tcp_listener")} == {45678}
    for fact in kinds(snap, "neigh_entry"):
        assert fact["ifname"] in {a, tag("b"), tag("c"), tag("d"), "lo"}
