"""Kernel log signatures (KNOWLEDGE.md §3) as a table.

Each signature has
- an id (what `KernelLogEvent.signature` says);
- keywords: lower-case literals, one of which every matching line contains. They
  make a cheap prefilter: most log lines match nothing, and 29 regex searches
  cost ~25 µs a line against ~3 µs for the prefilter;
- a regex, matched case-insensitively against the message (the first match in
  table order wins); named groups fill the fact: `pid`, `comm`, `device`,
  `cgroup`, `constraint`, `order`, `subject`, and a suffix after "_"
  (`device_b`) lets alternatives of one regex fill the same field;
- which field gives the event's subject.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

IFACE = r"[A-Za-z][\w.@-]*"


@dataclass(frozen=True)
class Signature:
    id: str
    keywords: tuple[str, ...]
    regex: re.Pattern[str]
    #: field that names the subject (first one present wins), else "-"
    subject: tuple[str, ...] = ()


def _sig(id: str, keywords: str | tuple[str, ...], pattern: str, *subject: str) -> Signature:
    if isinstance(keywords, str):
        keywords = (keywords,)
    return Signature(id, keywords, re.compile(pattern, re.IGNORECASE), subject)


# Order matters where lines overlap: memcg before global OOM; thermal before mce
# (the thermal line carries an "mce:" prefix on some kernels).
SIGNATURES: tuple[Signature, ...] = (
    # memory
    _sig("memcg-oom-kill", "memory cgroup out of memory",
         r"Memory cgroup out of memory: Kill(?:ed)? process (?P<pid>\d+) \((?P<comm>.*?)\)",
         "cgroup", "comm"),
    _sig("oom-kill", "out of memory",
         r"Out of memory(?: \([^)]*\))?: Kill(?:ed)? process (?P<pid>\d+) \((?P<comm>.*?)\)",
         "comm"),
    _sig("oom-invoked", "invoked oom-killer",
         r"^(?P<comm>.+?) invoked oom-killer: gfp_mask=\S+, order=(?P<order>-?\d+)", "comm"),
    _sig("page-alloc-failure", "page allocation failure",
         r"^(?P<comm>.+?): page allocation failure: order:(?P<order>\d+)", "order"),
    # CPU, scheduler, hardware
    _sig("hung-task", "blocked for more than",
         r"INFO: task (?P<comm>.+):(?P<pid>\d+) blocked for more than \d+ seconds", "pid"),
    _sig("soft-lockup", "soft lockup",
         r"BUG: soft lockup - CPU#(?P<subject>\d+) stuck for \d+s!"
         r"(?: \[(?P<comm>.+):(?P<pid>\d+)\])?", "subject"),
    _sig("rcu-stall", "detected stall", r"INFO: rcu_\w+ (?:self-)?detected stalls?"),
    _sig("hard-lockup", "hard lockup",
         r"Watchdog detected hard LOCKUP on cpu (?P<subject>\d+)", "subject"),
    _sig("rt-throttling", "rt throttling", r"sched: RT throttling activated"),
    _sig("thermal-throttle", "above threshold",
         r"(?:CPU(?P<subject>\d+): )?(?:Core |Package )?temperature (?:is )?above threshold, "
         r"cpu clock (?:is )?throttled", "subject"),
    _sig("mce", ("hardware error", "machine check", "edac"),
         r"mce: \[Hardware Error\]|Machine check events logged"
         r"|EDAC (?P<device>\w+): .*\b(?-i:CE|UE)\b", "device"),
    _sig("clocksource-unstable", "unstable",
         r"Marking clocksource '(?P<subject>[\w-]+)' as unstable"
         r"|Marking (?P<subject_b>TSC) unstable", "subject"),
    _sig("kernel-warn",
         ("warning: cpu:", "bug: unable to handle", "null pointer dereference", "kernel bug at",
          "oops:"),
         r"WARNING: CPU: \d+ PID: (?P<pid>\d+) at (?P<subject>\S+)|BUG: unable to handle"
         r"|BUG: kernel NULL pointer dereference|kernel BUG at (?P<subject_b>\S+)|Oops:",
         "subject"),
    # processes and limits
    _sig("segfault", ("segfault", "general protection"),
         r"^(?P<comm>.+?)\[(?P<pid>\d+)\]: segfault at [0-9a-f]+ ip \S+ sp \S+ error [0-9a-f]+"
         r"|^traps: (?P<comm_b>.+?)\[(?P<pid_b>\d+)\] general protection fault", "comm"),
    _sig("pids-fork-rejected", "fork rejected",
         r"fork rejected by pids controller(?: in (?P<cgroup>\S+))?", "cgroup"),
    _sig("file-max", "file-max", r"VFS: file-max limit \d+ reached"),
    _sig("audit-backlog", ("backlog limit exceeded", "audit_lost=", "audit_backlog="),
         r"audit: backlog limit exceeded|audit_lost=\d+|audit_backlog=\d+ > audit_backlog_limit"),
    # storage
    _sig("io-error", ("i/o error", "blk_update_request"),
         r"I/O error, dev (?P<device>[\w.-]+), sector"
         r"|Buffer I/O error on dev(?:ice)? (?P<device_b>[\w.-]+)"
         r"|blk_update_request: .*?\bdev (?P<device_c>[\w.-]+)", "device"),
    _sig("ata-nvme-error",
         ("exception emask", "hard resetting link", "timeout, abort", "reset controller",
          "failed result"),
         r"(?P<device>ata\d+(?:\.\d+)?): (?:exception Emask|hard resetting link)"
         r"|(?P<device_b>nvme\d+)(?:n\d+)?: .*?(?:timeout, abort|reset controller)"
         r"|\[(?P<device_c>\w+)\].*FAILED Result|FAILED Result", "device"),
    _sig("fs-error",
         ("ext4-fs error", "read-only", "corruption", "metadata i/o error", "forced readonly"),
         r"EXT4-fs error \(device (?P<device>[\w.-]+)\)"
         r"|EXT4-fs \((?P<device_b>[\w.-]+)\): Remounting filesystem read-only"
         r"|XFS \((?P<device_c>[\w.-]+)\): .*(?:Corruption|metadata I/O error)"
         r"|BTRFS.*?\(device (?P<device_d>[\w.-]+).*forced readonly"
         r"|Remounting filesystem read-only|BTRFS.*forced readonly", "device"),
    _sig("nfs-not-responding", "not responding",
         r"nfs: server (?P<subject>\S+) not responding", "subject"),
    # network
    _sig("conntrack-full", "table full",
         # 6.18 names the netns: "nf_conntrack: table full in netns 4026532596, dropping packet"
         r"nf_conntrack: (?:nf_conntrack: )?table full(?: in netns (?P<subject>[0-9]+))?, "
         r"dropping packet", "subject"),
    _sig("syn-flood", "syn flooding",
         r"Possible SYN flooding on port (?P<subject>\S+?)\.? (?:Sending cookies|Dropping request)",
         "subject"),
    _sig("tcp-oom", ("tcp_mem", "orphaned sockets"),
         r"TCP: out of memory -- consider tuning tcp_mem|too many orphaned sockets"),
    _sig("neigh-overflow", "table overflow",
         r"neighbour: (?P<subject>arp_cache|ndisc_cache): neighbor table overflow"
         r"|neighbour table overflow", "subject"),
    _sig("netdev-watchdog", "netdev watchdog",
         rf"(?:(?P<device>{IFACE}): )?NETDEV WATCHDOG: (?:CPU: \d+: |(?P<device_b>{IFACE})"
         r"(?: \([^)]*\))?: )?transmit queue \d+ timed out", "device"),
    _sig("link-down", ("link is down", "definitely down", "carrier lost"),
         rf"(?P<device>{IFACE}): (?:\S+: {IFACE} )?(?:NIC )?Link is Down"
         rf"|link status definitely down for interface (?P<device_b>{IFACE})"
         rf"|(?P<device_c>{IFACE}): carrier lost|Link is Down", "device"),
    _sig("nic-hang", ("tx unit hang", "tx hang", "reset adapter", "hw csum failure"),
         rf"(?:(?P<device>{IFACE}): )?"
         r"(?:Detected Tx Unit Hang|tx hang|reset adapter|hw csum failure)", "device"),
    _sig("martian", "martian",
         rf"martian (?:source|destination) .*?on dev (?P<device>{IFACE})", "device"),
)

#: the line printed just before an OOM kill, naming constraint and cgroups
_OOM_CONTEXT = re.compile(r"oom-kill:(?P<fields>constraint=.*)")
_KEY_VALUE = re.compile(r"(\w+)=([^,]*)")
#: the same line in the full format of mm/oom_kill.c dump_oom_summary() (since 4.19, as on 6.18):
#: "...,mems_allowed=0,oom_memcg=/x,task_memcg=/x/y,task=comm,pid=1,uid=0" for a memcg
#: OOM, "global_oom" instead of oom_memcg= otherwise. Cgroup paths and comm may hold
#: commas, so the cgroups are cut at the next known key and the tail is anchored.
_OOM_CONTEXT_FULL = re.compile(
    r"oom-kill:constraint=(?P<constraint>\w+),nodemask=(?P<nodemask>\(null\)|[\d,-]*)"
    r"(?:,cpuset=(?P<cpuset>.*?),mems_allowed=(?P<mems_allowed>[\d,-]*))?"  # CONFIG_CPUSETS
    r"(?:,oom_memcg=(?P<oom_memcg>.*?)|,(?P<global_oom>global_oom))?"
    r"(?:,task_memcg=(?P<task_memcg>.*?))?"
    r",task=(?P<task>.*),pid=(?P<pid>\d+),uid=(?P<uid>-?\d+)\s*$")
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
    if "oom-kill:" not in message:
        return None
    full = _OOM_CONTEXT_FULL.search(message)
    if full:
        return {k: v for k, v in full.groupdict().items() if v is not None}
    # another or a cut-off format (pr_cont pieces can land in separate records)
    m = _OOM_CONTEXT.search(message)
    if not m:
        return None
    return dict(_KEY_VALUE.findall(m.group("fields")))


# matched against the lower-cased message: a case-sensitive alternation of literals is
# several times faster in `re` than the same with IGNORECASE
_PREFILTER = re.compile("|".join(re.escape(k) for sig in SIGNATURES for k in sig.keywords))


def match_message(message: str) -> Optional[Match]:
    """The first signature the message matches, with the fields its groups give."""
    lower = message.lower()
    if not _PREFILTER.search(lower):
        return None
    for sig in SIGNATURES:
        if not any(k in lower for k in sig.keywords):
            continue
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
