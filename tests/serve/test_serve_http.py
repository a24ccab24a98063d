"""`sysdiag serve` end to end: the real service on loopback, real Alertmanager payloads
over HTTP, real diagnoses of this host, deliveries to a local receiver."""
from __future__ import annotations

import json
import time

import httpx
import pytest
from serve_helpers import HOST, TOKEN, Service, alert, am_payload

pytestmark = pytest.mark.live

FAST = ("--window", "0.2")


def outcomes(resp: httpx.Response) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in resp.json()["results"]:
        out.setdefault(line["outcome"], []).append(line["alert"])
    return out


def started_runs(service: Service) -> list[dict]:
    return [e for e in service.audit() if e["event"] == "diagnosis_started"]


def test_only_healthz_goes_without_the_token(serve):
    svc = serve(*FAST)
    body = am_payload([alert("HostHighCpuLoad")])
    with httpx.Client(base_url=svc.url, timeout=10) as anon:
        assert anon.get("/healthz").json()["status"] == "ok"
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"},
                        {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}):
            for method, path in (("POST", "/alertmanager"), ("POST", "/alerts"),
                                 ("GET", "/diagnoses"), ("GET", "/diagnoses/0123456789abcdef")):
                resp = anon.request(method, path, json=body if method == "POST" else None,
                                    headers=headers)
                assert resp.status_code == 401, (method, path, headers)
                assert resp.headers["www-authenticate"].startswith("Bearer")
    refused = [e for e in svc.audit() if e["event"] == "auth_refused"]
    assert len(refused) == 16
    assert not started_runs(svc)
    assert svc.client.get("/diagnoses").json()["diagnoses"] == []


def test_firing_alert_is_diagnosed_stored_and_delivered(serve, receiver):
    svc = serve(*FAST, "--webhook-url", f"{receiver.url}/hook",
                "--slack-url", f"{receiver.url}/slack/T000/B000/secret",
                "--public-url", "https://sysdiag.example:9877")
    resp = svc.post_am([alert("HostHighCpuLoad")])
    assert resp.status_code == 202
    (line,) = resp.json()["results"]
    assert line["outcome"] == "queued" and line["symptom"] == "high-cpu"
    doc = svc.wait(line["diagnosis"])

    assert doc["status"] == "done", doc["error"]
    report = doc["report"]
    assert report["symptom"] == "high-cpu" and report["host"]["hostname"]
    expected = 3 if report["incomplete"] else (1 if report["hypotheses_total"] else 0)
    assert doc["exit_code"] == expected
    assert doc["duration_s"] > 0 and doc["started_at"] and doc["finished_at"]
    (entry,) = doc["alerts"].values()
    assert entry["name"] == "HostHighCpuLoad" and entry["labels"]["instance"] == f"{HOST}:9100"

    md = svc.client.get(f"/diagnoses/{doc['id']}", headers={"Accept": "text/markdown"})
    assert md.headers["content-type"].startswith("text/markdown")
    assert md.text.startswith(f"# sysdiag diagnosis {doc['id']}")
    assert "HostHighCpuLoad" in md.text and "high-cpu" in md.text
    assert svc.client.get(f"/diagnoses/{doc['id']}?format=md").text == md.text
    assert svc.client.get(f"/diagnoses/{doc['id']}?format=json").json()["id"] == doc["id"]
    assert svc.client.get("/diagnoses/ffffffffffffffff").status_code == 404
    assert svc.client.get("/diagnoses/../etc").status_code == 404

    (hook,) = receiver.wait_posts("/hook", 1)
    assert hook["content_type"] == "application/json"
    assert hook["json"]["diagnosis"]["id"] == doc["id"]
    assert hook["json"]["diagnosis"]["report"]["symptom"] == "high-cpu"
    assert hook["json"]["link"] == f"https://sysdiag.example:9877/diagnoses/{doc['id']}"
    (slack,) = receiver.wait_posts("/slack/T000/B000/secret", 1)
    assert slack["json"]["text"].startswith("sysdiag: high-cpu on ")
    types = [b["type"] for b in slack["json"]["blocks"]]
    assert types == ["header", "section", "context"]
    assert "HostHighCpuLoad" in slack["json"]["blocks"][1]["text"]["text"]

    stored = svc.wait(doc["id"], until=lambda d: len(d["deliveries"]) == 2)
    by_kind = {d["destination"]: d for d in stored["deliveries"]}
    assert by_kind["webhook"]["status"] == by_kind["slack"]["status"] == "delivered"
    assert by_kind["slack"]["target"] == receiver.url  # the secret path is never stored
    assert "secret" not in svc.audit_path.read_text()

    finished = [e for e in svc.audit() if e["event"] == "diagnosis_finished"]
    assert [(e["diagnosis"], e["alertnames"], e["exit_code"]) for e in finished] == \
        [(doc["id"], ["HostHighCpuLoad"], doc["exit_code"])]
    assert finished[0]["duration_s"] == doc["duration_s"]


