"""Building blocks for real faults that undo themselves: processes, cgroups (v1 and v2),
mounts, sysctls. Each is a context manager; tests enter them on one ExitStack (the
`undo` fixture) so everything is removed in reverse order even when a check fails.

Every process started here carries a 60 s alarm (SIGALRM ends it) so no fault outlives
its bound even if the test runner itself is killed; a stopped or frozen process is ended
by the cleanup's SIGKILL.
"""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

CGROUP_ROOT = Path("/sys/fs/cgroup")
#: a fault's upper bound in seconds (the issue's rules of the road)
FAULT_BOUND_S = 60

#: prefix of every Python child: die after FAULT_BOUND_S, wait for "go" on stdin when gated
_PRELUDE = "import signal, sys; signal.alarm({bound})\n{gate}"
_GATE = "sys.stdin.readline()\n"


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    end = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def state_of(pid: int) -> str:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2]


def run(*argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


# --- processes -------------------------------------------------------------------------

class Procs:
    """Processes this test started; all killed and reaped on exit (only these)."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def __enter__(self) -> "Procs":
        return self

    def python(self, code: str, *args: str, cgroup: "TestCgroup | None" = None,
               stdout: bool = False, **popen) -> subprocess.Popen:
        """Start `python -c code args`. With `cgroup`, the child joins it before running
        `code` (it waits for a line on stdin that is sent once its pid is in the cgroup)."""
        prelude = _PRELUDE.format(bound=FAULT_BOUND_S, gate=_GATE if cgroup else "")
        proc = subprocess.Popen([sys.executable, "-c", prelude + code, *args],
                                stdin=subprocess.PIPE if cgroup else subprocess.DEVNULL,
                                stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
                                text=True, **popen)
        self.started.append(proc)
        if cgroup is not None:
            cgroup.add(proc.pid)
            proc.stdin.write("go\n")
            proc.stdin.close()
        return proc

    def command(self, argv: Sequence[str], **popen) -> subprocess.Popen:
        proc = subprocess.Popen(list(argv), **popen)
        self.started.append(proc)
        return proc

    def __exit__(self, *exc) -> None:
        for proc in reversed(self.started):
            if proc.poll() is None:
                proc.kill()  # SIGKILL ends a stopped process too
        for proc in reversed(self.started):
            proc.wait(timeout=15)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None and not stream.closed:
                    stream.close()


# --- cgroups ---------------------------------------------------------------------------

def is_cgroup2() -> bool:
    """True where /sys/fs/cgroup itself is cgroup2; False on v1 and hybrid (v2 at .../unified)."""
    return run("stat", "-fc", "%T", str(CGROUP_ROOT)).stdout.strip() == "cgroup2fs"


#: v1 hierarchy of each controller name used by the tests (v2 names: io for blkio)
V1_HIERARCHY = {"cpu": "cpu", "memory": "memory", "pids": "pids", "io": "blkio",
                "freezer": "freezer", "cpuset": "cpuset"}


class TestCgroup:
    """A cgroup `/sysdiag-e2e-NAME-PID` with the given controllers, on v2 (one directory,
    the controllers enabled in the root's subtree_control if they were not) or v1 (one
    directory per controller hierarchy). `path` is what `--cgroup` takes. On exit it is
    thawed, any process still in it (only ours: it was created empty) is killed, and it is
    removed."""

    __test__ = False  # not a pytest class

    def __init__(self, name: str, controllers: Iterable[str]) -> None:
        self.v2 = is_cgroup2()
        self.controllers = list(controllers)
        self.path = f"/sysdiag-e2e-{name}-{os.getpid()}"
        self.dirs: list[Path] = []
        self.enabled_by_us: list[str] = []

    # the directories and files of each controller
    def dir_of(self, controller: str) -> Path:
        if self.v2:
            return CGROUP_ROOT / self.path.lstrip("/")
        hierarchy = CGROUP_ROOT / V1_HIERARCHY[controller]
        if not hierarchy.is_dir():
            raise FileNotFoundError(f"cgroup v1 hierarchy {hierarchy} is not mounted")
        return hierarchy / self.path.lstrip("/")

    def __enter__(self) -> "TestCgroup":
        try:
            if self.v2:
                self._enable_v2()
                d = self.dir_of(self.controllers[0])
                d.mkdir()
                self.dirs.append(d)
            else:
                for controller in self.controllers:
                    d = self.dir_of(controller)
                    d.mkdir()
                    self.dirs.append(d)
                    if controller == "cpuset":  # a v1 cpuset takes no task before both are set
                        parent = d.parent
                        (d / "cpuset.mems").write_text((parent / "cpuset.mems").read_text())
                        (d / "cpuset.cpus").write_text((parent / "cpuset.cpus").read_text())
                # hybrid: the same path in the unified hierarchy gives the cgroup its
                # pressure files (cpu.pressure, io.pressure), as systemd does
                unified = CGROUP_ROOT / "unified"
                if (unified / "cgroup.procs").is_file():
                    d = unified / self.path.lstrip("/")
                    d.mkdir()
                    self.dirs.append(d)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _enable_v2(self) -> None:
        control = CGROUP_ROOT / "cgroup.subtree_control"
        have = set(control.read_text().split())
        available = set((CGROUP_ROOT / "cgroup.controllers").read_text().split())
        for controller in self.controllers:
            if controller == "freezer":  # v2: cgroup.freeze, no controller
                continue
            if controller not in available:
                raise FileNotFoundError(f"cgroup v2 controller {controller} is not available")
            if controller not in have:
                control.write_text(f"+{controller}")
                self.enabled_by_us.append(controller)

    def write(self, controller: str, v1_file: str | None, v2_file: str | None,
              value: str) -> None:
        name = v2_file if self.v2 else v1_file
        if name is None:
            raise NotImplementedError(f"no {'v2' if self.v2 else 'v1'} file for {controller}")
        (self.dir_of(controller) / name).write_text(value)

    def read(self, controller: str, v1_file: str, v2_file: str) -> str:
        return (self.dir_of(controller) / (v2_file if self.v2 else v1_file)).read_text()

    def add(self, pid: int) -> None:
        for d in self.dirs:
            (d / "cgroup.procs").write_text(str(pid))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.dirs:
            if d.is_dir():
                found |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
        return found

    def freeze(self) -> None:
        if self.v2:
            self.write("freezer", None, "cgroup.freeze", "1")
        else:
            self.write("freezer", "freezer.state", None, "FROZEN")

    def frozen(self) -> bool:
        if self.v2:
            return "frozen 1" in self.read("freezer", "", "cgroup.events")
        return self.read("freezer", "freezer.state", "").strip() == "FROZEN"

    def thaw(self) -> None:
        if self.v2:
            self.write("freezer", None, "cgroup.freeze", "0")
        else:
            self.write("freezer", "freezer.state", None, "THAWED")

    def __exit__(self, *exc) -> None:
        if "freezer" in self.controllers and any(d.is_dir() for d in self.dirs):
            self.thaw()
        # only processes we put here (and their children) can be inside
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until(lambda: not self.pids(), 15, f"cgroup {self.path} to empty")
        for d in reversed(self.dirs):
            for _ in range(50):  # rmdir is EBUSY for a moment after the last task exits
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as err:
                    if err.errno != errno.EBUSY:
                        raise
                    time.sleep(0.1)
            else:
                raise AssertionError(f"could not remove {d}: still busy")
        control = CGROUP_ROOT / "cgroup.subtree_control"
        for controller in self.enabled_by_us:
            control.write_text(f"-{controller}")


# --- sysctls and mounts ----------------------------------------------------------------

class Sysctl:
    """Set a /proc/sys value and restore the old one on exit."""

    def __init__(self, name: str, value: str) -> None:
        self.file = Path("/proc/sys") / name.replace(".", "/")
        self.value = value
        self.old: str | None = None

    def __enter__(self) -> "Sysctl":
        self.old = self.file.read_text().strip()
        self.file.write_text(self.value)
        return self

    def __exit__(self, *exc) -> None:
        if self.old is not None:
            self.file.write_text(self.old)


def mounted(mountpoint: Path) -> bool:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if line.split()[4] == str(mountpoint):
            return True
    return False


class Tmpfs:
    """A tmpfs mounted on a fresh directory with the given options; lazily unmounted."""

    def __init__(self, mountpoint: Path, options: str) -> None:
        self.mountpoint = mountpoint
        self.options = options

    def __enter__(self) -> "Tmpfs":
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        run("mount", "-t", "tmpfs", "-o", self.options, "sysdiag-e2e", str(self.mountpoint))
        return self

    def __exit__(self, *exc) -> None:
        if mounted(self.mountpoint):
            run("umount", "-l", str(self.mountpoint))
