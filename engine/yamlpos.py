"""YAML loading that keeps line and column numbers (for errors that name FILE:LINE:COL).

Mappings load as `PosDict` and sequences as `PosList`; both remember where each item's
value starts (`.pos_of(key)`) and where they start themselves (`.pos`). Positions are
1-based (line, column). Duplicate mapping keys are an error (PyYAML keeps the last silently).
"""
from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, ScalarNode, SequenceNode


class YamlError(ValueError):
    def __init__(self, message: str, line: int, column: int, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.hint = hint


class PosDict(dict):
    pos: tuple[int, int] = (1, 1)
    key_pos: dict
    val_pos: dict
    val_text_pos: dict  # where the text of a scalar value starts (after a quote)

    def pos_of(self, key: Any) -> tuple[int, int]:
        return self.val_pos.get(key, self.pos)

    def key_pos_of(self, key: Any) -> tuple[int, int]:
        return self.key_pos.get(key, self.pos)


class PosList(list):
    pos: tuple[int, int] = (1, 1)
    item_pos: list
    item_text_pos: list

    def pos_of(self, index: int) -> tuple[int, int]:
        return self.item_pos[index] if 0 <= index < len(self.item_pos) else self.pos


def _mark(node: Any) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def text_pos(node: Any) -> tuple[int, int] | None:
    """Where the characters of a single-line scalar start (None for block/multi-line)."""
    if not isinstance(node, ScalarNode) or node.start_mark.line != node.end_mark.line:
        return None
    line, col = _mark(node)
    return line, col + (1 if node.style in ("'", '"') else 0)


_SCALARS = SafeConstructor()


def _convert(node: Any) -> Any:
    if isinstance(node, ScalarNode):
        return _SCALARS.construct_object(node, deep=True)
    if isinstance(node, SequenceNode):
        out = PosList(_convert(item) for item in node.value)
        out.pos = _mark(node)
        out.item_pos = [_mark(item) for item in node.value]
        out.item_text_pos = [text_pos(item) for item in node.value]
        return out
    if isinstance(node, MappingNode):
        out = PosDict()
        out.pos = _mark(node)
        out.key_pos, out.val_pos, out.val_text_pos = {}, {}, {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise YamlError("YAML merge keys (<<) are not supported", *_mark(key_node),
                                "write the keys out")
            key = _convert(key_node)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise YamlError("a mapping key must be a plain value", *_mark(key_node))
            if key in out:
                raise YamlError(f"duplicate key {key!r}", *_mark(key_node),
                                "each key may appear once in a mapping")
            out[key] = _convert(value_node)
            out.key_pos[key] = _mark(key_node)
            out.val_pos[key] = _mark(value_node)
            out.val_text_pos[key] = text_pos(value_node)
        return out
    raise YamlError(f"unsupported YAML node {type(node).__name__}", *_mark(node))


#: libyaml's parser (5-10x faster than PyYAML's) where PyYAML was built with it
_FAST_LOADER = getattr(yaml, "CSafeLoader", None)


def compose(text: str) -> Any:
    """The node tree of one document, with the marks (line, column) of every node.

    libyaml's nodes carry the same marks as PyYAML's (tests/engine/test_yamlpos.py
    compares both on every YAML file in the repository), so the fast parser goes first.
    It is not used where the two disagree: libyaml accepts a tab after `key:`, which
    PyYAML rejects, so text with a tab takes PyYAML's path; and any text libyaml finds
    invalid is parsed again by PyYAML, whose error messages and marks the errors quote.
    """
    if _FAST_LOADER is not None and "\t" not in text:
        try:
            return yaml.compose(text, Loader=_FAST_LOADER)
        except yaml.YAMLError:
            # libyaml words its errors differently: PyYAML parses again and raises
            return yaml.compose(text, Loader=yaml.SafeLoader)
    return yaml.compose(text, Loader=yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    """Parse one YAML document into PosDict/PosList/scalars. Raises YamlError."""
    try:
        node = compose(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise YamlError(f"invalid YAML: {err.problem or err.context}", line, col,
                        "check indentation and quoting") from None
    except yaml.YAMLError as err:
        raise YamlError(f"invalid YAML: {err}", 1, 1) from None
    if node is None:
        return None
    try:
        return _convert(node)
    except yaml.constructor.ConstructorError as err:
        mark = err.problem_mark
        raise YamlError(f"invalid YAML value: {err.problem}",
                        mark.line + 1 if mark else 1, mark.column + 1 if mark else 1) from None
