"""Kernel tunables the rules compare against, read from /proc/sys (never by running `sysctl`).

One NetSysctl fact with an explicit field per tunable, and one IfaceSysctl fact per
interface under /proc/sys/net/ipv4/conf. A file that is missing leaves its field None
(the feature is absent: net.bridge.* exists only with br_netfilter; netdev_*,
rps_sock_flow_entries and default_qdisc exist only in the initial network namespace,
and so did rmem_max/wmem_max before 6.x). A
file that cannot be parsed leaves its field None and is reported as a warning, so
one odd value does not hide the other forty.

The kernel applies the larger of conf.all and conf.IF for rp_filter and arp_ignore,
and either of them for log_martians and arp_filter (IN_DEV_MAXCONF / IN_DEV_ORCONF in
include/linux/inetdevice.h): the IfaceSysctl facts carry those effective values.
"""
from __future__ import annotations

import os
from typing import Callable, Mapping, Optional

from sysdiag.facts import Fact, IfaceSysctl, NetSysctl

from ..base import Probe, ProbeContext, Unavailable
from ..parse import SYSCTL_BYTES, ParseError, to_int
from ..registry import register_probe

#: interfaces read from /proc/sys/net/ipv4/conf (four small files each)
MAX_IFACES = 1000
IFACE_KNOBS = ("rp_filter", "log_martians", "arp_ignore", "arp_filter")
#: how conf.all and conf.IF combine into the value the kernel applies
COMBINE: dict[str, Callable[[int, int], int]] = {
    "rp_filter": max, "arp_ignore": max,
    "log_martians": lambda a, b: int(bool(a) or bool(b)),
    "arp_filter": lambda a, b: int(bool(a) or bool(b)),
}


def parse_int(text: str, source: str) -> int:
    """A one-number file.

    >>> parse_int("4096\\n", "net/core/somaxconn")
    4096
    """
    fields = text.split()
    if len(fields) != 1:
        raise ParseError(source, f"expected one integer, got {text.strip()[:60]!r}")
    return to_int(fields[0], source, "value")


def parse_ints(text: str, source: str, count: int) -> list[int]:
    """A file of `count` whitespace-separated integers (tcp_rmem, printk, port range).

    >>> parse_ints("4096\\t131072\\t6291456\\n", "net/ipv4/tcp_rmem", 3)
    [4096, 131072, 6291456]
    """
    fields = text.split()
    if len(fields) != count:
        raise ParseError(source, f"expected {count} integers, got {text.strip()[:60]!r}")
    return [to_int(f, source, f"value {i + 1}") for i, f in enumerate(fields)]


def parse_word(text: str, source: str) -> str:
    """A one-word file (default_qdisc).

    >>> parse_word("fq_codel\\n", "net/core/default_qdisc")
    'fq_codel'
    """
    fields = text.split()
    if len(fields) != 1:
        raise ParseError(source, f"expected one word, got {text.strip()[:60]!r}")
    return fields[0]


def _int(field: str) -> Callable[[str, str], dict[str, object]]:
    return lambda text, source: {field: parse_int(text, source)}


def _nth(field: str, count: int, index: int) -> Callable[[str, str], dict[str, object]]:
    return lambda text, source: {field: parse_ints(text, source, count)[index]}


def _port_range(text: str, source: str) -> dict[str, object]:
    low, high = parse_ints(text, source, 2)
    if high < low:
        raise ParseError(source, f"port range {low}-{high} runs backwards")
    return {"ip_local_port_range_low": low, "ip_local_port_range_high": high,
            "ip_local_port_range_size": high - low + 1}


