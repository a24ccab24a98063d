"""Real host faults (CPU, memory, processes, storage, cgroups), each created here,
diagnosed by the installed `diagnose` scoped as a user would scope it, then removed.

Every fault is bounded (children carry a 60 s alarm) and undone by the `undo` stack even
when a check fails; only processes started here are killed; cgroups are created empty
under the root of each hierarchy (v1: one directory per controller, plus the unified
hierarchy of a hybrid for pressure; v2: one directory) and removed. Other work on the host
may run at the same time, so checks are about our objects, not a quiet host.
"""
from __future__ import annotations

import errno
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from faults import (Procs, Sysctl, TestCgroup, Tmpfs, mounted, run, state_of,
                    wait_until)
from harness import Pid, diagnose, find, summary

pytestmark = [pytest.mark.e2e, pytest.mark.live, pytest.mark.root, pytest.mark.slow,
              pytest.mark.usefixtures("as_root")]

BUSY = "while True: pass\n"
SLEEP = "import time; time.sleep(60)\n"

#: forks 50 children that exit at once and never reaps them (until killed)
ZOMBIE_PARENT = """\
import os, time
kids = []
for _ in range(50):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    kids.append(pid)
print(" ".join(map(str, kids)), flush=True)
time.sleep(60)
"""

#: in a memory cgroup: forks a child that allocates until the OOM killer ends it, again
#: and again, so kills happen during the window (the child, oom_score_adj 1000 and the
#: largest, is the victim; lowering the parent's needs CAP_SYS_RESOURCE, which CI may lack)
OOM_LOOP = """\
import os, time
while True:
    pid = os.fork()
    if pid == 0:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
        chunks = []
        while True:
            chunks.append(b"\\1" * (8 << 20))
    os.waitpid(pid, 0)
    # at most ~8 kills per 5 s: the kernel rate-limits the OOM report (10 per 5 s), and a
    # kill whose constraint line was suppressed cannot be attributed to its cgroup
    time.sleep(0.6)
"""

#: opens /dev/null until EMFILE under a soft and hard limit of 64, then holds them
FD_HOG = """\
import os, resource, time
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
fds = []
try:
    while True:
        fds.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
print(len(fds), flush=True)
time.sleep(60)
"""

#: becomes uid 65534 (nobody: its counts are not mixed with root's other watchers) and
#: opens inotify instances until inotify_init fails (max_user_instances), then holds them
INOTIFY_HOG = """\
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
n = 0
while libc.inotify_init1(0) >= 0:
    n += 1
print(n, ctypes.get_errno(), flush=True)
time.sleep(60)
"""

#: as uid 65534, one inotify instance watching new directories under argv[1] until
#: inotify_add_watch fails (max_user_watches), then holds them
INOTIFY_WATCHER = """\
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
top = sys.argv[1]
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
fd = libc.inotify_init1(0)
n = 0
while True:
    path = os.path.join(top, str(n))
    os.mkdir(path)
    if libc.inotify_add_watch(fd, path.encode(), 2) < 0:
        break
    n += 1
print(n, ctypes.get_errno(), flush=True)
time.sleep(60)
"""

#: forks sleeping children until fork fails (the cgroup's pids.max), then waits
FORKER = """\
import os, time
kids = 0
while True:
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    kids += 1
print(kids, flush=True)
time.sleep(60)
"""

#: takes an exclusive fcntl lock on argv[1] and holds it (waiters block in F_SETLKW)
LOCKER = """\
import fcntl, sys, time
f = open(sys.argv[1], "a")
fcntl.lockf(f, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""

#: holds a deleted 24 MiB file open on argv[1]'s filesystem
DELETED_HOLDER = """\
import os, sys, time
f = open(sys.argv[1], "wb")
f.write(b"\\1" * (24 << 20))
f.flush()
os.unlink(sys.argv[1])
print("held", flush=True)
time.sleep(60)
"""

#: two threads hashing (hashlib releases the GIL): wants two CPUs. The main thread is one
#: of them: a process's run delay is read from its main thread's schedstat.
TWO_THREADS = """\
import hashlib, threading
buf = b"x" * (1 << 20)
def spin():
    while True:
        hashlib.sha256(buf).digest()
