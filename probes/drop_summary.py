"""The `drop_counters` summary of one kind of per-instance drop counter (facts/network.py
DropCounters): the rules cannot count or test absence, so "no link, qdisc or softnet
drop anywhere" (net-path-loss-retrans) is read from one fact per kind."""
from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence, TypeVar

from sysdiag.facts import DropCounters, Fact

F = TypeVar("F", bound=Fact)
#: names listed in rising_names
MAX_NAMES = 5


def drop_summary(counters: str, facts: Iterable[F], fields: Sequence[str],
                 name: Callable[[F], str], source: str) -> Optional[DropCounters]:
    """The summary over `facts` whose drop rates (`fields`, per second) are known; None
    when none is (one sample: no window, so no rate)."""
    instances = rising = 0
    names: list[str] = []
    total = 0.0
    for fact in facts:
        rates = [getattr(fact, f) for f in fields]
        known = [r for r in rates if r is not None]
        if not known:
            continue
        instances += 1
        dropped = sum(known)
        total += dropped
        if dropped > 0:
            rising += 1
            if len(names) < MAX_NAMES:
                names.append(name(fact))
    if not instances:
        return None
    return DropCounters(source=source, counters=counters, instances=instances, rising=rising,  # type: ignore[arg-type]
                        rising_names=", ".join(names) or None, dropped_per_s=round(total, 3))
