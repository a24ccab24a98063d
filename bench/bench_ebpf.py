"""Benchmark the overhead of each eBPF program on a busy workload, with vs without tracing.

    .venv/bin/python bench/bench_ebpf.py [--seconds 2] [--rounds 3] [--probe ebpf-drops ...]

Needs root, bcc and kernel headers. When tracefs is not mounted, the benchmark re-runs
itself under `unshare --mount` and mounts tracefs in that private mount namespace only.

For each program two workloads run for a fixed time, in rounds that alternate untraced
and traced runs (the host may be busy with other work, so rounds are compared pairwise
and the median is reported):
- its worst case: a load that fires its tracepoints as fast as the machine can
  (pipe ping-pong for the scheduler programs, UDP to a closed port for drops, fresh
  memory for faults, small fsync'd writes for block I/O, a shaped TCP flow for
  retransmits);
- a busy service-like mix: one process compressing data, one doing small syscalls and
  short sleeps (a few thousand context switches per second), one writing and fsyncing.

Overhead = the extra CPU time the workload spent per unit of work while traced, as a
percentage of its untraced CPU time (BPF programs run in the traced task's context, so
their cost lands in the workload's own system time; CPU per operation is also far less
sensitive to other load on the host than throughput). Budget: <= 2 % on the busy mix
for the default set.
"""
from __future__ import annotations

import argparse
import mmap
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from multiprocessing import Process, Value

from sysdiag.probes.base import ProbeContext
from sysdiag.probes.registry import all_probes

PROGRAMS = ("ebpf-runqlat", "ebpf-offcpu", "ebpf-drops", "ebpf-tcpretrans", "ebpf-biolat",
            "ebpf-faults")


# ---- workloads: each runs until `stop` and counts its operations in `ops` ---------

def _pingpong(ops, stop_at):
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w1)  # or the read below never sees EOF
        os.close(r2)
        try:
            while True:
                if not os.read(r1, 1):
                    break
                os.write(w2, b"x")
        finally:
            os._exit(0)
    n = 0
    while time.monotonic() < stop_at:
        os.write(w1, b"x")
        os.read(r2, 1)
        n += 1
    os.close(w1)
    os.waitpid(pid, 0)
    for fd in (r1, r2, w2):
        os.close(fd)
    ops.value += n


def _udp_noport(ops, stop_at):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    n = 0
    while time.monotonic() < stop_at:
        for _ in range(100):
            s.sendto(b"x", ("127.0.0.1", 9))
        n += 100
    ops.value += n


def _faults(ops, stop_at):
    # a fresh anonymous mapping each time (malloc would reuse freed memory: no faults)
    size, n = 8 << 20, 0
    while time.monotonic() < stop_at:
        buf = mmap.mmap(-1, size)
        for i in range(0, size, 4096):
            buf[i] = 1
        buf.close()
        n += size // 4096
    ops.value += n


def _fsync(ops, stop_at):
    n = 0
    with tempfile.NamedTemporaryFile(dir="/var/tmp", prefix="sysdiag-bench-") as fh:
        while time.monotonic() < stop_at:
            fh.write(b"y" * 4096)
            fh.flush()
            os.fsync(fh.fileno())
            n += 1
    ops.value += n


def _tcp_bulk(ops, stop_at):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    cli = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    chunk, n = b"z" * 65536, 0
    while time.monotonic() < stop_at:
        cli.sendall(chunk)
        got = 0
        while got < len(chunk):
            got += len(conn.recv(1 << 20))
        n += 1
    for s in (cli, conn, srv):
        s.close()
    ops.value += n


def _compress(ops, stop_at):
    data, n = os.urandom(1 << 16), 0
    while time.monotonic() < stop_at:
        zlib.compress(data, 6)
        n += 1
    ops.value += n


def _small_syscalls(ops, stop_at):
    n = 0
    while time.monotonic() < stop_at:
        os.stat("/")
        time.sleep(0.0002)
        n += 1
    ops.value += n


