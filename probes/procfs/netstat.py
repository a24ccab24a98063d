"""Protocol counters and socket memory: /proc/net/{snmp,netstat,snmp6,sockstat}.

snmp and netstat hold pairs of lines, `Prefix: Name ...` then `Prefix: value ...`;
snmp6 holds `Name value` lines; sockstat holds `PROTO: key value ...` lines
(KNOWLEDGE.md §2.3, §2.6). All are per network namespace: they describe the
namespace of the reading process. Every counter is cumulative except
Tcp CurrEstab; sockstat is all gauges; `mem` values there are pages.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from sysdiag.facts import Fact, NetCounters, SockStat

from ..base import Probe, ProbeContext, pct, rate
from ..parse import SYSCTL_BYTES, ParseError, parse_name_value, to_int
from ..registry import register_probe

#: (file section, kernel name, NetCounters field stem): each becomes <stem>_total and
#: <stem>_per_s. Sections: snmp "Ip Tcp Udp", netstat "TcpExt IpExt", snmp6 "" (flat).
COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("Tcp", "ActiveOpens", "tcp_active_opens"),
    ("Tcp", "PassiveOpens", "tcp_passive_opens"),
    ("Tcp", "AttemptFails", "tcp_attempt_fails"),
    ("Tcp", "EstabResets", "tcp_estab_resets"),
    ("Tcp", "InSegs", "tcp_in_segs"),
    ("Tcp", "OutSegs", "tcp_out_segs"),
    ("Tcp", "RetransSegs", "tcp_retrans_segs"),
    ("Tcp", "InErrs", "tcp_in_errs"),
    ("Tcp", "OutRsts", "tcp_out_rsts"),
    ("Udp", "InDatagrams", "udp_in_datagrams"),
    ("Udp", "NoPorts", "udp_no_ports"),
    ("Udp", "InErrors", "udp_in_errors"),
    ("Udp", "RcvbufErrors", "udp_rcvbuf_errors"),
    ("Udp", "SndbufErrors", "udp_sndbuf_errors"),
    ("Udp", "MemErrors", "udp_mem_errors"),
    ("Ip", "ReasmFails", "ip_reasm_fails"),
    ("Ip", "ReasmTimeout", "ip_reasm_timeout"),
    ("Ip", "ReasmReqds", "ip_reasm_reqds"),
    ("Ip", "FragFails", "ip_frag_fails"),
    ("Ip", "OutNoRoutes", "ip_out_no_routes"),
    ("Ip", "InDiscards", "ip_in_discards"),
    ("TcpExt", "ListenOverflows", "tcpext_listen_overflows"),
    ("TcpExt", "ListenDrops", "tcpext_listen_drops"),
    ("TcpExt", "TCPReqQFullDrop", "tcpext_req_q_full_drop"),
    ("TcpExt", "TCPReqQFullDoCookies", "tcpext_req_q_full_do_cookies"),
    ("TcpExt", "SyncookiesFailed", "tcpext_syncookies_failed"),
    ("TcpExt", "TCPTimeouts", "tcpext_timeouts"),
    ("TcpExt", "TCPLossProbes", "tcpext_loss_probes"),
    ("TcpExt", "TCPAbortOnMemory", "tcpext_abort_on_memory"),
    ("TcpExt", "TCPMemoryPressures", "tcpext_memory_pressures"),
    ("TcpExt", "PruneCalled", "tcpext_prune_called"),
    ("TcpExt", "RcvPruned", "tcpext_rcv_pruned"),
    ("TcpExt", "TCPRcvQDrop", "tcpext_rcv_q_drop"),
    ("TcpExt", "TCPBacklogDrop", "tcpext_backlog_drop"),
    ("TcpExt", "IPReversePathFilter", "tcpext_ip_reverse_path_filter"),
    ("TcpExt", "TCPTimeWaitOverflow", "tcpext_time_wait_overflow"),
    ("TcpExt", "TCPToZeroWindowAdv", "tcpext_to_zero_window_adv"),
    ("TcpExt", "DelayedACKs", "tcpext_delayed_acks"),
    ("TcpExt", "TCPMTUPFail", "tcpext_mtup_fail"),
    ("IpExt", "InNoRoutes", "ipext_in_no_routes"),
    ("", "Ip6InNoRoutes", "ip6_in_no_routes"),
    ("", "Ip6OutNoRoutes", "ip6_out_no_routes"),
    ("", "Ip6InDiscards", "ip6_in_discards"),
    ("", "Ip6ReasmFails", "ip6_reasm_fails"),
    ("", "Ip6ReasmTimeout", "ip6_reasm_timeout"),
    ("", "Ip6FragFails", "ip6_frag_fails"),
    ("", "Udp6NoPorts", "udp6_no_ports"),
    ("", "Udp6InErrors", "udp6_in_errors"),
    ("", "Udp6RcvbufErrors", "udp6_rcvbuf_errors"),
    ("", "Udp6SndbufErrors", "udp6_sndbuf_errors"),
    ("", "Udp6MemErrors", "udp6_mem_errors"),
)
#: gauges: reported as they are at the end of the window
GAUGES: tuple[tuple[str, str, str], ...] = (
    ("Tcp", "CurrEstab", "tcp_curr_estab"),
)


def parse_snmp_pairs(text: str, source: str) -> dict[str, dict[str, int]]:
    """/proc/net/snmp and /proc/net/netstat: section -> name -> value.

    >>> parse_snmp_pairs("Tcp: RtoMin MaxConn\\nTcp: 200 -1\\n", "snmp")["Tcp"]
    {'RtoMin': 200, 'MaxConn': -1}
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) % 2:
        raise ParseError(source, f"odd number of lines ({len(lines)}): the last "
                                 f"'{lines[-1].split(':', 1)[0]}:' header has no value line")
    out: dict[str, dict[str, int]] = {}
    for i in range(0, len(lines), 2):
        head, _, names = lines[i].partition(":")
        head2, colon, values = lines[i + 1].partition(":")
        if not colon or head != head2:
            raise ParseError(source, f"line {i + 2}: expected the values of {head!r}, "
                                     f"got {lines[i + 1][:60]!r}")
        name_list, value_list = names.split(), values.split()
        if len(name_list) != len(value_list):
            raise ParseError(source, f"{head}: {len(name_list)} names but "
                                     f"{len(value_list)} values")
        out[head] = {name: to_int(value, source, f"{head} {name}")
                     for name, value in zip(name_list, value_list)}
    if not out:
        raise ParseError(source, "no counters (empty file)")
    return out


