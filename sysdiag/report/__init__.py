"""Reports: the model and its renderers (text, json, markdown)."""
from __future__ import annotations

from typing import Literal

from .models import Report

Format = Literal["text", "json", "markdown"]
FORMATS: tuple[str, ...] = ("text", "json", "markdown")


def render(report: Report, fmt: str, color: bool = False) -> str:
    """The report in one of FORMATS. Imports the renderer it needs only."""
    if fmt == "json":
        from .json import render_json

        return render_json(report)
    if fmt == "markdown":
        from .markdown import render_markdown

        return render_markdown(report)
    if fmt == "text":
        from .text import render_text

        return render_text(report, color=color)
    raise ValueError(f"unknown format {fmt!r} (choose one of {', '.join(FORMATS)})")


__all__ = ["FORMATS", "Format", "Report", "render"]
