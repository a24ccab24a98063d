"""How many CPUs are online, from whichever source the tree has.

Shared by the host, cpu and loadavg probes. Order: sysfs `cpu/online` (the
kernel's own list), the `cpuN` lines of /proc/stat (one per online CPU), the
`processor` lines of /proc/cpuinfo.
"""
from __future__ import annotations

import re
from typing import Optional

from ..base import ProbeContext
from ..parse import SYSCTL_BYTES, ParseError, parse_cpu_list

_STAT_CPU = re.compile(r"^cpu\d+ ", re.MULTILINE)
_CPUINFO_PROCESSOR = re.compile(r"^processor\s*:", re.MULTILINE)


def online_cpu_count(ctx: ProbeContext) -> Optional[int]:
    """Online CPUs, or None when no source in the tree says."""
    path = ctx.sys("devices", "system", "cpu", "online")
    try:
        text: Optional[str] = ctx.read_text(path, SYSCTL_BYTES)
    except OSError:
        text = None  # no sysfs in this tree: fall back to /proc below
    cpus: list[int] = []
    if text and text.strip():
        try:
            cpus = parse_cpu_list(text, str(path))
        except ParseError:
            cpus = []  # garbled: /proc/stat, which every kernel has, decides
    if cpus:
        return len(cpus)
    for name, pattern in (("stat", _STAT_CPU), ("cpuinfo", _CPUINFO_PROCESSOR)):
        try:
            text = ctx.read_optional(ctx.proc(name))
        except OSError:
            continue
        if text:
            count = len(pattern.findall(text))
            if count:
                return count
    return None
