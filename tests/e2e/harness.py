"""Run `diagnose` on this host exactly as a user would, and judge its answer.

`diagnose()` runs the venv's console script (next to sys.executable) with `--format json`,
the scope options a user would give, a short window and no follow-up commands, and returns
the parsed report. The run's argv, exit code and wall time are attached under the key
`"_e2e"` (not part of the report schema).

`assert_top()` checks that the expected hypothesis ranks first (or within the first
`within` distinct hypotheses, for tests with two simultaneous faults) and that one finding
of it names the faulty object: a pid, a cgroup path, a mount point, an interface.

`AccuracyRecorder` (the `accuracy` fixture in conftest.py) wraps `assert_top` and appends one
JSON line per scenario to $SYSDIAG_ACCURACY_LOG when set, whether the check passes or not;
bench/accuracy.py prints the table.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

#: the console script of the interpreter running the tests (the venv's)
DIAGNOSE = Path(sys.executable).parent / "diagnose"
SYSDIAG = Path(sys.executable).parent / "sysdiag"

#: env var naming the JSON-lines file the accuracy recorder appends to
ACCURACY_LOG_ENV = "SYSDIAG_ACCURACY_LOG"

Report = dict[str, Any]


@dataclass(frozen=True)
class Pid:
    """A process to be named by a finding: subject `pid N (...)`, fact `process:N`, or
    `pid N` in the explanation."""
    pid: int


Name = str | int | Pid


def diagnose(symptom: str, *, pid: int | None = None, cgroup: str | None = None,
             iface: str | None = None, netns: str | None = None, window: float = 2.0,
             follow_ups: bool = False, extra: Sequence[str] = (), timeout: float = 90) -> Report:
    """Run `diagnose --symptom SYMPTOM --format json` with the given scope; return the report.

    Exit 0 (nothing found) and 1 (findings) both return the report, so the caller's
    assertion says what was expected; any other exit raises with the tail of stderr."""
    argv = [str(DIAGNOSE), "--symptom", symptom, "--format", "json", "--window", f"{window:g}"]
    for option, value in (("--pid", pid), ("--cgroup", cgroup), ("--iface", iface),
                          ("--netns", netns)):
        if value is not None:
            argv += [option, str(value)]
    if not follow_ups:
        argv.append("--no-follow-ups")
    argv += list(extra)
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - started
    if proc.returncode not in (0, 1):
        raise AssertionError(f"{' '.join(argv)}: exit {proc.returncode} (0 or 1 expected)\n"
                             f"stderr: {proc.stderr[-3000:]}")
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as err:
        raise AssertionError(f"{' '.join(argv)}: stdout is not JSON ({err}): "
                             f"{proc.stdout[:500]!r}") from err
    report["_e2e"] = {"argv": argv, "exit": proc.returncode, "seconds": round(seconds, 2),
                      "stderr": proc.stderr[-2000:]}
    return report


def collect(*, pid: int | None = None, cgroup: str | None = None, window: float = 2.0,
            timeout: float = 90) -> dict[str, Any]:
    """`sysdiag collect -o -` as JSON: the facts behind a diagnosis, for failure messages
    and for checking a fault is real before blaming a rule."""
    argv = [str(SYSDIAG), "collect", "-o", "-", "--window", f"{window:g}"]
    if pid is not None:
        argv += ["--pid", str(pid)]
    if cgroup is not None:
        argv += ["--cgroup", cgroup]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def ranking(report: Report) -> list[str]:
    """Distinct hypothesis ids of the findings, best first (one id may have several
    subjects; it counts once, at its best place)."""
    ids: list[str] = []
    for hyp in report.get("hypotheses", []):
        if hyp["id"] not in ids:
            ids.append(hyp["id"])
    return ids


def summary(report: Report, limit: int = 8) -> str:
    """One line per finding and per near miss, for assertion messages."""
    lines = [f"  {h['score']:.2f} {h['id']} [{h['subject']}] {h.get('certainty', '')}"
             for h in report.get("hypotheses", [])[:limit]]
    lines += [f"  below {b['score']:.2f} {b['id']} [{b['subject']}]"
              for b in report.get("below_threshold", [])[:limit]]
    e2e = report.get("_e2e", {})
    head = f"{' '.join(e2e.get('argv', []))} -> exit {e2e.get('exit')}"
    return "\n".join([head, *lines] or ["  (no findings)"])


def _haystack(hyp: dict[str, Any]) -> list[str]:
    texts = [hyp.get("subject", ""), hyp.get("explanation", "")]
    for ev in hyp.get("evidence", []):
        texts += [str(ev.get("fact", "")), str(ev.get("value", "")), str(ev.get("text") or "")]
    return texts


def names(hyp: dict[str, Any], name: Name) -> bool:
    """Does this finding name the object? A pid (int or Pid) by subject, fact or
    explanation; anything else (cgroup path, mount point, interface) as a substring of the
    subject, the explanation, or an evidence fact, value or text."""
    if isinstance(name, int | Pid):
        pid = name.pid if isinstance(name, Pid) else name
        facts = {str(ev.get("fact", "")) for ev in hyp.get("evidence", [])}
        return (hyp.get("subject", "").startswith(f"pid {pid} ")
                or f"process:{pid}" in facts
                or f"pid {pid} " in hyp.get("explanation", "") + " ")
    return any(name in text for text in _haystack(hyp))


def find(report: Report, expected_id: str, names_: Iterable[Name] = ()) -> dict | None:
    """The best-ranked finding of `expected_id` that names every object in `names_`."""
    wanted = list(names_)
    for hyp in report.get("hypotheses", []):
        if hyp["id"] == expected_id and all(names(hyp, n) for n in wanted):
            return hyp
    return None


def top_ok(report: Report, expected_id: str, within: int = 1) -> bool:
    """Is `expected_id` among the first `within` distinct ids? For within=1 an equal-score
    tie with the first finding counts as first (other work on the host may hold the same
    or another fault with the same score; ties are then ordered by subject)."""
    hyps = report.get("hypotheses", [])
    if not hyps:
        return False
    if expected_id in ranking(report)[:within]:
        return True
    if within == 1:
        best = hyps[0]["score"]
        return any(h["id"] == expected_id and h["score"] >= best - 1e-9 for h in hyps)
    return False


def assert_top(report: Report, expected_id: str, names: Iterable[Name] = (),
               within: int = 1) -> dict[str, Any]:
    """Assert `expected_id` ranks first (within=1) or in the first `within` distinct
    hypotheses, and that one of its findings names every object in `names`; return it."""
    wanted = list(names)
    assert top_ok(report, expected_id, within), (
        f"{expected_id} is not in the top {within}:\n{summary(report)}")
    hyp = find(report, expected_id, wanted)
    assert hyp is not None, (f"no {expected_id} finding names {wanted}:\n{summary(report)}\n"
                             + "\n".join(f"  {h['subject']}: {h.get('explanation', '')[:300]}"
                                         for h in report["hypotheses"] if h["id"] == expected_id))
    return hyp


class AccuracyRecorder:
    """Checks answers and keeps score: each `check` appends one JSON line
    {scenario, symptom, expected, top3, top1_ok, top3_ok, seconds} to `log` (when set),
    before asserting, so failures and xfails are counted too."""

    def __init__(self, scenario: str, log: Path | None) -> None:
        self.scenario = scenario
        self.log = log

    def check(self, report: Report, expected: str | Sequence[str],
              names: Iterable[Name] | Sequence[Iterable[Name]] = (), within: int | None = None,
              scenario: str | None = None) -> list[dict[str, Any]]:
        """One expected id (ranks first) or several (two simultaneous faults: each in the top
        `within`, default 3). With several ids, `names` is one list of names per id.
        Returns the matching findings in the order of `expected`."""
        ids = [expected] if isinstance(expected, str) else list(expected)
        per_id = [list(names)] if isinstance(expected, str) else [list(n) for n in names]
        if len(per_id) < len(ids):
            per_id += [[] for _ in range(len(ids) - len(per_id))]
        within = within or (1 if len(ids) == 1 else 3)
        top3 = ranking(report)[:3]
        found = [find(report, i, n) for i, n in zip(ids, per_id)]
        top1_ok = top_ok(report, ids[0], 1) if len(ids) == 1 else (
            bool(top3) and top3[0] in ids)
        self._record({
            "scenario": scenario or self.scenario,
            "symptom": report.get("symptom"),
            "expected": "+".join(ids),
            "top3": top3,
            "top1_ok": bool(top1_ok and all(found)),
            "top3_ok": all(i in top3 for i in ids) and all(found),
            "seconds": report.get("_e2e", {}).get("seconds"),
        })
        return [assert_top(report, i, n, within) for i, n in zip(ids, per_id)]

    def _record(self, row: dict[str, Any]) -> None:
        if self.log is None:
            return
        self.log.parent.mkdir(parents=True, exist_ok=True)
        # one write of one line with O_APPEND: lines from parallel tests do not interleave
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(row, sort_keys=True) + "\n").encode())
        finally:
            os.close(fd)


def accuracy_log() -> Path | None:
    value = os.environ.get(ACCURACY_LOG_ENV)
    return Path(value) if value else None
