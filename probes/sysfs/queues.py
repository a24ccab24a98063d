"""RX/TX queues of each interface and their software steering: RPS, RFS, XPS, per-queue
rate caps, byte queue limits and transmit timeouts (KNOWLEDGE.md §2.4, §5.I).

/sys/class/net/IF/queues/rx-N/{rps_cpus,rps_flow_cnt}
/sys/class/net/IF/queues/tx-N/{xps_cpus,xps_rxqs,tx_maxrate,tx_timeout}
/sys/class/net/IF/queues/tx-N/byte_queue_limits/{limit,inflight,stall_cnt}
/proc/sys/net/core/rps_sock_flow_entries

CPU masks are hex in comma-separated 32-bit groups, most significant first
("00000000,00000003" = CPUs 0-1); all zero = off. Reading xps_cpus of a single-queue
device fails with ENOENT although the file is listed (XPS needs several TX queues), and
some drivers refuse tx_maxrate: such files are "not applicable", not errors.
sysfs shows the interfaces of the namespace it was mounted in only, so with --netns
or --pid naming another namespace this probe cannot see that namespace's queues.
"""
from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

from sysdiag.facts import Fact, NicQueues

from ..base import Probe, ProbeContext, ReadError, Unavailable, rate
from ..parse import ParseError
from ..procfs.interrupts import format_cpu_list
from ..registry import register_probe

_QUEUE = re.compile(r"(rx|tx)-(\d+)")
#: per-interface bound: a device can have hundreds of queues (one pair per CPU)
MAX_QUEUES = 4096


def parse_cpumask(text: str, source: str = "cpu mask") -> frozenset[int]:
    """A kernel hex CPU mask in 32-bit groups.

    >>> sorted(parse_cpumask("00000000,00000003"))
    [0, 1]
    >>> sorted(parse_cpumask("1,00000000"))
    [32]
    >>> parse_cpumask("0")
    frozenset()
    """
    value = text.strip()
    if not value:
        raise ParseError(source, "empty CPU mask")
    groups = value.split(",")
    bits = 0
    for group in groups:
        if not group or len(group) > 8 or not all(c in "0123456789abcdefABCDEF" for c in group):
            raise ParseError(source, f"expected a hex CPU mask in 32-bit groups "
                                     f"('00000000,00000003'), got {value[:60]!r}")
        bits = (bits << 32) | int(group, 16)
    return frozenset(i for i in range(bits.bit_length()) if bits >> i & 1)


@dataclass(frozen=True)
class QueueReading:
    """One interface's queues at one moment; None = file absent or not applicable."""

    ifname: str
    rx_queues: int
    tx_queues: int
    rps: tuple[frozenset[int], ...] = ()  # per RX queue that has rps_cpus
    rps_flow_cnt: tuple[int, ...] = ()
    xps: Optional[tuple[frozenset[int], ...]] = None
    xps_rxqs: Optional[tuple[frozenset[int], ...]] = None
    tx_maxrate: tuple[int, ...] = ()
    tx_timeout: Optional[int] = None  # summed over TX queues
    bql_limit: tuple[int, ...] = ()
    bql_inflight: tuple[int, ...] = ()
    bql_stall: Optional[int] = None


def _value(ctx: ProbeContext, path: Path) -> Optional[str]:
    """A sysfs attribute, stripped; None when absent or refused as not applicable."""
    try:
        text = ctx.read_optional(path)
    except OSError as err:
        # ENOENT from read(): xps_cpus on a single-queue device; EOPNOTSUPP/EINVAL: a
        # driver without the feature
        if err.errno in (errno.ENOENT, errno.EOPNOTSUPP, errno.EINVAL, errno.ENODEV) \
                and not isinstance(err, ReadError):
            return None
        raise
    return None if text is None else text.strip()


def _int(ctx: ProbeContext, path: Path) -> Optional[int]:
    text = _value(ctx, path)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ParseError(str(path), f"expected a number, got {text[:40]!r}") from None


def _mask(ctx: ProbeContext, path: Path) -> Optional[frozenset[int]]:
    text = _value(ctx, path)
    return None if text is None else parse_cpumask(text, str(path))


def _queues(names: list[str], kind: str) -> list[str]:
    found = [(int(m.group(2)), n) for n in names if (m := _QUEUE.fullmatch(n))
             and m.group(1) == kind]
    return [n for _, n in sorted(found)]


