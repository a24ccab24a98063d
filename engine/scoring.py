"""Certainty factors, labels, symptom relevance and causal ordering (docs/rule-format.md
"Scoring", KNOWLEDGE.md §0 and §7)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .compile import CompiledRule

#: rule weight -> certainty factor
CF = {3: 0.8, 2: 0.5, 1: 0.2, -1: -0.2, -2: -0.5, -3: -0.8}
CONFIRMED, LIKELY, POSSIBLE = 0.8, 0.5, 0.2
_EPS = 1e-9
SEVERITY_RANK = {"critical": 4, "high": 3, "medium": 2, "low": 1, "info": 0}


def rule_cf(weight: int, historical: bool) -> float:
    cf = CF[weight]
    return cf / 2 if historical else cf


def combine(cfs: list[float]) -> float:
    """a + b(1 - a) over same-signed certainty factors (absolute values)."""
    total = 0.0
    for cf in cfs:
        total = total + cf * (1 - total)
    return total


def net_certainty(cfs: list[float]) -> float:
    """(MB - MD) / (1 - min(MB, MD)), clamped to [0, 1]."""
    mb = combine([c for c in cfs if c > 0])
    md = combine([-c for c in cfs if c < 0])
    denom = 1 - min(mb, md)
    net = (mb - md) / denom if denom > 0 else 0.0
    return max(0.0, min(1.0, net))


def relevance(index: int, count: int) -> float:
    """1.0 / 0.9 / 0.8 for the first / middle / last third of a symptom's candidates."""
    if count <= 0:
        return 1.0
    third = min(2, (3 * index) // count)
    return (1.0, 0.9, 0.8)[third]


def label(score: float, has_strong: bool, has_contradiction: bool) -> str:
    if score >= CONFIRMED - _EPS and has_strong and not has_contradiction:
        return "confirmed"
    if score >= LIKELY - _EPS:
        return "likely"
    if score >= POSSIBLE - _EPS:
        return "possible"
    return "unlikely"


@dataclass
class Item:
    """One rule's (strongest) match for one (hypothesis, subject)."""
    rule: CompiledRule
    facts: dict[str, str]  # alias -> fact id
    cf: float


@dataclass
class Scored:
    hypothesis: str
    subject: str
    items: list[Item] = field(default_factory=list)
    score: float = 0.0
    certainty: str = "unlikely"
    relevance: float = 1.0

    def finish(self, relevance_factor: float) -> None:
        self.items.sort(key=lambda i: (-abs(i.cf), i.rule.name))
        self.relevance = relevance_factor
        self.score = round(net_certainty([i.cf for i in self.items]) * relevance_factor, 4)
        strong = any(i.rule.spec.weight == 3 and not i.rule.spec.historical for i in self.items)
        contra = any(i.rule.spec.weight == -3 for i in self.items)
        self.certainty = label(self.score, strong, contra)


def merge(matches: list[tuple[CompiledRule, dict[str, str], str]]) -> dict[tuple[str, str], Scored]:
    """(rule, facts, subject) matches -> Scored per (hypothesis, subject); a rule counts once
    per subject (its first match in a stable order)."""
    out: dict[tuple[str, str], Scored] = {}
    seen: set[tuple[str, str, str]] = set()
    for rule, facts, subject in sorted(matches, key=lambda m: (m[0].name, m[2], sorted(m[1].items()))):
        hyp = rule.spec.hypothesis
        if (hyp, subject, rule.name) in seen:
            continue
        seen.add((hyp, subject, rule.name))
        scored = out.setdefault((hyp, subject), Scored(hyp, subject))
        scored.items.append(Item(rule, facts, rule_cf(rule.spec.weight, rule.spec.historical)))
    return out


def causal_order(ranked: list, causes_of: dict[str, list[str]]) -> list:
    """Move every effect right after the last of its causes (KNOWLEDGE §7 causal links).
    `ranked` items have `.id`; `causes_of[id]` are the ids reported upstream of it."""
    order = list(ranked)
    for _ in range(len(order) + 1):
        moved = False
        for i, item in enumerate(order):
            ups = causes_of.get(item.id, [])
            last = max((j for j, other in enumerate(order) if other.id in ups), default=-1)
            if last > i:
                order.insert(last, order.pop(i))
                moved = True
                break
        if not moved:
            break
    return order


CERTAINTY_RANK = {"confirmed": 3, "likely": 2, "possible": 1, "unlikely": 0}


def ranking_key(score: float, severity: str, hid: str, subject: str,
                certainty: str = "unlikely", scoped: bool = False,
                elsewhere: bool = False) -> tuple:
    """Best first. With a scope (--pid, --cgroup, --iface, --netns): findings about
    *another* object of the scoped type (an OOM in another cgroup) come after all the
    others, whatever their label; within one label, findings about the scoped object
    come before host-wide ones ("scoped objects above host-wide noise"). Otherwise the
    stronger label, then the higher score wins."""
    return (elsewhere, -CERTAINTY_RANK.get(certainty, 0), not scoped, -score,
            -SEVERITY_RANK.get(severity, 0), hid, subject)


def candidate_relevance(candidates: Optional[list[str]]) -> dict[str, float]:
    if candidates is None:
        return {}
    return {hid: relevance(i, len(candidates)) for i, hid in enumerate(candidates)}
