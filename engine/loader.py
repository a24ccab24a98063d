"""Load and validate rule files (docs/rule-format.md) into a RuleBase.

Every problem names the file, line and column and says what to do; all problems of a
load are collected and raised together as one RuleLoadError.
"""
from __future__ import annotations

import difflib
import math
import re
import string
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Optional

from sysdiag.facts import FACT_MODELS

from . import expr as E
from .spec import (DeriveSpec, DerivedKindSpec, HypothesisSpec, PatternSpec, Problem, RuleBase,
                   RuleLoadError, RuleSpec)
from .yamlpos import PosDict, PosList, YamlError, load_yaml

ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
RULE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.#-]*$")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DOMAINS = ("cpu", "memory", "process", "fd", "storage", "network", "netfilter", "tc", "nic",
           "virt", "kernel", "change")
SEVERITIES = ("info", "low", "medium", "high", "critical")
LEVELS = ("user", "kernel", "hardware")
RESOURCES = ("cpu", "memory", "network", "storage", "configuration")
DERIVED_TYPES = ("number", "string", "bool")
#: placeholders next_commands may use without an alias (docs/rule-format.md "Rendering")
SCOPE_NAMES = ("pid", "iface", "netns", "cgroup", "comm", "subject")
#: attributes of durable's action Closure: an alias with one of these names is shadowed
#: (`c.s` is the session state, ENGINE-NOTES §1.4), so they are refused. (`c` itself is the
#: closure's conventional parameter name, not an attribute: docs/rule-format.md uses it.)
CLOSURE_ATTRS = frozenset({
    "s", "m", "host", "post", "assert_fact", "retract_fact", "start_timer", "cancel_timer",
    "renew_action_lease", "delete_state", "get_facts", "get_pending_events"})
MAX_PATTERNS = 16  # durable MAX_MESSAGE_FRAMES; more fails at assert time (error 304)
INT_LIMIT = 2**63 - 1  # durable parses integers with atoll, which saturates
CF_WEIGHTS = (-3, -2, -1, 1, 2, 3)

TOP_KEYS = ("hypothesis", "rules", "derived_facts")
HYP_KEYS = ("id", "title", "domain", "symptoms", "severity", "level", "resource", "requires",
            "explanation", "next_commands", "references", "remediation", "risk", "causes")
RULE_KEYS = ("id", "weight", "when", "subject", "because", "evidence", "historical", "derive")
DERIVED_KEYS = ("kind", "description", "key", "fields")
#: top-level keys of rule *test case* files that live next to rules; such files are skipped
TEST_FILE_KEYS = ("cases", "tests", "test_cases")


# ---------------------------------------------------------------- field types

def _coarse(tp: Any) -> tuple[set[str], Optional[set]]:
    """(type names, allowed literal values or None) of a pydantic annotation."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        values = set(typing.get_args(tp))
        kinds = set()
        for v in values:
            kinds.add("bool" if isinstance(v, bool) else "number" if isinstance(v, (int, float))
                      else "string")
        return kinds, values
    if origin in (typing.Union, types.UnionType):
        kinds: set[str] = set()
        allowed: Optional[set] = set()
        for arg in typing.get_args(tp):
            if arg is type(None):
                continue
            k, a = _coarse(arg)
            kinds |= k
            allowed = None if (a is None or allowed is None) else allowed | a
        return kinds, allowed
    if tp is bool:
        return {"bool"}, None
    if tp in (int, float):
        return {"number"}, None
    if tp is str:
        return {"string"}, None
    return {"other"}, None


class FieldInfo(typing.NamedTuple):
    type: str  # number | string | bool | other
    allowed: Optional[frozenset]


_MODEL_FIELDS: dict[type, dict[str, FieldInfo]] = {}


def model_fields(model: type) -> dict[str, FieldInfo]:
    out = _MODEL_FIELDS.get(model)
    if out is None:
        out = {}
        for name, info in model.model_fields.items():
            kinds, allowed = _coarse(info.annotation)
            tp = next(iter(kinds)) if len(kinds) == 1 else "other"
            out[name] = FieldInfo(tp, frozenset(allowed) if allowed and name != "kind" else None)
        out["id"] = FieldInfo("string", None)
        _MODEL_FIELDS[model] = out
    return out


def kind_fields(kind: str, derived: dict[str, DerivedKindSpec]) -> Optional[dict[str, FieldInfo]]:
    if kind in FACT_MODELS:
        return model_fields(FACT_MODELS[kind])
    spec = derived.get(kind)
    if spec is None:
        return None
    out = {name: FieldInfo(tp, None) for name, tp in spec.fields.items()}
    out.update(kind=FieldInfo("string", None), id=FieldInfo("string", None),
               source=FieldInfo("string", None))
    return out


def _closest(name: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=3, cutoff=0.6)
    return f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


# ---------------------------------------------------------------- the loader

class _Ctx:
    """Problems of one load, and where in a file things are."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []

    def err(self, file: str, pos: tuple[int, int], message: str, hint: str = "") -> None:
        self.problems.append(Problem(file, pos[0], pos[1], message, hint))

    def warn(self, file: str, pos: tuple[int, int], message: str, hint: str = "") -> None:
        self.warnings.append(Problem(file, pos[0], pos[1], message, hint))


