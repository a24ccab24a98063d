"""Every built-in rule against its table of cases (cases_*.yaml): where it fires, the
near miss where it stays silent, and the boundary at its threshold."""
from __future__ import annotations

import pytest
from rule_case_helpers import diagnose, findings, fired_rules, load_cases

from sysdiag.engine import load_rulebase

CASES = list(load_cases())


@pytest.fixture(scope="module")
def rulebase():
    return load_rulebase()


@pytest.mark.parametrize("fname,hid,case", CASES,
                         ids=[f"{hid}: {case['case']}" for _, hid, case in CASES])
def test_rule_case(rulebase, fname, hid, case):
    result = diagnose(rulebase, case["facts"], case.get("scope"))
    assert not result.rule_errors, result.rule_errors
    fired = fired_rules(result)
    for hyp in result.hypotheses:  # every value an explanation or evidence names was found
        assert "?" not in hyp.explanation, f"{hyp.id}: {hyp.explanation}"
        for ev in hyp.evidence + hyp.against:
            assert "?" not in (ev.text or ""), f"{ev.rule}: {ev.text}"
    for rule in case.get("fires", []):
        assert rule in fired, f"{rule} did not fire; fired: {sorted(fired)}"
    for rule in case.get("silent", []):
        assert rule not in fired, f"{rule} fired but must stay silent"

    subject = case.get("subject")
    if case.get("gated"):
        out = [r for r in result.ruled_out if r.id == hid]
        assert out and out[0].reason.startswith("environment gate not met"), out
        assert not findings(result, hid)
    if case.get("certainty") == "unlikely":
        assert not findings(result, hid, subject), "expected it to be ruled out"
        assert any(r.id == hid for r in result.ruled_out)
    elif any(k in case for k in ("subject", "certainty", "pattern", "explanation",
                                 "next_command", "evidence")):
        found = findings(result, hid, subject)
        reported = [(h.subject, h.certainty, h.score) for h in result.hypotheses if h.id == hid]
        assert found, f"no {hid} finding with subject {subject!r}; reported: {reported}"
        hyp = found[0]
        if "certainty" in case:
            assert hyp.certainty == case["certainty"], (hyp.certainty, hyp.score)
        if "pattern" in case:
            assert hyp.pattern == case["pattern"]
        if "explanation" in case:
            assert case["explanation"] in hyp.explanation, hyp.explanation
        if "next_command" in case:
            assert any(case["next_command"] in c for c in hyp.next_commands), hyp.next_commands
        for field, value in case.get("evidence", {}).items():
            values = [e.value for e in hyp.evidence + hyp.against if e.field == field]
            assert value in values, f"evidence {field}: {values}"
