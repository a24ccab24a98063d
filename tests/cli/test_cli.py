"""The CLI as a user runs it: the installed `sysdiag` and `diagnose` scripts, their
output streams and the exit codes automation keys on (DESIGN.md "Exit codes")."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jsonschema
import pytest
from cli_helpers import DIAGNOSE, SYSDIAG, busy_snapshot, run

from sysdiag.facts import ProbeOutcome
from sysdiag.playbook import PLANNED_PROBES, SYMPTOMS, load_playbook
from sysdiag.probes.registry import all_probes

FIXTURE_TREE = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "procfs"


def one_line_error(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    """The contract for input errors: the code, nothing on stdout, one stderr line."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture
def busy(tmp_path: Path) -> Path:
    path = tmp_path / "busy.json"
    busy_snapshot().save(path)
    return path


def _json(proc: subprocess.CompletedProcess) -> dict:
    return json.loads(proc.stdout)


# ---- usage and input errors: exit 2, one line -------------------------------------------

@pytest.mark.parametrize("argv, expect", [
    (["--symptom", "latency"], "unknown symptom 'latency'; known symptoms: high-latency"),
    ([], "Missing option '--symptom'"),
    (["--symptom", "oom", "--bogus"], "No such option: --bogus"),
    (["--symptom", "oom", "--format", "xml"], "'xml' is not one of"),
    (["--symptom", "oom", "--top", "0"], "--top"),
    (["--symptom", "oom", "--pid", "999999999"], "--pid 999999999: no such process"),
    (["--symptom", "oom", "--from", "x.json", "--proc-root", "/proc"], "cannot be combined"),
    (["--symptom", "oom", "--from", "/nonexistent/snap.json"], "/nonexistent/snap.json: no such"),
])
def test_usage_errors_exit_2_with_one_line(argv, expect):
    line = one_line_error(run([DIAGNOSE, *argv]))
    assert expect in line and line.startswith("diagnose: ")


def test_truncated_snapshot_names_the_file(busy, tmp_path):
    bad = tmp_path / "truncated.json"
    bad.write_text(busy.read_text()[:500])
    line = one_line_error(run([DIAGNOSE, "-s", "high-cpu", "--from", str(bad)]))
    assert f"{bad}:" in line and "truncated" in line


def test_wrong_schema_version_names_the_file_and_version(busy, tmp_path):
    data = json.loads(busy.read_text())
    data["schema_version"] = 99
    bad = tmp_path / "future.json"
    bad.write_text(json.dumps(data))
    line = one_line_error(run([SYSDIAG, "diagnose", "-s", "high-cpu", "--from", str(bad)]))
    assert str(bad) in line and "schema_version 99" in line and line.startswith("sysdiag: ")


def test_a_bad_rule_pack_is_rejected_and_the_builtin_rules_run(tmp_path):
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "bad.yaml").write_text(textwrap.dedent("""\
        hypothesis:
          id: demo-thing
          title: A demo
          domain: cpu
          symptoms: [high-cpu]
          severity: low
          colour: red
        rules:
          - id: demo-thing.busy
            weight: 2
            when:
              c: cpu where busy_pct > 50
        """))
    # a diagnosis rejects the broken pack, says so on stderr and in the report, and the
    # built-in rules still run (docs/rule-authoring.md "Rule packs in a diagnosis")
    proc = run([DIAGNOSE, "-s", "high-cpu", "--rules-dir", str(pack), "--no-follow-ups",
                "--format", "json", "--window", "0.2"])
    assert proc.returncode in (0, 1), proc.stderr
    assert f"rule pack rejected: {pack / 'bad.yaml'}:7:" in proc.stderr and "colour" in proc.stderr
    report = json.loads(proc.stdout)
    assert report["rule_pack_errors"][0]["line"] == 7
    assert any(r["id"] == "cpu-saturation" for r in report["ruled_out"] + report["hypotheses"])
    # listing the rules of a broken pack is still an input error
    line = one_line_error(run([SYSDIAG, "rules", "list", "--rules-dir", str(pack)]))
    assert f"{pack / 'bad.yaml'}:7:" in line


