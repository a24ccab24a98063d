"""softnet: /proc/net/softnet_stat parsing across kernel widths, CPU ids, rates, fixture tree."""
from __future__ import annotations

from pathlib import Path

import pytest

from sysdiag.probes.base import ProbeContext
from sysdiag.probes.parse import ParseError
from sysdiag.probes.procfs.softnet import SoftnetLine, SoftnetProbe, parse_softnet_stat, \
    softnet_facts

FIXTURE = Path(__file__).resolve().parents[2].parent / "shared/fixtures/procfs"

# this host (6.18, 2 CPUs): 15 columns
SOFTNET_6_18 = """\
0000000a 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000
00000630 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001 00000000 00000000
"""
# 5.10: 13 columns, CPU 1 offline (the lines are for CPUs 0, 2, 3)
SOFTNET_5_10_OFFLINE = """\
0001e240 00000003 00000010 00000000 00000000 00000000 00000000 00000000 00000000 00000005 00000000 00000000 00000000
00000100 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 000003e8 00000002
00000200 00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000007 00000000 00000003
"""
# 4.x: 11 columns, no backlog length or CPU id
SOFTNET_4_X = """\
6dcad223 00000000 00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000
6f0e1565 00000002 00000005 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000
"""


def test_parse_6_18():
    lines = parse_softnet_stat(SOFTNET_6_18)
    assert lines == [
        SoftnetLine(cpu=0, processed=10, dropped=0, time_squeeze=0, received_rps=0,
                    flow_limit_count=0, backlog_len=0),
        SoftnetLine(cpu=1, processed=0x630, dropped=0, time_squeeze=0, received_rps=0,
                    flow_limit_count=0, backlog_len=0)]


def test_cpu_id_comes_from_column_13_when_cpus_are_offline():
    lines = parse_softnet_stat(SOFTNET_5_10_OFFLINE)
    assert [line.cpu for line in lines] == [0, 2, 3]
    assert (lines[0].processed, lines[0].dropped, lines[0].time_squeeze) == (123456, 3, 16)
    assert lines[0].received_rps == 5
    assert lines[1].backlog_len == 1000
    assert lines[2].flow_limit_count == 7


def test_parse_4_x_without_cpu_column():
    lines = parse_softnet_stat(SOFTNET_4_X)
    assert [line.cpu for line in lines] == [0, 1]
    assert lines[1] == SoftnetLine(cpu=1, processed=0x6f0e1565, dropped=2, time_squeeze=5,
                                   received_rps=0, flow_limit_count=0, backlog_len=None)


def test_9_and_10_column_lines_leave_the_tail_unknown():
    text = ("01663fb2 00000000 000109a4 00000000 00000000 00000000 00000000 00000000 00020e76\n"
            "00008e78 00000001 00000011 00000000 00000000 00000000 00000000 00000000 00000020 "
            "00000010\n")
    first, second = parse_softnet_stat(text)
    assert (first.received_rps, first.flow_limit_count, first.backlog_len) == (None, None, None)
    assert (second.received_rps, second.flow_limit_count) == (16, None)


@pytest.mark.parametrize("text, problem", [
    ("", "no CPU lines"),
    ("\n\n", "no CPU lines"),
    ("00015c73 00020e76 F0000769 00000000\n", "line 1: 4 columns, expected at least 9"),
    (SOFTNET_6_18 + "0000000a 00000000\n", "line 3: 2 columns"),  # truncated read
    (SOFTNET_6_18.replace("00000630", "0000063g"), "line 2: expected hex numbers"),
    (SOFTNET_6_18.replace("00000001 00000000 00000000\n", "00000000 00000000 00000000\n"),
     r"CPU ids repeat \(\[0, 0\]\)"),
])
def test_rejects_bad_input(text, problem):
    with pytest.raises(ParseError, match=problem):
        parse_softnet_stat(text, "/proc/net/softnet_stat")


