"""Snapshot and healthy-host tests.

The healthy-host tests run first in the session: later tests inject real faults (and leave
kernel-log lines that sysdiag reports as recent for 15 minutes), and an idle host is what
they check.
"""
from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "healthy_host: diagnoses this host live and expects "
                            "no serious finding; runs first in the session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    healthy = [i for i in items if i.get_closest_marker("healthy_host")]
    if healthy:
        rest = [i for i in items if not i.get_closest_marker("healthy_host")]
        items[:] = healthy + rest
