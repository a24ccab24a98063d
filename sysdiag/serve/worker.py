"""One diagnosis in a child process: `python -m sysdiag.serve.worker`, the job as JSON on
stdin, the result as JSON on stdout.

Why a process: durable-rules runs one diagnosis at a time per process and can crash the
process (ENGINE-NOTES §5, §10.3); a child can also be killed when it overruns its
deadline, which a thread cannot. The command line is fixed: the job (symptom, scope from
validated alert labels) travels only as data on stdin.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

#: exit codes, as the CLI's (DESIGN.md "Exit codes")
EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3
#: how long a child may run past its deadline before it is killed
GRACE_S = 5.0
MAX_OUTPUT_BYTES = 16 * 1024 * 1024


@dataclass
class Result:
    exit_code: int
    duration_s: float
    report: Optional[dict[str, Any]] = None
    markdown: Optional[str] = None
    error: Optional[str] = None


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """In the child: run the pipeline and return the result document."""
    from sysdiag.errors import InputError
    from sysdiag.facts import Scope
    from sysdiag.pipeline import Options, diagnose
    from sysdiag.report import render

    options = Options(window_s=job.get("window_s"), deadline_s=float(job["deadline_s"]),
                      scope=Scope(**job.get("scope", {})),
                      rules_dirs=[Path(d) for d in job.get("rules_dirs", [])],
                      tolerate_rule_errors=True)
    try:
        report = diagnose(job["symptom"], options)
    except InputError as err:
        return {"exit_code": EXIT_USAGE, "error": str(err)}
    if report.incomplete:
        code = EXIT_INCOMPLETE
    else:
        code = EXIT_FINDINGS if report.hypotheses_total else EXIT_OK
    return {"exit_code": code, "report": json.loads(render(report, "json")),
            "markdown": render(report, "markdown")}


def main() -> int:
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout = sys.stderr  # nothing but the result may reach the parent's pipe
    try:
        job = json.loads(sys.stdin.read())
        result = run_job(job)
    except Exception as err:  # contained: reported to the parent as a failed diagnosis
        result = {"exit_code": EXIT_INCOMPLETE, "error": f"{type(err).__name__}: {err}"}
    out.write(json.dumps(result))
    out.close()
    return int(result["exit_code"])


async def run_in_child(job: dict[str, Any]) -> Result:
    """In the server: run `job` in a fresh child process, bounded by its deadline."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sysdiag.serve.worker",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True,
        limit=MAX_OUTPUT_BYTES)
    try:
        stdout, stderr = await asyncio.wait_for(
            proc.communicate(json.dumps(job).encode()), timeout=job["deadline_s"] + GRACE_S)
    except asyncio.TimeoutError:
        _kill(proc)
        await proc.wait()
        return Result(EXIT_INCOMPLETE, _since(started),
                      error=f"the diagnosis overran its deadline ({job['deadline_s']:g} s + "
                            f"{GRACE_S:g} s) and was stopped")
    except asyncio.CancelledError:  # the server is shutting down: do not leave it running
        _kill(proc)
        raise
    duration = _since(started)
    try:
        doc = json.loads(stdout)
    except ValueError:
        tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return Result(EXIT_INCOMPLETE, duration,
                      error=f"the diagnosis process ended with status {proc.returncode} "
                            f"without a result: {tail[0][:300]}")
    return Result(int(doc["exit_code"]), duration, doc.get("report"), doc.get("markdown"),
                  doc.get("error"))


def _kill(proc: asyncio.subprocess.Process) -> None:
    # our child leads its own session: this ends it and whatever it started (follow-ups)
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it ended between the check and the kill


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


if __name__ == "__main__":
    sys.exit(main())
