"""Look-alike ranking for the storage, cgroup and D-state rules, with the symptom's
playbook as the candidate list (KNOWLEDGE §4 order, §7 causal links):
- io-latency: a cgroup's io.max and a saturated device both make I/O slow; only the
  device's own await and queue tell them apart;
- process-hang: a reader stuck on a FUSE daemon and a task in a frozen cgroup both look
  like "a task that does not move"; the wait channel and the cgroup tell them apart, and
  the specific cause ranks above the generic proc-d-state-blocked;
- disk-full: out of inodes and out of blocks both give ENOSPC; df -i vs df tells.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from rule_case_helpers import build_facts

from sysdiag.engine import load_rulebase, run_engine

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"


@pytest.fixture(scope="module")
def rulebase():
    return load_rulebase()


def candidates(symptom: str) -> list[str]:
    return yaml.safe_load((PLAYBOOKS / f"{symptom}.yaml").read_text(encoding="utf-8"))["hypotheses"]


def ranked(rulebase, facts, symptom):
    result = run_engine(rulebase, build_facts(facts), candidates(symptom), [])
    assert not result.rule_errors, result.rule_errors
    return result


def order(result) -> list[str]:
    return [h.id for h in result.hypotheses]


def ruled_out(result) -> set[str]:
    return {r.id for r in result.ruled_out}


HOST = {"kind": "host", "hostname": "h1", "virtualization": "bare-metal", "cpu_count": 4}
SSD_FAST = {"kind": "block_device", "name": "sda", "major": 8, "minor": 0, "rotational": False,
            "util_pct": 6.0, "await_ms": 0.4, "avg_queue": 0.1}
HDD_SATURATED = {"kind": "block_device", "name": "sda", "major": 8, "minor": 0,
                 "rotational": True, "util_pct": 99.0, "await_ms": 90.0, "avg_queue": 14.0}
IO_PSI = {"kind": "psi", "resource": "io", "some_avg10": 35.0, "full_avg10": 12.0}
CG_THROTTLED = {"kind": "cgroup", "path": "/system.slice/backup.service", "version": 2,
                "io_throttled": True, "io_throttle_rules": "8:0 wbps=1048576",
                "io_some_avg10": 60.0}
CG_LIMIT_IDLE = {**CG_THROTTLED, "io_some_avg10": 0.3}


@pytest.mark.parametrize("facts,first,out", [
    ([HOST, SSD_FAST, IO_PSI, CG_THROTTLED], "io-cgroup-throttle", "io-device-saturation"),
    ([HOST, HDD_SATURATED, IO_PSI, CG_LIMIT_IDLE], "io-device-saturation", "io-cgroup-throttle"),
], ids=["cgroup-limit-on-a-fast-device", "saturated-device-with-an-idle-limit"])
def test_io_latency_cgroup_limit_vs_device(rulebase, facts, first, out):
    result = ranked(rulebase, facts, "io-latency")
    assert order(result)[0] == first, order(result)
    assert out in ruled_out(result), order(result)


def test_io_latency_both_present_device_first_when_the_device_is_slow(rulebase):
    """A limited cgroup that stalls on a device which is itself slow: the device explains it,
    and the cgroup finding is weakened by its own evidence against."""
    result = ranked(rulebase, [HOST, HDD_SATURATED, IO_PSI, CG_THROTTLED], "io-latency")
    ids = order(result)
    assert ids[0] == "io-device-saturation", ids
    cg = [h for h in result.hypotheses if h.id == "io-cgroup-throttle"]
    assert not cg or cg[0].score < result.hypotheses[0].score


READER_IN_FUSE = {"kind": "process", "pid": 7002, "comm": "ls", "state": "D", "state_first": "D",
                  "state_stable": True, "wchan": "request_wait_answer", "cpu_pct": 0.0,
                  "cgroup": "/user.slice", "tracer_pid": 0}
FUSE_STUCK = {"kind": "fuse_connection", "conn": 48, "mountpoint": "/mnt/fuse",
              "fstype": "fuse.bindfs", "waiting": 2, "waiting_first": 2, "waiting_stable": True}
FUSE_STATFS = {"kind": "filesystem_unresponsive", "mountpoint": "/mnt/fuse",
               "fstype": "fuse.bindfs", "fuse": True, "waited_s": 2.0}
FROZEN_CG = {"kind": "cgroup", "path": "/docker/abc", "version": 1, "frozen": True}
TASK_FROZEN = {"kind": "process", "pid": 7300, "comm": "nginx", "state": "D", "state_first": "D",
               "state_stable": True, "wchan": "__refrigerator", "cpu_pct": 0.0,
               "cgroup": "/docker/abc", "tracer_pid": 0}


def test_process_hang_fuse_stall_ranks_above_d_state(rulebase):
    result = ranked(rulebase, [HOST, READER_IN_FUSE, FUSE_STUCK, FUSE_STATFS], "process-hang")
    ids = order(result)
    assert ids[0] == "io-userspace-fs-unresponsive", ids
    assert ids.index("io-userspace-fs-unresponsive") < ids.index("proc-d-state-blocked")
    assert "proc-stopped-traced" not in ids
    top = result.hypotheses[0]
    assert top.certainty == "confirmed"
    assert "proc-d-state-blocked" in top.causes
    # three levels: process -> blocked_task (route fuse) -> the hypothesis
    assert any(child.rule.startswith("derive.blocked-task.fuse")
               for node in top.derivation for child in node.children), top.derivation


def test_process_hang_frozen_cgroup_ranks_above_d_state(rulebase):
    result = ranked(rulebase, [HOST, FROZEN_CG, TASK_FROZEN], "process-hang")
    ids = order(result)
    assert ids[0] == "proc-stopped-traced", ids
    assert ids.index("proc-stopped-traced") < ids.index("proc-d-state-blocked")
    assert "io-userspace-fs-unresponsive" not in ids
    assert result.hypotheses[0].subject == "pid 7300 (nginx)"
    assert result.hypotheses[0].certainty == "confirmed"


@pytest.mark.parametrize("wchan,specific", [
    ("rpc_wait_bit_killable", "io-nfs-unresponsive"),
    ("balance_dirty_pages", "io-dirty-writeback-throttle"),
    ("request_wait_answer", "io-userspace-fs-unresponsive"),
])
def test_d_state_routes_to_the_specific_cause(rulebase, wchan, specific):
    task = {**READER_IN_FUSE, "wchan": wchan}
    result = ranked(rulebase, [HOST, task], "process-hang")
    ids = order(result)
    assert specific in ids and "proc-d-state-blocked" in ids, ids
    assert ids.index(specific) < ids.index("proc-d-state-blocked"), ids


FS = {"kind": "filesystem", "fstype": "ext4", "device": "/dev/sda1", "size_bytes": 53687091200,
      "avail_bytes": 2147483648}
INODES_FULL = {**FS, "mountpoint": "/var", "used_pct": 41.0, "inodes_total": 3276800,
               "inodes_free": 12, "inodes_used_pct": 100.0}
BLOCKS_FULL = {**FS, "mountpoint": "/var", "used_pct": 98.0, "avail_bytes": 1073741824,
               "inodes_total": 3276800, "inodes_free": 2900000, "inodes_used_pct": 11.5}
DELETED_LOG = {"kind": "deleted_files", "mount_id": 30, "mountpoint": "/var", "fstype": "ext4",
               "bytes_held": 21474836480, "files": 1, "holders": 1,
               "largest_bytes": 21474836480, "largest_path": "/var/log/app.log"}


@pytest.mark.parametrize("facts,first,out", [
    ([HOST, INODES_FULL], "fs-inodes-full", "fs-blocks-full"),
    ([HOST, BLOCKS_FULL], "fs-blocks-full", "fs-inodes-full"),
], ids=["out-of-inodes", "out-of-blocks"])
def test_disk_full_inodes_vs_blocks(rulebase, facts, first, out):
    result = ranked(rulebase, facts, "disk-full")
    assert order(result)[0] == first, order(result)
    assert out in ruled_out(result), order(result)
    assert result.hypotheses[0].subject == "/var"


def test_disk_full_deleted_open_file_ranks_above_blocks_full(rulebase):
    result = ranked(rulebase, [HOST, BLOCKS_FULL, DELETED_LOG], "disk-full")
    ids = order(result)
    assert ids[:2] == ["fs-deleted-open", "fs-blocks-full"], ids
    assert result.hypotheses[1].caused_by == ["fs-deleted-open"]
