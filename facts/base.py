"""The base of every fact sysdiag knows about a host.

Conventions (DESIGN.md "Facts"):
- frozen models, unknown fields rejected;
- units in field names (`_bytes`, `_per_s`, `_pct`, `_total`, `_s`, `_us`);
- `None` means "not reported", never 0;
- every fact records its `source` (a path or a command or an API);
- counters sampled at both ends of the window give `_per_s` rates (`None` when
  only one sample exists, e.g. a captured tree) next to `_total` values.
"""
from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class Fact(BaseModel):
    """One observation. Subclasses set `kind` (a Literal default) and `key_fields`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    source: str

    #: fields that identify one fact of this kind within a snapshot (its natural key)
    key_fields: ClassVar[tuple[str, ...]] = ()
    #: short human description, shown by `sysdiag rules` and in lint hints
    description: ClassVar[str] = ""

    @property
    def fact_id(self) -> str:
        """A unique, stable id: "<kind>:<natural key>" (ENGINE-NOTES §4)."""
        parts = [str(getattr(self, name)) for name in self.key_fields]
        return ":".join([self.kind, *parts]) if parts else self.kind

    def to_engine(self) -> dict[str, Any]:
        """Flat dict for the rule engine: `None` fields omitted, `id` added."""
        data = {k: v for k, v in self.model_dump(mode="json").items() if v is not None}
        data["id"] = self.fact_id
        return data