threading.Thread(target=spin, daemon=True).start()
spin()
"""

#: reads argv[1] (a file larger than its memory cgroup) through a random-access mmap,
#: over and over: every pass faults the file back in from disk
MMAP_THRASHER = """\
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
m = mmap.mmap(fd, size, prot=mmap.PROT_READ)
m.madvise(mmap.MADV_RANDOM)
while True:
    for off in range(0, size, 4096):
        m[off]
"""


#: accepts argv[1] loopback connections, closes the client ends and keeps the accepted ones:
#: each stays in CLOSE_WAIT (the peer's FIN came, this end never called close()). With
#: argv[2] == "netns" in a network namespace of its own (lo brought up there); with a
#: limit argv[3] > 0, RLIMIT_NOFILE is set to it and, once the sockets are held, /dev/null
#: is opened until EMFILE (the leak has reached the limit)
CLOSE_WAIT_HOLDER = """\
import ctypes, os, resource, socket, subprocess, sys, time
count, where, limit = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
if where == "netns":
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
if limit:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(512)
held, clients = [], []
for _ in range(count):
    clients.append(socket.create_connection(srv.getsockname()))
    held.append(srv.accept()[0])
for c in clients:
    c.close()
srv.close()
others = []
try:
    while limit:
        others.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
print(len(held), flush=True)
time.sleep(60)
"""

#: creates argv[2] small files in argv[1], unlinks each and keeps it open (rotated logs
#: never reopened)
DELETED_FILES_HOLDER = """\
import os, sys, time
fds = []
for i in range(int(sys.argv[2])):
    path = os.path.join(sys.argv[1], f"rotated.{i}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"x" * 4096)
    os.unlink(path)
    fds.append(fd)
print(len(fds), flush=True)
time.sleep(60)
"""


def wchan(pid: int) -> str:
    return Path(f"/proc/{pid}/wchan").read_text().strip()


def idle_cpus(seconds: float = 1.0) -> float:
    """CPUs' worth of idle time on the host over `seconds` (from /proc/stat)."""
    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)
    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return (idle1 - idle0) / max(1, total1 - total0) * (os.cpu_count() or 1)


def readline(proc: subprocess.Popen, timeout: float = 10) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"pid {proc.pid} printed nothing in {timeout} s"
    return proc.stdout.readline().strip()


# --- CPU -------------------------------------------------------------------------------

#: system calls in a tight loop: 64 KiB reads of /dev/zero, where the kernel does the work
#: (clearing the buffer), so most of the loop's CPU time is system time (about 3:1 here)
SYSCALL_LOOP = """\
import os
fd = os.open("/dev/zero", os.O_RDONLY)
buf = bytearray(1 << 16)
while True:
    os.readv(fd, [buf])
"""


def throttled_cgroup(undo, procs: Procs, name: str, quota_pct: int = 10) -> TestCgroup:
    """A cgroup allowed quota_pct % of one CPU, with a busy loop in it."""
    cg = undo.enter_context(TestCgroup(name, ["cpu"]))
    period = 100_000
    quota = period * quota_pct // 100
    if cg.v2:
        cg.write("cpu", None, "cpu.max", f"{quota} {period}")
    else:
        cg.write("cpu", "cpu.cfs_period_us", None, str(period))
        cg.write("cpu", "cpu.cfs_quota_us", None, str(quota))
    procs.python(BUSY, cgroup=cg)
    return cg


def test_cpu_quota_throttles_a_cgroup(undo, accuracy):
    procs = undo.enter_context(Procs())
    cg = throttled_cgroup(undo, procs, "cpu-throttle")
    time.sleep(0.5)
    report = diagnose("high-latency", cgroup=cg.path)
    accuracy.check(report, "cpu-cgroup-throttling", names=[cg.path])


def test_one_busy_process_is_a_runaway(undo, accuracy):
    procs = undo.enter_context(Procs())
    loop = procs.python(BUSY)
    time.sleep(0.5)
    report = diagnose("high-cpu", pid=loop.pid)
    accuracy.check(report, "cpu-runaway-userspace", names=[Pid(loop.pid)])


def test_two_busy_loops_are_runaways_saturating_the_cpus(undo, accuracy):
    """Moved from test_foundation_faults: as many loops as CPUs, no scope. Each loop is a
    runaway and together they saturate the host: both in the top 3, both loops named."""
    procs = undo.enter_context(Procs())
    loops = [procs.python(BUSY) for _ in range(os.cpu_count() or 2)]
    time.sleep(0.5)
    report = diagnose("high-cpu", window=3)
    accuracy.check(report, ["cpu-runaway-userspace", "cpu-saturation"],
                   names=[[Pid(loops[0].pid)], []])
    for loop in loops[1:]:
        assert find(report, "cpu-runaway-userspace", [Pid(loop.pid)]), (loop.pid,
                                                                         summary(report))


