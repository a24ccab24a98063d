"""The parts of `sysdiag serve` that need no server: payload parsing, fingerprints, the
alert mapping (shipped and extended), scope validation, delivery payloads, the store,
and the checks that refuse an unsafe start."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from serve_helpers import TOKEN, alert, am_payload

from sysdiag.playbook import SYMPTOMS
from sysdiag.serve.alertmap import AlertMap, AlertMapError, HostView
from sysdiag.serve.alerts import Alert, PayloadError, fingerprint, parse_alertmanager, \
    parse_generic
from sysdiag.serve.config import ConfigError, ServeConfig, read_token
from sysdiag.serve.deliver import Destination, slack_payload, webhook_payload
from sysdiag.serve.store import Delivery, Diagnosis, Store

#: the awesome-prometheus-alerts node_exporter host alerts the brief names
HOST_SET = ["HostHighCpuLoad", "HostOutOfMemory", "HostMemoryUnderMemoryPressure",
            "HostOomKillDetected", "HostOutOfDiskSpace", "HostOutOfInodes",
            "HostUnusualDiskReadLatency", "HostUnusualDiskWriteLatency",
            "HostNetworkReceiveErrors", "HostNetworkTransmitErrors", "HostConntrackLimit",
            "HostNetworkInterfaceSaturated", "HostCpuStealNoisyNeighbor",
            "HostSystemdServiceCrashed", "HostDiskWillFillIn24Hours", "HostUnusualDiskIo",
            "HostContextSwitching", "HostSwapIsFillingUp", "HostEdacCorrectableErrorsDetected",
            "HostNetworkBondDegraded", "HostClockSkew"]


def fake_sys(tmp_path: Path, ifaces=("eth0",), units=()) -> HostView:
    for name in ifaces:
        (tmp_path / "class/net" / name).mkdir(parents=True)
    for unit in units:
        (tmp_path / "fs/cgroup/system.slice" / unit).mkdir(parents=True)
    return HostView(tmp_path)


# ---- payloads -------------------------------------------------------------------

def test_alertmanager_payload_as_documented():
    doc = am_payload([alert("HostOutOfDiskSpace", mountpoint="/var"),
                      alert("HostOutOfDiskSpace", mountpoint="/home", status="resolved")])
    alerts, group = parse_alertmanager(doc)
    assert [(a.name, a.status, a.labels["mountpoint"]) for a in alerts] == \
        [("HostOutOfDiskSpace", "firing", "/var"), ("HostOutOfDiskSpace", "resolved", "/home")]
    assert group["receiver"] == "sysdiag" and group["groupKey"].startswith("{}:")
    assert alerts[0].annotations["summary"].startswith("HostOutOfDiskSpace")
    assert alerts[0].source_fingerprint and alerts[1].ends_at == "2024-05-01T02:20:00.000Z"


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("version"), "version"),
    (lambda d: d.update(alerts=[]), "alerts: expected a non-empty list"),
    (lambda d: d.update(alerts=["x"]), "alerts[0]: expected an object"),
    (lambda d: d["alerts"][0].pop("labels"), "alerts[0].labels: missing"),
    (lambda d: d["alerts"][0].update(annotations=[]), "alerts[0].annotations: expected"),
    (lambda d: d["alerts"][0].update(startsAt=5), "alerts[0].startsAt: expected a string"),
    (lambda d: d.update(status=None), "status: expected"),
    (lambda d: d.update(alerts=[d["alerts"][0]] * 201), "at most 200"),
    (lambda d: d["alerts"][0]["labels"].update({f"l{i}": "v" for i in range(70)}),
     "entries, at most 64"),
])
def test_alertmanager_payload_errors_name_the_field(mutate, message):
    doc = am_payload([alert("HostHighCpuLoad")])
    doc["commonLabels"] = {}
    mutate(doc)
    with pytest.raises(PayloadError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_alertmanager(doc)


def test_fingerprint_is_stable_and_order_free():
    a = {"alertname": "X", "instance": "h:9100", "device": "eth0"}
    b = dict(reversed(list(a.items())))
    assert fingerprint(a) == fingerprint(b) and len(fingerprint(a)) == 16
    assert fingerprint(a) != fingerprint({**a, "device": "eth1"})
    generic = parse_generic({"name": "X", "labels": {"instance": "h:9100", "device": "eth0"}})
    assert generic[0].fingerprint == fingerprint(a)


def test_generic_form_shapes():
    assert [a.name for a in parse_generic({"alerts": [{"name": "a"}, {"name": "b"}]})] == \
        ["a", "b"]
    (one,) = parse_generic({"name": "a", "symptom": "oom", "status": "resolved"})
    assert (one.symptom, one.status, one.labels) == ("oom", "resolved", {"alertname": "a"})
    for bad, msg in (([], "expected a JSON object"), ({"alerts": "x"}, "non-empty list"),
                     ({"name": 3}, "alerts[0].name"), ({"name": "a", "symptom": 1}, "symptom")):
        with pytest.raises(PayloadError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            parse_generic(bad)


# ---- mapping --------------------------------------------------------------------

def test_shipped_mapping_covers_the_host_set():
    amap = AlertMap.load(host=HostView(Path("/nonexistent")))
    missing = [name for name in HOST_SET if name not in amap.rules]
    assert not missing
    assert all(rule.symptom in SYMPTOMS for rule in amap.rules.values())
    assert amap.rules["HostOomKillDetected"].symptom == "oom"
    assert amap.rules["HostOutOfInodes"].symptom == "disk-full"
    assert amap.rules["HostNetworkReceiveErrors"].scope == {"iface": "device"}


@pytest.mark.parametrize("device, scope, note", [
    ("eth0", {"iface": "eth0"}, None),
    ("eth9", {}, "does not exist on this host"),
    ("eth0; reboot", {}, "is not an interface name"),
    ("$(id)", {}, "is not an interface name"),
    ("../../etc", {}, "is not an interface name"),
    ("-eth0", {}, "is not an interface name"),
    ("a" * 16, {}, "is not an interface name"),
    ("..", {}, "is not an interface name"),
])
def test_interface_scope_only_from_valid_existing_names(tmp_path, device, scope, note):
    amap = AlertMap.load(host=fake_sys(tmp_path))
    mapped = amap.map(Alert(name="HostNetworkReceiveErrors", status="firing",
                            labels={"alertname": "x", "device": device}))
    assert mapped.symptom == "packet-loss" and mapped.scope == scope
    if note is None:
        assert mapped.notes == []
    else:
        assert len(mapped.notes) == 1 and note in mapped.notes[0]


def test_systemd_unit_scope_becomes_its_cgroup(tmp_path):
    amap = AlertMap.load(host=fake_sys(tmp_path, units=["nginx.service"]))
    up = amap.map(Alert("HostSystemdServiceCrashed", "firing", {"name": "nginx.service"}))
    assert (up.symptom, up.scope, up.context) == \
        ("process-hang", {"cgroup": "/system.slice/nginx.service"}, {"name": "nginx.service"})
    gone = amap.map(Alert("HostSystemdServiceCrashed", "firing", {"name": "cron.service"}))
    assert gone.scope == {} and "no cgroup now" in gone.notes[0]
    evil = amap.map(Alert("HostSystemdServiceCrashed", "firing",
                          {"name": "../../x.service"}))
    assert evil.scope == {} and "not a systemd unit name" in evil.notes[0]


def test_symptom_label_and_unmapped_alerts(tmp_path):
    amap = AlertMap.load(host=fake_sys(tmp_path))
    named = amap.map(Alert("MyAppSlow", "firing", {"sysdiag_symptom": "high-latency"}))
    assert named.symptom == "high-latency"
    wrong = amap.map(Alert("MyAppSlow", "firing", {"sysdiag_symptom": "rm -rf"}))
    assert wrong.symptom is None and "not one of" in wrong.reason
    unmapped = amap.map(Alert("Watchdog", "firing", {}))
    assert unmapped.symptom is None and "no mapping" in unmapped.reason


def test_user_mapping_extends_and_overrides(tmp_path):
    extra = tmp_path / "map.yaml"
    extra.write_text("version: 1\nalerts:\n"
                     "  HostHighCpuLoad: {symptom: high-latency}\n"
                     "  NginxDown: {symptom: connection-failures, context: [job]}\n")
    amap = AlertMap.load(extra, host=fake_sys(tmp_path / "sys"))
    assert amap.rules["HostHighCpuLoad"].symptom == "high-latency"
    assert amap.map(Alert("NginxDown", "firing", {"job": "web"})).context == {"job": "web"}
    assert amap.rules["HostOutOfMemory"].symptom == "memory-pressure"  # shipped entries stay


@pytest.mark.parametrize("text, message", [
    ("alerts: {}", "expected `version: 1`"),
    ("version: 1\nalerts:\n  A: {symptom: slowness}", "alerts.A.symptom: 'slowness'"),
    ("version: 1\nalerts:\n  A: {symptom: oom, scope: {pid: pid}}", "alerts.A.scope"),
    ("version: 1\nalerts:\n  A: {symptom: oom, context: job}", "alerts.A.context"),
    ("version: 1\nalerts:\n  A: {symptom: oom, run: x}", "expected keys"),
    ("version: 1\nalerts: [\n", "not valid YAML"),
])
def test_bad_mapping_files_name_file_and_entry(tmp_path, text, message):
    path = tmp_path / "map.yaml"
    path.write_text(text)
    with pytest.raises(AlertMapError) as err:
        AlertMap.load(path)
    assert str(path) in str(err.value) and message in str(err.value)
    with pytest.raises(AlertMapError, match="--alertmap .*No such file"):
        AlertMap.load(tmp_path / "missing.yaml")


# ---- delivery payloads ----------------------------------------------------------

def _finished(title: str = "A process spins", host: str = "web-1") -> Diagnosis:
    record = Diagnosis.new("high-cpu", {})
    record.alerts["f1"] = {"name": "HostHighCpuLoad"}
    record.status, record.exit_code = "done", 1
    record.report = {"host": {"hostname": host}, "hypotheses_total": 1, "hypotheses": [
        {"id": "cpu-runaway-userspace", "title": title, "score": 0.83}]}
    return record


def test_slack_payload_has_text_and_blocks_and_escapes_host_text():
    payload = slack_payload(_finished(title="<!channel> & <http://x|click>",
                                      host="<@U123>"), "https://s.example/diagnoses/x")
    assert payload["text"].startswith("sysdiag: high-cpu on &lt;@U123&gt;: 1 finding(s)")
    section = payload["blocks"][1]["text"]["text"]
    assert "&lt;!channel&gt; &amp; &lt;http://x|click&gt;" in section
    assert "<!channel>" not in str(payload)
    assert "<https://s.example/diagnoses/x|full report>" in \
        payload["blocks"][2]["elements"][0]["text"]


def test_slack_payload_respects_block_limits():
    record = _finished(title="t" * 5000)
    record.notes = ["n" * 2000]
    payload = slack_payload(record, None)
    assert len(payload["blocks"][1]["text"]["text"]) <= 3000
    assert len(payload["blocks"][0]["text"]["text"]) <= 150


def test_webhook_payload_is_the_record():
    record = _finished()
    payload = webhook_payload(record, None)
    assert payload["event"] == "sysdiag.diagnosis"
    assert payload["diagnosis"]["id"] == record.id
    assert payload["diagnosis"]["report"]["hypotheses"][0]["id"] == "cpu-runaway-userspace"


def test_destination_target_hides_the_secret_path():
    dest = Destination("slack", "https://user:pw@hooks.example/services/T0/B0/SECRET?x=1")
    assert dest.target == "https://hooks.example"


# ---- store ----------------------------------------------------------------------

def test_store_persists_and_reloads(tmp_path):
    store = Store(keep=3, state_dir=tmp_path)
    done = _finished()
    done.deliveries.append(Delivery("webhook", "http://r", status="delivered", attempts=1))
    store.add(done)
    store.link("f1", done)
    running = Diagnosis.new("oom", {})
    running.status = "running"
    store.add(running)
    again = Store(keep=3, state_dir=tmp_path)
    assert again.get(done.id).deliveries[0].status == "delivered"
    assert again.for_fingerprint("f1").id == done.id
    # a record the previous process left mid-run is reported, not left "running"
    assert again.get(running.id).status == "failed"
    assert "stopped before it finished" in again.get(running.id).error
    assert again.get("../../etc/passwd") is None


def test_store_keeps_the_newest_and_never_drops_in_flight(tmp_path):
    store = Store(keep=2)
    records = [Diagnosis.new("oom", {}) for _ in range(4)]
    records[0].status = "queued"
    for r in records[1:]:
        r.status = "done"
    for r in records:
        store.add(r)
    assert set(store.records) == {records[0].id, records[3].id}


def test_store_refuses_a_foreign_file(tmp_path):
    (tmp_path / "diagnoses").mkdir()
    (tmp_path / "diagnoses/abc.json").write_text("{}")
    with pytest.raises(ValueError, match="abc.json: not a diagnosis record"):
        Store(state_dir=tmp_path)


# ---- starting safely ------------------------------------------------------------

def test_config_refuses_unsafe_starts(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="no bearer token"):
        ServeConfig().check()
    with pytest.raises(ConfigError, match="loopback"):
        ServeConfig(listen="0.0.0.0", insecure_no_auth=True).check()
    ServeConfig(listen="::1", insecure_no_auth=True).check()
    with pytest.raises(ConfigError, match="at least 16"):
        ServeConfig(token="short").check()
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_token(token)
    token.chmod(0o600)
    assert read_token(token) == TOKEN
    monkeypatch.setenv("SYSDIAG_SERVE_TOKEN", "from-env-0123456789")
    assert read_token(None) == "from-env-0123456789"


@pytest.mark.parametrize("args, env, message", [
    ([], {}, "no bearer token"),
    (["--insecure-no-auth", "--listen", "0.0.0.0"], {}, "only on a loopback address"),
    (["--webhook-url", "file:///etc/passwd"], {"SYSDIAG_SERVE_TOKEN": TOKEN},
     "expected an http(s) URL"),
    (["--alertmap", "/nonexistent.yaml"], {"SYSDIAG_SERVE_TOKEN": TOKEN}, "--alertmap"),
    (["--tls-cert", "/x.pem"], {"SYSDIAG_SERVE_TOKEN": TOKEN}, "go together"),
])
def test_serve_command_refuses_to_start(args, env, message):
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("SYSDIAG_")}
    proc = subprocess.run([sys.executable, "-m", "sysdiag.cli", "serve", "--port", "0", *args],
                          capture_output=True, text=True, timeout=60, env={**child_env, **env})
    assert proc.returncode == 2
    assert message in proc.stderr
