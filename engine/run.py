"""run_engine: facts + rule base -> ranked hypotheses, ruled-out ones, rule errors."""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Iterable, Optional

from . import explain as X
from .compile import CompiledRuleBase, compile_rulebase
from .loader import builtin_rules_dir, load_packs
from .results import EngineResult, Hypothesis, RuledOut
from .scoring import Scored, candidate_relevance, causal_order, merge, ranking_key
from .session import run_session
from .spec import RuleBase, RuleLoadError


def load_rulebase(extra_dirs: Iterable[Path] = (), include_builtin: bool = True) -> RuleBase:
    """Every *.yaml of the built-in rules (unless include_builtin=False) and of each extra
    directory, validated as one rule base. Raises RuleLoadError listing every problem."""
    packs = [("builtin", builtin_rules_dir())] if include_builtin else []
    packs += [(Path(d).name or str(d), Path(d)) for d in extra_dirs]
    return _with_compiled(load_packs(packs))


def _with_compiled(rb: RuleBase) -> RuleBase:
    """Compile now (a few ms): compiler warnings join rb.warnings, and rule sets beyond
    durable's capacity (one of which would hang registration) fail the load."""
    crb = compiled(rb)
    if crb.errors:
        raise RuleLoadError(crb.errors, pack=",".join(rb.packs))
    rb.warnings.extend(crb.warnings)
    return rb


def load_rulebase_tolerant(extra_dirs: Iterable[Path] = ()) -> tuple[RuleBase, list[RuleLoadError]]:
    """The built-in rules plus every extra pack that loads; a broken pack is rejected as a
    whole (its RuleLoadError is returned) and the rest still run. A broken built-in pack
    raises: it is a defect of sysdiag itself."""
    accepted = [("builtin", builtin_rules_dir())]
    errors: list[RuleLoadError] = []
    rb = load_packs(accepted)
    for d in extra_dirs:
        pack = (Path(d).name or str(d), Path(d))
        try:
            rb = load_packs([*accepted, pack])
            errors_of = compile_rulebase(rb).errors
            if errors_of:
                raise RuleLoadError(errors_of)
        except RuleLoadError as err:
            err.pack = pack[0]
            errors.append(err)
            continue
        accepted.append(pack)
    return _with_compiled(rb), errors


def compiled(rb: RuleBase) -> CompiledRuleBase:
    if rb._compiled is None:
        rb._compiled = compile_rulebase(rb)
    return rb._compiled


def run_engine(rb: RuleBase, facts: list[Any], candidates: Optional[list[str]],
               coverage: list[Any], render: Optional[dict[str, str]] = None,
               scoped_kinds: Iterable[str] = ()) -> EngineResult:
    """Diagnose: `candidates` are the symptom's hypothesis ids in prior order (None: every
    hypothesis, the health sweep); `render` gives scope values for next_commands;
    `scoped_kinds` are fact kinds read inside the scope (e.g. the network facts of the
    --netns namespace): findings resting on them rank first within their certainty."""
    t0 = time.perf_counter()
    crb = compiled(rb)
    t1 = time.perf_counter()
    session = run_session(rb, crb, facts)
    t2 = time.perf_counter()
    result = _conclude(rb, session, candidates, coverage, render or {}, frozenset(scoped_kinds))
    t3 = time.perf_counter()
    timings = {"engine_compile_s": round(t1 - t0, 6), "engine_match_s": round(t2 - t1, 6),
               "engine_rank_s": round(t3 - t2, 6), "engine_total_s": round(t3 - t0, 6)}
    return result.model_copy(update={"timings": timings, "rules_evaluated": len(crb.rules),
                                     "activations": session.activations})


def _conclude(rb: RuleBase, session, candidates: Optional[list[str]], coverage: list[Any],
              render: dict[str, Any], scoped_kinds: frozenset = frozenset()) -> EngineResult:
    facts = session.facts
    gates_passed = {rule.spec.hypothesis: ids for rule, ids in session.matches if rule.spec.gate}
    weighing = []
    for rule, ids in session.matches:
        if rule.spec.gate:
            continue
        binds = X.binds_of(ids, facts)
        subject = X.render_loose(rule.spec.subject, binds) if rule.spec.subject else "host"
        weighing.append((rule, ids, subject))
    wanted = list(rb.hypotheses) if candidates is None else list(dict.fromkeys(candidates))
    relevance = candidate_relevance(candidates)
    scored_by_hyp: dict[str, list[Scored]] = {}
    for (hid, _subject), scored in merge(weighing).items():
        if hid not in relevance and candidates is not None:
            continue  # not a candidate of this symptom: not reported (docs/rule-format.md)
        scored.finish(relevance.get(hid, 1.0))
        scored_by_hyp.setdefault(hid, []).append(scored)

    reported: list[tuple[Scored, Hypothesis]] = []
    for hid in wanted:
        spec = rb.hypotheses.get(hid)
        if spec is None or (spec.requires is not None and hid not in gates_passed):
            continue
        for scored in scored_by_hyp.get(hid, []):
            if scored.certainty != "unlikely":
                hyp = _hypothesis(spec, scored, session, gates_passed, render)
                binds = {f"{i}.{a}": facts[fid] for i, item in enumerate(scored.items)
                         for a, fid in item.facts.items() if fid in facts}
                subject_facts = _subject_facts(scored, facts)
                # In scope: the finding is *about* the scoped object (its subject facts), or
                # rests on facts read inside the scoped namespace. A host-wide finding that
                # merely cites a scoped process among its evidence (CPU saturation delaying
                # the throttled cgroup's task) is not about that object.
                scoped = X.in_scope(dict(enumerate(subject_facts)), render) or \
                    X.in_scope(binds, {}, scoped_kinds)
                elsewhere = X.about_elsewhere(subject_facts, render)
                reported.append(((scoped, elsewhere), hyp))
    reported.sort(key=lambda p: ranking_key(p[1].score, p[1].severity, p[1].id, p[1].subject,
                                            p[1].certainty, *p[0]))
    hyps = _causal_links(rb, [h for _, h in reported])

    explainer = X.Explainer(facts, coverage, rb.derivers_of, render)
    reported_ids = {h.id for h in hyps}
    ruled_out = [_ruled_out(rb, hid, scored_by_hyp.get(hid, []), gates_passed, explainer)
                 for hid in wanted if hid not in reported_ids]
    return EngineResult(hypotheses=hyps, ruled_out=ruled_out, rule_errors=list(session.errors))


