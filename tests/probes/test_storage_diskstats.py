"""The "diskstats" probe: the 14/18/20-field formats, rates over a window, queue settings."""
from __future__ import annotations

from pathlib import Path

import pytest

from sysdiag.probes.base import ProbeContext
from sysdiag.probes.parse import ParseError
from sysdiag.probes.procfs.diskstats import (DiskstatsProbe, QueueInfo, block_device_fact,
                                             guess_partition, is_idle_virtual, parse_diskstats,
                                             parse_scheduler)

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared/fixtures/procfs"

# kernel < 4.18 (14 fields), 4.18+ (18, discards), 5.5+ (20, flushes)
DISKSTATS = """\
   8       0 sda 25354637 34367663 1003346126 18492372 28444756 11134226 505697032 63877960 0 9653880 82621804
   8      16 sdb 326552 841 9657779 84 41822 2895 1972905 5007 0 60730 67070 68851 0 1925173784 11130
 259       0 nvme0n1 14202 71 579164 21861 2995 1589 180500 40875 3 11628 55200 0 0 0 0 127 182
 259       1 nvme0n1p1 1027 0 13795 5021 2 0 4096 3 0 690 4579 0 0 0 0 0 0
   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
   7       1 loop1 52 0 2186 12 0 0 0 0 0 40 12 0 0 0 0 0 0
   1       0 ram0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
"""


def test_parse_all_three_formats():
    stats = parse_diskstats(DISKSTATS)
    assert list(stats) == ["sda", "sdb", "nvme0n1", "nvme0n1p1", "loop0", "loop1", "ram0"]
    sda = stats["sda"]
    assert (sda.major, sda.minor, sda.reads, sda.read_sectors, sda.read_ms) == (
        8, 0, 25354637, 1003346126, 18492372)
    assert (sda.writes, sda.write_sectors, sda.write_ms) == (28444756, 505697032, 63877960)
    assert (sda.in_flight, sda.io_ms, sda.weighted_ms) == (0, 9653880, 82621804)
    assert stats["sdb"].weighted_ms == 67070  # field 11, not a discard field
    assert stats["nvme0n1"].in_flight == 3


def test_idle_ram_and_loop_devices_are_skipped_but_busy_loop_is_not():
    stats = parse_diskstats(DISKSTATS)
    assert is_idle_virtual(stats["loop0"]) and is_idle_virtual(stats["ram0"])
    assert not is_idle_virtual(stats["loop1"])
    assert not is_idle_virtual(stats["sda"])


def test_empty_file_has_no_devices():
    assert parse_diskstats("") == {}


@pytest.mark.parametrize("line, problem", [
    ("   8       0 sda 25354637 34367663 1003346126", "got 6 in"),  # truncated
    ("   8       0 sda 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16", "got 19 in"),
    ("   8       0 sda 1 2 3 4 5 6 7 8 9 x 11", "sda field 10"),
    ("   x       0 sda 1 2 3 4 5 6 7 8 9 10 11", "major"),
])
def test_malformed_lines(line, problem):
    with pytest.raises(ParseError, match=problem) as info:
        parse_diskstats(line + "\n", "/proc/diskstats")
    assert "/proc/diskstats line 1" in str(info.value)


def test_malformed_line_skipped_with_on_error():
    problems: list[str] = []
    stats = parse_diskstats("garbage line\n" + DISKSTATS, on_error=problems.append)
    assert len(stats) == 7 and len(problems) == 1


@pytest.mark.parametrize("text, selected", [
    ("mq-deadline kyber [bfq] none\n", "bfq"),
    ("[none] mq-deadline\n", "none"),
    ("none\n", "none"),
    ("", None),
    (None, None),
])
def test_scheduler(text, selected):
    assert parse_scheduler(text) == selected


@pytest.mark.parametrize("name, partition", [
    ("sda1", True), ("sda", False), ("nvme0n1p2", True), ("nvme0n1", False),
    ("mmcblk0p1", True), ("mmcblk0", False), ("dm-1", False), ("md0", False),
    ("sdz3", False),  # no sdz in the list
])
def test_partition_guess_without_sysfs(name, partition):
    names = {"sda", "sda1", "nvme0n1", "nvme0n1p2", "mmcblk0", "mmcblk0p1", "dm-1", "md0"}
    assert guess_partition(name, names) is partition


WINDOW_START = "   8 0 sda 1000 0 80000 5000 2000 0 40000 3000 0 10000 8000\n"
# 2 s later: +200 reads (+16000 sectors, +400 ms), +100 writes (+8000 sectors, +1600 ms),
# +1500 ms busy, +4000 weighted ms, 4 requests in flight
WINDOW_END = "   8 0 sda 1200 0 96000 5400 2100 0 48000 4600 4 11500 12000\n"


