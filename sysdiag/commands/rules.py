"""`sysdiag rules list|show|lint|test|explain|docs|new`: what the rulebase knows, and the
tools an expert writes, tests, explains and publishes rules with (sysdiag/authoring/,
docs/rule-authoring.md)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from sysdiag.report.escape import clean

from .common import EXIT_FINDINGS, EXIT_USAGE, UserError, warn, write_stdout


def _write(text: str) -> None:
    """Rule packs come from anywhere (--rules-dir): print them with controls made visible."""
    write_stdout(clean(text, multiline=True))

rules_app = typer.Typer(help="List, show, lint, test, explain and document the rules; scaffold "
                        "new ones (docs/rule-authoring.md).",
                        no_args_is_help=True, add_completion=False)

RulesDirOpt = Annotated[Optional[list[Path]], typer.Option(
    "--rules-dir", metavar="DIR", help="Extra rule pack directory (repeatable).")]


def _rulebase(rules_dir: Optional[list[Path]]) -> Any:
    from sysdiag.pipeline import Options, load_rules

    rulebase, _ = load_rules(Options(rules_dirs=list(rules_dir or [])))
    return rulebase


@rules_app.command("list")
def list_command(rules_dir: RulesDirOpt = None) -> None:
    """One line per hypothesis: id, domain, severity, rules, symptoms."""
    rulebase = _rulebase(rules_dir)
    hyps = sorted(rulebase.hypotheses.values(), key=lambda h: h.id)
    if not hyps:
        _write("no hypotheses loaded\n")
        return
    width = max(len(h.id) for h in hyps)
    lines = [f"{h.id:<{width}}  {h.domain or '-':<9} {h.severity:<8} "
             f"{len(rulebase.rules_for(h.id)):>2} rules  {','.join(h.symptoms) or '-'}"
             + ("" if h.pack == "builtin" else f"  [{h.pack}]") for h in hyps]
    _write("\n".join(lines) + f"\n{len(hyps)} hypotheses, {len(rulebase.rules)} rules\n")


@rules_app.command("show")
def show_command(hypothesis: Annotated[str, typer.Argument(metavar="ID")],
                 rules_dir: RulesDirOpt = None) -> None:
    """A hypothesis and every rule that weighs it, as loaded."""
    rulebase = _rulebase(rules_dir)
    spec = rulebase.hypotheses.get(hypothesis)
    if spec is None:
        raise UserError(f"no hypothesis {hypothesis!r} in the rulebase "
                        "(`sysdiag rules list` lists them)")
    out = [f"{spec.id}: {spec.title}",
           f"  file      {spec.file}:{spec.line}  (pack {spec.pack})",
           f"  domain    {spec.domain or '-'}   severity {spec.severity}   "
           f"level {spec.level or '-'}   resource {spec.resource or '-'}",
           f"  symptoms  {', '.join(spec.symptoms) or '-'}"]
    if spec.requires is not None:
        out.append("  requires  " + "; ".join(p.text for p in spec.requires.patterns))
    if spec.explanation:
        out.append(f"  explains  {' '.join(spec.explanation.split())}")
    if spec.causes:
        out.append(f"  causes    {', '.join(spec.causes)}")
    for cmd in spec.next_commands:
        out.append(f"  next      {cmd}")
    if spec.remediation:
        out.append(f"  fix       {spec.remediation}" + (f" (risk: {spec.risk})" if spec.risk
                                                       else ""))
    for ref in spec.references:
        out.append(f"  see       {ref}")
    rules = rulebase.rules_for(spec.id)
    out.append(f"  rules ({len(rules)}):")
    for rule in rules:
        weight = f"{rule.weight:+d}" if rule.weight is not None else "  "
        out.append(f"    [{weight}] {rule.id}  ({Path(rule.file).name}:{rule.line})")
        out += [f"         when {p.alias}: {p.text}" for p in rule.patterns]
        if rule.because:
            out.append(f"         because {rule.because}")
    _write("\n".join(out) + "\n")


# ---------------------------------------------------------------- authoring

PathsArg = Annotated[Optional[list[Path]], typer.Argument(
    metavar="[PATH]...", help="Rule pack directories or files (default: the built-in rules).")]


def _is_builtin(path: Path) -> bool:
    from sysdiag.engine import builtin_rules_dir

    resolved, builtin = path.resolve(), builtin_rules_dir()
    return resolved == builtin or builtin in resolved.parents


def _load_strict(extra: list[Path]) -> Any:
    """The built-in rules plus `extra` packs; every load problem on stderr, exit 2."""
    from sysdiag.engine import RuleLoadError, load_rulebase

    for d in extra:
        if not d.is_dir():
            raise UserError(f"{d}: not a directory of rule files")
    try:
        return load_rulebase(extra_dirs=extra)
    except RuleLoadError as err:
        for problem in err.problems:
            warn(str(problem))
        raise typer.Exit(EXIT_USAGE) from err


@rules_app.command("lint")
def lint_command(paths: PathsArg = None, strict: Annotated[bool, typer.Option(
        "--strict", help="Warnings fail too (exit 1).")] = False) -> None:
    """Check rule packs, their test files and the playbooks: every problem with
    FILE:LINE:COLUMN and a hint. Exit 1 when there are errors (or warnings with --strict)."""
    from sysdiag.authoring.lint import lint

    for path in paths or []:
        if not path.exists():
            raise UserError(f"{path}: no such file or directory")
    findings = lint(list(paths or []))
    errors = sum(1 for f in findings if f.severity == "error")
    warnings = len(findings) - errors
    text = "".join(f"{f}\n" for f in findings)
    _write(text + f"{errors} errors, {warnings} warnings\n")
    if errors or (strict and warnings):
        raise typer.Exit(EXIT_FINDINGS)


@rules_app.command("test")
def test_command(
    paths: PathsArg = None,
    rules_dir: RulesDirOpt = None,
    junit: Annotated[Optional[Path], typer.Option(
        "--junit", metavar="FILE", help="Also write the results as JUnit XML.")] = None,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="List every case, and every uncovered `or` branch.")] = False,
) -> None:
    """Run rule test files (YAML cases: facts in, expected conclusions out) and measure the
    coverage of rules and of their `or` branches. Exit 1 when a case fails."""
    from sysdiag.authoring.cases import read_test_file, find_test_files
    from sysdiag.authoring.coverage import measure
    from sysdiag.authoring.junit import write_junit
    from sysdiag.authoring.runner import format_failure, run_files
    from sysdiag.engine import builtin_rules_dir

    targets = list(paths or [builtin_rules_dir()])
    packs = [Path(d) for d in rules_dir or []]
    measured: set[str] = set()
    files: list[Path] = []
    for path in targets:
        if not path.exists():
            raise UserError(f"{path}: no such file or directory")
        if path.is_dir():
            if _is_builtin(path):
                measured.add("builtin")
            elif path.resolve() not in {p.resolve() for p in packs}:
                packs.append(path)
            if not _is_builtin(path):
                measured.add(path.resolve().name)
        files += find_test_files(path)
    rb = _load_strict(packs)
    run = run_files([read_test_file(f) for f in files], rb)
    out = [str(p) for p in run.problems]
    for res in run.results:
        if not res.ok:
            out.append(format_failure(res))
        elif verbose:
            out.append(f"ok   {res.case.where}: {res.case.name}")
    failed = len(run.failed)
    out.append(f"{len(run.results)} cases in {len(files)} files: {len(run.results) - failed} "
               f"passed, {failed} failed" + (f", {len(run.problems)} file problems"
                                            if run.problems else ""))
    if measured:
        cov = measure(rb, run.results, measured)
        out.append(f"coverage: {cov.summary()}")
        out += [f"  rule not covered: {r.id} ({r.file}:{r.line})" for r in cov.uncovered_rules]
        branches = cov.uncovered_branches
        shown = branches if verbose else branches[:5]
        out += [f"  branch not covered: {b.rule} {b.alias}: `{b.text}` (line {b.line})"
                for b in shown]
        if len(branches) > len(shown):
            out.append(f"  ... {len(branches) - len(shown)} more uncovered branches (-v lists them)")
        # a threshold never tried at its exact value: `>` vs `>=` is untested
        no_boundary = cov.rules_without_boundary
        shown_rules = no_boundary if verbose else no_boundary[:5]
        out += [f"  no boundary case: {r.id} ("
                + ", ".join(f"`{t.text}`" for t in cov.thresholds[r.id]) + f") ({r.file}:{r.line})"
                for r in shown_rules]
        if len(no_boundary) > len(shown_rules):
            out.append(f"  ... {len(no_boundary) - len(shown_rules)} more rules without a "
                       "boundary case (-v lists them)")
    _write("\n".join(out) + "\n")
    if junit is not None:
        write_junit(run, junit)
    if not run.ok:
        raise typer.Exit(EXIT_FINDINGS)


@rules_app.command("explain")
def explain_command(
    ident: Annotated[str, typer.Argument(metavar="ID", help="A hypothesis or rule id.")],
    from_: Annotated[Path, typer.Option(
        "--from", metavar="SNAPSHOT.json", help="A snapshot saved by `sysdiag collect`.")],
    rules_dir: RulesDirOpt = None,
    symptom: Annotated[Optional[str], typer.Option(
        "--symptom", "-s", help="Rank as for this symptom (default: every hypothesis).")] = None,
) -> None:
    """Why a hypothesis (or rule) fired on a snapshot, with the derivation and its values;
    or why not: the first failing condition and its actual value, or the missing fact and
    the probe that would provide it."""
    from sysdiag.authoring.explain import ExplainError, explain
    from sysdiag.authoring.runner import CaseInputError, candidates_for
    from sysdiag.facts import SnapshotError, load_snapshot

    rb = _load_strict([Path(d) for d in rules_dir or []])
    try:
        snap = load_snapshot(from_)
        candidates = candidates_for(symptom, rb)
        _write(explain(ident, rb, list(snap.facts), list(snap.coverage), candidates))
    except (SnapshotError, CaseInputError, ExplainError) as err:
        raise UserError(str(err)) from err


@rules_app.command("docs")
def docs_command(rules_dir: RulesDirOpt = None, output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", metavar="FILE", help="Write to FILE instead of stdout.")] = None) -> None:
    """The rule catalog in markdown, grouped by symptom: evidence, weights, next commands."""
    from sysdiag.authoring.catalog import catalog
    from sysdiag.playbook import available_symptoms

    rb = _load_strict([Path(d) for d in rules_dir or []])
    text = catalog(rb, available_symptoms())
    if output is None:
        _write(text)
    else:
        output.write_text(clean(text, multiline=True), encoding="utf-8")


@rules_app.command("new")
def new_command(
    ident: Annotated[str, typer.Argument(metavar="ID", help="The new hypothesis id (kebab-case).")],
    directory: Annotated[Path, typer.Option(
        "--dir", metavar="DIR", help="The rule pack to write into.")] = Path("."),
    domain: Annotated[str, typer.Option("--domain", help="cpu, memory, network ...")] = "cpu",
    symptom: Annotated[str, typer.Option("--symptom", help="Its first symptom.")] = "high-cpu",
) -> None:
    """Write DIR/ID.yaml (a working example rule to edit) and DIR/tests/ID.yaml (its test
    cases); both pass `sysdiag rules lint DIR` and `sysdiag rules test DIR` as written."""
    from sysdiag.authoring.scaffold import ScaffoldError, scaffold

    try:
        written = scaffold(ident, directory, domain=domain, symptom=symptom)
    except ScaffoldError as err:
        raise UserError(str(err)) from err
    _write("".join(f"wrote {p}\n" for p in written))