def parse_snmp6(text: str, source: str = "/proc/net/snmp6") -> dict[str, int]:
    """/proc/net/snmp6: `Name value` lines."""
    return parse_name_value(text, source)


def parse_sockstat(text: str, source: str = "/proc/net/sockstat") -> dict[str, dict[str, int]]:
    """/proc/net/sockstat: protocol -> key -> value.

    >>> parse_sockstat("TCP: inuse 35 orphan 0 tw 4 alloc 59 mem 22\\n")["TCP"]["mem"]
    22
    """
    out: dict[str, dict[str, int]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        proto, colon, rest = line.partition(":")
        words = rest.split()
        if not colon or len(words) % 2:
            raise ParseError(source, f"line {number}: expected 'PROTO: key value ...', "
                                     f"got {line[:60]!r}")
        out[proto.strip()] = {words[i]: to_int(words[i + 1], source, f"{proto} {words[i]}")
                              for i in range(0, len(words), 2)}
    if not out:
        raise ParseError(source, "no lines (empty file)")
    return out


def parse_triple(text: Optional[str], source: str) -> Optional[tuple[int, int, int]]:
    """A three-value sysctl such as net.ipv4.tcp_mem ("min pressure max", pages)."""
    if text is None:
        return None
    parts = text.split()
    if len(parts) != 3:
        raise ParseError(source, f"expected three numbers, got {text.strip()[:60]!r}")
    low, mid, high = (to_int(p, source, "value") for p in parts)
    return low, mid, high


def read_sysctl(ctx: ProbeContext, *parts: str) -> Optional[str]:
    """/proc/sys/<parts>, or None when the kernel does not have it. Read with a small
    buffer: a 4 MiB read of a sysctl file fails with ENOMEM (the kernel allocates it)."""
    try:
        return ctx.read_text(ctx.proc("sys", *parts), SYSCTL_BYTES)
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class NetstatSample:
    #: NetCounters field stem -> value, for every COUNTERS/GAUGES entry the kernel has
    counters: Mapping[str, int] = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    sockstat: Optional[Mapping[str, Mapping[str, int]]] = None
    sockstat_source: Optional[str] = None
    tcp_mem: Optional[tuple[int, int, int]] = None
    udp_mem: Optional[tuple[int, int, int]] = None
    frag_high_thresh: Optional[int] = None


def select_counters(sections: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """Pick the COUNTERS and GAUGES from parsed sections (snmp6 under section "")."""
    out = {}
    for section, name, stem in COUNTERS + GAUGES:
        value = sections.get(section, {}).get(name)
        if value is not None:
            out[stem] = value
    return out


def counter_facts(first: Optional[NetstatSample], last: NetstatSample,
                  elapsed_s: Optional[float]) -> NetCounters:
    values: dict[str, Any] = {}
    before = first.counters if first is not None else {}
    for _, _, stem in COUNTERS:
        total = last.counters.get(stem)
        values[f"{stem}_total"] = total
        per_s = rate(before.get(stem), total, elapsed_s) if first is not None else None
        values[f"{stem}_per_s"] = None if per_s is None else round(per_s, 3)
    for _, _, stem in GAUGES:
        values[stem] = last.counters.get(stem)
    retrans, out_segs = "tcp_retrans_segs", "tcp_out_segs"
    if first is not None and elapsed_s:
        d_retrans = _delta(before.get(retrans), last.counters.get(retrans))
        d_out = _delta(before.get(out_segs), last.counters.get(out_segs))
        values["retrans_pct"] = pct(d_retrans, d_out, 3)
    values["retrans_pct_since_boot"] = pct(last.counters.get(retrans),
                                           last.counters.get(out_segs), 3)
    return NetCounters(source=", ".join(last.sources), **values)


def _delta(a: Optional[int], b: Optional[int]) -> Optional[int]:
    return None if a is None or b is None or b < a else b - a


def sockstat_fact(sample: NetstatSample) -> Optional[SockStat]:
    if sample.sockstat is None:
        return None
    s = sample.sockstat
    tcp, udp, frag = s.get("TCP", {}), s.get("UDP", {}), s.get("FRAG", {})
    tcp_mem = sample.tcp_mem or (None, None, None)
    udp_mem = sample.udp_mem or (None, None, None)
    return SockStat(
        source=sample.sockstat_source or "/proc/net/sockstat",
        sockets_used=s.get("sockets", {}).get("used"),
        tcp_inuse=tcp.get("inuse"), tcp_orphan=tcp.get("orphan"), tcp_tw=tcp.get("tw"),
        tcp_alloc=tcp.get("alloc"), tcp_mem_pages=tcp.get("mem"),
        udp_inuse=udp.get("inuse"), udp_mem_pages=udp.get("mem"),
        frag_inuse=frag.get("inuse"), frag_memory_bytes=frag.get("memory"),
        tcp_mem_min_pages=tcp_mem[0], tcp_mem_pressure_pages=tcp_mem[1],
        tcp_mem_max_pages=tcp_mem[2], tcp_mem_pct_of_max=pct(tcp.get("mem"), tcp_mem[2]),
        udp_mem_pressure_pages=udp_mem[1], udp_mem_max_pages=udp_mem[2],
        frag_high_thresh_bytes=sample.frag_high_thresh,
    )


@register_probe
class NetstatProbe(Probe):
    name = "netstat"
    provides = ("net_counters", "sockstat")
    description = ("TCP/UDP/IP counters (/proc/net/snmp, netstat, snmp6) and socket memory "
                   "(/proc/net/sockstat) against tcp_mem")
    netns_scoped = True

    def sample(self, ctx: ProbeContext) -> NetstatSample:
        sections: dict[str, dict[str, int]] = {}
        sources = []
        for name in ("snmp", "netstat"):
            path = ctx.net(name)
            text = ctx.read_optional(path)
            if text is None:
                continue
            sections.update(parse_snmp_pairs(text, str(path)))
            sources.append(str(path))
        path = ctx.net("snmp6")
        text = ctx.read_optional(path)  # absent when IPv6 is disabled
        if text is not None:
            sections[""] = parse_snmp6(text, str(path))
            sources.append(str(path))
        sock_path = ctx.net("sockstat")
        sock_text = ctx.read_optional(sock_path)
        if not sources and sock_text is None:
            raise FileNotFoundError(2, "none of /proc/net/{snmp,netstat,snmp6,sockstat}",
                                    str(ctx.net()))
        # tcp_mem and udp_mem are global: only the initial namespace's /proc/sys has them
        # (inside a container's namespace they are unknown); ipfrag_high_thresh is per netns
        ipv4 = ctx.proc("sys", "net", "ipv4")
        frag_text = read_sysctl(ctx, "net", "ipv4", "ipfrag_high_thresh")
        return NetstatSample(
            counters=select_counters(sections), sources=tuple(sources),
            sockstat=parse_sockstat(sock_text, str(sock_path)) if sock_text is not None else None,
            sockstat_source=str(sock_path),
            tcp_mem=parse_triple(read_sysctl(ctx, "net", "ipv4", "tcp_mem"),
                                 str(ipv4 / "tcp_mem")),
            udp_mem=parse_triple(read_sysctl(ctx, "net", "ipv4", "udp_mem"),
                                 str(ipv4 / "udp_mem")),
            frag_high_thresh=(to_int(frag_text.strip(), str(ipv4 / "ipfrag_high_thresh"),
                                     "value") if frag_text and frag_text.strip() else None),
        )

    def facts(self, ctx: ProbeContext, first: Optional[NetstatSample], last: NetstatSample,
              elapsed_s: Optional[float]) -> list[Fact]:
        out: list[Fact] = []
        if last.sources:
            out.append(counter_facts(first, last, elapsed_s))
        for name, lost in (("snmp", "Ip/Tcp/Udp"), ("netstat", "TcpExt/IpExt")):
            if str(ctx.net(name)) not in last.sources:
                self.warn(f"{ctx.net(name)} missing: {lost} counters unknown")
        sockstat = sockstat_fact(last)
        if sockstat is not None:
            out.append(sockstat)
        else:
            self.warn(f"{ctx.net('sockstat')} missing: socket memory unknown")
        return out
