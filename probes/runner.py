"""Runs probes concurrently under a global deadline and records an outcome for each.

Every probe's first sample is taken at the start of the window, the second at
its end, each in its own daemon thread bounded by the probe's timeout and by
the deadline. A thread that hangs (a read that blocks on a stuck process) is
abandoned and reported as timed out; the run goes on.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from sysdiag.facts import Fact, ProbeOutcome

from .base import Probe, ProbeContext, Unavailable

#: time kept back from the deadline for the engine and the report
RESERVE_S = 1.0


@dataclass
class Collection:
    facts: list[Fact]
    outcomes: list[ProbeOutcome]
    window_s: float  # the window actually sampled
    deadline_hit: bool = False
    timings: dict[str, float] = field(default_factory=dict)


class _Call:
    """One call in a daemon thread with a timeout."""

    def __init__(self, fn: Callable[[], Any]):
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.done = threading.Event()
        self.started = time.monotonic()
        self.ended: Optional[float] = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as err:  # contained here, reported by the runner
            self.error = err
        finally:
            self.ended = time.monotonic()
            self.done.set()

    def wait(self, until: float) -> bool:
        return self.done.wait(max(0.0, until - time.monotonic()))

    @property
    def busy_s(self) -> float:
        return (self.ended if self.ended is not None else time.monotonic()) - self.started


@dataclass
class _State:
    probe: Probe
    start: float = 0.0
    busy_s: float = 0.0  # time spent in the probe's own calls (not the window)
    first: Any = None
    first_at: Optional[float] = None
    outcome: Optional[ProbeOutcome] = None
    facts: list[Fact] = field(default_factory=list)


def _describe(err: BaseException) -> str:
    if isinstance(err, PermissionError):
        return f"permission denied: {err.filename or err} (run as root for this probe)"
    if isinstance(err, FileNotFoundError):
        return f"not found: {err.filename or err}"
    return f"{type(err).__name__}: {err}"


def _in_scope(probe: Probe, ctx: ProbeContext, fn: Callable[[], Any]) -> Callable[[], Any]:
    """`fn`, run inside the network namespace in scope when the probe reads one."""
    if not (probe.netns_scoped and ctx.netns_path is not None):
        return fn

    def scoped() -> Any:
        from .scope import entered_netns

        with entered_netns(ctx.netns_path, ctx.netns_label):  # this call's own thread
            return fn()

    return scoped


def run_probes(probes: list[Probe], ctx: ProbeContext, window_s: float,
               deadline_s: float) -> Collection:
    """Sample every probe at both ends of `window_s`, finishing by `deadline_s`
    (seconds from now, for the whole run including the engine)."""
    t0 = time.monotonic()
    hard_end = t0 + max(0.1, deadline_s - RESERVE_S)
    states = [_State(p, start=t0) for p in probes]
    deadline_hit = False

    def finish(st: _State, status: str, reason: Optional[str] = None) -> None:
        st.outcome = ProbeOutcome(
            probe=st.probe.name, status=status, reason=reason,
            duration_s=round(st.busy_s, 4), facts=len(st.facts),
            provides=list(st.probe.provides), warnings=list(st.probe.warnings))

    for st in states:
        try:
            st.probe.check(ctx)
        except Unavailable as err:
            finish(st, "unavailable", str(err))

    def reading(st: _State) -> Callable[[], list[Fact]]:
        """The probe's last (or only) sample, turned into facts."""
        def run() -> list[Fact]:
            value = st.probe.sample(ctx)
            elapsed = (time.monotonic() - st.first_at) if st.first_at is not None else None
            first = st.first if st.first_at is not None else None
            return st.probe.facts(ctx, first, value, elapsed)
        return _in_scope(st.probe, ctx, run)

    def settle(st: _State, call: _Call, what: str) -> bool:
        """Wait for a call within its timeout and the deadline; record a failure. True = ok."""
        nonlocal deadline_hit
        until = min(call.started + st.probe.timeout_s, hard_end)
        finished = call.wait(until)
        st.busy_s += call.busy_s
        if not finished:
            finish(st, "timed_out", f"{what} took longer than "
                   f"{min(st.probe.timeout_s, hard_end - call.started):.1f} s; abandoned")
            deadline_hit |= time.monotonic() >= hard_end
            return False
        if call.error is not None:
            status = "unavailable" if isinstance(call.error, Unavailable) else "failed"
            finish(st, status, str(call.error) if status == "unavailable"
                   else _describe(call.error))
            return False
        return True

    # At the start of the window: the first sample of counter-sampling probes, and the
    # only reading of one-sample probes. The latter run during the window, so a slow
    # one (statfs of a dead mount in a bounded child) has the whole window for its
    # timeout instead of what is left after it.
    two_samples = ctx.live and window_s > 0
    firsts, calls = [], []
    for st in states:
        if st.outcome is not None:
            continue
        if two_samples and st.probe.sampled:
            firsts.append((st, _Call(_in_scope(st.probe, ctx, lambda st=st: st.probe.sample(ctx)))))
        else:
            calls.append((st, _Call(reading(st))))
    for st, call in firsts:
        if settle(st, call, "first sample"):
            st.first, st.first_at = call.result, time.monotonic()

    # the window: bounded by the deadline
    window_end = t0 + window_s if two_samples else t0
    if window_end > hard_end:
        window_end = hard_end - min(1.0, (hard_end - t0) / 4)  # leave time for the last samples
        deadline_hit = True
    sleep_for = window_end - time.monotonic()
    if sleep_for > 0:
        time.sleep(sleep_for)
    sampled_window = max(0.0, time.monotonic() - t0) if two_samples else 0.0

    # last samples and facts
    calls += [(st, _Call(reading(st))) for st, _ in firsts if st.outcome is None]
    for st, call in calls:
        if settle(st, call, "reading"):
            st.facts = list(call.result)
            finish(st, "ok")

    facts = [f for st in states for f in st.facts]
    return Collection(facts=facts, outcomes=[st.outcome for st in states],
                      window_s=round(sampled_window, 3), deadline_hit=deadline_hit,
                      timings={"collect_s": round(time.monotonic() - t0, 4)})
