"""The pipeline that joins the stages:

    playbook -> probes -> Snapshot -> engine -> Report (+ follow-ups)

`diagnose` samples the host (or loads `--from SNAPSHOT`) and hands the snapshot to
`diagnose_snapshot`, the one path both take: live and offline rank identically on
the same facts. Errors the user can fix are `InputError`s with one line that names
the file or option and what to do.
"""
from __future__ import annotations

import dataclasses
import os
import re
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

from sysdiag.facts import Fact, HostInfo, ProbeOutcome, Scope, Snapshot, SnapshotError, \
    load_snapshot
from sysdiag.probes.base import Probe, ProbeContext
from sysdiag.probes.scope import ScopeError, scope_context

from . import tracing
from .defaults import DEADLINE_S, THRESHOLD, WINDOW_S
from .errors import InputError
from .playbook import PLANNED_PROBES, Playbook, PlaybookError, UnknownSymptom, load_all, \
    load_playbook
from .version import __version__

if TYPE_CHECKING:  # `collect` needs neither the engine nor the report models (~0.03 s)
    from sysdiag.engine.results import EngineResult, RuledOut
    from .report.models import Report, RulePackError

NOT_IMPLEMENTED = "probe not implemented in this version"


@dataclass
class Options:
    window_s: Optional[float] = None  # None: the playbook's
    deadline_s: float = DEADLINE_S
    from_path: Optional[Path] = None
    proc_root: Optional[Path] = None
    sys_root: Optional[Path] = None
    scope: Scope = field(default_factory=Scope)
    top: Optional[int] = None
    rules_dirs: list[Path] = field(default_factory=list)
    strict: bool = False
    follow_ups: bool = True
    threshold: float = THRESHOLD
    #: report rule files that fail to load and go on without them (else InputError)
    tolerate_rule_errors: bool = False
    #: eBPF tracing probes: None auto (sysdiag/tracing.py), True always, False never
    ebpf: Optional[bool] = None
    #: with ebpf True: the tracing probes to run with the cheap ones (None: all)
    ebpf_probes: Optional[list[str]] = None


@dataclass
class Collected:
    snapshot: Snapshot
    deadline_hit: bool
    timings: dict[str, float]


# ---- inputs ---------------------------------------------------------------------

def _playbook(symptom: str) -> Playbook:
    try:
        return load_playbook(symptom, probe_registry())
    except (UnknownSymptom, PlaybookError) as err:
        raise InputError(str(err)) from err


def load_playbooks() -> dict[str, Playbook]:
    """Every playbook, validated (PlaybookError -> InputError)."""
    try:
        return load_all(probe_registry())
    except PlaybookError as err:
        raise InputError(str(err)) from err


def probe_registry() -> dict[str, type[Probe]]:
    from sysdiag.probes.registry import all_probes

    return all_probes()


_NAME = re.compile(r"^[A-Za-z0-9_.:@][A-Za-z0-9_.:@-]{0,63}$")


def probe_context(options: Options) -> ProbeContext:
    """The probes' view of the host: live, or a captured tree when a root is given.
    Checks the roots and the scope so a typo fails now, not as 20 failed probes."""
    live = options.proc_root is None and options.sys_root is None
    proc_root = Path(options.proc_root or "/proc")
    sys_root = Path(options.sys_root or "/sys")
    for flag, root in (("--proc-root", options.proc_root), ("--sys-root", options.sys_root)):
        if root is not None and not Path(root).is_dir():
            raise InputError(f"{flag} {root}: not a directory; give the root of a captured "
                             f"{flag[2:6]} tree")
    scope = options.scope
    if scope.pid is not None and not (proc_root / str(scope.pid)).is_dir():
        raise InputError(f"--pid {scope.pid}: no such process under {proc_root}")
    if scope.iface is not None and not _NAME.match(scope.iface):
        raise InputError(f"--iface {scope.iface}: no such interface (not an interface name)")
    if scope.cgroup is not None:
        _check_cgroup(scope.cgroup, sys_root)
    if scope.netns is not None:
        if not _NAME.match(scope.netns):
            raise InputError(f"--netns {scope.netns!r}: not a network namespace name")
        if live and not Path("/run/netns", scope.netns).exists():
            raise InputError(f"--netns {scope.netns}: no such namespace in /run/netns "
                             "(`ip netns list` lists them)")
    if scope.netns is not None and not live:
        raise InputError(f"--netns {scope.netns}: a captured tree has no named namespaces; "
                         "use --pid PID to read that process's /proc/PID/net")
    ctx = ProbeContext(proc_root=proc_root, sys_root=sys_root, live=live, scope=scope)
    try:  # the namespace to read and the interfaces to report (probes/scope.py)
        return scope_context(ctx)
    except ScopeError as err:
        raise InputError(str(err)) from err


