"""Playbooks: every symptom has one, each is valid against the probe registry, lists
KNOWLEDGE.md §4's hypotheses in order, and mistakes fail with file:line."""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from sysdiag.playbook import (PLANNED_PROBES, SYMPTOMS, PlaybookError, UnknownSymptom,
                              follow_up_problem, load_all, load_playbook, parse_playbook,
                              playbook_dir)
from sysdiag.probes.registry import all_probes

KNOWLEDGE = Path(__file__).resolve().parents[2].parent / "shared" / "KNOWLEDGE.md"
CHANGE = ["chg-kernel-upgrade", "chg-config-drift", "chg-workload-surge", "chg-clock-jump"]
REGISTERED = set(all_probes())


def _knowledge_index() -> dict[str, list[str]]:
    """KNOWLEDGE.md §4: symptom -> candidate hypothesis ids in prior order."""
    if not KNOWLEDGE.is_file():
        pytest.skip(f"{KNOWLEDGE} is absent (it lives next to the repo checkout)")
    text = KNOWLEDGE.read_text(encoding="utf-8")
    section = text.split("## 4.", 1)[1].split("\n## ", 1)[0]
    index = {}
    for row in section.splitlines():
        cells = [c.strip() for c in row.split("|")]
        if len(cells) < 4 or not re.match(r"^[a-z]", cells[1]) or cells[1].startswith("any"):
            continue
        symptom = cells[1].split("/")[0]  # "high-cpu/load" is the high-cpu symptom
        index[symptom] = [re.sub(r"\s*\(.*\)$", "", h.strip()) for h in cells[2].split(",")]
    return index


def test_every_symptom_has_a_valid_playbook():
    playbooks = load_all(REGISTERED)
    assert list(playbooks) == list(SYMPTOMS)
    for name, pb in playbooks.items():
        assert pb.symptom == name and pb.title and 0 < pb.window_s <= 300


@pytest.mark.parametrize("symptom", [s for s in SYMPTOMS if s != "health"])
def test_hypotheses_follow_knowledge_order_then_change(symptom):
    expected = _knowledge_index()[symptom]
    expected += [c for c in CHANGE if c not in expected]
    assert list(load_playbook(symptom, REGISTERED).hypotheses) == expected


def test_health_sweeps_every_hypothesis_and_probe():
    pb = load_playbook("health", REGISTERED)
    assert pb.all_hypotheses and pb.all_probes
    names = pb.probe_names(["host", "cpu"])
    assert names[:2] == ["host", "cpu"] and set(PLANNED_PROBES) <= set(names)
    # the follow-ups of every symptom playbook apply to the sweep
    assert "cpu-saturation" in pb.follow_ups and "nic-rx-ring-overflow" in pb.follow_ups


def test_probes_are_registered_or_planned_and_cheap_first():
    registry = all_probes()
    order = {"cheap": 0, "moderate": 1, "tracing": 2}
    for pb in load_all(REGISTERED).values():
        costs = [order[registry[p].cost] for p in pb.probes if p in registry]
        assert costs == sorted(costs), f"{pb.symptom}: list cheap probes first"
        for name in pb.probes:
            assert name in registry or name in PLANNED_PROBES


def test_every_follow_up_is_allowed():
    for pb in load_all(REGISTERED).values():
        for hid, commands in pb.follow_ups.items():
            for command in commands:
                assert follow_up_problem(command) is None, (pb.symptom, hid, command)


def test_unknown_symptom_names_the_known_ones():
    with pytest.raises(UnknownSymptom, match="unknown symptom 'latency'.*high-latency"):
        load_playbook("latency", REGISTERED)
    with pytest.raises(UnknownSymptom):
        load_playbook("../etc/passwd", REGISTERED)


GOOD = """\
symptom: demo
title: A demo
window_s: 2
probes: [host, cpu]
hypotheses: [cpu-saturation, cpu-steal-time]
follow_ups:
  cpu-saturation: ["ps -eo pid,comm"]
"""


def _fails(text: str, match: str) -> None:
    with pytest.raises(PlaybookError, match=match):
        parse_playbook(textwrap.dedent(text), "/pb/demo.yaml", {"host", "cpu"})


def test_a_good_playbook_parses():
    pb = parse_playbook(GOOD, "/pb/demo.yaml", {"host", "cpu"})
    assert pb.probes == ("host", "cpu") and pb.follow_ups == {"cpu-saturation": ("ps -eo pid,comm",)}


