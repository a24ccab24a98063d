"""Tracepoint format files: where tracefs is, which fields an event has, and the
symbolic tables the kernel prints them with.

The numbering of kernel enums such as `enum skb_drop_reason` changes from one
kernel to the next, so sysdiag never carries a copy: it reads the table from the
event's `print fmt` (`__print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, ...)`)
on the running kernel. The same goes for the task-state bits of `sched_switch`
(`__print_flags(REC->prev_state ..., { 0x00000002, "D" }, ...)`).

    >>> fmt = parse_format('name: x\\nID: 7\\nformat:\\n\\tfield:int pid;\\toffset:8;\\tsize:4;\\tsigned:1;\\n\\n'
    ...                    'print fmt: "r=%s", __print_symbolic(REC->r, { 2, "A" }, { 3, "B" })')
    >>> fmt.fields["pid"], symbolic_table(fmt.print_fmt, "r")
    ('int pid', {2: 'A', 3: 'B'})
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..base import ProbeContext
from ..parse import ParseError

#: where tracefs may be mounted, relative to the sys root: its own mount point (4.1+),
#: then the legacy place inside debugfs (bcc looks there first)
TRACEFS_PLACES = ("kernel/tracing", "kernel/debug/tracing")

MOUNT_HINT = ("mount it with `mount -t tracefs nodev /sys/kernel/tracing` "
              "(sysdiag never mounts anything itself)")


@dataclass(frozen=True)
class EventFormat:
    name: str
    event_id: Optional[int]
    #: field name -> its C declaration without the name's array suffix ("int pid", "char comm[16]")
    fields: dict[str, str] = field(default_factory=dict)
    print_fmt: str = ""


_FIELD = re.compile(r"^\s*field:(?P<decl>[^;]+);\s*offset:\d+;\s*size:\d+;")


def parse_format(text: str, source: str = "format") -> EventFormat:
    """Parse a tracepoint `format` file (name, ID, fields, print fmt)."""
    name, event_id, fields, print_fmt = "", None, {}, ""
    for line in text.splitlines():
        if line.startswith("name:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("ID:"):
            value = line.split(":", 1)[1].strip()
            if not value.isdigit():
                raise ParseError(source, f"ID is not a number: {value!r}")
            event_id = int(value)
        elif line.startswith("print fmt:"):
            print_fmt = line.split(":", 1)[1].strip()
        else:
            m = _FIELD.match(line)
            if m:
                decl = m.group("decl").strip()
                fname = re.sub(r"\[.*\]$", "", decl.split()[-1])
                fields[fname] = decl
    if not name or not fields:
        raise ParseError(source, "not a tracepoint format file (no `name:` or no fields)")
    return EventFormat(name=name, event_id=event_id, fields=fields, print_fmt=print_fmt)


_ENTRY = re.compile(r"\{\s*([^,{}]+?)\s*,\s*\"([^\"]*)\"\s*\}")


def _table_after(print_fmt: str, start: int) -> str:
    """The text of the `{...}, {...}` list that starts at `start`, up to its closing paren."""
    depth, i = 1, start
    while i < len(print_fmt) and depth:
        ch = print_fmt[i]
        depth += ch == "("
        depth -= ch == ")"
        i += 1
    return print_fmt[start:i]


def _entries(text: str) -> list[tuple[str, str]]:
    return [(k.strip(), v) for k, v in _ENTRY.findall(text)]


def symbolic_table(print_fmt: str, field_name: str) -> dict[int, str]:
    """value -> name of `__print_symbolic(REC-><field_name>, {N, "NAME"}, ...)`.
    Entries whose key is a C constant, not a number, are left out (see symbolic_names)."""
    out = {}
    for key, value in symbolic_entries(print_fmt, field_name):
        try:
            out[int(key, 0)] = value
        except ValueError:
            continue
    return out


def symbolic_entries(print_fmt: str, field_name: str) -> list[tuple[str, str]]:
    """The raw (key, name) pairs of the symbolic table of `field_name`, keys as printed."""
    m = re.search(r"__print_symbolic\(\s*REC->" + re.escape(field_name) + r"\s*,", print_fmt)
    if not m:
        return []
    return _entries(_table_after(print_fmt, m.end()))


def flag_table(print_fmt: str, field_name: str) -> dict[int, str]:
    """bit -> name of the first `__print_flags(REC-><field_name> ..., "sep", {0x1, "S"}, ...)`."""
    m = re.search(r"__print_flags\(\s*REC->" + re.escape(field_name) + r"\b", print_fmt)
    if not m:
        return {}
    out = {}
    for key, value in _entries(_table_after(print_fmt, m.end())):
        try:
            out[int(key, 0)] = value
        except ValueError:
            continue
    return out


def find_tracefs(ctx: ProbeContext) -> Optional[Path]:
    """The tracefs directory (one that has `events/`), or None when it is not mounted."""
    for place in TRACEFS_PLACES:
        path = ctx.sys(place)
        if (path / "events").is_dir():
            return path
    return None


def read_event_format(ctx: ProbeContext, tracefs: Path, event: str) -> Optional[EventFormat]:
    """The format of "system:event", or None when this kernel has no such tracepoint."""
    system, _, name = event.partition(":")
    path = tracefs / "events" / system / name / "format"
    text = ctx.read_optional(path)
    if text is None:
        return None
    return parse_format(text, str(path))
