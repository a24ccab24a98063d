"""A healthy idle host (the CI machine itself, live) yields no hypothesis at severity high
or above, with certainty likely or confirmed, for any symptom.

conftest.py runs these tests first in the session, before any test of the suite injects a
fault. On a shared dev machine other engineers' tests may have faults active or may have
left kernel-log lines (OOM kills, fork rejections) that sysdiag rightly reports as recent
for 15 minutes. A finding whose per-object evidence all names an object of this test suite
(cgroups /sysdiag-e2e-*, namespaces sdx-*, directories sdsnap-*) is such a leftover, and so
is one that rests only on kernel-log lines about processes or cgroups that no longer exist
(e.g. the deliberate segfault of tests/probes/test_probe_live.py): they are listed in the
failure message of a real false positive but do not fail the test. Any other finding fails
it, naming its subject and evidence.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from snapshot_check import DIAGNOSE
from sysdiag.playbook import SYMPTOMS

pytestmark = [pytest.mark.live, pytest.mark.healthy_host]

SERIOUS_SEVERITY = {"high", "critical"}
SERIOUS_CERTAINTY = {"likely", "confirmed"}
#: names the test suite gives its own faulty objects
MARKERS = ("sysdiag-e2e-", "sdx-", "sdsnap-")
#: facts about one object (a process, cgroup, mount, namespace, kernel-log line); host-wide
#: facts (cpu, memory, vmstat...) are context and neither excuse nor convict a finding
PER_OBJECT = ("klog:", "process:", "cgroup:", "mount:", "filesystem:", "netns:", "net_link:",
              "qdisc:", "tcp_listener:")


def _texts(ev: dict) -> str:
    return " ".join(str(ev.get(k) or "") for k in ("fact", "field", "value", "text"))


def _objects(hyp: dict) -> list[dict]:
    return [ev for ev in hyp.get("evidence", [])
            if str(ev.get("fact", "")).startswith(PER_OBJECT)]


def _cgroup_exists(path: str) -> bool:
    root = Path("/sys/fs/cgroup")
    rel = path.lstrip("/")
    return (root / rel).is_dir() or any((h / rel).is_dir() for h in root.glob("*") if h.is_dir())


def only_gone_objects_in_klog(hyp: dict) -> bool:
    """Does this finding rest only on kernel-log lines about a process (its subject) or
    cgroups that no longer exist? History of work that has ended, not this host's state."""
    objects = _objects(hyp)
    if not objects or not all(str(ev["fact"]).startswith("klog:") for ev in objects):
        return False
    pid = re.match(r"pid (\d+) ", hyp.get("subject", "") + " ")
    if pid:
        return not Path(f"/proc/{pid.group(1)}").exists()
    cgroups = {str(ev.get("value")) for ev in objects if ev.get("field") == "cgroup"}
    return bool(cgroups) and not any(_cgroup_exists(c) for c in cgroups)


def is_leftover(hyp: dict) -> bool:
    """Does this finding rest only on objects of the test suite (another test's fault) or
    on kernel-log lines about objects that are gone?"""
    if any(m in hyp.get("subject", "") for m in MARKERS):
        return True
    objects = _objects(hyp)
    marked = bool(objects) and all(any(m in _texts(ev) for m in MARKERS) for ev in objects)
    return marked or only_gone_objects_in_klog(hyp)


def describe(hyp: dict) -> str:
    lines = [f"  {hyp['id']} [{hyp['subject']}] score {hyp['score']:.2f} "
             f"{hyp['certainty']} severity {hyp['severity']}"]
    for ev in hyp.get("evidence", [])[:8]:
        lines.append(f"      {ev.get('fact')} {ev.get('field')}={str(ev.get('value'))[:60]}"
                     f"  {str(ev.get('text') or '')[:140]}")
    return "\n".join(lines)


def serious(report: dict) -> list[dict]:
    return [h for h in report["hypotheses"]
            if h["severity"] in SERIOUS_SEVERITY and h.get("certainty") in SERIOUS_CERTAINTY]


@pytest.mark.parametrize("symptom", SYMPTOMS)
def test_idle_host_has_no_serious_finding(symptom):
    argv = [str(DIAGNOSE), "--symptom", symptom, "--format", "json", "--window", "1",
            "--no-follow-ups"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), f"{' '.join(argv)}: exit {proc.returncode}\n{proc.stderr}"
    found = serious(json.loads(proc.stdout))
    real = [h for h in found if not is_leftover(h)]
    leftovers = [h for h in found if is_leftover(h)]
    assert not real, (
        f"{symptom}: {len(real)} finding(s) at severity high+ on a host that should be idle "
        "(a false positive, or other work running on this machine):\n"
        + "\n".join(map(describe, real))
        + ("\nleftovers of other tests (ignored):\n" + "\n".join(map(describe, leftovers))
           if leftovers else ""))


# --- the leftover filter itself ----------------------------------------------------------

def _hyp(subject: str, *facts: str, field: str = "f", value: object = 1) -> dict:
    return {"id": "x", "subject": subject, "score": 0.9, "certainty": "confirmed",
            "severity": "high", "evidence": [{"fact": f, "field": field, "value": value}
                                             for f in facts]}


def _gone_pid() -> int:
    pid = 4_000_000  # above any pid_max default; checked anyway
    while Path(f"/proc/{pid}").exists():
        pid += 1
    return pid


@pytest.mark.parametrize("hyp, leftover", [
    (_hyp("host", "klog:memcg-oom-kill:/sysdiag-e2e-oom-1", "memory"), True),
    (_hyp("cgroup /sysdiag-e2e-pids-7", "cgroup:/x"), True),
    (_hyp("host", "klog:memcg-oom-kill:/sysdiag-e2e-oom-1", "klog:oom-invoked:python"), False),
    (_hyp("host", "psi:cpu", "cpu"), False),  # host-wide only: never excused
    (_hyp("pid 12 (python)", "process:12"), False),
    (_hyp(f"pid {_gone_pid()} (python)", "klog:segfault:python"), True),
    (_hyp(f"pid {_gone_pid()} (python)", "klog:segfault:python", "process:1"), False),
    (_hyp(f"pid {os.getpid()} (python)", "klog:segfault:python"), False),  # still running
    (_hyp("host", "klog:pids-fork-rejected:/gone", field="cgroup", value="/no-such-cg-x"), True),
    (_hyp("host", "klog:pids-fork-rejected:/", field="cgroup", value="/"), False),
    (_hyp("host", "klog:nic-link-down:eth0"), False),  # no object known to be gone
])
def test_leftovers_are_only_the_suites_own_objects(hyp, leftover):
    assert is_leftover(hyp) is leftover
