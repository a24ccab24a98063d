"""Network facts: interfaces, qdiscs and classes, softnet, protocol counters, socket memory.

Sources: netlink (RTM_GETLINK, RTM_GETQDISC, RTM_GETTCLASS) on a live kernel,
/proc/net/dev and /sys/class/net on a captured tree, and /proc/net/{softnet_stat,
snmp,netstat,snmp6,sockstat} (KNOWLEDGE.md §2.1-2.5, §2.13).

Counters come as `<name>_total` (since boot or since the object was created) and
`<name>_per_s` (over the window; None with a single sample). Gauges carry no suffix
beyond their unit.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

from .base import Fact

#: RFC 2863 operational states as the kernel names them in /sys/class/net/IF/operstate
OperState = Literal["unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up"]


class NetLink(Fact):
    """One network interface in the probed network namespace."""

    kind: Literal["net_link"] = "net_link"
    key_fields: ClassVar[tuple[str, ...]] = ("ifname",)
    description: ClassVar[str] = ("one network interface: type, state, MTU, queueing, "
                                  "and its packet/error/drop counters (ip -s -s link)")

    ifname: str
    ifindex: Optional[int] = None
    #: IFLA_INFO_KIND (veth, bridge, vlan, vxlan, bond, macvlan, ipvlan, dummy, tun, ifb ...),
    #: else "loopback", "physical" (backed by a device), or "unknown"
    link_kind: str = "unknown"
    operstate: Optional[OperState] = None
    carrier: Optional[bool] = None
    admin_up: Optional[bool] = None  # IFF_UP
    mtu: Optional[int] = None
    tx_queue_len: Optional[int] = None
    qdisc: Optional[str] = None  # the root qdisc's kind ("noqueue", "pfifo_fast", "tbf" ...)
    master: Optional[str] = None  # the bridge or bond this interface is enslaved to
    master_ifindex: Optional[int] = None
    #: IFLA_LINK: the parent (vlan, macvlan, ipvlan) or the veth peer's ifindex; the peer may
    #: sit in another namespace (then `peer_netnsid` is set and the index is in *that* netns)
    link_ifindex: Optional[int] = None
    link_ifname: Optional[str] = None  # resolved when the link is in this namespace
    peer_netnsid: Optional[int] = None  # IFLA_LINK_NETNSID
    speed_mbps: Optional[int] = None  # /sys/class/net/IF/speed; None when -1/unknown
    duplex: Optional[Literal["full", "half"]] = None

    rx_bytes_total: Optional[int] = None
    rx_bytes_per_s: Optional[float] = None
    tx_bytes_total: Optional[int] = None
    tx_bytes_per_s: Optional[float] = None
    rx_packets_total: Optional[int] = None
    rx_packets_per_s: Optional[float] = None
    tx_packets_total: Optional[int] = None
    tx_packets_per_s: Optional[float] = None
    #: rx/tx bits per second as a share of speed_mbps
    rx_util_pct: Optional[float] = None
    tx_util_pct: Optional[float] = None
    rx_errors_total: Optional[int] = None
    rx_errors_per_s: Optional[float] = None
    #: discarded by stack/driver, excluding rx_missed_errors (KNOWLEDGE §2.4)
    rx_dropped_total: Optional[int] = None
    rx_dropped_per_s: Optional[float] = None
    #: the device had no RX buffer ready (ring full)
    rx_missed_errors_total: Optional[int] = None
    rx_missed_errors_per_s: Optional[float] = None
    rx_fifo_errors_total: Optional[int] = None
    rx_fifo_errors_per_s: Optional[float] = None
    rx_over_errors_total: Optional[int] = None
    rx_over_errors_per_s: Optional[float] = None
    rx_crc_errors_total: Optional[int] = None
    rx_crc_errors_per_s: Optional[float] = None
    rx_frame_errors_total: Optional[int] = None
    rx_frame_errors_per_s: Optional[float] = None
    rx_length_errors_total: Optional[int] = None
    rx_length_errors_per_s: Optional[float] = None
    #: nobody to deliver to (e.g. an inactive bond slave)
    rx_nohandler_total: Optional[int] = None
    rx_nohandler_per_s: Optional[float] = None
    tx_errors_total: Optional[int] = None
    tx_errors_per_s: Optional[float] = None
    tx_dropped_total: Optional[int] = None
    tx_dropped_per_s: Optional[float] = None
    tx_carrier_errors_total: Optional[int] = None
    tx_carrier_errors_per_s: Optional[float] = None
    collisions_total: Optional[int] = None
    collisions_per_s: Optional[float] = None
    carrier_changes_total: Optional[int] = None
    carrier_changes_per_s: Optional[float] = None


class Qdisc(Fact):
    """One queueing discipline (tc -s -d qdisc show)."""

    kind: Literal["qdisc"] = "qdisc"
    key_fields: ClassVar[tuple[str, ...]] = ("ifname", "handle", "parent")
    description: ClassVar[str] = ("one qdisc: kind, place in the tree, sent/dropped/overlimits/"
                                  "requeues, backlog and its main parameters (tc -s -d qdisc)")

    ifname: str
    ifindex: Optional[int] = None
    qdisc_kind: str  # TCA_KIND: tbf, htb, fq_codel, pfifo_fast, mq, noqueue, ingress, clsact ...
    handle: str  # tc notation: "8001:", "0:"
    parent: str  # "root", "ingress" (ffff:fff1), or "1:10"
    root: bool  # attached at the device's egress root
    sent_bytes_total: Optional[int] = None
    sent_bytes_per_s: Optional[float] = None
    sent_packets_total: Optional[int] = None
    sent_packets_per_s: Optional[float] = None
    dropped_total: Optional[int] = None
    dropped_per_s: Optional[float] = None
    overlimits_total: Optional[int] = None
    overlimits_per_s: Optional[float] = None
    requeues_total: Optional[int] = None
    requeues_per_s: Optional[float] = None
    backlog_bytes: Optional[int] = None  # gauge, at the end of the window
    backlog_packets: Optional[int] = None  # gauge (gnet_stats_queue.qlen)
    # parameters (None where the kind has no such parameter)
    rate_bps: Optional[int] = None  # tbf: bits per second
    burst_bytes: Optional[int] = None  # tbf bucket size
    limit_bytes: Optional[int] = None  # tbf, bfifo
    limit_packets: Optional[int] = None  # pfifo, fq_codel, codel, sfq ...
    target_us: Optional[int] = None  # fq_codel, codel
    interval_us: Optional[int] = None  # fq_codel, codel
    #: htb: the minor id of the default class; 0 = unclassified traffic bypasses shaping
    #: through the direct queue
    default_class_minor: Optional[int] = None
    default_class: Optional[str] = None  # the same in tc notation ("1:10"); None for 0
    direct_packets_total: Optional[int] = None  # htb direct_packets_stat
    direct_packets_per_s: Optional[float] = None
    #: tbf: sent bits per second as a share of rate_bps
    rate_used_pct: Optional[float] = None


class TcClass(Fact):
    """One HTB class (tc -s -d class show)."""

    kind: Literal["tc_class"] = "tc_class"
    key_fields: ClassVar[tuple[str, ...]] = ("ifname", "classid")
    description: ClassVar[str] = ("one HTB class: rate/ceil, what it sent, lent and borrowed, "
                                  "drops and token levels (tc -s -d class)")

    ifname: str
    ifindex: Optional[int] = None
    class_kind: str  # "htb"
    classid: str  # "1:10"
    parent: str  # "root" or "1:1"
    level: Optional[int] = None  # 0 = leaf
    prio: Optional[int] = None
    rate_bps: Optional[int] = None  # guaranteed rate, bits per second
    ceil_bps: Optional[int] = None  # maximum rate with borrowing
    sent_bytes_total: Optional[int] = None
    sent_bytes_per_s: Optional[float] = None
    sent_packets_total: Optional[int] = None
    sent_packets_per_s: Optional[float] = None
    rate_used_pct: Optional[float] = None  # sent bits/s as a share of rate_bps
    ceil_used_pct: Optional[float] = None  # sent bits/s as a share of ceil_bps
    #: sent within its own rate / on an ancestor's spare tokens
    lended_total: Optional[int] = None
    lended_per_s: Optional[float] = None
    borrowed_total: Optional[int] = None
    borrowed_per_s: Optional[float] = None
    giants_total: Optional[int] = None
    #: bucket levels at the end of the window as transmit time at rate / ceil
    #: (tc prints them in scheduler ticks); negative = over rate / ceil
    tokens_us: Optional[int] = None
    ctokens_us: Optional[int] = None
    dropped_total: Optional[int] = None
    dropped_per_s: Optional[float] = None
    overlimits_total: Optional[int] = None
    overlimits_per_s: Optional[float] = None
    backlog_bytes: Optional[int] = None
    backlog_packets: Optional[int] = None


class SoftnetCpu(Fact):
    """One CPU's line of /proc/net/softnet_stat (NAPI and input backlog accounting)."""

    kind: Literal["softnet"] = "softnet"
    key_fields: ClassVar[tuple[str, ...]] = ("cpu",)
    description: ClassVar[str] = ("one CPU's packet processing: processed, backlog drops, "
                                  "NAPI budget squeezes, RPS (/proc/net/softnet_stat)")

    cpu: int  # column 13 when the kernel prints it, else the line number
    processed_total: int
    processed_per_s: Optional[float] = None
    #: input backlog over net.core.netdev_max_backlog
    dropped_total: int
    dropped_per_s: Optional[float] = None
    #: net_rx_action ran out of netdev_budget / netdev_budget_usecs with work left
    time_squeeze_total: int
    time_squeeze_per_s: Optional[float] = None
    received_rps_total: Optional[int] = None
    received_rps_per_s: Optional[float] = None
    flow_limit_count_total: Optional[int] = None
    flow_limit_count_per_s: Optional[float] = None
    backlog_len: Optional[int] = None  # gauge (column 12)
    #: net.core sysctls the columns are measured against (global, repeated on every CPU)
    netdev_max_backlog: Optional[int] = None  # packets per CPU input backlog
    netdev_budget: Optional[int] = None  # packets per net_rx_action run
    netdev_budget_usecs: Optional[int] = None


