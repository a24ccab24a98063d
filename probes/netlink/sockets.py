"""TCP and UDP sockets: listeners' accept queues, states, port use, retransmits, UDP drops.

Live: NETLINK_SOCK_DIAG (inet_diag, the interface of `ss`), one dump per IP family with
INET_DIAG_INFO (struct tcp_info), read as a stream and aggregated as it arrives
(nldump.py: a host with 100,000 sockets is one pass with no per-socket objects kept
beyond listeners, CLOSE_WAIT inodes and UDP sockets with drops). `ss` is never run, and
the dump is only sent when inet_diag and tcp_diag are already loaded or built in: a
sock_diag request for a missing handler makes the kernel load it (netfilter/modules.py).
Otherwise, and in a captured tree, /proc/net/tcp and tcp6 are parsed instead; they lack
the listeners' backlog and tcp_info. UDP comes from /proc/net/udp and udp6 (last column
`drops`), or, for another namespace, from udp_diag with INET_DIAG_SKMEMINFO.

Listener: Recv-Q (idiag_rqueue) is the accept queue now, Send-Q (idiag_wqueue) its limit
(KNOWLEDGE.md §2.6). The kernel drops the next completed handshake when the queue holds
more than the limit, so a full queue shows Recv-Q = Send-Q + 1.

Only the fullest MAX_LISTENERS listeners and the MAX_UDP UDP sockets with the most drops
become facts; SocketSummary counts everything. Owning processes are looked up in
/proc/PID/fd for those sockets and CLOSE_WAIT ones, bounded by MAX_FD_LINKS and
FD_SCAN_BUDGET_S.
"""
from __future__ import annotations

import os
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional

from sysdiag.facts import Fact, SocketSummary, TcpListener, UdpSocket

from ..base import Probe, ProbeContext, Unavailable, pct
from ..netfilter.modules import read_kernel_modules
from ..parse import SYSCTL_BYTES, ParseError
from ..registry import register_probe
from .nldump import NETLINK_SOCK_DIAG, DumpInterrupted, dump, iter_attrs, open_netlink

SOCK_DIAG_BY_FAMILY = 20
INET_DIAG_INFO, INET_DIAG_SKMEMINFO = 2, 7
SK_MEMINFO_DROPS = 8
ALL_STATES = (1 << 12) - 1
MAX_LISTENERS = 50
MAX_UDP = 50
MAX_CLOSE_WAIT_INODES = 100_000
MAX_FD_LINKS = 100_000
FD_SCAN_BUDGET_S = 1.0
DUMP_RETRIES = 3

#: kernel TCP states (include/net/tcp_states.h) -> SocketSummary field stem
TCP_STATES = {1: "established", 2: "syn_sent", 3: "syn_recv", 4: "fin_wait1", 5: "fin_wait2",
              6: "time_wait", 7: "close", 8: "close_wait", 9: "last_ack", 10: "listen",
              11: "closing", 12: "syn_recv"}  # 12: TCP_NEW_SYN_RECV, a request socket
LISTEN, SYN_RECV, CLOSE_WAIT, ESTABLISHED = 10, 3, 8, 1
#: states of a connection that holds its local port (the ones ip_local_port_range limits)
PORT_HOLDING = frozenset({1, 2, 4, 5, 6, 8, 9, 11})
#: icsk timers as inet_diag and /proc/net/tcp report them
TIMER_RETRANSMIT, TIMER_PERSIST = 1, 4

_DIAG_HEAD = struct.Struct("=BBBB")  # family state timer retrans
_DIAG_PORTS = struct.Struct(">HH")  # sport dport (network order)
_DIAG_TAIL = struct.Struct("=IIIII")  # expires rqueue wqueue uid inode
DIAG_MSG_LEN = 72
_REQ = struct.Struct("=BBBxI48x")  # inet_diag_req_v2: family protocol ext pad states id
# struct tcp_info offsets (include/uapi/linux/tcp.h); snd_wnd arrived in 5.4
TCPI_RETRANS, TCPI_TOTAL_RETRANS, TCPI_SND_WND = 36, 100, 228
_U32 = struct.Struct("=I")


