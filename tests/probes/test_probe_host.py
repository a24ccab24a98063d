from __future__ import annotations

import pytest

from sysdiag.probes.parse import ParseError
from sysdiag.probes.procfs.host import (HostProbe, VirtSignals, classify_virtualization,
                                        cpuinfo_has_hypervisor, parse_cgroup_paths,
                                        parse_root_fstype, parse_uptime)

from probe_helpers import run_one, write_tree

MOUNTINFO_OVERLAY = (
    "1284 1015 0:123 / / rw,relatime master:400 - overlay overlay rw,lowerdir=/a,upperdir=/b\n"
    "1285 1284 0:125 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n")
MOUNTINFO_EXT4 = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n"


def test_parse_uptime():
    assert parse_uptime("322.02 608.56\n") == 322.02


@pytest.mark.parametrize("text, problem", [("", "empty file"), ("abc 1", "uptime: expected a number")])
def test_parse_uptime_rejects(text, problem):
    with pytest.raises(ParseError, match=problem):
        parse_uptime(text)


def test_parse_cgroup_paths_v1_and_v2():
    paths = parse_cgroup_paths("4:memory:/docker/abc\n1:cpu,cpuacct:/docker/abc\n0::/\n")
    assert paths == {"memory": "/docker/abc", "cpu": "/docker/abc", "cpuacct": "/docker/abc",
                     "": "/"}


def test_parse_cgroup_paths_rejects():
    with pytest.raises(ParseError, match="expected 'id:controllers:path'"):
        parse_cgroup_paths("garbage\n", "/proc/1/cgroup")


def test_parse_root_fstype():
    assert parse_root_fstype(MOUNTINFO_OVERLAY) == "overlay"
    assert parse_root_fstype(MOUNTINFO_EXT4) == "ext4"
    assert parse_root_fstype("") is None
    with pytest.raises(ParseError, match="without '- fstype'"):
        parse_root_fstype("27 1 254:0 / / rw,relatime ext4\n")


def test_hypervisor_flag():
    assert cpuinfo_has_hypervisor("processor : 0\nflags\t\t: fpu vme hypervisor lahf_lm\n")
    assert not cpuinfo_has_hypervisor("processor : 0\nflags\t\t: fpu vme lahf_lm\n")
    # the word elsewhere does not count
    assert not cpuinfo_has_hypervisor("model name : hypervisor-ready\nflags : fpu\n")


@pytest.mark.parametrize("signals, expected", [
    (VirtSignals(root_fstype="overlay", dockerenv=True, hypervisor_flag=True),
     ("container", "docker, overlay root")),
    (VirtSignals(containerenv=True, root_fstype="ext4"), ("container", "podman")),
    (VirtSignals(pid1_cgroup="/kubepods/pod1/abc", root_fstype="xfs"),
     ("container", "pid 1 in cgroup /kubepods/pod1/abc")),
    # a systemd host's PID 1 lives in /init.scope
    (VirtSignals(pid1_cgroup="/init.scope", root_fstype="ext4", dmi_vendor="Dell Inc."),
     ("bare-metal", None)),
    (VirtSignals(dmi_vendor="QEMU", hypervisor_flag=True, pid1_cgroup="/"), ("vm", "qemu")),
    (VirtSignals(clocksource="kvm-clock", hypervisor_flag=True), ("vm", "kvm")),
    # this host: a Firecracker guest whose image kept /.dockerenv
    (VirtSignals(dockerenv=True, hypervisor_flag=True, root_fstype="ext4", pid1_cgroup="/",
                 clocksource="tsc"),
     ("vm", "hypervisor cpu flag (/.dockerenv present, but no container root)")),
    (VirtSignals(dockerenv=True, root_fstype="ext4"), ("container", "docker")),
    (VirtSignals(), ("unknown", None)),
])
def test_classify_virtualization(signals, expected):
    assert classify_virtualization(signals) == expected


def test_probe_on_fixture_tree(tree_ctx):
    outcome, (fact,) = run_one(HostProbe(), tree_ctx)
    assert outcome.status == "ok"
    assert fact.hostname == "unknown"  # the tree has no proc/sys/kernel/hostname
    assert any("hostname" in w for w in outcome.warnings)
    assert fact.cpu_count == 8
    # Dell DMI vendor, no hypervisor flag; /.dockerenv of the machine running the
    # tests must not leak into a captured tree's answer
    assert (fact.virtualization, fact.virtualization_detail) == ("bare-metal", None)
    assert fact.euid is None and fact.uptime_s is None


def test_probe_on_small_tree(tmp_path):
    ctx = write_tree(tmp_path, {
        "proc/sys/kernel/hostname": "web-1\n", "proc/sys/kernel/osrelease": "6.1.0-18-amd64\n",
        "proc/sys/kernel/version": "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1\n",
        "proc/sys/kernel/random/boot_id": "30d26fae-c32f-4173-bdcd-e4c244e40e3f\n",
        "proc/uptime": "1234.5 99.0\n", "proc/1/cgroup": "0::/init.scope\n",
        "proc/cpuinfo": "processor : 0\nflags : fpu hypervisor\n",
        "sys/class/dmi/id/sys_vendor": "Amazon EC2\n",
        "sys/devices/system/cpu/online": "0-3\n",
    })
    outcome, (fact,) = run_one(HostProbe(), ctx)
    assert outcome.status == "ok" and not outcome.warnings
    assert (fact.hostname, fact.kernel_release, fact.uptime_s, fact.cpu_count) == (
        "web-1", "6.1.0-18-amd64", 1234.5, 4)
    assert fact.boot_id == "30d26fae-c32f-4173-bdcd-e4c244e40e3f"
    assert (fact.virtualization, fact.virtualization_detail) == ("vm", "amazon")
