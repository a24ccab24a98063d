from __future__ import annotations

import errno
import os

import pytest

from sysdiag.probes.base import Unavailable
from sysdiag.probes.klog.kmsg import (KmsgProbe, LogRecord, group_events, parse_dmesg_line,
                                      parse_kmsg_record, read_kmsg, read_records)
from sysdiag.probes.klog.signatures import SIGNATURES, match_message, parse_oom_context
from sysdiag.probes.parse import ParseError

from probe_helpers import run_one

#: (line, signature, subject, extra fields); real-format lines from kernel sources and logs
LINES = [
    ("Out of memory: Killed process 1234 (stress-ng) total-vm:1066496kB, anon-rss:1015412kB, "
     "file-rss:4kB, shmem-rss:0kB, UID:0 pgtables:2036kB oom_score_adj:0",
     "oom-kill", "stress-ng", {"pid": 1234, "comm": "stress-ng"}),
    ("Out of memory: Kill process 881 (java) score 901 or sacrifice child",
     "oom-kill", "java", {"pid": 881}),
    ("Memory cgroup out of memory: Killed process 4321 (python3) total-vm:25412kB, "
     "anon-rss:10240kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:60kB oom_score_adj:0",
     "memcg-oom-kill", "python3", {"pid": 4321}),
    ("stress-ng invoked oom-killer: gfp_mask=0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO), "
     "order=0, oom_score_adj=0", "oom-invoked", "stress-ng", {"order": 0}),
    ("INFO: task jbd2/sda1-8:312 blocked for more than 120 seconds.",
     "hung-task", "312", {"pid": 312, "comm": "jbd2/sda1-8"}),
    ("watchdog: BUG: soft lockup - CPU#3 stuck for 23s! [kworker/3:1:1234]",
     "soft-lockup", "3", {"pid": 1234, "comm": "kworker/3:1"}),
    ("BUG: soft lockup - CPU#0 stuck for 22s! [swapper/0:0]", "soft-lockup", "0", {}),
    ("rcu: INFO: rcu_sched self-detected stall on CPU", "rcu-stall", "-", {}),
    ("rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:", "rcu-stall", "-", {}),
    ("NMI watchdog: Watchdog detected hard LOCKUP on cpu 5", "hard-lockup", "5", {}),
    ("sched: RT throttling activated", "rt-throttling", "-", {}),
    ("CPU3: Core temperature above threshold, cpu clock throttled (total events = 1)",
     "thermal-throttle", "3", {}),
    ("mce: CPU0: Package temperature above threshold, cpu clock throttled (total events = 7)",
     "thermal-throttle", "0", {}),
    ("mce: [Hardware Error]: Machine check events logged", "mce", "-", {}),
    ("EDAC MC0: 1 CE memory read error on CPU_SrcID#0_Ha#0_Chan#1_DIMM#0 (channel:1 slot:0 "
     "page:0x1234 offset:0x0 grain:32 syndrome:0x0)", "mce", "MC0", {"device": "MC0"}),
    ("clocksource: timekeeping watchdog on CPU1: Marking clocksource 'tsc' as unstable because "
     "the skew is too large:", "clocksource-unstable", "tsc", {}),
    ("python3[4619]: segfault at 0 ip 00007f3b74385ad8 sp 00007ffcdff5b3c8 error 4 in "
     "libc.so.6[167ad8,7f3b74244000+156000] likely on CPU 1 (core 1, socket 0)",
     "segfault", "python3", {"pid": 4619}),
    ("my app[77]: segfault at 10 ip 000055d0c8e1c1a9 sp 00007ffd9b7e3e60 error 6 in app[55d0c8e1b000+2000]",
     "segfault", "my app", {"pid": 77}),
    ("traps: node[999] general protection fault ip:55d0 sp:7ffd error:0 in node[55d0+1000]",
     "segfault", "node", {"pid": 999}),
    ("cgroup: fork rejected by pids controller in /system.slice/forkbomb.service",
     "pids-fork-rejected", "/system.slice/forkbomb.service",
     {"cgroup": "/system.slice/forkbomb.service"}),
    ("VFS: file-max limit 65536 reached", "file-max", "-", {}),
    ("I/O error, dev sdb, sector 2048 op 0x1:(WRITE) flags 0x800 phys_seg 1 prio class 2",
     "io-error", "sdb", {"device": "sdb"}),
    ("blk_update_request: I/O error, dev sda, sector 12345", "io-error", "sda", {}),
    ("Buffer I/O error on dev sda1, logical block 0, async page read", "io-error", "sda1", {}),
    ("ata1.00: exception Emask 0x0 SAct 0x0 SErr 0x0 action 0x6 frozen", "ata-nvme-error",
     "ata1.00", {}),
    ("ata3: hard resetting link", "ata-nvme-error", "ata3", {}),
    ("nvme nvme0: I/O 123 QID 4 timeout, aborting", "ata-nvme-error", "nvme0", {}),
    ("nvme nvme1: I/O 0 QID 0 timeout, reset controller", "ata-nvme-error", "nvme1", {}),
    ("sd 0:0:0:0: [sda] tag#0 FAILED Result: hostbyte=DID_OK driverbyte=DRIVER_SENSE",
     "ata-nvme-error", "sda", {}),
    ("EXT4-fs error (device sda1): ext4_find_entry:1455: inode #2: comm ls: reading directory "
     "lblock 0", "fs-error", "sda1", {}),
    ("EXT4-fs (dm-0): Remounting filesystem read-only", "fs-error", "dm-0", {}),
    ("XFS (sdb1): Metadata corruption detected at xfs_dinode_verify+0x1a/0x30", "fs-error",
     "sdb1", {}),
    ("BTRFS info (device sdc1): forced readonly", "fs-error", "sdc1", {}),
    ("nfs: server filer01 not responding, still trying", "nfs-not-responding", "filer01", {}),
    ("nf_conntrack: nf_conntrack: table full, dropping packet", "conntrack-full", "-", {}),
    ("nf_conntrack: table full, dropping packet", "conntrack-full", "-", {}),
    ("nf_conntrack: nf_conntrack: table full in netns 4026532596, dropping packet",
     "conntrack-full", "4026532596", {}),
    ("TCP: request_sock_TCP: Possible SYN flooding on port [::]:8080. Sending cookies.  Check "
     "SNMP counters.", "syn-flood", "[::]:8080", {}),
    ("TCP: Possible SYN flooding on port 80. Dropping request.  Check SNMP counters.",
     "syn-flood", "80", {}),
    ("TCP: out of memory -- consider tuning tcp_mem", "tcp-oom", "-", {}),
    ("TCP: too many orphaned sockets", "tcp-oom", "-", {}),
    ("neighbour: arp_cache: neighbor table overflow!", "neigh-overflow", "arp_cache", {}),
    ("NETDEV WATCHDOG: eth0 (e1000e): transmit queue 0 timed out", "netdev-watchdog", "eth0", {}),
    ("virtio_net virtio0 eth1: NETDEV WATCHDOG: CPU: 1: transmit queue 0 timed out 5000 ms",
     "netdev-watchdog", "eth1", {}),
    ("e1000e 0000:00:19.0 eth0: NIC Link is Down", "link-down", "eth0", {}),
    ("igb 0000:01:00.0 eno1: igb: eno1 NIC Link is Down", "link-down", "eno1", {}),
    ("bond0: link status definitely down for interface eth1, disabling it", "link-down",
     "eth1", {}),
    ("e1000e 0000:00:19.0 eth0: Detected Tx Unit Hang:", "nic-hang", "eth0", {}),
    ("eth2: hw csum failure", "nic-hang", "eth2", {}),
    ("kworker/u8:2: page allocation failure: order:4, mode:0x40cc0(GFP_KERNEL|__GFP_COMP), "
     "nodemask=(null),cpuset=/,mems_allowed=0", "page-alloc-failure", "order:4",
     {"order": 4, "comm": "kworker/u8:2"}),
    ("audit: backlog limit exceeded", "audit-backlog", "-", {}),
    ("audit: audit_lost=5 audit_rate_limit=0 audit_backlog_limit=64", "audit-backlog", "-", {}),
    ("IPv4: martian source 10.0.0.1 from 192.168.1.5, on dev eth0", "martian", "eth0", {}),
    ("WARNING: CPU: 1 PID: 123 at net/core/dev.c:1234 dev_watchdog+0x1c/0x30",
     "kernel-warn", "net/core/dev.c:1234", {"pid": 123}),
    ("BUG: kernel NULL pointer dereference, address: 0000000000000008", "kernel-warn", "-", {}),
    ("Oops: 0002 [#1] PREEMPT SMP NOPTI", "kernel-warn", "-", {}),
]


