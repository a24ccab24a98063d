"""The storage, VFS and cgroup probes through the real runner: metadata, doctests,
outcomes on the fixture tree and on the live host, and only the kinds they provide."""
from __future__ import annotations

import doctest
import importlib
import re

import pytest

from sysdiag.facts import FACT_MODELS
from sysdiag.probes.base import Probe, ProbeContext
from sysdiag.probes.registry import PROBE_MODULES, all_probes

from probe_helpers import run_one

PROBES = {
    "mounts": "sysdiag.probes.procfs.mounts",
    "filesystems": "sysdiag.probes.procfs.filesystems",
    "diskstats": "sysdiag.probes.procfs.diskstats",
    "file-nr": "sysdiag.probes.procfs.filenr",
    "locks": "sysdiag.probes.procfs.locks",
    "cgroups": "sysdiag.probes.sysfs.cgroups",
}
MODULES = sorted(set(PROBES.values()) | {"sysdiag.probes.sysfs.cgroupfs"})

#: a captured tree has no statfs, and the prometheus fixture has no /proc/locks,
#: /proc/sys/fs or cgroup tree
ON_FIXTURE = {"mounts": "ok", "diskstats": "ok", "filesystems": "unavailable",
              "file-nr": "unavailable", "locks": "unavailable", "cgroups": "unavailable"}


@pytest.mark.parametrize("name", sorted(PROBES))
def test_metadata(name):
    cls = all_probes()[name]
    assert cls.__module__ == PROBES[name] and PROBES[name] in PROBE_MODULES
    assert issubclass(cls, Probe)
    assert re.fullmatch(r"[a-z][a-z0-9-]*", cls.name)
    assert cls.description and cls.provides
    assert all(kind in FACT_MODELS for kind in cls.provides), cls.provides
    assert cls.cost == "cheap" and 0 < cls.timeout_s <= 10


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


@pytest.mark.parametrize("name", sorted(PROBES))
def test_outcome_on_the_fixture_tree(name, tree_ctx):
    probe = all_probes()[name]()
    outcome, facts = run_one(probe, tree_ctx)
    assert outcome.status == ON_FIXTURE[name], outcome.reason
    if outcome.status == "ok":
        assert facts and {f.kind for f in facts} <= set(probe.provides)
        assert all(f.source.startswith(str(tree_ctx.proc_root)) for f in facts)
        assert not outcome.warnings
    else:
        assert outcome.reason and not facts


@pytest.mark.live
@pytest.mark.parametrize("name", sorted(PROBES))
def test_live_host_through_the_runner(name):
    probe = all_probes()[name]()
    outcome, facts = run_one(probe, ProbeContext(), window_s=0.2)
    assert outcome.status == "ok", outcome.reason
    assert {f.kind for f in facts} <= set(probe.provides)
    assert len({f.fact_id for f in facts}) == len(facts)  # natural keys are unique
