"""Every process (thread group) from /proc/PID/*, and the summaries rules need.

Per sample and pid: `stat`, `status`, `schedstat` (the counters behind the
rates); the last sample adds `wchan`, `cgroup`, `cmdline`, the fd count and
`limits`. Reads go through the proc root, so a captured tree works too.

Surprises handled here:
- comm (field 2 of stat) may hold spaces and parentheses: split at the LAST ')'.
- processes exit between listdir and read all the time (ENOENT, or ESRCH from
  some files): the pid is skipped and counted, not reported as a problem.
- reading `cmdline` (or environ, maps) takes the task's mmap_lock and can block
  forever on a task stuck in D state with that lock held; cmdline is read only
  for tasks that are not in D (per the stat read just before).
- a pid can be reused within the window: a process is the same only if its
  start time matches too.
- a task in a frozen v1 freezer cgroup shows state D and keeps the wait channel it
  slept in (hrtimer_nanosleep...) on 6.x kernels, so whether its cgroup is frozen is
  read from the cgroup itself (freezer.state, v2 cgroup.events), once per cgroup.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, get_args

from sysdiag.facts import Fact, Process, TaskSummary, ZombieParent
from sysdiag.facts.process import ProcState

from ..base import Probe, ProbeContext, Unavailable, pct
from ..parse import ParseError, to_int
from ..registry import register_probe
from ..sysfs.cgroupfs import UNIFIED, detect_layout, parse_keyed, parse_proc_cgroup, rel_to_path

PF_KTHREAD = 0x00200000  # include/linux/sched.h
KNOWN_STATES = frozenset(get_args(ProcState))
CMDLINE_CHARS = 256
#: bounds on what one per-process read may return
SMALL_FILE_BYTES = 16 << 10
CMDLINE_BYTES = 4 << 10

#: the /proc/PID/status keys we keep
STATUS_KEYS = ("Uid", "Threads", "VmRSS", "RssAnon", "VmSwap", "TracerPid",
               "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")
#: each key to its one string object: the keys split out of every status file would
#: otherwise be ~500 bytes of new strings per process and sample
_STATUS_KEY = {key: key for key in STATUS_KEYS}


@dataclass(frozen=True, slots=True)
class PidStat:
    """The /proc/PID/stat fields sysdiag uses (man 5 proc numbering in comments)."""
    comm: str            # 2
    state: str           # 3
    ppid: int            # 4
    flags: int           # 9
    minflt: int          # 10
    majflt: int          # 12
    utime: int           # 14, ticks
    stime: int           # 15, ticks
    nice: int            # 19
    threads: int         # 20
    starttime: int       # 22, ticks after boot
    rss_pages: int       # 24
    policy: Optional[int]  # 41 (since 2.5.19)


def parse_pid_stat(text: str, source: str = "/proc/PID/stat") -> PidStat:
    """Parse one /proc/PID/stat line.

    >>> parse_pid_stat("1020 ((a b ) ( c d) ) R 28378 1020 28378 34842 1020 4218880 286 0 0 0 "
    ...                "0 0 0 0 20 0 1 0 10839175 10395648 155").comm
    '(a b ) ( c d) '
    """
    open_paren = text.find("(")
    close_paren = text.rfind(")")
    if open_paren < 0 or close_paren < open_paren:
        raise ParseError(source, "no '(comm)' field (empty or truncated file?)")
    rest = text[close_paren + 1:].split()
    if len(rest) < 22:
        raise ParseError(source, f"{len(rest) + 2} fields, expected at least 24 (truncated?)")

    def num(index: int, what: str) -> int:
        return to_int(rest[index], source, what)

    return PidStat(
        comm=text[open_paren + 1:close_paren], state=rest[0], ppid=num(1, "ppid"),
        flags=num(6, "flags"), minflt=num(7, "minflt"), majflt=num(9, "majflt"),
        utime=num(11, "utime"), stime=num(12, "stime"), nice=num(16, "nice"),
        threads=num(17, "num_threads"), starttime=num(19, "starttime"),
        rss_pages=num(21, "rss"), policy=num(38, "policy") if len(rest) > 38 else None)


def parse_pid_status(text: str, source: str = "/proc/PID/status") -> dict[str, int]:
    """The numeric fields of STATUS_KEYS (kB values stay kB; Uid = effective uid)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        key = _STATUS_KEY.get(name) if colon else None
        if key is None:
            continue
        parts = value.split()
        if not parts:
            raise ParseError(source, f"{key}: no value")
        # Uid: real effective saved fs
        out[key] = to_int(parts[1] if key == "Uid" and len(parts) > 1 else parts[0],
                          source, key)
    return out