def test_syscall_loop_spends_its_cpu_in_the_kernel(undo, accuracy):
    """One process making system calls non-stop: busy like a runaway, but in the kernel."""
    procs = undo.enter_context(Procs())
    loop = procs.python(SYSCALL_LOOP)
    time.sleep(0.5)
    report = diagnose("high-cpu", pid=loop.pid)
    (found,) = accuracy.check(report, "cpu-kernel-sys-time", names=[Pid(loop.pid)])
    system = [e for e in found["evidence"] if e["field"] == "system_cpu_pct"]
    assert system and system[0]["value"] >= 50, summary(report)


def test_cpuset_confines_two_threads_to_one_cpu(undo, accuracy):
    if os.cpu_count() < 2:
        pytest.skip("needs 2 CPUs: one allowed, one left idle")
    if idle_cpus() < 1.5:
        # the fault is "one CPU saturated while another idles"; other work on a shared
        # host can take the idle one (CI runs the suite alone)
        pytest.skip("the host is busy: no CPU would stay idle next to the cpuset")
    procs = undo.enter_context(Procs())
    cg = undo.enter_context(TestCgroup("cpuset", ["cpuset"]))
    cg.write("cpuset", "cpuset.cpus", "cpuset.cpus", "0")
    hog = procs.python(TWO_THREADS, cgroup=cg)
    time.sleep(0.5)
    report = diagnose("high-latency", pid=hog.pid)
    accuracy.check(report, "cpu-cpuset-confinement", names=[Pid(hog.pid)])


# --- memory ----------------------------------------------------------------------------

def recent_memcg_oom(within_s: float = 15 * 60) -> bool:
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    for line in run("dmesg", check=False).stdout.splitlines():
        if "Memory cgroup out of memory" in line and line.startswith("["):
            stamp = float(line[1:line.index("]")])
            if uptime - stamp <= within_s:
                return True
    return False


def test_file_larger_than_its_memory_cgroup_thrashes(undo, accuracy, tmp_path):
    """No swap here (and often in CI): a 256 MiB file read through mmap in a 32 MiB memory
    cgroup is evicted and faulted back in from disk on every pass."""
    if recent_memcg_oom():
        # a memcg OOM in the last 15 min is reported (confirmed) for memory-pressure too;
        # this test runs before the OOM test, but not after an earlier run of it
        pytest.skip("a memory cgroup OOM-killed a task in the last 15 minutes")
    data = tmp_path / "big"
    with open(data, "wb") as f:
        for _ in range(256):
            f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())
        # drop it from the page cache (and from our cgroup's charge): the thrasher must read
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    procs = undo.enter_context(Procs())
    cg = undo.enter_context(TestCgroup("thrash", ["memory"]))
    cg.write("memory", "memory.limit_in_bytes", "memory.max", str(32 << 20))
    procs.python(MMAP_THRASHER, str(data), cgroup=cg)
    time.sleep(2)
    report = diagnose("memory-pressure", cgroup=cg.path)
    # the finding about the cgroup at its limit, not only the host-wide fault counters
    accuracy.check(report, "mem-thrashing", names=[cg.path])


def meminfo_kib(field: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"/proc/meminfo has no {field}")


def test_large_tmpfs_pins_shared_memory(undo, accuracy, tmp_path):
    """A tmpfs holding 28 % of memory (the rule wants shmem >= 20 %): without swap, reclaim
    cannot free it. The file is allocated at once (fallocate), removed with the mount."""
    if recent_memcg_oom():
        pytest.skip("a memory cgroup OOM-killed a task in the last 15 minutes")
    total, available = meminfo_kib("MemTotal"), meminfo_kib("MemAvailable")
    size = total * 28 // 100 * 1024
    if available * 1024 < 2 * size:
        pytest.skip("less than twice the tmpfs size is available: the host would run short")
    fs = undo.enter_context(Tmpfs(tmp_path / "shmem", f"size={size + (64 << 20)}"))
    fd = os.open(fs.mountpoint / "pinned", os.O_WRONLY | os.O_CREAT, 0o600)
    undo.callback(os.close, fd)
    os.posix_fallocate(fd, 0, size)
    report = diagnose("memory-pressure")
    (found,) = accuracy.check(report, "mem-pinned-hugetlb-shmem")
    shmem = [e for e in found["evidence"] if e["field"] == "shmem_pct"]
    assert shmem and shmem[0]["value"] >= 20, summary(report)


