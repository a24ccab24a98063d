"""Reports: the model and its renderers (text, json, markdown)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    # imported on first use: the models import the engine (~0.03 s), which `collect` and
    # the escape helpers (sysdiag.report.escape) never need
    if name == "Report":
        from .models import Report

        return Report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FORMATS", "Format", "Report", "render"]
