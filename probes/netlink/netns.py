"""Network namespaces on the host, and the namespaces of the process in scope
(KNOWLEDGE.md §5.J; what `lsns -t net` and `ip netns list` show).

A namespace is known by its nsfs inode: /proc/PID/ns/TYPE links read "net:[4026531993]",
and stat() of a name bound under /run/netns gives the same number. Processes are read
up to MAX_PROCS; another user's processes (or, even for root, processes in an ancestor
user namespace) refuse the readlink, and are counted as unreadable.
Captured trees may store those links as files holding the link text; both are read.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Mapping, Optional

from sysdiag.facts import Fact, NetNamespace, ProcessNamespaces
from sysdiag.facts.namespace import NS_TYPES

from ..base import Probe, ProbeContext
from ..parse import ParseError
from ..registry import register_probe
from ..scope import NETNS_RUN_DIR, OWN_NETNS, netns_inode

MAX_PROCS = 100_000
MAX_FACTS = 500
_NS_LINK = re.compile(r"([a-z_]+):\[(\d+)\]")


def parse_ns_link(text: str, source: str = "ns link") -> tuple[str, int]:
    """("net", 4026531993) from "net:[4026531993]".

    >>> parse_ns_link("net:[4026531993]")
    ('net', 4026531993)
    """
    match = _NS_LINK.fullmatch(text.strip())
    if match is None:
        raise ParseError(source, f"expected 'TYPE:[INODE]', got {text.strip()[:60]!r}")
    return match.group(1), int(match.group(2))


class Unreadable(Exception):
    """A process hides its namespaces from us (ptrace access mode check)."""


def read_ns(ctx: ProbeContext, pid: int | str, nstype: str) -> Optional[int]:
    """The inode of one namespace of a process; None when the process or type is gone.
    Raises Unreadable when access is refused."""
    path = ctx.proc(pid, "ns", nstype)
    try:
        if ctx.live or os.path.islink(path):
            text = os.readlink(path)
        else:  # captured tree: the link text stored as a file
            text = ctx.read_text(path, 256)
    except (FileNotFoundError, ProcessLookupError):
        return None
    except PermissionError:
        raise Unreadable(str(path)) from None
    kind, inode = parse_ns_link(text, str(path))
    if kind != nstype:
        raise ParseError(str(path), f"link names a {kind!r} namespace, expected {nstype!r}")
    return inode


@dataclass
class NetnsGroup:
    inode: int
    pids: int = 0
    sample_pid: Optional[int] = None
    names: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class NamespaceSample:
    groups: Mapping[int, NetnsGroup]
    host: Optional[int]  # PID 1's
    own: Optional[int]
    scoped: Optional[int]
    comms: Mapping[int, str]
    scoped_process: Optional[ProcessNamespaces] = None


def named_namespaces(run_dir: str = NETNS_RUN_DIR) -> tuple[dict[str, int], list[str]]:
    """name -> inode for the namespaces bound under /run/netns, and stale names (a file
    whose bind mount is gone: it is then not on nsfs)."""
    try:
        names = sorted(os.listdir(run_dir))
    except FileNotFoundError:
        return {}, []
    nsfs_dev = os.stat(OWN_NETNS).st_dev
    found, stale = {}, []
    for name in names:
        try:
            st = os.stat(os.path.join(run_dir, name))
        except OSError:
            stale.append(name)
            continue
        if st.st_dev != nsfs_dev:
            stale.append(name)
        else:
            found[name] = st.st_ino
    return found, stale


def _comm(ctx: ProbeContext, pid: int) -> Optional[str]:
    try:
        text = ctx.read_optional(ctx.proc(pid, "comm"))
    except OSError:
        return None
    return None if text is None else text.strip()[:64]


@register_probe
class NamespacesProbe(Probe):
    name = "namespaces"
    provides = ("net_namespace", "process_namespaces")
    description = ("network namespaces (named in /run/netns and per process) and the "
                   "namespaces of the process in scope (/proc/PID/ns)")
    sampled = False

    def _scan(self, ctx: ProbeContext) -> dict[int, NetnsGroup]:
        groups: dict[int, NetnsGroup] = {}
        unreadable = seen = 0
        for entry in os.scandir(ctx.proc_root):
            if not entry.name.isdigit():
                continue
            seen += 1
            if seen > MAX_PROCS:
                self.warn(f"more than {MAX_PROCS} processes: the rest were not read")
                break
            try:
                inode = read_ns(ctx, entry.name, "net")
            except Unreadable:
                unreadable += 1
                continue
            except ParseError as err:  # one odd process does not hide the others
                self.warn(str(err))
                continue
            if inode is None:
                continue
            group = groups.setdefault(inode, NetnsGroup(inode))
            group.pids += 1
            pid = int(entry.name)
            if group.sample_pid is None or pid < group.sample_pid:
                group.sample_pid = pid
        if unreadable:
            self.warn(f"{unreadable} processes do not show their namespaces "
                      f"(ptrace access check{'' if ctx.is_root else '; run as root'})")
        return groups

    def _scoped_process(self, ctx: ProbeContext, host: dict[str, Optional[int]]
                        ) -> Optional[ProcessNamespaces]:
        pid = ctx.scope.pid
        if pid is None:
            return None
        values: dict[str, Optional[int]] = {}
        for nstype in NS_TYPES:
            try:
                values[nstype] = read_ns(ctx, pid, nstype)
            except Unreadable as err:
                self.warn(f"cannot read {err}: the namespaces of pid {pid} are unknown, and "
                          "the network probes read sysdiag's own network namespace")
                return None
        if all(v is None for v in values.values()):
            self.warn(f"pid {pid}: no namespaces under {ctx.proc(pid, 'ns')} (it exited?)")
            return None
        differs = None
        if all(host.get(t) is not None for t, v in values.items() if v is not None):
            differs = ",".join(t for t, v in values.items()
                               if v is not None and v != host.get(t))
        # a pid namespace, or mount + UTS (hostname) together, is what runtimes set up;
        # mount alone is `ip netns exec` or systemd's PrivateTmp=
        containerized = None if differs is None else (
            "pid" in differs.split(",") or {"mnt", "uts"} <= set(differs.split(",")))
        return ProcessNamespaces(
            source=str(ctx.proc(pid, "ns")), pid=pid, comm=_comm(ctx, pid),
            **{f"{t}_ns": v for t, v in values.items()},
            differs_from_host=differs, containerized=containerized)

    def _host_namespaces(self, ctx: ProbeContext) -> dict[str, Optional[int]]:
        """PID 1's namespaces; where PID 1 hides them (it may sit in an ancestor user
        namespace), kthreadd's: kernel threads always live in the initial namespaces."""
        for pid in (1, 2):
            if pid == 2 and _comm(ctx, 2) != "kthreadd":
                break
            try:
                host = {t: read_ns(ctx, pid, t) for t in NS_TYPES}
            except Unreadable:
                continue
            if host["net"] is not None:
                return host
        return dict.fromkeys(NS_TYPES)

    def sample(self, ctx: ProbeContext) -> NamespaceSample:
        groups = self._scan(ctx)
        if ctx.live:
            names, stale = named_namespaces()
            if stale:
                self.warn(f"{NETNS_RUN_DIR}: {', '.join(stale[:10])} no longer bound to a "
                          "namespace (stale names)")
            for name, inode in names.items():
                groups.setdefault(inode, NetnsGroup(inode)).names.append(name)
        host = self._host_namespaces(ctx)
        own = netns_inode(OWN_NETNS) if ctx.live else None
        scoped = None
        if ctx.netns_path is not None:
            scoped = netns_inode(ctx.netns_path)
        elif ctx.scope.pid is not None:
            try:
                scoped = read_ns(ctx, ctx.scope.pid, "net")
            except Unreadable:
                scoped = None
        elif ctx.live:
            scoped = own
        comms = {g.sample_pid: c for g in groups.values() if g.sample_pid is not None
                 and (c := _comm(ctx, g.sample_pid)) is not None}
        return NamespaceSample(groups, host.get("net"), own, scoped, comms,
                               self._scoped_process(ctx, host))

    def facts(self, ctx: ProbeContext, first: Optional[NamespaceSample], last: NamespaceSample,
              elapsed_s: Optional[float]) -> list[Fact]:
        source = f"{ctx.proc_root}/*/ns/net" + (f", {NETNS_RUN_DIR}" if ctx.live else "")
        # named and in-scope ones first, then the most populated
        ordered = sorted(last.groups.values(),
                         key=lambda g: (g.inode != last.scoped, not g.names, -g.pids, g.inode))
        if len(ordered) > MAX_FACTS:
            self.warn(f"{len(ordered)} network namespaces: reporting {MAX_FACTS}")
        facts: list[Fact] = [NetNamespace(
            source=source, inode=g.inode, name=",".join(g.names) or None, pids=g.pids,
            sample_pid=g.sample_pid, sample_comm=last.comms.get(g.sample_pid),
            is_host=None if last.host is None else g.inode == last.host,
            is_own=None if last.own is None else g.inode == last.own,
            in_scope=g.inode == last.scoped) for g in ordered[:MAX_FACTS]]
        if last.scoped_process is not None:
            facts.append(last.scoped_process)
        return facts
