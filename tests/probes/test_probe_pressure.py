from __future__ import annotations

import errno
from pathlib import Path

import pytest

from sysdiag.probes.base import ProbeContext
from sysdiag.probes.parse import ParseError
from sysdiag.probes.procfs.pressure import (NO_PSI, PSI_DISABLED, PressureProbe, parse_pressure,
                                            pressure_fact)

from probe_helpers import run_one, write_tree

MEMORY = ("some avg10=0.10 avg60=2.00 avg300=3.85 total=15\n"
          "full avg10=0.20 avg60=3.00 avg300=4.95 total=25\n")


def test_parse_pressure():
    r = parse_pressure(MEMORY)
    assert r["some"] == {"avg10": 0.1, "avg60": 2.0, "avg300": 3.85, "total": 15}
    assert r["full"]["total"] == 25


def test_parse_pressure_some_only():
    # cpu on kernels before 5.13 has no `full` line
    assert set(parse_pressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")) == {"some"}


@pytest.mark.parametrize("text, problem", [
    ("", "no 'some' line"),
    ("some avg10=0.10 avg60=2.00\n", "lacks avg300, total"),
    ("some avg10=x avg60=2.00 avg300=3.85 total=15\n", "some avg10: expected a number"),
    ("some avg10=0.1 avg60=2.00 avg300=3.85 total=1.5\n", "some total: expected an integer"),
    ("half avg10=0.1 avg60=2.00 avg300=3.85 total=1\n", "'some' or 'full'"),
    ("some avg10 avg60=2.00 avg300=3.85 total=1\n", "expected key=value"),
])
def test_parse_pressure_rejects(text, problem):
    with pytest.raises(ParseError, match=problem):
        parse_pressure(text, "/proc/pressure/io")


def test_window_pct_from_totals():
    first = parse_pressure("some avg10=0 avg60=0 avg300=0 total=1000000\n"
                           "full avg10=0 avg60=0 avg300=0 total=0\n")
    last = parse_pressure("some avg10=5 avg60=1 avg300=0 total=1500000\n"
                          "full avg10=0 avg60=0 avg300=0 total=200000\n")
    fact = pressure_fact("/proc/pressure/io", "io", first, last, 2.0)
    assert fact.some_window_pct == 25.0 and fact.full_window_pct == 10.0
    assert fact.some_avg10 == 5.0 and fact.some_total_us == 1500000


def test_probe_on_fixture_tree(tree_ctx):
    outcome, facts = run_one(PressureProbe(), tree_ctx)
    assert outcome.status == "ok", outcome.reason
    assert sorted(f.resource for f in facts) == ["cpu", "io", "memory"]  # no irq file there
    mem = next(f for f in facts if f.resource == "memory")
    assert (mem.some_avg10, mem.full_avg300, mem.full_total_us) == (0.1, 4.95, 25)
    assert mem.some_window_pct is None


def test_no_pressure_directory_means_no_config_psi(tmp_path):
    ctx = write_tree(tmp_path, {"proc/loadavg": "0 0 0 1/1 1\n"})
    outcome, _ = run_one(PressureProbe(), ctx)
    assert (outcome.status, outcome.reason) == ("unavailable", NO_PSI)


def test_eopnotsupp_means_booted_without_psi(tmp_path, monkeypatch):
    ctx = write_tree(tmp_path, {f"proc/pressure/{r}": "" for r in ("cpu", "memory", "io")})

    def refuse(self: ProbeContext, path: Path, max_bytes: int = 0) -> str:
        # what a CONFIG_PSI_DEFAULT_DISABLED=y kernel booted without psi=1 answers
        raise OSError(errno.EOPNOTSUPP, "Operation not supported", str(path))

    monkeypatch.setattr(ProbeContext, "read_text", refuse)
    outcome, _ = run_one(PressureProbe(), ctx)
    assert (outcome.status, outcome.reason) == ("unavailable", PSI_DISABLED)


def test_other_read_errors_fail(tmp_path, monkeypatch):
    ctx = write_tree(tmp_path, {"proc/pressure/cpu": ""})

    def broken(self: ProbeContext, path: Path, max_bytes: int = 0) -> str:
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(ProbeContext, "read_text", broken)
    outcome, _ = run_one(PressureProbe(), ctx)
    assert outcome.status == "failed" and "Input/output error" in outcome.reason



def test_irq_alone_unsupported_is_a_warning(tmp_path, monkeypatch):
    files = {f"proc/pressure/{r}": MEMORY for r in ("cpu", "memory", "io", "irq")}
    ctx = write_tree(tmp_path, files)
    real = ProbeContext.read_text

    def irq_refuses(self: ProbeContext, path: Path, max_bytes: int = 4 << 20) -> str:
        if path.name == "irq":
            raise OSError(errno.EOPNOTSUPP, "Operation not supported", str(path))
        return real(self, path, max_bytes)

    monkeypatch.setattr(ProbeContext, "read_text", irq_refuses)
    outcome, facts = run_one(PressureProbe(), ctx)
    assert outcome.status == "ok"
    assert sorted(f.resource for f in facts) == ["cpu", "io", "memory"]
    assert outcome.warnings == [f"{tmp_path}/proc/pressure/irq: not supported by this kernel"]
