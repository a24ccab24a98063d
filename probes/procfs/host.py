"""Who the host is: name, kernel, boot id, uptime, CPUs, and what it runs on.

Environment detection (KNOWLEDGE.md §1 "Environment"): container markers are
/run/.containerenv, an overlay root in mountinfo, and a PID 1 cgroup that is
not "/"; a VM shows the `hypervisor` cpuinfo flag, a DMI vendor, or a
paravirtual clocksource. `/.dockerenv` alone is weak: images built with docker
keep it when booted as a VM (this very host: a Firecracker guest with
/.dockerenv on an ext4 root), so it decides only when nothing says "VM".
In a captured tree only the tree is read: no /.dockerenv, no uname(), no euid.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from sysdiag.facts import Fact, HostInfo

from ..base import Probe, ProbeContext
from ..parse import SYSCTL_BYTES, ParseError, first_line, to_float
from ..registry import register_probe
from .cpus import online_cpu_count

#: DMI sys_vendor / product strings of hypervisors -> systemd-detect-virt style names
DMI_VENDORS = (
    ("qemu", "qemu"), ("kvm", "kvm"), ("vmware", "vmware"), ("innotek", "oracle"),
    ("virtualbox", "oracle"), ("xen", "xen"), ("microsoft corporation", "microsoft"),
    ("amazon ec2", "amazon"), ("google", "google"), ("bochs", "bochs"),
    ("parallels", "parallels"), ("openstack", "openstack"),
)
CLOCKSOURCES = {"kvm-clock": "kvm", "xen": "xen", "hyperv_clocksource_tsc_page": "microsoft"}


def parse_uptime(text: str, source: str = "/proc/uptime") -> float:
    """Seconds since boot from "322.02 608.56"."""
    fields = text.split()
    if not fields:
        raise ParseError(source, "empty file; expected 'uptime_s idle_s'")
    return to_float(fields[0], source, "uptime")


def parse_cgroup_paths(text: str, source: str = "/proc/PID/cgroup") -> dict[str, str]:
    """/proc/PID/cgroup lines "ID:controllers:path" -> {controller: path};
    the v2 (unified) entry is under the key ""."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(":", 2)
        if len(parts) != 3:
            raise ParseError(source, f"expected 'id:controllers:path', got {line[:60]!r}")
        controllers = parts[1].split(",") if parts[1] else [""]
        for controller in controllers:
            out[controller] = parts[2]
    return out


def parse_root_fstype(mountinfo: str, source: str = "/proc/self/mountinfo") -> Optional[str]:
    """The filesystem type of the last mount on "/" (fields: ... mountpoint ... - fstype src)."""
    fstype = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        if fields[4] != "/":
            continue
        try:
            fstype = fields[fields.index("-") + 1]
        except (ValueError, IndexError):
            raise ParseError(source, f"mount line without '- fstype': {line[:80]!r}") from None
    return fstype


_HYPERVISOR_FLAG = re.compile(r"^flags\s*:.*\bhypervisor\b", re.MULTILINE)


def cpuinfo_has_hypervisor(cpuinfo: str) -> bool:
    return bool(_HYPERVISOR_FLAG.search(cpuinfo))


@dataclass(frozen=True)
class VirtSignals:
    dockerenv: bool = False
    containerenv: bool = False
    pid1_cgroup: Optional[str] = None  # a non-"/" path is a container marker
    root_fstype: Optional[str] = None
    hypervisor_flag: bool = False
    dmi_vendor: Optional[str] = None
    clocksource: Optional[str] = None


def classify_virtualization(s: VirtSignals) -> tuple[str, Optional[str]]:
    """(virtualization, detail) from the signals; see the module docstring."""
    container = []
    if s.containerenv:
        container.append("podman")
    if s.root_fstype == "overlay":
        container.append("overlay root")
    # systemd puts PID 1 of a host in /init.scope; a container's PID 1 sits elsewhere
    # (with a cgroup namespace it sees "/", so this marker is weak on cgroup v2)
    if s.pid1_cgroup not in (None, "/", "/init.scope"):
        container.append(f"pid 1 in cgroup {s.pid1_cgroup}")
    vm_detail = None
    vendor = (s.dmi_vendor or "").lower()
    for needle, name in DMI_VENDORS:
        if needle in vendor:
            vm_detail = name
            break
    if vm_detail is None and s.clocksource in CLOCKSOURCES:
        vm_detail = CLOCKSOURCES[s.clocksource]
    is_vm = vm_detail is not None or s.hypervisor_flag
    if container:
        if s.dockerenv:
            container.insert(0, "docker")
        return "container", ", ".join(container)
    if is_vm:
        detail = vm_detail or "hypervisor cpu flag"
        if s.dockerenv:
            detail += " (/.dockerenv present, but no container root)"
        return "vm", detail
    if s.dockerenv:
        return "container", "docker"
    if s.dmi_vendor is None and s.pid1_cgroup is None and s.root_fstype is None:
        return "unknown", None
    return "bare-metal", None