def _decode_addr(family: int, raw: bytes) -> str:
    return socket.inet_ntop(family, raw[:4] if family == socket.AF_INET else raw[:16])


def proc_addr(hex_addr: str, source: str) -> tuple[int, bytes]:
    """(family, address bytes) from /proc/net/tcp's host-order hex ("0100007F").

    >>> family, raw = proc_addr("0100007F", "tcp")
    >>> family == socket.AF_INET, socket.inet_ntoa(raw)
    (True, '127.0.0.1')
    """
    try:
        words = [int(hex_addr[i:i + 8], 16) for i in range(0, len(hex_addr), 8)]
    except ValueError:
        raise ParseError(source, f"address {hex_addr[:40]!r} is not hex") from None
    if len(hex_addr) == 8:
        return socket.AF_INET, struct.pack("=I", words[0])
    if len(hex_addr) == 32:
        return socket.AF_INET6, struct.pack("=4I", *words)
    raise ParseError(source, f"address {hex_addr[:40]!r} is neither 8 nor 32 hex digits")


@dataclass(frozen=True)
class ProcRow:
    """One line of /proc/net/{tcp,tcp6,udp,udp6}."""

    family: int
    local: bytes
    local_port: int
    remote: bytes
    remote_port: int
    state: int
    tx_queue: int
    rx_queue: int
    timer: int
    retransmits: int
    uid: int
    inode: int
    drops: Optional[int] = None  # udp only


def parse_proc_net_socks(lines: Iterable[str], source: str,
                         udp: bool = False) -> Iterator[ProcRow]:
    """Rows of /proc/net/tcp, tcp6, udp or udp6, one line at a time (the file of a busy
    host is tens of MB). The first line is the header.

    >>> text = '''  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
    ...    0: 00000000:07E8 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 576 1 00000000bc907e79 100 0 0 10 0'''
    >>> row = next(parse_proc_net_socks(text.splitlines(), "tcp"))
    >>> row.local_port, row.state, row.rx_queue, row.inode
    (2024, 10, 3, 576)
    """
    it = iter(lines)
    header = next(it, None)
    if header is None or not header.strip().startswith("sl"):
        raise ParseError(source, "expected a header line starting with 'sl'"
                                 + ("" if header else " (empty file)"))
    for number, line in enumerate(it, start=2):
        cols = line.split()
        if not cols:
            continue
        if len(cols) < (13 if udp else 10):
            raise ParseError(source, f"line {number}: {len(cols)} columns, expected at least "
                                     f"{13 if udp else 10}")
        try:
            local, lport = cols[1].split(":")
            remote, rport = cols[2].split(":")
            txq, rxq = cols[4].split(":")
            timer = cols[5].split(":")[0]
            family, local_raw = proc_addr(local, source)
            _, remote_raw = proc_addr(remote, source)
            yield ProcRow(family=family, local=local_raw, local_port=int(lport, 16),
                          remote=remote_raw, remote_port=int(rport, 16), state=int(cols[3], 16),
                          tx_queue=int(txq, 16), rx_queue=int(rxq, 16), timer=int(timer, 16),
                          retransmits=int(cols[6], 16), uid=int(cols[7]), inode=int(cols[9]),
                          drops=int(cols[-1]) if udp else None)
        except ParseError:
            raise
        except ValueError:
            raise ParseError(source, f"line {number}: cannot parse {line.strip()[:100]!r}") \
                from None


@dataclass(frozen=True)
class ListenerRow:
    family: int
    addr: str
    port: int
    accept_queue: int
    backlog: Optional[int]
    inode: int
    uid: int


@dataclass(frozen=True)
class UdpRow:
    family: int
    addr: str
    port: int
    remote: Optional[str]
    remote_port: Optional[int]
    rx_queue: Optional[int]
    drops: int
    inode: int
    uid: int


