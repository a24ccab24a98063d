"""Escaping of everything taken from the host (sysdiag/report/escape.py)."""
from __future__ import annotations

import pytest

from sysdiag.report.escape import clean, markup, md, md_block, md_code


@pytest.mark.parametrize("raw, shown", [
    ("\x1b[31mred", "\\x1b[31mred"),          # CSI colour
    ("a\x9bb", "a\\x9bb"),                    # 8-bit CSI (C1)
    ("x\x07\x00\x7f", "x\\x07\\x00\\x7f"),     # BEL, NUL, DEL
    ("l1\nl2\rl3", "l1\\nl2\\x0dl3"),          # one line: newlines made visible
    ("tab\there", "tab here"),
    ("abc\u202eexe.txt", "abc\\u202eexe.txt"),  # bidi override
    ("plain-name_1.2", "plain-name_1.2"),
    ("", ""),
])
def test_clean_makes_controls_visible(raw, shown):
    assert clean(raw) == shown


def test_clean_multiline_keeps_newlines_only():
    assert clean("a\nb\x1b", multiline=True) == "a\nb\\x1b"


@pytest.mark.parametrize("value, shown", [(None, "-"), (True, "true"), (12.5, "12.5"),
                                           (3, "3"), (0.0001234, "0.000123")])
def test_clean_formats_values(value, shown):
    assert clean(value) == shown


def test_markup_escapes_rich_markup():
    from rich.text import Text

    assert Text.from_markup(markup("[bold]x[/bold] \x1b")).plain == "[bold]x[/bold] \\x1b"


@pytest.mark.parametrize("raw, escaped", [
    ("a*b_c`d", "a\\*b\\_c\\`d"),
    ("<script>&", "&lt;script&gt;&amp;"),
    ("[link](http://x)", "\\[link\\]\\(http://x\\)"),
    ("# not a heading", "\\# not a heading"),
    ("- not a list", "\\- not a list"),
    ("1. not a list", "1\\. not a list"),
    ("version 0.1.0", "version 0.1.0"),
    ("a|b", "a\\|b"),
])
def test_md_escapes_markdown_and_html(raw, escaped):
    assert md(raw) == escaped


def test_md_code_fence_outlasts_backticks():
    assert md_code("a`b") == "``a`b``"
    assert md_code("`x`") == "`` `x` ``"
    assert md_code("a|b", table=True) == "`a\\|b`"


def test_md_block_cannot_be_closed_by_content():
    block = md_block("before\n```\nafter\x1b")
    fence = block.split("text", 1)[0]
    assert len(fence) == 4 and block.endswith("\n" + fence)
    assert "\x1b" not in block and "after\\x1b" in block
