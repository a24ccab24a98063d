"""Diagnoses end to end on small rule packs: chaining, joins, scoring, explanations."""
from __future__ import annotations

import pytest

from sysdiag.engine import run_engine
from sysdiag.facts import CpuSummary, HostInfo, ProbeOutcome, Pressure, Process


def proc(pid: int, ppid: int = 1, state: str = "S", **kw) -> Process:
    return Process(source=f"/proc/{pid}/stat", pid=pid, ppid=ppid, comm=kw.pop("comm", f"t{pid}"),
                   state=state, **kw)


def hyp_file(hid: str, rules: str, extra: str = "") -> str:
    return f"""\
hypothesis:
  id: {hid}
  title: {hid} title
  severity: medium
{extra}rules:
{rules}"""


CHAIN = """\
derived_facts:
  - kind: blocked_task
    key: [pid]
    fields: {pid: number, ppid: number, comm: string}
  - kind: blocked_parent
    key: [pid]
    fields: {pid: number, children: number}
rules:
  - id: derive.blocked
    when:
      p: process where state == "D" and wchan matches "rpc_wait.*|nfs_.*"
    derive:
      kind: blocked_task
      fields: {pid: "{p.pid}", ppid: "{p.ppid}", comm: "{p.comm}"}
  - id: derive.parent
    when:
      b: blocked_task
      q: process where pid == b.ppid and state == "S"
    derive:
      kind: blocked_parent
      fields: {pid: "{q.pid}", children: 1}
"""
CHAIN_HYP = hyp_file("zz-nfs-hang", """\
  - id: zz-nfs-hang.parent
    weight: 3
    when:
      x: blocked_parent where children >= 1
    subject: "pid {x.pid}"
    because: parent {x.pid} waits on blocked children
""", extra="""\
  explanation: "process {x.pid} waits for children blocked on NFS"
  next_commands: ["cat /proc/{pid}/stack", "nfsstat -c"]
""")


def test_forward_chaining_three_levels_with_derivation_tree(pack):
    rb = pack({"chain.yaml": CHAIN, "hyp.yaml": CHAIN_HYP})
    facts = [proc(10), proc(11, ppid=10, state="D", wchan="rpc_wait_bit_killable"),
             proc(12, ppid=10, state="D", wchan="nfs_wait"),  # same parent: one blocked_parent
             proc(20), proc(21, ppid=20, state="D", wchan="io_schedule")]  # not NFS
    result = run_engine(rb, facts, ["zz-nfs-hang"], [])
    assert result.rule_errors == []
    [h] = result.hypotheses
    assert (h.subject, h.certainty, h.score) == ("pid 10", "confirmed", 0.8)
    assert h.explanation == "process 10 waits for children blocked on NFS"
    assert h.next_commands == ["cat /proc/10/stack", "nfsstat -c"]
    [ev] = h.evidence
    assert (ev.fact, ev.field, ev.value, ev.text) == ("blocked_parent:10", "children", 1,
                                                      "parent 10 waits on blocked children")
    assert ev.source == "derived by rule derive.parent"
    [top] = h.derivation
    assert (top.rule, top.conclusion, top.facts) == ("zz-nfs-hang.parent",
                                                     "hypothesis zz-nfs-hang (pid 10)",
                                                     ["blocked_parent:10"])
    [level2] = top.children
    assert level2.rule == "derive.parent" and level2.conclusion == "derived blocked_parent:10"
    assert level2.facts[1] == "process:10"
    [level1] = level2.children
    assert level1.rule == "derive.blocked" and level1.facts in (["process:11"], ["process:12"])
    assert level1.children == []  # raw facts end the tree


JOIN = hyp_file("zz-hot-child", """\
  - id: zz-hot-child.join
    weight: 2
    when:
      c: process where state == "R"
      q: process where pid == c.ppid and cpu_pct < c.cpu_pct
    subject: "pid {c.pid}"
""")


def test_equality_join_with_relational_post_filter(pack):
    rb = pack({"j.yaml": JOIN})
    facts = [proc(10, cpu_pct=10.0), proc(11, ppid=10, state="R", cpu_pct=90.0),  # match
             proc(20, cpu_pct=50.0), proc(21, ppid=20, state="R", cpu_pct=5.0),  # relational false
             proc(31, ppid=30, state="R", cpu_pct=99.0),  # no parent
             proc(40), proc(41, ppid=40, state="R", cpu_pct=50.0)]  # parent cpu not reported
    result = run_engine(rb, facts, None, [])
    assert [h.subject for h in result.hypotheses] == ["pid 11"]
    assert result.hypotheses[0].derivation[0].facts == ["process:11", "process:10"]