class TcpTally:
    """Aggregates TCP sockets as they stream by."""

    def __init__(self, port_range: Optional[tuple[int, int]]):
        self.port_range = port_range
        self.states: Counter = Counter()
        self.total = 0
        self.listeners: list[ListenerRow] = []
        self.syn_recv_by_port: Counter = Counter()
        self.per_destination: Counter = Counter()
        self.close_wait_inodes: list[int] = []
        self.retrans_sockets = 0
        self.retrans_segs = 0
        self.peer_retrans: Counter = Counter()
        self.peers: set[tuple[int, bytes]] = set()
        self.backoff = 0
        self.persist = 0
        self.snd_wnd_zero = 0
        self.have_info = False
        self.have_snd_wnd = False

    def add(self, family: int, state: int, src: bytes, sport: int, dst: bytes, dport: int,
            rqueue: int, wqueue: Optional[int], uid: int, inode: int, timer: int,
            retransmits: int, info: Optional[bytes]) -> None:
        self.total += 1
        self.states[TCP_STATES.get(state, "unknown")] += 1
        if state == LISTEN:
            self.listeners.append(ListenerRow(family, _decode_addr(family, src), sport, rqueue,
                                              wqueue, inode, uid))
            return
        if any(dst):  # a socket that never connected has no peer
            self.peers.add((family, dst))
        if state in (SYN_RECV, 12):
            self.syn_recv_by_port[sport] += 1
        if state in PORT_HOLDING and (self.port_range is None or
                                      self.port_range[0] <= sport <= self.port_range[1]):
            self.per_destination[(family, src, dst, dport)] += 1
        if state == CLOSE_WAIT and inode and len(self.close_wait_inodes) < MAX_CLOSE_WAIT_INODES:
            self.close_wait_inodes.append(inode)
        if timer == TIMER_PERSIST:
            self.persist += 1
        if timer == TIMER_RETRANSMIT and retransmits >= 2:
            self.backoff += 1
        if info is not None and len(info) >= TCPI_TOTAL_RETRANS + 4:
            self.have_info = True
            retrans_out = _U32.unpack_from(info, TCPI_RETRANS)[0]
            total = _U32.unpack_from(info, TCPI_TOTAL_RETRANS)[0]
            if retrans_out:
                self.retrans_sockets += 1
            if total:
                self.retrans_segs += total
                self.peer_retrans[(family, dst)] += total
            if len(info) >= TCPI_SND_WND + 4:
                self.have_snd_wnd = True
                if state == ESTABLISHED and _U32.unpack_from(info, TCPI_SND_WND)[0] == 0:
                    self.snd_wnd_zero += 1
        elif info is None and timer == TIMER_RETRANSMIT and retransmits >= 1:
            self.retrans_sockets += 1  # /proc/net/tcp: an RTO fired and is outstanding

    def add_proc_row(self, row: ProcRow) -> None:
        # /proc/net/tcp has no backlog: tx_queue of a listener is 0, not its limit
        self.add(row.family, row.state, row.local, row.local_port, row.remote,
                 row.remote_port, row.rx_queue, None, row.uid, row.inode, row.timer,
                 row.retransmits, None)


@dataclass
class SocketSample:
    method: str  # sock_diag | procfs
    source: str
    tally: TcpTally
    udp_total: int = 0
    udp_drops: dict[int, int] = field(default_factory=dict)  # inode -> drops (every socket)
    udp_rows: list[UdpRow] = field(default_factory=list)  # sockets with drops


def diag_messages(sock: socket.socket, family: int, protocol: int, ext: int,
                  seq: int) -> Iterator[bytes]:
    request = _REQ.pack(family, protocol, ext, ALL_STATES)
    for _, body in dump(sock, SOCK_DIAG_BY_FAMILY, request, seq=seq):
        if len(body) >= DIAG_MSG_LEN:
            yield body


