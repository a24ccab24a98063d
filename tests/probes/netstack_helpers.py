"""Helpers for the network-stack probe tests: throwaway namespaces and running probes inside them.

Namespaces are created with `ip netns add` and always deleted in `finally`; processes the
tests start are killed by their own pid only.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

from sysdiag.facts import fact_from_dict

#: runs inside a namespace (ip netns exec): one probe through the real runner, as JSON
PROBE_SCRIPT = """
import json, sys
from sysdiag.probes.base import ProbeContext
from sysdiag.probes.registry import all_probes
from sysdiag.probes.runner import run_probes
probe = all_probes()[sys.argv[1]]()
collection = run_probes([probe], ProbeContext(), window_s=float(sys.argv[2]), deadline_s=30)
(outcome,) = collection.outcomes
print(json.dumps({"outcome": outcome.model_dump(mode="json"),
                  "facts": [f.model_dump(mode="json") for f in collection.facts]}))
"""


def run(*args: str, check: bool = True, timeout: float = 20) -> str:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        err = subprocess.CalledProcessError(done.returncode, args, done.stdout, done.stderr)
        err.add_note(f"stderr: {done.stderr.strip()[-2000:]}")
        raise err
    return done.stdout


def delete_netns(names: list[str]) -> list[str]:
    """Delete namespaces, retrying briefly; the ones that would not go, with the error."""
    leftovers = []
    for ns in names:
        for _ in range(5):
            done = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True,
                                  timeout=20)
            if done.returncode == 0 or not Path("/run/netns", ns).exists():
                break
            time.sleep(0.2)
        else:
            leftovers.append(f"{ns}: {done.stderr.strip()}")
    return leftovers


@contextmanager
def netns(suffix: str) -> Iterator[str]:
    """A fresh network namespace with `lo` up; deleted afterwards, also on failure."""
    name = f"sdns{os.getpid()}{suffix}"
    created = []
    try:
        try:
            run("ip", "netns", "add", name)
            created.append(name)
            run("ip", "-n", name, "link", "set", "lo", "up")
        except subprocess.CalledProcessError as err:
            pytest.skip(f"cannot build a test namespace: {err.cmd}: {err.stderr.strip()}")
        yield name
    finally:
        leftovers = delete_netns(created)
        if leftovers:
            pytest.fail(f"could not delete test namespaces: {leftovers}")


def probe_in_netns(ns: str, probe: str, window_s: float = 0.0) -> tuple[dict[str, Any], list]:
    """Run one probe inside `ns` (its /proc/net and /proc/sys/net are the namespace's);
    its outcome (a dict) and its facts (models)."""
    out = run("ip", "netns", "exec", ns, sys.executable, "-c", PROBE_SCRIPT, probe,
              str(window_s), timeout=60)
    data = json.loads(out)
    return data["outcome"], [fact_from_dict(f) for f in data["facts"]]


@contextmanager
def started(argv: list[str]) -> Iterator[subprocess.Popen]:
    """A background process, killed (by its own pid) and reaped afterwards."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def proc_modules() -> str | None:
    """/proc/modules now (None: a kernel without module support)."""
    try:
        return Path("/proc/modules").read_text()
    except FileNotFoundError:
        return None


def module_names(text: str | None) -> set[str]:
    return {line.split()[0] for line in (text or "").splitlines() if line.strip()}
