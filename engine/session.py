"""One diagnosis on durable-rules. THE ONLY module that imports durable.

How it steers around durable-rules 2.0.28 (ENGINE-NOTES; each point has a test):
- a `SyncHost` whose `_run` does nothing: no timer threads run actions behind our back (§2.4);
- one ruleset per compiled rule base, registered once per process (a ruleset per run leaks, §2.2);
- a fresh uuid sid per diagnosis and `delete_state` in `finally` (1,024 live sids max, §2.2);
- facts carry explicit unique ids checked in Python first; a batch "observed" code then means a
  32-bit id-hash collision, recovered by re-asserting with a salted id (§4);
- one batch assert through `durable_rules_engine.assert_facts`, codes 0/1/2 handled, then
  `do_actions` to quiescence and a second call proving it (§3, §7);
- every action wrapped: exceptions become RuleError instead of vanishing into `s.exception` (§7);
  derived facts are asserted with explicit result codes: "observed" is dedupe, "not handled" a
  terminal fact (#350); `c.s` is never written (§2.1);
- payloads: NaN/inf refused, integers clamped to int64 (§5.2), integral floats sent as ints so
  int-vs-float join keys agree (§5.2), exponent floats written with a decimal point (the C JSON
  parser crashes on `1e-05` or `1e+16`, measured), only the fields rules read are sent.
"""
from __future__ import annotations

import json
import math
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import durable_rules_engine as _dre
from durable import engine as _durable

from . import expr as E
from .explain import render_value
from .compile import CompiledRule, CompiledRuleBase, number_is_safe
from .results import RuleError
from .spec import RuleBase

_INF = float("inf")
INT_MAX = 2**63 - 1
INT_MIN = -(2**63)
MAX_STRING = 16384  # longer strings are cut in the payload (the id hash reads len mod 65536)
ACTION_LIMIT_S = 10.0  # durable drops the rest of the chain after a 10 s action (§3)
CAP = 10000  # matches per action call
INPUT = "<input>"  # RuleError.rule for problems with the facts given to the engine
ENGINE = "<engine>"  # RuleError.rule for problems of the engine itself

#: durable-rules C error codes (rules.h, ENGINE-NOTES §7): its errors carry only the number
ERROR_CODES = {
    102: "wrong type", 105: "unknown key", 106: "too many rules", 107: "too many $nex tests",
    108: "too many rules on one condition", 113: "expression too long",
    201: "JSON parse error", 202: "JSON parse error", 203: "JSON parse error",
    204: "JSON parse error", 205: "JSON parse error", 302: "too many properties in one fact",
    303: "one fact matched more than 64 conditions at once", 304: "more than 16 patterns",
    305: "unknown alias", 309: "session not found", 313: "fact too large",
    314: "value too large", 501: "bad regex", 503: "regex too complex"}


def describe(err: Exception) -> str:
    m = re.search(r"error code: (\d+)", str(err))
    if m is None:
        return f"durable-rules: {err}"
    code = int(m.group(1))
    return f"durable-rules error {code} ({ERROR_CODES.get(code, 'see rules.h')})"


class SyncHost(_durable.Host):
    """durable's Host without the two re-arming timer threads (ENGINE-NOTES §2.4)."""

    def _run(self) -> None:
        return None


@dataclass
class Derivation:
    rule: CompiledRule
    facts: dict[str, str]  # alias -> fact id


@dataclass
class Session:
    sid: str
    crb: CompiledRuleBase
    rb: RuleBase
    facts: dict[str, dict] = field(default_factory=dict)  # id -> clean fact (raw and derived)
    derivations: dict[str, Derivation] = field(default_factory=dict)  # derived id -> how
    matches: list[tuple[CompiledRule, dict[str, str]]] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)
    activations: int = 0  # matched fact tuples
    calls: int = 0  # action calls (one per batch of up to CAP tuples)
    salted: dict[str, str] = field(default_factory=dict)  # salted id -> fact id
    interrupt: Optional[BaseException] = None
    crb_fields: dict = field(default_factory=dict)  # kind -> fields the rules read
    _handle: Any = None

    def error(self, rule: str, message: str) -> None:
        if len(self.errors) < 200:
            self.errors.append(RuleError(rule=rule, error=message))


# ---------------------------------------------------------------- host and rulesets

_HOST: Optional[SyncHost] = None
_RULESETS: dict[str, Any] = {}  # ruleset name -> durable Ruleset
_SESSIONS: dict[str, Session] = {}


def _host() -> SyncHost:
    global _HOST
    if _HOST is None:
        _HOST = SyncHost()
    return _HOST


