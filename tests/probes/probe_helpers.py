"""Helpers shared by the probe tests (imported by name: tests/probes is on sys.path)."""
from __future__ import annotations

from pathlib import Path

from sysdiag.facts import Fact, ProbeOutcome
from sysdiag.probes.base import Probe, ProbeContext
from sysdiag.probes.runner import run_probes


def run_one(probe: Probe, ctx: ProbeContext, window_s: float = 0.0,
            deadline_s: float = 30.0) -> tuple[ProbeOutcome, list[Fact]]:
    """Run one probe through the real runner; its outcome and facts."""
    collection = run_probes([probe], ctx, window_s=window_s, deadline_s=deadline_s)
    (outcome,) = collection.outcomes
    return outcome, collection.facts


def write_tree(root: Path, files: dict[str, str]) -> ProbeContext:
    """A small captured tree under `root` from {relative path: content}."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "proc").mkdir(exist_ok=True)
    (root / "sys").mkdir(exist_ok=True)
    return ProbeContext(proc_root=root / "proc", sys_root=root / "sys", live=False)
