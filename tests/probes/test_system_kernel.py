"""The "kernel" probe: cmdline, kernel config, taint, THP/KSM, clocksource, vulnerabilities,
uptime, and the recent-changes scan of /etc (live only)."""
from __future__ import annotations

import gzip
import os
import subprocess
import time
from pathlib import Path

import pytest

from sysdiag.facts import ConfigChange, KernelConfig
from sysdiag.probes.base import ProbeContext
from sysdiag.probes.parse import ParseError
from sysdiag.probes.procfs.kernelcfg import (KernelProbe, cmdline_words, decode_taint,
                                            is_serial_console, parse_bracketed, parse_btime,
                                            parse_cmdline, parse_kconfig, scan_area,
                                            summarize_vulnerabilities)

from probe_helpers import run_one, write_tree

# as on this host (a Firecracker guest): init's arguments follow "--"
CMDLINE = ('mitigations=auto,no_guest_host console=ttyS0 quiet reboot=k psi=1 '
           'isolcpus=nohz,domain,2-3 transparent_hugepage=never '
           'dyndbg="file foo.c +p" -- --firecracker-init --addr 0.0.0.0:2024 psi=0\n')

# excerpt of a real /proc/config.gz (6.18, x86_64)
KCONFIG = """\
#
# Automatically generated file; DO NOT EDIT.
# Linux/x86 6.18.44 Kernel Configuration
#
CONFIG_CC_VERSION_TEXT="gcc (Debian 12.2.0-14) 12.2.0"
CONFIG_BPF_SYSCALL=y
CONFIG_PSI=y
CONFIG_PSI_DEFAULT_DISABLED=y
# CONFIG_KPROBES is not set
CONFIG_HZ_250=y
CONFIG_HZ=250
# CONFIG_SCHEDSTATS is not set
CONFIG_KASAN=y
CONFIG_KMEMLEAK=m
"""

VULNERABILITIES = {
    "mds": "Vulnerable: Clear CPU buffers attempted, no microcode; SMT Host state unknown",
    "meltdown": "Not affected",
    "spectre_v1": "Mitigation: usercopy/swapgs barriers and __user pointer sanitization",
    "spectre_v2": "Mitigation: Retpolines; IBPB: conditional; STIBP: disabled",
    "srbds": "Unknown: Dependent on hypervisor status",
    "spec_store_bypass": "Vulnerable",
}


def test_cmdline_parameters_stop_at_the_init_separator():
    cmd = parse_cmdline(CMDLINE)
    assert cmd.params["psi"] == "1"  # not init's psi=0 after "--"
    assert cmd.params["mitigations"] == "auto,no_guest_host"
    assert cmd.params["isolcpus"] == "nohz,domain,2-3"
    assert cmd.params["transparent_hugepage"] == "never"
    assert cmd.params["dyndbg"] == "file foo.c +p"  # double quotes keep blanks together
    assert cmd.params["quiet"] == ""
    assert cmd.consoles == ("ttyS0",)
    assert "--addr" not in cmd.params


@pytest.mark.parametrize("text, words", [
    ("", []),
    ("   \n", []),
    ('a="" b', ["a=", "b"]),
    ("it's fine", ["it's", "fine"]),  # single quotes mean nothing to the kernel
    ('unbalanced="x y', ["unbalanced=x y"]),  # truncated: the quote runs to the end
])
def test_cmdline_words(text, words):
    assert cmdline_words(text) == words


def test_consoles_in_order_and_serial_detection():
    cmd = parse_cmdline("console=tty0 console=ttyS1,115200n8 console=hvc0")
    assert cmd.consoles == ("tty0", "ttyS1,115200n8", "hvc0")
    assert [is_serial_console(c) for c in cmd.consoles] == [False, True, True]
    assert not is_serial_console("tty1") and is_serial_console("ttyAMA0")


def test_kconfig_values_and_unset_options():
    config = parse_kconfig(KCONFIG)
    assert config["PSI"] == "y" and config["KPROBES"] == "n" and config["HZ"] == "250"
    assert config["KMEMLEAK"] == "m"
    assert config["CC_VERSION_TEXT"] == "gcc (Debian 12.2.0-14) 12.2.0"
    assert parse_kconfig("") == {}