def parse_cpus_allowed_list(text: str) -> Optional[str]:
    """The "Cpus_allowed_list:\t0-3,8" value of /proc/PID/status (None when absent)."""
    start = text.find("Cpus_allowed_list:")
    if start < 0:
        return None
    end = text.find("\n", start)
    value = text[start + len("Cpus_allowed_list:"):end if end >= 0 else None].strip()
    return value or None


def count_cpu_list(text: str, source: str = "Cpus_allowed_list") -> int:
    """How many CPUs a kernel CPU list names, without expanding it ("0-1023" is 1024).

    >>> count_cpu_list("0-3,8,10-11")
    7
    """
    count = 0
    for part in text.split(","):
        lo, sep, hi = part.partition("-")
        first = to_int(lo, source, "cpu list")
        last = to_int(hi, source, "cpu list") if sep else first
        if last < first:
            raise ParseError(source, f"cpu range {part!r} runs backwards")
        count += last - first + 1
    return count


def parse_schedstat(text: str, source: str = "/proc/PID/schedstat") -> int:
    """Run-queue wait in ns: the second of "on_cpu_ns wait_ns timeslices"."""
    parts = text.split()
    if len(parts) < 2:
        raise ParseError(source, f"expected 'on_cpu_ns wait_ns slices', got {text.strip()[:60]!r}")
    return to_int(parts[1], source, "run-queue wait")


def parse_limits_nofile(text: str, source: str = "/proc/PID/limits") -> Optional[int]:
    """Soft RLIMIT_NOFILE from the "Max open files  1024  4096  files" row
    (None when unlimited)."""
    for line in text.splitlines():
        if line.startswith("Max open files"):
            parts = line[len("Max open files"):].split()
            if not parts:
                raise ParseError(source, "'Max open files' row without values")
            return None if parts[0] == "unlimited" else to_int(parts[0], source, "Max open files")
    raise ParseError(source, "no 'Max open files' row")


def parse_cgroup_path(text: str, source: str = "/proc/PID/cgroup") -> Optional[str]:
    """The cgroup v2 path ("0::/path"); on v1/hybrid the cpu controller's path."""
    unified = None
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(":", 2)
        if len(parts) != 3:
            raise ParseError(source, f"expected 'id:controllers:path', got {line[:60]!r}")
        if "cpu" in parts[1].split(","):
            return parts[2]
        if parts[0] == "0" and parts[1] == "":
            unified = parts[2]
    return unified


def parse_wchan(text: str) -> Optional[str]:
    """The wait channel symbol; "0" (or empty) means running / not waiting."""
    value = text.strip()
    return None if value in ("", "0") else value


def parse_cmdline(raw: str) -> Optional[str]:
    """NUL-separated arguments -> one line, truncated (None for kernel threads/zombies)."""
    value = raw.replace("\0", " ").strip()
    return value[:CMDLINE_CHARS] or None


@dataclass(slots=True)
class ProcReading:
    pid: int
    stat: PidStat
    status: dict[str, int] = field(default_factory=dict)
    run_delay_ns: Optional[int] = None
    cpus_allowed_list: Optional[str] = None
    cpus_allowed_count: Optional[int] = None
    # last sample only
    wchan: Optional[str] = None
    cgroup: Optional[str] = None
    freezer_cgroup: Optional[str] = None  # v1 only
    memory_cgroup: Optional[str] = None  # v1 only
    cgroup_frozen: Optional[bool] = None
    cmdline: Optional[str] = None
    fd_count: Optional[int] = None
    fd_soft_limit: Optional[int] = None

    @property
    def kernel_thread(self) -> bool:
        # The PF_KTHREAD flag, not "ppid 2": inside a pid namespace pid 2 is an ordinary
        # process (kthreads are invisible there); see also process_facts.
        return bool(self.stat.flags & PF_KTHREAD)


