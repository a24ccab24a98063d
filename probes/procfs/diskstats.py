"""/proc/diskstats: I/O counters per block device (Documentation/admin-guide/iostats.rst).

    major minor name  1 reads  2 merged  3 sectors read  4 ms reading
                      5 writes 6 merged  7 sectors written  8 ms writing
                      9 in flight (gauge)  10 ms busy  11 weighted ms
                      12-15 discards (4.18+)  16-17 flushes (5.5+)

So a line has 14, 18 or 20 fields. Sectors are always 512 bytes, whatever the
device's sector size. Queue settings come from /sys/block/DEV/queue.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from sysdiag.facts import BlockDevice, Fact

from ..base import Probe, ProbeContext, rate
from ..parse import ParseError, first_line, to_int
from ..registry import register_probe

SECTOR_BYTES = 512
FIELD_COUNTS = (14, 18, 20)
_SKIP_IDLE = re.compile(r"(ram|loop)\d+$")


@dataclass(frozen=True)
class DiskStat:
    major: int
    minor: int
    name: str
    reads: int
    read_sectors: int
    read_ms: int
    writes: int
    write_sectors: int
    write_ms: int
    in_flight: int
    io_ms: int  # field 10
    weighted_ms: int  # field 11


def parse_diskstats_line(line: str, source: str = "/proc/diskstats") -> DiskStat:
    fields = line.split()
    if len(fields) not in FIELD_COUNTS:
        raise ParseError(source, f"expected 14, 18 or 20 fields, got {len(fields)} in "
                                 f"{line.strip()[:100]!r}")
    name = fields[2]
    numbers = [to_int(value, source, f"{name} field {index}")
               for index, value in enumerate(fields[3:14], 1)]
    return DiskStat(
        major=to_int(fields[0], source, "major"), minor=to_int(fields[1], source, "minor"),
        name=name, reads=numbers[0], read_sectors=numbers[2], read_ms=numbers[3],
        writes=numbers[4], write_sectors=numbers[6], write_ms=numbers[7],
        in_flight=numbers[8], io_ms=numbers[9], weighted_ms=numbers[10])


def parse_diskstats(text: str, source: str = "/proc/diskstats",
                    on_error: Optional[Callable[[str], None]] = None) -> dict[str, DiskStat]:
    """name -> counters. A malformed line raises ParseError, or, with `on_error`,
    is reported there and skipped."""
    out: dict[str, DiskStat] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            stat = parse_diskstats_line(line, f"{source} line {number}")
        except ParseError as err:
            if on_error is None:
                raise
            on_error(str(err))
            continue
        out[stat.name] = stat
    return out


def is_idle_virtual(stat: DiskStat) -> bool:
    """ram* and loop* devices that never did I/O (dozens of them, all noise)."""
    return bool(_SKIP_IDLE.match(stat.name)) and stat.reads == 0 and stat.writes == 0


def parse_scheduler(text: Optional[str]) -> Optional[str]:
    """"mq-deadline kyber [bfq] none" -> "bfq"; "none" -> "none"."""
    line = first_line(text)
    if line is None:
        return None
    match = re.search(r"\[([^\]]+)\]", line)
    if match:
        return match.group(1)
    return line if " " not in line else None


def guess_partition(name: str, names: set[str]) -> bool:
    """Without sysfs: sda1 is a partition of sda, nvme0n1p2 / mmcblk0p1 of nvme0n1 / mmcblk0."""
    base = name.rstrip("0123456789")
    if base == name:
        return False
    return base in names or (base.endswith("p") and base[:-1] in names)


@dataclass(frozen=True)
class QueueInfo:
    partition: bool
    rotational: Optional[bool]
    scheduler: Optional[str]
    nr_requests: Optional[int]


def _optional_int(ctx: ProbeContext, path: Path) -> Optional[int]:
    line = first_line(ctx.read_optional(path))
    return int(line) if line is not None and line.lstrip("-").isdigit() else None


def _disk_of(name: str, names: set[str]) -> str:
    base = name.rstrip("0123456789")
    return base[:-1] if base.endswith("p") and base[:-1] in names else base


def read_queue_info(ctx: ProbeContext, name: str, names: set[str]) -> QueueInfo:
    """Partition flag and queue settings; a partition has its disk's queue."""
    sys_name = name.replace("/", "!")  # sysfs spells "cciss/c0d0" "cciss!c0d0"
    class_link = ctx.sys("class", "block", sys_name)
    if class_link.exists():
        partition = (class_link / "partition").exists()
        # /sys/class/block/sda1 -> ../../devices/.../block/sda/sda1: the parent is the disk
        disk = os.path.basename(os.path.dirname(os.path.realpath(class_link))) \
            if partition else sys_name
    elif ctx.sys("block", sys_name).exists():
        partition, disk = False, sys_name
    else:
        partition = guess_partition(name, names)
        disk = _disk_of(name, names) if partition else sys_name
    queue = ctx.sys("block", disk, "queue")
    rotational = _optional_int(ctx, queue / "rotational")
    return QueueInfo(
        partition=partition,
        rotational=None if rotational is None else rotational == 1,
        scheduler=parse_scheduler(ctx.read_optional(queue / "scheduler")),
        nr_requests=_optional_int(ctx, queue / "nr_requests"),
    )


