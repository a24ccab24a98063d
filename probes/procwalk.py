"""One read of /proc/PID/fd per process and run, shared by the probes that walk it.

deleted-files (deleted targets) and sockets (owners of socket inodes) both list every
process's fd directory and readlink every fd: with 5,000 processes that is ~15,000
readlinks, 0.1 s of CPU, per walk. The ProbeContext of a run owns one `FdLinks`
(`ctx.fd_links(pid)`), so whichever probe asks first pays and the other reads the
cache. Nothing else changes: a failed listdir is raised again (same type, errno and
message) to every caller, and a link that could not be read is None, as each probe
already skipped it. The cache lives as long as the run's context: a new run reads again.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Union

#: fd name -> link target, None when the fd closed before readlink
Links = dict[str, Optional[str]]


class FdLinks:
    """pid -> its fd links, read on first use. Thread-safe: probes run in threads; two
    threads asking for the same pid at once may both read it (the first result stays)."""

    def __init__(self, proc_root: str) -> None:
        self._root = proc_root
        self._cache: dict[int, Union[Links, OSError]] = {}
        self._lock = threading.Lock()

    def of(self, pid: int) -> Links:
        """The links of /proc/PID/fd. Raises what os.listdir raised (PermissionError for
        another user's process when not root; FileNotFoundError once it exited)."""
        entry = self._cache.get(pid)
        if entry is None:
            entry = self._read(pid)
            with self._lock:
                entry = self._cache.setdefault(pid, entry)
        if isinstance(entry, OSError):
            raise type(entry)(entry.errno, entry.strerror, entry.filename)
        return entry

    def _read(self, pid: int) -> Union[Links, OSError]:
        fd_dir = f"{self._root}/{pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except OSError as err:
            return err
        links: Links = {}
        for name in names:
            try:
                links[name] = os.readlink(f"{fd_dir}/{name}")
            except OSError:
                links[name] = None  # closed meanwhile
        return links


@dataclass
class WalkStats:
    """What a bounded walk over processes' fds saw (for the probe's warnings)."""
    pids_seen: int = 0
    pids_unreadable: int = 0  # fd directory not readable (another user's, not root)
    fds_seen: int = 0
    partial: Optional[str] = None  # why the walk stopped early


def walk_fd_links(ctx: Any, stats: WalkStats, budget_s: float,
                  pids: Optional[list[int]] = None) -> Iterator[tuple[int, Links]]:
    """(pid, fd links) of every process whose fd directory is readable, through the run's
    shared cache (`ctx.fd_links`), until `budget_s` runs out: then `stats.partial` says
    where it stopped. Processes that exit meanwhile are skipped; unreadable ones counted.
    The caller adds to `stats.fds_seen` and may stop early itself."""
    end = time.monotonic() + budget_s
    if pids is None:
        pids = sorted(int(n) for n in os.listdir(ctx.proc()) if n.isdigit())
    for pid in pids:
        if time.monotonic() > end:
            stats.partial = (f"stopped after {budget_s:.1f} s "
                             f"({stats.pids_seen} processes, {stats.fds_seen} fds)")
            return
        try:
            links = ctx.fd_links(pid)
        except PermissionError:
            stats.pids_unreadable += 1
            continue
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            continue  # exited
        stats.pids_seen += 1
        yield pid, links


def walk_warnings(stats: WalkStats, is_root: bool) -> list[str]:
    """What the user is told about a walk that stopped early or could not read everything."""
    out = []
    if stats.partial:
        out.append(f"partial: {stats.partial}")
    if stats.pids_unreadable:
        who = "not root: " if not is_root else ""
        out.append(f"{who}the fds of {stats.pids_unreadable} processes were not readable "
                   "(permission denied; run as root to see every process)")
    return out
