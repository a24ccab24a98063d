"""/proc/self/mountinfo: what is mounted where (proc(5), "/proc/pid/mountinfo").

    36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    (1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)    (10)        (11)

(7) is zero or more optional fields ended by "-". Paths escape space, tab,
newline and backslash as octal (\\040 \\011 \\012 \\134). Listing mounts from
here never touches the filesystems, so it cannot hang on a dead server.
"""
from __future__ import annotations

import errno
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from sysdiag.facts import Fact, Mount

from ..base import Probe, ProbeContext, ReadError, Unavailable
from ..parse import ParseError, to_int
from ..registry import register_probe

#: filesystems served over a network: statfs blocks while the server does not answer
NETWORK_FS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "9p", "afs", "ncpfs",
    "lustre", "gpfs", "ocfs2", "gfs2", "beegfs", "orangefs", "pvfs2", "davfs", "coda",
    "sshfs",
})
#: no storage behind them (tmpfs is *not* here: it holds real, limited space)
PSEUDO_FS = frozenset({
    "proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "debugfs", "tracefs",
    "securityfs", "pstore", "bpf", "configfs", "fusectl", "binfmt_misc", "autofs",
    "rpc_pipefs", "nsfs", "efivarfs", "selinuxfs", "hugetlbfs", "rootfs", "nfsd",
    "sockfs", "pipefs", "anon_inodefs", "ramfs",
})

#: each fact costs the rule engine ~8 KB (ENGINE-NOTES §6)
MAX_MOUNT_FACTS = 2000

_OCTAL = re.compile(r"\\([0-7]{3})")


def unescape(field: str) -> str:
    r"""Decode the kernel's octal escapes: "/mnt/my\040disk" -> "/mnt/my disk"."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def is_fuse(fstype: str) -> bool:
    return fstype in ("fuse", "fuseblk") or fstype.startswith("fuse.")


@dataclass(frozen=True)
class MountEntry:
    mount_id: int
    parent_id: int
    dev: str
    root: str
    mountpoint: str
    options: str
    optional: tuple[str, ...]
    fstype: str
    device: str
    super_options: str

    @property
    def read_only(self) -> bool:
        # ext4 errors=remount-ro flips the superblock to ro; the per-mount flags stay rw
        return "ro" in self.options.split(",") or "ro" in self.super_options.split(",")

    @property
    def network_fs(self) -> bool:
        # "fuse.sshfs": a FUSE daemon that talks to a server
        return self.fstype in NETWORK_FS or self.fstype.rsplit(".", 1)[-1] in NETWORK_FS

    @property
    def fuse(self) -> bool:
        return is_fuse(self.fstype)

    @property
    def pseudo(self) -> bool:
        return self.fstype in PSEUDO_FS


def parse_mountinfo_line(line: str, source: str = "/proc/self/mountinfo") -> MountEntry:
    head, sep, tail = line.partition(" - ")
    if not sep:
        raise ParseError(source, f"no ' - ' separator in {line[:100]!r}")
    fields = head.split()
    if len(fields) < 6:
        raise ParseError(source, f"expected at least 6 fields before ' - ', got {line[:100]!r}")
    # after the separator: fstype, device, super options; the device may be an
    # empty string (mount -t tmpfs "" /x), so split on single spaces
    rest = tail.rstrip("\n").split(" ")
    if len(rest) != 3:
        rest = tail.split()
        if len(rest) == 2:  # empty device and doubled spaces collapsed
            rest = [rest[0], "", rest[1]]
        if len(rest) != 3:
            raise ParseError(source, f"expected 'fstype device options' after ' - ', "
                                     f"got {tail[:100]!r}")
    return MountEntry(
        mount_id=to_int(fields[0], source, "mount id"),
        parent_id=to_int(fields[1], source, "parent id"),
        dev=fields[2],
        root=unescape(fields[3]),
        mountpoint=unescape(fields[4]),
        options=fields[5],
        optional=tuple(fields[6:]),
        fstype=unescape(rest[0]),
        device=unescape(rest[1]),
        super_options=unescape(rest[2]),
    )


def parse_mountinfo(text: str, source: str = "/proc/self/mountinfo",
                    on_error: Optional[Callable[[str], None]] = None) -> list[MountEntry]:
    """Parse every line. A malformed line raises ParseError, or, with `on_error`,
    is reported there and skipped."""
    mounts = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            mounts.append(parse_mountinfo_line(line, f"{source} line {number}"))
        except ParseError as err:
            if on_error is None:
                raise
            on_error(str(err))
    return mounts


def mountinfo_paths(ctx: ProbeContext) -> list[Path]:
    """The mountinfo files to try, best first. Live: our own. In a captured tree
    proc/self may be a link, a directory, or (ttar) a file holding the pid; then pid 1."""
    self_path = ctx.proc("self")
    candidates = [ctx.proc("self", "mountinfo")]
    if not ctx.live and self_path.is_file() and not self_path.is_symlink():
        pid = ctx.read_text(self_path, max_bytes=64).strip()
        if pid.isdigit():
            candidates.append(ctx.proc(pid, "mountinfo"))
    candidates.append(ctx.proc(1, "mountinfo"))
    return candidates


def read_mountinfo(ctx: ProbeContext, on_error: Optional[Callable[[str], None]] = None
                   ) -> tuple[str, list[MountEntry]]:
    """(the file read, its mounts). Raises Unavailable when no mountinfo exists."""
    tried = []
    for path in mountinfo_paths(ctx):
        try:
            text = ctx.read_text(path)
        except (FileNotFoundError, NotADirectoryError):
            tried.append(str(path))
            continue
        except ReadError as err:
            if err.errno != errno.EXDEV:
                raise
            tried.append(f"{path} (leads out of the captured tree)")
            continue
        return str(path), parse_mountinfo(text, str(path), on_error)
    raise Unavailable(f"no mountinfo found (tried {', '.join(tried)})")


def mount_fact(source: str, entry: MountEntry) -> Mount:
    return Mount(
        source=source, mount_id=entry.mount_id, parent_id=entry.parent_id, dev=entry.dev,
        root=entry.root, mountpoint=entry.mountpoint, fstype=entry.fstype,
        device=entry.device or None, options=entry.options,
        super_options=entry.super_options, read_only=entry.read_only,
        network_fs=entry.network_fs, fuse=entry.fuse, pseudo=entry.pseudo)


@register_probe
class MountsProbe(Probe):
    name = "mounts"
    provides = ("mount",)
    description = "mounted filesystems, their types and options (/proc/self/mountinfo)"
    sampled = False

    def sample(self, ctx: ProbeContext) -> tuple[str, list[MountEntry]]:
        return read_mountinfo(ctx, self.warn)

    def facts(self, ctx: ProbeContext, first: object, last: tuple[str, list[MountEntry]],
              elapsed_s: Optional[float]) -> list[Fact]:
        source, entries = last
        if len(entries) > MAX_MOUNT_FACTS:
            # container hosts can have tens of thousands (overlays, nsfs, shm...);
            # mounts with storage behind them go first
            self.warn(f"{len(entries)} mounts: reporting {MAX_MOUNT_FACTS}, pseudo "
                      "filesystems last")
            entries = sorted(entries, key=lambda e: e.pseudo)[:MAX_MOUNT_FACTS]
        return [mount_fact(source, entry) for entry in entries]
