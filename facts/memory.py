"""Memory facts (/proc/meminfo, /proc/vmstat)."""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

from .base import Fact


class Memory(Fact):
    """/proc/meminfo in bytes, at the end of the window."""

    kind: Literal["memory"] = "memory"
    description: ClassVar[str] = "memory breakdown (/proc/meminfo), bytes"

    mem_total_bytes: int
    mem_free_bytes: Optional[int] = None
    mem_available_bytes: Optional[int] = None
    available_pct: Optional[float] = None
    buffers_bytes: Optional[int] = None
    cached_bytes: Optional[int] = None
    swap_total_bytes: Optional[int] = None
    swap_free_bytes: Optional[int] = None
    swap_used_pct: Optional[float] = None
    anon_bytes: Optional[int] = None
    anon_delta_bytes: Optional[int] = None  # AnonPages change over the window
    shmem_bytes: Optional[int] = None
    shmem_pct: Optional[float] = None
    slab_bytes: Optional[int] = None
    sreclaimable_bytes: Optional[int] = None
    sunreclaim_bytes: Optional[int] = None
    sunreclaim_pct: Optional[float] = None
    committed_as_bytes: Optional[int] = None
    commit_limit_bytes: Optional[int] = None
    dirty_bytes: Optional[int] = None
    writeback_bytes: Optional[int] = None
    mlocked_bytes: Optional[int] = None
    unevictable_bytes: Optional[int] = None
    page_tables_bytes: Optional[int] = None
    kernel_stack_bytes: Optional[int] = None
    anon_hugepages_bytes: Optional[int] = None
    hugepages_total: Optional[int] = None
    hugepages_free: Optional[int] = None
    hugepage_size_bytes: Optional[int] = None
    hugetlb_bytes: Optional[int] = None
    hugetlb_pct: Optional[float] = None


class VmStat(Fact):
    """/proc/vmstat: event rates over the window, totals since boot, gauges."""

    kind: Literal["vmstat"] = "vmstat"
    description: ClassVar[str] = "paging, reclaim, swap and OOM counters (/proc/vmstat)"

    # rates over the window (events or pages per second)
    pgfault_per_s: Optional[float] = None
    pgmajfault_per_s: Optional[float] = None
    pswpin_per_s: Optional[float] = None
    pswpout_per_s: Optional[float] = None
    pgscan_kswapd_per_s: Optional[float] = None
    pgscan_direct_per_s: Optional[float] = None
    pgsteal_kswapd_per_s: Optional[float] = None
    pgsteal_direct_per_s: Optional[float] = None
    allocstall_per_s: Optional[float] = None
    compact_stall_per_s: Optional[float] = None
    compact_fail_per_s: Optional[float] = None
    thp_fault_fallback_per_s: Optional[float] = None
    workingset_refault_anon_per_s: Optional[float] = None
    workingset_refault_file_per_s: Optional[float] = None
    #: Δpgsteal / Δpgscan over the window, percent (None when nothing was scanned)
    reclaim_efficiency_pct: Optional[float] = None
    oom_kill_delta: Optional[int] = None  # OOM kills during the window
    # totals since boot
    pgmajfault_total: Optional[int] = None
    pswpin_total: Optional[int] = None
    pswpout_total: Optional[int] = None
    allocstall_total: Optional[int] = None
    pgscan_direct_total: Optional[int] = None
    compact_stall_total: Optional[int] = None
    oom_kill_total: Optional[int] = None
    # gauges (pages)
    nr_dirty: Optional[int] = None
    nr_writeback: Optional[int] = None
    nr_dirty_threshold: Optional[int] = None
    nr_dirty_background_threshold: Optional[int] = None
    dirty_of_threshold_pct: Optional[float] = None
