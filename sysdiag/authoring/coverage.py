"""Coverage of rules by their test cases: which rules matched in at least one passing
case, which `or` branches were the true one in at least one match, and which numeric
thresholds were tried at their exact value (a boundary case).

A branch is one alternative of an `a or b` in a pattern (not under a `not`, where a true
branch would make the pattern fail). A match covers every branch that is true on the
facts it matched, evaluated by the engine's own Python evaluator (engine/expr.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from sysdiag.engine import RuleBase
from sysdiag.engine import expr as E
from sysdiag.engine.spec import RuleSpec

from .runner import CaseResult


@dataclass(frozen=True)
class Branch:
    rule: str
    alias: str
    group: int  # which `or` of the pattern (0-based, in reading order)
    index: int  # which alternative of it
    text: str
    line: int


def _ors(cond: Any, positive: bool = True) -> Iterator[E.Or]:
    if isinstance(cond, E.Or):
        if positive:
            yield cond
        for item in cond.items:
            yield from _ors(item, positive)
    elif isinstance(cond, E.And):
        for item in cond.items:
            yield from _ors(item, positive)
    elif isinstance(cond, E.Not):
        yield from _ors(cond.item, not positive)


def branches(rule: RuleSpec) -> list[tuple[Branch, Any, str]]:
    """(branch, its condition node, pattern alias) for every positive `or` of the rule."""
    out = []
    for p in rule.patterns:
        if p.cond is None:
            continue
        for g, node in enumerate(_ors(p.cond)):
            for i, item in enumerate(node.items):
                out.append((Branch(rule.id, p.alias, g, i, E.render(item, p.kind), p.line),
                            item, p.alias))
    return out


@dataclass(frozen=True)
class Threshold:
    """`field OP number` in a rule's pattern: the value an off-by-one would move."""
    rule: str
    kind: str
    field: str
    op: str
    value: float
    line: int

    @property
    def text(self) -> str:
        return f"{self.kind}.{self.field} {self.op} {self.value}"


def thresholds(rule: RuleSpec) -> list[Threshold]:
    """Every comparison of a field of the pattern's own fact with a number literal."""
    out = []
    for p in rule.patterns:
        if p.cond is None:
            continue
        for node in E.walk(p.cond):
            if (isinstance(node, E.Compare) and node.op in ("<", "<=", ">", ">=")
                    and isinstance(node.left, E.Field) and isinstance(node.right, E.Lit)
                    and isinstance(node.right.value, (int, float))
                    and not isinstance(node.right.value, bool)):
                out.append(Threshold(rule.id, p.kind, node.left.name, node.op,
                                     node.right.value, p.line))
    return out


def is_boundary_case(threshold: Threshold, case: Any) -> bool:
    """Does the case name the rule (fires or silent) and hold a fact of the pattern's kind
    whose field is exactly the threshold?"""
    if threshold.rule not in case.fires and threshold.rule not in case.silent:
        return False
    for fact in case.facts:
        kind = fact.get("kind")
        if kind != threshold.kind:
            continue
        merged = {**case.defaults.get(kind, {}), **fact}
        value = merged.get(threshold.field)
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and value == threshold.value:
            return True
    return False


@dataclass
class Coverage:
    rules: list[RuleSpec]
    covered_rules: set[str] = field(default_factory=set)
    all_branches: list[Branch] = field(default_factory=list)
    covered_branches: set[Branch] = field(default_factory=set)
    #: hypothesis id -> test cases that expect something of it
    tested_hypotheses: set[str] = field(default_factory=set)
    #: rule id -> its numeric thresholds (rules without any are not listed)
    thresholds: dict[str, list[Threshold]] = field(default_factory=dict)
    #: rules with a passing case at one of their thresholds' exact value
    boundary_rules: set[str] = field(default_factory=set)

    @property
    def uncovered_rules(self) -> list[RuleSpec]:
        return [r for r in self.rules if r.id not in self.covered_rules]

    @property
    def uncovered_branches(self) -> list[Branch]:
        return [b for b in self.all_branches if b not in self.covered_branches]

    @property
    def rules_without_boundary(self) -> list[RuleSpec]:
        """Rules with a numeric threshold and no case at its exact value."""
        return [r for r in self.rules
                if r.id in self.thresholds and r.id not in self.boundary_rules]

    @staticmethod
    def pct(done: int, total: int) -> float:
        return 100.0 if total == 0 else 100.0 * done / total

    @property
    def rule_pct(self) -> float:
        return self.pct(len(self.rules) - len(self.uncovered_rules), len(self.rules))

    @property
    def branch_pct(self) -> float:
        return self.pct(len(self.covered_branches), len(self.all_branches))

    def summary(self) -> str:
        nb = len(self.all_branches)
        nt = len(self.thresholds)
        bounded = nt - len(self.rules_without_boundary)
        return (f"rules {len(self.rules) - len(self.uncovered_rules)}/{len(self.rules)} "
                f"({self.rule_pct:.0f} %), or-branches {len(self.covered_branches)}/{nb} "
                f"({self.branch_pct:.0f} %), boundaries {bounded}/{nt} "
                f"({self.pct(bounded, nt):.0f} %)")

    def report(self) -> str:
        lines = [f"coverage: {self.summary()}"]
        for r in self.uncovered_rules:
            lines.append(f"  not covered: rule {r.id} ({r.file}:{r.line})")
        for b in self.uncovered_branches:
            lines.append(f"  not covered: rule {b.rule}, {b.alias}: branch `{b.text}` "
                         f"(line {b.line})")
        for r in self.rules_without_boundary:
            lines.append(f"  no boundary case: rule {r.id}: "
                         + ", ".join(f"`{t.text}`" for t in self.thresholds[r.id]))
        return "\n".join(lines)


def measure(rb: RuleBase, results: Iterable[CaseResult], packs: set[str]) -> Coverage:
    """Coverage of the rules of `packs` by the passing cases among `results`."""
    rules = [r for r in rb.all_rules if r.pack in packs]
    cov = Coverage(rules=rules)
    wanted = {r.id: r for r in rules}
    branch_map: dict[str, list[tuple[Branch, Any, str]]] = {}
    for r in rules:
        branch_map[r.id] = branches(r)
        cov.all_branches += [b for b, _, _ in branch_map[r.id]]
        if found := thresholds(r):
            cov.thresholds[r.id] = found
    for res in results:
        if not res.ok:
            continue
        cov.tested_hypotheses |= res.case.hypotheses()
        for rid in set(res.case.fires) | set(res.case.silent):
            if rid in cov.thresholds and rid not in cov.boundary_rules and any(
                    is_boundary_case(t, res.case) for t in cov.thresholds[rid]):
                cov.boundary_rules.add(rid)
        for m in res.matches:
            if m.rule.id not in wanted:
                continue
            cov.covered_rules.add(m.rule.id)
            for branch, node, alias in branch_map[m.rule.id]:
                fact = m.binds.get(alias)
                if fact is not None and E.evaluate(node, fact, m.binds) is True:
                    cov.covered_branches.add(branch)
    return cov
