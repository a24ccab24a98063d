"""Every network-stack probe: metadata, doctests, the fixture tree and the live host through
the real runner, and the facts' JSON round trip."""
from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

from sysdiag.facts import FACT_MODELS, fact_from_dict
from sysdiag.probes.base import Probe, ProbeContext
from sysdiag.probes.registry import PROBE_MODULES, all_probes
from sysdiag.probes.runner import run_probes

FIXTURE = Path(__file__).resolve().parents[2].parent / "shared/fixtures/procfs"

NETSTACK = {
    "sysctl": "sysdiag.probes.procfs.sysctl",
    "conntrack": "sysdiag.probes.procfs.conntrack",
    "sockets": "sysdiag.probes.netlink.sockets",
    "neigh": "sysdiag.probes.netlink.neigh",
    "routes": "sysdiag.probes.netlink.routes",
    "netfilter": "sysdiag.probes.netfilter.ruleset",
}
MODULES = sorted(set(NETSTACK.values()) | {"sysdiag.probes.netlink.nldump",
                                           "sysdiag.probes.netfilter.modules"})


@pytest.mark.parametrize("name", sorted(NETSTACK))
def test_metadata(name):
    assert NETSTACK[name] in PROBE_MODULES
    cls = all_probes()[name]
    assert issubclass(cls, Probe) and cls.__module__ == NETSTACK[name]
    assert re.fullmatch(r"[a-z][a-z0-9-]*", cls.name)
    assert cls.description and cls.provides and not cls.needs_root
    assert all(kind in FACT_MODELS for kind in cls.provides), cls.provides
    assert cls.cost in ("cheap", "moderate") and 0 < cls.timeout_s <= 10


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def run(ctx: ProbeContext, window_s: float = 0.0):
    probes = [all_probes()[name]() for name in sorted(NETSTACK)]
    return probes, run_probes(probes, ctx, window_s=window_s, deadline_s=30)


@pytest.mark.skipif(not FIXTURE.is_dir(), reason="shared fixture tree not present")
def test_fixture_tree_through_the_runner():
    ctx = ProbeContext(proc_root=FIXTURE / "proc", sys_root=FIXTURE / "sys", live=False)
    probes, collection = run(ctx)
    outcomes = {o.probe: o for o in collection.outcomes}
    assert {n: o.status for n, o in outcomes.items()} == {
        "sysctl": "ok", "conntrack": "unavailable", "sockets": "ok", "neigh": "ok",
        "routes": "unavailable", "netfilter": "ok"}
    assert "nf_conntrack is not loaded" in outcomes["conntrack"].reason
    assert "/proc/net/route" in outcomes["routes"].reason
    kinds = {f.kind for f in collection.facts}
    assert kinds == {"sysctl", "socket_summary", "tcp_listener", "neigh_table", "neigh_entry",
                     "netfilter"}
    assert kinds <= {k for p in probes for k in p.provides}
    ids = [f.fact_id for f in collection.facts]
    assert len(ids) == len(set(ids))  # the engine refuses duplicate ids


@pytest.mark.live
def test_live_host_through_the_runner():
    probes, collection = run(ProbeContext(), window_s=0.3)
    statuses = {o.probe: o.status for o in collection.outcomes}
    assert statuses == {**dict.fromkeys(NETSTACK, "ok"), **(
        {"conntrack": statuses["conntrack"]} if statuses["conntrack"] == "unavailable" else {})}
    kinds = {f.kind for f in collection.facts}
    assert {"sysctl", "socket_summary", "neigh_table", "routes", "netfilter"} <= kinds
    assert kinds <= {k for p in probes for k in p.provides}
    ids = [f.fact_id for f in collection.facts]
    assert len(ids) == len(set(ids))
    for fact in collection.facts:  # what a snapshot stores loads back as the same fact
        assert fact_from_dict(fact.model_dump(mode="json")) == fact
