"""Shared fixtures: the built-in rule base (loaded once) and a small rule pack on disk."""
from __future__ import annotations

from pathlib import Path

import pytest

from authoring_helpers import PACK_RULE, PACK_TEST, write

from sysdiag.engine import load_rulebase


@pytest.fixture(scope="session")
def builtin_rb():
    return load_rulebase()


@pytest.fixture
def pack(tmp_path) -> Path:
    root = tmp_path / "sitepack"
    write(root / "site-batch-hog.yaml", PACK_RULE)
    write(root / "tests" / "site-batch-hog.yaml", PACK_TEST)
    return root