def test_repeats_reuse_the_diagnosis_within_the_window(serve):
    svc = serve(*FAST, "--reuse-window", "4")
    first = svc.post_am([alert("HostOomKillDetected")]).json()["results"][0]
    again = svc.post_am([alert("HostOomKillDetected")]).json()["results"][0]
    assert first["outcome"] == "queued" and again["outcome"] == "reused"
    assert again["diagnosis"] == first["diagnosis"]
    svc.wait(first["diagnosis"])
    # the same alert from the generic form has the same fingerprint
    generic = svc.client.post("/alerts", json={"name": "HostOomKillDetected", "labels": alert(
        "HostOomKillDetected")["labels"]}).json()["results"][0]
    assert (generic["outcome"], generic["diagnosis"]) == ("reused", first["diagnosis"])
    assert len(started_runs(svc)) == 1

    time.sleep(4.2)
    later = svc.post_am([alert("HostOomKillDetected")]).json()["results"][0]
    assert later["outcome"] == "queued" and later["diagnosis"] != first["diagnosis"]
    svc.wait(later["diagnosis"])
    assert len(started_runs(svc)) == 2


def test_grouped_alerts_map_to_symptoms_and_scopes(serve):
    svc = serve(*FAST)
    resp = svc.post_am([
        alert("HostOutOfMemory"),
        alert("HostMemoryUnderMemoryPressure"),  # same symptom: joins the first
        alert("HostOutOfDiskSpace", mountpoint="/var", device="/dev/sda1", fstype="ext4"),
        alert("HostNetworkReceiveErrors", device="lo"),
        alert("HostNetworkTransmitErrors", device="lo; reboot"),
        alert("HostNetworkBondDegraded", device="$(touch /tmp/pwned)"),
        alert("Watchdog"),
        alert("HostHighCpuLoad", instance="db-7.example:9100"),
    ])
    assert resp.status_code == 202
    got = outcomes(resp)
    assert got == {"queued": ["HostOutOfMemory", "HostOutOfDiskSpace",
                              "HostNetworkReceiveErrors", "HostNetworkTransmitErrors"],
                   "joined": ["HostMemoryUnderMemoryPressure", "HostNetworkBondDegraded"],
                   "unmapped": ["Watchdog"], "skipped": ["HostHighCpuLoad"]}
    lines = {r["alert"]: r for r in resp.json()["results"]}
    assert "not this host" in lines["HostHighCpuLoad"]["reason"]
    assert "--alertmap" in lines["Watchdog"]["reason"]

    memory = svc.wait(lines["HostOutOfMemory"]["diagnosis"])
    assert lines["HostMemoryUnderMemoryPressure"]["diagnosis"] == memory["id"]
    assert sorted(a["name"] for a in memory["alerts"].values()) == \
        ["HostMemoryUnderMemoryPressure", "HostOutOfMemory"]
    assert memory["report"]["symptom"] == "memory-pressure"

    disk = svc.wait(lines["HostOutOfDiskSpace"]["diagnosis"])
    assert disk["report"]["symptom"] == "disk-full"
    assert disk["context"] == {"mountpoint": "/var", "device": "/dev/sda1", "fstype": "ext4"}

    scoped = svc.wait(lines["HostNetworkReceiveErrors"]["diagnosis"])
    assert scoped["scope"] == {"iface": "lo"} and scoped["report"]["scope"]["iface"] == "lo"
    # label text that is not an interface name is dropped, said so, and never run
    unscoped = svc.wait(lines["HostNetworkTransmitErrors"]["diagnosis"])
    assert unscoped["scope"] == {} and unscoped["report"]["scope"]["iface"] is None
    assert lines["HostNetworkBondDegraded"]["diagnosis"] == unscoped["id"]
    assert any("'lo; reboot' is not an interface name" in n for n in unscoped["notes"])
    assert any("is not an interface name" in n and "touch" in n for n in unscoped["notes"])
    md = svc.client.get(f"/diagnoses/{unscoped['id']}?format=md").text
    assert "$(touch" not in md  # escaped for markdown: \$\(touch
    assert len(started_runs(svc)) == 4


