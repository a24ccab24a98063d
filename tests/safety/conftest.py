"""Shared fixtures of the safety tests: root checks and the installed CLI."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

#: the console script next to the interpreter running the tests (the venv's)
_SYSDIAG = Path(sys.executable).parent / "sysdiag"


@pytest.fixture
def as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (runs every probe, mounts, switches users)")
    if not _SYSDIAG.exists():
        pytest.skip(f"{_SYSDIAG} is not installed (run scripts/bootstrap.sh)")
