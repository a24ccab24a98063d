"""Helpers for the `sysdiag serve` tests and benchmark: the real service in a child
process on a free loopback port, a tiny HTTP receiver for deliveries, and Alertmanager
payloads as its webhook sends them (version "4")."""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional

import httpx

TOKEN = "test-token-0123456789abcdef"
HOST = socket.gethostname()


class Service:
    """`sysdiag serve --port 0 ...` in a child process; stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, workdir: Path, *args: str, token: Optional[str] = TOKEN,
                 env: Optional[dict[str, str]] = None):
        self.workdir = workdir
        self.audit_path = workdir / "audit.jsonl"
        self.stderr_path = workdir / "serve.stderr"
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("SYSDIAG_")}
        if token is not None:
            child_env["SYSDIAG_SERVE_TOKEN"] = token
        child_env.update(env or {})
        self.client: Optional[httpx.Client] = None
        self.argv = [sys.executable, "-m", "sysdiag.cli", "serve", "--port", "0",
                     "--audit-log", str(self.audit_path), *args]
        self._stderr = open(self.stderr_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=self._stderr,
                                     env=child_env, cwd=workdir)
        try:
            self.port = self._wait_port()
        except BaseException:
            self.client = None
            self.stop()
            raise
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=30.0,
                                   headers={"Authorization": f"Bearer {token}"} if token else {})

    def _wait_port(self, timeout: float = 30.0) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            text = self.stderr_path.read_text()
            for line in text.splitlines():
                if "listening on http" in line:
                    port = int(re.search(r"https?://\S+:(\d+)", line).group(1))
                    if self._accepting(port):
                        return port
            if self.proc.poll() is not None:
                raise RuntimeError(f"sysdiag serve exited {self.proc.returncode}: {text}")
            time.sleep(0.05)
        raise RuntimeError(f"sysdiag serve did not start in {timeout} s: "
                           f"{self.stderr_path.read_text()}")

    @staticmethod
    def _accepting(port: int) -> bool:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2.0).raise_for_status()
            return True
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._stderr.close()

    def audit(self) -> list[dict[str, Any]]:
        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]

    def post_am(self, alerts: list[dict[str, Any]], **kw: Any) -> httpx.Response:
        return self.client.post("/alertmanager", json=am_payload(alerts), **kw)

    def wait(self, diag_id: str, timeout: float = 60.0,
             until: Any = lambda d: d["status"] in ("done", "failed")) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            doc = self.client.get(f"/diagnoses/{diag_id}").json()
            if until(doc):
                return doc
            if time.monotonic() > end:
                raise AssertionError(f"diagnosis {diag_id} not there in {timeout} s: {doc}")
            time.sleep(0.1)


def alert(name: str, status: str = "firing", instance: Optional[str] = None,
          **labels: str) -> dict[str, Any]:
    """One alert of the webhook payload, with every documented field."""
    all_labels = {"alertname": name, "instance": instance or f"{HOST}:9100",
                  "job": "node", "severity": "warning", **labels}
    return {"status": status, "labels": all_labels,
            "annotations": {"summary": f"{name} on {all_labels['instance']}"},
            "startsAt": "2024-05-01T02:13:00.000Z",
            "endsAt": "2024-05-01T02:20:00.000Z" if status == "resolved" else
                      "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example:9090/graph?g0.expr=up",
            # Alertmanager's own: a hash of the label set (sysdiag computes its own)
            "fingerprint": hashlib.sha1(json.dumps(sorted(all_labels.items())).encode())
            .hexdigest()[:16]}


def am_payload(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """The Alertmanager webhook body around `alerts`, as Alertmanager groups them."""
    common = {k: v for k, v in alerts[0]["labels"].items()
              if all(a["labels"].get(k) == v for a in alerts)}
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {"version": "4", "groupKey": '{}:{alertname="%s"}' % alerts[0]["labels"].get("alertname", ""),
            "truncatedAlerts": 0, "status": status, "receiver": "sysdiag",
            "groupLabels": {"alertname": alerts[0]["labels"].get("alertname", "")},
            "commonLabels": common, "commonAnnotations": {},
            "externalURL": "http://alertmanager.example:9093", "alerts": alerts}


class Receiver:
    """A tiny HTTP server that records every POST. `script[path]` lists the statuses to
    answer in order (then 200)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.script: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.posts.append({"path": self.path, "json": json.loads(body),
                                           "content_type": self.headers.get("Content-Type")})
                    codes = receiver.script.get(self.path, [])
                    code = codes.pop(0) if codes else 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                return  # quiet: the test checks `posts`

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_posts(self, path: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                got = [p for p in self.posts if p["path"] == path]
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{count} POSTs to {path} expected, got {len(got)}")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
