"""The inotify probe: watch lines, real uid, instances shared by several fds counted once,
and a live cross-check against the kernel's own /proc links."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sysdiag.facts import InotifyUser
from sysdiag.probes.base import ProbeContext
from sysdiag.probes.parse import ParseError
from sysdiag.probes.procfs.inotify import (InotifyFd, InotifyProbe, InotifyScanner, Kcmp,
                                           distinct_instances, parse_real_uid, per_user,
                                           watch_lines)

from probe_helpers import run_one

#: /proc/PID/fdinfo/N of an inotify fd with two watches, as 6.18 prints it
FDINFO = ("pos:\t0\nflags:\t02004000\nmnt_id:\t15\nino:\t1057\n"
          "inotify wd:2 ino:1a2b sdev:800001 mask:2 ignored_mask:0 fhandle-bytes:8 "
          "fhandle-type:1 f_handle:2b1a000055aa77cc\n"
          "inotify wd:1 ino:2 sdev:800001 mask:2 ignored_mask:0 fhandle-bytes:8 "
          "fhandle-type:1 f_handle:0200000000000000\n")


def test_watch_lines_are_counted():
    assert len(watch_lines(FDINFO)) == 2
    assert watch_lines(FDINFO)[1].startswith("inotify wd:1 ino:2 ")
    assert watch_lines("pos:\t0\nflags:\t02004000\nmnt_id:\t15\nino:\t1057\n") == []
    assert watch_lines("") == []


def test_real_uid_is_the_first_uid_field():
    status = "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t100\t100\t100\t100\n"
    assert parse_real_uid(status) == 1000
    with pytest.raises(ParseError, match="no 'Uid:' line"):
        parse_real_uid("Name:\tx\n", "/proc/9/status")
    with pytest.raises(ParseError, match="without values"):
        parse_real_uid("Uid:\n")
    with pytest.raises(ParseError, match="Uid"):
        parse_real_uid("Uid:\tabc\t0\t0\t0\n")


def _fd(pid, fd, uid=1000, watches=0, text=""):
    return InotifyFd(pid=pid, fd=fd, uid=uid, watches=watches, fdinfo=text)


def test_fds_of_one_instance_count_once():
    a, a_dup, child = _fd(10, 3, text="w1"), _fd(10, 4, text="w1"), _fd(11, 3, text="w1")
    other = _fd(12, 3, text="w1")  # the same watches, another instance
    other_user = _fd(13, 3, uid=0, text="w1")
    same = {(10, 3, 10, 4), (10, 3, 11, 3)}

    def same_file(x, y):
        return (x.pid, x.fd, y.pid, y.fd) in same

    kept, unknown = distinct_instances([a, a_dup, child, other, other_user], same_file)
    assert kept == [a, other, other_user] and unknown == 0


def test_undecided_pairs_count_as_separate_instances():
    fds = [_fd(10, 3), _fd(11, 3), _fd(12, 3)]
    kept, unknown = distinct_instances(fds, lambda x, y: None)
    assert kept == fds and unknown == 2
    # the comparison budget runs out: the rest are kept and counted as undecided
    kept, unknown = distinct_instances(fds, lambda x, y: False, max_compares=1)
    assert kept == fds and unknown == 1


def test_per_user_totals_and_top_holders(tmp_path):
    fds = [_fd(20, 3, watches=5), _fd(20, 4, watches=1), _fd(21, 3, watches=100),
           _fd(30, 3, uid=0)]
    users = per_user(fds, {"instances": 4, "watches": 200}, str(tmp_path), "test")
    assert [u.uid for u in users] == [1000, 0]  # the one nearest its limits first
    u = users[0]
    assert (u.instances, u.watches, u.processes, u.instances_pct, u.watches_pct) == (
        3, 106, 2, 75.0, 53.0)
    assert (u.top_pid, u.top_instances, u.top_watches_pid, u.top_watches) == (20, 2, 21, 100)
    # a fork that only shares pid 20's instances still holds them
    shared = per_user(fds, {"instances": 4, "watches": 200}, str(tmp_path), "test",
                      holders={1000: {20, 21, 22}, 0: {30}})
    assert shared[0].processes == 3 and shared[1].processes == 1
    none = per_user(fds, {"instances": None, "watches": None}, str(tmp_path), "test")
    assert none[0].instances_pct is None and none[0].max_user_instances is None


def test_the_walk_is_bounded_and_says_where_it_stopped():
    scan = InotifyScanner(ProbeContext(), budget_s=0.0).scan()
    assert scan.partial and scan.partial.startswith("stopped after 0.0 s (0 processes")
    assert scan.fds == []


def test_captured_tree_is_unavailable(tree_ctx):
    outcome, facts = run_one(InotifyProbe(), tree_ctx)
    assert outcome.status == "unavailable" and "live host" in outcome.reason and not facts


#: a process as another user: INSTANCES inotify instances, WATCHES watches on the first
#: two, one fd dup'ed, then a fork that inherits every fd; both sleep until killed
HOLDER = r"""
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
instances, watches, top = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
fds = [libc.inotify_init1(0) for _ in range(instances)]
assert min(fds) >= 0, ctypes.get_errno()
dirs = []
for i in range(watches):
    d = os.path.join(top, f"d{i}")
    os.mkdir(d)
    assert libc.inotify_add_watch(fds[i % 2], d.encode(), 2) >= 0, ctypes.get_errno()
os.dup(fds[0])
if os.fork() == 0:
    time.sleep(60)
    os._exit(0)
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.live
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a holder as another uid")
def test_live_counts_match_the_fd_links_and_shared_fds_count_once():
    uid = 65534  # nobody: no other test holds inotify instances as this user
    # pytest's tmp_path and the venv sit under /root, which nobody cannot reach
    top = Path(tempfile.mkdtemp(prefix="sdinotify-"))
    os.chown(top, uid, uid)
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable

    def become_nobody():
        os.setsid()
        os.setgid(uid)
        os.setuid(uid)

    try:
        holder = subprocess.Popen([python, "-c", HOLDER, "5", "6", str(top)],
                                  stdout=subprocess.PIPE, text=True, preexec_fn=become_nobody)
    except OSError:
        shutil.rmtree(top)
        raise
    try:
        assert holder.stdout.readline().strip() == "ready"
        time.sleep(0.2)  # the fork has started
        # the kernel's own view: inotify fd links per process of this user
        links = 0
        for pid_dir in Path("/proc").glob("[0-9]*"):
            try:
                if pid_dir.stat().st_uid != uid:
                    continue
                links += sum(1 for fd in (pid_dir / "fd").iterdir()
                             if os.readlink(fd) == "anon_inode:inotify")
            except OSError:
                continue
        assert links == 12  # 5 instances + 1 dup, in the holder and in its fork
        assert Kcmp().available
        outcome, facts = run_one(InotifyProbe(), ProbeContext())
        assert outcome.status == "ok", outcome.reason
        assert not [w for w in outcome.warnings if "told apart" in w], outcome.warnings
        (user,) = [f for f in facts if isinstance(f, InotifyUser) and f.uid == uid]
        assert (user.instances, user.watches, user.processes) == (5, 6, 2)
        limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
        assert user.max_user_instances == limit
        assert user.instances_pct == pytest.approx(100 * 5 / limit, abs=0.01)
        assert user.top_pid in (holder.pid, *_children(holder.pid))
        assert user.top_comm and user.top_comm.startswith("python")
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        holder.stdout.close()
        shutil.rmtree(top)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []
