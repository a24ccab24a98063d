"""The condition language of rule files: tokenizer, recursive-descent parser, evaluator.

    pattern    := KIND [ "where" condition ]
    condition  := and_expr ( "or" and_expr )*
    and_expr   := unary ( "and" unary )*
    unary      := "not" unary | "(" condition ")" | test
    test       := sum ( CMP sum | "in" "[" literal ("," literal)* "]" | "matches" STRING
                       | "exists" | "missing" )
    sum        := product ( ("+"|"-") product )*
    product    := atom ( ("*"|"/") atom )*
    atom       := NUMBER | STRING | true | false | NAME | ALIAS "." NAME | "(" sum ")" | "-" atom

Conditions are parsed into a closed set of nodes, never `eval`ed. The evaluator uses
three-valued logic: a comparison that reads a missing field is *unknown* (None), `not`
of unknown is unknown, and a pattern matches only when its condition is True
("not reported" is never evidence, docs/rule-format.md).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Optional, Union

KEYWORDS = {"and", "or", "not", "in", "matches", "exists", "missing", "true", "false", "where"}
CMP_OPS = ("==", "!=", "<=", ">=", "<", ">")
NEGATED = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}
FLIPPED = {"==": "==", "!=": "!=", "<": ">", ">": "<", "<=": ">=", ">=": "<="}


class ExprError(ValueError):
    """A condition that does not parse; `pos` is the 0-based offset in the text."""

    def __init__(self, message: str, pos: int, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.hint = hint


# ---------------------------------------------------------------- AST

@dataclass(frozen=True)
class Lit:
    value: Union[int, float, str, bool]
    pos: int = 0


@dataclass(frozen=True)
class Field:
    """A field of the pattern's own fact."""
    name: str
    pos: int = 0


@dataclass(frozen=True)
class Ref:
    """A field of another pattern's fact: `alias.field`."""
    alias: str
    name: str
    pos: int = 0


@dataclass(frozen=True)
class Arith:
    op: str  # + - * /
    left: "Operand"
    right: "Operand"
    pos: int = 0


Operand = Union[Lit, Field, Ref, Arith]


@dataclass(frozen=True)
class Compare:
    op: str
    left: Operand
    right: Operand
    pos: int = 0


@dataclass(frozen=True)
class In:
    operand: Operand
    values: tuple
    pos: int = 0


@dataclass(frozen=True)
class Matches:
    operand: Operand
    regex: str
    pos: int = 0


@dataclass(frozen=True)
class Exists:
    operand: Operand
    present: bool  # True: `exists`, False: `missing`
    pos: int = 0


@dataclass(frozen=True)
class And:
    items: tuple
    pos: int = 0


@dataclass(frozen=True)
class Or:
    items: tuple
    pos: int = 0


@dataclass(frozen=True)
class Not:
    item: "Cond"
    pos: int = 0


Cond = Union[Compare, In, Matches, Exists, And, Or, Not]


@dataclass(frozen=True)
class Pattern:
    kind: str
    cond: Optional[Cond]
    kind_pos: int = 0


