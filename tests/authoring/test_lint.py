"""`sysdiag rules lint`: loader problems with hints, and what loads but is wrong."""
from __future__ import annotations

from authoring_helpers import PACK_RULE, write

from sysdiag.authoring.lint import lint
from sysdiag.authoring.satisfy import never_true
from sysdiag.engine import expr as E


def _texts(findings):
    return [str(f) for f in findings]


def test_a_clean_pack_has_no_findings(pack):
    findings = lint([pack])
    assert findings == [], _texts(findings)


def test_unknown_field_names_file_line_column_and_the_closest_fields(pack):
    (pack / "site-batch-hog.yaml").write_text(
        PACK_RULE.replace("cpu_pct >= 80", "cpu_pc >= 80"))
    findings = lint([pack])
    assert {f.severity for f in findings} == {"error"}
    f = findings[0]
    assert (f.file, f.line, f.column) == (str(pack / "site-batch-hog.yaml"), 14, 52)
    assert "no field 'cpu_pc'" in f.message and "did you mean 'cpu_pct'" in f.hint


def test_rules_that_can_never_fire(tmp_path):
    pack = tmp_path / "p"
    write(pack / "h.yaml", """\
        derived_facts:
          - kind: never_made
            fields: {pid: number}
        hypothesis:
          id: site-never
          title: Never
          severity: low
        rules:
          - id: site-never.range
            weight: 2
            when:
              p: process where cpu_pct > 5 and cpu_pct < 3
          - id: site-never.states
            weight: 1
            when:
              p: process where state == "R" and (state == "D" or state in ["S", "T"])
          - id: site-never.missing
            weight: -1
            when:
              p: process where rss_bytes missing and rss_bytes > 0
          - id: site-never.derived
            weight: 1
            when:
              n: never_made
        """)
    write(pack / "tests" / "h.yaml", """\
        hypothesis: site-never
        cases:
          - name: nothing
            facts: []
            expect: {fired: false}
        """)
    findings = [f for f in lint([pack]) if f.code == "never-fires"]
    text = "\n".join(_texts(findings))
    assert "rule site-never.range can never fire" in text
    assert "`process.cpu_pct > 5` and `process.cpu_pct < 3` cannot both hold" in text
    assert "rule site-never.states can never fire" in text
    assert "rule site-never.missing can never fire" in text
    assert "rule site-never.derived can never fire: pattern 'n': no rule derives 'never_made'" \
        in text
    assert "hypothesis site-never can never be reported" in text
    assert all(f.severity == "error" for f in findings)
    # the line is the pattern's
    assert any(f.line == 12 for f in findings if "range" in f.message)


def test_satisfiable_conditions_are_left_alone():
    for text in ("cpu_pct > 5 and cpu_pct < 6", "state == \"R\" or state == \"D\"",
                 "cpu_pct >= 5 and cpu_pct <= 5", "not (cpu_pct > 5) and cpu_pct > 1",
                 "cpu_pct > p.cpu_pct and cpu_pct < 3", "comm matches \"x.*\" and comm != \"x\""):
        assert never_true(E.parse_condition(text), "process") is None, text
    assert never_true(E.parse_condition("cpu_pct >= 5 and cpu_pct < 5"), "process")
    assert never_true(E.parse_condition("not (cpu_pct <= 5) and cpu_pct < 5"), "process")


def test_unused_derived_facts_hypotheses_without_tests_and_bad_test_refs(tmp_path):
    pack = tmp_path / "p"
    write(pack / "h.yaml", """\
        derived_facts:
          - kind: lonely
            fields: {pid: number}
        hypothesis:
          id: site-untested
          title: Untested
          symptoms: [high-cpuu]
          severity: low
        rules:
          - id: site-untested.busy
            weight: 1
            when:
              p: process where cpu_pct > 50
          - id: derive.lonely
            when:
              p: process where cpu_pct > 99
            derive:
              kind: lonely
              fields: {pid: "{p.pid}"}
        """)
    write(pack / "tests" / "other.yaml", """\
        hypothesis: site-untestd
        cases:
          - name: refers to nothing real
            facts: []
            fires: [site-untested.bussy]
        """)
    text = "\n".join(_texts(lint([pack])))
    assert "warning: derived kind 'lonely' is not used by any rule" in text
    assert "warning: hypothesis site-untested has no test cases" in text
    assert "error: site-untested: unknown symptom 'high-cpuu'" in text and "'high-cpu'" in text
    assert "no loaded rule has the id 'site-untested.bussy'" in text
    assert "did you mean 'site-untested.busy'" in text
    assert "no loaded rule file defines hypothesis 'site-untestd'" in text


def test_reused_ids_across_packs_are_reported_as_overrides(pack, tmp_path):
    other = tmp_path / "other"
    write(other / "dup.yaml", PACK_RULE)
    findings = lint([pack, other])
    text = "\n".join(_texts(findings))
    # a later pack reusing an id overrides the earlier definition, and lint says so
    assert "hypothesis 'site-batch-hog' overrides the one from pack" in text
    assert str(other / "dup.yaml") in text and str(pack / "site-batch-hog.yaml") in text


def test_conditions_near_durable_limits(tmp_path):
    pack = tmp_path / "p"
    patterns = "\n".join(f"      p{i}: process where pid == {i}" for i in range(14))
    write(pack / "h.yaml", "hypothesis:\n  id: site-wide\n  title: Wide\n  severity: low\n"
          "rules:\n  - id: site-wide.many\n    weight: 1\n    when:\n" + patterns + "\n")
    findings = [f for f in lint([pack]) if f.code == "durable-limit"]
    assert any("14 patterns" in f.message and "at most 16" in f.message for f in findings), \
        _texts(findings)


def test_patterns_per_fact_count_the_worst_case_not_the_total(tmp_path):
    """52+ patterns on one kind warn only if one fact can match that many: patterns whose first
    test is `==` on one field with different literals never match together."""
    def rules(groups: dict[str, int]) -> str:
        return "".join(f"  - id: site-klog.{sig}{i}\n    weight: 1\n    when:\n"
                       f"      k: klog where signature == \"{sig}\" and count >= {i}\n"
                       for sig, n in groups.items() for i in range(n))

    head = "hypothesis:\n  id: site-klog\n  title: K\n  severity: low\nrules:\n"
    split, one = tmp_path / "split", tmp_path / "one"
    # signatures of their own: the built-in klog patterns that test no signature first
    # (a few) join every group
    write(split / "h.yaml", head + rules({"site-a": 30, "site-b": 30}))
    write(one / "h.yaml", head + rules({"site-a": 50}))
    near = "can match one fact at once"
    assert not [f for f in lint([split]) if near in f.message]
    [f] = [f for f in lint([one]) if near in f.message]
    bound = int(f.message.split()[0])
    assert f.severity == "warning" and 52 <= bound <= 64, f.message
    assert f.message.startswith(f"{bound} patterns on fact kind 'klog'")
