"""The rule engine: YAML rules -> durable-rules -> ranked hypotheses.

    rb = load_rulebase(extra_dirs=[...])            # RuleLoadError on a bad rule file
    result = run_engine(rb, facts, candidates, coverage, render={"pid": "1234"})

durable-rules is imported by engine/session.py only.
"""
from .loader import builtin_rules_dir
from .results import (DerivationNode, EngineResult, Evidence, Hypothesis, RuledOut, RuleError)
from .run import load_rulebase, load_rulebase_tolerant, run_engine
from .spec import (DerivedKindSpec, HypothesisSpec, Problem, RuleBase, RuleLoadError, RuleSpec)

__all__ = [
    "load_rulebase", "load_rulebase_tolerant", "run_engine", "builtin_rules_dir",
    "RuleBase", "RuleLoadError", "Problem", "HypothesisSpec", "RuleSpec", "DerivedKindSpec",
    "EngineResult", "Hypothesis", "RuledOut", "RuleError", "Evidence", "DerivationNode",
]
