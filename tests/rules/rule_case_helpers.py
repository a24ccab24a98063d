"""Table-driven rule cases: YAML tables of facts and what the built-in rules must conclude.

A case file (`cases_<domain>.yaml`) maps a hypothesis id to a list of cases:

    cpu-saturation:
      - case: PSI cpu some avg10 at the threshold
        facts: [{kind: psi, resource: cpu, some_avg10: 20}]
        fires: [cpu-saturation.psi]          # these rules must match
        silent: [cpu-saturation.runqueue]    # these must not
        subject: host                        # a reported finding of this hypothesis has this subject
        certainty: likely                    # ... and this certainty (`unlikely`: ruled out)
        pattern: one-off                     # ... and this pattern
        explanation: "25% busy"              # ... whose explanation contains this text
        next_command: "cat /proc/4242/stack" # ... one of whose next commands contains this text
        evidence: {route: nfs}               # ... with evidence field == value
        gated: true                          # the environment gate rules it out
        scope: {pid: "999"}                  # the command line's scope (--pid ...)

Facts are built as sysdiag.facts models (`fact_from_dict`), so a field name that the
models do not have fails the case loudly. DEFAULTS fill the required fields a case does
not care about.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import yaml

from sysdiag.engine import EngineResult, Hypothesis, run_engine
from sysdiag.facts.base import Fact
from sysdiag.facts.registry import fact_from_dict

CASES_DIR = Path(__file__).parent
GiB = 1 << 30

DEFAULTS: dict[str, dict[str, Any]] = {
    "host": {"hostname": "test-host", "virtualization": "bare-metal"},
    "cpu": {"cpu_count": 2},
    "cpu_core": {"cpu": 0},
    "loadavg": {"load1": 0.1, "load5": 0.1, "load15": 0.1, "runnable": 1, "tasks_total": 100},
    "psi": {},
    "memory": {"mem_total_bytes": 8 * GiB},
    "vmstat": {},
    "process": {"pid": 4242, "ppid": 1, "comm": "worker", "state": "S"},
    "tasks": {"processes": 100},
    "zombie_parent": {"ppid": 4000, "zombies": 1},
    "klog": {"count": 1},
}

KNOWN_KEYS = {"case", "facts", "fires", "silent", "subject", "certainty", "pattern",
              "explanation", "next_command", "evidence", "gated", "scope"}


def case_files() -> list[Path]:
    return sorted(CASES_DIR.glob("cases_*.yaml"))


def load_cases() -> Iterator[tuple[str, str, dict]]:
    """(file name, hypothesis id, case) for every case of every case file."""
    for path in case_files():
        table = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(table, dict):
            raise ValueError(f"{path}: expected a mapping of hypothesis id -> cases")
        for hid, cases in table.items():
            for index, case in enumerate(cases):
                unknown = set(case) - KNOWN_KEYS
                if unknown or "case" not in case or "facts" not in case:
                    raise ValueError(f"{path.name}: {hid} case {index}: needs `case` and `facts`; "
                                     f"unknown keys {sorted(unknown)}")
                yield path.name, hid, case


def build_facts(raw_facts: list[dict]) -> list[Fact]:
    facts = []
    for index, raw in enumerate(raw_facts):
        kind = raw.get("kind")
        data = {**DEFAULTS.get(kind, {}), "source": "test", **raw}
        facts.append(fact_from_dict(data, where=f"facts[{index}]"))
    return facts


def diagnose(rulebase, raw_facts: list[dict], scope: dict | None = None) -> EngineResult:
    """Every hypothesis is a candidate (the health sweep): relevance is 1.0 for all."""
    return run_engine(rulebase, build_facts(raw_facts), None, [], render=scope)


_RULE_IN_REASON = re.compile(r"([a-z0-9][\w.-]*) \([+-]\d\)")


def _walk(nodes) -> Iterator[str]:
    for node in nodes:
        yield node.rule
        yield from _walk(node.children)


def fired_rules(result: EngineResult) -> set[str]:
    """Rule ids that matched: from the derivation trees of reported hypotheses (weighing and
    deriving rules) and the for/against lists of the ruled-out ones."""
    fired: set[str] = set()
    for hyp in result.hypotheses:
        fired.update(_walk(hyp.derivation))
    for out in result.ruled_out:
        if out.reason.startswith("score "):
            fired.update(_RULE_IN_REASON.findall(out.reason))
    return fired


def findings(result: EngineResult, hid: str, subject: str | None = None) -> list[Hypothesis]:
    return [h for h in result.hypotheses
            if h.id == hid and (subject is None or h.subject == subject)]
