"""The report for a person at a terminal at 3 a.m.: what is most likely wrong first,
the evidence, what to run next; then what was ruled out, what could not be
checked, and what is healthy.

Everything is built from rich `Text` pieces (never markup strings), and every
value from the host passes through `escape.clean`: a process called
"\\x1b[31m[bold]x" prints as the visible `\\x1b[31m[bold]x`.
"""
from __future__ import annotations

import io
from typing import Iterable, Optional

from rich.console import Console
from rich.text import Text

from sysdiag.engine.results import Hypothesis

from .escape import clean
from .group import EvidenceLine, group_evidence
from .models import FollowUp, Report

_CERTAINTY_STYLE = {"confirmed": "bold red", "likely": "bold yellow",
                    "possible": "cyan", "unlikely": "dim"}
_STATUS_STYLE = {"ok": "green", "skipped": "dim", "unavailable": "yellow",
                 "failed": "red", "timed_out": "red"}
RULED_OUT_SHOWN = 8
FOLLOW_UP_LINES = 15


def _line(*parts: tuple[str, str] | str) -> Text:
    return Text.assemble(*parts)


def _header(report: Report) -> list[Text]:
    host = report.host
    facts = [f"kernel {host.kernel_release}" if host.kernel_release else None,
             host.virtualization_detail or host.virtualization,
             f"{host.cpu_count} CPUs" if host.cpu_count else None]
    where = ", ".join(clean(f) for f in facts if f)
    scope = ", ".join(f"{k} {clean(v)}" for k, v in report.scope.model_dump().items()
                      if v is not None)
    lines = [
        _line(("sysdiag ", "bold"), (clean(report.symptom), "bold"), " on ",
              (clean(host.hostname), "bold"), f" ({where})" if where else ""),
        _line(("  source ", "dim"), clean(report.source),
              ("  window ", "dim"), f"{report.window_s:g} s",
              ("  threshold ", "dim"), f"{report.threshold:g}",
              *((("  scope ", "dim"), scope) if scope else ())),
    ]
    if report.incomplete:
        lines.append(_line(("INCOMPLETE: ", "bold red"),
                           clean(report.incomplete_reason or "the run did not finish")))
    return lines


def _evidence_line(ev: EvidenceLine, sign: str) -> Text:
    values = ", ".join(f"{clean(f)}={clean(v)}" for f, v in ev.fields)
    what = clean(ev.text) if ev.text else values
    detail = f"{clean(ev.fact)} {values} from {', '.join(clean(s) for s in ev.sources)}"
    return _line(f"      {sign} ", (f"[{ev.weight:+d}]", "bold" if abs(ev.weight) >= 3 else ""),
                 f" {what}", (" (historical)", "dim") if ev.historical else "",
                 (f"   {detail}", "dim"))


def _hypothesis(rank: int, hyp: Hypothesis, follow_ups: list[FollowUp]) -> list[Text]:
    style = _CERTAINTY_STYLE.get(hyp.certainty, "")
    out = [
        _line(f"{rank:>2}. ", (clean(hyp.id), "bold"), "  ", clean(hyp.title)),
        _line("    ", (f"score {hyp.score:.2f}", "bold"), "  ", (hyp.certainty, style),
              f"  severity {hyp.severity}", "  subject ", (clean(hyp.subject), "bold"),
              *((f"  pattern {hyp.pattern}",) if hyp.pattern != "unknown" else ()),
              *(("  rule pack ", (clean(hyp.rule_pack), "bold")) if hyp.rule_pack != "builtin"
                else ())),
    ]
    if hyp.explanation:
        out.append(_line("    ", clean(hyp.explanation)))
    if hyp.caused_by:
        out.append(_line(("    probably a consequence of: ", "dim"),
                         ", ".join(clean(c) for c in hyp.caused_by)))
    if hyp.causes:
        out.append(_line(("    may explain: ", "dim"), ", ".join(clean(c) for c in hyp.causes)))
    if hyp.evidence:
        out.append(_line(("    evidence:", "dim")))
        out += [_evidence_line(ev, "+") for ev in group_evidence(hyp.evidence)]
    if hyp.against:
        out.append(_line(("    against:", "dim")))
        out += [_evidence_line(ev, "-") for ev in group_evidence(hyp.against)]
    if hyp.next_commands:
        out.append(_line(("    next:", "dim")))
        out += [_line("      $ ", (clean(cmd), "bold")) for cmd in hyp.next_commands]
    for fu in follow_ups:
        out += _follow_up(fu)
    if hyp.remediation:
        out.append(_line(("    fix: ", "dim"), clean(hyp.remediation),
                         *(((" (risk: ", "dim"), clean(hyp.risk), (")", "dim"))
                           if hyp.risk else ())))
    return out


