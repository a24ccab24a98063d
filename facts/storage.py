"""Storage and VFS facts: mounts, filesystem space, block devices, the file
table, and file-lock contention (KNOWLEDGE.md §2.10, §5.D, §5.E).

A mount's device is called `device` (mountinfo calls it "source"), because
`source` on every fact is where the fact was read from.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

from .base import Fact


class Mount(Fact):
    """One line of /proc/PID/mountinfo."""

    kind: Literal["mount"] = "mount"
    key_fields: ClassVar[tuple[str, ...]] = ("mount_id",)
    description: ClassVar[str] = "one mount: mount point, type, device, options, read-only"

    mount_id: int
    parent_id: Optional[int] = None
    dev: Optional[str] = None  # "MAJ:MIN" of the filesystem
    root: Optional[str] = None  # the directory of the filesystem mounted here
    mountpoint: str
    fstype: str
    device: Optional[str] = None  # what was mounted: /dev/sda1, server:/export, tmpfs
    options: str = ""  # per-mount options ("rw,nosuid,relatime")
    super_options: str = ""  # superblock options ("rw,errors=remount-ro")
    #: read-only in the mount *or* the superblock options: a filesystem the kernel
    #: remounted read-only after an error shows "ro" only in the superblock options
    read_only: bool = False
    network_fs: bool = False  # nfs, cifs, ceph, 9p...: statfs can hang when the server dies
    fuse: bool = False  # fuse, fuse.*: served by a user-space daemon
    pseudo: bool = False  # proc, sysfs, cgroup...: no storage behind it


class Filesystem(Fact):
    """Space and inodes of one mounted filesystem (statvfs), as `df` shows them."""

    kind: Literal["filesystem"] = "filesystem"
    key_fields: ClassVar[tuple[str, ...]] = ("mountpoint",)
    description: ClassVar[str] = "space and inodes of one mounted filesystem (df / df -i)"

    mountpoint: str
    fstype: str
    device: Optional[str] = None
    read_only: bool = False
    network_fs: bool = False
    fuse: bool = False
    size_bytes: Optional[int] = None
    used_bytes: Optional[int] = None
    #: free to unprivileged users (excludes the root reserve, ext4 5 % by default)
    avail_bytes: Optional[int] = None
    #: used / (used + avail), as df's Use%: 100 means non-root writers get ENOSPC
    used_pct: Optional[float] = None
    inodes_total: Optional[int] = None  # None: the filesystem has no inode count (btrfs...)
    inodes_free: Optional[int] = None
    inodes_used_pct: Optional[float] = None


class FilesystemUnresponsive(Fact):
    """A mounted filesystem whose statfs did not answer in time (dead NFS server,
    stopped FUSE daemon). The measuring child was killed and left behind."""

    kind: Literal["filesystem_unresponsive"] = "filesystem_unresponsive"
    key_fields: ClassVar[tuple[str, ...]] = ("mountpoint",)
    description: ClassVar[str] = "a mounted filesystem that did not answer statfs in time"

    mountpoint: str
    fstype: str
    device: Optional[str] = None
    network_fs: bool = False
    fuse: bool = False
    waited_s: float  # 0 when it answered at once with an error (error says which)
    #: "Transport endpoint is not connected" (the FUSE daemon died), "Stale file handle"...
    error: Optional[str] = None


class BlockDevice(Fact):
    """One block device or partition from /proc/diskstats, over the window."""

    kind: Literal["block_device"] = "block_device"
    key_fields: ClassVar[tuple[str, ...]] = ("name",)
    description: ClassVar[str] = "one block device: IOPS, throughput, utilisation, queue, await"

    name: str
    major: int
    minor: int
    partition: bool = False
    reads_per_s: Optional[float] = None
    writes_per_s: Optional[float] = None
    read_bytes_per_s: Optional[float] = None
    write_bytes_per_s: Optional[float] = None
    #: Δ(ms busy)/Δms: saturates at 100 long before NVMe/SSD/RAID/network volumes do
    util_pct: Optional[float] = None
    avg_queue: Optional[float] = None  # Δ(weighted ms)/Δms, iostat's aqu-sz
    await_ms: Optional[float] = None  # Δ(read+write ms)/Δ(reads+writes); None without I/O
    read_await_ms: Optional[float] = None
    write_await_ms: Optional[float] = None
    in_flight: Optional[int] = None  # gauge at the end of the window
    reads_total: Optional[int] = None
    writes_total: Optional[int] = None
    read_bytes_total: Optional[int] = None
    write_bytes_total: Optional[int] = None
    rotational: Optional[bool] = None  # /sys/block/DEV/queue/rotational
    scheduler: Optional[str] = None  # the selected one ("mq-deadline", "none")
    nr_requests: Optional[int] = None


class FileTable(Fact):
    """The system-wide file table and the fd/inotify limits (/proc/sys/fs)."""

    kind: Literal["file_table"] = "file_table"
    description: ClassVar[str] = "open file handles vs fs.file-max, fs.nr_open, inotify limits"

    allocated: int  # file handles allocated (file-nr field 1)
    max: Optional[int] = None  # fs.file-max (file-nr field 3)
    pct: Optional[float] = None  # allocated / max x 100
    nr_open: Optional[int] = None  # ceiling for RLIMIT_NOFILE
    inotify_max_user_instances: Optional[int] = None
    inotify_max_user_watches: Optional[int] = None


class LockSummary(Fact):
    """Counts over /proc/locks; `blocked == 0` at both ends says no one waits on a lock."""

    kind: Literal["locks"] = "locks"
    description: ClassVar[str] = "file lock counts: held, blocked waiters, contended inodes"

    locks_total: int  # held locks (excluding waiters)
    blocked: int  # waiter lines ("->") at the end of the window
    blocked_first: Optional[int] = None  # at the start of the window
    contended_inodes: int


class LockContention(Fact):
    """One inode that processes queue on: held by one lock, waited on by others."""

    kind: Literal["lock_contention"] = "lock_contention"
    key_fields: ClassVar[tuple[str, ...]] = ("inode",)
    description: ClassVar[str] = "an inode with blocked lock waiters, its holder and waiters"

    inode: str  # "MAJ:MIN:INO" as /proc/locks prints it (major/minor in hex)
    lock_type: Literal["POSIX", "FLOCK", "OFDLCK", "LEASE", "DELEG", "ACCESS", "UNKNOWN"]
    access: Optional[str] = None  # the holder's: READ or WRITE
    holder_pid: Optional[int] = None  # None for OFD locks (the kernel prints -1)
    holders: int = 1
    waiters: int
    waiter_pids: str = ""  # the first few, comma separated
    #: the inode had waiters at both ends of the window (None: one sample only)
    seen_in_both_samples: Optional[bool] = None