def _fsync_slow(ops, stop_at):
    n = 0
    with tempfile.NamedTemporaryFile(dir="/var/tmp", prefix="sysdiag-bench-") as fh:
        while time.monotonic() < stop_at:
            fh.write(b"y" * 4096)
            fh.flush()
            os.fsync(fh.fileno())
            time.sleep(0.01)
            n += 1
    ops.value += n


WORST = {"ebpf-runqlat": [_pingpong], "ebpf-offcpu": [_pingpong], "ebpf-drops": [_udp_noport],
         "ebpf-tcpretrans": [_tcp_bulk], "ebpf-biolat": [_fsync], "ebpf-faults": [_faults]}
BUSY = [_compress, _small_syscalls, _fsync_slow]


def _measured(fn, ops, cpu, stop_at):
    fn(ops, stop_at)
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    # BPF programs run in the context of the task that hit the tracepoint: their cost is
    # charged to the workload's own system time
    cpu.value = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_workload(fns, seconds: float) -> dict[str, tuple[int, float]]:
    """(ops, CPU seconds) of each part of the workload (parts run in parallel processes)."""
    counters = [(Value("q", 0), Value("d", 0.0)) for _ in fns]
    stop_at = time.monotonic() + seconds
    procs = [Process(target=_measured, args=(fn, ops, cpu, stop_at))
             for fn, (ops, cpu) in zip(fns, counters)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(seconds + 30)
        if p.is_alive():
            p.kill()
            p.join()
    return {fn.__name__: (ops.value, cpu.value) for fn, (ops, cpu) in zip(fns, counters)}


def extra_cpu_pct(base: dict, traced: dict) -> float:
    """The CPU the traced run spent beyond what the same work cost untraced, as a share
    of the untraced CPU: sum over parts of base CPU x (traced CPU/op / base CPU/op - 1)."""
    total = sum(cpu for _, cpu in base.values())
    extra = 0.0
    for part, (ops, cpu) in base.items():
        t_ops, t_cpu = traced[part]
        if ops and t_ops and cpu:
            extra += cpu * ((t_cpu / t_ops) / (cpu / ops) - 1.0)
    return 100.0 * extra / total if total else 0.0


def overhead(name: str, fns, seconds: float, rounds: int) -> tuple[float, dict]:
    """Median extra CPU per unit of work while traced, %."""
    cls = all_probes()[name]
    results, last = [], {}
    for _ in range(rounds):
        base = run_workload(fns, seconds)
        probe, ctx = cls(), ProbeContext()
        probe.check(ctx)
        probe.sample(ctx)  # compile and attach
        try:
            traced = run_workload(fns, seconds)
        finally:
            probe.close()
        results.append(extra_cpu_pct(base, traced))
        last = {"base": {k: ops / seconds for k, (ops, _) in base.items()}}
    return statistics.median(results), last


def ensure_tracefs() -> None:
    if os.path.isdir("/sys/kernel/tracing/events") or \
            os.path.isdir("/sys/kernel/debug/tracing/events"):
        return
    if os.environ.get("SYSDIAG_BENCH_UNSHARED"):
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], check=True,
                       timeout=10)
        return
    if shutil.which("unshare") is None:
        sys.exit("tracefs is not mounted and unshare is missing")
    env = dict(os.environ, SYSDIAG_BENCH_UNSHARED="1")
    sys.exit(subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                             *sys.argv], env=env).returncode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--probe", action="append", choices=PROGRAMS)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (loading BPF programs)")
    ensure_tracefs()
    print(f"{'program':18} {'worst case':>11} {'busy mix':>9}   (extra CPU per unit of work while traced; "
          f"median of {args.rounds} rounds of {args.seconds:g} s)")
    for name in args.probe or PROGRAMS:
        worst, w = overhead(name, WORST[name], args.seconds, args.rounds)
        busy, _ = overhead(name, BUSY, args.seconds, args.rounds)
        rates = ", ".join(f"{k} {v:,.0f}/s" for k, v in w["base"].items())
        print(f"{name:18} {worst:10.1f}% {busy:8.1f}%   worst-case load: {rates}", flush=True)


if __name__ == "__main__":
    main()
