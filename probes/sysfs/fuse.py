"""FUSE connections: requests waiting on each user-space daemon (KNOWLEDGE.md §5.E
`io-userspace-fs-unresponsive`).

/sys/fs/fuse/connections is where the fusectl filesystem is mounted; each
connection is a directory named after the device number of the FUSE superblock,
with `waiting` (requests queued for or being handled by the daemon),
`max_background` and `congestion_threshold` (and `abort`, never touched). The
name is the kernel's internal dev_t, major << 20 | minor: for `fuse` mounts the
major is 0 and the name is the minor of mountinfo's "0:N"; `fuseblk` mounts carry
their block device's number. The directories are mode 0500, owned by whoever
mounted the filesystem: other users cannot read them.

Reading these files never talks to a daemon, so it cannot hang. A count that
stays above zero at both ends of the window means requests are not draining.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from sysdiag.facts import Fact, FuseConnection

from ..base import Probe, ProbeContext, Unavailable
from ..parse import first_line, to_int
from ..registry import register_probe
from ..procfs.mounts import MountEntry, read_mountinfo

MINORBITS = 20
MAX_CONNECTIONS = 1000
NOT_MOUNTED = ("fusectl is not mounted on {path}, so FUSE request counts are not visible "
               "(as root: mount -t fusectl none {path})")


def conn_device(conn: int) -> str:
    """The mountinfo "MAJ:MIN" of connection N.

    >>> conn_device(39), conn_device((8 << 20) | 17)
    ('0:39', '8:17')
    """
    return f"{conn >> MINORBITS}:{conn & ((1 << MINORBITS) - 1)}"


def parse_counter(text: Optional[str], source: str) -> Optional[int]:
    line = first_line(text)
    return to_int(line, source, "value") if line is not None else None


@dataclass
class ConnReading:
    conn: int
    waiting: int
    max_background: Optional[int] = None
    congestion_threshold: Optional[int] = None


@dataclass
class FuseReading:
    conns: dict[int, ConnReading] = field(default_factory=dict)
    mounts: dict[str, MountEntry] = field(default_factory=dict)  # "MAJ:MIN" -> fuse mount
    unreadable: int = 0


@register_probe
class FuseProbe(Probe):
    name = "fuse"
    provides = ("fuse_connection",)
    description = ("FUSE connections: requests waiting on each daemon, at both ends of the "
                   "window (/sys/fs/fuse/connections)")

    def sample(self, ctx: ProbeContext) -> FuseReading:
        reading = FuseReading()
        _, entries = read_mountinfo(ctx, self._warn_once)
        fusectl = any(e.fstype == "fusectl" for e in entries)
        for entry in entries:
            if entry.fuse:
                reading.mounts[entry.dev] = entry
        base = ctx.sys("fs", "fuse", "connections")
        try:
            ctx.check_inside_root(base)
            names = sorted((n for n in os.listdir(base) if n.isdigit()), key=int)
        except (FileNotFoundError, NotADirectoryError):
            if reading.mounts:
                raise Unavailable(f"{base} does not exist, though FUSE filesystems are "
                                  "mounted (a sysfs tree without it?)") from None
            return reading  # no FUSE here at all
        if not names and reading.mounts and not fusectl:
            raise Unavailable(NOT_MOUNTED.format(path=base))
        for name in names[:MAX_CONNECTIONS]:
            conn = int(name)
            try:
                waiting = parse_counter(ctx.read_optional(base / name / "waiting"),
                                        f"{base}/{name}/waiting")
            except PermissionError:
                reading.unreadable += 1
                continue
            if waiting is None:
                continue  # the connection went away
            item = ConnReading(conn=conn, waiting=waiting)
            for key in ("max_background", "congestion_threshold"):
                try:
                    value = parse_counter(ctx.read_optional(base / name / key),
                                          f"{base}/{name}/{key}")
                except PermissionError:
                    value = None
                setattr(item, key, value)
            reading.conns[conn] = item
        if reading.unreadable and not reading.conns:
            raise Unavailable(f"needs root: the {reading.unreadable} FUSE connections in "
                              f"{base} are readable only by the user who mounted them")
        return reading

    def _warn_once(self, message: str) -> None:
        if message not in self.warnings:  # sample() runs twice
            self.warn(message)

    def facts(self, ctx: ProbeContext, first: Optional[FuseReading], last: FuseReading,
              elapsed_s: Optional[float]) -> list[Fact]:
        if last.unreadable:
            self.warn(f"{last.unreadable} FUSE connections not readable (permission denied; "
                      "run as root to see them all)")
        base = ctx.sys("fs", "fuse", "connections")
        out: list[Fact] = []
        for conn, now in sorted(last.conns.items()):
            before = first.conns.get(conn) if first is not None else None
            mount = last.mounts.get(conn_device(conn))
            out.append(FuseConnection(
                source=f"{base}/{conn}", conn=conn,
                mountpoint=mount.mountpoint if mount else None,
                fstype=mount.fstype if mount else None,
                device=(mount.device or None) if mount else None,
                waiting=now.waiting,
                waiting_first=before.waiting if before is not None else None,
                waiting_stable=(before.waiting > 0 and now.waiting > 0)
                if before is not None else None,
                max_background=now.max_background,
                congestion_threshold=now.congestion_threshold))
        return out