@dataclass(frozen=True)
class HostReading:
    hostname: Optional[str]
    kernel_release: Optional[str]
    kernel_version: Optional[str]
    boot_id: Optional[str]
    uptime_s: Optional[float]
    cpu_count: Optional[int]
    signals: VirtSignals


def _optional(ctx: ProbeContext, path: Path) -> Optional[str]:
    """A small file that may be missing or unreadable here (not an error for this probe)."""
    try:
        return ctx.read_text(path, SYSCTL_BYTES)
    except OSError:
        return None


@register_probe
class HostProbe(Probe):
    name = "host"
    provides = ("host",)
    description = "host name, kernel, boot id, uptime, CPUs, VM/container detection"
    sampled = False

    def sample(self, ctx: ProbeContext) -> HostReading:
        kernel = ("sys", "kernel")
        uptime_text = _optional(ctx, ctx.proc("uptime"))
        pid1_cgroup_text = _optional(ctx, ctx.proc(1, "cgroup"))
        mountinfo = _optional(ctx, ctx.proc("self", "mountinfo"))
        cpuinfo = _optional(ctx, ctx.proc("cpuinfo"))
        signals = VirtSignals(
            # outside the proc/sys roots: only on the live host
            dockerenv=ctx.live and os.path.exists("/.dockerenv"),
            containerenv=ctx.live and os.path.exists("/run/.containerenv"),
            pid1_cgroup=(self._pid1_cgroup(pid1_cgroup_text, str(ctx.proc(1, "cgroup")))
                         if pid1_cgroup_text else None),
            root_fstype=parse_root_fstype(mountinfo) if mountinfo else None,
            hypervisor_flag=bool(cpuinfo) and cpuinfo_has_hypervisor(cpuinfo),
            dmi_vendor=first_line(_optional(ctx, ctx.sys("class", "dmi", "id", "sys_vendor"))),
            clocksource=first_line(_optional(ctx, ctx.sys(
                "devices", "system", "clocksource", "clocksource0", "current_clocksource"))),
        )
        return HostReading(
            hostname=first_line(_optional(ctx, ctx.proc(*kernel, "hostname"))),
            kernel_release=first_line(_optional(ctx, ctx.proc(*kernel, "osrelease"))),
            kernel_version=first_line(_optional(ctx, ctx.proc(*kernel, "version"))),
            boot_id=first_line(_optional(ctx, ctx.proc(*kernel, "random", "boot_id"))),
            uptime_s=parse_uptime(uptime_text, str(ctx.proc("uptime"))) if uptime_text else None,
            cpu_count=online_cpu_count(ctx),
            signals=signals,
        )

    @staticmethod
    def _pid1_cgroup(text: str, source: str) -> Optional[str]:
        paths = parse_cgroup_paths(text, source)
        # v2 entry, else the v1 hierarchy of the `name=systemd` or cpu controller
        for key in ("", "name=systemd", "cpu"):
            if key in paths:
                return paths[key]
        return None

    def facts(self, ctx: ProbeContext, first: object, last: HostReading,
              elapsed_s: Optional[float]) -> list[Fact]:
        if last.hostname is None:
            self.warn(f"{ctx.proc('sys', 'kernel', 'hostname')}: missing; hostname 'unknown'")
        virt, detail = classify_virtualization(last.signals)
        return [HostInfo(
            source=str(ctx.proc()), hostname=last.hostname or "unknown",
            kernel_release=last.kernel_release, kernel_version=last.kernel_version,
            boot_id=last.boot_id, uptime_s=last.uptime_s, virtualization=virt,
            virtualization_detail=detail, cpu_count=last.cpu_count,
            euid=ctx.euid if ctx.live else None,
        )]
