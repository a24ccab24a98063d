"""Process facts (/proc/PID/*, psutil) and the summaries rules need.

The rule engine cannot aggregate (durable-rules has no working count), so the
process probe emits summary facts (`tasks`, `zombie_parent`) next to the
per-process ones.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

from .base import Fact

#: /proc/PID/stat states (KNOWLEDGE.md §2.9)
ProcState = Literal["R", "S", "D", "T", "t", "Z", "X", "I", "P", "W", "K", "?"]


class Process(Fact):
    """One process (thread group), sampled at both ends of the window."""

    kind: Literal["process"] = "process"
    key_fields: ClassVar[tuple[str, ...]] = ("pid",)
    description: ClassVar[str] = "one process: state, CPU, memory, faults, wait channel, cgroup"

    pid: int
    ppid: int
    comm: str
    cmdline: Optional[str] = None  # truncated to 256 characters
    uid: Optional[int] = None
    state: ProcState  # at the end of the window
    state_first: Optional[ProcState] = None  # at the start of the window
    #: the same state in both samples (a task seen in D at both ends "stays" in D)
    state_stable: Optional[bool] = None
    kernel_thread: bool = False
    threads: Optional[int] = None
    nice: Optional[int] = None
    sched_policy: Optional[int] = None  # 0 normal, 1 FIFO, 2 RR, 3 batch, 5 idle, 6 deadline
    cpu_pct: Optional[float] = None  # Δ(utime+stime)/Δt x 100; 100 = one full CPU
    user_cpu_pct: Optional[float] = None
    system_cpu_pct: Optional[float] = None
    cpu_time_delta_s: Optional[float] = None
    run_delay_pct: Optional[float] = None  # Δ schedstat run-queue wait / Δt x 100
    rss_bytes: Optional[int] = None
    rss_anon_bytes: Optional[int] = None
    rss_anon_delta_bytes: Optional[int] = None
    swap_bytes: Optional[int] = None
    minflt_per_s: Optional[float] = None
    majflt_per_s: Optional[float] = None
    minflt_total: Optional[int] = None
    majflt_total: Optional[int] = None
    voluntary_ctxt_per_s: Optional[float] = None
    nonvoluntary_ctxt_per_s: Optional[float] = None
    wchan: Optional[str] = None
    cgroup: Optional[str] = None  # the v2 path, or the cpu controller's path on v1
    #: v1 only: the path in the freezer hierarchy, which need not be the cpu path
    #: (None on v2, where `cgroup` is the one path and holds cgroup.freeze)
    freezer_cgroup: Optional[str] = None
    #: v1 only: the path in the memory hierarchy, whose limit and reclaim the task lives
    #: under (on a hybrid host often not the cpu path: a container runtime or a test may
    #: move tasks in the memory hierarchy only)
    memory_cgroup: Optional[str] = None
    #: the task's freezer cgroup (v1 freezer.state FROZEN or FREEZING) or its v2 cgroup
    #: (cgroup.events frozen 1) is frozen: the task does not run, whatever its state and
    #: wait channel say (a v1-frozen task shows D and keeps its own wchan on 6.x)
    cgroup_frozen: Optional[bool] = None
    tracer_pid: Optional[int] = None
    fd_count: Optional[int] = None
    fd_soft_limit: Optional[int] = None
    fd_pct_of_limit: Optional[float] = None
    age_s: Optional[float] = None  # seconds since the process started
    #: CPU affinity (/proc/PID/status Cpus_allowed_list, "0-3,8"); compare the count with
    #: the online CPUs for cpu-cpuset-confinement
    cpus_allowed_list: Optional[str] = None
    cpus_allowed_count: Optional[int] = None


class TaskSummary(Fact):
    """Counts over all tasks on the host, and the limits they run into."""

    kind: Literal["tasks"] = "tasks"
    description: ClassVar[str] = "task counts by state and the pid/thread limits"

    processes: int
    threads: Optional[int] = None
    running: int = 0
    uninterruptible: int = 0  # D
    zombies: int = 0
    stopped: int = 0  # T and t
    #: tasks in D at both ends of the window
    uninterruptible_stable: Optional[int] = None
    pid_max: Optional[int] = None
    threads_max: Optional[int] = None
    tasks_pct_of_limit: Optional[float] = None
    #: processes that exited between listing /proc and reading them (skipped; normal)
    vanished_while_reading: Optional[int] = None


class ZombieParent(Fact):
    """A parent process with unreaped children (state Z)."""

    kind: Literal["zombie_parent"] = "zombie_parent"
    key_fields: ClassVar[tuple[str, ...]] = ("ppid",)
    description: ClassVar[str] = "a parent and how many zombie children it has not reaped"

    ppid: int
    parent_comm: Optional[str] = None
    parent_state: Optional[ProcState] = None
    zombies: int
    zombies_first: Optional[int] = None  # at the start of the window
    zombies_delta: Optional[int] = None