def _make_action(rule: CompiledRule):
    def action(c: Any) -> None:
        session = _SESSIONS.get(c.s._d.get("sid"))
        if session is None:  # cannot happen: sids live exactly as long as their session
            raise RuntimeError(f"rule {rule.name}: activation for an unknown session")
        session.calls += 1
        started = time.monotonic()
        # With `cap`, c.m is a list of matched tuples; c._m is only set for a single match.
        # Never c.<alias>: Closure attributes shadow aliases (§1.4).
        tuples = [c._m] if c._m is not None else [content._d for content in c.m]
        for matched in tuples:
            session.activations += 1
            try:
                _on_match(session, rule, matched)
            except Exception as err:  # contained: one rule's failure must not end the diagnosis
                session.error(rule.name, f"{type(err).__name__}: {err}")
            except BaseException as err:  # KeyboardInterrupt: durable would swallow it
                session.interrupt = err
                break
        elapsed = time.monotonic() - started
        if elapsed >= ACTION_LIMIT_S:
            session.error(rule.name, f"action took {elapsed:.1f} s; durable-rules drops the rest "
                          "of the chain after 10 s, so results may be incomplete")
    return action


#: delete_state segfaults (measured) when no fact of the sid was stored, e.g. when every fact
#: of a diagnosis matched nothing. Every batch therefore starts with this anchor fact, which a
#: no-op rule consumes, so each state holds at least one stored fact.
ANCHOR_KIND = "__sysdiag_anchor"
ANCHOR_RULE = "__sysdiag_anchor"


def _anchor_action(c: Any) -> None:
    return None


def ruleset(crb: CompiledRuleBase) -> Any:
    """The durable Ruleset of a compiled rule base, registered once per process."""
    rs = _RULESETS.get(crb.name)
    if rs is None:
        definition = crb.definitions()  # fresh dicts: registration pops `run`
        for rule in crb.rules:
            definition[rule.name]["run"] = _make_action(rule)
            # `cap` hands every pending match of a rule to one action call: far fewer
            # Python round trips (each also re-serialises the state). Unlike `count`, it
            # leaves no partial batch pending (§1.5).
            definition[rule.name]["cap"] = CAP
        definition[ANCHOR_RULE] = {"all": [{"a": {"kind": ANCHOR_KIND}}], "run": _anchor_action}
        _host().register_rulesets({crb.name: definition})
        rs = _RULESETS[crb.name] = _host().get_ruleset(crb.name)
    return rs


# ---------------------------------------------------------------- payloads

class _Payload:
    """JSON for durable: only the fields rules read, numbers made safe for its parser."""

    def __init__(self, fields_by_kind: dict[str, frozenset]) -> None:
        self.fields_by_kind = fields_by_kind
        self.exotic: list[str] = []  # numbers that need a hand-written representation

    def fact(self, fact: dict, sid: str, fid: str) -> dict:
        out: dict[str, Any] = {"sid": sid, "id": fid, "kind": fact["kind"]}
        for name in self.fields_by_kind.get(fact["kind"], ()):
            v = fact.get(name)
            t = v.__class__
            if t is str:
                out[name] = v if len(v) <= MAX_STRING else v[:MAX_STRING]
            elif t is int:
                out[name] = v if INT_MIN <= v <= INT_MAX else (INT_MAX if v > 0 else INT_MIN)
            elif t is float:
                out[name] = self._float(v)
            elif t is bool:
                out[name] = v
            # None, lists and objects: not reported / not testable by the condition language
        return out

    def _float(self, v: float) -> Any:
        if v.is_integer() and abs(v) < 2**53:
            return int(v)  # "8.0" and "8" must join (§5.2: join keys compare as printed text)
        if abs(v) >= 2**53:
            return INT_MAX if v > 0 else INT_MIN
        if number_is_safe(v):
            return v
        marker = f"\x1fsysdiag-number-{len(self.exotic)}\x1f"
        text = repr(v)
        self.exotic.append(text.replace("e", ".0e", 1))
        return marker

    def dumps(self, obj: Any) -> str:
        text = json.dumps(obj, allow_nan=False, ensure_ascii=False)
        for i, number in enumerate(self.exotic):
            text = text.replace(json.dumps(f"\x1fsysdiag-number-{i}\x1f"), number)
        self.exotic.clear()
        return text


