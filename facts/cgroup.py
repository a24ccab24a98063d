"""Control-group facts: limits and how hard a cgroup runs into them
(KNOWLEDGE.md §2.11; v2 `/sys/fs/cgroup/<path>`, v1 `/sys/fs/cgroup/<controller>/<path>`).

On v1 a path may exist in several controller hierarchies (cpu, memory, pids...);
one fact per path merges what each hierarchy says about it, and `controllers`
names the hierarchies that had the path.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

from .base import Fact


class Cgroup(Fact):
    kind: Literal["cgroup"] = "cgroup"
    key_fields: ClassVar[tuple[str, ...]] = ("path",)
    description: ClassVar[str] = (
        "one cgroup with a limit or in scope: cpu quota and throttling, memory limit and "
        "OOM kills, pids limit, io throttle, freezer, cpuset, pressure")

    path: str  # "/system.slice/foo.service"; "/" is the root cgroup
    version: Literal[1, 2]
    controllers: str = ""  # v1: the hierarchies holding this path ("cpu,memory"); v2: enabled ones
    #: holds the process in scope (--pid) or is the cgroup in scope (--cgroup)
    in_scope: bool = False

    # CPU bandwidth (CFS quota)
    cpu_quota_us: Optional[int] = None  # None: no quota
    cpu_period_us: Optional[int] = None  # None when there is no quota
    cpu_limit_cpus: Optional[float] = None  # quota / period
    nr_periods: Optional[int] = None
    nr_throttled: Optional[int] = None
    throttled_us: Optional[int] = None  # total time throttled (v1 reports ns)
    #: Δnr_throttled / Δnr_periods over the window
    throttled_ratio_pct: Optional[float] = None
    #: nr_throttled / nr_periods since the cgroup was created
    throttled_ratio_total_pct: Optional[float] = None
    nr_throttled_delta: Optional[int] = None

    # memory
    memory_limit_bytes: Optional[int] = None  # None: no limit (v1's huge sentinel too)
    #: the smallest limit of this cgroup and its ancestors: what really caps it
    memory_limit_effective_bytes: Optional[int] = None
    memory_high_bytes: Optional[int] = None  # v2 memory.high (reclaim throttling point)
    memory_usage_bytes: Optional[int] = None
    memory_usage_pct: Optional[float] = None  # usage / effective limit x 100
    memory_failcnt: Optional[int] = None  # v1: times usage hit the limit
    memory_max_events: Optional[int] = None  # v2 memory.events `max`
    oom_kill_total: Optional[int] = None
    oom_kill_delta: Optional[int] = None  # over the window

    # pids
    pids_current: Optional[int] = None
    pids_max: Optional[int] = None  # None: no limit
    pids_max_events: Optional[int] = None  # forks refused at the limit (pids.events max)
    pids_pct: Optional[float] = None

    # freezer, io, cpuset
    frozen: Optional[bool] = None
    io_throttled: Optional[bool] = None  # any io.max / blkio.throttle.* rule
    io_throttle_rules: Optional[str] = None  # the rules, "8:0 wbps=1048576; ..."
    cpuset_cpus: Optional[str] = None  # effective CPU list, "0-3"
    cpuset_cpus_count: Optional[int] = None

    # pressure (v2, or the unified hierarchy of a v1/v2 hybrid)
    cpu_some_avg10: Optional[float] = None
    cpu_full_avg10: Optional[float] = None
    memory_some_avg10: Optional[float] = None
    memory_full_avg10: Optional[float] = None
    io_some_avg10: Optional[float] = None
    io_full_avg10: Optional[float] = None
