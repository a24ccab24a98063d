"""`sysdiag rules list|show ID`: what the rulebase knows."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from sysdiag.report.escape import clean

from .common import UserError, write_stdout


def _write(text: str) -> None:
    """Rule packs come from anywhere (--rules-dir): print them with controls made visible."""
    write_stdout(clean(text, multiline=True))

rules_app = typer.Typer(help="List and show the rules (hypotheses and the rules that weigh them).",
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
