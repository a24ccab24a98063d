"""Compile rule specs into a durable-rules ruleset (ENGINE-NOTES §10.2).

Each rule becomes one durable rule `{"all": [{alias: expr}, ...]}` where every pattern's
expression is `kind` equality first, then the other tests in one `$and`. Only what the
stock C core evaluates correctly is given to durable:
- single-fact tests (`$eq` `$neq` `$lt` ... `$mt` `$ex` `$nex`, `$m` same-fact references and
  `$add/$sub/$mul/$div` arithmetic), `not` pushed down to the leaves (durable's `$not` is broken);
- `in` as an `$or` of equalities (`$in` does not exist);
- cross-fact references only as equality joins `{field: {alias: field}}`.
Everything else (relational or `!=` joins: SIGSEGV #381; negated regexes; tiny exponent
literals) stays in a Python *residual* that the action checks on the matched facts.
Durable's `any`, `$not`, `count` and `cap` are never emitted.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Optional

from sysdiag.facts import FACT_MODELS

from . import expr as E
from .spec import Problem, RuleBase, RuleSpec

_OPS = {"!=": "$neq", "<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}
_ARITH = {"+": "$add", "-": "$sub", "*": "$mul", "/": "$div"}


class NotCompilable(Exception):
    """This (sub)condition is checked in Python instead."""


@dataclass
class CompiledPattern:
    alias: str
    kind: str
    durable: dict  # the durable expression of the pattern
    residual: list  # conditions checked in Python on the matched facts
    joined: bool  # has an equality join to an earlier pattern


@dataclass
class CompiledRule:
    name: str  # durable rule name (= rule id)
    spec: RuleSpec
    patterns: list[CompiledPattern]

    @property
    def residual(self) -> list[tuple[str, Any]]:
        return [(p.alias, c) for p in self.patterns for c in p.residual]

    def definition(self) -> dict:
        """A fresh durable rule dict (registration pops `run`, so never reuse one)."""
        return {"all": [{p.alias: p.durable} for p in self.patterns]}


@dataclass
class CompiledRuleBase:
    name: str  # durable ruleset name: a hash of everything compiled
    rules: list[CompiledRule]
    consumed_kinds: frozenset
    warnings: list[Problem] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)  # capacity limits of durable-rules

    def definitions(self) -> dict:
        return {r.name: r.definition() for r in self.rules}


def number_is_safe(v: Any) -> bool:
    """Durable's JSON parser crashes (SIGSEGV, measured) on exponent numbers without a
    decimal point, such as Python's repr of 1e-05 or 1e+16."""
    if isinstance(v, bool) or not isinstance(v, float):
        return True
    text = repr(v)
    return "e" not in text or "." in text


def _operand(node: Any, field_refs: bool) -> Any:
    if isinstance(node, E.Lit):
        if not number_is_safe(node.value):
            raise NotCompilable
        return node.value
    if isinstance(node, E.Field):
        if not field_refs:
            raise NotCompilable
        return {"$m": node.name}
    if isinstance(node, E.Arith):
        return {_ARITH[node.op]: {"$l": _operand(node.left, field_refs),
                                  "$r": _operand(node.right, field_refs)}}
    raise NotCompilable  # a Ref: cross-fact


def _test(cond: Any, field_refs: bool = True) -> dict:
    """A single-fact condition as a durable expression, or NotCompilable. `field_refs`:
    whether same-fact field references (`$m`) may be used; in the join pattern of a rule
    durable gets them wrong (found by the differential test), so they stay in Python there."""
    if isinstance(cond, E.Compare):
        if not isinstance(cond.left, E.Field):
            raise NotCompilable
        name, value = cond.left.name, _operand(cond.right, field_refs)
        test = {name: value} if cond.op == "==" else {_OPS[cond.op]: {name: value}}
        others = sorted({n.name for n in E.walk(cond.right) if isinstance(n, E.Field)})
        if not others:
            return test
        # durable evaluates a missing field inside `$m`/arithmetic as a value (found by the
        # differential test); a missing field must make the comparison false instead.
        return {"$and": [*({"$ex": {f: 1}} for f in others), test]}
    if isinstance(cond, E.In):
        if not isinstance(cond.operand, E.Field):
            raise NotCompilable
        tests = [{cond.operand.name: _operand(v, field_refs)} for v in cond.values]
        return tests[0] if len(tests) == 1 else {"$or": tests}
    if isinstance(cond, E.Matches):
        if not isinstance(cond.operand, E.Field):
            raise NotCompilable
        return {"$mt": {cond.operand.name: cond.regex}}
    if isinstance(cond, E.Exists):
        if not isinstance(cond.operand, E.Field):
            raise NotCompilable
        return {("$ex" if cond.present else "$nex"): {cond.operand.name: 1}}
    if isinstance(cond, E.And):
        return {"$and": [_test(i, field_refs) for i in cond.items]}
    if isinstance(cond, E.Or):
        return {"$or": [_test(i, field_refs) for i in cond.items]}
    if isinstance(cond, E.Not):
        pushed = E.negate(cond.item)
        if isinstance(pushed, E.Not):
            raise NotCompilable  # `not matches`: durable has no negated regex
        return _test(pushed, field_refs)
    raise NotCompilable


