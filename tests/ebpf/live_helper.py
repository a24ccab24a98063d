"""Runs one eBPF probe around one known workload and prints the facts as JSON.

tests/ebpf/test_live.py starts it in private mount and network namespaces
(`unshare --mount --net`), where it may mount tracefs and FUSE without touching the
host's mount table, and where loopback traffic is its own. Usage:

    live_helper.py PROBE WORKLOAD [--scope-child]

Every workload cleans up after itself (children killed, sockets closed, mounts gone
with the namespace).
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from sysdiag.facts import Scope
from sysdiag.probes.base import ProbeContext
from sysdiag.probes.registry import all_probes

LIBC = ctypes.CDLL(None, use_errno=True)


def mount(source: str, target: str, fstype: str, data: str = "") -> None:
    if LIBC.mount(source.encode(), target.encode(), fstype.encode(), 0,
                  data.encode() or None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype} on {target}: {os.strerror(err)}")


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, timeout=10, capture_output=True)


def setup() -> None:
    if not os.path.isdir("/sys/kernel/tracing/events"):
        mount("nodev", "/sys/kernel/tracing", "tracefs")
    run("ip", "link", "set", "lo", "up")


def spin() -> None:
    while True:
        pass


def child(fn, *args) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            fn(*args)
        finally:
            os._exit(0)
    return pid


# ---- workloads: each returns (children, cleanup) after starting the load; the
# ---- probe was attached before they start (except runq, which needs the scope pid)

def udp_noport(children):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(200):
        s.sendto(b"x", ("127.0.0.1", 9))  # discard port, nobody listens
    s.close()
    time.sleep(0.5)


def udp_rcvbuf(children):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(2000):
        tx.sendto(b"y" * 512, rx.getsockname())  # never read: the buffer overflows
    time.sleep(0.5)
    rx.close()
    tx.close()


def runq_victim() -> None:
    # CPU-bound, like the two others: it is preempted while runnable and waits for its
    # next slice. (A task that mostly sleeps is favoured on wakeup by EEVDF and often
    # runs at once, which makes a poor test.)
    spin()


def fuse_reader(path: str) -> None:
    os.stat(path)  # blocks: the daemon never answers


def fuse_stall(children):
    """A FUSE mount whose daemon (us) never answers: a stat() on it waits in the
    kernel, killable (D state), for the answer."""
    mp = tempfile.mkdtemp(prefix="sysdiag-fuse-")
    fd = os.open("/dev/fuse", os.O_RDWR)
    mount("sysdiag-test", mp, "fuse.sysdiag", f"fd={fd},rootmode=40000,user_id=0,group_id=0")
    pid = child(fuse_reader, os.path.join(mp, "file"))
    children.append(pid)
    time.sleep(1.5)
    return pid, lambda: os.close(fd)


def tcp_retrans(children):
    """A bulk TCP transfer over loopback shaped by HTB to a few kbit/s, with a 2-packet
    queue: the qdisc drops (QDISC_DROP) and TCP retransmits."""
    run("ip", "link", "set", "lo", "txqueuelen", "2")
    run("tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "10")
    run("tc", "class", "add", "dev", "lo", "parent", "1:", "classid", "1:10", "htb",
        "rate", "64kbit", "ceil", "64kbit")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    cli = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    cli.setblocking(False)
    sent, deadline = 0, time.monotonic() + 2.5
    while time.monotonic() < deadline:
        try:
            sent += cli.send(b"z" * 65536)
        except BlockingIOError:
            time.sleep(0.01)
        conn.setblocking(False)
        try:
            conn.recv(1 << 20)
        except BlockingIOError:
            pass
    return None, lambda: (cli.close(), conn.close(), srv.close(),
                          run("tc", "qdisc", "del", "dev", "lo", "root"))


def block_io(children):
    with tempfile.NamedTemporaryFile(dir="/var/tmp", prefix="sysdiag-bio-") as fh:
        for _ in range(20):
            fh.write(os.urandom(64 * 1024))
            fh.flush()
            os.fsync(fh.fileno())
    time.sleep(0.2)


def toucher() -> None:
    buf = bytearray(64 << 20)  # fresh anonymous memory: one fault per page touched
    for i in range(0, len(buf), 4096):
        buf[i] = 1


def faults(children):
    pid = child(toucher)
    children.append(pid)
    os.waitpid(pid, 0)
    children.remove(pid)
    return pid, None


WORKLOADS = {"udp-noport": udp_noport, "udp-rcvbuf": udp_rcvbuf, "fuse": fuse_stall,
             "tcp-retrans": tcp_retrans, "block-io": block_io, "faults": faults}


def main() -> int:
    probe_name, workload = sys.argv[1], sys.argv[2]
    setup()
    children: list[int] = []
    scope = Scope()
    try:
        if workload == "runq":
            # three busy loops on CPU 0; the last is the victim, the scope of the trace
            for fn in (spin, spin, runq_victim):
                children.append(child(fn))
            for pid in children:
                os.sched_setaffinity(pid, {0})
            scope = Scope(pid=children[-1])
        ctx = ProbeContext(scope=scope)
        probe = all_probes()[probe_name]()
        probe.check(ctx)
        started = time.monotonic()
        probe.sample(ctx)
        subject, cleanup = None, None
        if workload == "runq":
            time.sleep(2.0)
            subject = children[-1]
        else:
            result = WORKLOADS[workload](children)
            if result:
                subject, cleanup = result
        last = probe.sample(ctx)
        facts = probe.facts(ctx, None, last, time.monotonic() - started)
        if cleanup:
            cleanup()
        print(json.dumps({"subject": subject, "facts": [f.model_dump(mode="json") for f in facts]}))
        return 0
    finally:
        for pid in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


if __name__ == "__main__":
    sys.exit(main())
