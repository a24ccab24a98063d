"""/proc/locks: file locks held, and the requests blocked behind them (fs/locks.c).

    1: POSIX  ADVISORY  WRITE 538 00:2b:3670 0 EOF
    1: -> POSIX  ADVISORY  WRITE 541 00:2b:3670 0 EOF
    2: FLOCK  ADVISORY  WRITE 1000 fd:01:5678 0 EOF
    3: OFDLCK ADVISORY  READ  -1 00:06:9 0 EOF

A "->" line is a request blocked by the lock with the same number listed above
it (waiters of waiters get more indentation). Device numbers are printed in hex,
the inode in decimal; OFD locks belong to an open file, not a process, so their
pid is -1. The columns are read from the right: the middle ones vary (LEASE
lines have ACTIVE/BREAKING/BREAKER, old kernels MANDATORY, no inode "*NOINODE*").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from sysdiag.facts import Fact, LockContention, LockSummary

from ..base import Probe, ProbeContext, Unavailable
from ..parse import ParseError, to_int
from ..registry import register_probe

LOCK_TYPES = ("POSIX", "FLOCK", "OFDLCK", "LEASE", "DELEG", "ACCESS", "UNKNOWN")
MAX_WAITER_PIDS = 5


@dataclass(frozen=True)
class LockEntry:
    number: int  # the line's "N:"; a blocked request repeats its blocker's number
    blocked: bool
    lock_type: str
    access: str  # READ, WRITE, UNLCK
    pid: Optional[int]  # None for OFD locks (-1)
    inode: str  # "MAJ:MIN:INO"; "<none>:0" without inode


def parse_locks_line(line: str, source: str = "/proc/locks") -> LockEntry:
    fields = line.split()
    if len(fields) < 7 or not fields[0].endswith(":"):
        raise ParseError(source, f"expected 'N: TYPE ... ACCESS PID DEV:INODE START END', "
                                 f"got {line.strip()[:100]!r}")
    number = to_int(fields[0][:-1], source, "lock number")
    rest = fields[1:]
    blocked = False
    while rest and rest[0] == "->":
        blocked = True
        rest = rest[1:]
    if len(rest) < 6 or rest[0] not in LOCK_TYPES:
        raise ParseError(source, f"unknown lock line {line.strip()[:100]!r}")
    pid = to_int(rest[-4], source, "pid")
    return LockEntry(number=number, blocked=blocked, lock_type=rest[0], access=rest[-5],
                     pid=pid if pid > 0 else None, inode=rest[-3])


def parse_locks(text: str, source: str = "/proc/locks",
                on_error: Optional[Callable[[str], None]] = None) -> list[LockEntry]:
    """Every lock and blocked request, in file order. A malformed line raises
    ParseError, or, with `on_error`, is reported there and skipped."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(parse_locks_line(line, f"{source} line {number}"))
        except ParseError as err:
            if on_error is None:
                raise
            on_error(str(err))
    return out


@dataclass
class Contention:
    inode: str
    holders: list[LockEntry]
    waiters: list[LockEntry]


def contentions(entries: list[LockEntry]) -> dict[str, Contention]:
    """inode -> its holders and blocked waiters, for inodes with at least one waiter.
    A waiter belongs to the inode of the held lock with its number."""
    held_by_number: dict[int, LockEntry] = {}
    holders: dict[str, list[LockEntry]] = {}
    out: dict[str, Contention] = {}
    for entry in entries:
        if not entry.blocked:
            held_by_number[entry.number] = entry
            holders.setdefault(entry.inode, []).append(entry)
            continue
        blocker = held_by_number.get(entry.number)
        inode = blocker.inode if blocker is not None else entry.inode
        item = out.setdefault(inode, Contention(inode, [], []))
        item.waiters.append(entry)
    for inode, item in out.items():
        item.holders = holders.get(inode, [])
    return out


def contention_fact(source: str, item: Contention,
                    before: Optional[dict[str, Contention]]) -> LockContention:
    holder = item.holders[0] if item.holders else None
    pids = [str(w.pid) for w in item.waiters if w.pid is not None]
    return LockContention(
        source=source, inode=item.inode,
        lock_type=(holder or item.waiters[0]).lock_type,
        access=holder.access if holder else None,
        holder_pid=holder.pid if holder else None,
        holders=len(item.holders), waiters=len(item.waiters),
        waiter_pids=",".join(pids[:MAX_WAITER_PIDS]) + ("..." if len(pids) > MAX_WAITER_PIDS
                                                        else ""),
        seen_in_both_samples=None if before is None else item.inode in before)


@register_probe
class LocksProbe(Probe):
    name = "locks"
    provides = ("locks", "lock_contention")
    description = "file locks and the processes queued behind them (/proc/locks)"

    def sample(self, ctx: ProbeContext) -> list[LockEntry]:
        path = ctx.proc("locks")
        text = ctx.read_optional(path)
        if text is None:
            raise Unavailable(f"{path} does not exist (kernel without CONFIG_FILE_LOCKING, "
                              "or not in this captured tree)")
        return parse_locks(text, str(path), self._warn_once)

    def _warn_once(self, message: str) -> None:
        if message not in self.warnings:  # sample() runs twice
            self.warn(message)

    def facts(self, ctx: ProbeContext, first: Optional[list[LockEntry]],
              last: list[LockEntry], elapsed_s: Optional[float]) -> list[Fact]:
        source = str(ctx.proc("locks"))
        now = contentions(last)
        before = contentions(first) if first is not None else None
        out: list[Fact] = [LockSummary(
            source=source, locks_total=sum(1 for e in last if not e.blocked),
            blocked=sum(1 for e in last if e.blocked),
            blocked_first=None if first is None else sum(1 for e in first if e.blocked),
            contended_inodes=len(now))]
        out.extend(contention_fact(source, item, before) for item in now.values())
        return out