SCORE = hyp_file("zz-score", """\
  - id: zz-score.strong
    weight: 3
    when:
      c: cpu where busy_pct >= 90
  - id: zz-score.psi
    weight: 2
    when:
      p: psi where resource == "cpu" and some_avg10 >= 20
  - id: zz-score.against
    weight: -2
    when:
      c: cpu where idle_pct >= 50
  - id: zz-score.contradiction
    weight: -3
    when:
      c: cpu where idle_cpus >= cpu_count
  - id: zz-score.old
    weight: 3
    historical: true
    when:
      h: host where uptime_s > 0
""")


def cpu(**kw) -> CpuSummary:
    return CpuSummary(source="/proc/stat", cpu_count=kw.pop("cpu_count", 4), **kw)


PSI = Pressure(source="/proc/pressure/cpu", resource="cpu", some_avg10=30.0)
HOST = HostInfo(source="uname", hostname="h", uptime_s=5.0)


@pytest.mark.parametrize("facts, score, certainty", [
    ([cpu(busy_pct=95.0)], 0.8, "confirmed"),  # +3
    ([cpu(busy_pct=95.0), PSI], 0.9, "confirmed"),  # 0.8 + 0.5 * 0.2
    ([cpu(busy_pct=95.0, idle_pct=60.0), PSI], 0.8, "confirmed"),  # (0.9 - 0.5) / 0.5
    ([cpu(busy_pct=95.0, idle_pct=60.0)], 0.6, "likely"),  # (0.8 - 0.5) / 0.5
    ([PSI], 0.5, "likely"),
    # 1 - 0.2*0.5*0.6 = 0.94 for, 0.8 against: (0.94 - 0.8) / 0.2
    ([cpu(busy_pct=95.0, idle_cpus=4, cpu_count=4), PSI, HOST], 0.7, "likely"),
    ([HOST], 0.4, "possible"),  # historical: half weight
])
def test_certainty_factors_and_labels(pack, facts, score, certainty):
    result = run_engine(pack({"s.yaml": SCORE}), facts, None, [])
    [h] = result.hypotheses
    assert (h.score, h.certainty) == (score, certainty)
    assert h.pattern == ("one-off" if facts == [HOST] else "unknown")
    assert len(h.evidence) + len(h.against) >= len(facts)


def test_only_counter_evidence_is_ruled_out_with_reason(pack):
    result = run_engine(pack({"s.yaml": SCORE}), [cpu(busy_pct=10.0, idle_pct=80.0)], None, [])
    assert result.hypotheses == []
    [out] = result.ruled_out
    assert out.reason == "score 0.00 is below 0.20; nothing supports it; against: zz-score.against (-2)"


def test_symptom_relevance_by_thirds(pack):
    files = {f"{h}.yaml": hyp_file(h, f"""\
  - id: {h}.r
    weight: 3
    when:
      c: cpu where busy_pct >= 90
""") for h in ("zz-a", "zz-b", "zz-c")}
    rb = pack(files)
    result = run_engine(rb, [cpu(busy_pct=95.0)], ["zz-a", "zz-b", "zz-c"], [])
    assert [(h.id, h.score, h.certainty) for h in result.hypotheses] == [
        ("zz-a", 0.8, "confirmed"), ("zz-b", 0.72, "likely"), ("zz-c", 0.64, "likely")]
    only_b = run_engine(rb, [cpu(busy_pct=95.0)], ["zz-b"], [])
    assert [h.id for h in only_b.hypotheses] == ["zz-b"]  # others are not candidates
    assert only_b.ruled_out == []


def test_same_rule_same_subject_counts_once_and_subjects_are_separate(pack):
    rule = hyp_file("zz-hog", """\
  - id: zz-hog.cpu
    weight: 2
    when:
      p: process where cpu_pct >= 90
    subject: "{p.comm}"
""")
    facts = [proc(1, comm="java", cpu_pct=95.0), proc(2, comm="java", cpu_pct=99.0),
             proc(3, comm="gzip", cpu_pct=91.0)]
    result = run_engine(pack({"h.yaml": rule}), facts, None, [])
    assert [(h.subject, h.score) for h in result.hypotheses] == [("gzip", 0.5), ("java", 0.5)]
    java = result.hypotheses[1]
    assert len(java.evidence) == 1  # one match of the rule counts, not both processes


