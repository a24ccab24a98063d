"""Helpers for engine tests: rule packs written into tmp_path, facts as plain models."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sysdiag.engine import load_rulebase


@pytest.fixture
def pack(tmp_path: Path):
    """pack({"name.yaml": "yaml text", ...}) -> RuleBase of just those files."""
    counter = [0]

    def make(files: dict[str, str], name: str = "pack"):
        counter[0] += 1
        d = tmp_path / f"{name}{counter[0]}"
        d.mkdir()
        for fname, text in files.items():
            (d / fname).write_text(textwrap.dedent(text))
        return load_rulebase([d], include_builtin=False)

    return make


@pytest.fixture
def write_pack(tmp_path: Path):
    """write_pack({"f.yaml": text}) -> the directory (for load-error tests)."""
    counter = [0]

    def make(files: dict[str, str], name: str = "bad") -> Path:
        counter[0] += 1
        d = tmp_path / f"{name}{counter[0]}"
        d.mkdir()
        for fname, text in files.items():
            (d / fname).write_text(textwrap.dedent(text))
        return d

    return make
