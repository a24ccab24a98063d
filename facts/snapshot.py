"""A snapshot: everything sysdiag saw on a host, savable and diagnosable later.

Versioned JSON. `load_snapshot` either returns a valid Snapshot or raises
`SnapshotError` with the file, what is wrong, and what to do.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Optional

from pydantic import BaseModel, ConfigDict, ValidationError

from .base import Fact
from .outcome import ProbeOutcome
from .registry import FactError, fact_from_dict
from .system import HostInfo

#: bump when a saved snapshot's meaning changes; list older versions that still load
SCHEMA_VERSION = 1
LOADABLE_VERSIONS = (1,)


class Scope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    pid: Optional[int] = None
    cgroup: Optional[str] = None
    netns: Optional[str] = None
    iface: Optional[str] = None


class Snapshot(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    schema_version: int = SCHEMA_VERSION
    sysdiag_version: str
    created_at: str  # ISO 8601, UTC
    host: HostInfo
    window_s: float
    live: bool  # sampled from a running kernel (rates are real) or read from a captured tree
    proc_root: str = "/proc"
    sys_root: str = "/sys"
    scope: Scope = Scope()
    facts: list[Fact]
    coverage: list[ProbeOutcome]

    def to_json(self) -> str:
        """The snapshot as `json.dumps(..., indent=1)` writes it, with "facts" last.

        json's indenting encoder is pure Python (~20 us per fact); a fact whose values
        are all scalars is written by the C encoder instead, with separators that give
        the same text (tests/facts/test_snapshot_json.py compares both)."""
        return "".join(self.json_chunks())

    def json_chunks(self) -> Iterator[str]:
        """to_json's text in pieces, one per fact, so a writer never holds all of it
        (with 5,000 processes the text is ~7 MB, and joining it held several copies)."""
        head = json.dumps(self.model_dump(mode="json", exclude={"facts"}), indent=1,
                          allow_nan=False)
        yield f'{head[:-2]},\n "facts": '
        if not self.facts:
            yield "[]\n}"
            return
        for i, fact in enumerate(self.facts):
            yield ("[\n  " if i == 0 else ",\n  ") + _fact_json(fact.model_dump(mode="json"))
        yield "\n ]\n}"

    def save(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as out:
            out.writelines(self.json_chunks())
            out.write("\n")


#: a fact in the snapshot's "facts" list is indented by two spaces, its fields by three
_FACT_SEPARATORS = (",\n   ", ": ")


def _fact_json(data: dict[str, Any]) -> str:
    """One fact as json.dumps(data, indent=1) writes it inside the "facts" list."""
    if data and not any(isinstance(v, (dict, list)) for v in data.values()):
        flat = json.dumps(data, separators=_FACT_SEPARATORS, allow_nan=False)
        return "{\n   " + flat[1:-1] + "\n  }"
    # nested values: the indenting encoder, shifted two levels in (JSON text has no raw
    # newline inside a string, so every newline starts a line of the layout)
    return json.dumps(data, indent=1, allow_nan=False).replace("\n", "\n  ")


class SnapshotError(ValueError):
    """A snapshot that cannot be loaded; the message names the file and what to do."""


def snapshot_from_dict(data: Any, where: str) -> Snapshot:
    if not isinstance(data, dict):
        raise SnapshotError(f"{where}: not a sysdiag snapshot (top level is not a JSON object)")
    version = data.get("schema_version")
    if version is None:
        raise SnapshotError(f"{where}: no schema_version: not a sysdiag snapshot "
                            "(create one with `sysdiag collect -o FILE`)")
    if version not in LOADABLE_VERSIONS:
        raise SnapshotError(
            f"{where}: snapshot schema_version {version!r} is not supported by this sysdiag "
            f"(it reads versions {', '.join(map(str, LOADABLE_VERSIONS))}); "
            "collect the snapshot again with this version, or use the sysdiag that wrote it")
    raw_facts = data.get("facts")
    if not isinstance(raw_facts, list):
        raise SnapshotError(f"{where}: field 'facts' is missing or not a list")
    facts: list[Fact] = []
    for index, raw in enumerate(raw_facts):
        try:
            facts.append(fact_from_dict(raw, where=f"facts[{index}]"))
        except FactError as err:
            raise SnapshotError(f"{where}: {err}") from err
    rest = {k: v for k, v in data.items() if k != "facts"}
    try:
        return Snapshot.model_validate({**rest, "facts": facts})
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise SnapshotError(f"{where}: field {loc!r}: {first['msg']}") from err


def load_snapshot(path: str | Path) -> Snapshot:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise SnapshotError(f"{path}: no such file") from err
    except (OSError, UnicodeDecodeError) as err:
        raise SnapshotError(f"{path}: cannot read: {err}") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SnapshotError(
            f"{path}:{err.lineno}:{err.colno}: invalid JSON ({err.msg}); the file is truncated "
            "or not a snapshot: collect it again with `sysdiag collect -o FILE`") from err
    return snapshot_from_dict(data, str(path))
