"""One test per durable-rules 2.0.28 trap the session wrapper steers around (ENGINE-NOTES).

A failure here that kills the interpreter (SIGSEGV) is a failure too: pytest reports the crash.
"""
from __future__ import annotations

import random
import threading

import pytest

from sysdiag.engine import run_engine
from sysdiag.engine import expr as E
from sysdiag.engine import session as S
from sysdiag.engine.run import compiled
from sysdiag.facts import Process


def proc(pid: int, ppid: int = 1, state: str = "S", **kw) -> Process:
    return Process(source=f"/proc/{pid}/stat", pid=pid, ppid=ppid, comm=kw.pop("comm", f"t{pid}"),
                   state=state, **kw)


def pdict(pid: int, **fields) -> dict:
    """A process fact as a plain dict: lets tests feed values a pydantic model would refuse."""
    return {"kind": "process", "id": f"process:{pid}", "source": "test", "pid": pid, "ppid": 1,
            "comm": f"t{pid}", "state": "S", **fields}


HOG = """\
hypothesis:
  id: zz-hog
  title: hog
  severity: low
rules:
  - id: zz-hog.r
    weight: 2
    when:
      p: process where rss_bytes > 1000
    subject: "pid {p.pid}"
"""


def with_hypothesis(hid: str, text: str) -> str:
    """Put a hypothesis header on a file of derive and weighted rules."""
    return f"hypothesis:\n  id: {hid}\n  title: {hid}\n  severity: low\n" + text


def subjects(result) -> list[str]:
    return [h.subject for h in result.hypotheses]


def test_action_exception_is_a_rule_error_and_other_matches_still_run(pack):
    text = """\
derived_facts:
  - kind: numbered
    key: [n]
    fields: {n: number}
rules:
  - id: derive.numbered
    when:
      p: process where state == "R"
    derive: {kind: numbered, fields: {n: "{p.comm}"}}
  - id: zz-num.r
    weight: 3
    when:
      x: numbered
    subject: "n {x.n}"
"""
    rb = pack({"d.yaml": with_hypothesis("zz-num", text)})
    facts = [proc(1, state="R", comm="12"), proc(2, state="R", comm="not-a-number"),
             proc(3, state="R", comm="13")]
    result = run_engine(rb, facts, ["zz-num"], [])
    [err] = result.rule_errors
    assert err.rule == "derive.numbered"
    assert "ValueError" in err.error and "numbered.n" in err.error
    assert sorted(subjects(result)) == ["n 12", "n 13"]  # the other tuples of the same call ran


def test_duplicate_derived_facts_are_deduplicated_not_fatal(pack):
    text = """\
derived_facts:
  - kind: busy_comm
    key: [comm]
    fields: {comm: string}
rules:
  - id: derive.busy
    when:
      p: process where cpu_pct >= 50
    derive: {kind: busy_comm, fields: {comm: "{p.comm}"}}
  - id: zz-busy.r
    weight: 3
    when:
      b: busy_comm
    subject: "{b.comm}"
"""
    rb = pack({"d.yaml": with_hypothesis("zz-busy", text)})
    # two processes derive the same fact (ENGINE-NOTES §3: "two qdiscs on eth0")
    facts = [proc(1, comm="java", cpu_pct=90.0), proc(2, comm="java", cpu_pct=80.0),
             proc(3, comm="gzip", cpu_pct=70.0)]
    session = S.run_session(rb, compiled(rb), facts)
    assert session.errors == []
    assert sorted(k for k in session.facts if k.startswith("busy_comm:")) == \
        ["busy_comm:gzip", "busy_comm:java"]
    result = run_engine(rb, facts, None, [])
    assert sorted(subjects(result)) == ["gzip", "java"] and result.rule_errors == []


