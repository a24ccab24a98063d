"""A FUSE mount whose daemon never answers does not delay `sysdiag collect` past its
deadline, and the report says what is wrong with it.

The test mounts a bindfs (Debian package `bindfs`, a FUSE daemon), stops the daemon with
SIGSTOP so every request on the mount hangs, and starts a reader that gets stuck on
it. A process holds a deleted file on the mount too: stat'ing it would hang as well.
Then the installed CLI runs with --deadline 8. Everything is undone in `finally`:
SIGCONT, the reader killed, a lazy unmount, the daemon reaped, and fusectl unmounted
if the test mounted it.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import pytest

pytestmark = [pytest.mark.live, pytest.mark.root, pytest.mark.slow]

SYSDIAG = str(Path(sys.executable).parent / "sysdiag")
CONNECTIONS = Path("/sys/fs/fuse/connections")
DEADLINE_S = 8

#: opens a file on the mount, deletes it, keeps it open (bindfs -o hard_remove: a real
#: unlink, not libfuse's .fuse_hidden rename)
HOLDER = """\
import os, sys, time
f = open(sys.argv[1], "w")
f.write("x" * 65536)
f.flush()
os.unlink(sys.argv[1])
print("held", flush=True)
time.sleep(600)
"""


#: blocks on the stopped daemon; ENOENT once the daemon is let go at the end
READER = """\
import os, sys
try:
    os.stat(sys.argv[1])
except OSError:
    pass