# ---------------------------------------------------------------- tokenizer

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>\d+\.\d*(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<|>|\+|-|\*|/|\(|\)|\[|\]|,|\.)
""", re.VERBOSE)


@dataclass(frozen=True)
class Token:
    type: str  # num str name op kw end
    text: str
    pos: int
    value: Any = None


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            hint = "use == for equality" if ch == "=" else \
                "strings are quoted with double quotes" if ch in "`" else ""
            if ch == "&" or ch == "|":
                hint = "write `and` / `or`"
            if ch == "!":
                hint = "write `not` or !="
            raise ExprError(f"unexpected character {ch!r}", pos, hint)
        kind = m.lastgroup
        tok = m.group(kind)
        if kind == "num":
            value: Any = float(tok) if any(c in tok for c in ".eE") else int(tok)
            tokens.append(Token("num", tok, pos, value))
        elif kind == "str":
            tokens.append(Token("str", tok, pos, _unescape(tok, pos)))
        elif kind == "name":
            tokens.append(Token("kw" if tok in KEYWORDS else "name", tok, pos))
        elif kind == "op":
            tokens.append(Token("op", tok, pos))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def _unescape(tok: str, pos: int) -> str:
    body = tok[1:-1]
    out = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]
            if nxt not in "\"'\\":
                raise ExprError(f"unknown escape \\{nxt} in string", pos + 1 + i,
                                "only \\\" \\' and \\\\ are escapes; regex classes use %d %w %s")
            out.append(nxt)
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


# ---------------------------------------------------------------- parser

class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def at(self, type_: str, text: Optional[str] = None) -> bool:
        tok = self.tok
        return tok.type == type_ and (text is None or tok.text == text)

    def expect(self, type_: str, text: Optional[str], what: str) -> Token:
        if not self.at(type_, text):
            self.fail(f"expected {what}")
        return self.next()

    def fail(self, message: str, hint: str = "") -> None:
        tok = self.tok
        found = "end of condition" if tok.type == "end" else repr(tok.text)
        raise ExprError(f"{message}, found {found}", tok.pos, hint)

    # condition level
    def condition(self) -> Cond:
        start = self.tok.pos
        items = [self.and_expr()]
        while self.at("kw", "or"):
            self.next()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items), start)

    def and_expr(self) -> Cond:
        start = self.tok.pos
        items = [self.unary()]
        while self.at("kw", "and"):
            self.next()
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(tuple(items), start)

    def unary(self) -> Cond:
        if self.at("kw", "not"):
            pos = self.next().pos
            return Not(self.unary(), pos)
        if self.at("op", "("):
            # "(" starts either a grouped condition or a parenthesised operand: try the first.
            save = self.i
            self.next()
            try:
                cond = self.condition()
                self.expect("op", ")", "')'")
                return cond
            except ExprError as err:
                first = err
            self.i = save
            try:
                return self.test()
            except ExprError as err:
                # report whichever reading got further into the text
                raise (err if err.pos > first.pos else first) from None
        return self.test()

    def test(self) -> Cond:
        start = self.tok.pos
        left = self.sum()
        tok = self.tok
        if tok.type == "op" and tok.text in CMP_OPS:
            self.next()
            right = self.sum()
            if isinstance(left, Lit) and not isinstance(right, Lit):
                return Compare(FLIPPED[tok.text], right, left, start)
            return Compare(tok.text, left, right, start)
        if tok.type == "kw" and tok.text == "in":
            self.next()
            self.expect("op", "[", "'[' after `in`")
            values = [self.literal()]
            while self.at("op", ","):
                self.next()
                values.append(self.literal())
            self.expect("op", "]", "',' or ']'")
            return In(left, tuple(values), start)
        if tok.type == "kw" and tok.text == "matches":
            self.next()
            if not self.at("str"):
                self.fail("expected a quoted regex after `matches`")
            regex = self.next()
            return Matches(left, regex.value, regex.pos)
        if tok.type == "kw" and tok.text in ("exists", "missing"):
            self.next()
            return Exists(left, tok.text == "exists", start)
        if tok.type == "op" and tok.text == "=":
            self.fail("unknown operator", "use == for equality")
        self.fail("expected a comparison (== != < <= > >=), in, matches, exists or missing",
                  "a condition compares a field: `busy_pct >= 90`")
        raise AssertionError("unreachable")

    def literal(self) -> Lit:
        tok = self.tok
        neg = False
        if tok.type == "op" and tok.text == "-":
            neg = True
            self.next()
            tok = self.tok
        if tok.type == "num":
            self.next()
            return Lit(-tok.value if neg else tok.value, tok.pos)
        if neg:
            self.fail("expected a number after '-'")
        if tok.type == "str":
            self.next()
            return Lit(tok.value, tok.pos)
        if tok.type == "kw" and tok.text in ("true", "false"):
            self.next()
            return Lit(tok.text == "true", tok.pos)
        self.fail("expected a literal (number, \"string\", true or false)")
        raise AssertionError("unreachable")

    def sum(self) -> Operand:
        left = self.product()
        while self.tok.type == "op" and self.tok.text in ("+", "-"):
            op = self.next()
            left = Arith(op.text, left, self.product(), op.pos)
        return left

    def product(self) -> Operand:
        left = self.atom()
        while self.tok.type == "op" and self.tok.text in ("*", "/"):
            op = self.next()
            left = Arith(op.text, left, self.atom(), op.pos)
        return left

    def atom(self) -> Operand:
        tok = self.tok
        if tok.type == "op" and tok.text == "-":
            self.next()
            inner = self.atom()
            if isinstance(inner, Lit) and isinstance(inner.value, (int, float)) \
                    and not isinstance(inner.value, bool):
                return Lit(-inner.value, tok.pos)
            return Arith("*", Lit(-1, tok.pos), inner, tok.pos)
        if tok.type == "op" and tok.text == "(":
            self.next()
            inner = self.sum()
            self.expect("op", ")", "')'")
            return inner
        if tok.type in ("num", "str") or (tok.type == "kw" and tok.text in ("true", "false")):
            return self.literal()
        if tok.type == "name":
            self.next()
            if self.at("op", "."):
                self.next()
                if not self.at("name"):
                    self.fail(f"expected a field name after '{tok.text}.'")
                name = self.next()
                return Ref(tok.text, name.text, tok.pos)
            return Field(tok.text, tok.pos)
        if tok.type == "kw":
            self.fail(f"`{tok.text}` cannot be used here", "a condition starts with a field name")
        self.fail("expected a field name or a literal")
        raise AssertionError("unreachable")


def parse_condition(text: str) -> Cond:
    parser = _Parser(text)
    if parser.at("end"):
        raise ExprError("empty condition", 0)
    cond = parser.condition()
    if not parser.at("end"):
        parser.fail("expected `and`, `or` or the end of the condition")
    return cond


_PATTERN_HEAD = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*")


def parse_pattern(text: str) -> Pattern:
    """`<kind> where <condition>` or `<kind>`."""
    m = _PATTERN_HEAD.match(text)
    if m is None:
        raise ExprError("a pattern starts with a fact kind", 0,
                        'write "<kind> where <condition>", e.g. "psi where some_avg10 >= 20"')
    kind = m.group(1)
    rest = text[m.end():]
    if not rest.strip():
        return Pattern(kind, None, m.start(1))
    w = re.match(r"where(?![A-Za-z0-9_])", rest)
    if w is None:
        raise ExprError(f"expected `where` after the fact kind {kind!r}", m.end(),
                        'write "<kind> where <condition>"')
    offset = m.end() + w.end()
    try:
        cond = parse_condition(text[offset:])
    except ExprError as err:
        raise ExprError(err.message, err.pos + offset, err.hint) from None
    return Pattern(kind, _shift(cond, offset), m.start(1))


def _shift(node: Any, offset: int) -> Any:
    """Make node positions relative to the whole pattern text."""
    if isinstance(node, (Lit, Field, Ref)):
        return type(node)(*[getattr(node, f) for f in node.__dataclass_fields__ if f != "pos"],
                          pos=node.pos + offset)
    if isinstance(node, Arith):
        return Arith(node.op, _shift(node.left, offset), _shift(node.right, offset), node.pos + offset)
    if isinstance(node, Compare):
        return Compare(node.op, _shift(node.left, offset), _shift(node.right, offset),
                       node.pos + offset)
    if isinstance(node, In):
        return In(_shift(node.operand, offset), tuple(_shift(v, offset) for v in node.values),
                  node.pos + offset)
    if isinstance(node, Matches):
        return Matches(_shift(node.operand, offset), node.regex, node.pos + offset)
    if isinstance(node, Exists):
        return Exists(_shift(node.operand, offset), node.present, node.pos + offset)
    if isinstance(node, (And, Or)):
        return type(node)(tuple(_shift(i, offset) for i in node.items), node.pos + offset)
    if isinstance(node, Not):
        return Not(_shift(node.item, offset), node.pos + offset)
    raise TypeError(node)


# ---------------------------------------------------------------- helpers over the AST

def walk(node: Any):
    """Every node of a condition or operand, depth first."""
    yield node
    if isinstance(node, (Arith, Compare)):
        yield from walk(node.left)
        yield from walk(node.right)
    elif isinstance(node, (In, Matches, Exists)):
        yield from walk(node.operand)
    elif isinstance(node, (And, Or)):
        for item in node.items:
            yield from walk(item)
    elif isinstance(node, Not):
        yield from walk(node.item)


def conjuncts(cond: Optional[Cond]) -> list[Cond]:
    if cond is None:
        return []
    if isinstance(cond, And):
        out: list[Cond] = []
        for item in cond.items:
            out.extend(conjuncts(item))
        return out
    return [cond]


def negate(cond: Cond) -> Cond:
    """`not cond` pushed down to the leaves (De Morgan). Keeps three-valued semantics:
    a negated comparison on a missing field is still unknown. Matches stays under Not."""
    if isinstance(cond, Compare):
        return Compare(NEGATED[cond.op], cond.left, cond.right, cond.pos)
    if isinstance(cond, Exists):
        return Exists(cond.operand, not cond.present, cond.pos)
    if isinstance(cond, In):
        return And(tuple(Compare("!=", cond.operand, v, cond.pos) for v in cond.values), cond.pos)
    if isinstance(cond, And):
        return Or(tuple(negate(i) for i in cond.items), cond.pos)
    if isinstance(cond, Or):
        return And(tuple(negate(i) for i in cond.items), cond.pos)
    if isinstance(cond, Not):
        return cond.item
    return Not(cond, cond.pos)


def render(node: Any, own: str = "") -> str:
    """Text of a node; `own` prefixes the pattern's own fields (e.g. 'psi.some_avg10')."""
    if isinstance(node, Lit):
        if isinstance(node.value, bool):
            return "true" if node.value else "false"
        if isinstance(node.value, str):
            return '"' + node.value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return repr(node.value)
    if isinstance(node, Field):
        return f"{own}.{node.name}" if own else node.name
    if isinstance(node, Ref):
        return f"{node.alias}.{node.name}"
    if isinstance(node, Arith):
        return f"{_paren(node.left, own)} {node.op} {_paren(node.right, own)}"
    if isinstance(node, Compare):
        return f"{render(node.left, own)} {node.op} {render(node.right, own)}"
    if isinstance(node, In):
        return f"{render(node.operand, own)} in [{', '.join(render(v) for v in node.values)}]"
    if isinstance(node, Matches):
        return f'{render(node.operand, own)} matches "{node.regex}"'
    if isinstance(node, Exists):
        return f"{render(node.operand, own)} {'exists' if node.present else 'missing'}"
    if isinstance(node, And):
        return " and ".join(_paren(i, own) for i in node.items)
    if isinstance(node, Or):
        return " or ".join(_paren(i, own) for i in node.items)
    if isinstance(node, Not):
        return f"not {_paren(node.item, own)}"
    raise TypeError(node)