def tally_diag(tally: TcpTally, body: bytes) -> None:
    """Add one inet_diag_msg (with its INET_DIAG_INFO, if any) to the tally."""
    family, state, timer, retrans = _DIAG_HEAD.unpack_from(body, 0)
    sport, dport = _DIAG_PORTS.unpack_from(body, 4)
    _, rqueue, wqueue, uid, inode = _DIAG_TAIL.unpack_from(body, 52)
    info = None
    for kind, payload in iter_attrs(body, DIAG_MSG_LEN):
        if kind == INET_DIAG_INFO:
            info = payload
            break
    tally.add(family, state, body[8:24], sport, body[24:40], dport, rqueue,
              wqueue if state == LISTEN else None, uid, inode, timer, retrans, info)


def udp_row_from_diag(body: bytes) -> Optional[UdpRow]:
    """A UdpRow from a udp_diag message with INET_DIAG_SKMEMINFO (None without it)."""
    family = body[0]
    sport, dport = _DIAG_PORTS.unpack_from(body, 4)
    _, rqueue, _, uid, inode = _DIAG_TAIL.unpack_from(body, 52)
    for kind, payload in iter_attrs(body, DIAG_MSG_LEN):
        if kind == INET_DIAG_SKMEMINFO and len(payload) >= 4 * (SK_MEMINFO_DROPS + 1):
            drops = _U32.unpack_from(payload, 4 * SK_MEMINFO_DROPS)[0]
            remote = body[24:40]
            connected = dport != 0
            return UdpRow(family, _decode_addr(family, body[8:24]), sport,
                          _decode_addr(family, remote) if connected else None,
                          dport if connected else None, rqueue, drops, inode, uid)
    return None


def udp_row_from_proc(row: ProcRow) -> UdpRow:
    connected = row.remote_port != 0
    return UdpRow(row.family, _decode_addr(row.family, row.local), row.local_port,
                  _decode_addr(row.family, row.remote) if connected else None,
                  row.remote_port if connected else None, row.rx_queue, row.drops or 0,
                  row.inode, row.uid)


def find_owners(ctx: ProbeContext, inodes: set[int], max_links: int = MAX_FD_LINKS,
                budget_s: float = FD_SCAN_BUDGET_S) -> tuple[dict[int, tuple[int, str]], str]:
    """inode -> (pid, comm) for the wanted socket inodes, from /proc/PID/fd links; and a
    note when the scan was cut short or could not see every process ("" otherwise)."""
    found: dict[int, tuple[int, str]] = {}
    if not inodes:
        return found, ""
    deadline = time.monotonic() + budget_s
    links, denied = 0, 0
    try:
        pids = sorted((int(p) for p in os.listdir(ctx.proc_root) if p.isdigit()), reverse=True)
    except OSError as err:
        return found, f"cannot list {ctx.proc_root}: {err.strerror}"
    for pid in pids:
        try:
            fds = ctx.fd_links(pid)  # shared with the deleted-files probe
        except PermissionError:
            denied += 1
            continue
        except OSError:  # exited meanwhile
            continue
        for target in fds.values():
            links += 1
            if target is None:  # closed meanwhile
                continue
            if target.startswith("socket:["):
                inode = int(target[8:-1])
                if inode in inodes and inode not in found:
                    found[inode] = (pid, _comm(ctx, pid))
        if len(found) == len(inodes):
            return found, ""
        if links >= max_links or time.monotonic() > deadline:
            return found, (f"owner lookup stopped after {links} fd links "
                           f"({len(found)} of {len(inodes)} sockets found)")
    if denied:
        return found, (f"{denied} processes' fds not readable (run as root to find the "
                       "owners of every socket)")
    return found, ""


def _comm(ctx: ProbeContext, pid: int) -> str:
    try:
        return ctx.read_text(ctx.proc(pid, "comm"), 4096).strip()
    except OSError:
        return "?"


def parse_port_range(text: Optional[str]) -> Optional[tuple[int, int]]:
    """net.ipv4.ip_local_port_range; None when missing or malformed.

    >>> parse_port_range("32768\\t60999\\n")
    (32768, 60999)
    """
    fields = (text or "").split()
    if len(fields) != 2 or not all(f.isdigit() for f in fields):
        return None
    low, high = int(fields[0]), int(fields[1])
    return (low, high) if low <= high else None


