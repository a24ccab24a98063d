"""A full collection changes nothing on the host (DESIGN.md "Safety").

`sysdiag collect` runs in this process, every registered probe, live, as root, while
- a Python audit hook (PEP 578) records every open() and os.open() with its flags, every
  process started (subprocess, os.exec*, os.posix_spawn, os.system) and every call that
  changes a file (mkdir, remove, rename, chmod, chown, utime, truncate, link, symlink);
- subprocess.Popen is wrapped to see `shell=True` itself;
and the kernel's module list (/proc/modules, /sys/module) is compared before and after.
Audit events come from the C level too (io.open, os.open), so a probe cannot write
around a monkeypatch. Hooks cannot be removed: this one records only while `active`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Optional

import pytest

from sysdiag.cli import main as sysdiag_main
from sysdiag.probes.registry import all_probes

pytestmark = [pytest.mark.live, pytest.mark.root, pytest.mark.slow]

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
#: kernel-facing trees nothing may write to (/dev/kmsg would inject into the kernel log)
GUARDED = ("/proc/", "/sys/", "/dev/")
HARMLESS_DEV = ("/dev/null",)
SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "mksh", "busybox", "fish", "csh", "tcsh"}
SPAWN_EVENTS = {"subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.system",
                "os.fork", "os.forkpty", "pty.spawn", "os.startfile"}
CHANGE_EVENTS = {"os.mkdir", "os.remove", "os.rmdir", "os.rename", "os.chmod", "os.chown",
                 "os.utime", "os.truncate", "os.link", "os.symlink", "os.chflags",
                 "shutil.rmtree", "shutil.move", "os.setxattr", "os.removexattr"}


class Audit:
    def __init__(self) -> None:
        self.active = False
        self.lock = threading.Lock()
        self.opens: list[tuple[str, int]] = []
        self.spawns: list[tuple[str, Any]] = []
        self.changes: list[tuple[str, Any]] = []
        self.popen_kwargs: list[dict[str, Any]] = []

    def hook(self, event: str, args: tuple) -> None:
        if not self.active:
            return
        if event == "open":
            path, _mode, flags = args
            name = _path(path)
            if name is not None and isinstance(flags, int):
                with self.lock:
                    self.opens.append((name, flags))
        elif event in SPAWN_EVENTS:
            with self.lock:
                self.spawns.append((event, args))
        elif event in CHANGE_EVENTS:
            with self.lock:
                self.changes.append((event, args))


def _path(value: Any) -> Optional[str]:
    if isinstance(value, int):
        return None  # an fd someone already opened: its open was recorded
    try:
        name = os.fsdecode(os.fspath(value))
    except TypeError:
        return None
    return os.path.abspath(name)


_AUDIT: Optional[Audit] = None


def audit() -> Audit:
    global _AUDIT
    if _AUDIT is None:
        _AUDIT = Audit()
        sys.addaudithook(_AUDIT.hook)
    return _AUDIT


def module_state() -> tuple[Optional[str], list[str]]:
    """/proc/modules (None when the kernel has no loadable modules) and /sys/module."""
    modules = Path("/proc/modules")
    text = modules.read_text() if modules.exists() else None
    return text, sorted(os.listdir("/sys/module"))


def guarded(path: str) -> bool:
    return path.startswith(GUARDED) and path not in HARMLESS_DEV


@pytest.fixture
def recorded(monkeypatch, as_root):
    rec = audit()
    rec.opens.clear()
    rec.spawns.clear()
    rec.changes.clear()
    rec.popen_kwargs.clear()
    real_init = subprocess.Popen.__init__

    def popen_init(self, *args, **kwargs):
        rec.popen_kwargs.append({"args": args[0] if args else kwargs.get("args"),
                                 "shell": kwargs.get("shell", False),
                                 "executable": kwargs.get("executable")})
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", popen_init)
    rec.active = True
    try:
        yield rec
    finally:
        rec.active = False


def test_full_collect_writes_nothing_loads_nothing_and_runs_no_shell(recorded, tmp_path):
    before = module_state()
    out = tmp_path / "snap.json"
    with pytest.raises(SystemExit) as done:
        sysdiag_main(["collect", "--window", "1", "--deadline", "30", "-o", str(out)])
    recorded.active = False
    after = module_state()
    assert done.value.code == 0, "collect did not complete (exit 3: incomplete)"

    # every registered probe ran (or said why not)
    import json
    coverage = {c["probe"]: c for c in json.loads(out.read_text())["coverage"]}
    assert set(all_probes()) <= set(coverage)
    assert all(c["status"] in ("ok", "unavailable", "skipped") for c in coverage.values()), \
        {n: (c["status"], c["reason"]) for n, c in coverage.items()}

    # no kernel module was loaded (or unloaded)
    assert after == before

    # nothing opened for writing under /proc, /sys or /dev
    writes = [(p, oct(f)) for p, f in recorded.opens if f & WRITE_FLAGS and guarded(p)]
    assert writes == []
    assert any(p.startswith("/proc/") for p, _ in recorded.opens)  # the hook did see reads
    changed = [(e, a) for e, a in recorded.changes
               if any(isinstance(x, (str, bytes, os.PathLike)) and guarded(_path(x) or "")
                      for x in a)]
    assert changed == []

    # no shell: neither shell=True nor a shell binary, nor os.system
    assert all(not k["shell"] for k in recorded.popen_kwargs), recorded.popen_kwargs
    for event, args in recorded.spawns:
        assert event != "os.system", args
        if event == "subprocess.Popen":
            executable, argv = args[0], args[1]
            names = {os.path.basename(os.fsdecode(executable or ""))}
            if isinstance(argv, (list, tuple)) and argv:
                names.add(os.path.basename(os.fsdecode(argv[0])))
            else:
                pytest.fail(f"a command given as one string (shell-style): {argv!r}")
            assert not names & SHELLS, argv
    print(f"audited: {len(recorded.opens)} opens, {len(recorded.spawns)} spawns:",
          sorted({os.path.basename(os.fsdecode(a[1][0])) for e, a in recorded.spawns
                  if e == "subprocess.Popen"}))


def test_the_audit_sees_what_it_must_catch(recorded, tmp_path):
    """The checks above can fail: a write under /sys and a shell are recorded."""
    # sysfs cannot create files: this fails with ENOENT, after the hook saw the attempt
    with pytest.raises(OSError):
        os.open("/sys/kernel/sysdiag-audit-test", os.O_WRONLY | os.O_CREAT, 0o600)
    subprocess.run("true", shell=True, timeout=10, check=True)
    recorded.active = False
    assert any(p == "/sys/kernel/sysdiag-audit-test" and f & WRITE_FLAGS
               for p, f in recorded.opens)
    assert any(k["shell"] for k in recorded.popen_kwargs)
    shells = [a for e, a in recorded.spawns if e == "subprocess.Popen"
              and os.path.basename(os.fsdecode(a[0] or "")) in SHELLS]
    assert shells
