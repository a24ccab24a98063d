"""Pydantic models of everything sysdiag can know about a host."""
from .base import Fact
from .cgroup import Cgroup
from .ebpf import BlockIoLatency, OffCpuWait, PageFaults, RunqLatency, SkbDrop, TcpRetransmit
from .kernel import (ConfigChange, DeletedFilesSummary, DeletedOpenFile, FuseConnection,
                     InotifyUser, KernelConfig, NumaNode, NumaSummary, RaidArray)
from .klog import KernelLogEvent
from .memory import Memory, VmStat
from .namespace import NetNamespace, ProcessNamespaces
from .network import NetCounters, NetLink, Qdisc, SockStat, SoftnetCpu, TcClass
from .network import DropCounters
from .nic import (IrqSpread, NicChannels, NicCoalesce, NicOffloads, NicQueues, NicRings,
                  SoftirqCpu, SoftirqSummary)
from .netstack import (Conntrack, IfaceSysctl, NeighEntry, NeighTable, Netfilter, NetfilterRule,
                       NetSysctl, Routes, SocketSummary, TcpListener, UdpSocket)
from .outcome import ProbeOutcome, ProbeStatus
from .process import Process, TaskSummary, ZombieParent
from .registry import FACT_MODELS, FactError, fact_from_dict, register
from .snapshot import SCHEMA_VERSION, Scope, Snapshot, SnapshotError, load_snapshot
from .storage import (BlockDevice, FileTable, Filesystem, FilesystemUnresponsive, LockContention,
                      LockSummary, Mount)
from .system import CpuCore, CpuSummary, HostInfo, LoadAvg, Pressure

__all__ = [
    "Fact", "FACT_MODELS", "FactError", "fact_from_dict", "register",
    "HostInfo", "CpuSummary", "CpuCore", "LoadAvg", "Pressure", "Memory", "VmStat",
    "Process", "TaskSummary", "ZombieParent", "KernelLogEvent",
    "ProbeOutcome", "ProbeStatus", "Scope", "Snapshot", "SnapshotError", "load_snapshot",
    "SCHEMA_VERSION",
]
__all__ += ["NetLink", "Qdisc", "TcClass", "SoftnetCpu", "NetCounters", "SockStat"]
__all__ += ["DropCounters"]
__all__ += ["Mount", "Filesystem", "FilesystemUnresponsive", "BlockDevice", "FileTable",
            "LockSummary", "LockContention", "Cgroup"]
__all__ += ["RunqLatency", "OffCpuWait", "SkbDrop", "TcpRetransmit", "BlockIoLatency", "PageFaults"]
__all__ += ["TcpListener", "UdpSocket", "SocketSummary", "Conntrack", "NeighTable", "NeighEntry",
            "Routes", "NetSysctl", "IfaceSysctl", "Netfilter", "NetfilterRule"]
__all__ += ["IrqSpread", "SoftirqCpu", "SoftirqSummary", "NicQueues", "NicOffloads", "NicRings",
            "NicChannels", "NicCoalesce", "NetNamespace", "ProcessNamespaces"]
__all__ += ["KernelConfig", "ConfigChange", "NumaNode", "NumaSummary", "RaidArray",
            "DeletedOpenFile", "DeletedFilesSummary", "FuseConnection", "InotifyUser"]
