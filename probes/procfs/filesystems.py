"""Space and inodes of every mounted filesystem (statvfs), without ever hanging.

statfs on a dead NFS server or a stopped FUSE daemon blocks forever, in an
uninterruptible sleep no timeout can cancel (DESIGN.md "Safety"). So:
- network and FUSE filesystems are measured only in a child process (a tiny
  Python statvfs script), killed with SIGKILL when it does not answer within
  `child_timeout_s`. A child stuck in D state may not even die: it is left
  behind and the mount is reported as a `filesystem_unresponsive` fact;
- local filesystems are measured with os.statvfs in a daemon thread; when one
  does not answer within `local_timeout_s` the thread is abandoned, the mount
  reported the same way, and a fresh thread goes on with the others.
Mounts come from mountinfo (parsing it never touches a filesystem).
"""
from __future__ import annotations

import errno
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, Union

from sysdiag.facts import Fact, Filesystem, FilesystemUnresponsive

from ..base import Probe, ProbeContext, Unavailable
from ..parse import ParseError, to_int
from ..registry import register_probe
from .mounts import MountEntry, read_mountinfo

#: the child's whole program: one statvfs, its numbers (or the errno) on stdout
CHILD_SCRIPT = (
    "import os, sys\n"
    "try:\n"
    "    s = os.statvfs(sys.argv[1])\n"
    "except OSError as e:\n"
    "    print('err', e.errno, e.strerror)\n"
    "else:\n"
    "    print('ok', s.f_frsize, s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree)\n"
)
#: errors that mean the filesystem is broken, not that we may not look
BROKEN_ERRNOS = {errno.ENOTCONN, errno.EIO, errno.ESTALE, errno.EHOSTDOWN, errno.ETIMEDOUT}
MAX_MOUNTS = 1000
MAX_CHILDREN = 8  # measuring children running at once


def default_child_argv(path: str) -> list[str]:
    # -I: ignore PYTHON* variables and the user site; -S: no site import (fast start)
    return [sys.executable, "-I", "-S", "-c", CHILD_SCRIPT, path]


@dataclass(frozen=True)
class Space:
    frsize: int
    blocks: int
    bfree: int
    bavail: int
    files: int
    ffree: int


@dataclass(frozen=True)
class NotAnswering:
    waited_s: float
    error: Optional[str] = None  # ENOTCONN & co: answered, but broken


@dataclass(frozen=True)
class Failed:
    error: str  # EACCES, ENOENT...: a warning, not a finding


Result = Union[Space, NotAnswering, Failed]


def parse_child_output(text: str, source: str = "statvfs child") -> Result:
    """Parse the child's one line: "ok FRSIZE BLOCKS BFREE BAVAIL FILES FFREE" or
    "err ERRNO MESSAGE"."""
    fields = text.split()
    if fields[:1] == ["ok"] and len(fields) == 7:
        numbers = [to_int(value, source, "statvfs field") for value in fields[1:]]
        return Space(*numbers)
    if fields[:1] == ["err"] and len(fields) >= 2:
        code = to_int(fields[1], source, "errno")
        message = " ".join(fields[2:]) or os.strerror(code)
        return NotAnswering(0.0, message) if code in BROKEN_ERRNOS else Failed(message)
    raise ParseError(source, f"expected 'ok ...' or 'err ...', got {text.strip()[:80]!r}")


def _space(st: os.statvfs_result) -> Space:
    return Space(st.f_frsize, st.f_blocks, st.f_bfree, st.f_bavail, st.f_files, st.f_ffree)


def _from_oserror(err: OSError) -> Result:
    message = err.strerror or str(err)
    return NotAnswering(0.0, message) if err.errno in BROKEN_ERRNOS else Failed(message)


class _LocalWorker:
    """Measures paths one after the other in a daemon thread; results go to its own queue."""

    def __init__(self, paths: list[str]):
        self.paths = paths
        self.current = 0
        self.results: queue.Queue[tuple[str, Result]] = queue.Queue()
        threading.Thread(target=self._run, daemon=True, name="sysdiag-statvfs").start()

    def _run(self) -> None:
        for index, path in enumerate(self.paths):
            self.current = index
            try:
                result: Result = _space(os.statvfs(path))
            except OSError as err:
                result = _from_oserror(err)
            self.results.put((path, result))