def _paren(node: Any, own: str) -> str:
    text = render(node, own)
    return f"({text})" if isinstance(node, (And, Or, Arith)) else text


# ---------------------------------------------------------------- regex dialect

_CLASSES = {"d": "[0-9]", "w": "[A-Za-z0-9]", "a": "[A-Za-z]", "s": r"\s", "x": "[0-9A-Fa-f]",
            "l": "[a-z]", "u": "[A-Z]"}
_CLASSES_IN_SET = {"d": "0-9", "w": "A-Za-z0-9", "a": "A-Za-z", "s": r"\s", "x": "0-9A-Fa-f",
                   "l": "a-z", "u": "A-Z"}


def check_regex(regex: str) -> Optional[tuple[str, int, str]]:
    """Problems with a regex in durable's dialect: (message, offset, hint) or None."""
    if "\\" in regex:
        i = regex.index("\\")
        return ("backslash in a regex never matches in durable-rules", i,
                "use %d %w %s %a %x classes and %. for a literal dot")
    for m in re.finditer(r"\{(\d*)(?:,(\d*))?\}", regex):
        for part in m.groups():
            if part and int(part) > 100:
                return ("repetition count above 100 (durable error 501)", m.start(),
                        "use + or * instead of a large {n,m}")
    i = 0
    while i < len(regex):
        if regex[i] == "%":
            if i + 1 >= len(regex):
                return ("regex ends with a lone %", i, "write %% for a literal percent sign")
            c = regex[i + 1]
            if c.isalpha() and c not in _CLASSES:
                return (f"unknown regex class %{c}", i, "classes are %d %w %s %a %x %l %u")
            i += 2
            continue
        i += 1
    depth = 0
    for i, c in enumerate(regex):
        if c == "(" and (i == 0 or regex[i - 1] != "%"):
            depth += 1
        elif c == ")" and (i == 0 or regex[i - 1] != "%"):
            depth -= 1
            if depth < 0:
                return ("unbalanced ')' in regex", i, "")
    if depth:
        return ("unbalanced '(' in regex", regex.rindex("("), "close the group with ')'")
    try:
        to_python_regex(regex)
    except re.error as err:
        return (f"invalid regex: {err.msg}", err.pos or 0, "")
    return None


