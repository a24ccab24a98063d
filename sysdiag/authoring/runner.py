"""Run rule test cases (cases.py) against a rule base and say, readably, what differed.

Each case runs the real engine (`run_engine`, the path `diagnose` takes) for the report,
and one more session (`run_session`) to see every rule that matched, derivation and gate
rules included, and which facts each match used: that is what coverage is measured on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from sysdiag.engine import EngineResult, Hypothesis, RuleBase, run_engine
from sysdiag.engine import expr as E
from sysdiag.engine.explain import Explainer
from sysdiag.engine.run import compiled
from sysdiag.engine.session import run_session
from sysdiag.engine.spec import Problem, RuleSpec
from sysdiag.facts import ProbeOutcome
from sysdiag.facts.registry import FACT_MODELS, FactError, fact_from_dict

from .cases import Case, Expect, RuleTestFile

MATCH_LIMIT = 2000  # matching fact tuples enumerated per rule (branch coverage)


class CaseInputError(ValueError):
    """The facts of a case could not be built (bad field, unreadable snapshot ...)."""


@dataclass
class Match:
    rule: RuleSpec
    binds: dict[str, dict]  # alias -> fact


@dataclass
class CaseResult:
    case: Case
    failures: list[str] = field(default_factory=list)
    error: Optional[str] = None  # the case could not run
    matched: set[str] = field(default_factory=set)  # rule ids
    matches: list[Match] = field(default_factory=list)
    duration_s: float = 0.0
    report: Optional[EngineResult] = None  # what the engine reported for the case

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failures


# ---------------------------------------------------------------- inputs

def build_facts(case: Case, rb: RuleBase) -> tuple[list[Any], list[ProbeOutcome]]:
    """The facts and probe outcomes of a case: inline, a snapshot, or a fixture tree."""
    facts: list[Any] = []
    coverage: list[ProbeOutcome] = []
    if case.snapshot is not None:
        from sysdiag.facts import SnapshotError, load_snapshot
        try:
            snap = load_snapshot(case.snapshot)
        except SnapshotError as err:
            raise CaseInputError(str(err)) from err
        facts, coverage = list(snap.facts), list(snap.coverage)
    elif case.fixture is not None:
        facts, coverage = _collect_fixture(case)
    for i, raw in enumerate(case.facts):
        line = case.fact_lines[i] if i < len(case.fact_lines) else case.line
        where = f"{case.file}:{line}: facts[{i}]"
        kind = raw.get("kind")
        data = {**case.defaults.get(kind, {}), "source": "test", **raw}
        if kind in rb.derived_kinds:  # a derived fact given directly (tests a consumer)
            facts.append(_derived_fact(data, rb, where))
            continue
        try:
            facts.append(fact_from_dict(data, where=where))
        except FactError as err:
            hint = ""
            model = FACT_MODELS.get(kind) if isinstance(kind, str) else None
            if model is not None:
                import difflib
                for name in raw:
                    if name not in model.model_fields:
                        close = difflib.get_close_matches(name, model.model_fields, n=2)
                        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise CaseInputError(f"{err}{hint}") from err
    return facts, coverage


def _derived_fact(data: dict, rb: RuleBase, where: str) -> dict:
    spec = rb.derived_kinds[data["kind"]]
    for name in data:
        if name not in (*spec.fields, "kind", "source", "id"):
            raise CaseInputError(f"{where}: derived kind {spec.kind} has no field {name!r} "
                                 f"(fields: {', '.join(spec.fields)})")
    key = spec.key or sorted(spec.fields)
    data.setdefault("id", spec.kind + ":" + ":".join(str(data.get(k, "")) for k in key))
    return data


def _collect_fixture(case: Case) -> tuple[list[Any], list[ProbeOutcome]]:
    from sysdiag.errors import InputError
    from sysdiag.pipeline import Options, collect, probe_registry

    fx = case.fixture
    names = fx.probes
    if names is None:
        if case.symptom is not None:
            from sysdiag.playbook import load_playbook
            names = load_playbook(case.symptom).probe_names(probe_registry())
        else:
            names = [n for n, p in probe_registry().items() if p.cost != "tracing"]
    options = Options(proc_root=fx.proc, sys_root=fx.sys, window_s=0.0, ebpf=False,
                      follow_ups=False)
    try:
        snap = collect(options, names).snapshot
    except InputError as err:
        raise CaseInputError(f"{case.where}: fixture: {err}") from err
    return list(snap.facts), list(snap.coverage)


def candidates_for(symptom: Optional[str], rb: RuleBase) -> Optional[list[str]]:
    if symptom is None:
        return None  # every hypothesis, as `health` does
    from sysdiag.pipeline import symptom_candidates
    from sysdiag.playbook import PlaybookError, UnknownSymptom, load_playbook
    try:
        return symptom_candidates(load_playbook(symptom), rb)
    except (UnknownSymptom, PlaybookError) as err:
        raise CaseInputError(str(err)) from err


# ---------------------------------------------------------------- matching

def all_matches(rule: RuleSpec, by_kind: dict[str, list[dict]],
                limit: int = MATCH_LIMIT) -> Iterator[dict[str, dict]]:
    """Every fact tuple that satisfies the rule, by the engine's Python evaluator."""
    count = [0]

    def search(i: int, binds: dict[str, dict]) -> Iterator[dict[str, dict]]:
        if i == len(rule.patterns):
            yield dict(binds)
            return
        p = rule.patterns[i]
        for fact in by_kind.get(p.kind, []):
            count[0] += 1
            if count[0] > limit:
                return
            if E.evaluate(p.cond, fact, binds) is True:
                binds[p.alias] = fact
                yield from search(i + 1, binds)
                del binds[p.alias]

    yield from search(0, {})


