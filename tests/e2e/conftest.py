"""Shared fixtures of the end-to-end fault tests (see harness.py for the runner and checks).

`accuracy`: an AccuracyRecorder named after the test; `accuracy.check(report, expected,
names=...)` asserts the ranking and appends the scenario's row to $SYSDIAG_ACCURACY_LOG.
`undo`: an ExitStack closed at teardown; enter faults (faults.py) on it so they are
removed in reverse order even when a check fails.
`as_root`: skips unless root on Linux with the console scripts installed.
"""
from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path
from typing import Iterator

import pytest

from harness import DIAGNOSE, AccuracyRecorder, accuracy_log


@pytest.fixture
def accuracy(request: pytest.FixtureRequest) -> AccuracyRecorder:
    return AccuracyRecorder(request.node.name, accuracy_log())


@pytest.fixture
def as_root() -> None:
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs Linux /proc")
    if os.geteuid() != 0:
        pytest.skip("needs root (cgroups, mounts, namespaces)")
    if not DIAGNOSE.exists():
        pytest.skip(f"{DIAGNOSE} is not installed (run scripts/bootstrap.sh)")


@pytest.fixture
def undo() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack
