"""NIC interrupt spread and network softirqs: /proc/interrupts, /proc/softirqs and
/proc/irq/N/{smp,effective}_affinity_list (KNOWLEDGE.md §2.4, §5.I nic-irq-rss-imbalance).

/proc/interrupts has a header of online CPUs ("CPU0 CPU1 ..."), then per IRQ the count
on each CPU followed by what the kernel knows of it: the chip name, the hardware IRQ
and trigger ("IO-APIC 2-edge", "PCI-MSI 114689-edge", "PCI-MSIX-0000:00:03.0 1-edge",
on ARM "GICv3 27 Level"), then the handlers' names, comma-separated. Only the names
say which device an IRQ serves, so the tail is read from the right place rather than
by column. Arch lines (NMI, LOC, ...) end in a description instead and are skipped.

An interface's IRQs are the ones its device raises: the MSI vectors listed in the PCI
device's msi_irqs/ (live), or handlers named after the interface ("eth0-TxRx-0"), its
virtio device ("virtio2-input.0") or its PCI address ("mlx5_comp0@pci:0000:3b:00.0").
Control vectors (virtio "-config", mlx5 "async", "misc", mailbox) carry no packets and
are left out of the spread. Per-CPU counts are unsigned int in the kernel and wrap.
"""
from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

from sysdiag.facts import Fact, IrqSpread, SoftirqCpu, SoftirqSummary

from ..base import Probe, ProbeContext, pct, rate
from ..parse import ParseError, parse_cpu_list
from ..registry import register_probe

WRAP = 1 << 32
#: the hardware-IRQ/trigger token before the handler names: "2-edge", "114689-edge",
#: "-fasteoi" (flow handler name printed after a padded level), "xen-dyn -event"
_FLOW = re.compile(r"[A-Za-z0-9]*-[a-z_]+")
_LEVEL = ("Level", "Edge")  # CONFIG_GENERIC_IRQ_SHOW_LEVEL (ARM, RISC-V)
#: vectors that signal configuration or firmware events, not packets
_CONTROL = re.compile(r"config|control|ctrl|async|misc|mbx|mailbox|event", re.I)


@dataclass(frozen=True)
class IrqLine:
    irq: int
    counts: tuple[int, ...]  # one per CPU column
    actions: tuple[str, ...]  # handler names ("virtio2-input.0"), may be empty
    chip: str = ""


@dataclass(frozen=True)
class InterruptTable:
    cpus: tuple[int, ...]
    irqs: Mapping[int, IrqLine]


def _cpu_header(line: str, source: str) -> tuple[int, ...]:
    names = line.split()
    if not names or not all(n.startswith("CPU") and n[3:].isdigit() for n in names):
        raise ParseError(source, f"first line should list CPUs ('CPU0 CPU1 ...'), got "
                                 f"{line.strip()[:60]!r}")
    return tuple(int(n[3:]) for n in names)


def split_irq_tail(tokens: list[str]) -> tuple[str, tuple[str, ...]]:
    """(chip, handler names) from what follows the counts of a numbered IRQ line.

    >>> split_irq_tail("PCI-MSIX-0000:00:03.0 1-edge virtio2-input.0".split())
    ('PCI-MSIX-0000:00:03.0', ('virtio2-input.0',))
    >>> split_irq_tail("IO-APIC 9-fasteoi acpi, i801_smbus".split())
    ('IO-APIC', ('acpi', 'i801_smbus'))
    >>> split_irq_tail("GICv3 27 Level arch_timer".split())
    ('GICv3', ('arch_timer',))
    """
    if not tokens:
        return "", ()
    start = None
    for i in range(1, len(tokens)):  # tokens[0] is the chip, whatever it looks like
        if tokens[i] in _LEVEL:
            start = i + 1
            if start < len(tokens) and _FLOW.fullmatch(tokens[start]):
                start += 1
            break
        if _FLOW.fullmatch(tokens[i]):
            start = i + 1
            break
    if start is None:  # unknown layout: "chip hwirq names..." or "chip names..."
        start = 2 if len(tokens) > 2 and tokens[1].isdigit() else 1
    rest = " ".join(tokens[start:])
    actions = tuple(a.strip() for a in rest.split(",") if a.strip())
    return tokens[0], actions


