"""Parsers for cgroup files (v1 and v2) and /proc/PID/cgroup."""
from __future__ import annotations

import pytest

from sysdiag.probes.parse import ParseError
from sysdiag.probes.sysfs.cgroupfs import (UNIFIED, parse_blkio_throttle, parse_cpu_max,
                                           parse_io_max, parse_keyed, parse_limit,
                                           parse_pressure_avg10, parse_proc_cgroup)

# this host: v1 controllers, a named systemd hierarchy and the hybrid's unified line
PROC_CGROUP_V1 = """\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/25836ef1540251c8e321a4524ed7d260
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
"""


def test_proc_cgroup_v1_hybrid():
    paths = parse_proc_cgroup(PROC_CGROUP_V1)
    assert paths["memory"] == "/process_api/25836ef1540251c8e321a4524ed7d260"
    assert paths["cpu"] == "/" and paths["name=systemd"] == "/"
    assert paths[UNIFIED] == "/"


def test_proc_cgroup_v2_and_combined_controllers():
    assert parse_proc_cgroup("0::/system.slice/nginx.service\n") == {
        UNIFIED: "/system.slice/nginx.service"}
    paths = parse_proc_cgroup("4:cpu,cpuacct:/docker/abc\n11:net_cls,net_prio:/docker/abc\n")
    assert paths["cpu"] == paths["cpuacct"] == paths["net_prio"] == "/docker/abc"


def test_proc_cgroup_path_with_colon_and_deleted_suffix():
    paths = parse_proc_cgroup("0::/machine.slice/libpod-a:b.scope (deleted)\n")
    assert paths[UNIFIED] == "/machine.slice/libpod-a:b.scope"


def test_proc_cgroup_empty():
    assert parse_proc_cgroup("") == {}


@pytest.mark.parametrize("text", ["4:memory\n", "x:memory:/a\n", "4:memory:relative\n"])
def test_proc_cgroup_malformed(text):
    with pytest.raises(ParseError, match="expected 'ID:controllers:/path'"):
        parse_proc_cgroup(text, "/proc/1/cgroup")


def test_keyed_v1_and_v2_cpu_stat():
    v1 = parse_keyed("nr_periods 512\nnr_throttled 300\nthrottled_time 123456789\n"
                     "nr_bursts 0\nburst_time 0\n", "cpu.stat")
    assert v1["throttled_time"] == 123456789 and v1["nr_throttled"] == 300
    v2 = parse_keyed("usage_usec 35894633\nuser_usec 23303014\nsystem_usec 12591618\n"
                     "nr_periods 10\nnr_throttled 2\nthrottled_usec 4000\n", "cpu.stat")
    assert v2["throttled_usec"] == 4000
    assert parse_keyed("", "memory.events") == {}


def test_keyed_rejects_text_without_any_pair():
    with pytest.raises(ParseError, match="key value"):
        parse_keyed("this is not a keyed file\n", "memory.events")


@pytest.mark.parametrize("text, value", [
    ("max\n", None),  # v2
    ("-1\n", None),  # v1 cpu.cfs_quota_us
    ("9223372036854771712\n", None),  # v1 memory "unlimited" (x86_64, 4 KiB pages)
    ("9223372036854775807\n", None),
    ("536870912\n", 536870912),
    ("", None),
    (None, None),
])
def test_limit(text, value):
    assert parse_limit(text, "memory.max") == value


def test_limit_garbage():
    with pytest.raises(ParseError, match="memory.max"):
        parse_limit("lots\n", "memory.max")


def test_cpu_max():
    assert parse_cpu_max("max 100000\n") == (None, 100000)
    assert parse_cpu_max("50000 100000\n") == (50000, 100000)
    for bad in ("", "max\n", "a 100000\n"):
        with pytest.raises(ParseError):
            parse_cpu_max(bad, "cpu.max")


def test_io_max():
    text = ("8:0 rbps=max wbps=1048576 riops=max wiops=max\n"
            "8:16 rbps=max wbps=max riops=max wiops=100\n")
    assert parse_io_max(text) == ["8:0 wbps=1048576", "8:16 wiops=100"]
    assert parse_io_max("") == []
    assert parse_io_max("8:0 rbps=max wbps=max riops=max wiops=max\n") == []
    with pytest.raises(ParseError):
        parse_io_max("garbage\n", "io.max")


def test_blkio_throttle():
    assert parse_blkio_throttle("8:0 1048576\n", "write_bps", "f") == ["8:0 write_bps=1048576"]
    assert parse_blkio_throttle("", "read_iops", "f") == []
    with pytest.raises(ParseError):
        parse_blkio_throttle("8:0\n", "read_iops", "f")


def test_pressure_avg10():
    text = ("some avg10=12.50 avg60=3.00 avg300=1.00 total=123456\n"
            "full avg10=5.25 avg60=1.00 avg300=0.50 total=6543\n")
    assert parse_pressure_avg10(text, "memory.pressure") == {"some": 12.5, "full": 5.25}
    assert parse_pressure_avg10("", "cpu.pressure") == {}
    with pytest.raises(ParseError):
        parse_pressure_avg10("avg10=1\n", "cpu.pressure")
    with pytest.raises(ParseError):
        parse_pressure_avg10("some avg10=x total=1\n", "cpu.pressure")
