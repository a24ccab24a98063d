"""Exonerated resources: what was measured and found healthy (DESIGN.md "Report").

A resource is exonerated when the probes that measure it ran ok, at least one of
its candidate hypotheses has rules, was checked and was ruled out, and none of its
hypotheses has any support. The summary quotes the measurements, so "healthy" is never a bare
claim: "cpu: 12% busy on 2 CPUs, 1 runnable task, steal 0%".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection, Iterable, Optional, Sequence

from sysdiag.engine.results import Hypothesis, RuledOut
from sysdiag.facts import Fact, ProbeOutcome

from .report.models import Exoneration

#: RuledOut.reason the pipeline uses for candidates the engine did not mention
NO_RULES = "no rules for this hypothesis in this version"

Facts = dict[str, list[Fact]]


def _one(facts: Facts, kind: str, **match: object) -> Optional[Fact]:
    for fact in facts.get(kind, []):
        if all(getattr(fact, k, None) == v for k, v in match.items()):
            return fact
    return None


def _pct(value: Optional[float]) -> Optional[str]:
    return None if value is None else f"{value:.0f}%"


def _join(parts: Iterable[Optional[str]]) -> str:
    return ", ".join(p for p in parts if p)


def _cpu(facts: Facts) -> Optional[str]:
    cpu = _one(facts, "cpu")
    if cpu is None or getattr(cpu, "busy_pct", None) is None:
        return None
    psi = _one(facts, "psi", resource="cpu")
    load = _one(facts, "loadavg")
    return "cpu: " + _join([
        f"{cpu.busy_pct:.0f}% busy on {cpu.cpu_count} CPUs",
        f"{cpu.procs_running} runnable" if cpu.procs_running is not None else None,
        f"steal {_pct(cpu.steal_pct)}" if cpu.steal_pct is not None else None,
        f"load1 {load.load1:g}" if load is not None else None,
        f"PSI some avg10 {psi.some_avg10:g}%" if psi is not None and psi.some_avg10 is not None
        else None,
    ])


def _memory(facts: Facts) -> Optional[str]:
    mem = _one(facts, "memory")
    if mem is None or getattr(mem, "available_pct", None) is None:
        return None
    vm = _one(facts, "vmstat")
    psi = _one(facts, "psi", resource="memory")
    return "memory: " + _join([
        f"{mem.available_pct:.0f}% available of {mem.mem_total_bytes / 2**30:.1f} GiB",
        f"swap {_pct(mem.swap_used_pct)} used" if mem.swap_used_pct is not None else None,
        f"{vm.pgmajfault_per_s:.0f} major faults/s"
        if vm is not None and vm.pgmajfault_per_s is not None else None,
        f"PSI some avg10 {psi.some_avg10:g}%" if psi is not None and psi.some_avg10 is not None
        else None,
    ])


def _processes(facts: Facts) -> Optional[str]:
    tasks = _one(facts, "tasks")
    if tasks is None:
        return None
    return "processes: " + _join([
        f"{tasks.processes} processes",
        f"{tasks.uninterruptible} in D state",
        f"{tasks.zombies} zombies",
        f"{tasks.stopped} stopped" if tasks.stopped else None,
    ])


def _io(facts: Facts) -> Optional[str]:
    psi = _one(facts, "psi", resource="io")
    if psi is None or psi.some_avg10 is None:
        return None
    return "io: " + _join([
        f"PSI io some avg10 {psi.some_avg10:g}%",
        f"full avg10 {psi.full_avg10:g}%" if psi.full_avg10 is not None else None,
    ])


@dataclass(frozen=True)
class Resource:
    name: str
    prefixes: tuple[str, ...]  # hypothesis ids of this resource start with one of these
    probes: tuple[str, ...]  # each must have run ok
    summary: Callable[[Facts], Optional[str]]


RESOURCES: tuple[Resource, ...] = (
    Resource("cpu", ("cpu-",), ("cpu",), _cpu),
    Resource("memory", ("mem-",), ("memory",), _memory),
    Resource("processes", ("proc-",), ("processes",), _processes),
    Resource("io", ("io-",), ("psi",), _io),
)


def exonerations(facts: Sequence[Fact], coverage: Sequence[ProbeOutcome],
                 hypotheses: Sequence[Hypothesis],
                 ruled_out: Sequence[RuledOut], defined: Collection[str]) -> list[Exoneration]:
    """`defined`: the hypothesis ids the rulebase has rules for; a candidate without
    rules was not checked, so it never exonerates anything."""
    by_kind: Facts = {}
    for fact in facts:
        by_kind.setdefault(fact.kind, []).append(fact)
    ok = {o.probe for o in coverage if o.status == "ok"}
    out = []
    for res in RESOURCES:
        if not all(p in ok for p in res.probes):
            continue
        if any(h.id.startswith(res.prefixes) for h in hypotheses):
            continue  # something of this resource has support (even below the threshold)
        checked = [r.id for r in ruled_out if r.id.startswith(res.prefixes)
                   and r.id in defined and r.missing_fact is None]
        if not checked:
            continue
        summary = res.summary(by_kind)
        if summary:
            out.append(Exoneration(resource=res.name, summary=summary, probes=list(res.probes),
                                   ruled_out=checked))
    return out