def test_causal_links_rank_the_effect_below_its_cause(pack):
    cause = hyp_file("zz-cause", """\
  - id: zz-cause.r
    weight: 2
    when:
      c: cpu where busy_pct >= 90
""", extra="  causes: [zz-effect]\n")
    effect = hyp_file("zz-effect", """\
  - id: zz-effect.r
    weight: 3
    when:
      p: psi where some_avg10 >= 20
""")
    result = run_engine(pack({"a.yaml": cause, "b.yaml": effect}), [cpu(busy_pct=95.0), PSI],
                        None, [])
    assert [(h.id, h.score) for h in result.hypotheses] == [("zz-cause", 0.5), ("zz-effect", 0.8)]
    assert result.hypotheses[0].causes == ["zz-effect"]
    assert result.hypotheses[1].caused_by == ["zz-cause"]
    alone = run_engine(pack({"a.yaml": cause, "b.yaml": effect}), [PSI], None, [])
    assert alone.hypotheses[0].caused_by == []


GATED = hyp_file("zz-steal", """\
  - id: zz-steal.r
    weight: 3
    when:
      c: cpu where steal_pct >= 10
""", extra="""\
  requires:
    h: host where virtualization == "vm"
  explanation: "{h.hostname} loses {c.steal_pct}% to the hypervisor"
""")


def test_environment_gate(pack):
    rb = pack({"g.yaml": GATED})
    vm = HostInfo(source="uname", hostname="guest", virtualization="vm")
    metal = HostInfo(source="uname", hostname="metal", virtualization="bare-metal")
    steal = cpu(steal_pct=25.0)
    [h] = run_engine(rb, [vm, steal], None, []).hypotheses
    assert h.explanation == "guest loses 25.0% to the hypervisor"
    assert h.derivation[-1].conclusion == "environment gate of zz-steal"
    result = run_engine(rb, [metal, steal], None, [])
    assert result.hypotheses == []
    [out] = result.ruled_out
    assert out.reason.startswith('environment gate not met: host.virtualization == "vm" is false')
    assert (out.failed_condition, out.actual) == ('host.virtualization == "vm"', "bare-metal")


def test_ruled_out_failed_condition_with_actual_value(pack):
    rule = hyp_file("zz-busy", """\
  - id: zz-busy.weak
    weight: 1
    when:
      p: psi where some_avg10 >= 50
  - id: zz-busy.strong
    weight: 3
    when:
      c: cpu where cpu_count >= 1 and busy_pct >= 90 and procs_running > cpu_count
""")
    result = run_engine(pack({"b.yaml": rule}), [cpu(busy_pct=97.0, procs_running=2)], None, [])
    [out] = result.ruled_out
    # the strongest positive rule is explained, at its first failing condition
    assert out.reason == "zz-busy.strong: cpu.procs_running > cpu.cpu_count is false (actual 2, fact cpu)"
    assert (out.failed_condition, out.actual) == ("cpu.procs_running > cpu.cpu_count", 2)
    unreported = run_engine(pack({"b.yaml": rule}), [cpu(busy_pct=97.0)], None, [])
    assert unreported.ruled_out[0].reason.endswith("cpu.procs_running is not reported (fact cpu)")
    assert unreported.ruled_out[0].actual is None


def test_ruled_out_missing_fact_names_the_probe_and_its_status(pack):
    rule = hyp_file("zz-psi", """\
  - id: zz-psi.r
    weight: 3
    when:
      p: psi where some_avg10 >= 20
""")
    coverage = [ProbeOutcome(probe="pressure", status="unavailable", provides=["psi"],
                             reason="kernel built without CONFIG_PSI")]
    result = run_engine(pack({"p.yaml": rule}), [cpu()], ["zz-psi", "zz-undefined"], coverage)
    psi, undefined = result.ruled_out
    assert psi.reason == ("zz-psi.r: no psi facts: probe pressure unavailable: "
                          "kernel built without CONFIG_PSI")
    assert (psi.missing_fact, psi.probe, psi.probe_status) == ("psi", "pressure", "unavailable")
    assert undefined.reason == "no loaded rule file defines this hypothesis"
    no_probe = run_engine(pack({"p.yaml": rule}), [], None, [])
    assert no_probe.ruled_out[0].reason.endswith("no psi facts (no probe in this run provides them)")


def test_ruled_out_missing_derived_fact_explains_the_deriving_rule(pack):
    rb = pack({"chain.yaml": CHAIN, "hyp.yaml": CHAIN_HYP})
    result = run_engine(rb, [proc(5, state="S")], None, [])
    [out] = result.ruled_out
    assert out.missing_fact == "blocked_parent"
    assert "no blocked_parent fact was derived (rule derive.parent: no blocked_task fact was " \
           "derived (rule derive.blocked: process.state == \"D\" is false" in out.reason