def _ms_per_io(first_ms: int, last_ms: int, first_n: int, last_n: int) -> Optional[float]:
    ios = last_n - first_n
    if ios <= 0 or last_ms < first_ms:
        return None
    return round((last_ms - first_ms) / ios, 3)


def block_device_fact(source: str, first: Optional[DiskStat], last: DiskStat,
                      elapsed_s: Optional[float], queue: QueueInfo) -> BlockDevice:
    def per_s(attr: str, scale: int = 1) -> Optional[float]:
        value = rate(getattr(first, attr) if first else None, getattr(last, attr), elapsed_s)
        return None if value is None else round(value * scale, 3)

    fields: dict[str, object] = {}
    if first is not None and elapsed_s:
        busy = per_s("io_ms")
        weighted = per_s("weighted_ms")
        # ms busy per second of wall time; clamp the sampling jitter at 100
        fields["util_pct"] = None if busy is None else round(min(100.0, busy / 10.0), 2)
        fields["avg_queue"] = None if weighted is None else round(weighted / 1000.0, 3)
        fields["await_ms"] = _ms_per_io(first.read_ms + first.write_ms,
                                        last.read_ms + last.write_ms,
                                        first.reads + first.writes, last.reads + last.writes)
        fields["read_await_ms"] = _ms_per_io(first.read_ms, last.read_ms,
                                             first.reads, last.reads)
        fields["write_await_ms"] = _ms_per_io(first.write_ms, last.write_ms,
                                              first.writes, last.writes)
    return BlockDevice(
        source=source, name=last.name, major=last.major, minor=last.minor,
        partition=queue.partition,
        reads_per_s=per_s("reads"), writes_per_s=per_s("writes"),
        read_bytes_per_s=per_s("read_sectors", SECTOR_BYTES),
        write_bytes_per_s=per_s("write_sectors", SECTOR_BYTES),
        in_flight=last.in_flight, reads_total=last.reads, writes_total=last.writes,
        read_bytes_total=last.read_sectors * SECTOR_BYTES,
        write_bytes_total=last.write_sectors * SECTOR_BYTES,
        rotational=queue.rotational, scheduler=queue.scheduler,
        nr_requests=queue.nr_requests, **fields)


@register_probe
class DiskstatsProbe(Probe):
    name = "diskstats"
    provides = ("block_device",)
    description = "per block device IOPS, throughput, %util, queue and await (/proc/diskstats)"

    def sample(self, ctx: ProbeContext) -> dict[str, DiskStat]:
        path = ctx.proc("diskstats")
        return parse_diskstats(ctx.read_text(path), str(path), self._warn_once)

    def _warn_once(self, message: str) -> None:
        if message not in self.warnings:  # sample() runs twice
            self.warn(message)

    def facts(self, ctx: ProbeContext, first: Optional[dict[str, DiskStat]],
              last: dict[str, DiskStat], elapsed_s: Optional[float]) -> list[Fact]:
        source = str(ctx.proc("diskstats"))
        names = set(last)
        out: list[Fact] = []
        for name, stat in last.items():
            if is_idle_virtual(stat):
                continue
            before = first.get(name) if first else None
            if before is not None and (before.major, before.minor) != (stat.major, stat.minor):
                before = None  # the name now belongs to another device
            out.append(block_device_fact(source, before, stat, elapsed_s,
                                         read_queue_info(ctx, name, names)))
        return out
