"""Cgroup limits and how hard workloads run into them (KNOWLEDGE.md §2.11, §5.A, §5.B, §5.E).

A cgroup gets a fact when it matters: it holds the process in scope (--pid),
it is the cgroup in scope (--cgroup), or it has a CPU quota, a memory limit, a
pids limit, an I/O throttle or is frozen. Finding the limited ones walks the
hierarchies breadth first, at most MAX_DIRS directories in all (a container
host can have tens of thousands); a truncated walk is reported as a warning.
Counters (throttling, OOM kills) are read at both ends of the window.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from sysdiag.facts import Cgroup, Fact

from ..base import Probe, ProbeContext, delta, pct
from ..parse import ParseError, first_line, parse_cpu_list, to_int
from ..registry import register_probe
from .cgroupfs import (UNIFIED, Layout, detect_layout, parse_blkio_throttle, parse_cpu_max,
                       parse_io_max, parse_keyed, parse_limit, parse_pressure_avg10,
                       parse_proc_cgroup, rel_to_path, walk)

MAX_DIRS = 2000
#: v1 hierarchies walked for limits (cpuset confines but is not a limit to find)
V1_WALKED = ("cpu", "memory", "pids", "blkio", "freezer")
BLKIO_FILES = ("read_bps", "write_bps", "read_iops", "write_iops")
PRESSURE = ("cpu", "memory", "io")

Reading = dict[str, Any]  # fact field -> value, plus "controllers"


@dataclass
class CgroupSample:
    version: int
    readings: dict[str, Reading]  # cgroup path -> reading
    in_scope: set[str]
    sources: dict[str, str]


def normalize_cgroup_path(value: str, layout: Layout) -> str:
    """--cgroup as given ("/system.slice/x.service", "/sys/fs/cgroup/system.slice/x.service",
    v1 "/sys/fs/cgroup/memory/x") -> the path inside a hierarchy ("/system.slice/x.service")."""
    path = value.strip()
    mount = "/sys/fs/cgroup"
    had_mount_prefix = path == mount or path.startswith(mount + "/")
    if had_mount_prefix:
        path = path[len(mount):]
    parts = [p for p in path.split("/") if p and p != "."]
    if ".." in parts:
        raise ValueError(f"cgroup path {value!r}: '..' is not allowed (give the path "
                         "inside the hierarchy, e.g. /system.slice/nginx.service)")
    if had_mount_prefix and layout.version == 1 and parts:
        # v1: the first component names a hierarchy (memory, "cpu,cpuacct", systemd...)
        if any(c in layout.roots for c in parts[0].split(",")) or \
                (layout.base / parts[0] / "cgroup.procs").is_file():
            parts = parts[1:]
    return "/" + "/".join(parts)


class _Reader:
    """Reads one layout's files; unreadable files become warnings, not failures."""

    def __init__(self, ctx: ProbeContext, layout: Layout, warn: Callable[[str], None]):
        self.ctx = ctx
        self.layout = layout
        self.warn = warn

    def text(self, path: Path) -> Optional[str]:
        try:
            return self.ctx.read_optional(path)
        except OSError as err:
            # ENODEV: the cgroup was removed while we read it; EOPNOTSUPP: PSI off
            if err.errno not in (errno.ENODEV, errno.EOPNOTSUPP, errno.ENOTDIR):
                self.warn(f"{path}: {err.strerror or err}")
            return None

    def limit(self, path: Path) -> Optional[int]:
        return parse_limit(self.text(path), str(path))

    def number(self, path: Path) -> Optional[int]:
        line = first_line(self.text(path))
        return None if line is None else to_int(line, str(path), "value")

    def keyed(self, path: Path) -> dict[str, int]:
        text = self.text(path)
        return {} if text is None else parse_keyed(text, str(path))

    # --- is this cgroup limited? (cheap: one or two small reads) -----------------

    def limited_v2(self, d: Path) -> bool:
        cpu = self.text(d / "cpu.max")
        if cpu is not None and parse_cpu_max(cpu, str(d / "cpu.max"))[0] is not None:
            return True
        if self.limit(d / "memory.max") is not None or self.limit(d / "pids.max") is not None:
            return True
        io = self.text(d / "io.max")
        if io and parse_io_max(io, str(d / "io.max")):
            return True
        return self.keyed(d / "cgroup.events").get("frozen") == 1

    def limited_v1(self, controller: str, d: Path) -> bool:
        if controller == "cpu":
            return self.limit(d / "cpu.cfs_quota_us") is not None
        if controller == "memory":
            return self.limit(d / "memory.limit_in_bytes") is not None
        if controller == "pids":
            return self.limit(d / "pids.max") is not None
        if controller == "blkio":
            return bool(self.blkio_rules(d))
        if controller == "freezer":
            return first_line(self.text(d / "freezer.state")) not in (None, "THAWED")
        return False

    def blkio_rules(self, d: Path) -> Optional[list[str]]:
        rules: list[str] = []
        found = False
        for name in BLKIO_FILES:
            path = d / f"blkio.throttle.{name}_device"
            text = self.text(path)
            if text is not None:
                found = True
                rules.extend(parse_blkio_throttle(text, name, str(path)))
        return rules if found else None

    # --- the full reading of one cgroup -------------------------------------------

    def pressure(self, d: Path, out: Reading) -> None:
        for resource in PRESSURE:
            path = d / f"{resource}.pressure"
            text = self.text(path)
            if text:
                for kind, avg10 in parse_pressure_avg10(text, str(path)).items():
                    out[f"{resource}_{kind}_avg10"] = avg10

    def read_v2(self, rel: str) -> Optional[Reading]:
        root = self.layout.roots[UNIFIED]
        d = rel_to_path(root, rel)
        if not d.is_dir():
            return None
        out: Reading = {"controllers": ",".join((self.text(d / "cgroup.controllers") or "")
                                                .split())}
        cpu = self.text(d / "cpu.max")
        if cpu is not None:
            quota, period = parse_cpu_max(cpu, str(d / "cpu.max"))
            out.update(cpu_quota_us=quota, cpu_period_us=period if quota is not None else None)
        stat = self.keyed(d / "cpu.stat")
        out.update(nr_periods=stat.get("nr_periods"), nr_throttled=stat.get("nr_throttled"),
                   throttled_us=stat.get("throttled_usec"))
        events = self.keyed(d / "memory.events")
        out.update(memory_limit_bytes=self.limit(d / "memory.max"),
                   memory_high_bytes=self.limit(d / "memory.high"),
                   memory_usage_bytes=self.number(d / "memory.current"),
                   memory_max_events=events.get("max"), oom_kill_total=events.get("oom_kill"))
        out["memory_limit_effective_bytes"] = self._effective_v2(root, rel)
        self._pids(d, out)
        io = self.text(d / "io.max")
        if io is not None:
            rules = parse_io_max(io, str(d / "io.max"))
            out.update(io_throttled=bool(rules), io_throttle_rules="; ".join(rules) or None)
        cg_events = self.keyed(d / "cgroup.events")
        if "frozen" in cg_events:
            out["frozen"] = cg_events["frozen"] == 1
        self._cpuset(d / "cpuset.cpus.effective", out)
        self.pressure(d, out)
        return out

    def _effective_v2(self, root: Path, rel: str) -> Optional[int]:
        parts = [p for p in rel.split("/") if p]
        limits = [self.limit(root.joinpath(*parts[:n], "memory.max"))
                  for n in range(1, len(parts) + 1)]
        known = [v for v in limits if v is not None]
        return min(known) if known else None

    def _pids(self, d: Path, out: Reading) -> None:
        if (d / "pids.current").exists():
            out.update(pids_current=self.number(d / "pids.current"),
                       pids_max=self.limit(d / "pids.max"),
                       pids_max_events=self.keyed(d / "pids.events").get("max"))

    def _cpuset(self, path: Path, out: Reading) -> None:
        line = first_line(self.text(path))
        if line is not None:
            out.update(cpuset_cpus=line, cpuset_cpus_count=len(parse_cpu_list(line, str(path))))

    def read_v1(self, rel: str) -> Optional[Reading]:
        out: Reading = {}
        controllers = []
        for controller, root in self.layout.roots.items():
            d = rel_to_path(root, rel)
            if not d.is_dir():
                continue
            controllers.append(controller)
            getattr(self, f"_v1_{controller}")(d, out)
        if not controllers:
            return None
        out["controllers"] = ",".join(controllers)
        if self.layout.unified is not None:
            unified = rel_to_path(self.layout.unified, rel)
            if unified.is_dir():
                self.pressure(unified, out)
        return out

    def _v1_cpu(self, d: Path, out: Reading) -> None:
        quota = self.limit(d / "cpu.cfs_quota_us")
        stat = self.keyed(d / "cpu.stat")
        throttled_ns = stat.get("throttled_time")
        out.update(cpu_quota_us=quota,
                   cpu_period_us=self.number(d / "cpu.cfs_period_us") if quota else None,
                   nr_periods=stat.get("nr_periods"), nr_throttled=stat.get("nr_throttled"),
                   throttled_us=None if throttled_ns is None else throttled_ns // 1000)

    def _v1_memory(self, d: Path, out: Reading) -> None:
        limit = self.limit(d / "memory.limit_in_bytes")
        stat = self.keyed(d / "memory.stat")
        # v1 memory.stat's hierarchical_memory_limit is the smallest limit up the tree
        effective = stat.get("hierarchical_memory_limit")
        out.update(memory_limit_bytes=limit,
                   memory_limit_effective_bytes=(effective if effective is not None
                                                 and 0 <= effective < (1 << 62) else limit),
                   memory_usage_bytes=self.number(d / "memory.usage_in_bytes"),
                   memory_failcnt=self.number(d / "memory.failcnt"),
                   oom_kill_total=self.keyed(d / "memory.oom_control").get("oom_kill"))

    def _v1_pids(self, d: Path, out: Reading) -> None:
        self._pids(d, out)

    def _v1_blkio(self, d: Path, out: Reading) -> None:
        rules = self.blkio_rules(d)
        if rules is not None:
            out.update(io_throttled=bool(rules), io_throttle_rules="; ".join(rules) or None)

    def _v1_freezer(self, d: Path, out: Reading) -> None:
        state = first_line(self.text(d / "freezer.state"))
        if state is not None:  # the root cgroup has no freezer.state
            out["frozen"] = state == "FROZEN"

    def _v1_cpuset(self, d: Path, out: Reading) -> None:
        path = d / "cpuset.effective_cpus"
        self._cpuset(path if path.exists() else d / "cpuset.cpus", out)


def _derive(reading: Reading, before: Optional[Reading]) -> dict[str, Any]:
    """Fact fields computed from one or two readings."""
    out = {k: v for k, v in reading.items()}
    quota, period = reading.get("cpu_quota_us"), reading.get("cpu_period_us")
    if quota and period:
        out["cpu_limit_cpus"] = round(quota / period, 3)
    out["throttled_ratio_total_pct"] = pct(reading.get("nr_throttled"), reading.get("nr_periods"))
    usage = reading.get("memory_usage_bytes")
    limit = reading.get("memory_limit_effective_bytes") or reading.get("memory_limit_bytes")
    out["memory_usage_pct"] = pct(usage, limit)
    out["pids_pct"] = pct(reading.get("pids_current"), reading.get("pids_max"))
    if before is not None:
        throttled = delta(before.get("nr_throttled"), reading.get("nr_throttled"))
        periods = delta(before.get("nr_periods"), reading.get("nr_periods"))
        out["nr_throttled_delta"] = throttled
        out["throttled_ratio_pct"] = pct(throttled, periods)
        out["oom_kill_delta"] = delta(before.get("oom_kill_total"), reading.get("oom_kill_total"))
    return out


@register_probe
class CgroupsProbe(Probe):
    name = "cgroups"
    provides = ("cgroup",)
    description = ("cgroups in scope or with limits: cpu quota and throttling, memory limit "
                   "and OOM kills, pids, io throttle, freezer (/sys/fs/cgroup)")
    timeout_s = 8.0

    def check(self, ctx: ProbeContext) -> None:
        super().check(ctx)
        detect_layout(ctx)  # raises Unavailable

    def _warn_once(self, message: str) -> None:
        if message not in self.warnings:  # sample() runs twice
            self.warn(message)

    def _scoped(self, ctx: ProbeContext, layout: Layout) -> set[str]:
        paths: set[str] = set()
        pid = ctx.scope.pid
        if pid is not None:
            path = ctx.proc(pid, "cgroup")
            try:
                by_controller = parse_proc_cgroup(ctx.read_text(path), str(path))
            except FileNotFoundError:
                self._warn_once(f"pid {pid}: no such process ({path} missing)")
                by_controller = {}
            except ParseError as err:
                self._warn_once(str(err))
                by_controller = {}
            for key in layout.roots:
                if key in by_controller:
                    paths.add(by_controller[key])
        if ctx.scope.cgroup:
            try:
                paths.add(normalize_cgroup_path(ctx.scope.cgroup, layout))
            except ValueError as err:
                self._warn_once(str(err))
        return paths

    def sample(self, ctx: ProbeContext) -> CgroupSample:
        layout = detect_layout(ctx)
        reader = _Reader(ctx, layout, self._warn_once)
        scoped = self._scoped(ctx, layout)
        wanted = set(scoped)
        budget = MAX_DIRS
        walked = [UNIFIED] if layout.version == 2 else [c for c in V1_WALKED
                                                        if c in layout.roots]
        for controller in walked:
            root = layout.roots[controller]
            rels, truncated = walk(root, budget)
            budget -= len(rels)
            if truncated or budget <= 0:
                self._warn_once(f"cgroup walk stopped after {MAX_DIRS} directories: "
                                "limits of cgroups beyond them are not reported")
            for rel in rels:
                d = rel_to_path(root, rel)
                limited = (reader.limited_v2(d) if layout.version == 2
                           else reader.limited_v1(controller, d))
                if limited:
                    wanted.add(rel)
            if budget <= 0:
                break
        readings: dict[str, Reading] = {}
        sources: dict[str, str] = {}
        for rel in sorted(wanted):
            reading = reader.read_v2(rel) if layout.version == 2 else reader.read_v1(rel)
            if reading is None:
                if rel in scoped:
                    self._warn_once(f"cgroup {rel} (in scope) not found under {layout.base}")
                continue
            readings[rel] = reading
            sources[rel] = self._source(layout, rel, reading)
        return CgroupSample(layout.version, readings, scoped, sources)

    @staticmethod
    def _source(layout: Layout, rel: str, reading: Reading) -> str:
        if layout.version == 2:
            return str(rel_to_path(layout.roots[UNIFIED], rel))
        tail = rel if rel != "/" else ""
        return f"{layout.base}/{{{reading['controllers']}}}{tail}"

    def facts(self, ctx: ProbeContext, first: Optional[CgroupSample], last: CgroupSample,
              elapsed_s: Optional[float]) -> list[Fact]:
        out: list[Fact] = []
        for rel, reading in last.readings.items():
            before = first.readings.get(rel) if first is not None else None
            fields = _derive(reading, before)
            out.append(Cgroup(source=last.sources[rel], path=rel, version=last.version,
                              in_scope=rel in last.in_scope, **fields))
        return out
