"""CPU affinity of each process (Cpus_allowed_list), filled by the "processes" probe."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sysdiag.facts import Process
from sysdiag.probes.base import ProbeContext
from sysdiag.probes.parse import ParseError
from sysdiag.probes.process.processes import (ProcessesProbe, count_cpu_list,
                                              parse_cpus_allowed_list)

from probe_helpers import run_one, write_tree

STATUS = """\
Name:\tpostgres
Threads:\t1
Cpus_allowed:\tff,ffffffff
Cpus_allowed_list:\t0-39
Mems_allowed:\t00000000,00000003
Mems_allowed_list:\t0-1
voluntary_ctxt_switches:\t12
"""


@pytest.mark.parametrize("text, value", [
    (STATUS, "0-39"),
    ("Cpus_allowed_list:\t2,4-5", "2,4-5"),  # last line, no newline
    ("Name:\tkworker/0:1\n", None),  # very old kernels: no such line
    ("Cpus_allowed_list:\t\n", None),
    ("", None),
])
def test_parse_cpus_allowed_list(text, value):
    assert parse_cpus_allowed_list(text) == value


@pytest.mark.parametrize("text, count", [
    ("0", 1), ("0-39", 40), ("0-3,8,10-11", 7), ("0-1023", 1024), ("5,7", 2)])
def test_count_cpu_list(text, count):
    assert count_cpu_list(text) == count


@pytest.mark.parametrize("text, problem", [
    ("3-1", "runs backwards"), ("0-", "expected an integer"), ("a", "expected an integer"),
    ("0,,1", "expected an integer")])
def test_count_cpu_list_malformed(text, problem):
    with pytest.raises(ParseError, match=problem):
        count_cpu_list(text, "/proc/7/status")


def test_fixture_tree(tree_ctx):
    _, facts = run_one(ProcessesProbe(), tree_ctx)
    procs = {f.pid: f for f in facts if isinstance(f, Process)}
    with_list = [p for p in procs.values() if p.cpus_allowed_list is not None]
    assert with_list and all(p.cpus_allowed_list == "0-7" and p.cpus_allowed_count == 8
                             for p in with_list)


@pytest.mark.live
def test_live_pinned_child_matches_taskset():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        os.sched_setaffinity(child.pid, {0})
        outcome, facts = run_one(ProcessesProbe(), ProbeContext(), window_s=0.1)
        assert outcome.status == "ok", outcome.reason
        procs = {f.pid: f for f in facts if isinstance(f, Process)}
        mine = procs[child.pid]
        assert (mine.cpus_allowed_list, mine.cpus_allowed_count) == ("0", 1)
        taskset = subprocess.run(["taskset", "-pc", str(child.pid)], capture_output=True,
                                 text=True, timeout=10, check=True).stdout
        assert taskset.strip().endswith(": 0")  # "pid N's current affinity list: 0"
        me = procs[os.getpid()]
        assert me.cpus_allowed_count == len(os.sched_getaffinity(0))
    finally:
        child.kill()
        child.wait(timeout=10)


def test_garbled_affinity_is_left_out_with_a_warning(tmp_path):
    stat = ("42 (app) S 1 42 42 0 -1 4194560 10 0 0 0 5 3 0 0 20 0 1 0 100 1000 50 "
            + " ".join(["0"] * 30))
    ctx = write_tree(tmp_path, {"proc/42/stat": stat + "\n",
                                "proc/42/status": "Threads:\t1\nCpus_allowed_list:\t7-3\n",
                                "proc/uptime": "500.0 900.0\n"})
    outcome, facts = run_one(ProcessesProbe(), ctx)
    assert outcome.status == "ok"
    (proc,) = [f for f in facts if isinstance(f, Process)]
    assert proc.pid == 42 and proc.threads == 1  # the process itself is still reported
    assert proc.cpus_allowed_list is None and proc.cpus_allowed_count is None
    assert any("runs backwards; affinity left out" in w for w in outcome.warnings)
