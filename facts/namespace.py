"""Namespace facts: the network namespaces on the host and the namespaces of the
process in scope (KNOWLEDGE.md §5.J).

Sources: /run/netns (names given by `ip netns add`), /proc/PID/ns/* (each link reads
"net:[4026531993]"; the number is the namespace's inode, equal for processes that
share it).
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

from .base import Fact

#: namespace types as /proc/PID/ns names them, in the order `lsns` lists them
NS_TYPES = ("mnt", "net", "pid", "uts", "ipc", "user", "cgroup", "time")


class NetNamespace(Fact):
    """One network namespace: named (/run/netns) and/or held by processes."""

    kind: Literal["net_namespace"] = "net_namespace"
    key_fields: ClassVar[tuple[str, ...]] = ("inode",)
    description: ClassVar[str] = ("one network namespace: its name (ip netns), how many "
                                  "processes are in it and one of them")

    inode: int
    #: its name under /run/netns (several names: comma-separated); None: unnamed
    name: Optional[str] = None
    pids: int  # processes seen in it (0: only a bind mount keeps it alive)
    sample_pid: Optional[int] = None
    sample_comm: Optional[str] = None
    #: the namespace of PID 1 (the host's), of sysdiag itself, and the one --netns/--pid chose
    is_host: Optional[bool] = None
    is_own: Optional[bool] = None
    in_scope: bool = False


class ProcessNamespaces(Fact):
    """Which namespaces the process in scope (--pid) lives in, compared with PID 1's."""

    kind: Literal["process_namespaces"] = "process_namespaces"
    key_fields: ClassVar[tuple[str, ...]] = ("pid",)
    description: ClassVar[str] = ("the namespaces of the process in scope and which of them "
                                  "differ from the host's (PID 1's)")

    pid: int
    comm: Optional[str] = None
    mnt_ns: Optional[int] = None
    net_ns: Optional[int] = None
    pid_ns: Optional[int] = None
    uts_ns: Optional[int] = None
    ipc_ns: Optional[int] = None
    user_ns: Optional[int] = None
    cgroup_ns: Optional[int] = None
    time_ns: Optional[int] = None
    #: the types whose namespace differs from PID 1's ("net,mnt,pid"); "" = none differ
    differs_from_host: Optional[str] = None
    #: in its own pid namespace, or its own mount and UTS namespaces: what container
    #: runtimes set up (a mount namespace alone is `ip netns exec` or PrivateTmp=)
    containerized: Optional[bool] = None


NAMESPACE_FACTS = (NetNamespace, ProcessNamespaces)
