"""NUMA nodes: free memory per node and allocation locality (KNOWLEDGE.md §5.A
`cpu-numa-misplacement`, §5.B `mem-numa-node-exhaustion`).

Per node, under /sys/devices/system/node/nodeN/:
- meminfo: "Node 0 MemTotal:  4679892 kB" (kB, like /proc/meminfo, with a prefix);
- numastat: "numa_hit 12009643" counters (pages allocated). numa_miss counts pages
  this node served for another node's request, numa_foreign the requests of this
  node another one served. Since 5.x the same counters are also in nodeN/vmstat,
  used when numastat is missing;
- cpulist: the node's CPUs ("0-7,16-23"; empty for a memory-only node).
A kernel without CONFIG_NUMA has no node directory: the host is one node.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from sysdiag.facts import Fact, NumaNode, NumaSummary

from ..base import Probe, ProbeContext, Unavailable, pct, rate
from ..parse import ParseError, parse_cpu_list, to_int
from ..registry import register_probe

NUMA_COUNTERS = ("numa_hit", "numa_miss", "numa_foreign")
_NODE_DIR = re.compile(r"^node(\d+)$")


def parse_node_meminfo(text: str, source: str = "nodeN/meminfo") -> dict[str, int]:
    """{"MemTotal": bytes, ...}; values without a kB unit (HugePages_*) stay counts.

    >>> parse_node_meminfo("Node 1 MemTotal:  1024 kB\\nNode 1 HugePages_Free:  3\\n")
    {'MemTotal': 1048576, 'HugePages_Free': 3}
    """
    out: dict[str, int] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) < 4 or fields[0] != "Node" or not fields[2].endswith(":"):
            raise ParseError(source, f"expected 'Node N Key: value [kB]', got {line[:80]!r}")
        value = to_int(fields[3], source, fields[2][:-1])
        out[fields[2][:-1]] = value * 1024 if fields[4:5] == ["kB"] else value
    return out


def parse_numastat(text: str, source: str = "nodeN/numastat") -> dict[str, int]:
    """"numa_hit 12009643" lines -> {"numa_hit": 12009643, ...} (any key: vmstat too)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ParseError(source, f"expected 'name value', got {line[:80]!r}")
        out[fields[0]] = to_int(fields[1], source, fields[0])
    return out


@dataclass
class NodeReading:
    node: int
    meminfo: Optional[dict[str, int]]
    counters: dict[str, int]  # the NUMA_COUNTERS found
    cpus: Optional[str]
    source: str


@register_probe
class NumaProbe(Probe):
    name = "numa"
    provides = ("numa_node", "numa")
    description = ("NUMA nodes: free memory and numa_hit/miss/foreign rates per node "
                   "(/sys/devices/system/node)")

    def sample(self, ctx: ProbeContext) -> Optional[list[NodeReading]]:
        """The nodes, or None on a live kernel without NUMA support (one node)."""
        base = ctx.sys("devices", "system", "node")
        try:
            ctx.check_inside_root(base)
            names = os.listdir(base)
        except (FileNotFoundError, NotADirectoryError):
            if ctx.live:
                return None  # CONFIG_NUMA=n
            raise Unavailable(f"{base} is not in this captured tree") from None
        nodes = []
        for name in names:
            match = _NODE_DIR.match(name)
            if match:
                nodes.append(self._read_node(ctx, int(match.group(1)), base / name))
        if not nodes:
            raise Unavailable(f"no nodeN directories in {base}")
        return sorted(nodes, key=lambda n: n.node)

    def _read_node(self, ctx: ProbeContext, node: int, path: Path) -> NodeReading:
        def optional(name: str) -> Optional[str]:
            return ctx.read_optional(path / name)

        meminfo_text = optional("meminfo")
        meminfo = (parse_node_meminfo(meminfo_text, f"{path}/meminfo")
                   if meminfo_text is not None else None)
        counters: dict[str, int] = {}
        for name in ("numastat", "vmstat"):
            text = optional(name)
            if text is None:
                continue
            values = parse_numastat(text, f"{path}/{name}")
            counters = {k: values[k] for k in NUMA_COUNTERS if k in values}
            if counters:
                break
        missing = [name for name, ok in (("meminfo", meminfo is not None),
                                         ("NUMA counters (numastat)", bool(counters))) if not ok]
        if missing:
            message = f"{path}: no {', no '.join(missing)}"
            if message not in self.warnings:  # sample() runs twice
                self.warn(message)
        cpulist = optional("cpulist")
        cpus = cpulist.strip() if cpulist is not None else None
        return NodeReading(node=node, meminfo=meminfo, counters=counters, cpus=cpus,
                           source=str(path))

    def facts(self, ctx: ProbeContext, first: Optional[list[NodeReading]],
              last: Optional[list[NodeReading]], elapsed_s: Optional[float]) -> list[Fact]:
        base = str(ctx.sys("devices", "system", "node"))
        if last is None:
            return [NumaSummary(source=f"{base} (absent: kernel without CONFIG_NUMA)",
                                nodes=1)]
        before = {n.node: n for n in first} if first else {}
        out: list[Fact] = []
        hit_sum = miss_sum = 0.0
        have_rates = False
        free: dict[int, float] = {}
        for reading in last:
            fact = self._node_fact(reading, before.get(reading.node), elapsed_s)
            out.append(fact)
            if fact.free_pct is not None:
                free[reading.node] = fact.free_pct
            if fact.numa_hit_per_s is not None and fact.numa_miss_per_s is not None:
                hit_sum += fact.numa_hit_per_s
                miss_sum += fact.numa_miss_per_s
                have_rates = True
        fullest = min(free, key=lambda n: free[n]) if free else None
        out.append(NumaSummary(
            source=base, nodes=len(last),
            min_free_pct=free[fullest] if fullest is not None else None,
            max_free_pct=max(free.values()) if free else None, fullest_node=fullest,
            miss_ratio_pct=pct(miss_sum, hit_sum + miss_sum) if have_rates else None))
        return out

    def _node_fact(self, now: NodeReading, before: Optional[NodeReading],
                   elapsed_s: Optional[float]) -> NumaNode:
        mem = now.meminfo or {}
        total, free = mem.get("MemTotal"), mem.get("MemFree")
        rates: dict[str, Optional[float]] = {}
        for key in NUMA_COUNTERS:
            value = rate(before.counters.get(key) if before else None, now.counters.get(key),
                         elapsed_s)
            rates[key] = round(value, 2) if value is not None else None
        hit, miss = rates["numa_hit"], rates["numa_miss"]
        cpus = parse_cpu_list(now.cpus, f"{now.source}/cpulist") if now.cpus is not None \
            else None
        return NumaNode(
            source=now.source, node=now.node, mem_total_bytes=total, mem_free_bytes=free,
            free_pct=pct(free, total),
            numa_hit_per_s=hit, numa_miss_per_s=miss, numa_foreign_per_s=rates["numa_foreign"],
            miss_ratio_pct=pct(miss, (hit or 0) + (miss or 0)) if hit is not None
            and miss is not None else None,
            numa_hit_total=now.counters.get("numa_hit"),
            numa_miss_total=now.counters.get("numa_miss"),
            numa_foreign_total=now.counters.get("numa_foreign"),
            cpus=now.cpus, cpu_count=len(cpus) if cpus is not None else None)