def read_queues(ctx: ProbeContext, ifname: str, base: Path) -> QueueReading:
    names = os.listdir(base)
    rx, tx = _queues(names, "rx"), _queues(names, "tx")
    rps, flows = [], []
    for queue in rx[:MAX_QUEUES]:
        mask = _mask(ctx, base / queue / "rps_cpus")
        if mask is not None:
            rps.append(mask)
        count = _int(ctx, base / queue / "rps_flow_cnt")
        if count is not None:
            flows.append(count)
    xps: list[frozenset[int]] = []
    xps_rxqs: list[frozenset[int]] = []
    maxrate, limits, inflight = [], [], []
    timeouts = stalls = None
    have_xps = have_rxqs = False
    for queue in tx[:MAX_QUEUES]:
        qdir = base / queue
        mask = _mask(ctx, qdir / "xps_cpus")
        if mask is not None:
            have_xps = True
            xps.append(mask)
        mask = _mask(ctx, qdir / "xps_rxqs")
        if mask is not None:
            have_rxqs = True
            xps_rxqs.append(mask)
        value = _int(ctx, qdir / "tx_maxrate")
        if value is not None:
            maxrate.append(value)
        value = _int(ctx, qdir / "tx_timeout")
        if value is not None:
            timeouts = (timeouts or 0) + value
        bql = qdir / "byte_queue_limits"
        for name, into in (("limit", limits), ("inflight", inflight)):
            value = _int(ctx, bql / name)
            if value is not None:
                into.append(value)
        value = _int(ctx, bql / "stall_cnt")  # 6.9+
        if value is not None:
            stalls = (stalls or 0) + value
    return QueueReading(
        ifname=ifname, rx_queues=len(rx), tx_queues=len(tx), rps=tuple(rps),
        rps_flow_cnt=tuple(flows), xps=tuple(xps) if have_xps else None,
        xps_rxqs=tuple(xps_rxqs) if have_rxqs else None, tx_maxrate=tuple(maxrate),
        tx_timeout=timeouts, bql_limit=tuple(limits), bql_inflight=tuple(inflight),
        bql_stall=stalls)


def queue_fact(source: str, now: QueueReading, before: Optional[QueueReading],
               elapsed_s: Optional[float], sock_flow_entries: Optional[int]) -> NicQueues:
    enabled = [m for m in now.rps if m]
    rps_cpus = frozenset().union(*enabled) if enabled else frozenset()
    flows = sum(now.rps_flow_cnt) if now.rps_flow_cnt else None
    rfs = None
    if sock_flow_entries is not None and flows is not None:
        rfs = sock_flow_entries > 0 and flows > 0
    capped = [r for r in now.tx_maxrate if r > 0]

    def per_s(name: str) -> Optional[float]:
        if before is None:
            return None
        value = rate(getattr(before, name), getattr(now, name), elapsed_s)
        return None if value is None else round(value, 3)

    return NicQueues(
        source=source, ifname=now.ifname, rx_queues=now.rx_queues, tx_queues=now.tx_queues,
        rps_enabled_queues=len(enabled),
        rps_cpus=format_cpu_list(rps_cpus) if rps_cpus else None,
        rps_cpu_count=len(rps_cpus), rps_flow_cnt_total=flows,
        rps_sock_flow_entries=sock_flow_entries, rfs_enabled=rfs,
        xps_enabled_queues=None if now.xps is None else sum(1 for m in now.xps if m),
        xps_rxqs_enabled_queues=None if now.xps_rxqs is None else
        sum(1 for m in now.xps_rxqs if m),
        tx_maxrate_mbps=max(capped) if capped else None, tx_maxrate_queues=len(capped),
        tx_timeout_total=now.tx_timeout, tx_timeout_per_s=per_s("tx_timeout"),
        bql_limit_min_bytes=min(now.bql_limit) if now.bql_limit else None,
        bql_inflight_bytes=sum(now.bql_inflight) if now.bql_inflight else None,
        bql_stall_total=now.bql_stall, bql_stall_per_s=per_s("bql_stall"))


@dataclass(frozen=True)
class QueuesSample:
    readings: Mapping[str, QueueReading] = field(default_factory=dict)
    sock_flow_entries: Optional[int] = None


@register_probe
class RpsXpsProbe(Probe):
    name = "rps-xps"
    provides = ("nic_queues",)
    description = ("per-interface RX/TX queues: RPS/RFS/XPS CPU masks, tx_maxrate, byte "
                   "queue limits and transmit timeouts (/sys/class/net/IF/queues)")

    def check(self, ctx: ProbeContext) -> None:
        super().check(ctx)
        if ctx.foreign_netns:
            raise Unavailable(f"sysfs shows only sysdiag's own network namespace, not "
                              f"{ctx.netns_label}; its queue settings cannot be read "
                              "without mounting sysfs inside it")

    def sample(self, ctx: ProbeContext) -> QueuesSample:
        class_net = ctx.sys("class", "net")
        if not os.path.isdir(class_net):
            raise FileNotFoundError(errno.ENOENT, "no network interfaces in sysfs",
                                    str(class_net))
        readings = {}
        missing = []
        for ifname in sorted(os.listdir(class_net)):
            if not ctx.wants_iface(ifname):
                continue
            base = class_net / ifname / "queues"
            if not os.path.isdir(base):
                missing.append(ifname)
                continue
            ctx.check_inside_root(base)
            readings[ifname] = read_queues(ctx, ifname, base)
        if missing:
            self.warn(f"{class_net}: no queues/ directory for {', '.join(missing[:10])}; "
                      "their queue settings are unknown")
        path = ctx.proc("sys", "net", "core", "rps_sock_flow_entries")
        entries = _int(ctx, path)
        return QueuesSample(readings, entries)

    def facts(self, ctx: ProbeContext, first: Optional[QueuesSample], last: QueuesSample,
              elapsed_s: Optional[float]) -> list[Fact]:
        before = first.readings if first else {}
        return [queue_fact(str(ctx.sys("class", "net", name, "queues")), reading,
                           before.get(name), elapsed_s, last.sock_flow_entries)
                for name, reading in sorted(last.readings.items())]