class _File:
    """One parsed YAML file, before cross-file validation."""

    def __init__(self, path: Path, pack: str, data: PosDict) -> None:
        self.path = path
        self.name = str(path)
        self.pack = pack
        self.data = data


def builtin_rules_dir() -> Path:
    import sysdiag.rules
    return Path(sysdiag.rules.__file__).resolve().parent


def rule_files(directory: Path) -> list[Path]:
    """The *.yaml files of a rule pack, sorted; test-case folders and files are skipped."""
    out = []
    for path in sorted(directory.rglob("*.yaml")):
        rel = path.relative_to(directory)
        if any(part in ("tests", "cases", "__pycache__") for part in rel.parts[:-1]):
            continue
        if path.name.endswith((".test.yaml", ".tests.yaml")) or path.name.startswith("test_"):
            continue
        out.append(path)
    return out


def _read(path: Path, pack: str, ctx: _Ctx) -> Optional[_File]:
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        ctx.err(name, (1, 1), f"cannot read rule file: {err}")
        return None
    try:
        data = load_yaml(text)
    except YamlError as err:
        ctx.err(name, (err.line, err.column), err.message, err.hint)
        return None
    if data is None:
        ctx.warn(name, (1, 1), "empty rule file")
        return None
    if not isinstance(data, PosDict):
        ctx.err(name, (1, 1), "a rule file is a mapping with `hypothesis`, `rules`, `derived_facts`",
                "see docs/rule-format.md")
        return None
    if not any(k in data for k in TOP_KEYS) and any(k in data for k in TEST_FILE_KEYS):
        return None  # a test-case file kept next to the rules
    for key in data:
        if key not in TOP_KEYS:
            ctx.err(name, data.key_pos_of(key), f"unknown top-level key {key!r}",
                    _closest(str(key), TOP_KEYS) or f"allowed: {', '.join(TOP_KEYS)}")
    return _File(path, pack, data)


def load_packs(packs: list[tuple[str, Path]]) -> RuleBase:
    """Load (pack name, directory) pairs as one RuleBase; raise RuleLoadError on any problem."""
    ctx = _Ctx()
    files: list[_File] = []
    for pack, directory in packs:
        if not directory.is_dir():
            ctx.err(str(directory), (1, 1), "rule directory does not exist",
                    "pass an existing directory to --rules-dir")
            continue
        for path in rule_files(directory):
            f = _read(path, pack, ctx)
            if f is not None:
                files.append(f)
    derived = _derived_kinds(files, ctx)
    hypotheses: dict[str, HypothesisSpec] = {}
    rules: list[RuleSpec] = []
    rule_ids: dict[str, str] = {}
    for f in files:
        _load_file(f, derived, hypotheses, rules, rule_ids, ctx)
    _cross_checks(hypotheses, rules, derived, ctx)
    if ctx.problems:
        raise RuleLoadError(ctx.problems, pack=",".join(p for p, _ in packs))
    return RuleBase(hypotheses=hypotheses, rules=rules, derived_kinds=derived,
                    files=[f.path for f in files], warnings=ctx.warnings,
                    packs=[p for p, _ in packs])


# ---------------------------------------------------------------- derived fact kinds

