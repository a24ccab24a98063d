"""The JSON Schema of the report, generated from the pydantic models and shipped
as sysdiag/schema/report.schema.json (tests/cli/test_schema.py keeps it current)."""
from __future__ import annotations

import json
from pathlib import Path

from .models import Report

SHIPPED_SCHEMA = Path(__file__).resolve().parents[1] / "schema" / "report.schema.json"


def report_json_schema() -> dict:
    schema = Report.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def report_json_schema_text() -> str:
    return json.dumps(report_json_schema(), indent=2, sort_keys=True) + "\n"
