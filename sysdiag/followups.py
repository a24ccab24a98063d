"""Read-only follow-up commands, run when a hypothesis fires on a live host.

Safety (DESIGN.md "Safety"): only binaries in `playbook.FOLLOW_UP_BINARIES`, each
with its argument check, re-checked after placeholders are filled; no shell (an
argument list); a fixed PATH and environment; stdin closed; a 3 s timeout each and
the run's deadline over all of them; output truncated and control characters made
visible. Never run on a snapshot or a captured tree: the host is elsewhere.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

from sysdiag.engine.results import Hypothesis
from sysdiag.facts import Scope

from .playbook import FOLLOW_UP_BINARIES
from .report.escape import clean
from .report.models import FollowUp

#: not the caller's PATH: a writable directory early in it would choose the binary
SAFE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
TIMEOUT_S = 3.0
MAX_COMMANDS = 10
MAX_OUTPUT_CHARS = 8000
MAX_OUTPUT_LINES = 120

_VALUE_PATTERNS = {
    "pid": re.compile(r"^[1-9][0-9]{0,9}$"),
    "iface": re.compile(r"^[A-Za-z0-9_.:@][A-Za-z0-9_.:@-]{0,14}$"),
    "netns": re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,63}$"),
    "cgroup": re.compile(r"^/[A-Za-z0-9_.:@/-]{0,255}$"),
}
_SUBJECT_PID = re.compile(r"^pid ([1-9][0-9]*)\b")


@dataclass(frozen=True)
class Planned:
    hypothesis: str
    argv: tuple[str, ...]


def placeholder_values(hyp: Hypothesis, scope: Scope) -> dict[str, str]:
    """Values for {pid} {iface} {netns} {cgroup}: the command-line scope first, else
    what the hypothesis is about. Values that could be read as options are dropped."""
    values: dict[str, str] = {k: str(v) for k, v in scope.model_dump().items() if v is not None}
    if "pid" not in values:
        match = _SUBJECT_PID.match(hyp.subject)
        if match:
            values["pid"] = match.group(1)
        else:
            pids = {e.fact.split(":", 1)[1] for e in hyp.evidence
                    if e.kind == "process" and ":" in e.fact}
            if len(pids) == 1:
                values["pid"] = pids.pop()
    return {k: v for k, v in values.items() if k in _VALUE_PATTERNS and _VALUE_PATTERNS[k].match(v)}


def plan(hypotheses: Sequence[Hypothesis], follow_ups: Mapping[str, Sequence[str]],
         scope: Scope) -> list[Planned]:
    """The commands to run for the reported hypotheses, best first, each argv once.
    A command whose placeholder has no value is dropped, never run half-filled."""
    planned: list[Planned] = []
    seen: set[tuple[str, ...]] = set()
    for hyp in hypotheses:
        values = placeholder_values(hyp, scope)
        for command in follow_ups.get(hyp.id, ()):
            try:
                argv = tuple(arg.format(**values) for arg in shlex.split(command))
            except KeyError:
                continue
            check = FOLLOW_UP_BINARIES.get(argv[0]) if argv else None
            if check is None or check(list(argv)) is not None or argv in seen:
                continue
            seen.add(argv)
            planned.append(Planned(hyp.id, argv))
    return planned[:MAX_COMMANDS]


def run_one(item: Planned, timeout_s: float) -> FollowUp:
    binary = shutil.which(item.argv[0], path=SAFE_PATH)
    if binary is None:
        return FollowUp(hypothesis=item.hypothesis, argv=list(item.argv),
                        error=f"{item.argv[0]} is not installed")
    start = time.monotonic()
    try:
        proc = subprocess.run([binary, *item.argv[1:]], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout_s, check=False,
                              env={"PATH": SAFE_PATH, "LC_ALL": "C", "COLUMNS": "160"})
    except subprocess.TimeoutExpired as err:
        output, truncated = _bound(err.stdout or b"", err.stderr or b"")
        return FollowUp(hypothesis=item.hypothesis, argv=list(item.argv), output=output,
                        truncated=truncated, duration_s=round(time.monotonic() - start, 3),
                        error=f"timed out after {timeout_s:.1f} s (killed)")
    except OSError as err:
        return FollowUp(hypothesis=item.hypothesis, argv=list(item.argv),
                        duration_s=round(time.monotonic() - start, 3),
                        error=f"could not run: {err.strerror or err}")
    output, truncated = _bound(proc.stdout, proc.stderr)
    return FollowUp(hypothesis=item.hypothesis, argv=list(item.argv), exit_code=proc.returncode,
                    output=output, truncated=truncated,
                    duration_s=round(time.monotonic() - start, 3))


def _bound(stdout: bytes, stderr: bytes) -> tuple[str, bool]:
    text = stdout.decode("utf-8", errors="replace")
    if stderr.strip():
        text += ("\n" if text and not text.endswith("\n") else "") + \
            stderr.decode("utf-8", errors="replace")
    lines = text.splitlines()
    truncated = len(lines) > MAX_OUTPUT_LINES or len(text) > MAX_OUTPUT_CHARS
    text = "\n".join(lines[:MAX_OUTPUT_LINES])[:MAX_OUTPUT_CHARS]
    return clean(text, multiline=True), truncated


def run(planned: Sequence[Planned], deadline_at: float,
        timeout_s: float = TIMEOUT_S) -> tuple[list[FollowUp], bool]:
    """Run the planned commands one after the other until `deadline_at` (monotonic).
    Returns the results and whether the deadline stopped some of them."""
    results: list[FollowUp] = []
    for index, item in enumerate(planned):
        left = deadline_at - time.monotonic()
        if left < 0.2:
            results += [FollowUp(hypothesis=p.hypothesis, argv=list(p.argv),
                                 error="not run: the deadline was reached")
                        for p in planned[index:]]
            return results, True
        results.append(run_one(item, min(timeout_s, left)))
    return results, False

