#!/usr/bin/env python3
"""Re-create the faults behind the snapshot fixtures and capture them again.

Run by hand, as root, from the repository (not part of the test run):

    .venv/bin/python tests/snapshots/capture.py              # every scenario
    .venv/bin/python tests/snapshots/capture.py --list
    .venv/bin/python tests/snapshots/capture.py oom/cgroup-oom-loop disk-full/inodes

Each scenario injects one real fault (tests/e2e's helpers: faults.py, netfaults.py, and the
workloads of test_host_faults.py), runs `sysdiag collect -o FILE` with the scope a user would
give while the fault is active, checks with the kernel's own view that the fault was real,
then removes it in `finally` (processes killed, cgroups, mounts and namespaces removed,
global sysctls restored). The snapshot is saved unchanged as
tests/snapshots/<symptom>/<scenario>.json and its manifest.yaml entry (expected hypothesis,
look-alike, scope, names of the faulty object, the fault, date, kernel) is rewritten.
Afterwards the fixture is diagnosed offline, as the test does, and the verdict printed;
a fixture whose diagnosis is wrong is still saved, so look at the verdict before committing
it (a known rule gap gets `xfail: REASON` in the manifest, kept across captures).

Traffic stays inside namespaces this script creates or on loopback; every process it
starts carries a 60 s alarm or is killed when its scenario ends; only those are killed.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))

import netfaults as nf  # noqa: E402  (tests/e2e)
import test_host_faults as hf  # noqa: E402
from faults import Procs, Sysctl, TestCgroup, Tmpfs, state_of, wait_until  # noqa: E402
from harness import SYSDIAG  # noqa: E402

import snapshot_check as check  # noqa: E402

#: collect's sampling window: long enough for rates, short enough for a bounded fault
WINDOW_S = 3
#: how long each network fault's traffic runs (set-up + collect's window + its start-up)
RUN_S = 20


@dataclass
class Capture:
    """What a scenario hands back while its fault is active."""
    scope: dict[str, str] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    collected: bytes = b""

    def collect(self, names: list[object] = (), **scope: object) -> None:
        """`sysdiag collect -o FILE --window W` with the scope options given (pid, cgroup,
        netns, iface), as a user would run it; the names identify the faulty object."""
        self.scope = {k: str(v) for k, v in scope.items()}
        self.names = [str(n) for n in names]
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "snap.json"
            argv = [str(SYSDIAG), "collect", "-o", str(out), "--window", str(WINDOW_S)]
            for key, value in self.scope.items():
                argv += [f"--{key}", value]
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=90)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}: "
                                   f"{proc.stderr[-1500:]}")
            self.collected = out.read_bytes()


@dataclass(frozen=True)
class Scenario:
    symptom: str
    name: str
    expected: str
    lookalike: str
    fault: str
    run: Callable[[Capture], None]

    @property
    def key(self) -> str:
        return f"{self.symptom}/{self.name}"


SCENARIOS: dict[str, Scenario] = {}


def scenario(symptom: str, name: str, expected: str, lookalike: str, fault: str):
    def register(fn: Callable[[Capture], None]) -> Callable[[Capture], None]:
        sc = Scenario(symptom, name, expected, lookalike, " ".join(fault.split()), fn)
        SCENARIOS[sc.key] = sc
        return fn
    return register


@contextlib.contextmanager
def procs() -> Iterator[Procs]:
    with Procs() as started:
        yield started


@contextlib.contextmanager
def fault_env(tag: str) -> Iterator[tuple[ExitStack, Procs, Path]]:
    """(undo stack, processes, fresh directory /tmp/sdsnap-TAG-*). Undone in reverse: what
    was entered on `undo` last (mounts, cgroups), then the processes, then the directory."""
    with tempfile.TemporaryDirectory(prefix=f"sdsnap-{tag}-") as tmp, ExitStack() as undo:
        started = undo.enter_context(Procs())
        yield undo, started, Path(tmp)


# --- high-latency ------------------------------------------------------------------------

@scenario("high-latency", "cpu-quota-throttled", "cpu-cgroup-throttling", "cpu-saturation",
          """a busy loop in a cgroup allowed 10 % of one CPU (cpu.cfs_quota_us 10000 / period
          100000); collected with --cgroup""")
def _(cap: Capture) -> None:
    with fault_env("x") as (undo, started, _):
        cg = hf.throttled_cgroup(undo, started, "snap-throttle")
        time.sleep(0.5)
        cap.collect(names=[cg.path], cgroup=cg.path)


@scenario("high-latency", "cpuset-one-cpu", "cpu-cpuset-confinement", "cpu-saturation",
          """a process with two hashing threads in a cpuset cgroup allowed CPU 0 only, CPU 1
          idle; collected with --pid""")
def _(cap: Capture) -> None:
    with fault_env("x") as (undo, started, _):
        cg = undo.enter_context(TestCgroup("snap-cpuset", ["cpuset"]))
        cg.write("cpuset", "cpuset.cpus", "cpuset.cpus", "0")
        hog = started.python(hf.TWO_THREADS, cgroup=cg)
        time.sleep(0.5)
        cap.collect(names=[f"pid {hog.pid}"], pid=hog.pid)


@scenario("high-latency", "tbf-deep-queue", "tc-bufferbloat", "net-path-loss-retrans",
          """namespace a: tbf 4mbit with a 4 MB queue on the veth, one bulk TCP transfer to b
          through it (standing queue, no drops); collected with --netns A --iface IF""")
def _(cap: Capture) -> None:
    with nf.lab("sbloat") as lab:
        lab.sh(lab.a, "tc", "qdisc", "add", "dev", lab.if_a, "root", "tbf", "rate", "4mbit",
               "burst", "32kb", "limit", "4mb")
        lab.start(lab.b, nf.TCP_SINK, RUN_S, lab.addr_b, 5001)
        lab.start(lab.a, nf.TCP_BULK, RUN_S, lab.addr_b, 5001)
        time.sleep(1.0)
        cap.collect(names=[lab.if_a, "tbf"], netns=lab.a, iface=lab.if_a)
        tbf = [q for q in nf.qdiscs(lab.a, lab.if_a) if q["kind"] == "tbf"][0]
        assert tbf["backlog"] > 20000 and tbf["drops"] == 0, tbf


@scenario("high-latency", "accept-queue-full", "net-accept-queue-overflow", "cpu-saturation",
          """namespace b: a TCP listener on 8080 with backlog 1 that never accepts, 20
          connects/s from a; collected with --netns B""")
def _(cap: Capture) -> None:
    accept_queue(cap, "sacql")


def accept_queue(cap: Capture, tag: str) -> None:
    with nf.lab(tag) as lab:
        lab.start(lab.b, nf.TCP_DEAF_LISTENER, RUN_S, lab.addr_b, 8080, 1)
        lab.start(lab.a, nf.CONNECT_LOOP, 12, lab.addr_b, 8080, 20)
        time.sleep(0.5)
        cap.collect(names=["8080"], netns=lab.b)
        assert nf.snmp(lab.b)["TcpExtListenOverflows"] > 5


# --- packet-loss -------------------------------------------------------------------------

def past_rcvbuf_errors(lab: nf.Lab) -> None:
    """A 1 s burst at a deaf UDP socket in a, over before the capture: UdpRcvbufErrors stay
    (counted since the namespace was made) but no longer rise."""
    lab.start(lab.a, nf.UDP_DEAF_RECEIVER, RUN_S, lab.addr_a, 5353, 4096)
    lab.finish(lab.start(lab.b, nf.UDP_FLOOD, 1, lab.addr_a, 5353, 512, 2000, 1, "-"))
    assert nf.snmp(lab.a)["UdpRcvbufErrors"] > 100


def tiny_tbf(lab: nf.Lab) -> None:
    lab.sh(lab.a, "tc", "qdisc", "add", "dev", lab.if_a, "root", "tbf", "rate", "1mbit",
           "burst", "16kb", "limit", "32kb")


@scenario("packet-loss", "tbf-overflow-old-rcvbuf", "tc-qdisc-overflow",
          "net-udp-rcvbuf-overflow",
          """namespace a: earlier UDP receive-buffer drops (a 1 s burst at a deaf socket on
          5353, over before the capture), then ~20 Mbit/s of UDP into a 1mbit tbf with a 32 kB
          queue on the veth; collected with --netns A""")
def _(cap: Capture) -> None:
    with nf.lab("sqdof") as lab:
        past_rcvbuf_errors(lab)
        tiny_tbf(lab)
        lab.start(lab.b, nf.UDP_SINK, RUN_S, lab.addr_b, 9000)
        lab.start(lab.a, nf.UDP_FLOOD, RUN_S, lab.addr_b, 9000, 1200, 2000, 1, "-")
        cap.collect(names=[lab.if_a, "tbf"], netns=lab.a)
        assert [q for q in nf.qdiscs(lab.a, lab.if_a) if q["kind"] == "tbf"][0]["drops"] > 100


@scenario("packet-loss", "rcvbuf-overflow-old-qdisc", "net-udp-rcvbuf-overflow",
          "tc-qdisc-overflow",
          """namespace a: earlier drops of a 1mbit tbf on the veth (a 1 s UDP burst, over
          before the capture), then a UDP socket on 5353 with a 4 kB receive buffer that never
          reads, flooded from b; collected with --netns A""")
def _(cap: Capture) -> None:
    with nf.lab("srcvb") as lab:
        tiny_tbf(lab)
        lab.start(lab.b, nf.UDP_SINK, RUN_S, lab.addr_b, 9000)
        lab.finish(lab.start(lab.a, nf.UDP_FLOOD, 1, lab.addr_b, 9000, 1200, 2000, 1, "-"))
        lab.start(lab.a, nf.UDP_DEAF_RECEIVER, RUN_S, lab.addr_a, 5353, 4096)
        lab.start(lab.b, nf.UDP_FLOOD, RUN_S, lab.addr_a, 5353, 512, 2000, 1, "-")
        time.sleep(0.5)
        cap.collect(names=["5353"], netns=lab.a)
        assert nf.snmp(lab.a)["UdpRcvbufErrors"] > 100


@scenario("packet-loss", "rp-filter-asymmetric", "net-rp-filter-drop", "nf-rule-drop",
          """namespace b routes 10.99.0.0/24 out of another interface with strict rp_filter;
          a sends UDP from 10.99.0.1 over the veth; collected with --netns B --iface IF""")
def _(cap: Capture) -> None:
    with nf.lab("srpf") as lab:
        lab.sh(lab.b, "ip", "link", "add", "alt0", "type", "veth", "peer", "name", "alt1")
        for link in ("alt0", "alt1"):
            lab.sh(lab.b, "ip", "link", "set", link, "up")
        lab.sh(lab.b, "ip", "route", "add", "10.99.0.0/24", "dev", "alt0")
        lab.sysctl(lab.b, "net.ipv4.conf.all.rp_filter", "1")
        lab.sysctl(lab.b, f"net.ipv4.conf.{lab.if_b}.rp_filter", "1")
        lab.sh(lab.a, "ip", "addr", "add", "10.99.0.1/32", "dev", lab.if_a)
        lab.sysctl(lab.a, f"net.ipv4.conf.{lab.if_a}.arp_announce", "2")
        lab.start(lab.b, nf.UDP_SINK, RUN_S, "0.0.0.0", 9000)
        lab.start(lab.a, nf.UDP_FLOOD, RUN_S, lab.addr_b, 9000, 200, 500, 1, "10.99.0.1")
        time.sleep(0.5)
        cap.collect(names=[lab.if_b], netns=lab.b, iface=lab.if_b)
        assert nf.snmp(lab.b)["TcpExtIPReversePathFilter"] > 50


@scenario("packet-loss", "veth-mtu-mismatch", "net-mtu-mismatch", "tc-qdisc-overflow",
          """namespace a: veth jmb0 (MTU 9000) paired with jmb1 (MTU 1500) bridged to the veth
          towards b; 4000-byte UDP datagrams from jmb0; collected with --netns A --iface jmb0""")
def _(cap: Capture) -> None:
    with nf.lab("smtu") as lab:
        lab.sh(lab.a, "ip", "addr", "flush", "dev", lab.if_a)
        lab.sh(lab.a, "ip", "link", "add", "jmb0", "mtu", "9000", "type", "veth",
               "peer", "name", "jmb1")
        lab.sh(lab.a, "ip", "link", "add", "br0", "type", "bridge")
        for port in ("jmb1", lab.if_a):
            lab.sh(lab.a, "ip", "link", "set", port, "master", "br0")
        for link in ("jmb0", "jmb1", "br0"):
            lab.sh(lab.a, "ip", "link", "set", link, "up")
        lab.sh(lab.a, "ip", "addr", "add", f"{lab.addr_a}/24", "dev", "jmb0")
        lab.start(lab.b, nf.UDP_SINK, RUN_S, lab.addr_b, 9000)
        lab.start(lab.a, nf.UDP_FLOOD, RUN_S, lab.addr_b, 9000, 4000, 200, 1, "-")
        cap.collect(names=["jmb0"], netns=lab.a, iface="jmb0")
        assert nf.link_stats(lab.a, "jmb0")["stats64"]["tx"]["dropped"] > 50


# --- connection-failures -----------------------------------------------------------------

@scenario("connection-failures", "accept-queue-full", "net-accept-queue-overflow",
          "net-syn-queue-flood",
          """namespace b: a TCP listener on 8080 with backlog 1 that never accepts, 20
          connects/s from a; collected with --netns B""")
def _(cap: Capture) -> None:
    accept_queue(cap, "scacq")


@scenario("connection-failures", "conntrack-table-full", "nf-conntrack-full", "nf-rule-drop",
          """namespace b tracks connections (nft `ct state new` rule); global
          nf_conntrack_max lowered to 64 for ~10 s (restored); 64 held connections from a fill
          the table and 20 new connects/s are dropped; collected with --netns B""")
def _(cap: Capture) -> None:
    with nf.lab("sctf") as lab:
        lab.sh(lab.b, "nft", "add table inet sdx_snap; "
               "add chain inet sdx_snap input { type filter hook input priority 0; policy accept; }; "
               "add rule inet sdx_snap input ct state new counter accept")
        lab.start(lab.b, nf.TCP_SINK, RUN_S, lab.addr_b, 5001)
        with nf.global_sysctl("net/netfilter/nf_conntrack_max", "64"):
            hold = lab.start(lab.a, nf.CONNECT_HOLD, 12, lab.addr_b, 5001, 64)
            hold.stdout.readline()
            lab.start(lab.a, nf.CONNECT_LOOP, 10, lab.addr_b, 5001, 20)
            cap.collect(names=["conntrack"], netns=lab.b)
            count = int(lab.sh(lab.b, "cat", "/proc/sys/net/netfilter/nf_conntrack_count").stdout)
            assert count >= 64, count


@scenario("connection-failures", "no-route", "net-no-route", "net-arp-resolution-failure",
          """namespace a has no default route; 20 connects/s to off-link 10.88.0.5:443 fail
          with ENETUNREACH; collected with --netns A""")
def _(cap: Capture) -> None:
    with nf.lab("snrt") as lab:
        conn = lab.start(lab.a, nf.CONNECT_LOOP, 8, "10.88.0.5", 443, 20)
        time.sleep(0.5)
        cap.collect(names=[], netns=lab.a)
        assert "ENETUNREACH=" in lab.finish(conn)


@scenario("connection-failures", "arp-unanswered", "net-arp-resolution-failure",
          "net-neigh-table-overflow",
          """namespace a: 5 connects/s to 10.77.0.99, on-link but owned by nobody: ARP is never
          answered; collected with --netns A --iface IF""")
def _(cap: Capture) -> None:
    with nf.lab("sarp") as lab:
        conn = lab.start(lab.a, nf.CONNECT_LOOP, 12, "10.77.0.99", 443, 5)
        time.sleep(1.0)
        cap.collect(names=["10.77.0.99", lab.if_a], netns=lab.a, iface=lab.if_a)
        neigh = lab.sh(lab.a, "ip", "neigh", "show", "10.77.0.99").stdout
        assert "INCOMPLETE" in neigh or "FAILED" in neigh, neigh
        lab.finish(conn)


# --- slow-throughput ---------------------------------------------------------------------

def bulk_through(lab: nf.Lab) -> None:
    lab.start(lab.b, nf.TCP_SINK, RUN_S, lab.addr_b, 5001)
    lab.start(lab.a, nf.TCP_BULK, RUN_S, lab.addr_b, 5001)
    time.sleep(1.0)  # past slow start


@scenario("slow-throughput", "tbf-shaper", "tc-shaper-limit", "net-window-buffer-limited",
          """namespace a: tbf 4mbit (burst 32kb, latency 50ms) on the veth, one bulk TCP
          transfer to b; collected with --netns A --iface IF""")
def _(cap: Capture) -> None:
    with nf.lab("stbf") as lab:
        lab.sh(lab.a, "tc", "qdisc", "add", "dev", lab.if_a, "root", "tbf", "rate", "4mbit",
               "burst", "32kb", "latency", "50ms")
        bulk_through(lab)
        cap.collect(names=[lab.if_a, "tbf"], netns=lab.a, iface=lab.if_a)


@scenario("slow-throughput", "htb-ceiling", "tc-shaper-limit", "nic-offloads-off",
          """namespace a: htb root with default class 1:10 at rate = ceil = 3mbit on the
          veth, one bulk TCP transfer to b; collected with --netns A --iface IF""")
def _(cap: Capture) -> None:
    with nf.lab("shtb") as lab:
        lab.sh(lab.a, "tc", "qdisc", "add", "dev", lab.if_a, "root", "handle", "1:", "htb",
               "default", "10")
        lab.sh(lab.a, "tc", "class", "add", "dev", lab.if_a, "parent", "1:", "classid", "1:10",
               "htb", "rate", "3mbit", "ceil", "3mbit")
        bulk_through(lab)
        cap.collect(names=[lab.if_a, "htb"], netns=lab.a, iface=lab.if_a)


@scenario("slow-throughput", "slow-reader-window", "net-window-buffer-limited",
          "tc-shaper-limit",
          """namespace b: a TCP server with a 4 kB SO_RCVBUF that reads 1 kB every 50 ms, a
          bulk sender in a (zero windows); collected with --netns B""")
def _(cap: Capture) -> None:
    with nf.lab("srwin") as lab:
        lab.start(lab.b, nf.TCP_SLOW_READER, RUN_S, lab.addr_b, 5001, 4096)
        lab.start(lab.a, nf.TCP_BULK, RUN_S, lab.addr_b, 5001)
        time.sleep(0.5)
        cap.collect(names=[], netns=lab.b)
        assert nf.snmp(lab.b)["TcpExtTCPToZeroWindowAdv"] > 5


@scenario("slow-throughput", "offloads-off", "nic-offloads-off", "tc-shaper-limit",
          """both veth ends with tso, gso, gro, sg and tx checksumming off (ethtool -K), one
          bulk TCP transfer a -> b; collected with --netns A --iface IF""")
def _(cap: Capture) -> None:
    with nf.lab("sofl") as lab:
        for ns, ifname in ((lab.a, lab.if_a), (lab.b, lab.if_b)):
            lab.sh(ns, "ethtool", "-K", ifname, "tso", "off", "gso", "off", "gro", "off",
                   "sg", "off", "tx", "off")
        bulk_through(lab)
        cap.collect(names=[lab.if_a], netns=lab.a, iface=lab.if_a)


# --- high-cpu ----------------------------------------------------------------------------

#: reads /dev/zero in 1 MiB blocks: the time goes to the kernel's copy, not to Python
SYSCALL_LOOP = """\
f = open("/dev/zero", "rb", buffering=0)
while True:
    f.read(1 << 20)