def session_matches(rb: RuleBase, facts: list[Any]) -> tuple[list[Match], dict[str, dict], list]:
    """(every rule match, all facts by id incl. derived, rule errors) of one session."""
    session = run_session(rb, compiled(rb), facts)
    out: list[Match] = []
    for crule, ids in session.matches:
        out.append(Match(crule.spec, {a: session.facts[i] for a, i in ids.items()}))
    first_derivers = set()
    for d in session.derivations.values():
        first_derivers.add(d.rule.spec.id)
        out.append(Match(d.rule.spec, {a: session.facts[i] for a, i in d.facts.items()}))
    # A derivation that repeats a fact another rule derived first is dropped by the engine
    # (docs/rule-format.md "Derived facts"); such a rule still matched: find it in Python.
    by_kind: dict[str, list[dict]] = {}
    for fact in session.facts.values():
        by_kind.setdefault(fact["kind"], []).append(fact)
    for rule in rb.rules:
        if rule.derive is not None and rule.id not in first_derivers:
            out += [Match(rule, binds) for binds in all_matches(rule, by_kind)]
    return out, session.facts, list(session.errors)


# ---------------------------------------------------------------- checking

def _findings(result: EngineResult, hid: str, subject: Optional[str]) -> list[Hypothesis]:
    return [h for h in result.hypotheses
            if h.id == hid and (subject is None or h.subject == subject)]


def _reported(result: EngineResult) -> str:
    if not result.hypotheses:
        return "nothing"
    return "; ".join(f"{i}. {h.id} ({h.subject}) {h.certainty} {h.score:.2f}"
                     for i, h in enumerate(result.hypotheses[:8], start=1)) + \
        (f"; ... {len(result.hypotheses) - 8} more" if len(result.hypotheses) > 8 else "")


def _why_not(rule_id: str, rb: RuleBase, explainer: Explainer) -> str:
    rule = next((r for r in rb.all_rules if r.id == rule_id), None)
    if rule is None:
        return f"no loaded rule has the id {rule_id!r}"
    why = explainer.rule(rule)
    return why["reason"] if why else "it matches in Python but the engine dropped it"


def check(case: Case, rb: RuleBase, result: EngineResult, matched: set[str],
          facts: dict[str, dict], coverage: list[ProbeOutcome]) -> list[str]:
    """The differences between what the case expects and what happened, one per item."""
    failures: list[str] = []
    explainer = Explainer(facts, coverage, rb.derivers_of)
    known = {r.id for r in rb.all_rules}
    for rid in case.fires:
        if rid not in known:
            failures.append(f"fires: no loaded rule has the id {rid!r}")
        elif rid not in matched:
            failures.append(f"rule {rid} did not fire: {_why_not(rid, rb, explainer)}")
    for rid in case.silent:
        if rid not in known:
            failures.append(f"silent: no loaded rule has the id {rid!r}")
        elif rid in matched:
            failures.append(f"rule {rid} fired but must stay silent")
    for e in case.expect:
        failures += _check_expect(e, rb, result, explainer)
    return failures


