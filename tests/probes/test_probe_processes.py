from __future__ import annotations

import pytest

from sysdiag.facts import Process, TaskSummary, ZombieParent
from sysdiag.probes.parse import ParseError
from sysdiag.probes.process.processes import (ProcessesProbe, ProcessesReading, ProcReading,
                                              parse_cgroup_path, parse_cmdline,
                                              parse_limits_nofile, parse_pid_stat,
                                              parse_pid_status, parse_schedstat, parse_wchan,
                                              process_facts)

from probe_helpers import run_one, write_tree

VIM_STAT = ("26231 (vim) R 5392 7446 5392 34835 7446 4218880 32533 309516 26 82 1677 44 158 "
            "99 20 0 1 0 82375 56274944 1981 18446744073709551615 4194304 6294284 "
            "140736914091744 140736914087944 139965136429984 0 0 12288 1870679807 0 0 0 17 0 "
            "0 0 31 0 0 8391624 8481048 16420864 140736914093252 140736914093279 "
            "140736914093279 140736914096107 0\n")
KTHREAD_STAT = ("33 (ata_sff) S 2 0 0 0 -1 69238880 0 0 0 0 0 0 -9223372036854775808 "
                "9223372036854775807 0 -20 1 0 5 0 0 18446744073709551615 0 0 0 0 0 0 0 "
                "2147483647 0 18446744073709551615 0 0 -9223372036854775808 "
                "9223372036854775807 0 0 0 0 0 0 0 0 0 0 0 0 0")
STATUS = """Name:\tprometheus
State:\tS (sleeping)
Tgid:\t26231
PPid:\t1
TracerPid:\t0
Uid:\t1000\t1001\t1000\t0
VmRSS:\t    6716 kB
RssAnon:\t    2092 kB
VmSwap:\t     660 kB
Threads:\t1
voluntary_ctxt_switches:\t4742839
nonvoluntary_ctxt_switches:\t1727500
"""
LIMITS = """Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            2048                 4096                 files
Max locked memory         18446744073708503040 18446744073708503040 bytes
"""


def test_parse_pid_stat():
    s = parse_pid_stat(VIM_STAT)
    assert (s.comm, s.state, s.ppid, s.minflt, s.majflt, s.utime, s.stime) == (
        "vim", "R", 5392, 32533, 26, 1677, 44)
    assert (s.nice, s.threads, s.starttime, s.rss_pages, s.policy) == (0, 1, 82375, 1981, 0)


@pytest.mark.parametrize("comm", ["a b", "(a b ) ( c d) ", "x) R 1 2 (y", ")", "", "tmux: server"])
def test_parse_pid_stat_comm_with_spaces_and_parens(comm):
    s = parse_pid_stat(f"1020 ({comm}) Z 28378 1020 28378 34842 1020 4218880 286 0 0 0 0 0 0 "
                       "0 20 0 1 0 10839175 10395648 155")
    assert (s.comm, s.state, s.ppid, s.starttime, s.policy) == (comm, "Z", 28378, 10839175, None)


def test_parse_pid_stat_kernel_thread_flags():
    s = parse_pid_stat(KTHREAD_STAT)
    assert s.comm == "ata_sff" and s.ppid == 2 and s.nice == -20 and s.flags & 0x00200000


@pytest.mark.parametrize("text, problem", [
    ("", "no '\\(comm\\)' field"),
    ("1020 vim R 1 2", "no '\\(comm\\)' field"),
    ("1020 (vim) R 1 2 3", "6 fields, expected at least 24"),
    (VIM_STAT.replace(" 1677 ", " 16x7 "), "utime: expected an integer"),
])
def test_parse_pid_stat_rejects(text, problem):
    with pytest.raises(ParseError, match=problem) as err:
        parse_pid_stat(text, "/proc/7/stat")
    assert str(err.value).startswith("/proc/7/stat: ")


def test_parse_pid_status():
    st = parse_pid_status(STATUS)
    assert st == {"TracerPid": 0, "Uid": 1001, "VmRSS": 6716, "RssAnon": 2092, "VmSwap": 660,
                  "Threads": 1, "voluntary_ctxt_switches": 4742839,
                  "nonvoluntary_ctxt_switches": 1727500}
    # a kernel thread's status has no Vm* lines at all
    assert parse_pid_status("Name:\tkthreadd\nThreads:\t1\n") == {"Threads": 1}
    with pytest.raises(ParseError, match="VmRSS: no value"):
        parse_pid_status("VmRSS:\n", "/proc/1/status")
    with pytest.raises(ParseError, match="Threads: expected an integer"):
        parse_pid_status("Threads:\tmany\n", "/proc/1/status")