def _follow_up(fu: FollowUp) -> list[Text]:
    status = fu.error or f"exit {fu.exit_code}"
    out = [_line(("    ran: ", "dim"), ("$ " + " ".join(clean(a) for a in fu.argv), "bold"),
                 (f"  ({status}, {fu.duration_s:.2f} s)", "dim"))]
    lines = clean(fu.output, multiline=True).splitlines()
    for text in lines[:FOLLOW_UP_LINES]:
        out.append(_line("      | ", text))
    hidden = len(lines) - FOLLOW_UP_LINES
    if hidden > 0 or fu.truncated:
        out.append(_line(("      | ... ", "dim"),
                         (f"{max(hidden, 0)} more lines" if hidden > 0 else "output truncated",
                          "dim"), (" (--format json has all of it)", "dim")))
    return out


def _section(title: str, style: str = "bold underline") -> Text:
    return _line("", (title, style))


def render_text(report: Report, color: bool = False, width: Optional[int] = None) -> str:
    out: list[Text] = _header(report)
    out.append(Text())

    total = report.hypotheses_total
    if report.hypotheses:
        shown = len(report.hypotheses)
        more = f", top {shown} of {total} shown" if shown < total else ""
        out.append(_section(f"Most likely ({total} at or above {report.threshold:g}{more})"))
        for rank, hyp in enumerate(report.hypotheses, 1):
            fus = [f for f in report.follow_ups if f.hypothesis == hyp.id]
            out += _hypothesis(rank, hyp, fus)
            out.append(Text())
    else:
        out.append(_line(("No findings", "bold green"),
                         f": no hypothesis scored {report.threshold:g} or more for "
                         f"{clean(report.symptom)}."))
        out.append(Text())

    if report.below_threshold:
        out.append(_section("Also possible (below the threshold)", "bold"))
        out += [_line("  ", (clean(b.id), "bold"), f"  score {b.score:.2f} {b.certainty}",
                      "  subject ", clean(b.subject)) for b in report.below_threshold]
        out.append(Text())

    out += _ruled_out(report)
    out += _coverage_problems(report)

    if report.exonerated:
        out.append(_section("Checked and healthy", "bold green"))
        out += [_line("  ", clean(e.summary)) for e in report.exonerated]
        out.append(Text())

    if report.rule_pack_errors or report.rule_errors:
        out.append(_section("Rule problems", "bold red"))
        out += [_line("  ", clean(_where(e.file, e.line, e.column)), clean(e.message))
                for e in report.rule_pack_errors]
        out += [_line("  rule ", (clean(e.rule), "bold"), ": ", clean(e.error))
                for e in report.rule_errors]
        out.append(Text())

    if report.notes:
        out.append(_section("Not checked by this version", "dim"))
        out += [_line(("  " + clean(n), "dim")) for n in report.notes]

    return _print(out, color, width)


def _where(file: Optional[str], line: Optional[int], column: Optional[int]) -> str:
    if not file:
        return ""
    if line and column:
        return f"{file}:{line}:{column}: "
    return f"{file}:{line}: " if line else f"{file}: "


def _ruled_out(report: Report) -> list[Text]:
    if not report.ruled_out:
        return []
    ordered = report.ruled_out  # the pipeline puts those that rules checked first
    out = [_section(f"Ruled out ({len(ordered)})", "bold")]
    for r in ordered[:RULED_OUT_SHOWN]:
        out.append(_line("  ", (clean(r.id), "bold"), "  ", clean(r.reason)))
    if len(ordered) > RULED_OUT_SHOWN:
        out.append(_line((f"  ... and {len(ordered) - RULED_OUT_SHOWN} more "
                          "(--format json lists them with the failed condition)", "dim")))
    out.append(Text())
    return out


def _coverage_problems(report: Report) -> list[Text]:
    problems = [c for c in report.coverage if c.status != "ok"]
    warned = [c for c in report.coverage if c.status == "ok" and c.warnings]
    if not problems and not warned:
        return []
    out = [_section("Could not check", "bold yellow")]
    planned = [c for c in problems if c.status == "skipped"]
    for c in problems:
        if c.status == "skipped":
            continue
        out.append(_line("  ", (clean(c.probe), "bold"), "  ",
                         (c.status, _STATUS_STYLE.get(c.status, "")), "  ", clean(c.reason or "")))
    by_reason: dict[str, list[str]] = {}
    for c in planned:  # one line per reason: "conntrack, neigh  skipped  not implemented"
        by_reason.setdefault(clean(c.reason or ""), []).append(clean(c.probe))
    for reason, probes in by_reason.items():
        out.append(_line("  ", (", ".join(probes), "bold"), "  ", ("skipped", "dim"), "  ",
                         reason))
    for c in warned:
        first = clean(c.warnings[0])
        more = f" (+{len(c.warnings) - 1} more)" if len(c.warnings) > 1 else ""
        out.append(_line("  ", (clean(c.probe), "bold"), ("  warning  ", "yellow"), first, more))
    out.append(Text())
    return out


def _print(lines: Iterable[Text], color: bool, width: Optional[int]) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=color, no_color=not color,
                      color_system="standard" if color else None, width=width or 100,
                      highlight=False, emoji=False, markup=False, soft_wrap=True)
    for line in lines:
        console.print(line)
    return buffer.getvalue()
