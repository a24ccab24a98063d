"""The text, markdown and JSON renderers: content, order, and escaping of host data."""
from __future__ import annotations

import json
import re

import pytest
from cli_helpers import EVIL, make_hypothesis, make_report

from sysdiag.engine.results import Evidence, RuledOut
from sysdiag.facts import ProbeOutcome
from sysdiag.report import render
from sysdiag.report.models import FollowUp, RulePackError

EVIL_VISIBLE = "\\x1b[31m[bold]evil"


def _evil_report():
    evil_cov = ProbeOutcome(probe="processes", status="ok", warnings=[f"pid 9 ({EVIL}) vanished"])
    return make_report(
        hypotheses=[make_hypothesis(comm=EVIL)],
        coverage=[evil_cov, ProbeOutcome(probe="klog", status="failed", reason=EVIL)],
        follow_ups=[FollowUp(hypothesis="cpu-runaway-userspace", argv=["ps", EVIL],
                             exit_code=0, output=f"COMMAND\n{EVIL}\n")],
        ruled_out=[RuledOut(id="cpu-steal-time", title="t", reason=f"because {EVIL}")],
        rule_pack_errors=[RulePackError(file="/x/r.yaml", line=3, column=5, message=EVIL)])


def test_text_escapes_terminal_controls_and_markup():
    out = render(_evil_report(), "text", color=False)
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert EVIL_VISIBLE in out          # shown, visibly, with the markup literal
    assert "[bold]" in out
    assert out.count(EVIL_VISIBLE) >= 6  # subject, explanation, evidence, follow-up, coverage...


def test_text_with_colour_only_emits_its_own_escapes():
    out = render(_evil_report(), "text", color=True)
    assert "\x1b[" in out                            # rich's colours
    assert EVIL_VISIBLE in out and "\x1b]0;" not in out and "\x07" not in out


def _outside_code(markdown: str) -> str:
    """The markdown with fenced blocks and code spans removed (their content is inert)."""
    text = re.sub(r"^(`{3,})text\n.*?\n\1$", "", markdown, flags=re.S | re.M)
    return re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", text)


def test_markdown_escapes_host_data():
    out = render(_evil_report(), "markdown")
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    prose = _outside_code(out)
    assert "<" not in prose.replace("<https://example.org/x>", "")  # no raw HTML in prose
    assert "&lt;/td&gt;" in prose                     # ... it is shown as text
    assert "\\[bold\\]" in prose                      # markdown link syntax neutralised
    assert "`pid 4242 (" in out                       # the subject is a code span


def test_json_keeps_the_raw_value_escaped_by_json():
    out = render(_evil_report(), "json")
    assert "\x1b" not in out                          # JSON escapes control characters
    data = json.loads(out)
    assert data["hypotheses"][0]["subject"] == f"pid 4242 ({EVIL})"


def test_text_lists_findings_in_rank_order_with_evidence_and_commands():
    first = make_hypothesis("cpu-saturation", score=0.9, subject="host")
    second = make_hypothesis("cpu-runaway-userspace", score=0.6)
    out = render(make_report(hypotheses=[first, second], hypotheses_total=2), "text")
    assert out.index(" 1. cpu-saturation") < out.index(" 2. cpu-runaway-userspace")
    assert "score 0.90" in out and "confirmed" in out
    assert "$ pidstat -u -t -p 4242 1 5" in out
    assert "[+3] stress (pid 4242) used 99.5% of a CPU" in out
    assert "[-1] little system time" in out
    for section in ("Also possible", "Ruled out (1)", "Could not check", "Checked and healthy"):
        assert section in out
    # planned probes are summarised on one line, real problems on their own
    assert "psi  unavailable  kernel built without CONFIG_PSI" in out
    assert "softnet  skipped  probe not implemented in this version" in out


def test_text_groups_the_fields_of_one_rule_on_one_line():
    evs = [Evidence(fact="psi:cpu", kind="psi", field=f, value=v, source="/proc/pressure/cpu",
                    rule="cpu-saturation.psi", weight=3, text="PSI cpu some is high")
           for f, v in (("some_avg10", 45.0), ("some_window_pct", 50.5))]
    hyp = make_hypothesis("cpu-saturation", evidence=evs, against=[])
    out = render(make_report(hypotheses=[hyp]), "text")
    assert out.count("PSI cpu some is high") == 1
    assert "psi:cpu some_avg10=45, some_window_pct=50.5 from /proc/pressure/cpu" in out


def test_text_says_when_there_are_no_findings_and_when_incomplete():
    out = render(make_report(hypotheses=[], hypotheses_total=0, incomplete=True,
                             incomplete_reason="the deadline (1 s) was reached"), "text")
    assert "No findings" in out
    assert "INCOMPLETE: the deadline (1 s) was reached" in out


def test_text_shows_top_n_of_total():
    out = render(make_report(hypotheses=[make_hypothesis()], hypotheses_total=3), "text")
    assert "top 1 of 3 shown" in out


def test_text_shortens_long_ruled_out_lists():
    ruled = [RuledOut(id=f"hyp-{i}", title="t", reason="nothing supports it") for i in range(20)]
    out = render(make_report(ruled_out=ruled), "text")
    assert "Ruled out (20)" in out and "... and 12 more" in out
    assert "hyp-7" in out and "hyp-19" not in out


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_rule_pack_errors_are_shown_with_file_and_line(fmt):
    report = make_report(rule_pack_errors=[RulePackError(file="/p/x.yaml", line=7, column=3,
                                                         message="unknown key 'colour'")])
    out = render(report, fmt)
    assert "/p/x.yaml:7:3" in out and "colour" in out


def test_markdown_has_the_ticket_sections():
    out = render(make_report(), "markdown")
    for heading in ("### Findings", "### 1. `cpu-runaway-userspace`", "**Evidence**",
                    "**Next commands**", "### Ruled out", "### Coverage", "### Checked and healthy"):
        assert heading in out, heading
    assert "| `softnet` | skipped |" in out
    assert "```text\nCOMMAND\nstress\n```" in out


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown format"):
        render(make_report(), "yaml")


def test_markdown_keeps_long_follow_up_output_short():
    output = "\n".join(f"line {i}" for i in range(100))
    report = make_report(follow_ups=[FollowUp(hypothesis="cpu-runaway-userspace", argv=["ps"],
                                              exit_code=0, output=output)])
    out = render(report, "markdown")
    assert "line 39" in out and "line 40" not in out and "*60 more lines in the JSON report*" in out
    text = render(report, "text")
    assert "line 14" in text and "line 15" not in text and "85 more lines" in text


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_every_format_says_which_pack_a_finding_came_from(fmt):
    report = make_report(hypotheses=[make_hypothesis(rule_pack="site-pack"),
                                     make_hypothesis(hid="cpu-saturation")])
    out = render(report, fmt, color=False) if fmt == "text" else render(report, fmt)
    assert "site-pack" in out
    assert out.count("site-pack") == 1  # built-in findings are not labelled