#: /proc/sys path -> how it becomes NetSysctl fields
TUNABLES: dict[str, Callable[[str, str], dict[str, object]]] = {
    "net/core/somaxconn": _int("somaxconn"),
    "net/core/netdev_max_backlog": _int("netdev_max_backlog"),
    "net/core/netdev_budget": _int("netdev_budget"),
    "net/core/netdev_budget_usecs": _int("netdev_budget_usecs"),
    "net/core/rmem_max": _int("rmem_max_bytes"),
    "net/core/wmem_max": _int("wmem_max_bytes"),
    "net/core/rps_sock_flow_entries": _int("rps_sock_flow_entries"),
    "net/core/default_qdisc": lambda t, s: {"default_qdisc": parse_word(t, s)},
    "net/ipv4/tcp_syncookies": _int("tcp_syncookies"),
    "net/ipv4/tcp_max_syn_backlog": _int("tcp_max_syn_backlog"),
    "net/ipv4/ip_local_port_range": _port_range,
    "net/ipv4/tcp_tw_reuse": _int("tcp_tw_reuse"),
    "net/ipv4/tcp_rmem": _nth("tcp_rmem_max_bytes", 3, 2),
    "net/ipv4/tcp_wmem": _nth("tcp_wmem_max_bytes", 3, 2),
    "net/ipv4/tcp_window_scaling": _int("tcp_window_scaling"),
    "net/ipv4/tcp_abort_on_overflow": _int("tcp_abort_on_overflow"),
    "net/ipv4/ipfrag_high_thresh": _int("ipfrag_high_thresh_bytes"),
    "net/ipv4/tcp_mtu_probing": _int("tcp_mtu_probing"),
    "net/ipv4/conf/all/rp_filter": _int("rp_filter_all"),
    "net/bridge/bridge-nf-call-iptables": _int("bridge_nf_call_iptables"),
    "kernel/pid_max": _int("pid_max"),
    "kernel/threads-max": _int("threads_max"),
    "kernel/printk": _nth("printk_console_level", 4, 0),
    "kernel/hung_task_timeout_secs": _int("hung_task_timeout_s"),
    "kernel/hung_task_warnings": _int("hung_task_warnings"),
    "kernel/hung_task_detect_count": _int("hung_task_detect_count"),
    "kernel/sched_rt_runtime_us": _int("sched_rt_runtime_us"),
    "kernel/tainted": _int("tainted"),
    "vm/overcommit_memory": _int("overcommit_memory"),
    "vm/overcommit_ratio": _int("overcommit_ratio"),
    "vm/max_map_count": _int("max_map_count"),
    "vm/swappiness": _int("swappiness"),
    "vm/dirty_ratio": _int("dirty_ratio"),
    "vm/dirty_background_ratio": _int("dirty_background_ratio"),
    "vm/dirty_bytes": _int("dirty_bytes"),
    "vm/dirty_background_bytes": _int("dirty_background_bytes"),
    "vm/zone_reclaim_mode": _int("zone_reclaim_mode"),
    "vm/min_free_kbytes": _int("min_free_kbytes"),
    "vm/watermark_scale_factor": _int("watermark_scale_factor"),
    "fs/file-max": _int("file_max"),
    "fs/nr_open": _int("nr_open"),
    "fs/inotify/max_user_instances": _int("inotify_max_user_instances"),
    "fs/inotify/max_user_watches": _int("inotify_max_user_watches"),
}


def parse_tunables(files: Mapping[str, Optional[str]],
                   source_root: str = "/proc/sys") -> tuple[dict[str, object], list[str]]:
    """NetSysctl field values from {path under /proc/sys: text or None when missing},
    and the problems found (one message per file that could not be parsed).

    >>> parse_tunables({"net/ipv4/ip_local_port_range": "32768\\t60999\\n",
    ...                 "vm/swappiness": "sixty"})[0]
    {'ip_local_port_range_low': 32768, 'ip_local_port_range_high': 60999, \
'ip_local_port_range_size': 28232}
    """
    values: dict[str, object] = {}
    problems = []
    for rel, text in files.items():
        parse = TUNABLES.get(rel)
        if parse is None or text is None:
            continue
        try:
            values.update(parse(text, f"{source_root}/{rel}"))
        except ParseError as err:
            problems.append(str(err))
    return values, problems


