"""inotify instances and watches per user (KNOWLEDGE.md §5.E `fs-inotify-limits`).

The kernel charges every inotify instance and every watch to the user that created it and
refuses more past fs.inotify.max_user_instances (inotify_init: EMFILE, "Too many open
files") and fs.inotify.max_user_watches (inotify_add_watch: ENOSPC, "No space left on
device", with the disk far from full). No /proc file shows those counts, so they are
rebuilt the way KNOWLEDGE.md says: every fd whose link is `anon_inode:inotify` is an
instance, and every `inotify wd:` line of its /proc/PID/fdinfo/N is one watch.

- The count goes to the holder's real uid (the credentials at inotify_init are what the
  kernel charged; a later setuid is not seen, nor is a user namespace's own limit in
  /proc/sys/user/max_inotify_*).
- One instance can sit behind several fds (dup, or inherited across fork): fds with the
  same fdinfo are compared with kcmp(KCMP_FILE), read-only, so each instance counts once.
  Without kcmp (another architecture, or the kernel refuses) they count per fd, an
  over-count the probe warns about.
- The fd links come from the run's shared /proc/PID/fd walk (probes/procwalk.py); the walk
  is bounded by a time budget and says when it stopped early.
"""
from __future__ import annotations

import ctypes
import platform
import pwd
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Optional

from sysdiag.facts import Fact, InotifyUser

from ..base import Probe, ProbeContext, Unavailable, pct
from ..parse import ParseError, to_int
from ..procwalk import WalkStats, walk_fd_links, walk_warnings
from ..registry import register_probe
from .deleted import read_comm
from .filenr import parse_sysctl_int

INOTIFY_LINK = "anon_inode:inotify"
WATCH_PREFIX = "inotify wd:"
#: one watch line is ~110 bytes: 16 MiB is ~150,000 watches in one instance
FDINFO_BYTES = 16 << 20
BUDGET_S = 3.0
MAX_USERS = 50
#: kcmp calls at most per run (fds with identical watches are compared pairwise)
MAX_COMPARES = 20_000
#: kcmp(2) syscall numbers (not in Python's os module)
SYS_KCMP = {"x86_64": 312, "aarch64": 272, "ppc64le": 354, "s390x": 343, "riscv64": 272}
KCMP_FILE = 0


def watch_lines(fdinfo: str) -> list[str]:
    """The `inotify wd:` lines of an inotify fd's fdinfo: one per watch, and together what
    two fds of one instance show alike (their pos and flags may differ).

    >>> len(watch_lines("pos:\\t0\\nflags:\\t02004000\\nmnt_id:\\t15\\nino:\\t1057\\n"
    ...                 "inotify wd:2 ino:7b sdev:800001 mask:fce ignored_mask:0\\n"
    ...                 "inotify wd:1 ino:2 sdev:800001 mask:fce ignored_mask:0\\n"))
    2
    """
    return [line for line in fdinfo.splitlines() if line.startswith(WATCH_PREFIX)]


def parse_real_uid(status: str, source: str = "/proc/PID/status") -> int:
    """The real uid: the first of the four numbers on the `Uid:` line."""
    for line in status.splitlines():
        if line.startswith("Uid:"):
            fields = line.split()
            if len(fields) < 2:
                raise ParseError(source, f"'Uid:' line without values: {line[:80]!r}")
            return to_int(fields[1], source, "Uid")
    raise ParseError(source, "no 'Uid:' line")


@dataclass(frozen=True)
class InotifyFd:
    pid: int
    fd: int
    uid: int
    watches: int
    fdinfo: str  # what two fds of one instance show alike


@dataclass
class Scan(WalkStats):
    fds: list[InotifyFd] = field(default_factory=list)


class Kcmp:
    """kcmp(pid1, pid2, KCMP_FILE, fd1, fd2) == 0: the two fds are one open file."""

    def __init__(self) -> None:
        number = SYS_KCMP.get(platform.machine())
        self._syscall = None
        if number is not None:
            libc = ctypes.CDLL(None, use_errno=True)
            self._syscall = libc.syscall
            self._number = number

    @property
    def available(self) -> bool:
        return self._syscall is not None

    def same_file(self, a: InotifyFd, b: InotifyFd) -> Optional[bool]:
        """True/False, or None when the kernel would not say (no kcmp, EPERM, exited)."""
        if self._syscall is None:
            return None
        result = self._syscall(self._number, a.pid, b.pid, KCMP_FILE, a.fd, b.fd)
        if result < 0:
            return None
        return result == 0


def distinct_instances(fds: list[InotifyFd], same_file: Callable[[InotifyFd, InotifyFd],
                                                                 Optional[bool]],
                       max_compares: int = MAX_COMPARES) -> tuple[list[InotifyFd], int]:
    """One fd per instance, and how many fds could not be compared (kept: an upper bound).
    Only fds of one user with the same watches can be one instance; only those are
    compared with `same_file`, at most `max_compares` times in all."""
    groups: dict[tuple[int, str], list[InotifyFd]] = defaultdict(list)
    for item in fds:
        groups[(item.uid, item.fdinfo)].append(item)
    kept: list[InotifyFd] = []
    unknown = 0
    budget = max_compares
    for group in groups.values():
        representatives: list[InotifyFd] = []
        for item in group:
            duplicate = undecided = False
            for rep in representatives:
                if budget <= 0:
                    undecided = True
                    break
                budget -= 1
                same = same_file(rep, item)
                if same is None:
                    undecided = True
                elif same:
                    duplicate = True
                    break
            if not duplicate:
                representatives.append(item)
                unknown += undecided
        kept += representatives
    return kept, unknown


