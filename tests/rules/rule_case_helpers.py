"""Facts for the look-alike ranking tests (test_*_ranking.py), built like the rule test
files' inline facts (rules/<domain>/tests/, docs/rule-authoring.md "Test files").

Facts are sysdiag.facts models (`fact_from_dict`), so a field name that the models do not
have fails the test loudly. DEFAULTS fill the required fields a test does not care about.
"""
from __future__ import annotations

from typing import Any

from sysdiag.facts.base import Fact
from sysdiag.facts.registry import fact_from_dict

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


def build_facts(raw_facts: list[dict]) -> list[Fact]:
    facts = []
    for index, raw in enumerate(raw_facts):
        kind = raw.get("kind")
        data = {**DEFAULTS.get(kind, {}), "source": "test", **raw}
        facts.append(fact_from_dict(data, where=f"facts[{index}]"))
    return facts