def summary_fact(first: Optional[SocketSample], last: SocketSample,
                 elapsed_s: Optional[float], owners: dict[int, tuple[int, str]],
                 listeners_omitted: int, udp_omitted: int) -> SocketSummary:
    t = last.tally
    values: dict[str, object] = {f"tcp_{stem}": 0 for stem in set(TCP_STATES.values())}
    for stem, count in t.states.items():
        if stem != "unknown":
            values[f"tcp_{stem}"] = count
    values["max_per_destination"] = 0
    if t.per_destination:
        (family, src, dst, dport), count = t.per_destination.most_common(1)[0]
        values["max_per_destination"] = count
        values["max_destination"] = (f"{_decode_addr(family, src)} -> "
                                     f"{_fmt_host(family, dst)}:{dport}")
    size = None if t.port_range is None else t.port_range[1] - t.port_range[0] + 1
    values["port_range_size"] = size
    values["port_range_used_pct"] = pct(values.get("max_per_destination"), size)  # type: ignore[arg-type]
    holders: Counter = Counter(owners[i] for i in t.close_wait_inodes if i in owners)
    if holders:
        (pid, comm), count = holders.most_common(1)[0]
        values.update(close_wait_top_pid=pid, close_wait_top_comm=comm,
                      close_wait_top_count=count)
    diag = last.method == "sock_diag" and t.have_info
    values["tcp_retrans_sockets"] = t.retrans_sockets
    values["tcp_peers"] = len(t.peers)
    values["tcp_retrans_segs_open"] = t.retrans_segs if diag else None
    if diag and t.peer_retrans:
        (family, peer), segs = t.peer_retrans.most_common(1)[0]
        values.update(tcp_retrans_top_peer=_decode_addr(family, peer),
                      tcp_retrans_top_peer_segs=segs)
    values["tcp_snd_wnd_zero"] = t.snd_wnd_zero if diag and t.have_snd_wnd else None
    full = [r for r in t.listeners if r.backlog is not None and r.accept_queue >= r.backlog]
    return SocketSummary(
        source=last.source, method=last.method, tcp_total=t.total,  # type: ignore[arg-type]
        listeners_full=len(full) if last.method == "sock_diag" else None,
        listeners_omitted=listeners_omitted, tcp_backoff_sockets=t.backoff,
        tcp_persist_sockets=t.persist, udp_total=last.udp_total,
        udp_with_drops=sum(1 for d in last.udp_drops.values() if d),
        udp_drops_open=sum(last.udp_drops.values()),
        udp_drops_per_s=_udp_rate(first, last, elapsed_s), udp_sockets_omitted=udp_omitted,
        **values)  # type: ignore[arg-type]


def _fmt_host(family: int, raw: bytes) -> str:
    text = _decode_addr(family, raw)
    return f"[{text}]" if family == socket.AF_INET6 else text


def _udp_rate(first: Optional[SocketSample], last: SocketSample,
              elapsed_s: Optional[float]) -> Optional[float]:
    if first is None or not elapsed_s or elapsed_s <= 0:
        return None
    delta = sum(max(0, d - first.udp_drops[i]) for i, d in last.udp_drops.items()
                if i in first.udp_drops)
    return round(delta / elapsed_s, 3)


def _family(family: int) -> str:
    return "ipv6" if family == socket.AF_INET6 else "ipv4"


def top_listeners(last: SocketSample) -> list[ListenerRow]:
    """Every listener, fullest first (accept queue / backlog, then queue length)."""
    def order(r: ListenerRow) -> tuple:
        ratio = r.accept_queue / r.backlog if r.backlog else -1.0
        return (-ratio, -r.accept_queue, r.port, r.addr, r.inode)

    return sorted(last.tally.listeners, key=order)


def top_udp(last: SocketSample) -> list[UdpRow]:
    return sorted(last.udp_rows, key=lambda r: (-r.drops, r.port, r.inode))


