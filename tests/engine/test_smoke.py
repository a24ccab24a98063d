from sysdiag.engine import run_engine
from sysdiag.facts import CpuSummary

CPU = """
hypothesis:
  id: cpu-saturation
  title: CPU demand exceeds capacity
  severity: high
  explanation: "CPU busy {c.busy_pct:.0f}%"
rules:
  - id: cpu-saturation.busy
    weight: 3
    when:
      c: cpu where busy_pct >= 90 and procs_running > cpu_count
"""


def test_one_rule_confirms(pack):
    rb = pack({"cpu.yaml": CPU})
    facts = [CpuSummary(source="/proc/stat", cpu_count=2, busy_pct=95.0, procs_running=5)]
    result = run_engine(rb, facts, ["cpu-saturation"], [])
    [hyp] = result.hypotheses
    assert (hyp.id, hyp.certainty, hyp.score) == ("cpu-saturation", "confirmed", 0.8)
    assert hyp.explanation == "CPU busy 95%"
    assert result.ruled_out == [] and result.rule_errors == []


def test_below_threshold_is_ruled_out_with_actual_value(pack):
    rb = pack({"cpu.yaml": CPU})
    facts = [CpuSummary(source="/proc/stat", cpu_count=2, busy_pct=50.0, procs_running=5)]
    result = run_engine(rb, facts, ["cpu-saturation"], [])
    assert result.hypotheses == []
    [out] = result.ruled_out
    assert out.failed_condition == "cpu.busy_pct >= 90"
    assert out.actual == 50.0