def test_next_commands_scope_evidence_quoting_and_dropping(pack):
    rule = hyp_file("zz-cmd", """\
  - id: zz-cmd.r
    weight: 3
    when:
      p: process where cpu_pct >= 90
    subject: "pid {p.pid}"
""", extra="""\
  next_commands:
    - pidstat -p {pid} 1 5
    - cat /sys/fs/cgroup/{cgroup}/cpu.stat
    - ip -s link show {iface}
    - echo {p.comm}
""")
    rb = pack({"c.yaml": rule})
    facts = [proc(7, cpu_pct=95.0, comm="my app", cgroup="/system.slice/x.service")]
    [h] = run_engine(rb, facts, None, []).hypotheses
    assert h.next_commands == ["pidstat -p 7 1 5",
                               "cat /sys/fs/cgroup//system.slice/x.service/cpu.stat",
                               "echo 'my app'"]  # {iface} has no value: dropped
    # the evidence names the pid the finding is about; the scope fills only what is left open
    [h] = run_engine(rb, facts, None, [], render={"pid": "42", "iface": "eth0"}).hypotheses
    assert h.next_commands[0] == "pidstat -p 7 1 5" and "ip -s link show eth0" in h.next_commands


def test_scoped_object_ranks_first_within_its_certainty(pack):
    rule = hyp_file("zz-busy", """  - id: zz-busy.r
    weight: 3
    when:
      p: process where cpu_pct >= 90
    subject: "pid {p.pid}"
""")
    rb = pack({"c.yaml": rule})
    facts = [proc(7, cpu_pct=99.0), proc(8, cpu_pct=91.0)]
    unscoped = run_engine(rb, facts, None, []).hypotheses
    assert [h.subject for h in unscoped] == ["pid 7", "pid 8"]
    scoped = run_engine(rb, facts, None, [], render={"pid": "8"}).hypotheses
    assert [h.subject for h in scoped] == ["pid 8", "pid 7"]


def test_health_sweep_reports_every_hypothesis(pack):
    rb = pack({"s.yaml": SCORE, "j.yaml": JOIN})
    result = run_engine(rb, [cpu(busy_pct=95.0)], None, [])
    assert [h.id for h in result.hypotheses] == ["zz-score"]
    assert [o.id for o in result.ruled_out] == ["zz-hot-child"]
    assert result.rules_evaluated == 6 and result.activations >= 1
    assert set(result.timings) == {"engine_compile_s", "engine_match_s", "engine_rank_s",
                                   "engine_total_s"}


def test_ruled_out_shows_the_nearest_miss(pack):
    rule = hyp_file("zz-near", """\
  - id: zz-near.r
    weight: 3
    when:
      p: process where state == "R" and cpu_pct >= 90
""")
    facts = [proc(1, state="R"), proc(2, state="R", cpu_pct=40.0), proc(3, state="R", cpu_pct=85.0),
             proc(4, state="S", cpu_pct=99.0)]
    [out] = run_engine(pack({"n.yaml": rule}), facts, None, []).ruled_out
    assert (out.failed_condition, out.actual) == ("process.cpu_pct >= 90", 85.0)
    assert out.reason == "zz-near.r: process.cpu_pct >= 90 is false (actual 85.0, fact process:3)"
    # with --pid 2 the scoped process is the one the reason is about, though farther
    [scoped] = run_engine(pack({"n.yaml": rule}), facts, None, [], render={"pid": "2"}).ruled_out
    assert scoped.reason == ("zz-near.r: process.cpu_pct >= 90 is false (actual 40.0, "
                             "fact process:2)")


def test_findings_on_kinds_read_inside_the_scope_rank_first(pack):
    rb = pack({"a.yaml": hyp_file("zz-proc", """\
  - id: zz-proc.r
    weight: 3
    when:
      p: process where cpu_pct >= 90
"""), "b.yaml": hyp_file("zz-cpu", """\
  - id: zz-cpu.r
    weight: 3
    when:
      c: cpu where busy_pct >= 90
""")})
    facts = [proc(7, cpu_pct=99.0), cpu(busy_pct=95.0)]
    plain = [h.id for h in run_engine(rb, facts, None, []).hypotheses]
    assert plain == ["zz-cpu", "zz-proc"]  # equal scores: by id
    scoped = run_engine(rb, facts, None, [], render={"netns": "lab"},
                        scoped_kinds={"process"}).hypotheses
    assert [h.id for h in scoped] == ["zz-proc", "zz-cpu"]


