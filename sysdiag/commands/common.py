"""What the commands share: scope options, errors, writing results."""
from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from sysdiag.facts import Scope


class OutputFormat(str, Enum):
    text = "text"
    json = "json"
    markdown = "markdown"


class UserError(Exception):
    """A problem the user can fix: printed as one line on stderr, exit 2."""


#: exit codes (DESIGN.md "Exit codes"); automation keys on these
EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INCOMPLETE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

SCOPE_PANEL = "Scope and input"

WindowOpt = Annotated[Optional[float], typer.Option(
    "--window", min=0.0, max=300.0, metavar="SECONDS",
    help="Sampling window for rates (default: the playbook's, usually 5 s).")]
DeadlineOpt = Annotated[float, typer.Option(
    "--deadline", min=0.1, metavar="SECONDS",
    help="Hard bound on the whole run; what could not finish is reported (exit 3).")]
ProcRootOpt = Annotated[Optional[Path], typer.Option(
    "--proc-root", metavar="DIR", rich_help_panel=SCOPE_PANEL,
    help="Read a captured /proc tree instead of the live host.")]
SysRootOpt = Annotated[Optional[Path], typer.Option(
    "--sys-root", metavar="DIR", rich_help_panel=SCOPE_PANEL,
    help="Read a captured /sys tree instead of the live host.")]
NetnsOpt = Annotated[Optional[str], typer.Option(
    "--netns", metavar="NAME", rich_help_panel=SCOPE_PANEL,
    help="Network namespace (as in `ip netns list`).")]
CgroupOpt = Annotated[Optional[str], typer.Option(
    "--cgroup", metavar="PATH", rich_help_panel=SCOPE_PANEL,
    help="cgroup path as in /proc/PID/cgroup, e.g. /system.slice/nginx.service.")]
PidOpt = Annotated[Optional[int], typer.Option(
    "--pid", min=1, metavar="PID", rich_help_panel=SCOPE_PANEL,
    help="The process the symptom is about.")]
EbpfOpt = Annotated[Optional[bool], typer.Option(
    "--ebpf/--no-ebpf",
    help="Trace with eBPF (bcc, needs root): --ebpf always, --no-ebpf never; default: only "
         "when a live hypothesis needs it and the overhead fits the budget (docs/ebpf.md).")]
IfaceOpt = Annotated[Optional[str], typer.Option(
    "--iface", metavar="IF", rich_help_panel=SCOPE_PANEL, help="The network interface.")]


def make_scope(pid: Optional[int], cgroup: Optional[str], netns: Optional[str],
               iface: Optional[str]) -> Scope:
    return Scope(pid=pid, cgroup=cgroup, netns=netns, iface=iface)


def use_color(stream=None) -> bool:
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def write_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def warn(message: str) -> None:
    """One diagnostic line on stderr (never the results)."""
    from sysdiag.report.escape import clean

    prog = Path(sys.argv[0]).name or "sysdiag"
    print(f"{prog}: {clean(message)}", file=sys.stderr)