def _derived_kinds(files: list[_File], ctx: _Ctx) -> dict[str, DerivedKindSpec]:
    out: dict[str, DerivedKindSpec] = {}
    for f in files:
        items = f.data.get("derived_facts")
        if items is None:
            continue
        if not isinstance(items, PosList):
            ctx.err(f.name, f.data.pos_of("derived_facts"), "`derived_facts` must be a list")
            continue
        for i, item in enumerate(items):
            pos = items.pos_of(i)
            if not isinstance(item, PosDict):
                ctx.err(f.name, pos, "a derived fact declaration is a mapping (kind, key, fields)")
                continue
            _unknown_keys(item, DERIVED_KEYS, f.name, ctx)
            kind = item.get("kind")
            if not isinstance(kind, str) or not NAME_RE.match(kind):
                ctx.err(f.name, item.pos_of("kind"), "derived fact `kind` must be a name",
                        "letters, digits and _ , e.g. blocked_task")
                continue
            if kind in FACT_MODELS:
                ctx.err(f.name, item.pos_of("kind"),
                        f"derived kind {kind!r} is already a fact kind of the probes",
                        "choose another name")
                continue
            if kind in out:
                other = out[kind]
                ctx.err(f.name, item.pos_of("kind"), f"derived kind {kind!r} declared twice",
                        f"first declared in {other.file}:{other.line}")
                continue
            fields = item.get("fields")
            if not isinstance(fields, PosDict) or not fields:
                ctx.err(f.name, item.pos_of("fields"),
                        "derived fact `fields` must map field names to number|string|bool")
                continue
            ok_fields: dict[str, str] = {}
            for fname, ftype in fields.items():
                if not isinstance(fname, str) or not NAME_RE.match(fname) or \
                        fname in ("kind", "id", "sid", "source"):
                    ctx.err(f.name, fields.key_pos_of(fname), f"bad derived field name {fname!r}",
                            "a name; kind, id, sid and source are reserved")
                elif ftype not in DERIVED_TYPES:
                    ctx.err(f.name, fields.pos_of(fname), f"unknown field type {ftype!r}",
                            f"use one of {', '.join(DERIVED_TYPES)}")
                else:
                    ok_fields[fname] = ftype
            key = item.get("key", [])
            if not isinstance(key, list) or not all(isinstance(k, str) for k in key):
                ctx.err(f.name, item.pos_of("key"), "`key` must be a list of field names")
                key = []
            for k in key:
                if k not in ok_fields:
                    ctx.err(f.name, item.pos_of("key"), f"key field {k!r} is not in `fields`",
                            _closest(k, ok_fields))
            out[kind] = DerivedKindSpec(kind=kind, fields=ok_fields, key=list(key),
                                        description=str(item.get("description") or ""),
                                        file=f.name, line=pos[0], pack=f.pack)
    return out


def _unknown_keys(data: PosDict, allowed: tuple, file: str, ctx: _Ctx) -> None:
    for key in data:
        if key not in allowed:
            ctx.err(file, data.key_pos_of(key), f"unknown key {key!r}",
                    _closest(str(key), allowed) or f"allowed: {', '.join(allowed)}")


# ---------------------------------------------------------------- one file

def _str(data: PosDict, key: str, file: str, ctx: _Ctx, required: bool = False,
         choices: tuple = ()) -> Optional[str]:
    value = data.get(key)
    if value is None:
        if required:
            ctx.err(file, data.pos, f"missing required key {key!r}")
        return None
    if not isinstance(value, str):
        ctx.err(file, data.pos_of(key), f"{key!r} must be a string")
        return None
    if choices and value not in choices:
        ctx.err(file, data.pos_of(key), f"{key} {value!r} is not one of {', '.join(choices)}",
                _closest(value, choices))
        return None
    return value


def _str_list(data: PosDict, key: str, file: str, ctx: _Ctx) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        ctx.err(file, data.pos_of(key), f"{key!r} must be a list of strings")
        return []
    return list(value)


def _load_file(f: _File, derived: dict[str, DerivedKindSpec], hypotheses: dict[str, HypothesisSpec],
               rules: list[RuleSpec], rule_ids: dict[str, str], ctx: _Ctx) -> None:
    hyp: Optional[HypothesisSpec] = None
    raw_hyp = f.data.get("hypothesis")
    if raw_hyp is not None:
        _override_hypothesis(f, raw_hyp, hypotheses, rules, rule_ids, ctx)
        hyp = _load_hypothesis(f, raw_hyp, derived, hypotheses, ctx)
        if hyp is None:
            return  # already reported; its rules would only repeat the problem
    raw_rules = f.data.get("rules")
    if raw_rules is None:
        if hyp is not None:
            ctx.warn(f.name, f.data.pos, f"hypothesis {hyp.id!r} has no rules: it can never be reported")
        return
    if not isinstance(raw_rules, PosList):
        ctx.err(f.name, f.data.pos_of("rules"), "`rules` must be a list of rules")
        return
    for i, raw in enumerate(raw_rules):
        if not isinstance(raw, PosDict):
            ctx.err(f.name, raw_rules.pos_of(i), "a rule is a mapping (id, weight, when, ...)")
            continue
        rule = _load_rule(f, raw, hyp, derived, ctx)
        if rule is None:
            continue
        earlier = next((r for r in rules if r.id == rule.id), None)
        if earlier is not None and earlier.pack != f.pack:
            # a later pack replaces an earlier pack's rule with the same id
            _drop_rules(lambda r: r.id == rule.id, hypotheses, rules, rule_ids)
            ctx.warn(f.name, raw.pos_of("id"),
                     f"rule {rule.id!r} overrides the one from pack {earlier.pack!r} "
                     f"({earlier.file}:{earlier.line})")
        if rule.id in rule_ids:
            ctx.err(f.name, raw.pos_of("id"), f"duplicate rule id {rule.id!r}",
                    f"already used in {rule_ids[rule.id]}; rule ids are unique across all packs")
            continue
        rule_ids[rule.id] = f"{f.name}:{rule.line}"
        rules.append(rule)
        if hyp is not None and rule.hypothesis == hyp.id:
            hyp.rules.append(rule)
    if hyp is not None:
        _check_hypothesis_templates(f, raw_hyp, hyp, derived, ctx)