def to_python_regex(regex: str) -> re.Pattern:
    """Translate durable's Lua-like dialect to Python `re` (used with fullmatch)."""
    out = []
    in_set = False
    i = 0
    while i < len(regex):
        c = regex[i]
        if c == "%" and i + 1 < len(regex):
            n = regex[i + 1]
            table = _CLASSES_IN_SET if in_set else _CLASSES
            out.append(table[n] if n in table else re.escape(n))
            i += 2
            continue
        if in_set:
            if c == "]":
                in_set = False
            out.append(c)
        elif c == "[":
            in_set = True
            out.append(c)
        elif c in "^$":  # literal in durable (measured: "^ab" matched the text "^ab")
            out.append("\\" + c)
        else:
            out.append(c)
        i += 1
    return re.compile("".join(out), re.DOTALL)


# ---------------------------------------------------------------- evaluator

def _value(node: Operand, fact: dict, binds: dict) -> Any:
    if isinstance(node, Lit):
        return node.value
    if isinstance(node, Field):
        return fact.get(node.name)
    if isinstance(node, Ref):
        other = binds.get(node.alias)
        return None if other is None else other.get(node.name)
    if isinstance(node, Arith):
        a = _value(node.left, fact, binds)
        b = _value(node.right, fact, binds)
        if not _is_num(a) or not _is_num(b):
            return None
        try:
            r = {"+": a + b, "-": a - b, "*": a * b}.get(node.op) if node.op != "/" else a / b
        except ZeroDivisionError:
            return None
        return r if r is None or math.isfinite(r) else None
    raise TypeError(node)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _compare(op: str, a: Any, b: Any) -> Optional[bool]:
    if a is None or b is None:
        return None
    if _is_num(a) and _is_num(b):
        pass
    elif type(a) is not type(b):
        return None
    try:
        if op == "==":
            return a == b
        if op == "!=":
            return a != b
        if op == "<":
            return a < b
        if op == "<=":
            return a <= b
        if op == ">":
            return a > b
        if op == ">=":
            return a >= b
    except TypeError:
        return None
    raise ValueError(op)


