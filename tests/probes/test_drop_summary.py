from __future__ import annotations

from sysdiag.facts import Qdisc, SoftnetCpu
from sysdiag.probes.drop_summary import drop_summary
from sysdiag.probes.procfs.softnet import parse_softnet_stat, softnet_facts


def _cpu(cpu: int, dropped_per_s: float | None) -> SoftnetCpu:
    return SoftnetCpu(source="t", cpu=cpu, processed_total=1, dropped_total=5, time_squeeze_total=0,
                      dropped_per_s=dropped_per_s)


def test_counts_the_instances_whose_drops_rose_and_names_the_first():
    s = drop_summary("softnet", [_cpu(0, 0.0), _cpu(1, 3.5), _cpu(2, 0.5)], ("dropped_per_s",),
                     lambda f: f"cpu {f.cpu}", "src")
    assert (s.counters, s.instances, s.rising, s.rising_names, s.dropped_per_s) == (
        "softnet", 3, 2, "cpu 1, cpu 2", 4.0)


def test_all_flat_is_a_positive_fact_and_one_sample_gives_none():
    flat = drop_summary("softnet", [_cpu(0, 0.0), _cpu(1, 0.0)], ("dropped_per_s",), str, "s")
    assert flat.rising == 0 and flat.instances == 2 and flat.rising_names is None
    # no window: the rates are unknown, so nothing can be said about flatness
    assert drop_summary("softnet", [_cpu(0, None)], ("dropped_per_s",), str, "s") is None


def test_any_of_several_fields_rising_counts_once():
    q = Qdisc(source="t", ifname="eth0", qdisc_kind="tbf", handle="1:", parent="root", root=True,
              dropped_per_s=2.0)
    s = drop_summary("qdiscs", [q], ("dropped_per_s", "overlimits_per_s"),
                     lambda f: f"dev {f.ifname}", "s")
    assert s.rising == 1 and s.rising_names == "dev eth0"


def test_softnet_probe_output_has_the_summary_only_with_a_window():
    text = ("00000010 00000002 00000000 00000000 00000000 00000000 00000000 00000000 "
            "00000000 00000000 00000000 00000000 00000000\n")
    first, last = parse_softnet_stat(text, "s"), parse_softnet_stat(
        text.replace("00000002", "00000007", 1), "s")
    cpus = softnet_facts(first, last, 1.0, "s")
    s = drop_summary("softnet", cpus, ("dropped_per_s",), lambda f: f"cpu {f.cpu}", "s")
    assert s.rising == 1 and s.dropped_per_s == 5.0