def _drop_rules(which, hypotheses: dict, rules: list, rule_ids: dict) -> None:
    for rule in [r for r in rules if which(r)]:
        rules.remove(rule)
        rule_ids.pop(rule.id, None)
        owner = hypotheses.get(rule.hypothesis)
        if owner is not None and rule in owner.rules:
            owner.rules.remove(rule)


def _override_hypothesis(f: _File, raw: Any, hypotheses: dict, rules: list, rule_ids: dict,
                         ctx: _Ctx) -> None:
    """A later pack that defines a hypothesis id an earlier pack defined replaces it,
    with all the earlier pack's rules for it (`--rules-dir` packs override built-ins)."""
    hid = raw.get("id") if isinstance(raw, PosDict) else None
    other = hypotheses.get(hid) if isinstance(hid, str) else None
    if other is None or other.pack == f.pack:
        return  # new, or a duplicate inside one pack (reported by _load_hypothesis)
    del hypotheses[hid]
    _drop_rules(lambda r: r.hypothesis == hid and r.pack == other.pack, hypotheses, rules, rule_ids)
    ctx.warn(f.name, raw.pos_of("id"), f"hypothesis {hid!r} overrides the one from pack "
             f"{other.pack!r} ({other.file}:{other.line}) and its rules there")


def _load_hypothesis(f: _File, raw: Any, derived: dict, hypotheses: dict,
                     ctx: _Ctx) -> Optional[HypothesisSpec]:
    if not isinstance(raw, PosDict):
        ctx.err(f.name, f.data.pos_of("hypothesis"), "`hypothesis` must be a mapping (id, title, ...)")
        return None
    _unknown_keys(raw, HYP_KEYS, f.name, ctx)
    hid = _str(raw, "id", f.name, ctx, required=True)
    title = _str(raw, "title", f.name, ctx, required=True)
    severity = _str(raw, "severity", f.name, ctx, required=True, choices=SEVERITIES)
    if hid is None or title is None or severity is None:
        return None
    if not ID_RE.match(hid):
        ctx.err(f.name, raw.pos_of("id"), f"hypothesis id {hid!r} is not kebab-case",
                "lowercase letters, digits and '-', e.g. cpu-saturation")
        return None
    if hid in hypotheses:
        other = hypotheses[hid]
        ctx.err(f.name, raw.pos_of("id"), f"duplicate hypothesis id {hid!r}",
                f"already defined in {other.file}:{other.line}")
        return None
    for key in ("explanation", "remediation", "risk"):
        _str(raw, key, f.name, ctx)
    hyp = HypothesisSpec(
        id=hid, title=title, severity=severity, file=f.name, line=raw.pos[0], pack=f.pack,
        domain=_str(raw, "domain", f.name, ctx, choices=DOMAINS),
        symptoms=_str_list(raw, "symptoms", f.name, ctx),
        level=_str(raw, "level", f.name, ctx, choices=LEVELS),
        resource=_str(raw, "resource", f.name, ctx, choices=RESOURCES),
        explanation=raw.get("explanation") if isinstance(raw.get("explanation"), str) else "",
        next_commands=_str_list(raw, "next_commands", f.name, ctx),
        references=_str_list(raw, "references", f.name, ctx),
        remediation=raw.get("remediation") if isinstance(raw.get("remediation"), str) else None,
        risk=raw.get("risk") if isinstance(raw.get("risk"), str) else None,
        causes=_str_list(raw, "causes", f.name, ctx),
    )
    if "requires" in raw:
        patterns = _load_when(f, raw, "requires", derived, ctx)
        if patterns:
            hyp.requires = RuleSpec(id=f"{hid}#requires", patterns=patterns, file=f.name,
                                    line=raw.pos_of("requires")[0], pack=f.pack, hypothesis=hid,
                                    gate=True)
    hypotheses[hid] = hyp
    return hyp


