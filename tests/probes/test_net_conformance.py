"""Every network probe: metadata, doctests, what it emits through the real runner."""
from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

from sysdiag.facts import FACT_MODELS
from sysdiag.probes.base import Probe, ProbeContext
from sysdiag.probes.registry import PROBE_MODULES, all_probes
from sysdiag.probes.runner import run_probes

FIXTURE = Path(__file__).resolve().parents[2].parent / "shared/fixtures/procfs"

NETWORK = {
    "net-links": "sysdiag.probes.netlink.links",
    "qdiscs": "sysdiag.probes.netlink.qdiscs",
    "softnet": "sysdiag.probes.procfs.softnet",
    "netstat": "sysdiag.probes.procfs.netstat",
}
MODULES = sorted(set(NETWORK.values()) | {"sysdiag.probes.netlink.rtnl"})


@pytest.mark.parametrize("name", sorted(NETWORK))
def test_metadata(name):
    assert NETWORK[name] in PROBE_MODULES
    cls = all_probes()[name]
    assert issubclass(cls, Probe) and cls.__module__ == NETWORK[name]
    assert re.fullmatch(r"[a-z][a-z0-9-]*", cls.name)
    assert cls.description and cls.provides
    assert all(kind in FACT_MODELS for kind in cls.provides), cls.provides
    assert cls.cost == "cheap" and 0 < cls.timeout_s <= 10 and not cls.needs_root


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def run(ctx: ProbeContext, window_s: float = 0.0):
    probes = [all_probes()[name]() for name in sorted(NETWORK)]
    collection = run_probes(probes, ctx, window_s=window_s, deadline_s=30)
    return probes, collection


@pytest.mark.skipif(not FIXTURE.is_dir(), reason="shared fixture tree not present")
def test_fixture_tree_through_the_runner():
    ctx = ProbeContext(proc_root=FIXTURE / "proc", sys_root=FIXTURE / "sys", live=False)
    probes, collection = run(ctx)
    outcomes = {o.probe: o for o in collection.outcomes}
    assert {n: o.status for n, o in outcomes.items()} == {
        "net-links": "ok", "netstat": "ok", "softnet": "ok", "qdiscs": "unavailable"}
    assert "netlink needs a live kernel" in outcomes["qdiscs"].reason
    provides = {p.name: set(p.provides) for p in probes}
    kinds = {f.kind for f in collection.facts}
    assert kinds == {"net_link", "softnet", "sockstat"}
    assert all(f.source.startswith((str(ctx.proc_root), str(ctx.sys_root)))
               for f in collection.facts)
    assert kinds <= set().union(*provides.values())


@pytest.mark.live
def test_live_host_through_the_runner():
    probes, collection = run(ProbeContext(), window_s=0.3)
    assert {o.probe: o.status for o in collection.outcomes} == dict.fromkeys(NETWORK, "ok")
    kinds = {f.kind for f in collection.facts}
    assert {"net_link", "qdisc", "softnet", "net_counters", "sockstat"} <= kinds
    assert kinds <= {kind for p in probes for kind in p.provides}
    # rates exist on a live host (two samples)
    link = next(f for f in collection.facts if f.kind == "net_link")
    assert link.rx_bytes_per_s is not None