def fields_by_kind(crb: CompiledRuleBase) -> dict[str, frozenset]:
    out: dict[str, set] = {}
    for rule in crb.rules:
        kinds = {p.alias: p.kind for p in rule.patterns}
        for p in rule.spec.patterns:
            out.setdefault(p.kind, set())
            for node in E.walk(p.cond) if p.cond is not None else ():
                if isinstance(node, E.Field):
                    out[p.kind].add(node.name)
                elif isinstance(node, E.Ref) and node.alias in kinds:
                    out.setdefault(kinds[node.alias], set()).add(node.name)
    for names in out.values():
        names.discard("kind")
        names.discard("id")
    return {k: frozenset(v) for k, v in out.items()}


# ---------------------------------------------------------------- input facts

def clean_facts(facts: Iterable[Any], session: Session) -> None:
    """Facts (pydantic Fact or dict) -> session.facts: None and NaN/inf omitted, ids unique."""
    for index, fact in enumerate(facts):
        if isinstance(fact, dict):
            data = {k: v for k, v in fact.items() if v is not None}
            fid = data.get("id") or f"{data.get('kind')}:#{index}"
        else:
            data = {k: v for k, v in fact.__dict__.items() if v is not None}
            fid = fact.fact_id
        kind = data.get("kind")
        if not isinstance(kind, str):
            session.error(INPUT, f"fact #{index} has no kind; ignored")
            continue
        if fid in session.facts:
            session.error(INPUT, f"duplicate fact id {fid!r}: the second one was ignored "
                          "(two facts with the same natural key: a probe bug)")
            continue
        if any(v.__class__ is float and not -_INF < v < _INF for v in data.values()):
            for name, v in list(data.items()):
                if isinstance(v, float) and not math.isfinite(v):
                    del data[name]  # never sent: durable misparses or crashes on NaN/inf (§5.2)
                    session.error(INPUT, f"fact {fid}: field {name} is {v!r}; treated as not reported")
        data["id"] = fid
        session.facts[fid] = data


# ---------------------------------------------------------------- actions

def _on_match(session: Session, rule: CompiledRule, matched: dict) -> None:
    binds: dict[str, dict] = {}
    ids: dict[str, str] = {}
    for p in rule.patterns:
        fid = matched[p.alias]["id"]
        fid = session.salted.get(fid, fid)
        fact = session.facts.get(fid)
        if fact is None:
            raise RuntimeError(f"durable matched an unknown fact id {fid!r}")
        binds[p.alias] = fact
        ids[p.alias] = fid
    for alias, cond in rule.residual:
        if E.evaluate(cond, binds[alias], binds) is not True:
            return
    if rule.spec.derive is not None:
        _derive(session, rule, binds, ids)
    else:
        session.matches.append((rule, ids))


def _coerce(value: Any, ftype: str) -> Any:
    if ftype == "number":
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, (int, float)):
            return value
        text = str(value).strip()
        try:
            return int(text)
        except ValueError:
            return float(text)  # ValueError for non-numbers: reported as a RuleError
    if ftype == "bool":
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes"):
            return True
        if str(value).lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"{value!r} is not a boolean")
    return value if isinstance(value, str) else str(value)


def _derive(session: Session, rule: CompiledRule, binds: dict, ids: dict) -> None:
    spec = rule.spec.derive
    kind_spec = session.rb.derived_kinds[spec.kind]
    values: dict[str, Any] = {}
    for name, template in spec.fields.items():
        v = render_value(template, binds)
        if v is None:
            continue
        try:
            values[name] = _coerce(v, kind_spec.fields[name])
        except ValueError as err:
            raise ValueError(f"derived {spec.kind}.{name}: {err}") from None
        if isinstance(values[name], float) and not math.isfinite(values[name]):
            raise ValueError(f"derived {spec.kind}.{name} is {values[name]!r}")
    key = kind_spec.key or sorted(values)
    fid = spec.kind + ":" + ":".join(str(values.get(k, "")) for k in key)
    if fid in session.facts:
        return  # the same conclusion again (another matching tuple): first derivation kept
    fact = {"kind": spec.kind, "source": f"derived by rule {rule.name}", **values, "id": fid}
    session.facts[fid] = fact
    session.derivations[fid] = Derivation(rule, ids)
    if spec.kind in session.crb.consumed_kinds:
        _assert_one(session, fact, fid)
    # else: a terminal fact nobody consumes (#350); it stays in session.facts for reports