@pytest.mark.parametrize("text, problem", [
    ("CONFIG_HZ\n", "expected CONFIG_NAME=value"),  # truncated line
    ("HZ=250\n", "not a kernel config line"),
    ("# just a comment\n", "no CONFIG_ lines"),
    ("\x1f\x8b\x08garbage", "not a kernel config line"),  # still compressed
])
def test_kconfig_malformed(text, problem):
    with pytest.raises(ParseError, match=problem):
        parse_kconfig(text, "/proc/config.gz")


@pytest.mark.parametrize("value, letters, names", [
    (0, "", ""),
    (512, "W", "warning"),
    (1 + 4096 + 8192, "POE", "proprietary_module,out_of_tree_module,unsigned_module"),
    (1 << 30, "?", "bit30"),  # a bit newer than this table
])
def test_decode_taint(value, letters, names):
    assert decode_taint(value) == (letters, names)


def test_bracketed_choice():
    assert parse_bracketed("always [madvise] never\n", "enabled") == "madvise"
    assert parse_bracketed("always defer defer+madvise [madvise] never", "d") == "madvise"
    with pytest.raises(ParseError, match="no \\[selected\\] value"):
        parse_bracketed("always madvise never", "/sys/kernel/mm/transparent_hugepage/enabled")
    with pytest.raises(ParseError):
        parse_bracketed("", "enabled")


def test_btime_and_vulnerabilities():
    assert parse_btime("cpu  1 2 3\nbtime 1418183276\nprocesses 26442\n") == 1418183276
    assert parse_btime("cpu  1 2 3\n") is None
    with pytest.raises(ParseError, match="btime"):
        parse_btime("btime soon\n")
    v = summarize_vulnerabilities(VULNERABILITIES)
    assert (v.total, v.vulnerable, v.mitigated) == (6, ("mds", "spec_store_bypass"), 2)


def _tree(tmp_path: Path, extra: dict[str, str] | None = None) -> ProbeContext:
    files = {
        "proc/sys/kernel/osrelease": "6.18.44-test\n",
        "proc/sys/kernel/version": "#1 SMP PREEMPT_DYNAMIC @0\n",
        "proc/sys/kernel/tainted": "512\n",
        "proc/cmdline": CMDLINE,
        "proc/uptime": "322.02 608.56\n",
        "proc/stat": "cpu  1 2 3 4\nbtime 1700000000\n",
        "sys/kernel/mm/transparent_hugepage/enabled": "[always] madvise never\n",
        "sys/kernel/mm/transparent_hugepage/defrag": "[always] defer defer+madvise madvise never\n",
        "sys/kernel/mm/ksm/run": "1\n",
        "sys/devices/system/clocksource/clocksource0/current_clocksource": "hpet\n",
        "sys/devices/system/clocksource/clocksource0/available_clocksource": "tsc hpet acpi_pm \n",
    }
    files.update({f"sys/devices/system/cpu/vulnerabilities/{k}": v + "\n"
                  for k, v in VULNERABILITIES.items()})
    files.update(extra or {})
    ctx = write_tree(tmp_path, files)
    (tmp_path / "proc/config.gz").write_bytes(gzip.compress(KCONFIG.encode()))
    return ctx


def test_probe_on_a_written_tree(tmp_path):
    ctx = _tree(tmp_path)
    etc = tmp_path / "etc"
    (etc / "sysctl.d").mkdir(parents=True)
    outcome, facts = run_one(KernelProbe(etc_root=etc), ctx)
    assert outcome.status == "ok", outcome.reason
    assert not outcome.warnings
    (kernel,) = facts  # a captured tree: /etc is never read, so no config_change facts
    assert isinstance(kernel, KernelConfig)
    assert (kernel.release, kernel.version, kernel.machine) == (
        "6.18.44-test", "#1 SMP PREEMPT_DYNAMIC @0", None)  # no arch file, no uname()
    assert kernel.uptime_s == 322.02 and kernel.boot_time == 1700000000
    assert kernel.psi_cmdline == "1" and kernel.mitigations == "auto,no_guest_host"
    assert kernel.isolcpus == "nohz,domain,2-3" and kernel.transparent_hugepage_cmdline == "never"
    assert kernel.consoles == "ttyS0" and kernel.serial_console is True
    assert kernel.config_source == str(tmp_path / "proc/config.gz")
    assert kernel.config_psi and kernel.config_psi_default_disabled and kernel.config_bpf_syscall
    assert kernel.config_kprobes is False and kernel.config_schedstats is False
    assert kernel.config_kasan is True and kernel.config_kmemleak is True
    assert kernel.config_prove_locking is False  # absent from a readable config: off
    assert kernel.config_hz == 250 and kernel.debug_kernel is True
    assert kernel.psi_enabled is False  # no proc/pressure in this tree
    assert (kernel.tainted, kernel.taint_flags, kernel.taint_reasons, kernel.taint_warn) == (
        512, "W", "warning", True)
    assert (kernel.thp_enabled, kernel.thp_defrag, kernel.ksm_run) == ("always", "always", 1)
    assert kernel.clocksource == "hpet" and kernel.clocksources_available == "tsc hpet acpi_pm"
    assert (kernel.vulnerabilities_total, kernel.vulnerable_count, kernel.mitigated_count) == (
        6, 2, 2)
    assert kernel.vulnerable == "mds,spec_store_bypass"
    assert kernel.previous_release is None  # only the journal knows it