def listener_facts(last: SocketSample, owners: dict[int, tuple[int, str]]
                   ) -> tuple[list[TcpListener], int, int]:
    """The fullest listeners as facts; how many were left out over the cap, and how many
    rows repeated a listener already seen (same address, port and inode: only a
    hand-made or damaged captured file has those)."""
    rows = top_listeners(last)
    syn = last.tally.syn_recv_by_port
    facts: list[TcpListener] = []
    seen: set[tuple[str, int, int]] = set()
    for r in rows:
        if len(facts) == MAX_LISTENERS:
            break
        if (r.addr, r.port, r.inode) in seen:
            continue
        seen.add((r.addr, r.port, r.inode))
        pid, comm = owners.get(r.inode, (None, None))
        facts.append(TcpListener(
            source=last.source, family=_family(r.family), local_addr=r.addr, local_port=r.port,
            accept_queue=r.accept_queue, backlog=r.backlog, queue_pct=pct(r.accept_queue,
                                                                          r.backlog),
            syn_recv=syn.get(r.port, 0), inode=r.inode, uid=r.uid, pid=pid, comm=comm))
    unique = len({(r.addr, r.port, r.inode) for r in rows})
    return facts, max(0, unique - len(facts)), len(rows) - unique


def udp_facts(first: Optional[SocketSample], last: SocketSample, elapsed_s: Optional[float],
              owners: dict[int, tuple[int, str]]) -> tuple[list[UdpSocket], int]:
    rows = top_udp(last)
    facts = []
    for r in rows[:MAX_UDP]:
        before = first.udp_drops.get(r.inode) if first else None
        per_s = (round(max(0, r.drops - before) / elapsed_s, 3)
                 if before is not None and elapsed_s else None)
        pid, comm = owners.get(r.inode, (None, None))
        facts.append(UdpSocket(
            source=last.source, family=_family(r.family), local_addr=r.addr, local_port=r.port,
            remote_addr=r.remote, remote_port=r.remote_port, rx_queue_bytes=r.rx_queue,
            drops_total=r.drops, drops_per_s=per_s, inode=r.inode, uid=r.uid, pid=pid,
            comm=comm))
    return facts, max(0, len(rows) - MAX_UDP)


