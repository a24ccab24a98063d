"""Deleted files that processes still hold open (KNOWLEDGE.md §5.E `fs-deleted-open`):
their space stays allocated until the last fd closes, so `df` counts it and `du` not.

How, without ever blocking on a dead mount:
- /proc/PID/fd/N links are read with readlink only (the kernel prints the path it
  remembers, "/var/log/app.log (deleted)"; no filesystem is touched);
- for a deleted target, /proc/PID/fdinfo/N gives `mnt_id`, the mount the file lives on
  (in the holder's mount namespace when it is not in ours: looked up in
  /proc/PID/mountinfo); old kernels without mnt_id fall back to the longest mount
  point that prefixes the path;
- only then, and only on a local filesystem (not network, not FUSE), os.stat on the
  fd link gives the open file's size and link count (stat on a dead NFS or FUSE
  mount would hang). A file with links left (st_nlink > 0) holds no extra space.
Files on internal mounts that no mountinfo lists (memfd:, SysV shm) hold memory,
not disk space, and are left out. The walk is bounded by a number of fds and a
time budget; when either runs out the result is partial and says so.
"""
from __future__ import annotations

import os
import stat as stat_mod
from dataclasses import dataclass, field
from typing import Callable, Optional

from sysdiag.facts import DeletedFilesSummary, DeletedOpenFile, Fact

from ..base import Probe, ProbeContext, Unavailable
from ..parse import ParseError, to_int
from ..procwalk import WalkStats, walk_fd_links, walk_warnings
from ..registry import register_probe
from .mounts import MountEntry, parse_mountinfo, read_mountinfo

DELETED_SUFFIX = " (deleted)"
MAX_FDS = 200_000
BUDGET_S = 3.0
TOP_FILES = 20


def deleted_path(target: str) -> Optional[str]:
    """The former path of a deleted file from a /proc/PID/fd link, else None.

    >>> deleted_path("/var/log/app.log (deleted)"), deleted_path("socket:[4711]")
    ('/var/log/app.log', None)
    >>> deleted_path("anon_inode:[eventfd] (deleted)") is None
    True
    """
    if not target.startswith("/") or not target.endswith(DELETED_SUFFIX):
        return None
    return target[:-len(DELETED_SUFFIX)]


def parse_fdinfo_mnt_id(text: str, source: str = "/proc/PID/fdinfo/N") -> Optional[int]:
    """The `mnt_id:` of an fdinfo file (kernels >= 3.15), else None.

    >>> parse_fdinfo_mnt_id("pos:\\t0\\nflags:\\t02100002\\nmnt_id:\\t26\\nino:\\t1234\\n")
    26
    """
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon and key == "mnt_id":
            return to_int(value.strip(), source, "mnt_id")
    return None


def mount_of(path: str, mounts: list[MountEntry]) -> Optional[MountEntry]:
    """The mount a path lives on: the longest mount point that prefixes it (the one
    mounted last wins on the same point)."""
    best: Optional[MountEntry] = None
    best_len = -1
    for entry in mounts:
        point = entry.mountpoint.rstrip("/") or "/"
        if path == point or path.startswith(point if point == "/" else point + "/"):
            if len(point) >= best_len:
                best, best_len = entry, len(point)
    return best


def is_local(entry: MountEntry) -> bool:
    """Safe to stat: not a network filesystem, not served by a FUSE daemon."""
    return not (entry.network_fs or entry.fuse)


@dataclass(frozen=True)
class HeldFile:
    pid: int
    fd: int
    path: str
    size: int
    allocated: int  # st_blocks x 512: what it really holds on disk
    dev: int
    ino: int
    mount: MountEntry
    other_namespace: bool  # the mount was found in the holder's mountinfo, not ours


@dataclass
class Scan(WalkStats):
    held: list[HeldFile] = field(default_factory=list)
    skipped_remote: int = 0  # deleted files on network/FUSE mounts: not stat'ed


