from __future__ import annotations

import pytest

from sysdiag.probes.parse import ParseError
from sysdiag.probes.procfs.loadavg import LoadavgProbe, parse_loadavg

from probe_helpers import run_one, write_tree


@pytest.mark.parametrize("text, expected", [
    ("0.02 0.04 0.05 1/497 11947\n", (0.02, 0.04, 0.05, 1, 497, 11947)),
    ("12.50 8.00 4.25 17/2048 4194303", (12.5, 8.0, 4.25, 17, 2048, 4194303)),
    ("0.00 0.00 0.00 1/96", (0.0, 0.0, 0.0, 1, 96, None)),  # no last pid
])
def test_parse_loadavg(text, expected):
    r = parse_loadavg(text)
    assert (r.load1, r.load5, r.load15, r.runnable, r.tasks_total, r.last_pid) == expected


@pytest.mark.parametrize("text, problem", [
    ("", "expected 'load1"),
    ("0.02 0.04", "expected 'load1"),
    ("0.02 0.04 0.05 1-497 11947", "running/total"),
    ("0.02 abc 0.05 1/497 11947", "load5: expected a number"),
    ("0.02 0.04 0.05 1/x 11947", "total tasks: expected an integer"),
])
def test_parse_loadavg_rejects(text, problem):
    with pytest.raises(ParseError) as err:
        parse_loadavg(text, "/x/proc/loadavg")
    assert str(err.value).startswith("/x/proc/loadavg: ")
    assert problem in str(err.value)


def test_probe_on_fixture_tree(tree_ctx):
    outcome, facts = run_one(LoadavgProbe(), tree_ctx)
    assert outcome.status == "ok", outcome.reason
    (fact,) = facts
    assert (fact.load1, fact.runnable, fact.tasks_total, fact.last_pid) == (0.02, 1, 497, 11947)
    # the tree has no sysfs cpu/online: the 8 cpuN lines of its /proc/stat count
    assert fact.load1_per_cpu == round(0.02 / 8, 3)


def test_malformed_file_fails_naming_it(tmp_path):
    ctx = write_tree(tmp_path, {"proc/loadavg": "garbage\n"})
    outcome, facts = run_one(LoadavgProbe(), ctx)
    assert outcome.status == "failed" and not facts
    assert str(tmp_path / "proc" / "loadavg") in outcome.reason
