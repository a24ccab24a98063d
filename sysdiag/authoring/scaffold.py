"""`sysdiag rules new ID`: a rule file and its test file that pass lint and test as they
are: a realistic rule (a process burning CPU) the author edits into theirs."""
from __future__ import annotations

from pathlib import Path

from sysdiag.engine.loader import DOMAINS, ID_RE

RULE = """\
# {id}: edit the title, the conditions and the texts; `sysdiag rules lint {dir}` checks it,
# `sysdiag rules test {dir}` runs tests/{id}.yaml. Format: docs/rule-format.md;
# the facts and fields you can use: `sysdiag rules docs` and facts/*.py.
hypothesis:
  id: {id}
  title: A process uses most of a CPU
  domain: {domain}
  symptoms: [{symptom}]
  severity: medium
  explanation: "{{p.comm}} (pid {{p.pid}}) uses {{p.cpu_pct:.0f}}% of a CPU"
  next_commands:
    - pidstat -u -p {{pid}} 1 5
  remediation: Find out why the process spins; restart or limit it (cpu.max).

rules:
  - id: {id}.busy
    weight: 2                       # +3 near-diagnostic ... -3 contradicts
    when:
      p: process where kernel_thread == false and cpu_pct >= 90
    subject: "pid {{p.pid}} ({{p.comm}})"
    because: "{{p.comm}} used {{p.cpu_pct:.0f}}% of a CPU (>= 90)"

  - id: {id}.mostly-waiting
    weight: -1                      # evidence against: it waits for a CPU more than it runs
    when:
      p: process where kernel_thread == false and cpu_pct >= 90 and run_delay_pct > cpu_pct
    subject: "pid {{p.pid}} ({{p.comm}})"
    because: "{{p.comm}} waited for a CPU {{p.run_delay_pct:.0f}}% of the time"
"""

TEST = """\
# Test cases for ../{id}.yaml: facts in, expected conclusions out (docs/rule-authoring.md).
hypothesis: {id}
defaults:
  process: {{ppid: 1, state: R, kernel_thread: false}}
cases:
  - name: a process at 97 % CPU fires
    facts:
      - {{kind: process, pid: 4242, comm: worker, cpu_pct: 97.0, run_delay_pct: 2.0}}
    fires: [{id}.busy]
    silent: [{id}.mostly-waiting]
    expect:
      subject: pid 4242 (worker)
      certainty: likely
      score: [0.4, 0.6]
      evidence: {{cpu_pct: 97.0}}
      next_command: pidstat -u -p 4242

  - name: 89 % is a near miss
    facts:
      - {{kind: process, pid: 4242, comm: worker, cpu_pct: 89.0}}
    silent: [{id}.busy]
    expect: {{fired: false}}
"""


class ScaffoldError(ValueError):
    pass


def scaffold(hid: str, directory: Path, domain: str = "cpu",
             symptom: str = "high-cpu") -> list[Path]:
    """Write DIRECTORY/ID.yaml and DIRECTORY/tests/ID.yaml; never overwrite."""
    if not ID_RE.match(hid):
        raise ScaffoldError(f"hypothesis id {hid!r} is not kebab-case "
                            "(lowercase letters, digits and '-', e.g. app-cpu-spin)")
    if domain not in DOMAINS:
        raise ScaffoldError(f"domain {domain!r} is not one of {', '.join(DOMAINS)}")
    rule_path = directory / f"{hid}.yaml"
    test_path = directory / "tests" / f"{hid}.yaml"
    for path in (rule_path, test_path):
        if path.exists():
            raise ScaffoldError(f"{path} exists; not overwritten")
    values = {"id": hid, "domain": domain, "symptom": symptom, "dir": directory}
    test_path.parent.mkdir(parents=True, exist_ok=True)
    rule_path.write_text(RULE.format(**values), encoding="utf-8")
    test_path.write_text(TEST.format(**values), encoding="utf-8")
    return [rule_path, test_path]
