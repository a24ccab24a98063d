"""Network namespaces, veth pairs, qdiscs and traffic for the network fault tests.

Everything here happens inside network namespaces the test creates (two namespaces joined by
one veth pair) or on loopback inside them; nothing is ever sent to an outside address. Each
fault is bounded: traffic scripts stop by themselves after at most MAX_FAULT_S seconds, every
process started here is killed and reaped by the `Lab` that started it, and deleting the
namespaces removes their interfaces, qdiscs, addresses, routes and per-namespace sysctls.
The few sysctls that are global (nf_conntrack_max, netdev_max_backlog) are changed only through
`global_sysctl`, which restores the old value in `finally`.
"""
from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: no fault outlives this, even if the test that made it hangs
MAX_FAULT_S = 60
CMD_TIMEOUT_S = 10
PYTHON = sys.executable

_serial = itertools.count()


def run(*argv: str, ns: str | None = None, check: bool = True,
        timeout: float = CMD_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run one command (an argument list, never a shell), inside `ns` when given."""
    full = ["ip", "netns", "exec", ns, *argv] if ns else list(argv)
    proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(full)} -> exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def can_run_lab() -> str | None:
    """Why the network fault tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (ip netns, tc)"
    for tool in ("ip", "tc"):
        if not any(Path(d, tool).exists() for d in os.environ.get("PATH", "").split(":") + ["/usr/sbin", "/sbin"]):
            return f"needs {tool} (iproute2)"
    if not Path("/proc/sys/net/ipv4").is_dir():
        return "kernel without IPv4 networking"
    return None


#: serializes global sysctl changes between concurrent runs of these tests: without it, a
#: second run would save the first run's temporary value as "old" and restore that
GLOBAL_SYSCTL_LOCK = Path("/run/lock/sysdiag-e2e-global-sysctl.lock")


@contextlib.contextmanager
def global_sysctl(key: str, value: str) -> Iterator[str]:
    """Set a host-wide sysctl (e.g. 'net/core/netdev_max_backlog') for the duration of the
    block and restore the previous value in `finally`, even when the block fails.
    Keep the block short: every namespace on the host sees the change."""
    path = Path("/proc/sys") / key
    GLOBAL_SYSCTL_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(GLOBAL_SYSCTL_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held by another run for at most ~MAX_FAULT_S
        old = path.read_text().strip()
        path.write_text(value)
        try:
            yield old
        finally:
            path.write_text(old)
            assert path.read_text().strip() == old, f"{path} not restored to {old}"


@dataclass
class Lab:
    """Two fresh namespaces `a` and `b` joined by a veth pair `if_a` (in a) <-> `if_b` (in b),
    addressed `addr_a`/`addr_b` in 10.77.0.0/24, with loopback up in both. The processes it
    starts are the only ones it kills."""

    tag: str
    a: str = ""
    b: str = ""
    if_a: str = ""
    if_b: str = ""
    addr_a: str = "10.77.0.1"
    addr_b: str = "10.77.0.2"
    procs: list[subprocess.Popen] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = f"{os.getpid()}x{next(_serial)}"
        self.a, self.b = f"sdx-{self.tag}-a-{n}", f"sdx-{self.tag}-b-{n}"
        # interface names are at most 15 bytes; the tag makes the evidence easy to check
        self.if_a, self.if_b = f"{self.tag[:10]}0", f"{self.tag[:10]}1"

    # -- set-up and tear-down ---------------------------------------------------------------
    def create(self) -> None:
        sweep_stale_namespaces()
        run("ip", "netns", "add", self.a)
        run("ip", "netns", "add", self.b)
        # created directly inside the namespaces: the names never exist on the host
        run("ip", "link", "add", self.if_a, "netns", self.a, "type", "veth",
            "peer", "name", self.if_b, "netns", self.b)
        for ns, ifname, addr in ((self.a, self.if_a, self.addr_a), (self.b, self.if_b, self.addr_b)):
            run("ip", "link", "set", "lo", "up", ns=ns)
            run("ip", "addr", "add", f"{addr}/24", "dev", ifname, ns=ns)
            run("ip", "link", "set", ifname, "up", ns=ns)

    def destroy(self) -> list[str]:
        """Kill our processes, delete both namespaces; returns what could not be undone."""
        problems = [p for p in (self._stop(proc) for proc in self.procs) if p]
        for ns in (self.a, self.b):
            proc = run("ip", "netns", "del", ns, check=False)
            if proc.returncode != 0 and "No such file" not in proc.stderr:
                problems.append(f"ip netns del {ns}: {proc.stderr.strip()}")
        return problems

    @staticmethod
    def _stop(proc: subprocess.Popen) -> str | None:
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return f"pid {proc.pid} did not exit after SIGKILL"
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
        return None

    # -- helpers ----------------------------------------------------------------------------
    def sh(self, ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(*argv, ns=ns, check=check)

    def sysctl(self, ns: str, key: str, value: str) -> None:
        """A per-namespace sysctl (net.ipv4.conf.*, ip_local_port_range...): it goes away
        with the namespace. Refuses keys that are global, which must use global_sysctl."""
        path = f"/proc/sys/{key.replace('.', '/')}"
        run(PYTHON, "-c", f"open({path!r}, 'w').write({value!r})", ns=ns)

    def start(self, ns: str, script: str, *args: object, ready: bool = True,
              cpu: int | None = None) -> subprocess.Popen:
        """Start `python3 -c script args...` inside `ns` (pinned to `cpu` when given). The
        scripts below take their run time as first argument and stop by themselves; with
        `ready`, wait for the script's first line ('ready') so the fault exists before
        diagnose starts."""
        argv = ["ip", "netns", "exec", ns, PYTHON, "-c", script, *map(str, args)]
        pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=pin)
        self.procs.append(proc)
        if ready:
            line = proc.stdout.readline().strip()
            if line != "ready":
                self._stop(proc)
                raise RuntimeError(f"{script.splitlines()[1]!r} did not start: {line!r} "
                                   f"{proc.stderr.read()[-1500:]}")
        return proc

    def finish(self, proc: subprocess.Popen, timeout: float = MAX_FAULT_S + 10) -> str:
        """Wait for a script to end by itself and return its output (its last line is a
        summary such as 'sent=... errors=...')."""
        out, err = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"traffic script failed ({proc.returncode}): {err[-1500:]}")
        return out.strip()


def sweep_stale_namespaces() -> list[str]:
    """Delete the namespaces of earlier runs whose test process is gone (a runner killed
    with SIGKILL cannot clean up); names are sdx-TAG-a|b-PIDxN. Returns the names deleted."""
    gone = []
    for path in Path("/run/netns").glob("sdx-*-*x*") if Path("/run/netns").is_dir() else []:
        pid = path.name.rsplit("-", 1)[-1].split("x", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            run("ip", "netns", "del", path.name, check=False)
            gone.append(path.name)
    return gone


@contextlib.contextmanager
def lab(tag: str) -> Iterator[Lab]:
    """A Lab that exists for the block and is removed in `finally`, even on failure."""
    the_lab = Lab(tag)
    try:
        the_lab.create()
        yield the_lab
    finally:
        problems = the_lab.destroy()
        assert not problems, problems


# -- the kernel's own view, to check a fault is real before judging the diagnosis ----------

def qdiscs(ns: str, ifname: str) -> list[dict]:
    """`tc -s -j qdisc show dev IF` in `ns`: kind, handle, drops, overlimits, backlog..."""
    return json.loads(run("tc", "-s", "-j", "qdisc", "show", "dev", ifname, ns=ns).stdout)


def link_stats(ns: str, ifname: str) -> dict:
    """`ip -s -j link show dev IF` in `ns`: mtu and stats64 {rx, tx}."""
    return json.loads(run("ip", "-s", "-j", "link", "show", "dev", ifname, ns=ns).stdout)[0]


def snmp(ns: str) -> dict[str, int]:
    """The namespace's /proc/net/snmp and /proc/net/netstat as {'UdpRcvbufErrors': N, ...}."""
    counters: dict[str, int] = {}
    for name in ("snmp", "netstat"):
        lines = run("cat", f"/proc/net/{name}", ns=ns).stdout.splitlines()
        for head, values in zip(lines[::2], lines[1::2]):
            prefix, keys = head.split(":", 1)
            counters.update({prefix + k: int(v) for k, v in zip(keys.split(), values.split(":", 1)[1].split())})
    return counters


def softnet_dropped() -> dict[int, int]:
    """Column 2 of /proc/net/softnet_stat (backlog drops) per CPU (column 13; global)."""
    drops = {}
    for row, line in enumerate(Path("/proc/net/softnet_stat").read_text().splitlines()):
        cols = [int(c, 16) for c in line.split()]
        drops[cols[12] if len(cols) > 12 else row] = cols[1]
    return drops


# -- traffic scripts -----------------------------------------------------------------------
# Each takes its duration (seconds, capped at MAX_FAULT_S) as argv[1], prints 'ready' once
# its socket exists, and exits by itself when the time is up.

_BOUND = (f"import signal, sys, time\nsignal.alarm({MAX_FAULT_S + 5})  # a backstop if a call blocks\n"
          f"DUR = min(float(sys.argv[1]), {MAX_FAULT_S})\nEND = time.monotonic() + DUR\n")

#: UDP datagrams of SIZE bytes to HOST:PORT, in bursts of BURST back-to-back datagrams at RATE
#: datagrams per second (0: as fast as possible), from source address SRC unless it is "-"
UDP_FLOOD = _BOUND + """\
import socket
host, port, size, rate, burst, src = (sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
                                      float(sys.argv[5]), int(sys.argv[6]), sys.argv[7])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if src != "-":
    s.bind((src, 0))
payload = b"x" * size
sent = errors = 0
print("ready", flush=True)
gap = burst / rate if rate > 0 else 0.0
nxt = time.monotonic()
while time.monotonic() < END:
    for _ in range(burst):
        try:
            s.sendto(payload, (host, port)); sent += 1
        except OSError:
            errors += 1  # ENOBUFS from a full qdisc, ECONNREFUSED from an ICMP error
    if gap:
        nxt += gap
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)
print(f"sent={sent} errors={errors}", flush=True)
"""

#: a UDP socket on HOST:PORT with SO_RCVBUF=RCVBUF that never reads
UDP_DEAF_RECEIVER = _BOUND + """\
import socket
host, port, rcvbuf = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
s.bind((host, port))
print("ready", flush=True)
time.sleep(max(0.0, END - time.monotonic()))
"""

#: a UDP socket on HOST:PORT that reads everything it gets
UDP_SINK = _BOUND + """\
import socket
host, port = sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
# SO_RCVBUFFORCE (root) passes net.core.rmem_max: this sink must not be a drop site itself
s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 16 << 20)
s.bind((host, port)); s.settimeout(0.2)
got = 0
print("ready", flush=True)
while time.monotonic() < END:
    try:
        s.recv(65536); got += 1
    except socket.timeout:
        pass
print(f"received={got}", flush=True)
"""

#: a TCP listener on HOST:PORT with listen(BACKLOG) that never calls accept()
TCP_DEAF_LISTENER = _BOUND + """\
import socket
host, port, backlog = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port)); s.listen(backlog)
print("ready", flush=True)
time.sleep(max(0.0, END - time.monotonic()))
"""

#: a TCP server on HOST:PORT that accepts and reads everything (throughput sink)
TCP_SINK = _BOUND + """\
import socket, selectors
host, port = sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port)); s.listen(64); s.setblocking(False)
sel = selectors.DefaultSelector(); sel.register(s, selectors.EVENT_READ)
got = 0
print("ready", flush=True)
while time.monotonic() < END:
    for key, _ in sel.select(timeout=0.2):
        if key.fileobj is s:
            c, _ = s.accept(); c.setblocking(False); sel.register(c, selectors.EVENT_READ)
        else:
            try:
                data = key.fileobj.recv(1 << 20)
            except (BlockingIOError, ConnectionError):
                continue
            if not data:
                sel.unregister(key.fileobj); key.fileobj.close()
            got += len(data)
print(f"received_bytes={got}", flush=True)
"""

#: one TCP connection to HOST:PORT that sends as fast as the path allows
TCP_BULK = _BOUND + """\
import socket
host, port = sys.argv[2], int(sys.argv[3])
s = socket.create_connection((host, port), timeout=5)
s.settimeout(1.0)
chunk = b"x" * 65536
sent = 0
print("ready", flush=True)
while time.monotonic() < END:
    try:
        sent += s.send(chunk)
    except socket.timeout:
        pass
print(f"sent_bytes={sent}", flush=True)
"""

#: non-blocking connects to HOST:PORT at RATE per second, each abandoned after 2 s; counts
#: how each ended (refused, timed out, EADDRNOTAVAIL, ENETUNREACH, EHOSTUNREACH, connected)
CONNECT_LOOP = _BOUND + """\
import socket, errno, collections
host, port, rate = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
outcomes = collections.Counter()
pending = []
print("ready", flush=True)
nxt = time.monotonic()
while time.monotonic() < END:
    now = time.monotonic()
    if now >= nxt:
        nxt += 1.0 / rate
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        rc = s.connect_ex((host, port))
        if rc == errno.EINPROGRESS:
            pending.append((now + 2.0, s))
        else:
            outcomes[errno.errorcode.get(rc, "connected")] += 1; s.close()
    still = []
    for deadline, s in pending:
        rc = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if rc:
            outcomes[errno.errorcode.get(rc, str(rc))] += 1; s.close()
        elif now >= deadline:
            try:
                s.getpeername(); outcomes["connected"] += 1
            except OSError:
                outcomes["timeout"] += 1
            s.close()
        else:
            still.append((deadline, s))
    pending = still
    time.sleep(0.005)
for _, s in pending:
    s.close()
print(" ".join(f"{k}={v}" for k, v in sorted(outcomes.items())), flush=True)
"""

#: opens connections to HOST:PORT and keeps them open until the end (fills the port range or
#: the conntrack table); reports how many succeeded and the errno of the failures
CONNECT_HOLD = _BOUND + """\
import socket, errno, collections
host, port, count = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
held, outcomes = [], collections.Counter()
for _ in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect((host, port)); held.append(s); outcomes["connected"] += 1
    except OSError as err:
        outcomes[errno.errorcode.get(err.errno, "timeout")] += 1; s.close()
print("ready", flush=True)
print(" ".join(f"{k}={v}" for k, v in sorted(outcomes.items())), flush=True)
time.sleep(max(0.0, END - time.monotonic()))
"""

#: a TCP server on HOST:PORT with SO_RCVBUF=RCVBUF (set before listen, so the accepted socket
#: inherits it and autotuning is off) that reads 1 kB every 50 ms: the window closes
TCP_SLOW_READER = _BOUND + """\
import socket
host, port, rcvbuf = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
s.bind((host, port)); s.listen(8)
print("ready", flush=True)
s.settimeout(max(0.1, END - time.monotonic()))
c, _ = s.accept()
got = 0
while time.monotonic() < END:
    data = c.recv(1024)
    if not data:
        break
    got += len(data)
    time.sleep(0.05)
print(f"received_bytes={got}", flush=True)
"""
