"""Kernel log signatures (KNOWLEDGE.md §3) as a table.

Each signature has an id (what `KernelLogEvent.signature` says), a regex
(matched case-insensitively against the message, first match in table order
wins), and which field gives the event's subject. Named groups fill the fact:
`pid`, `comm`, `device`, `cgroup`, `constraint`, `order`, `subject`; a suffix
after "_" (`device_b`) lets alternatives of one regex fill the same field.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

IFACE = r"[A-Za-z][\w.@-]*"
DEV = r"[\w.:-]+"


@dataclass(frozen=True)
class Signature:
    id: str
    regex: re.Pattern[str]
    #: field that names the subject (first one present wins), else "-"
    subject: tuple[str, ...] = ()


def _sig(id: str, pattern: str, *subject: str) -> Signature:
    return Signature(id, re.compile(pattern, re.IGNORECASE), subject)


# Order matters where lines overlap: memcg before global OOM; the thermal line
# carries an "mce:" prefix on some kernels.
SIGNATURES: tuple[Signature, ...] = (
    _sig("memcg-oom-kill",
         r"Memory cgroup out of memory: Kill(?:ed)? process (?P<pid>\d+) \((?P<comm>.*?)\)",
         "cgroup", "comm"),
    _sig("oom-kill",
         r"Out of memory(?: \([^)]*\))?: Kill(?:ed)? process (?P<pid>\d+) \((?P<comm>.*?)\)",
         "comm"),
    _sig("oom-invoked",
         r"^(?P<comm>.+?) invoked oom-killer: gfp_mask=\S+, order=(?P<order>-?\d+)", "comm"),
    _sig("hung-task",
         r"INFO: task (?P<comm>.+):(?P<pid>\d+) blocked for more than \d+ seconds", "pid"),
    _sig("soft-lockup",
         r"BUG: soft lockup - CPU#(?P<subject>\d+) stuck for \d+s!(?: \[(?P<comm>.+):(?P<pid>\d+)\])?",
         "subject"),
    _sig("rcu-stall", r"INFO: rcu_\w+ (?:self-)?detected stalls?"),
    _sig("hard-lockup", r"Watchdog detected hard LOCKUP on cpu (?P<subject>\d+)", "subject"),
    _sig("rt-throttling", r"sched: RT throttling activated"),
    _sig("thermal-throttle",
         r"(?:CPU(?P<subject>\d+): )?(?:Core |Package )?temperature (?:is )?above threshold, "
         r"cpu clock (?:is )?throttled", "subject"),
    _sig("mce",
         r"mce: \[Hardware Error\]|Machine check events logged"
         r"|EDAC (?P<device>\w+): .*\b(?-i:CE|UE)\b", "device"),
    _sig("clocksource-unstable",
         r"Marking clocksource '(?P<subject>[\w-]+)' as unstable|Marking (?P<subject_b>TSC) unstable",
         "subject"),
    _sig("segfault",
         r"^(?P<comm>.+?)\[(?P<pid>\d+)\]: segfault at [0-9a-f]+ ip \S+ sp \S+ error [0-9a-f]+"
         r"|^traps: (?P<comm_b>.+?)\[(?P<pid_b>\d+)\] general protection fault", "comm"),
    _sig("pids-fork-rejected", r"fork rejected by pids controller(?: in (?P<cgroup>\S+))?",
         "cgroup"),
    _sig("file-max", r"VFS: file-max limit \d+ reached"),
    _sig("io-error",
         r"I/O error, dev (?P<device>[\w.-]+), sector|Buffer I/O error on dev(?:ice)? (?P<device_b>[\w.-]+)"
         r"|blk_update_request: .*?\bdev (?P<device_c>[\w.-]+)", "device"),
    _sig("ata-nvme-error",
         r"(?P<device>ata\d+(?:\.\d+)?): (?:exception Emask|hard resetting link)"
         r"|(?P<device_b>nvme\d+)(?:n\d+)?: .*?(?:timeout, abort|reset controller)"
         r"|\[(?P<device_c>\w+)\].*FAILED Result|FAILED Result", "device"),
    _sig("fs-error",
         r"EXT4-fs error \(device (?P<device>[\w.-]+)\)"
         r"|EXT4-fs \((?P<device_b>[\w.-]+)\): Remounting filesystem read-only"
         r"|XFS \((?P<device_c>[\w.-]+)\): .*(?:Corruption|metadata I/O error)"
         r"|BTRFS.*?\(device (?P<device_d>[\w.-]+).*forced readonly"
         r"|Remounting filesystem read-only|BTRFS.*forced readonly", "device"),
    _sig("nfs-not-responding", r"nfs: server (?P<subject>\S+) not responding", "subject"),
    _sig("conntrack-full", r"nf_conntrack: (?:nf_conntrack: )?table full, dropping packet"),
    _sig("syn-flood", r"Possible SYN flooding on port (?P<subject>\S+?)\.? (?:Sending cookies|Dropping request)",
         "subject"),
    _sig("tcp-oom", r"TCP: out of memory -- consider tuning tcp_mem|too many orphaned sockets"),
    _sig("neigh-overflow",
         r"neighbour: (?P<subject>arp_cache|ndisc_cache): neighbor table overflow"
         r"|neighbour table overflow", "subject"),
    _sig("netdev-watchdog",
         rf"(?:(?P<device>{IFACE}): )?NETDEV WATCHDOG: (?:CPU: \d+: |(?P<device_b>{IFACE})"
         r"(?: \([^)]*\))?: )?transmit queue \d+ timed out", "device"),
    _sig("link-down",
         rf"(?P<device>{IFACE}): (?:\S+: {IFACE} )?(?:NIC )?Link is Down"
         rf"|link status definitely down for interface (?P<device_b>{IFACE})"
         rf"|(?P<device_c>{IFACE}): carrier lost|Link is Down", "device"),
    _sig("nic-hang",
         rf"(?:(?P<device>{IFACE}): )?(?:Detected Tx Unit Hang|tx hang|reset adapter|hw csum failure)",
         "device"),
    _sig("page-alloc-failure",
         r"^(?P<comm>.+?): page allocation failure: order:(?P<order>\d+)", "order"),
    _sig("audit-backlog",
         r"audit: backlog limit exceeded|audit_lost=\d+|audit_backlog=\d+ > audit_backlog_limit"),
    _sig("martian", rf"martian (?:source|destination) .*?on dev (?P<device>{IFACE})", "device"),
    _sig("kernel-warn",
         r"WARNING: CPU: \d+ PID: (?P<pid>\d+) at (?P<subject>\S+)|BUG: unable to handle"
         r"|BUG: kernel NULL pointer dereference|kernel BUG at (?P<subject_b>\S+)|Oops:",
         "subject"),
)

#: the line printed just before an OOM kill, naming constraint and cgroups
_OOM_CONTEXT = re.compile(r"oom-kill:(?P<fields>constraint=.*)")
_KEY_VALUE = re.compile(r"(\w+)=([^,]*)")
EXAMPLE_CHARS = 300


@dataclass(frozen=True)
class Match:
    signature: str
    subject: str
    pid: Optional[int] = None
    comm: Optional[str] = None
    device: Optional[str] = None
    cgroup: Optional[str] = None
    constraint: Optional[str] = None
    order: Optional[int] = None


def parse_oom_context(message: str) -> Optional[dict[str, str]]:
    """The "oom-kill:constraint=CONSTRAINT_MEMCG,...,oom_memcg=/x,task_memcg=/x,task=a,pid=1,uid=0"
    line as a dict, or None for any other line."""
    m = _OOM_CONTEXT.search(message)
    if not m:
        return None
    return dict(_KEY_VALUE.findall(m.group("fields")))


def match_message(message: str) -> Optional[Match]:
    """The first signature the message matches, with the fields its groups give."""
    for sig in SIGNATURES:
        m = sig.regex.search(message)
        if not m:
            continue
        values: dict[str, str] = {}
        for group, value in m.groupdict().items():
            if value is not None:
                values.setdefault(group.split("_", 1)[0], value)
        subject = next((values[f] for f in sig.subject if values.get(f)), "-")
        if "order" in sig.subject and "order" in values:
            subject = f"order:{values['order']}"
        return Match(
            signature=sig.id, subject=subject.strip(),
            pid=int(values["pid"]) if "pid" in values else None, comm=values.get("comm"),
            device=values.get("device"), cgroup=values.get("cgroup"),
            constraint=values.get("constraint"),
            order=int(values["order"]) if "order" in values else None)
    return None