def test_missing_files_stay_none(tmp_path):
    ctx = write_tree(tmp_path, {"proc/cmdline": "root=/dev/sda1 ro\n"})
    outcome, (kernel,) = run_one(KernelProbe(), ctx)
    assert outcome.status == "ok"
    assert kernel.release is None and kernel.config_source is None
    assert kernel.config_psi is None and kernel.debug_kernel is None  # not readable: unknown
    assert kernel.tainted is None and kernel.thp_enabled is None and kernel.clocksource is None
    assert kernel.consoles is None and kernel.serial_console is False


def test_empty_tree_is_unavailable(tmp_path):
    outcome, facts = run_one(KernelProbe(), write_tree(tmp_path, {}))
    assert outcome.status == "unavailable" and "none of the kernel files" in outcome.reason
    assert not facts


@pytest.mark.parametrize("files, problem", [
    ({"proc/sys/kernel/tainted": "lots\n"}, "tainted: expected an integer"),
    ({"sys/kernel/mm/transparent_hugepage/enabled": "always madvise\n"}, "no \\[selected\\]"),
])
def test_malformed_files_fail_naming_the_file(tmp_path, files, problem):
    outcome, _ = run_one(KernelProbe(), _tree(tmp_path, files))
    assert outcome.status == "failed"
    assert problem.replace("\\", "") in outcome.reason and str(tmp_path) in outcome.reason


def test_corrupt_config_gz_fails(tmp_path):
    ctx = _tree(tmp_path)
    (tmp_path / "proc/config.gz").write_bytes(gzip.compress(KCONFIG.encode())[:-30] + b"x" * 30)
    outcome, _ = run_one(KernelProbe(), ctx)
    assert outcome.status == "failed" and "config.gz" in outcome.reason


def test_boot_config_used_on_a_live_host_without_config_gz(tmp_path):
    ctx = _tree(tmp_path)
    (tmp_path / "proc/config.gz").unlink()
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "config-6.18.44-test").write_text(KCONFIG.replace("CONFIG_HZ=250", "CONFIG_HZ=1000"))
    live = ProbeContext(proc_root=ctx.proc_root, sys_root=ctx.sys_root, live=True)
    probe = KernelProbe(etc_root=tmp_path / "etc", boot_root=boot)
    kernel = [f for f in probe.facts(live, None, probe.sample(live), None)
              if isinstance(f, KernelConfig)][0]
    assert kernel.config_source == str(boot / "config-6.18.44-test") and kernel.config_hz == 1000
    # a captured tree never reads /boot: the config is unknown
    (kernel,) = KernelProbe(boot_root=boot).facts(ctx, None, KernelProbe(boot_root=boot)
                                                  .sample(ctx), None)
    assert kernel.config_source is None and kernel.config_hz is None


