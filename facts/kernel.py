"""Kernel, configuration and "recent change" facts, NUMA nodes, software RAID,
deleted-but-open files and FUSE connections (KNOWLEDGE.md §1 "Investigation",
§2.12, §5.B, §5.E, §5.K, §5.L).

Lists the engine would have to iterate are flattened to comma-separated strings
(`consoles`, `vulnerable`): rule conditions compare scalars.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

from .base import Fact


class KernelConfig(Fact):
    """The running kernel: release, boot command line, build options that matter to a
    diagnosis, taint, THP/KSM, clocksource, CPU vulnerability mitigations, uptime."""

    kind: Literal["kernel"] = "kernel"
    description: ClassVar[str] = ("running kernel: release, cmdline flags, selected CONFIG_ "
                                  "options, taint, THP/KSM, clocksource, vulnerabilities, uptime")

    release: Optional[str] = None  # /proc/sys/kernel/osrelease (`uname -r`)
    version: Optional[str] = None  # /proc/sys/kernel/version (`uname -v`)
    machine: Optional[str] = None  # /proc/sys/kernel/arch, or uname -m on a live host
    #: the previous boot's kernel release. Always None: only the journal knows it
    #: (`journalctl -b -1 -k | grep -m1 'Linux version'`), and sysdiag runs no journalctl.
    previous_release: Optional[str] = None
    uptime_s: Optional[float] = None
    boot_time: Optional[int] = None  # epoch seconds (/proc/stat btime)

    # /proc/cmdline
    cmdline: Optional[str] = None  # truncated to 1024 characters
    psi_cmdline: Optional[str] = None  # the value of psi= ("1", "0"), None when absent
    mitigations: Optional[str] = None  # mitigations= ("off", "auto,nosmt")
    isolcpus: Optional[str] = None
    transparent_hugepage_cmdline: Optional[str] = None
    consoles: Optional[str] = None  # every console= value, comma separated ("ttyS0,115200")
    #: a console= on a serial port (ttyS*, ttyAMA*, hvc*...): printk waits for it
    serial_console: Optional[bool] = None

    # build configuration (/proc/config.gz or /boot/config-RELEASE); None: not readable
    config_source: Optional[str] = None
    config_psi: Optional[bool] = None
    config_psi_default_disabled: Optional[bool] = None  # PSI needs psi=1 on the cmdline
    config_kprobes: Optional[bool] = None
    config_schedstats: Optional[bool] = None
    config_kasan: Optional[bool] = None
    config_prove_locking: Optional[bool] = None
    config_debug_pagealloc: Optional[bool] = None
    config_kmemleak: Optional[bool] = None
    config_hz: Optional[int] = None
    config_bpf_syscall: Optional[bool] = None
    #: any of KASAN, PROVE_LOCKING, DEBUG_PAGEALLOC, KMEMLEAK: a slow debug build
    debug_kernel: Optional[bool] = None
    #: PSI files exist: built with CONFIG_PSI and not disabled at boot
    psi_enabled: Optional[bool] = None

    # /proc/sys/kernel/tainted
    tainted: Optional[int] = None  # 0: clean
    taint_flags: Optional[str] = None  # the kernel's letters for the set bits ("W", "POE")
    taint_reasons: Optional[str] = None  # their names, comma separated ("warning")
    taint_warn: Optional[bool] = None  # bit 9: a WARN() fired since boot

    # /sys/kernel/mm
    thp_enabled: Optional[str] = None  # the [selected] value: always, madvise, never
    thp_defrag: Optional[str] = None  # always, defer, defer+madvise, madvise, never
    ksm_run: Optional[int] = None  # 0 stopped, 1 running, 2 unmerging

    # /sys/devices/system/clocksource/clocksource0
    clocksource: Optional[str] = None
    clocksources_available: Optional[str] = None  # space separated, as the kernel lists them

    # /sys/devices/system/cpu/vulnerabilities/*
    vulnerabilities_total: Optional[int] = None
    vulnerable_count: Optional[int] = None
    vulnerable: Optional[str] = None  # names reported "Vulnerable...", comma separated
    mitigated_count: Optional[int] = None


class ConfigChange(Fact):
    """When configuration in one area last changed: the newest mtime among its files
    (top level only, links not followed). Read on a live host only."""

    kind: Literal["config_change"] = "config_change"
    key_fields: ClassVar[tuple[str, ...]] = ("area",)
    description: ClassVar[str] = ("newest configuration file in an area (sysctl, limits, "
                                  "systemd, nftables) and its age")

    area: Literal["sysctl", "limits", "systemd", "nftables"]
    paths: str  # the files/globs looked at, comma separated
    files: int  # entries found
    newest_path: Optional[str] = None
    newest_mtime: Optional[float] = None  # epoch seconds
    age_s: Optional[float] = None  # now - newest_mtime
    #: changed after the current boot (a hand edit not yet applied, or applied live)
    changed_since_boot: Optional[bool] = None


class NumaNode(Fact):
    """One NUMA node: memory and allocation locality over the window."""

    kind: Literal["numa_node"] = "numa_node"
    key_fields: ClassVar[tuple[str, ...]] = ("node",)
    description: ClassVar[str] = "one NUMA node: free memory and numa_hit/miss/foreign rates"

    node: int
    mem_total_bytes: Optional[int] = None
    mem_free_bytes: Optional[int] = None
    free_pct: Optional[float] = None
    numa_hit_per_s: Optional[float] = None  # allocations intended for and served here
    numa_miss_per_s: Optional[float] = None  # served here though intended for another node
    numa_foreign_per_s: Optional[float] = None  # intended here, served elsewhere
    #: Δmiss / (Δhit + Δmiss) x 100 over the window
    miss_ratio_pct: Optional[float] = None
    numa_hit_total: Optional[int] = None
    numa_miss_total: Optional[int] = None
    numa_foreign_total: Optional[int] = None
    cpus: Optional[str] = None  # the cpulist ("0-7,16-23"); "" for a memory-only node
    cpu_count: Optional[int] = None


class NumaSummary(Fact):
    """All NUMA nodes together; `nodes == 1` rules out the NUMA hypotheses."""

    kind: Literal["numa"] = "numa"
    description: ClassVar[str] = "NUMA node count and the spread of free memory between nodes"

    nodes: int
    min_free_pct: Optional[float] = None  # the fullest node's free share
    max_free_pct: Optional[float] = None
    fullest_node: Optional[int] = None
    miss_ratio_pct: Optional[float] = None  # over all nodes, over the window


class RaidArray(Fact):
    """One Linux software RAID array (/proc/mdstat)."""

    kind: Literal["raid_array"] = "raid_array"
    key_fields: ClassVar[tuple[str, ...]] = ("name",)
    description: ClassVar[str] = "one md array: level, members, degraded, resync/recovery"

    name: str  # "md0"
    active: bool
    read_only: bool = False  # "(read-only)" or "(auto-read-only)"
    level: Optional[str] = None  # raid1, raid6, linear... (None for an inactive array)
    members: int  # member devices listed, spares and failed included
    member_devices: str  # "sda1,sdb1"
    failed_members: int = 0  # marked (F)
    spare_members: int = 0  # marked (S)
    raid_disks: Optional[int] = None  # [n/m]: n wanted
    working_disks: Optional[int] = None  # m working
    #: an '_' in the [UU_] status: a member is missing or failed
    degraded: bool = False
    #: resync, recovery (rebuilding onto a spare), reshape or check (a scrub), running now
    sync_action: Optional[Literal["resync", "recovery", "reshape", "check"]] = None
    sync_pct: Optional[float] = None
    sync_finish_min: Optional[float] = None
    sync_speed_kib_per_s: Optional[int] = None
    #: resync=DELAYED / resync=PENDING: waiting for another array or for writes
    sync_waiting: Optional[str] = None


class DeletedOpenFile(Fact):
    """A deleted file some process still holds open: its space is not freed."""

    kind: Literal["deleted_open_file"] = "deleted_open_file"
    key_fields: ClassVar[tuple[str, ...]] = ("pid", "fd")
    description: ClassVar[str] = "a deleted file still held open (pid, fd, path, size, mount)"

    pid: int
    comm: Optional[str] = None
    fd: int
    path: str  # the name it had, without the " (deleted)" suffix
    size_bytes: int  # st_size, as lsof shows it
    allocated_bytes: int  # st_blocks x 512: the disk space it holds (less when sparse)
    mount_id: int
    mountpoint: Optional[str] = None
    fstype: Optional[str] = None


class DeletedFilesSummary(Fact):
    """Space held by deleted-but-open files on one mount (what `df` counts and `du` not)."""

    kind: Literal["deleted_files"] = "deleted_files"
    key_fields: ClassVar[tuple[str, ...]] = ("mount_id",)
    description: ClassVar[str] = "space held by deleted-but-open files on one mount"

    mount_id: int
    mountpoint: str
    fstype: Optional[str] = None
    #: the mount is not in sysdiag's mount namespace (a container's): its mountpoint is
    #: as the holder sees it, not comparable with the host's `filesystem` facts
    other_namespace: bool = False
    bytes_held: int  # allocated bytes, each file counted once however many fds hold it
    files: int
    holders: int  # distinct processes
    largest_bytes: int
    largest_path: Optional[str] = None


class InotifyUser(Fact):
    """The inotify instances and watches one user holds, against the per-user limits
    (fs.inotify.max_user_instances / max_user_watches): past them inotify_init fails with
    EMFILE and inotify_add_watch with ENOSPC, however much disk is free."""

    kind: Literal["inotify_user"] = "inotify_user"
    key_fields: ClassVar[tuple[str, ...]] = ("uid",)
    description: ClassVar[str] = ("one user's inotify instances and watches vs "
                                  "fs.inotify.max_user_instances / max_user_watches")

    uid: int  # the real uid of the holders, which the kernel charges
    user: Optional[str] = None
    instances: int  # distinct instances (an fd shared by fork or dup counts once)
    watches: int  # `inotify wd:` lines of those instances
    processes: int  # processes holding an fd of at least one of them
    max_user_instances: Optional[int] = None
    max_user_watches: Optional[int] = None
    instances_pct: Optional[float] = None
    watches_pct: Optional[float] = None
    #: the process holding the most instances, and the one holding the most watches
    top_pid: Optional[int] = None
    top_comm: Optional[str] = None
    top_instances: Optional[int] = None
    top_watches_pid: Optional[int] = None
    top_watches_comm: Optional[str] = None
    top_watches: Optional[int] = None


class FuseConnection(Fact):
    """One FUSE connection (/sys/fs/fuse/connections/N) and the mount it serves."""

    kind: Literal["fuse_connection"] = "fuse_connection"
    key_fields: ClassVar[tuple[str, ...]] = ("conn",)
    description: ClassVar[str] = ("a FUSE connection: requests waiting on its daemon, at both "
                                  "ends of the window")

    conn: int  # the connection number: the mount's device number
    mountpoint: Optional[str] = None  # None: no mount in our namespace uses it
    fstype: Optional[str] = None  # fuse, fuseblk, fuse.sshfs...
    device: Optional[str] = None
    #: requests queued for or being handled by the daemon, at the end of the window
    waiting: int
    waiting_first: Optional[int] = None  # at the start of the window
    #: nonzero at both ends: requests are not draining
    waiting_stable: Optional[bool] = None
    max_background: Optional[int] = None
    congestion_threshold: Optional[int] = None
