"""The durable JSON the compiler emits (ENGINE-NOTES §10.2) and what it keeps for Python."""
from __future__ import annotations

import json

from sysdiag.engine import expr as E
from sysdiag.engine.compile import compile_pattern, compile_rulebase

RULES = """\
hypothesis:
  id: zz-compile
  title: t
  severity: low
rules:
  - id: zz-compile.single
    weight: 1
    when:
      p: process where state in ["R", "D"] and cpu_pct >= 0.5 * run_delay_pct and wchan missing
  - id: zz-compile.join
    weight: 1
    when:
      p: process where state == "D"
      q: process where pid == p.ppid and cpu_pct > p.cpu_pct and comm != p.comm
"""


def test_pattern_shape_kind_first_then_one_and():
    cp = compile_pattern("p", "psi", E.parse_condition('resource == "cpu" and some_avg10 >= 20'))
    assert cp.durable == {"$and": [{"kind": "psi"}, {"resource": "cpu"},
                                   {"$gte": {"some_avg10": 20}}]}
    assert cp.residual == [] and not cp.joined


def test_kind_only_pattern():
    assert compile_pattern("p", "cpu", None).durable == {"kind": "cpu"}


def test_neq_in_and_arithmetic():
    cp = compile_pattern("p", "x", E.parse_condition('a != 1 and b in ["R", "D"] and c >= 0.9 * d'))
    assert cp.durable["$and"][1:] == [
        {"$neq": {"a": 1}},
        {"$or": [{"b": "R"}, {"b": "D"}]},
        # a same-fact reference is guarded: a missing `d` makes the test false
        {"$and": [{"$ex": {"d": 1}}, {"$gte": {"c": {"$mul": {"$l": 0.9, "$r": {"$m": "d"}}}}}]},
    ]


def test_not_is_pushed_down_never_emitted():
    cp = compile_pattern("p", "x", E.parse_condition('not (a > 1 or b exists)'))
    assert cp.durable["$and"][1] == {"$and": [{"$lte": {"a": 1}}, {"$nex": {"b": 1}}]}
    assert "$not" not in json.dumps(cp.durable)


def test_negated_regex_stays_in_python():
    cond = E.parse_condition('a > 1 and not n matches "eth.*"')
    cp = compile_pattern("p", "x", cond)
    assert cp.durable == {"$and": [{"kind": "x"}, {"$gt": {"a": 1}}]}
    assert [E.render(c) for c in cp.residual] == ['not n matches "eth.*"']


def test_exponent_literal_without_dot_stays_in_python():
    # durable's JSON parser crashes on 1e-05 (measured); json.dumps writes it that way
    cp = compile_pattern("p", "x", E.parse_condition("a < 0.00001"))
    assert cp.durable == {"kind": "x"} and len(cp.residual) == 1


def test_equality_join_in_durable_relational_and_neq_joins_in_python():
    cond = E.parse_condition("pid == p.ppid and cpu_pct > p.cpu_pct and comm != p.comm")
    cp = compile_pattern("q", "process", cond)
    assert cp.durable == {"$and": [{"kind": "process"}, {"pid": {"p": "ppid"}}]}
    assert [E.render(c) for c in cp.residual] == ["cpu_pct > p.cpu_pct", "comm != p.comm"]
    assert cp.joined


def test_join_pattern_keeps_groups_and_field_references_in_python():
    cond = E.parse_condition('pid == p.ppid and state in ["R", "D"] and cpu_pct > threads and nice == 0')
    cp = compile_pattern("q", "process", cond, first=False)
    assert cp.durable == {"$and": [{"kind": "process"}, {"nice": 0}, {"pid": {"p": "ppid"}}]}
    assert [E.render(c) for c in cp.residual] == ['state in ["R", "D"]', "cpu_pct > threads"]


def test_reference_under_or_goes_to_python():
    cp = compile_pattern("q", "x", E.parse_condition("a == 1 and (b == p.b or c > 2)"))
    assert cp.durable == {"$and": [{"kind": "x"}, {"a": 1}]}
    assert len(cp.residual) == 1


def test_rulebase_definitions(pack):
    rb = pack({"r.yaml": RULES})
    crb = compile_rulebase(rb)
    defs = crb.definitions()
    assert set(defs) == {"zz-compile.single", "zz-compile.join"}
    assert defs["zz-compile.join"] == {"all": [
        {"p": {"$and": [{"kind": "process"}, {"state": "D"}]}},
        {"q": {"$and": [{"kind": "process"}, {"pid": {"p": "ppid"}}]}},
    ]}
    text = json.dumps(defs)
    for forbidden in ('"any"', '"$not"', '"$ne"', '"$in"', '"count"'):
        assert forbidden not in text
    # every definition is a fresh dict (durable's registration pops `run`)
    assert crb.definitions() == defs and crb.definitions() is not defs
    assert crb.consumed_kinds == {"process"}


