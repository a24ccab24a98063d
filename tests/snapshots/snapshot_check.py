"""The manifest of the snapshot fixtures, and how one fixture's diagnosis is judged.

Shared by test_snapshots.py (the offline check) and capture.py (which prints the same
verdict right after capturing). manifest.yaml maps `SYMPTOM/SCENARIO` (the fixture is
SYMPTOM/SCENARIO.json beside it) to: symptom, expected (the hypothesis that must rank
first), lookalike (a hypothesis of the same symptom that must rank below it or not be
reported), names (strings one finding of `expected` must name: a pid as `pid N`, a
cgroup path, a mount point, an interface), scope (the options collect was given), fault
(how it was made), captured (date), kernel, size_bytes, and optionally xfail (a known
rule gap: the test is a strict xfail with that reason).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.yaml"
sys.path.insert(0, str(HERE.parent / "e2e"))

from harness import DIAGNOSE, Pid, find, ranking, summary  # noqa: E402  (tests/e2e)

REQUIRED = ("symptom", "expected", "lookalike", "names", "scope", "fault", "captured",
            "kernel")


class ManifestError(ValueError):
    pass


def load_manifest(path: Path = MANIFEST) -> dict[str, dict[str, Any]]:
    """The entries, checked: every key is SYMPTOM/NAME, every field present."""
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: a mapping of SYMPTOM/SCENARIO -> entry expected")
    for key, entry in data.items():
        missing = [f for f in REQUIRED if not isinstance(entry, dict) or f not in entry]
        if missing:
            raise ManifestError(f"{path}: {key}: missing {', '.join(missing)} "
                                "(re-capture it with tests/snapshots/capture.py)")
        if key.split("/")[0] != entry["symptom"] or key.count("/") != 1:
            raise ManifestError(f"{path}: {key}: the key must be {entry['symptom']}/SCENARIO")
    return data


def save_manifest(entries: dict[str, dict[str, Any]], path: Path = MANIFEST) -> None:
    head = ("# Snapshot fixtures: written by tests/snapshots/capture.py (by hand, as root);\n"
            "# `xfail: REASON` marks a known rule gap and is kept across captures.\n")
    body = yaml.safe_dump(dict(sorted(entries.items())), sort_keys=False, width=100,
                          allow_unicode=True)
    path.write_text(head + body, encoding="utf-8")


def fixture_path(key: str) -> Path:
    return HERE / f"{key}.json"


def diagnose_fixture(path: Path, symptom: str) -> dict[str, Any]:
    """`diagnose --symptom S --from FILE --format json` (no follow-up commands: they would
    read this host, not the one captured)."""
    argv = [str(DIAGNOSE), "--symptom", symptom, "--from", str(path), "--format", "json",
            "--no-follow-ups"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if proc.returncode not in (0, 1):
        raise AssertionError(f"{' '.join(argv)}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    report = json.loads(proc.stdout)
    report["_e2e"] = {"argv": argv, "exit": proc.returncode}
    return report


def _name(text: str) -> str | Pid:
    """'pid 123' in the manifest is a process (named by subject, fact or explanation)."""
    if text.startswith("pid ") and text[4:].isdigit():
        return Pid(int(text[4:]))
    return text


def judge(report: dict[str, Any], entry: dict[str, Any]) -> list[str]:
    """What is wrong with this diagnosis of the fixture (empty: right)."""
    expected, lookalike = entry["expected"], entry["lookalike"]
    order = ranking(report)
    problems = []
    if not order or order[0] != expected:
        problems.append(f"{expected} does not rank first:\n{summary(report)}")
    if lookalike in order and expected in order and order.index(lookalike) < order.index(expected):
        problems.append(f"look-alike {lookalike} ranks above {expected}:\n{summary(report)}")
    weighed = {h["id"] for h in report.get("ruled_out", [])} | set(order) | {
        h["id"] for h in report.get("below_threshold", [])}
    if lookalike not in weighed:
        problems.append(f"look-alike {lookalike} was not weighed at all (not a candidate of "
                        f"{entry['symptom']}, or it has no rules)")
    names = [_name(n) for n in entry["names"]]
    if expected in order and find(report, expected, names) is None:
        texts = [f"  {h['subject']}: {h.get('explanation', '')[:200]}"
                 for h in report["hypotheses"] if h["id"] == expected]
        problems.append(f"no {expected} finding names {entry['names']}:\n" + "\n".join(texts))
    return problems
