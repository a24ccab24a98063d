"""The common shape of a bcc tracing probe.

The runner samples every probe at both ends of the window; for a tracing probe the
first `sample()` compiles and attaches its program, the last one reads its maps and
detaches. So the trace covers the diagnosis window, and nothing stays attached after
the probe is done. Each program is its own `.bpf.c` file next to the probe, configured
only with `-D` flags (values that come from the running kernel's tracepoint formats or
from the scope); no text is ever substituted into the C source.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Optional

from sysdiag.facts import Fact

from ..base import Probe, ProbeContext, Unavailable
from .requirements import check_tracing, import_bcc
from .tracefs import EventFormat

#: the most tasks a scope (--pid, --cgroup) puts in the filter map
MAX_FILTER_TIDS = 4096


@dataclass
class Trace:
    """One attached program, between the two samples."""

    bpf: Any
    started_ns: int  # CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns()
    formats: dict[str, EventFormat]
    scope_label: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)
    closed: bool = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.bpf.cleanup()


@dataclass
class Readout:
    """The maps, read at the end of the window (what `facts()` turns into facts)."""

    trace: Trace
    ended_ns: int
    data: dict[str, Any]

    @property
    def duration_s(self) -> float:
        return (self.ended_ns - self.trace.started_ns) / 1e9


class TracingProbe(Probe):
    cost = "tracing"
    needs_root = True
    #: compiling with clang takes one to a few seconds (more on a busy host)
    timeout_s = 30.0
    #: the program, a file in this package
    program: ClassVar[str]
    tracepoints: ClassVar[tuple[str, ...]]
    #: how the probe's event rate can be guessed from cheap facts before tracing: terms
    #: (fact kind, field, events per unit of that field), summed over every fact of the
    #: kind; used by the overhead budget (sysdiag/tracing.py)
    event_rate_from: ClassVar[tuple[tuple[str, str, float], ...]] = ()
    #: CPU cost of one traced event in ns, measured by bench/bench_ebpf.py on this class of host
    cost_ns_per_event: ClassVar[float] = 500.0
    #: honours --pid/--cgroup by filtering on the scope's tasks
    scoped: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self._trace: Optional[Trace] = None
        self._lock = threading.Lock()

    # ---- what subclasses provide
    def cflags(self, ctx: ProbeContext, formats: dict[str, EventFormat]) -> list[str]:
        """-D flags for the program (from the formats and the scope)."""
        return []

    def read_maps(self, trace: Trace) -> dict[str, Any]:
        """Copy what the program counted out of its maps (plain Python values)."""
        raise NotImplementedError

    def build_facts(self, ctx: ProbeContext, readout: Readout) -> list[Fact]:
        raise NotImplementedError

    # ---- the runner's interface
    def check(self, ctx: ProbeContext) -> None:
        check_tracing(ctx, self.tracepoints)

    def sample(self, ctx: ProbeContext) -> Any:
        with self._lock:
            if self._trace is None:
                self._trace = self._start(ctx)
                return self._trace
            trace = self._trace
        try:
            data = self.read_maps(trace)
            return Readout(trace=trace, ended_ns=time.monotonic_ns(), data=data)
        finally:
            trace.close()

    def facts(self, ctx: ProbeContext, first: Any, last: Any,
              elapsed_s: Optional[float]) -> list[Fact]:
        if not isinstance(last, Readout):
            # a single sample (window 0): the program was attached and saw nothing
            if isinstance(last, Trace):
                last.close()
            raise Unavailable("tracing needs a window > 0 s (--window); the trace covers it")
        return self.build_facts(ctx, last)

    def close(self) -> None:
        """Detach now (the runner gave up on the probe, or a test is done)."""
        with self._lock:
            if self._trace is not None:
                self._trace.close()

    # ---- helpers
    def _start(self, ctx: ProbeContext) -> Trace:
        formats = check_tracing(ctx, self.tracepoints)
        bcc = import_bcc()
        flags = list(self.cflags(ctx, formats))
        tids, label = scope_tids(ctx) if self.scoped else (None, None)
        if tids is not None:
            flags.append("-DFILTER_TIDS=1")
        src = program_path(self.program)
        bpf = bcc.BPF(src_file=str(src).encode(), cflags=flags)
        try:
            if tids is not None:
                table = bpf["filter_tids"]
                for tid in tids[:MAX_FILTER_TIDS]:
                    table[table.Key(tid)] = table.Leaf(1)
                if len(tids) > MAX_FILTER_TIDS:
                    self.warn(f"scope has {len(tids)} tasks; tracing the first {MAX_FILTER_TIDS}")
            trace = Trace(bpf=bpf, started_ns=time.monotonic_ns(), formats=formats,
                          scope_label=label)
            self.after_attach(trace)
        except BaseException:
            bpf.cleanup()
            raise
        return trace

    def after_attach(self, trace: Trace) -> None:
        """Hook: read anything needed once the program runs (e.g. a start time)."""


def program_path(name: str) -> Path:
    """The .bpf.c file shipped in this package."""
    path = Path(str(resources.files("sysdiag.probes.ebpf").joinpath(name)))
    if not path.is_file():
        raise FileNotFoundError(f"BPF program {name} is missing from the installed package "
                                f"({path}); reinstall sysdiag")
    return path


def scope_tids(ctx: ProbeContext) -> tuple[Optional[list[int]], Optional[str]]:
    """The thread ids of --pid or --cgroup (at the start of tracing), and a label."""
    scope = ctx.scope
    if scope.pid is not None:
        task_dir = ctx.proc(scope.pid, "task")
        try:
            tids = sorted(int(t) for t in os.listdir(task_dir) if t.isdigit())
        except FileNotFoundError as err:
            raise Unavailable(f"--pid {scope.pid}: the process exited before tracing began") \
                from err
        return tids, f"pid {scope.pid}"
    if scope.cgroup is not None:
        rel = scope.cgroup.strip("/")
        base = ctx.sys("fs/cgroup")
        candidates = [base / rel, *sorted(p / rel for p in base.glob("*") if p.is_dir())]
        for cand in candidates:
            for name in ("cgroup.threads", "tasks"):  # v2, v1
                text = ctx.read_optional(cand / name)
                if text is not None:
                    return sorted(int(t) for t in text.split()), f"cgroup {scope.cgroup}"
        raise Unavailable(f"--cgroup {scope.cgroup}: no cgroup.threads or tasks file under {base}")
    return None, None
