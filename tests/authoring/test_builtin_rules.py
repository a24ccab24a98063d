"""Every built-in rule (whatever is in rules/ now) passes lint, has test cases in
rules/<domain>/tests/, and those cases pass and cover 100 % of the rules."""
from __future__ import annotations

from sysdiag.authoring.cases import find_test_files, read_test_file
from sysdiag.authoring.coverage import measure
from sysdiag.authoring.lint import lint
from sysdiag.authoring.runner import format_failure, run_files
from sysdiag.engine import builtin_rules_dir


def test_every_builtin_rule_passes_lint():
    findings = lint()
    errors = [str(f) for f in findings if f.severity == "error"]
    assert not errors, "\n".join(errors)
    untested = [str(f) for f in findings if f.code == "no-tests"]
    assert not untested, "\n".join(untested)


def test_builtin_rule_tests_pass_and_cover_every_rule(builtin_rb):
    files = [read_test_file(p) for p in find_test_files(builtin_rules_dir())]
    run = run_files(files, builtin_rb)
    assert not run.problems, "\n".join(map(str, run.problems))
    assert not run.failed, "\n\n".join(format_failure(r) for r in run.failed)
    cov = measure(builtin_rb, run.results, {"builtin"})
    assert not cov.uncovered_rules, cov.report()
    assert cov.rule_pct == 100.0