def test_unconsumed_derived_fact_is_kept_as_terminal(pack):
    text = """\
derived_facts:
  - kind: note
    key: [pid]
    fields: {pid: number}
rules:
  - id: derive.note
    when:
      p: process where state == "Z"
    derive: {kind: note, fields: {pid: "{p.pid}"}}
"""
    rb = pack({"d.yaml": text})
    assert "not used by any rule" in rb.warnings[0].message
    session = S.run_session(rb, compiled(rb), [proc(4, state="Z")])
    assert session.errors == [] and "note:4" in session.facts
    assert session.derivations["note:4"].facts == {"p": "process:4"}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_inf_never_reach_durable(pack, bad):
    rb = pack({"h.yaml": HOG.replace("rss_bytes > 1000", "cpu_pct > 1")})
    result = run_engine(rb, [pdict(1, cpu_pct=bad), pdict(2, cpu_pct=5.0)], None, [])
    assert subjects(result) == ["pid 2"]
    [err] = result.rule_errors
    assert err.rule == "<input>" and "field cpu_pct" in err.error and "not reported" in err.error


def test_big_integers_are_clamped_for_durable_but_reported_exactly(pack):
    rb = pack({"h.yaml": HOG})
    huge = 2**70
    result = run_engine(rb, [pdict(1, rss_bytes=huge), pdict(2, rss_bytes=-huge)], None, [])
    [h] = result.hypotheses
    assert h.subject == "pid 1" and h.evidence[0].value == huge
    assert result.rule_errors == []


@pytest.mark.parametrize("value, matches", [
    (1e-05, True), (5e-324, True), (1e-7, True), (1e+16, False), (1e20, False), (1.5e300, False),
    (-1e-05, True), (0.0005, True), (2.5e3, False),
])
def test_exponent_floats_do_not_crash_the_parser(pack, value, matches):
    """json.dumps writes 1e-05 / 1e+16 without a decimal point, which made durable's C parser
    segfault (measured); the payload writes such numbers as 1.0e-05."""
    rb = pack({"h.yaml": HOG.replace("rss_bytes > 1000", "cpu_pct < 0.001")})
    result = run_engine(rb, [pdict(1, cpu_pct=value)], None, [])
    assert subjects(result) == (["pid 1"] if matches else [])
    assert result.rule_errors == []


def test_int_and_float_join_keys_are_normalised(pack):
    """Join keys compare as printed text in durable: 8 and 8.0 would not join (§5.2)."""
    text = """\
hypothesis:
  id: zz-join
  title: j
  severity: low
rules:
  - id: zz-join.r
    weight: 2
    when:
      c: process where state == "R"
      q: process where pid == c.ppid
    subject: "pid {c.pid}"
"""
    rb = pack({"j.yaml": text})
    facts = [pdict(10, cpu_pct=10.0), pdict(11, ppid=10.0, state="R")]
    assert subjects(run_engine(rb, facts, None, [])) == ["pid 11"]


def test_hash_collision_is_recovered(pack):
    """durable compares only the 32-bit FNV-1a hash of ids (#376); these two collide."""
    def fnv1a(text: str) -> int:
        h = 2166136261
        for b in text.encode():
            h = ((h ^ b) * 16777619) & 0xFFFFFFFF
        return h

    a, b = "process:535167", "process:1568090"
    assert fnv1a(a) == fnv1a(b)
    rb = pack({"h.yaml": HOG})
    facts = [proc(535167, rss_bytes=5000), proc(1568090, rss_bytes=6000)]
    result = run_engine(rb, facts, None, [])
    assert sorted(subjects(result)) == ["pid 1568090", "pid 535167"]
    assert result.rule_errors == []
    ev = {h.subject: h.evidence[0].fact for h in result.hypotheses}
    assert ev["pid 1568090"] == b  # the salted id is mapped back


def test_unmatched_facts_in_the_batch_do_not_block_dispatch(pack):
    """A batch with an unmatched fact raises in durable's API and dispatches nothing (§7)."""
    rb = pack({"h.yaml": HOG})
    facts = [proc(1, rss_bytes=10), proc(2, rss_bytes=5000), proc(3)]
    assert subjects(run_engine(rb, facts, None, [])) == ["pid 2"]


def test_diagnosis_where_nothing_matches_does_not_crash(pack):
    """delete_state segfaulted when no fact of the sid was stored (measured); the anchor fact
    prevents it."""
    rb = pack({"h.yaml": HOG})
    for _ in range(3):
        result = run_engine(rb, [proc(1, rss_bytes=10)], None, [])
        assert result.hypotheses == [] and result.rule_errors == []
    assert run_engine(rb, [], None, []).hypotheses == []