class DeletedFileScanner:
    """Walks /proc/*/fd of a live host. Separate from the probe so tests can bound it."""

    def __init__(self, ctx: ProbeContext, max_fds: int = MAX_FDS, budget_s: float = BUDGET_S,
                 on_warning: Callable[[str], None] = lambda message: None):
        self.ctx = ctx
        self.root = str(ctx.proc())
        self.max_fds = max_fds
        self.budget_s = budget_s
        self.warn = on_warning
        _, own = read_mountinfo(ctx, on_warning)
        self.own_mounts = own
        self.by_id = {m.mount_id: m for m in own}
        self._foreign: dict[int, dict[int, MountEntry]] = {}

    def scan(self, pids: Optional[list[int]] = None) -> Scan:
        result = Scan()
        for pid, links in walk_fd_links(self.ctx, result, self.budget_s, pids):
            if result.fds_seen >= self.max_fds:
                result.partial = f"stopped after {result.fds_seen} fds (limit {self.max_fds})"
                break
            for name in list(links)[:max(0, self.max_fds - result.fds_seen)]:
                result.fds_seen += 1
                target = links[name]
                if target is None:
                    continue  # closed meanwhile
                path = deleted_path(target)
                if path is None:
                    continue
                held = self._held(pid, int(name), path, result)
                if held is not None:
                    result.held.append(held)
        return result

    def _held(self, pid: int, fd: int, path: str, result: Scan) -> Optional[HeldFile]:
        mount, foreign = self._mount(pid, fd, path)
        if mount is None:
            return None  # memfd, SysV shm, or gone
        if not is_local(mount):
            result.skipped_remote += 1
            return None
        try:
            st = os.stat(f"{self.root}/{pid}/fd/{fd}")  # the open file itself
        except OSError:
            return None  # closed or exited meanwhile
        if not stat_mod.S_ISREG(st.st_mode) or st.st_nlink > 0:
            return None
        return HeldFile(pid=pid, fd=fd, path=path, size=st.st_size,
                        allocated=st.st_blocks * 512, dev=st.st_dev, ino=st.st_ino,
                        mount=mount, other_namespace=foreign)

    def _mount(self, pid: int, fd: int, path: str) -> tuple[Optional[MountEntry], bool]:
        source = f"{self.root}/{pid}/fdinfo/{fd}"
        try:
            with open(source, "rb") as fh:
                mnt_id = parse_fdinfo_mnt_id(fh.read(4096).decode("utf-8", "replace"), source)
        except OSError:
            return None, False
        except ParseError as err:
            self.warn(str(err))
            return None, False
        if mnt_id is None:  # before 3.15: guess from the path, in our namespace
            return mount_of(path, self.own_mounts), False
        if mnt_id in self.by_id:
            return self.by_id[mnt_id], False
        theirs = self._foreign_mounts(pid)
        return theirs.get(mnt_id), mnt_id in theirs

    def _foreign_mounts(self, pid: int) -> dict[int, MountEntry]:
        if pid not in self._foreign:
            path = f"{self.root}/{pid}/mountinfo"
            try:
                with open(path, "rb") as fh:
                    text = fh.read(8 << 20).decode("utf-8", "replace")
                mounts = parse_mountinfo(text, path, self.warn)
            except OSError:
                mounts = []
            self._foreign[pid] = {m.mount_id: m for m in mounts}
        return self._foreign[pid]


def summarize(held: list[HeldFile], source: str) -> list[DeletedFilesSummary]:
    """One summary per mount; a file held by several fds or processes counts once."""
    groups: dict[int, list[HeldFile]] = {}
    for item in held:
        groups.setdefault(item.mount.mount_id, []).append(item)
    out = []
    for items in groups.values():
        unique: dict[tuple[int, int], HeldFile] = {}
        for item in items:
            unique.setdefault((item.dev, item.ino), item)
        largest = max(unique.values(), key=lambda i: i.allocated)
        mount = items[0].mount
        out.append(DeletedFilesSummary(
            source=source, mount_id=mount.mount_id, mountpoint=mount.mountpoint,
            fstype=mount.fstype, other_namespace=items[0].other_namespace,
            bytes_held=sum(i.allocated for i in unique.values()), files=len(unique),
            holders=len({i.pid for i in items}), largest_bytes=largest.allocated,
            largest_path=largest.path))
    return sorted(out, key=lambda s: -s.bytes_held)


def read_comm(root: str, pid: int) -> Optional[str]:
    try:
        with open(f"{root}/{pid}/comm", "rb") as fh:
            return fh.read(64).decode("utf-8", "replace").rstrip("\n") or None
    except OSError:
        return None


@register_probe
class DeletedFilesProbe(Probe):
    name = "deleted-files"
    provides = ("deleted_open_file", "deleted_files")
    description = ("deleted files still held open, their holders and the space they keep "
                   "per mount (/proc/PID/fd)")
    sampled = False
    timeout_s = 8.0

    def __init__(self, max_fds: int = MAX_FDS, budget_s: float = BUDGET_S) -> None:
        super().__init__()
        self.max_fds = max_fds
        self.budget_s = budget_s

    def check(self, ctx: ProbeContext) -> None:
        super().check(ctx)
        if not ctx.live:
            raise Unavailable("deleted-but-open files need the live host (fd links and the "
                              "sizes of open files); a captured tree has none")

    def sample(self, ctx: ProbeContext) -> Scan:
        scanner = DeletedFileScanner(ctx, self.max_fds, self.budget_s, self.warn)
        scan = scanner.scan()
        for warning in walk_warnings(scan, ctx.is_root):
            self.warn(warning)
        if scan.skipped_remote:
            self.warn(f"{scan.skipped_remote} deleted files on network or FUSE mounts not "
                      "measured (stat could hang)")
        return scan

    def facts(self, ctx: ProbeContext, first: object, last: Scan,
              elapsed_s: Optional[float]) -> list[Fact]:
        root = str(ctx.proc())
        out: list[Fact] = list(summarize(last.held, f"{root}/*/fd"))
        top = sorted(last.held, key=lambda i: (-i.allocated, -i.size, i.pid, i.fd))[:TOP_FILES]
        comms: dict[int, Optional[str]] = {}
        for item in top:
            if item.pid not in comms:
                comms[item.pid] = read_comm(root, item.pid)
            out.append(DeletedOpenFile(
                source=f"{root}/{item.pid}/fd/{item.fd}", pid=item.pid, comm=comms[item.pid],
                fd=item.fd, path=item.path, size_bytes=item.size,
                allocated_bytes=item.allocated, mount_id=item.mount.mount_id,
                mountpoint=item.mount.mountpoint, fstype=item.mount.fstype))
        return out

