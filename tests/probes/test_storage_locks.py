"""The "locks" probe: /proc/locks parsing, contention per inode, and a real contended lock."""
from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sysdiag.facts import LockContention, LockSummary
from sysdiag.probes.base import ProbeContext, Unavailable
from sysdiag.probes.parse import ParseError
from sysdiag.probes.procfs.locks import LocksProbe, contentions, parse_locks, parse_locks_line

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared/fixtures/procfs"

# as fs/locks.c prints them: a POSIX lock with two waiters (one of them nested
# deeper), a free flock, an OFD lock (pid -1) with a waiter, a lease
LOCKS = """\
1: POSIX  ADVISORY  WRITE 538 00:2b:3670 0 EOF
1: -> POSIX  ADVISORY  WRITE 541 00:2b:3670 0 EOF
1:  -> POSIX  ADVISORY  WRITE 542 00:2b:3670 0 99
2: FLOCK  ADVISORY  WRITE 1000 fd:01:5678 0 EOF
3: OFDLCK ADVISORY  READ  -1 00:06:9 0 EOF
3: -> OFDLCK ADVISORY  WRITE -1 00:06:9 0 EOF
4: LEASE  BREAKING  READ  2100 08:11:777 0 EOF
5: POSIX  *NOINODE* WRITE 700 <none>:0 0 EOF
"""


def test_parse_lines():
    entries = parse_locks(LOCKS)
    assert len(entries) == 8
    first = entries[0]
    assert (first.number, first.blocked, first.lock_type, first.access, first.pid, first.inode) \
        == (1, False, "POSIX", "WRITE", 538, "00:2b:3670")
    assert entries[1].blocked and entries[1].pid == 541
    assert entries[2].blocked and entries[2].pid == 542  # deeper indentation, same parse
    assert entries[4].lock_type == "OFDLCK" and entries[4].pid is None  # -1: an open file's
    assert entries[6].lock_type == "LEASE" and entries[6].access == "READ"
    assert entries[7].inode == "<none>:0"


def test_contention_groups_waiters_by_the_held_inode():
    found = contentions(parse_locks(LOCKS))
    assert set(found) == {"00:2b:3670", "00:06:9"}
    posix = found["00:2b:3670"]
    assert [h.pid for h in posix.holders] == [538]
    assert [w.pid for w in posix.waiters] == [541, 542]


def test_facts_with_two_samples():
    probe = LocksProbe()
    ctx = ProbeContext(proc_root=Path("/nonexistent"), live=False)
    first = parse_locks(LOCKS.split("3: OFDLCK")[0])  # only the POSIX contention then
    facts = probe.facts(ctx, first, parse_locks(LOCKS), 1.0)
    summary = [f for f in facts if isinstance(f, LockSummary)]
    assert len(summary) == 1
    assert (summary[0].locks_total, summary[0].blocked, summary[0].blocked_first,
            summary[0].contended_inodes) == (5, 3, 2, 2)
    by_inode = {f.inode: f for f in facts if isinstance(f, LockContention)}
    posix = by_inode["00:2b:3670"]
    assert (posix.lock_type, posix.access, posix.holder_pid, posix.holders, posix.waiters) == (
        "POSIX", "WRITE", 538, 1, 2)
    assert posix.waiter_pids == "541,542"
    assert posix.seen_in_both_samples is True
    ofd = by_inode["00:06:9"]
    assert ofd.holder_pid is None and ofd.waiter_pids == "" and ofd.waiters == 1
    assert ofd.seen_in_both_samples is False
    assert posix.fact_id == "lock_contention:00:2b:3670"


def test_many_waiters_are_cut_short():
    lines = ["1: FLOCK  ADVISORY  WRITE 10 00:05:1 0 EOF"]
    lines += [f"1: -> FLOCK  ADVISORY  WRITE {pid} 00:05:1 0 EOF" for pid in range(100, 108)]
    probe = LocksProbe()
    ctx = ProbeContext(proc_root=Path("/nonexistent"), live=False)
    fact = [f for f in probe.facts(ctx, None, parse_locks("\n".join(lines)), None)
            if isinstance(f, LockContention)][0]
    assert fact.waiters == 8 and fact.waiter_pids == "100,101,102,103,104..."
    assert fact.seen_in_both_samples is None  # one sample


