"""The kernel log from /dev/kmsg, matched against known signatures (KNOWLEDGE.md §3).

/dev/kmsg is read non-blocking: every read() returns one record
"prio,seq,usec,flags;message\\n" plus optional " KEY=value" continuation
lines, EAGAIN means the end, EPIPE means records were overwritten while we
read (the next read continues with the oldest one left). Reading needs root
(CAP_SYSLOG) or kernel.dmesg_restrict=0. No dmesg or journalctl subprocess.

Record timestamps are µs of the kernel's local clock, the same clock as
CLOCK_MONOTONIC here, so "in the window" and "how long ago" compare against
time.clock_gettime(CLOCK_MONOTONIC).
"""
from __future__ import annotations

import errno
import os
import re
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from sysdiag.facts import Fact, KernelLogEvent

from ..base import Probe, ProbeContext, Unavailable
from ..parse import ParseError
from ..registry import register_probe
from .signatures import EXAMPLE_CHARS, match_message, parse_oom_context

KMSG = "/dev/kmsg"
RECENT_S = 15 * 60
#: bounds: the ring buffer holds at most a few MB; stop reading past these
MAX_RECORDS = 200_000
MAX_READ_S = 2.0
RECORD_BYTES = 16 << 10


@dataclass(frozen=True)
class LogRecord:
    seq: Optional[int]
    ts_s: Optional[float]  # seconds since boot (kernel local clock)
    level: Optional[int]
    message: str
    #: syslog facility; 0 = the kernel. Root can write lines into /dev/kmsg (systemd
    #: does, as facility 3): those are not kernel events and are never matched.
    facility: Optional[int] = None


def parse_kmsg_record(raw: str, source: str = KMSG) -> LogRecord:
    """One /dev/kmsg record: "6,339,465834,-;message" (continuation lines dropped).

    >>> parse_kmsg_record("6,339,465834,-;page_reporting_drain_all: err=0\\n").ts_s
    0.465834
    """
    header, sep, rest = raw.partition(";")
    fields = header.split(",")
    if not sep or len(fields) < 4:
        raise ParseError(source, f"record without 'prio,seq,usec,flags;' header: {raw[:60]!r}")
    try:
        prio, seq, usec = int(fields[0]), int(fields[1]), int(fields[2])
    except ValueError:
        raise ParseError(source, f"record header is not numeric: {header[:60]!r}") from None
    return LogRecord(seq=seq, ts_s=usec / 1e6, level=prio & 7, facility=prio >> 3,
                     message=rest.split("\n", 1)[0])


_DMESG_LINE = re.compile(r"^\[\s*(?P<ts>\d+\.\d+)\]\s?(?P<msg>.*)$")


def parse_dmesg_line(line: str, source: str = "dmesg") -> LogRecord:
    """A `dmesg` line "[   12.345678] message" (no timestamp is allowed: ts None)."""
    m = _DMESG_LINE.match(line)
    if m:
        return LogRecord(seq=None, ts_s=float(m.group("ts")), level=None, message=m.group("msg"))
    if line.startswith("["):
        raise ParseError(source, f"line starts with '[' but has no '[seconds.micro]' "
                                 f"timestamp: {line[:60]!r}")
    return LogRecord(seq=None, ts_s=None, level=None, message=line)


@dataclass
class _Group:
    signature: str
    subject: str
    count: int = 0
    first_seen_s: Optional[float] = None
    last_seen_s: Optional[float] = None
    pid: Optional[int] = None
    comm: Optional[str] = None
    device: Optional[str] = None
    cgroup: Optional[str] = None
    task_memcg: Optional[str] = None
    constraint: Optional[str] = None
    order: Optional[int] = None
    example: Optional[str] = None


