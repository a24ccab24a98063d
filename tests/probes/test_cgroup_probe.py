"""The "cgroups" probe on synthetic v1 and v2 trees, the fixture tree, and live cgroups."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sysdiag.facts import Cgroup, Scope
from sysdiag.probes.base import ProbeContext, Unavailable
from sysdiag.probes.sysfs import cgroups
from sysdiag.probes.sysfs.cgroupfs import detect_layout
from sysdiag.probes.sysfs.cgroups import CgroupsProbe, normalize_cgroup_path

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared/fixtures/procfs"
PSI = ("some avg10={some} avg60=0.00 avg300=0.00 total=100\n"
       "full avg10={full} avg60=0.00 avg300=0.00 total=50\n")


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _cg(prefix: str, **files: str) -> dict[str, str]:
    """A cgroup directory: cgroup.procs plus the given files."""
    return {f"{prefix}/cgroup.procs": "", **{f"{prefix}/{name}": text
                                            for name, text in files.items()}}


def v2_tree(tmp: Path, throttled: int = 40, periods: int = 100, oom_kill: int = 1) -> ProbeContext:
    base = "sys/fs/cgroup"
    files: dict[str, str] = {f"{base}/cgroup.controllers": "cpuset cpu io memory pids\n",
                             f"{base}/cgroup.procs": "1\n"}
    files.update(_cg(f"{base}/system.slice", **{
        "cpu.max": "max 100000\n", "memory.max": "max\n", "pids.max": "max\n", "io.max": "",
        "cgroup.events": "populated 1\nfrozen 0\n"}))
    files.update(_cg(f"{base}/system.slice/web.service", **{
        "cgroup.controllers": "cpu io memory pids\n",
        "cpu.max": "50000 100000\n",
        "cpu.stat": f"usage_usec 9000000\nnr_periods {periods}\nnr_throttled {throttled}\n"
                    "throttled_usec 2500000\n",
        "memory.max": "536870912\n", "memory.high": "max\n", "memory.current": "402653184\n",
        "memory.events": f"low 0\nhigh 0\nmax 12\noom 1\noom_kill {oom_kill}\n",
        "pids.current": "90\n", "pids.max": "100\n", "pids.events": "max 3\n",
        "io.max": "8:0 rbps=max wbps=1048576 riops=max wiops=max\n",
        "cgroup.events": "populated 1\nfrozen 0\n",
        "cpuset.cpus.effective": "0-1\n",
        "cpu.pressure": PSI.format(some=30.5, full=20.0),
        "memory.pressure": PSI.format(some=1.5, full=0.5),
        "io.pressure": PSI.format(some=0.0, full=0.0)}))
    files.update(_cg(f"{base}/system.slice/idle.service", **{
        "cpu.max": "max 100000\n", "memory.max": "max\n", "memory.current": "1000\n",
        "cgroup.events": "populated 1\nfrozen 0\n"}))
    files.update(_cg(f"{base}/paused.scope", **{"cgroup.events": "populated 1\nfrozen 1\n"}))
    files.update(_cg(f"{base}/user.slice", **{"memory.max": "1073741824\n"}))
    files.update(_cg(f"{base}/user.slice/user-1000.slice", **{
        "memory.max": "max\n", "memory.current": "805306368\n"}))
    files["proc/4242/cgroup"] = "0::/system.slice/idle.service\n"
    _write(tmp, files)
    return ProbeContext(proc_root=tmp / "proc", sys_root=tmp / "sys", live=False,
                        scope=Scope(pid=4242))


def _facts(probe: CgroupsProbe, ctx: ProbeContext, first=None, elapsed=None) -> dict[str, Cgroup]:
    probe.check(ctx)
    facts = probe.facts(ctx, first, probe.sample(ctx), elapsed)
    assert all(isinstance(f, Cgroup) for f in facts)
    return {f.path: f for f in facts}


def test_v2_limited_and_scoped_cgroups(tmp_path):
    probe = CgroupsProbe()
    facts = _facts(probe, v2_tree(tmp_path))
    # limited: web (cpu, memory, pids, io), paused (frozen), user.slice (memory);
    # scoped: idle.service; not reported: the root, system.slice, user-1000.slice
    assert set(facts) == {"/system.slice/web.service", "/paused.scope", "/user.slice",
                          "/system.slice/idle.service"}
    web = facts["/system.slice/web.service"]
    assert web.version == 2 and web.controllers == "cpu,io,memory,pids" and not web.in_scope
    assert (web.cpu_quota_us, web.cpu_period_us, web.cpu_limit_cpus) == (50000, 100000, 0.5)
    assert (web.nr_periods, web.nr_throttled, web.throttled_us) == (100, 40, 2500000)
    assert web.throttled_ratio_total_pct == 40.0
    assert web.throttled_ratio_pct is None  # one sample
    assert web.memory_limit_bytes == web.memory_limit_effective_bytes == 536870912
    assert web.memory_high_bytes is None and web.memory_usage_pct == 75.0
    assert (web.memory_max_events, web.oom_kill_total, web.memory_failcnt) == (12, 1, None)
    assert (web.pids_current, web.pids_max, web.pids_max_events, web.pids_pct) == (90, 100, 3, 90.0)
    assert web.io_throttled is True and web.io_throttle_rules == "8:0 wbps=1048576"
    assert web.frozen is False
    assert (web.cpuset_cpus, web.cpuset_cpus_count) == ("0-1", 2)
    assert (web.cpu_some_avg10, web.cpu_full_avg10, web.memory_some_avg10) == (30.5, 20.0, 1.5)
    assert web.source.endswith("sys/fs/cgroup/system.slice/web.service")
    assert facts["/paused.scope"].frozen is True
    idle = facts["/system.slice/idle.service"]
    assert idle.in_scope and idle.cpu_quota_us is None and idle.cpu_period_us is None
    assert idle.memory_limit_bytes is None and idle.memory_usage_pct is None
    assert facts["/user.slice"].memory_limit_bytes == 1073741824
    assert not probe.warnings


def test_v2_effective_memory_limit_comes_from_an_ancestor(tmp_path):
    ctx = v2_tree(tmp_path)
    ctx = ProbeContext(proc_root=ctx.proc_root, sys_root=ctx.sys_root, live=False,
                       scope=Scope(cgroup="/user.slice/user-1000.slice"))
    user = _facts(CgroupsProbe(), ctx)["/user.slice/user-1000.slice"]
    assert user.in_scope
    assert user.memory_limit_bytes is None  # its own: none
    assert user.memory_limit_effective_bytes == 1073741824  # user.slice's
    assert user.memory_usage_pct == 75.0


def test_v2_deltas_over_the_window(tmp_path):
    probe = CgroupsProbe()
    ctx = v2_tree(tmp_path, throttled=40, periods=100, oom_kill=1)
    first = probe.sample(ctx)
    v2_tree(tmp_path, throttled=70, periods=140, oom_kill=3)  # 2 s later
    facts = {f.path: f for f in probe.facts(ctx, first, probe.sample(ctx), 2.0)}
    web = facts["/system.slice/web.service"]
    assert web.nr_throttled_delta == 30 and web.throttled_ratio_pct == 75.0
    assert web.oom_kill_delta == 2 and web.oom_kill_total == 3
    assert facts["/paused.scope"].throttled_ratio_pct is None  # no cpu.stat at all


def v1_tree(tmp: Path, link_cpu: bool = True) -> ProbeContext:
    base = "sys/fs/cgroup"
    files: dict[str, str] = {}
    files.update(_cg(f"{base}/cpu,cpuacct", **{"cpu.cfs_quota_us": "-1\n",
                                               "cpu.cfs_period_us": "100000\n",
                                               "cpu.stat": "nr_periods 0\nnr_throttled 0\n"
                                                           "throttled_time 0\n"}))
    files.update(_cg(f"{base}/cpu,cpuacct/docker/abc", **{
        "cpu.cfs_quota_us": "50000\n", "cpu.cfs_period_us": "100000\n",
        "cpu.stat": "nr_periods 100\nnr_throttled 40\nthrottled_time 2000000000\n"
                    "nr_bursts 0\nburst_time 0\n"}))
    files.update(_cg(f"{base}/cpu,cpuacct/docker", **{"cpu.cfs_quota_us": "-1\n"}))
    files.update(_cg(f"{base}/memory", **{"memory.limit_in_bytes": "9223372036854771712\n"}))
    files.update(_cg(f"{base}/memory/docker/abc", **{
        "memory.limit_in_bytes": "268435456\n", "memory.usage_in_bytes": "201326592\n",
        "memory.failcnt": "7\n",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        "memory.stat": "cache 0\nrss 201326592\nhierarchical_memory_limit 268435456\n"}))
    files.update(_cg(f"{base}/memory/other", **{
        "memory.limit_in_bytes": "9223372036854771712\n",
        "memory.stat": "hierarchical_memory_limit 9223372036854771712\n"}))
    for root in ("pids", "freezer", "blkio", "cpuset"):
        files.update(_cg(f"{base}/{root}"))
    files.update(_cg(f"{base}/pids/docker/abc", **{
        "pids.current": "10\n", "pids.max": "max\n", "pids.events": "max 0\n"}))
    files.update(_cg(f"{base}/freezer/paused", **{"freezer.state": "FROZEN\n"}))
    files.update(_cg(f"{base}/freezer/docker/abc", **{"freezer.state": "THAWED\n"}))
    files.update(_cg(f"{base}/blkio/docker/abc", **{
        "blkio.throttle.write_bps_device": "8:0 1048576\n",
        "blkio.throttle.read_bps_device": "", "blkio.throttle.read_iops_device": "",
        "blkio.throttle.write_iops_device": ""}))
    files.update(_cg(f"{base}/cpuset/docker/abc", **{"cpuset.effective_cpus": "0-3,6\n"}))
    files.update(_cg(f"{base}/unified/docker/abc", **{
        "cpu.pressure": PSI.format(some=42.0, full=10.0)}))
    files[f"{base}/unified/cgroup.procs"] = ""
    files["proc/77/cgroup"] = ("12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n"
                               "3:memory:/docker/abc\n0::/docker/abc\n")
    _write(tmp, files)
    if link_cpu:
        (tmp / base / "cpu").symlink_to("cpu,cpuacct")  # as systemd sets it up
    return ProbeContext(proc_root=tmp / "proc", sys_root=tmp / "sys", live=False,
                        scope=Scope(pid=77))


@pytest.mark.parametrize("link_cpu", [True, False])
def test_v1_merges_controller_hierarchies_per_path(tmp_path, link_cpu):
    ctx = v1_tree(tmp_path, link_cpu)
    layout = detect_layout(ctx)
    assert layout.version == 1 and layout.unified is not None
    probe = CgroupsProbe()
    facts = _facts(probe, ctx)
    assert set(facts) == {"/docker/abc", "/paused"}  # /other: the sentinel is no limit
    abc = facts["/docker/abc"]
    assert abc.version == 1 and abc.in_scope
    assert abc.controllers == "cpu,memory,pids,blkio,freezer,cpuset"
    assert (abc.cpu_quota_us, abc.cpu_period_us, abc.cpu_limit_cpus) == (50000, 100000, 0.5)
    assert abc.throttled_us == 2000000  # v1 reports ns
    assert abc.throttled_ratio_total_pct == 40.0
    assert abc.memory_limit_bytes == abc.memory_limit_effective_bytes == 268435456
    assert (abc.memory_usage_bytes, abc.memory_usage_pct) == (201326592, 75.0)
    assert (abc.memory_failcnt, abc.oom_kill_total, abc.memory_max_events) == (7, 2, None)
    assert (abc.pids_current, abc.pids_max, abc.pids_max_events) == (10, None, 0)
    assert abc.io_throttled is True and abc.io_throttle_rules == "8:0 write_bps=1048576"
    assert abc.frozen is False
    assert (abc.cpuset_cpus, abc.cpuset_cpus_count) == ("0-3,6", 5)
    assert (abc.cpu_some_avg10, abc.cpu_full_avg10) == (42.0, 10.0)  # from unified/
    assert "{cpu,memory,pids,blkio,freezer,cpuset}/docker/abc" in abc.source
    assert facts["/paused"].frozen is True and facts["/paused"].controllers == "freezer"
    assert not probe.warnings


def test_walk_is_bounded_and_says_so(tmp_path, monkeypatch):
    ctx = v2_tree(tmp_path)
    for index in range(30):
        (tmp_path / f"sys/fs/cgroup/aaa-{index:02d}").mkdir()
    monkeypatch.setattr(cgroups, "MAX_DIRS", 10)
    probe = CgroupsProbe()
    facts = _facts(probe, ctx)
    assert any("stopped after 10 directories" in w for w in probe.warnings)
    # the scoped cgroup is reported even beyond the walk
    assert "/system.slice/idle.service" in facts
    assert "/system.slice/web.service" not in facts  # breadth first: not reached


def test_scope_pid_that_is_gone_and_cgroup_that_does_not_exist(tmp_path):
    ctx = v2_tree(tmp_path)
    ctx = ProbeContext(proc_root=ctx.proc_root, sys_root=ctx.sys_root, live=False,
                       scope=Scope(pid=999999, cgroup="/no/such.service"))
    probe = CgroupsProbe()
    facts = _facts(probe, ctx)
    assert "/no/such.service" not in facts
    assert any("pid 999999: no such process" in w for w in probe.warnings)
    assert any("/no/such.service (in scope) not found" in w for w in probe.warnings)


@pytest.mark.parametrize("given, version, expected", [
    ("/system.slice/x.service", 2, "/system.slice/x.service"),
    ("system.slice/x.service/", 2, "/system.slice/x.service"),
    ("/sys/fs/cgroup/system.slice/x.service", 2, "/system.slice/x.service"),
    ("/sys/fs/cgroup/memory/docker/abc", 1, "/docker/abc"),
    ("/sys/fs/cgroup/cpu,cpuacct/docker/abc", 1, "/docker/abc"),
    ("/sys/fs/cgroup/unified/docker/abc", 1, "/docker/abc"),  # any hierarchy's directory
    ("/memory/docker", 1, "/memory/docker"),  # without the mount prefix: a plain path
    ("/sys/fs/cgroup", 2, "/"),
])
def test_normalize_cgroup_path(tmp_path, given, version, expected):
    ctx = v2_tree(tmp_path) if version == 2 else v1_tree(tmp_path)
    assert normalize_cgroup_path(given, detect_layout(ctx)) == expected


def test_scope_cgroup_may_not_leave_the_hierarchy(tmp_path):
    ctx = v2_tree(tmp_path)
    with pytest.raises(ValueError, match="'..' is not allowed"):
        normalize_cgroup_path("/system.slice/../../../etc", detect_layout(ctx))
    ctx = ProbeContext(proc_root=ctx.proc_root, sys_root=ctx.sys_root, live=False,
                       scope=Scope(cgroup="/../.."))
    probe = CgroupsProbe()
    facts = _facts(probe, ctx)
    assert "/" not in facts and any("'..' is not allowed" in w for w in probe.warnings)


def test_no_cgroup_tree_is_unavailable(tmp_path):
    ctx = ProbeContext(proc_root=tmp_path / "proc", sys_root=tmp_path / "sys", live=False)
    with pytest.raises(Unavailable, match="no cgroup filesystem"):
        CgroupsProbe().check(ctx)
    (tmp_path / "sys/fs/cgroup").mkdir(parents=True)
    with pytest.raises(Unavailable, match="neither a cgroup2 tree"):
        CgroupsProbe().check(ctx)


def test_fixture_tree_has_no_cgroups():
    if not FIXTURES.is_dir():
        pytest.skip(f"fixture tree {FIXTURES} not present")
    ctx = ProbeContext(proc_root=FIXTURES / "proc", sys_root=FIXTURES / "sys", live=False)
    with pytest.raises(Unavailable, match="sys/fs/cgroup does not exist"):
        CgroupsProbe().check(ctx)


# --- live: a cgroup with a CPU quota and a busy child ------------------------------

CGROUP_BASE = Path("/sys/fs/cgroup")


def _live_cgroup_dirs(name: str) -> tuple[int, dict[str, Path]]:
    """Where to create the test cgroup: v2 needs cpu and memory enabled at the root
    (enabling them would change the host: skip instead); v1 uses the cpu and memory
    hierarchies."""
    if (CGROUP_BASE / "cgroup.controllers").exists():
        enabled = (CGROUP_BASE / "cgroup.subtree_control").read_text().split()
        if "cpu" not in enabled or "memory" not in enabled:
            pytest.skip("cgroup v2 root does not delegate cpu and memory")
        return 2, {"all": CGROUP_BASE / name}
    dirs = {c: CGROUP_BASE / c / name for c in ("cpu", "memory")}
    for controller in dirs:
        if not (CGROUP_BASE / controller / "cgroup.procs").exists():
            pytest.skip(f"no v1 {controller} hierarchy")
    return 1, dirs


def _rmdir(path: Path) -> None:
    deadline = time.monotonic() + 10
    while path.exists():
        try:
            path.rmdir()
        except OSError:  # EBUSY until the killed child has left the cgroup
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.live
@pytest.mark.root
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="creating cgroups needs root")
def test_live_cpu_quota_throttles_a_busy_child():
    name = f"sysdiag-test-{os.getpid()}"
    version, dirs = _live_cgroup_dirs(name)
    child = None
    created: list[Path] = []
    try:
        for d in dirs.values():
            d.mkdir()
            created.append(d)
        if version == 2:
            (dirs["all"] / "cpu.max").write_text("10000 100000\n")
            (dirs["all"] / "memory.max").write_text(f"{64 << 20}\n")
        else:
            (dirs["cpu"] / "cpu.cfs_period_us").write_text("100000\n")
            (dirs["cpu"] / "cpu.cfs_quota_us").write_text("10000\n")
            (dirs["memory"] / "memory.limit_in_bytes").write_text(f"{64 << 20}\n")
        child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        # only the cpu cgroup gets the child: its memory cgroup is left as it was
        cpu_dir = dirs["all"] if version == 2 else dirs["cpu"]
        (cpu_dir / "cgroup.procs").write_text(f"{child.pid}\n")
        time.sleep(0.3)
        ctx = ProbeContext(scope=Scope(pid=child.pid))
        probe = CgroupsProbe()
        first = probe.sample(ctx)
        time.sleep(1.0)
        facts = {f.path: f for f in probe.facts(ctx, first, probe.sample(ctx), 1.0)}
        fact = facts[f"/{name}"]
        assert fact.version == version and fact.in_scope
        assert (fact.cpu_quota_us, fact.cpu_period_us, fact.cpu_limit_cpus) == (10000, 100000, 0.1)
        assert fact.nr_throttled_delta is not None and fact.nr_throttled_delta >= 5
        assert fact.throttled_ratio_pct is not None and fact.throttled_ratio_pct > 50
        assert fact.throttled_us is not None and fact.throttled_us > 0
        assert fact.memory_limit_bytes == 64 << 20
    finally:
        if child is not None:
            child.kill()
            child.wait(timeout=10)
        for d in reversed(created):
            _rmdir(d)