def test_no_locks():
    probe = LocksProbe()
    ctx = ProbeContext(proc_root=Path("/nonexistent"), live=False)
    (summary,) = probe.facts(ctx, None, parse_locks(""), None)
    assert (summary.locks_total, summary.blocked, summary.contended_inodes) == (0, 0, 0)


@pytest.mark.parametrize("line, problem", [
    ("1: POSIX  ADVISORY  WRITE 538", "expected 'N: TYPE"),  # truncated
    ("POSIX  ADVISORY  WRITE 538 00:2b:3670 0 EOF extra", "expected 'N: TYPE"),
    ("1: BOGUS  ADVISORY  WRITE 538 00:2b:3670 0 EOF", "unknown lock line"),
    ("x: POSIX  ADVISORY  WRITE 538 00:2b:3670 0 EOF", "lock number"),
    ("1: POSIX  ADVISORY  WRITE pid 00:2b:3670 0 EOF", "pid"),
])
def test_malformed_lines(line, problem):
    with pytest.raises(ParseError, match=problem):
        parse_locks_line(line, "/proc/locks")
    problems: list[str] = []
    assert len(parse_locks(LOCKS + line, on_error=problems.append)) == 8
    assert len(problems) == 1 and "line 9" in problems[0]


def test_fixture_tree_without_proc_locks_is_unavailable():
    if not FIXTURES.is_dir():
        pytest.skip(f"fixture tree {FIXTURES} not present")
    ctx = ProbeContext(proc_root=FIXTURES / "proc", sys_root=FIXTURES / "sys", live=False)
    with pytest.raises(Unavailable, match="locks does not exist"):
        LocksProbe().sample(ctx)


HOLDER = {
    "lockf": "import fcntl, sys, time\nf = open(sys.argv[1], 'r+')\n"
             "fcntl.lockf(f, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(120)\n",
    "flock": "import fcntl, sys, time\nf = open(sys.argv[1], 'r+')\n"
             "fcntl.flock(f, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(120)\n",
}
WAITER = {kind: script.replace("print('locked', flush=True)\ntime.sleep(120)\n", "")
          for kind, script in HOLDER.items()}


def _read_line(proc: subprocess.Popen, timeout_s: float) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    return proc.stdout.readline().strip() if ready else ""


@pytest.mark.live
@pytest.mark.parametrize("call, lock_type", [("lockf", "POSIX"), ("flock", "FLOCK")])
def test_live_contended_lock(tmp_path, call, lock_type):
    target = tmp_path / "contended"
    target.write_text("data\n")
    st = os.stat(target)
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    started: list[subprocess.Popen] = []
    try:
        holder = subprocess.Popen([sys.executable, "-c", HOLDER[call], str(target)],
                                  stdout=subprocess.PIPE, text=True)
        started.append(holder)
        assert _read_line(holder, 10) == "locked"
        waiter = subprocess.Popen([sys.executable, "-c", WAITER[call], str(target)],
                                  stdout=subprocess.PIPE, text=True)
        started.append(waiter)
        deadline = time.monotonic() + 10
        while f" {waiter.pid} " not in Path("/proc/locks").read_text():
            assert time.monotonic() < deadline, "the waiter never blocked on the lock"
            time.sleep(0.05)
        ctx = ProbeContext()
        probe = LocksProbe()
        first = probe.sample(ctx)
        facts = probe.facts(ctx, first, probe.sample(ctx), 0.1)
        mine = [f for f in facts if isinstance(f, LockContention) and f.inode == inode]
        assert len(mine) == 1, facts
        fact = mine[0]
        assert fact.lock_type == lock_type and fact.access == "WRITE"
        assert fact.holder_pid == holder.pid
        assert fact.waiters == 1 and fact.waiter_pids == str(waiter.pid)
        assert fact.seen_in_both_samples is True
        summary = [f for f in facts if isinstance(f, LockSummary)][0]
        assert summary.blocked >= 1 and summary.contended_inodes >= 1
    finally:
        for proc in started:
            proc.kill()
            proc.wait(timeout=10)
            proc.stdout.close()
