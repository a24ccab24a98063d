"""/proc/sys/fs/file-nr and the fd/inotify limits next to it (KNOWLEDGE.md §5.D, §5.E).

file-nr is "allocated  free  max": since 2.6 the middle field is always 0
(freed handles go straight back to the slab), and max equals fs.file-max.
When allocated reaches max, open() fails with ENFILE for everyone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from sysdiag.facts import Fact, FileTable

from ..base import Probe, ProbeContext, Unavailable, pct
from ..parse import ParseError, first_line, to_int
from ..registry import register_probe


@dataclass(frozen=True)
class FileNr:
    allocated: int
    free: int
    max: int


def parse_file_nr(text: str, source: str = "/proc/sys/fs/file-nr") -> FileNr:
    """Parse "1184\\t0\\t9223372036854775807".

    >>> parse_file_nr("521\\t0\\t2466177\\n").max
    2466177
    """
    fields = text.split()
    if len(fields) != 3:
        raise ParseError(source, f"expected 'allocated free max', got {text.strip()[:80]!r}")
    return FileNr(*(to_int(value, source, what)
                    for value, what in zip(fields, ("allocated", "free", "max"))))


def parse_sysctl_int(text: Optional[str], source: str) -> Optional[int]:
    """A one-number /proc/sys file; None when the file is missing."""
    line = first_line(text)
    if line is None:
        return None
    return to_int(line, source, "value")


@register_probe
class FileNrProbe(Probe):
    name = "file-nr"
    provides = ("file_table",)
    description = "open file handles vs fs.file-max, fs.nr_open, inotify limits (/proc/sys/fs)"
    sampled = False

    def sample(self, ctx: ProbeContext) -> dict[str, Optional[int]]:
        path = ctx.proc("sys", "fs", "file-nr")
        text = ctx.read_optional(path)
        if text is None:
            raise Unavailable(f"{path} does not exist (no /proc/sys/fs in this tree)")
        file_nr = parse_file_nr(text, str(path))
        values: dict[str, Optional[int]] = {"allocated": file_nr.allocated, "max": file_nr.max}
        for field, parts in (("nr_open", ("nr_open",)),
                             ("inotify_max_user_instances", ("inotify", "max_user_instances")),
                             ("inotify_max_user_watches", ("inotify", "max_user_watches"))):
            other = ctx.proc("sys", "fs", *parts)
            values[field] = parse_sysctl_int(ctx.read_optional(other), str(other))
        return values

    def facts(self, ctx: ProbeContext, first: object, last: dict[str, Optional[int]],
              elapsed_s: Optional[float]) -> list[Fact]:
        return [FileTable(source=str(ctx.proc("sys", "fs", "file-nr")),
                          pct=pct(last["allocated"], last["max"]), **last)]