def test_small_per_process_files():
    assert parse_schedstat("411605849 93680043 79\n") == 93680043
    with pytest.raises(ParseError, match="expected 'on_cpu_ns wait_ns slices'"):
        parse_schedstat("411605849", "/proc/1/schedstat")
    assert parse_limits_nofile(LIMITS) == 2048
    assert parse_limits_nofile(LIMITS.replace("2048    ", "unlimited")) is None
    with pytest.raises(ParseError, match="no 'Max open files' row"):
        parse_limits_nofile("Limit Soft Hard Units\n", "/proc/1/limits")
    assert parse_wchan("0") is None and parse_wchan("") is None
    assert parse_wchan("do_epoll_wait") == "do_epoll_wait"
    assert parse_cmdline("/usr/bin/vim\0-R\0file name\0") == "/usr/bin/vim -R file name"
    assert parse_cmdline("") is None
    assert len(parse_cmdline("x" * 5000)) == 256


@pytest.mark.parametrize("text, expected", [
    ("0::/system.slice/ssh.service\n", "/system.slice/ssh.service"),
    ("4:memory:/a\n2:cpu,cpuacct:/docker/abc\n0::/\n", "/docker/abc"),  # v1: cpu controller
    ("12:pids:/x\n1:name=systemd:/y\n0::/init.scope\n", "/init.scope"),  # hybrid, cpu on v2
    ("", None),
])
def test_parse_cgroup_path(text, expected):
    assert parse_cgroup_path(text) == expected


def test_parse_cgroup_path_rejects():
    with pytest.raises(ParseError, match="expected 'id:controllers:path'"):
        parse_cgroup_path("0:/x\n", "/proc/1/cgroup")


def _proc(pid: int, ppid: int, state: str, utime: int = 0, stime: int = 0, start: int = 100,
          comm: str = "worker", status: dict | None = None, delay: int | None = None):
    stat = parse_pid_stat(f"{pid} ({comm}) {state} {ppid} 1 1 0 -1 4194304 {utime} 0 3 0 "
                          f"{utime} {stime} 0 0 20 0 1 0 {start} 1000 10 0")
    return ProcReading(pid=pid, stat=stat, status=status or {}, run_delay_ns=delay)


def test_process_facts_rates_states_and_summaries():
    first = ProcessesReading(procs={
        10: _proc(10, 1, "S", utime=100, stime=0, status={"RssAnon": 100,
                                                          "voluntary_ctxt_switches": 10},
                  delay=0),
        11: _proc(11, 10, "Z"), 12: _proc(12, 1, "D"),
        13: _proc(13, 1, "R", start=50),
    }, uptime_s=1000.0)
    last = ProcessesReading(procs={
        10: _proc(10, 1, "R", utime=250, stime=50, status={"RssAnon": 300,
                                                           "voluntary_ctxt_switches": 30},
                  delay=500_000_000),
        11: _proc(11, 10, "Z"), 14: _proc(14, 10, "Z"), 12: _proc(12, 1, "D"),
        13: _proc(13, 1, "R", start=900),  # pid 13 reused by a new process
    }, uptime_s=1002.0, pid_max=100, threads_max=50, vanished=2)
    facts = process_facts("/proc", first, last, 2.0, clk_tck=100, page_size=4096)
    procs = {f.pid: f for f in facts if isinstance(f, Process)}
    (tasks,) = [f for f in facts if isinstance(f, TaskSummary)]
    (zp,) = [f for f in facts if isinstance(f, ZombieParent)]

    p = procs[10]
    assert p.cpu_pct == 100.0 and p.user_cpu_pct == 75.0 and p.system_cpu_pct == 25.0
    assert p.cpu_time_delta_s == 2.0
    assert (p.state_first, p.state, p.state_stable) == ("S", "R", False)
    assert p.run_delay_pct == 25.0 and p.voluntary_ctxt_per_s == 10.0
    assert p.rss_anon_delta_bytes == 200 * 1024 and p.rss_bytes == 10 * 4096
    assert p.age_s == pytest.approx(1002.0 - 1.0)
    assert procs[12].state_stable is True
    assert procs[13].state_first is None and procs[13].cpu_pct is None  # not the same process
    assert procs[14].state_first is None

    assert (tasks.processes, tasks.running, tasks.uninterruptible, tasks.zombies) == (5, 2, 1, 2)
    assert tasks.uninterruptible_stable == 1 and tasks.vanished_while_reading == 2
    assert tasks.tasks_pct_of_limit == 10.0  # 5 threads of min(100, 50)
    assert (zp.ppid, zp.parent_comm, zp.parent_state, zp.zombies) == (10, "worker", "R", 2)
    assert (zp.zombies_first, zp.zombies_delta) == (1, 1)