def test_hugepages_reserved_but_unused(undo, accuracy):
    """vm.nr_hugepages reserving 15 % of memory that no process maps (the rule wants >= 10 %
    with half of it free); the old value is restored on exit."""
    if recent_memcg_oom():
        pytest.skip("a memory cgroup OOM-killed a task in the last 15 minutes")
    total, available = meminfo_kib("MemTotal"), meminfo_kib("MemAvailable")
    page = meminfo_kib("Hugepagesize")
    if page == 0 or meminfo_kib("HugePages_Total") != 0:
        pytest.skip("no hugepages here, or some are reserved already (by someone else)")
    pages = total * 15 // 100 // page
    if available < 2 * pages * page:
        pytest.skip("less than twice the reservation is available: the host would run short")
    undo.enter_context(Sysctl("vm.nr_hugepages", str(pages)))
    if meminfo_kib("HugePages_Total") * page < total // 10:
        pytest.skip("the kernel could not reserve 10 % of memory in hugepages (fragmented)")
    report = diagnose("memory-pressure")
    (found,) = accuracy.check(report, "mem-pinned-hugetlb-shmem")
    assert any(e["field"] == "hugetlb_pct" and e["value"] >= 10 for e in found["evidence"]), \
        summary(report)


def test_memory_cgroup_oom_kills_its_task(undo, accuracy):
    procs = undo.enter_context(Procs())
    cg = undo.enter_context(TestCgroup("oom", ["memory"]))
    cg.write("memory", "memory.limit_in_bytes", "memory.max", str(64 << 20))
    procs.python(OOM_LOOP, cgroup=cg)
    time.sleep(1)  # the first kills
    report = diagnose("oom", cgroup=cg.path)
    accuracy.check(report, "mem-cgroup-oom", names=[cg.path])


#: writes 48 MiB into the tmpfs file argv[1] (charged to its memory cgroup, unreclaimable
#: without swap), then runs OOM_LOOP in what is left of the limit
TMPFS_THEN_OOM = """\
with open(sys.argv[1], "wb") as f:
    for _ in range(48):
        f.write(b"\\1" * (1 << 20))
""" + OOM_LOOP


def test_tmpfs_charged_to_a_memory_cgroup_leaves_its_task_oom_killed(undo, accuracy,
                                                                     tmp_path):
    """The cgroup's 64 MiB limit is mostly tmpfs pages its task wrote: the task's own
    allocations are then OOM-killed in what remains."""
    fs = undo.enter_context(Tmpfs(tmp_path / "charged", "size=128m"))
    procs = undo.enter_context(Procs())
    cg = undo.enter_context(TestCgroup("oom-tmpfs", ["memory"]))
    cg.write("memory", "memory.limit_in_bytes", "memory.max", str(64 << 20))
    procs.python(TMPFS_THEN_OOM, str(fs.mountpoint / "data"), cgroup=cg)
    wait_until(lambda: (fs.mountpoint / "data").exists()
               and (fs.mountpoint / "data").stat().st_size >= 48 << 20, 20, "48 MiB of tmpfs")
    time.sleep(1)  # the first kills
    report = diagnose("oom", cgroup=cg.path)
    accuracy.check(report, "mem-cgroup-oom", names=[cg.path])


# --- processes -------------------------------------------------------------------------

def zombie_parent(procs: Procs) -> tuple[subprocess.Popen, list[int]]:
    parent = procs.python(ZOMBIE_PARENT, stdout=True)
    kids = [int(p) for p in readline(parent).split()]
    assert len(kids) == 50
    wait_until(lambda: all(state_of(k) == "Z" for k in kids), 10, "50 zombies")
    return parent, kids


def stopped_sleeper(procs: Procs) -> subprocess.Popen:
    sleeper = procs.python(SLEEP)
    os.kill(sleeper.pid, signal.SIGSTOP)
    wait_until(lambda: state_of(sleeper.pid) == "T", 10, f"pid {sleeper.pid} stopped")
    return sleeper


