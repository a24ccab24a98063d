"""Without bcc, headers, root, tracefs or a tracepoint, each probe says exactly what is
missing and what to install, and the run goes on (simulated: fake trees, a fake euid,
an import that fails)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from sysdiag.probes.base import ProbeContext, Unavailable
from sysdiag.probes.ebpf import requirements
from sysdiag.probes.ebpf.drops import DropsProbe
from sysdiag.probes.ebpf.runqlat import RunqlatProbe
from sysdiag.probes.registry import all_probes
from sysdiag.probes.runner import run_probes

EVENTS = Path(__file__).with_name("fixtures") / "tracing-events"
EBPF_PROBES = sorted(n for n in all_probes() if n.startswith("ebpf-"))


@pytest.fixture
def sys_tree(tmp_path):
    """A sys root whose tracefs holds the 6.18 formats, and a modules root with headers."""
    events = tmp_path / "sys/kernel/tracing/events"
    shutil.copytree(EVENTS, events)
    (tmp_path / "modules" / "build" / "include").mkdir(parents=True)
    return tmp_path


@pytest.fixture
def headers(sys_tree, monkeypatch):
    monkeypatch.setenv("BCC_KERNEL_SOURCE", str(sys_tree / "modules/build"))
    return sys_tree


def ctx_for(root: Path, euid: int = 0, live: bool = True) -> ProbeContext:
    return ProbeContext(proc_root=Path("/proc"), sys_root=root / "sys", live=live, euid=euid)


@pytest.fixture
def no_bcc(monkeypatch):
    monkeypatch.setattr(requirements, "_bcc", None)
    monkeypatch.setitem(sys.modules, "bcc", None)  # `import bcc` raises ImportError
    monkeypatch.setattr(requirements, "DEBIAN_DIST_PACKAGES", "/nonexistent/dist-packages")


def reason(probe, ctx) -> str:
    with pytest.raises(Unavailable) as err:
        probe.check(ctx)
    return str(err.value)


@pytest.mark.parametrize("name", EBPF_PROBES)
def test_every_probe_declares_tracing_cost_root_and_its_program(name):
    cls = all_probes()[name]
    assert cls.cost == "tracing" and cls.needs_root and cls.timeout_s >= 10
    assert cls.tracepoints and all(":" in tp for tp in cls.tracepoints)
    assert cls.event_rate_from and cls.cost_ns_per_event > 0
    from sysdiag.probes.ebpf.base import program_path
    assert program_path(cls.program).read_text().count("TRACEPOINT_PROBE") == len(cls.tracepoints)


def test_a_captured_tree_has_nothing_to_trace(headers):
    assert "needs the live kernel" in reason(RunqlatProbe(), ctx_for(headers, live=False))


def test_not_root(headers):
    assert "needs root" in reason(RunqlatProbe(), ctx_for(headers, euid=1000))


def test_tracefs_not_mounted(tmp_path, monkeypatch):
    (tmp_path / "sys/kernel/tracing").mkdir(parents=True)  # the empty mount point
    text = reason(DropsProbe(), ctx_for(tmp_path))
    assert "tracefs is not mounted" in text and "mount -t tracefs nodev /sys/kernel/tracing" in text


def test_tracefs_found_inside_debugfs(sys_tree, monkeypatch, no_bcc):
    legacy = sys_tree / "sys/kernel/debug/tracing"
    legacy.parent.mkdir(parents=True)
    (sys_tree / "sys/kernel/tracing").rename(legacy)
    monkeypatch.setenv("BCC_KERNEL_SOURCE", str(sys_tree / "modules/build"))
    # it got past tracefs and the headers: what is missing now is bcc
    assert "python3-bpfcc" in reason(DropsProbe(), ctx_for(sys_tree))


def test_missing_tracepoint(headers):
    shutil.rmtree(headers / "sys/kernel/tracing/events/skb")
    text = reason(DropsProbe(), ctx_for(headers))
    assert "no tracepoint skb:kfree_skb" in text


def test_missing_kernel_headers(sys_tree, monkeypatch, tmp_path):
    monkeypatch.delenv("BCC_KERNEL_SOURCE", raising=False)
    ctx = ctx_for(sys_tree)
    with pytest.raises(Unavailable) as err:
        requirements.check_tracing(ctx, ("skb:kfree_skb",), modules_root=tmp_path / "none")
    text = str(err.value)
    assert "no kernel headers" in text and "linux-headers" in text and "/build" in text


def test_missing_bcc(headers, no_bcc):
    text = reason(DropsProbe(), ctx_for(headers))
    assert "bcc Python module is not installed" in text and "apt-get install python3-bpfcc" in text


def test_runner_reports_unavailable_and_goes_on(headers, no_bcc):
    ctx = ctx_for(headers)
    collection = run_probes([DropsProbe(), RunqlatProbe()], ctx, window_s=0.1, deadline_s=10)
    assert [o.status for o in collection.outcomes] == ["unavailable", "unavailable"]
    assert all("python3-bpfcc" in o.reason for o in collection.outcomes)
    assert collection.facts == []
