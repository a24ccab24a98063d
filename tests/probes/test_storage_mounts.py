"""The "mounts" probe: mountinfo parsing, classification, fixture tree and live host."""
from __future__ import annotations

from pathlib import Path

import pytest

from sysdiag.facts import Mount
from sysdiag.probes.base import ProbeContext, Unavailable
from sysdiag.probes.parse import ParseError
from sysdiag.probes.procfs.mounts import (MountsProbe, mount_fact, parse_mountinfo,
                                          parse_mountinfo_line, read_mountinfo, unescape)

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared/fixtures/procfs"

# proc(5)'s example, a systemd host's lines, an NFS mount and a FUSE mount
MOUNTINFO = """\
36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
22 27 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,errors=remount-ro
31 23 0:28 / /sys/fs/cgroup rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
194 27 0:42 / /mnt/nfs/test rw shared:144 - nfs4 192.168.1.1:/srv/test rw,vers=4.0,hard,proto=tcp
210 27 0:50 / /home/ann/My\\040Drive rw,nosuid,nodev shared:150 - fuse.rclone remote: rw,user_id=1000
211 27 0:51 / /mnt/ssh rw,nosuid,nodev - fuse.sshfs ann@host:/ rw,user_id=0
212 27 0:52 / /run/user/1000 rw,nosuid,nodev,relatime shared:160 - tmpfs tmpfs rw,size=812k
213 27 8:17 / /data rw,relatime shared:170 - xfs /dev/sdb1 ro,attr2,inode64
"""


def test_parse_real_lines():
    mounts = parse_mountinfo(MOUNTINFO)
    assert len(mounts) == 9
    first = mounts[0]
    assert (first.mount_id, first.parent_id, first.dev) == (36, 35, "98:0")
    assert (first.root, first.mountpoint, first.fstype, first.device) == (
        "/mnt1", "/mnt2", "ext3", "/dev/root")
    assert first.optional == ("master:1",)
    assert first.options == "rw,noatime" and first.super_options == "rw,errors=continue"
    by_point = {m.mountpoint: m for m in mounts}
    assert by_point["/proc"].pseudo and not by_point["/proc"].network_fs
    assert by_point["/sys/fs/cgroup"].pseudo
    nfs = by_point["/mnt/nfs/test"]
    assert nfs.network_fs and not nfs.fuse and not nfs.pseudo
    assert nfs.device == "192.168.1.1:/srv/test"
    rclone = by_point["/home/ann/My Drive"]  # \040 decoded
    assert rclone.fuse and not rclone.network_fs
    sshfs = by_point["/mnt/ssh"]
    assert sshfs.fuse and sshfs.network_fs  # a FUSE daemon talking to a server
    tmpfs = by_point["/run/user/1000"]
    assert not tmpfs.pseudo  # tmpfs holds real, limited space
    assert not by_point["/"].read_only


def test_read_only_from_superblock_options():
    # remounted read-only after an error: the per-mount options still say rw
    data = parse_mountinfo(MOUNTINFO)[-1]
    assert data.options.startswith("rw") and data.super_options.startswith("ro")
    assert data.read_only
    assert parse_mountinfo_line("40 1 8:1 / /boot ro,relatime - ext4 /dev/sda1 rw").read_only


@pytest.mark.parametrize("raw, decoded", [
    ("/mnt/my\\040disk", "/mnt/my disk"),
    ("/a\\011tab\\012nl", "/a\ttab\nnl"),
    ("/back\\134slash", "/back\\slash"),
    ("/plain", "/plain"),
    ("/not\\04escape", "/not\\04escape"),  # only three octal digits are an escape
])
def test_unescape(raw, decoded):
    assert unescape(raw) == decoded


def test_empty_device_and_no_optional_fields():
    entry = parse_mountinfo_line('50 27 0:60 / /x rw,relatime - tmpfs  rw,size=4k')
    assert entry.fstype == "tmpfs" and entry.device == "" and entry.super_options == "rw,size=4k"
    assert entry.optional == ()
    assert mount_fact("src", entry).device is None


def test_empty_text_is_no_mounts():
    assert parse_mountinfo("") == []
    assert parse_mountinfo("\n\n") == []