def test_unreaped_children_are_zombie_accumulation_of_the_parent(undo, accuracy):
    procs = undo.enter_context(Procs())
    parent, _ = zombie_parent(procs)
    report = diagnose("process-hang")
    (found,) = accuracy.check(report, "proc-zombie-accumulation", names=[Pid(parent.pid)])
    zombies = [e for e in found["evidence"] if e["field"] == "zombies"]
    assert zombies and zombies[0]["value"] >= 50


def test_sigstopped_process_is_stopped_traced(undo, accuracy):
    procs = undo.enter_context(Procs())
    sleeper = stopped_sleeper(procs)
    report = diagnose("process-hang", pid=sleeper.pid)
    (found,) = accuracy.check(report, "proc-stopped-traced", names=[Pid(sleeper.pid)])
    assert found["certainty"] == "confirmed"


def test_frozen_cgroup_is_stopped_not_a_fuse_stall(undo, accuracy):
    """Look-alike of the FUSE stall: tasks that do not move, but frozen by their cgroup."""
    procs = undo.enter_context(Procs())
    # v1: the same path in the cpu hierarchy too, as container runtimes and systemd do
    # (a process's cgroup is read from its cpu line there)
    cg = undo.enter_context(TestCgroup("frozen", ["freezer", "cpu"]))
    sleeper = procs.python(SLEEP, cgroup=cg)
    time.sleep(0.2)
    cg.freeze()
    wait_until(cg.frozen, 10, f"cgroup {cg.path} frozen")
    report = diagnose("process-hang", cgroup=cg.path)
    accuracy.check(report, "proc-stopped-traced", names=[Pid(sleeper.pid)])
    assert find(report, "io-userspace-fs-unresponsive", [Pid(sleeper.pid)]) is None


def test_fd_limit_reached_by_a_process(undo, accuracy):
    procs = undo.enter_context(Procs())
    hog = procs.python(FD_HOG, stdout=True)
    assert int(readline(hog)) >= 55
    report = diagnose("fd-exhaustion", pid=hog.pid)
    accuracy.check(report, "fd-rlimit-nofile", names=[Pid(hog.pid)])


def test_inotify_instance_limit_is_not_the_fd_limit(undo, accuracy):
    """"Too many open files" from inotify_init with 128 fds open of a 1024 limit: the
    per-user inotify instance limit, not RLIMIT_NOFILE."""
    procs = undo.enter_context(Procs())
    hog = procs.python(INOTIFY_HOG, stdout=True)
    count, err = map(int, readline(hog).split())
    limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    assert err == errno.EMFILE and 0 < count <= limit, (count, err, limit)
    report = diagnose("fd-exhaustion", pid=hog.pid)
    accuracy.check(report, "fs-inotify-limits", names=["uid 65534", str(hog.pid)])
    assert find(report, "fd-rlimit-nofile", [Pid(hog.pid)]) is None


def test_close_wait_sockets_held_are_an_fd_leak(undo, accuracy):
    """300 loopback connections whose peer closed and this process never did (the rule
    wants >= 100 CLOSE_WAIT held by one pid), far below its fd limit."""
    procs = undo.enter_context(Procs())
    holder = procs.python(CLOSE_WAIT_HOLDER, "300", "host", "0", stdout=True)
    assert int(readline(holder)) == 300
    report = diagnose("fd-exhaustion", pid=holder.pid)
    (found,) = accuracy.check(report, "fd-leak", names=[Pid(holder.pid)])
    held = [e for e in found["evidence"] if e["field"] == "close_wait_top_count"]
    assert held and held[0]["value"] >= 300, summary(report)