@pytest.mark.parametrize("line, signature, subject, extra", LINES,
                         ids=[f"{s}-{i}" for i, (_, s, _, _) in enumerate(LINES)])
def test_signature_matches(line, signature, subject, extra):
    m = match_message(line)
    assert m is not None, f"no signature matched {line!r}"
    assert (m.signature, m.subject) == (signature, subject)
    for field, value in extra.items():
        assert getattr(m, field) == value


@pytest.mark.parametrize("line", [
    "",
    "EXT4-fs (vda): mounted filesystem r/w without journal. Quota mode: none.",
    "random: crng reseeded due to virtual machine fork",
    "nfs: server filer01 OK",
    "e1000e 0000:00:19.0 eth0: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx",
    "EDAC MC: Ver: 3.0.0",
    "EDAC amd64: Node 0: DRAM ECC enabled.",  # no CE/UE: case-sensitive part
    "process_api (1): drop_caches: 10",
    "audit: type=1400 audit(1700000000.000:2): apparmor=\"STATUS\"",
])
def test_near_misses_do_not_match(line):
    assert match_message(line) is None


def test_every_signature_has_a_test_line():
    tested = {signature for _, signature, _, _ in LINES}
    assert tested == {s.id for s in SIGNATURES}


def test_parse_kmsg_record():
    r = parse_kmsg_record("6,345,334136335,-;python3[4619]: segfault at 0 ip 1 sp 2 error 4\n"
                          " SUBSYSTEM=virtio\n DEVICE=+virtio:virtio1\n")
    assert (r.level, r.facility, r.seq, r.ts_s) == (6, 0, 345, 334.136335)
    assert r.message == "python3[4619]: segfault at 0 ip 1 sp 2 error 4"
    # facility in the high bits: prio 14 = user (1) << 3 | info (6)
    r = parse_kmsg_record("14,1,5,c;hello")
    assert (r.level, r.facility) == (6, 1)