"""


@scenario("high-cpu", "busy-loop", "cpu-runaway-userspace", "cpu-saturation",
          """one Python `while True: pass` loop; collected with --pid""")
def _(cap: Capture) -> None:
    with procs() as started:
        loop = started.python(hf.BUSY)
        time.sleep(0.5)
        cap.collect(names=[f"pid {loop.pid}"], pid=loop.pid)


@scenario("high-cpu", "kernel-copy-loop", "cpu-kernel-sys-time", "cpu-runaway-userspace",
          """one process reading /dev/zero in 1 MiB blocks (time spent in the kernel);
          collected with --pid""")
def _(cap: Capture) -> None:
    with procs() as started:
        loop = started.python(SYSCALL_LOOP)
        time.sleep(0.5)
        cap.collect(names=[f"pid {loop.pid}"], pid=loop.pid)


# --- memory-pressure and oom -------------------------------------------------------------

@scenario("memory-pressure", "mmap-thrash-in-cgroup", "mem-thrashing", "mem-cgroup-oom",
          """a 256 MiB file read through a random-access mmap, over and over, in a 32 MiB
          memory cgroup (no swap: page cache evicted and faulted back in); collected with
          --cgroup""")
def _(cap: Capture) -> None:
    with fault_env("thrash") as (undo, started, tmp):
        data = tmp / "big"
        with open(data, "wb") as f:
            for _ in range(256):
                f.write(os.urandom(1 << 20))
            f.flush()
            os.fsync(f.fileno())
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        cg = undo.enter_context(TestCgroup("snap-thrash", ["memory"]))
        cg.write("memory", "memory.limit_in_bytes", "memory.max", str(32 << 20))
        started.python(hf.MMAP_THRASHER, str(data), cgroup=cg)
        time.sleep(2)
        cap.collect(names=[cg.path], cgroup=cg.path)


@scenario("memory-pressure", "cgroup-at-limit", "mem-cgroup-oom", "mem-thrashing",
          """a memory cgroup limited to 64 MiB whose child allocates until the OOM killer
          ends it, again and again (the host has most of its memory free); collected with
          --cgroup""")
def _(cap: Capture) -> None:
    oom_loop(cap, "snap-mp-oom", scoped=True)


def wait_for_no_recent_oom(limit_s: float = 16 * 60) -> None:
    """sysdiag reports OOM kills of the last 15 minutes (klog 'recent'): on a host where
    other tests kill processes in memory cgroups, wait until the newest kill is older."""
    end = time.monotonic() + limit_s
    while True:
        text = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=10).stdout
        kills = [line for line in text.splitlines() if "Killed process" in line]
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        newest = float(kills[-1].split("]", 1)[0].strip("[ ")) if kills else -1e9
        if uptime - newest > 15 * 60 + 10:
            return
        if time.monotonic() > end:
            raise RuntimeError("the kernel log kept showing OOM kills of the last 15 min")
        time.sleep(10)


@scenario("memory-pressure", "hugepages-reserved-unused", "mem-pinned-hugetlb-shmem",
          "mem-slab-growth",
          """vm.nr_hugepages raised so that ~12 % of memory is reserved as 2 MiB hugepages that
          nothing uses (global sysctl, restored after ~5 s); collected without scope""")
def _(cap: Capture) -> None:
    total_kb = int(Path("/proc/meminfo").read_text().split()[1])
    pages = total_kb * 12 // 100 // 2048
    wait_for_no_recent_oom()
    with Sysctl("vm.nr_hugepages", str(pages)):
        meminfo = Path("/proc/meminfo").read_text()
        got = int(meminfo.split("HugePages_Total:")[1].split()[0])
        assert got >= pages * 0.9, f"only {got} of {pages} hugepages could be reserved"
        cap.collect(names=["hugepages"])


def oom_loop(cap: Capture, name: str, scoped: bool) -> None:
    with fault_env("x") as (undo, started, _):
        cg = undo.enter_context(TestCgroup(name, ["memory"]))
        cg.write("memory", "memory.limit_in_bytes", "memory.max", str(64 << 20))
        started.python(hf.OOM_LOOP, cgroup=cg)
        time.sleep(1)
        if scoped:
            cap.collect(names=[cg.path], cgroup=cg.path)
        else:
            cap.collect(names=[cg.path])


@scenario("oom", "cgroup-oom-loop", "mem-cgroup-oom", "mem-global-oom",
          """a memory cgroup limited to 64 MiB whose child allocates until the OOM killer
          ends it, again and again; collected with --cgroup""")
def _(cap: Capture) -> None:
    oom_loop(cap, "snap-oom", scoped=True)


@scenario("oom", "cgroup-oom-unscoped", "mem-cgroup-oom", "mem-global-oom",
          """the same memory-cgroup OOM loop (64 MiB limit), collected without scope (the
          user only knows processes are being killed)""")
def _(cap: Capture) -> None:
    oom_loop(cap, "snap-oom-u", scoped=False)


# --- process-hang ------------------------------------------------------------------------

@scenario("process-hang", "sigstopped", "proc-stopped-traced", "proc-d-state-blocked",
          """a sleeping process stopped with SIGSTOP (state T); collected with --pid""")
def _(cap: Capture) -> None:
    with procs() as started:
        sleeper = hf.stopped_sleeper(started)
        cap.collect(names=[f"pid {sleeper.pid}"], pid=sleeper.pid)


@scenario("process-hang", "zombies", "proc-zombie-accumulation", "proc-d-state-blocked",
          """a parent that forked 50 children that exited and were never reaped; collected
          without scope""")
def _(cap: Capture) -> None:
    with procs() as started:
        parent, _ = hf.zombie_parent(started)
        cap.collect(names=[f"pid {parent.pid}"])


@scenario("process-hang", "fuse-daemon-stopped", "io-userspace-fs-unresponsive",
          "proc-stopped-traced",
          """a bindfs FUSE daemon stopped with SIGSTOP and a reader waiting on a lookup in its
          mount; collected with --pid of the reader""")
def _(cap: Capture) -> None:
    with fault_env("fuse") as (undo, started, tmp):
        mountpoint, _, reader = hf.stuck_fuse(undo, started, tmp)
        cap.collect(names=[str(mountpoint)], pid=reader.pid)


@scenario("process-hang", "fcntl-lock-holder", "fs-lock-contention", "proc-userspace-deadlock",
          """one process holds an exclusive fcntl lock, three others wait for it in F_SETLKW;
          collected with --pid of a waiter""")
def _(cap: Capture) -> None:
    with fault_env("lock") as (_, started, tmp):
        lockfile = tmp / "db.lock"
        holder = started.python(hf.LOCKER, str(lockfile), stdout=True)
        assert hf.readline(holder) == "locked"
        waiters = [started.python(hf.LOCKER, str(lockfile), stdout=True) for _ in range(3)]
        wait_until(lambda: all(state_of(w.pid) == "S" for w in waiters)
                   and "->" in Path("/proc/locks").read_text(), 10, "waiters blocked")
        time.sleep(0.3)
        cap.collect(names=[f"pid {holder.pid}"], pid=waiters[0].pid)


@scenario("process-hang", "pids-cgroup-full", "proc-pid-exhaustion", "proc-zombie-accumulation",
          """a pids cgroup with pids.max 20 and a process forking sleeping children until
          fork fails; collected with --cgroup""")
def _(cap: Capture) -> None:
    with fault_env("x") as (undo, started, _):
        cg = undo.enter_context(TestCgroup("snap-pids", ["pids"]))
        cg.write("pids", "pids.max", "pids.max", "20")
        forker = started.python(hf.FORKER, cgroup=cg, stdout=True)
        assert int(hf.readline(forker)) == 19
        cap.collect(names=[cg.path], cgroup=cg.path)


# --- disk-full ---------------------------------------------------------------------------

@scenario("disk-full", "tmpfs-out-of-inodes", "fs-inodes-full", "fs-blocks-full",
          """a 4 MiB tmpfs with nr_inodes=64 filled with empty files; collected without
          scope""")
def _(cap: Capture) -> None:
    with fault_env("inodes") as (_, _, tmp), Tmpfs(tmp / "inodes", "size=4m,nr_inodes=64") as fs:
        hf.fill(fs.mountpoint, one_file=False)
        cap.collect(names=[str(fs.mountpoint)])


@scenario("disk-full", "tmpfs-out-of-blocks", "fs-blocks-full", "fs-inodes-full",
          """a 1 MiB tmpfs filled by one growing file; collected without scope""")
def _(cap: Capture) -> None:
    with fault_env("blocks") as (_, _, tmp), Tmpfs(tmp / "blocks", "size=1m") as fs:
        hf.fill(fs.mountpoint, one_file=True)
        cap.collect(names=[str(fs.mountpoint)])


@scenario("disk-full", "deleted-file-held-open", "fs-deleted-open", "fs-blocks-full",
          """a 32 MiB tmpfs where a process holds a deleted 24 MiB file open, filled up by
          another file; collected without scope""")
def _(cap: Capture) -> None:
    with fault_env("deleted") as (undo, started, tmp):
        mountpoint = tmp / "deleted"
        hf.deleted_but_open(undo, started, mountpoint)
        cap.collect(names=[str(mountpoint)])


# --- io-latency --------------------------------------------------------------------------

@scenario("io-latency", "fuse-daemon-stopped", "io-userspace-fs-unresponsive",
          "io-device-saturation",
          """a bindfs FUSE daemon stopped with SIGSTOP and a reader waiting on a lookup in its
          mount; collected with --pid of the reader""")
def _(cap: Capture) -> None:
    with fault_env("iofuse") as (undo, started, tmp):
        mountpoint, _, reader = hf.stuck_fuse(undo, started, tmp)
        cap.collect(names=[str(mountpoint)], pid=reader.pid)


#: writes 1 MiB blocks with O_DIRECT (no page cache) to argv[1], rewinding every 64 MiB
DIRECT_WRITER = """\
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
buf = mmap.mmap(-1, 1 << 20)
buf.write(b"\\1" * (1 << 20))
while True:
    for _ in range(64):
        os.write(fd, buf)
    os.lseek(fd, 0, os.SEEK_SET)