_REGEX_CACHE: dict[str, re.Pattern] = {}


def evaluate(cond: Optional[Cond], fact: dict, binds: Optional[dict] = None) -> Optional[bool]:
    """True, False, or None (unknown: a field the condition needs is not reported)."""
    if cond is None:
        return True
    binds = binds or {}
    if isinstance(cond, Compare):
        return _compare(cond.op, _value(cond.left, fact, binds), _value(cond.right, fact, binds))
    if isinstance(cond, In):
        v = _value(cond.operand, fact, binds)
        if v is None:
            return None
        results = [_compare("==", v, lit.value) for lit in cond.values]
        return True if any(results) else (None if None in results else False)
    if isinstance(cond, Matches):
        v = _value(cond.operand, fact, binds)
        if not isinstance(v, str):
            return None
        rx = _REGEX_CACHE.get(cond.regex)
        if rx is None:
            rx = _REGEX_CACHE[cond.regex] = to_python_regex(cond.regex)
        return rx.fullmatch(v) is not None
    if isinstance(cond, Exists):
        present = _value(cond.operand, fact, binds) is not None
        return present if cond.present else not present
    if isinstance(cond, And):
        result: Optional[bool] = True
        for item in cond.items:
            r = evaluate(item, fact, binds)
            if r is False:
                return False
            if r is None:
                result = None
        return result
    if isinstance(cond, Or):
        result = False
        for item in cond.items:
            r = evaluate(item, fact, binds)
            if r is True:
                return True
            if r is None:
                result = None
        return result
    if isinstance(cond, Not):
        r = evaluate(cond.item, fact, binds)
        return None if r is None else not r
    raise TypeError(cond)


def operand_value(node: Operand, fact: dict, binds: Optional[dict] = None) -> Any:
    return _value(node, fact, binds or {})