def measure_local(paths: list[str], timeout_s: float = 1.0,
                  budget_s: Optional[float] = None) -> dict[str, Result]:
    """os.statvfs each path in a daemon thread; a path that takes longer than
    `timeout_s` is NotAnswering and its thread is abandoned (a fresh one goes on
    with the rest). Paths not measured within `budget_s` are missing from the result."""
    results: dict[str, Result] = {}
    end = None if budget_s is None else time.monotonic() + budget_s
    pending = list(paths)
    while pending:
        worker = _LocalWorker(pending)
        for _ in pending:
            wait = timeout_s if end is None else min(timeout_s, end - time.monotonic())
            if wait <= 0:
                return results
            try:
                path, result = worker.results.get(timeout=wait)
            except queue.Empty:
                if wait < timeout_s:
                    return results  # out of budget: slow, but not proven hung
                stuck = worker.current
                results[pending[stuck]] = NotAnswering(timeout_s)
                pending = pending[stuck + 1:]
                break
            results[path] = result
        else:
            pending = []
    return results


#: children that did not die after SIGKILL (stuck in D state); polled to reap them later
_ABANDONED: list[subprocess.Popen] = []


def _reap_abandoned() -> None:
    for proc in list(_ABANDONED):
        if proc.poll() is not None:
            _ABANDONED.remove(proc)


def abandoned_children() -> list[int]:
    """Pids of measuring children that are still stuck (for tests and diagnostics)."""
    _reap_abandoned()
    return [proc.pid for proc in _ABANDONED]


def _start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, cwd="/", close_fds=True,
                            start_new_session=True, text=True)


def _kill(proc: subprocess.Popen) -> None:
    proc.kill()  # SIGKILL
    try:
        proc.wait(timeout=0.2)
    except subprocess.TimeoutExpired:
        # stuck in D state: SIGKILL is delivered when it wakes up, if ever
        _ABANDONED.append(proc)
    if proc.stdout is not None:
        proc.stdout.close()


def measure_in_children(paths: list[str], timeout_s: float = 2.0, budget_s: float = 6.0,
                        child_argv: Callable[[str], list[str]] = default_child_argv,
                        max_children: int = MAX_CHILDREN) -> dict[str, Result]:
    """statvfs each path in its own child process, at most `max_children` at once.
    A child silent for `timeout_s` is killed (NotAnswering). Paths not measured
    within `budget_s` are missing from the result."""
    _reap_abandoned()
    results: dict[str, Result] = {}
    waiting = list(paths)
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    end = time.monotonic() + budget_s
    try:
        while (waiting or running) and time.monotonic() < end:
            while waiting and len(running) < max_children:
                path = waiting.pop(0)
                try:
                    running[path] = (_start(child_argv(path)), time.monotonic())
                except OSError as err:
                    results[path] = Failed(f"cannot start the measuring child: {err}")
            for path, (proc, started) in list(running.items()):
                waited = time.monotonic() - started
                if proc.poll() is not None:
                    out, _ = proc.communicate()  # exited: the pipe holds one short line
                    try:
                        results[path] = parse_child_output(out, f"statvfs child for {path}")
                    except ParseError as err:
                        results[path] = Failed(f"{err} (exit status {proc.returncode})")
                    del running[path]
                elif waited >= timeout_s:
                    _kill(proc)
                    results[path] = NotAnswering(round(waited, 3))
                    del running[path]
            if running:
                time.sleep(0.01)
    finally:
        for proc, _ in running.values():  # out of budget (or interrupted)
            _kill(proc)
    return results


def select_mounts(entries: list[MountEntry]) -> list[MountEntry]:
    """Mounts with storage behind them, one per mount point (the last mounted
    one is the visible one)."""
    by_point: dict[str, MountEntry] = {}
    for entry in entries:
        if entry.pseudo:
            continue
        by_point.pop(entry.mountpoint, None)
        by_point[entry.mountpoint] = entry
    return list(by_point.values())


