"""`sysdiag diagnose --symptom S` (and `diagnose --symptom S`): the main job."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from sysdiag.defaults import DEADLINE_S, THRESHOLD

from .common import (EXIT_FINDINGS, EXIT_INCOMPLETE, EXIT_OK, CgroupOpt, DeadlineOpt, EbpfOpt,
                     IfaceOpt, NetnsOpt, OutputFormat, PidOpt, ProcRootOpt, SCOPE_PANEL,
                     SysRootOpt, WindowOpt, make_scope, use_color, warn, write_stdout)



def diagnose_command(
    symptom: Annotated[str, typer.Option(
        "--symptom", "-s", metavar="SYMPTOM",
        help="What is wrong, e.g. high-latency, oom, process-hang (`sysdiag symptoms`).")],
    window: WindowOpt = None,
    deadline: DeadlineOpt = DEADLINE_S,
    from_: Annotated[Optional[Path], typer.Option(
        "--from", metavar="SNAPSHOT.json", rich_help_panel=SCOPE_PANEL,
        help="Diagnose a snapshot saved by `sysdiag collect` instead of this host.")] = None,
    proc_root: ProcRootOpt = None,
    sys_root: SysRootOpt = None,
    netns: NetnsOpt = None,
    cgroup: CgroupOpt = None,
    pid: PidOpt = None,
    iface: IfaceOpt = None,
    ebpf: EbpfOpt = None,
    fmt: Annotated[OutputFormat, typer.Option(
        "--format", "-f", help="text for a terminal, json for machines, markdown for a ticket.")
    ] = OutputFormat.text,
    top: Annotated[Optional[int], typer.Option(
        "--top", min=1, metavar="N", help="Show only the N best hypotheses.")] = None,
    rules_dir: Annotated[Optional[list[Path]], typer.Option(
        "--rules-dir", metavar="DIR", help="Extra rule pack directory (repeatable).")] = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Exit 3 when any probe of the playbook did not run.")] = False,
    no_follow_ups: Annotated[bool, typer.Option(
        "--no-follow-ups", help="Do not run the read-only follow-up commands.")] = False,
    threshold: Annotated[float, typer.Option(
        "--threshold", min=0.0, max=1.0, metavar="SCORE",
        help="Minimum score (0-1) of a finding; weaker ones are listed as 'also possible'.")
    ] = THRESHOLD,
) -> None:
    """Diagnose a symptom: rank what is most likely wrong, with evidence and next commands.

    Exit codes: 0 nothing at or above the threshold, 1 findings, 2 usage or input
    error, 3 incomplete (deadline hit, or --strict and a probe did not run),
    130 interrupted.
    """
    from sysdiag.pipeline import Options, diagnose
    from sysdiag.report import render

    options = Options(
        window_s=window, deadline_s=deadline, from_path=from_, proc_root=proc_root,
        sys_root=sys_root, scope=make_scope(pid, cgroup, netns, iface), top=top,
        rules_dirs=list(rules_dir or []), strict=strict, follow_ups=not no_follow_ups,
        threshold=threshold, ebpf=ebpf, tolerate_rule_errors=True)
    report = diagnose(symptom, options)
    # a broken --rules-dir pack is left out and the rest still runs; say so on stderr too
    # (a broken built-in rule file is still an input error: exit 2)
    for problem in report.rule_pack_errors:
        where = f"{problem.file}:{problem.line}:{problem.column}: " if problem.file else ""
        warn(f"rule pack rejected: {where}{problem.message}")
    write_stdout(render(report, fmt.value, color=fmt is OutputFormat.text and use_color()))
    if report.incomplete:
        warn(f"incomplete: {report.incomplete_reason}")
        raise typer.Exit(EXIT_INCOMPLETE)
    raise typer.Exit(EXIT_FINDINGS if report.hypotheses_total else EXIT_OK)
