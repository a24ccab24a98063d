"""Make text taken from the host safe to print.

Process names, interface names, cgroup paths and kernel log lines are chosen by
whoever runs on the host: a process can call itself "\\x1b]0;pwned\\x07" or
"[link=file:///etc]x". Before any of it reaches a terminal or a ticket:

- terminal control characters (C0 except tab/newline, DEL, C1, which includes the
  8-bit CSI) and Unicode bidi overrides are replaced by a visible escape (``\\x1b``),
  so the reader sees that something odd was there;
- rich markup is escaped (text renderer), markdown and HTML are escaped (markdown).
"""
from __future__ import annotations

import re
from typing import Any

from rich.markup import escape as _rich_escape

# C0 controls except \t and \n, DEL, C1 controls; bidi embedding/override/isolate marks
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_ONE_LINE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _visible(match: re.Match[str]) -> str:
    char = match.group(0)
    if char == "\n":
        return "\\n"
    if char == "\t":
        return " "
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(value: Any, multiline: bool = False) -> str:
    """`value` as a string with terminal control characters made visible.
    Single-line (default): newlines become a visible ``\\n`` too."""
    text = value if isinstance(value, str) else _to_str(value)
    pattern = _CONTROL if multiline else _CONTROL_ONE_LINE
    return pattern.sub(_visible, text)


def markup(value: Any, multiline: bool = False) -> str:
    """Safe to embed in a rich markup string."""
    return _rich_escape(clean(value, multiline))


def _to_str(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3g}"
    return str(value)


# ---- markdown ---------------------------------------------------------------

# characters that start inline markdown anywhere, and block markers at the start
_MD_INLINE = re.compile(r"([\\`*_{}\[\]()!|~])")
_MD_LEADING = re.compile(r"^(\s*)([#+\-=]|\d+(?=[.)](\s|$)))")


def md(value: Any) -> str:
    """Inline markdown text: control characters, markdown syntax and HTML escaped."""
    text = clean(value)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_INLINE.sub(r"\\\1", text)
    return _MD_LEADING.sub(_escape_leading, text)


def _escape_leading(match: re.Match[str]) -> str:
    space, marker = match.group(1), match.group(2)
    if marker[0].isdigit():  # "12. x" would start an ordered list: "12\. x"
        return f"{space}{marker}\\"
    return f"{space}\\{marker}"


def md_code(value: Any, table: bool = False) -> str:
    """Inline code span that holds any text (the fence is longer than any backtick run).
    In a table cell a `|` would end the cell even inside code: `table=True` escapes it."""
    text = clean(value)
    if table:
        text = text.replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_block(value: Any) -> str:
    """Fenced code block that holds any text."""
    text = clean(value, multiline=True).rstrip("\n")
    longest = max((len(run) for run in re.findall(r"`{3,}|~{3,}", text)), default=2)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"
