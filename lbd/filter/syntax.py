"""The filter language's syntax: a lark grammar, the tree it parses into, and FilterError.

    parse("syscall in (open, openat) and not comm = sshd")
    -> And((Compare('syscall', 'in', (Value('open'), Value('openat'))), Not(Compare('comm', '=', ...))))

Grammar (precedence from loosest: ``or``, ``and``, ``not``; parentheses group)::

    expr    := expr "or" expr | expr "and" expr | "not" expr | "(" expr ")" | test
    test    := FIELD OP value | FIELD "in" "(" value ("," value)* ")" | FIELD
    OP      := = == != < <= > >= contains startswith endswith glob
    value   := "double quoted" | 'single quoted' | bare-word

Keywords (and, or, not, in and the word operators) are case-insensitive.  A bare word is any run
of characters other than white space, parentheses, commas and quotes (``/etc/``, ``-1``,
``O_RDONLY|O_CLOEXEC``, ``10.0.0.0/8``); a value with those characters is quoted.  Inside quotes a
backslash makes the next quote or backslash literal; any other backslash stays as it is (so
``"\\x41"`` is the four characters a program's undecodable byte is shown as).  A lone field is a
test of a boolean field (``failed``).  Field names are checked later, by lbd.filter.fields.

Every node keeps the offset of its text in the expression, so that the compiler and the evaluator
can point at it: errors are `FilterError`, a ValueError whose str() is one line of message, then
the expression and a caret under the offending column.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Union

__all__ = ["FilterError", "Value", "Compare", "Flag", "Not", "And", "Or", "Node", "parse", "OPERATORS"]

#: the comparison operators, as the AST spells them (== is written =)
OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "in", "contains", "startswith", "endswith", "glob")


class FilterError(ValueError):
    """A filter expression that cannot be parsed, compiled or applied.

    `message`: one line; `expression`: the filter; `pos`: 0-based offset of the problem in it;
    `column`: the 1-based column of that offset in its line.  str(): the message, then the line of
    the expression and a caret under the column.
    """

    def __init__(self, message: str, expression: str, pos: int):
        self.message = message
        self.expression = expression
        self.pos = max(0, min(pos, len(expression)))
        line_start = expression.rfind("\n", 0, self.pos) + 1
        line_end = expression.find("\n", self.pos)
        self.line = expression[line_start: line_end if line_end >= 0 else len(expression)]
        self.column = self.pos - line_start + 1
        super().__init__(str(self))

    def __str__(self) -> str:
        shown = self.line.replace("\t", " ")
        return f"filter, column {self.column}: {self.message}\n  {shown}\n  {' ' * (self.column - 1)}^"


# ---- the tree ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Value:
    """A literal: its text (quotes removed, escapes resolved), whether it was quoted, its offset."""

    text: str
    quoted: bool = False
    pos: int = 0


@dataclass(frozen=True)
class Compare:
    """`field op value` (op in OPERATORS; `in` has one or more values)."""

    field: str
    op: str
    values: tuple[Value, ...]
    pos: int = 0        # offset of the field name
    op_pos: int = 0     # offset of the operator


@dataclass(frozen=True)
class Flag:
    """A lone boolean field (``failed``)."""

    field: str
    pos: int = 0


@dataclass(frozen=True)
class Not:
    item: "Node"
    pos: int = 0


@dataclass(frozen=True)
class And:
    items: tuple["Node", ...]


@dataclass(frozen=True)
class Or:
    items: tuple["Node", ...]


Node = Union[Compare, Flag, Not, And, Or]


# ---- the grammar -------------------------------------------------------------------------------

_GRAMMAR = r"""
start: _or

_or: _and | or_
or_: _and (OR _and)+
_and: _not | and_
and_: _not (AND _not)+
_not: not_ | _atom
not_: NOT _not
_atom: "(" _or ")" | compare | member | flag

compare: FIELD OP value
member: FIELD IN "(" value ("," value)* ")"
flag: FIELD
value: QUOTED | BARE