def _has_ref(cond: Any) -> bool:
    return any(isinstance(n, E.Ref) for n in E.walk(cond))


def _equality_join(cond: Any) -> Optional[dict]:
    if isinstance(cond, E.Compare) and cond.op == "==":
        left, right = cond.left, cond.right
        if isinstance(left, E.Ref) and isinstance(right, E.Field):
            left, right = right, left
        if isinstance(left, E.Field) and isinstance(right, E.Ref):
            return {left.name: {right.alias: right.name}}
    return None


def compile_pattern(alias: str, kind: str, cond: Any, first: bool = True) -> CompiledPattern:
    tests: list[dict] = [{"kind": kind}]
    residual: list = []
    joins: list[dict] = []
    for part in E.conjuncts(cond):
        if _has_ref(part):
            join = _equality_join(part)
            if join is not None:
                joins.append(join)
            else:
                residual.append(part)
            continue
        try:
            test = _test(part, field_refs=first)
        except NotCompilable:
            residual.append(part)
            continue
        if not first and ("$or" in test or "$and" in test):
            # A nested group in a join pattern makes durable drop the terms after it, the
            # join key included (ENGINE-NOTES §5.3; reproduced by the differential test).
            residual.append(part)
        else:
            tests.append(test)
    # References last, after every single-fact test of the pattern (ENGINE-NOTES §5.3).
    tests.extend(joins)
    durable = tests[0] if len(tests) == 1 else {"$and": tests}
    return CompiledPattern(alias, kind, durable, residual, joined=bool(joins))


def _singleton(kind: str) -> bool:
    """One fact per snapshot (no natural key: host, cpu, memory...): joining it needs no key."""
    model = FACT_MODELS.get(kind)
    return model is not None and not model.key_fields


def compile_rule(rule: RuleSpec) -> tuple[CompiledRule, list[Problem]]:
    patterns = [compile_pattern(p.alias, p.kind, p.cond, first=(i == 0))
                for i, p in enumerate(rule.patterns)]
    warnings = []
    for i, (spec, cp) in enumerate(zip(rule.patterns[1:], patterns[1:]), start=1):
        earlier_multi = any(not _singleton(p.kind) for p in rule.patterns[:i])
        if not cp.joined and earlier_multi and not _singleton(spec.kind):
            warnings.append(Problem(
                rule.file, spec.line, spec.column,
                f"rule {rule.id}: pattern {spec.alias!r} has no equality join to an earlier "
                "pattern, so every pair of facts is tried (quadratic)",
                "add `field == alias.field` if the facts belong together"))
    return CompiledRule(rule.id, rule, patterns), warnings


def compile_rulebase(rb: RuleBase) -> CompiledRuleBase:
    rules: list[CompiledRule] = []
    warnings: list[Problem] = []
    for rule in rb.all_rules:
        compiled, w = compile_rule(rule)
        rules.append(compiled)
        warnings.extend(w)
    errors = capacity_problems(rules, warnings)
    consumed = frozenset(p.kind for r in rules for p in r.patterns)
    digest = hashlib.sha256()
    for r in rules:
        meta = [r.name, r.spec.file, r.spec.line, r.spec.pack, r.spec.hypothesis, r.spec.weight,
                repr(r.residual), repr(r.spec.derive), r.spec.subject, r.spec.because,
                r.spec.evidence, r.spec.historical, r.spec.gate]
        digest.update(json.dumps([r.definition(), meta], sort_keys=True, default=str).encode())
    return CompiledRuleBase(name="sysdiag_" + digest.hexdigest()[:20], rules=rules,
                            consumed_kinds=consumed, warnings=warnings, errors=errors)


MAX_RULES = 4000  # MAX_ACTIONS 4,096 (error 106)
MAX_SAME_PATH = 250  # BETA_LIST_LENGTH 256 rules on one identical condition (error 108)
MAX_CHILD_TESTS = 500  # NEXT_BUCKET_LENGTH: 513 distinct tests under one node HANG registration
MAX_ALPHA_MATCHES = 64  # MAX_STACK_SIZE: more matches for one fact fail the assert (error 303)


