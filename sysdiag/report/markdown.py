"""The report as markdown, to paste into a ticket. Values from the host are
markdown-escaped (`escape.md`), commands and outputs go in code spans/blocks whose
fences cannot be closed by the content."""
from __future__ import annotations

import re

from sysdiag.engine.results import Hypothesis

from .escape import md, md_block, md_code
from .group import EvidenceLine, group_evidence
from .models import Report

FOLLOW_UP_LINES = 40
_URL = re.compile(r"^https?://[A-Za-z0-9._~:/?#@!$&'()*+,;=%-]+$")


def _evidence(ev: EvidenceLine) -> str:
    values = ", ".join(f"{md_code(f)} = {md_code(v)}" for f, v in ev.fields)
    what = md(ev.text) if ev.text else values
    hist = " *(historical)*" if ev.historical else ""
    return (f"- ({ev.weight:+d}) {what}{hist} — {md_code(ev.fact)} {values} from "
            f"{', '.join(md_code(s) for s in ev.sources)}")


def _hypothesis(rank: int, hyp: Hypothesis, report: Report) -> list[str]:
    out = [f"### {rank}. {md_code(hyp.id)} — {md(hyp.title)}", "",
           f"**score {hyp.score:.2f}** · **{hyp.certainty}** · severity {hyp.severity} · "
           f"subject {md_code(hyp.subject)}"
           + (f" · pattern {hyp.pattern}" if hyp.pattern != "unknown" else "")
           + (f" · rule pack {md_code(hyp.rule_pack)}" if hyp.rule_pack != "builtin" else ""), ""]
    if hyp.explanation:
        out += [md(hyp.explanation), ""]
    if hyp.caused_by:
        out += ["Probably a consequence of: " + ", ".join(md_code(c) for c in hyp.caused_by), ""]
    if hyp.causes:
        out += ["May explain: " + ", ".join(md_code(c) for c in hyp.causes), ""]
    if hyp.evidence:
        out += ["**Evidence**", "", *(_evidence(e) for e in group_evidence(hyp.evidence)), ""]
    if hyp.against:
        out += ["**Against**", "", *(_evidence(e) for e in group_evidence(hyp.against)), ""]
    if hyp.next_commands:
        out += ["**Next commands**", "", md_block("\n".join(hyp.next_commands)), ""]
    for fu in (f for f in report.follow_ups if f.hypothesis == hyp.id):
        status = fu.error or f"exit {fu.exit_code}"
        out += [f"**Ran** {md_code(' '.join(fu.argv))} ({md(status)}, {fu.duration_s:.2f} s)"
                + (" — output truncated" if fu.truncated else ""), ""]
        if fu.output:
            lines = fu.output.splitlines()
            shown = "\n".join(lines[:FOLLOW_UP_LINES])
            hidden = len(lines) - FOLLOW_UP_LINES
            out += [md_block(shown), ""]
            if hidden > 0:
                out += [f"*{hidden} more lines in the JSON report*", ""]
    if hyp.remediation:
        risk = f" Risk: {md(hyp.risk)}" if hyp.risk else ""
        out += [f"**Fix:** {md(hyp.remediation)}{risk}", ""]
    if hyp.references:
        out += ["References: " + ", ".join(f"<{r}>" if _URL.match(r) else md(r)
                                           for r in hyp.references), ""]
    return out


def render_markdown(report: Report) -> str:
    host = report.host
    scope = ", ".join(f"{k} {md_code(v, True)}" for k, v in report.scope.model_dump().items()
                      if v is not None) or "whole host"
    out = [f"## sysdiag: {md(report.symptom)} on {md_code(host.hostname)}", "",
           "| | |", "|---|---|",
           f"| host | {md_code(host.hostname, True)}, kernel "
           f"{md_code(host.kernel_release or '?', True)}, "
           f"{md(host.virtualization_detail or host.virtualization)}, "
           f"{host.cpu_count if host.cpu_count else '?'} CPUs |",
           f"| source | {md_code(report.source, True)} |",
           f"| window | {report.window_s:g} s |",
           f"| scope | {scope} |",
           f"| generated | {md(report.generated_at)} by sysdiag {md(report.sysdiag_version)} |",
           ""]
    if report.incomplete:
        out += [f"> **Incomplete:** {md(report.incomplete_reason or 'the run did not finish')}", ""]

    if report.hypotheses:
        total = report.hypotheses_total
        shown = len(report.hypotheses)
        more = f", top {shown} shown" if shown < total else ""
        out += [f"### Findings ({total} at or above {report.threshold:g}{more})", ""]
        for rank, hyp in enumerate(report.hypotheses, 1):
            out += _hypothesis(rank, hyp, report)
    else:
        out += [f"**No findings:** no hypothesis scored {report.threshold:g} or more.", ""]

    if report.below_threshold:
        out += ["### Also possible (below the threshold)", "",
                *(f"- {md_code(b.id)} score {b.score:.2f} ({b.certainty}), subject "
                  f"{md_code(b.subject)}" for b in report.below_threshold), ""]
    if report.ruled_out:
        out += ["### Ruled out", "", "| hypothesis | why |", "|---|---|",
                *(f"| {md_code(r.id, table=True)} | {md(r.reason)} |" for r in report.ruled_out), ""]
    out += ["### Coverage", "", "| probe | status | duration | reason |", "|---|---|---|---|",
            *(f"| {md_code(c.probe, table=True)} | {c.status} | {c.duration_s:.2f} s | "
              f"{md(c.reason or '')}{_warnings(c.warnings)} |" for c in report.coverage), ""]
    if report.exonerated:
        out += ["### Checked and healthy", "", *(f"- {md(e.summary)}" for e in report.exonerated),
                ""]
    if report.rule_pack_errors or report.rule_errors:
        out += ["### Rule problems", "",
                *(f"- {md_code(_where(e.file, e.line, e.column))} {md(e.message)}"
                  for e in report.rule_pack_errors),
                *(f"- rule {md_code(e.rule)}: {md(e.error)}" for e in report.rule_errors), ""]
    if report.notes:
        out += ["### Not checked by this version", "", *(f"- {md(n)}" for n in report.notes), ""]
    return "\n".join(out).rstrip() + "\n"


def _warnings(warnings: list[str]) -> str:
    if not warnings:
        return ""
    more = f" (+{len(warnings) - 1} more)" if len(warnings) > 1 else ""
    return f" warning: {md(warnings[0])}{more}"


def _where(file: str | None, line: int | None, column: int | None = None) -> str:
    if not file:
        return "?"
    if line and column:
        return f"{file}:{line}:{column}"
    return f"{file}:{line}" if line else file