def _load_rule(f: _File, raw: PosDict, hyp: Optional[HypothesisSpec], derived: dict,
               ctx: _Ctx) -> Optional[RuleSpec]:
    n_before = len(ctx.problems)
    _unknown_keys(raw, RULE_KEYS, f.name, ctx)
    rid = _str(raw, "id", f.name, ctx, required=True)
    if rid is not None and not RULE_ID_RE.match(rid):
        ctx.err(f.name, raw.pos_of("id"), f"bad rule id {rid!r}",
                "letters, digits, '.', '-' and '_', e.g. cpu-saturation.psi")
    patterns = _load_when(f, raw, "when", derived, ctx)
    rule = RuleSpec(id=rid or "?", patterns=patterns or [], file=f.name, line=raw.pos[0],
                    pack=f.pack)
    has_weight, has_derive = "weight" in raw, "derive" in raw
    if has_weight == has_derive:
        ctx.err(f.name, raw.pos, "a rule has either `weight` (it weighs the hypothesis) "
                "or `derive` (it asserts a derived fact)",
                "add one of them" if not has_weight else "split it into two rules")
    if has_weight:
        weight = raw["weight"]
        if hyp is None:
            ctx.err(f.name, raw.pos_of("weight"), "a weighted rule needs a `hypothesis` in its file",
                    "add a hypothesis, or make it a `derive` rule")
        elif isinstance(weight, bool) or not isinstance(weight, int) or weight not in CF_WEIGHTS:
            ctx.err(f.name, raw.pos_of("weight"), f"weight {weight!r} is not one of -3..-1, 1..3",
                    "+3 near-diagnostic ... -3 contradicts (KNOWLEDGE.md §0); 0 weighs nothing")
        else:
            rule.weight = weight
            rule.hypothesis = hyp.id
    aliases = {p.alias: p.kind for p in rule.patterns}
    if has_derive:
        rule.derive = _load_derive(f, raw, aliases, derived, ctx)
    subject = raw.get("subject", "host")
    if not isinstance(subject, str):
        ctx.err(f.name, raw.pos_of("subject"), "`subject` must be a string (a template)")
    else:
        rule.subject = subject
        _check_template(f, raw.pos_of("subject"), subject, aliases, derived, ctx)
    because = raw.get("because")
    if because is not None:
        if not isinstance(because, str):
            ctx.err(f.name, raw.pos_of("because"), "`because` must be a string")
        else:
            rule.because = because
            _check_template(f, raw.pos_of("because"), because, aliases, derived, ctx)
    historical = raw.get("historical", False)
    if not isinstance(historical, bool):
        ctx.err(f.name, raw.pos_of("historical"), "`historical` must be true or false")
    else:
        rule.historical = historical
    rule.evidence = _load_evidence(f, raw, rule, derived, ctx)
    return rule if len(ctx.problems) == n_before else None


def _load_evidence(f: _File, raw: PosDict, rule: RuleSpec, derived: dict,
                   ctx: _Ctx) -> list[tuple[str, str]]:
    if "evidence" not in raw:
        out = []  # default: every field the conditions read
        for p in rule.patterns:
            for node in E.walk(p.cond) if p.cond is not None else ():
                pair = (p.alias, node.name) if isinstance(node, E.Field) else \
                    (node.alias, node.name) if isinstance(node, E.Ref) else None
                if pair and pair not in out:
                    out.append(pair)
        return out
    items = raw["evidence"]
    if not isinstance(items, PosList):
        ctx.err(f.name, raw.pos_of("evidence"), "`evidence` must be a list of alias.field")
        return []
    out = []
    for i, item in enumerate(items):
        pos = items.pos_of(i)
        if not isinstance(item, str) or item.count(".") != 1:
            ctx.err(f.name, pos, f"evidence item {item!r} is not alias.field", "e.g. p.some_avg10")
            continue
        alias, fname = item.split(".")
        _check_alias_field(f, pos, alias, fname, {p.alias: p.kind for p in rule.patterns},
                           derived, ctx)
        out.append((alias, fname))
    return out


def _load_derive(f: _File, raw: PosDict, aliases: dict[str, str], derived: dict,
                 ctx: _Ctx) -> Optional[DeriveSpec]:
    d = raw["derive"]
    if not isinstance(d, PosDict):
        ctx.err(f.name, raw.pos_of("derive"), "`derive` must be a mapping (kind, fields)")
        return None
    _unknown_keys(d, ("kind", "fields"), f.name, ctx)
    kind = d.get("kind")
    spec = derived.get(kind) if isinstance(kind, str) else None
    if spec is None:
        ctx.err(f.name, d.pos_of("kind"), f"derived kind {kind!r} is not declared",
                _closest(str(kind), derived) or "declare it under `derived_facts`")
        return None
    fields = d.get("fields", PosDict())
    if not isinstance(fields, PosDict):
        ctx.err(f.name, d.pos_of("fields"), "derive `fields` must be a mapping")
        return None
    for name, value in fields.items():
        pos = fields.pos_of(name)
        if name not in spec.fields:
            ctx.err(f.name, fields.key_pos_of(name), f"{kind} has no field {name!r}",
                    _closest(str(name), spec.fields) or f"declared: {', '.join(spec.fields)}")
            continue
        ftype = spec.fields[name]
        if isinstance(value, str):
            _check_template(f, pos, value, aliases, derived, ctx)
            if ftype != "string" and "{" not in value:
                ctx.err(f.name, pos, f"{kind}.{name} is a {ftype}, got the string {value!r}")
        elif isinstance(value, bool):
            if ftype != "bool":
                ctx.err(f.name, pos, f"{kind}.{name} is a {ftype}, got {value!r}")
        elif isinstance(value, (int, float)):
            if ftype != "number" or not math.isfinite(value):
                ctx.err(f.name, pos, f"{kind}.{name} is a {ftype}, got {value!r}")
        else:
            ctx.err(f.name, pos, f"{kind}.{name}: a value must be a literal or a template string")
    for key in spec.key:
        if key not in fields:
            ctx.err(f.name, d.pos_of("fields"), f"derive of {kind} does not set its key field {key!r}",
                    "the key identifies the derived fact; set every key field")
    return DeriveSpec(kind=kind, fields=dict(fields))


