"""`sysdiag rules explain ID --from SNAPSHOT`: why a hypothesis (or one rule) fired on a
snapshot, with the derivation and the values it used, or why not: the first failing
condition with the actual value, or the missing fact and the probe that would provide it.

Reuses the engine: the report's derivation trees and evidence, and engine/explain.py's
Explainer for what did not match.
"""
from __future__ import annotations

from typing import Any, Optional

from sysdiag.engine import RuleBase, run_engine
from sysdiag.engine import expr as E
from sysdiag.engine.explain import Explainer
from sysdiag.engine.results import DerivationNode, Hypothesis
from sysdiag.engine.spec import RuleSpec

from .runner import session_matches


class ExplainError(ValueError):
    """The id names no hypothesis or rule."""


def _fields_read(rule: RuleSpec, alias: str) -> list[str]:
    p = rule.pattern(alias)
    names: list[str] = []
    if p is not None and p.cond is not None:
        for node in E.walk(p.cond):
            if isinstance(node, E.Field) and node.name not in names:
                names.append(node.name)
    for a, f in rule.evidence:
        if a == alias and f not in names:
            names.append(f)
    return names


def _fact_line(fact: dict, names: list[str]) -> str:
    values = ", ".join(f"{n}={fact.get(n)!r}" for n in names) or "(matched by kind)"
    return f"{fact['id']}: {values}"


def _providers(kind: str) -> list[str]:
    from sysdiag.probes.registry import all_probes
    return sorted(n for n, cls in all_probes().items() if kind in cls.provides)


def _why_not(rule: RuleSpec, explainer: Explainer) -> str:
    why = explainer.rule(rule)
    if why is None:
        return "it matches these facts (filtered out later: see the score)"
    text = why["reason"]
    if why.get("missing_fact") and not why.get("probe"):
        probes = _providers(why["missing_fact"])
        if probes:
            text += f"; probe {' or '.join(probes)} provides {why['missing_fact']} facts " \
                    "(collect with a playbook that runs it, e.g. `--symptom health`)"
    return text


class _Ctx:
    def __init__(self, rb: RuleBase, facts: list[Any], coverage: list[Any]) -> None:
        self.rb = rb
        self.matches, self.facts, _ = session_matches(rb, facts)
        self.explainer = Explainer(self.facts, coverage, rb.derivers_of)
        self.rules = {r.id: r for r in rb.all_rules}

    def node(self, node: DerivationNode, depth: int) -> list[str]:
        pad = "  " * depth
        rule = self.rules.get(node.rule)
        weight = f" [{node.weight:+d}]" if node.weight is not None else ""
        out = [f"{pad}- rule {node.rule}{weight} -> {node.conclusion}"]
        if rule is not None:
            for p in rule.patterns:
                out.append(f"{pad}    when {p.alias}: {p.text}")
            ids = dict(zip([p.alias for p in rule.patterns], node.facts))
            for alias, fid in ids.items():
                fact = self.facts.get(fid)
                if fact is not None:
                    out.append(f"{pad}    {alias} = {_fact_line(fact, _fields_read(rule, alias))}")
        for child in node.children:
            out += self.node(child, depth + 1)
        return out


def explain(ident: str, rb: RuleBase, facts: list[Any], coverage: list[Any],
            candidates: Optional[list[str]] = None) -> str:
    """The explanation as text. `candidates`: rank as for a symptom (None: every hypothesis)."""
    ctx = _Ctx(rb, facts, coverage)
    if ident in rb.hypotheses:
        return _hypothesis(ident, ctx, run_engine(rb, facts, candidates, coverage))
    if ident in ctx.rules:
        return _rule(ctx.rules[ident], ctx)
    import difflib
    close = difflib.get_close_matches(ident, [*rb.hypotheses, *ctx.rules], n=3)
    raise ExplainError(f"no hypothesis or rule {ident!r}" +
                       (f" (did you mean {' or '.join(close)}?)" if close else
                        " (`sysdiag rules list` lists them)"))


def _rule(rule: RuleSpec, ctx: _Ctx) -> str:
    matches = [m for m in ctx.matches if m.rule.id == rule.id]
    head = f"rule {rule.id} ({rule.file}:{rule.line})"
    lines = [head] + [f"  when {p.alias}: {p.text}" for p in rule.patterns]
    if not matches:
        return "\n".join(lines + [f"did not fire: {_why_not(rule, ctx.explainer)}"]) + "\n"
    lines.append(f"fired {len(matches)} time(s):")
    for m in matches[:10]:
        for alias, fact in m.binds.items():
            lines.append(f"  {alias} = {_fact_line(fact, _fields_read(rule, alias))}")
    if len(matches) > 10:
        lines.append(f"  ... {len(matches) - 10} more")
    return "\n".join(lines) + "\n"


def _hypothesis(hid: str, ctx: _Ctx, result: Any) -> str:
    spec = ctx.rb.hypotheses[hid]
    found: list[Hypothesis] = [h for h in result.hypotheses if h.id == hid]
    lines = [f"{hid}: {spec.title}  ({spec.file}:{spec.line}, pack {spec.pack})"]
    if found:
        for h in found:
            rank = result.hypotheses.index(h) + 1
            lines.append(f"FIRED for {h.subject}: #{rank}, score {h.score:.2f} ({h.certainty})")
            if h.explanation:
                lines.append(f"  {h.explanation}")
            lines.append("  evidence:")
            for ev in h.evidence + h.against:
                lines.append(f"    [{ev.weight:+d}] {ev.rule}: {ev.kind}.{ev.field} = {ev.value!r}"
                             f"  ({ev.source})" + (f" - {ev.text}" if ev.text else ""))
            lines.append("  derivation:")
            for node in h.derivation:
                lines += ctx.node(node, 2)
    else:
        ruled = next((r for r in result.ruled_out if r.id == hid), None)
        lines.append(f"NOT REPORTED: {ruled.reason if ruled else 'no rule for it matched'}")
        if ruled is not None and ruled.missing_fact:
            probes = ruled.probe or " or ".join(_providers(ruled.missing_fact)) or "none yet"
            lines.append(f"  missing fact: {ruled.missing_fact} (probe: {probes})")
        elif ruled is not None and ruled.failed_condition:
            lines.append(f"  first failing condition: {ruled.failed_condition} "
                         f"(actual {ruled.actual!r})")
    matched = {m.rule.id for m in ctx.matches}
    rules = [*([spec.requires] if spec.requires else []), *ctx.rb.rules_for(hid)]
    idle = [r for r in rules if r.id not in matched]
    if idle:
        lines.append("rules that did not fire:")
        for r in idle:
            weight = f"[{r.weight:+d}]" if r.weight is not None else "[gate]"
            lines.append(f"  {weight} {r.id}: {_why_not(r, ctx.explainer)}")
    return "\n".join(lines) + "\n"