def parse_interrupts(text: str, source: str = "/proc/interrupts") -> InterruptTable:
    """Numbered IRQ lines of /proc/interrupts; arch lines (NMI, LOC, ERR...) are skipped.

    >>> t = parse_interrupts('''           CPU0       CPU1
    ...  38:          0       1519 PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0
    ... NMI:          0          0   Non-maskable interrupts
    ... ERR:          0
    ... ''')
    >>> t.cpus, t.irqs[38].counts, t.irqs[38].actions
    ((0, 1), (0, 1519), ('virtio2-input.0',))
    """
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise ParseError(source, "empty file")
    cpus = _cpu_header(lines[0], source)
    irqs: dict[int, IrqLine] = {}
    for number, line in enumerate(lines[1:], start=2):
        label, colon, rest = line.partition(":")
        label = label.strip()
        if not colon or not label.isdigit():
            if line.strip() and not colon:
                raise ParseError(source, f"line {number}: expected 'IRQ: counts ...', got "
                                         f"{line.strip()[:60]!r}")
            continue  # blank, or an arch line (NMI, LOC, ERR, MIS ...)
        tokens = rest.split()
        counts = tokens[:len(cpus)]
        if len(counts) < len(cpus) or not all(c.isdigit() for c in counts):
            raise ParseError(source, f"line {number} (IRQ {label}): expected {len(cpus)} "
                                     f"per-CPU counts, got {rest.strip()[:60]!r}")
        chip, actions = split_irq_tail(tokens[len(cpus):])
        irq = int(label)
        irqs[irq] = IrqLine(irq, tuple(int(c) for c in counts), actions, chip)
    return InterruptTable(cpus, irqs)


def parse_softirqs(text: str, source: str = "/proc/softirqs"
                   ) -> tuple[tuple[int, ...], dict[str, tuple[int, ...]]]:
    """CPU ids and NAME -> per-CPU counts.

    >>> parse_softirqs('''                    CPU0       CPU1
    ...       NET_RX:       8306       8110
    ... ''')
    ((0, 1), {'NET_RX': (8306, 8110)})
    """
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise ParseError(source, "empty file")
    cpus = _cpu_header(lines[0], source)
    rows: dict[str, tuple[int, ...]] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        name, colon, rest = line.partition(":")
        values = rest.split()
        if not colon or len(values) != len(cpus) or not all(v.isdigit() for v in values):
            raise ParseError(source, f"line {number}: expected 'NAME:' and {len(cpus)} counts, "
                                     f"got {line.strip()[:60]!r}")
        rows[name.strip()] = tuple(int(v) for v in values)
    return cpus, rows


def format_cpu_list(cpus: Iterable[int]) -> str:
    """The kernel's CPU list notation.

    >>> format_cpu_list([0, 1, 2, 3, 8, 10, 11])
    '0-3,8,10-11'
    """
    ordered = sorted(set(cpus))
    parts, i = [], 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


# ---- which IRQs belong to an interface ------------------------------------------------

@dataclass(frozen=True)
class IfaceKeys:
    """What ties IRQs to one interface."""

    ifname: str
    names: tuple[str, ...]  # substrings of handler names: ifname, "virtio2", PCI address
    vectors: frozenset[int] = frozenset()  # MSI vectors of its PCI device
    device: Optional[str] = None


def name_matches(action: str, key: str) -> bool:
    """`key` occurs in `action` as a whole word: eth0 in "eth0-TxRx-0" but not in
    "veth0" or "eth01"; virtio2 in "virtio2-input.0" but not in "virtio20-input.0"."""
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", action) is not None


def match_irqs(keys: IfaceKeys, table: InterruptTable) -> list[int]:
    """The queue IRQs of one interface, control vectors left out (unless nothing else)."""
    matched = [irq for irq, line in table.irqs.items()
               if irq in keys.vectors or any(name_matches(a, k) for a in line.actions
                                             for k in keys.names)]

    def control(irq: int) -> bool:
        actions = table.irqs[irq].actions
        return bool(actions) and all(_CONTROL.search(_strip_keys(a, keys)) for a in actions)

    queues = [irq for irq in matched if not control(irq)]
    return sorted(queues or matched)


def _strip_keys(action: str, keys: IfaceKeys) -> str:
    for key in keys.names:
        action = action.replace(key, "")
    return action


def _link_target(ctx: ProbeContext, path: os.PathLike) -> Optional[str]:
    """A sysfs symlink's target text. Some captured trees store a link as a file holding
    its target (the shared fixture's class/net/eth0/device): read those too."""
    try:
        if os.path.islink(path):
            return os.readlink(path)
        if os.path.isfile(path):
            return (ctx.read_text(path, 4096)).strip() or None
    except OSError:
        return None
    return None


def iface_keys(ctx: ProbeContext, ifname: str) -> IfaceKeys:
    """Names and vectors for one interface from /sys/class/net/IF/device (sysdiag's own
    namespace only: sysfs shows no other)."""
    names = [ifname]
    vectors: set[int] = set()
    device = None
    if not ctx.foreign_netns:
        link = ctx.sys("class", "net", ifname, "device")
        target = _link_target(ctx, link)
        if target:
            parts = [p for p in target.split("/") if p and p != "."]
            device = parts[-1] if parts else None
            if device:
                names.append(device)
                if device.startswith("virtio") and len(parts) >= 2:
                    names.append(parts[-2])  # the PCI function behind the virtio device
        if ctx.live and device:
            for base in (link, link / ".."):
                msi = base / "msi_irqs"
                if os.path.isdir(msi):
                    vectors.update(int(n) for n in os.listdir(msi) if n.isdigit())
                    break
    return IfaceKeys(ifname, tuple(names), frozenset(vectors), device)