def _check_cgroup(path: str, sys_root: Path) -> None:
    rel = path.strip("/")
    if ".." in rel.split("/"):
        raise InputError(f"--cgroup {path}: '..' is not allowed in a cgroup path")
    base = sys_root / "fs/cgroup"
    candidates = [base / rel, *(p / rel for p in base.glob("*") if p.is_dir())]
    if not any(c.is_dir() for c in candidates):
        raise InputError(f"--cgroup {path}: no such cgroup under {base} "
                         "(give the path as in /proc/PID/cgroup, e.g. /system.slice/x.service)")


def load_rules(options: Options) -> tuple[Any, list[RulePackError]]:
    """The rulebase (built-in rules plus --rules-dir packs). A file that fails to load is
    an InputError unless `tolerate_rule_errors`, then it is reported and left out."""
    from sysdiag.engine import RuleLoadError, load_rulebase_tolerant

    for directory in options.rules_dirs:
        if not Path(directory).is_dir():
            raise InputError(f"--rules-dir {directory}: not a directory of rule files")
    try:
        rulebase, errors = load_rulebase_tolerant(list(options.rules_dirs))
    except RuleLoadError as err:  # a built-in rule file is broken: nothing can run
        raise InputError(_one_line(_pack_errors([err]), "this is a defect of the installed "
                                   "sysdiag: reinstall it or report the file")) from err
    problems = _pack_errors(errors)
    if problems and not options.tolerate_rule_errors:
        raise InputError(_one_line(problems, "fix the rule file or leave its directory out "
                                             "of --rules-dir"))
    return rulebase, problems


def _pack_errors(errors: list[Any]) -> list[RulePackError]:
    from .report.models import RulePackError

    out = []
    for err in errors:
        problems = getattr(err, "problems", None) or []
        out += [RulePackError(file=p.file, line=p.line, column=p.column,
                              message=p.message + (f" ({p.hint})" if p.hint else ""))
                for p in problems]
        if not problems:
            out.append(RulePackError(message=str(err).splitlines()[0] if str(err) else
                                     type(err).__name__))
    return out


def _one_line(problems: list[RulePackError], todo: str) -> str:
    first = problems[0]
    where = f"{first.file}:{first.line}:{first.column}: " if first.file else ""
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return f"{where}{first.message}{more}; {todo}"


# ---- collecting -----------------------------------------------------------------

def collect(options: Options, probe_names: Optional[list[str]] = None,
            started: Optional[float] = None) -> Collected:
    """Run the probes (default: every registered and planned one) and return the
    snapshot. Planned probes appear in coverage as skipped."""
    started = time.monotonic() if started is None else started
    ctx = probe_context(options)
    registry = probe_registry()
    if probe_names is None:
        probe_names = [*_cheap_first(registry), *(p for p in PLANNED_PROBES if p not in registry)]
    probe_names = tracing.first_phase(probe_names, registry, options.ebpf, options.ebpf_probes,
                                      live=ctx.live)
    runnable = [registry[name]() for name in probe_names if name in registry]
    window = options.window_s if options.window_s is not None else WINDOW_S
    deadline_left = options.deadline_s - (time.monotonic() - started)

    from sysdiag.probes.runner import run_probes

    collection = run_probes(runnable, ctx, window if ctx.live else 0.0, deadline_left)
    outcomes = {o.probe: o for o in collection.outcomes}
    coverage = [outcomes.get(name) or ProbeOutcome(probe=name, status="skipped",
                                                   reason=NOT_IMPLEMENTED)
                for name in probe_names]
    snapshot = Snapshot(
        sysdiag_version=__version__, created_at=_now(), host=_host(collection.facts, ctx),
        window_s=collection.window_s, live=ctx.live, proc_root=str(ctx.proc_root),
        sys_root=str(ctx.sys_root), scope=ctx.scope, facts=collection.facts, coverage=coverage)
    return Collected(snapshot=snapshot, deadline_hit=collection.deadline_hit,
                     timings=dict(collection.timings))


_COST_ORDER = {"cheap": 0, "moderate": 1, "tracing": 2}