"""


def root_device(path: Path) -> str:
    """MAJ:MIN of the whole disk holding `path` (io.max and blkio take whole disks)."""
    dev = os.stat(path).st_dev
    sysfs = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    if (sysfs / "partition").exists():
        sysfs = sysfs.resolve().parent
    return (sysfs / "dev").read_text().strip()


@scenario("io-latency", "blkio-write-cap", "io-cgroup-throttle", "io-device-saturation",
          """a process writing 1 MiB O_DIRECT blocks to a file on the root disk, in a cgroup
          capped at 1 MB/s of writes on that disk (blkio.throttle.write_bps_device or io.max
          wbps); collected with --cgroup""")
def _(cap: Capture) -> None:
    with fault_env("iomax") as (undo, started, tmp):
        target = Path("/var/tmp") / f"sdsnap-iomax-{os.getpid()}"
        undo.callback(lambda: target.unlink(missing_ok=True))
        device = root_device(Path("/var/tmp"))
        cg = undo.enter_context(TestCgroup("snap-iomax", ["io"]))
        cg.write("io", "blkio.throttle.write_bps_device", "io.max",
                 f"{device} 1048576" if not cg.v2 else f"{device} wbps=1048576")
        started.python(DIRECT_WRITER, str(target), cgroup=cg)
        time.sleep(2)
        cap.collect(names=[cg.path], cgroup=cg.path)


# --- fd-exhaustion -----------------------------------------------------------------------

#: accepts connections on 127.0.0.1:argv[1] and never closes them (CLOSE_WAIT once the
#: clients are gone)
LEAKY_SERVER = """\
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(128)
print("ready", flush=True)
held = []
while True:
    held.append(s.accept()[0])
