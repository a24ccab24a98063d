"""Rendering: templates with real values, evidence, derivation trees, ruled-out reasons."""
from __future__ import annotations

import shlex
import string
from typing import Any, Iterable, Optional

from . import expr as E
from .results import DerivationNode, Evidence
from .spec import HypothesisSpec, RuleSpec

_FORMATTER = string.Formatter()
#: scope placeholders of next_commands -> fact fields that may supply them
SCOPE_FIELDS = {"pid": ("pid",), "iface": ("iface", "ifname", "dev", "interface"), "netns": ("netns",),
                "cgroup": ("cgroup",), "comm": ("comm",)}


class _Missing(Exception):
    pass


def _lookup(name: str, binds: dict[str, dict], scope: dict[str, Any]) -> Any:
    if "." in name:
        alias, _, fname = name.partition(".")
        fact = binds.get(alias)
        value = None if fact is None else fact.get(fname)
    else:
        value = scope.get(name)
    if value is None:
        raise _Missing(name)
    return value


def _format(value: Any, spec: str) -> str:
    if not spec:
        return str(value)
    try:
        return format(value, spec)
    except (ValueError, TypeError):
        return str(value)  # e.g. {x:.1f} on a string: show it as it is


def render_template(template: str, binds: dict[str, dict], scope: Optional[dict] = None,
                    quote: bool = False) -> Optional[str]:
    """Fill {alias.field[:spec]} (and scope names); None when a value is missing."""
    scope = scope or {}
    out = []
    try:
        for literal, name, spec, _conv in _FORMATTER.parse(template):
            out.append(literal)
            if name is None:
                continue
            text = _format(_lookup(name, binds, scope), spec or "")
            out.append(shlex.quote(text) if quote else text)
    except _Missing:
        return None
    except ValueError:
        return None
    return "".join(out)


def render_value(template: Any, binds: dict[str, dict]) -> Any:
    """A derive field: a literal, a lone placeholder (keeps the value's type), or a text
    template. None when a placeholder has no value."""
    if not isinstance(template, str) or "{" not in template:
        return template
    inner = template[1:-1]
    if template.startswith("{") and template.endswith("}") and "{" not in inner and ":" not in inner:
        alias, _, name = inner.partition(".")
        fact = binds.get(alias)
        return None if fact is None else fact.get(name)
    return render_template(template, binds)


def render_loose(template: str, binds: dict[str, dict]) -> str:
    """Like render_template, but a missing value prints as '?' (for prose)."""
    out = []
    for literal, name, spec, _conv in _FORMATTER.parse(template):
        out.append(literal)
        if name is None:
            continue
        try:
            out.append(_format(_lookup(name, binds, {}), spec or ""))
        except _Missing:
            out.append("?")
    return "".join(out)


def binds_of(facts: dict[str, str], all_facts: dict[str, dict]) -> dict[str, dict]:
    return {alias: all_facts[fid] for alias, fid in facts.items() if fid in all_facts}


def evidence_for(rule: RuleSpec, facts: dict[str, str], all_facts: dict[str, dict]) -> list[Evidence]:
    binds = binds_of(facts, all_facts)
    text = render_loose(rule.because, binds) if rule.because else None
    pairs = rule.evidence or [(p.alias, "id") for p in rule.patterns]
    out = []
    for alias, fname in pairs:
        fact = binds.get(alias)
        if fact is None:
            continue
        out.append(Evidence(fact=fact["id"], kind=fact["kind"], field=fname, value=fact.get(fname),
                            source=str(fact.get("source", "")), rule=rule.id,
                            weight=rule.weight or 0, text=text, historical=rule.historical))
    return out


def derivation_tree(fid: str, derivations: dict, depth: int = 0,
                    seen: Optional[set] = None) -> Optional[DerivationNode]:
    d = derivations.get(fid)
    seen = set() if seen is None else seen
    if d is None or fid in seen or depth > 20:
        return None
    seen = seen | {fid}
    ids = list(d.facts.values())
    children = [c for c in (derivation_tree(x, derivations, depth + 1, seen) for x in ids) if c]
    return DerivationNode(rule=d.rule.name, conclusion=f"derived {fid}", facts=ids,
                          children=children)


def rule_node(rule: RuleSpec, conclusion: str, facts: dict[str, str],
              derivations: dict) -> DerivationNode:
    ids = list(facts.values())
    children = [c for c in (derivation_tree(x, derivations) for x in ids) if c]
    return DerivationNode(rule=rule.id, conclusion=conclusion, weight=rule.weight, facts=ids,
                          children=children)


