"""The filter language's grammar (lbd.filter.syntax): precedence, quoting, every operator, bare
words, and bad input reported at its column with a caret; then the checks compile() makes on
fields, operators and values (lbd.filter.fields)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

import lbd.filter as F
from lbd.filter.syntax import And, Compare, Flag, FilterError, Not, Or, Value, parse, unparse


def shape(node):
    """The tree without positions: nested tuples, easy to compare."""
    if isinstance(node, Or):
        return ("or",) + tuple(shape(x) for x in node.items)
    if isinstance(node, And):
        return ("and",) + tuple(shape(x) for x in node.items)
    if isinstance(node, Not):
        return ("not", shape(node.item))
    if isinstance(node, Flag):
        return node.field
    return (node.field, node.op) + tuple(v.text for v in node.values)


# ---- precedence and grouping -------------------------------------------------------------------

@pytest.mark.parametrize("expr, tree", [
    ("a = 1 or b = 2 and c = 3", ("or", ("a", "=", "1"), ("and", ("b", "=", "2"), ("c", "=", "3")))),
    ("a = 1 and b = 2 or c = 3", ("or", ("and", ("a", "=", "1"), ("b", "=", "2")), ("c", "=", "3"))),
    ("not a = 1 and b = 2", ("and", ("not", ("a", "=", "1")), ("b", "=", "2"))),
    ("not a = 1 or b = 2", ("or", ("not", ("a", "=", "1")), ("b", "=", "2"))),
    ("not (a = 1 or b = 2)", ("not", ("or", ("a", "=", "1"), ("b", "=", "2")))),
    ("a = 1 and (b = 2 or c = 3)", ("and", ("a", "=", "1"), ("or", ("b", "=", "2"), ("c", "=", "3")))),
    ("not not failed", ("not", ("not", "failed"))),
    ("a = 1 and b = 2 and c = 3", ("and", ("a", "=", "1"), ("b", "=", "2"), ("c", "=", "3"))),
    ("a = 1 or b = 2 or c = 3", ("or", ("a", "=", "1"), ("b", "=", "2"), ("c", "=", "3"))),
    ("((a = 1))", ("a", "=", "1")),
    ("failed and not pid = 1", ("and", "failed", ("not", ("pid", "=", "1")))),
    ("A = 1 AND NOT b = 2 Or c In (3)", ("or", ("and", ("A", "=", "1"), ("not", ("b", "=", "2"))), ("c", "in", "3"))),
])
def test_precedence(expr, tree):
    assert shape(parse(expr)) == tree


# ---- operators and values ----------------------------------------------------------------------

@pytest.mark.parametrize("op", ["=", "!=", "<", "<=", ">", ">=", "contains", "startswith", "endswith", "glob"])
def test_each_operator(op):
    for text in (f"pid {op} 5", f"pid{op}5" if not op.isalpha() else f"pid {op} 5"):
        assert shape(parse(text)) == ("pid", op, "5")
    if op.isalpha():
        assert shape(parse(f"pid {op.upper()} 5")) == ("pid", op, "5")


def test_double_equals_is_equals_and_in_lists():
    assert shape(parse("pid == 5")) == ("pid", "=", "5")
    assert shape(parse("syscall in (open, openat,creat)")) == ("syscall", "in", "open", "openat", "creat")
    assert shape(parse("syscall in (open)")) == ("syscall", "in", "open")
    assert shape(parse("syscall IN ( open , 'a b' )")) == ("syscall", "in", "open", "a b")


@pytest.mark.parametrize("expr, value", [
    ("arg.filename startswith /etc/", "/etc/"),
    ("res < -1", "-1"),
    ("arg.flags = O_RDONLY|O_CLOEXEC", "O_RDONLY|O_CLOEXEC"),
    ("sockaddr.ip = 10.0.0.0/8", "10.0.0.0/8"),
    ("arg.mode = 0644", "0644"),
    ("cmdline contains --port=8000", "--port=8000"),
    ("comm = and", "and"),                     # a keyword where a value is expected is a value
    ("comm = not", "not"),
    ("comm = in", "in"),
    ("comm = é€", "é€"),
    ('comm = "a b"', "a b"),
    ("comm = 'a b'", "a b"),
    ('comm = "x,y(z)"', "x,y(z)"),
    ('comm = "say \\"hi\\""', 'say "hi"'),
    ("comm = 'it\\'s'", "it's"),
    ('comm = "back\\\\slash"', "back\\slash"),
    ('comm = "\\xff"', "\\xff"),               # other backslashes stay: the text of a raw byte
    ('comm = ""', ""),
    ("comm = \"it's\"", "it's"),
])
def test_values(expr, value):
    (v,) = parse(expr).values
    assert v.text == value


def test_fields_are_not_keywords_unless_whole_words():
    assert shape(parse("notx = 1")) == ("notx", "=", "1")
    assert shape(parse("andy = 1 or ORx = 2")) == ("or", ("andy", "=", "1"), ("ORx", "=", "2"))
    assert shape(parse("arg.in = 3")) == ("arg.in", "=", "3")


def test_positions():
    t = parse("pid = 5 and  comm in (a, 'b c')")
    pid, comm = t.items
    assert (pid.pos, pid.op_pos, pid.values[0].pos) == (0, 4, 6)
    assert (comm.pos, comm.op_pos, [v.pos for v in comm.values]) == (13, 18, [22, 25])
    assert parse("not failed").pos == 0 and parse("not failed").item.pos == 4


# ---- bad input: one line, the expression, a caret at the column ------------------------------

@pytest.mark.parametrize("expr, column, words", [
    ("", 1, "empty filter expression"),
    ("   ", 1, "empty"),
    ("pid =", 6, "ends too soon: expected a value"),
    ("pid = 1 and", 12, "expected a field name"),
    ("(pid = 1", 9, "unclosed '('"),
    ("((pid = 1)", 11, "unclosed '('"),
    ("pid = 1)", 8, "no '(' to close"),
    ("pid = 1 2", 9, "unexpected '2': expected 'and', 'or' or the end"),
    ("pid = 1,2", 8, "unexpected ','"),
    ("pid ~ 3", 5, "expected an operator"),
    ("pid in 1", 8, "expected '('"),
    ("pid in ()", 9, "expected a value"),
    ("pid in (1 2)", 11, "expected ',' or ')'"),
    ("pid = 1 or or pid = 2", 12, "unexpected 'or'"),
    ("and = 3", 1, "unexpected 'and'"),
    ('comm = "bash', 8, 'unterminated quoted value (no closing ")'),
    ("comm = 'bash", 8, "unterminated"),
    ("pid = (1)", 7, "expected a value"),
    ("1pid = 2", 1, "expected a field name"),
    ("pid = 1 and\n comm ! 2", 7, "unexpected '!'"),
    ("comm = a\0", 9, "NUL"),
])
def test_syntax_errors(expr, column, words):
    with pytest.raises(FilterError) as ei:
        parse(expr)
    e = ei.value
    assert e.column == column, str(e)
    assert words in e.message
    lines = str(e).split("\n")
    assert len(lines) == 3
    assert lines[0] == f"filter, column {column}: {e.message}"
    assert lines[1] == "  " + e.line
    assert lines[2] == "  " + " " * (column - 1) + "^"
    assert "Traceback" not in str(e) and "Unexpected" not in e.message   # no lark class names
    assert isinstance(e, ValueError)


def test_caret_sits_under_the_offending_text():
    e = pytest.raises(FilterError, parse, "syscall = openat and comm contains").value
    assert e.line[e.column - 1:] == ""        # at the end: right after the last word
    e = pytest.raises(FilterError, parse, "pid = 1 and comm ~ x").value
    assert e.line[e.column - 1] == "~"


# ---- checks of compile(): fields, operators, values --------------------------------------------

@pytest.mark.parametrize("expr, column, words", [
    ("comn = bash", 1, "unknown field 'comn' (did you mean comm?)"),
    ("pid = x", 7, "pid is a number: 'x' is not one"),
    ("uid = root", 7, "use user = NAME"),
    ("errno = EACES", 9, "unknown errno 'EACES' (did you mean EACCES?)"),
    ("syscall = opnat", 11, "unknown syscall 'opnat' (did you mean openat?)"),
    ("syscall = 999", 11, "no syscall has number 999"),
    ("syscall < 3", 9, "< does not apply to syscall"),
    ("arg.filenme = x", 1, "did you mean arg.filename?"),
    ("arg.fd = foo", 10, "arg.fd is a number wherever it exists"),
    ("arg.fd contains 3", 8, "contains tests text"),
    ("arg.filename < 3", 14, "< compares numbers"),
    ("arg.flags = O_CREATE", 13, "did you mean O_CREAT?"),
    ("comm < 3", 6, "< does not apply to comm, which is text"),
    ("pid contains 3", 5, "contains does not apply to pid, which is a number"),
    ("failed = maybe", 10, "failed is true or false"),
    ("pid", 4, "pid is not a yes/no field"),
    ("dir = in", 7, "dir is '<' (exit) or '>' (enter)"),
    ("sockaddr.ip = 10.0.0.300", 15, "sockaddr.ip takes an address or a network"),
    ("sockaddr.ip < 1", 13, "< does not apply to sockaddr.ip"),
    ("pid = 1 and (comm = a or nope = 2)", 26, "unknown field 'nope'"),
])
def test_compile_errors(expr, column, words):
    with pytest.raises(FilterError) as ei:
        F.compile(expr)
    assert ei.value.column == column, str(ei.value)
    assert words in ei.value.message, ei.value.message
    assert len(str(ei.value).split("\n")) == 3


@pytest.mark.parametrize("expr", [
    "syscall in (open, openat) and arg.filename startswith /etc/ and not comm in (sshd, login)",
    "errno = EACCES", "errno in (13, EPERM)", "failed", "failed = false", "arg.flags contains O_CREAT",
    "arg.flags = O_WRONLY|O_CREAT|O_TRUNC", "arg.mode = 0644", "arg.sig = SIGKILL", "arg.mode = F_OK",
    "sockaddr.ip in (10.0.0.0/8, ::1)", "sockaddr.port = 443", "sockaddr.family = AF_INET6",
    "syscall glob 'set*id'", "syscall = 257", "res < -4095", "pid = 0x10", "dir = >",
    "cmdline contains 'a b' and user != root and group = root and pcomm = bash and exe endswith /sh",
    "fd.name startswith /etc", "cgroup_id = 1 or pidns = 2 or mntns = 3 or loginuid = 4", "fullpath = /bin/sh",
])
def test_valid_expressions_compile(expr):
    f = F.compile(expr)
    assert f.expression == expr
    assert f.fields


# ---- text round trip ---------------------------------------------------------------------------

_field = st.sampled_from(["pid", "comm", "arg.filename", "syscall", "cmdline", "sockaddr.ip"])
_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=8)
_leaf = st.one_of(
    st.builds(lambda f, op, v: Compare(f, op, (Value(v),)), _field,
              st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "contains", "startswith", "endswith", "glob"]), _text),
    st.builds(lambda f, vs: Compare(f, "in", tuple(Value(v) for v in vs)), _field, st.lists(_text, min_size=1, max_size=3)),
    st.just(Flag("failed")),
)
_trees = st.recursive(_leaf, lambda inner: st.one_of(
    st.builds(Not, inner),
    st.builds(lambda xs: And(tuple(xs)), st.lists(inner, min_size=2, max_size=3)),
    st.builds(lambda xs: Or(tuple(xs)), st.lists(inner, min_size=2, max_size=3)),
), max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(_trees)
def test_unparse_parses_back(tree):
    """Any tree written out (values quoted where needed, groups in parentheses) parses back to the
    same tree."""
    assert shape(parse(unparse(tree))) == shape(tree)
