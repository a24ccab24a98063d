"""Shared helpers for the pure `parse_*` functions of the probes.

Parsers raise `ParseError` (a ValueError) whose message names the file and
what is wrong with it; the runner turns it into a `failed` outcome.
"""
from __future__ import annotations

from typing import Optional


class ParseError(ValueError):
    """Text that does not have the format its file should have."""

    def __init__(self, source: str, problem: str):
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


def to_int(value: str, source: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ParseError(source, f"{what}: expected an integer, got {value[:40]!r}") from None


def to_float(value: str, source: str, what: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ParseError(source, f"{what}: expected a number, got {value[:40]!r}") from None


def parse_name_value(text: str, source: str) -> dict[str, int]:
    """Files of `name value` lines with integer values (/proc/vmstat, /proc/net/snmp6)."""
    out: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise ParseError(source, f"line {number}: expected 'name value', got {line[:60]!r}")
        out[parts[0]] = to_int(parts[1], source, parts[0])
    if not out:
        raise ParseError(source, "no counters (empty file)")
    return out


def parse_cpu_list(text: str, source: str = "cpu list") -> list[int]:
    """A kernel CPU list ("0-3,8,10-11", as in /sys/devices/system/cpu/online)."""
    cpus: list[int] = []
    text = text.strip()
    if not text:
        return cpus
    for part in text.split(","):
        lo, sep, hi = part.partition("-")
        first = to_int(lo, source, "cpu list")
        last = to_int(hi, source, "cpu list") if sep else first
        if last < first:
            raise ParseError(source, f"cpu range {part!r} runs backwards")
        cpus.extend(range(first, last + 1))
    return cpus


def first_line(text: Optional[str]) -> Optional[str]:
    """The first line of a one-value file, stripped; None for a missing or empty file."""
    if text is None:
        return None
    line = text.strip().split("\n", 1)[0].strip()
    return line or None


#: Reads of /proc/sys files fail with ENOMEM when asked for more than the kernel will
#: kmalloc for the buffer (4 MB, ProbeContext.read_text's default): ask for less.
SYSCTL_BYTES = 64 << 10
