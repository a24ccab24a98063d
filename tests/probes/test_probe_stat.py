from __future__ import annotations

import pytest

from sysdiag.facts import CpuCore, CpuSummary
from sysdiag.probes.parse import ParseError
from sysdiag.probes.procfs.stat import CpuProbe, cpu_facts, parse_stat

from probe_helpers import run_one, write_tree

STAT = """cpu  301854 612 111922 8979004 3552 2 3944 0 0 0
cpu0 44490 19 21045 1087069 220 1 3410 0 0 0
cpu1 47869 23 16474 1110787 591 0 46 0 0 0
intr 73777505 41 9 0 0 0
ctxt 38014093
btime 1418183276
processes 26442
procs_running 2
procs_blocked 1
softirq 5057579 250191 1481983 1647 211099 186066 0 1783454 622196 12499 508444
"""


def stat_text(cpus: list[tuple[int, ...]], running: int = 1, ctxt: int = 1000,
              forks: int = 100) -> str:
    """A /proc/stat with the given per-CPU columns (user nice system idle iowait irq softirq steal)."""
    total = [sum(col) for col in zip(*cpus)]
    lines = ["cpu  " + " ".join(map(str, total)) + " 0 0"]
    lines += [f"cpu{i} " + " ".join(map(str, c)) + " 0 0" for i, c in enumerate(cpus)]
    lines += [f"ctxt {ctxt}", f"processes {forks}", f"procs_running {running}",
              "procs_blocked 0"]
    return "\n".join(lines) + "\n"


def test_parse_stat():
    r = parse_stat(STAT)
    assert r.total.user == 301854 and r.total.idle == 8979004 and r.total.steal == 0
    assert sorted(r.cpus) == [0, 1] and r.cpus[1].softirq == 46
    assert (r.ctxt, r.forks, r.procs_running, r.procs_blocked, r.btime) == (
        38014093, 26442, 2, 1, 1418183276)


def test_parse_stat_old_kernel_without_steal():
    r = parse_stat("cpu 10 0 5 100\ncpu0 10 0 5 100\n")
    assert r.total.steal == 0 and r.total.iowait == 0 and r.procs_running is None


@pytest.mark.parametrize("text, problem", [
    ("", "no 'cpu' summary line"),
    ("cpu0 1 2 3 4\n", "no 'cpu' summary line"),
    ("cpu  1 2 3\n", "expected at least 4"),
    ("cpu  1 2 3 4\n", "no per-CPU 'cpuN' lines"),
    ("cpu  1 2 x 4\n", "cpu system: expected an integer"),
    ("cpu  1 2 3 4\nctxt many\n", "ctxt: expected an integer"),
])
def test_parse_stat_rejects(text, problem):
    with pytest.raises(ParseError, match=problem):
        parse_stat(text, "/proc/stat")


def test_window_shares():
    # cpu0 fully busy in user, cpu1 idle with some iowait
    first = parse_stat(stat_text([(0, 0, 0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 0, 0, 0)],
                                 running=4, ctxt=1000, forks=10))
    last = parse_stat(stat_text([(90, 10, 0, 0, 0, 0, 0, 0), (0, 0, 5, 60, 30, 0, 5, 0)],
                                running=4, ctxt=3000, forks=30))
    summary, *cores = cpu_facts("/proc/stat", first, last, 2.0)
    assert isinstance(summary, CpuSummary) and all(isinstance(c, CpuCore) for c in cores)
    assert summary.cpu_count == 2
    assert summary.busy_pct == 55.0 and summary.user_pct == 50.0
    assert summary.iowait_pct == 15.0 and summary.idle_pct == 30.0
    assert summary.kernel_share_of_busy_pct == pytest.approx(100 * 10 / 110, abs=0.01)  # 10 kernel ticks of 110 busy
    assert summary.saturated_cpus == 1 and summary.idle_cpus == 1
    assert summary.min_idle_pct == 0.0
    assert summary.runqueue_over_cpus_samples == 2  # 4 - the reader > 2 CPUs, both samples
    assert summary.ctxt_per_s == 1000.0 and summary.forks_per_s == 10.0
    assert cores[0].busy_pct == 100.0 and cores[1].busy_pct == 10.0
    assert cores[1].iowait_pct == 30.0


@pytest.mark.parametrize("running, expected", [
    ((4, 4), 2), ((4, 3), 1), ((3, 3), 0),  # 3 running = the reader + 2: fits 2 CPUs
    ((1, 9), 1),
])
def test_runqueue_over_cpus_leaves_out_the_reader(running, expected):
    idle = (0, 0, 0, 10, 0, 0, 0, 0)
    first = parse_stat(stat_text([idle, idle], running=running[0]))
    last = parse_stat(stat_text([idle, idle], running=running[1]))
    summary = cpu_facts("/proc/stat", first, last, 1.0)[0]
    assert summary.runqueue_over_cpus_samples == expected
    assert summary.procs_running == running[1]  # the gauge itself is reported as read


def test_steal_and_since_boot():
    first = parse_stat(stat_text([(0, 0, 0, 0, 0, 0, 0, 0)]))
    last = parse_stat(stat_text([(50, 0, 0, 30, 0, 0, 0, 20)]))
    summary, core = cpu_facts("/proc/stat", first, last, 1.0)
    assert summary.steal_pct == 20.0 and core.steal_pct == 20.0
    assert summary.steal_pct_since_boot == 20.0


def test_one_sample_has_no_window_values():
    summary, *cores = cpu_facts("/proc/stat", None, parse_stat(STAT), None)
    assert summary.busy_pct is None and summary.saturated_cpus is None
    assert summary.runqueue_over_cpus_samples == 0  # 2 running, 2 CPUs: not over
    assert summary.ctxt_per_s is None
    assert [c.cpu for c in cores] == [0, 1] and cores[0].busy_pct is None


def test_counter_going_backwards_gives_none_for_that_cpu():
    # cpu1 was unplugged and came back: its counters restarted
    first = parse_stat(stat_text([(10, 0, 0, 10, 0, 0, 0, 0), (500, 0, 0, 500, 0, 0, 0, 0)]))
    last = parse_stat(stat_text([(20, 0, 0, 20, 0, 0, 0, 0), (5, 0, 0, 5, 0, 0, 0, 0)]))
    summary, core0, core1 = cpu_facts("/proc/stat", first, last, 1.0)
    assert core0.busy_pct == 50.0 and core1.busy_pct is None
    assert summary.busy_pct is None  # the total went backwards too
    assert summary.saturated_cpus == 0  # counted over the CPUs that could be measured


def test_probe_on_fixture_tree(tree_ctx):
    outcome, facts = run_one(CpuProbe(), tree_ctx)
    assert outcome.status == "ok", outcome.reason
    summary = facts[0]
    assert summary.kind == "cpu" and summary.cpu_count == 8
    assert summary.procs_running == 2 and summary.procs_blocked == 1
    assert summary.busy_pct is None  # a captured tree has one sample: no window shares
    assert [f.cpu for f in facts[1:]] == list(range(8))


def test_truncated_file_fails_naming_it(tmp_path):
    ctx = write_tree(tmp_path, {"proc/stat": "cpu  1 2"})
    outcome, _ = run_one(CpuProbe(), ctx)
    assert outcome.status == "failed"
    assert f"{tmp_path}/proc/stat: line 'cpu' has 2 time columns" in outcome.reason