class InotifyScanner:
    """Walks /proc/*/fd of a live host for inotify fds. Separate from the probe so tests
    can bound it."""

    def __init__(self, ctx: ProbeContext, budget_s: float = BUDGET_S,
                 on_warning: Callable[[str], None] = lambda message: None) -> None:
        self.ctx = ctx
        self.root = str(ctx.proc())
        self.budget_s = budget_s
        self.warn = on_warning

    def scan(self, pids: Optional[list[int]] = None) -> Scan:
        result = Scan()
        for pid, links in walk_fd_links(self.ctx, result, self.budget_s, pids):
            result.fds_seen += len(links)
            fds = [int(name) for name, target in links.items() if target == INOTIFY_LINK]
            if fds:
                self._read_fds(pid, fds, result)
        return result

    def _read_fds(self, pid: int, fds: list[int], result: Scan) -> None:
        status_path = f"{self.root}/{pid}/status"
        try:
            with open(status_path, "rb") as fh:
                uid = parse_real_uid(fh.read(8192).decode("utf-8", "replace"), status_path)
        except OSError:
            return  # exited meanwhile
        except ParseError as err:
            self.warn(str(err))
            return
        for fd in sorted(fds):
            source = f"{self.root}/{pid}/fdinfo/{fd}"
            try:
                with open(source, "rb") as fh:
                    text = fh.read(FDINFO_BYTES + 1).decode("utf-8", "replace")
            except OSError:
                continue  # closed or exited meanwhile
            if len(text) > FDINFO_BYTES:
                self.warn(f"{source}: more than {FDINFO_BYTES >> 20} MiB of watches; "
                          "counted up to there")
                text = text[:FDINFO_BYTES]
            lines = watch_lines(text)
            result.fds.append(InotifyFd(pid=pid, fd=fd, uid=uid, watches=len(lines),
                                        fdinfo="\n".join(lines)))


def user_name(uid: int) -> Optional[str]:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def per_user(fds: list[InotifyFd], limits: dict[str, Optional[int]], root: str,
             source: str, holders: Optional[dict[int, set[int]]] = None) -> list[InotifyUser]:
    """Totals per uid of `fds` (one per instance); `holders` (uid -> pids) also counts the
    processes that only share an instance (by fork or SCM_RIGHTS)."""
    by_uid: dict[int, list[InotifyFd]] = defaultdict(list)
    for item in fds:
        by_uid[item.uid].append(item)
    out = []
    for uid, items in by_uid.items():
        per_pid: dict[int, list[InotifyFd]] = defaultdict(list)
        for item in items:
            per_pid[item.pid].append(item)
        top = max(per_pid, key=lambda p: (len(per_pid[p]), -p))
        top_w = max(per_pid, key=lambda p: (sum(i.watches for i in per_pid[p]), -p))
        instances, watches = len(items), sum(i.watches for i in items)
        out.append(InotifyUser(
            source=source, uid=uid, user=user_name(uid), instances=instances,
            watches=watches, processes=len(set(per_pid) | (holders or {}).get(uid, set())),
            max_user_instances=limits["instances"], max_user_watches=limits["watches"],
            instances_pct=pct(instances, limits["instances"]),
            watches_pct=pct(watches, limits["watches"]),
            top_pid=top, top_comm=read_comm(root, top), top_instances=len(per_pid[top]),
            top_watches_pid=top_w, top_watches_comm=read_comm(root, top_w),
            top_watches=sum(i.watches for i in per_pid[top_w])))
    out.sort(key=lambda u: (-max(u.instances_pct or 0, u.watches_pct or 0), -u.instances,
                            u.uid))
    return out[:MAX_USERS]


@register_probe
class InotifyProbe(Probe):
    name = "inotify"
    provides = ("inotify_user",)
    description = ("inotify instances and watches per user vs fs.inotify.max_user_instances "
                   "and max_user_watches (/proc/PID/fd, fdinfo)")
    sampled = False
    timeout_s = 8.0

    def __init__(self, budget_s: float = BUDGET_S) -> None:
        super().__init__()
        self.budget_s = budget_s

    def check(self, ctx: ProbeContext) -> None:
        super().check(ctx)
        if not ctx.live:
            raise Unavailable("inotify instances need the live host (fd links and fdinfo); "
                              "a captured tree has none")

    def sample(self, ctx: ProbeContext) -> tuple[list[InotifyFd], dict[int, set[int]],
                                                 dict[str, Optional[int]]]:
        scan = InotifyScanner(ctx, self.budget_s, self.warn).scan()
        for warning in walk_warnings(scan, ctx.is_root):
            self.warn(warning)
        holders: dict[int, set[int]] = defaultdict(set)
        for item in scan.fds:
            holders[item.uid].add(item.pid)
        kcmp = Kcmp()
        fds, unknown = distinct_instances(scan.fds, kcmp.same_file)
        if unknown:
            why = ("kcmp is not available on this architecture" if not kcmp.available
                   else "kcmp refused (not root, or the processes exited), or more than "
                        f"{MAX_COMPARES} comparisons")
            self.warn(f"{unknown} inotify fds could not be told apart from others with the "
                      f"same watches ({why}): counted as separate instances, an upper bound")
        limits = {}
        for key, name in (("instances", "max_user_instances"), ("watches", "max_user_watches")):
            path = ctx.proc("sys", "fs", "inotify", name)
            limits[key] = parse_sysctl_int(ctx.read_optional(path), str(path))
        return fds, dict(holders), limits

    def facts(self, ctx: ProbeContext, first: object,
              last: tuple[list[InotifyFd], dict[int, set[int]], dict[str, Optional[int]]],
              elapsed_s: Optional[float]) -> list[Fact]:
        fds, holders, limits = last
        root = str(ctx.proc())
        return list(per_user(fds, limits, root, f"{root}/*/fdinfo", holders))