def iface_values(all_conf: Mapping[str, Optional[int]],
                 iface: Mapping[str, Optional[int]]) -> dict[str, Optional[int]]:
    """IfaceSysctl fields from conf.all and conf.IF values: each knob and its effective value.

    >>> iface_values({"rp_filter": 2}, {"rp_filter": 1})["rp_filter_effective"]
    2
    """
    out: dict[str, Optional[int]] = {}
    for knob in IFACE_KNOBS:
        mine, overall = iface.get(knob), all_conf.get(knob)
        out[knob] = mine
        out[f"{knob}_effective"] = (None if mine is None or overall is None
                                    else COMBINE[knob](overall, mine))
    return out


@register_probe
class SysctlProbe(Probe):
    name = "sysctl"
    provides = ("sysctl", "iface_sysctl")
    description = ("kernel tunables the rules compare against (net.core, net.ipv4, kernel, vm, "
                   "fs) and per-interface rp_filter/ARP settings, from /proc/sys")
    sampled = False
    netns_scoped = True  # net.* values are per network namespace

    def _read(self, ctx: ProbeContext, rel: str) -> Optional[str]:
        path = ctx.proc("sys", *rel.split("/"))
        try:
            return ctx.read_text(path, SYSCTL_BYTES)
        except FileNotFoundError:
            return None
        except PermissionError:  # a few files are root-only on some kernels
            self.warn(f"{path}: permission denied (run as root to read it)")
            return None

    def sample(self, ctx: ProbeContext) -> tuple[dict[str, object], dict[str, dict]]:
        if not os.path.isdir(ctx.proc("sys")):
            raise Unavailable(f"{ctx.proc('sys')} does not exist (no /proc/sys in this tree)")
        files = {rel: self._read(ctx, rel) for rel in TUNABLES}
        values, problems = parse_tunables(files, str(ctx.proc("sys")))
        for problem in problems:
            self.warn(problem)
        return values, self._ifaces(ctx)

    def _ifaces(self, ctx: ProbeContext) -> dict[str, dict]:
        conf = ctx.proc("sys", "net", "ipv4", "conf")
        try:
            names = sorted(os.listdir(conf))
        except FileNotFoundError:
            return {}
        names = [n for n in names  # --iface keeps "all" and its own
                 if n != "default" and (n == "all" or ctx.wants_iface(n))]
        if len(names) > MAX_IFACES + 1:
            self.warn(f"{conf}: {len(names) - 1} interfaces, only the first {MAX_IFACES} read")
            names = ["all", *[n for n in names if n != "all"][:MAX_IFACES]]
        out = {}
        for name in names:
            knobs: dict[str, Optional[int]] = {}
            for knob in IFACE_KNOBS:
                text = self._read(ctx, f"net/ipv4/conf/{name}/{knob}")
                if text is None:
                    knobs[knob] = None
                    continue
                try:
                    knobs[knob] = parse_int(text, str(conf / name / knob))
                except ParseError as err:
                    self.warn(str(err))
                    knobs[knob] = None
            out[name] = knobs
        return out

    def facts(self, ctx: ProbeContext, first: object,
              last: tuple[dict[str, object], dict[str, dict]],
              elapsed_s: Optional[float]) -> list[Fact]:
        values, ifaces = last
        out: list[Fact] = [NetSysctl(source=str(ctx.proc("sys")), **values)]  # type: ignore[arg-type]
        all_conf = ifaces.get("all", {})
        conf = ctx.proc("sys", "net", "ipv4", "conf")
        for name, knobs in sorted(ifaces.items()):
            if name == "all":
                continue
            out.append(IfaceSysctl(source=str(conf / name), ifname=name,
                                   **iface_values(all_conf, knobs)))
        return out