def next_commands(hyp: HypothesisSpec, binds: dict[str, dict], render: dict[str, Any],
                  subject: str) -> list[str]:
    scope: dict[str, Any] = {"subject": subject}
    for name, fields in SCOPE_FIELDS.items():
        for fact in binds.values():
            value = next((fact.get(f) for f in fields if fact.get(f) is not None), None)
            if value is not None:
                scope[name] = value
                break
    # The evidence names the object the finding is about (the busy pid, the dropping
    # interface); the command-line scope only fills placeholders the evidence leaves open.
    for key, value in render.items():
        if value is not None:
            scope.setdefault(key, value)
    out = []
    for template in hyp.next_commands:
        text = render_template(template, binds, scope, quote=True)
        if text is not None:  # a command with a placeholder that has no value is dropped
            out.append(text)
    return out


# ---------------------------------------------------------------- ruled out

class Why(dict):
    """reason, failed_condition, actual, missing_fact, probe, probe_status."""


def _first_field(node: Any) -> Optional[Any]:
    for n in E.walk(node):
        if isinstance(n, (E.Field, E.Ref)):
            return n
    return None


def _actual(cond: Any, fact: dict, binds: dict) -> Any:
    if isinstance(cond, E.Compare):
        return E.operand_value(cond.left, fact, binds)
    if isinstance(cond, (E.In, E.Matches, E.Exists)):
        return E.operand_value(cond.operand, fact, binds)
    node = _first_field(cond)
    return None if node is None else E.operand_value(node, fact, binds)


def _nearness(failed: Any, fact: dict, binds: dict) -> tuple:
    """Rank a failed condition's fact: a reported value beats a missing one, and for a
    threshold the value nearest to passing wins (the report shows the most telling fact)."""
    actual = _actual(failed, fact, binds)
    if actual is None:
        return (0, 0.0)
    if isinstance(failed, E.Compare) and isinstance(actual, (int, float)) \
            and not isinstance(actual, bool):
        if failed.op in (">", ">="):
            return (1, float(actual))
        if failed.op in ("<", "<="):
            return (1, -float(actual))
    return (1, 0.0)


class Explainer:
    """Why a rule did not match, over the facts of one diagnosis."""

    MAX_STEPS = 20000  # condition evaluations per explained rule
    MAX_CLOSEST = 2000  # facts of one kind compared when looking for the nearest miss

    def __init__(self, facts: dict[str, dict], coverage: Iterable[Any], derivers,
                 scope: Optional[dict[str, Any]] = None) -> None:
        #: --pid/--cgroup/--iface/--netns: a near miss of the scoped object is the one
        #: the user asked about ("pid 42 has 131 fds of 1024"), whichever is nearer
        self.scope = {name: scope[name] for name in SCOPED_FIELDS
                      if scope and scope.get(name) is not None}
        self.by_kind: dict[str, list[dict]] = {}
        for fact in facts.values():
            self.by_kind.setdefault(fact["kind"], []).append(fact)
        self.coverage = list(coverage)
        self.derivers = derivers  # kind -> rules that derive it

    def missing(self, kind: str, depth: int) -> Why:
        derivers = self.derivers(kind)
        if derivers:
            why = Why(reason=f"no {kind} fact was derived", missing_fact=kind)
            if depth < 4:
                inner = self.rule(derivers[0], depth + 1)
                if inner:
                    why.update({k: v for k, v in inner.items() if k != "reason" and v is not None
                                and why.get(k) is None})
                    why["reason"] += f" (rule {derivers[0].id}: {inner['reason']})"
            return why
        for outcome in self.coverage:
            if kind in (outcome.provides or []):
                status = outcome.status
                detail = f": {outcome.reason}" if outcome.reason else ""
                return Why(reason=f"no {kind} facts: probe {outcome.probe} {status}{detail}"
                           if status != "ok" else f"no {kind} facts: probe {outcome.probe} ran "
                           "and found none", missing_fact=kind, probe=outcome.probe,
                           probe_status=status)
        return Why(reason=f"no {kind} facts (no probe in this run provides them)",
                   missing_fact=kind)

    def rule(self, rule: RuleSpec, depth: int = 0) -> Optional[Why]:
        """Why `rule` has no match, or None if it does match."""
        binds: dict[str, dict] = {}
        steps = [0]
        best: list[Optional[Why]] = [None]
        found = self._search(rule.patterns, 0, binds, steps, best, depth)
        if found:
            return None
        return best[0] or Why(reason=f"no combination of facts satisfies rule {rule.id}")

    def _search(self, patterns, i, binds, steps, best, depth) -> bool:
        if i == len(patterns):
            return True
        p = patterns[i]
        facts = self.by_kind.get(p.kind, [])
        if not facts:
            if best[0] is None:
                best[0] = self.missing(p.kind, depth)
            return False
        closest: Optional[tuple[tuple, dict, Any]] = None
        for n, fact in enumerate(facts):
            steps[0] += 1
            if steps[0] > self.MAX_STEPS:
                return False
            if E.evaluate(p.cond, fact, binds) is True:
                binds[p.alias] = fact
                if self._search(patterns, i + 1, binds, steps, best, depth):
                    return True
                del binds[p.alias]
            elif best[0] is None and n < self.MAX_CLOSEST:
                parts = E.conjuncts(p.cond)
                passed = 0
                for part in parts:
                    if E.evaluate(part, fact, binds) is not True:
                        break
                    passed += 1
                failed = parts[passed] if passed < len(parts) else p.cond
                rank = (self._about_scope(fact), passed, *_nearness(failed, fact, binds))
                if closest is None or rank > closest[0]:
                    closest = (rank, fact, failed)
        if best[0] is None and closest is not None:
            _, fact, failed = closest
            actual = _actual(failed, fact, binds)
            text = E.render(failed, p.kind)
            node = _first_field(failed)
            if actual is None and node is not None:
                reason = f"{text}: {E.render(node, p.kind)} is not reported (fact {fact['id']})"
            else:
                shown = f'"{actual}"' if isinstance(actual, str) else actual
                reason = f"{text} is false (actual {shown}, fact {fact['id']})"
            best[0] = Why(reason=reason, failed_condition=text, actual=actual)
        return False

    def _about_scope(self, fact: dict) -> bool:
        return any(same_object(name, fact[f], wanted)
                   for name, wanted in self.scope.items()
                   for f in SCOPED_FIELDS[name] if fact.get(f) is not None)


