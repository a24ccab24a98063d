"""Texts and helpers the authoring tests share. (A module of its own: `from conftest import`
picks whichever conftest.py was imported first when several test folders run together.)"""
from __future__ import annotations

import textwrap
from pathlib import Path

#: a rule pack an expert could write: one hypothesis, an `or`, a negative rule
PACK_RULE = """\
hypothesis:
  id: site-batch-hog
  title: The nightly batch job hogs the CPU
  domain: cpu
  symptoms: [high-cpu, high-latency]
  severity: medium
  explanation: "{p.comm} (pid {p.pid}) uses {p.cpu_pct:.0f}% CPU"
  next_commands:
    - pidstat -u -p {pid} 1 5
rules:
  - id: site-batch-hog.busy
    weight: 2
    when:
      p: process where comm matches "batch.*" and (cpu_pct >= 80 or run_delay_pct >= 50)
    subject: "pid {p.pid} ({p.comm})"
    because: "{p.comm} uses {p.cpu_pct}% CPU"
  - id: site-batch-hog.niced
    weight: -1
    when:
      p: process where comm matches "batch.*" and nice >= 10
    subject: "pid {p.pid} ({p.comm})"
    because: "{p.comm} runs at nice {p.nice}"
"""

PACK_TEST = """\
hypothesis: site-batch-hog
defaults:
  process: {ppid: 1, state: R}
cases:
  - name: a busy batch job
    facts:
      - {kind: process, pid: 77, comm: batch-export, cpu_pct: 95.0}
    fires: [site-batch-hog.busy]
    silent: [site-batch-hog.niced]
    expect:
      subject: pid 77 (batch-export)
      certainty: likely
      score: [0.4, 0.6]
      rank: 1
      evidence: {cpu_pct: 95.0}
      explanation: uses 95% CPU
      next_command: pidstat -u -p 77
  - name: a quiet batch job (near miss)
    facts:
      - {kind: process, pid: 77, comm: batch-export, cpu_pct: 79.0}
    silent: [site-batch-hog.busy]
    expect: {fired: false}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path