@pytest.mark.parametrize("raw, problem", [
    ("", "without 'prio,seq,usec,flags;' header"),
    ("6,345;message", "without 'prio,seq,usec,flags;' header"),
    ("no header at all", "without 'prio,seq,usec,flags;' header"),
    ("6,x,3,-;message", "header is not numeric"),
])
def test_parse_kmsg_record_rejects(raw, problem):
    with pytest.raises(ParseError, match=problem):
        parse_kmsg_record(raw)


def test_parse_dmesg_line():
    r = parse_dmesg_line("[  334.136335] python3[4619]: segfault at 0")
    assert (r.ts_s, r.message) == (334.136335, "python3[4619]: segfault at 0")
    assert parse_dmesg_line("plain message").ts_s is None
    with pytest.raises(ParseError, match="no '\\[seconds.micro\\]' timestamp"):
        parse_dmesg_line("[garbled] x")


def test_parse_oom_context():
    ctx = parse_oom_context("oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,"
                            "mems_allowed=0,oom_memcg=/sys/fs/test,task_memcg=/sys/fs/test,"
                            "task=python3,pid=4321,uid=0")
    assert ctx["constraint"] == "CONSTRAINT_MEMCG" and ctx["oom_memcg"] == "/sys/fs/test"
    assert ctx["pid"] == "4321"
    assert parse_oom_context("Out of memory: Killed process 1 (x)") is None


