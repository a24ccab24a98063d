"""What a loaded rule pack is: hypotheses, rules, derived fact kinds, and load errors."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .expr import Cond


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    column: int
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.column}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class RuleLoadError(ValueError):
    """One or more rule files are invalid. `.problems` lists them (file, line, column,
    message, hint); str() is one line per problem."""

    def __init__(self, problems: list[Problem], pack: str = "") -> None:
        self.problems = list(problems)
        self.pack = pack
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass
class PatternSpec:
    alias: str
    kind: str
    cond: Optional[Cond]
    text: str  # the pattern as written
    line: int
    column: int


@dataclass
class DeriveSpec:
    kind: str
    fields: dict[str, Any]  # field -> template or literal


@dataclass
class RuleSpec:
    id: str
    patterns: list[PatternSpec]
    file: str
    line: int
    pack: str
    hypothesis: Optional[str] = None  # None for derivation rules
    weight: Optional[int] = None
    subject: str = "host"
    because: Optional[str] = None
    evidence: list[tuple[str, str]] = field(default_factory=list)  # (alias, field)
    historical: bool = False
    derive: Optional[DeriveSpec] = None
    #: an environment gate (`requires`) of its hypothesis, not a weighing rule
    gate: bool = False

    @property
    def kinds(self) -> list[str]:
        return [p.kind for p in self.patterns]

    def pattern(self, alias: str) -> Optional[PatternSpec]:
        for p in self.patterns:
            if p.alias == alias:
                return p
        return None


@dataclass
class DerivedKindSpec:
    kind: str
    fields: dict[str, str]  # name -> number|string|bool
    key: list[str]
    description: str
    file: str
    line: int
    pack: str


@dataclass
class HypothesisSpec:
    id: str
    title: str
    severity: str
    file: str
    line: int
    pack: str
    domain: Optional[str] = None
    symptoms: list[str] = field(default_factory=list)
    level: Optional[str] = None
    resource: Optional[str] = None
    requires: Optional[RuleSpec] = None
    explanation: str = ""
    next_commands: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    remediation: Optional[str] = None
    risk: Optional[str] = None
    causes: list[str] = field(default_factory=list)
    rules: list[RuleSpec] = field(default_factory=list)


@dataclass
class RuleBase:
    hypotheses: dict[str, HypothesisSpec]
    rules: list[RuleSpec]  # weighing and derivation rules (gates are under hypotheses)
    derived_kinds: dict[str, DerivedKindSpec]
    files: list[Path] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    packs: list[str] = field(default_factory=list)
    #: compiled and registered on first use (engine/compile.py, engine/session.py)
    _compiled: Any = field(default=None, repr=False)

    @property
    def all_rules(self) -> list[RuleSpec]:
        """Every rule the engine runs, gates included."""
        gates = [h.requires for h in self.hypotheses.values() if h.requires is not None]
        return [*self.rules, *gates]

    def rules_for(self, hypothesis: str) -> list[RuleSpec]:
        return [r for r in self.rules if r.hypothesis == hypothesis]

    def derivers_of(self, kind: str) -> list[RuleSpec]:
        return [r for r in self.rules if r.derive is not None and r.derive.kind == kind]