def test_more_than_1024_diagnoses_in_one_process(pack):
    """Every sid is deleted after its diagnosis, so the 1,024-live-sid limit is never hit."""
    rb = pack({"h.yaml": HOG})
    facts = [proc(1, rss_bytes=5000)]
    for _ in range(1100):
        result = run_engine(rb, facts, None, [])
    assert subjects(result) == ["pid 1"] and result.rule_errors == []
    assert S.live_sessions() == 0


def test_two_diagnoses_in_a_row_do_not_leak(pack):
    text = """\
derived_facts:
  - kind: flag
    key: [pid]
    fields: {pid: number}
rules:
  - id: derive.flag
    when:
      p: process where rss_bytes > 1000
    derive: {kind: flag, fields: {pid: "{p.pid}"}}
  - id: zz-flag.r
    weight: 2
    when:
      f: flag
      q: process where pid == f.pid
    subject: "pid {f.pid}"
"""
    rb = pack({"d.yaml": with_hypothesis("zz-flag", text)})
    first = run_engine(rb, [proc(1, rss_bytes=5000)], None, [])
    assert subjects(first) == ["pid 1"]
    # the second diagnosis has process 1 but not big: the derived flag of run 1 must be gone
    second = run_engine(rb, [proc(1, rss_bytes=10)], None, [])
    assert second.hypotheses == [] and second.rule_errors == []
    assert S.live_sessions() == 0


def test_no_action_runs_on_a_timer_thread(pack, monkeypatch):
    rb = pack({"h.yaml": HOG})
    threads = []
    original = S._on_match

    def spy(session, rule, matched):
        threads.append(threading.current_thread())
        return original(session, rule, matched)

    monkeypatch.setattr(S, "_on_match", spy)
    before = threading.active_count()
    for _ in range(20):
        run_engine(rb, [proc(i, rss_bytes=5000) for i in range(1, 30)], None, [])
    assert threads and all(t is threading.main_thread() for t in threads)
    assert threading.active_count() == before
    assert not hasattr(S._host(), "_d_timer")  # durable's dispatch timer never started


def test_quiescence_is_checked(pack):
    rb = pack({"h.yaml": HOG})
    session = S.run_session(rb, compiled(rb), [proc(1, rss_bytes=5000)])
    assert session.calls == 1 and session.activations == 1 and session.errors == []


# ---------------------------------------------------------------- differential oracle

NUMERIC = ("cpu_pct", "rss_bytes", "nice", "threads")
STRINGS = {"comm": ["java", "gzip", "sh"], "state": ["R", "S", "D"], "wchan": ["rpc_wait", "do_poll"]}


def random_condition(rng: random.Random, depth: int = 0) -> str:
    roll = rng.random()
    if depth < 2 and roll < 0.3:
        op = rng.choice(["and", "or"])
        return f"({random_condition(rng, depth + 1)} {op} {random_condition(rng, depth + 1)})"
    if depth < 2 and roll < 0.4:
        return f"not {random_condition(rng, depth + 1)}"
    kind = rng.random()
    if kind < 0.45:
        field = rng.choice(NUMERIC)
        other = rng.choice([str(rng.randint(-2, 12)), rng.choice(NUMERIC), f"0.5 * {rng.choice(NUMERIC)}"])
        return f"{field} {rng.choice(['==', '!=', '<', '<=', '>', '>='])} {other}"
    if kind < 0.7:
        field = rng.choice(list(STRINGS))
        value = rng.choice(STRINGS[field])
        return f'{field} {rng.choice(["==", "!="])} "{value}"'
    if kind < 0.8:
        field = rng.choice(list(STRINGS))
        return f"{field} in [{', '.join(repr(v).replace(chr(39), chr(34)) for v in STRINGS[field][:2])}]"
    if kind < 0.9:
        return f'{rng.choice(["comm", "wchan"])} matches "{rng.choice(["j.*", "rpc_.*", "%a+", "g?zip"])}"'
    return f"{rng.choice(NUMERIC + ('wchan',))} {rng.choice(['exists', 'missing'])}"


