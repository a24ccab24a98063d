"""The rule test format and its runner: passing cases, readable failures, coverage."""
from __future__ import annotations

import json

from authoring_helpers import write

from sysdiag.authoring.cases import read_test_file, find_test_files
from sysdiag.authoring.coverage import measure
from sysdiag.authoring.runner import format_failure, run_files
from sysdiag.engine import load_rulebase


def _run(pack, rb=None):
    rb = rb or load_rulebase(extra_dirs=[pack])
    files = [read_test_file(p) for p in find_test_files(pack)]
    return rb, run_files(files, rb)


def test_the_pack_cases_pass_and_cover_its_rules(pack):
    rb, run = _run(pack)
    assert run.ok, [format_failure(r) for r in run.failed]
    assert len(run.results) == 2
    cov = measure(rb, run.results, {"sitepack"})
    # the negative rule never fired in these cases: coverage says so
    assert [r.id for r in cov.uncovered_rules] == ["site-batch-hog.niced"]
    # of `cpu_pct >= 80 or run_delay_pct >= 50` only the first branch was exercised
    assert [b.text for b in cov.uncovered_branches] == ["process.run_delay_pct >= 50"]
    assert cov.rule_pct == 50.0 and cov.branch_pct == 50.0


def test_boundary_coverage_wants_a_case_at_the_exact_threshold(pack):
    rb, run = _run(pack)
    cov = measure(rb, run.results, {"sitepack"})
    # 79 % is a near miss, not the boundary of `cpu_pct >= 80`; `nice >= 10` has no case
    assert [r.id for r in cov.rules_without_boundary] == ["site-batch-hog.busy",
                                                          "site-batch-hog.niced"]
    assert [t.text for t in cov.thresholds["site-batch-hog.busy"]] == [
        "process.cpu_pct >= 80", "process.run_delay_pct >= 50"]
    assert "boundaries 0/2 (0 %)" in cov.summary()
    boundary = PACK_TEST_BOUNDARY
    write(pack / "tests" / "site-batch-hog-boundary.yaml", boundary)
    rb, run = _run(pack)
    assert run.ok, [format_failure(r) for r in run.failed]
    cov = measure(rb, run.results, {"sitepack"})
    assert [r.id for r in cov.rules_without_boundary] == ["site-batch-hog.niced"]
    assert "no boundary case: rule site-batch-hog.niced: `process.nice >= 10`" in cov.report()


#: 80 % exactly fires `>= 80` (from the defaults: the merged fact is what counts)
PACK_TEST_BOUNDARY = """\
hypothesis: site-batch-hog
defaults:
  process: {ppid: 1, state: R, cpu_pct: 80}
cases:
  - name: exactly 80 % (boundary)
    facts:
      - {kind: process, pid: 78, comm: batch-export}
    fires: [site-batch-hog.busy]
"""


def test_every_kind_of_wrong_expectation_is_a_readable_diff(pack):
    write(pack / "tests" / "wrong.yaml", """\
        hypothesis: site-batch-hog
        defaults:
          process: {ppid: 1, state: R}
        cases:
          - name: wrong on purpose
            facts:
              - {kind: process, pid: 77, comm: batch-export, cpu_pct: 85.0}
            fires: [site-batch-hog.niced]
            silent: [site-batch-hog.busy]
            expect:
              rank: 2
              score: [0.9, 1.0]
              certainty: confirmed
              evidence: {cpu_pct: 99.0}
              explanation: nothing like this
          - name: expected silent but fires
            facts:
              - {kind: process, pid: 77, comm: batch-export, cpu_pct: 85.0}
            expect: {fired: false}
          - name: expected reported but is not
            facts:
              - {kind: process, pid: 77, comm: batch-export, cpu_pct: 5.0}
            expect: {fired: true}
        """)
    _, run = _run(pack)
    failed = {r.case.name: format_failure(r) for r in run.failed}
    assert set(failed) == {"wrong on purpose", "expected silent but fires",
                           "expected reported but is not"}
    text = failed["wrong on purpose"]
    assert "wrong.yaml:5: wrong on purpose" in text
    # a rule that did not fire says which condition failed and the actual value
    assert "rule site-batch-hog.niced did not fire: " in text and "nice" in text
    assert "rule site-batch-hog.busy fired but must stay silent" in text
    for line in ("rank", "expected 2", "actual   1", "expected [0.9, 1]", "expected confirmed",
                 "actual   likely", "evidence cpu_pct", "expected 99.0", "[85.0]"):
        assert line in text, (line, text)
    assert "expected not reported" in failed["expected silent but fires"]
    assert "expected reported" in failed["expected reported but is not"]
    assert "cpu_pct >= 80" in failed["expected reported but is not"]


