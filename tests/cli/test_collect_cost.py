"""What one `sysdiag collect` does not need to pay for (docs/performance.md)."""
from __future__ import annotations

import json

import pytest

import sysdiag.pipeline
from sysdiag import tracing
from sysdiag.cli import _start, app
from sysdiag.commands.collect import collect_command
from sysdiag.probes.registry import all_probes


def test_collect_no_ebpf_loads_no_rules(tmp_path, monkeypatch):
    """--no-ebpf only records the tracing probes as skipped: the rules are not needed."""
    def refuse(*args, **kwargs):
        raise AssertionError("collect --no-ebpf loaded the rules")

    monkeypatch.setattr(sysdiag.pipeline, "load_rules", refuse)
    out = tmp_path / "snap.json"
    code = _start(app, "sysdiag", ["collect", "-o", str(out), "--window", "0", "--no-ebpf"])
    assert code in (0, 3)  # 3: saved, but a probe hit the deadline on a busy host
    coverage = {o["probe"]: o for o in json.loads(out.read_text())["coverage"]}
    tracers = tracing.tracing_probes(all_probes())
    assert tracers, "no tracing probe registered: the test would prove nothing"
    for name in tracers:
        assert coverage[name]["status"] == "skipped"
        assert coverage[name]["reason"] == tracing.NO_EBPF


def test_collect_auto_still_loads_rules(tmp_path, monkeypatch):
    """Auto mode (no flag) still weighs the hypotheses, so it must load the rules."""
    class Loaded(Exception):
        pass

    def spy(*args, **kwargs):
        raise Loaded

    monkeypatch.setattr(sysdiag.pipeline, "load_rules", spy)
    with pytest.raises(Loaded):
        collect_command(output=tmp_path / "snap.json", window=0)