"""


@scenario("fd-exhaustion", "nofile-limit-reached", "fd-rlimit-nofile", "fd-system-file-max",
          """a process opening /dev/null until EMFILE under RLIMIT_NOFILE 64, holding them;
          collected with --pid""")
def _(cap: Capture) -> None:
    with procs() as started:
        hog = started.python(hf.FD_HOG, stdout=True)
        assert int(hf.readline(hog)) >= 55
        cap.collect(names=[f"pid {hog.pid}"], pid=hog.pid)


@scenario("fd-exhaustion", "close-wait-leak", "fd-leak", "fd-rlimit-nofile",
          """a loopback server that accepts 200 connections and never closes them; the clients
          close theirs, leaving 200 CLOSE_WAIT sockets held; collected with --pid""")
def _(cap: Capture) -> None:
    with procs() as started:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        server = started.python(LEAKY_SERVER, str(port), stdout=True)
        assert hf.readline(server) == "ready"
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(200)]
        for client in clients:
            client.close()
        time.sleep(0.5)
        cap.collect(names=[f"pid {server.pid}"], pid=server.pid)


# --- driver ------------------------------------------------------------------------------

def busy_pct(interval_s: float = 1.0) -> float:
    """Share of all CPUs busy over `interval_s` (/proc/stat: not idle, not iowait)."""
    def ticks() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(values), values[3] + values[4]
    total0, idle0 = ticks()
    time.sleep(interval_s)
    total1, idle1 = ticks()
    return 100.0 * (1 - (idle1 - idle0) / max(1, total1 - total0))


def wait_for_quiet(limit_s: float, busy_max: float = 25.0) -> None:
    """Other work on a shared host lands in the snapshot too (a saturated host is then a
    true finding that outranks the fault): wait until the CPUs are mostly idle."""
    end = time.monotonic() + limit_s
    while (busy := busy_pct()) > busy_max:
        if time.monotonic() > end:
            print(f"  (host still {busy:.0f} % busy after {limit_s:.0f} s; capturing anyway)",
                  flush=True)
            return


def capture(sc: Scenario) -> Path:
    cap = Capture()
    sc.run(cap)
    if not cap.collected:
        raise RuntimeError(f"{sc.key}: the scenario never collected")
    out = HERE / sc.symptom / f"{sc.name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(cap.collected)
    out.chmod(0o644)
    manifest = check.load_manifest()
    old = manifest.get(sc.key, {})
    entry = {
        "symptom": sc.symptom, "expected": sc.expected, "lookalike": sc.lookalike,
        "names": cap.names, "scope": cap.scope, "fault": sc.fault,
        "captured": datetime.date.today().isoformat(), "kernel": platform.release(),
        "size_bytes": len(cap.collected),
    }
    if "xfail" in old:
        entry["xfail"] = old["xfail"]
    manifest[sc.key] = entry
    check.save_manifest(manifest)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", help="SYMPTOM/NAME or SYMPTOM (default: all)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--quiet-wait", type=float, default=120, metavar="SECONDS",
                        help="wait up to this long for an idle host before each scenario")
    args = parser.parse_args(argv)
    if args.list:
        for key, sc in SCENARIOS.items():
            print(f"{key:45} {sc.expected} > {sc.lookalike}")
        return 0
    if os.geteuid() != 0:
        parser.error("needs root (cgroups, mounts, namespaces)")
    wanted = [k for k in SCENARIOS
              if not args.scenarios or any(k == a or k.split("/")[0] == a for a in args.scenarios)]
    unknown = [a for a in args.scenarios
               if not any(k == a or k.split("/")[0] == a for k in SCENARIOS)]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; --list shows them")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # run the finally blocks
    failed = 0
    for key in wanted:
        sc = SCENARIOS[key]
        wait_for_quiet(args.quiet_wait)
        try:
            path = capture(sc)
        except Exception as err:  # one broken scenario must not stop the others
            failed += 1
            print(f"FAILED  {key}: {type(err).__name__}: {err}", flush=True)
            continue
        entry = check.load_manifest()[key]
        problems = check.judge(check.diagnose_fixture(path, sc.symptom), entry)
        verdict = "ok" if not problems else "WRONG   " + "; ".join(problems)
        print(f"{'ok     ' if not problems else 'wrong  '} {key} ({path.stat().st_size} B)"
              f"{'' if not problems else ': ' + verdict}", flush=True)
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