def group_events(records: Iterable[LogRecord], now_s: Optional[float],
                 window_start_s: Optional[float], source: str = KMSG,
                 recent_s: float = RECENT_S) -> list[KernelLogEvent]:
    """Match records against the signatures and group them by (signature, subject).

    `now_s` and `window_start_s` are on the records' clock (seconds since boot);
    None when unknown (then no age, and nothing is "in the window")."""
    groups: dict[tuple[str, str], _Group] = {}

    def add(m, record: LogRecord, context: Optional[dict[str, str]] = None) -> None:
        """Count one matched line; `context` is the "oom-kill:constraint=..." line of its
        OOM report, when it belongs to this very line."""
        subject, cgroup, constraint, task_memcg = m.subject, m.cgroup, m.constraint, None
        if context:
            constraint = context.get("constraint")
            task_memcg = context.get("task_memcg")
            # the cgroup whose limit was hit; a global OOM has none (its victim's cgroup
            # is only task_memcg)
            if constraint == "CONSTRAINT_MEMCG" and context.get("oom_memcg"):
                cgroup = subject = context["oom_memcg"]
        g = groups.setdefault((m.signature, subject), _Group(m.signature, subject))
        g.count += 1
        if record.ts_s is not None:
            if g.first_seen_s is None:
                g.first_seen_s = record.ts_s
            g.last_seen_s = record.ts_s
        # the latest line's details win
        g.pid = m.pid if m.pid is not None else g.pid
        g.comm = m.comm or g.comm
        g.device = m.device or g.device
        g.cgroup = cgroup or g.cgroup
        g.task_memcg = task_memcg or g.task_memcg
        g.constraint = constraint or g.constraint
        g.order = m.order if m.order is not None else g.order
        g.example = record.message[:EXAMPLE_CHARS]

    # "X invoked oom-killer" opens an OOM report; whether it was the whole machine or
    # one memory cgroup is only said by the "oom-kill:constraint=..." line further down
    # the same report, so the invoked line waits for it (or for the next matched line:
    # a report cut off before its context line, or another format)
    pending_invoked: Optional[tuple] = None
    oom_context: dict[str, str] = {}
    for record in records:
        if record.facility not in (None, 0):
            continue
        context = parse_oom_context(record.message)
        if context is not None:
            if pending_invoked is not None:
                add(*pending_invoked, context)
                pending_invoked = None
            oom_context = context  # belongs to the kill line that follows
            continue
        m = match_message(record.message)
        if m is None:
            continue
        if pending_invoked is not None:
            add(*pending_invoked)
            pending_invoked = None
        if m.signature == "oom-invoked":
            pending_invoked = (m, record)
            continue
        own_context = None
        if m.signature in ("oom-kill", "memcg-oom-kill") and oom_context:
            # only the context of this very kill: the kernel rate-limits the context
            # (with the whole OOM report, 10 per 5 s) but never the kill lines, and
            # memory.oom.group kills further pids after one context line
            if oom_context.get("pid") == str(m.pid):
                own_context = oom_context
            oom_context = {}
        add(m, record, own_context)
    if pending_invoked is not None:
        add(*pending_invoked)

    events = []
    for g in groups.values():
        age = (round(max(0.0, now_s - g.last_seen_s), 3)
               if now_s is not None and g.last_seen_s is not None else None)
        events.append(KernelLogEvent(
            source=source, signature=g.signature, subject=g.subject, count=g.count,
            first_seen_s=g.first_seen_s, last_seen_s=g.last_seen_s, age_s=age,
            in_window=(window_start_s is not None and g.last_seen_s is not None
                       and g.last_seen_s >= window_start_s),
            recent=age is not None and age <= recent_s,
            pid=g.pid, comm=g.comm, device=g.device, cgroup=g.cgroup,
            task_memcg=g.task_memcg, constraint=g.constraint, order=g.order, example=g.example))
    return sorted(events, key=lambda e: (e.signature, e.subject))


@dataclass
class KmsgRead:
    records: list[str]
    #: times the ring buffer overwrote records we had not read yet (EPIPE)
    wrapped: int = 0
    #: stopped at MAX_RECORDS or MAX_READ_S before the end of the buffer
    truncated: bool = False


def read_kmsg(path: str = KMSG) -> KmsgRead:
    """All records in the ring buffer, decoded but unparsed."""
    fd = open_kmsg(path)
    try:
        return read_records(lambda: os.read(fd, RECORD_BYTES), path)
    finally:
        os.close(fd)


def read_records(read_one: Callable[[], bytes], path: str = KMSG,
                 max_records: int = MAX_RECORDS, max_s: float = MAX_READ_S) -> KmsgRead:
    """Call `read_one` (one read() of a non-blocking /dev/kmsg fd) until EAGAIN."""
    result = KmsgRead(records=[])
    deadline = time.monotonic() + max_s
    while True:
        if len(result.records) >= max_records or time.monotonic() > deadline:
            result.truncated = True
            break
        try:
            raw = read_one()
        except BlockingIOError:
            break  # EAGAIN: no more records
        except BrokenPipeError:
            result.wrapped += 1  # EPIPE: the buffer wrapped past us; the next read goes on
            continue
        except OSError as err:
            if err.errno == errno.EINVAL:
                # the kernel refuses a read into a buffer smaller than the record
                raise OSError(err.errno, f"{path}: record longer than {RECORD_BYTES} bytes",
                              path) from err
            raise
        if not raw:
            break
        result.records.append(raw.decode("utf-8", errors="replace"))
    return result


def open_kmsg(path: str = KMSG) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except PermissionError as err:
        raise Unavailable(f"cannot read {path}: needs root (CAP_SYSLOG) or "
                          "sysctl kernel.dmesg_restrict=0") from err
    except FileNotFoundError as err:
        raise Unavailable(f"{path} does not exist (no kernel log device here)") from err


@register_probe
class KmsgProbe(Probe):
    name = "klog"
    provides = ("klog",)
    description = ("kernel log lines matching known signatures: OOM kills, hung tasks, "
                   "lockups, I/O and fs errors, NIC and netfilter messages (/dev/kmsg)")

    def check(self, ctx: ProbeContext) -> None:
        super().check(ctx)
        if not ctx.live:
            raise Unavailable("no kernel log in a captured tree")
        os.close(open_kmsg())  # permission check up front

    def sample(self, ctx: ProbeContext) -> float:
        """Only the time: records carry their own timestamps, so the log is read
        once, after the last sample (in `facts`)."""
        return time.clock_gettime(time.CLOCK_MONOTONIC)

    def facts(self, ctx: ProbeContext, first: Optional[float], last: float,
              elapsed_s: Optional[float]) -> list[Fact]:
        log = read_kmsg()
        if log.wrapped:
            self.warn(f"{KMSG}: the log wrapped {log.wrapped} times while being read; "
                      "the oldest records were lost")
        if log.truncated:
            self.warn(f"{KMSG}: stopped after {len(log.records)} records "
                      f"(limit {MAX_RECORDS} records or {MAX_READ_S} s)")
        parsed, bad = [], 0
        for raw in log.records:
            try:
                parsed.append(parse_kmsg_record(raw))
            except ParseError:
                bad += 1
        if bad:
            self.warn(f"{KMSG}: {bad} records without a valid header were skipped")
        return list(group_events(parsed, last, first))
