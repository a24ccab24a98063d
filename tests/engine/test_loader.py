"""Loading rule files: every mistake is an error naming file, line and column, with a hint."""
from __future__ import annotations

import pytest

from sysdiag.engine import RuleLoadError, load_rulebase, load_rulebase_tolerant
from sysdiag.engine.loader import load_packs

HEAD = """\
hypothesis:
  id: cpu-saturation
  title: CPU demand exceeds capacity
  severity: high
rules:
"""


def rule(when: str, weight: int = 3, rid: str = "cpu-saturation.r", extra: str = "") -> str:
    return HEAD + f"""\
  - id: {rid}
    weight: {weight}
    when:
      p: {when}
{extra}"""


def load_error(write_pack, files: dict[str, str]) -> RuleLoadError:
    d = write_pack(files)
    with pytest.raises(RuleLoadError) as info:
        load_rulebase([d], include_builtin=False)
    return info.value


def one_problem(write_pack, text: str):
    err = load_error(write_pack, {"r.yaml": text})
    assert len(err.problems) == 1, str(err)
    return err.problems[0]


def test_valid_file_loads(pack):
    rb = pack({"r.yaml": rule('psi where resource == "cpu" and some_avg10 >= 20')})
    assert list(rb.hypotheses) == ["cpu-saturation"]
    [r] = rb.rules
    assert (r.id, r.weight, r.hypothesis, r.line, r.pack) == ("cpu-saturation.r", 3,
                                                              "cpu-saturation", 6, "pack1")
    assert r.file.endswith("r.yaml")
    assert r.evidence == [("p", "resource"), ("p", "some_avg10")]
    assert rb.hypotheses["cpu-saturation"].rules == [r]


def test_unknown_kind_with_suggestion(write_pack):
    p = one_problem(write_pack, rule("pis where some_avg10 >= 20"))
    assert p.message == "unknown fact kind 'pis'"
    assert "'psi'" in p.hint
    assert (p.line, p.column) == (9, 10)


def test_unknown_field_with_suggestion_and_column(write_pack):
    p = one_problem(write_pack, rule('psi where resource == "cpu" and some_avg01 >= 20'))
    assert p.message == "fact kind 'psi' has no field 'some_avg01'"
    assert "some_avg10" in p.hint
    # line 9 is `      p: psi where ...`; the field starts at column 10 + 32
    assert (p.line, p.column) == (9, 42)


def test_str_of_error_is_file_line_col_message_hint(write_pack):
    err = load_error(write_pack, {"r.yaml": rule("psi where some_avg01 >= 20")})
    [line] = str(err).splitlines()
    path, lineno, col, rest = line.split(":", 3)
    assert path.endswith("r.yaml") and lineno == "9" and col == "20"
    assert rest.startswith(" fact kind 'psi' has no field 'some_avg01' (did you mean")


@pytest.mark.parametrize("when, fragment", [
    ('psi where some_avg10 >= "20"', "wrong type: psi.some_avg10 is a number, compared with the string"),
    ("psi where resource == 3", "wrong type: psi.resource is a string, compared with the number 3"),
    ('psi where resource == "disk"', '"disk" is never a value of psi.resource'),
    ("psi where resource > 3", "wrong type"),
    ('process where comm > "a"', "> needs numbers"),
    ("process where pid matches \"1.*\"", "`matches` needs a string field"),
    ("process where comm == pid", "wrong type: comm is a string and pid is a number"),
    ("process where comm * 2 > 3", "arithmetic needs numbers"),
    ("process where kernel_thread == 1", "is a bool, compared with the number 1"),
])
def test_type_mismatch(write_pack, when, fragment):
    p = one_problem(write_pack, rule(when))
    assert fragment in p.message


def test_string_literal_for_number_hints_quotes(write_pack):
    p = one_problem(write_pack, rule('psi where some_avg10 >= "20"'))
    assert p.hint == "remove the quotes"