def test_planned_probe_is_accepted_and_unknown_one_is_an_error_with_line():
    if not PLANNED_PROBES:
        pytest.skip("every planned probe is implemented")
    planned = next(iter(PLANNED_PROBES))
    parse_playbook(GOOD.replace("[host, cpu]", f"[host, {planned}]"), "/pb/demo.yaml", {"host"})
    _fails(GOOD.replace("[host, cpu]", "[host,\n         cpuu]"),
           r"^/pb/demo.yaml:5: unknown probe 'cpuu' \(registered: cpu, host; planned: ")


@pytest.mark.parametrize("text, match", [
    (GOOD + "colour: red\n", r"demo.yaml:8: unknown key 'colour'"),
    (GOOD.replace("window_s: 2", "window_s: 0"), r"demo.yaml:3: window_s must be"),
    (GOOD.replace("window_s: 2", "window_s: yes"), r"demo.yaml:3: window_s must be"),
    (GOOD.replace("cpu-steal-time]", "cpu-saturation]"), r"demo.yaml:5: .*listed twice"),
    (GOOD.replace("cpu-steal-time]", "Cpu_Steal]"), r"demo.yaml:5: 'Cpu_Steal' is not a kebab-case"),
    (GOOD.replace("symptom: demo", "symptom: other"), r"demo.yaml:1: .*does not match the file"),
    (GOOD.replace("title: A demo\n", ""), r"demo.yaml:1: missing key 'title'"),
    (GOOD.replace("ps -eo pid,comm", "ps aux | grep x"), r"demo.yaml:7: .*shell syntax"),
    (GOOD.replace("ps -eo pid,comm", "rm -rf /tmp/x"), r"demo.yaml:7: .*'rm' is not an allowed"),
    (GOOD.replace("cpu-saturation: [", "mem-thrashing: ["), r"demo.yaml:7: .*not in this"),
    (GOOD.replace("probes: [host, cpu]", "probes: [host, cpu"), r"demo.yaml:\d+: not valid YAML"),
    ("- a list\n", r"demo.yaml:1: a playbook is a mapping"),
])
def test_mistakes_name_file_and_line(text, match):
    _fails(text, match)


@pytest.mark.parametrize("command, problem", [
    ("ps -eo pid,comm --sort=-pcpu", None),
    ("ip -s -s link show dev {iface}", None),
    ("ethtool -S {iface}", None),
    ("tc -s qdisc show dev {iface}", None),
    ("slabtop -o -s c", None),
    ("ip link set eth0 down", "may only run with `show`"),
    ("ip -batch /tmp/x show", "may only show"),
    ("tc qdisc del dev eth0 root show", "may only run"),
    ("ethtool -s eth0 speed 10", "one query option"),
    ("ethtool -K eth0 tso off", "one query option"),
    ("slabtop", "needs -o"),
    ("top", "needs -b"),
    ("ps {comm}", "placeholder {comm}"),
    ("ps {pid:5}", "placeholder {pid}"),
    ("ps $(id)", "shell syntax"),
    ("/usr/bin/ps", "not an allowed"),
    ("ss -tin", "not an allowed"),
    ("iptables -L", "not an allowed"),
    ("ps 'unterminated", "cannot split"),
])
def test_follow_up_allowlist(command, problem):
    result = follow_up_problem(command)
    if problem is None:
        assert result is None
    else:
        assert result is not None and problem in result


def test_shipped_files_are_the_symptoms():
    assert sorted(p.stem for p in playbook_dir().glob("*.yaml")) == sorted(SYMPTOMS)


@pytest.fixture(scope="module")
def builtin_rulebase():
    from sysdiag.engine import load_rulebase
    return load_rulebase()


@pytest.mark.parametrize("symptom", [s for s in SYMPTOMS if s != "health"])
def test_every_symptom_has_hypotheses_with_rules(symptom, builtin_rulebase):
    """Beyond the investigation hypotheses (chg-*) that every symptom weighs, each
    symptom's playbook lists at least one hypothesis that the built-in rules can support."""
    listed = load_playbook(symptom, REGISTERED).hypotheses
    with_rules = [h for h in listed if h not in CHANGE and builtin_rulebase.rules_for(h)]
    assert with_rules, f"{symptom}: none of {list(listed)} has built-in rules"


def test_health_weighs_every_hypothesis_with_rules(builtin_rulebase):
    assert load_playbook("health", REGISTERED).all_hypotheses
    assert sum(1 for h in builtin_rulebase.hypotheses if builtin_rulebase.rules_for(h)) > len(CHANGE)
