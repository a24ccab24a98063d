"""The "fuse" probe on written trees: connections mapped to mounts, waiting at both ends,
and the reasons it cannot run. The live test with a stopped FUSE daemon is in
tests/safety/test_fuse_deadline.py."""
from __future__ import annotations

import pytest

from sysdiag.facts import FuseConnection
from sysdiag.probes.parse import ParseError
from sysdiag.probes.sysfs.fuse import FuseProbe, conn_device, parse_counter

from probe_helpers import run_one, write_tree

# mountinfo of a host with a bindfs (libfuse2: type "fuse"), an sshfs and an ntfs-3g
# (fuseblk, on /dev/sdb1 = 8:17) mount, and fusectl mounted
MOUNTINFO = """\
22 1 252:0 / / rw,relatime - ext4 /dev/vda rw
25 22 0:22 / /sys rw,relatime - sysfs sysfs rw
40 25 0:38 / /sys/fs/fuse/connections rw,relatime - fusectl none rw
44 22 0:39 / /tmp/fz/mnt rw,nosuid,nodev,relatime - fuse /tmp/fz/src rw,user_id=0,group_id=0
45 22 0:41 / /mnt/remote rw,nosuid,nodev - fuse.sshfs me@host:/srv rw,user_id=1000,group_id=1000
46 22 8:17 / /mnt/win rw,relatime - fuseblk /dev/sdb1 rw,user_id=0,group_id=0,allow_other
"""
FUSEBLK_CONN = (8 << 20) | 17


def conn_files(conn: int, waiting: int, max_background: int = 12,
               congestion: int = 9) -> dict[str, str]:
    base = f"sys/fs/fuse/connections/{conn}"
    return {f"{base}/waiting": f"{waiting}\n", f"{base}/max_background": f"{max_background}\n",
            f"{base}/congestion_threshold": f"{congestion}\n", f"{base}/abort": ""}


def test_conn_device():
    assert conn_device(39) == "0:39"
    assert conn_device(FUSEBLK_CONN) == "8:17"
    assert conn_device(0) == "0:0"


def test_parse_counter():
    assert parse_counter("3\n", "waiting") == 3
    assert parse_counter(None, "waiting") is None and parse_counter("", "waiting") is None
    with pytest.raises(ParseError, match="waiting: value: expected an integer"):
        parse_counter("three\n", "waiting")


def _tree(tmp_path, waiting_39: int, mountinfo: str = MOUNTINFO, extra=None):
    files = {"proc/self/mountinfo": mountinfo, **conn_files(39, waiting_39),
             **conn_files(41, 0), **conn_files(FUSEBLK_CONN, 1)}
    files.update(extra or {})
    return write_tree(tmp_path, files)


def test_connections_mapped_to_their_mounts(tmp_path):
    outcome, facts = run_one(FuseProbe(), _tree(tmp_path, 2))
    assert outcome.status == "ok" and not outcome.warnings
    by_conn = {f.conn: f for f in facts}
    assert set(by_conn) == {39, 41, FUSEBLK_CONN}
    bindfs = by_conn[39]
    assert isinstance(bindfs, FuseConnection)
    assert (bindfs.mountpoint, bindfs.fstype, bindfs.device) == ("/tmp/fz/mnt", "fuse",
                                                                 "/tmp/fz/src")
    assert (bindfs.waiting, bindfs.max_background, bindfs.congestion_threshold) == (2, 12, 9)
    assert bindfs.waiting_first is None and bindfs.waiting_stable is None  # one sample
    assert by_conn[41].mountpoint == "/mnt/remote" and by_conn[41].fstype == "fuse.sshfs"
    assert by_conn[FUSEBLK_CONN].mountpoint == "/mnt/win"
    assert bindfs.fact_id == "fuse_connection:39"


