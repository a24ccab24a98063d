"""Network-stack facts: sockets, connection tracking, neighbours, routes, tunables, netfilter.

Sources (KNOWLEDGE.md §2.2, §2.6, §2.13, §5.F, §5.G): NETLINK_SOCK_DIAG (inet_diag) or
/proc/net/{tcp,tcp6,udp,udp6}; /proc/sys/net/netfilter and /proc/net/stat/nf_conntrack;
RTM_GETNEIGH / RTM_GETNEIGHTBL or /proc/net/arp and /proc/net/stat/{arp,ndisc}_cache;
RTM_GETROUTE or /proc/net/route and /proc/net/ipv6_route; /proc/sys; /proc/modules,
/proc/net/*_tables_names and nftables netlink.

Counters come as `<name>_total` and `<name>_per_s` (None with a single sample); gauges
carry no suffix beyond their unit. Per-object facts (listeners, UDP sockets, neighbour
entries, netfilter rules) are capped: each probe emits only the interesting ones and
says so in its summary fact.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

from .base import Fact

Family = Literal["ipv4", "ipv6"]


class TcpListener(Fact):
    """One listening TCP socket: its accept queue against its backlog (ss -ltn)."""

    kind: Literal["tcp_listener"] = "tcp_listener"
    key_fields: ClassVar[tuple[str, ...]] = ("local_addr", "local_port", "inode")
    description: ClassVar[str] = ("one listening TCP socket: connections waiting for accept() "
                                  "(Recv-Q) against its backlog (Send-Q), SYN_RECV requests, "
                                  "owner")

    family: Family
    local_addr: str
    local_port: int
    #: completed connections waiting for accept() (ss Recv-Q, sk_ack_backlog)
    accept_queue: int
    #: the accept queue's limit: min(listen() backlog, net.core.somaxconn) (ss Send-Q).
    #: None from /proc/net/tcp, which does not print it
    backlog: Optional[int] = None
    #: accept_queue / backlog; at 100 the next completed handshake is dropped (ListenOverflows)
    queue_pct: Optional[float] = None
    #: request sockets in SYN_RECV for this listener's port (the SYN queue)
    syn_recv: Optional[int] = None
    inode: int
    uid: Optional[int] = None
    #: the process holding the socket, when found within the bounded /proc/*/fd scan
    pid: Optional[int] = None
    comm: Optional[str] = None


class UdpSocket(Fact):
    """One UDP socket that has dropped datagrams (full receive buffer)."""

    kind: Literal["udp_socket"] = "udp_socket"
    key_fields: ClassVar[tuple[str, ...]] = ("local_addr", "local_port", "inode")
    description: ClassVar[str] = ("one UDP socket with receive drops: datagrams lost to a "
                                  "full receive buffer (/proc/net/udp drops)")

    family: Family
    local_addr: str
    local_port: int
    remote_addr: Optional[str] = None  # connected sockets only
    remote_port: Optional[int] = None
    rx_queue_bytes: Optional[int] = None  # gauge: unread bytes
    #: datagrams dropped on this socket since it was created (sk_drops)
    drops_total: int
    drops_per_s: Optional[float] = None
    inode: int
    uid: Optional[int] = None
    pid: Optional[int] = None
    comm: Optional[str] = None


class SocketSummary(Fact):
    """Every TCP and UDP socket of the namespace, aggregated (ss -s, ss -tan, ss -uan)."""

    kind: Literal["socket_summary"] = "socket_summary"
    description: ClassVar[str] = ("TCP sockets by state, ephemeral-port use per destination, "
                                  "CLOSE_WAIT holders, retransmitting and zero-window sockets, "
                                  "UDP drops")

    #: "sock_diag" (netlink, with tcp_info) or "procfs" (/proc/net/tcp*, fewer details)
    method: Literal["sock_diag", "procfs"]
    tcp_total: int
    tcp_established: int = 0
    tcp_syn_sent: int = 0
    tcp_syn_recv: int = 0
    tcp_fin_wait1: int = 0
    tcp_fin_wait2: int = 0
    tcp_time_wait: int = 0
    tcp_close: int = 0
    tcp_close_wait: int = 0
    tcp_last_ack: int = 0
    tcp_listen: int = 0
    tcp_closing: int = 0
    #: listeners whose accept queue is at its backlog now
    listeners_full: Optional[int] = None
    #: how many TcpListener facts were left out (only the fullest are reported)
    listeners_omitted: int = 0
    #: the most sockets holding an ephemeral local port towards one (source address,
    #: destination address, destination port): the unit ip_local_port_range limits
    max_per_destination: Optional[int] = None
    max_destination: Optional[str] = None  # "SRC -> DST:PORT"
    port_range_size: Optional[int] = None  # net.ipv4.ip_local_port_range high - low + 1
    #: max_per_destination as a share of port_range_size
    port_range_used_pct: Optional[float] = None
    #: the process holding the most CLOSE_WAIT sockets (its peer closed, it did not)
    close_wait_top_pid: Optional[int] = None
    close_wait_top_comm: Optional[str] = None
    close_wait_top_count: Optional[int] = None
    #: sockets with retransmitted segments outstanding now (tcpi_retrans > 0; from
    #: /proc/net/tcp: an RTO fired and its retransmit is unacknowledged)
    tcp_retrans_sockets: Optional[int] = None
    #: retransmitted segments over the lifetime of the sockets open now (tcpi_total_retrans)
    tcp_retrans_segs_open: Optional[int] = None
    #: the peer address with the most retransmissions (tcpi_total_retrans summed)
    tcp_retrans_top_peer: Optional[str] = None
    tcp_retrans_top_peer_segs: Optional[int] = None
    #: distinct peer addresses of the TCP sockets open now (listeners excluded): whether
    #: retransmits to one peer are concentrated there or that peer is the only one
    tcp_peers: Optional[int] = None
    #: sockets whose retransmission timer fired more than once in a row (RTO backoff)
    tcp_backoff_sockets: Optional[int] = None
    #: sockets probing a zero window (persist timer: the peer advertises no room)
    tcp_persist_sockets: Optional[int] = None
    #: established sockets whose peer's advertised window is 0 now (tcpi_snd_wnd, 5.4+)
    tcp_snd_wnd_zero: Optional[int] = None
    udp_total: int = 0
    udp_with_drops: int = 0
    #: sum of per-socket drops of the UDP sockets open now
    udp_drops_open: int = 0
    #: drops per second over the window, on the sockets present at both ends
    udp_drops_per_s: Optional[float] = None
    udp_sockets_omitted: int = 0  # UdpSocket facts left out (only the worst are reported)


class Conntrack(Fact):
    """The connection tracking table of the namespace: fill level and per-CPU statistics."""

    kind: Literal["conntrack"] = "conntrack"
    description: ClassVar[str] = ("connection tracking: entries vs nf_conntrack_max, buckets, "
                                  "and drops, early drops, insert failures, invalid packets")

    count: Optional[int] = None  # nf_conntrack_count (gauge, per namespace)
    max: Optional[int] = None  # nf_conntrack_max
    pct: Optional[float] = None  # count / max
    buckets: Optional[int] = None  # nf_conntrack_buckets (hash size)
    #: max / buckets: keep at most ~4 so hash chains stay short
    max_per_bucket: Optional[float] = None
    #: `entries` column of /proc/net/stat/nf_conntrack (a global gauge, not summed)
    stat_entries: Optional[int] = None
    # summed over CPUs from /proc/net/stat/nf_conntrack
    #: packet discarded because no entry could be created (table full)
    drop_total: Optional[int] = None
    drop_per_s: Optional[float] = None
    #: unreplied entry evicted to make room (table at its limit)
    early_drop_total: Optional[int] = None
    early_drop_per_s: Optional[float] = None
    #: lost a race inserting an identical tuple (parallel UDP through NAT)
    insert_failed_total: Optional[int] = None
    insert_failed_per_s: Optional[float] = None
    #: untrackable packet (dropped only when a rule says so)
    invalid_total: Optional[int] = None
    invalid_per_s: Optional[float] = None
    #: insert races that were resolved (column `clashres`)
    clash_resolve_total: Optional[int] = None
    clash_resolve_per_s: Optional[float] = None
    search_restart_total: Optional[int] = None
    search_restart_per_s: Optional[float] = None
    found_total: Optional[int] = None
    found_per_s: Optional[float] = None
    #: over-long hash chains (too few buckets, or hash flooding)
    chainlength_total: Optional[int] = None
    chainlength_per_s: Optional[float] = None
    insert_total: Optional[int] = None
    insert_per_s: Optional[float] = None
    icmp_error_total: Optional[int] = None
    icmp_error_per_s: Optional[float] = None


class NeighTable(Fact):
    """One neighbour table (ARP for IPv4, ND for IPv6): entries by state against gc_thresh."""

    kind: Literal["neigh_table"] = "neigh_table"
    key_fields: ClassVar[tuple[str, ...]] = ("family",)
    description: ClassVar[str] = ("ARP/ND table: entries by state vs gc_thresh1/2/3, table "
                                  "overflows and failed resolutions (ip -s ntable, ip neigh)")

    family: Family
    table: str  # "arp_cache", "ndisc_cache"
    #: entries of this namespace (all interfaces), by state; None where they could not be
    #: listed (a captured tree has /proc/net/arp for IPv4 only). From /proc/net/arp the
    #: states cannot be told apart: unresolved entries (INCOMPLETE or FAILED) count as
    #: incomplete, resolved ones only in `entries`
    entries: Optional[int] = None
    reachable: Optional[int] = None
    stale: Optional[int] = None
    delay: Optional[int] = None
    probe: Optional[int] = None
    incomplete: Optional[int] = None
    failed: Optional[int] = None
    noarp: Optional[int] = None
    permanent: Optional[int] = None
    #: the kernel's own entry count, all namespaces together (the table and gc_thresh*
    #: are global): NDTA_CONFIG or the `entries` column of /proc/net/stat/*_cache
    kernel_entries: Optional[int] = None
    gc_thresh1: Optional[int] = None  # below this the GC leaves entries alone
    gc_thresh2: Optional[int] = None  # soft limit (GC after 5 s above it)
    gc_thresh3: Optional[int] = None  # hard limit: "neighbor table overflow"
    #: entries (kernel count when known) as a share of gc_thresh3
    thresh3_pct: Optional[float] = None
    #: a new entry was needed and the table was full even after forced GC
    table_fulls_total: Optional[int] = None
    table_fulls_per_s: Optional[float] = None
    #: resolutions that failed (no reply to ARP/ND solicitations)
    res_failed_total: Optional[int] = None
    res_failed_per_s: Optional[float] = None
    forced_gc_runs_total: Optional[int] = None
    forced_gc_runs_per_s: Optional[float] = None
    #: packets dropped while waiting for resolution (unres_qlen exceeded)
    unresolved_discards_total: Optional[int] = None
    unresolved_discards_per_s: Optional[float] = None
    #: NeighEntry facts left out over the cap
    entries_omitted: int = 0


class NeighEntry(Fact):
    """One neighbour entry that failed or is still unresolved (ip neigh: INCOMPLETE/FAILED)."""

    kind: Literal["neigh_entry"] = "neigh_entry"
    key_fields: ClassVar[tuple[str, ...]] = ("ifname", "address")
    description: ClassVar[str] = ("one neighbour (ARP/ND) entry in INCOMPLETE or FAILED state: "
                                  "an on-link address that does not answer")

    family: Family
    address: str
    ifname: str
    ifindex: Optional[int] = None
    #: "incomplete" from /proc/net/arp covers FAILED too (it cannot tell them apart)
    state: Literal["incomplete", "failed"]
    #: the entry is the gateway of a default route
    is_default_gateway: Optional[bool] = None
    #: seconds since a packet was last sent to this neighbour (netlink NDA_CACHEINFO used;
    #: `ip -s neigh` "used U/C/P"); large on an old failure nothing sends to any more
    used_age_s: Optional[float] = None
    #: seconds since the entry last changed state (NDA_CACHEINFO updated)
    updated_age_s: Optional[float] = None


class Routes(Fact):
    """The main routing table: default routes and their gateways (ip route)."""

    kind: Literal["routes"] = "routes"
    description: ClassVar[str] = ("main routing table: default route per family, its gateway "
                                  "and device, route counts, unreachable/blackhole routes")

    has_default_v4: bool
    has_default_v6: Optional[bool] = None  # None: IPv6 not present
    default_gateway_v4: Optional[str] = None
    default_dev_v4: Optional[str] = None
    #: the kernel marks the default route's nexthop link as down (no carrier)
    default_linkdown_v4: Optional[bool] = None
    default_gateway_v6: Optional[str] = None
    default_dev_v6: Optional[str] = None
    default_linkdown_v6: Optional[bool] = None
    #: number of default routes (several: ECMP or metrics)
    defaults_v4: int = 0
    defaults_v6: int = 0
    routes_v4: int
    routes_v6: Optional[int] = None
    #: routes of type unreachable/blackhole/prohibit (traffic to them fails locally)
    reject_routes: int = 0


class NetSysctl(Fact):
    """The kernel tunables the rules compare against (read from /proc/sys, never `sysctl`).

    Network values are those of the probed namespace; several (netdev_*,
    rps_sock_flow_entries, default_qdisc; rmem_max and wmem_max before 6.x) exist only in
    the initial namespace and are None elsewhere. None always means the file was not
    there (feature absent or module not loaded), never 0."""

    kind: Literal["sysctl"] = "sysctl"
    description: ClassVar[str] = ("kernel tunables: net.core, net.ipv4 (TCP, ports, rp_filter), "
                                  "kernel (pids, hung tasks, taint), vm (overcommit, dirty), fs")

    # net.core
    somaxconn: Optional[int] = None
    netdev_max_backlog: Optional[int] = None
    netdev_budget: Optional[int] = None
    netdev_budget_usecs: Optional[int] = None
    rmem_max_bytes: Optional[int] = None
    wmem_max_bytes: Optional[int] = None
    rps_sock_flow_entries: Optional[int] = None
    default_qdisc: Optional[str] = None
    # net.ipv4
    tcp_syncookies: Optional[int] = None
    tcp_max_syn_backlog: Optional[int] = None
    ip_local_port_range_low: Optional[int] = None
    ip_local_port_range_high: Optional[int] = None
    ip_local_port_range_size: Optional[int] = None
    tcp_tw_reuse: Optional[int] = None
    tcp_rmem_max_bytes: Optional[int] = None  # tcp_rmem[2]
    tcp_wmem_max_bytes: Optional[int] = None  # tcp_wmem[2]
    tcp_window_scaling: Optional[int] = None
    tcp_abort_on_overflow: Optional[int] = None
    ipfrag_high_thresh_bytes: Optional[int] = None
    tcp_mtu_probing: Optional[int] = None
    rp_filter_all: Optional[int] = None  # net.ipv4.conf.all.rp_filter
    # net.bridge (only with br_netfilter)
    bridge_nf_call_iptables: Optional[int] = None
    # kernel
    pid_max: Optional[int] = None
    threads_max: Optional[int] = None
    printk_console_level: Optional[int] = None  # kernel.printk[0]
    hung_task_timeout_s: Optional[int] = None
    hung_task_warnings: Optional[int] = None
    hung_task_detect_count: Optional[int] = None
    sched_rt_runtime_us: Optional[int] = None  # -1: RT tasks may take all CPU time
    tainted: Optional[int] = None  # bit mask; 0 = not tainted
    # vm
    overcommit_memory: Optional[int] = None
    overcommit_ratio: Optional[int] = None
    max_map_count: Optional[int] = None
    swappiness: Optional[int] = None
    dirty_ratio: Optional[int] = None
    dirty_background_ratio: Optional[int] = None
    dirty_bytes: Optional[int] = None
    dirty_background_bytes: Optional[int] = None
    zone_reclaim_mode: Optional[int] = None
    min_free_kbytes: Optional[int] = None
    watermark_scale_factor: Optional[int] = None
    # fs
    file_max: Optional[int] = None
    nr_open: Optional[int] = None
    inotify_max_user_instances: Optional[int] = None
    inotify_max_user_watches: Optional[int] = None


class IfaceSysctl(Fact):
    """Per-interface IPv4 settings that decide whether packets are filtered or answered."""

    kind: Literal["iface_sysctl"] = "iface_sysctl"
    key_fields: ClassVar[tuple[str, ...]] = ("ifname",)
    description: ClassVar[str] = ("per-interface reverse-path filter, martian logging and ARP "
                                  "reply settings, and their effective values with conf.all")

    ifname: str
    rp_filter: Optional[int] = None  # 0 off, 1 strict, 2 loose
    #: what the kernel applies: max(conf.all.rp_filter, conf.IF.rp_filter)
    rp_filter_effective: Optional[int] = None
    log_martians: Optional[int] = None
    log_martians_effective: Optional[int] = None  # conf.all OR conf.IF
    arp_ignore: Optional[int] = None
    arp_ignore_effective: Optional[int] = None  # max(all, IF)
    arp_filter: Optional[int] = None
    arp_filter_effective: Optional[int] = None  # all OR IF


class Netfilter(Fact):
    """Which netfilter backends hold rules, and how big the ruleset is."""

    kind: Literal["netfilter"] = "netfilter"
    description: ClassVar[str] = ("netfilter backends present (nf_tables, iptables-legacy), "
                                  "table names, rule counts and drop/reject rules")

    #: kernel modules can be loaded on this host (False: everything is built in or absent)
    modules_supported: Optional[bool] = None
    nf_tables: Optional[bool] = None  # nf_tables loaded or built in
    ip_tables: Optional[bool] = None  # iptables-legacy IPv4 (ip_tables) loaded or built in
    ip6_tables: Optional[bool] = None
    conntrack: Optional[bool] = None  # nf_conntrack loaded or built in
    br_netfilter: Optional[bool] = None
    #: iptables-legacy tables in use ("filter,nat"), from /proc/net/ip{,6}_tables_names
    legacy_tables_v4: Optional[str] = None
    legacy_tables_v6: Optional[str] = None
    nft_tables: Optional[int] = None
    nft_chains: Optional[int] = None
    nft_rules: Optional[int] = None
    #: nftables rules whose verdict is drop or reject
    nft_drop_rules: Optional[int] = None
    #: base chains whose policy is drop
    nft_drop_policies: Optional[int] = None
    #: iptables-legacy rules (chain policies not counted), read like iptables-save -c
    legacy_rules: Optional[int] = None
    legacy_drop_rules: Optional[int] = None
    legacy_drop_policies: Optional[int] = None
    #: rules in both nftables and iptables-legacy: the rule you inspect may not be the one
    #: that enforces (nf-rule-drop)
    both_backends_in_use: Optional[bool] = None
    #: per-rule counters could be read (the rules themselves, with their counters)
    rule_counters_available: bool
    #: why not, in words a user can act on
    rule_counters_reason: Optional[str] = None
    #: NetfilterRule facts left out over the cap
    rules_omitted: int = 0


class NetfilterRule(Fact):
    """One rule (or chain policy) that drops or rejects packets, with its counter
    (nft list ruleset, iptables-save -c)."""

    kind: Literal["netfilter_rule"] = "netfilter_rule"
    key_fields: ClassVar[tuple[str, ...]] = ("backend", "family", "table", "chain", "handle")
    description: ClassVar[str] = ("one netfilter rule or chain policy with a drop/reject verdict "
                                  "and its packet counter (nftables, iptables-legacy)")

    backend: Literal["nftables", "iptables-legacy"]
    family: str  # nftables family (ip, ip6, inet, arp, bridge, netdev); legacy: ip, ip6
    table: str
    chain: str
    #: nftables: the rule handle; iptables-legacy: the rule number in its chain (as
    #: `iptables -L --line-numbers`), 0 for the chain's policy
    handle: int
    verdict: Literal["drop", "reject"]
    #: the chain's policy (iptables-legacy built-in chains), not a rule
    policy: bool = False
    #: None when the rule has no counter expression
    packets_total: Optional[int] = None
    packets_per_s: Optional[float] = None
    bytes_total: Optional[int] = None
    bytes_per_s: Optional[float] = None
    #: the rule matches on conntrack state invalid (ct state invalid drop)
    matches_ct_invalid: Optional[bool] = None