def _cheap_first(registry: Mapping[str, type[Probe]]) -> list[str]:
    return sorted(registry, key=lambda n: (_COST_ORDER.get(registry[n].cost, 3), n))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _host(facts: list[Fact], ctx: ProbeContext) -> HostInfo:
    for fact in facts:
        if isinstance(fact, HostInfo):
            return fact
    # the host probe did not run: name the host anyway, and say where the name came from
    if ctx.live:
        return HostInfo(hostname=socket.gethostname(), source="socket.gethostname()",
                        cpu_count=os.cpu_count(), euid=ctx.euid)
    return HostInfo(hostname="unknown", source="none (the host probe did not run)")


# ---- diagnosing -----------------------------------------------------------------

def diagnose(symptom: str, options: Options) -> Report:
    """The main job: sample the host (or load --from) and diagnose `symptom`."""
    started = time.monotonic()
    playbook = _playbook(symptom)
    if options.from_path is not None and (options.proc_root or options.sys_root):
        raise InputError("--from diagnoses a saved snapshot: it cannot be combined with "
                         "--proc-root/--sys-root")
    rulebase, rule_problems = load_rules(options)
    timings = {"load_rules_s": round(time.monotonic() - started, 4)}

    if options.from_path is not None:
        try:
            snapshot = load_snapshot(options.from_path)
        except SnapshotError as err:
            raise InputError(str(err)) from err
        deadline_hit = False
        source = f"snapshot:{options.from_path}"
        live = False
    else:  # sample the host (or read the captured tree) with the playbook's probes
        if options.window_s is None:
            options = dataclasses.replace(options, window_s=playbook.window_s)
        candidates = symptom_candidates(playbook, rulebase)
        options = dataclasses.replace(options, ebpf_probes=tracing.probes_for(
            rulebase, candidates, probe_registry()))
        collected = collect(options, playbook.probe_names(_cheap_first(probe_registry())), started)
        snapshot, deadline_hit = collected.snapshot, collected.deadline_hit
        timings.update(collected.timings)
        snapshot, traced_late, tracing_timings = tracing.second_phase(
            snapshot, rulebase, candidates, options, started)
        deadline_hit |= traced_late
        timings.update(tracing_timings)
        live = snapshot.live
        source = "live" if live else f"tree:{snapshot.proc_root}"

    report = diagnose_snapshot(snapshot, playbook, rulebase, options, source=source,
                               rule_problems=rule_problems, deadline_hit=deadline_hit,
                               timings=timings, started=started,
                               run_follow_ups=live and options.follow_ups)
    return report


def netns_scoped_kinds(scope: Scope) -> frozenset:
    """With --netns, the fact kinds the probes read inside that namespace: findings on
    them are about the scoped object and rank above host-wide ones of equal certainty."""
    if scope.netns is None:
        return frozenset()
    from sysdiag.probes.registry import all_probes

    return frozenset(kind for cls in all_probes().values()
                     if getattr(cls, "netns_scoped", False) for kind in cls.provides)


def run_engine(rulebase: Any, snapshot: Snapshot, candidates: Optional[list[str]],
               coverage: list[ProbeOutcome], render: Mapping[str, Any],
               scoped_kinds: frozenset = frozenset()) -> EngineResult:
    from sysdiag.engine import run_engine as engine_run

    return engine_run(rulebase, list(snapshot.facts), candidates, coverage, dict(render),
                      scoped_kinds=scoped_kinds)


def diagnose_snapshot(snapshot: Snapshot, playbook: Playbook, rulebase: Any, options: Options,
                      source: str, rule_problems: Optional[list[RulePackError]] = None,
                      deadline_hit: bool = False, timings: Optional[dict[str, float]] = None,
                      started: Optional[float] = None, run_follow_ups: bool = False) -> Report:
    """Diagnose the facts of `snapshot` for the playbook's symptom."""
    from . import followups
    from .exonerate import exonerations
    from .report.models import BelowThreshold, Report

    started = time.monotonic() if started is None else started
    timings = dict(timings or {})
    scope = _merge_scope(snapshot.scope, options.scope)
    coverage = _coverage(snapshot, playbook)
    candidates = symptom_candidates(playbook, rulebase)
    render = {k: str(v) for k, v in scope.model_dump().items() if v is not None}

    t = time.monotonic()
    result = run_engine(rulebase, snapshot, candidates, coverage, render,
                        netns_scoped_kinds(scope))
    timings["engine_s"] = round(time.monotonic() - t, 4)

    findings = [h for h in result.hypotheses if h.score >= options.threshold]
    shown = findings[:options.top] if options.top is not None else findings
    below = [BelowThreshold(id=h.id, title=h.title, subject=h.subject, score=h.score,
                            certainty=h.certainty)
             for h in result.hypotheses if h.score < options.threshold]
    ruled_out = _ruled_out(result, candidates or [], rulebase)

    follow_results, follow_deadline = [], False
    if run_follow_ups and shown:
        t = time.monotonic()
        planned = followups.plan(shown, playbook.follow_ups, scope)
        follow_results, follow_deadline = followups.run(
            planned, deadline_at=started + options.deadline_s)
        timings["follow_ups_s"] = round(time.monotonic() - t, 4)

    incomplete_reason = _incomplete(coverage, deadline_hit, follow_deadline, options)
    timings["total_s"] = round(time.monotonic() - started, 4)
    notes = [playbook.notes] if playbook.notes else []
    return Report(
        sysdiag_version=__version__, generated_at=_now(), host=snapshot.host,
        symptom=playbook.symptom, window_s=snapshot.window_s, source=source, scope=scope,
        threshold=options.threshold, hypotheses=shown, hypotheses_total=len(findings),
        below_threshold=below, ruled_out=ruled_out,
        exonerated=exonerations(snapshot.facts, coverage, result.hypotheses, ruled_out,
                                defined=_with_rules(rulebase)),
        coverage=coverage, follow_ups=follow_results,
        timings={**result.timings, **timings},
        incomplete=incomplete_reason is not None, incomplete_reason=incomplete_reason,
        rule_errors=list(result.rule_errors), rule_pack_errors=list(rule_problems or []),
        notes=notes)