def _rec(ts: float, message: str) -> LogRecord:
    return LogRecord(seq=None, ts_s=ts, level=6, message=message)


def test_group_events_memcg_oom_with_context_and_window():
    records = [
        _rec(100.0, "python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, "
                    "oom_score_adj=0"),
        _rec(100.1, "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,"
                    "mems_allowed=0,oom_memcg=/test.slice,task_memcg=/test.slice,"
                    "task=python3,pid=4321,uid=0"),
        _rec(100.2, "Memory cgroup out of memory: Killed process 4321 (python3) "
                    "total-vm:25412kB, anon-rss:10240kB"),
        _rec(2000.0, "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,"
                     "mems_allowed=0,global_oom,task_memcg=/user.slice,task=java,pid=77,uid=0"),
        _rec(2000.5, "Out of memory: Killed process 77 (java) total-vm:1kB"),
        _rec(1990.0, "python3[5]: segfault at 0 ip 1 sp 2 error 4 in x"),
        _rec(1995.0, "python3[6]: segfault at 0 ip 1 sp 2 error 4 in x"),
        _rec(1996.0, "an unrelated line"),
    ]
    events = {(e.signature, e.subject): e
              for e in group_events(records, now_s=2001.0, window_start_s=2000.0)}
    memcg = events[("memcg-oom-kill", "/test.slice")]
    assert (memcg.pid, memcg.comm, memcg.cgroup, memcg.constraint) == (
        4321, "python3", "/test.slice", "CONSTRAINT_MEMCG")
    assert memcg.in_window is False and memcg.recent is False
    assert memcg.age_s == pytest.approx(1900.8)
    glob = events[("oom-kill", "java")]
    # a global OOM names the victim's cgroup, but no cgroup hit a limit
    assert glob.constraint == "CONSTRAINT_NONE" and glob.cgroup is None
    assert glob.task_memcg == "/user.slice"
    assert glob.in_window is True and glob.recent is True
    seg = events[("segfault", "python3")]
    assert (seg.count, seg.pid, seg.first_seen_s, seg.last_seen_s) == (2, 6, 1990.0, 1995.0)
    assert seg.in_window is False and seg.recent is True
    # the invoked line belongs to the memcg report its context line names
    invoked = events[("oom-invoked", "/test.slice")]
    assert (invoked.order, invoked.comm, invoked.cgroup, invoked.constraint) == (
        0, "python3", "/test.slice", "CONSTRAINT_MEMCG")
    assert len(events) == 4


# one whole memcg OOM report as /dev/kmsg held it on this host (6.18, cgroup v1), the
# register dump and the memcg stats cut: the invoked line comes first, its constraint
# only eleven lines later
KMSG_MEMCG_REPORT = [
    "4,20001,17711441888,-;python invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, "
    "oom_score_adj=1000\n",
    "4,20002,17711441902,-;CPU: 1 UID: 0 PID: 17127 Comm: python Not tainted 6.18.44 #1\n",
    "4,20003,17711441907,-;Call Trace:\n",
    "4,20004,17711441943,-; oom_kill_process.cold+0x8/0x8a\n",
    "6,20005,17711442024,-;memory: usage 65536kB, limit 65536kB, failcnt 379\n",
    "6,20006,17711442034,-;Memory cgroup stats for /sysdiag-e2e-oom-tmpfs-15642:\n",
    "6,20007,17711442104,-;Tasks state (memory values in pages):\n",
    "6,20008,17711442111,-;[  17127]     0 17127     7885     5917     5049      868         0"
    "   106496        0          1000 python\n",
    "6,20009,17711442114,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,"
    "mems_allowed=0,oom_memcg=/sysdiag-e2e-oom-tmpfs-15642,"
    "task_memcg=/sysdiag-e2e-oom-tmpfs-15642,task=python,pid=17127,uid=0\n",
    "3,20010,17711442133,-;Memory cgroup out of memory: Killed process 17127 (python) "
    "total-vm:31540kB, anon-rss:20196kB, file-rss:3472kB, shmem-rss:0kB, UID:0 "
    "pgtables:104kB oom_score_adj:1000\n",
]