def test_a_users_finding_is_in_scope_of_its_top_holder_and_a_v1_memory_cgroup(pack):
    """--pid matches the process an inotify_user fact names as its top holder; --cgroup
    matches a process's v1 memory-hierarchy path, not only its cpu path."""
    from sysdiag.facts import InotifyUser
    rb = pack({"a.yaml": hyp_file("zz-inotify", """\
  - id: zz-inotify.r
    weight: 2
    when:
      u: inotify_user where instances >= 100
    subject: "uid {u.uid}"
"""), "b.yaml": hyp_file("zz-cpu", """\
  - id: zz-cpu.r
    weight: 2
    when:
      c: cpu where busy_pct >= 90
"""), "c.yaml": hyp_file("zz-proc", """\
  - id: zz-proc.r
    weight: 2
    when:
      p: process where cpu_pct >= 90
    subject: "pid {p.pid}"
""")})
    user = InotifyUser(source="t", uid=65534, instances=128, watches=0, processes=1,
                       top_pid=42)
    facts = [user, cpu(busy_pct=95.0), proc(7, cpu_pct=99.0, cgroup="/",
                                          memory_cgroup="/limited")]
    plain = [h.id for h in run_engine(rb, facts, None, []).hypotheses]
    assert plain == ["zz-cpu", "zz-inotify", "zz-proc"]  # equal scores: by id
    by_pid = [h.id for h in run_engine(rb, facts, None, [], render={"pid": "42"}).hypotheses]
    assert by_pid[0] == "zz-inotify"
    by_cgroup = [h.id for h in run_engine(rb, facts, None, [],
                                          render={"cgroup": "/limited"}).hypotheses]
    assert by_cgroup[0] == "zz-proc"


def test_findings_about_another_scoped_object_rank_last(pack):
    rb = pack({"a.yaml": hyp_file("zz-proc", """\
  - id: zz-proc.r
    weight: 3
    when:
      p: process where cpu_pct >= 90
    subject: "pid {p.pid}"
"""), "b.yaml": hyp_file("zz-cpu", """\
  - id: zz-cpu.r
    weight: 2
    when:
      c: cpu where busy_pct >= 90
""")})
    facts = [proc(7, cpu_pct=99.0), cpu(busy_pct=95.0)]
    plain = run_engine(rb, facts, None, []).hypotheses
    assert [(h.id, h.certainty) for h in plain] == [("zz-proc", "confirmed"), ("zz-cpu", "likely")]
    # --pid 8: the confirmed finding is about pid 7, another object: it goes after the
    # host-wide one; about pid 7 itself it stays first
    other = run_engine(rb, facts, None, [], render={"pid": "8"}).hypotheses
    assert [h.id for h in other] == ["zz-cpu", "zz-proc"]
    same = run_engine(rb, facts, None, [], render={"pid": "7"}).hypotheses
    assert [h.id for h in same] == ["zz-proc", "zz-cpu"]


@pytest.mark.parametrize("a, b, same", [
    ("/app", "/app", True), ("/sys/fs/cgroup/memory/app", "/app", True),
    ("/app/", "/sys/fs/cgroup/cpu/app", True), ("/other", "/app", False),
    ("/myapp", "/app", False), ("/", "/app", False)])
def test_cgroup_scope_matches_full_and_relative_paths(a, b, same):
    from sysdiag.engine.explain import same_object
    assert same_object("cgroup", a, b) is same


def test_host_wide_finding_citing_a_scoped_process_is_not_about_it(pack):
    rb = pack({"a.yaml": hyp_file("zz-a-host", """\
  - id: zz-a-host.r
    weight: 3
    when:
      c: cpu where busy_pct >= 90
      p: process where run_delay_pct >= 50
"""), "b.yaml": hyp_file("zz-b-cg", """\
  - id: zz-b-cg.r
    weight: 3
    when:
      p: process where cpu_pct >= 5
    subject: "cgroup {p.cgroup}"
""")})
    facts = [proc(7, cpu_pct=9.0, run_delay_pct=80.0, cgroup="/app"), cpu(busy_pct=95.0)]
    plain = run_engine(rb, facts, None, []).hypotheses
    assert [h.id for h in plain] == ["zz-a-host", "zz-b-cg"]  # equal scores: by id
    # equal certainty: the cgroup finding is about /app, the host one only cites its task
    scoped = run_engine(rb, facts, None, [], render={"cgroup": "/app"}).hypotheses
    assert [h.id for h in scoped] == ["zz-b-cg", "zz-a-host"]