def read_affinity(ctx: ProbeContext, irq: int, name: str) -> Optional[list[int]]:
    """/proc/irq/N/smp_affinity_list or effective_affinity_list; None when absent."""
    path = ctx.proc("irq", irq, name)
    try:
        text = ctx.read_optional(path)
    except OSError as err:
        if err.errno in (errno.EIO, errno.EINVAL, errno.EACCES, errno.EPERM):
            return None
        raise
    return None if text is None else parse_cpu_list(text, str(path))


# ---- sampling and facts ----------------------------------------------------------------

@dataclass(frozen=True)
class IfaceIrqs:
    keys: IfaceKeys
    irqs: tuple[int, ...]
    affinity: Optional[frozenset[int]] = None
    effective: Optional[frozenset[int]] = None


@dataclass(frozen=True)
class InterruptsSample:
    table: InterruptTable
    softirq_cpus: tuple[int, ...] = ()
    softirqs: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    ifaces: Mapping[str, IfaceIrqs] = field(default_factory=dict)


def _per_cpu(table: InterruptTable, irqs: Iterable[int]) -> dict[int, int]:
    totals = dict.fromkeys(table.cpus, 0)
    for irq in irqs:
        line = table.irqs.get(irq)
        if line is not None:
            for cpu, count in zip(table.cpus, line.counts):
                totals[cpu] += count
    return totals


def _busiest(values: Mapping[int, float]) -> tuple[Optional[int], Optional[float], int]:
    """(CPU with the most, its share in %, CPUs with any) — (None, None, 0) for all zero."""
    total = sum(values.values())
    active = sum(1 for v in values.values() if v > 0)
    if total <= 0:
        return None, None, active
    cpu = max(values, key=lambda c: (values[c], -c))
    return cpu, pct(values[cpu], total), active


def _fmt(values: Mapping[int, float]) -> str:
    return ",".join(f"{cpu}:{round(v, 1) if isinstance(v, float) else v}"
                    for cpu, v in sorted(values.items()))


def _deltas(before: Mapping[int, int], now: Mapping[int, int],
            elapsed_s: Optional[float]) -> Optional[dict[int, float]]:
    """Per-CPU rates, or None when a CPU is missing from one sample (hotplug)."""
    if set(before) != set(now) or not elapsed_s:
        return None
    out = {}
    for cpu, value in now.items():
        per_s = rate(before[cpu], value, elapsed_s, wraps_at=WRAP)
        if per_s is None:
            return None
        out[cpu] = per_s
    return out


def spread_fact(source: str, iface: IfaceIrqs, first: Optional[InterruptTable],
                last: InterruptTable, elapsed_s: Optional[float]) -> IrqSpread:
    totals = _per_cpu(last, iface.irqs)
    rates = None
    if first is not None and all(irq in first.irqs for irq in iface.irqs):
        rates = _deltas(_per_cpu(first, iface.irqs), totals, elapsed_s)
    boot_cpu, boot_share, boot_active = _busiest(totals)
    cpu, share, active = _busiest(rates) if rates is not None else (None, None, None)
    if rates is not None and cpu is None:
        active = 0
    return IrqSpread(
        source=source, ifname=iface.keys.ifname,
        irqs=",".join(map(str, iface.irqs)), irq_count=len(iface.irqs),
        cpu_count=len(last.cpus), interrupts_total=sum(totals.values()),
        interrupts_per_s=None if rates is None else round(sum(rates.values()), 3),
        per_cpu_total=_fmt(totals), per_cpu_per_s=None if rates is None else _fmt(rates),
        busiest_cpu=cpu, busiest_share_pct=share, cpus_with_interrupts=active,
        busiest_cpu_since_boot=boot_cpu, busiest_share_pct_since_boot=boot_share,
        cpus_with_interrupts_since_boot=boot_active,
        affinity_cpus=None if iface.affinity is None else format_cpu_list(iface.affinity),
        affinity_cpu_count=None if iface.affinity is None else len(iface.affinity),
        effective_cpus=None if iface.effective is None else format_cpu_list(iface.effective),
        effective_cpu_count=None if iface.effective is None else len(iface.effective))