def test_python_313_is_refused_with_the_reason(monkeypatch, capsys):
    from sysdiag import cli

    monkeypatch.setattr(sys, "version_info", (3, 13, 0, "final", 0))
    with pytest.raises(SystemExit) as exit_:
        cli.diagnose_main(["--symptom", "oom"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "durable-rules 2.0.28" in err and "3.10-3.12" in err and "\n" not in err


# ---- the main job ------------------------------------------------------------------------

@pytest.mark.live
def test_live_json_report_validates_and_covers_every_probe():
    proc = run([DIAGNOSE, "--symptom", "high-latency", "--format", "json", "--window", "1"])
    assert proc.returncode in (0, 1), proc.stderr
    report = _json(proc)
    schema = json.loads(run([SYSDIAG, "schema"]).stdout)
    jsonschema.Draft202012Validator(schema).validate(report)
    playbook = load_playbook("high-latency")
    assert [c["probe"] for c in report["coverage"]] == list(playbook.probes)
    registered = set(all_probes())
    for outcome in report["coverage"]:
        if outcome["probe"] not in registered:
            assert outcome["status"] == "skipped"
            assert outcome["reason"] == "probe not implemented in this version"
    assert report["source"] == "live" and report["symptom"] == "high-latency"
    assert 0.5 <= report["window_s"] < 3
    assert (proc.returncode == 1) == bool(report["hypotheses"])


def test_findings_exit_1_and_top_limits_them(busy):
    full = run([DIAGNOSE, "-s", "high-cpu", "--from", str(busy), "--format", "json"])
    assert full.returncode == 1, full.stderr
    report = _json(full)
    assert report["hypotheses_total"] >= 2 and report["source"] == f"snapshot:{busy}"
    assert "cpu-saturation" in [h["id"] for h in report["hypotheses"]]
    assert report["follow_ups"] == []  # never on a snapshot: the host is elsewhere
    top = _json(run([DIAGNOSE, "-s", "high-cpu", "--from", str(busy), "--format", "json",
                     "--top", "1"]))
    assert top["hypotheses"] == report["hypotheses"][:1]
    assert top["hypotheses_total"] == report["hypotheses_total"]


def test_threshold_decides_between_0_and_1(busy):
    proc = run([DIAGNOSE, "-s", "high-cpu", "--from", str(busy), "--format", "json",
                "--threshold", "1"])
    report = _json(proc)
    assert proc.returncode == (1 if report["hypotheses"] else 0)
    assert all(h["score"] >= 1 for h in report["hypotheses"])
    assert report["below_threshold"]


def test_nothing_found_exits_0(tmp_path):
    snap = busy_snapshot()
    quiet = snap.model_copy(update={"facts": [snap.host]})
    quiet.save(tmp_path / "quiet.json")
    proc = run([DIAGNOSE, "-s", "high-cpu", "--from", str(tmp_path / "quiet.json")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings" in proc.stdout and proc.stderr == ""


def test_strict_exits_3_when_a_probe_did_not_run(busy):
    proc = run([DIAGNOSE, "-s", "high-cpu", "--from", str(busy), "--strict", "--format", "json"])
    assert proc.returncode == 3, proc.stderr
    report = _json(proc)
    assert report["incomplete"] and "--strict" in report["incomplete_reason"]
    assert proc.stderr.startswith("diagnose: incomplete: ")


def test_strict_with_every_probe_run_is_not_incomplete(tmp_path):
    playbook = load_playbook("memory-pressure")
    coverage = [ProbeOutcome(probe=p, status="ok") for p in playbook.probes]
    busy_snapshot(coverage=coverage).save(tmp_path / "all.json")
    proc = run([DIAGNOSE, "-s", "memory-pressure", "--from", str(tmp_path / "all.json"),
                "--strict", "--format", "json"])
    assert proc.returncode in (0, 1) and not _json(proc)["incomplete"]


def test_a_tiny_deadline_is_incomplete_exit_3():
    start = time.monotonic()
    proc = run([DIAGNOSE, "-s", "high-cpu", "--deadline", "0.3", "--format", "json"])
    assert proc.returncode == 3, proc.stderr
    report = _json(proc)
    assert report["incomplete"] and "deadline" in report["incomplete_reason"]
    assert report["window_s"] < 0.5
    assert time.monotonic() - start < 15  # start-up included; the window was cut short


def test_collect_then_from_ranks_the_same(tmp_path):
    snap = tmp_path / "snap.json"
    proc = run([SYSDIAG, "collect", "-o", str(snap), "--window", "0.5"])
    assert proc.returncode in (0, 3), proc.stderr
    saved = json.loads(snap.read_text())
    assert {c["probe"] for c in saved["coverage"]} == set(all_probes()) | set(PLANNED_PROBES)
    runs = [_json(run([DIAGNOSE, "-s", "high-latency", "--from", str(snap), "--format", "json",
                       "--threshold", "0"])) for _ in range(2)]
    rank = [[(h["id"], h["subject"], h["score"]) for h in r["hypotheses"]] for r in runs]
    assert rank[0] == rank[1]
    assert [r["id"] for r in runs[0]["ruled_out"]] == [r["id"] for r in runs[1]["ruled_out"]]


def test_short_form_is_the_same_command(busy):
    args = ["-s", "high-cpu", "--from", str(busy), "--format", "json"]
    a, b = run([DIAGNOSE, *args]), run([SYSDIAG, "diagnose", *args])
    assert a.returncode == b.returncode == 1
    strip = lambda r: {k: v for k, v in _json(r).items() if k not in ("generated_at", "timings")}
    assert strip(a) == strip(b)


@pytest.mark.parametrize("fmt, marker", [("text", "Most likely"), ("markdown", "### Findings"),
                                         ("json", '"schema_version"')])
def test_formats(busy, fmt, marker):
    proc = run([DIAGNOSE, "-s", "high-cpu", "--from", str(busy), "--format", fmt])
    assert proc.returncode == 1 and marker in proc.stdout and proc.stderr == ""


def test_captured_tree_is_diagnosed_without_follow_ups():
    if not (FIXTURE_TREE / "proc").is_dir():
        pytest.skip(f"fixture tree {FIXTURE_TREE} is absent")
    proc = run([DIAGNOSE, "-s", "process-hang", "--proc-root", str(FIXTURE_TREE / "proc"),
                "--sys-root", str(FIXTURE_TREE / "sys"), "--format", "json"])
    assert proc.returncode in (0, 1), proc.stderr
    report = _json(proc)
    assert report["source"] == f"tree:{FIXTURE_TREE / 'proc'}" and report["window_s"] == 0
    assert report["follow_ups"] == []


@pytest.mark.live
def test_a_hostile_process_name_is_shown_escaped(tmp_path):
    """A process called "\\x1b[31m[bold]x" spins; the text report must show the name
    without emitting the escape or swallowing the markup."""
    evil = tmp_path / "\x1b[31m[bold]x"
    evil.symlink_to(sys.executable)
    child = subprocess.Popen([str(evil), "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        proc = run([DIAGNOSE, "-s", "high-cpu", "--pid", str(child.pid), "--window", "1"])
        assert proc.returncode in (0, 1), proc.stderr
        assert "\x1b" not in proc.stdout and "\x1b" not in proc.stderr
        assert "[bold]x" in proc.stdout       # the markup is printed, not interpreted
    finally:
        child.kill()
        child.wait()


@pytest.mark.live
def test_interrupt_exits_130():
    proc = subprocess.Popen([DIAGNOSE, "-s", "high-cpu", "--window", "20", "--no-follow-ups"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "diagnose: interrupted" and out == ""


# ---- the other commands -----------------------------------------------------------------

def test_symptoms_lists_the_vocabulary():
    proc = run([SYSDIAG, "symptoms"])
    assert proc.returncode == 0
    assert [line.split()[0] for line in proc.stdout.splitlines()] == list(SYMPTOMS)


def test_probes_lists_registered_and_planned():
    proc = run([SYSDIAG, "probes"])
    assert proc.returncode == 0
    names = {line.split()[0]: line for line in proc.stdout.splitlines()[1:]}
    assert set(names) == set(all_probes()) | set(PLANNED_PROBES)
    assert "cheap" in names["cpu"]
    # planned names shrink as probes land: check whichever are still planned
    assert all("planned:" in names[name] for name in PLANNED_PROBES)


def test_rules_list_and_show():
    listing = run([SYSDIAG, "rules", "list"])
    assert listing.returncode == 0 and "cpu-saturation" in listing.stdout
    show = run([SYSDIAG, "rules", "show", "cpu-saturation"])
    assert show.returncode == 0
    assert show.stdout.startswith("cpu-saturation: ") and "rules (" in show.stdout
    assert "when " in show.stdout
    line = one_line_error(run([SYSDIAG, "rules", "show", "no-such-thing"]))
    assert "no hypothesis 'no-such-thing'" in line


def test_collect_to_stdout_and_bad_output_dir(tmp_path):
    proc = run([SYSDIAG, "collect", "-o", "-", "--window", "0"])
    assert proc.returncode in (0, 3) and json.loads(proc.stdout)["schema_version"] == 1
    line = one_line_error(run([SYSDIAG, "collect", "-o", str(tmp_path / "no" / "x.json"),
                               "--window", "0"]))
    assert "does not exist" in line
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_version_and_help():
    assert run([SYSDIAG, "--version"]).stdout.startswith("sysdiag ")
    helptext = run([DIAGNOSE, "--help"], env={**os.environ, "COLUMNS": "200"}).stdout
    for option in ("--symptom", "--window", "--deadline", "--from", "--proc-root", "--sys-root",
                   "--netns", "--cgroup", "--pid", "--iface", "--format", "--top", "--rules-dir",
                   "--strict", "--no-follow-ups", "--threshold"):
        assert option in helptext, option
