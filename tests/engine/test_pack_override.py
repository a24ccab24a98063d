"""A --rules-dir pack overrides a built-in hypothesis or rule by id (issue 7)."""
from __future__ import annotations

import textwrap

import pytest

from sysdiag.engine import RuleLoadError, load_rulebase, run_engine
from sysdiag.facts import CpuSummary


def write(d, name, text):
    d.mkdir(exist_ok=True)
    (d / name).write_text(textwrap.dedent(text))
    return d


def test_pack_hypothesis_replaces_builtin_and_its_rules(tmp_path):
    builtin = load_rulebase()
    assert "cpu-saturation" in builtin.hypotheses
    pack = write(tmp_path / "site", "cpu.yaml", """\
        hypothesis:
          id: cpu-saturation
          title: CPU saturated (site definition)
          severity: low
          symptoms: [high-cpu]
        rules:
          - id: site.cpu-busy
            weight: 3
            when:
              c: cpu where busy_pct >= 50
        """)
    rb = load_rulebase([pack])
    hyp = rb.hypotheses["cpu-saturation"]
    assert hyp.title == "CPU saturated (site definition)" and hyp.pack == "site"
    assert [r.id for r in hyp.rules] == ["site.cpu-busy"]
    assert not [r for r in rb.rules if r.hypothesis == "cpu-saturation" and r.pack == "builtin"]
    assert any("overrides" in w.message and "cpu-saturation" in w.message for w in rb.warnings)
    [h] = [h for h in run_engine(rb, [CpuSummary(source="t", cpu_count=2, busy_pct=60.0)],
                                 ["cpu-saturation"], []).hypotheses]
    assert h.rule_pack == "site" and h.title.endswith("(site definition)")


def test_pack_rule_replaces_builtin_rule_with_the_same_id(tmp_path):
    builtin = load_rulebase()
    victim = next(r for r in builtin.rules if r.hypothesis == "cpu-saturation")
    pack = write(tmp_path / "site", "extra.yaml", f"""\
        hypothesis:
          id: site-extra
          title: extra
          severity: low
        rules:
          - id: {victim.id}
            weight: 1
            when:
              c: cpu where busy_pct >= 99
        """)
    rb = load_rulebase([pack])
    [rule] = [r for r in rb.rules if r.id == victim.id]
    assert rule.pack == "site" and rule.hypothesis == "site-extra"
    assert victim.id not in [r.id for r in rb.hypotheses["cpu-saturation"].rules]


def test_duplicate_ids_inside_one_pack_are_still_errors(tmp_path):
    text = """\
        hypothesis:
          id: {hid}
          title: t
          severity: low
        rules:
          - id: same.rule
            weight: 1
            when:
              c: cpu where busy_pct >= 99
        """
    d = write(tmp_path / "p", "a.yaml", text.format(hid="aa-one"))
    write(d, "b.yaml", text.format(hid="aa-two"))
    with pytest.raises(RuleLoadError, match="duplicate rule id 'same.rule'"):
        load_rulebase([d], include_builtin=False)
