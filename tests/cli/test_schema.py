"""The JSON Schema of the report is generated from the pydantic models and shipped.

The shipped file must match the models: run `UPDATE_SCHEMA=1 pytest tests/cli/test_schema.py`
after changing a report model (sysdiag/report/models.py or engine/results.py)."""
from __future__ import annotations

import json
import os

import jsonschema
import pytest

from sysdiag.report.schema import SHIPPED_SCHEMA, report_json_schema, report_json_schema_text

from cli_helpers import EVIL, SYSDIAG, make_hypothesis, make_report, run


def test_shipped_schema_is_current():
    text = report_json_schema_text()
    if os.environ.get("UPDATE_SCHEMA") == "1":
        SHIPPED_SCHEMA.write_text(text, encoding="utf-8")
    assert SHIPPED_SCHEMA.is_file(), f"{SHIPPED_SCHEMA} is missing: rerun with UPDATE_SCHEMA=1"
    assert SHIPPED_SCHEMA.read_text(encoding="utf-8") == text, (
        f"{SHIPPED_SCHEMA} is stale: the report models changed; rerun "
        "`UPDATE_SCHEMA=1 .venv/bin/python -m pytest tests/cli/test_schema.py` and commit it")


def test_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(report_json_schema())


def test_sysdiag_schema_prints_the_shipped_schema():
    proc = run([SYSDIAG, "schema"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads(SHIPPED_SCHEMA.read_text())


def test_a_report_validates_and_a_broken_one_does_not():
    validator = jsonschema.Draft202012Validator(report_json_schema())
    data = json.loads(make_report(hypotheses=[make_hypothesis(comm=EVIL)]).model_dump_json())
    validator.validate(data)
    for broken in ({**data, "hypotheses": [{"id": "x"}]}, {**data, "surprise": 1},
                   {k: v for k, v in data.items() if k != "coverage"} | {"coverage": "none"}):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(broken)


def test_contract_fields_are_in_the_schema():
    """DESIGN.md "JSON report": the fields automation keys on."""
    schema = report_json_schema()
    for name in ("schema_version", "host", "symptom", "window_s", "hypotheses", "ruled_out",
                 "coverage", "timings", "exonerated", "incomplete", "source", "scope"):
        assert name in schema["properties"], name
    hyp = schema["$defs"]["Hypothesis"]["properties"]
    for name in ("id", "title", "score", "severity", "evidence", "against", "explanation",
                 "derivation", "next_commands", "references"):
        assert name in hyp, name
    assert set(schema["$defs"]["ProbeOutcome"]["properties"]["status"]["enum"]) >= {
        "ok", "unavailable", "failed", "timed_out", "skipped"}
