"""Throwaway network namespaces, veth pairs and processes for the scope and NIC tests.

Everything is created with iproute2 under names carrying the test process's pid and
removed in `finally`, also when the test fails; only processes started here are killed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

SYSDIAG = Path(sys.executable).with_name("sysdiag")


def need_root_and_ip() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2 (ip)")


def run(*args: str) -> str:
    return subprocess.run(list(args), check=True, capture_output=True, text=True,
                          timeout=20).stdout


def tag(suffix: str = "") -> str:
    """A short name unique to this test process (interface names max 15 bytes)."""
    return f"sd{os.getpid() % 100000}{suffix}"


@contextmanager
def netns(name: str) -> Iterator[str]:
    """A named network namespace (ip netns add), deleted afterwards."""
    created = False
    try:
        run("ip", "netns", "add", name)
        created = True
        run("ip", "-n", name, "link", "set", "lo", "up")
        yield name
    except subprocess.CalledProcessError as err:
        pytest.skip(f"cannot create namespace {name}: {err.stderr.strip()}")
    finally:
        if created:
            for _ in range(5):
                done = subprocess.run(["ip", "netns", "del", name], capture_output=True,
                                      text=True, timeout=20)
                if done.returncode == 0 or not Path("/run/netns", name).exists():
                    break
                time.sleep(0.2)
            else:
                pytest.fail(f"could not delete namespace {name}: {done.stderr.strip()}")


@contextmanager
def veth(a: str, b: str, ns: str | None = None, *extra: str) -> Iterator[tuple[str, str]]:
    """A veth pair a <-> b, in namespace `ns` (or sysdiag's own), deleted afterwards."""
    prefix = ["ip", "-n", ns] if ns else ["ip"]
    created = False
    try:
        run(*prefix, "link", "add", a, *extra, "type", "veth", "peer", "name", b)
        created = True
        for dev in (a, b):
            run(*prefix, "link", "set", dev, "up")
        yield a, b
    except subprocess.CalledProcessError as err:
        pytest.skip(f"cannot create veth {a}: {err.stderr.strip()}")
    finally:
        if created:
            subprocess.run([*prefix, "link", "del", a], capture_output=True, timeout=20)


@contextmanager
def process_in(ns: str) -> Iterator[int]:
    """A sleeping process inside namespace `ns` (ip netns exec execs it: same pid)."""
    proc = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "120"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # wait until it has entered the namespace (exec replaced `ip`)
        for _ in range(100):
            try:
                if os.readlink(f"/proc/{proc.pid}/exe").endswith("sleep"):
                    break
            except OSError:
                pass
            time.sleep(0.02)
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(timeout=10)


def veth_namespace() -> Iterator[str]:
    """For a fixture: a namespace with veth pairs tag(a)<->tag(b) and tag(c)<->tag(d), both
    ends inside, and net.core.somaxconn 777 there."""
    need_root_and_ip()
    name = tag("s")
    with netns(name):
        with veth(tag("a"), tag("b"), name), veth(tag("c"), tag("d"), name):
            run("ip", "netns", "exec", name, "sysctl", "-q", "-w", "net.core.somaxconn=777")
            yield name


def collect(*args: str) -> dict:
    out = subprocess.run([str(SYSDIAG), "collect", "-o", "-", "--window", "0.3", "--no-ebpf",
                          *args], capture_output=True, text=True, timeout=120)
    assert out.returncode in (0, 3), out.stderr
    return json.loads(out.stdout)


def kinds(snapshot: dict, kind: str) -> list[dict]:
    return [f for f in snapshot["facts"] if f["kind"] == kind]