def test_bad_operator(write_pack):
    p = one_problem(write_pack, rule("psi where some_avg10 => 20"))
    assert p.message == "unexpected character '='" and p.column == 31
    p = one_problem(write_pack, rule("psi where some_avg10 = 20"))
    assert p.message == "unexpected character '='" and "==" in p.hint


@pytest.mark.parametrize("weight", [0, 4, -4, "high", 1.5, True])
def test_bad_weight(write_pack, weight):
    p = one_problem(write_pack, rule("psi where some_avg10 >= 20", weight=weight))
    assert "weight" in p.message and p.line == 7


def test_duplicate_rule_id_across_files(write_pack):
    other = HEAD.replace("cpu-saturation\n", "cpu-other\n") + """\
  - id: cpu-saturation.r
    weight: 1
    when:
      p: psi
"""
    err = load_error(write_pack, {"a.yaml": rule("psi"), "b.yaml": other})
    [p] = err.problems
    assert p.message == "duplicate rule id 'cpu-saturation.r'" and p.file.endswith("b.yaml")
    assert "a.yaml:6" in p.hint


def test_duplicate_hypothesis_id(write_pack):
    err = load_error(write_pack, {"a.yaml": rule("psi", rid="x.a"), "b.yaml": rule("psi", rid="x.b")})
    assert [p.message for p in err.problems] == ["duplicate hypothesis id 'cpu-saturation'"]


def test_duplicate_yaml_key(write_pack):
    p = one_problem(write_pack, rule("psi", extra="    weight: 2\n"))
    assert p.message == "duplicate key 'weight'" and p.line == 10


def test_invalid_yaml_names_the_line(write_pack):
    p = one_problem(write_pack, HEAD + "  - id: x\n   weight: [\n")
    assert p.message.startswith("invalid YAML") and p.line >= 6


@pytest.mark.parametrize("alias", ["s", "m", "host", "post", "assert_fact", "_x"])
def test_alias_shadowing_closure_attributes_is_rejected(write_pack, alias):
    text = rule("psi").replace("      p: psi", f"      {alias}: psi")
    p = one_problem(write_pack, text)
    assert p.message == f"alias {alias!r} is reserved" and "ENGINE-NOTES" in p.hint


def test_more_than_16_patterns(write_pack):
    when = "".join(f"      a{i}: psi\n" for i in range(17))
    text = HEAD + f"  - id: x.y\n    weight: 1\n    when:\n{when}"
    p = one_problem(write_pack, text)
    assert "17 patterns; at most 16" in p.message


@pytest.mark.parametrize("regex, fragment", [(r"rpc\\d+", "backslash"), ("a{1,101}", "above 100")])
def test_regex_outside_durable_dialect(write_pack, regex, fragment):
    p = one_problem(write_pack, rule(f'process where wchan matches "{regex}"'))
    assert fragment in p.message


def test_unknown_keys_and_missing_required(write_pack):
    text = """\
hypothesis:
  id: Bad_Id
  title: t
  severity: urgent
  sevrity: high
rules: []
extra: 1
"""
    err = load_error(write_pack, {"r.yaml": text})
    messages = [p.message for p in err.problems]
    assert "unknown top-level key 'extra'" in messages
    assert "unknown key 'sevrity'" in messages
    assert "severity 'urgent' is not one of info, low, medium, high, critical" in messages
    hints = {p.message: p.hint for p in err.problems}
    assert "'severity'" in hints["unknown key 'sevrity'"]


def test_join_to_later_or_unknown_alias(write_pack):
    text = HEAD + """\
  - id: x.join
    weight: 1
    when:
      p: process where pid == q.pid
      q: process
"""
    p = one_problem(write_pack, text)
    assert p.message == "unknown alias 'q' in q.pid" and p.column == 31


def test_template_placeholders_are_checked(write_pack):
    text = rule("psi", extra="    because: avg {p.some_avg11} on {x.y}\n")
    err = load_error(write_pack, {"r.yaml": text})
    messages = [p.message for p in err.problems]
    assert "alias 'p' (psi) has no field 'some_avg11'" in messages
    assert "unknown alias 'x' in x.y" in messages