@pytest.mark.parametrize("line, problem", [
    ("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1", "separator"),  # truncated
    ("36 35 98:0 - ext3 /dev/root rw", "at least 6 fields"),
    ("x 35 98:0 /mnt1 /mnt2 rw - ext3 /dev/root rw", "mount id"),
    ("36 35 98:0 /mnt1 /mnt2 rw - ext3", "fstype device options"),
])
def test_malformed_lines_name_the_problem(line, problem):
    with pytest.raises(ParseError, match=problem) as info:
        parse_mountinfo(MOUNTINFO + line + "\n", "/proc/self/mountinfo")
    assert "/proc/self/mountinfo line 10" in str(info.value)


def test_malformed_line_skipped_with_on_error():
    problems: list[str] = []
    mounts = parse_mountinfo("garbage\n" + MOUNTINFO, on_error=problems.append)
    assert len(mounts) == 9
    assert len(problems) == 1 and "line 1" in problems[0]


def test_mount_fact_fields():
    fact = mount_fact("/proc/self/mountinfo", parse_mountinfo(MOUNTINFO)[4])
    assert isinstance(fact, Mount)
    assert fact.fact_id == "mount:194"
    assert fact.to_engine()["network_fs"] is True
    assert fact.source == "/proc/self/mountinfo"


def test_mount_facts_are_bounded_pseudo_last(monkeypatch):
    from sysdiag.probes.procfs import mounts

    monkeypatch.setattr(mounts, "MAX_MOUNT_FACTS", 3)
    probe = MountsProbe()
    ctx = ProbeContext(proc_root=Path("/nonexistent"), live=False)
    facts = probe.facts(ctx, None, ("src", parse_mountinfo(MOUNTINFO)), None)
    assert [f.mountpoint for f in facts] == ["/mnt2", "/", "/mnt/nfs/test"]
    assert probe.warnings == ["9 mounts: reporting 3, pseudo filesystems last"]


def _fixture_ctx() -> ProbeContext:
    if not FIXTURES.is_dir():
        pytest.skip(f"fixture tree {FIXTURES} not present")
    return ProbeContext(proc_root=FIXTURES / "proc", sys_root=FIXTURES / "sys", live=False)


def test_fixture_tree_reads_the_pid_named_by_proc_self():
    ctx = _fixture_ctx()
    probe = MountsProbe()
    facts = probe.facts(ctx, None, probe.sample(ctx), None)
    # proc/self in the captured tree is a file holding "26231"
    assert all(f.source.endswith("proc/26231/mountinfo") for f in facts)
    by_point = {}
    for fact in facts:
        by_point.setdefault(fact.mountpoint, []).append(fact)
    assert by_point["/"][0].fstype == "ext4" and by_point["/"][0].device == "/dev/sda1"
    assert all(f.network_fs for f in by_point["/mnt/nfs/test"])
    assert {f.fstype for f in by_point["/mnt/nfs/test"]} == {"nfs", "nfs4"}
    assert by_point["/proc"][0].pseudo
    assert not probe.warnings


def test_captured_tree_without_mountinfo_is_unavailable(tmp_path):
    (tmp_path / "proc").mkdir()
    ctx = ProbeContext(proc_root=tmp_path / "proc", sys_root=tmp_path / "sys", live=False)
    with pytest.raises(Unavailable, match="no mountinfo found"):
        read_mountinfo(ctx)


def test_captured_tree_link_out_of_the_tree_is_not_followed(tmp_path):
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "self").symlink_to("/proc/self")  # absolute: the host's, not the tree's
    (proc / "1").mkdir()
    (proc / "1" / "mountinfo").write_text(MOUNTINFO)
    ctx = ProbeContext(proc_root=proc, sys_root=tmp_path / "sys", live=False)
    source, mounts = read_mountinfo(ctx)
    assert source == str(proc / "1" / "mountinfo")
    assert len(mounts) == 9


@pytest.mark.live
def test_live_host_has_a_root_mount():
    ctx = ProbeContext()
    probe = MountsProbe()
    facts = probe.facts(ctx, None, probe.sample(ctx), None)
    assert any(f.mountpoint == "/" and not f.pseudo for f in facts)
    assert any(f.fstype == "proc" and f.pseudo for f in facts)
    assert len({f.mount_id for f in facts}) == len(facts)
