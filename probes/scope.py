"""Scope: which network namespace the network probes read (--netns, --pid) and which
interfaces the per-interface probes report (--iface).

Reading another network namespace. /proc/net/* and /proc/sys/net/* show the namespace of
the *reading thread* (KNOWLEDGE.md §0), and a socket belongs to the namespace its
creating thread is in. setns(CLONE_NEWNET) moves only the calling thread, so a probe
marked `netns_scoped` has its samples taken in a thread that enters the namespace first
and leaves it afterwards (the runner does it, `entered_netns`): netlink sockets it opens,
/proc/sys/net reads and `ctx.net(...)` (/proc/thread-self/net: /proc/net links to
/proc/self/net, the thread-group leader's view) then all show that namespace, whether
processes live in it or only a bind mount under /run/netns keeps it. Nothing is
created, mounted or changed, and the rest of sysdiag never leaves its own namespace.
/sys/class/net keeps showing the namespace sysfs was mounted in: sysfs readers check
`ctx.foreign_netns`.
"""
from __future__ import annotations

import ctypes
import errno
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TypeVar

from .base import ProbeContext, Unavailable

CLONE_NEWNET = 0x40000000
#: where `ip netns add NAME` binds a namespace (also probes/netlink/rtnl.py)
NETNS_RUN_DIR = "/run/netns"
#: the calling thread's own namespace; /proc/self would be the thread-group leader's
OWN_NETNS = "/proc/thread-self/ns/net"

T = TypeVar("T")


class ScopeError(ValueError):
    """A scope option that names nothing that exists; the message says which and what to do."""


def _setns(fd: int, nstype: int) -> None:
    setns = getattr(os, "setns", None)  # Python 3.12+
    if setns is not None:
        setns(fd, nstype)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextmanager
def entered_netns(path: str, label: Optional[str] = None) -> Iterator[None]:
    """Move the calling thread into the network namespace at `path`, and back on exit.

    Call it only in a thread of its own (a runner call thread): should the way back
    fail, that thread must not run anything else, so the error propagates."""
    label = label or path
    own = os.open(OWN_NETNS, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise Unavailable(f"{label} no longer exists ({path})") from None
        except PermissionError:
            raise Unavailable(f"not allowed to open {label} ({path}); run as root") from None
        try:
            _setns(target, CLONE_NEWNET)
        except OSError as err:
            if err.errno in (errno.EPERM, errno.EACCES):
                raise Unavailable(f"entering {label} needs CAP_SYS_ADMIN; run sysdiag as "
                                  "root") from None
            if err.errno == errno.EINVAL:
                raise Unavailable(f"{path} is not a network namespace") from None
            raise
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own, CLONE_NEWNET)
    finally:
        os.close(own)


