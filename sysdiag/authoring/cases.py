"""Rule test files: YAML cases in the spirit of `promtool test rules`.

A test file lives in a `tests/` folder of a rule pack (or is named `*.test.yaml`) and
holds `cases`. Each case gives facts and what the rules must conclude from them:

    hypothesis: cpu-saturation          # what `expect` is about unless it names another
    defaults:                           # fields every inline fact of a kind starts with
      cpu: {cpu_count: 2}
    cases:
      - name: PSI cpu some avg10 above 20
        facts:                          # inline facts: a kind and its fields ...
          - {kind: psi, resource: cpu, some_avg10: 25.0}
        # snapshot: snaps/busy.json     # ... or a snapshot from `sysdiag collect`
        # fixture: {proc: tree/proc, sys: tree/sys}   # ... or a captured /proc + /sys tree
        symptom: high-cpu               # rank as for this symptom (default: every hypothesis)
        scope: {pid: 4242}              # the command line's --pid/--iface/--netns/--cgroup
        fires: [cpu-saturation.psi]     # these rules must match
        silent: [cpu-saturation.runqueue]   # these must not
        expect:                         # one mapping, or a list of them
          fired: true                   # reported (false: not reported, i.e. ruled out)
          subject: host
          rank: 1                       # its place in the ranking, 1 = first
          score: [0.5, 1.0]             # inclusive range (or one number: at least)
          certainty: confirmed
          pattern: one-off
          explanation: "25"             # text the explanation contains
          next_command: mpstat          # text one of the next commands contains
          evidence: {some_avg10: 25.0}  # evidence (for or against) field == value
          gated: true                   # its environment gate (`requires`) is not met

Paths are relative to the test file. Every problem is reported with file:line:column.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from sysdiag.engine.loader import rule_files
from sysdiag.engine.spec import Problem
from sysdiag.engine.yamlpos import PosDict, PosList, YamlError, load_yaml

FILE_KEYS = ("hypothesis", "defaults", "cases")
CASE_KEYS = ("name", "facts", "snapshot", "fixture", "symptom", "scope", "fires", "silent",
             "expect")
EXPECT_KEYS = ("hypothesis", "fired", "subject", "rank", "score", "certainty", "pattern",
               "explanation", "next_command", "evidence", "gated")
CERTAINTIES = ("confirmed", "likely", "possible", "unlikely")
SCOPE_KEYS = ("pid", "iface", "netns", "cgroup")


@dataclass
class Expect:
    hypothesis: str
    line: int
    fired: Optional[bool] = None
    subject: Optional[str] = None
    rank: Optional[int] = None
    score: Optional[tuple[float, float]] = None
    certainty: Optional[str] = None
    pattern: Optional[str] = None
    explanation: Optional[str] = None
    next_command: Optional[str] = None
    evidence: dict[str, Any] = field(default_factory=dict)
    gated: bool = False


@dataclass
class Fixture:
    proc: Optional[Path]
    sys: Optional[Path]
    probes: Optional[list[str]] = None


@dataclass
class Case:
    name: str
    file: str
    line: int
    facts: list[dict] = field(default_factory=list)
    fact_lines: list[int] = field(default_factory=list)
    snapshot: Optional[Path] = None
    fixture: Optional[Fixture] = None
    symptom: Optional[str] = None
    scope: dict[str, str] = field(default_factory=dict)
    fires: list[str] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)
    expect: list[Expect] = field(default_factory=list)
    defaults: dict[str, dict] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def hypotheses(self) -> set[str]:
        return {e.hypothesis for e in self.expect}


@dataclass
class RuleTestFile:
    path: Path
    hypothesis: Optional[str] = None
    cases: list[Case] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def find_test_files(directory: Path) -> list[Path]:
    """The test files of a rule pack: YAML under a `tests/` or `cases/` folder, and
    `*.test.yaml` / `*.tests.yaml` files; never its rule files."""
    directory = Path(directory)
    if directory.is_file():
        return [directory]
    rules = set(rule_files(directory))
    out = []
    for path in sorted(directory.rglob("*.yaml")):
        if path in rules or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(directory).parts
        if any(part in ("tests", "cases") for part in rel[:-1]) or \
                path.name.endswith((".test.yaml", ".tests.yaml")):
            out.append(path)
    return out


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self.problems: list[Problem] = []

    def err(self, pos: tuple[int, int], message: str, hint: str = "") -> None:
        self.problems.append(Problem(self.name, pos[0], pos[1], message, hint))

    def unknown(self, data: PosDict, allowed: tuple, what: str) -> None:
        import difflib
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                self.err(data.key_pos_of(key), f"unknown key {key!r} in {what}",
                         f"did you mean {close[0]!r}?" if close else
                         f"allowed: {', '.join(allowed)}")

    def str_list(self, data: PosDict, key: str) -> list[str]:
        value = data.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.err(data.pos_of(key), f"`{key}` must be a list of rule ids",
                     "e.g. [cpu-saturation.psi]")
            return []
        return list(value)


def read_test_file(path: Path) -> RuleTestFile:
    """Parse one test file; problems are collected, never raised."""
    r = _Reader(Path(path))
    tf = RuleTestFile(path=Path(path), problems=r.problems)
    try:
        data = load_yaml(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        r.err((1, 1), f"cannot read test file: {err}")
        return tf
    except YamlError as err:
        r.err((err.line, err.column), err.message, err.hint)
        return tf
    if not isinstance(data, PosDict) or "cases" not in data:
        r.err((1, 1), "not a rule test file: it has no `cases`",
              "see docs/rule-authoring.md \"Test files\"; move other files out of tests/")
        return tf
    r.unknown(data, FILE_KEYS, "a test file")
    hyp = data.get("hypothesis")
    if hyp is not None and not isinstance(hyp, str):
        r.err(data.pos_of("hypothesis"), "`hypothesis` must be a hypothesis id")
        hyp = None
    tf.hypothesis = hyp
    defaults = _defaults(r, data)
    cases = data["cases"]
    if not isinstance(cases, PosList) or not cases:
        r.err(data.pos_of("cases"), "`cases` must be a non-empty list of cases")
        return tf
    for i, raw in enumerate(cases):
        if not isinstance(raw, PosDict):
            r.err(cases.pos_of(i), "a case is a mapping (name, facts, expect, ...)")
            continue
        case = _case(r, raw, hyp, defaults)
        if case is not None:
            tf.cases.append(case)
    return tf


def _defaults(r: _Reader, data: PosDict) -> dict[str, dict]:
    raw = data.get("defaults")
    if raw is None:
        return {}
    if not isinstance(raw, PosDict) or not all(isinstance(v, dict) for v in raw.values()):
        r.err(data.pos_of("defaults"), "`defaults` maps a fact kind to its default fields",
              "e.g. defaults: {cpu: {cpu_count: 2}}")
        return {}
    return {str(k): dict(v) for k, v in raw.items()}


def _case(r: _Reader, raw: PosDict, hyp: Optional[str],
          defaults: dict[str, dict]) -> Optional[Case]:
    before = len(r.problems)
    r.unknown(raw, CASE_KEYS, "a case")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        r.err(raw.pos, "a case needs a `name`", "one line saying what the case shows")
        name = f"case at line {raw.pos[0]}"
    case = Case(name=name, file=r.name, line=raw.pos[0], defaults=defaults)
    facts = raw.get("facts")
    if facts is not None:
        if not isinstance(facts, PosList) or not all(isinstance(f, dict) for f in facts):
            r.err(raw.pos_of("facts"), "`facts` must be a list of facts",
                  "e.g. - {kind: psi, resource: cpu, some_avg10: 25}")
        else:
            for i, fact in enumerate(facts):
                if not isinstance(fact.get("kind"), str):
                    r.err(facts.pos_of(i), "a fact needs a `kind`", "e.g. kind: process")
            case.facts = [dict(f) for f in facts]
            case.fact_lines = [facts.pos_of(i)[0] for i in range(len(facts))]
    base = r.path.parent
    if "snapshot" in raw:
        snap = raw["snapshot"]
        if not isinstance(snap, str):
            r.err(raw.pos_of("snapshot"), "`snapshot` is the path of a snapshot JSON file")
        else:
            case.snapshot = base / snap
    if "fixture" in raw:
        case.fixture = _fixture(r, raw, base)
    if case.snapshot is not None and case.fixture is not None:
        r.err(raw.pos_of("fixture"), "a case reads a snapshot or a fixture tree, not both")
    if facts is None and case.snapshot is None and case.fixture is None:
        r.err(raw.pos, f"case {name!r} gives no facts",
              "add `facts:`, `snapshot:` or `fixture:`")
    symptom = raw.get("symptom")
    if symptom is not None and not isinstance(symptom, str):
        r.err(raw.pos_of("symptom"), "`symptom` must be a symptom name, e.g. high-cpu")
    case.symptom = symptom if isinstance(symptom, str) else None
    scope = raw.get("scope", {})
    if not isinstance(scope, dict) or any(k not in SCOPE_KEYS for k in scope):
        r.err(raw.pos_of("scope"), "`scope` maps pid, iface, netns or cgroup to a value")
    else:
        case.scope = {k: str(v) for k, v in scope.items() if v is not None}
    case.fires = r.str_list(raw, "fires")
    case.silent = r.str_list(raw, "silent")
    both = set(case.fires) & set(case.silent)
    if both:
        r.err(raw.pos_of("silent"), f"{', '.join(sorted(both))} both fires and stays silent")
    expect = raw.get("expect")
    if expect is not None:
        items = expect if isinstance(expect, PosList) else [expect]
        for i, item in enumerate(items):
            pos = expect.pos_of(i) if isinstance(expect, PosList) else raw.pos_of("expect")
            if not isinstance(item, PosDict):
                r.err(pos, "`expect` is a mapping (fired, rank, score, ...) or a list of them")
                continue
            e = _expect(r, item, hyp)
            if e is not None:
                case.expect.append(e)
    if not case.fires and not case.silent and not case.expect:
        r.err(raw.pos, f"case {name!r} expects nothing",
              "add `expect:` (fired, rank, score, evidence ...) or `fires:`/`silent:`")
    return case if len(r.problems) == before else None


def _fixture(r: _Reader, raw: PosDict, base: Path) -> Optional[Fixture]:
    fx = raw["fixture"]
    if not isinstance(fx, PosDict) or not ({"proc", "sys"} & set(fx)):
        r.err(raw.pos_of("fixture"), "`fixture` names a captured tree: {proc: DIR, sys: DIR}",
              "optionally `probes: [name, ...]` (default: the symptom's playbook, else all)")
        return None
    r.unknown(fx, ("proc", "sys", "probes"), "a fixture")
    out = Fixture(proc=base / fx["proc"] if isinstance(fx.get("proc"), str) else None,
                  sys=base / fx["sys"] if isinstance(fx.get("sys"), str) else None)
    if "probes" in fx:
        out.probes = r.str_list(fx, "probes")
    for key, path in (("proc", out.proc), ("sys", out.sys)):
        if path is not None and not path.is_dir():
            r.err(fx.pos_of(key), f"fixture {key} tree {path} is not a directory")
    return out


def _expect(r: _Reader, raw: PosDict, hyp: Optional[str]) -> Optional[Expect]:
    r.unknown(raw, EXPECT_KEYS, "`expect`")
    hid = raw.get("hypothesis", hyp)
    if not isinstance(hid, str):
        r.err(raw.pos, "`expect` needs a `hypothesis` (here, or at the top of the file)")
        return None
    e = Expect(hypothesis=hid, line=raw.pos[0])
    for key in ("fired", "gated"):
        if key in raw:
            if not isinstance(raw[key], bool):
                r.err(raw.pos_of(key), f"`{key}` must be true or false")
            else:
                setattr(e, key, raw[key])
    for key in ("subject", "pattern", "explanation", "next_command"):
        if key in raw:
            if not isinstance(raw[key], str):
                r.err(raw.pos_of(key), f"`{key}` must be a string")
            else:
                setattr(e, key, raw[key])
    if "certainty" in raw:
        if raw["certainty"] not in CERTAINTIES:
            r.err(raw.pos_of("certainty"), f"certainty must be one of {', '.join(CERTAINTIES)}")
        else:
            e.certainty = raw["certainty"]
    if "rank" in raw:
        if isinstance(raw["rank"], bool) or not isinstance(raw["rank"], int) or raw["rank"] < 1:
            r.err(raw.pos_of("rank"), "`rank` is a place in the ranking: 1, 2, 3 ...")
        else:
            e.rank = raw["rank"]
    if "score" in raw:
        e.score = _score(r, raw)
    if "evidence" in raw:
        if not isinstance(raw["evidence"], dict):
            r.err(raw.pos_of("evidence"), "`evidence` maps a field to the value it must show",
                  "e.g. evidence: {some_avg10: 25.0}")
        else:
            e.evidence = dict(raw["evidence"])
    if e.certainty == "unlikely" and e.fired is None:
        e.fired = False
    needs_finding = any(v is not None for v in (e.rank, e.score, e.pattern, e.explanation,
                                                 e.next_command)) or bool(e.evidence) \
        or e.certainty not in (None, "unlikely")
    if e.fired is None and (needs_finding or e.subject is not None):
        e.fired = True
    if e.fired is False and needs_finding:
        r.err(raw.pos, "`fired: false` cannot be combined with rank, score, evidence ...",
              "a hypothesis that is not reported has none")
    if e.fired is None and not e.gated:
        r.err(raw.pos, "`expect` says nothing", "add `fired: true` or `fired: false`")
    return e


def _score(r: _Reader, raw: PosDict) -> Optional[tuple[float, float]]:
    value = raw["score"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value, 1.0]
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            or not 0 <= value[0] <= value[1] <= 1):
        r.err(raw.pos_of("score"), "`score` is [min, max] within 0..1 (or one number: at least)",
              "e.g. score: [0.5, 0.9]")
        return None
    return float(value[0]), float(value[1])
