"""The NIC and namespace probes: metadata, doctests, playbooks that use them, and what
each emits through the real runner on the fixture tree and on the live host."""
from __future__ import annotations

import doctest
import importlib
import re

import pytest

from sysdiag.facts import FACT_MODELS
from sysdiag.playbook import PLANNED_PROBES, load_all
from sysdiag.probes.base import Probe, ProbeContext
from sysdiag.probes.registry import PROBE_MODULES, all_probes
from sysdiag.probes.runner import run_probes

NIC = {
    "interrupts": "sysdiag.probes.procfs.interrupts",
    "rps-xps": "sysdiag.probes.sysfs.queues",
    "offloads": "sysdiag.probes.netlink.ethtool",
    "namespaces": "sysdiag.probes.netlink.netns",
}
MODULES = sorted(set(NIC.values()) | {"sysdiag.probes.netlink.genl", "sysdiag.probes.scope"})


@pytest.mark.parametrize("name", sorted(NIC))
def test_metadata(name):
    assert NIC[name] in PROBE_MODULES and name not in PLANNED_PROBES
    cls = all_probes()[name]
    assert issubclass(cls, Probe) and cls.__module__ == NIC[name]
    assert re.fullmatch(r"[a-z][a-z0-9-]*", cls.name)
    assert cls.description and cls.provides
    assert all(kind in FACT_MODELS for kind in cls.provides), cls.provides
    assert cls.cost == "cheap" and 0 < cls.timeout_s <= 10 and not cls.needs_root


@pytest.mark.parametrize("name", sorted(NIC))
def test_a_symptom_playbook_runs_it(name):
    playbooks = load_all(all_probes())
    users = [s for s, p in playbooks.items() if s != "health" and name in p.probes]
    assert users, f"no symptom playbook lists {name}"


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def run(ctx: ProbeContext, window_s: float = 0.0):
    probes = [all_probes()[name]() for name in sorted(NIC)]
    return probes, run_probes(probes, ctx, window_s=window_s, deadline_s=30)


def test_fixture_tree_through_the_runner(tree_ctx):
    probes, collection = run(tree_ctx)
    outcomes = {o.probe: o for o in collection.outcomes}
    assert {n: o.status for n, o in outcomes.items()} == {
        "interrupts": "ok", "rps-xps": "ok", "namespaces": "ok", "offloads": "unavailable"}
    assert "live kernel" in outcomes["offloads"].reason
    kinds = {f.kind for f in collection.facts}
    assert kinds == {"softirq_cpu", "softirq_summary", "net_namespace"}
    assert kinds <= {k for p in probes for k in p.provides}
    assert all(f.source.startswith(str(tree_ctx.proc_root)) for f in collection.facts)


@pytest.mark.live
def test_live_host_through_the_runner():
    probes, collection = run(ProbeContext(), window_s=0.3)
    assert {o.probe: o.status for o in collection.outcomes} == dict.fromkeys(NIC, "ok")
    kinds = {f.kind for f in collection.facts}
    assert {"softirq_cpu", "softirq_summary", "nic_queues", "nic_offloads",
            "net_namespace"} <= kinds
    assert kinds <= {k for p in probes for k in p.provides}
