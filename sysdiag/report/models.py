"""The report: what a diagnosis concluded, what it checked and what it could not.

One pydantic model serves every renderer (text, JSON, markdown) and generates the
JSON Schema that `sysdiag schema` prints and `sysdiag/schema/report.schema.json` ships.
The hypothesis part comes from the engine (`sysdiag.engine.results`) unchanged.
"""
from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from sysdiag.engine.results import Certainty, Hypothesis, RuledOut, RuleError
from sysdiag.facts import HostInfo, ProbeOutcome, Scope

#: bump when a field's meaning changes; consumers key on it
REPORT_SCHEMA_VERSION = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BelowThreshold(_Frozen):
    """A hypothesis with some support, scored under the reporting threshold."""

    id: str
    title: str
    subject: str
    score: float
    certainty: Certainty


class Exoneration(_Frozen):
    """A resource that was measured and found healthy for this symptom."""

    resource: str  # "cpu", "memory", "processes", ...
    summary: str  # "cpu: 12% busy, no saturation"
    probes: list[str]  # the probes whose facts back the summary (all ran ok)
    ruled_out: list[str]  # the candidate hypotheses of this resource that were checked


class FollowUp(_Frozen):
    """A read-only command run because a hypothesis fired, and what it printed."""

    hypothesis: str
    argv: list[str]
    exit_code: Optional[int] = None  # None: it did not run or did not finish
    output: str = ""  # stdout then stderr, control characters replaced, truncated
    truncated: bool = False
    duration_s: float = 0.0
    error: Optional[str] = None  # "not installed", "timed out after 3 s", ...


class RulePackError(_Frozen):
    """A rule file that could not be loaded (the rest may still have run)."""

    file: Optional[str] = None
    line: Optional[int] = None
    column: Optional[int] = None
    message: str


class Report(_Frozen):
    schema_version: int = REPORT_SCHEMA_VERSION
    sysdiag_version: str
    generated_at: str  # ISO 8601, UTC
    host: HostInfo
    symptom: str
    window_s: float  # the window actually sampled (0 for a captured tree)
    #: "live", "snapshot:<path>" or "tree:<proc-root>"
    source: str
    scope: Scope = Scope()
    threshold: float = Field(description="minimum score for a hypothesis to count as a finding")
    #: ranked, best first, at or above the threshold, `--top` applied
    hypotheses: list[Hypothesis] = []
    #: how many hypotheses were at or above the threshold before `--top`
    hypotheses_total: int = 0
    below_threshold: list[BelowThreshold] = []
    ruled_out: list[RuledOut] = []
    exonerated: list[Exoneration] = []
    #: every probe of the playbook (and of the snapshot): ok / unavailable / failed / timed_out / skipped
    coverage: list[ProbeOutcome] = []
    follow_ups: list[FollowUp] = []
    timings: dict[str, float] = {}
    incomplete: bool = False
    incomplete_reason: Optional[str] = None
    #: rules that failed while evaluating (the diagnosis went on without them)
    rule_errors: list[RuleError] = []
    #: rule files that failed to load
    rule_pack_errors: list[RulePackError] = []
    #: what this version does not check yet, from the playbook
    notes: list[str] = []

    @property
    def has_findings(self) -> bool:
        return bool(self.hypotheses)

