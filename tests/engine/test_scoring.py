"""Certainty-factor arithmetic, labels, relevance and causal ordering."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from sysdiag.engine.scoring import causal_order, combine, label, net_certainty, relevance, rule_cf


def test_rule_cf_and_historical_halving():
    assert [rule_cf(w, False) for w in (3, 2, 1, -1, -2, -3)] == [0.8, 0.5, 0.2, -0.2, -0.5, -0.8]
    assert rule_cf(3, True) == 0.4 and rule_cf(-2, True) == -0.25


def test_combination():
    assert combine([0.8, 0.5]) == pytest.approx(0.9)
    assert combine([0.2, 0.2, 0.2]) == pytest.approx(0.488)
    assert net_certainty([0.8, -0.5]) == pytest.approx(0.6)
    assert net_certainty([0.5, -0.8]) == 0.0  # more against than for: clamped
    assert net_certainty([]) == 0.0


@pytest.mark.parametrize("score, strong, contra, expected", [
    (0.8, True, False, "confirmed"),
    (0.85, False, False, "likely"),  # no +3 item: never confirmed
    (0.95, True, True, "likely"),  # a -3 item: never confirmed
    (0.5, False, False, "likely"),
    (0.2, False, False, "possible"),
    (0.19, False, False, "unlikely"),
])
def test_labels(score, strong, contra, expected):
    assert label(score, strong, contra) == expected


def test_relevance_thirds():
    assert [relevance(i, 6) for i in range(6)] == [1.0, 1.0, 0.9, 0.9, 0.8, 0.8]
    assert relevance(0, 1) == 1.0


def test_causal_order_moves_effects_after_causes_and_survives_cycles():
    items = [SimpleNamespace(id=i) for i in ("effect", "other", "cause")]
    order = causal_order(items, {"effect": ["cause"]})
    assert [i.id for i in order] == ["other", "cause", "effect"]
    cyclic = causal_order(items, {"effect": ["cause"], "cause": ["effect"]})
    assert sorted(i.id for i in cyclic) == ["cause", "effect", "other"]
