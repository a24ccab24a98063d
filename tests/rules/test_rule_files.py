"""The built-in rule files as a whole: they load, their ids are KNOWLEDGE.md ids, and every
rule has a case where it fires and one where it stays silent (cases_*.yaml)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from rule_case_helpers import load_cases

from sysdiag.engine import builtin_rules_dir, load_rulebase

#: KNOWLEDGE.md lives next to the repository checkout (../shared), like the fixture tree
KNOWLEDGE = Path(__file__).resolve().parents[2].parent / "shared" / "KNOWLEDGE.md"

#: the hypotheses of KNOWLEDGE §5.A-D whose facts exist now (the foundation issue)
FOUNDATION = {
    "cpu-saturation", "cpu-runaway-userspace", "cpu-steal-time", "cpu-kernel-sys-time",
    "cpu-ctxswitch-thread-storm", "cpu-rt-starvation", "cpu-lockup-rcu-stall",
    "cpu-freq-thermal-throttle", "mem-global-oom", "mem-cgroup-oom", "mem-thrashing",
    "mem-direct-reclaim-stall", "mem-process-leak", "mem-slab-growth", "mem-fragmentation",
    "mem-thp-compaction", "mem-overcommit-strict", "mem-pinned-hugetlb-shmem",
    "proc-d-state-blocked", "proc-zombie-accumulation", "proc-stopped-traced",
    "proc-pid-exhaustion", "proc-segv-crashloop", "proc-userspace-deadlock", "fd-rlimit-nofile",
}
PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"


@pytest.fixture(scope="module")
def rulebase():
    return load_rulebase()


@pytest.fixture(scope="module")
def knowledge_ids() -> set[str]:
    if not KNOWLEDGE.is_file():
        pytest.skip(f"{KNOWLEDGE} is absent (it lives next to the repository checkout)")
    text = KNOWLEDGE.read_text(encoding="utf-8")
    return set(re.findall(r"^#### `([a-z0-9-]+)`", text, flags=re.MULTILINE))


def builtin_files() -> list[Path]:
    """Rule files, without the rule packs' own test files (rules/<domain>/tests/)."""
    root = builtin_rules_dir()
    return sorted(p for p in root.rglob("*.yaml")
                  if not {"tests", "cases"} & set(p.relative_to(root).parts[:-1]))


def test_every_builtin_file_loads_into_the_rulebase(rulebase):
    files = builtin_files()
    assert len(files) >= len(FOUNDATION)
    loaded = {Path(f).resolve() for f in rulebase.files}
    assert {f.resolve() for f in files} <= loaded
    # advisory warnings: causes naming hypotheses of later issues, and keyless joins (ours
    # join a per-process or log fact with a one-per-host fact: linear, not quadratic)
    advisory = ("which no loaded rule file defines", "has no equality join")
    problems = [w for w in rulebase.warnings if not any(a in w.message for a in advisory)]
    assert not problems, problems


def test_one_hypothesis_per_file_in_its_domain_folder():
    for path in builtin_files():
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        hyp = doc.get("hypothesis")
        if hyp is None:  # a derivation-only file
            assert all("derive" in r for r in doc["rules"]), path
            continue
        assert path.stem == hyp["id"], f"{path}: file name should be the hypothesis id"
        assert path.parent.name == hyp["domain"], f"{path}: folder should be the domain"


def test_foundation_hypotheses_are_all_there(rulebase):
    missing = FOUNDATION - set(rulebase.hypotheses)
    assert not missing


def test_ids_are_knowledge_ids(rulebase, knowledge_ids):
    assert len(knowledge_ids) > 50, "KNOWLEDGE.md headings did not parse"
    for hid, spec in rulebase.hypotheses.items():
        if spec.pack != "builtin":
            continue
        assert hid in knowledge_ids, f"{hid} is not a KNOWLEDGE.md hypothesis"
        for effect in spec.causes:
            assert effect in knowledge_ids, f"{hid} causes unknown {effect}"


def test_every_hypothesis_is_a_candidate_of_its_symptoms(rulebase):
    """A hypothesis is reported only for symptoms whose playbook lists it."""
    playbooks = {p.stem: yaml.safe_load(p.read_text(encoding="utf-8"))
                 for p in PLAYBOOKS.glob("*.yaml")}
    if not playbooks:
        pytest.skip("no playbooks yet")
    for hid in FOUNDATION:
        listed = [name for name, pb in playbooks.items() if hid in (pb.get("hypotheses") or [])]
        assert listed, f"{hid} is in no playbook"
        for name in listed:
            assert name in rulebase.hypotheses[hid].symptoms or name == "health", (hid, name)


def test_rules_follow_the_knowledge_conventions(rulebase):
    for spec in rulebase.hypotheses.values():
        if spec.pack != "builtin":
            continue
        assert spec.explanation and spec.next_commands and spec.references, spec.id
        assert spec.remediation and spec.risk, spec.id
        rules = rulebase.rules_for(spec.id)
        assert any((r.weight or 0) > 0 for r in rules), f"{spec.id}: nothing can support it"
        for rule in rules:
            assert rule.id.startswith(spec.id + "."), rule.id
            assert rule.because, f"{rule.id}: no `because` text"
            if spec.id.startswith(("proc-", "fd-", "cpu-runaway", "mem-process")) \
                    and spec.id not in ("proc-pid-exhaustion", "fd-system-file-max"):
                # per-process findings name the process (the zombie one names the parent)
                assert rule.subject and rule.subject.startswith("pid {"), rule.id
        for cmd in spec.next_commands:
            assert not re.search(r"(^|[;&|]\s*)(echo|sysctl -w|kill|rm)\b|>\s*/", cmd) \
                or cmd.startswith("⚠"), f"{spec.id}: not read-only: {cmd}"


def test_every_rule_has_a_firing_and_a_silent_case(rulebase):
    fires: set[str] = set()
    silent: set[str] = set()
    for _, _, case in load_cases():
        fires.update(case.get("fires", []))
        silent.update(case.get("silent", []))
    builtin = {r.id for r in rulebase.rules if r.pack == "builtin"}
    assert not builtin - fires, f"rules with no firing case: {sorted(builtin - fires)}"
    assert not builtin - silent, f"rules with no near-miss case: {sorted(builtin - silent)}"
    assert not (fires | silent) - builtin, f"cases name unknown rules: {(fires | silent) - builtin}"
