"""Can a pattern's condition ever be true? Contradictions on one field (`x > 5 and x < 3`,
`state == "R" and state == "D"`, `x missing and x > 0`) make a rule that never fires.

The condition is expanded into alternatives (or-of-ands, bounded); an alternative is
impossible when the tests on one of its fields cannot hold together. Anything this does
not understand (joins, arithmetic, regexes) is assumed satisfiable: no false alarms.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from sysdiag.engine import expr as E

MAX_TERMS = 256


def _dnf(cond: Any) -> Optional[list[list[Any]]]:
    if isinstance(cond, E.And):
        terms: list[list[Any]] = [[]]
        for item in cond.items:
            sub = _dnf(item)
            if sub is None:
                return None
            terms = [t + s for t in terms for s in sub]
            if len(terms) > MAX_TERMS:
                return None
        return terms
    if isinstance(cond, E.Or):
        out: list[list[Any]] = []
        for item in cond.items:
            sub = _dnf(item)
            if sub is None:
                return None
            out += sub
        return out if len(out) <= MAX_TERMS else None
    if isinstance(cond, E.Not):
        pushed = E.negate(cond.item)
        return [[pushed]] if isinstance(pushed, E.Not) else _dnf(pushed)
    return [[cond]]


@dataclass
class _Field:
    present: Optional[bool] = None
    lo: Optional[tuple[float, bool, str]] = None  # value, inclusive, the test
    hi: Optional[tuple[float, bool, str]] = None
    eq: Optional[set] = None
    eq_text: str = ""
    neq: dict = field(default_factory=dict)  # value -> test
    tests: list[str] = field(default_factory=list)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _conflict(atoms: list[Any], kind: str) -> Optional[str]:
    """Why these tests (all must hold) contradict, or None."""
    fields: dict[str, _Field] = {}
    for atom in atoms:
        text = E.render(atom, kind)
        if isinstance(atom, E.Exists) and isinstance(atom.operand, E.Field):
            f = fields.setdefault(atom.operand.name, _Field())
            if f.present is not None and f.present != atom.present:
                return f"`{text}` contradicts `{f.tests[0]}`"
            f.present = atom.present
            f.tests.append(text)
            continue
        operand = atom.left if isinstance(atom, E.Compare) else \
            getattr(atom, "operand", atom.item if isinstance(atom, E.Not) else None)
        if isinstance(atom, E.Not) and isinstance(atom.item, E.Matches):
            operand = atom.item.operand
        if not isinstance(operand, E.Field):
            continue
        f = fields.setdefault(operand.name, _Field())
        if f.present is False:
            return f"`{text}` can never hold with `{f.tests[0]}` (a missing field matches nothing)"
        f.present = True
        f.tests.append(text)
        if isinstance(atom, E.In):
            values = {lit.value for lit in atom.values}
            f.eq, f.eq_text = (values, text) if f.eq is None else (f.eq & values, text)
        elif isinstance(atom, E.Compare) and isinstance(atom.right, E.Lit):
            v = atom.right.value
            if atom.op == "==":
                f.eq, f.eq_text = ({v}, text) if f.eq is None else (f.eq & {v}, text)
            elif atom.op == "!=":
                f.neq[v] = text
            elif _num(v):
                bound = (float(v), atom.op in ("<=", ">="), text)
                if atom.op in (">", ">="):
                    if f.lo is None or bound[0] > f.lo[0] or (bound[0] == f.lo[0] and not bound[1]):
                        f.lo = bound
                elif f.hi is None or bound[0] < f.hi[0] or (bound[0] == f.hi[0] and not bound[1]):
                    f.hi = bound
        why = _field_conflict(f)
        if why:
            return why
    return None


def _field_conflict(f: _Field) -> Optional[str]:
    if f.lo and f.hi and (f.lo[0] > f.hi[0] or (f.lo[0] == f.hi[0] and not (f.lo[1] and f.hi[1]))):
        return f"`{f.lo[2]}` and `{f.hi[2]}` cannot both hold"
    if f.eq is not None:
        ok = {v for v in f.eq if v not in f.neq}
        if f.lo:
            ok = {v for v in ok if not _num(v) or v > f.lo[0] or (f.lo[1] and v == f.lo[0])}
        if f.hi:
            ok = {v for v in ok if not _num(v) or v < f.hi[0] or (f.hi[1] and v == f.hi[0])}
        if not ok:
            others = [t for t in f.tests if t != f.eq_text]
            return f"`{f.eq_text}` cannot hold with " + \
                (", ".join(f"`{t}`" for t in others) or "the other tests on this field")
    return None


def never_true(cond: Any, kind: str) -> Optional[str]:
    """Why `cond` can never be true, or None (it can, or this cannot tell)."""
    if cond is None:
        return None
    terms = _dnf(cond)
    if terms is None:
        return None
    reasons = []
    for term in terms:
        why = _conflict(term, kind)
        if why is None:
            return None
        reasons.append(why)
    return reasons[0] if len(reasons) == 1 else "every alternative contradicts itself: " + \
        "; ".join(reasons[:3])
