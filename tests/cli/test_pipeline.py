"""The pipeline: playbook -> probes -> snapshot -> engine -> report, in process."""
from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest
from cli_helpers import busy_host_facts, busy_snapshot, make_hypothesis

from sysdiag import pipeline
from sysdiag.engine.results import EngineResult, RuledOut
from sysdiag.errors import InputError
from sysdiag.exonerate import exonerations
from sysdiag.facts import ProbeOutcome, Scope, load_snapshot
from sysdiag.pipeline import Options, collect, diagnose_snapshot, load_rules, probe_context
from sysdiag.playbook import PLANNED_PROBES, load_playbook

FIXTURE_TREE = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "procfs"


@pytest.fixture(scope="module")
def rulebase():
    return load_rules(Options())[0]


def _ranking(report):
    return [(h.id, h.subject, h.score, h.certainty) for h in report.hypotheses]


# ---- exonerated resources -------------------------------------------------------------

OK = [ProbeOutcome(probe=p, status="ok") for p in ("cpu", "memory", "processes", "psi")]
CPU_CHECKED = [RuledOut(id="cpu-saturation", title="t", reason="psi low")]


def _healthy_facts():
    from sysdiag.facts import CpuSummary

    facts = [f for f in busy_host_facts() if f.kind != "cpu"]
    return facts + [CpuSummary(cpu_count=2, busy_pct=12.0, steal_pct=0.0, procs_running=1,
                               source="/proc/stat")]


def test_a_measured_and_ruled_out_resource_is_exonerated_with_its_numbers():
    ex = exonerations(_healthy_facts(), OK, [], CPU_CHECKED, defined={"cpu-saturation"})
    cpu = [e for e in ex if e.resource == "cpu"]
    assert cpu and cpu[0].summary.startswith("cpu: 12% busy on 2 CPUs, 1 runnable, steal 0%")
    assert cpu[0].ruled_out == ["cpu-saturation"]


@pytest.mark.parametrize("coverage, hypotheses, defined", [
    ([o for o in OK if o.probe != "cpu"], [], {"cpu-saturation"}),        # cpu probe did not run
    (OK, [make_hypothesis("cpu-steal-time", score=0.3)], {"cpu-saturation"}),  # cpu has support
    (OK, [], set()),                                                     # no rules: not checked
])
def test_no_exoneration_without_evidence_of_health(coverage, hypotheses, defined):
    ex = exonerations(_healthy_facts(), coverage, hypotheses, CPU_CHECKED, defined=defined)
    assert "cpu" not in [e.resource for e in ex]


# ---- report assembly (engine result given) ---------------------------------------------

def _fake_engine(monkeypatch, hypotheses, ruled_out=()):
    seen = {}

    def fake(rulebase, snapshot, candidates, coverage, render, scoped_kinds=frozenset()):
        seen.update(candidates=candidates, coverage=coverage, render=render,
                    scoped_kinds=scoped_kinds)
        return EngineResult(hypotheses=hypotheses, ruled_out=list(ruled_out))

    monkeypatch.setattr(pipeline, "run_engine", fake)
    return seen


def test_threshold_top_and_unmentioned_candidates(monkeypatch, rulebase):
    hyps = [make_hypothesis("cpu-saturation", 0.9, subject="host"),
            make_hypothesis("cpu-runaway-userspace", 0.7),
            make_hypothesis("cpu-steal-time", 0.3, subject="host")]
    seen = _fake_engine(monkeypatch, hyps)
    playbook = load_playbook("high-cpu")
    report = diagnose_snapshot(busy_snapshot(), playbook, rulebase,
                               Options(top=1, threshold=0.5, scope=Scope(pid=4242)),
                               source="snapshot:x")
    assert [h.id for h in report.hypotheses] == ["cpu-saturation"]
    assert report.hypotheses_total == 2
    assert [b.id for b in report.below_threshold] == ["cpu-steal-time"]
    assert seen["candidates"] == list(playbook.hypotheses)
    assert seen["render"] == {"pid": "4242"}
    # every other candidate is ruled out, with a reason, those with rules first
    ruled = {r.id: r.reason for r in report.ruled_out}
    assert set(ruled) == set(playbook.hypotheses) - {h.id for h in hyps}
    # hypotheses gain rules domain by domain: check whichever candidates still have none
    for hid in (h for h in ruled if h not in rulebase.hypotheses):
        assert ruled[hid] == "no rules for this hypothesis in this version"
    assert ruled["cpu-kernel-sys-time"] == "no rule fired"
    assert report.ruled_out[0].id in rulebase.hypotheses
    assert not report.follow_ups and not report.incomplete