_SUBJECT_ALIAS = re.compile(r"\{(\w+)\.")


def _subject_facts(scored: Scored, facts: dict[str, dict]) -> list[dict]:
    """The facts a finding's subject is rendered from: those bound to the aliases its
    positive rules' `subject` templates use ("pid {p.pid}" -> the fact bound to p)."""
    out = []
    for item in scored.items:
        if item.cf <= 0 or not item.rule.spec.subject:
            continue
        for alias in _SUBJECT_ALIAS.findall(item.rule.spec.subject):
            fid = item.facts.get(alias)
            if fid in facts:
                out.append(facts[fid])
    return out


def _hypothesis(spec, scored: Scored, session, gates_passed: dict, render: dict) -> Hypothesis:
    facts = session.facts
    evidence, against, derivation = [], [], []
    binds: dict[str, dict] = {}
    for item in scored.items:
        rule = item.rule.spec
        ev = X.evidence_for(rule, item.facts, facts)
        (evidence if item.cf > 0 else against).extend(ev)
        for alias, fact in X.binds_of(item.facts, facts).items():
            binds.setdefault(alias, fact)
        derivation.append(X.rule_node(rule, f"hypothesis {spec.id} ({scored.subject})",
                                      item.facts, session.derivations))
    if spec.id in gates_passed:
        gate_ids = gates_passed[spec.id]
        for alias, fact in X.binds_of(gate_ids, facts).items():
            binds.setdefault(alias, fact)
        derivation.append(X.rule_node(spec.requires, f"environment gate of {spec.id}", gate_ids,
                                      session.derivations))
    positives = [i for i in scored.items if i.cf > 0]
    one_off = bool(positives) and all(i.rule.spec.historical for i in positives)
    return Hypothesis(
        id=spec.id, title=spec.title, subject=scored.subject, score=scored.score,
        certainty=scored.certainty, severity=spec.severity, symptoms=spec.symptoms,
        domain=spec.domain, evidence=evidence, against=against,
        explanation=X.render_loose(spec.explanation, binds) if spec.explanation else "",
        derivation=derivation,
        next_commands=X.next_commands(spec, binds, render, scored.subject),
        references=spec.references, remediation=spec.remediation, risk=spec.risk,
        pattern="one-off" if one_off else "unknown", rule_pack=spec.pack)


def _causal_links(rb: RuleBase, hyps: list[Hypothesis]) -> list[Hypothesis]:
    present = {h.id for h in hyps}
    causes_of: dict[str, list[str]] = {}
    for hid in present:
        for effect in rb.hypotheses[hid].causes:
            if effect in present and effect != hid:
                causes_of.setdefault(effect, []).append(hid)
    out = []
    for h in hyps:
        effects = sorted(e for e in rb.hypotheses[h.id].causes if e in present and e != h.id)
        out.append(h.model_copy(update={"causes": effects,
                                        "caused_by": sorted(causes_of.get(h.id, []))}))
    return causal_order(out, causes_of)


def _ruled_out(rb: RuleBase, hid: str, scored: list[Scored], gates_passed: dict,
               explainer: X.Explainer) -> RuledOut:
    spec = rb.hypotheses.get(hid)
    if spec is None:
        return RuledOut(id=hid, title=hid, reason="no loaded rule file defines this hypothesis")
    if spec.requires is not None and hid not in gates_passed:
        why = explainer.rule(spec.requires) or X.Why(reason="environment gate not met")
        return RuledOut(id=hid, title=spec.title, reason=f"environment gate not met: {why['reason']}",
                        **_why_fields(why))
    if scored:
        best = max(scored, key=lambda s: s.score)
        pro = ", ".join(f"{i.rule.name} ({i.rule.spec.weight:+d})" for i in best.items if i.cf > 0)
        con = ", ".join(f"{i.rule.name} ({i.rule.spec.weight:+d})" for i in best.items if i.cf < 0)
        reason = f"score {best.score:.2f} is below 0.20"
        reason += f"; for: {pro}" if pro else "; nothing supports it"
        reason += f"; against: {con}" if con else ""
        return RuledOut(id=hid, title=spec.title, reason=reason, score=best.score)
    positive = sorted((r for r in spec.rules if (r.weight or 0) > 0),
                      key=lambda r: -(r.weight or 0))
    if not positive:
        return RuledOut(id=hid, title=spec.title, reason="no rule can support this hypothesis")
    rule = positive[0]
    why = explainer.rule(rule) or X.Why(reason=f"rule {rule.id} matched but was filtered")
    return RuledOut(id=hid, title=spec.title, reason=f"{rule.id}: {why['reason']}",
                    **_why_fields(why))


def _why_fields(why: dict) -> dict:
    return {k: why.get(k) for k in ("failed_condition", "actual", "missing_fact", "probe",
                                    "probe_status")}