def test_invoked_line_of_a_memcg_report_is_not_a_global_oom():
    # before, "python invoked oom-killer" was grouped with no constraint and read as
    # a global OOM on a host whose only OOMs were in a 64 MiB test cgroup
    records = [parse_kmsg_record(raw) for raw in KMSG_MEMCG_REPORT]
    events = {(e.signature, e.subject): e
              for e in group_events(records, now_s=17800.0, window_start_s=17790.0)}
    assert set(events) == {("oom-invoked", "/sysdiag-e2e-oom-tmpfs-15642"),
                           ("memcg-oom-kill", "/sysdiag-e2e-oom-tmpfs-15642")}
    invoked = events[("oom-invoked", "/sysdiag-e2e-oom-tmpfs-15642")]
    assert (invoked.comm, invoked.constraint, invoked.task_memcg) == (
        "python", "CONSTRAINT_MEMCG", "/sysdiag-e2e-oom-tmpfs-15642")


def test_invoked_line_without_its_context_stays_unattributed():
    # a report cut off before its context line (or a kernel without it): unknown, and
    # the next report's context must not be borrowed across another invoked line
    records = [
        _rec(1.0, "a invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0"),
        _rec(2.0, "b invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=1, oom_score_adj=0"),
        _rec(2.1, "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,"
                  "global_oom,task_memcg=/,task=b,pid=9,uid=0"),
        _rec(3.0, "c invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=2, oom_score_adj=0"),
    ]
    events = {e.subject: e for e in group_events(records, now_s=4.0, window_start_s=0.0)}
    assert set(events) == {"a", "b", "c"}
    assert events["a"].constraint is None and events["c"].constraint is None
    assert (events["b"].constraint, events["b"].cgroup) == ("CONSTRAINT_NONE", None)


def test_group_events_context_for_another_pid_is_not_used():
    records = [
        _rec(1.0, "oom-kill:constraint=CONSTRAINT_CPUSET,task=a,pid=1,uid=0"),
        _rec(2.0, "Out of memory: Killed process 2 (b) total-vm:1kB"),
    ]
    (event,) = group_events(records, now_s=None, window_start_s=None)
    assert event.constraint is None and event.age_s is None and not event.recent


# /dev/kmsg records of a memcg OOM loop on this host (6.18): the kernel rate-limits the OOM
# report, the "oom-kill:" line included (10 per 5 s), but not the kill lines, so pid 28950
# was killed without a context line
KMSG_MEMCG_OOM = [
    "4,14205,6561966483,-;oom_kill_process: 5 callbacks suppressed\n",
    "6,15007,6564065354,-;[  28949]     0 28949    19894    18190    17330      860         0"
    "   196608        0          1000 python\n",
    "6,15008,6564065357,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,"
    "mems_allowed=0,oom_memcg=/sysdiag-e2e-oom-28602,task_memcg=/sysdiag-e2e-oom-28602,"
    "task=python,pid=28949,uid=0\n",
    "3,15009,6564065373,-;Memory cgroup out of memory: Killed process 28949 (python) "
    "total-vm:79576kB, anon-rss:69320kB, file-rss:3440kB, shmem-rss:0kB, UID:0 pgtables:192kB "
    "oom_score_adj:1000\n",
    "3,15010,6564298310,-;Memory cgroup out of memory: Killed process 28950 (python) "
    "total-vm:79576kB, anon-rss:69320kB, file-rss:3440kB, shmem-rss:0kB, UID:0 pgtables:192kB "
    "oom_score_adj:1000\n",
]


