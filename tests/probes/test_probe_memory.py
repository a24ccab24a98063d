from __future__ import annotations

import pytest

from sysdiag.probes.parse import ParseError
from sysdiag.probes.procfs.meminfo import MeminfoProbe, memory_fact, parse_meminfo
from sysdiag.probes.procfs.vmstat import VmstatProbe, parse_vmstat, vmstat_fact

from probe_helpers import run_one, write_tree

MEMINFO = """MemTotal:        1000000 kB
MemFree:          100000 kB
MemAvailable:      50000 kB
Buffers:            1000 kB
Cached:           200000 kB
SwapTotal:        400000 kB
SwapFree:         100000 kB
AnonPages:        600000 kB
Shmem:            150000 kB
Slab:              80000 kB
SReclaimable:      30000 kB
SUnreclaim:        50000 kB
HugePages_Total:       2
HugePages_Free:        1
Hugepagesize:       2048 kB
Hugetlb:            4096 kB
"""


def test_parse_meminfo_converts_kb_and_keeps_counts():
    m = parse_meminfo(MEMINFO)
    assert m["MemTotal"] == 1000000 * 1024
    assert m["HugePages_Total"] == 2  # a count, not kB


@pytest.mark.parametrize("text, problem", [
    ("", "no MemTotal line"),
    ("MemFree: 1 kB\n", "no MemTotal line"),
    ("MemTotal 1000 kB\n", "line 1: expected 'Key: value"),
    ("MemTotal: lots kB\n", "MemTotal: expected an integer"),
    ("MemTotal: 1000 MB\n", "unknown unit 'MB'"),
    ("MemTotal:\n", "line 1: expected 'Key: value"),
])
def test_parse_meminfo_rejects(text, problem):
    with pytest.raises(ParseError, match=problem):
        parse_meminfo(text, "/proc/meminfo")


def test_memory_fact():
    last = parse_meminfo(MEMINFO)
    first = dict(last, AnonPages=last["AnonPages"] - 4096)
    fact = memory_fact("/proc/meminfo", first, last)
    assert fact.mem_available_bytes == 50000 * 1024 and fact.available_pct == 5.0
    assert fact.swap_used_pct == 75.0
    assert fact.shmem_pct == 15.0 and fact.sunreclaim_pct == 5.0
    assert fact.hugetlb_bytes == 4096 * 1024 and fact.hugepages_total == 2
    assert fact.anon_delta_bytes == 4096


def test_memory_fact_old_kernel_and_no_swap():
    last = parse_meminfo("MemTotal: 1000 kB\nMemFree: 10 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n"
                         "HugePages_Total: 4\nHugepagesize: 2048 kB\n")
    fact = memory_fact("/proc/meminfo", None, last)
    assert fact.mem_available_bytes is None and fact.available_pct is None
    assert fact.swap_used_pct is None  # no swap configured: not "0 % used"
    assert fact.hugetlb_bytes == 4 * 2048 * 1024  # before Hugetlb existed (4.16)
    assert fact.anon_delta_bytes is None


def test_meminfo_probe_on_fixture_tree(tree_ctx):
    outcome, (fact,) = run_one(MeminfoProbe(), tree_ctx)
    assert outcome.status == "ok"
    assert fact.mem_total_bytes == 15666184 * 1024
    assert fact.mem_available_bytes is None  # this fixture predates MemAvailable
    assert fact.sunreclaim_bytes == 69140 * 1024


VMSTAT_FIRST = """pgfault 1000
pgmajfault 10
pswpin 0
pswpout 0
pgscan_kswapd 100
pgscan_direct 0
pgsteal_kswapd 90
pgsteal_direct 0
allocstall_dma 0
allocstall_dma32 1
allocstall_normal 2
allocstall_movable 0
oom_kill 3
nr_dirty 50
nr_dirty_threshold 200
"""


def test_parse_vmstat():
    assert parse_vmstat("nr_free_pages 123\noom_kill 0\n") == {"nr_free_pages": 123, "oom_kill": 0}


@pytest.mark.parametrize("text, problem", [
    ("", "no counters"),
    ("pgfault\n", "line 1: expected 'name value'"),
    ("pgfault 1 2\n", "line 1: expected 'name value'"),
    ("pgfault x\n", "pgfault: expected an integer"),
])
def test_parse_vmstat_rejects(text, problem):
    with pytest.raises(ParseError, match=problem):
        parse_vmstat(text, "/proc/vmstat")


def test_vmstat_rates_and_reclaim_efficiency():
    first = parse_vmstat(VMSTAT_FIRST)
    last = dict(first, pgfault=3000, pgmajfault=30, pgscan_kswapd=300, pgscan_direct=200,
                pgsteal_kswapd=180, pgsteal_direct=10, allocstall_normal=6, oom_kill=4)
    fact = vmstat_fact("/proc/vmstat", first, last, 2.0)
    assert fact.pgfault_per_s == 1000.0 and fact.pgmajfault_per_s == 10.0
    assert fact.pgscan_direct_per_s == 100.0
    assert fact.allocstall_per_s == 2.0 and fact.allocstall_total == 7  # sum of zones
    assert fact.reclaim_efficiency_pct == 25.0  # 100 stolen of 400 scanned
    assert fact.oom_kill_delta == 1 and fact.oom_kill_total == 4
    assert fact.dirty_of_threshold_pct == 25.0
    assert fact.workingset_refault_anon_per_s is None  # not in this kernel's vmstat


def test_vmstat_nothing_scanned_has_no_efficiency():
    first = parse_vmstat(VMSTAT_FIRST)
    fact = vmstat_fact("/proc/vmstat", first, first, 1.0)
    assert fact.reclaim_efficiency_pct is None and fact.oom_kill_delta == 0


def test_vmstat_pre_4_8_per_zone_names():
    old = parse_vmstat("allocstall 5\npgscan_direct_normal 7\npgscan_direct_dma32 3\n"
                       "pgscan_direct_throttle 99\n")
    fact = vmstat_fact("/proc/vmstat", None, old, None)
    assert fact.allocstall_total == 5
    assert fact.pgscan_direct_total == 10  # zones summed; _throttle is another counter
    assert fact.pgfault_per_s is None and fact.oom_kill_delta is None


def test_vmstat_probe_fails_on_fixture_tree_without_vmstat(tree_ctx):
    outcome, facts = run_one(VmstatProbe(), tree_ctx)
    assert outcome.status == "failed" and not facts
    assert outcome.reason == f"not found: {tree_ctx.proc('vmstat')}"


def test_vmstat_probe_on_small_tree(tmp_path):
    ctx = write_tree(tmp_path, {"proc/vmstat": VMSTAT_FIRST})
    outcome, (fact,) = run_one(VmstatProbe(), ctx)
    assert outcome.status == "ok" and fact.oom_kill_total == 3 and fact.oom_kill_delta is None
