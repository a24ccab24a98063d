"""The authoring commands through the installed CLI, and rule packs in `diagnose`."""
from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from authoring_helpers import write

from sysdiag.facts import HostInfo, ProbeOutcome, Snapshot
from sysdiag.facts.registry import fact_from_dict

BIN = Path(sys.executable).parent
SYSDIAG = str(BIN / "sysdiag")


def run(*argv, cwd=None):
    import subprocess
    return subprocess.run([SYSDIAG, *map(str, argv)], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def _snapshot(path: Path, facts: list[dict], coverage=()) -> Path:
    Snapshot(sysdiag_version="0", created_at="2026-01-01T00:00:00Z",
             host=HostInfo(hostname="h", source="test"), window_s=5.0, live=True,
             facts=[fact_from_dict({"source": "test", **f}) for f in facts],
             coverage=list(coverage)).save(path)
    return path


def test_new_scaffolds_a_rule_that_passes_lint_and_test(tmp_path):
    pack = tmp_path / "mypack"
    r = run("rules", "new", "app-spin", "--dir", pack, "--domain", "process")
    assert r.returncode == 0, r.stderr
    assert (pack / "app-spin.yaml").is_file() and (pack / "tests" / "app-spin.yaml").is_file()
    lint = run("rules", "lint", "--strict", pack)
    assert lint.returncode == 0 and "0 errors, 0 warnings" in lint.stdout, lint.stdout
    test = run("rules", "test", pack)
    assert test.returncode == 0, test.stdout + test.stderr
    assert "2 cases in 1 files: 2 passed, 0 failed" in test.stdout
    assert "coverage: rules 1/2" in test.stdout  # the -1 rule has no case yet: said so
    assert "rule not covered: app-spin.mostly-waiting" in test.stdout
    again = run("rules", "new", "app-spin", "--dir", pack)
    assert again.returncode == 2 and "exists; not overwritten" in again.stderr
    bad = run("rules", "new", "App_Spin", "--dir", pack)
    assert bad.returncode == 2 and "kebab-case" in bad.stderr


def test_test_fails_with_a_diff_and_writes_junit(pack, tmp_path):
    text = (pack / "tests" / "site-batch-hog.yaml").read_text()
    (pack / "tests" / "site-batch-hog.yaml").write_text(text.replace("rank: 1", "rank: 3"))
    junit = tmp_path / "out.xml"
    r = run("rules", "test", pack, "--junit", junit)
    assert r.returncode == 1
    assert "FAIL " in r.stdout and "a busy batch job" in r.stdout
    assert "expected 3" in r.stdout and "actual   1" in r.stdout
    assert "2 cases in 1 files: 1 passed, 1 failed" in r.stdout
    root = ET.parse(junit).getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == 2 and len(root.findall(".//failure")) == 1


def test_lint_reports_file_line_column_and_exits_1(pack):
    text = (pack / "site-batch-hog.yaml").read_text()
    (pack / "site-batch-hog.yaml").write_text(text.replace("weight: 2", "weight: 5"))
    r = run("rules", "lint", pack)
    assert r.returncode == 1
    assert f"{pack / 'site-batch-hog.yaml'}:12:13: error: weight 5 is not one of" in r.stdout


def test_explain_fired_with_derivation_values_and_not_fired_with_the_reason(pack, tmp_path):
    busy = _snapshot(tmp_path / "busy.json", [
        {"kind": "process", "pid": 77, "ppid": 1, "comm": "batch-export", "state": "R",
         "cpu_pct": 95.0, "nice": 0}])
    r = run("rules", "explain", "site-batch-hog", "--from", busy, "--rules-dir", pack)
    assert r.returncode == 0, r.stderr
    assert "FIRED for pid 77 (batch-export): #1, score 0.50 (likely)" in r.stdout
    assert "[+2] site-batch-hog.busy: process.cpu_pct = 95.0" in r.stdout
    assert "p = process:77: comm='batch-export', cpu_pct=95.0" in r.stdout
    assert "[-1] site-batch-hog.niced: process.nice >= 10 is false (actual 0" in r.stdout

    quiet = _snapshot(tmp_path / "quiet.json", [
        {"kind": "process", "pid": 77, "ppid": 1, "comm": "batch-export", "state": "R",
         "cpu_pct": 42.0}])
    r = run("rules", "explain", "site-batch-hog", "--from", quiet, "--rules-dir", pack)
    assert "NOT REPORTED" in r.stdout
    assert "first failing condition: " in r.stdout and "actual 42.0" in r.stdout

    none = _snapshot(tmp_path / "none.json", [],
                     [ProbeOutcome(probe="processes", status="unavailable", reason="no /proc",
                                   provides=["process", "tasks"])])
    r = run("rules", "explain", "site-batch-hog", "--from", none, "--rules-dir", pack)
    assert "missing fact: process (probe: processes)" in r.stdout
    assert "probe processes unavailable: no /proc" in r.stdout
    r = run("rules", "explain", "site-batch-hog.niced", "--from", busy, "--rules-dir", pack)
    assert "did not fire: process.nice >= 10 is false (actual 0" in r.stdout
    r = run("rules", "explain", "site-batch-hgo", "--from", busy, "--rules-dir", pack)
    assert r.returncode == 2 and "did you mean site-batch-hog" in r.stderr


def test_docs_is_a_catalog_grouped_by_symptom(pack, tmp_path):
    out = tmp_path / "catalog.md"
    r = run("rules", "docs", "--rules-dir", pack, "-o", out)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert text.startswith("# Rule catalog")
    high_cpu = text.index("## high-cpu")
    assert text.index("### site-batch-hog", high_cpu) > high_cpu
    assert "| +2 | `site-batch-hog.busy` |" in text and "| -1 | `site-batch-hog.niced` |" in text
    assert "- `pidstat -u -p {pid} 1 5`" in text and "pack `sitepack`" in text
    # described once, linked from its second symptom
    assert text.count("### site-batch-hog") == 1
    assert "- [site-batch-hog](#site-batch-hog)" in text
    assert "### cpu-saturation" in text and "## Derived facts" in text


def test_a_broken_pack_never_stops_a_diagnosis(pack, tmp_path):
    broken = tmp_path / "broken"
    write(broken / "bad.yaml", """\
        hypothesis:
          id: demo-thing
          title: A demo
          severity: low
          colour: red
        rules: []
        """)
    busy = _snapshot(tmp_path / "busy.json", [
        {"kind": "process", "pid": 77, "ppid": 1, "comm": "batch-export", "state": "R",
         "cpu_pct": 95.0},
        {"kind": "psi", "resource": "cpu", "some_avg10": 40.0}])
    r = run("diagnose", "-s", "high-cpu", "--from", busy, "--rules-dir", broken,
            "--rules-dir", pack, "--format", "json", "--threshold", "0.2")
    assert r.returncode == 1, r.stderr
    assert f"rule pack rejected: {broken / 'bad.yaml'}:5:" in r.stderr and "colour" in r.stderr
    report = json.loads(r.stdout)
    assert report["rule_pack_errors"][0]["line"] == 5
    packs = {h["id"]: h["rule_pack"] for h in report["hypotheses"]}
    assert packs["cpu-saturation"] == "builtin"  # the built-in rules still ran
    assert packs["site-batch-hog"] == "sitepack"  # a pack's hypothesis joins its symptoms
