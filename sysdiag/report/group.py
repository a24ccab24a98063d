"""Evidence as a person reads it: one line per rule and fact, with every field it used
("PSI cpu some is 46% ... psi:cpu some_avg10=5.72, some_window_pct=46.5"), rather
than the engine's one item per field."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from sysdiag.engine.results import Evidence


@dataclass
class EvidenceLine:
    rule: str
    fact: str
    weight: int
    text: Optional[str]
    historical: bool
    fields: list[tuple[str, Any]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


def group_evidence(items: Iterable[Evidence]) -> list[EvidenceLine]:
    lines: dict[tuple, EvidenceLine] = {}
    for ev in items:
        key = (ev.rule, ev.fact, ev.weight, ev.text, ev.historical)
        line = lines.get(key)
        if line is None:
            line = lines[key] = EvidenceLine(ev.rule, ev.fact, ev.weight, ev.text, ev.historical)
        if (ev.field, ev.value) not in line.fields:
            line.fields.append((ev.field, ev.value))
        if ev.source not in line.sources:
            line.sources.append(ev.source)
    return list(lines.values())