"""


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    end = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def mount_line(mountpoint: Path) -> Optional[list[str]]:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(mountpoint):
            return fields
    return None


def fusectl_mounted() -> bool:
    return " - fusectl " in Path("/proc/self/mountinfo").read_text()


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=20)


@pytest.fixture(scope="module")
def stuck_fuse(tmp_path_factory):
    """(mountpoint, connection number, reader, holder) of a FUSE mount whose daemon is
    stopped, with a reader blocked on it."""
    if os.geteuid() != 0:
        pytest.skip("needs root (mounts a FUSE filesystem)")
    tmp_path = tmp_path_factory.mktemp("fuse")
    for tool in ("bindfs", "fusermount"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install bindfs)")
    if not Path("/dev/fuse").exists():
        pytest.skip("no /dev/fuse (kernel without CONFIG_FUSE_FS?)")
    source, mountpoint = tmp_path / "source", tmp_path / "mnt"
    source.mkdir()
    mountpoint.mkdir()
    (source / "file").write_text("data\n")
    started: list[subprocess.Popen] = []
    we_mounted_fusectl = False
    daemon = None
    try:
        if not fusectl_mounted():
            result = run("mount", "-t", "fusectl", "none", str(CONNECTIONS))
            assert result.returncode == 0, result.stderr
            we_mounted_fusectl = True
        # -f: stay in the foreground, so the daemon is our child
        daemon = subprocess.Popen(["bindfs", "-f", "-o", "hard_remove", str(source),
                                   str(mountpoint)], stderr=subprocess.PIPE)
        started.append(daemon)
        wait_until(lambda: mount_line(mountpoint) is not None, 10, "the bindfs mount")
        major, minor = mount_line(mountpoint)[2].split(":")
        conn = (int(major) << 20) | int(minor)
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(mountpoint / "held")],
                                  stdout=subprocess.PIPE, text=True)
        started.append(holder)
        ready, _, _ = select.select([holder.stdout], [], [], 10)
        assert ready and holder.stdout.readline().strip() == "held"
        os.kill(daemon.pid, signal.SIGSTOP)
        # a fresh name: no cached attributes, the lookup must ask the (stopped) daemon
        reader = subprocess.Popen([sys.executable, "-c", READER, str(mountpoint / "never-cached")])
        started.append(reader)
        waiting = CONNECTIONS / str(conn) / "waiting"
        wait_until(lambda: int(waiting.read_text()) > 0, 10, "a request waiting on the daemon")
        yield mountpoint, conn, reader, holder
    finally:
        if daemon is not None and daemon.poll() is None:
            os.kill(daemon.pid, signal.SIGCONT)
        for proc in started[1:]:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        if mount_line(mountpoint) is not None:
            if run("fusermount", "-u", "-z", str(mountpoint)).returncode != 0:
                run("umount", "-l", str(mountpoint))
        if daemon is not None:
            try:
                daemon.wait(timeout=10)  # bindfs exits when unmounted
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(timeout=10)
            daemon.stderr.close()
        for proc in started[1:]:
            if proc.stdout is not None:
                proc.stdout.close()
        if we_mounted_fusectl:
            run("umount", str(CONNECTIONS))


def collect(tmp_path: Path, *options: str) -> tuple[float, int, dict, dict]:
    """Run the installed CLI; (seconds, exit status, facts by kind, coverage by probe)."""
    out = tmp_path / "snap.json"
    started = time.monotonic()
    proc = subprocess.run([SYSDIAG, "collect", "--deadline", str(DEADLINE_S), *options,
                           "-o", str(out)], capture_output=True, text=True, timeout=60,
                          cwd="/tmp")
    elapsed = time.monotonic() - started
    assert proc.returncode in (0, 3), proc.stderr[-2000:]
    snapshot = json.loads(out.read_text())
    facts: dict[str, list[dict]] = {}
    for fact in snapshot["facts"]:
        facts.setdefault(fact["kind"], []).append(fact)
    return elapsed, proc.returncode, facts, {c["probe"]: c for c in snapshot["coverage"]}


def test_the_run_ends_by_its_deadline_and_nothing_hangs(stuck_fuse, tmp_path):
    """--deadline 8 with collect's default 5 s window."""
    mountpoint, conn, reader, holder = stuck_fuse
    elapsed, _, facts, coverage = collect(tmp_path)
    assert elapsed < DEADLINE_S + 2, f"took {elapsed:.1f} s"

    # the fuse probe sees the reader's request waiting at both ends of the window
    assert coverage["fuse"]["status"] == "ok", coverage["fuse"]
    (connection,) = [f for f in facts["fuse_connection"] if f["conn"] == conn]
    assert connection["mountpoint"] == str(mountpoint) and connection["fstype"] == "fuse"
    assert connection["waiting"] > 0 and connection["waiting_stable"] is True

    # the deleted file held on the mount is left alone (stat would hang), and said so
    assert coverage["deleted-files"]["status"] == "ok", coverage["deleted-files"]
    assert not [f for f in facts.get("deleted_open_file", [])
                if f["path"].startswith(str(mountpoint))]
    assert any("on network or FUSE mounts not measured" in w
               for w in coverage["deleted-files"]["warnings"])

    # no probe hung on it: one-sample probes run during the window, so even the
    # filesystems probe's bounded child has time to give up on the dead mount
    timed_out = {n for n, c in coverage.items() if c["status"] == "timed_out"}
    assert not timed_out, coverage
    # and the mount never answered during the run: the reader is still stuck
    assert reader.poll() is None


def test_filesystems_reports_the_mount_unresponsive(stuck_fuse, tmp_path):
    """--deadline 8 with a 1 s window: the measuring child has time to be abandoned."""
    mountpoint, _, reader, _ = stuck_fuse
    elapsed, _, facts, coverage = collect(tmp_path, "--window", "1")
    assert elapsed < DEADLINE_S + 2, f"took {elapsed:.1f} s"
    assert coverage["filesystems"]["status"] == "ok", coverage["filesystems"]
    dead = [f for f in facts.get("filesystem_unresponsive", [])
            if f["mountpoint"] == str(mountpoint)]
    assert len(dead) == 1 and dead[0]["fuse"] and dead[0]["waited_s"] > 0
    assert not [f for f in facts.get("filesystem", []) if f["mountpoint"] == str(mountpoint)]
    assert reader.poll() is None


def test_filesystems_names_the_mount_with_the_default_window(stuck_fuse, tmp_path):
    mountpoint, _, _, _ = stuck_fuse
    _, _, facts, coverage = collect(tmp_path)
    assert coverage["filesystems"]["status"] == "ok", coverage["filesystems"]
    assert [f for f in facts.get("filesystem_unresponsive", [])
            if f["mountpoint"] == str(mountpoint)]
