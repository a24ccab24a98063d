"""The built-in rule files as a whole: they load, one hypothesis per file in its domain
folder, ids and causal links are KNOWLEDGE.md ids, symptoms are the playbooks' (§4), next
commands are read-only. Their cases (rules/<domain>/tests/) run in
tests/authoring/test_builtin_rules.py, which also checks a firing and a near-miss case per
rule and that no explanation renders a missing value."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

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
#: a next command that changes the host (one that does must start with ⚠)
NOT_READ_ONLY = re.compile(r"(^|[;&|]\s*)(echo|sysctl -w|kill|rm|ip link set|tc qdisc (add|del|"
                           r"change|replace)|ethtool -[KGCL])\b|>\s*/")


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


def builtins(rulebase):
    return [spec for spec in rulebase.hypotheses.values() if spec.pack == "builtin"]


def test_every_builtin_file_loads_into_the_rulebase(rulebase):
    files = builtin_files()
    assert len(files) >= len(FOUNDATION)
    loaded = {Path(f).resolve() for f in rulebase.files}
    assert {f.resolve() for f in files} <= loaded
    # advisory warnings: keyless joins (ours join a per-process or log fact with a
    # one-per-host fact: linear, not quadratic)
    problems = [w for w in rulebase.warnings if "has no equality join" not in w.message]
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


def test_every_hypothesis_has_its_test_file_next_to_it(rulebase):
    for spec in builtins(rulebase):
        tests = Path(spec.file).parent / "tests" / f"{spec.id}.yaml"
        assert tests.is_file(), f"{spec.id}: no {tests}"


def test_foundation_hypotheses_are_all_there(rulebase):
    missing = FOUNDATION - set(rulebase.hypotheses)
    assert not missing


def test_ids_are_knowledge_ids(rulebase, knowledge_ids):
    assert len(knowledge_ids) > 50, "KNOWLEDGE.md headings did not parse"
    for spec in builtins(rulebase):
        assert spec.id in knowledge_ids, f"{spec.id} is not a KNOWLEDGE.md hypothesis"


def test_causal_links_are_valid(rulebase, knowledge_ids):
    """`causes` names loaded KNOWLEDGE hypotheses other than itself, without a cycle
    (KNOWLEDGE §7: the cause is reported upstream of its effect)."""
    for spec in builtins(rulebase):
        for effect in spec.causes:
            assert effect in knowledge_ids, f"{spec.id} causes unknown {effect}"
            assert effect in rulebase.hypotheses, f"{spec.id} causes {effect}, not loaded"
            assert effect != spec.id, f"{spec.id} causes itself"

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for nxt in rulebase.hypotheses[start].causes if start in rulebase.hypotheses else ():
            if nxt == target or (nxt not in seen and reaches(nxt, target, seen | {nxt})):
                return True
        return False

    cycles = [h.id for h in builtins(rulebase) if reaches(h.id, h.id, {h.id})]
    assert not cycles, f"causal cycle through {cycles}"


def test_symptoms_are_the_playbooks_that_list_the_hypothesis(rulebase):
    """KNOWLEDGE §4: a built-in hypothesis names exactly the symptoms whose playbook lists
    it (the playbook decides what is weighed; `symptoms` drives the catalog and lint)."""
    playbooks = {p.stem: yaml.safe_load(p.read_text(encoding="utf-8"))
                 for p in PLAYBOOKS.glob("*.yaml")}
    assert playbooks, "no playbooks"
    for spec in builtins(rulebase):
        listed = {name for name, pb in playbooks.items()
                  if spec.id in (pb.get("hypotheses") or []) and name != "health"}
        if spec.id in FOUNDATION:
            assert listed, f"{spec.id} is in no playbook"
        assert set(spec.symptoms) == listed, (spec.id, sorted(spec.symptoms), sorted(listed))


def test_rules_follow_the_knowledge_conventions(rulebase):
    for spec in builtins(rulebase):
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


def test_next_commands_are_read_only(rulebase):
    for spec in builtins(rulebase):
        for cmd in spec.next_commands:
            assert not NOT_READ_ONLY.search(cmd) or cmd.startswith("⚠"), \
                f"{spec.id}: not read-only: {cmd}"


@pytest.mark.parametrize("cmd,read_only", [
    ("cat /proc/4242/stack", True), ("ss -ltn 'sport = :80'", True), ("tc -s qdisc show", True),
    ("sysctl -w net.core.somaxconn=4096", False), ("echo 3 > /proc/sys/vm/drop_caches", False),
    ("cat x; rm -f /tmp/y", False), ("kill -CONT 4242", False), ("ethtool -K eth0 gro on", False),
    ("tc qdisc del dev eth0 root", False),
])
def test_the_read_only_check_itself(cmd, read_only):
    assert (NOT_READ_ONLY.search(cmd) is None) is read_only
