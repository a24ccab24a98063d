"""Fixtures: start the real service (stopped even when the test fails) and a receiver."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from serve_helpers import Receiver, Service


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    started: list[Service] = []

    def start(*args: str, **kw: Any) -> Service:
        workdir = tmp_path / f"svc{len(started)}"
        workdir.mkdir()
        service = Service(workdir, *args, **kw)
        started.append(service)
        return service

    try:
        yield start
    finally:
        for service in started:
            service.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    try:
        yield rec
    finally:
        rec.stop()