def random_facts(rng: random.Random, n: int) -> list[dict]:
    facts = []
    for pid in range(1, n + 1):
        d = pdict(pid, ppid=rng.randint(1, n), comm=rng.choice(STRINGS["comm"]),
                  state=rng.choice(STRINGS["state"]))
        for field in NUMERIC:
            if rng.random() < 0.8:
                d[field] = rng.choice([rng.randint(-2, 12), float(rng.randint(0, 10)) + 0.5])
        if rng.random() < 0.7:
            d["wchan"] = rng.choice(STRINGS["wchan"])
        facts.append(d)
    return facts


@pytest.mark.parametrize("seed", range(60))
def test_durable_agrees_with_the_python_evaluator(pack, seed):
    """Random conditions over random facts (with missing fields): the compiled durable rules,
    joins and post-filters select exactly what the reference evaluator selects."""
    rng = random.Random(seed)
    conds = [random_condition(rng) for _ in range(24)]
    joins = [(random_condition(rng), random_condition(rng),
              rng.choice(["", " and cpu_pct > c.cpu_pct", " and comm != c.comm"]),
              rng.choice([None, random_condition(rng)]))
             for _ in range(10)]
    rules = "".join(f"""\
  - id: zz-oracle.s{i}
    weight: 1
    when:
      c: process where {cond}
""" for i, cond in enumerate(conds))
    for i, (a, b, extra, third) in enumerate(joins):
        rules += f"""\
  - id: zz-oracle.j{i}
    weight: 1
    when:
      c: process where {a}
      q: process where ppid == c.pid and ({b}){extra}
"""
        if third:
            rules += f"      r: process where pid == c.ppid and state == q.state and ({third})\n"
    text = "hypothesis:\n  id: zz-oracle\n  title: o\n  severity: low\nrules:\n" + rules
    rb = pack({"o.yaml": text})
    facts = random_facts(rng, 40)
    session = S.run_session(rb, compiled(rb), facts)
    assert session.errors == []
    got: dict[str, set] = {}
    for rule, ids in session.matches:
        got.setdefault(rule.name, set()).add(tuple(ids.values()))
    for i, cond in enumerate(conds):
        parsed = E.parse_condition(cond)
        want = {(f["id"],) for f in facts if E.evaluate(parsed, f) is True}
        assert got.get(f"zz-oracle.s{i}", set()) == want, cond
    for i, (a, b, extra, third) in enumerate(joins):
        pa = E.parse_condition(a)
        pb = E.parse_condition(f"ppid == c.pid and ({b}){extra}")
        pairs = [(c, q) for c in facts if E.evaluate(pa, c) is True
                 for q in facts if q is not c and E.evaluate(pb, q, {"c": c}) is True]
        if third:
            pr = E.parse_condition(f"pid == c.ppid and state == q.state and ({third})")
            want = {(c["id"], q["id"], r["id"]) for c, q in pairs for r in facts
                    if r is not c and r is not q and E.evaluate(pr, r, {"c": c, "q": q}) is True}
        else:
            want = {(c["id"], q["id"]) for c, q in pairs}
        assert got.get(f"zz-oracle.j{i}", set()) == want, (a, b, extra, third)


def test_oracle_exercises_three_pattern_joins():
    """Guard against a vacuous oracle: the random data does produce 3-fact matches."""
    rng = random.Random(1)
    facts = random_facts(rng, 40)
    by_pid = {f["pid"]: f for f in facts}
    triples = [(c, q) for c in facts for q in facts
               if q is not c and q["ppid"] == c["pid"] and c["ppid"] in by_pid
               and by_pid[c["ppid"]] is not c and by_pid[c["ppid"]] is not q]
    assert len(triples) > 5


