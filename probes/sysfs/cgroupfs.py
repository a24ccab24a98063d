"""Parsers for cgroup files (v1 and v2) and the layout of the cgroup mounts
(KNOWLEDGE.md §2.11; Documentation/admin-guide/cgroup-v2.rst and cgroup-v1/).

Layouts:
- v2 ("unified"): one cgroup2 tree at /sys/fs/cgroup (it has cgroup.controllers);
- v1: a tmpfs at /sys/fs/cgroup with one directory per controller hierarchy
  (cpu, memory, pids, blkio, freezer, cpuset; "cpu" is often a link to "cpu,cpuacct");
- hybrid: v1 plus a controller-less cgroup2 at /sys/fs/cgroup/unified, which
  still has the per-cgroup pressure files.
"""
from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..base import ProbeContext, ReadError, Unavailable
from ..parse import ParseError, first_line, to_int

#: the v1 hierarchies the probe reads, by controller
V1_CONTROLLERS = ("cpu", "memory", "pids", "blkio", "freezer", "cpuset")
#: v1 memory (and others) print "no limit" as a huge page-aligned number
#: (PAGE_COUNTER_MAX x PAGE_SIZE = 9223372036854771712 on x86_64); anything
#: from 2^62 bytes up is no real limit
UNLIMITED_FROM = 1 << 62
#: the key of the v2 line ("0::/path") in parse_proc_cgroup's result
UNIFIED = ""


def parse_proc_cgroup(text: str, source: str = "/proc/PID/cgroup") -> dict[str, str]:
    """/proc/PID/cgroup -> controller -> cgroup path.

    "hierarchy-ID:controller-list:path" per line. v2 is "0::/path" (key "" =
    UNIFIED); v1 lines list controllers ("4:cpu,cpuacct:/x" gives "cpu" and
    "cpuacct") or a named hierarchy ("1:name=systemd:/").

    >>> parse_proc_cgroup("4:cpu,cpuacct:/a\\n0::/b\\n")
    {'cpu': '/a', 'cpuacct': '/a', '': '/b'}
    """
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(":", 2)  # the path itself may hold ':'
        if len(parts) != 3 or not parts[0].isdigit() or not parts[2].startswith("/"):
            raise ParseError(source, f"line {number}: expected 'ID:controllers:/path', "
                                     f"got {line[:100]!r}")
        path = parts[2].removesuffix(" (deleted)")
        if parts[1] == "":
            out[UNIFIED] = path
        for controller in filter(None, parts[1].split(",")):
            out[controller] = path
    return out


def parse_keyed(text: str, source: str) -> dict[str, int]:
    """Flat "key value" files: cpu.stat, memory.events, pids.events, memory.oom_control,
    memory.stat. Lines that do not hold one integer value are skipped (newer
    kernels add keys; none of ours has another shape)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].lstrip("-").isdigit():
            out[fields[0]] = int(fields[1])
    if text.strip() and not out:
        raise ParseError(source, f"expected 'key value' lines, got {text.strip()[:80]!r}")
    return out


def parse_limit(text: Optional[str], source: str) -> Optional[int]:
    """A limit file: "max" (v2), -1 (v1 cpu quota) or a huge sentinel -> None (no limit)."""
    line = first_line(text)
    if line is None or line == "max":
        return None
    value = to_int(line, source, "limit")
    return None if value < 0 or value >= UNLIMITED_FROM else value


def parse_cpu_max(text: str, source: str = "cpu.max") -> tuple[Optional[int], int]:
    """v2 cpu.max "QUOTA PERIOD" (µs) -> (quota or None for "max", period)."""
    fields = text.split()
    if len(fields) != 2:
        raise ParseError(source, f"expected 'QUOTA PERIOD', got {text.strip()[:80]!r}")
    period = to_int(fields[1], source, "period")
    return (None if fields[0] == "max" else to_int(fields[0], source, "quota")), period


def parse_io_max(text: str, source: str = "io.max") -> list[str]:
    """v2 io.max lines ("8:0 rbps=max wbps=1048576 riops=max wiops=max") that set
    at least one limit, shortened to the limits set ("8:0 wbps=1048576")."""
    rules = []
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if ":" not in fields[0] or any("=" not in f for f in fields[1:]):
            raise ParseError(source, f"expected 'MAJ:MIN key=value...', got {line[:80]!r}")
        limits = [f for f in fields[1:] if f.split("=", 1)[1] != "max"]
        if limits:
            rules.append(" ".join([fields[0], *limits]))
    return rules


def parse_blkio_throttle(text: str, name: str, source: str) -> list[str]:
    """v1 blkio.throttle.{read,write}_{bps,iops}_device: "8:0 1048576" lines ->
    "8:0 write_bps=1048576"."""
    rules = []
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or ":" not in fields[0]:
            raise ParseError(source, f"expected 'MAJ:MIN VALUE', got {line[:80]!r}")
        rules.append(f"{fields[0]} {name}={to_int(fields[1], source, name)}")
    return rules


def parse_pressure_avg10(text: str, source: str) -> dict[str, float]:
    """cgroup *.pressure -> {"some": avg10, "full": avg10} (same format as /proc/pressure)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] not in ("some", "full"):
            raise ParseError(source, f"line should start with 'some' or 'full', got {line[:60]!r}")
        for pair in fields[1:]:
            key, _, value = pair.partition("=")
            if key == "avg10":
                try:
                    out[fields[0]] = float(value)
                except ValueError:
                    raise ParseError(source, f"avg10: expected a number, got {value!r}") from None
    return out


