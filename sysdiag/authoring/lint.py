"""`sysdiag rules lint`: every problem of rule packs, test files and playbooks, each with
file:line:column and a hint.

Beyond what the loader refuses (unknown kind or field with the closest names, types,
operators, duplicate ids ...) and the compiler's capacity checks, lint finds what loads
but is wrong: rules that can never fire, derived facts nobody uses or nobody derives,
hypotheses no test case covers, conditions at durable-rules' limits (ENGINE-NOTES §5.1),
symptoms a hypothesis names but the symptom's playbook never weighs, and hypotheses a
playbook weighs without running a probe that provides their facts.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from sysdiag.engine import RuleBase, RuleLoadError, builtin_rules_dir
from sysdiag.engine import expr as E
from sysdiag.engine.compile import MAX_ALPHA_MATCHES, alpha_bounds, compile_rulebase
from sysdiag.engine.loader import MAX_PATTERNS, load_packs
from sysdiag.engine.spec import Problem, RuleSpec
from sysdiag.facts import FACT_MODELS

from .cases import read_test_file, find_test_files
from .satisfy import never_true

MAX_JOIN_TERMS = 30  # MAX_SEQUENCE_EXPRESSIONS 32: 31 cross-fact terms fail (error 113)
MAX_NEX = 128  # NEXT_LIST_LENGTH: `missing` tests under one node (error 107)
NEAR = 0.8  # warn at 80 % of a limit


@dataclass(frozen=True)
class Finding:
    severity: str  # error | warning
    code: str
    file: str
    line: int
    column: int
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.message}"
        return text + (f"\n    hint: {self.hint}" if self.hint else "")


def _from(problem: Problem, severity: str, code: str) -> Finding:
    return Finding(severity, code, problem.file, problem.line, problem.column,
                   problem.message, problem.hint)


def _closest(name: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=3, cutoff=0.6)
    return f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def packs_of(paths: list[Path]) -> tuple[list[tuple[str, Path]], Optional[set[str]]]:
    """(extra packs to load, files to report on or None for all) for the given paths."""
    builtin = builtin_rules_dir()
    packs: list[tuple[str, Path]] = []
    only: Optional[set[str]] = None
    for path in paths:
        path = Path(path)
        resolved = path.resolve()
        if path.is_file():
            only = (only or set()) | {str(path), str(resolved)}
            resolved = resolved.parent
            if resolved.name in ("tests", "cases"):
                resolved = resolved.parent
        if resolved == builtin or builtin in resolved.parents:
            continue
        if not any(d.resolve() == resolved for _, d in packs):
            packs.append((resolved.name or str(resolved), path if path.is_dir() else resolved))
    return packs, only


def lint(paths: Optional[list[Path]] = None) -> list[Finding]:
    """Lint the built-in rules and playbooks (no paths), or the given packs / files on top of
    the built-in rules. Findings are sorted by file and line."""
    paths = list(paths or [])
    packs, only = packs_of(paths)
    linted = {name for name, _ in packs} if paths else {"builtin"}
    if paths and any(Path(p).resolve() == builtin_rules_dir() or builtin_rules_dir() in
                     Path(p).resolve().parents for p in paths):
        linted.add("builtin")
    findings: list[Finding] = []
    for name, directory in packs:
        if not directory.is_dir():
            findings.append(Finding("error", "load", str(directory), 1, 1,
                                    "not a directory of rule files"))
    try:
        rb = load_packs([("builtin", builtin_rules_dir()), *packs])
    except RuleLoadError as err:
        findings += [_from(p, "error", "load") for p in err.problems]
        rb = None
    if rb is not None:
        roots = [d.resolve() for _, d in packs]
        if "builtin" in linted:
            roots.append(builtin_rules_dir())
        findings += [f for f in _semantic(rb, linted)
                     if any(r == Path(f.file).resolve() or r in Path(f.file).resolve().parents
                            for r in roots)]
        dirs = [d for n, d in packs] + ([builtin_rules_dir()] if "builtin" in linted else [])
        findings += _tests(rb, linted, dirs)
        if "builtin" in linted:
            findings += _playbooks(rb)
        findings += _symptom_names(rb, linted)
    if only is not None:
        findings = [f for f in findings if f.file in only or str(Path(f.file).resolve()) in only]
    return sorted(set(findings), key=lambda f: (f.file, f.line, f.column, f.message))


# ---------------------------------------------------------------- the rules

def _semantic(rb: RuleBase, linted: set[str]) -> list[Finding]:
    out = [_from(w, "warning", "load") for w in rb.warnings]
    crb = compile_rulebase(rb)
    out += [_from(p, "error", "durable-limit") for p in crb.errors]
    out += [_from(w, "warning", "durable-limit" if "64" in w.message else "join")
            for w in crb.warnings]
    rules = [r for r in rb.all_rules if r.pack in linted]
    out += _never_fire(rb, linted)
    out += _near_limits(rb, rules, alpha_bounds(crb.rules))
    return out


def _dead_rules(rb: RuleBase) -> dict[str, str]:
    """rule id -> why it can never fire (contradictions, and derived kinds nobody can
    derive, followed through chains of derivations)."""
    dead: dict[str, str] = {}
    for rule in rb.all_rules:
        for p in rule.patterns:
            why = never_true(p.cond, p.kind)
            if why:
                dead[rule.id] = f"pattern {p.alias!r}: {why}"
                break
    changed = True
    while changed:
        changed = False
        for rule in rb.all_rules:
            if rule.id in dead:
                continue
            for p in rule.patterns:
                if p.kind in FACT_MODELS:
                    continue
                derivers = rb.derivers_of(p.kind)
                if not derivers:
                    dead[rule.id] = f"pattern {p.alias!r}: no rule derives {p.kind!r}"
                elif all(d.id in dead for d in derivers):
                    dead[rule.id] = (f"pattern {p.alias!r}: every rule that derives {p.kind!r} "
                                     f"can never fire ({', '.join(d.id for d in derivers)})")
                else:
                    continue
                changed = True
                break
    return dead


def _never_fire(rb: RuleBase, linted: set[str]) -> list[Finding]:
    dead = _dead_rules(rb)
    out = []
    by_id = {r.id: r for r in rb.all_rules}
    for rid, why in dead.items():
        rule = by_id[rid]
        if rule.pack not in linted:
            continue
        p = rule.patterns[0]
        for cand in rule.patterns:
            if f"pattern {cand.alias!r}" in why:
                p = cand
        out.append(Finding("error", "never-fires", rule.file, p.line, p.column,
                           f"rule {rid} can never fire: {why}",
                           "fix the thresholds or remove the rule"))
    for h in rb.hypotheses.values():
        if h.pack not in linted:
            continue
        positive = [r for r in rb.rules_for(h.id) if (r.weight or 0) > 0]
        if h.requires is not None and h.requires.id in dead:
            continue  # reported above, as the gate rule
        if not positive:
            out.append(Finding("error", "never-fires", h.file, h.line, 1,
                               f"hypothesis {h.id} has no rule with a positive weight: "
                               "it can never be reported", "add a rule with weight 1..3"))
        elif all(r.id in dead for r in positive):
            out.append(Finding("error", "never-fires", h.file, h.line, 1,
                               f"hypothesis {h.id} can never be reported: every rule for it "
                               "can never fire"))
    return out


def _near_limits(rb: RuleBase, rules: list[RuleSpec],
                 alpha: dict[str, tuple[int, list[RuleSpec]]]) -> list[Finding]:
    out = []
    per_kind: dict[str, list[RuleSpec]] = {}
    nex: dict[str, int] = {}
    for rule in rb.all_rules:
        for p in rule.patterns:
            per_kind.setdefault(p.kind, []).append(rule)
            for node in E.walk(p.cond) if p.cond is not None else ():
                if isinstance(node, E.Exists) and not node.present:
                    nex[p.kind] = nex.get(p.kind, 0) + 1
    for rule in rules:
        if len(rule.patterns) >= NEAR * MAX_PATTERNS:
            out.append(Finding("warning", "durable-limit", rule.file, rule.line, 1,
                               f"rule {rule.id} has {len(rule.patterns)} patterns; durable-rules "
                               f"takes at most {MAX_PATTERNS} (error 304 at assert time)",
                               "split it, or derive an intermediate fact"))
        for p in rule.patterns:
            joins = sum(1 for n in E.walk(p.cond) if isinstance(n, E.Ref)) if p.cond else 0
            if joins >= NEAR * MAX_JOIN_TERMS:
                sev = "error" if joins > MAX_JOIN_TERMS else "warning"
                out.append(Finding(sev, "durable-limit", rule.file, p.line, p.column,
                                   f"pattern {p.alias!r} of {rule.id} has {joins} references to "
                                   f"other facts; durable-rules takes about {MAX_JOIN_TERMS} "
                                   "(error 113)", "derive an intermediate fact"))
    ids = {r.id for r in rules}
    for kind, (bound, users) in alpha.items():
        # the worst case one fact can match (compile.worst_case_matches: patterns testing
        # different literals of one field never match together)
        if NEAR * MAX_ALPHA_MATCHES <= bound <= MAX_ALPHA_MATCHES:
            first = next((r for r in users if r.id in ids), None)
            if first is not None:
                out.append(Finding(
                    "warning", "durable-limit", first.file, first.line, 1,
                    f"{bound} patterns on fact kind {kind!r} can match one fact at once; a "
                    f"fact that matches more than {MAX_ALPHA_MATCHES} of them is lost "
                    "(durable-rules error 303)",
                    "make thresholds on the same field one rule, or derive a fact"))
    for kind, count in nex.items():
        if count >= NEAR * MAX_NEX:
            first = next(r for r in per_kind[kind])
            out.append(Finding("warning", "durable-limit", first.file, first.line, 1,
                               f"{count} `missing` tests on fact kind {kind!r}; durable-rules "
                               f"takes at most {MAX_NEX} (error 107)"))
    return out


# ---------------------------------------------------------------- tests

def _tests(rb: RuleBase, linted: set[str], dirs: list[Path]) -> list[Finding]:
    out: list[Finding] = []
    tested: set[str] = set()
    rule_ids = {r.id: r for r in rb.all_rules}
    for directory in dirs:
        for path in find_test_files(directory):
            tf = read_test_file(path)
            out += [_from(p, "error", "test-file") for p in tf.problems]
            if tf.hypothesis:
                tested.add(tf.hypothesis)
                if tf.hypothesis not in rb.hypotheses:
                    out.append(Finding("error", "test-file", str(path), 1, 1,
                                       f"no loaded rule file defines hypothesis {tf.hypothesis!r}",
                                       _closest(tf.hypothesis, rb.hypotheses)))
            for case in tf.cases:
                for e in case.expect:
                    tested.add(e.hypothesis)
                    if e.hypothesis not in rb.hypotheses:
                        out.append(Finding("error", "test-file", str(path), e.line, 1,
                                           f"no loaded rule file defines hypothesis "
                                           f"{e.hypothesis!r}", _closest(e.hypothesis,
                                                                         rb.hypotheses)))
                for rid in [*case.fires, *case.silent]:
                    rule = rule_ids.get(rid)
                    if rule is None:
                        out.append(Finding("error", "test-file", str(path), case.line, 1,
                                           f"case {case.name!r}: no loaded rule has the id {rid!r}",
                                           _closest(rid, rule_ids)))
                    elif rule.hypothesis:
                        tested.add(rule.hypothesis)
    for h in rb.hypotheses.values():
        if h.pack in linted and h.id not in tested:
            out.append(Finding("warning", "no-tests", h.file, h.line, 1,
                               f"hypothesis {h.id} has no test cases",
                               f"add tests/{h.id}.yaml next to its rule file "
                               "(`sysdiag rules new` shows the format)"))
    return out


# ---------------------------------------------------------------- playbooks and symptoms

def _symptom_names(rb: RuleBase, linted: set[str]) -> list[Finding]:
    from sysdiag.playbook import available_symptoms
    known = available_symptoms()
    out = []
    for h in rb.hypotheses.values():
        if h.pack not in linted:
            continue
        for s in h.symptoms:
            if s not in known:
                out.append(Finding("error", "symptom", h.file, h.line, 1,
                                   f"{h.id}: unknown symptom {s!r}",
                                   _closest(s, known) or f"symptoms: {', '.join(known)}"))
    return out


def _playbooks(rb: RuleBase) -> list[Finding]:
    from sysdiag.playbook import PlaybookError, load_all
    from sysdiag.probes.registry import all_probes

    try:
        playbooks = load_all()
    except PlaybookError as err:
        where, _, message = str(err).partition(": ")
        file, _, line = where.rpartition(":")
        return [Finding("error", "playbook", file or where, int(line) if line.isdigit() else 1,
                        1, message or str(err))]
    provides = {name: set(cls.provides) for name, cls in all_probes().items()}
    # tracing probes are not listed in playbooks: they are added when a live hypothesis
    # needs them (sysdiag/tracing.py)
    traced = set().union(*(set(c.provides) for c in all_probes().values() if c.cost == "tracing"))
    out = []
    for h in rb.hypotheses.values():
        if h.pack != "builtin":
            continue  # a pack's hypotheses join the symptoms they list (pipeline)
        for s in h.symptoms:
            pb = playbooks.get(s)
            if pb is not None and not pb.all_hypotheses and h.id not in pb.hypotheses:
                out.append(Finding("warning", "playbook", h.file, h.line, 1,
                                   f"{h.id} lists symptom {s!r}, but playbooks/{s}.yaml does not "
                                   "list it: it is never weighed for that symptom",
                                   f"add it to `hypotheses` in playbooks/{s}.yaml, or drop the "
                                   "symptom"))
    for s, pb in playbooks.items():
        if pb.all_probes:
            continue
        available = traced.union(*(provides.get(p, set()) for p in pb.probes))
        for hid in pb.hypotheses:
            h = rb.hypotheses.get(hid)
            if h is None:
                continue
            missing = _unavailable(rb, h.id, available)
            if missing:
                by = sorted(n for n, kinds in provides.items() if missing in kinds)
                out.append(Finding(
                    "warning", "playbook", str(pb.path or f"playbooks/{s}.yaml"), 1, 1,
                    f"playbook {s} weighs {hid}, but none of its probes provides {missing!r}, "
                    f"which every rule for {hid} needs",
                    f"add probe {' or '.join(by)} to `probes`" if by else
                    f"no probe provides {missing!r} yet"))
    return out


def _unavailable(rb: RuleBase, hid: str, available: set[str]) -> Optional[str]:
    """A fact kind that keeps every positive rule of `hid` from firing with these probes."""
    memo: dict[str, bool] = {}

    def kind_ok(kind: str, depth: int = 0) -> bool:
        if kind in FACT_MODELS:
            return kind in available
        if kind not in memo:
            memo[kind] = False  # cycles derive nothing
            memo[kind] = depth < 8 and any(all(kind_ok(k, depth + 1) for k in r.kinds)
                                           for r in rb.derivers_of(kind))
        return memo[kind]

    spec = rb.hypotheses[hid]
    if spec.requires is not None:
        for k in spec.requires.kinds:
            if not kind_ok(k):
                return k
    first_missing = None
    for rule in rb.rules_for(hid):
        if (rule.weight or 0) <= 0:
            continue
        bad = [k for k in rule.kinds if not kind_ok(k)]
        if not bad:
            return None
        first_missing = first_missing or bad[0]
    return first_missing