def _touch(path: Path, age_s: float, text: str = "x\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not os.path.lexists(path):
        path.write_text(text)
    when = time.time() - age_s
    os.utime(path, (when, when), follow_symlinks=False)


def test_scan_area_finds_the_newest_entry(tmp_path):
    etc = tmp_path / "etc"
    _touch(etc / "sysctl.d/10-old.conf", 86400 * 30)
    _touch(etc / "sysctl.d/99-new.conf", 600)
    _touch(etc / "sysctl.conf", 86400)
    (etc / "sysctl.d/link.conf").symlink_to("/nonexistent/target")  # lstat'ed, not followed
    _touch(etc / "sysctl.d/link.conf", 86400 * 60)
    _touch(etc / "sysctl.d", 86400 * 30)  # the directory itself (changes on add/remove)
    newest = scan_area(etc, ("sysctl.conf", "sysctl.d"))
    assert newest.files == 5
    assert newest.path == str(etc / "sysctl.d/99-new.conf")
    assert abs(time.time() - newest.mtime - 600) < 5
    assert scan_area(etc, ("nftables*",)).files == 0
    many = scan_area(etc, ("sysctl.d",), limit=2)
    assert many.files == 2 and "more than 2 entries" in many.errors[0]


@pytest.mark.live
def test_recent_changes_on_the_live_host(tmp_path):
    etc = tmp_path / "etc"
    _touch(etc / "sysctl.d/99-tuning.conf", 120)
    _touch(etc / "sysctl.d", 86400 * 400)
    _touch(etc / "security/limits.d/nofile.conf", 86400 * 400)
    _touch(etc / "security/limits.d", 86400 * 400)
    _touch(etc / "systemd/system/app.service", 86400 * 2)
    _touch(etc / "systemd/system", 86400 * 400)
    _touch(etc / "nftables.conf", 3600)
    probe = KernelProbe(etc_root=etc)
    outcome, facts = run_one(probe, ProbeContext())
    assert outcome.status == "ok", outcome.reason
    changes = {f.area: f for f in facts if isinstance(f, ConfigChange)}
    assert set(changes) == {"sysctl", "limits", "systemd", "nftables"}
    sysctl = changes["sysctl"]
    assert sysctl.newest_path == str(etc / "sysctl.d/99-tuning.conf")
    assert 110 < sysctl.age_s < 300 and sysctl.changed_since_boot is True
    assert sysctl.files == 2  # the directory and its one file; sysctl.conf is absent
    assert changes["limits"].changed_since_boot is False  # older than the boot
    assert changes["systemd"].newest_path == str(etc / "systemd/system/app.service")
    assert 3500 < changes["nftables"].age_s < 3800
    kernel = [f for f in facts if isinstance(f, KernelConfig)][0]
    uname = os.uname()
    # cross-check with the system's own tool
    assert kernel.release == subprocess.run(["uname", "-r"], capture_output=True, text=True,
                                            timeout=10).stdout.strip() == uname.release
    assert kernel.version == uname.version and kernel.machine == uname.machine
    assert kernel.tainted == int(Path("/proc/sys/kernel/tainted").read_text())
    assert abs(kernel.boot_time + kernel.uptime_s - time.time()) < 5
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if thp.exists():
        assert f"[{kernel.thp_enabled}]" in thp.read_text()


def test_fixture_tree(tree_ctx):
    outcome, facts = run_one(KernelProbe(etc_root=Path("/etc")), tree_ctx)
    assert outcome.status == "ok" and not outcome.warnings
    (kernel,) = facts  # never /etc in a captured tree
    assert kernel.boot_time == 1418183276
    assert kernel.cmdline.startswith("BOOT_IMAGE=/vmlinuz-5.11.0-22-generic")
    assert kernel.serial_console is False and kernel.consoles is None
    assert kernel.clocksource == "tsc" and kernel.clocksources_available == "tsc hpet acpi_pm"
    assert (kernel.vulnerabilities_total, kernel.vulnerable_count) == (9, 2)
    assert kernel.vulnerable == "mds,mmio_stale_data"
    assert kernel.release is None and kernel.machine is None  # not in the tree, no uname()
    assert kernel.source.startswith(str(tree_ctx.proc_root))


@pytest.mark.live
def test_a_malformed_mountinfo_does_not_stop_the_change_scan(tmp_path):
    ctx = ProbeContext(proc_root=_tree(tmp_path).proc_root, sys_root=tmp_path / "sys",
                       live=True)
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text("garbage\n")
    etc = tmp_path / "etc"
    _touch(etc / "sysctl.conf", 60)
    probe = KernelProbe(etc_root=etc)
    facts = probe.facts(ctx, None, probe.sample(ctx), None)
    changes = {f.area: f for f in facts if isinstance(f, ConfigChange)}
    assert changes["sysctl"].newest_path == str(etc / "sysctl.conf")
    assert not probe.warnings