def test_facts_rates_and_u32_wrap():
    first = parse_softnet_stat(SOFTNET_5_10_OFFLINE)
    last = [SoftnetLine(cpu=0, processed=first[0].processed + 5000, dropped=13,
                        time_squeeze=0xFFFFFFFF, received_rps=5, flow_limit_count=0,
                        backlog_len=40),
            SoftnetLine(cpu=2, processed=0x100, dropped=0, time_squeeze=0),
            SoftnetLine(cpu=5, processed=1, dropped=0, time_squeeze=0)]  # came online
    facts = {f.cpu: f for f in softnet_facts(first, last, 2.0, "/proc/net/softnet_stat",
                                             {"netdev_max_backlog": 1000})}
    cpu0 = facts[0]
    assert (cpu0.processed_per_s, cpu0.dropped_per_s, cpu0.dropped_total) == (2500.0, 5.0, 13)
    assert cpu0.time_squeeze_per_s == pytest.approx((0xFFFFFFFF - 16) / 2)
    assert cpu0.backlog_len == 40 and cpu0.netdev_max_backlog == 1000
    assert cpu0.fact_id == "softnet:0"
    # the 13-column first sample had received_rps, the second does not: unknown, not 0
    assert facts[2].received_rps_per_s is None and facts[2].received_rps_total is None
    assert facts[2].processed_per_s == 0.0
    assert facts[5].processed_per_s is None  # no first sample for this CPU


def test_single_sample_has_no_rates():
    (fact, _) = softnet_facts(None, parse_softnet_stat(SOFTNET_4_X), None, "x")
    assert fact.processed_total == 0x6dcad223 and fact.processed_per_s is None


def test_probe_on_a_tree_with_sysctls(tmp_path):
    (tmp_path / "net").mkdir()
    (tmp_path / "net/softnet_stat").write_text(SOFTNET_6_18)
    core = tmp_path / "sys/net/core"
    core.mkdir(parents=True)
    (core / "netdev_max_backlog").write_text("2000\n")
    (core / "netdev_budget").write_text("600\n")
    ctx = ProbeContext(proc_root=tmp_path, live=False)
    probe = SoftnetProbe()
    facts = probe.facts(ctx, None, probe.sample(ctx), None)
    assert [f.cpu for f in facts] == [0, 1]
    assert (facts[1].netdev_max_backlog, facts[1].netdev_budget,
            facts[1].netdev_budget_usecs) == (2000, 600, None)
    assert facts[0].source == str(tmp_path / "net/softnet_stat")


def test_probe_names_a_bad_sysctl(tmp_path):
    (tmp_path / "net").mkdir()
    (tmp_path / "net/softnet_stat").write_text(SOFTNET_6_18)
    (tmp_path / "sys/net/core").mkdir(parents=True)
    (tmp_path / "sys/net/core/netdev_budget").write_text("lots\n")
    with pytest.raises(ParseError, match="netdev_budget: expected a number"):
        SoftnetProbe().sample(ProbeContext(proc_root=tmp_path, live=False))


@pytest.mark.skipif(not FIXTURE.is_dir(), reason="shared fixture tree not present")
def test_fixture_tree():
    ctx = ProbeContext(proc_root=FIXTURE / "proc", sys_root=FIXTURE / "sys", live=False)
    probe = SoftnetProbe()
    facts = probe.facts(ctx, None, probe.sample(ctx), None)
    # five lines of 13, 13, 11, 9 and 10 columns (prometheus/procfs's mixed fixture)
    assert [f.cpu for f in facts] == [0, 1, 2, 3, 4]
    assert (facts[0].processed_total, facts[0].dropped_total) == (0x00358fe3, 0x6283)
    assert (facts[1].time_squeeze_total, facts[1].backlog_len) == (0xb1, 0xdc)
    assert facts[2].time_squeeze_total == 0xf0000769 and facts[2].backlog_len is None
    assert facts[3].received_rps_total is None
    assert all(f.dropped_per_s is None for f in facts)


@pytest.mark.skipif(not FIXTURE.is_dir(), reason="shared fixture tree not present")
def test_fixture_broken_file():
    text = (FIXTURE / "proc/net/softnet_stat.broken").read_text()
    with pytest.raises(ParseError, match="4 columns"):
        parse_softnet_stat(text)