class DropCounters(Fact):
    """How many instances of one kind of drop counter rose over the window. The rule
    engine cannot count (or test absence), so "no drop anywhere on this host" needs a
    summary: the links, qdiscs and softnet probes each emit one next to their per-instance
    facts, only when they sampled twice."""

    kind: Literal["drop_counters"] = "drop_counters"
    key_fields: ClassVar[tuple[str, ...]] = ("counters",)
    description: ClassVar[str] = ("per kind of drop counter (links, qdiscs, softnet): how many "
                                  "were read over the window and how many rose")

    counters: Literal["links", "qdiscs", "softnet"]
    instances: int  # read at both ends of the window (the --iface ones for links/qdiscs)
    rising: int  # instances whose drop counters rose
    rising_names: Optional[str] = None  # the first few, "dev eth0, dev eth1"
    dropped_per_s: float = 0.0  # summed over the instances


class NetCounters(Fact):
    """Protocol counters of the namespace (/proc/net/snmp, netstat, snmp6), as nstat shows them.

    Field stems are the nstat names in snake case: `TcpExtListenOverflows` ->
    `tcpext_listen_overflows` (the redundant "TCP" inside TcpExt names is dropped:
    `TcpExtTCPTimeouts` -> `tcpext_timeouts`).
    """

    kind: Literal["net_counters"] = "net_counters"
    description: ClassVar[str] = ("TCP/UDP/IP protocol counters: opens, resets, retransmits, "
                                  "listen overflows, buffer errors, reassembly, routing")

    # Tcp (/proc/net/snmp)
    tcp_active_opens_total: Optional[int] = None
    tcp_active_opens_per_s: Optional[float] = None
    tcp_passive_opens_total: Optional[int] = None
    tcp_passive_opens_per_s: Optional[float] = None
    tcp_attempt_fails_total: Optional[int] = None
    tcp_attempt_fails_per_s: Optional[float] = None
    tcp_estab_resets_total: Optional[int] = None
    tcp_estab_resets_per_s: Optional[float] = None
    tcp_curr_estab: Optional[int] = None  # gauge
    tcp_in_segs_total: Optional[int] = None
    tcp_in_segs_per_s: Optional[float] = None
    tcp_out_segs_total: Optional[int] = None
    tcp_out_segs_per_s: Optional[float] = None
    tcp_retrans_segs_total: Optional[int] = None
    tcp_retrans_segs_per_s: Optional[float] = None
    tcp_in_errs_total: Optional[int] = None
    tcp_in_errs_per_s: Optional[float] = None
    tcp_out_rsts_total: Optional[int] = None
    tcp_out_rsts_per_s: Optional[float] = None
    #: ΔRetransSegs / ΔOutSegs over the window (since boot when only one sample exists:
    #: see retrans_pct_since_boot)
    retrans_pct: Optional[float] = None
    retrans_pct_since_boot: Optional[float] = None
    # Udp
    udp_in_datagrams_total: Optional[int] = None
    udp_in_datagrams_per_s: Optional[float] = None
    udp_no_ports_total: Optional[int] = None
    udp_no_ports_per_s: Optional[float] = None
    udp_in_errors_total: Optional[int] = None
    udp_in_errors_per_s: Optional[float] = None
    udp_rcvbuf_errors_total: Optional[int] = None
    udp_rcvbuf_errors_per_s: Optional[float] = None
    udp_sndbuf_errors_total: Optional[int] = None
    udp_sndbuf_errors_per_s: Optional[float] = None
    udp_mem_errors_total: Optional[int] = None
    udp_mem_errors_per_s: Optional[float] = None
    # Ip
    ip_reasm_fails_total: Optional[int] = None
    ip_reasm_fails_per_s: Optional[float] = None
    ip_reasm_timeout_total: Optional[int] = None
    ip_reasm_timeout_per_s: Optional[float] = None
    ip_reasm_reqds_total: Optional[int] = None
    ip_reasm_reqds_per_s: Optional[float] = None
    ip_frag_fails_total: Optional[int] = None
    ip_frag_fails_per_s: Optional[float] = None
    ip_out_no_routes_total: Optional[int] = None
    ip_out_no_routes_per_s: Optional[float] = None
    ip_in_discards_total: Optional[int] = None
    ip_in_discards_per_s: Optional[float] = None
    # TcpExt (/proc/net/netstat)
    tcpext_listen_overflows_total: Optional[int] = None
    tcpext_listen_overflows_per_s: Optional[float] = None
    tcpext_listen_drops_total: Optional[int] = None  # includes ListenOverflows
    tcpext_listen_drops_per_s: Optional[float] = None
    tcpext_req_q_full_drop_total: Optional[int] = None
    tcpext_req_q_full_drop_per_s: Optional[float] = None
    tcpext_req_q_full_do_cookies_total: Optional[int] = None
    tcpext_req_q_full_do_cookies_per_s: Optional[float] = None
    tcpext_syncookies_failed_total: Optional[int] = None
    tcpext_syncookies_failed_per_s: Optional[float] = None
    tcpext_timeouts_total: Optional[int] = None
    tcpext_timeouts_per_s: Optional[float] = None
    tcpext_loss_probes_total: Optional[int] = None
    tcpext_loss_probes_per_s: Optional[float] = None
    tcpext_abort_on_memory_total: Optional[int] = None
    tcpext_abort_on_memory_per_s: Optional[float] = None
    tcpext_memory_pressures_total: Optional[int] = None
    tcpext_memory_pressures_per_s: Optional[float] = None
    tcpext_prune_called_total: Optional[int] = None
    tcpext_prune_called_per_s: Optional[float] = None
    tcpext_rcv_pruned_total: Optional[int] = None
    tcpext_rcv_pruned_per_s: Optional[float] = None
    tcpext_rcv_q_drop_total: Optional[int] = None
    tcpext_rcv_q_drop_per_s: Optional[float] = None
    tcpext_backlog_drop_total: Optional[int] = None
    tcpext_backlog_drop_per_s: Optional[float] = None
    tcpext_ip_reverse_path_filter_total: Optional[int] = None
    tcpext_ip_reverse_path_filter_per_s: Optional[float] = None
    tcpext_time_wait_overflow_total: Optional[int] = None
    tcpext_time_wait_overflow_per_s: Optional[float] = None
    tcpext_to_zero_window_adv_total: Optional[int] = None
    tcpext_to_zero_window_adv_per_s: Optional[float] = None
    tcpext_delayed_acks_total: Optional[int] = None
    tcpext_delayed_acks_per_s: Optional[float] = None
    tcpext_mtup_fail_total: Optional[int] = None
    tcpext_mtup_fail_per_s: Optional[float] = None
    # IpExt
    ipext_in_no_routes_total: Optional[int] = None
    ipext_in_no_routes_per_s: Optional[float] = None
    # IPv6 (/proc/net/snmp6, absent when IPv6 is disabled)
    ip6_in_no_routes_total: Optional[int] = None
    ip6_in_no_routes_per_s: Optional[float] = None
    ip6_out_no_routes_total: Optional[int] = None
    ip6_out_no_routes_per_s: Optional[float] = None
    ip6_in_discards_total: Optional[int] = None
    ip6_in_discards_per_s: Optional[float] = None
    ip6_reasm_fails_total: Optional[int] = None
    ip6_reasm_fails_per_s: Optional[float] = None
    ip6_reasm_timeout_total: Optional[int] = None
    ip6_reasm_timeout_per_s: Optional[float] = None
    ip6_frag_fails_total: Optional[int] = None
    ip6_frag_fails_per_s: Optional[float] = None
    udp6_no_ports_total: Optional[int] = None
    udp6_no_ports_per_s: Optional[float] = None
    udp6_in_errors_total: Optional[int] = None
    udp6_in_errors_per_s: Optional[float] = None
    udp6_rcvbuf_errors_total: Optional[int] = None
    udp6_rcvbuf_errors_per_s: Optional[float] = None
    udp6_sndbuf_errors_total: Optional[int] = None
    udp6_sndbuf_errors_per_s: Optional[float] = None
    udp6_mem_errors_total: Optional[int] = None
    udp6_mem_errors_per_s: Optional[float] = None