def test_resolved_alerts_are_acknowledged_without_a_run(serve):
    svc = serve(*FAST)
    first = svc.post_am([alert("HostSwapIsFillingUp")]).json()["results"][0]
    svc.wait(first["diagnosis"])
    resp = svc.post_am([alert("HostSwapIsFillingUp", status="resolved"),
                        alert("HostClockSkew", status="resolved")])
    assert resp.status_code == 202
    lines = {r["alert"]: r for r in resp.json()["results"]}
    assert lines["HostSwapIsFillingUp"]["outcome"] == "acknowledged"
    assert lines["HostSwapIsFillingUp"]["diagnosis"] == first["diagnosis"]
    assert lines["HostClockSkew"]["outcome"] == "acknowledged"
    assert "diagnosis" not in lines["HostClockSkew"]

    doc = svc.client.get(f"/diagnoses/{first['diagnosis']}").json()
    (entry,) = doc["alerts"].values()
    assert entry["status"] == "resolved" and entry["ends_at"] == "2024-05-01T02:20:00.000Z"
    listing = svc.client.get("/diagnoses").json()
    assert [r["alert"] for r in listing["resolved"]] == ["HostClockSkew", "HostSwapIsFillingUp"]
    assert len(listing["diagnoses"]) == 1 and len(started_runs(svc)) == 1


