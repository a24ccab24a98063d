"""Packet drops by reason and kernel location (drops.bpf.c on skb:kfree_skb).

The reason names come from the running kernel's tracepoint format (the enum changes
between kernels); the location is the function that freed the packet. A reason that
names netfilter, the qdisc or the socket tells apart hypotheses whose counters look
alike (KNOWLEDGE.md §6).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from sysdiag.facts import Fact, SkbDrop

from ..base import ProbeContext
from ..registry import register_probe
from .base import Readout, TracingProbe, Trace
from .tracefs import EventFormat, symbolic_table

#: the most (reason, location, protocol) rows reported, busiest first
MAX_ROWS = 50

#: ethertypes by number (IEEE-assigned, not a kernel enum)
ETHERTYPES = {0x0800: "ipv4", 0x86DD: "ipv6", 0x0806: "arp", 0x8100: "vlan", 0x88CC: "lldp"}


def reason_names(fmt: EventFormat) -> dict[int, str]:
    """enum skb_drop_reason value -> name, from this kernel's kfree_skb format."""
    return symbolic_table(fmt.print_fmt, "reason")


def protocol_name(ethertype: int) -> str:
    """Ethertype of the packet (the tracepoint stores it already in host order).

    >>> protocol_name(0x0800), protocol_name(0x88F7)
    ('ipv4', '0x88f7')
    """
    return ETHERTYPES.get(ethertype, f"{ethertype:#06x}")


@register_probe
class DropsProbe(TracingProbe):
    name = "ebpf-drops"
    provides = ("skb_drop",)
    description = "dropped packets by drop reason and kernel location (eBPF skb:kfree_skb)"
    program = "drops.bpf.c"
    tracepoints = ("skb:kfree_skb",)
    # runs per dropped packet only (normal frees go through consume_skb): the drop
    # counters of the cheap probes bound the rate (from below: not every drop is counted)
    event_rate_from = (("net_link", "rx_dropped_per_s", 1.0), ("net_link", "tx_dropped_per_s", 1.0),
                       ("softnet", "dropped_per_s", 1.0), ("qdisc", "dropped_per_s", 1.0),
                       ("net_counters", "udp_in_errors_per_s", 1.0),
                       ("net_counters", "udp_no_ports_per_s", 1.0),
                       ("net_counters", "ip_in_discards_per_s", 1.0),
                       ("net_counters", "tcpext_listen_drops_per_s", 1.0))
    cost_ns_per_event = 200.0  # bench_ebpf.py: ~3.5 % extra CPU at 200k drops/s

    def cflags(self, ctx: ProbeContext, formats: dict[str, EventFormat]) -> list[str]:
        return ["-DHAS_REASON=1"] if "reason" in formats["skb:kfree_skb"].fields else []

    def read_maps(self, trace: Trace) -> dict[str, Any]:
        return {"rows": [(k.reason, k.location, k.protocol, v.value)
                         for k, v in trace.bpf["drops"].items()]}

    def build_facts(self, ctx: ProbeContext, readout: Readout) -> list[Fact]:
        fmt = readout.trace.formats["skb:kfree_skb"]
        names = reason_names(fmt) if "reason" in fmt.fields else None
        bpf = readout.trace.bpf
        return facts_from_rows(readout.data["rows"], readout.duration_s, names,
                               lambda addr: bpf.ksym(addr).decode(errors="replace"))


def facts_from_rows(rows: list[tuple[int, int, int, int]], window_s: float,
                    names: Optional[dict[int, str]], ksym: Callable[[int], str]) -> list[Fact]:
    merged: dict[tuple[str, Optional[int], str, str], int] = {}
    for reason, location, protocol, count in rows:
        if names is None:
            name, code = "NOT_REPORTED", None
        else:
            name, code = names.get(reason, f"UNKNOWN_{reason}"), reason
        key = (name, code, ksym(location) if location else "unknown", protocol_name(protocol))
        merged[key] = merged.get(key, 0) + count
    ranked = sorted(merged.items(), key=lambda kv: -kv[1])[:MAX_ROWS]
    return [SkbDrop(source="bpf:skb:kfree_skb", reason=name, reason_code=code, location=loc,
                    protocol=proto, window_s=round(window_s, 3), drops_total=count,
                    drops_per_s=round(count / window_s, 2) if window_s > 0 else None)
            for (name, code, loc, proto), count in ranked]
