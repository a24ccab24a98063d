"""Every fact kind sysdiag knows, by its `kind` name."""
from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from .base import Fact
from .cgroup import Cgroup
from .ebpf import BlockIoLatency, OffCpuWait, PageFaults, RunqLatency, SkbDrop, TcpRetransmit
from .kernel import (ConfigChange, DeletedFilesSummary, DeletedOpenFile, FuseConnection,
                     InotifyUser, KernelConfig, NumaNode, NumaSummary, RaidArray)
from .klog import KernelLogEvent
from .memory import Memory, VmStat
from .namespace import NAMESPACE_FACTS
from .network import NetCounters, NetLink, Qdisc, SockStat, SoftnetCpu, TcClass
from .network import DropCounters
from .nic import NIC_FACTS
from .netstack import (Conntrack, IfaceSysctl, NeighEntry, NeighTable, Netfilter, NetfilterRule,
                       NetSysctl, Routes, SocketSummary, TcpListener, UdpSocket)
from .process import Process, TaskSummary, ZombieParent
from .storage import (BlockDevice, FileTable, Filesystem, FilesystemUnresponsive, LockContention,
                      LockSummary, Mount)
from .system import CpuCore, CpuSummary, HostInfo, LoadAvg, Pressure

FACT_MODELS: dict[str, type[Fact]] = {}


def register(model: type[Fact]) -> type[Fact]:
    kind = model.model_fields["kind"].default
    if kind in FACT_MODELS and FACT_MODELS[kind] is not model:
        raise ValueError(f"fact kind {kind!r} registered twice")
    FACT_MODELS[kind] = model
    return model


for _model in (HostInfo, CpuSummary, CpuCore, LoadAvg, Pressure, Memory, VmStat,
               Process, TaskSummary, ZombieParent, KernelLogEvent):
    register(_model)
for _model in (NetLink, Qdisc, TcClass, SoftnetCpu, NetCounters, SockStat):
    register(_model)
register(DropCounters)
for _model in (TcpListener, UdpSocket, SocketSummary, Conntrack, NeighTable, NeighEntry, Routes,
               NetSysctl, IfaceSysctl, Netfilter, NetfilterRule):
    register(_model)
for _model in (Mount, Filesystem, FilesystemUnresponsive, BlockDevice, FileTable, LockSummary,
               LockContention, Cgroup):
    register(_model)
for _model in (RunqLatency, OffCpuWait, SkbDrop, TcpRetransmit, BlockIoLatency, PageFaults):
    register(_model)

for _model in (*NIC_FACTS, *NAMESPACE_FACTS):
    register(_model)
for _model in (KernelConfig, ConfigChange, NumaNode, NumaSummary, RaidArray, DeletedOpenFile,
               DeletedFilesSummary, FuseConnection, InotifyUser):
    register(_model)

class FactError(ValueError):
    """A fact dict that does not match its model."""


def fact_from_dict(data: dict[str, Any], where: str = "fact") -> Fact:
    """Validate one fact dict against the model its `kind` names."""
    if not isinstance(data, dict):
        raise FactError(f"{where}: expected an object, got {type(data).__name__}")
    kind = data.get("kind")
    model = FACT_MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        known = ", ".join(sorted(FACT_MODELS))
        raise FactError(f"{where}: unknown fact kind {kind!r} (known kinds: {known})")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise FactError(f"{where} ({kind}): field {loc!r}: {first['msg']}") from err


def field_type_names(kind: str) -> dict[str, str]:
    """field name -> a coarse type name ("number", "string", "bool") for rule validation."""
    model = FACT_MODELS[kind]
    out = {}
    for name, info in model.model_fields.items():
        ann = str(info.annotation)
        if "bool" in ann:
            out[name] = "bool"
        elif "int" in ann or "float" in ann:
            out[name] = "number"
        else:
            out[name] = "string"
    return out
