"""interrupts: /proc/interrupts and /proc/softirqs parsing, IRQ-to-interface matching,
spread and rates, the fixture tree and the live host."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from sysdiag.facts import IrqSpread, SoftirqCpu, SoftirqSummary
from sysdiag.probes.base import ProbeContext
from sysdiag.probes.parse import ParseError
from sysdiag.probes.procfs.interrupts import (
    IfaceIrqs, IfaceKeys, InterruptsProbe, InterruptsSample, InterruptTable, format_cpu_list,
    iface_keys, match_irqs, name_matches, parse_interrupts, parse_softirqs, softirq_facts,
    split_irq_tail, spread_fact)

from probe_helpers import run_one, write_tree

#: this host (6.18, virtio, 2 CPUs), verbatim
HOST_INTERRUPTS = """\
           CPU0       CPU1       
 24:          1          0  IO-APIC   5-edge      ACPI:Ged
 26:          0         14  IO-APIC   4-edge      ttyS0
 28:          0          0 PCI-MSIX-0000:00:01.0   0-edge      virtio0-config
 36:          0      94422 PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0
 37:          0          0 PCI-MSIX-0000:00:03.0   0-edge      virtio2-config
 38:          0       1519 PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0
 39:       1210          0 PCI-MSIX-0000:00:03.0   2-edge      virtio2-output.0
NMI:          0          0   Non-maskable interrupts
LOC:     163802     166470   Local timer interrupts
ERR:          0
MIS:          0
PIN:          0          0   Posted-interrupt notification event
"""

#: prometheus/procfs fixture (4 CPUs, PCI-MSI with hardware IRQ numbers, a blank line)
FIXTURE_LINES = """\
           CPU0       CPU1       CPU2       CPU3
  0:         49          0          0          0   IO-APIC   2-edge      timer
 29:       1362          0          0        934   PCI-MSI 512000-edge      ahci[0000:00:1f.2]
 36:          0        335         37          0   PCI-MSI 16385-edge      virtio0-input.0
MCP:          1          1          1          1   Machine check polls
ERR:          0

PIW:          0          0          0          0   Posted-interrupt wakeup event
"""

#: a bare-metal Intel NIC, one vector per queue pair, plus a shared legacy line
IXGBE = """\
            CPU0       CPU1       CPU2       CPU3
  16:          0          0          0          0   IO-APIC  16-fasteoi   ehci_hcd:usb1, eth1
 120:     900000         10          0          0  IR-PCI-MSI 524288-edge      eth0-TxRx-0
 121:     880000          0          5          0  IR-PCI-MSI 524289-edge      eth0-TxRx-1
 122:     910000          0          0          0  IR-PCI-MSI 524290-edge      eth0-TxRx-2
 123:     870000          0          0          2  IR-PCI-MSI 524291-edge      eth0-TxRx-3
 124:          3          0          0          0  IR-PCI-MSI 524292-edge      eth0
 130:        100        100        100        100  IR-PCI-MSI 526336-edge      eth10-TxRx-0
 131:         50          0          0          0  IR-PCI-MSI 526337-edge      veth0