def capacity_problems(rules: list[CompiledRule], warnings: list[Problem]) -> list[Problem]:
    """Static checks against durable's C limits (ENGINE-NOTES §5.1, §10.2)."""
    errors: list[Problem] = []
    if len(rules) > MAX_RULES:
        r = rules[MAX_RULES].spec
        errors.append(Problem(r.file, r.line, 1, f"{len(rules)} rules; durable-rules takes at "
                              f"most {MAX_RULES}", "split the rules into fewer, broader rules"))
    same_path: dict[str, list[RuleSpec]] = {}
    children: dict[str, dict[str, RuleSpec]] = {}
    for r in rules:
        for p in r.patterns:
            same_path.setdefault(json.dumps(p.durable, sort_keys=True), []).append(r.spec)
            tests = p.durable.get("$and", [])
            if len(tests) > 1:
                children.setdefault(p.kind, {}).setdefault(
                    json.dumps(tests[1], sort_keys=True), r.spec)
    for specs in same_path.values():
        if len(specs) > MAX_SAME_PATH:
            r = specs[MAX_SAME_PATH]
            errors.append(Problem(r.file, r.line, 1, f"{len(specs)} rules share one identical "
                                  f"pattern; durable-rules takes at most {MAX_SAME_PATH}",
                                  "merge them"))
    for kind, tests in children.items():
        if len(tests) > MAX_CHILD_TESTS:
            r = list(tests.values())[MAX_CHILD_TESTS]
            errors.append(Problem(r.file, r.line, 1, f"{len(tests)} different first tests on "
                                  f"fact kind {kind!r}; above 512 durable-rules hangs",
                                  "use `in [...]` or a derived fact instead of one rule per value"))
    for kind, (bound, specs) in alpha_bounds(rules).items():
        if bound > MAX_ALPHA_MATCHES:
            r = specs[MAX_ALPHA_MATCHES]
            warnings.append(Problem(r.file, r.line, 1, f"{bound} patterns on fact kind {kind!r} "
                                    f"can match one fact at once (of {len(specs)}): a fact that "
                                    "satisfies more than 64 of them is left out of the diagnosis "
                                    "(durable-rules error 303)",
                                    "make thresholds on the same field one rule"))
    return errors


def _literal_key(value: Any) -> Any:
    """Literals durable may take as equal share a key: it coerces on `==` (ENGINE-NOTES
    §5.2: `v == 8` matches 8, 8.0 and "8"; `b == true` matches True, 1 and "true")."""
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "false"):
            return float(low == "true")
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, (bool, int, float)):
        return float(value)
    return json.dumps(value, sort_keys=True)


def leading_literals(p: CompiledPattern) -> Optional[tuple[str, set]]:
    """(field, literal keys) when the pattern's first test after `kind` is `field == literal`
    or an `in [...]` of literals on one field; a fact can then match the pattern only if its
    field has one of those values. None for any other first test."""
    tests = p.durable.get("$and", [])
    if len(tests) < 2:
        return None
    first = tests[1]
    alts = first["$or"] if list(first) == ["$or"] else [first]
    names, keys = set(), set()
    for alt in alts:
        if not isinstance(alt, dict) or len(alt) != 1:
            return None
        (name, value), = alt.items()
        if name.startswith("$") or isinstance(value, (dict, list)):
            return None  # an operator, a reference or an arithmetic term
        names.add(name)
        keys.add(_literal_key(value))
    return (names.pop(), keys) if len(names) == 1 else None


def worst_case_matches(patterns: list[CompiledPattern]) -> int:
    """How many of these patterns (of one kind) one fact can satisfy at once, at most
    (ENGINE-NOTES §5.1 counts alpha matches per fact). Patterns whose first test is an
    equality on the same field with different literals never match one fact together: for
    such a field, the bound is the largest group sharing a literal plus every pattern with
    no such test; the tightest field wins. Without one, every pattern counts. Conservative:
    durable counts the matching children of one alpha node (measured: 40 patterns under
    `signature == "oom"` plus 30 without a signature test passed on one fact; 65 under one
    signature, or 65 without, failed)."""
    leads = [leading_literals(p) for p in patterns]
    best = len(patterns)
    for name in {lead[0] for lead in leads if lead is not None}:
        groups: dict[Any, int] = {}
        others = 0
        for lead in leads:
            if lead is None or lead[0] != name:
                others += 1
                continue
            for key in lead[1]:
                groups[key] = groups.get(key, 0) + 1
        best = min(best, max(groups.values()) + others)
    return best


def alpha_bounds(rules: list[CompiledRule]) -> dict[str, tuple[int, list[RuleSpec]]]:
    """kind -> (worst-case patterns matching one fact of it, the rules of its patterns)."""
    per_kind: dict[str, list[tuple[CompiledPattern, RuleSpec]]] = {}
    for r in rules:
        for p in r.patterns:
            per_kind.setdefault(p.kind, []).append((p, r.spec))
    return {kind: (worst_case_matches([p for p, _ in pairs]), [s for _, s in pairs])
            for kind, pairs in per_kind.items()}
