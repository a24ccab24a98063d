"""Benchmark the first set of probes on the live host.

    .venv/bin/python bench/bench_probes.py [--processes N]

Starts sleeping children until about N processes exist (default 500; all killed
and reaped at the end), then times, for each probe: one sample, and the facts
step (which for `processes` includes the once-per-run detail reads, for `klog`
the ring-buffer read). Target: one `processes` sample of ~500 processes < 50 ms.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import time

from sysdiag.probes.base import ProbeContext
from sysdiag.probes.registry import all_probes

PROBES = ("host", "cpu", "loadavg", "psi", "memory", "vmstat", "processes", "klog")


def count_processes() -> int:
    return sum(name.isdigit() for name in os.listdir("/proc"))


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    children: list[subprocess.Popen] = []
    try:
        while count_processes() < args.processes:
            children.append(subprocess.Popen(["sleep", "600"]))
        ctx = ProbeContext()
        registry = all_probes()
        print(f"{count_processes()} processes; best of {args.repeat} (ms)")
        print(f"{'probe':10} {'sample':>8} {'facts':>8} {'facts#':>7}")
        for name in PROBES:
            probe = registry[name]()
            try:
                probe.check(ctx)
            except Exception as err:  # report and go on: a benchmark of the others
                print(f"{name:10} unavailable: {err}")
                continue
            sample_s, first = best_of(lambda: probe.sample(ctx), args.repeat)
            last = probe.sample(ctx)
            facts_s, facts = best_of(lambda: probe.facts(ctx, first, last, 1.0), args.repeat)
            print(f"{name:10} {sample_s * 1e3:8.2f} {facts_s * 1e3:8.2f} {len(facts):7}")
    finally:
        for child in children:
            child.kill()
        for child in children:
            child.wait(timeout=10)


if __name__ == "__main__":
    main()