def symptom_candidates(playbook: Playbook, rulebase: Any) -> Optional[list[str]]:
    """The hypotheses a symptom weighs, in prior order: the playbook's, then those of
    --rules-dir packs that list the symptom (a pack cannot edit the playbooks). None for
    health: every hypothesis of the rulebase (the engine's `None`)."""
    if playbook.all_hypotheses:
        return None
    listed = list(playbook.hypotheses)
    extra = sorted(h.id for h in rulebase.hypotheses.values()
                   if h.pack != "builtin" and playbook.symptom in h.symptoms
                   and h.id not in listed)
    return listed + extra


def _with_rules(rulebase: Any) -> set[str]:
    return {hid for hid in rulebase.hypotheses if rulebase.rules_for(hid)}


def _merge_scope(saved: Scope, given: Scope) -> Scope:
    given_values = {k: v for k, v in given.model_dump().items() if v is not None}
    return Scope(**{**saved.model_dump(), **given_values})


def _coverage(snapshot: Snapshot, playbook: Playbook) -> list[ProbeOutcome]:
    """Every probe the snapshot recorded, then the playbook's probes it lacks."""
    coverage = list(snapshot.coverage)
    recorded = {o.probe for o in coverage}
    registry = probe_registry()
    for name in tracing.first_phase(playbook.probe_names(registry), registry, False):
        if name not in recorded:
            reason = NOT_IMPLEMENTED if name in PLANNED_PROBES else \
                "not in the snapshot (it was collected without this probe)"
            coverage.append(ProbeOutcome(probe=name, status="skipped", reason=reason))
    return coverage


def _ruled_out(result: EngineResult, candidates: list[str], rulebase: Any) -> list[RuledOut]:
    """The engine's ruled-out list, plus candidates it never mentioned (said so, rather
    than silently dropped); the ones that rules actually checked come first."""
    from sysdiag.engine.results import RuledOut

    from .exonerate import NO_RULES

    ruled_out = list(result.ruled_out)
    mentioned = {h.id for h in result.hypotheses} | {r.id for r in ruled_out}
    for hid in candidates:
        if hid not in mentioned:
            spec = rulebase.hypotheses.get(hid)
            reason = "no rule fired" if spec is not None else NO_RULES
            ruled_out.append(RuledOut(id=hid, title=getattr(spec, "title", hid), reason=reason))
    checked = _with_rules(rulebase)
    return sorted(ruled_out, key=lambda r: r.id not in checked or r.missing_fact is not None)


def _incomplete(coverage: list[ProbeOutcome], deadline_hit: bool, follow_deadline: bool,
                options: Options) -> Optional[str]:
    reasons = []
    if deadline_hit:
        reasons.append(f"the deadline ({options.deadline_s:g} s) was reached while sampling")
    timed_out = [o.probe for o in coverage if o.status == "timed_out"]
    if timed_out:
        reasons.append(f"probes timed out: {', '.join(timed_out)}")
    if follow_deadline:
        reasons.append("the deadline was reached before every follow-up command ran")
    if options.strict:
        missing = [o.probe for o in coverage if o.status not in ("ok", "timed_out")]
        if missing:
            reasons.append(f"--strict and these probes did not run: {', '.join(missing)}")
    return "; ".join(reasons) if reasons else None