# ---------------------------------------------------------------- patterns and conditions

def _load_when(f: _File, raw: PosDict, key: str, derived: dict,
               ctx: _Ctx) -> Optional[list[PatternSpec]]:
    when = raw.get(key)
    if not isinstance(when, PosDict) or not when:
        ctx.err(f.name, raw.pos_of(key) if key in raw else raw.pos,
                f"`{key}` must map aliases to patterns", 'e.g. `p: psi where some_avg10 >= 20`')
        return None
    if len(when) > MAX_PATTERNS:
        ctx.err(f.name, raw.pos_of(key), f"{len(when)} patterns; at most {MAX_PATTERNS} per rule",
                "durable-rules fails at assert time above 16 (error 304); split the rule")
        return None
    out: list[PatternSpec] = []
    seen: dict[str, str] = {}
    for alias, text in when.items():
        kpos = when.key_pos_of(alias)
        if not isinstance(alias, str) or not NAME_RE.match(alias) or alias in E.KEYWORDS:
            ctx.err(f.name, kpos, f"bad alias {alias!r}", "a short name such as p, cpu, dev")
            continue
        if alias in CLOSURE_ATTRS or alias.startswith("_"):
            ctx.err(f.name, kpos, f"alias {alias!r} is reserved",
                    "durable-rules' action context has an attribute with this name, which "
                    "would shadow the fact (ENGINE-NOTES §1.4); rename the alias")
            continue
        if not isinstance(text, str):
            ctx.err(f.name, when.pos_of(alias), "a pattern is a string: \"<kind> where <condition>\"")
            continue
        tpos = when.val_text_pos.get(alias)
        vpos = when.pos_of(alias)

        def at(offset: int, _tpos=tpos, _vpos=vpos) -> tuple[int, int]:
            return (_tpos[0], _tpos[1] + offset) if _tpos else _vpos

        try:
            pattern = E.parse_pattern(text)
        except E.ExprError as err:
            ctx.err(f.name, at(err.pos), err.message, err.hint)
            continue
        fields = kind_fields(pattern.kind, derived)
        if fields is None:
            known = sorted(set(FACT_MODELS) | set(derived))
            ctx.err(f.name, at(pattern.kind_pos), f"unknown fact kind {pattern.kind!r}",
                    _closest(pattern.kind, known) or f"known kinds: {', '.join(known)}")
            continue
        cond = pattern.cond
        if cond is not None:
            cond = _own_refs(cond, alias)
            n = len(ctx.problems)
            _check_cond(f, at, cond, pattern.kind, fields, seen, derived, ctx)
            if len(ctx.problems) != n:
                continue
        seen[alias] = pattern.kind
        out.append(PatternSpec(alias=alias, kind=pattern.kind, cond=cond, text=text,
                               line=vpos[0], column=vpos[1]))
    return out if len(out) == len(when) else None


def _own_refs(cond: Any, alias: str) -> Any:
    """`p.x` inside p's own pattern is the plain field x."""
    if isinstance(cond, E.Ref):
        return E.Field(cond.name, cond.pos) if cond.alias == alias else cond
    if isinstance(cond, (E.Lit, E.Field)):
        return cond
    if isinstance(cond, (E.Arith, E.Compare)):
        return type(cond)(cond.op, _own_refs(cond.left, alias), _own_refs(cond.right, alias), cond.pos)
    if isinstance(cond, E.In):
        return E.In(_own_refs(cond.operand, alias), cond.values, cond.pos)
    if isinstance(cond, E.Matches):
        return E.Matches(_own_refs(cond.operand, alias), cond.regex, cond.pos)
    if isinstance(cond, E.Exists):
        return E.Exists(_own_refs(cond.operand, alias), cond.present, cond.pos)
    if isinstance(cond, (E.And, E.Or)):
        return type(cond)(tuple(_own_refs(i, alias) for i in cond.items), cond.pos)
    if isinstance(cond, E.Not):
        return E.Not(_own_refs(cond.item, alias), cond.pos)
    raise TypeError(cond)