@pytest.mark.parametrize("body, field", [
    (b"{not json", "body: not JSON"),
    (b"[]", "body: expected a JSON object"),
    (json.dumps({**am_payload([alert("HostHighCpuLoad")]), "version": "3"}).encode(),
     "version: expected \"4\""),
    (json.dumps({**am_payload([alert("HostHighCpuLoad")]), "alerts": {}}).encode(),
     "alerts: expected a non-empty list"),
    (json.dumps(am_payload([{**alert("X"), "labels": {"job": "node"}}])).encode(),
     "alerts[0].labels.alertname: missing"),
    (json.dumps(am_payload([{**alert("X"), "status": "burning"}])).encode(),
     "alerts[0].status: expected \"firing\" or \"resolved\""),
    (json.dumps({**am_payload([alert("X")]), "commonLabels": {}, "alerts": [
        alert("X", device=["eth0"])]}).encode(),  # type: ignore[arg-type]
     "alerts[0].labels.device: expected a string"),
    (json.dumps(am_payload([alert("X", **{"bad-name": "1"})])).encode(),
     "is not a label name"),
])
def test_malformed_payloads_are_refused_naming_the_field(serve, body, field):
    svc = serve(*FAST)
    resp = svc.client.post("/alertmanager", content=body,
                           headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert field in resp.json()["error"]
    assert svc.client.get("/diagnoses").json()["diagnoses"] == []
    assert [e["event"] for e in svc.audit()].count("payload_refused") == 1


def test_oversized_bodies_are_refused(serve):
    svc = serve(*FAST, "--max-body", "2048")
    big = am_payload([alert("HostHighCpuLoad", note="x" * 1000) for _ in range(3)])
    assert svc.client.post("/alertmanager", json=big).status_code == 413

    def chunks():  # no Content-Length: the limit must hold while reading
        for _ in range(10):
            yield b" " * 1000

    resp = svc.client.post("/alertmanager", content=chunks(),
                           headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
    assert svc.client.post("/alertmanager", json=am_payload([alert("HostHighCpuLoad")])
                           ).status_code == 202


def test_the_queue_bound_holds_and_a_retry_is_idempotent(serve):
    svc = serve("--window", "1", "--queue-size", "2")
    names = ["HostHighCpuLoad", "HostOutOfMemory", "HostOomKillDetected", "HostOutOfDiskSpace",
             "HostConntrackLimit", "HostUnusualDiskIo"]
    payload = [alert(n) for n in names]
    resp = svc.post_am(payload)
    assert resp.status_code == 503
    assert int(resp.headers["retry-after"]) >= 1
    got = outcomes(resp)
    assert got["queued"] == names[:2] and got["rejected"] == names[2:]
    health = svc.client.get("/healthz").json()
    assert health["queued"] + health["running"] <= 2 + 1

    accepted = {r["alert"]: r["diagnosis"] for r in resp.json()["results"] if "diagnosis" in r}
    retried = svc.post_am(payload)  # what Alertmanager does after a 5xx
    lines = {r["alert"]: r for r in retried.json()["results"]}
    for name, diag_id in accepted.items():
        assert (lines[name]["outcome"], lines[name]["diagnosis"]) == ("reused", diag_id)
    # keep retrying as Alertmanager would: every alert ends with exactly one diagnosis
    for _ in range(60):
        final = svc.post_am(payload)
        if final.status_code == 202:
            break
        assert svc.client.get("/healthz").json()["queued"] <= 2
        time.sleep(min(2.0, int(final.headers["retry-after"])))
    assert final.status_code == 202
    ids = {r["alert"]: r["diagnosis"] for r in final.json()["results"]}
    assert len(set(ids.values())) == len(names)
    assert {k: v for k, v in ids.items() if k in accepted} == accepted
    for diag_id in ids.values():
        svc.wait(diag_id)
    runs = [e["diagnosis"] for e in started_runs(svc)]
    assert sorted(runs) == sorted(ids.values())


def test_generic_form(serve):
    svc = serve(*FAST)
    resp = svc.client.post("/alerts", json={"name": "disk on fire", "symptom": "disk-full"})
    assert resp.status_code == 202
    (line,) = resp.json()["results"]
    assert (line["outcome"], line["symptom"]) == ("queued", "disk-full")
    assert svc.wait(line["diagnosis"])["report"]["symptom"] == "disk-full"
    resp = svc.client.post("/alerts", json={"alerts": [
        {"name": "x", "symptom": "everything-is-broken"},
        {"name": "y", "labels": {"sysdiag_symptom": "fd-exhaustion"}}]})
    lines = resp.json()["results"]
    assert lines[0]["outcome"] == "unmapped" and "not one of" in lines[0]["reason"]
    assert lines[1]["symptom"] == "fd-exhaustion"
    assert svc.client.post("/alerts", json={"alerts": [{"status": "firing"}]}).json() == \
        {"error": "alerts[0].name: expected the alert name (a non-empty string)"}


def test_deliveries_are_retried_a_bounded_number_of_times(serve, receiver):
    receiver.script = {"/flaky": [500, 502], "/down": [503] * 10, "/refuses": [400] * 10}
    svc = serve(*FAST, "--delivery-attempts", "3", "--delivery-timeout", "2",
                *(a for path in ("/flaky", "/down", "/refuses")
                  for a in ("--webhook-url", f"{receiver.url}{path}")))
    diag_id = svc.post_am([alert("HostContextSwitching")]).json()["results"][0]["diagnosis"]
    doc = svc.wait(diag_id, until=lambda d: len(d["deliveries"]) == 3)
    got = [(d["status"], d["attempts"], d["http_status"]) for d in doc["deliveries"]]
    assert got == [("delivered", 3, 200), ("failed", 3, 503), ("failed", 1, 400)]
    assert len(receiver.wait_posts("/flaky", 3)) == 3
    assert len([p for p in receiver.posts if p["path"] == "/refuses"]) == 1
    events = [e for e in svc.audit() if e["event"] == "delivery"]
    assert [e["outcome"] for e in events] == ["delivered", "failed", "failed"]


def test_unreachable_destination_fails_within_its_bounds(serve):
    svc = serve(*FAST, "--delivery-attempts", "2", "--delivery-timeout", "1",
                "--webhook-url", "http://127.0.0.1:9/nothing-listens")
    diag_id = svc.post_am([alert("HostHighCpuLoad")]).json()["results"][0]["diagnosis"]
    doc = svc.wait(diag_id, until=lambda d: len(d["deliveries"]) == 1)
    (delivery,) = doc["deliveries"]
    assert (delivery["status"], delivery["attempts"], delivery["http_status"]) == \
        ("failed", 2, None)
    assert "ConnectError" in delivery["error"]


def test_no_auth_only_on_loopback(serve):
    svc = serve(*FAST, "--insecure-no-auth", token=None)
    with httpx.Client(base_url=svc.url, timeout=10) as anon:
        assert anon.get("/diagnoses").status_code == 200
    assert "no authentication" in svc.stderr_path.read_text()
