"""The probe interface.

A probe reads one kernel source. It declares what it provides and needs; the
runner (`probes/runner.py`) calls `sample()` at the start and at the end of the
window and then `facts()` with both samples, so facts carry rates as well as
totals. Reading is kept apart from parsing: each probe module has pure
`parse_*` functions that the tests call on literal text.

Nothing hard-codes /proc or /sys: paths come from `ctx.proc(...)` and
`ctx.sys(...)`.
"""
from __future__ import annotations

import errno
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

from sysdiag.facts import Fact, Scope

Cost = Literal["cheap", "moderate", "tracing"]

READ_CHUNK = 64 * 1024
_FD_LINKS_LOCK = threading.Lock()


class Unavailable(Exception):
    """The probe cannot run here. The message says why, in words a user can act on
    ("needs root", "kernel built without CONFIG_PSI, or booted without psi=1")."""


class ReadError(OSError):
    """A file under the probe roots could not be read; the message names it."""


@dataclass
class ProbeContext:
    proc_root: Path = Path("/proc")
    sys_root: Path = Path("/sys")
    #: True: a running kernel (counters move, processes can be signalled to read);
    #: False: a captured tree (one sample, no rates, never follow links out of the root)
    live: bool = True
    scope: Scope = field(default_factory=Scope)
    euid: int = field(default_factory=os.geteuid)
    #: the network namespace --netns/--pid chose when it is not sysdiag's own (a path to
    #: enter, see probes/scope.py): `netns_scoped` probes sample inside it
    netns_path: Optional[str] = None
    netns_label: Optional[str] = None
    #: --iface and the interfaces related to it (master, peer, ports); None: every one
    ifaces: Optional[frozenset[str]] = None
    #: this run's /proc/PID/fd links, shared by the probes (probes/procwalk.py)
    _fd_links: Any = field(default=None, init=False, repr=False, compare=False)

    def proc(self, *parts: str | int) -> Path:
        return self.proc_root.joinpath(*map(str, parts))

    def net(self, *parts: str | int) -> Path:
        """A /proc/net file of the network namespace in scope. Live and scoped, the probe
        runs in a thread inside the namespace, whose view is /proc/thread-self/net
        (/proc/net is /proc/self/net, the main thread's); a captured tree scoped with
        --pid has /proc/PID/net."""
        if self.live and self.netns_path is not None:
            return self.proc_root.joinpath("thread-self", "net", *map(str, parts))
        if not self.live and self.scope.pid is not None:
            return self.proc_root.joinpath(str(self.scope.pid), "net", *map(str, parts))
        return self.proc_root.joinpath("net", *map(str, parts))

    @property
    def foreign_netns(self) -> bool:
        """True when the network probes read another namespace than the one sysfs shows."""
        return self.netns_path is not None

    def wants_iface(self, ifname: str) -> bool:
        """Whether per-interface probes should report `ifname` (--iface scoping)."""
        return self.ifaces is None or ifname in self.ifaces

    def sys(self, *parts: str | int) -> Path:
        return self.sys_root.joinpath(*map(str, parts))

    def fd_links(self, pid: int) -> dict[str, Optional[str]]:
        """fd name -> link target of /proc/PID/fd, read once per run and shared by the
        probes that need it; raises what os.listdir raised (probes/procwalk.py)."""
        with _FD_LINKS_LOCK:
            if self._fd_links is None:
                from .procwalk import FdLinks
                self._fd_links = FdLinks(str(self.proc_root))
        return self._fd_links.of(pid)

    @property
    def is_root(self) -> bool:
        return self.euid == 0

    def check_inside_root(self, path: Path) -> None:
        """In a captured tree, refuse paths whose symlinks lead out of the tree
        (the fixture tree has absolute links such as proc/26231/root -> /)."""
        if self.live:
            return
        real = os.path.realpath(path)
        for root in (self.proc_root, self.sys_root):
            base = os.path.realpath(root)
            if real == base or real.startswith(base + os.sep):
                return
        raise ReadError(errno.EXDEV, f"{path}: symlink leads out of the captured tree", str(path))

    def read_text(self, path: Path, max_bytes: int = 4 << 20) -> str:
        """Read a whole (small) file. Raises FileNotFoundError/PermissionError/ReadError."""
        self.check_inside_root(path)
        chunks, size = [], 0
        with open(path, "rb", buffering=0) as fh:
            # Read in 64 KiB chunks: /proc/sys handlers allocate a kernel buffer of the
            # size asked for, and a single multi-MiB read fails there with ENOMEM.
            while size < max_bytes:
                chunk = fh.read(min(READ_CHUNK, max_bytes - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        return b"".join(chunks).decode("utf-8", errors="replace")

    def read_optional(self, path: Path) -> Optional[str]:
        """Like read_text, but a missing file is `None` (the kernel does not have it)."""
        try:
            return self.read_text(path)
        except FileNotFoundError:
            return None


class Probe:
    """Subclass, set the class attributes, implement `sample` and `facts`."""

    #: unique name, kebab-case; what `coverage` lists
    name: ClassVar[str]
    #: fact kinds it emits
    provides: ClassVar[tuple[str, ...]]
    #: one-line description for `sysdiag probes` and the docs
    description: ClassVar[str] = ""
    needs_root: ClassVar[bool] = False
    cost: ClassVar[Cost] = "cheap"
    timeout_s: ClassVar[float] = 5.0
    #: take a sample at both ends of the window (counters); False: once, at the end
    sampled: ClassVar[bool] = True
    #: reads per-network-namespace state: with --netns/--pid the runner takes its samples
    #: in a thread inside that namespace (probes/scope.py)
    netns_scoped: ClassVar[bool] = False

    def __init__(self) -> None:
        #: partial problems that did not stop the probe; reported in coverage
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        if len(self.warnings) < 50:
            self.warnings.append(message)
        elif len(self.warnings) == 50:
            self.warnings.append("further warnings suppressed")

    def check(self, ctx: ProbeContext) -> None:
        """Raise `Unavailable` when the probe cannot run here. Default: root check."""
        if self.needs_root and not ctx.is_root:
            raise Unavailable(f"needs root (run sysdiag as root to read {self.name})")

    def sample(self, ctx: ProbeContext) -> Any:
        """Read the source once and return the raw (parsed) reading."""
        raise NotImplementedError

    def facts(self, ctx: ProbeContext, first: Any, last: Any,
              elapsed_s: Optional[float]) -> list[Fact]:
        """Turn the readings into facts. `first` is None (and elapsed_s None) when
        only one sample exists; then no rates are reported."""
        raise NotImplementedError


def rate(first: Optional[float], last: Optional[float], elapsed_s: Optional[float],
         wraps_at: Optional[int] = None) -> Optional[float]:
    """Per-second rate of a counter between two samples; None when unknown.
    A counter that went backwards wrapped (if `wraps_at`) or was reset (None)."""
    if first is None or last is None or not elapsed_s or elapsed_s <= 0:
        return None
    delta = last - first
    if delta < 0:
        if wraps_at is None:
            return None
        delta += wraps_at
    return delta / elapsed_s


def delta(first: Optional[int], last: Optional[int]) -> Optional[int]:
    if first is None or last is None or last < first:
        return None
    return last - first


def pct(part: Optional[float], whole: Optional[float], digits: int = 2) -> Optional[float]:
    if part is None or whole is None or whole <= 0:
        return None
    return round(100.0 * part / whole, digits)
