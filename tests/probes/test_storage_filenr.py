"""The "file-nr" probe: the system file table and the fd/inotify limits."""
from __future__ import annotations

from pathlib import Path

import pytest

from sysdiag.probes.base import ProbeContext, Unavailable
from sysdiag.probes.parse import ParseError
from sysdiag.probes.procfs.filenr import FileNrProbe, parse_file_nr, parse_sysctl_int

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared/fixtures/procfs"


@pytest.mark.parametrize("text, expected", [
    ("521\t0\t2466177\n", (521, 0, 2466177)),
    ("1184\t0\t9223372036854775807\n", (1184, 0, 9223372036854775807)),  # file-max unbounded
])
def test_parse_file_nr(text, expected):
    nr = parse_file_nr(text)
    assert (nr.allocated, nr.free, nr.max) == expected


@pytest.mark.parametrize("text, problem", [
    ("", "expected 'allocated free max'"),
    ("521\t0\n", "expected 'allocated free max'"),  # truncated
    ("521\tzero\t2466177\n", "free"),
])
def test_parse_file_nr_rejects_bad_text(text, problem):
    with pytest.raises(ParseError, match=problem):
        parse_file_nr(text, "/proc/sys/fs/file-nr")


def test_parse_sysctl_int():
    assert parse_sysctl_int("1048576\n", "nr_open") == 1048576
    assert parse_sysctl_int(None, "nr_open") is None
    with pytest.raises(ParseError, match="nr_open"):
        parse_sysctl_int("lots\n", "nr_open")


def _tree(tmp_path: Path, files: dict[str, str]) -> ProbeContext:
    for rel, text in files.items():
        path = tmp_path / "proc" / "sys" / "fs" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "proc").mkdir(exist_ok=True)
    return ProbeContext(proc_root=tmp_path / "proc", sys_root=tmp_path / "sys", live=False)


def test_near_full_file_table(tmp_path):
    ctx = _tree(tmp_path, {"file-nr": "95000\t0\t100000\n", "nr_open": "1048576\n",
                           "inotify/max_user_instances": "128\n",
                           "inotify/max_user_watches": "8192\n"})
    probe = FileNrProbe()
    (fact,) = probe.facts(ctx, None, probe.sample(ctx), None)
    assert (fact.allocated, fact.max, fact.pct) == (95000, 100000, 95.0)
    assert fact.nr_open == 1048576
    assert (fact.inotify_max_user_instances, fact.inotify_max_user_watches) == (128, 8192)
    assert fact.source.endswith("proc/sys/fs/file-nr")


def test_missing_limits_are_unknown_not_zero(tmp_path):
    ctx = _tree(tmp_path, {"file-nr": "10\t0\t100\n"})
    probe = FileNrProbe()
    (fact,) = probe.facts(ctx, None, probe.sample(ctx), None)
    assert fact.nr_open is None and fact.inotify_max_user_watches is None


def test_fixture_tree_without_proc_sys_fs_is_unavailable():
    if not FIXTURES.is_dir():
        pytest.skip(f"fixture tree {FIXTURES} not present")
    ctx = ProbeContext(proc_root=FIXTURES / "proc", sys_root=FIXTURES / "sys", live=False)
    with pytest.raises(Unavailable, match="file-nr does not exist"):
        FileNrProbe().sample(ctx)


@pytest.mark.live
def test_live_values_match_proc():
    ctx = ProbeContext()
    probe = FileNrProbe()
    (fact,) = probe.facts(ctx, None, probe.sample(ctx), None)
    file_max = int(Path("/proc/sys/fs/file-max").read_text())
    assert fact.max == file_max
    assert 0 < fact.allocated <= file_max
    assert fact.nr_open == int(Path("/proc/sys/fs/nr_open").read_text())
    assert fact.inotify_max_user_watches == int(
        Path("/proc/sys/fs/inotify/max_user_watches").read_text())