def test_fact_matching_more_than_64_conditions_loses_only_itself(pack):
    """Error 303 (64 alpha matches for one fact) fails durable's whole batch (§5.1); the session
    re-asserts fact by fact so only the offending fact is lost, and says so."""
    rules = "".join(f"""\
  - id: zz-many.r{i}
    weight: 1
    when:
      p: process where rss_bytes > {i}
    subject: "pid {{p.pid}}"
""" for i in range(70))
    rb = pack({"m.yaml": "hypothesis:\n  id: zz-many\n  title: m\n  severity: low\nrules:\n" + rules})
    facts = [proc(1, rss_bytes=10), proc(2, rss_bytes=1000), proc(3, rss_bytes=20)]
    result = run_engine(rb, facts, None, [])
    assert sorted(subjects(result)) == ["pid 1", "pid 3"]
    messages = [(e.rule, e.error) for e in result.rule_errors]
    assert ("<engine>", "durable-rules error 303 (one fact matched more than 64 conditions at "
            "once) on the batch; facts asserted one by one") in messages
    assert any(rule == "<input>" and error.startswith("fact process:2: durable-rules error 303")
               for rule, error in messages)
    # the engine stays usable afterwards
    assert subjects(run_engine(rb, [proc(1, rss_bytes=10)], None, [])) == ["pid 1"]


def test_slow_action_is_flagged(pack, monkeypatch):
    """durable drops the rest of a chain after a 10 s action (§3); such actions are reported.
    (The limit is lowered here instead of sleeping 10 s.)"""
    monkeypatch.setattr(S, "ACTION_LIMIT_S", 0.0)
    result = run_engine(pack({"h.yaml": HOG}), [proc(1, rss_bytes=5000)], None, [])
    assert any("durable-rules drops the rest of the chain" in e.error for e in result.rule_errors)


def klog(signature: str, count: int = 100) -> dict:
    return {"kind": "klog", "id": f"klog:{signature}:-", "source": "test",
            "signature": signature, "subject": "-", "count": count}


def test_patterns_split_by_signature_stay_within_64_per_fact(pack):
    """ENGINE-NOTES §5.1: the limit is 64 alpha nodes matching ONE fact. 70 klog patterns,
    63 on `signature == "oom"` and 7 on "hung", plus one with no signature test: the
    compiler's worst case is 64, nothing is flagged, and each fact asserts and fires its own."""
    from test_compile import _klog_rules

    rb = pack({"k.yaml": _klog_rules({"oom": 63, "hung": 7}, plain=1)})
    assert len([p for r in rb.rules for p in r.patterns]) == 71
    assert not [w for w in rb.warnings if "error 303" in w.message]
    matches = S.run_session(rb, compiled(rb), [klog("oom"), klog("hung")]).matches
    assert not S.run_session(rb, compiled(rb), [klog("oom")]).errors
    fired = sorted(crule.spec.id for crule, _ in matches)
    assert fired == sorted([f"zz-klog.oom{i}" for i in range(63)] + ["zz-klog.any0"] * 2
                           + [f"zz-klog.hung{i}" for i in range(7)])
    result = run_engine(rb, [klog("oom"), klog("hung")], None, [])
    assert not result.rule_errors and sorted(subjects(result)) == ["host", "hung", "oom"]


def test_65_patterns_that_can_match_one_fact_are_flagged_and_lose_it(pack):
    """Grouping never hides a real overflow: 65 patterns on `signature == "oom"` can all match
    one oom fact; the load flags it and durable refuses that fact (error 303), while the hung
    fact (7 matches) is diagnosed. (The compiler's bound is conservative: durable counts the
    matching children of one alpha node, so 40 patterns in a group plus 30 without a signature
    test passed on one fact when measured; the bound flags that mix.)"""
    from test_compile import _klog_rules

    rb = pack({"k.yaml": _klog_rules({"oom": 65, "hung": 7})})
    [w] = [w for w in rb.warnings if "error 303" in w.message]
    assert w.message.startswith("65 patterns on fact kind 'klog' can match one fact at once")
    result = run_engine(rb, [klog("oom"), klog("hung")], None, [])
    assert subjects(result) == ["hung"]
    assert any(e.rule == "<input>" and e.error.startswith("fact klog:oom:-: durable-rules error 303")
               for e in result.rule_errors)
