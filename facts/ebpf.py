"""Facts from bcc tracing programs (KNOWLEDGE.md §6): what counters cannot show —
where a packet was dropped and why, who waited for a CPU or in D state and on what,
which flow retransmits, which device is slow, which process faults.

Every one covers the tracing window only (`window_s`): no "since boot" totals.
Histograms are log2 buckets in microseconds: `hist_log2_us[i]` counts samples in
[2^(i-1), 2^i) µs (bucket 0: under 1 µs); percentiles are bucket upper bounds, so
they are accurate to a factor of two; averages are exact.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

from .base import Fact


class RunqLatency(Fact):
    """Run-queue latency: how long runnable tasks waited for a CPU."""

    kind: Literal["runq_latency"] = "runq_latency"
    key_fields: ClassVar[tuple[str, ...]] = ("scope", "cpu")
    description: ClassVar[str] = ("run-queue latency histogram (wakeup to running), per CPU, "
                                  "for the host and for the --pid/--cgroup scope (eBPF)")

    #: "host", or "pid 123" / "cgroup /x" for the scope's tasks (taken when tracing began)
    scope: str
    #: the CPU; None: every CPU together
    cpu: Optional[int] = None
    window_s: float
    samples_total: int
    samples_per_s: Optional[float] = None
    avg_us: Optional[float] = None
    p50_us: Optional[int] = None
    p90_us: Optional[int] = None
    p99_us: Optional[int] = None
    max_us: Optional[int] = None
    #: share of waits of 1 ms or more (bucket bound: waits of >= 1024 µs)
    over_1ms_pct: Optional[float] = None
    hist_log2_us: list[int] = []


class OffCpuWait(Fact):
    """Time a task spent off-CPU in uninterruptible sleep (D), by what it waited in."""

    kind: Literal["offcpu_wait"] = "offcpu_wait"
    key_fields: ClassVar[tuple[str, ...]] = ("pid", "wait_reason")
    description: ClassVar[str] = ("off-CPU time in uninterruptible sleep (D) per task and wait "
                                  "reason, the kernel function it slept in (eBPF sched_switch)")

    pid: int  # the thread id
    tgid: Optional[int] = None
    comm: str
    #: the first kernel frame outside the scheduler at switch-out, like /proc/PID/wchan
    #: (fuse_*/request_wait_answer: FUSE; rpc_*/nfs_*: NFS; io_schedule/folio_wait_*: block I/O)
    wait_reason: str
    #: the top kernel frames, innermost first, joined by " <- "
    stack: str = ""
    window_s: float
    waits_total: int  # completed waits (switched back in) plus one if still waiting
    wait_ms_total: float  # including the wait still in progress
    max_wait_ms: float
    #: still in D when tracing ended
    blocked_now: bool = False
    #: how long the wait in progress had lasted when tracing ended
    ongoing_ms: Optional[float] = None
    #: share of the window spent in these waits
    wait_pct_of_window: Optional[float] = None


class SkbDrop(Fact):
    """Packets the kernel dropped (skb:kfree_skb), by reason and kernel location."""

    kind: Literal["skb_drop"] = "skb_drop"
    key_fields: ClassVar[tuple[str, ...]] = ("reason", "location", "protocol")
    description: ClassVar[str] = ("dropped packets by drop reason and kernel location "
                                  "(eBPF skb:kfree_skb; names from the running kernel)")

    #: the kernel's enum skb_drop_reason name without SKB_DROP_REASON_ (NO_SOCKET,
    #: NETFILTER_DROP, QDISC_DROP, SOCKET_RCVBUFF, TCP_LISTEN_OVERFLOW ...); "UNKNOWN_<n>" if
    #: the format has no name for it; "NOT_REPORTED" on kernels before 5.17 (no reason field)
    reason: str
    reason_code: Optional[int] = None
    #: the kernel function that freed the packet (symbolised), e.g. tcp_v4_rcv
    location: str
    #: the ethertype name (ipv4, ipv6, arp) or its number in hex
    protocol: str
    window_s: float
    drops_total: int
    drops_per_s: Optional[float] = None


class TcpRetransmit(Fact):
    """TCP retransmits of one flow (tcp:tcp_retransmit_skb)."""

    kind: Literal["tcp_retransmit"] = "tcp_retransmit"
    key_fields: ClassVar[tuple[str, ...]] = ("saddr", "sport", "daddr", "dport")
    description: ClassVar[str] = "TCP retransmits per flow and socket state (eBPF)"

    family: Literal["ipv4", "ipv6"]
    saddr: str
    sport: int
    daddr: str
    dport: int
    #: the socket state at the retransmit (ESTABLISHED, SYN_SENT ...)
    state: str
    window_s: float
    retransmits_total: int
    retransmits_per_s: Optional[float] = None


class BlockIoLatency(Fact):
    """Device latency (issue to completion) of one block device and operation."""

    kind: Literal["block_io_latency"] = "block_io_latency"
    key_fields: ClassVar[tuple[str, ...]] = ("dev", "op")
    description: ClassVar[str] = ("block I/O latency histogram per device and operation, "
                                  "issue to completion (eBPF block_rq_issue/complete)")

    dev: str  # "MAJ:MIN"
    device: Optional[str] = None  # the kernel name (sda, nvme0n1, loop0)
    op: Literal["read", "write", "discard", "flush", "other"]
    window_s: float
    ios_total: int
    ios_per_s: Optional[float] = None
    avg_us: Optional[float] = None
    p50_us: Optional[int] = None
    p90_us: Optional[int] = None
    p99_us: Optional[int] = None
    max_us: Optional[int] = None
    hist_log2_us: list[int] = []


class PageFaults(Fact):
    """User-space page faults of one process (exceptions:page_fault_user)."""

    kind: Literal["page_faults"] = "page_faults"
    key_fields: ClassVar[tuple[str, ...]] = ("pid",)
    description: ClassVar[str] = ("user page faults per process, minor and major together, "
                                  "with write and protection-fault counts (eBPF)")

    pid: int  # the process (tgid)
    comm: str
    window_s: float
    faults_total: int
    faults_per_s: Optional[float] = None
    write_faults_total: int = 0
    #: protection faults (the page was mapped): copy-on-write, or a SIGSEGV in the making
    protection_faults_total: int = 0
    #: share of all user faults traced on the host during the window
    share_pct: Optional[float] = None