"""


def test_host_format():
    table = parse_interrupts(HOST_INTERRUPTS)
    assert table.cpus == (0, 1)
    assert set(table.irqs) == {24, 26, 28, 36, 37, 38, 39}  # arch lines skipped
    assert table.irqs[38].counts == (0, 1519)
    assert table.irqs[38].actions == ("virtio2-input.0",)
    assert table.irqs[38].chip == "PCI-MSIX-0000:00:03.0"
    assert table.irqs[24].actions == ("ACPI:Ged",)


def test_fixture_format_with_blank_line_and_hardware_irqs():
    table = parse_interrupts(FIXTURE_LINES)
    assert table.cpus == (0, 1, 2, 3)
    assert table.irqs[29].actions == ("ahci[0000:00:1f.2]",)
    assert table.irqs[36].counts == (0, 335, 37, 0)


@pytest.mark.parametrize("tail, chip, actions", [
    ("IO-APIC 16-fasteoi ehci_hcd:usb1, eth1", "IO-APIC", ("ehci_hcd:usb1", "eth1")),
    ("IR-PCI-MSI 524288-edge eth0-TxRx-0", "IR-PCI-MSI", ("eth0-TxRx-0",)),
    # ARM with CONFIG_GENERIC_IRQ_SHOW_LEVEL, with and without the flow name
    ("GICv3 27 Level arch_timer", "GICv3", ("arch_timer",)),
    ("ITS-MSI 524288 Edge -fasteoi eth0-rx-0", "ITS-MSI", ("eth0-rx-0",)),
    # Xen: lower-case chip with a dash, then the flow name alone
    ("xen-dyn -event xenbus", "xen-dyn", ("xenbus",)),
    ("XT-PIC timer", "XT-PIC", ("timer",)),  # old i386: chip and name only
    ("PCI-MSI 114689-edge", "PCI-MSI", ()),  # no handler registered
    ("", "", ()),
])
def test_split_irq_tail(tail, chip, actions):
    assert split_irq_tail(tail.split()) == (chip, actions)


@pytest.mark.parametrize("text, problem", [
    ("", "empty file"),
    ("\n", "empty file"),
    (" 24: 1 0 IO-APIC 5-edge x\n", "first line should list CPUs"),
    ("  CPU0 CPU1\n 24: 1\n", "line 2 (IRQ 24): expected 2 per-CPU counts"),
    ("  CPU0 CPU1\n 24: 1 x IO-APIC 5-edge ACPI\n", "expected 2 per-CPU counts"),
    ("  CPU0 CPU1\ngarbage without colon\n", "line 2: expected 'IRQ: counts"),
])
def test_malformed_interrupts(text, problem):
    with pytest.raises(ParseError, match=re.escape(problem)):
        parse_interrupts(text, "/proc/interrupts")


def test_truncated_interrupts_keeps_complete_lines():
    # a read cut after the header and a full line: what is there is parsed
    table = parse_interrupts(HOST_INTERRUPTS.splitlines(True)[0] + " 38:  0  1519 PCI 1-edge x\n")
    assert set(table.irqs) == {38}


def test_softirqs():
    cpus, rows = parse_softirqs("""\
                    CPU0       CPU1       
          HI:          0          0
      NET_TX:       7908       6760
      NET_RX:       8306       8110
