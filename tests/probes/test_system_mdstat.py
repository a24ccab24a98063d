"""The "mdstat" probe: /proc/mdstat arrays, degraded members, resync/recovery progress."""
from __future__ import annotations

from pathlib import Path

import pytest

from sysdiag.facts import RaidArray
from sysdiag.probes.base import ProbeContext
from sysdiag.probes.parse import ParseError
from sysdiag.probes.procfs.mdstat import MdstatProbe, parse_header, parse_mdstat

from probe_helpers import run_one, write_tree

# one healthy mirror, one degraded mirror rebuilding onto a spare, a raid0
MDSTAT = """\
Personalities : [raid1] [raid0] [linear] [multipath] [raid6] [raid5] [raid4] [raid10]
md1 : active raid1 sdb2[1] sda2[0]
      975585280 blocks super 1.2 [2/2] [UU]
      bitmap: 2/8 pages [8KB], 65536KB chunk

md2 : active raid1 sdd1[2] sdc1[0] sde1[1](F)
      1953382464 blocks super 1.2 [2/1] [U_]
      [====>................]  recovery = 22.4% (437741568/1953382464) finish=126.3min speed=199982K/sec

md0 : active raid0 sdf[1] sdg[0]
      3906764800 blocks super 1.2 512k chunks

unused devices: <none>
"""


def test_parse_healthy_degraded_and_striped():
    arrays = {a.name: a for a in parse_mdstat(MDSTAT)}
    assert list(arrays) == ["md1", "md2", "md0"]
    md1, md2, md0 = arrays["md1"], arrays["md2"], arrays["md0"]
    assert (md1.level, md1.members, md1.wanted, md1.working, md1.member_map) == (
        "raid1", ["sdb2", "sda2"], 2, 2, "UU")
    assert md1.action is None
    assert (md2.failed, md2.member_map, md2.action, md2.pct, md2.finish_min, md2.speed_kib) == (
        1, "U_", "recovery", 22.4, 126.3, 199982)
    assert md0.level == "raid0" and md0.member_map is None  # raid0 has no member status


@pytest.fixture
def source_ctx(tmp_path):
    return write_tree(tmp_path, {"proc/mdstat": MDSTAT})


def test_facts(source_ctx):
    outcome, facts = run_one(MdstatProbe(), source_ctx)
    assert outcome.status == "ok" and not outcome.warnings
    assert all(isinstance(f, RaidArray) for f in facts)
    by_name = {f.name: f for f in facts}
    md2 = by_name["md2"]
    assert md2.degraded and md2.failed_members == 1 and md2.members == 3
    assert md2.member_devices == "sdd1,sdc1,sde1"
    assert (md2.raid_disks, md2.working_disks) == (2, 1)
    assert (md2.sync_action, md2.sync_pct) == ("recovery", 22.4)
    assert not by_name["md1"].degraded and by_name["md1"].sync_action is None
    assert by_name["md0"].raid_disks is None and not by_name["md0"].degraded
    assert md2.fact_id == "raid_array:md2"
    assert md2.source == str(source_ctx.proc("mdstat"))


@pytest.mark.parametrize("text", [
    "",
    "Personalities : \nunused devices: <none>\n",
])
def test_no_arrays(text):
    assert parse_mdstat(text) == []


def test_truncated_input_keeps_what_was_there():
    # cut in the middle of md2's status line, and a header without members
    arrays = parse_mdstat(MDSTAT[:MDSTAT.index("[2/1]") + 3] + "\nmd9 : inactive\n")
    assert [a.name for a in arrays] == ["md1", "md2", "md9"]
    assert arrays[1].wanted is None and arrays[1].member_map is None
    assert arrays[2].active is False and arrays[2].members == [] and arrays[2].level is None


@pytest.mark.parametrize("text, problem", [
    ("md0 active raid1 sda[0]\n", "expected 'mdN : active|inactive"),
    ("md0 : degraded raid1 sda[0]\n", "expected 'mdN : active|inactive"),
    ("md0 : active raid1 sda\n", "unexpected member 'sda'"),
    ("md0 : active raid1 sda[x]\n", "unexpected member"),
    ("garbage\n", "expected 'mdN"),
])
def test_malformed(text, problem):
    with pytest.raises(ParseError, match=problem) as err:
        parse_mdstat("Personalities : [raid1]\n" + text, "/proc/mdstat")
    assert "/proc/mdstat line 2" in str(err.value)


def test_header_flags():
    a = parse_header("md127 : active (read-only) raid10 nvme0n1p3[0] nvme1n1p3[1](W) "
                     "nvme2n1p3[2](R) nvme3n1p3[3](S)")
    assert a.read_only and a.level == "raid10"
    assert a.members == ["nvme0n1p3", "nvme1n1p3", "nvme2n1p3", "nvme3n1p3"]
    assert (a.failed, a.spares) == (0, 1)  # write-mostly and replacement are neither


def test_missing_mdstat_is_unavailable(tmp_path):
    outcome, facts = run_one(MdstatProbe(), write_tree(tmp_path, {}))
    assert outcome.status == "unavailable" and "CONFIG_BLK_DEV_MD" in outcome.reason
    assert not facts


def test_fixture_tree(tree_ctx):
    """The fixture's 18 arrays: degraded, recovering, resyncing, checking, reshaping,
    waiting, inactive, read-only, external metadata."""
    outcome, facts = run_one(MdstatProbe(), tree_ctx)
    assert outcome.status == "ok" and not outcome.warnings
    a = {f.name: f for f in facts}
    assert len(a) == 18
    assert {n for n, f in a.items() if f.degraded} == {"md6", "md7", "md42"}
    assert (a["md6"].sync_action, a["md6"].sync_pct, a["md6"].working_disks) == (
        "recovery", 8.5, 1)
    assert (a["md8"].sync_action, a["md201"].sync_action, a["md42"].sync_action) == (
        "resync", "check", "reshape")
    assert a["md42"].sync_pct == 56.1 and a["md42"].sync_speed_kib_per_s == 7640
    assert (a["md9"].sync_waiting, a["md11"].sync_waiting) == ("DELAYED", "PENDING")
    assert a["md9"].failed_members == 2 and not a["md9"].degraded  # spares took over
    assert a["md4"].active is False and a["md219"].level is None and a["md219"].spare_members == 3
    assert a["md11"].read_only and a["md101"].read_only
    assert a["md3"].members == 10 and a["md3"].spare_members == 2 and a["md3"].raid_disks == 8
    assert a["md120"].level == "linear" and a["md126"].level == "raid0"


@pytest.mark.live
def test_live_host():
    outcome, facts = run_one(MdstatProbe(), ProbeContext())
    if not Path("/proc/mdstat").exists():
        assert outcome.status == "unavailable" and "md" in outcome.reason
        return
    assert outcome.status == "ok", outcome.reason
    names = {line.split()[0] for line in Path("/proc/mdstat").read_text().splitlines()
             if line.startswith("md")}
    assert {f.name for f in facts} == names