def test_memcg_kill_is_attributed_to_its_context_line_only():
    records = [parse_kmsg_record(raw) for raw in KMSG_MEMCG_OOM]
    events = {(e.signature, e.subject): e
              for e in group_events(records, now_s=6570.0, window_start_s=6560.0)}
    memcg = events[("memcg-oom-kill", "/sysdiag-e2e-oom-28602")]
    assert (memcg.count, memcg.pid, memcg.comm, memcg.cgroup, memcg.task_memcg,
            memcg.constraint) == (1, 28949, "python", "/sysdiag-e2e-oom-28602",
                                  "/sysdiag-e2e-oom-28602", "CONSTRAINT_MEMCG")
    assert memcg.last_seen_s == 6564.065373
    # the next kill had no context line of its own: which cgroup is unknown
    bare = events[("memcg-oom-kill", "python")]
    assert (bare.count, bare.pid, bare.cgroup, bare.task_memcg, bare.constraint) == (
        1, 28950, None, None, None)
    assert len(events) == 2


def test_memcg_context_of_another_pid_is_not_used():
    context = KMSG_MEMCG_OOM[2]
    kill_28950 = KMSG_MEMCG_OOM[4]
    (event,) = group_events([parse_kmsg_record(context), parse_kmsg_record(kill_28950)],
                            now_s=None, window_start_s=None)
    assert (event.signature, event.subject, event.cgroup, event.constraint) == (
        "memcg-oom-kill", "python", None, None)


def test_memcg_oom_names_the_limited_parent_and_keeps_the_task_cgroup():
    records = [
        _rec(10.0, "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,"
                   "oom_memcg=/system.slice/app.service,"
                   "task_memcg=/system.slice/app.service/worker,task=app,pid=900,uid=1000"),
        _rec(10.1, "Memory cgroup out of memory: Killed process 900 (app) total-vm:1kB"),
        _rec(11.0, "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,"
                   "oom_memcg=/other,task_memcg=/other,task=app,pid=901,uid=0"),
        _rec(11.1, "Memory cgroup out of memory: Killed process 901 (app) total-vm:1kB"),
    ]
    events = {e.subject: e for e in group_events(records, now_s=12.0, window_start_s=0.0)}
    assert set(events) == {"/system.slice/app.service", "/other"}  # same comm, two cgroups
    app = events["/system.slice/app.service"]
    assert (app.cgroup, app.task_memcg, app.pid) == (
        "/system.slice/app.service", "/system.slice/app.service/worker", 900)


def test_global_oom_is_not_attributed_to_a_memcg():
    # format of mm/oom_kill.c dump_oom_summary() for a global OOM ("global_oom", no oom_memcg)
    records = [
        _rec(5.0, "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,"
                  "global_oom,task_memcg=/user.slice/user-0.slice/session-1.scope,"
                  "task=stress-ng,pid=1234,uid=0"),
        _rec(5.1, "Out of memory: Killed process 1234 (stress-ng) total-vm:1066496kB, "
                  "anon-rss:1015412kB, file-rss:4kB, shmem-rss:0kB, UID:0 pgtables:2036kB "
                  "oom_score_adj:0"),
    ]
    (event,) = group_events(records, now_s=6.0, window_start_s=0.0)
    assert (event.signature, event.subject, event.cgroup, event.constraint) == (
        "oom-kill", "stress-ng", None, "CONSTRAINT_NONE")
    assert event.task_memcg == "/user.slice/user-0.slice/session-1.scope"


