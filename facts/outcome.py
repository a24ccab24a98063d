"""What happened to each probe: the `coverage` section of every report."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict

ProbeStatus = Literal["ok", "unavailable", "failed", "timed_out", "skipped"]


class ProbeOutcome(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    probe: str
    status: ProbeStatus
    #: why it did not run or what went wrong, in words a user can act on
    reason: Optional[str] = None
    duration_s: float = 0.0
    facts: int = 0
    #: fact kinds this probe provides (lets `ruled_out` say which probe a missing fact needs)
    provides: list[str] = []
    #: partial problems that did not stop the probe (a process vanished, a file unreadable)
    warnings: list[str] = []
