"""1,000 diagnoses in one process: RSS stays flat after warm-up (states and sessions are freed).

A memory test, not a timing test: it only bounds RSS growth."""
from __future__ import annotations

import gc

import psutil
import pytest

from sysdiag.engine import run_engine
from sysdiag.engine import session as S
from sysdiag.facts import Process

PACK = """\
hypothesis:
  id: zz-mem
  title: m
  severity: low
derived_facts:
  - kind: hot
    key: [pid]
    fields: {pid: number, ppid: number}
rules:
  - id: derive.hot
    when:
      p: process where cpu_pct >= 50
    derive: {kind: hot, fields: {pid: "{p.pid}", ppid: "{p.ppid}"}}
  - id: zz-mem.parent
    weight: 2
    when:
      h: hot
      q: process where pid == h.ppid and cpu_pct < 50
    subject: "pid {q.pid}"
  - id: zz-mem.relational
    weight: 1
    when:
      c: process where state == "R"
      q: process where pid == c.ppid and rss_bytes > c.rss_bytes
"""


@pytest.mark.slow
def test_thousand_diagnoses_keep_rss_flat(pack):
    rb = pack({"m.yaml": PACK})
    facts = [Process(source="t", pid=pid, ppid=max(1, pid // 3), comm=f"c{pid}",
                     state="R" if pid % 5 == 0 else "S", cpu_pct=float(pid % 100),
                     rss_bytes=pid * 1000) for pid in range(1, 301)]
    expected = None
    for _ in range(100):  # warm-up: allocator arenas and durable's pools reach their size
        expected = run_engine(rb, facts, None, []).hypotheses
    gc.collect()
    rss0 = psutil.Process().memory_info().rss
    for _ in range(1000):
        result = run_engine(rb, facts, None, [])
    gc.collect()
    growth_mb = (psutil.Process().memory_info().rss - rss0) / 2**20
    assert growth_mb < 30, f"RSS grew {growth_mb:.1f} MB over 1,000 diagnoses"
    assert result.hypotheses == expected and result.rule_errors == []  # same answer every time
    assert S.live_sessions() == 0
