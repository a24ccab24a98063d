"""Live cross-checks on the machine running the tests (marked `live`).

Each test starts its own child processes and kills and reaps them in `finally`.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from sysdiag.probes.base import ProbeContext
from sysdiag.probes.klog.kmsg import KmsgProbe
from sysdiag.probes.process.processes import ProcessesProbe
from sysdiag.probes.procfs.host import HostProbe
from sysdiag.probes.procfs.loadavg import LoadavgProbe
from sysdiag.probes.procfs.meminfo import MeminfoProbe
from sysdiag.probes.procfs.pressure import PressureProbe
from sysdiag.probes.procfs.stat import CpuProbe
from sysdiag.probes.procfs.vmstat import VmstatProbe
from sysdiag.probes.registry import all_probes

from probe_helpers import run_one

pytestmark = pytest.mark.live

if not Path("/proc/self/stat").exists():
    pytest.skip("no procfs on this machine", allow_module_level=True)


@pytest.fixture
def live_ctx() -> ProbeContext:
    return ProbeContext()


def _state(pid: int) -> str:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rfind(")") + 2]


def _wait_state(pid: int, wanted: str, timeout_s: float = 5.0) -> None:
    end = time.monotonic() + timeout_s
    while _state(pid) != wanted:
        if time.monotonic() > end:
            raise AssertionError(f"pid {pid} never reached state {wanted} (is {_state(pid)})")
        time.sleep(0.01)


def _child(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


def _stop(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.kill()  # SIGKILL also ends a SIGSTOPped child
    child.wait(timeout=10)


def test_loadavg_matches_os(live_ctx):
    outcome, (fact,) = run_one(LoadavgProbe(), live_ctx)
    load1, load5, load15 = os.getloadavg()
    assert outcome.status == "ok"
    # the kernel updates the averages every 5 s; allow one update between the reads
    assert fact.load1 == pytest.approx(load1, abs=0.5)
    assert fact.load15 == pytest.approx(load15, abs=0.1)
    assert fact.tasks_total >= len(psutil.pids())  # threads count too


def test_memory_total_matches_psutil_and_free(live_ctx):
    outcome, (fact,) = run_one(MeminfoProbe(), live_ctx)
    assert outcome.status == "ok"
    assert fact.mem_total_bytes == psutil.virtual_memory().total
    free = shutil.which("free")
    if free:
        out = subprocess.run([free, "-b"], capture_output=True, text=True, timeout=10).stdout
        total = int(next(line for line in out.splitlines() if line.startswith("Mem:")).split()[1])
        assert fact.mem_total_bytes == total
    assert fact.mem_available_bytes == pytest.approx(psutil.virtual_memory().available,
                                                     rel=0.05)


def test_cpu_count_matches(live_ctx):
    cpu_outcome, cpu_facts = run_one(CpuProbe(), live_ctx, window_s=0.2)
    host_outcome, (host,) = run_one(HostProbe(), live_ctx)
    assert cpu_outcome.status == host_outcome.status == "ok"
    summary = cpu_facts[0]
    assert summary.cpu_count == host.cpu_count == psutil.cpu_count() == os.cpu_count()
    assert len(cpu_facts) == 1 + summary.cpu_count
    assert summary.busy_pct is not None and 0.0 <= summary.busy_pct <= 100.0
    assert host.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert host.kernel_release == os.uname().release and host.euid == os.geteuid()


def test_vmstat_and_psi_sample_live(live_ctx):
    outcome, (vm,) = run_one(VmstatProbe(), live_ctx, window_s=0.2)
    assert outcome.status == "ok" and vm.pgfault_per_s is not None and vm.oom_kill_delta is not None
    outcome, facts = run_one(PressureProbe(), live_ctx, window_s=0.2)
    if outcome.status == "unavailable":
        pytest.skip(f"PSI here: {outcome.reason}")
    assert outcome.status == "ok"
    assert {"cpu", "memory", "io"} <= {f.resource for f in facts}
    assert all(f.some_window_pct is not None for f in facts)


def test_stopped_child_shows_T(live_ctx):
    child = _child("import time; time.sleep(60)")
    try:
        os.kill(child.pid, signal.SIGSTOP)
        _wait_state(child.pid, "T")
        outcome, facts = run_one(ProcessesProbe(), live_ctx, window_s=0.2)
        assert outcome.status == "ok", outcome.reason
        proc = next(f for f in facts if f.kind == "process" and f.pid == child.pid)
        assert (proc.state_first, proc.state, proc.state_stable) == ("T", "T", True)
        assert proc.ppid == os.getpid() and proc.cpu_pct == 0.0
        assert proc.cmdline and "time.sleep(60)" in proc.cmdline
        assert proc.fd_count is not None and proc.fd_count >= 3
        tasks = next(f for f in facts if f.kind == "tasks")
        assert tasks.stopped >= 1
    finally:
        _stop(child)


def test_zombie_child_and_its_parent(live_ctx):
    child = _child("pass")
    try:
        _wait_state(child.pid, "Z")  # exited, not yet reaped by us
        outcome, facts = run_one(ProcessesProbe(), live_ctx, window_s=0.2)
        assert outcome.status == "ok", outcome.reason
        proc = next(f for f in facts if f.kind == "process" and f.pid == child.pid)
        assert proc.state == "Z" and proc.cmdline is None and proc.fd_count is None
        parent = next(f for f in facts if f.kind == "zombie_parent" and f.ppid == os.getpid())
        assert parent.zombies >= 1 and parent.zombies_first >= 1
        assert parent.parent_state in ("R", "S")
        assert next(f for f in facts if f.kind == "tasks").zombies >= 1
    finally:
        _stop(child)


def test_busy_child_uses_a_cpu(live_ctx):
    child = _child("while True: pass")
    try:
        _wait_state(child.pid, "R")
        outcome, facts = run_one(ProcessesProbe(), live_ctx, window_s=1.0)
        assert outcome.status == "ok", outcome.reason
        proc = next(f for f in facts if f.kind == "process" and f.pid == child.pid)
        # Always runnable: on a CPU or waiting for one. On a busy 2-CPU machine (CI, other
        # tests) it may get well under one CPU, but on-CPU + run-queue wait stays ~100 %.
        assert proc.cpu_pct > 5.0 and proc.cpu_pct + proc.run_delay_pct > 80.0
        assert proc.user_cpu_pct > proc.system_cpu_pct
        assert proc.cpu_time_delta_s > 0.05
    finally:
        _stop(child)


def _can_read_kmsg() -> bool:
    try:
        os.close(os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _can_read_kmsg(), reason="needs root or kernel.dmesg_restrict=0")
def test_segfaulting_child_is_logged_in_window(live_ctx):
    trace = Path("/proc/sys/debug/exception-trace")
    if trace.exists() and trace.read_text().strip() == "0":
        pytest.skip("debug.exception-trace=0: the kernel does not log segfaults")
    probe = KmsgProbe()
    # run the window by hand so the crash happens inside it
    probe.check(live_ctx)
    first = probe.sample(live_ctx)
    child = _child("import ctypes; ctypes.string_at(0)")
    try:
        child.wait(timeout=10)
    finally:
        _stop(child)
    assert child.returncode == -signal.SIGSEGV
    time.sleep(0.05)
    last = probe.sample(live_ctx)
    facts = probe.facts(live_ctx, first, last, last - first)
    hits = [f for f in facts if f.signature == "segfault" and f.pid == child.pid]
    assert hits, [f.example for f in facts if f.signature == "segfault"]
    assert hits[0].in_window and hits[0].recent and hits[0].age_s < 10


def test_all_probes_live_once(live_ctx, capsys):
    """The whole set through the runner; prints what each probe took."""
    mine = ("host", "cpu", "loadavg", "psi", "memory", "vmstat", "processes", "klog")
    registry = all_probes()
    probes = [registry[name]() for name in mine]
    t0 = time.monotonic()
    from sysdiag.probes.runner import run_probes
    collection = run_probes(probes, live_ctx, window_s=0.5, deadline_s=20)
    with capsys.disabled():
        print(f"\nlive run, window {collection.window_s} s, total "
              f"{time.monotonic() - t0:.3f} s")
        for o in collection.outcomes:
            print(f"  {o.probe:10} {o.status:11} {o.duration_s:7.3f} s  {o.facts:4} facts "
                  f"{o.reason or ''}")
    statuses = {o.probe: o.status for o in collection.outcomes}
    for name in ("host", "cpu", "loadavg", "memory", "vmstat", "processes"):
        assert statuses[name] == "ok", collection.outcomes
    assert statuses["klog"] in ("ok", "unavailable") and statuses["psi"] in ("ok", "unavailable")


UNPRIVILEGED_KLOG = """
import os
from sysdiag.probes.base import ProbeContext
from sysdiag.probes.klog.kmsg import KmsgProbe
from sysdiag.probes.runner import run_probes
# drop privileges only now: the interpreter's files may not be readable by nobody
os.setgroups([]); os.setgid(65534); os.setuid(65534)
(outcome,) = run_probes([KmsgProbe()], ProbeContext(), window_s=0, deadline_s=10).outcomes
print(outcome.status, outcome.reason, sep="|")
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to an unprivileged user")
def test_klog_unavailable_for_an_unprivileged_user():
    restrict = Path("/proc/sys/kernel/dmesg_restrict")
    if not restrict.exists() or restrict.read_text().strip() != "1":
        pytest.skip("kernel.dmesg_restrict=0: everyone may read the kernel log here")
    out = subprocess.run([sys.executable, "-c", UNPRIVILEGED_KLOG], capture_output=True,
                         text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    status, reason = out.stdout.strip().split("|")
    assert status == "unavailable"
    assert reason == ("cannot read /dev/kmsg: needs root (CAP_SYSLOG) or "
                      "sysctl kernel.dmesg_restrict=0")
