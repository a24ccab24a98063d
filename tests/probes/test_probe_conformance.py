"""Every probe of the first set: metadata, doctests, and facts only of the kinds it provides."""
from __future__ import annotations

import doctest
import importlib
import re

import pytest

from sysdiag.facts import FACT_MODELS
from sysdiag.probes.base import Probe
from sysdiag.probes.registry import all_probes

from probe_helpers import run_one

FIRST_SET = {
    "host": "sysdiag.probes.procfs.host", "cpu": "sysdiag.probes.procfs.stat",
    "loadavg": "sysdiag.probes.procfs.loadavg", "psi": "sysdiag.probes.procfs.pressure",
    "memory": "sysdiag.probes.procfs.meminfo", "vmstat": "sysdiag.probes.procfs.vmstat",
    "processes": "sysdiag.probes.process.processes", "klog": "sysdiag.probes.klog.kmsg",
}
MODULES = sorted(set(FIRST_SET.values()) | {"sysdiag.probes.klog.signatures",
                                            "sysdiag.probes.parse",
                                            "sysdiag.probes.procfs.cpus"})


@pytest.mark.parametrize("name", sorted(FIRST_SET))
def test_metadata(name):
    cls = all_probes()[name]
    assert issubclass(cls, Probe) and cls.__module__ == FIRST_SET[name]
    assert re.fullmatch(r"[a-z][a-z0-9-]*", cls.name)
    assert cls.description and cls.provides
    assert all(kind in FACT_MODELS for kind in cls.provides), cls.provides
    assert cls.cost == "cheap" and 0 < cls.timeout_s <= 10


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


@pytest.mark.parametrize("name", sorted(set(FIRST_SET) - {"klog", "vmstat"}))
def test_emits_only_what_it_provides(name, tree_ctx):
    probe = all_probes()[name]()
    outcome, facts = run_one(probe, tree_ctx)
    assert outcome.status == "ok", outcome.reason
    assert facts and {f.kind for f in facts} <= set(probe.provides)
    assert all(f.source.startswith(str(tree_ctx.proc_root)) for f in facts)