def test_next_commands_scope_names(pack, write_pack):
    ok = HEAD.replace("severity: high\n", "severity: high\n  next_commands: ['pidstat -p {pid}', "
                      "'cat {p.resource}']\n") + "  - id: x.r\n    weight: 1\n    when:\n      p: psi\n"
    pack({"r.yaml": ok})
    bad = ok.replace("{pid}", "{pod}")
    p = one_problem(write_pack, bad)
    assert p.message == "placeholder {pod} is not alias.field"


DERIVED = """\
derived_facts:
  - kind: blocked_task
    key: [pid]
    fields: {pid: number, comm: string}
rules:
  - id: derive.blocked
    when:
      p: process where state == "D"
    derive:
      kind: blocked_task
      fields: {pid: "{p.pid}", comm: "{p.comm}"}
"""


def test_derived_kinds_are_validated_like_fact_kinds(pack, write_pack):
    consumer = HEAD + """\
  - id: x.blocked
    weight: 2
    when:
      b: blocked_task where pid > 1
"""
    rb = pack({"d.yaml": DERIVED, "h.yaml": consumer})
    assert set(rb.derived_kinds) == {"blocked_task"}
    assert rb.warnings == []
    bad = consumer.replace("pid > 1", "pidd > 1")
    err = load_error(write_pack, {"d.yaml": DERIVED, "h.yaml": bad})
    assert [p.message for p in err.problems] == ["fact kind 'blocked_task' has no field 'pidd'"]


def test_derive_errors(write_pack):
    text = DERIVED.replace('fields: {pid: "{p.pid}", comm: "{p.comm}"}',
                           'fields: {comm: "{p.comm}", route: nfs}')
    err = load_error(write_pack, {"d.yaml": text})
    messages = [p.message for p in err.problems]
    assert "blocked_task has no field 'route'" in messages
    assert "derive of blocked_task does not set its key field 'pid'" in messages


def test_unconsumed_derived_kind_is_a_warning(pack):
    rb = pack({"d.yaml": DERIVED})
    assert [w.message for w in rb.warnings] == ["derived kind 'blocked_task' is not used by any rule"]


def test_rule_needs_weight_or_derive(write_pack):
    text = HEAD + "  - id: x.r\n    when:\n      p: psi\n"
    p = one_problem(write_pack, text)
    assert "either `weight`" in p.message


def test_all_problems_are_reported_at_once(write_pack):
    err = load_error(write_pack, {"a.yaml": rule("pis"), "b.yaml": "rules: 3\n"})
    assert len(err.problems) == 2
    assert len(str(err).splitlines()) == 2


def test_test_case_files_are_skipped(pack):
    rb = pack({"r.yaml": rule("psi"), "r.test.yaml": "cases: [1]\n", "t.yaml": "cases: []\n"})
    assert len(rb.rules) == 1


def test_missing_directory(tmp_path):
    with pytest.raises(RuleLoadError) as info:
        load_packs([("x", tmp_path / "nope")])
    assert "does not exist" in str(info.value)


def test_tolerant_load_rejects_only_the_broken_pack(write_pack):
    good = write_pack({"r.yaml": rule("psi", rid="zz-good.r").replace("cpu-saturation\n",
                                                                      "zz-good\n")}, name="good")
    bad = write_pack({"r.yaml": rule("pis", rid="zz-bad.r").replace("cpu-saturation\n",
                                                                    "zz-bad\n")}, name="bad")
    rb, errors = load_rulebase_tolerant([bad, good])
    assert "zz-good" in rb.hypotheses and "zz-bad" not in rb.hypotheses
    assert rb.packs[0] == "builtin"
    [err] = errors
    assert err.pack == bad.name and "unknown fact kind 'pis'" in str(err)


def test_builtin_rules_load():
    """The built-in pack (written by another engineer) must always load."""
    rb = load_rulebase()
    assert rb.packs == ["builtin"]