def test_close_wait_leak_in_a_network_namespace(undo, accuracy):
    """The same leak inside the process's own network namespace: `--pid` must read the
    sockets there, where the host's namespace shows none of them."""
    if shutil.which("ip") is None:
        pytest.skip("ip is not installed (iproute2)")
    procs = undo.enter_context(Procs())
    holder = procs.python(CLOSE_WAIT_HOLDER, "200", "netns", "0", stdout=True)
    assert int(readline(holder)) == 200
    assert os.readlink(f"/proc/{holder.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    report = diagnose("fd-exhaustion", pid=holder.pid)
    accuracy.check(report, "fd-leak", names=[Pid(holder.pid)])


def test_close_wait_leak_reaches_the_fd_limit(undo, accuracy):
    """Two findings of one process: 150 CLOSE_WAIT sockets leaked, and its fds (limit 400)
    used up. Both the leak and the limit rank in the top 3, naming the process."""
    procs = undo.enter_context(Procs())
    holder = procs.python(CLOSE_WAIT_HOLDER, "150", "host", "400", stdout=True)
    assert int(readline(holder)) == 150
    report = diagnose("fd-exhaustion", pid=holder.pid)
    accuracy.check(report, ["fd-leak", "fd-rlimit-nofile"],
                   names=[[Pid(holder.pid)], [Pid(holder.pid)]])


def test_deleted_files_held_open_are_an_fd_leak(undo, accuracy, tmp_path):
    """80 files unlinked while open, on a tmpfs only this process uses (the rule wants
    >= 50 deleted files with a single holder)."""
    fs = undo.enter_context(Tmpfs(tmp_path / "rotated", "size=8m"))
    procs = undo.enter_context(Procs())
    holder = procs.python(DELETED_FILES_HOLDER, str(fs.mountpoint), "80", stdout=True)
    assert int(readline(holder)) == 80
    report = diagnose("fd-exhaustion", pid=holder.pid)
    accuracy.check(report, "fd-leak", names=[Pid(holder.pid)])


def test_pids_cgroup_at_its_limit(undo, accuracy):
    procs = undo.enter_context(Procs())
    cg = undo.enter_context(TestCgroup("pids", ["pids"]))
    cg.write("pids", "pids.max", "pids.max", "20")
    forker = procs.python(FORKER, cgroup=cg, stdout=True)
    assert int(readline(forker)) == 19  # 20 tasks: the forker and 19 children
    report = diagnose("process-hang", cgroup=cg.path)
    accuracy.check(report, "proc-pid-exhaustion", names=[cg.path])


def test_fcntl_lock_holder_blocks_waiters(undo, accuracy, tmp_path):
    procs = undo.enter_context(Procs())
    lockfile = tmp_path / "db.lock"
    holder = procs.python(LOCKER, str(lockfile), stdout=True)
    assert readline(holder) == "locked"
    waiters = [procs.python(LOCKER, str(lockfile), stdout=True) for _ in range(3)]
    wait_until(lambda: all(state_of(w.pid) == "S" for w in waiters)
               and "->" in Path("/proc/locks").read_text(), 10, "waiters blocked on the lock")
    time.sleep(0.3)
    report = diagnose("process-hang", pid=waiters[0].pid)
    accuracy.check(report, "fs-lock-contention", names=[Pid(holder.pid)])


# --- storage and FUSE ------------------------------------------------------------------

def fill(directory: Path, one_file: bool) -> None:
    """Fill a filesystem: one growing file (blocks) or many empty ones (inodes)."""
    if one_file:
        with open(directory / "fill", "wb") as f:
            try:
                while True:
                    f.write(b"\1" * 65536)
                    f.flush()
            except OSError:
                pass
        return
    n = 0
    try:
        while True:
            (directory / f"f{n}").touch()
            n += 1
    except OSError:
        pass


def test_filesystem_out_of_inodes(undo, accuracy, tmp_path):
    fs = undo.enter_context(Tmpfs(tmp_path / "inodes", "size=4m,nr_inodes=64"))
    fill(fs.mountpoint, one_file=False)
    report = diagnose("disk-full")
    accuracy.check(report, "fs-inodes-full", names=[str(fs.mountpoint)])


def test_filesystem_out_of_blocks(undo, accuracy, tmp_path):
    fs = undo.enter_context(Tmpfs(tmp_path / "blocks", "size=1m"))
    fill(fs.mountpoint, one_file=True)
    report = diagnose("disk-full")
    accuracy.check(report, "fs-blocks-full", names=[str(fs.mountpoint)])


def test_inotify_watch_limit_is_not_a_full_disk(undo, accuracy):
    """"No space left on device" from inotify_add_watch with every disk far from full:
    fs.inotify.max_user_watches, lowered to 3000 for the test (restored after) so that
    the watches fit in a few hundred kilobytes of kernel memory."""
    top = Path(tempfile.mkdtemp(prefix="sysdiag-e2e-watch-"))
    undo.callback(shutil.rmtree, top, True)
    os.chown(top, 65534, 65534)
    undo.enter_context(Sysctl("fs.inotify.max_user_watches", "3000"))
    procs = undo.enter_context(Procs())
    watcher = procs.python(INOTIFY_WATCHER, str(top), stdout=True)
    count, err = map(int, readline(watcher).split())
    assert err == errno.ENOSPC and 0 < count <= 3000, (count, err)
    report = diagnose("disk-full")
    accuracy.check(report, "fs-inotify-limits", names=["uid 65534", str(watcher.pid)])
    assert find(report, "fs-blocks-full") is None


def deleted_but_open(undo, procs: Procs, mountpoint: Path) -> subprocess.Popen:
    fs = undo.enter_context(Tmpfs(mountpoint, "size=32m"))
    holder = procs.python(DELETED_HOLDER, str(fs.mountpoint / "app.log"), stdout=True)
    assert readline(holder) == "held"
    fill(fs.mountpoint, one_file=True)
    return holder


def test_deleted_file_held_open_fills_a_filesystem(undo, accuracy, tmp_path):
    procs = undo.enter_context(Procs())
    mountpoint = tmp_path / "deleted"
    deleted_but_open(undo, procs, mountpoint)
    report = diagnose("disk-full")
    accuracy.check(report, "fs-deleted-open", names=[str(mountpoint)])


def fusectl(undo) -> None:
    """fusectl mounted (the fuse probe reads waiting requests there), unmounted after if
    we mounted it."""
    connections = Path("/sys/fs/fuse/connections")
    if not mounted(connections):
        run("mount", "-t", "fusectl", "none", str(connections))
        undo.callback(run, "umount", str(connections), check=False)


def stuck_fuse(undo, procs: Procs, tmp_path: Path) -> tuple[Path, subprocess.Popen,
                                                              subprocess.Popen]:
    """(mount point, stopped bindfs daemon, reader blocked on it)."""
    for tool in ("bindfs", "fusermount"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install bindfs)")
    source, mountpoint = tmp_path / "source", tmp_path / "fuse"
    source.mkdir()
    mountpoint.mkdir()
    fusectl(undo)

    def unmount() -> None:
        if daemon.poll() is None:
            os.kill(daemon.pid, signal.SIGCONT)
        if mounted(mountpoint) and run("fusermount", "-u", "-z", str(mountpoint),
                                       check=False).returncode != 0:
            run("umount", "-l", str(mountpoint))

    # -f: stays in the foreground, our child; unmounted before Procs kills it
    daemon = procs.command(["bindfs", "-f", str(source), str(mountpoint)],
                           stderr=subprocess.DEVNULL)
    undo.callback(unmount)
    wait_until(lambda: mounted(mountpoint), 10, "the bindfs mount")
    os.kill(daemon.pid, signal.SIGSTOP)
    # a fresh name: nothing cached, the lookup must wait for the stopped daemon
    reader = procs.python("open(sys.argv[1]).read()\n", str(mountpoint / "never-cached"))
    # FUSE waits interruptibly first (S in request_wait_answer), killably (D) after a signal
    wait_until(lambda: wchan(reader.pid) == "request_wait_answer", 10,
               f"reader {reader.pid} waiting on the daemon")
    return mountpoint, daemon, reader


def test_fuse_daemon_that_never_answers_hangs_a_reader(undo, accuracy, tmp_path):
    """Look-alike of the frozen cgroup: the reader is not stopped, it waits on FUSE."""
    procs = undo.enter_context(Procs())
    mountpoint, daemon, reader = stuck_fuse(undo, procs, tmp_path)
    report = diagnose("process-hang", pid=reader.pid)
    accuracy.check(report, "io-userspace-fs-unresponsive", names=[str(mountpoint)])
    assert find(report, "proc-stopped-traced", [Pid(reader.pid)]) is None, summary(report)


def test_fuse_daemon_that_never_answers_is_io_latency(undo, accuracy, tmp_path):
    """The same stall reported as slow I/O: the FUSE daemon, not a device, is the cause."""
    procs = undo.enter_context(Procs())
    mountpoint, daemon, reader = stuck_fuse(undo, procs, tmp_path)
    report = diagnose("io-latency", pid=reader.pid)
    accuracy.check(report, "io-userspace-fs-unresponsive", names=[str(mountpoint)])


# --- two faults at once ----------------------------------------------------------------

def test_zombies_and_a_stopped_process_together(undo, accuracy):
    procs = undo.enter_context(Procs())
    parent, _ = zombie_parent(procs)
    sleeper = stopped_sleeper(procs)
    report = diagnose("process-hang")
    accuracy.check(report, ["proc-zombie-accumulation", "proc-stopped-traced"],
                   names=[[Pid(parent.pid)], [Pid(sleeper.pid)]])


def test_inodes_full_and_deleted_open_together(undo, accuracy, tmp_path):
    procs = undo.enter_context(Procs())
    inodes = undo.enter_context(Tmpfs(tmp_path / "inodes", "size=4m,nr_inodes=64"))
    fill(inodes.mountpoint, one_file=False)
    deleted_but_open(undo, procs, tmp_path / "deleted")
    report = diagnose("disk-full")
    accuracy.check(report, ["fs-inodes-full", "fs-deleted-open"],
                   names=[[str(inodes.mountpoint)], [str(tmp_path / "deleted")]])


def test_throttled_cgroup_on_a_saturated_host(undo, accuracy):
    """A quota-throttled cgroup and two busy loops outside it filling both CPUs."""
    procs = undo.enter_context(Procs())
    cg = throttled_cgroup(undo, procs, "throttle-sat")
    for _ in range(max(2, os.cpu_count() or 2)):
        procs.python(BUSY)
    time.sleep(0.5)
    report = diagnose("high-latency", cgroup=cg.path)
    accuracy.check(report, ["cpu-cgroup-throttling", "cpu-saturation"], names=[[cg.path], []])


# --- look-alikes for io-latency: a throttled cgroup vs a saturated device ---------------

#: O_DIRECT sequential reads of argv[1], over and over (a cgroup's throttle holds them)
DIRECT_READER = """\
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 65536)
while True:
    os.lseek(fd, 0, 0)
    while os.readv(fd, [buf]) > 0:
        pass
"""

#: synchronous 4 KiB writes at random offsets of argv[1] (O_DIRECT|O_DSYNC): a deep queue
SYNC_WRITER = """\
import mmap, os, random, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_DIRECT | os.O_DSYNC)
blocks = os.lseek(fd, 0, os.SEEK_END) // 4096
buf = mmap.mmap(-1, 4096)
while True:
    os.pwritev(fd, [buf], random.randrange(blocks) * 4096)
"""


def loop_device(undo, backing: Path, size_mib: int) -> str:
    """A loop device (direct I/O to its backing file) over `size_mib` MiB of written data."""
    if shutil.which("losetup") is None:
        pytest.skip("losetup is not installed (util-linux)")
    with open(backing, "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    made = run("losetup", "--find", "--show", "--direct-io=on", str(backing), check=False)
    if made.returncode != 0:
        pytest.skip(f"no loop device here: {made.stderr.strip()}")
    device = made.stdout.strip()
    undo.callback(run, "losetup", "-d", device, check=False)
    return device


def test_io_throttled_cgroup_on_a_fast_device(undo, accuracy, tmp_path):
    """blkio/io.max read limit of 1 MiB/s on a loop device: the reader waits in its cgroup,
    the device itself is idle. The look-alike below saturates the device instead."""
    device = loop_device(undo, tmp_path / "backing", 16)
    rdev = os.stat(device).st_rdev
    majmin = f"{os.major(rdev)}:{os.minor(rdev)}"
    procs = undo.enter_context(Procs())
    cg = undo.enter_context(TestCgroup("io-throttle", ["io"]))
    if cg.v2:
        cg.write("io", None, "io.max", f"{majmin} rbps=1048576")
    else:
        cg.write("io", "blkio.throttle.read_bps_device", None, f"{majmin} 1048576")
    procs.python(DIRECT_READER, device, cgroup=cg)
    time.sleep(3)  # io pressure avg10 builds up
    report = diagnose("io-latency", cgroup=cg.path)
    accuracy.check(report, "io-cgroup-throttle", names=[cg.path])
    assert find(report, "io-device-saturation", [os.path.basename(device)]) is None, \
        summary(report)


def test_io_saturated_device_without_a_throttle(undo, accuracy, tmp_path):
    device = loop_device(undo, tmp_path / "backing", 64)
    procs = undo.enter_context(Procs())
    for _ in range(8):
        procs.python(SYNC_WRITER, device)
    time.sleep(2)
    report = diagnose("io-latency")
    accuracy.check(report, "io-device-saturation", names=[os.path.basename(device)])
    assert find(report, "io-cgroup-throttle") is None, summary(report)