def _check_cond(f: _File, at, cond: Any, kind: str, fields: dict[str, FieldInfo],
                earlier: dict[str, str], derived: dict, ctx: _Ctx) -> None:
    def info(node: Any) -> Optional[FieldInfo]:
        """The type of an operand; reports unknown fields/aliases (None then)."""
        if isinstance(node, E.Lit):
            v = node.value
            if isinstance(v, bool):
                return FieldInfo("bool", None)
            if isinstance(v, (int, float)):
                if not math.isfinite(v) or abs(v) > INT_LIMIT:
                    ctx.err(f.name, at(node.pos), f"number {v!r} is out of range",
                            f"numbers must be finite and within ±{INT_LIMIT}")
                    return None
                return FieldInfo("number", None)
            return FieldInfo("string", None)
        if isinstance(node, E.Field):
            fi = fields.get(node.name)
            if fi is None:
                ctx.err(f.name, at(node.pos), f"fact kind {kind!r} has no field {node.name!r}",
                        _closest(node.name, fields) or f"fields: {', '.join(sorted(fields))}")
            return fi
        if isinstance(node, E.Ref):
            if node.alias not in earlier:
                ctx.err(f.name, at(node.pos), f"unknown alias {node.alias!r} in {node.alias}.{node.name}",
                        "refer only to aliases of earlier patterns of the same rule"
                        + (f" ({', '.join(earlier)})" if earlier else ""))
                return None
            ofields = kind_fields(earlier[node.alias], derived) or {}
            fi = ofields.get(node.name)
            if fi is None:
                ctx.err(f.name, at(node.pos),
                        f"fact kind {earlier[node.alias]!r} (alias {node.alias}) has no field {node.name!r}",
                        _closest(node.name, ofields))
            return fi
        if isinstance(node, E.Arith):
            a, b = info(node.left), info(node.right)
            for side, fi in ((node.left, a), (node.right, b)):
                if fi is not None and fi.type != "number":
                    ctx.err(f.name, at(side.pos), f"arithmetic needs numbers, {E.render(side)} is a {fi.type}")
                    return None
            if isinstance(node.left, E.Lit) and isinstance(node.right, E.Lit):
                ctx.err(f.name, at(node.pos), "arithmetic between two numbers", "write the result")
                return None
            return FieldInfo("number", None) if a and b else None
        raise TypeError(node)

    def literal_ok(fi: FieldInfo, lit: E.Lit, what: str) -> None:
        lt = info(lit)
        if lt is None:
            return
        if fi.type == "other":
            ctx.err(f.name, at(lit.pos), f"{what} cannot be compared (it is not a number, string or bool)")
        elif lt.type != fi.type:
            hint = "remove the quotes" if fi.type == "number" and lt.type == "string" else \
                "quote the value" if fi.type == "string" else ""
            ctx.err(f.name, at(lit.pos),
                    f"wrong type: {what} is a {fi.type}, compared with the {lt.type} {E.render(lit)}", hint)
        elif fi.allowed is not None and lit.value not in fi.allowed:
            ctx.err(f.name, at(lit.pos), f"{E.render(lit)} is never a value of {what}",
                    f"values: {', '.join(sorted(map(str, fi.allowed)))}")

    for node in E.walk(cond):
        if isinstance(node, E.Compare):
            left, right = node.left, node.right
            if isinstance(left, E.Lit) and isinstance(right, E.Lit):
                ctx.err(f.name, at(node.pos), "a comparison between two literals",
                        "compare a field: `busy_pct >= 90`")
                continue
            li, ri = info(left), info(right)
            if li is None or ri is None:
                continue
            what = E.render(left, kind) if not isinstance(left, E.Ref) else E.render(left)
            if isinstance(right, E.Lit):
                before = len(ctx.problems)
                literal_ok(li, right, what)
                if len(ctx.problems) != before:
                    continue
            elif li.type != ri.type or li.type == "other":
                ctx.err(f.name, at(node.pos),
                        f"wrong type: {E.render(left)} is a {li.type} and {E.render(right)} is a {ri.type}")
                continue
            if node.op not in ("==", "!=") and li.type != "number":
                ctx.err(f.name, at(node.pos), f"{node.op} needs numbers; {what} is a {li.type}",
                        "use == or != for strings and booleans")
        elif isinstance(node, E.In):
            fi = info(node.operand)
            if isinstance(node.operand, E.Arith) or fi is None:
                continue
            for lit in node.values:
                literal_ok(fi, lit, E.render(node.operand, kind))
        elif isinstance(node, E.Matches):
            if not isinstance(node.operand, (E.Field, E.Ref)):
                ctx.err(f.name, at(node.pos), "`matches` applies to a field")
                continue
            fi = info(node.operand)
            if fi is not None and fi.type != "string":
                ctx.err(f.name, at(node.pos), f"`matches` needs a string field; "
                        f"{E.render(node.operand, kind)} is a {fi.type}",
                        "durable-rules misreads regex tests on numbers")
            problem = E.check_regex(node.regex)
            if problem:
                msg, off, hint = problem
                ctx.err(f.name, at(node.pos + 1 + off), msg, hint)
        elif isinstance(node, E.Exists):
            if not isinstance(node.operand, (E.Field, E.Ref)):
                ctx.err(f.name, at(node.pos), "`exists`/`missing` applies to a field")
                continue
            info(node.operand)