def _assert_one(session: Session, fact: dict, fid: str, first_attempt: int = 0) -> Optional[int]:
    """Assert one fact; returns durable's state offset. Code 2 ("already seen") for a
    Python-unique id is a hash collision: retry with a salted id."""
    payload = _Payload(session.crb_fields)
    for attempt in range(first_attempt, first_attempt + 4):
        durable_id = fid if attempt == 0 else f"{fid}~salt{attempt}"
        if attempt:
            session.salted[durable_id] = fid
        try:
            code, offset = _dre.assert_fact(session._handle, payload.dumps(
                payload.fact(fact, session.sid, durable_id)))
        except _dre.error as err:
            session.error(INPUT, f"fact {fid}: {describe(err)}; it was left out")
            return None
        if code != 2:  # 0 stored, 1 matched nothing
            return offset
    session.error(INPUT, f"fact {fid}: durable refused it as already seen 4 times (id hash collision)")
    return None


# ---------------------------------------------------------------- one diagnosis

def run_session(rb: RuleBase, crb: CompiledRuleBase, facts: Iterable[Any]) -> Session:
    """Assert the facts in a fresh sid, drive every action to quiescence, clean up."""
    session = Session(sid=uuid.uuid4().hex, crb=crb, rb=rb)
    clean_facts(facts, session)
    if not crb.rules:
        return session
    rs = ruleset(crb)
    session._handle = rs._handle
    session.crb_fields = _fields_cached(crb)
    payload = _Payload(session.crb_fields)
    batch = [payload.fact(f, session.sid, fid) for fid, f in session.facts.items()
             if f["kind"] in crb.consumed_kinds]
    batch.insert(0, {"sid": session.sid, "id": ANCHOR_KIND, "kind": ANCHOR_KIND})
    _SESSIONS[session.sid] = session
    try:
        try:
            code, offset = _dre.assert_facts(rs._handle, payload.dumps(batch))
        except _dre.error as err:
            # e.g. error 303: one fact matched too many conditions. The facts before it are
            # stored; assert the rest one by one so that only the offending fact is lost.
            session.error(ENGINE, f"{describe(err)} on the batch; facts asserted one by one")
            code, offset = 0, _assert_each(rs, session, batch)
        _drive(rs, session, offset)
        if code == 2:
            _recover_collisions(rs, session, batch)
        before = session.calls
        _drive(rs, session, offset)
        if session.calls != before:
            session.error(ENGINE, f"not quiescent: {session.calls - before} actions ran "
                          "after the engine reported none pending")
        state = rs.get_state(session.sid)
        if state.get("exception"):  # backstop: our wrapper should have caught everything
            session.error(ENGINE, f"durable-rules action error: {state['exception']}")
    finally:
        _SESSIONS.pop(session.sid, None)
        rs.delete_state(session.sid)
    if session.interrupt is not None:
        raise session.interrupt
    return session


def _drive(rs: Any, session: Session, offset: int) -> None:
    errors: list = []
    rs.do_actions(offset, lambda err, _state: errors.append(err) if err else None)
    if session.interrupt is not None:
        raise session.interrupt
    for err in errors:
        session.error(ENGINE, f"durable-rules: {err}")


def _assert_each(rs: Any, session: Session, batch: list[dict]) -> int:
    """After a failed batch: the anchor first (stored, or "already seen": either way the
    answer carries the state offset), then every fact the failed batch did not store."""
    offset = _dre.assert_fact(rs._handle, json.dumps(batch[0]))[1]
    stored = {f.get("id") for f in rs.get_facts(session.sid)}
    for item in batch[1:]:
        fid = item["id"]
        if fid not in stored:
            _assert_one(session, session.facts[fid], fid)
    return offset


def _recover_collisions(rs: Any, session: Session, batch: list[dict]) -> None:
    """Batch code 2: some fact was refused as 'already seen' although its id is unique (the
    engine compares only a 32-bit hash of the id, #376). Re-assert the facts durable did not
    store under a salted id."""
    stored = {f.get("id") for f in rs.get_facts(session.sid)}
    for item in batch:
        fid = item["id"]
        if fid not in stored and fid in session.facts:
            # a fact that matched nothing is not stored either; re-asserting it is harmless
            offset = _assert_one(session, session.facts[fid], fid, first_attempt=1)
            if offset is not None:
                _drive(rs, session, offset)


_FIELDS_CACHE: dict[str, dict] = {}


def _fields_cached(crb: CompiledRuleBase) -> dict[str, frozenset]:
    cached = _FIELDS_CACHE.get(crb.name)
    if cached is None:
        cached = _FIELDS_CACHE[crb.name] = fields_by_kind(crb)
    return cached


def live_sessions() -> int:
    """Sessions whose sid is still alive (0 between diagnoses; tests check it)."""
    return len(_SESSIONS)
