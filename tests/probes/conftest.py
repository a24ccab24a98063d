"""Fixtures for the probe tests: the captured fixture tree."""
from __future__ import annotations

from pathlib import Path

import pytest

from sysdiag.probes.base import ProbeContext

#: ../shared/fixtures/procfs next to the repository checkout (prometheus/procfs testdata)
FIXTURE_TREE = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "procfs"


@pytest.fixture
def tree() -> Path:
    if not (FIXTURE_TREE / "proc").is_dir():
        pytest.skip(f"fixture tree {FIXTURE_TREE} is absent (it lives next to the repo checkout)")
    return FIXTURE_TREE


@pytest.fixture
def tree_ctx(tree: Path) -> ProbeContext:
    return ProbeContext(proc_root=tree / "proc", sys_root=tree / "sys", live=False)