def test_waiting_at_both_ends(tmp_path):
    probe = FuseProbe()
    first = probe.sample(_tree(tmp_path / "a", 3))
    ctx = _tree(tmp_path / "b", 5)
    by_conn = {f.conn: f for f in probe.facts(ctx, first, probe.sample(ctx), 1.0)}
    assert (by_conn[39].waiting_first, by_conn[39].waiting, by_conn[39].waiting_stable) == (
        3, 5, True)
    assert by_conn[41].waiting_stable is False  # 0 and 0: nothing waits
    drained = FuseProbe()
    later = _tree(tmp_path / "c", 0)
    fact = {f.conn: f for f in drained.facts(later, first, drained.sample(later), 1.0)}[39]
    assert fact.waiting_stable is False and fact.waiting_first == 3


def test_connection_without_a_mount_in_our_namespace(tmp_path):
    ctx = _tree(tmp_path, 0, extra=conn_files(77, 4))
    fact = {f.conn: f for f in run_one(FuseProbe(), ctx)[1]}[77]
    assert fact.mountpoint is None and fact.waiting == 4


def test_no_fuse_at_all_is_ok_and_empty(tmp_path):
    ctx = write_tree(tmp_path, {"proc/self/mountinfo": MOUNTINFO.split("40 25")[0]})
    outcome, facts = run_one(FuseProbe(), ctx)
    assert outcome.status == "ok" and facts == []


def test_fusectl_not_mounted(tmp_path):
    mountinfo = "".join(line + "\n" for line in MOUNTINFO.splitlines() if "fusectl" not in line)
    ctx = write_tree(tmp_path, {"proc/self/mountinfo": mountinfo})
    (tmp_path / "sys/fs/fuse/connections").mkdir(parents=True)
    outcome, facts = run_one(FuseProbe(), ctx)
    assert outcome.status == "unavailable" and not facts
    assert "fusectl is not mounted" in outcome.reason and "mount -t fusectl" in outcome.reason


def test_fuse_mounts_but_no_connections_directory(tmp_path):
    outcome, _ = run_one(FuseProbe(), write_tree(tmp_path, {"proc/self/mountinfo": MOUNTINFO}))
    assert outcome.status == "unavailable" and "does not exist" in outcome.reason


def test_malformed_waiting_fails_naming_the_file(tmp_path):
    ctx = _tree(tmp_path, 0, extra={"sys/fs/fuse/connections/39/waiting": "lots\n"})
    outcome, _ = run_one(FuseProbe(), ctx)
    assert outcome.status == "failed" and "connections/39/waiting" in outcome.reason


def test_unreadable_connections(tmp_path, monkeypatch):
    """Connection directories are 0500 and owned by whoever mounted: as another user
    every read is refused."""
    ctx = _tree(tmp_path, 1)
    real = type(ctx).read_text

    def refuse(self, path, max_bytes=4 << 20):
        if "/connections/" in str(path) and not str(path).startswith(
                str(tmp_path / f"sys/fs/fuse/connections/{FUSEBLK_CONN}")):
            raise PermissionError(13, "Permission denied", str(path))
        return real(self, path, max_bytes)

    monkeypatch.setattr(type(ctx), "read_text", refuse)
    outcome, facts = run_one(FuseProbe(), ctx)
    assert outcome.status == "ok" and [f.conn for f in facts] == [FUSEBLK_CONN]
    assert any("2 FUSE connections not readable" in w for w in outcome.warnings)

    def refuse_all(self, path, max_bytes=4 << 20):
        if "/connections/" in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real(self, path, max_bytes)

    monkeypatch.setattr(type(ctx), "read_text", refuse_all)
    outcome, _ = run_one(FuseProbe(), ctx)
    assert outcome.status == "unavailable" and outcome.reason.startswith("needs root")


def test_fixture_tree_has_no_fuse(tree_ctx):
    outcome, facts = run_one(FuseProbe(), tree_ctx)
    assert outcome.status == "ok" and facts == []


def test_a_malformed_mountinfo_line_is_warned_once(tmp_path):
    ctx = _tree(tmp_path, 1, mountinfo=MOUNTINFO + "garbage without separator\n")
    probe = FuseProbe()
    first = probe.sample(ctx)
    facts = probe.facts(ctx, first, probe.sample(ctx), 1.0)
    assert {f.conn for f in facts} == {39, 41, FUSEBLK_CONN}
    assert len(probe.warnings) == 1 and "no ' - ' separator" in probe.warnings[0]
