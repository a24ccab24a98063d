"""sysctl: /proc/sys tunables and per-interface rp_filter/ARP settings.

The HOST_6_18 texts are this 6.18 host's own files.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from netstack_helpers import netns, probe_in_netns, run
from probe_helpers import run_one, write_tree

from sysdiag.facts import IfaceSysctl, NetSysctl
from sysdiag.probes.base import ProbeContext
from sysdiag.probes.parse import ParseError
from sysdiag.probes.procfs.sysctl import (
    TUNABLES, SysctlProbe, iface_values, parse_int, parse_ints, parse_tunables, parse_word)

HOST_6_18 = {
    "net/core/somaxconn": "4096\n",
    "net/core/netdev_max_backlog": "1000\n",
    "net/core/netdev_budget": "300\n",
    "net/core/netdev_budget_usecs": "8000\n",
    "net/core/rmem_max": "4194304\n",
    "net/core/wmem_max": "4194304\n",
    "net/core/rps_sock_flow_entries": "0\n",
    "net/core/default_qdisc": "pfifo_fast\n",
    "net/ipv4/tcp_syncookies": "1\n",
    "net/ipv4/tcp_max_syn_backlog": "2048\n",
    "net/ipv4/ip_local_port_range": "32768\t60999\n",
    "net/ipv4/tcp_tw_reuse": "2\n",
    "net/ipv4/tcp_rmem": "4096\t131072\t33554432\n",
    "net/ipv4/tcp_wmem": "4096\t16384\t4194304\n",
    "net/ipv4/tcp_window_scaling": "1\n",
    "net/ipv4/tcp_abort_on_overflow": "0\n",
    "net/ipv4/ipfrag_high_thresh": "4194304\n",
    "net/ipv4/tcp_mtu_probing": "0\n",
    "net/ipv4/conf/all/rp_filter": "0\n",
    "net/bridge/bridge-nf-call-iptables": "1\n",
    "kernel/pid_max": "32768\n",
    "kernel/threads-max": "192730\n",
    "kernel/printk": "4\t4\t1\t7\n",
    "kernel/hung_task_timeout_secs": "120\n",
    "kernel/hung_task_warnings": "10\n",
    "kernel/hung_task_detect_count": "0\n",
    "kernel/sched_rt_runtime_us": "950000\n",
    "kernel/tainted": "0\n",
    "vm/overcommit_memory": "0\n",
    "vm/overcommit_ratio": "50\n",
    "vm/max_map_count": "65530\n",
    "vm/swappiness": "60\n",
    "vm/dirty_ratio": "20\n",
    "vm/dirty_background_ratio": "10\n",
    "vm/dirty_bytes": "0\n",
    "vm/dirty_background_bytes": "0\n",
    "vm/zone_reclaim_mode": "0\n",
    "vm/min_free_kbytes": "67584\n",
    "vm/watermark_scale_factor": "10\n",
    "fs/file-max": "2466177\n",
    "fs/nr_open": "1048576\n",
    "fs/inotify/max_user_instances": "128\n",
    "fs/inotify/max_user_watches": "192536\n",
}


def test_every_tunable_of_this_host_lands_in_a_field():
    values, problems = parse_tunables(HOST_6_18)
    assert problems == []
    assert set(HOST_6_18) == set(TUNABLES)
    fact = NetSysctl(source="/proc/sys", **values)
    assert fact.ip_local_port_range_low == 32768 and fact.ip_local_port_range_high == 60999
    assert fact.ip_local_port_range_size == 28232
    assert fact.tcp_rmem_max_bytes == 33554432 and fact.tcp_wmem_max_bytes == 4194304
    assert fact.printk_console_level == 4 and fact.default_qdisc == "pfifo_fast"
    assert fact.threads_max == 192730 and fact.file_max == 2466177
    # every NetSysctl field is filled by some file (none is dead)
    unset = {name for name in NetSysctl.model_fields if name not in ("kind", "source")}
    assert unset - set(values) == set()


def test_missing_files_stay_none_and_bad_ones_are_reported():
    files = dict(HOST_6_18)
    files["net/bridge/bridge-nf-call-iptables"] = None  # br_netfilter not loaded
    files["vm/swappiness"] = "sixty\n"
    files["net/ipv4/tcp_rmem"] = "4096 131072\n"  # truncated
    values, problems = parse_tunables(files)
    assert "bridge_nf_call_iptables" not in values and "swappiness" not in values
    assert "tcp_rmem_max_bytes" not in values
    assert len(problems) == 2
    assert any("/proc/sys/vm/swappiness" in p and "integer" in p for p in problems)
    assert any("/proc/sys/net/ipv4/tcp_rmem" in p and "3 integers" in p for p in problems)
    assert values["somaxconn"] == 4096


@pytest.mark.parametrize("text", ["", "\n", "1 2\n", "x\n", "0x10\n"])
def test_parse_int_rejects(text):
    with pytest.raises(ParseError, match="somaxconn"):
        parse_int(text, "somaxconn")


def test_parse_ints_and_word():
    assert parse_ints("-1\n", "x", 1) == [-1]
    assert parse_ints("4\t4\t1\t7\n", "printk", 4) == [4, 4, 1, 7]
    with pytest.raises(ParseError, match="4 integers"):
        parse_ints("4 4 1\n", "printk", 4)
    with pytest.raises(ParseError, match="one word"):
        parse_word("", "default_qdisc")
    with pytest.raises(ParseError, match="backwards"):
        TUNABLES["net/ipv4/ip_local_port_range"]("60999 32768", "range")
    _, problems = parse_tunables({"net/ipv4/ip_local_port_range": "60999 32768"}, "/p")
    assert problems == ["/p/net/ipv4/ip_local_port_range: port range 60999-32768 runs "
                        "backwards"]


def test_effective_values_follow_the_kernel():
    # rp_filter and arp_ignore: the larger of all and IF; log_martians, arp_filter: either
    all_conf = {"rp_filter": 1, "log_martians": 0, "arp_ignore": 0, "arp_filter": 1}
    iface = {"rp_filter": 2, "log_martians": 1, "arp_ignore": 0, "arp_filter": 0}
    values = iface_values(all_conf, iface)
    assert values == {"rp_filter": 2, "rp_filter_effective": 2, "log_martians": 1,
                      "log_martians_effective": 1, "arp_ignore": 0, "arp_ignore_effective": 0,
                      "arp_filter": 0, "arp_filter_effective": 1}
    assert iface_values({"rp_filter": 1}, {"rp_filter": 0})["rp_filter_effective"] == 1
    assert iface_values({}, {"rp_filter": 2})["rp_filter_effective"] is None


def test_captured_tree(tmp_path):
    files = {f"proc/sys/{rel}": text for rel, text in HOST_6_18.items()}
    files.update({
        "proc/sys/net/ipv4/conf/all/rp_filter": "1\n",
        "proc/sys/net/ipv4/conf/default/rp_filter": "1\n",
        "proc/sys/net/ipv4/conf/eth0/rp_filter": "0\n",
        "proc/sys/net/ipv4/conf/eth0/arp_ignore": "1\n",
        "proc/sys/net/ipv4/conf/eth0/log_martians": "garbage\n",
    })
    ctx = write_tree(tmp_path, files)
    probe = SysctlProbe()
    outcome, facts = run_one(probe, ctx)
    assert outcome.status == "ok", outcome.reason
    assert any("log_martians" in w for w in outcome.warnings)
    (sysctl,) = [f for f in facts if isinstance(f, NetSysctl)]
    assert sysctl.rp_filter_all == 1 and sysctl.somaxconn == 4096
    ifaces = {f.ifname: f for f in facts if isinstance(f, IfaceSysctl)}
    assert set(ifaces) == {"eth0"}  # not "all", not "default"
    eth0 = ifaces["eth0"]
    assert eth0.rp_filter == 0 and eth0.rp_filter_effective == 1  # strict via conf.all
    assert eth0.log_martians is None and eth0.arp_filter is None
    assert eth0.arp_ignore == 1 and eth0.arp_ignore_effective is None  # no conf.all value


def test_tree_without_proc_sys_is_unavailable(tmp_path):
    ctx = write_tree(tmp_path, {"proc/loadavg": "0 0 0 1/1 1\n"})
    outcome, facts = run_one(SysctlProbe(), ctx)
    assert outcome.status == "unavailable" and "/proc/sys" in outcome.reason
    assert facts == []


def test_fixture_tree(tree_ctx):
    outcome, facts = run_one(SysctlProbe(), tree_ctx)
    assert outcome.status == "ok", outcome.reason
    (sysctl,) = facts  # the fixture has no net/ in /proc/sys: no interfaces
    assert sysctl.swappiness == 60 and sysctl.max_map_count == 65530
    assert sysctl.hung_task_detect_count == 6 and sysctl.min_free_kbytes == 67584
    assert sysctl.overcommit_ratio == 50 and sysctl.watermark_scale_factor == 10
    assert sysctl.somaxconn is None and sysctl.pid_max is None  # not in the fixture


@pytest.mark.live
@pytest.mark.skipif(shutil.which("sysctl") is None, reason="needs procps sysctl to compare")
def test_live_matches_the_sysctl_tool():
    probe = SysctlProbe()
    outcome, facts = run_one(probe, ProbeContext())
    assert outcome.status == "ok", outcome.reason
    sysctl = next(f for f in facts if isinstance(f, NetSysctl))
    for name, field in (("net.core.somaxconn", "somaxconn"), ("vm.swappiness", "swappiness"),
                        ("kernel.pid_max", "pid_max"), ("fs.nr_open", "nr_open"),
                        ("net.ipv4.tcp_syncookies", "tcp_syncookies")):
        assert str(getattr(sysctl, field)) == run("sysctl", "-n", name).strip(), name
    low, high = run("sysctl", "-n", "net.ipv4.ip_local_port_range").split()
    assert (sysctl.ip_local_port_range_low, sysctl.ip_local_port_range_high) == \
        (int(low), int(high))
    names = {f.ifname for f in facts if isinstance(f, IfaceSysctl)}
    assert names == set(os.listdir("/proc/sys/net/ipv4/conf")) - {"all", "default"}


@pytest.mark.live
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a network namespace")
def test_live_namespace_rp_filter_effective_value():
    with netns("sys") as ns:
        try:
            run("ip", "-n", ns, "link", "add", "sdv0", "type", "veth", "peer", "name", "sdv1")
        except subprocess.CalledProcessError as err:
            pytest.skip(f"no veth: {err.stderr.strip()}")
        # only this test's own namespace is changed
        run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=2")
        run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.conf.sdv0.rp_filter=1")
        run("ip", "netns", "exec", ns, "sysctl", "-q", "-w",
            "net.ipv4.conf.sdv1.log_martians=1")
        outcome, facts = probe_in_netns(ns, "sysctl")
        assert outcome["status"] == "ok", outcome
        ifaces = {f.ifname: f for f in facts if isinstance(f, IfaceSysctl)}
        assert set(ifaces) == {"lo", "sdv0", "sdv1"}
        assert ifaces["sdv0"].rp_filter == 1 and ifaces["sdv0"].rp_filter_effective == 2
        assert ifaces["sdv1"].rp_filter_effective == 2
        assert ifaces["sdv1"].log_martians_effective == 1
        assert ifaces["sdv0"].log_martians_effective == 0
        sysctl = next(f for f in facts if isinstance(f, NetSysctl))
        assert sysctl.rp_filter_all == 2
        # per-namespace view: netdev_max_backlog exists only in the initial namespace
        assert sysctl.netdev_max_backlog is None and sysctl.somaxconn is not None