def test_ruleset_name_depends_on_content(pack):
    a = compile_rulebase(pack({"r.yaml": RULES}))
    b = compile_rulebase(pack({"r.yaml": RULES.replace('"D"', '"R"')}))
    assert a.name != b.name and a.name.startswith("sysdiag_")


def test_keyless_join_warns(pack):
    text = RULES + """\
  - id: zz-compile.cross
    weight: 1
    when:
      p: process
      q: process where threads > p.threads
  - id: zz-compile.singleton
    weight: 1
    when:
      p: process
      c: cpu where procs_running > p.threads
"""
    crb = compile_rulebase(pack({"r.yaml": text}))
    [w] = crb.warnings  # joining the one-per-host `cpu` fact needs no key
    assert "no equality join" in w.message and w.line == 19


def test_capacity_limits(pack, write_pack):
    import pytest

    from sysdiag.engine import RuleLoadError, load_rulebase

    head = "hypothesis:\n  id: zz-cap\n  title: c\n  severity: low\nrules:\n"
    many = "".join(f"  - id: zz-cap.r{i}\n    weight: 1\n    when:\n"
                   f"      p: process where rss_bytes > {i}\n" for i in range(66))
    rb = pack({"c.yaml": head + many})
    assert any("error 303" in w.message for w in rb.warnings)
    # 513 distinct tests under one node hang durable's registration: refused at load
    hang = "".join(f"  - id: zz-cap.c{i}\n    weight: 1\n    when:\n"
                   f"      p: process where comm == \"c{i}\"\n" for i in range(501))
    with pytest.raises(RuleLoadError) as info:
        load_rulebase([write_pack({"c.yaml": head + hang})], include_builtin=False)
    assert "above 512 durable-rules hangs" in str(info.value)


def _klog_rules(groups: dict[str, int], plain: int = 0, prefix: str = "zz-klog") -> str:
    """`n` rules `signature == "S" and count >= i` per signature S, then `plain` rules
    `count >= i` that any klog fact with a count can match."""
    out = f"hypothesis:\n  id: {prefix}\n  title: k\n  severity: low\nrules:\n"
    for sig, n in groups.items():
        out += "".join(f"  - id: {prefix}.{sig}{i}\n    weight: 1\n    when:\n"
                       f"      k: klog where signature == \"{sig}\" and count >= {i}\n"
                       f"    subject: \"{{k.signature}}\"\n" for i in range(n))
    out += "".join(f"  - id: {prefix}.any{i}\n    weight: 1\n    when:\n"
                   f"      k: klog where count >= {i}\n" for i in range(plain))
    return out


def test_worst_case_groups_equalities_on_one_field():
    from sysdiag.engine.compile import leading_literals, worst_case_matches

    def cp(cond: str):
        return compile_pattern("k", "klog", E.parse_condition(cond))

    oom, hung = cp('signature == "oom-kill" and count > 1'), cp('signature == "hung-task"')
    either = cp('signature in ["oom-kill", "segfault"] and in_window == true')
    free = cp("count >= 100")  # no equality test first: it can join any group
    assert leading_literals(oom) == ("signature", {"oom-kill"})
    assert leading_literals(either) == ("signature", {"oom-kill", "segfault"})
    assert leading_literals(free) is None
    assert leading_literals(cp('signature == "x" or subject == "y"')) is None  # two fields
    assert worst_case_matches([oom, oom, hung, hung, hung]) == 3
    assert worst_case_matches([oom, oom, either, hung, free]) == 4  # oom-kill: 2 + 1 + free
    # literals durable coerces to one another (8 == "8" == 8.0, true == 1) never split a group
    assert worst_case_matches([cp("count == 8"), cp('count == "8"'), cp("count == 8.0")]) == 3
    assert worst_case_matches([cp("in_window == true"), cp("in_window == 1"),
                               cp("in_window == false")]) == 2
    # with two candidate fields the tighter bound holds: every pattern pins `signature`
    pins = [cp(f'signature == "s{i}" and subject == "a"') for i in range(5)]
    assert worst_case_matches(pins + [cp('subject == "a"')]) == 2


def test_capacity_counts_what_one_fact_can_match(pack):
    # 70 klog patterns, split 63 + 7 by signature: at most 63 can match one fact
    rb = pack({"k.yaml": _klog_rules({"oom": 63, "hung": 7})})
    assert not [w for w in rb.warnings if "error 303" in w.message], rb.warnings
    # one more pattern without a signature test can join the 63: 64 is still within the limit
    rb = pack({"k.yaml": _klog_rules({"oom": 63, "hung": 7}, plain=1)})
    assert not [w for w in rb.warnings if "error 303" in w.message], rb.warnings
    # ... and a second one makes 65 that can all match one oom fact: flagged at load
    rb = pack({"k.yaml": _klog_rules({"oom": 63, "hung": 7}, plain=2)})
    [w] = [w for w in rb.warnings if "error 303" in w.message]
    assert w.message.startswith("65 patterns on fact kind 'klog' can match one fact at once "
                                "(of 72)")
