"""`sysdiag collect` as an unprivileged user completes, and every probe that did not run
says why; where root is what it lacks, the reason says so.

The test runs the installed CLI as `nobody` (runuser). When the venv's interpreter lives
under a directory `nobody` cannot enter (a pyenv build under /root, mode 0700), the run
happens in a private mount namespace (unshare --mount) where a tmpfs with mode 0755
covers that directory and the interpreter's tree is bind-mounted back into it: nothing
changes on the host, and the namespace dies with the run.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import pytest

from sysdiag.probes.registry import all_probes

pytestmark = [pytest.mark.live, pytest.mark.root, pytest.mark.slow]

SYSDIAG = str(Path(sys.executable).parent / "sysdiag")
USER = "nobody"
#: words that say "you need more privilege"
PRIVILEGE_WORDS = ("root", "permission", "privilege", "cap_")

#: runs as root inside the new mount namespace, then becomes the command after "--"
OPEN_UP = r"""
import os, subprocess, sys, tempfile
blocked, inner = sys.argv[1], sys.argv[2]
command = sys.argv[sys.argv.index("--") + 1:]
def mount(*args):
    subprocess.run(["mount", *args], check=True, timeout=10)
stash = tempfile.mkdtemp(prefix="sysdiag-stash-")
mount("--bind", inner, stash)               # keep the interpreter's tree at hand
mount("-t", "tmpfs", "-o", "mode=0755,size=1m", "sysdiag-test", blocked)
os.makedirs(inner)
mount("--move", stash, inner)               # and put it back, under an open directory
os.rmdir(stash)
os.execvp(command[0], command)
"""


def closed_ancestor(path: str) -> Optional[tuple[str, str]]:
    """(the first ancestor directory others cannot enter, its child on the way to path)."""
    parts = Path(path).parts
    for depth in range(1, len(parts) - 1):
        directory = Path(*parts[:depth + 1])
        if not os.stat(directory).st_mode & stat.S_IXOTH:
            return str(directory), str(Path(*parts[:depth + 2]))
    return None


def unprivileged_argv(argv: list[str]) -> list[str]:
    as_user = ["runuser", "-u", USER, "--", *argv]
    interpreter = os.path.realpath(sys.executable)
    blocked = closed_ancestor(interpreter)
    if blocked is None:
        return as_user
    for tool in ("unshare", "mount"):
        if shutil.which(tool) is None:
            pytest.skip(f"{interpreter} is not reachable for {USER} and {tool} is missing")
    return ["unshare", "--mount", "--propagation", "private", sys.executable, "-I", "-c",
            OPEN_UP, blocked[0], blocked[1], "--", *as_user]


@pytest.fixture
def shared_dir():
    directory = tempfile.mkdtemp(prefix="sysdiag-unpriv-", dir="/tmp")
    os.chmod(directory, 0o777)
    try:
        yield Path(directory)
    finally:
        shutil.rmtree(directory)


def collect(argv_prefix: list[str], out: Path) -> dict:
    proc = subprocess.run([*argv_prefix, "collect", "--window", "1", "-o", str(out)],
                          capture_output=True, text=True, timeout=120, cwd="/tmp",
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-3000:]}"
    return {c["probe"]: c for c in json.loads(out.read_text())["coverage"]}


def test_collect_as_nobody_completes_and_explains_every_gap(as_root, shared_dir):
    if shutil.which("runuser") is None:
        pytest.skip("runuser (util-linux) is not installed")
    as_nobody = collect(unprivileged_argv([SYSDIAG]), shared_dir / "nobody.json")
    as_root_ = collect([SYSDIAG], shared_dir / "root.json")

    assert set(all_probes()) <= set(as_nobody)
    for name, outcome in as_nobody.items():
        # a probe that cannot do its job as nobody says so; it neither fails nor hangs
        assert outcome["status"] in ("ok", "unavailable", "skipped"), (name, outcome)
        if outcome["status"] != "ok":
            assert outcome["reason"], name
    lost = {n for n, o in as_nobody.items()
            if o["status"] != "ok" and as_root_[n]["status"] == "ok"}
    for name in lost:  # ok as root, not as nobody: the missing privilege is the cause
        reason = as_nobody[name]["reason"].lower()
        assert any(word in reason for word in PRIVILEGE_WORDS), (name, reason)
    # some probes do see less as nobody; those that go on say so in a warning
    partial = {n for n, o in as_nobody.items() if o["status"] == "ok" and any(
        any(word in w.lower() for word in PRIVILEGE_WORDS) for w in o["warnings"])}
    assert lost or partial, "nothing differs between root and nobody: was it really nobody?"