@dataclass
class ProcessesReading:
    procs: dict[int, ProcReading]
    uptime_s: Optional[float]
    vanished: int = 0
    pid_max: Optional[int] = None
    threads_max: Optional[int] = None


class _Vanished(Exception):
    """The process exited while we read it."""


def _reader(ctx: ProbeContext) -> Callable[[str, int], str]:
    """A fast reader for the live host (plain os.read), or the checked one for a tree."""
    if not ctx.live:
        return lambda path, limit: ctx.read_text(Path(path), limit)

    def read(path: str, limit: int) -> str:
        fd = os.open(path, os.O_RDONLY)
        try:
            chunks, size = [], 0
            while size < limit:
                chunk = os.read(fd, limit - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks).decode("utf-8", errors="replace")

    return read


def _gone(err: OSError) -> bool:
    return isinstance(err, (FileNotFoundError, ProcessLookupError)) or err.errno == errno.ESRCH


@register_probe
class ProcessesProbe(Probe):
    name = "processes"
    provides = ("process", "tasks", "zombie_parent")
    description = ("every process: state at both ends of the window, CPU, memory, faults, "
                   "wait channel, cgroup, fds; task counts and zombie parents (/proc/PID)")
    timeout_s = 10.0

    def __init__(self) -> None:
        super().__init__()
        self._clk_tck = os.sysconf("SC_CLK_TCK")
        self._page_size = os.sysconf("SC_PAGE_SIZE")

    def sample(self, ctx: ProbeContext) -> ProcessesReading:
        """The counters of every process (cheap: stat, status, schedstat)."""
        read = _reader(ctx)
        root = str(ctx.proc())
        try:
            names = os.listdir(root)
        except OSError as err:
            raise OSError(err.errno, f"cannot list processes in {root}: {err.strerror}",
                          root) from err
        reading = ProcessesReading(procs={}, uptime_s=self._uptime(read, root))
        broken: list[Exception] = []
        for name in names:
            if not name.isdigit():
                continue
            try:
                proc = self._read_counters(read, f"{root}/{name}", int(name))
            except _Vanished:
                reading.vanished += 1
                continue
            except (ParseError, OSError) as err:
                # one unreadable or garbled process must not cost all the others
                broken.append(err)
                message = f"{err}; pid {name} skipped"
                if message not in self.warnings:  # sample() runs twice
                    self.warn(message)
                continue
            reading.procs[proc.pid] = proc
        if broken and not reading.procs:
            raise broken[0]
        return reading

    def _read_counters(self, read: Callable[[str, int], str], base: str,
                       pid: int) -> ProcReading:
        try:
            text = read(f"{base}/stat", SMALL_FILE_BYTES)
        except OSError as err:
            if _gone(err) or isinstance(err, NotADirectoryError):
                raise _Vanished from err
            raise
        if not text:
            raise _Vanished  # the kernel returns nothing for a task being torn down
        # the pid is the directory's name (a captured tree may disagree with stat's field 1)
        proc = ProcReading(pid=pid, stat=parse_pid_stat(text, f"{base}/stat"))
        status = self._optional(read, f"{base}/status")
        if status is not None:
            proc.status = parse_pid_status(status, f"{base}/status")
            allowed = parse_cpus_allowed_list(status)
            try:
                proc.cpus_allowed_count = count_cpu_list(allowed, f"{base}/status") \
                    if allowed else None
                proc.cpus_allowed_list = allowed
            except ParseError as err:  # affinity left out; the counters of this pid stay
                if f"{err}; affinity left out" not in self.warnings:  # sample() runs twice
                    self.warn(f"{err}; affinity left out")
        schedstat = self._optional(read, f"{base}/schedstat")
        if schedstat:  # empty without CONFIG_SCHED_INFO
            proc.run_delay_ns = parse_schedstat(schedstat, f"{base}/schedstat")
        return proc

    def read_details(self, ctx: ProbeContext, reading: ProcessesReading) -> None:
        """Details wanted once, right after the last sample: wait channel, cgroup,
        cmdline, fds, limits, and the pid/thread limits."""
        read = _reader(ctx)
        root = str(ctx.proc())
        for proc in reading.procs.values():
            try:
                self._read_details(read, f"{root}/{proc.pid}", proc, ctx)
            except ParseError as err:
                self.warn(f"{err}; detail left out")  # the counters of this pid stay
        self._read_frozen(ctx, reading)
        for name in ("pid_max", "threads-max"):
            try:
                value = self._sysctl(read, f"{root}/sys/kernel/{name}")
            except ParseError as err:
                self.warn(str(err))
                continue
            setattr(reading, name.replace("-", "_"), value)

    def _read_details(self, read: Callable[[str, int], str], base: str, proc: ProcReading,
                      ctx: ProbeContext) -> None:
        wchan = self._optional(read, f"{base}/wchan")
        proc.wchan = parse_wchan(wchan) if wchan is not None else None
        if proc.kernel_thread:
            return  # no cmdline, fds, limits or cgroup of its own worth reading
        cgroup = self._optional(read, f"{base}/cgroup")
        proc.cgroup = parse_cgroup_path(cgroup, f"{base}/cgroup") if cgroup else None
        if cgroup:
            v1_paths = parse_proc_cgroup(cgroup, f"{base}/cgroup")
            proc.freezer_cgroup = v1_paths.get("freezer")
            proc.memory_cgroup = v1_paths.get("memory")
        if proc.stat.state not in ("D", "Z"):  # see the module docstring: mmap_lock
            cmdline = self._optional(read, f"{base}/cmdline", CMDLINE_BYTES)
            proc.cmdline = parse_cmdline(cmdline) if cmdline else None
        if proc.stat.state != "Z":
            proc.fd_count = self._fd_count(f"{base}/fd", ctx)
            limits = self._optional(read, f"{base}/limits")
            proc.fd_soft_limit = (parse_limits_nofile(limits, f"{base}/limits")
                                  if limits else None)

    def _read_frozen(self, ctx: ProbeContext, reading: ProcessesReading) -> None:
        """cgroup_frozen of every process with a cgroup, one read per cgroup: v1
        freezer.state (FROZEN, or FREEZING: on its way), v2 cgroup.events `frozen`.
        The root cgroup has neither file and cannot be frozen."""
        try:
            layout = detect_layout(ctx)
        except Unavailable:
            return  # no cgroup tree (a captured tree without /sys): the cgroups probe says so
        if layout.version == 2:
            root, name = layout.roots[UNIFIED], "cgroup.events"
        elif "freezer" in layout.roots:
            root, name = layout.roots["freezer"], "freezer.state"
        else:
            return  # v1 without a freezer hierarchy: nothing can be frozen
        known: dict[str, Optional[bool]] = {}
        for proc in reading.procs.values():
            rel = proc.cgroup if layout.version == 2 else proc.freezer_cgroup
            if rel is None:
                continue
            if rel not in known:
                known[rel] = self._frozen(ctx, rel_to_path(root, rel) / name, rel == "/")
            proc.cgroup_frozen = known[rel]

    def _frozen(self, ctx: ProbeContext, path: Path, is_root: bool) -> Optional[bool]:
        try:
            text = ctx.read_optional(path)
        except OSError as err:
            if not isinstance(err, (PermissionError, NotADirectoryError)):
                self.warn(f"{path}: {err.strerror or err}")
            return None
        if text is None:
            return False if is_root else None  # None: the cgroup went away meanwhile
        if path.name == "freezer.state":
            return text.strip() in ("FROZEN", "FREEZING")
        try:
            frozen = parse_keyed(text, str(path)).get("frozen")
        except ParseError as err:
            self.warn(str(err))
            return None
        return None if frozen is None else frozen == 1

    def _optional(self, read: Callable[[str, int], str], path: str,
                  limit: int = SMALL_FILE_BYTES) -> Optional[str]:
        """A per-process file that may be missing, forbidden, or gone with its process."""
        try:
            return read(path, limit)
        except OSError as err:
            if _gone(err) or isinstance(err, (PermissionError, NotADirectoryError)):
                return None
            self.warn(f"{path}: {err.strerror or err}")
            return None

    def _fd_count(self, path: str, ctx: ProbeContext) -> Optional[int]:
        """Number of open fds; None when not permitted (another user's process, not root)."""
        try:
            ctx.check_inside_root(Path(path))
            return len(os.listdir(path))
        except OSError as err:
            if _gone(err) or isinstance(err, (PermissionError, NotADirectoryError)):
                return None
            self.warn(f"{path}: {err.strerror or err}")
            return None

    def _uptime(self, read: Callable[[str, int], str], root: str) -> Optional[float]:
        text = self._optional(read, f"{root}/uptime")
        try:
            return float(text.split()[0]) if text else None
        except ValueError:
            self.warn(f"{root}/uptime: not a number: {text[:40]!r}")
            return None

    def _sysctl(self, read: Callable[[str, int], str], path: str) -> Optional[int]:
        text = self._optional(read, path)
        if not text or not text.strip():
            return None
        return to_int(text.strip(), path, "value")

    def facts(self, ctx: ProbeContext, first: Optional[ProcessesReading],
              last: ProcessesReading, elapsed_s: Optional[float]) -> list[Fact]:
        self.read_details(ctx, last)
        return process_facts(str(ctx.proc()), first, last, elapsed_s,
                             self._clk_tck, self._page_size)