def test_kernel_threads_by_flag_or_kthreadd_parent():
    kthreadd = _proc(2, 0, "S", comm="kthreadd")
    child = _proc(50, 2, "I", comm="kworker/0:1")
    last = ProcessesReading(procs={2: kthreadd, 50: child, 60: _proc(60, 1, "S")}, uptime_s=None)
    procs = {f.pid: f for f in process_facts("/p", None, last, None, 100, 4096)
             if isinstance(f, Process)}
    assert procs[2].kernel_thread and procs[50].kernel_thread and not procs[60].kernel_thread
    # inside a pid namespace pid 2 is an ordinary process, and so are its children
    ns = ProcessesReading(procs={2: _proc(2, 1, "S", comm="nginx"), 3: _proc(3, 2, "S")},
                          uptime_s=None)
    assert not any(f.kernel_thread for f in process_facts("/p", None, ns, None, 100, 4096)
                   if isinstance(f, Process))


def test_process_facts_single_sample_has_no_rates():
    last = ProcessesReading(procs={5: _proc(5, 2, "I"), 6: _proc(6, 1, "x")}, uptime_s=None)
    facts = process_facts("/t/proc", None, last, None, clk_tck=100, page_size=4096)
    procs = {f.pid: f for f in facts if isinstance(f, Process)}
    assert procs[5].state == "I" and procs[5].cpu_pct is None
    assert procs[6].state == "?"  # a state letter this model does not know
    (tasks,) = [f for f in facts if isinstance(f, TaskSummary)]
    assert tasks.uninterruptible_stable is None and tasks.tasks_pct_of_limit is None


def test_probe_on_fixture_tree(tree_ctx):
    outcome, facts = run_one(ProcessesProbe(), tree_ctx)
    assert outcome.status == "ok", outcome.reason
    assert not outcome.warnings
    procs = {f.pid: f for f in facts if f.kind == "process"}
    # 26233, 26234 and 26235 have no stat file in the tree: skipped like vanished pids
    assert sorted(procs) == [584, 26231, 26232, 27079]
    vim = procs[26231]
    assert (vim.comm, vim.state, vim.ppid, vim.uid, vim.threads) == ("vim", "R", 5392, 1000, 1)
    assert vim.fd_count == 5 and vim.fd_soft_limit == 2048
    assert vim.fd_pct_of_limit == round(100 * 5 / 2048, 2)
    assert vim.cmdline is not None and vim.swap_bytes == 660 * 1024
    assert vim.state_first is None and vim.cpu_pct is None  # one sample only
    assert procs[26232].kernel_thread and procs[26232].comm == "ata_sff"
    assert procs[584].comm == "(a b ) ( c d) "
    assert procs[27079].threads == 5
    (tasks,) = [f for f in facts if f.kind == "tasks"]
    assert tasks.processes == 4 and tasks.vanished_while_reading == 3


def test_garbled_stat_skips_that_pid_with_a_warning(tmp_path):
    ctx = write_tree(tmp_path, {"proc/42/stat": "42 (x) S 1 2",
                                "proc/43/stat": VIM_STAT.replace("26231 (vim)", "43 (vim)")})
    outcome, facts = run_one(ProcessesProbe(), ctx)
    assert outcome.status == "ok"
    assert [f.pid for f in facts if f.kind == "process"] == [43]
    assert outcome.warnings == [f"{tmp_path}/proc/42/stat: 5 fields, expected at least 24 "
                                "(truncated?); pid 42 skipped"]


def test_only_garbled_processes_fail_naming_the_file(tmp_path):
    ctx = write_tree(tmp_path, {"proc/42/stat": "42 (x) S 1 2"})
    outcome, _ = run_one(ProcessesProbe(), ctx)
    assert outcome.status == "failed"
    assert f"{tmp_path}/proc/42/stat: " in outcome.reason


def test_symlink_out_of_the_tree_is_not_followed(tmp_path):
    ctx = write_tree(tmp_path, {"proc/42/stat": VIM_STAT.replace("26231 (vim)", "42 (vim)")})
    (tmp_path / "proc" / "42" / "fd").symlink_to("/proc/self/fd")
    outcome, facts = run_one(ProcessesProbe(), ctx)
    assert outcome.status == "ok"
    (proc,) = [f for f in facts if f.kind == "process"]
    assert proc.fd_count is None
    assert any("leads out of the captured tree" in w for w in outcome.warnings)


