#!/usr/bin/env python3
"""Load test of `sysdiag serve` on loopback: a bounded burst of Alertmanager webhooks
while /healthz is polled, to show the service stays responsive and the queue bound holds.

    .venv/bin/python bench/bench_serve.py [--alerts 200] [--seconds 5] [--queue-size 4]

Starts the real service (a child process, random free port), sends `--alerts` webhook
POSTs spread evenly over `--seconds` (each a distinct alert: 12 alert names over 7
symptoms, some scoped to `lo`), polls /healthz every 20 ms meanwhile, then waits for
the queue to drain. Prints latency percentiles, outcomes, the largest queue seen and
what ran; exits 1 if the queue bound or the one-per-symptom rule was broken. Every
diagnosis is a real one of this host (window --window seconds).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

TOKEN = "bench-token-0123456789abcdef"
NAMES = [("HostHighCpuLoad", {}), ("HostContextSwitching", {}), ("HostOutOfMemory", {}),
         ("HostSwapIsFillingUp", {}), ("HostOomKillDetected", {}),
         ("HostOutOfDiskSpace", {"mountpoint": "/"}), ("HostOutOfInodes", {"mountpoint": "/"}),
         ("HostUnusualDiskReadLatency", {"device": "sda"}), ("HostUnusualDiskIo", {}),
         ("HostNetworkReceiveErrors", {"device": "lo"}), ("HostNetworkTransmitErrors", {}),
         ("HostConntrackLimit", {})]


def start(workdir: Path, queue_size: int, window: float) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "SYSDIAG_SERVE_TOKEN": TOKEN}
    err = open(workdir / "stderr", "w")  # noqa: SIM115 - lives as long as the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "sysdiag.cli", "serve", "--port", "0", "--window", str(window),
         "--queue-size", str(queue_size), "--audit-log", str(workdir / "audit.jsonl")],
        stdout=subprocess.DEVNULL, stderr=err, env=env)
    end = time.monotonic() + 30
    while time.monotonic() < end:
        match = re.search(r"listening on http://\S+:(\d+)", (workdir / "stderr").read_text())
        if match:
            return proc, int(match.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"sysdiag serve did not start: {(workdir / 'stderr').read_text()}")


def payload(i: int) -> dict:
    name, extra = NAMES[i % len(NAMES)]
    labels = {"alertname": name, "instance": f"{socket.gethostname()}:9100", "job": "node",
              "severity": "warning", "burst_seq": str(i), **extra}
    return {"version": "4", "groupKey": f'{{}}:{{alertname="{name}"}}', "truncatedAlerts": 0,
            "status": "firing", "receiver": "sysdiag", "groupLabels": {"alertname": name},
            "commonLabels": labels, "commonAnnotations": {},
            "externalURL": "http://alertmanager.example:9093",
            "alerts": [{"status": "firing", "labels": labels, "annotations": {},
                        "startsAt": "2024-05-01T02:13:00Z", "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "http://prometheus.example:9090/graph",
                        "fingerprint": f"{i:016x}"}]}


async def burst(url: str, count: int, seconds: float, queue_size: int) -> dict:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=64)
    post_ms: list[float] = []
    health_ms: list[float] = []
    statuses: Counter = Counter()
    outcomes: Counter = Counter()
    queued_seen: list[int] = []
    done = asyncio.Event()

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30,
                                 limits=limits) as client:
        async def post(i: int) -> None:
            t = time.perf_counter()
            resp = await client.post("/alertmanager", json=payload(i))
            post_ms.append((time.perf_counter() - t) * 1000)
            statuses[resp.status_code] += 1
            for line in resp.json().get("results", []):
                outcomes[line["outcome"]] += 1

        async def poll() -> None:
            while not done.is_set():
                t = time.perf_counter()
                resp = await client.get("/healthz")
                health_ms.append((time.perf_counter() - t) * 1000)
                queued_seen.append(resp.json()["queued"])
                await asyncio.sleep(0.02)

        poller = asyncio.create_task(poll())
        started = time.monotonic()
        tasks = []
        for i in range(count):
            tasks.append(asyncio.create_task(post(i)))
            await asyncio.sleep(max(0.0, started + (i + 1) * seconds / count - time.monotonic()))
        await asyncio.gather(*tasks)
        burst_s = time.monotonic() - started
        done.set()
        await poller

        drain_start = time.monotonic()
        while (await client.get("/healthz")).json()["queued"] and \
                time.monotonic() - drain_start < 300:
            await asyncio.sleep(0.2)
        drain_s = time.monotonic() - drain_start
    return {"post_ms": post_ms, "health_ms": health_ms, "statuses": statuses,
            "outcomes": outcomes, "max_queued": max(queued_seen, default=0),
            "burst_s": burst_s, "drain_s": drain_s, "queue_size": queue_size}


def overlaps(events: list[dict]) -> list[str]:
    """Symptoms that had two diagnoses running at once (audit log)."""
    running: dict[str, int] = {}
    bad = []
    for e in events:
        if e["event"] == "diagnosis_started":
            running[e["symptom"]] = running.get(e["symptom"], 0) + 1
            if running[e["symptom"]] > 1:
                bad.append(e["symptom"])
        elif e["event"] == "diagnosis_finished":
            running[e["symptom"]] -= 1
    return bad


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--queue-size", type=int, default=4)
    parser.add_argument("--window", type=float, default=0.5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        workdir = Path(tmp)
        proc, port = start(workdir, args.queue_size, args.window)
        try:
            res = asyncio.run(burst(f"http://127.0.0.1:{port}", args.alerts, args.seconds,
                                    args.queue_size))
            # let the last running diagnosis finish so the audit log is complete
            time.sleep(args.window + 3)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        events = [json.loads(line) for line in (workdir / "audit.jsonl").read_text().splitlines()]

    runs = [e for e in events if e["event"] == "diagnosis_finished"]
    durations = [e["duration_s"] for e in runs]
    bad_overlap = overlaps(events)
    print(f"burst: {args.alerts} alerts in {res['burst_s']:.2f} s "
          f"(target {args.seconds:g} s), queue size {args.queue_size}, window {args.window:g} s")
    print(f"POST /alertmanager  p50 {pct(res['post_ms'], 50):7.1f} ms  "
          f"p99 {pct(res['post_ms'], 99):7.1f} ms  max {max(res['post_ms']):7.1f} ms")
    print(f"GET  /healthz       p50 {pct(res['health_ms'], 50):7.1f} ms  "
          f"p99 {pct(res['health_ms'], 99):7.1f} ms  max {max(res['health_ms']):7.1f} ms  "
          f"({len(res['health_ms'])} polls)")
    print(f"HTTP statuses: {dict(sorted(res['statuses'].items()))}")
    print(f"alert outcomes: {dict(sorted(res['outcomes'].items()))}")
    print(f"largest queue seen: {res['max_queued']} (bound {args.queue_size})")
    print(f"diagnoses run: {len(runs)}, each {statistics.mean(durations):.2f} s on average "
          f"(max {max(durations):.2f} s); queue drained {res['drain_s']:.1f} s after the burst"
          if runs else "diagnoses run: 0")
    print(f"same symptom running twice at once: {bad_overlap or 'never'}")
    ok = res["max_queued"] <= args.queue_size and not bad_overlap and \
        set(res["statuses"]) <= {202, 503}
    print("OK" if ok else "FAILED: the queue bound, the one-per-symptom rule or a status broke")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