def test_coverage_lists_planned_and_missing_probes(monkeypatch, rulebase):
    _fake_engine(monkeypatch, [])
    playbook = load_playbook("high-latency")
    report = diagnose_snapshot(busy_snapshot(), playbook, rulebase, Options(), source="x")
    cov = {c.probe: c for c in report.coverage}
    assert set(cov) >= set(playbook.probes)
    # planned names shrink as probes land: check whichever of the playbook's are still planned
    for name in (p for p in playbook.probes if p in PLANNED_PROBES):
        assert cov[name].status == "skipped"
        assert cov[name].reason == "probe not implemented in this version"
    assert cov["diskstats"].reason == "not in the snapshot (it was collected without this probe)"
    assert cov["klog"].status == "ok"
    # what the snapshot recorded stays, even outside the playbook (disk-full has no cpu probe)
    report = diagnose_snapshot(busy_snapshot(), load_playbook("disk-full"), rulebase, Options(),
                               source="x")
    assert {c.probe: c.status for c in report.coverage}["cpu"] == "ok"


@pytest.mark.parametrize("strict, timed_out, deadline_hit, expect", [
    (False, False, False, None),
    (True, False, False, "--strict and these probes did not run: psi"),
    (False, True, False, "probes timed out: klog"),
    (False, False, True, "the deadline (30 s) was reached while sampling"),
])
def test_incomplete_reasons(monkeypatch, rulebase, strict, timed_out, deadline_hit, expect):
    _fake_engine(monkeypatch, [])
    coverage = [ProbeOutcome(probe="psi", status="unavailable", reason="no PSI"),
                ProbeOutcome(probe="klog", status="timed_out" if timed_out else "ok")]
    playbook = load_playbook("high-cpu")
    playbook = dataclasses.replace(playbook, probes=("psi", "klog"))
    report = diagnose_snapshot(busy_snapshot(coverage=coverage), playbook, rulebase,
                               Options(strict=strict), source="x", deadline_hit=deadline_hit)
    assert report.incomplete is (expect is not None)
    assert report.incomplete_reason == expect


# ---- inputs ---------------------------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    (Options(proc_root=Path("/nonexistent")), "--proc-root /nonexistent: not a directory"),
    (Options(scope=Scope(pid=999_999_999)), "--pid 999999999: no such process under /proc"),
    (Options(scope=Scope(iface="nope0")), "--iface nope0: no such interface"),
    (Options(scope=Scope(iface="../../etc")), "--iface ../../etc: no such interface"),
    (Options(scope=Scope(cgroup="/../../etc")), "'..' is not allowed"),
    (Options(scope=Scope(cgroup="/no/such.slice")), "--cgroup /no/such.slice: no such cgroup"),
    (Options(scope=Scope(netns="no-such-ns")), "--netns no-such-ns: no such namespace"),
])
def test_bad_scope_and_roots_are_input_errors(options, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(".", r"\.")):
        probe_context(options)


def test_a_good_scope_is_accepted():
    ctx = probe_context(Options(scope=Scope(pid=1, iface="lo", cgroup="/")))
    assert ctx.live and ctx.scope.pid == 1


