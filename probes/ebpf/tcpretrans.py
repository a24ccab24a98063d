"""TCP retransmits by flow (tcpretrans.bpf.c on tcp:tcp_retransmit_skb).

The counters say the host retransmits; this says which peer and port, so loss on one
path is told apart from a host-wide problem.
"""
from __future__ import annotations

import ipaddress
from typing import Any

from sysdiag.facts import Fact, TcpRetransmit

from ..base import ProbeContext, Unavailable
from ..registry import register_probe
from .base import Readout, TracingProbe, Trace
from .tracefs import EventFormat, symbolic_entries, symbolic_table

MAX_ROWS = 50

#: TCP socket states by number: kernel ABI (ss and /proc/net/tcp print these numbers),
#: while the tracepoint's table names them only by their C constants
TCP_STATE_NUMBERS = {"TCP_ESTABLISHED": 1, "TCP_SYN_SENT": 2, "TCP_SYN_RECV": 3,
                     "TCP_FIN_WAIT1": 4, "TCP_FIN_WAIT2": 5, "TCP_TIME_WAIT": 6, "TCP_CLOSE": 7,
                     "TCP_CLOSE_WAIT": 8, "TCP_LAST_ACK": 9, "TCP_LISTEN": 10,
                     "TCP_CLOSING": 11, "TCP_NEW_SYN_RECV": 12}


def family_values(fmt: EventFormat) -> dict[str, int]:
    """{"AF_INET": 2, "AF_INET6": 10} from the format's family table."""
    return {name: value for value, name in symbolic_table(fmt.print_fmt, "family").items()}


def state_names(fmt: EventFormat) -> dict[int, str]:
    """state number -> name without TCP_, for the states the format names."""
    out = {}
    for key, name in symbolic_entries(fmt.print_fmt, "state"):
        value = TCP_STATE_NUMBERS.get(key)
        if value is None:
            try:
                value = int(key, 0)
            except ValueError:
                continue
        out[value] = name.removeprefix("TCP_")
    return out or {v: k.removeprefix("TCP_") for k, v in TCP_STATE_NUMBERS.items()}


@register_probe
class TcpRetransProbe(TracingProbe):
    name = "ebpf-tcpretrans"
    provides = ("tcp_retransmit",)
    description = "TCP retransmits by flow and socket state (eBPF tcp:tcp_retransmit_skb)"
    program = "tcpretrans.bpf.c"
    tracepoints = ("tcp:tcp_retransmit_skb",)
    event_rate_from = (("net_counters", "tcp_retrans_segs_per_s", 1.0),)
    cost_ns_per_event = 400.0  # a guess like drops': retransmits are too rare to measure

    def cflags(self, ctx: ProbeContext, formats: dict[str, EventFormat]) -> list[str]:
        fams = family_values(formats["tcp:tcp_retransmit_skb"])
        if "AF_INET6" not in fams:
            raise Unavailable("tcp:tcp_retransmit_skb's format has no family table; "
                              "this kernel's layout is not supported")
        return [f"-DFAMILY_INET6={fams['AF_INET6']}"]

    def read_maps(self, trace: Trace) -> dict[str, Any]:
        return {"rows": [(bytes(k.saddr), bytes(k.daddr), k.sport, k.dport, k.family, k.state,
                          v.value) for k, v in trace.bpf["retrans"].items()]}

    def build_facts(self, ctx: ProbeContext, readout: Readout) -> list[Fact]:
        fmt = readout.trace.formats["tcp:tcp_retransmit_skb"]
        return facts_from_rows(readout.data["rows"], readout.duration_s,
                               family_values(fmt).get("AF_INET6", 10), state_names(fmt))


def facts_from_rows(rows: list[tuple], window_s: float, af_inet6: int,
                    states: dict[int, str]) -> list[Fact]:
    out: list[Fact] = []
    for saddr, daddr, sport, dport, family, state, count in sorted(rows, key=lambda r: -r[-1]):
        v6 = family == af_inet6
        size = 16 if v6 else 4
        out.append(TcpRetransmit(
            source="bpf:tcp:tcp_retransmit_skb", family="ipv6" if v6 else "ipv4",
            saddr=str(ipaddress.ip_address(saddr[:size])),
            daddr=str(ipaddress.ip_address(daddr[:size])), sport=sport, dport=dport,
            state=states.get(state, str(state)), window_s=round(window_s, 3),
            retransmits_total=count,
            retransmits_per_s=round(count / window_s, 2) if window_s > 0 else None))
        if len(out) >= MAX_ROWS:
            break
    return out