def test_parse_oom_context_real_line_and_variants():
    ctx = parse_oom_context(parse_kmsg_record(KMSG_MEMCG_OOM[2]).message)
    assert ctx == {"constraint": "CONSTRAINT_MEMCG", "nodemask": "(null)", "cpuset": "/",
                   "mems_allowed": "0", "oom_memcg": "/sysdiag-e2e-oom-28602",
                   "task_memcg": "/sysdiag-e2e-oom-28602", "task": "python", "pid": "28949",
                   "uid": "0"}
    # commas inside a node list, a cgroup path and the comm
    ctx = parse_oom_context("oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=0-1,3,cpuset=a,b,"
                            "mems_allowed=0-1,3,oom_memcg=/x,y,task_memcg=/x,y/z,"
                            "task=a,b,pid=7,uid=0")
    assert (ctx["nodemask"], ctx["cpuset"], ctx["mems_allowed"]) == ("0-1,3", "a,b", "0-1,3")
    assert (ctx["oom_memcg"], ctx["task_memcg"], ctx["task"], ctx["pid"]) == (
        "/x,y", "/x,y/z", "a,b", "7")
    # a kernel without CONFIG_CPUSETS prints no cpuset= and mems_allowed=
    ctx = parse_oom_context("oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),global_oom,"
                            "task_memcg=/,task=java,pid=77,uid=0")
    assert "oom_memcg" not in ctx and (ctx["global_oom"], ctx["task_memcg"], ctx["pid"]) == (
        "global_oom", "/", "77")


def test_example_is_truncated():
    (event,) = group_events([_rec(1.0, "Oops: " + "x" * 1000)], now_s=2.0, window_start_s=0.0)
    assert len(event.example) == 300


def test_probe_is_unavailable_on_a_captured_tree(tree_ctx):
    outcome, facts = run_one(KmsgProbe(), tree_ctx)
    assert (outcome.status, outcome.reason) == ("unavailable", "no kernel log in a captured tree")


def test_keywords_are_lower_case_literals_of_their_lines():
    # the prefilter compares keywords against the lower-cased message
    for sig in SIGNATURES:
        assert sig.keywords and all(k == k.lower() for k in sig.keywords), sig.id
    for line, signature, _, _ in LINES:
        sig = next(s for s in SIGNATURES if s.id == signature)
        assert any(k in line.lower() for k in sig.keywords), (signature, line)


def test_user_space_lines_written_into_kmsg_are_not_kernel_events():
    # prio 30 = facility 3 (daemon) << 3 | level 6: e.g. systemd writing to /dev/kmsg
    spoof = parse_kmsg_record("30,7,1000,-;Out of memory: Killed process 1 (init) total-vm:1kB")
    real = parse_kmsg_record("6,8,2000,-;Out of memory: Killed process 2 (x) total-vm:1kB")
    (event,) = group_events([spoof, real], now_s=3.0, window_start_s=0.0)
    assert (event.pid, event.count) == (2, 1)


def _reads(*steps):
    """A fake read() of /dev/kmsg: bytes are records, exceptions are raised."""
    it = iter(steps)

    def read_one() -> bytes:
        step = next(it)
        if isinstance(step, BaseException):
            raise step
        return step

    return read_one


def test_read_records_until_eagain_going_on_after_epipe():
    result = read_records(_reads(b"6,1,5,-;one\n", BrokenPipeError(), b"6,9,7,-;two\n",
                                 BlockingIOError()))
    assert result.records == ["6,1,5,-;one\n", "6,9,7,-;two\n"]
    assert (result.wrapped, result.truncated) == (1, False)


def test_read_records_is_bounded():
    result = read_records(_reads(*[b"6,1,5,-;x\n"] * 5), max_records=3)
    assert len(result.records) == 3 and result.truncated


def test_read_records_names_the_device_for_a_too_long_record():
    with pytest.raises(OSError, match="/dev/kmsg: record longer than"):
        read_records(_reads(OSError(errno.EINVAL, "Invalid argument")))


def test_missing_kmsg_is_unavailable(tmp_path):
    with pytest.raises(Unavailable, match="does not exist"):
        read_kmsg(str(tmp_path / "kmsg"))
