"""Probe registration. Each probe module decorates its class with `@register_probe`;
`all_probes()` imports every module so the registry is complete."""
from __future__ import annotations

import importlib

from .base import Probe

_PROBES: dict[str, type[Probe]] = {}

#: every module that defines probes; add new ones here
PROBE_MODULES = (
    "sysdiag.probes.procfs.host",
    "sysdiag.probes.procfs.stat",
    "sysdiag.probes.procfs.loadavg",
    "sysdiag.probes.procfs.pressure",
    "sysdiag.probes.procfs.meminfo",
    "sysdiag.probes.procfs.vmstat",
    "sysdiag.probes.process.processes",
    "sysdiag.probes.klog.kmsg",
    "sysdiag.probes.netlink.links",
    "sysdiag.probes.netlink.qdiscs",
    "sysdiag.probes.procfs.softnet",
    "sysdiag.probes.procfs.netstat",
    "sysdiag.probes.procfs.mounts",
    "sysdiag.probes.procfs.diskstats",
    "sysdiag.probes.procfs.filenr",
    "sysdiag.probes.procfs.locks",
    "sysdiag.probes.procfs.filesystems",
    "sysdiag.probes.sysfs.cgroups",
    "sysdiag.probes.ebpf.runqlat",
    "sysdiag.probes.ebpf.offcpu",
    "sysdiag.probes.ebpf.drops",
    "sysdiag.probes.ebpf.tcpretrans",
    "sysdiag.probes.ebpf.biolat",
    "sysdiag.probes.ebpf.faults",
    "sysdiag.probes.procfs.sysctl",
    "sysdiag.probes.procfs.conntrack",
    "sysdiag.probes.netlink.sockets",
    "sysdiag.probes.netlink.neigh",
    "sysdiag.probes.netlink.routes",
    "sysdiag.probes.netfilter.ruleset",
    "sysdiag.probes.procfs.kernelcfg",
    "sysdiag.probes.procfs.deleted",
    "sysdiag.probes.procfs.inotify",
    "sysdiag.probes.sysfs.numa",
    "sysdiag.probes.procfs.mdstat",
    "sysdiag.probes.sysfs.fuse",
    "sysdiag.probes.procfs.interrupts",
    "sysdiag.probes.sysfs.queues",
    "sysdiag.probes.netlink.ethtool",
    "sysdiag.probes.netlink.netns",
)


def register_probe(cls: type[Probe]) -> type[Probe]:
    if cls.name in _PROBES and _PROBES[cls.name] is not cls:
        raise ValueError(f"probe {cls.name!r} registered twice")
    _PROBES[cls.name] = cls
    return cls


def all_probes() -> dict[str, type[Probe]]:
    for module in PROBE_MODULES:
        importlib.import_module(module)
    return dict(_PROBES)
