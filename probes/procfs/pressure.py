"""/proc/pressure/{cpu,memory,io,irq}: pressure stall information (PSI).

`some` = share of wall time in which at least one task stalled on the
resource, `full` = share in which all non-idle tasks stalled at once; `total`
is cumulative µs, so Δtotal/Δt gives the stall share over our own window
(KNOWLEDGE.md §2.7). System-wide `cpu full` is always 0 (only meaningful per
cgroup); `irq` exists only on 6.1+ with CONFIG_IRQ_TIME_ACCOUNTING.
"""
from __future__ import annotations

import errno
from typing import Optional

from sysdiag.facts import Fact, Pressure

from ..base import Probe, ProbeContext, Unavailable
from ..parse import ParseError, to_float, to_int
from ..registry import register_probe

RESOURCES = ("cpu", "memory", "io", "irq")
NO_PSI = "kernel built without CONFIG_PSI (no /proc/pressure)"
PSI_DISABLED = "PSI disabled: boot with psi=1 (CONFIG_PSI_DEFAULT_DISABLED=y)"

#: {"some": {"avg10": 0.1, "avg60": ..., "avg300": ..., "total": 15}, "full": {...}}
PressureReading = dict[str, dict[str, float]]


def parse_pressure(text: str, source: str = "/proc/pressure/cpu") -> PressureReading:
    """Parse "some avg10=0.10 avg60=2.00 avg300=3.85 total=15" (+ a `full` line)."""
    out: PressureReading = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        kind, *pairs = line.split()
        if kind not in ("some", "full"):
            raise ParseError(source, f"line should start with 'some' or 'full', got {line[:60]!r}")
        values: dict[str, float] = {}
        for pair in pairs:
            key, eq, value = pair.partition("=")
            if not eq:
                raise ParseError(source, f"{kind}: expected key=value, got {pair!r}")
            values[key] = (to_int(value, source, f"{kind} total") if key == "total"
                           else to_float(value, source, f"{kind} {key}"))
        missing = {"avg10", "avg60", "avg300", "total"} - values.keys()
        if missing:
            raise ParseError(source, f"{kind} line lacks {', '.join(sorted(missing))}")
        out[kind] = values
    if "some" not in out:
        raise ParseError(source, "no 'some' line (empty or truncated file?)")
    return out


def pressure_fact(source: str, resource: str, first: Optional[PressureReading],
                  last: PressureReading, elapsed_s: Optional[float]) -> Pressure:
    fields: dict[str, object] = {}
    for kind in ("some", "full"):
        values = last.get(kind)
        if values is None:
            continue
        for avg in ("avg10", "avg60", "avg300"):
            fields[f"{kind}_{avg}"] = values[avg]
        fields[f"{kind}_total_us"] = int(values["total"])
        before = first.get(kind) if first else None
        if before is not None and elapsed_s and elapsed_s > 0:
            stalled_us = values["total"] - before["total"]
            if stalled_us >= 0:
                # stall µs over window µs; clamp the rounding noise at 100
                fields[f"{kind}_window_pct"] = round(min(100.0, stalled_us / (elapsed_s * 1e4)), 2)
    return Pressure(source=source, resource=resource, **fields)


@register_probe
class PressureProbe(Probe):
    name = "psi"
    provides = ("psi",)
    description = "pressure stall information for cpu, memory, io, irq (/proc/pressure)"

    def check(self, ctx: ProbeContext) -> None:
        super().check(ctx)
        if not ctx.proc("pressure").is_dir():
            raise Unavailable(NO_PSI)

    def sample(self, ctx: ProbeContext) -> dict[str, PressureReading]:
        readings: dict[str, PressureReading] = {}
        disabled = []
        for resource in RESOURCES:
            path = ctx.proc("pressure", resource)
            try:
                text = ctx.read_optional(path)
            except OSError as err:
                # With CONFIG_PSI_DEFAULT_DISABLED=y and no psi=1 the files exist but
                # reading them fails with EOPNOTSUPP.
                if err.errno == errno.EOPNOTSUPP:
                    disabled.append(resource)
                    continue
                raise
            if text is not None:
                readings[resource] = parse_pressure(text, str(path))
        if not readings:
            raise Unavailable(PSI_DISABLED if disabled else NO_PSI)
        for resource in disabled:
            message = f"{ctx.proc('pressure', resource)}: not supported by this kernel"
            if message not in self.warnings:  # sample() runs twice
                self.warn(message)
        return readings

    def facts(self, ctx: ProbeContext, first: Optional[dict[str, PressureReading]],
              last: dict[str, PressureReading], elapsed_s: Optional[float]) -> list[Fact]:
        return [pressure_fact(str(ctx.proc("pressure", resource)), resource,
                              first.get(resource) if first else None, reading, elapsed_s)
                for resource, reading in last.items()]