class SockStat(Fact):
    """Socket counts and socket memory (/proc/net/sockstat) with the TCP memory thresholds."""

    kind: Literal["sockstat"] = "sockstat"
    description: ClassVar[str] = ("socket counts and memory (/proc/net/sockstat) against "
                                  "net.ipv4.tcp_mem / ipfrag_high_thresh")

    sockets_used: Optional[int] = None
    tcp_inuse: Optional[int] = None
    tcp_orphan: Optional[int] = None
    tcp_tw: Optional[int] = None
    tcp_alloc: Optional[int] = None
    tcp_mem_pages: Optional[int] = None
    udp_inuse: Optional[int] = None
    udp_mem_pages: Optional[int] = None
    frag_inuse: Optional[int] = None
    frag_memory_bytes: Optional[int] = None
    #: net.ipv4.tcp_mem: below min no pressure; above pressure the stack moderates buffers;
    #: at max new allocations fail (pages)
    tcp_mem_min_pages: Optional[int] = None
    tcp_mem_pressure_pages: Optional[int] = None
    tcp_mem_max_pages: Optional[int] = None
    tcp_mem_pct_of_max: Optional[float] = None
    #: net.ipv4.udp_mem (pages)
    udp_mem_pressure_pages: Optional[int] = None
    udp_mem_max_pages: Optional[int] = None
    #: net.ipv4.ipfrag_high_thresh: fragments are dropped above this
    frag_high_thresh_bytes: Optional[int] = None
