"""log2 histograms as bcc's bpf_log2l() fills them: slot 0 holds 0, slot s >= 1 holds
values in [2^(s-1), 2^s).

    >>> summary = summarize({1: 2, 4: 1, 11: 1}, sum_value=1100)
    >>> summary.samples, summary.p50, summary.p99, summary.max, summary.avg
    (4, 2, 2048, 2048, 275.0)
    >>> summary.share_at_least(1024)
    25.0
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional


def slot_upper(slot: int) -> int:
    """The exclusive upper bound of a slot (what a percentile in it is reported as)."""
    return 1 << slot if slot > 0 else 1


@dataclass(frozen=True)
class HistSummary:
    samples: int
    buckets: list[int]
    avg: Optional[float]
    p50: Optional[int]
    p90: Optional[int]
    p99: Optional[int]
    max: Optional[int]

    def share_at_least(self, value: int) -> Optional[float]:
        """Percentage of samples in slots whose values are all >= `value` (a power of 2)."""
        if not self.samples:
            return None
        first = value.bit_length()  # slot holding [value, 2*value)
        return round(100.0 * sum(self.buckets[first:]) / self.samples, 2)


def summarize(slots: Mapping[int, int], sum_value: Optional[int] = None) -> HistSummary:
    counts = {int(s): int(c) for s, c in slots.items() if c > 0}
    if not counts:
        return HistSummary(0, [], None, None, None, None, None)
    top = max(counts)
    buckets = [counts.get(i, 0) for i in range(top + 1)]
    total = sum(buckets)

    def percentile(p: float) -> int:
        need, seen = p * total, 0
        for slot, count in enumerate(buckets):
            seen += count
            if seen >= need:
                return slot_upper(slot)
        return slot_upper(top)

    avg = round(sum_value / total, 1) if sum_value is not None else None
    return HistSummary(total, buckets, avg, percentile(0.5), percentile(0.9), percentile(0.99),
                       slot_upper(top))
