"""Follow-up commands: which run, with what values, bounded in time and output."""
from __future__ import annotations

import platform
import time

from cli_helpers import make_hypothesis

from sysdiag import followups
from sysdiag.facts import Scope
from sysdiag.followups import Planned, plan, run, run_one

FOLLOW = {"cpu-runaway-userspace": ["ps -o pid,comm -p {pid}", "ethtool -S {iface}", "uptime"],
          "cpu-saturation": ["uptime", "vmstat 1 2"]}


def test_pid_comes_from_the_subject_and_missing_placeholders_drop_the_command():
    planned = plan([make_hypothesis()], FOLLOW, Scope())
    assert [p.argv for p in planned] == [("ps", "-o", "pid,comm", "-p", "4242"), ("uptime",)]


def test_scope_values_win_and_each_command_runs_once():
    hyps = [make_hypothesis(), make_hypothesis("cpu-saturation", subject="host")]
    planned = plan(hyps, FOLLOW, Scope(pid=7, iface="eth0"))
    assert [p.argv for p in planned] == [
        ("ps", "-o", "pid,comm", "-p", "7"), ("ethtool", "-S", "eth0"), ("uptime",),
        ("vmstat", "1", "2")]
    assert planned[2].hypothesis == "cpu-runaway-userspace"  # uptime: asked first by this one


def test_values_that_look_like_options_are_never_filled_in():
    planned = plan([make_hypothesis()], FOLLOW, Scope(iface="-s eth0 speed 10"))
    assert all(p.argv[0] != "ethtool" for p in planned)


def test_pid_from_process_evidence_when_the_subject_is_not_a_pid():
    hyp = make_hypothesis(subject="host")
    assert plan([hyp], {hyp.id: ["ps -p {pid}"]}, Scope())[0].argv == ("ps", "-p", "4242")


def test_at_most_max_commands():
    hyp = make_hypothesis()
    commands = [f"uname -{c}" for c in "srvmpion"] + ["uptime", "free", "nproc", "ps"]
    assert len(plan([hyp], {hyp.id: commands}, Scope())) == followups.MAX_COMMANDS


def test_runs_an_allowed_binary_without_a_shell():
    result = run_one(Planned("h", ("uname", "-r")), timeout_s=3)
    assert result.exit_code == 0 and result.error is None
    assert result.output.strip() == platform.release()


def test_a_slow_command_is_killed_at_its_timeout():
    start = time.monotonic()
    result = run_one(Planned("h", ("vmstat", "1", "10")), timeout_s=0.5)
    assert time.monotonic() - start < 2.5
    assert result.exit_code is None and "timed out after 0.5 s" in result.error


def test_a_missing_binary_is_reported(monkeypatch, tmp_path):
    monkeypatch.setattr(followups, "SAFE_PATH", str(tmp_path))
    result = run_one(Planned("h", ("uptime",)), timeout_s=1)
    assert result.error == "uptime is not installed" and result.exit_code is None


def test_output_is_cleaned_and_bounded():
    text, truncated = followups._bound(b"ok \x1b[31mred\n" * 500, b"err\x07")
    assert "\x1b" not in text and "\\x1b[31mred" in text and truncated
    assert len(text) <= followups.MAX_OUTPUT_CHARS
    assert len(text.splitlines()) <= followups.MAX_OUTPUT_LINES
    text, truncated = followups._bound(b"a\n", b"warning\x07\n")
    assert text == "a\nwarning\\x07" and not truncated


def test_the_deadline_stops_the_rest():
    planned = [Planned("h", ("uptime",)), Planned("h", ("free",))]
    results, hit = run(planned, deadline_at=time.monotonic() - 1)
    assert hit and [r.error for r in results] == ["not run: the deadline was reached"] * 2
    results, hit = run(planned, deadline_at=time.monotonic() + 10)
    assert not hit and all(r.exit_code == 0 for r in results)
