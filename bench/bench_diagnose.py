#!/usr/bin/env python3
"""Benchmark one `diagnose` run as a user runs it: overhead beyond the sampling
window, CPU seconds (user + system) and peak RSS of the sysdiag process.

    .venv/bin/python bench/bench_diagnose.py [--symptom high-latency] [--window 2] [--runs 5]

Each run is a fresh process (`diagnose --format json`), so start-up (imports,
rule compilation) is included: that is what a pager or an on-call engineer pays.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def one_run(diagnose: str, symptom: str, window: float) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run([diagnose, "--symptom", symptom, "--window", str(window),
                           "--format", "json", "--no-follow-ups"],
                          capture_output=True, text=True, timeout=120)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"diagnose exited {proc.returncode}: {proc.stderr.strip()}")
    report = json.loads(proc.stdout)
    return {
        "wall_s": wall,
        "overhead_s": wall - report["window_s"],
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        # ru_maxrss of children is the largest child so far (KiB on Linux)
        "peak_rss_mb": after.ru_maxrss / 1024,
        "window_s": report["window_s"],
        "facts": sum(c.get("facts", 0) for c in report["coverage"]),
        "hypotheses": len(report["hypotheses"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symptom", default="high-latency")
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    diagnose = str(Path(sys.executable).with_name("diagnose"))
    if not os.access(diagnose, os.X_OK):
        raise SystemExit(f"{diagnose} not found: run `make install` first")
    runs = [one_run(diagnose, args.symptom, args.window) for _ in range(args.runs)]
    print(f"diagnose --symptom {args.symptom} --window {args.window}: {args.runs} runs, "
          f"{runs[-1]['facts']} facts, {os.cpu_count()} CPUs")
    for key, unit in (("wall_s", "s"), ("overhead_s", "s"), ("cpu_s", "s"), ("peak_rss_mb", "MB")):
        values = [r[key] for r in runs]
        print(f"  {key:12} median {statistics.median(values):7.3f} {unit}   "
              f"min {min(values):7.3f}   max {max(values):7.3f}")


if __name__ == "__main__":
    main()
