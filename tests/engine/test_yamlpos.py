"""engine/yamlpos.py: libyaml's fast parse gives exactly what PyYAML's gives, positions
and errors included (the rule loader quotes them as FILE:LINE:COL)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sysdiag.engine import yamlpos

REPO = Path(__file__).resolve().parents[2]
YAML_FILES = sorted(p for folder in ("rules", "playbooks", "tests", "deploy")
                    for p in (REPO / folder).rglob("*.yaml"))

pytestmark = pytest.mark.skipif(yamlpos._FAST_LOADER is None,
                                reason="PyYAML was built without libyaml: one parser only")


def shape(x: Any) -> Any:
    """Values, types and every recorded position, comparable with ==."""
    if isinstance(x, yamlpos.PosDict):
        return ("map", x.pos, [(k, shape(v), x.key_pos[k], x.val_pos[k], x.val_text_pos[k])
                               for k, v in x.items()])
    if isinstance(x, yamlpos.PosList):
        return ("seq", x.pos, [shape(v) for v in x], x.item_pos, x.item_text_pos)
    return (type(x).__name__, x)


def outcome(text: str) -> Any:
    try:
        return shape(yamlpos.load_yaml(text))
    except yamlpos.YamlError as err:
        return ("error", err.message, err.line, err.column, err.hint)


def pure_python(text: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as m:
        m.setattr(yamlpos, "_FAST_LOADER", None)
        return outcome(text)


def test_the_repository_has_yaml_to_compare():
    assert len(YAML_FILES) > 50


def test_every_yaml_file_loads_the_same_with_libyaml(monkeypatch):
    differ = [str(p.relative_to(REPO)) for p in YAML_FILES
              if outcome(p.read_text(encoding="utf-8"))
              != pure_python(p.read_text(encoding="utf-8"), monkeypatch)]
    assert not differ


def test_nodes_carry_the_same_marks():
    text = (REPO / "playbooks" / "high-cpu.yaml").read_text(encoding="utf-8")
    fast, slow = (yaml.compose(text, Loader=loader)
                  for loader in (yamlpos._FAST_LOADER, yaml.SafeLoader))

    def marks(node: Any) -> list:
        out = [(node.start_mark.line, node.start_mark.column, node.end_mark.line,
                node.end_mark.column,
                getattr(node, "style", None) or None)]  # plain: PyYAML None, libyaml ""
        if isinstance(node.value, list):
            for item in node.value:
                for sub in (item if isinstance(item, tuple) else (item,)):
                    out += marks(sub)
        return out

    assert marks(fast) == marks(slow)


@pytest.mark.parametrize("text", [
    'a: {x: "é€😀", y: 1}\nb: [ "ü", 2 ]\n',   # columns count characters, not bytes
    "a: 1\r\nb:\r\n  - x\r\n  - 'y'\r\n",          # CRLF
    "a: 1\rb: 2\r", "a: 1\x85b: 2\n", "a: x\u2028y\nb: 1\n",  # other line breaks
    "\ufeffa: 1\nb: 2\n",                          # byte-order mark
    "a: |\n  x\n  y\nb: >\n  z\n",                 # block scalars: no text position
    "a: &x [1, 2]\nb: *x\n",                       # anchors and aliases
    "a: !!str 1\nb: !!int '3'\n",
    "%YAML 1.2\n---\na: 1\n",
    "", "# only a comment\n",
    # errors: same message, line, column and hint
    "a: 1\na: 2\n",                                # duplicate key (ours)
    "a: &x {k: 1}\nb:\n  <<: *x\n",                # merge key (ours)
    "a:\n  b: 1\n c: 2\n",                         # bad indentation
    "a: b: c\n",
    "a:\t1\nb: 2\n",                               # libyaml accepts this tab, PyYAML does not
    "a:\n\tb: 1\n",
    "a: 1\n---\nb: 2\n",                           # two documents
    "%YAML 2.0\n---\na: 1\n", "a: x\x07y\n", "a: !foo 1\n", 'a: "\\q"\n', "a: [1, 2\n",
])
def test_edge_cases_load_the_same(text, monkeypatch):
    assert outcome(text) == pure_python(text, monkeypatch)


def test_a_tab_after_a_colon_stays_an_error():
    with pytest.raises(yamlpos.YamlError, match="invalid YAML") as err:
        yamlpos.load_yaml("a: 1\nb:\t2\n")
    assert (err.value.line, err.value.column) == (2, 3)