def _state(letter: str) -> str:
    return letter if letter in KNOWN_STATES else "?"


def _same(a: Optional[ProcReading], b: ProcReading) -> bool:
    return a is not None and a.stat.starttime == b.stat.starttime


def process_facts(root: str, first: Optional[ProcessesReading], last: ProcessesReading,
                  elapsed_s: Optional[float], clk_tck: int, page_size: int) -> list[Fact]:
    """Process, TaskSummary and ZombieParent facts from one or two readings."""
    facts: list[Fact] = []
    window = elapsed_s if first is not None and elapsed_s and elapsed_s > 0 else None
    d_stable = 0
    # pid 2 is kthreadd outside pid namespaces: it and its children are kernel threads
    # even where a tree lost the stat flags
    kthreadd = last.procs.get(2)
    kthreadd_is_2 = kthreadd is not None and kthreadd.stat.comm == "kthreadd"
    for pid, p in sorted(last.procs.items()):
        before = first.procs.get(pid) if first is not None else None
        if not _same(before, p):
            before = None
        kernel = p.kernel_thread or (kthreadd_is_2 and 2 in (pid, p.stat.ppid))
        facts.append(_process_fact(root, p, before, window, last.uptime_s, clk_tck, page_size,
                                   kernel))
        if before is not None and p.stat.state == "D" and before.stat.state == "D":
            d_stable += 1

    states = [p.stat.state for p in last.procs.values()]
    threads = sum(p.stat.threads for p in last.procs.values())
    limits = [v for v in (last.pid_max, last.threads_max) if v]
    facts.append(TaskSummary(
        source=root, processes=len(last.procs), threads=threads,
        running=states.count("R"), uninterruptible=states.count("D"),
        zombies=states.count("Z"), stopped=states.count("T") + states.count("t"),
        uninterruptible_stable=d_stable if first is not None else None,
        pid_max=last.pid_max, threads_max=last.threads_max,
        tasks_pct_of_limit=pct(threads, min(limits)) if limits else None,
        vanished_while_reading=last.vanished,
    ))
    facts.extend(_zombie_parents(root, first, last))
    return facts


