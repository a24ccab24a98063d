"""NIC-level facts: interrupt and softirq spread, RSS/RPS/XPS queues, offloads, rings,
channels and interrupt coalescing (KNOWLEDGE.md §2.4, §5.I).

Sources: /proc/interrupts, /proc/softirqs, /proc/irq/N/{smp,effective}_affinity_list,
/sys/class/net/IF/queues/*, /proc/sys/net/core/rps_sock_flow_entries, and the ethtool
generic-netlink family (ETHTOOL_MSG_{FEATURES,RINGS,CHANNELS,COALESCE}_GET) or, without
it, the SIOCETHTOOL ioctl.

CPU sets are written as kernel CPU lists ("0-3,8"). Per-CPU breakdowns are strings
("0:1520.5,1:0") for people; rules use the summary fields next to them.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

from .base import Fact


class IrqSpread(Fact):
    """How one interface's queue interrupts are spread over the CPUs."""

    kind: Literal["irq_spread"] = "irq_spread"
    key_fields: ClassVar[tuple[str, ...]] = ("ifname",)
    description: ClassVar[str] = ("one NIC's queue interrupts per CPU (/proc/interrupts): "
                                  "how concentrated they are and where they may go")

    ifname: str
    irqs: str  # the IRQ numbers matched to the interface, "38,39"
    irq_count: int
    #: CPUs /proc/interrupts has a column for (the online ones)
    cpu_count: int
    interrupts_total: int
    interrupts_per_s: Optional[float] = None
    per_cpu_total: str  # "0:1519,1:0"
    per_cpu_per_s: Optional[str] = None
    #: over the window: the CPU that took most of this interface's interrupts, its share,
    #: and how many CPUs took any (None with one sample or no interrupts in the window)
    busiest_cpu: Optional[int] = None
    busiest_share_pct: Optional[float] = None
    cpus_with_interrupts: Optional[int] = None
    #: the same since boot
    busiest_cpu_since_boot: Optional[int] = None
    busiest_share_pct_since_boot: Optional[float] = None
    cpus_with_interrupts_since_boot: int
    #: union of the IRQs' smp_affinity_list (where they may go) and effective_affinity_list
    #: (where the interrupt controller delivers them now)
    affinity_cpus: Optional[str] = None
    affinity_cpu_count: Optional[int] = None
    effective_cpus: Optional[str] = None
    effective_cpu_count: Optional[int] = None


class SoftirqCpu(Fact):
    """One CPU's network softirq counts (/proc/softirqs)."""

    kind: Literal["softirq_cpu"] = "softirq_cpu"
    key_fields: ClassVar[tuple[str, ...]] = ("cpu",)
    description: ClassVar[str] = "one CPU's NET_RX / NET_TX softirq runs (/proc/softirqs)"

    cpu: int
    net_rx_total: int
    net_rx_per_s: Optional[float] = None
    net_tx_total: int
    net_tx_per_s: Optional[float] = None


class SoftirqSummary(Fact):
    """How receive softirq work is spread over the CPUs."""

    kind: Literal["softirq_summary"] = "softirq_summary"
    description: ClassVar[str] = ("NET_RX softirq spread: the busiest CPU's share of all "
                                  "receive softirqs (/proc/softirqs)")

    cpu_count: int
    net_rx_total: int
    net_rx_per_s: Optional[float] = None
    net_tx_per_s: Optional[float] = None
    #: over the window (None with one sample or no NET_RX in the window)
    net_rx_busiest_cpu: Optional[int] = None
    net_rx_busiest_share_pct: Optional[float] = None
    net_rx_cpus_active: Optional[int] = None
    #: since boot
    net_rx_busiest_cpu_since_boot: Optional[int] = None
    net_rx_busiest_share_pct_since_boot: Optional[float] = None


