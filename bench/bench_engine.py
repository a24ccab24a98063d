"""Benchmark the rule engine: ms per diagnosis for ~2,000 facts and ~50 rules.

    .venv/bin/python bench/bench_engine.py [--runs 200] [--facts 2000]

The rule pack is generated into a temporary directory: single-fact rules over processes,
CPUs and PSI, equality joins, a relational join (Python post-filter) and a 3-level
derivation chain, with thresholds that a few percent of the processes cross (a host in
trouble, not every process a finding). Prints ms/diagnosis (median and p95), activations
and RSS growth. Cost grows with the number of matches and of reported findings.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from sysdiag.engine import load_rulebase, run_engine
from sysdiag.facts import CpuCore, CpuSummary, Pressure, Process


def write_pack(directory: Path) -> int:
    rules = []
    n = 0
    for i in range(30):  # single-fact rules over processes
        rules.append(f"""
  - id: bench.proc-cpu-{i}
    weight: {1 + i % 3}
    when:
      p: process where cpu_pct >= {90 + i % 10} and state in ["R", "D"] and rss_bytes > {i * 100000}
    subject: "pid {{p.pid}}"
""")
    for i in range(8):  # single-fact rules over CPUs and PSI
        rules.append(f"""
  - id: bench.core-{i}
    weight: 1
    when:
      k: cpu_core where busy_pct > {80 + i} or softirq_pct > {20 + i}
""")
    for i in range(4):
        rules.append(f"""
  - id: bench.psi-{i}
    weight: 2
    when:
      p: psi where resource == "cpu" and some_avg10 >= {10 + 5 * i}
""")
    for i in range(4):  # equality joins (process with its parent)
        rules.append(f"""
  - id: bench.join-{i}
    weight: -1
    when:
      p: process where state == "D" and rss_bytes > {i * 1000}
      q: process where pid == p.ppid and state == "S"
    subject: "pid {{p.pid}}"
""")
    rules.append("""
  - id: bench.relational
    weight: 1
    when:
      p: process where state == "R" and cpu_pct > 90
      q: process where pid == p.ppid and cpu_pct < p.cpu_pct
    subject: "pid {p.pid}"
""")
    rules.append("""
  - id: bench.derive-1
    when:
      p: process where state == "D" and wchan matches "rpc_wait.*|nfs_.*"
    derive: {kind: blocked, fields: {pid: "{p.pid}", ppid: "{p.ppid}"}}
  - id: bench.derive-2
    when:
      b: blocked
      q: process where pid == b.ppid
    derive: {kind: blocked_parent, fields: {pid: "{q.pid}"}}
  - id: bench.chain-end
    weight: 3
    when:
      x: blocked_parent
    subject: "pid {x.pid}"
""")
    n = len(rules) + 2
    (directory / "bench.yaml").write_text(f"""
hypothesis:
  id: bench-hypothesis
  title: benchmark
  severity: medium
  explanation: "{{p.comm}} uses {{p.cpu_pct:.0f}}% CPU"
  next_commands: ["pidstat -p {{pid}} 1 5"]
rules:{''.join(rules)}
derived_facts:
  - kind: blocked
    key: [pid]
    fields: {{pid: number, ppid: number}}
  - kind: blocked_parent
    key: [pid]
    fields: {{pid: number}}
""")
    return n


def make_facts(count: int) -> list:
    facts: list = [CpuSummary(source="/proc/stat", cpu_count=8, busy_pct=70.0, procs_running=9),
                   Pressure(source="/proc/pressure/cpu", resource="cpu", some_avg10=22.5)]
    facts += [CpuCore(source="/proc/stat", cpu=i, busy_pct=70.0 + i * 3, softirq_pct=i * 2.5)
              for i in range(8)]
    for pid in range(1, count - len(facts) + 1):
        state = "D" if pid % 97 == 0 else "R" if pid % 13 == 0 else "I" if pid % 7 == 0 else "S"
        facts.append(Process(
            source=f"/proc/{pid}/stat", pid=pid, ppid=max(1, pid // 4), comm=f"task{pid % 97}",
            state=state, cpu_pct=float(pid % 101), rss_bytes=pid * 4096,
            wchan="rpc_wait_bit_killable" if state == "D" else "do_select"))
    return facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--facts", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        n_rules = write_pack(Path(tmp))
        rb = load_rulebase([Path(tmp)], include_builtin=False)
    facts = make_facts(args.facts)
    proc = psutil.Process()
    for _ in range(50):  # warm-up: registration, allocator arenas, durable's pools
        result = run_engine(rb, facts, None, [])
    rss0 = proc.memory_info().rss
    times = []
    for _ in range(args.runs):
        t = time.perf_counter()
        result = run_engine(rb, facts, None, [])
        times.append((time.perf_counter() - t) * 1000)
    rss1 = proc.memory_info().rss
    times.sort()
    print(f"facts={len(facts)} rules={n_rules} runs={args.runs}")
    print(f"ms/diagnosis: median {statistics.median(times):.1f}, "
          f"p95 {times[int(0.95 * len(times)) - 1]:.1f}, min {times[0]:.1f}")
    print(f"activations/diagnosis: {result.activations}; hypotheses: {len(result.hypotheses)}; "
          f"rule errors: {len(result.rule_errors)}")
    print(f"timings of the last run: {result.timings}")
    print(f"RSS growth over the runs (after 50 warm-up runs): {(rss1 - rss0) / 2**20:.1f} MB")


if __name__ == "__main__":
    main()
