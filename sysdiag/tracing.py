"""When to trace: the policy behind `--ebpf/--no-ebpf` (docs/ebpf.md "When sysdiag traces").

Tracing probes (cost "tracing", the bcc programs in probes/ebpf) cost CPU on a host that
is already in trouble, so by default (auto) they run only in a second phase:

1. the cheap probes sample the window and the engine ranks the playbook's hypotheses;
2. every hypothesis that scored at least "possible" and has rules over a fact kind that
   a tracing probe provides asks for that probe;
3. each asked-for probe runs if its estimated overhead fits the budget (its event rate,
   guessed from the cheap facts, times its measured cost per event, as a share of the
   host's CPU) and the deadline leaves time for a window of tracing;
4. the engine ranks again with the traced facts.

`--ebpf` runs every tracing probe the playbook's rules can use, with the cheap probes,
whatever the budget; `--no-ebpf` never traces. Probes that did not run are in coverage
as "skipped", saying why.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

from sysdiag.facts import Fact, ProbeOutcome
from sysdiag.probes.base import Probe

#: the share of the host's CPU that auto mode lets tracing take (issue 6's budget)
TRACING_BUDGET_PCT = 2.0
#: the engine's "possible" score: a live hypothesis
LIVE_SCORE = 0.2
#: time a tracing probe needs beyond its window: compiling and attaching, reading maps
SETUP_S = 4.0


def is_tracing(cls: type[Probe]) -> bool:
    return getattr(cls, "cost", "cheap") == "tracing"


def tracing_probes(registry: Mapping[str, type[Probe]]) -> dict[str, type[Probe]]:
    return {name: cls for name, cls in registry.items() if is_tracing(cls)}


def kinds_used(rulebase: Any, hypotheses: Optional[Iterable[str]]) -> set[str]:
    """Fact kinds in the patterns of the rules of these hypotheses (None: every rule)."""
    wanted = None if hypotheses is None else set(hypotheses)
    kinds = set()
    for rule in rulebase.rules:
        if wanted is None or rule.hypothesis in wanted:
            kinds.update(p.kind for p in rule.patterns)
    return kinds


def probes_for(rulebase: Any, hypotheses: Optional[Iterable[str]],
               registry: Mapping[str, type[Probe]]) -> list[str]:
    """Tracing probes that provide a fact kind the rules of `hypotheses` use."""
    used = kinds_used(rulebase, hypotheses)
    return sorted(name for name, cls in tracing_probes(registry).items()
                  if used.intersection(cls.provides))


def estimate_overhead_pct(cls: type[Probe], facts: Iterable[Fact],
                          cpu_count: Optional[int]) -> Optional[float]:
    """The probe's expected CPU cost as a share of the host's CPUs, from the event rate
    the cheap facts suggest; None when they say nothing about the rate."""
    terms = getattr(cls, "event_rate_from", ())
    facts = list(facts)
    rate, known = 0.0, False
    for kind, fname, factor in terms:
        for fact in facts:
            if fact.kind == kind:
                value = getattr(fact, fname, None)
                if value is not None:
                    rate += float(value) * factor
                    known = True
    if not known or not cpu_count:
        return None
    return round(100.0 * rate * cls.cost_ns_per_event / 1e9 / cpu_count, 3)


@dataclass
class Plan:
    run: list[str] = field(default_factory=list)
    #: probe -> why it was not run
    skipped: dict[str, str] = field(default_factory=dict)
    #: probe -> the hypotheses that asked for it
    asked_by: dict[str, list[str]] = field(default_factory=dict)


def plan_second_phase(rulebase: Any, hypotheses: Iterable[Any], facts: list[Fact],
                      registry: Mapping[str, type[Probe]], cpu_count: Optional[int],
                      time_left_s: float, window_s: float,
                      candidates: Optional[Iterable[str]] = None,
                      budget_pct: float = TRACING_BUDGET_PCT) -> Plan:
    """Which tracing probes the live hypotheses need, within the budget and the deadline."""
    plan = Plan()
    tracers = tracing_probes(registry)
    live = sorted({h.id for h in hypotheses if h.score >= LIVE_SCORE})
    for hid in live:
        for name in probes_for(rulebase, [hid], registry):
            plan.asked_by.setdefault(name, []).append(hid)
    useful = set(probes_for(rulebase, candidates, registry))
    for name in sorted(tracers):
        if name not in plan.asked_by:
            plan.skipped[name] = ("no live hypothesis needs it (auto mode; --ebpf forces tracing)"
                                  if name in useful else
                                  "no rule of this symptom uses its facts")
            continue
        cost = estimate_overhead_pct(tracers[name], facts, cpu_count)
        if cost is not None and cost > budget_pct:
            plan.skipped[name] = (f"estimated overhead {cost:.1f} % CPU is over the "
                                  f"{budget_pct:g} % budget (auto mode; --ebpf forces it)")
        elif time_left_s < window_s + SETUP_S:
            plan.skipped[name] = (f"not enough time before the deadline for {window_s:g} s of "
                                  f"tracing (raise --deadline)")
        else:
            plan.run.append(name)
    return plan


def skipped_outcomes(reasons: Mapping[str, str],
                     registry: Mapping[str, type[Probe]]) -> list[ProbeOutcome]:
    return [ProbeOutcome(probe=name, status="skipped", reason=reason,
                         provides=list(registry[name].provides))
            for name, reason in sorted(reasons.items())]


# ---- the pipeline's two hooks ------------------------------------------------------

NO_EBPF = "--no-ebpf: tracing disabled"


def first_phase(probe_names: list[str], registry: Mapping[str, type[Probe]],
                ebpf: Optional[bool], wanted: Optional[list[str]] = None,
                live: bool = True) -> list[str]:
    """The probes of the first phase: the cheap ones, plus (with --ebpf) the tracing
    probes in `wanted` (None: every tracing probe). On a captured tree the names stay as
    given: tracing probes report at once that there is nothing to trace."""
    if not live:
        return list(probe_names)
    cheap = [n for n in probe_names if n not in registry or not is_tracing(registry[n])]
    if not ebpf:
        return cheap
    tracers = sorted(tracing_probes(registry))
    return cheap + [n for n in tracers if wanted is None or n in wanted]


def second_phase(snapshot: Any, rulebase: Any, candidates: Optional[list[str]], options: Any,
                 started: float, record_all: bool = False) -> tuple[Any, bool, dict[str, float]]:
    """Auto mode: trace what the live hypotheses need, and merge it into the snapshot.
    Returns (snapshot, deadline_hit, timings). `record_all` (collect: a snapshot lists every
    probe) puts every tracing probe that did not run in coverage, with why."""
    import time

    from sysdiag.pipeline import probe_context, probe_registry, run_engine
    from sysdiag.probes.runner import run_probes

    if not snapshot.live or options.ebpf is True:
        return snapshot, False, {}
    registry = probe_registry()
    useful = sorted(tracing_probes(registry)) if record_all else \
        probes_for(rulebase, candidates, registry)
    if options.ebpf is False:
        outcomes = skipped_outcomes({n: NO_EBPF for n in useful}, registry)
        return snapshot.model_copy(update={"coverage": [*snapshot.coverage, *outcomes]}), \
            False, {}
    t = time.monotonic()
    result = run_engine(rulebase, snapshot, candidates, list(snapshot.coverage), {})
    window = options.window_s if options.window_s is not None else snapshot.window_s
    plan = plan_second_phase(
        rulebase, result.hypotheses, list(snapshot.facts), registry,
        snapshot.host.cpu_count, options.deadline_s - (time.monotonic() - started), window,
        candidates=candidates)
    # coverage lists what could not be checked: tracing that was needed but did not fit
    # the budget or the deadline. A tracer that no live hypothesis asked for is not a gap
    # (and must not turn every healthy `--strict` run into "incomplete").
    skipped = {n: r for n, r in plan.skipped.items()
               if n in useful and (record_all or n in plan.asked_by)}
    facts, outcomes, deadline_hit = list(snapshot.facts), [], False
    if plan.run:
        ctx = probe_context(options)
        collection = run_probes([registry[n]() for n in plan.run], ctx, window,
                                options.deadline_s - (time.monotonic() - started))
        facts += collection.facts
        outcomes = list(collection.outcomes)
        deadline_hit = collection.deadline_hit
    outcomes += skipped_outcomes(skipped, registry)
    snapshot = snapshot.model_copy(update={"facts": facts,
                                           "coverage": [*snapshot.coverage, *outcomes]})
    return snapshot, deadline_hit, {"tracing_s": round(time.monotonic() - t, 4)}