def softirq_facts(source: str, first: Optional[InterruptsSample], last: InterruptsSample,
                  elapsed_s: Optional[float]) -> list[Fact]:
    if "NET_RX" not in last.softirqs or "NET_TX" not in last.softirqs:
        return []
    cpus = last.softirq_cpus
    rx = dict(zip(cpus, last.softirqs["NET_RX"]))
    tx = dict(zip(cpus, last.softirqs["NET_TX"]))
    rx_rates = tx_rates = None
    if first is not None and "NET_RX" in first.softirqs and "NET_TX" in first.softirqs:
        rx_rates = _deltas(dict(zip(first.softirq_cpus, first.softirqs["NET_RX"])), rx,
                           elapsed_s)
        tx_rates = _deltas(dict(zip(first.softirq_cpus, first.softirqs["NET_TX"])), tx,
                           elapsed_s)
    facts: list[Fact] = [SoftirqCpu(
        source=source, cpu=cpu, net_rx_total=rx[cpu], net_tx_total=tx[cpu],
        net_rx_per_s=None if rx_rates is None else round(rx_rates[cpu], 3),
        net_tx_per_s=None if tx_rates is None else round(tx_rates[cpu], 3)) for cpu in cpus]
    boot_cpu, boot_share, _ = _busiest(rx)
    cpu, share, active = _busiest(rx_rates) if rx_rates is not None else (None, None, None)
    facts.append(SoftirqSummary(
        source=source, cpu_count=len(cpus), net_rx_total=sum(rx.values()),
        net_rx_per_s=None if rx_rates is None else round(sum(rx_rates.values()), 3),
        net_tx_per_s=None if tx_rates is None else round(sum(tx_rates.values()), 3),
        net_rx_busiest_cpu=cpu, net_rx_busiest_share_pct=share, net_rx_cpus_active=active,
        net_rx_busiest_cpu_since_boot=boot_cpu, net_rx_busiest_share_pct_since_boot=boot_share))
    return facts


@register_probe
class InterruptsProbe(Probe):
    name = "interrupts"
    provides = ("irq_spread", "softirq_cpu", "softirq_summary")
    description = ("NIC queue interrupts per CPU with their affinity, and NET_RX/NET_TX "
                   "softirqs per CPU (/proc/interrupts, /proc/softirqs, /proc/irq)")
    # the interfaces of the namespace in scope (their IRQs are global)
    netns_scoped = True

    def _ifnames(self, ctx: ProbeContext) -> list[str]:
        names: set[str] = set()
        if not ctx.foreign_netns:
            class_net = ctx.sys("class", "net")
            if os.path.isdir(class_net):
                names.update(os.listdir(class_net))
        dev = ctx.read_optional(ctx.net("dev"))
        if dev is not None:
            names.update(line.partition(":")[0].strip()
                         for line in dev.splitlines()[2:] if ":" in line)
        return sorted(n for n in names if ctx.wants_iface(n))

    def sample(self, ctx: ProbeContext) -> InterruptsSample:
        path = ctx.proc("interrupts")
        table = parse_interrupts(ctx.read_text(path), str(path))
        soft_path = ctx.proc("softirqs")
        soft_text = ctx.read_optional(soft_path)
        soft_cpus, softirqs = parse_softirqs(soft_text, str(soft_path)) if soft_text \
            else ((), {})
        ifaces = {}
        for ifname in self._ifnames(ctx):
            keys = iface_keys(ctx, ifname)
            irqs = match_irqs(keys, table)
            if not irqs:
                if keys.device:
                    self.warn(f"{ifname}: no IRQ in {path} matches its device {keys.device} "
                              "(polled, or the driver names its vectors otherwise)")
                continue
            affinity, effective = set(), set()
            have_affinity = have_effective = False
            for irq in irqs:
                mask = read_affinity(ctx, irq, "smp_affinity_list")
                if mask is not None:
                    have_affinity = True
                    affinity.update(mask)
                mask = read_affinity(ctx, irq, "effective_affinity_list")
                if mask is not None:
                    have_effective = True
                    effective.update(mask)
            ifaces[ifname] = IfaceIrqs(keys, tuple(irqs),
                                       frozenset(affinity) if have_affinity else None,
                                       frozenset(effective) if have_effective else None)
        return InterruptsSample(table, soft_cpus, softirqs, ifaces)

    def facts(self, ctx: ProbeContext, first: Optional[InterruptsSample],
              last: InterruptsSample, elapsed_s: Optional[float]) -> list[Fact]:
        source = str(ctx.proc("interrupts"))
        facts: list[Fact] = [
            spread_fact(source, iface, first.table if first else None, last.table, elapsed_s)
            for _, iface in sorted(last.ifaces.items())]
        if last.softirqs:
            facts += softirq_facts(str(ctx.proc("softirqs")), first, last, elapsed_s)
        else:
            self.warn(f"{ctx.proc('softirqs')} missing: softirq spread unknown")
        return facts
