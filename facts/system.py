"""Host-wide CPU, load and pressure facts (/proc/stat, /proc/loadavg, /proc/pressure)."""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

from .base import Fact

Virtualization = Literal["bare-metal", "vm", "container", "unknown"]


class HostInfo(Fact):
    """Who the host is. One per snapshot."""

    kind: Literal["host"] = "host"
    description: ClassVar[str] = "host identity, kernel, uptime and environment"

    hostname: str
    kernel_release: Optional[str] = None
    kernel_version: Optional[str] = None
    boot_id: Optional[str] = None
    uptime_s: Optional[float] = None
    virtualization: Virtualization = "unknown"
    virtualization_detail: Optional[str] = None  # "kvm", "docker", "firecracker"...
    cpu_count: Optional[int] = None  # online CPUs
    euid: Optional[int] = None


class CpuSummary(Fact):
    """All CPUs together, over the window (percentages of wall time x CPUs)."""

    kind: Literal["cpu"] = "cpu"
    description: ClassVar[str] = "CPU time split over the window, run queue and context switches"

    cpu_count: int
    busy_pct: Optional[float] = None  # 100 - idle - iowait
    user_pct: Optional[float] = None  # includes nice
    system_pct: Optional[float] = None
    idle_pct: Optional[float] = None
    iowait_pct: Optional[float] = None
    irq_pct: Optional[float] = None
    softirq_pct: Optional[float] = None
    steal_pct: Optional[float] = None
    #: share of busy time spent in the kernel (system + irq + softirq)
    kernel_share_of_busy_pct: Optional[float] = None
    #: CPUs with busy >= 90 % / CPUs with idle+iowait >= 30 % over the window
    saturated_cpus: Optional[int] = None
    idle_cpus: Optional[int] = None
    min_idle_pct: Optional[float] = None  # the least idle CPU's idle+iowait
    procs_running: Optional[int] = None  # gauge at the end of the window
    procs_blocked: Optional[int] = None
    #: procs_running > cpu_count in both samples (start and end)
    runqueue_over_cpus_samples: Optional[int] = None
    ctxt_per_s: Optional[float] = None
    forks_per_s: Optional[float] = None
    steal_pct_since_boot: Optional[float] = None


class CpuCore(Fact):
    """One CPU over the window."""

    kind: Literal["cpu_core"] = "cpu_core"
    key_fields: ClassVar[tuple[str, ...]] = ("cpu",)
    description: ClassVar[str] = "one CPU's time split over the window"

    cpu: int
    busy_pct: Optional[float] = None
    user_pct: Optional[float] = None
    system_pct: Optional[float] = None
    idle_pct: Optional[float] = None
    iowait_pct: Optional[float] = None
    softirq_pct: Optional[float] = None
    steal_pct: Optional[float] = None


class LoadAvg(Fact):
    kind: Literal["loadavg"] = "loadavg"
    description: ClassVar[str] = "load averages and task counts (/proc/loadavg)"

    load1: float
    load5: float
    load15: float
    runnable: int
    tasks_total: int
    last_pid: Optional[int] = None
    load1_per_cpu: Optional[float] = None


class Pressure(Fact):
    """Pressure stall information for one resource (Documentation/accounting/psi.rst)."""

    kind: Literal["psi"] = "psi"
    key_fields: ClassVar[tuple[str, ...]] = ("resource",)
    description: ClassVar[str] = "pressure stall information (PSI) for cpu, memory, io or irq"

    resource: Literal["cpu", "memory", "io", "irq"]
    some_avg10: Optional[float] = None
    some_avg60: Optional[float] = None
    some_avg300: Optional[float] = None
    some_total_us: Optional[int] = None
    full_avg10: Optional[float] = None
    full_avg60: Optional[float] = None
    full_avg300: Optional[float] = None
    full_total_us: Optional[int] = None
    #: stall share measured over the window from the `total` counters (Δtotal/Δt)
    some_window_pct: Optional[float] = None
    full_window_pct: Optional[float] = None
