"""Snapshot.to_json writes exactly what json.dumps(..., indent=1) wrote, only faster."""
from __future__ import annotations

import json
import math

import pytest

from sysdiag.facts import HostInfo, ProbeOutcome, Snapshot
from sysdiag.facts.ebpf import RunqLatency
from sysdiag.facts.process import Process
from sysdiag.facts.snapshot import _fact_json
from sysdiag.pipeline import Options, collect


def reference(snapshot: Snapshot) -> str:
    """The encoding to_json replaced (one pure-Python json.dumps of everything)."""
    data = snapshot.model_dump(mode="json", exclude={"facts"})
    data["facts"] = [f.model_dump(mode="json") for f in snapshot.facts]
    return json.dumps(data, indent=1, sort_keys=False, allow_nan=False)


def make_snapshot(facts: list) -> Snapshot:
    return Snapshot(sysdiag_version="0.1.0", created_at="2026-01-01T00:00:00Z",
                    host=HostInfo(hostname="h\u00e9", source="t", cpu_count=2),
                    window_s=1.0, live=False, facts=facts,
                    coverage=[ProbeOutcome(probe="p", status="ok", warnings=["w \u202e"])])


@pytest.mark.parametrize("data", [
    {"kind": "x", "a": 1, "b": None, "c": True, "d": "t\u00e9\"\\\n\x1b\U0001f600"},
    {"f": 1e-05, "g": 1e16, "h": -0.0, "i": 2.5, "j": 10**20},
    {"nested": [1, [2, []], {}], "m": {"k": [{"x": 1}]}, "e": []},
    {"only": []}, {"only": {}}, {},
])
def test_one_fact_as_the_indenting_encoder_writes_it(data):
    expected = json.dumps({"facts": [data]}, indent=1)
    assert '{\n "facts": [\n  ' + _fact_json(data) + "\n ]\n}" == expected


def test_nan_is_refused_as_before():
    with pytest.raises(ValueError):
        _fact_json({"v": math.nan})


def test_built_snapshots_encode_the_same():
    evil = Process(source="t", pid=1, ppid=0, comm="\x1b[31m[bold]\u202e", state="R")
    hist = RunqLatency(source="t", scope="host", window_s=1.0, samples_total=3,
                       hist_log2_us=[0, 2, 1])
    for facts in ([], [evil], [evil, hist], [hist]):
        snapshot = make_snapshot(facts)
        assert snapshot.to_json() == reference(snapshot)


def test_save_writes_the_same_text_in_pieces(tmp_path):
    evil = Process(source="t", pid=1, ppid=0, comm="\u202e", state="R")
    for facts in ([], [evil], [evil, evil]):
        snapshot = make_snapshot(facts)
        snapshot.save(tmp_path / "s.json")
        assert (tmp_path / "s.json").read_text(encoding="utf-8") == reference(snapshot) + "\n"


@pytest.mark.live
def test_a_live_collection_encodes_the_same():
    snapshot = collect(Options(window_s=0)).snapshot
    assert len({f.kind for f in snapshot.facts}) > 10
    assert snapshot.to_json() == reference(snapshot)
