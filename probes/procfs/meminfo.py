"""/proc/meminfo: memory breakdown, converted from kB to bytes.

Use MemAvailable (what can be allocated without swapping), not MemFree
(KNOWLEDGE.md §2.8). MemAvailable appeared in 3.14; older kernels give None.
"""
from __future__ import annotations

from typing import Optional

from sysdiag.facts import Fact, Memory

from ..base import Probe, ProbeContext, pct
from ..parse import ParseError, to_int
from ..registry import register_probe

#: Memory field -> meminfo key (values in kB)
BYTE_FIELDS = {
    "mem_total_bytes": "MemTotal", "mem_free_bytes": "MemFree",
    "mem_available_bytes": "MemAvailable", "buffers_bytes": "Buffers",
    "cached_bytes": "Cached", "swap_total_bytes": "SwapTotal", "swap_free_bytes": "SwapFree",
    "anon_bytes": "AnonPages", "shmem_bytes": "Shmem", "slab_bytes": "Slab",
    "sreclaimable_bytes": "SReclaimable", "sunreclaim_bytes": "SUnreclaim",
    "committed_as_bytes": "Committed_AS", "commit_limit_bytes": "CommitLimit",
    "dirty_bytes": "Dirty", "writeback_bytes": "Writeback", "mlocked_bytes": "Mlocked",
    "unevictable_bytes": "Unevictable", "page_tables_bytes": "PageTables",
    "kernel_stack_bytes": "KernelStack", "anon_hugepages_bytes": "AnonHugePages",
    "hugepage_size_bytes": "Hugepagesize", "hugetlb_bytes": "Hugetlb",
}
#: Memory field -> meminfo key (plain counts, no unit)
COUNT_FIELDS = {"hugepages_total": "HugePages_Total", "hugepages_free": "HugePages_Free"}


def parse_meminfo(text: str, source: str = "/proc/meminfo") -> dict[str, int]:
    """Parse "MemTotal:  15666184 kB" lines into {key: bytes} (counts stay counts)."""
    out: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, colon, rest = line.partition(":")
        parts = rest.split()
        if not colon or not parts or len(parts) > 2:
            raise ParseError(source, f"line {number}: expected 'Key: value [kB]', got {line[:60]!r}")
        value = to_int(parts[0], source, key)
        if len(parts) == 2:
            if parts[1] != "kB":
                raise ParseError(source, f"line {number}: unknown unit {parts[1]!r} for {key}")
            value *= 1024
        out[key] = value
    if "MemTotal" not in out:
        raise ParseError(source, "no MemTotal line (empty or truncated file?)")
    return out


def memory_fact(source: str, first: Optional[dict[str, int]], last: dict[str, int]) -> Memory:
    fields: dict[str, object] = {name: last.get(key) for name, key in BYTE_FIELDS.items()}
    fields.update({name: last.get(key) for name, key in COUNT_FIELDS.items()})
    total = last["MemTotal"]
    hugetlb = last.get("Hugetlb")
    if hugetlb is None and "HugePages_Total" in last and "Hugepagesize" in last:
        hugetlb = last["HugePages_Total"] * last["Hugepagesize"]  # before 4.16
        fields["hugetlb_bytes"] = hugetlb
    swap_total, swap_free = last.get("SwapTotal"), last.get("SwapFree")
    fields.update(
        available_pct=pct(last.get("MemAvailable"), total),
        swap_used_pct=(pct(swap_total - swap_free, swap_total)
                       if swap_total and swap_free is not None else None),
        shmem_pct=pct(last.get("Shmem"), total),
        sunreclaim_pct=pct(last.get("SUnreclaim"), total),
        hugetlb_pct=pct(hugetlb, total),
    )
    if first is not None and "AnonPages" in first and "AnonPages" in last:
        fields["anon_delta_bytes"] = last["AnonPages"] - first["AnonPages"]
    return Memory(source=source, **fields)


@register_probe
class MeminfoProbe(Probe):
    name = "memory"
    provides = ("memory",)
    description = "memory breakdown in bytes (/proc/meminfo)"

    def sample(self, ctx: ProbeContext) -> dict[str, int]:
        path = ctx.proc("meminfo")
        return parse_meminfo(ctx.read_text(path), str(path))

    def facts(self, ctx: ProbeContext, first: Optional[dict[str, int]], last: dict[str, int],
              elapsed_s: Optional[float]) -> list[Fact]:
        return [memory_fact(str(ctx.proc("meminfo")), first, last)]