SCOPED_FIELDS = {"pid": ("pid",), "iface": ("ifname", "iface", "dev", "interface"),
                 "cgroup": ("cgroup", "path", "memory_cgroup"), "netns": ("netns",)}


def same_object(name: str, a: Any, b: Any) -> bool:
    """Scope values compare as strings; cgroup paths also match when one is the other's
    tail (--cgroup /sys/fs/cgroup/memory/app vs the fact's /app)."""
    a, b = str(a), str(b)
    if a == b:
        return True
    if name == "cgroup":
        a, b = a.strip("/"), b.strip("/")
        return bool(a) and bool(b) and (a == b or a.endswith("/" + b) or b.endswith("/" + a))
    return False


def about_elsewhere(subject_facts: list[dict], render: dict[str, Any]) -> bool:
    """Whether a finding's subject (the facts its rules' `subject` templates name) is
    another object of the type the user scoped to: another pid with --pid, another
    cgroup with --cgroup, another interface with --iface. Host-wide findings are not."""
    for name, fields in SCOPED_FIELDS.items():
        wanted = render.get(name)
        if wanted is None:
            continue
        values = [f[field] for f in subject_facts for field in fields if f.get(field) is not None]
        if values and not any(same_object(name, v, wanted) for v in values):
            return True
    return False


def in_scope(binds: dict[str, dict], render: dict[str, Any],
             scoped_kinds: frozenset = frozenset()) -> bool:
    """Whether the facts behind a finding are about the object the user scoped to
    (--pid, --iface, --cgroup, --netns, or a kind read inside that scope): such
    findings rank above host-wide ones."""
    if scoped_kinds and any(fact.get("kind") in scoped_kinds for fact in binds.values()):
        return True
    wanted = {name: str(render[name]) for name in ("pid", "iface", "cgroup", "netns")
              if render.get(name) is not None}
    if not wanted:
        return False
    fields = {"pid": ("pid", "ppid", "holder_pid", "top_pid", "top_watches_pid"),
              "iface": SCOPE_FIELDS["iface"],
              "cgroup": ("cgroup", "path", "task_memcg", "memory_cgroup"),
              "netns": ("netns",)}
    for fact in binds.values():
        for name, value in wanted.items():
            if any(same_object(name, fact.get(f), value) for f in fields[name]
                   if fact.get(f) is not None):
                return True
    return False
