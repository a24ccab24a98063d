"""The system probes through the real runner: metadata, doctests, outcomes on the fixture
tree and on the live host, and only the kinds they provide."""
from __future__ import annotations

import doctest
import importlib
import re

import pytest

from sysdiag.facts import FACT_MODELS
from sysdiag.probes.base import Probe, ProbeContext
from sysdiag.probes.registry import PROBE_MODULES, all_probes
from sysdiag.playbook import PLANNED_PROBES

from probe_helpers import run_one

PROBES = {
    "kernel": "sysdiag.probes.procfs.kernelcfg",
    "numa": "sysdiag.probes.sysfs.numa",
    "mdstat": "sysdiag.probes.procfs.mdstat",
    "deleted-files": "sysdiag.probes.procfs.deleted",
    "inotify": "sysdiag.probes.procfs.inotify",
    "fuse": "sysdiag.probes.sysfs.fuse",
}
MODULES = sorted(set(PROBES.values()) | {"sysdiag.probes.process.processes"})

#: the fixture has no /proc/sys/kernel/osrelease but a cmdline, node dirs without meminfo,
#: an mdstat full of cases, no live fds, no FUSE mounts
ON_FIXTURE = {"kernel": "ok", "numa": "ok", "mdstat": "ok", "deleted-files": "unavailable",
              "inotify": "unavailable", "fuse": "ok"}


@pytest.mark.parametrize("name", sorted(PROBES))
def test_metadata(name):
    cls = all_probes()[name]
    assert cls.__module__ == PROBES[name] and PROBES[name] in PROBE_MODULES
    assert issubclass(cls, Probe) and name not in PLANNED_PROBES
    assert re.fullmatch(r"[a-z][a-z0-9-]*", cls.name)
    assert cls.description and cls.provides and not cls.needs_root
    assert all(kind in FACT_MODELS for kind in cls.provides), cls.provides
    assert cls.cost == "cheap" and 0 < cls.timeout_s <= 10


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize("name", sorted(PROBES))
def test_outcome_on_the_fixture_tree(name, tree_ctx):
    probe = all_probes()[name]()
    outcome, facts = run_one(probe, tree_ctx)
    assert outcome.status == ON_FIXTURE[name], outcome.reason
    assert {f.kind for f in facts} <= set(probe.provides)
    assert all(f.source.startswith(str(tree_ctx.proc_root.parent)) for f in facts)
    if outcome.status != "ok":
        assert outcome.reason and not facts


@pytest.mark.live
@pytest.mark.parametrize("name", sorted(PROBES))
def test_live_host_through_the_runner(name):
    probe = all_probes()[name]()
    outcome, facts = run_one(probe, ProbeContext(), window_s=0.2)
    if name == "mdstat" and outcome.status == "unavailable":
        assert "CONFIG_BLK_DEV_MD" in outcome.reason  # no md on this host
        return
    assert outcome.status == "ok", outcome.reason
    assert {f.kind for f in facts} <= set(probe.provides)
    assert len({f.fact_id for f in facts}) == len(facts)  # natural keys are unique
    for fact in facts:
        FACT_MODELS[fact.kind].model_validate(fact.model_dump())  # round-trips
