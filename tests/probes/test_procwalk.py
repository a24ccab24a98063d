"""probes/procwalk.py: one /proc/PID/fd walk per run, shared by deleted-files and sockets."""
from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from sysdiag.probes.base import ProbeContext
from sysdiag.probes.netlink.sockets import find_owners
from sysdiag.probes.procfs.deleted import DeletedFileScanner
from sysdiag.probes.procwalk import FdLinks


def test_links_of_this_process_are_read_once():
    links = FdLinks("/proc")
    read, write = os.pipe()
    try:
        first = links.of(os.getpid())
        assert first[str(read)].startswith("pipe:[")
        late, other = os.pipe()
        try:
            # opened after the first read: the cache (one run) does not see it
            target = f"pipe:[{os.fstat(late).st_ino}]"
            assert target not in links.of(os.getpid()).values()
            assert FdLinks("/proc").of(os.getpid())[str(late)] == target
        finally:
            os.close(late)
            os.close(other)
    finally:
        os.close(read)
        os.close(write)


def test_a_failed_listdir_is_raised_to_every_caller(tmp_path):
    links = FdLinks(str(tmp_path))
    for _ in range(2):
        with pytest.raises(FileNotFoundError) as err:
            links.of(123)
        assert err.value.filename == f"{tmp_path}/123/fd"
    (tmp_path / "7").write_text("")  # a file where a directory should be
    with pytest.raises(NotADirectoryError):
        links.of(7)


def test_permission_error_stays_a_permission_error(monkeypatch):
    def denied(path):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(os, "listdir", denied)
    links = FdLinks("/proc")
    for _ in range(2):
        with pytest.raises(PermissionError):
            links.of(1)


def test_a_link_that_vanished_is_none(tmp_path):
    fd_dir = tmp_path / "5" / "fd"
    fd_dir.mkdir(parents=True)
    (fd_dir / "0").symlink_to("socket:[42]")
    (fd_dir / "1").write_text("")  # not a link: readlink fails like a closed fd
    assert FdLinks(str(tmp_path)).of(5) == {"0": "socket:[42]", "1": None}


def test_threads_share_one_result(tmp_path):
    fd_dir = tmp_path / "5" / "fd"
    fd_dir.mkdir(parents=True)
    (fd_dir / "3").symlink_to("/x (deleted)")
    links, seen = FdLinks(str(tmp_path)), []
    threads = [threading.Thread(target=lambda: seen.append(links.of(5))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8 and all(s is seen[0] for s in seen)


def test_deleted_files_and_sockets_share_the_walk(tmp_path, monkeypatch):
    """Both probes' walks of one process readlink each fd once per run."""
    path = tmp_path / "held"
    path.write_text("x" * 4096)
    calls: list[str] = []
    real = os.readlink

    def counting(link, *args, **kwargs):
        calls.append(str(link))
        return real(link, *args, **kwargs)

    with open(path) as held, socket.socket() as sock:
        path.unlink()
        monkeypatch.setattr(os, "readlink", counting)
        ctx = ProbeContext()
        scan = DeletedFileScanner(ctx).scan([os.getpid()])
        found, _ = find_owners(ctx, {os.fstat(sock.fileno()).st_ino})
        fd_links = [c for c in calls if c.startswith(f"/proc/{os.getpid()}/fd/")]
        assert any(h.fd == held.fileno() for h in scan.held)
        assert found[os.fstat(sock.fileno()).st_ino][0] == os.getpid()
        assert len(fd_links) == len(set(fd_links)) > 0


def test_each_context_is_one_run():
    assert ProbeContext()._fd_links is None
    ctx = ProbeContext(proc_root=Path("/proc"))
    ctx.fd_links(os.getpid())
    assert ProbeContext()._fd_links is None and ctx._fd_links is not None
