"""Snapshot tests: facts captured on this kind of host while a real fault was active
(tests/snapshots/capture.py, see manifest.yaml for each fault), diagnosed offline.

For every fixture: the expected hypothesis ranks first, the named look-alike of the same
symptom ranks below it or is not reported (it must at least have been weighed), and a
finding of the expected hypothesis names the faulty object (pid, cgroup, mount point,
interface, port). The fixtures are what the host showed; never edit their values, re-capture.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from snapshot_check import (HERE, ManifestError, diagnose_fixture, fixture_path, judge,
                            load_manifest)
from sysdiag.playbook import SYMPTOMS

MANIFEST = load_manifest()
#: every symptom but the health sweep needs this many passing fixtures
MIN_PER_SYMPTOM = 2


def _params():
    for key, entry in MANIFEST.items():
        marks = []
        if entry.get("xfail"):
            marks.append(pytest.mark.xfail(strict=True, reason=entry["xfail"]))
        yield pytest.param(key, entry, id=key, marks=marks)


@pytest.mark.parametrize("key, entry", list(_params()))
def test_fixture_ranks_the_fault_first(key, entry):
    path = fixture_path(key)
    assert path.is_file(), f"{path} is listed in manifest.yaml but missing: re-capture {key}"
    problems = judge(diagnose_fixture(path, entry["symptom"]), entry)
    assert not problems, f"{key} ({entry['fault']}):\n" + "\n".join(problems)


#: symptoms still short of passing fixtures, and why (strict: remove once captured)
SHORT: dict[str, str] = {}


@pytest.mark.parametrize("symptom", [
    pytest.param(s, marks=[pytest.mark.xfail(strict=True, reason=SHORT[s])] if s in SHORT else [])
    for s in SYMPTOMS if s != "health"])
def test_every_symptom_has_two_passing_fixtures(symptom):
    passing = [k for k, e in MANIFEST.items() if e["symptom"] == symptom and not e.get("xfail")]
    assert len(passing) >= MIN_PER_SYMPTOM, (
        f"{symptom}: {len(passing)} passing fixture(s) {passing}, {MIN_PER_SYMPTOM} needed")


def test_manifest_and_fixture_files_agree():
    on_disk = {str(p.relative_to(HERE).with_suffix("")) for p in HERE.glob("*/*.json")}
    assert on_disk == set(MANIFEST), (
        f"fixtures without a manifest entry: {sorted(on_disk - set(MANIFEST))}; "
        f"entries without a fixture: {sorted(set(MANIFEST) - on_disk)}")


@pytest.mark.parametrize("key, entry", [pytest.param(k, e, id=k) for k, e in MANIFEST.items()])
def test_fixture_is_an_unedited_live_capture_with_its_scope(key, entry):
    """The snapshot came from `sysdiag collect` on a live host, with the scope the manifest
    says, and the look-alike is a different hypothesis of the same symptom."""
    snap = json.loads(fixture_path(key).read_text(encoding="utf-8"))
    assert snap["live"] is True and snap["host"]["kernel_release"] == entry["kernel"]
    saved = {k: str(v) for k, v in snap["scope"].items() if v is not None}
    assert saved == entry["scope"]
    assert entry["lookalike"] != entry["expected"]


def test_a_wrong_expectation_is_caught(tmp_path):
    """judge() fails a fixture whose expected hypothesis is not first, whose look-alike
    ranks above it, or whose finding does not name the object."""
    key, entry = next(iter(MANIFEST.items()))
    report = diagnose_fixture(fixture_path(key), entry["symptom"])
    swapped = {**entry, "expected": entry["lookalike"], "lookalike": entry["expected"]}
    assert any("does not rank first" in p for p in judge(report, swapped))
    unnamed = {**entry, "names": ["/no/such/object"]}
    assert any("names" in p for p in judge(report, unnamed))


def test_manifest_errors_name_the_entry(tmp_path):
    bad = tmp_path / "manifest.yaml"
    bad.write_text("oom/x:\n  symptom: oom\n  expected: mem-global-oom\n")
    with pytest.raises(ManifestError, match=r"oom/x: missing lookalike, names"):
        load_manifest(Path(bad))