def _zombie_parents(root: str, first: Optional[ProcessesReading],
                    last: ProcessesReading) -> list[Fact]:
    def count(reading: ProcessesReading) -> dict[int, int]:
        out: dict[int, int] = {}
        for p in reading.procs.values():
            if p.stat.state == "Z":
                out[p.stat.ppid] = out.get(p.stat.ppid, 0) + 1
        return out

    now = count(last)
    before = count(first) if first is not None else None
    facts: list[Fact] = []
    for ppid, zombies in sorted(now.items()):
        parent = last.procs.get(ppid)
        was = before.get(ppid, 0) if before is not None else None
        facts.append(ZombieParent(
            source=f"{root}/{ppid}", ppid=ppid, zombies=zombies,
            parent_comm=parent.stat.comm if parent else None,
            parent_state=_state(parent.stat.state) if parent else None,
            zombies_first=was, zombies_delta=zombies - was if was is not None else None))
    return facts


def _process_fact(root: str, p: ProcReading, before: Optional[ProcReading],
                  window: Optional[float], uptime_s: Optional[float], clk_tck: int,
                  page_size: int, kernel_thread: bool) -> Process:
    s, st = p.stat, p.status
    rss_kb = st.get("VmRSS")
    fields: dict[str, object] = dict(
        source=f"{root}/{p.pid}", pid=p.pid, ppid=s.ppid, comm=s.comm, cmdline=p.cmdline,
        uid=st.get("Uid"), state=_state(s.state), kernel_thread=kernel_thread,
        threads=s.threads, nice=s.nice, sched_policy=s.policy,
        rss_bytes=rss_kb * 1024 if rss_kb is not None else s.rss_pages * page_size,
        rss_anon_bytes=_kb(st.get("RssAnon")), swap_bytes=_kb(st.get("VmSwap")),
        minflt_total=s.minflt, majflt_total=s.majflt, wchan=p.wchan, cgroup=p.cgroup,
        freezer_cgroup=p.freezer_cgroup, memory_cgroup=p.memory_cgroup,
        cgroup_frozen=p.cgroup_frozen,
        tracer_pid=st.get("TracerPid"), fd_count=p.fd_count, fd_soft_limit=p.fd_soft_limit,
        fd_pct_of_limit=pct(p.fd_count, p.fd_soft_limit),
        age_s=(round(uptime_s - s.starttime / clk_tck, 2) if uptime_s is not None else None),
        cpus_allowed_list=p.cpus_allowed_list, cpus_allowed_count=p.cpus_allowed_count,
    )
    if before is not None and window is not None:
        b = before.stat
        user, system = (s.utime - b.utime) / clk_tck, (s.stime - b.stime) / clk_tck
        fields.update(
            state_first=_state(b.state), state_stable=b.state == s.state,
            cpu_pct=round(100.0 * (user + system) / window, 2),
            user_cpu_pct=round(100.0 * user / window, 2),
            system_cpu_pct=round(100.0 * system / window, 2),
            cpu_time_delta_s=round(user + system, 3),
            minflt_per_s=round((s.minflt - b.minflt) / window, 2),
            majflt_per_s=round((s.majflt - b.majflt) / window, 2),
            voluntary_ctxt_per_s=_per_s(st, before.status, "voluntary_ctxt_switches", window),
            nonvoluntary_ctxt_per_s=_per_s(st, before.status, "nonvoluntary_ctxt_switches",
                                           window),
        )
        if p.run_delay_ns is not None and before.run_delay_ns is not None:
            fields["run_delay_pct"] = round(
                100.0 * (p.run_delay_ns - before.run_delay_ns) / (window * 1e9), 2)
        if "RssAnon" in st and "RssAnon" in before.status:
            fields["rss_anon_delta_bytes"] = (st["RssAnon"] - before.status["RssAnon"]) * 1024
    return Process(**fields)


def _kb(value: Optional[int]) -> Optional[int]:
    return value * 1024 if value is not None else None


def _per_s(now: dict[str, int], before: dict[str, int], key: str,
           window: float) -> Optional[float]:
    if key not in now or key not in before or now[key] < before[key]:
        return None
    return round((now[key] - before[key]) / window, 2)
