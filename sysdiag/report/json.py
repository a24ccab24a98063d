"""The report as JSON for machines: the Report model as is (its JSON Schema ships in
sysdiag/schema/report.schema.json; JSON string escaping covers control characters)."""
from __future__ import annotations

from .models import Report


def render_json(report: Report) -> str:
    return report.model_dump_json(indent=2) + "\n"