def _bad_pack(tmp_path: Path) -> Path:
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "x.yaml").write_text(textwrap.dedent("""\
        hypothesis:
          id: demo-thing
          title: A demo
          domain: cpu
          symptoms: [high-cpu]
          severity: low
          colour: red
        rules:
          - id: demo-thing.busy
            weight: 2
            when:
              c: cpu where busy_pct > 50
        """))
    return pack


def test_a_bad_rule_pack_is_one_line_naming_file_and_line(tmp_path):
    pack = _bad_pack(tmp_path)
    with pytest.raises(InputError) as err:
        load_rules(Options(rules_dirs=[pack]))
    message = str(err.value)
    assert "\n" not in message and f"{pack / 'x.yaml'}:7:" in message and "colour" in message
    rulebase, problems = load_rules(Options(rules_dirs=[pack], tolerate_rule_errors=True))
    assert problems and problems[0].line == 7 and "cpu-saturation" in rulebase.hypotheses
    assert "demo-thing" not in rulebase.hypotheses


def test_a_missing_rules_dir_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="--rules-dir .*: not a directory"):
        load_rules(Options(rules_dirs=[tmp_path / "none"]))


# ---- collecting, and live vs offline ------------------------------------------------------

@pytest.mark.live
def test_live_and_saved_snapshots_rank_identically(tmp_path, rulebase):
    playbook = load_playbook("high-cpu")
    collected = collect(Options(window_s=0.5), list(playbook.probes))
    path = tmp_path / "snap.json"
    collected.snapshot.save(path)
    options = Options(threshold=0.0)
    in_memory = diagnose_snapshot(collected.snapshot, playbook, rulebase, options, source="live")
    reloaded = diagnose_snapshot(load_snapshot(path), playbook, rulebase, options,
                                 source=f"snapshot:{path}")
    assert _ranking(in_memory) == _ranking(reloaded)
    assert [r.id for r in in_memory.ruled_out] == [r.id for r in reloaded.ruled_out]
    assert in_memory.coverage == reloaded.coverage


def test_busy_facts_rank_the_same_through_a_saved_snapshot(tmp_path, rulebase):
    playbook = load_playbook("high-cpu")
    snap = busy_snapshot()
    snap.save(tmp_path / "busy.json")
    a = diagnose_snapshot(snap, playbook, rulebase, Options(), source="x")
    b = diagnose_snapshot(load_snapshot(tmp_path / "busy.json"), playbook, rulebase, Options(),
                          source="x")
    assert _ranking(a) == _ranking(b) and {h.id for h in a.hypotheses} >= {"cpu-saturation"}


def test_collect_on_a_captured_tree(tmp_path):
    if not (FIXTURE_TREE / "proc").is_dir():
        pytest.skip(f"fixture tree {FIXTURE_TREE} is absent")
    collected = collect(Options(proc_root=FIXTURE_TREE / "proc", sys_root=FIXTURE_TREE / "sys",
                                window_s=5))
    snap = collected.snapshot
    assert snap.live is False and snap.window_s == 0.0 and not collected.deadline_hit
    names = [c.probe for c in snap.coverage]
    assert set(names) == set(pipeline.probe_registry()) | set(PLANNED_PROBES)
    status = {c.probe: c.status for c in snap.coverage}
    assert all(status[name] == "skipped" for name in PLANNED_PROBES)
    assert any(c.status == "ok" for c in snap.coverage) and snap.facts
    snap.save(tmp_path / "tree.json")
    assert load_snapshot(tmp_path / "tree.json") == snap


def test_netns_scope_marks_the_kinds_read_inside_the_namespace():
    assert pipeline.netns_scoped_kinds(Scope()) == frozenset()
    kinds = pipeline.netns_scoped_kinds(Scope(netns="lab"))
    assert {"net_link", "qdisc", "net_counters"} <= kinds
    assert "process" not in kinds and "cpu" not in kinds