def filesystem_fact(entry: MountEntry, space: Space) -> Optional[Filesystem]:
    """The df view of one statvfs result; None for a filesystem without blocks."""
    if space.blocks <= 0:
        return None
    used = space.blocks - space.bfree
    usable = used + space.bavail  # what non-root users can ever fill (df's Use% base)
    inodes = space.files if space.files > 0 else None
    return Filesystem(
        source=f"statvfs({entry.mountpoint})", mountpoint=entry.mountpoint,
        fstype=entry.fstype, device=entry.device or None, read_only=entry.read_only,
        network_fs=entry.network_fs, fuse=entry.fuse,
        size_bytes=space.blocks * space.frsize, used_bytes=used * space.frsize,
        avail_bytes=space.bavail * space.frsize,
        used_pct=round(100.0 * used / usable, 2) if usable > 0 else None,
        inodes_total=inodes,
        inodes_free=space.ffree if inodes else None,
        inodes_used_pct=(round(100.0 * (space.files - space.ffree) / space.files, 2)
                         if inodes else None),
    )


def unresponsive_fact(entry: MountEntry, result: NotAnswering) -> FilesystemUnresponsive:
    return FilesystemUnresponsive(
        source=f"statvfs({entry.mountpoint})", mountpoint=entry.mountpoint,
        fstype=entry.fstype, device=entry.device or None, network_fs=entry.network_fs,
        fuse=entry.fuse, waited_s=result.waited_s, error=result.error)


@register_probe
class FilesystemsProbe(Probe):
    name = "filesystems"
    provides = ("filesystem", "filesystem_unresponsive")
    description = ("space and inodes per mounted filesystem (statvfs); network and FUSE "
                   "mounts only in a killable child process")
    sampled = False
    timeout_s = 10.0

    def __init__(self, child_argv: Callable[[str], list[str]] = default_child_argv,
                 local_timeout_s: float = 1.0, child_timeout_s: float = 2.0,
                 budget_s: float = 6.0) -> None:
        super().__init__()
        self.child_argv = child_argv
        self.local_timeout_s = local_timeout_s
        self.child_timeout_s = child_timeout_s
        self.budget_s = budget_s

    def check(self, ctx: ProbeContext) -> None:
        super().check(ctx)
        if not ctx.live:
            raise Unavailable("filesystem space needs statfs on the live host; "
                              "a captured tree has none")

    def sample(self, ctx: ProbeContext) -> tuple[list[MountEntry], dict[str, Result]]:
        _, entries = read_mountinfo(ctx, self.warn)
        mounts = select_mounts(entries)
        if len(mounts) > MAX_MOUNTS:
            self.warn(f"{len(mounts)} mounts: measured the first {MAX_MOUNTS} only")
            mounts = mounts[:MAX_MOUNTS]
        remote = [m.mountpoint for m in mounts if m.network_fs or m.fuse]
        local = [m.mountpoint for m in mounts if not (m.network_fs or m.fuse)]
        # children and local threads at the same time: the probe takes the longer
        # of the two budgets, not their sum
        remote_results: dict[str, Result] = {}
        errors: list[BaseException] = []

        def in_children() -> None:
            try:
                remote_results.update(measure_in_children(
                    remote, self.child_timeout_s, self.budget_s, self.child_argv))
            except BaseException as err:  # re-raised below, in the probe's thread
                errors.append(err)

        children = threading.Thread(target=in_children, daemon=True,
                                    name="sysdiag-statvfs-children")
        children.start()
        results = measure_local(local, self.local_timeout_s, self.budget_s)
        children.join(self.budget_s + 2.0)  # it returns by its budget, plus kill time
        if errors:
            raise errors[0]
        results.update(remote_results)
        return mounts, results

    def facts(self, ctx: ProbeContext, first: object,
              last: tuple[list[MountEntry], dict[str, Result]],
              elapsed_s: Optional[float]) -> list[Fact]:
        mounts, results = last
        out: list[Fact] = []
        for entry in mounts:
            result = results.get(entry.mountpoint)
            if result is None:
                self.warn(f"{entry.mountpoint}: not measured (time budget used up)")
            elif isinstance(result, Failed):
                self.warn(f"{entry.mountpoint}: statvfs failed: {result.error}")
            elif isinstance(result, NotAnswering):
                out.append(unresponsive_fact(entry, result))
            else:
                fact = filesystem_fact(entry, result)
                if fact is not None:
                    out.append(fact)
        return out