def _check_expect(e: Expect, rb: RuleBase, result: EngineResult,
                  explainer: Explainer) -> list[str]:
    spec = rb.hypotheses.get(e.hypothesis)
    if spec is None:
        return [f"expect: no loaded rule file defines hypothesis {e.hypothesis!r}"]
    about = e.hypothesis + (f" ({e.subject})" if e.subject else "")
    found = _findings(result, e.hypothesis, e.subject)
    out: list[str] = []
    if e.gated:
        ruled = next((r for r in result.ruled_out if r.id == e.hypothesis), None)
        gated = ruled is not None and ruled.reason.startswith("environment gate not met")
        if not gated:
            why = ruled.reason if ruled else "reported" if found else "not mentioned"
            out.append(f"{e.hypothesis}: expected its environment gate to rule it out\n"
                       f"  actual:   {why}")
    if e.fired is False and found:
        h = found[0]
        out.append(f"{about}: expected not reported\n"
                   f"  actual:   reported {h.certainty} {h.score:.2f} "
                   f"(for: {', '.join(sorted({ev.rule for ev in h.evidence}))})")
    if e.fired is not True:
        return out
    if not found:
        ruled = next((r for r in result.ruled_out if r.id == e.hypothesis), None)
        why = ruled.reason if ruled else "not a candidate of this symptom" \
            if e.hypothesis not in {h.id for h in result.hypotheses} else \
            "reported under other subjects: " + ", ".join(
                h.subject for h in result.hypotheses if h.id == e.hypothesis)
        out.append(f"{about}: expected reported\n  actual:   not reported: {why}\n"
                   f"  reported: {_reported(result)}")
        return out
    h = found[0]
    rank = result.hypotheses.index(h) + 1
    diffs: list[tuple[str, Any, Any]] = []
    if e.rank is not None and rank != e.rank:
        diffs.append(("rank", e.rank, rank))
    if e.score is not None and not e.score[0] <= h.score <= e.score[1]:
        diffs.append(("score", f"[{e.score[0]:g}, {e.score[1]:g}]", round(h.score, 3)))
    if e.certainty is not None and h.certainty != e.certainty:
        diffs.append(("certainty", e.certainty, h.certainty))
    if e.pattern is not None and h.pattern != e.pattern:
        diffs.append(("pattern", e.pattern, h.pattern))
    if e.explanation is not None and e.explanation not in h.explanation:
        diffs.append(("explanation containing", repr(e.explanation), repr(h.explanation)))
    if e.next_command is not None and not any(e.next_command in c for c in h.next_commands):
        diffs.append(("a next command containing", repr(e.next_command), h.next_commands))
    items = h.evidence + h.against
    for fname, want in e.evidence.items():
        values = [ev.value for ev in items if ev.field == fname]
        if not any(_same(want, v) for v in values):
            diffs.append((f"evidence {fname}", want, values or "(no such evidence)"))
    if diffs:
        width = max(len(d[0]) for d in diffs)
        lines = [f"{about}: reported #{rank} {h.certainty} {h.score:.2f}, but"]
        for what, want, got in diffs:
            lines.append(f"  {what:<{width}}  expected {want}")
            lines.append(f"  {'':<{width}}  actual   {got}")
        lines.append(f"  evidence: " + "; ".join(
            f"{ev.rule} ({ev.weight:+d}) {ev.field}={ev.value!r}" for ev in items) or "-")
        out.append("\n".join(lines))
    return out


def _same(want: Any, got: Any) -> bool:
    if isinstance(want, (int, float)) and isinstance(got, (int, float)) \
            and not isinstance(want, bool) and not isinstance(got, bool):
        return abs(want - got) <= 1e-9 * max(1.0, abs(want))
    return want == got


# ---------------------------------------------------------------- running

def run_case(case: Case, rb: RuleBase) -> CaseResult:
    import time
    started = time.perf_counter()
    res = CaseResult(case)
    try:
        facts, coverage = build_facts(case, rb)
        candidates = candidates_for(case.symptom, rb)
    except CaseInputError as err:
        res.error = str(err)
        return res
    result = run_engine(rb, facts, candidates, coverage, render=case.scope)
    res.report = result
    matches, all_facts, errors = session_matches(rb, facts)
    res.matches = matches
    res.matched = {m.rule.id for m in matches}
    res.failures = [f"rule error: {e.rule}: {e.error}" for e in result.rule_errors]
    res.failures += check(case, rb, result, res.matched, all_facts, coverage)
    res.duration_s = time.perf_counter() - started
    return res


@dataclass
class Run:
    files: list[RuleTestFile]
    results: list[CaseResult]
    problems: list[Problem]  # test files that do not parse

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.ok]

    @property
    def ok(self) -> bool:
        return not self.problems and not self.failed


def run_files(files: list[RuleTestFile], rb: RuleBase) -> Run:
    results = [run_case(case, rb) for tf in files for case in tf.cases]
    return Run(files=files, results=results, problems=[p for tf in files for p in tf.problems])


def format_failure(res: CaseResult) -> str:
    head = f"FAIL {res.case.where}: {res.case.name}"
    if res.error:
        return f"{head}\n  cannot run: {res.error}"
    body = "\n".join("  " + line for f in res.failures for line in f.splitlines())
    return f"{head}\n{body}"


def relative(path: Path | str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