def test_bad_test_files_name_file_line_and_a_hint(pack):
    bad = write(pack / "tests" / "bad.yaml", """\
        cases:
          - name: typo
            fact: []
            expect: {fired: true, certainty: sure}
        """)
    tf = read_test_file(bad)
    text = "\n".join(str(p) for p in tf.problems)
    assert f"{bad}:3:5: unknown key 'fact' in a case (did you mean 'facts'?)" in text
    assert "needs a `hypothesis`" in text and "gives no facts" in text
    bad.write_text("hypothesis: x\ncases:\n  - name: n\n    facts: []\n"
                   "    expect: {certainty: sure}\n")
    text = "\n".join(str(p) for p in read_test_file(bad).problems)
    assert f"{bad}:5:25: certainty must be one of confirmed, likely" in text


def test_a_misspelt_fact_field_fails_the_case_with_the_closest_name(pack):
    write(pack / "tests" / "typo.yaml", """\
        hypothesis: site-batch-hog
        cases:
          - name: typo in a field
            facts:
              - {kind: process, pid: 7, ppid: 1, comm: batch, state: R, cpu_pc: 95}
            expect: {fired: true}
        """)
    _, run = _run(pack)
    bad = [r for r in run.results if r.case.name == "typo in a field"][0]
    assert bad.error and "typo.yaml:5" in bad.error and "cpu_pct" in bad.error


def test_snapshot_input(pack, tmp_path):
    from sysdiag.facts import HostInfo, Snapshot
    from sysdiag.facts.registry import fact_from_dict

    snap = Snapshot(sysdiag_version="0", created_at="2026-01-01T00:00:00Z",
                    host=HostInfo(hostname="h", source="test"), window_s=5.0, live=True,
                    facts=[fact_from_dict({"kind": "process", "pid": 9, "ppid": 1,
                                           "comm": "batch-9", "state": "R", "cpu_pct": 99.0,
                                           "source": "test"})], coverage=[])
    snap.save(pack / "tests" / "busy.json")
    write(pack / "tests" / "snap.yaml", """\
        hypothesis: site-batch-hog
        cases:
          - name: from a snapshot
            snapshot: busy.json
            expect: {subject: pid 9 (batch-9), evidence: {cpu_pct: 99.0}}
          - name: a snapshot that is not there
            snapshot: nope.json
            expect: {fired: true}
        """)
    _, run = _run(pack)
    by_name = {r.case.name: r for r in run.results}
    assert by_name["from a snapshot"].ok, format_failure(by_name["from a snapshot"])
    assert "nope.json" in by_name["a snapshot that is not there"].error
    json.loads((pack / "tests" / "busy.json").read_text())


def test_fixture_tree_input(tmp_path):
    """A captured /proc tree goes through the real probes (here: loadavg and psi)."""
    pack = tmp_path / "loadpack"
    write(pack / "site-load.yaml", """\
        hypothesis:
          id: site-load
          title: Load is high
          symptoms: [high-cpu]
          severity: low
        rules:
          - id: site-load.psi
            weight: 3
            when:
              p: psi where resource == "cpu" and some_avg10 >= 50
            because: "cpu some avg10 {p.some_avg10}"
        """)
    proc = pack / "tests" / "tree" / "proc"
    write(proc / "pressure" / "cpu", """\
        some avg10=75.00 avg60=60.00 avg300=20.00 total=123456
        full avg10=0.00 avg60=0.00 avg300=0.00 total=0
        """)
    write(pack / "tests" / "site-load.yaml", """\
        hypothesis: site-load
        cases:
          - name: pressure read from a captured tree
            fixture: {proc: tree/proc, sys: tree, probes: [psi]}
            fires: [site-load.psi]
            expect: {certainty: confirmed, evidence: {some_avg10: 75.0}}
        """)
    (pack / "tests" / "tree" / "sys").mkdir()
    rb, run = _run(pack)
    assert run.ok, [format_failure(r) for r in run.failed]


def test_derived_facts_can_be_given_directly(tmp_path):
    pack = tmp_path / "chain"
    write(pack / "chain.yaml", """\
        derived_facts:
          - kind: hot_proc
            key: [pid]
            fields: {pid: number, comm: string}
        hypothesis:
          id: site-hot
          title: A hot process
          severity: low
        rules:
          - id: derive.hot-proc
            when:
              p: process where cpu_pct >= 90
            derive:
              kind: hot_proc
              fields: {pid: "{p.pid}", comm: "{p.comm}"}
          - id: site-hot.hot
            weight: 2
            when:
              h: hot_proc
            subject: "pid {h.pid}"
        """)
    write(pack / "tests" / "t.yaml", """\
        hypothesis: site-hot
        cases:
          - name: the consumer alone, from a derived fact
            facts: [{kind: hot_proc, pid: 5, comm: x}]
            fires: [site-hot.hot]
            silent: [derive.hot-proc]
            expect: {subject: pid 5}
          - name: the whole chain
            facts: [{kind: process, pid: 6, ppid: 1, comm: y, state: R, cpu_pct: 95}]
            fires: [derive.hot-proc, site-hot.hot]
            expect: {subject: pid 6}
        """)
    rb, run = _run(pack)
    assert run.ok, [format_failure(r) for r in run.failed]
    assert measure(rb, run.results, {"chain"}).rule_pct == 100.0
