"""The condition language: parsing, errors with their column, evaluation, regex dialect."""
from __future__ import annotations

import pytest

from sysdiag.engine import expr as E


def test_pattern_with_comparisons_and_logic():
    p = E.parse_pattern('psi where resource == "cpu" and some_avg10 >= 20')
    assert p.kind == "psi"
    assert p.cond == E.And((E.Compare("==", E.Field("resource", 10), E.Lit("cpu", 22), 10),
                            E.Compare(">=", E.Field("some_avg10", 32), E.Lit(20, 46), 32)), 10)


def test_pattern_without_condition():
    assert E.parse_pattern("cpu") == E.Pattern("cpu", None, 0)


@pytest.mark.parametrize("text, rendered", [
    ('x where a in ["R", "D"]', 'a in ["R", "D"]'),
    ('x where name matches "eth%d+"', 'name matches "eth%d+"'),
    ("x where a exists and b missing", "a exists and b missing"),
    ("x where not (a > 1 or b < 2)", "not (a > 1 or b < 2)"),
    ("x where a >= 0.9 * b", "a >= 0.9 * b"),
    ("x where (a + b) * 2 > 3", "(a + b) * 2 > 3"),
    ("x where a == p.a and b > p.b", "a == p.a and b > p.b"),
    ("x where 20 <= a", "a >= 20"),  # a literal on the left is flipped
    ("x where a == -3 and b == true and c != false", "a == -3 and b == true and c != false"),
    ("x where a > 1 and b > 2 or c > 3", "(a > 1 and b > 2) or c > 3"),
])
def test_round_trip(text, rendered):
    assert E.render(E.parse_pattern(text).cond) == rendered


@pytest.mark.parametrize("text, column, fragment", [
    ("x where a = 3", 10, "unexpected character '='"),
    ("x where a > ", 12, "expected a field name or a literal"),
    ("x where a >> 3", 11, "expected a field name or a literal"),
    ("x where a in [1, 2", 18, "expected ',' or ']'"),
    ("x where a matches eth", 18, "quoted regex"),
    ("x where a > 1 b < 2", 14, "expected `and`, `or`"),
    ("x where (a > 1", 14, "expected ')'"),
    ("x where a && b", 10, "unexpected character '&'"),
    ("x a > 1", 2, "expected `where`"),
    ("x where", 7, "empty condition"),
    ('x where a == "unterminated', 13, "unexpected character"),
    ("x where and", 8, "`and` cannot be used here"),
    ("x where a", 9, "expected a comparison"),
])
def test_errors_carry_the_column(text, column, fragment):
    with pytest.raises(E.ExprError) as info:
        E.parse_pattern(text)
    assert fragment in info.value.message
    assert info.value.pos == column


def test_operator_hint():
    with pytest.raises(E.ExprError) as info:
        E.parse_pattern("x where a = 3")
    assert "==" in info.value.hint


def _eval(cond_text, fact, binds=None):
    return E.evaluate(E.parse_condition(cond_text), fact, binds or {})


@pytest.mark.parametrize("cond, fact, expected", [
    ("a > 1", {"a": 2}, True),
    ("a > 1", {"a": 1}, False),
    ("a > 1", {}, None),  # missing field: unknown
    ("not a > 1", {}, None),  # not of unknown is unknown: "not reported" is never evidence
    ("a > 1 or b > 1", {"b": 2}, True),
    ("a > 1 and b > 1", {"b": 0}, False),
    ("a > 1 and b > 1", {"b": 2}, None),
    ("a missing", {}, True),
    ("a exists", {"a": 0}, True),
    ('s in ["R", "D"]', {"s": "D"}, True),
    ('s in ["R", "D"]', {"s": "S"}, False),
    ("a >= 0.5 * b", {"a": 5, "b": 10}, True),
    ("a >= 0.5 * b", {"a": 4.9, "b": 10}, False),
    ("a / b > 1", {"a": 1, "b": 0}, None),  # division by zero: unknown
    ('a == "3"', {"a": 3}, None),  # no coercion between strings and numbers
    ("a == 8", {"a": 8.0}, True),
    ('n matches "eth%d+"', {"n": "eth0"}, True),
    ('n matches "eth%d+"', {"n": "eth0x"}, False),  # full-string match
    ('not n matches "eth.*"', {"n": "lo"}, True),
    ("a > p.a", {"a": 2}, True),
])
def test_evaluate(cond, fact, expected):
    assert _eval(cond, fact, {"p": {"a": 1}}) is expected


@pytest.mark.parametrize("regex, text, expected", [
    ("eth%d+", "eth12", True),
    ("%w+", "a_b", False),  # %w has no underscore (measured on durable)
    ("^ab", "^ab", True),  # ^ and $ are literal in durable's dialect
    ("[^a]+", "bcd", True),
    ("a%.b", "a.b", True),
    ("a%.b", "axb", False),
    ("a{2,3}", "aaaa", False),
    ("(ab)+|cd", "abab", True),
])
def test_regex_dialect(regex, text, expected):
    assert (E.to_python_regex(regex).fullmatch(text) is not None) is expected


@pytest.mark.parametrize("regex, fragment", [
    (r"eth\d+", "backslash"),
    ("a{1,200}", "above 100"),
    ("(ab", "unbalanced '('"),
    ("%q", "unknown regex class"),
])
def test_regex_problems(regex, fragment):
    problem = E.check_regex(regex)
    assert problem is not None and fragment in problem[0]


def test_negate_pushes_not_to_the_leaves():
    cond = E.parse_condition('not (a > 1 and (b exists or c in ["x", "y"]))')
    pushed = E.negate(cond.item)
    assert E.render(pushed) == 'a <= 1 or (b missing and (c != "x" and c != "y"))'