@dataclass
class Layout:
    version: int  # 1 or 2
    #: v2: {UNIFIED: root}; v1: controller -> the root of its hierarchy
    roots: dict[str, Path]
    #: the cgroup2 tree of a hybrid layout (pressure files only)
    unified: Optional[Path] = None
    base: Path = field(default_factory=Path)


def _usable_dir(ctx: ProbeContext, path: Path) -> bool:
    try:
        ctx.check_inside_root(path)
    except ReadError:
        return False
    return (path / "cgroup.procs").is_file()


def detect_layout(ctx: ProbeContext) -> Layout:
    """Which cgroup version the host runs and where each hierarchy is."""
    base = ctx.sys("fs", "cgroup")
    if (base / "cgroup.controllers").is_file():
        return Layout(version=2, roots={UNIFIED: base}, base=base)
    roots: dict[str, Path] = {}
    for controller in V1_CONTROLLERS:
        if _usable_dir(ctx, base / controller):
            roots[controller] = base / controller
    try:
        names = sorted(os.listdir(base))
    except OSError:
        names = []
    for name in names:  # "cpu,cpuacct" without its "cpu" link (captured trees)
        for controller in name.split(","):
            if (controller in V1_CONTROLLERS and controller not in roots
                    and _usable_dir(ctx, base / name)):
                roots[controller] = base / name
    roots = {c: roots[c] for c in V1_CONTROLLERS if c in roots}  # a stable order
    unified = base / "unified" if _usable_dir(ctx, base / "unified") else None
    if roots:
        return Layout(version=1, roots=roots, unified=unified, base=base)
    if unified is not None:  # a cgroup2 tree mounted only at unified/
        return Layout(version=2, roots={UNIFIED: unified}, base=base)
    if not base.is_dir():
        raise Unavailable(f"{base} does not exist: no cgroup filesystem mounted "
                          "(or not in this captured tree)")
    raise Unavailable(f"{base} holds neither a cgroup2 tree (cgroup.controllers) nor "
                      "v1 controller hierarchies (cpu/, memory/...)")


def rel_to_path(root: Path, rel: str) -> Path:
    """"/a/b" under a hierarchy root; "/" is the root itself."""
    parts = [p for p in rel.split("/") if p]
    return root.joinpath(*parts)


def walk(root: Path, budget: int) -> tuple[list[str], bool]:
    """Cgroup paths ("/", "/a", "/a/b"...) under `root`, breadth first, at most
    `budget` directories; (paths, truncated). Symlinks are never followed."""
    out: list[str] = []
    todo: deque[tuple[Path, str]] = deque([(root, "/")])
    while todo:
        if len(out) >= budget:
            return out, True
        directory, rel = todo.popleft()
        out.append(rel)
        try:
            with os.scandir(directory) as entries:
                children = sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
        except OSError:
            continue  # removed while we walked
        for name in children:
            todo.append((directory / name, rel.rstrip("/") + "/" + name))
    return out, False
