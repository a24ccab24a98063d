"""`sysdiag symptoms`, `sysdiag probes`, `sysdiag schema`: what sysdiag knows."""
from __future__ import annotations

from .common import write_stdout


def symptoms_command() -> None:
    """List the symptoms `diagnose --symptom` accepts."""
    from sysdiag.pipeline import load_playbooks

    playbooks = load_playbooks()
    width = max(len(s) for s in playbooks)
    lines = []
    for name, pb in playbooks.items():
        count = "every hypothesis" if pb.all_hypotheses else f"{len(pb.hypotheses)} hypotheses"
        probes = "every probe" if pb.all_probes else f"{len(pb.probes)} probes"
        lines.append(f"{name:<{width}}  {pb.title} ({count}, {probes})")
    write_stdout("\n".join(lines) + "\n")


def probes_command() -> None:
    """List the probes: what each reads, what it needs and what it costs."""
    from sysdiag.playbook import PLANNED_PROBES
    from sysdiag.pipeline import probe_registry

    registry = probe_registry()
    rows = [("probe", "cost", "needs", "timeout", "provides", "description")]
    for name in sorted(registry):
        cls = registry[name]
        rows.append((name, cls.cost, "root" if cls.needs_root else "-", f"{cls.timeout_s:g} s",
                     ",".join(cls.provides), cls.description))
    for name in sorted(set(PLANNED_PROBES) - set(registry)):
        rows.append((name, "-", "-", "-", "-", f"planned: {PLANNED_PROBES[name]}"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5] for r in rows]
    write_stdout("\n".join(line.rstrip() for line in lines) + "\n")


def schema_command() -> None:
    """Print the JSON Schema of the JSON report (`diagnose --format json`)."""
    from sysdiag.report.schema import report_json_schema_text

    write_stdout(report_json_schema_text())
