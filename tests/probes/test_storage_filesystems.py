"""The "filesystems" probe: df arithmetic, and statfs that never hangs the run.

The hang itself is simulated: the measuring child's command is injected, and a
child that sleeps stands for a statfs stuck on a dead server.
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sysdiag.facts import Filesystem, FilesystemUnresponsive
from sysdiag.probes.base import ProbeContext, Unavailable
from sysdiag.probes.parse import ParseError
from sysdiag.probes.procfs import filesystems
from sysdiag.probes.procfs.filesystems import (Failed, FilesystemsProbe, NotAnswering, Space,
                                               abandoned_children, filesystem_fact,
                                               measure_in_children, measure_local,
                                               parse_child_output, select_mounts)
from sysdiag.probes.procfs.mounts import parse_mountinfo, parse_mountinfo_line

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared/fixtures/procfs"
SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def _space(path: str) -> Space:
    st = os.statvfs(path)
    return Space(st.f_frsize, st.f_blocks, st.f_bfree, st.f_bavail, st.f_files, st.f_ffree)


# --- the child's output ---------------------------------------------------------

def test_parse_child_ok():
    assert parse_child_output("ok 4096 1000 100 50 640 0\n") == Space(4096, 1000, 100, 50, 640, 0)


def test_parse_child_broken_mount_is_not_answering():
    result = parse_child_output(f"err {errno.ENOTCONN} Transport endpoint is not connected\n")
    assert result == NotAnswering(0.0, "Transport endpoint is not connected")


def test_parse_child_permission_is_a_plain_failure():
    assert parse_child_output(f"err {errno.EACCES} Permission denied") == Failed(
        "Permission denied")


@pytest.mark.parametrize("text", ["", "ok 4096 1000\n", "ok a b c d e f\n", "hello\n", "err\n"])
def test_parse_child_rejects_garbage(text):
    with pytest.raises(ParseError):
        parse_child_output(text)


# --- df arithmetic ----------------------------------------------------------------

ENTRY = parse_mountinfo_line("27 1 254:0 / /data rw,relatime - ext4 /dev/vdb rw")


def test_df_use_percent_counts_the_root_reserve_as_unusable():
    # 1000 blocks, 100 free, of which 50 only for root: df says 900/(900+50) = 95 %
    fact = filesystem_fact(ENTRY, Space(4096, 1000, 100, 50, 640, 64))
    assert isinstance(fact, Filesystem)
    assert fact.size_bytes == 4096000 and fact.used_bytes == 900 * 4096
    assert fact.avail_bytes == 50 * 4096
    assert fact.used_pct == round(100 * 900 / 950, 2)
    assert (fact.inodes_total, fact.inodes_free, fact.inodes_used_pct) == (640, 64, 90.0)
    assert fact.device == "/dev/vdb" and fact.source == "statvfs(/data)"


def test_filesystem_without_inode_count():
    fact = filesystem_fact(ENTRY, Space(4096, 1000, 1000, 1000, 0, 0))  # btrfs reports 0
    assert fact.inodes_total is None and fact.inodes_used_pct is None
    assert fact.used_pct == 0.0


def test_filesystem_without_blocks_is_skipped():
    assert filesystem_fact(ENTRY, Space(4096, 0, 0, 0, 0, 0)) is None


def test_select_mounts_skips_pseudo_and_keeps_the_top_of_a_stack():
    entries = parse_mountinfo(
        "22 27 0:21 / /proc rw - proc proc rw\n"
        "25 24 0:23 / /dev/shm rw - tmpfs tmpfs rw,size=100k\n"
        "27 1 254:0 / / rw - ext4 /dev/vda rw\n"
        "30 25 0:27 / /dev/shm rw - tmpfs tmpfs rw,size=200k\n"
        "31 27 0:28 / /net rw - autofs systemd-1 rw\n")
    chosen = select_mounts(entries)
    assert [m.mountpoint for m in chosen] == ["/", "/dev/shm"]
    assert chosen[1].mount_id == 30  # mounted over the first /dev/shm


# --- measuring in threads ----------------------------------------------------------

def test_measure_local_matches_statvfs(tmp_path):
    results = measure_local([str(tmp_path), "/nonexistent/sysdiag-test"], 2.0)
    got = results[str(tmp_path)]
    assert isinstance(got, Space)
    expected = _space(str(tmp_path))
    assert (got.frsize, got.blocks, got.files) == (expected.frsize, expected.blocks, expected.files)
    assert isinstance(results["/nonexistent/sysdiag-test"], Failed)


def test_measure_local_abandons_a_hung_statvfs(monkeypatch, tmp_path):
    release = threading.Event()
    real_statvfs = os.statvfs
    hung = str(tmp_path / "hung")

    def statvfs(path):
        if path == hung:
            release.wait(30)  # stands for a statfs stuck in the kernel
        return real_statvfs(path)

    monkeypatch.setattr(filesystems.os, "statvfs", statvfs)
    try:
        started = time.monotonic()
        results = measure_local([str(tmp_path), hung, "/"], timeout_s=0.3)
        took = time.monotonic() - started
    finally:
        release.set()
    assert results[hung] == NotAnswering(0.3)
    # the paths after the hung one are measured by a fresh thread
    assert isinstance(results[str(tmp_path)], Space) and isinstance(results["/"], Space)
    assert took < 5


def test_measure_local_stops_at_its_budget(monkeypatch, tmp_path):
    release = threading.Event()
    real_statvfs = os.statvfs
    slow = str(tmp_path / "slow")

    def statvfs(path):
        if path == slow:
            release.wait(30)
        return real_statvfs(path)

    monkeypatch.setattr(filesystems.os, "statvfs", statvfs)
    try:
        results = measure_local([str(tmp_path), slow, "/"], timeout_s=5.0, budget_s=0.3)
    finally:
        release.set()
    assert isinstance(results[str(tmp_path)], Space)
    # out of budget before its timeout: not measured, and not called hung either
    assert slow not in results and "/" not in results


# --- measuring in children ---------------------------------------------------------

def test_child_measures_like_statvfs(tmp_path):
    results = measure_in_children([str(tmp_path)], timeout_s=10)
    got = results[str(tmp_path)]
    expected = _space(str(tmp_path))
    assert isinstance(got, Space)
    assert (got.frsize, got.blocks, got.files) == (expected.frsize, expected.blocks, expected.files)


def test_child_error_for_missing_path():
    results = measure_in_children(["/nonexistent/sysdiag-test"], timeout_s=10)
    assert results["/nonexistent/sysdiag-test"] == Failed("No such file or directory")


def test_silent_child_is_killed_and_reported(tmp_path):
    started = time.monotonic()
    results = measure_in_children([str(tmp_path)], timeout_s=0.5,
                                  child_argv=lambda path: SLEEPER)
    took = time.monotonic() - started
    got = results[str(tmp_path)]
    assert isinstance(got, NotAnswering) and 0.5 <= got.waited_s < 2.0
    assert took < 3
    assert abandoned_children() == []  # a sleeping child dies of SIGKILL and is reaped


def test_budget_bounds_the_whole_measurement(tmp_path):
    paths = [str(tmp_path / name) for name in ("a", "b", "c")]
    started = time.monotonic()
    results = measure_in_children(paths, timeout_s=0.5, budget_s=0.8, max_children=1,
                                  child_argv=lambda path: SLEEPER)
    took = time.monotonic() - started
    assert isinstance(results[paths[0]], NotAnswering)
    assert paths[2] not in results  # never started: no time left
    assert took < 2.5
    assert abandoned_children() == []


def test_child_that_cannot_start_or_prints_garbage():
    results = measure_in_children(
        ["/a", "/b"], timeout_s=5,
        child_argv=lambda path: (["/nonexistent/python"] if path == "/a"
                                 else [sys.executable, "-c", "print('hello')"]))
    assert isinstance(results["/a"], Failed) and "cannot start" in results["/a"].error
    assert isinstance(results["/b"], Failed) and "exit status 0" in results["/b"].error


# --- the probe ----------------------------------------------------------------------

def test_captured_tree_is_unavailable():
    root = FIXTURES if FIXTURES.is_dir() else Path("/nonexistent")
    ctx = ProbeContext(proc_root=root / "proc", sys_root=root / "sys", live=False)
    with pytest.raises(Unavailable, match="live host"):
        FilesystemsProbe().check(ctx)


def _child(path: str) -> list[str]:
    """nfs: silent; fuse: its daemon died (ENOTCONN); anything else: the real child."""
    if path.endswith("nfs"):
        return SLEEPER
    if path.endswith("fuse"):
        return [sys.executable, "-c", f"print('err {errno.ENOTCONN} Transport endpoint is "
                                      "not connected')"]
    return filesystems.default_child_argv(path)


def test_probe_reports_unresponsive_network_and_fuse_mounts(tmp_path):
    for name in ("nfs", "fuse", "local"):
        (tmp_path / name).mkdir()
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(
        f"22 1 0:21 / /proc rw - proc proc rw\n"
        f"40 1 0:42 / {tmp_path}/nfs rw - nfs4 10.0.0.1:/export rw,hard\n"
        f"41 1 0:43 / {tmp_path}/fuse rw - fuse.sshfs ann@host:/ rw,user_id=0\n"
        f"42 1 254:0 / {tmp_path}/local rw - ext4 /dev/vda rw\n")
    # live: statfs runs on this host, the mount list comes from the fake tree
    ctx = ProbeContext(proc_root=proc, live=True)
    probe = FilesystemsProbe(child_argv=_child, child_timeout_s=0.5, budget_s=5)
    facts = probe.facts(ctx, None, probe.sample(ctx), None)
    by_point = {f.mountpoint: f for f in facts}
    assert set(by_point) == {f"{tmp_path}/{n}" for n in ("nfs", "fuse", "local")}
    nfs = by_point[f"{tmp_path}/nfs"]
    assert isinstance(nfs, FilesystemUnresponsive)
    assert nfs.network_fs and nfs.fstype == "nfs4" and nfs.device == "10.0.0.1:/export"
    assert 0.5 <= nfs.waited_s < 2 and nfs.error is None
    fuse = by_point[f"{tmp_path}/fuse"]
    assert isinstance(fuse, FilesystemUnresponsive) and fuse.fuse
    assert fuse.error == "Transport endpoint is not connected"
    local = by_point[f"{tmp_path}/local"]
    assert isinstance(local, Filesystem) and local.size_bytes > 0  # measured in-process
    assert abandoned_children() == []


def test_probe_warns_about_mounts_left_unmeasured(tmp_path):
    (tmp_path / "nfs").mkdir()
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(
        f"40 1 0:42 / {tmp_path}/nfs rw - nfs 10.0.0.1:/export rw,hard\n")
    probe = FilesystemsProbe(child_argv=_child, child_timeout_s=5.0, budget_s=0.3)
    ctx = ProbeContext(proc_root=proc, live=True)
    assert probe.facts(ctx, None, probe.sample(ctx), None) == []
    assert probe.warnings == [f"{tmp_path}/nfs: not measured (time budget used up)"]
    assert abandoned_children() == []  # killed at the end of the budget


def _run(*argv: str) -> None:
    subprocess.run(list(argv), check=True, timeout=30, capture_output=True)


@pytest.mark.live
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_live_tmpfs_out_of_inodes(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    _run("mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=64", "sysdiag-test", str(mnt))
    try:
        created = 0
        with pytest.raises(OSError) as info:
            while created < 1000:
                (mnt / f"f{created}").write_bytes(b"")
                created += 1
        assert info.value.errno == errno.ENOSPC
        probe = FilesystemsProbe()
        facts = probe.facts(ProbeContext(), None, probe.sample(ProbeContext()), None)
        (fact,) = [f for f in facts if f.mountpoint == str(mnt)]
        assert isinstance(fact, Filesystem) and fact.fstype == "tmpfs"
        assert fact.inodes_total == 64 and fact.inodes_free == 0
        assert fact.inodes_used_pct == 100.0
        assert fact.size_bytes == 1 << 20 and fact.used_pct < 10  # blocks are free
    finally:
        try:
            _run("umount", str(mnt))
        except subprocess.CalledProcessError:
            _run("umount", "-l", str(mnt))
