"""The "deleted-files" probe: deleted-but-open files, their holders, space per mount."""
from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from sysdiag.facts import DeletedFilesSummary, DeletedOpenFile
from sysdiag.probes.base import ProbeContext
from sysdiag.probes.parse import ParseError
from sysdiag.probes.procfs.deleted import (DeletedFileScanner, DeletedFilesProbe, HeldFile,
                                           deleted_path, is_local, mount_of,
                                           parse_fdinfo_mnt_id, summarize)
from sysdiag.probes.procfs.mounts import parse_mountinfo

from probe_helpers import run_one

MOUNTINFO = """\
22 1 252:0 / / rw,relatime - ext4 /dev/vda rw
30 22 0:27 / /var/log rw,relatime - xfs /dev/vdb rw
31 22 0:28 / /mnt/nfs rw - nfs4 srv:/export rw,vers=4.2
32 22 0:45 / /mnt/fuse rw - fuse.sshfs me@host:/ rw,user_id=0
33 30 0:29 / /var/log/archive rw - ext4 /dev/vdc rw
"""
MOUNTS = parse_mountinfo(MOUNTINFO)


@pytest.mark.parametrize("target, path", [
    ("/var/log/app.log (deleted)", "/var/log/app.log"),
    ("/tmp/dir with space/x (deleted)", "/tmp/dir with space/x"),
    ("/memfd:jit (deleted)", "/memfd:jit"),
    ("/var/log/app.log", None),
    ("socket:[4711]", None),
    ("pipe:[12]", None),
    ("anon_inode:[eventfd] (deleted)", None),
    ("", None),
])
def test_deleted_path(target, path):
    assert deleted_path(target) == path


def test_fdinfo_mnt_id():
    text = "pos:\t4096\nflags:\t0100002\nmnt_id:\t30\nino:\t131\n"
    assert parse_fdinfo_mnt_id(text) == 30
    assert parse_fdinfo_mnt_id("pos:\t0\nflags:\t02\n") is None  # before 3.15
    assert parse_fdinfo_mnt_id("") is None
    with pytest.raises(ParseError, match="mnt_id: expected an integer"):
        parse_fdinfo_mnt_id("mnt_id:\tthirty\n", "/proc/1/fdinfo/3")


@pytest.mark.parametrize("path, mountpoint", [
    ("/var/log/app.log", "/var/log"),
    ("/var/log/archive/old.gz", "/var/log/archive"),
    ("/var/logs/x", "/"),  # a prefix of the name is not a parent directory
    ("/var/log", "/var/log"),
    ("/etc/passwd", "/"),
])
def test_mount_of(path, mountpoint):
    assert mount_of(path, MOUNTS).mountpoint == mountpoint


def test_only_local_filesystems_are_stat_ed():
    local = {m.mountpoint: is_local(m) for m in MOUNTS}
    assert local == {"/": True, "/var/log": True, "/mnt/nfs": False, "/mnt/fuse": False,
                     "/var/log/archive": True}


def _held(pid, fd, ino, allocated, mount_id=30, path=None):
    mount = {m.mount_id: m for m in MOUNTS}[mount_id]
    return HeldFile(pid=pid, fd=fd, path=path or f"{mount.mountpoint}/f{ino}",
                    size=allocated, allocated=allocated, dev=1, ino=ino, mount=mount,
                    other_namespace=False)


def test_summary_counts_a_file_once_however_many_fds_hold_it():
    held = [_held(100, 3, 7, 5 << 30), _held(100, 4, 7, 5 << 30), _held(200, 9, 7, 5 << 30),
            _held(200, 10, 8, 1 << 20), _held(300, 3, 9, 4096, mount_id=22)]
    by_mount = {s.mountpoint: s for s in summarize(held, "/proc/*/fd")}
    log = by_mount["/var/log"]
    assert (log.bytes_held, log.files, log.holders) == ((5 << 30) + (1 << 20), 2, 2)
    assert log.largest_bytes == 5 << 30 and log.largest_path == "/var/log/f7"
    assert log.mount_id == 30 and log.fstype == "xfs" and log.fact_id == "deleted_files:30"
    assert by_mount["/"].bytes_held == 4096
    assert list(by_mount) == ["/var/log", "/"]  # biggest first
    assert summarize([], "x") == []


def test_captured_tree_is_unavailable(tree_ctx):
    outcome, facts = run_one(DeletedFilesProbe(), tree_ctx)
    assert outcome.status == "unavailable" and "live host" in outcome.reason and not facts


HOLDER = """\
import os, sys, time
path = sys.argv[1]
with open(path, "wb") as fh:
    fh.write(os.urandom(1 << 20))
a = open(path, "rb")
b = open(path, "rb")  # the same file twice: it holds 1 MiB, not 2
os.unlink(path)
print(a.fileno(), b.fileno(), flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """A child holding a deleted 1 MiB file through two fds."""
    path = tmp_path / "rotated.log"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE,
                            text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "the holder did not start"
        fds = [int(x) for x in proc.stdout.readline().split()]
        yield proc, path, fds
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()


@pytest.mark.live
def test_live_deleted_file_and_its_holder(holder):
    proc, path, fds = holder
    outcome, facts = run_one(DeletedFilesProbe(), ProbeContext())
    assert outcome.status == "ok", outcome.reason
    # (pytest's own capture files, deleted and inherited as fd 1/2, may show up too)
    mine = [f for f in facts if isinstance(f, DeletedOpenFile) and f.pid == proc.pid
            and f.path == str(path)]
    assert sorted(f.fd for f in mine) == sorted(fds)
    fact = mine[0]
    assert fact.comm and fact.comm.startswith("python")
    assert fact.size_bytes == 1 << 20 and fact.allocated_bytes >= 1 << 20
    # cross-check with what the kernel shows: the fd link and the mount of the tmp dir
    assert os.readlink(f"/proc/{proc.pid}/fd/{fact.fd}") == f"{path} (deleted)"
    mount_id = int(Path(f"/proc/{proc.pid}/fdinfo/{fact.fd}").read_text()
                   .split("mnt_id:")[1].split()[0])
    assert fact.mount_id == mount_id
    summary = [f for f in facts if isinstance(f, DeletedFilesSummary) and f.mount_id == mount_id]
    assert len(summary) == 1 and summary[0].bytes_held >= 1 << 20
    assert summary[0].mountpoint == fact.mountpoint and not summary[0].other_namespace


@pytest.mark.live
def test_live_scan_is_bounded(holder):
    proc, _, _ = holder
    warnings: list[str] = []
    scanner = DeletedFileScanner(ProbeContext(), max_fds=3, on_warning=warnings.append)
    scan = scanner.scan([proc.pid, os.getpid()])
    assert scan.fds_seen == 3 and "stopped after 3 fds" in scan.partial
    probe = DeletedFilesProbe(max_fds=3)
    outcome, _ = run_one(probe, ProbeContext())
    assert outcome.status == "ok" and any("partial: stopped after 3 fds" in w
                                          for w in outcome.warnings)
    slow = DeletedFileScanner(ProbeContext(), budget_s=0.0).scan()
    assert slow.partial and "stopped after 0.0 s" in slow.partial