class NicQueues(Fact):
    """One interface's RX/TX queues and their software steering (RPS/RFS/XPS), BQL and
    transmit timeouts (/sys/class/net/IF/queues)."""

    kind: Literal["nic_queues"] = "nic_queues"
    key_fields: ClassVar[tuple[str, ...]] = ("ifname",)
    description: ClassVar[str] = ("one interface's queues: RPS/RFS/XPS settings, tx_maxrate, "
                                  "byte queue limits and transmit timeouts")

    ifname: str
    rx_queues: int
    tx_queues: int
    #: RX queues whose rps_cpus mask is not empty, and the union of their masks
    rps_enabled_queues: int
    rps_cpus: Optional[str] = None
    rps_cpu_count: int = 0
    rps_flow_cnt_total: Optional[int] = None  # sum of rx-N/rps_flow_cnt
    #: net.core.rps_sock_flow_entries (global; None where unreadable, e.g. another netns)
    rps_sock_flow_entries: Optional[int] = None
    #: RFS needs both the global socket flow table and per-queue flow counts
    rfs_enabled: Optional[bool] = None
    xps_enabled_queues: Optional[int] = None  # TX queues with a non-empty xps_cpus
    xps_rxqs_enabled_queues: Optional[int] = None
    #: the largest per-queue rate cap (Mb/s); None when no queue is capped
    tx_maxrate_mbps: Optional[int] = None
    tx_maxrate_queues: int = 0  # TX queues with a cap
    #: transmit timeouts (watchdog) summed over the TX queues
    tx_timeout_total: Optional[int] = None
    tx_timeout_per_s: Optional[float] = None
    #: byte queue limits: the smallest current limit, bytes in flight now, stalls detected
    bql_limit_min_bytes: Optional[int] = None
    bql_inflight_bytes: Optional[int] = None
    bql_stall_total: Optional[int] = None
    bql_stall_per_s: Optional[float] = None


class NicOffloads(Fact):
    """Offload features of one interface, as `ethtool -k` shows them. `X_fixed` = the
    driver does not let it change (`[fixed]`); for a group of features (tso, tx_csum, sg)
    it is on when any member is active and fixed when every member is."""

    kind: Literal["nic_offloads"] = "nic_offloads"
    key_fields: ClassVar[tuple[str, ...]] = ("ifname",)
    description: ClassVar[str] = ("one interface's offloads (TSO, GSO, GRO, LRO, scatter-gather, "
                                  "checksumming) and whether each can be changed (ethtool -k)")

    ifname: str
    tso: Optional[bool] = None
    tso_fixed: Optional[bool] = None
    gso: Optional[bool] = None
    gso_fixed: Optional[bool] = None
    gro: Optional[bool] = None
    gro_fixed: Optional[bool] = None
    lro: Optional[bool] = None
    lro_fixed: Optional[bool] = None
    sg: Optional[bool] = None
    sg_fixed: Optional[bool] = None
    rx_csum: Optional[bool] = None
    rx_csum_fixed: Optional[bool] = None
    tx_csum: Optional[bool] = None
    tx_csum_fixed: Optional[bool] = None
    #: the offloads above that are off although the driver would allow them ("gro,tso")
    off_changeable: Optional[str] = None
    off_changeable_count: int = 0


class NicRings(Fact):
    """RX/TX descriptor ring sizes against their maxima (`ethtool -g`)."""

    kind: Literal["nic_rings"] = "nic_rings"
    key_fields: ClassVar[tuple[str, ...]] = ("ifname",)
    description: ClassVar[str] = "one NIC's RX/TX ring sizes and their maxima (ethtool -g)"

    ifname: str
    rx: Optional[int] = None
    rx_max: Optional[int] = None
    tx: Optional[int] = None
    tx_max: Optional[int] = None
    rx_pct_of_max: Optional[float] = None
    tx_pct_of_max: Optional[float] = None


class NicChannels(Fact):
    """Queue (channel) counts against their maxima (`ethtool -l`); None = n/a."""

    kind: Literal["nic_channels"] = "nic_channels"
    key_fields: ClassVar[tuple[str, ...]] = ("ifname",)
    description: ClassVar[str] = "one NIC's RX/TX/combined channel counts and maxima (ethtool -l)"

    ifname: str
    combined: Optional[int] = None
    combined_max: Optional[int] = None
    rx: Optional[int] = None
    rx_max: Optional[int] = None
    tx: Optional[int] = None
    tx_max: Optional[int] = None
    other: Optional[int] = None
    other_max: Optional[int] = None


class NicCoalesce(Fact):
    """Interrupt moderation (`ethtool -c`); None = the driver does not report it."""

    kind: Literal["nic_coalesce"] = "nic_coalesce"
    key_fields: ClassVar[tuple[str, ...]] = ("ifname",)
    description: ClassVar[str] = "one NIC's interrupt coalescing: rx/tx usecs, frames, adaptive"

    ifname: str
    rx_usecs: Optional[int] = None
    rx_frames: Optional[int] = None
    tx_usecs: Optional[int] = None
    tx_frames: Optional[int] = None
    adaptive_rx: Optional[bool] = None
    adaptive_tx: Optional[bool] = None


NIC_FACTS = (IrqSpread, SoftirqCpu, SoftirqSummary, NicQueues, NicOffloads, NicRings,
             NicChannels, NicCoalesce)