AND: "and"i
OR: "or"i
NOT: "not"i
IN: "in"i
OP: "==" | "=" | "!=" | "<=" | ">=" | "<" | ">" | CONTAINS | STARTSWITH | ENDSWITH | GLOB
CONTAINS: "contains"i
STARTSWITH: "startswith"i
ENDSWITH: "endswith"i
GLOB: "glob"i
FIELD: /(?!(?i:and|or|not|in|contains|startswith|endswith|glob)(?![A-Za-z0-9_.]))[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*/
QUOTED: /"(?:[^"\\]|\\.)*"/s | /'(?:[^'\\]|\\.)*'/s
BARE: /[^\s(),"']+/

%ignore /\s+/
"""

@functools.lru_cache(maxsize=1)
def _parser():
    from lark import Lark

    return Lark(_GRAMMAR, parser="lalr", lexer="contextual", maybe_placeholders=False)


def _unquote(tok: str) -> str:
    body = tok[1:-1]
    out = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body) and body[i + 1] in "\"'\\":
            out.append(body[i + 1])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _value(tree) -> Value:
    tok = tree.children[0]
    if tok.type == "QUOTED":
        return Value(_unquote(str(tok)), True, tok.start_pos)
    return Value(str(tok), False, tok.start_pos)


def _is_tok(x) -> bool:
    return not hasattr(x, "data")


def _build(tree) -> Node:
    kind = tree.data
    ch = tree.children
    if kind == "start":
        return _build(ch[0])
    if kind == "or_":
        return Or(tuple(_build(c) for c in ch if not _is_tok(c)))
    if kind == "and_":
        return And(tuple(_build(c) for c in ch if not _is_tok(c)))
    if kind == "not_":
        return Not(_build(ch[1]), ch[0].start_pos)
    if kind == "compare":
        field, op, val = ch
        o = str(op).lower()
        return Compare(str(field), "=" if o == "==" else o, (_value(val),), field.start_pos, op.start_pos)
    if kind == "member":
        field, op = ch[0], ch[1]
        return Compare(str(field), "in", tuple(_value(v) for v in ch[2:]), field.start_pos, op.start_pos)
    if kind == "flag":
        return Flag(str(ch[0]), ch[0].start_pos)
    raise AssertionError(kind)


_OPS_TEXT = "= != < <= > >= in contains startswith endswith glob"


def _expected(names) -> str:
    """What the parser accepts next, in words (from lark's terminal names)."""
    names = set(names)
    if "OP" in names:
        return f"an operator ({_OPS_TEXT})"
    if "FIELD" in names:
        return "a field name, 'not' or '('"
    if "BARE" in names or "QUOTED" in names:
        return "a value"
    if "COMMA" in names:
        return "',' or ')'"
    if "LPAR" in names:
        return "'(' (a value list: FIELD in (a, b))"
    words = [w for n, w in (("AND", "'and'"), ("OR", "'or'"), ("RPAR", "')'"), ("$END", "the end")) if n in names]
    if not words:
        return "something else"
    text = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
    return text + (" (quote a value that has spaces, commas or parentheses)" if "AND" in names else "")


def _accepts(e, fallback) -> set:
    """The terminals the parser accepts where it stopped (exact, unlike LALR's merged lookaheads)."""
    ip = getattr(e, "interactive_parser", None)
    try:
        return set(ip.accepts()) if ip is not None else set(fallback or ())
    except Exception:  # pragma: no cover - accepts() is a best effort for the message
        return set(fallback or ())


def parse(expression: str) -> Node:
    """The tree of a filter expression; FilterError (with the column) when it is not one."""
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    if not isinstance(expression, str):
        raise TypeError(f"a filter expression is text, not {type(expression).__name__}")
    if not expression.strip():
        raise FilterError("empty filter expression", expression, 0)
    if "\0" in expression:
        raise FilterError("NUL character in the filter expression", expression, expression.index("\0"))
    try:
        tree = _parser().parse(expression)
    except UnexpectedCharacters as e:
        pos = e.pos_in_stream
        c = expression[pos]
        if c in "\"'":
            raise FilterError(f"unterminated quoted value (no closing {c})", expression, pos) from None
        word = _word_at(expression, pos)
        raise FilterError(f"unexpected {word!r}: expected {_expected(_accepts(e, e.allowed))}", expression,
                          pos) from None
    except UnexpectedToken as e:
        tok = e.token
        want = _accepts(e, e.expected)
        if tok.type == "$END":
            pos = len(expression.rstrip())
            if want == {"RPAR"}:
                raise FilterError("unclosed '(': a ')' is missing", expression, pos) from None
            raise FilterError(f"the expression ends too soon: expected {_expected(want)}", expression,
                              pos) from None
        if tok.type == "RPAR" and "RPAR" not in want and "$END" in want:
            raise FilterError("unexpected ')': no '(' to close", expression, tok.start_pos) from None
        raise FilterError(f"unexpected {str(tok)!r}: expected {_expected(want)}", expression,
                          tok.start_pos) from None
    except UnexpectedEOF as e:  # pragma: no cover - lalr reports the end as UnexpectedToken
        raise FilterError(f"the expression ends too soon: expected {_expected(e.expected)}", expression,
                          len(expression.rstrip())) from None
    return _build(tree)


def _word_at(s: str, pos: int) -> str:
    end = pos
    while end < len(s) and not s[end].isspace() and s[end] not in "(),\"'":
        end += 1
    return s[pos: max(end, pos + 1)]


def unparse(node: Node) -> str:
    """Text that parses back to the same tree (positions aside): for tests and messages."""
    if isinstance(node, Or):
        return " or ".join(_paren(x, Or) for x in node.items)
    if isinstance(node, And):
        return " and ".join(_paren(x, (Or, And)) for x in node.items)
    if isinstance(node, Not):
        return "not " + _paren(node.item, (Or, And))
    if isinstance(node, Flag):
        return node.field
    if node.op == "in":
        return f"{node.field} in ({', '.join(_quote(v.text) for v in node.values)})"
    return f"{node.field} {node.op} {_quote(node.values[0].text)}"


def _paren(node: Node, kinds) -> str:
    s = unparse(node)
    return f"({s})" if isinstance(node, kinds) else s


_SAFE_BARE = frozenset("and or not in contains startswith endswith glob".split())


def _quote(text: str) -> str:
    """A value as a bare word when it can be one, else double-quoted."""
    if text and text.lower() not in _SAFE_BARE and not any(c.isspace() or c in "(),\"'\\" for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
