"""Kernel log facts: signature matches (KNOWLEDGE.md §3)."""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

from .base import Fact


class KernelLogEvent(Fact):
    """Lines of the kernel log that match one known signature, grouped by subject."""

    kind: Literal["klog"] = "klog"
    key_fields: ClassVar[tuple[str, ...]] = ("signature", "subject")
    description: ClassVar[str] = "kernel log lines matching a known signature"

    signature: str  # e.g. "oom-kill", "memcg-oom-kill", "hung-task", "soft-lockup"
    subject: str = "-"  # what the line is about: a pid, a device, a port ("-" if none)
    count: int
    first_seen_s: Optional[float] = None  # seconds since boot
    last_seen_s: Optional[float] = None
    age_s: Optional[float] = None  # seconds since the last match
    in_window: bool = False  # a match arrived during the sampling window
    recent: bool = False  # the last match is younger than the recency horizon
    pid: Optional[int] = None
    comm: Optional[str] = None
    device: Optional[str] = None
    cgroup: Optional[str] = None  # what the line is about (OOM: the memcg whose limit was hit)
    task_memcg: Optional[str] = None  # OOM kill: the victim's memory cgroup (also for a global OOM)
    constraint: Optional[str] = None  # OOM constraint (CONSTRAINT_NONE, _MEMCG, ...)
    order: Optional[int] = None  # allocation order (page-alloc-failure, oom-invoked)
    example: Optional[str] = None  # the last matching line, truncated
