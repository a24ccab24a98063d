"""The audit log: one JSON object per line for every alert received, diagnosis queued,
reused, started and finished (exit code, duration), delivery and refusal.

Written to a file (append) or, without one, to stderr (the journal under systemd).
"""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any, Optional, TextIO

from .store import now_iso


class AuditLog:
    def __init__(self, path: Optional[Path] = None):
        self.path = path
        self._lock = threading.Lock()
        self._stream: TextIO
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # line-buffered: every event is on disk when the line is written
            self._stream = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        else:
            self._stream = sys.stderr

    def event(self, event: str, **fields: Any) -> None:
        line = json.dumps({"ts": now_iso(), "event": event, **fields}, ensure_ascii=True,
                          default=str, separators=(",", ":"))
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def close(self) -> None:
        if self.path is not None:
            self._stream.close()
