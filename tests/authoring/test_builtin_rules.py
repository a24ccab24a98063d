"""Every built-in rule (whatever is in rules/ now) passes lint, has test cases in
rules/<domain>/tests/, and those cases pass and cover 100 % of the rules. This is the one
place the built-in rule cases run (the same files `sysdiag rules test` runs)."""
from __future__ import annotations

import pytest

from sysdiag.authoring.cases import find_test_files, read_test_file
from sysdiag.authoring.coverage import measure
from sysdiag.authoring.lint import lint
from sysdiag.authoring.runner import Run, format_failure, run_files
from sysdiag.engine import builtin_rules_dir


@pytest.fixture(scope="module")
def builtin_run(builtin_rb) -> Run:
    files = [read_test_file(p) for p in find_test_files(builtin_rules_dir())]
    return run_files(files, builtin_rb)


def test_every_builtin_rule_passes_lint():
    findings = lint()
    errors = [str(f) for f in findings if f.severity == "error"]
    assert not errors, "\n".join(errors)
    untested = [str(f) for f in findings if f.code == "no-tests"]
    assert not untested, "\n".join(untested)
    # the built-in hypotheses' symptoms are their playbooks' (KNOWLEDGE §4), and no fact
    # kind is near durable's 64 matches for one fact (compile.worst_case_matches)
    flagged = [str(f) for f in findings
               if "lists symptom" in f.message or "can match one fact at once" in f.message]
    assert not flagged, "\n".join(flagged)


def test_builtin_rule_tests_pass_and_cover_every_rule(builtin_rb, builtin_run):
    run = builtin_run
    assert len(run.results) >= 758  # the cases of the former tests/rules tables
    assert not run.problems, "\n".join(map(str, run.problems))
    assert not run.failed, "\n\n".join(format_failure(r) for r in run.failed)
    cov = measure(builtin_rb, run.results, {"builtin"})
    assert not cov.uncovered_rules, cov.report()
    assert cov.rule_pct == 100.0


def test_every_rule_has_a_firing_and_a_near_miss_case(builtin_rb, builtin_run):
    """`fires: [rule]` in one case and `silent: [rule]` in another, for every built-in rule
    (derivations included): where it fires, and the near miss where it must not."""
    fires = {rid for r in builtin_run.results for rid in r.case.fires}
    silent = {rid for r in builtin_run.results for rid in r.case.silent}
    builtin = {r.id for r in builtin_rb.rules if r.pack == "builtin"}
    assert not builtin - fires, f"rules with no firing case: {sorted(builtin - fires)}"
    assert not builtin - silent, f"rules with no near-miss case: {sorted(builtin - silent)}"


def test_every_threshold_rule_has_a_boundary_case(builtin_rb, builtin_run):
    """A rule comparing a field with a number (`>= 90`) has a case with the field at
    exactly that number, so `>` vs `>=` is decided by a test, not by reading."""
    cov = measure(builtin_rb, builtin_run.results, {"builtin"})
    assert len(cov.thresholds) >= 250
    missing = [f"{r.id} ({r.file}:{r.line}): "
               + ", ".join(t.text for t in cov.thresholds[r.id])
               for r in cov.rules_without_boundary]
    assert not missing, "rules without a boundary case:\n" + "\n".join(missing)


def test_no_case_renders_a_missing_value(builtin_run):
    """A value an explanation or evidence text names was found: a missing one renders '?'."""
    bad = []
    for res in builtin_run.results:
        if res.report is None:
            continue
        for hyp in res.report.hypotheses:
            texts = [hyp.explanation] + [ev.text or "" for ev in hyp.evidence + hyp.against]
            bad += [f"{res.case.where} ({res.case.name}): {hyp.id}: {t}" for t in texts if "?" in t]
    assert not bad, "\n".join(bad)