def test_rates_over_the_window():
    first = parse_diskstats(WINDOW_START)["sda"]
    last = parse_diskstats(WINDOW_END)["sda"]
    queue = QueueInfo(partition=False, rotational=True, scheduler="mq-deadline", nr_requests=64)
    fact = block_device_fact("/proc/diskstats", first, last, 2.0, queue)
    assert fact.reads_per_s == 100.0 and fact.writes_per_s == 50.0
    assert fact.read_bytes_per_s == 16000 * 512 / 2 and fact.write_bytes_per_s == 8000 * 512 / 2
    assert fact.util_pct == 75.0  # 1500 ms busy in 2000 ms
    assert fact.avg_queue == 2.0  # 4000 weighted ms over 2000 ms
    assert fact.await_ms == round(2000 / 300, 3)  # (400 + 1600) ms over 300 I/Os
    assert fact.read_await_ms == 2.0 and fact.write_await_ms == 16.0
    assert fact.in_flight == 4
    assert fact.read_bytes_total == 96000 * 512
    assert fact.rotational is True and fact.scheduler == "mq-deadline" and fact.nr_requests == 64


def test_no_io_in_the_window_means_no_await():
    stat = parse_diskstats(WINDOW_START)["sda"]
    fact = block_device_fact("d", stat, stat, 1.0, QueueInfo(False, None, None, None))
    assert fact.reads_per_s == 0.0 and fact.util_pct == 0.0
    assert fact.await_ms is None and fact.read_await_ms is None


def test_one_sample_has_totals_but_no_rates():
    stat = parse_diskstats(WINDOW_END)["sda"]
    fact = block_device_fact("d", None, stat, None, QueueInfo(False, None, None, None))
    assert fact.reads_total == 1200 and fact.in_flight == 4
    assert fact.reads_per_s is None and fact.util_pct is None and fact.await_ms is None


def test_counter_reset_gives_no_rate():
    first = parse_diskstats(WINDOW_END)["sda"]
    last = parse_diskstats(WINDOW_START)["sda"]  # went backwards: device re-created
    fact = block_device_fact("d", first, last, 1.0, QueueInfo(False, None, None, None))
    assert fact.reads_per_s is None and fact.await_ms is None


def test_device_renamed_between_samples_gets_no_rate(tmp_path):
    (tmp_path / "proc").mkdir()
    ctx = ProbeContext(proc_root=tmp_path / "proc", sys_root=tmp_path / "sys", live=False)
    probe = DiskstatsProbe()
    first = parse_diskstats(WINDOW_START.replace(" 8 0 ", " 8 16 "))
    last = parse_diskstats(WINDOW_END)
    (fact,) = probe.facts(ctx, first, last, 1.0)
    assert fact.reads_per_s is None and fact.minor == 0


def _fixture_ctx() -> ProbeContext:
    if not FIXTURES.is_dir():
        pytest.skip(f"fixture tree {FIXTURES} not present")
    return ProbeContext(proc_root=FIXTURES / "proc", sys_root=FIXTURES / "sys", live=False)


def test_fixture_tree():
    ctx = _fixture_ctx()
    probe = DiskstatsProbe()
    facts = {f.name: f for f in probe.facts(ctx, None, probe.sample(ctx), None)}
    assert not any(n.startswith(("ram", "loop")) for n in facts)  # all idle there
    sda = facts["sda"]
    assert not sda.partition and sda.reads_total == 25354637
    # sys/block/sda/queue in the tree
    assert (sda.rotational, sda.scheduler, sda.nr_requests) == (True, "bfq", 64)
    assert facts["sda1"].partition and facts["sda1"].scheduler == "bfq"  # the disk's queue
    assert facts["nvme0n1p1"].partition and facts["mmcblk0p2"].partition
    assert not facts["dm-0"].partition and not facts["nvme0n1"].partition
    assert facts["sdc"].write_bytes_total == 180500 * 512  # 20-field line
    assert all(f.reads_per_s is None for f in facts.values())  # one sample
    assert not probe.warnings


@pytest.mark.live
def test_live_host_rates_over_a_short_window():
    import time

    ctx = ProbeContext()
    probe = DiskstatsProbe()
    first = probe.sample(ctx)
    time.sleep(0.2)
    facts = probe.facts(ctx, first, probe.sample(ctx), 0.2)
    assert facts, "no block devices with I/O on this host?"
    for fact in facts:
        assert fact.reads_per_s is not None and fact.reads_per_s >= 0
        assert fact.util_pct is not None and 0 <= fact.util_pct <= 100
    whole_disks = [f for f in facts if not f.partition]
    assert whole_disks and any(f.scheduler is not None for f in whole_disks)