def run_in_netns(path: Optional[str], fn: Callable[[], T], timeout_s: float = 5.0,
                 label: Optional[str] = None) -> T:
    """Call `fn` in a new thread inside the namespace at `path` (None: sysdiag's own)."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            if path is None:
                box["value"] = fn()
            else:
                with entered_netns(path, label):
                    box["value"] = fn()
        except BaseException as err:  # handed to the caller below
            box["error"] = err

    thread = threading.Thread(target=body, name="sysdiag-netns", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"reading {label or path} took longer than {timeout_s:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def netns_inode(path: str) -> Optional[int]:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


@dataclass(frozen=True)
class NetnsTarget:
    path: str  # /run/netns/NAME or /proc/PID/ns/net
    label: str  # "network namespace 'NAME'", "the network namespace of pid P"
    inode: Optional[int]


def resolve_netns(ctx: ProbeContext) -> Optional[NetnsTarget]:
    """The namespace --netns or --pid names, or None when it is sysdiag's own (nothing to
    enter) or the tree is a captured one (see ProbeContext.net)."""
    scope = ctx.scope
    if not ctx.live or (scope.netns is None and scope.pid is None):
        return None
    own = netns_inode(OWN_NETNS)
    named = pid_ns = None
    if scope.netns is not None:
        path = os.path.join(NETNS_RUN_DIR, scope.netns)
        named = NetnsTarget(path, f"network namespace {scope.netns!r}", netns_inode(path))
        if named.inode is None:
            raise ScopeError(f"--netns {scope.netns}: no such namespace in {NETNS_RUN_DIR} "
                             "(`ip netns list` lists them)")
    if scope.pid is not None:
        path = str(ctx.proc(scope.pid, "ns", "net"))
        pid_ns = NetnsTarget(path, f"the network namespace of pid {scope.pid}", netns_inode(path))
        if pid_ns.inode is None:
            if not ctx.proc(scope.pid).is_dir():
                raise ScopeError(f"--pid {scope.pid}: no such process under {ctx.proc_root}")
            # ptrace rules hide it (another user's process, or one in an ancestor user
            # namespace even from root): the network probes read sysdiag's own namespace,
            # and the namespaces probe says so
            pid_ns = None
    if named is not None and pid_ns is not None and pid_ns.inode != named.inode:
        raise ScopeError(f"--netns {scope.netns} and --pid {scope.pid} name different network "
                         f"namespaces; give one of them")
    target = named or pid_ns
    if target is None or target.inode == own:
        return None
    return target


# ---- --iface ------------------------------------------------------------------------

@dataclass(frozen=True)
class LinkInfo:
    """What relating interfaces needs: name, index and the indexes it points at."""

    ifname: str
    ifindex: Optional[int]
    master: Optional[int] = None  # IFLA_MASTER
    link: Optional[int] = None  # IFLA_LINK (parent or veth peer) when in the same namespace


def related(iface: str, links: list[LinkInfo]) -> frozenset[str]:
    """`iface`, its master (bridge/bond), its parent or veth peer, and the interfaces that
    point at it (bridge ports, bond slaves, vlans on it): one hop each way.

    >>> links = [LinkInfo("br0", 3), LinkInfo("va", 4, master=3, link=5), LinkInfo("vb", 5, link=4),
    ...          LinkInfo("eth0", 2)]
    >>> sorted(related("va", links)), sorted(related("br0", links))
    (['br0', 'va', 'vb'], ['br0', 'va'])
    """
    by_index = {link.ifindex: link for link in links if link.ifindex is not None}
    me = next((link for link in links if link.ifname == iface), None)
    if me is None:
        return frozenset({iface})
    names = {iface}
    for index in (me.master, me.link):
        if index is not None and index != me.ifindex and index in by_index:
            names.add(by_index[index].ifname)
    for link in links:
        if me.ifindex is not None and me.ifindex in (link.master, link.link) \
                and link.ifindex != me.ifindex:
            names.add(link.ifname)
    return frozenset(names)


def links_netlink() -> list[LinkInfo]:
    """The links of the calling thread's namespace (one RTM_GETLINK dump)."""
    from .netlink.links import dump_links, reading_from_link_msg
    from .parse import ParseError

    out = []
    for body in dump_links():
        try:
            link = reading_from_link_msg(body)
        except ParseError:
            continue  # no IFLA_IFNAME: nothing --iface could name
        # a veth peer in another namespace carries IFLA_LINK_NETNSID; its index is not ours
        foreign = link.peer_netnsid is not None
        out.append(LinkInfo(link.ifname, link.ifindex, link.master_ifindex,
                            None if foreign else link.link_ifindex))
    return out


def _sys_int(path: Path) -> Optional[int]:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def links_sysfs(ctx: ProbeContext) -> list[LinkInfo]:
    """The links /sys/class/net shows (a captured tree, or a live host without netlink)."""
    class_net = ctx.sys("class", "net")
    try:
        names = sorted(os.listdir(class_net))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        base = class_net / name
        index = _sys_int(base / "ifindex")
        iflink = _sys_int(base / "iflink")
        master = None
        if os.path.islink(base / "master"):
            master_name = os.path.basename(os.readlink(base / "master"))
            master = _sys_int(class_net / master_name / "ifindex")
        out.append(LinkInfo(name, index, master, iflink if iflink != index else None))
    return out


def proc_net_dev_names(text: str) -> list[str]:
    """Interface names in /proc/net/dev text (two header lines, then "IF: counters")."""
    return [line.partition(":")[0].strip() for line in text.splitlines()[2:] if ":" in line]


def scope_context(ctx: ProbeContext) -> ProbeContext:
    """Fill `ctx.netns_path`/`netns_label` and `ctx.ifaces` from `ctx.scope`; raises
    ScopeError for a namespace or interface that does not exist."""
    target = resolve_netns(ctx)
    if target is not None:
        ctx.netns_path, ctx.netns_label = target.path, target.label
    iface = ctx.scope.iface
    if iface is None:
        return ctx
    where = ctx.netns_label or (f"{ctx.sys_root}/class/net" if not ctx.live else
                                "this network namespace")
    if ctx.live:
        try:
            links = run_in_netns(ctx.netns_path, links_netlink, label=ctx.netns_label)
        except Unavailable:
            # cannot look inside (not root): scope to the name alone; the network probes
            # say themselves that they cannot enter the namespace
            ctx.ifaces = frozenset({iface})
            return ctx
    else:
        links = links_sysfs(ctx)
        if ctx.scope.pid is not None:  # the process's own view of the interfaces
            text = ctx.read_optional(ctx.net("dev"))
            links += [LinkInfo(n, None) for n in proc_net_dev_names(text or "")]
    if not any(link.ifname == iface for link in links):
        raise ScopeError(f"--iface {iface}: no such interface in {where} "
                         "(`ip link` lists them)")
    ctx.ifaces = related(iface, links)
    return ctx