@register_probe
class SocketsProbe(Probe):
    name = "sockets"
    provides = ("tcp_listener", "udp_socket", "socket_summary")
    description = ("TCP listeners' accept queue vs backlog, sockets by state, ephemeral ports "
                   "per destination, CLOSE_WAIT holders, retransmits, UDP drops (sock_diag; "
                   "/proc/net/tcp,udp otherwise)")
    cost = "moderate"
    netns_scoped = True  # --netns/--pid: sampled inside that namespace (probes/scope.py)
    timeout_s = 10.0

    def __init__(self, netns: Optional[str] = None) -> None:
        super().__init__()
        #: a named namespace (/run/netns/NAME) to read instead of the current one
        self.netns = netns

    def _warn_once(self, message: str) -> None:
        if message not in self.warnings:  # both samples meet the same condition
            self.warn(message)

    def sample(self, ctx: ProbeContext) -> SocketSample:
        port_range = None
        if self.netns is None:  # /proc/sys shows our own namespace, not the probed one
            path = ctx.proc("sys", "net", "ipv4", "ip_local_port_range")
            try:
                port_range = parse_port_range(ctx.read_text(path, SYSCTL_BYTES))
            except FileNotFoundError:
                pass
        modules = read_kernel_modules(ctx) if ctx.live else None
        sample = None
        if modules is not None and modules.safe("inet_diag", "tcp_diag"):
            try:
                sample = self._sample_diag(port_range)
            except (OSError, DumpInterrupted) as err:
                if self.netns is not None:
                    raise
                self._warn_once(f"sock_diag failed ({err}); read /proc/net/tcp instead")
        elif modules is not None:
            reason = modules.why_not("inet_diag", "tcp_diag")
            if self.netns is not None:
                raise Unavailable(f"cannot read sockets of namespace {self.netns!r}: {reason}")
            self._warn_once(f"sock_diag skipped: {reason}; /proc/net/tcp has no listen backlog "
                            "and no tcp_info")
        if sample is None:
            sample = self._sample_proc(ctx, TcpTally(port_range))
        self._udp(ctx, sample, modules is not None and modules.safe("udp_diag"))
        return sample

    def _sample_diag(self, port_range: Optional[tuple[int, int]]) -> SocketSample:
        for attempt in range(DUMP_RETRIES):
            tally = TcpTally(port_range)
            sock = open_netlink(NETLINK_SOCK_DIAG, self.netns)
            try:
                for seq, family in ((1, socket.AF_INET), (2, socket.AF_INET6)):
                    for body in diag_messages(sock, family, socket.IPPROTO_TCP,
                                              1 << (INET_DIAG_INFO - 1), seq):
                        tally_diag(tally, body)
                return SocketSample(method="sock_diag", source="netlink sock_diag (inet_diag)",
                                    tally=tally)
            except DumpInterrupted:
                if attempt == DUMP_RETRIES - 1:
                    raise
            finally:
                sock.close()
        raise AssertionError("unreachable")

    def _sample_proc(self, ctx: ProbeContext, tally: TcpTally) -> SocketSample:
        sources = []
        for name in ("tcp", "tcp6"):
            path = ctx.net(name)
            for row in self._proc_rows(ctx, path, udp=False):
                tally.add_proc_row(row)
            if os.path.exists(path):
                sources.append(str(path))
        if not sources:
            raise Unavailable(f"{ctx.proc('net', 'tcp')} is not there (no /proc/net in this "
                              "tree)")
        return SocketSample(method="procfs", source=",".join(sources), tally=tally)

    def _proc_rows(self, ctx: ProbeContext, path: os.PathLike, udp: bool) -> Iterator[ProcRow]:
        ctx.check_inside_root(path)  # type: ignore[arg-type]
        try:
            with open(path, encoding="ascii", errors="replace") as fh:
                yield from parse_proc_net_socks(fh, str(path), udp=udp)
        except FileNotFoundError:
            return  # no IPv6, or not captured

    def _udp(self, ctx: ProbeContext, sample: SocketSample, diag_ok: bool) -> None:
        if self.netns is None:
            for name in ("udp", "udp6"):
                for row in self._proc_rows(ctx, ctx.net(name), udp=True):
                    self._add_udp(sample, udp_row_from_proc(row))
            return
        if not diag_ok:
            self._warn_once("UDP sockets of the namespace not read: udp_diag is not loaded "
                      "(sysdiag never loads it)")
            return
        sock = open_netlink(NETLINK_SOCK_DIAG, self.netns)
        try:
            for seq, family in ((3, socket.AF_INET), (4, socket.AF_INET6)):
                for body in diag_messages(sock, family, socket.IPPROTO_UDP,
                                          1 << (INET_DIAG_SKMEMINFO - 1), seq):
                    row = udp_row_from_diag(body)
                    if row is not None:
                        self._add_udp(sample, row)
        finally:
            sock.close()

    @staticmethod
    def _add_udp(sample: SocketSample, row: UdpRow) -> None:
        sample.udp_total += 1
        sample.udp_drops[row.inode] = row.drops
        if row.drops:
            sample.udp_rows.append(row)

    def facts(self, ctx: ProbeContext, first: Optional[SocketSample], last: SocketSample,
              elapsed_s: Optional[float]) -> list[Fact]:
        owners: dict[int, tuple[int, str]] = {}
        if ctx.live:
            wanted = ({r.inode for r in top_listeners(last)[:MAX_LISTENERS]} |
                      set(last.tally.close_wait_inodes) |
                      {r.inode for r in top_udp(last)[:MAX_UDP]})
            wanted.discard(0)
            owners, note = find_owners(ctx, wanted)
            if note:
                self.warn(note)
        listeners, listeners_omitted, repeated = listener_facts(last, owners)
        if repeated:
            self.warn(f"{last.source}: {repeated} listener rows repeat another's address, port "
                      "and inode; reported once")
        udp, udp_omitted = udp_facts(first, last, elapsed_s, owners)
        return [summary_fact(first, last, elapsed_s, owners, listeners_omitted, udp_omitted),
                *listeners, *udp]