def test_garbled_detail_files_leave_the_detail_out(tmp_path):
    ctx = write_tree(tmp_path, {
        "proc/43/stat": VIM_STAT.replace("26231 (vim)", "43 (vim)"),
        "proc/43/limits": "Limit Soft Hard Units\nMax open files  many  4096  files\n",
        "proc/43/cgroup": "0::/ok.slice\n",
        "proc/sys/kernel/pid_max": "lots\n",
        "proc/sys/kernel/threads-max": "1000\n",
    })
    outcome, facts = run_one(ProcessesProbe(), ctx)
    assert outcome.status == "ok"
    (proc,) = [f for f in facts if f.kind == "process"]
    assert proc.fd_soft_limit is None and proc.comm == "vim"
    (tasks,) = [f for f in facts if f.kind == "tasks"]
    assert tasks.pid_max is None and tasks.threads_max == 1000
    assert outcome.warnings == [
        f"{tmp_path}/proc/43/limits: Max open files: expected an integer, got 'many'; "
        "detail left out",
        f"{tmp_path}/proc/sys/kernel/pid_max: value: expected an integer, got 'lots'"]


def _stat(pid: int, state: str = "S") -> str:
    return VIM_STAT.replace("26231 (vim) R", f"{pid} (vim) {state}")


def test_v1_freezer_path_and_frozen_state_come_from_the_freezer_hierarchy(tmp_path):
    """v1: the freezer path may differ from the cpu path (the one `cgroup` records); a
    task in a FROZEN (or FREEZING) freezer cgroup is frozen whatever its state says."""
    fz = "sys/fs/cgroup/freezer"
    ctx = write_tree(tmp_path, {
        "proc/41/stat": _stat(41, "D"),
        "proc/41/cgroup": "7:freezer:/paused\n5:memory:/app.slice/limited\n"
                          "4:cpu,cpuacct:/app.slice\n0::/\n",
        "proc/42/stat": _stat(42),
        "proc/42/cgroup": "7:freezer:/\n4:cpu,cpuacct:/app.slice\n",
        "proc/43/stat": _stat(43),
        "proc/43/cgroup": "7:freezer:/going\n4:cpu,cpuacct:/\n",
        "proc/44/stat": _stat(44),
        "proc/44/cgroup": "7:freezer:/thawed\n4:cpu,cpuacct:/\n",
        "sys/fs/cgroup/cpu/cgroup.procs": "",
        f"{fz}/cgroup.procs": "", f"{fz}/paused/freezer.state": "FROZEN\n",
        f"{fz}/going/freezer.state": "FREEZING\n", f"{fz}/thawed/freezer.state": "THAWED\n",
    })
    outcome, facts = run_one(ProcessesProbe(), ctx)
    assert outcome.status == "ok" and not outcome.warnings
    procs = {f.pid: f for f in facts if f.kind == "process"}
    assert procs[41].cgroup == "/app.slice" and procs[41].freezer_cgroup == "/paused"
    # the memory hierarchy too: a task moved there only is still found under its limit
    assert procs[41].memory_cgroup == "/app.slice/limited" and procs[42].memory_cgroup is None
    assert {pid: p.cgroup_frozen for pid, p in procs.items()} == {
        41: True, 42: False, 43: True, 44: False}


def test_v2_frozen_state_comes_from_cgroup_events(tmp_path):
    ctx = write_tree(tmp_path, {
        "proc/51/stat": _stat(51), "proc/51/cgroup": "0::/machine.slice/paused.scope\n",
        "proc/52/stat": _stat(52), "proc/52/cgroup": "0::/system.slice/ok.service\n",
        "proc/53/stat": _stat(53), "proc/53/cgroup": "0::/gone.scope\n",
        "sys/fs/cgroup/cgroup.controllers": "cpu memory pids\n",
        "sys/fs/cgroup/machine.slice/paused.scope/cgroup.events": "populated 1\nfrozen 1\n",
        "sys/fs/cgroup/system.slice/ok.service/cgroup.events": "populated 1\nfrozen 0\n",
    })
    outcome, facts = run_one(ProcessesProbe(), ctx)
    assert outcome.status == "ok" and not outcome.warnings
    procs = {f.pid: f for f in facts if f.kind == "process"}
    assert procs[51].freezer_cgroup is None  # v2: `cgroup` is the one path
    assert procs[51].memory_cgroup is None
    # 53's cgroup is gone: unknown, not "thawed"
    assert {pid: p.cgroup_frozen for pid, p in procs.items()} == {51: True, 52: False, 53: None}
