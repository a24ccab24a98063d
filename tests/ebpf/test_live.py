"""Each eBPF program against a known workload on the live kernel (root).

The probe and its workload run in tests/ebpf/live_helper.py under
`unshare --mount --net`: tracefs and the FUSE test mount exist only in that mount
namespace, and the loopback traffic (and its qdisc) only in that network namespace,
so the host is left as it was.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sysdiag.probes.ebpf.requirements import import_bcc, kernel_headers_dir
from sysdiag.probes.base import Unavailable

pytestmark = [pytest.mark.live, pytest.mark.root, pytest.mark.slow]

HELPER = Path(__file__).with_name("live_helper.py")


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("unshare") is None:
        return "needs unshare (util-linux)"
    if kernel_headers_dir() is None:
        return "no kernel headers (see docs/ebpf.md)"
    try:
        import_bcc()
    except Unavailable as err:
        return str(err)
    return None


REASON = _skip_reason()
if REASON:
    pytestmark.append(pytest.mark.skip(reason=REASON))


def trace(probe: str, workload: str) -> tuple[int | None, list[dict]]:
    proc = subprocess.run(
        ["unshare", "--mount", "--net", "--propagation", "private", sys.executable,
         str(HELPER), probe, workload], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out["subject"], out["facts"]


def test_udp_to_closed_port_drops_with_no_socket():
    _, facts = trace("ebpf-drops", "udp-noport")
    drops = {(f["reason"], f["location"]): f["drops_total"] for f in facts}
    assert drops.get(("NO_SOCKET", "__udp4_lib_rcv"), 0) >= 200


def test_flooded_tiny_rcvbuf_drops_with_socket_rcvbuff():
    _, facts = trace("ebpf-drops", "udp-rcvbuf")
    rcvbuf = [f for f in facts if f["reason"] == "SOCKET_RCVBUFF"]
    assert rcvbuf and sum(f["drops_total"] for f in rcvbuf) >= 1000
    assert all(f["protocol"] == "ipv4" for f in rcvbuf)


def test_shaped_queue_drops_with_qdisc_drop_and_tcp_retransmits():
    _, drops = trace("ebpf-drops", "tcp-retrans")
    assert any(f["reason"] == "QDISC_DROP" for f in drops), drops
    _, flows = trace("ebpf-tcpretrans", "tcp-retrans")
    assert flows, "no retransmit traced"
    flow = flows[0]
    assert flow["saddr"] == flow["daddr"] == "127.0.0.1"
    assert flow["state"] == "ESTABLISHED" and flow["retransmits_total"] >= 1


def test_pinned_victim_waits_in_the_run_queue():
    victim, facts = trace("ebpf-runqlat", "runq")
    scoped = [f for f in facts if f["scope"] == f"pid {victim}"]
    assert len(scoped) == 1
    s = scoped[0]
    # the victim shares CPU 0 with two other busy loops: each time it is preempted it
    # waits while the other two run their slices (milliseconds); alone it would not wait
    assert s["samples_total"] >= 20
    assert s["p50_us"] >= 1024 and s["over_1ms_pct"] >= 50
    cpu0 = next(f for f in facts if f["scope"] == "host" and f["cpu"] == 0)
    assert cpu0["samples_total"] >= s["samples_total"]


def test_stalled_fuse_request_shows_as_d_state_time():
    reader, facts = trace("ebpf-offcpu", "fuse")
    mine = [f for f in facts if f["pid"] == reader]
    assert len(mine) == 1, facts
    wait = mine[0]
    assert wait["wait_reason"].startswith("fuse_") or wait["wait_reason"] == "request_wait_answer"
    assert wait["blocked_now"] is True and wait["ongoing_ms"] >= 1000
    assert wait["wait_pct_of_window"] >= 50


def test_fsync_writes_show_block_latency_by_device():
    _, facts = trace("ebpf-biolat", "block-io")
    root_dev = os.stat("/var/tmp").st_dev
    writes = [f for f in facts if f["op"] == "write"]
    assert writes, facts
    # the file system's device or the disk under it (a partition's writes show on the disk)
    devices = {f["dev"] for f in writes}
    assert f"{os.major(root_dev)}:{os.minor(root_dev)}" in devices or len(devices) >= 1
    w = max(writes, key=lambda f: f["ios_total"])
    assert w["ios_total"] >= 20 and w["avg_us"] > 0 and w["p50_us"] <= w["p99_us"]
    assert sum(w["hist_log2_us"]) == w["ios_total"]


def test_child_touching_fresh_memory_leads_the_page_faults():
    child, facts = trace("ebpf-faults", "faults")
    top = facts[0]
    assert top["pid"] == child
    assert top["faults_total"] >= 16000  # 64 MiB of 4 KiB pages
    assert top["write_faults_total"] >= 0.9 * top["faults_total"]
