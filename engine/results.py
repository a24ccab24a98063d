"""What the engine concludes: the hypothesis part of every report (DESIGN.md "JSON report")."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict

Severity = Literal["info", "low", "medium", "high", "critical"]
Certainty = Literal["confirmed", "likely", "possible", "unlikely"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Evidence(_Frozen):
    """One observed value that a rule used."""

    fact: str  # fact id, e.g. "process:1234"
    kind: str
    field: str
    value: Any
    source: str  # where the value was read: a path, an API or a command
    rule: str  # the rule that used it
    weight: int  # -3..+3 as written in the rule (negative = against)
    text: Optional[str] = None  # the rule's `because`, rendered
    historical: bool = False


class DerivationNode(_Frozen):
    """How a conclusion was reached: a rule, the facts it matched, and how derived ones came to be."""

    rule: str
    conclusion: str  # "hypothesis cpu-saturation (host)" or "derived blocked_task:1234"
    weight: Optional[int] = None
    facts: list[str] = []  # ids of the facts the rule matched (raw or derived)
    children: list["DerivationNode"] = []  # derivations of the derived facts among `facts`


class Hypothesis(_Frozen):
    id: str
    title: str
    subject: str  # what it is about: "host", "pid 1234 (stress)", "eth0"...
    score: float  # [0, 1]
    certainty: Certainty
    severity: Severity
    symptoms: list[str] = []
    domain: Optional[str] = None
    evidence: list[Evidence] = []
    against: list[Evidence] = []
    explanation: str = ""
    derivation: list[DerivationNode] = []
    next_commands: list[str] = []
    references: list[str] = []
    remediation: Optional[str] = None
    risk: Optional[str] = None
    pattern: Literal["repeatable", "one-off", "unknown"] = "unknown"
    #: hypotheses this one explains (it is their root cause, KNOWLEDGE §7)
    causes: list[str] = []
    #: hypotheses reported here that explain this one
    caused_by: list[str] = []
    rule_pack: str = "builtin"


class RuledOut(_Frozen):
    """A hypothesis that was checked and is not supported, and why."""

    id: str
    title: str
    reason: str  # one line a person can read
    score: float = 0.0
    failed_condition: Optional[str] = None  # e.g. 'psi.some_avg10 >= 20'
    actual: Any = None  # the value that failed it
    missing_fact: Optional[str] = None  # a fact kind nobody provided
    probe: Optional[str] = None  # the probe that would provide it
    probe_status: Optional[str] = None  # and what happened to that probe


class RuleError(_Frozen):
    """A rule that could not be evaluated during a diagnosis (reported, never swallowed)."""

    rule: str
    error: str


class EngineResult(_Frozen):
    hypotheses: list[Hypothesis]  # ranked, best first; all of them, the caller applies --top
    ruled_out: list[RuledOut]
    rule_errors: list[RuleError] = []
    rules_evaluated: int = 0
    activations: int = 0
    timings: dict[str, float] = {}