# ---------------------------------------------------------------- templates

_FORMATTER = string.Formatter()


def template_fields(template: str) -> list[tuple[str, str]]:
    """(field name, format spec) of every {placeholder}. Raises ValueError if malformed."""
    out = []
    for _, name, spec, _conv in _FORMATTER.parse(template):
        if name is not None:
            out.append((name, spec or ""))
    return out


def _check_alias_field(f: _File, pos, alias: str, fname: str, aliases: dict[str, set | str],
                       derived: dict, ctx: _Ctx) -> None:
    kinds = aliases.get(alias)
    if kinds is None:
        ctx.err(f.name, pos, f"unknown alias {alias!r} in {alias}.{fname}",
                f"aliases here: {', '.join(sorted(aliases))}" if aliases else "")
        return
    kinds = {kinds} if isinstance(kinds, str) else kinds
    known: set[str] = set()
    for kind in kinds:
        known |= set(kind_fields(kind, derived) or {})
    if fname not in known:
        ctx.err(f.name, pos, f"alias {alias!r} ({'/'.join(sorted(kinds))}) has no field {fname!r}",
                _closest(fname, known))


def _check_template(f: _File, pos, template: str, aliases: dict, derived: dict, ctx: _Ctx,
                    scope_ok: bool = False) -> None:
    try:
        names = template_fields(template)
    except ValueError as err:
        ctx.err(f.name, pos, f"bad template {template!r}: {err}", "write {{ and }} for literal braces")
        return
    for name, spec in names:
        if "." in name:
            alias, _, fname = name.partition(".")
            _check_alias_field(f, pos, alias, fname, aliases, derived, ctx)
        elif scope_ok and name in SCOPE_NAMES:
            continue
        else:
            ctx.err(f.name, pos, f"placeholder {{{name}}} is not alias.field",
                    "e.g. {p.pid}" + (f"; scope names: {', '.join(SCOPE_NAMES)}" if scope_ok else ""))


def _check_hypothesis_templates(f: _File, raw: PosDict, hyp: HypothesisSpec, derived: dict,
                                ctx: _Ctx) -> None:
    aliases: dict[str, set] = {}
    for rule in [*hyp.rules, *([hyp.requires] if hyp.requires else [])]:
        for p in rule.patterns:
            aliases.setdefault(p.alias, set()).add(p.kind)
    if hyp.explanation:
        _check_template(f, raw.pos_of("explanation"), hyp.explanation, aliases, derived, ctx)
    cmds = raw.get("next_commands")
    for i, cmd in enumerate(hyp.next_commands):
        _check_template(f, cmds.pos_of(i), cmd, aliases, derived, ctx, scope_ok=True)


# ---------------------------------------------------------------- across files

def _cross_checks(hypotheses: dict, rules: list[RuleSpec], derived: dict, ctx: _Ctx) -> None:
    consumed = {p.kind for r in [*rules, *(h.requires for h in hypotheses.values() if h.requires)]
                for p in r.patterns}
    produced = {r.derive.kind for r in rules if r.derive is not None}
    for kind, spec in derived.items():
        if kind not in consumed:
            # durable raises MessageNotHandled for a derived fact nobody consumes (#350);
            # the session records it as a terminal fact, but it is most likely a mistake.
            ctx.warn(spec.file, (spec.line, 1), f"derived kind {kind!r} is not used by any rule",
                     "use it in a `when`, or remove it")
        if kind not in produced:
            ctx.warn(spec.file, (spec.line, 1), f"derived kind {kind!r} is never derived",
                     "add a rule with `derive: {kind: ...}`")
    for hyp in hypotheses.values():
        for other in hyp.causes:
            if other not in hypotheses:
                ctx.warn(hyp.file, (hyp.line, 1),
                         f"{hyp.id} causes {other!r}, which no loaded rule file defines")