""")
    assert cpus == (0, 1) and rows["NET_RX"] == (8306, 8110) and rows["NET_TX"] == (7908, 6760)
    with pytest.raises(ParseError, match="expected 'NAME:' and 2 counts"):
        parse_softirqs("   CPU0 CPU1\n NET_RX: 1\n")
    with pytest.raises(ParseError, match="empty file"):
        parse_softirqs("")


@pytest.mark.parametrize("action, key, hit", [
    ("eth0-TxRx-0", "eth0", True), ("eth0", "eth0", True), ("veth0", "eth0", False),
    ("eth10-TxRx-0", "eth1", False), ("virtio2-input.0", "virtio2", True),
    ("virtio20-input.0", "virtio2", False),
    ("mlx5_comp3@pci:0000:3b:00.0", "0000:3b:00.0", True),
])
def test_name_matches_whole_words(action, key, hit):
    assert name_matches(action, key) is hit


def test_matching_by_name_skips_control_vectors():
    table = parse_interrupts(HOST_INTERRUPTS)
    keys = IfaceKeys("eth0", ("eth0", "virtio2", "0000:00:03.0"))
    assert match_irqs(keys, table) == [38, 39]  # not 37 (virtio2-config)
    # msi vectors alone find them too, config included before filtering
    assert match_irqs(IfaceKeys("eth0", ("eth0",), frozenset({37, 38, 39})), table) == [38, 39]


def test_matching_intel_queues_and_shared_lines():
    table = parse_interrupts(IXGBE)
    assert match_irqs(IfaceKeys("eth0", ("eth0",)), table) == [120, 121, 122, 123, 124]
    assert match_irqs(IfaceKeys("eth1", ("eth1",)), table) == [16]  # shared legacy line
    assert match_irqs(IfaceKeys("eth10", ("eth10",)), table) == [130]


def test_only_control_vectors_are_kept_rather_than_nothing():
    table = parse_interrupts("  CPU0\n 5: 7 PCI-MSI 1-edge virtio9-config\n")
    assert match_irqs(IfaceKeys("x", ("virtio9",)), table) == [5]


def _table(counts: dict[int, tuple[int, ...]], cpus=(0, 1, 2, 3)) -> InterruptTable:
    from sysdiag.probes.procfs.interrupts import IrqLine

    return InterruptTable(cpus, {irq: IrqLine(irq, c, (f"eth0-TxRx-{irq}",))
                                 for irq, c in counts.items()})


def test_spread_over_the_window_and_since_boot():
    first = _table({1: (100, 0, 0, 0), 2: (50, 0, 0, 0)})
    last = _table({1: (1100, 0, 10, 0), 2: (550, 0, 0, 0)})
    iface = IfaceIrqs(IfaceKeys("eth0", ("eth0",)), (1, 2), frozenset({0, 1, 2, 3}),
                      frozenset({0}))
    fact = spread_fact("/proc/interrupts", iface, first, last, 2.0)
    assert isinstance(fact, IrqSpread)
    assert (fact.irqs, fact.irq_count, fact.cpu_count) == ("1,2", 2, 4)
    assert fact.interrupts_total == 1660
    assert fact.interrupts_per_s == pytest.approx(755.0)
    assert fact.per_cpu_per_s == "0:750.0,1:0.0,2:5.0,3:0.0"
    assert fact.per_cpu_total == "0:1650,1:0,2:10,3:0"
    assert (fact.busiest_cpu, fact.cpus_with_interrupts) == (0, 2)
    assert fact.busiest_share_pct == pytest.approx(100 * 1500 / 1510, abs=0.01)
    assert fact.busiest_cpu_since_boot == 0 and fact.cpus_with_interrupts_since_boot == 2
    assert (fact.affinity_cpus, fact.affinity_cpu_count) == ("0-3", 4)
    assert (fact.effective_cpus, fact.effective_cpu_count) == ("0", 1)


def test_spread_single_sample_and_idle_window():
    last = _table({1: (5, 5, 0, 0)})
    iface = IfaceIrqs(IfaceKeys("eth0", ("eth0",)), (1,))
    one = spread_fact("s", iface, None, last, None)
    assert one.interrupts_per_s is None and one.busiest_cpu is None
    assert one.cpus_with_interrupts is None and one.per_cpu_per_s is None
    assert one.busiest_share_pct_since_boot == 50.0 and one.affinity_cpus is None
    idle = spread_fact("s", iface, last, last, 1.0)
    assert idle.interrupts_per_s == 0 and idle.busiest_cpu is None
    assert idle.cpus_with_interrupts == 0 and idle.busiest_share_pct is None


def test_spread_counter_wrap_and_hotplug():
    iface = IfaceIrqs(IfaceKeys("eth0", ("eth0",)), (1,))
    first = _table({1: (2**32 - 10, 0)}, cpus=(0, 1))
    last = _table({1: (90, 0)}, cpus=(0, 1))
    assert spread_fact("s", iface, first, last, 1.0).interrupts_per_s == 100
    # a CPU went offline: no per-CPU rates rather than wrong ones
    gone = _table({1: (95,)}, cpus=(0,))
    assert spread_fact("s", iface, last, gone, 1.0).interrupts_per_s is None


def test_softirq_facts():
    first = InterruptsSample(_table({}), (0, 1), {"NET_RX": (100, 100), "NET_TX": (5, 5)})
    last = InterruptsSample(_table({}), (0, 1), {"NET_RX": (400, 100), "NET_TX": (6, 9)})
    facts = softirq_facts("/proc/softirqs", first, last, 1.0)
    cpus = {f.cpu: f for f in facts if isinstance(f, SoftirqCpu)}
    (summary,) = [f for f in facts if isinstance(f, SoftirqSummary)]
    assert cpus[0].net_rx_per_s == 300 and cpus[1].net_rx_per_s == 0
    assert cpus[1].net_tx_per_s == 4 and cpus[0].net_rx_total == 400
    assert (summary.net_rx_busiest_cpu, summary.net_rx_busiest_share_pct) == (0, 100.0)
    assert summary.net_rx_cpus_active == 1 and summary.net_rx_per_s == 300
    assert summary.net_rx_busiest_share_pct_since_boot == 80.0
    assert softirq_facts("s", None, InterruptsSample(_table({}), (0,), {"HI": (1,)}), None) == []


def test_format_cpu_list():
    assert format_cpu_list([]) == ""
    assert format_cpu_list([3, 1, 2, 7]) == "1-3,7"


def test_keys_from_a_captured_sysfs(tmp_path):
    ctx = write_tree(tmp_path, {"sys/class/net/eth0/device":
                                "../../../devices/pci0000:00/0000:00:1f.6/\n"})
    assert iface_keys(ctx, "eth0").names == ("eth0", "0000:00:1f.6")
    net = tmp_path / "sys/class/net/ens3"
    net.mkdir(parents=True)
    os.symlink("../../../devices/pci0000:00/0000:00:03.0/virtio2", net / "device")
    keys = iface_keys(ctx, "ens3")
    assert keys.names == ("ens3", "virtio2", "0000:00:03.0") and keys.device == "virtio2"
    assert iface_keys(ctx, "lo").names == ("lo",)
    foreign = ProbeContext(proc_root=ctx.proc_root, sys_root=ctx.sys_root, live=False,
                           netns_path="/run/netns/x")
    assert iface_keys(foreign, "ens3").names == ("ens3",)  # sysfs is another namespace's


def test_written_tree_with_affinity(tmp_path):
    ctx = write_tree(tmp_path, {
        "proc/interrupts": IXGBE,
        "proc/softirqs": "   CPU0 CPU1 CPU2 CPU3\n NET_TX: 1 2 3 4\n NET_RX: 9 0 0 1\n",
        "proc/irq/120/smp_affinity_list": "0\n", "proc/irq/121/smp_affinity_list": "0\n",
        "proc/irq/121/effective_affinity_list": "0\n",
        "proc/net/dev": "h1|\nh2|\n  eth0: " + "0 " * 16 + "\n  lo: " + "0 " * 16 + "\n",
        "sys/class/net/eth0/mtu": "1500\n",
    })
    outcome, facts = run_one(InterruptsProbe(), ctx)
    assert outcome.status == "ok", outcome.reason
    (spread,) = [f for f in facts if f.kind == "irq_spread"]
    assert spread.ifname == "eth0" and spread.irqs == "120,121,122,123,124"
    assert spread.busiest_cpu_since_boot == 0 and spread.busiest_share_pct_since_boot > 99
    assert (spread.affinity_cpus, spread.effective_cpus) == ("0", "0")
    assert spread.interrupts_per_s is None  # a captured tree: one sample
    assert {f.kind for f in facts} == {"irq_spread", "softirq_cpu", "softirq_summary"}
    # --iface keeps the other interfaces out
    ctx.ifaces = frozenset({"lo"})
    assert not [f for f in run_one(InterruptsProbe(), ctx)[1] if f.kind == "irq_spread"]


def test_fixture_tree(tree_ctx):
    outcome, facts = run_one(InterruptsProbe(), tree_ctx)
    assert outcome.status == "ok", outcome.reason
    # softirqs has two CPUs (the files come from different machines)
    assert sorted(f.cpu for f in facts if f.kind == "softirq_cpu") == [0, 1]
    (summary,) = [f for f in facts if f.kind == "softirq_summary"]
    assert summary.net_rx_total == 55919 + 28694 and summary.net_rx_per_s is None
    # eth0's device is a PCI function no IRQ names: it is said, not guessed
    assert not [f for f in facts if f.kind == "irq_spread"]
    assert any("eth0: no IRQ" in w and "0000:00:1f.6" in w for w in outcome.warnings)
    assert all(f.source.startswith(str(tree_ctx.proc_root)) for f in facts)


def test_missing_interrupts_file_fails_with_its_name(tmp_path):
    ctx = write_tree(tmp_path, {"proc/softirqs": "  CPU0\n NET_RX: 1\n"})
    outcome, _ = run_one(InterruptsProbe(), ctx)
    assert outcome.status == "failed" and "interrupts" in outcome.reason


@pytest.mark.live
def test_live_host_matches_proc_interrupts():
    outcome, facts = run_one(InterruptsProbe(), ProbeContext(), window_s=0.3)
    assert outcome.status == "ok", outcome.reason
    table = parse_interrupts(Path("/proc/interrupts").read_text())
    for fact in (f for f in facts if f.kind == "irq_spread"):
        irqs = [int(i) for i in fact.irqs.split(",")]
        assert all(i in table.irqs for i in irqs)
        # counts only grow: what the probe saw is at most what is there now
        assert fact.interrupts_total <= sum(sum(table.irqs[i].counts) for i in irqs)
        assert fact.interrupts_per_s is not None and fact.cpu_count == len(table.cpus)
        assert fact.affinity_cpus is not None
    cpus = [f for f in facts if f.kind == "softirq_cpu"]
    assert len(cpus) == len(parse_softirqs(Path("/proc/softirqs").read_text())[0])
    assert all(f.net_rx_per_s is not None for f in cpus)


@pytest.mark.live
@pytest.mark.skipif(not Path("/sys/class/net/eth0/device").exists(),
                    reason="no eth0 backed by a device here")
def test_live_nic_vectors_found():
    keys = iface_keys(ProbeContext(), "eth0")
    table = parse_interrupts(Path("/proc/interrupts").read_text())
    irqs = match_irqs(keys, table)
    assert irqs, f"no IRQ found for eth0 ({keys})"
    names = [a for i in irqs for a in table.irqs[i].actions]
    assert not any("config" in n for n in names)
