"""A Falco rules file evaluated the way Falco evaluates it, for the subset lbd's rules use.

    rules = RuleSet.load("rules/lbd_rules.yaml")
    rules.labels()                     # every field a condition or output reads: "linux.arg[filename]", ...
    rules.matches("lbd mount", values) # values: {label: [values as plugin_host prints them]}

Supported (what Falco's grammar gives, as far as the pack uses it): `list` items (a list may name
lists), `macro` conditions (a macro may use macros), conditions with `and`, `or`, `not` and
parentheses, comparisons `FIELD OP VALUE` with = != < <= > >= contains startswith endswith glob,
`FIELD in (...)`, `FIELD intersects (...)`, `FIELD exists`; values bare or quoted.

Semantics held to libsinsp (0.25, sinsp_filtercheck.cpp):

* a field with no value (the plugin returned none) makes every comparison false, `!=` included;
  `not` inverts the result;
* a list field (isList: the seed's linux.type, linux.user, ..., linux.fds, linux.flags[NAME])
  takes only `in` (every value in the set), `intersects` (some value in the set) and `exists`:
  anything else does not compile (CompileError here, as Falco refuses the rule);
* uint64 and reltime fields compare as numbers, bool fields as true/false, the others as text.

This is a test oracle, outside the product (STYLE.md): the real Falco tier runs the same rules.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from lbd import falco

FIELDS = {f.name: f for f in falco.FIELDS}
_NUMERIC = {"uint64", "reltime", "abstime"}
_OPS = ("=", "!=", "<=", ">=", "<", ">", "contains", "icontains", "startswith", "endswith", "glob", "in",
        "intersects", "exists")
_TOKEN = re.compile(r"""\s*(?:(?P<lp>\()|(?P<rp>\))|(?P<comma>,)|(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
                        |(?P<op><=|>=|!=|=|<|>)|(?P<word>[^\s(),=<>!"']+(?:\[[^\]]*\])?))""", re.X)


class CompileError(ValueError):
    """The condition would not compile in Falco (or uses what this oracle does not know)."""


@dataclass(frozen=True)
class Cmp:
    label: str          # "linux.arg[filename]"
    field: str          # "linux.arg"
    op: str
    values: tuple       # right-hand side (expanded lists)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise CompileError(f"cannot read the condition at {text[pos:pos + 30]!r}")
        pos = m.end()
        kind = m.lastgroup
        val = m.group(kind)
        if kind == "str":
            val = bytes(val[1:-1], "utf-8").decode("unicode_escape")
        out.append((kind, val))
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


class RuleSet:
    def __init__(self, docs: list):
        self.lists: dict[str, list[str]] = {}
        self.macros: dict[str, str] = {}
        self.rules: dict[str, dict] = {}
        for d in docs:
            if "list" in d:
                self.lists[d["list"]] = [str(x) for x in d.get("items") or []]
            elif "macro" in d:
                self.macros[d["macro"]] = d["condition"]
            elif "rule" in d:
                self.rules[d["rule"]] = d
        self._trees = {name: self._compile(r["condition"], set()) for name, r in self.rules.items()}

    @classmethod
    def load(cls, path: str | Path) -> RuleSet:
        return cls(yaml.safe_load(Path(path).read_text()) or [])

    # ---- compilation --------------------------------------------------------------------------

    def _items(self, words: list[str], seen: frozenset = frozenset()) -> list[str]:
        out = []
        for w in words:
            if w in self.lists and w not in seen:
                out += self._items(self.lists[w], seen | {w})
            else:
                out.append(w)
        return out

    def _compile(self, text: str, macros: set):
        toks = _tokens(text)
        pos = 0

        def peek():
            return toks[pos] if pos < len(toks) else (None, None)

        def take():
            nonlocal pos
            t = peek()
            pos += 1
            return t

        def or_():
            node = and_()
            while peek() == ("word", "or"):
                take()
                node = ("or", node, and_())
            return node

        def and_():
            node = not_()
            while peek() == ("word", "and"):
                take()
                node = ("and", node, not_())
            return node

        def not_():
            if peek() == ("word", "not"):
                take()
                return ("not", not_())
            return atom()

        def atom():
            kind, val = take()
            if kind == "lp":
                node = or_()
                if take()[0] != "rp":
                    raise CompileError(f"missing ) in {text!r}")
                return node
            if kind != "word":
                raise CompileError(f"unexpected {val!r} in {text!r}")
            if val in self.macros:
                if val in macros:
                    raise CompileError(f"macro {val} uses itself")
                return self._compile(self.macros[val], macros | {val})
            if not val.startswith("linux."):
                raise CompileError(f"unknown macro or field {val!r}")
            name = val.split("[", 1)[0]
            if name not in FIELDS:
                raise CompileError(f"unknown field {name}")
            f = FIELDS[name]
            if f.arg == "name" and "[" not in val:
                raise CompileError(f"{name} needs an argument, e.g. {name}[x]")
            if f.arg is None and "[" in val:
                raise CompileError(f"{name} takes no argument")
            k, op = take()
            if op not in _OPS:
                raise CompileError(f"unknown operator {op!r} after {val}")
            if f.is_list and op not in ("in", "intersects", "exists"):
                raise CompileError(f"list field '{val}' only supports operators 'exists', 'in' and 'intersects'")
            if op == "exists":
                return Cmp(val, name, op, ())
            if op in ("in", "intersects"):
                if take()[0] != "lp":
                    raise CompileError(f"{val} {op} needs a list in parentheses")
                words = []
                while True:
                    k2, v2 = take()
                    if k2 == "rp":
                        break
                    if k2 == "comma":
                        continue
                    if k2 not in ("word", "str"):
                        raise CompileError(f"bad list item {v2!r}")
                    words.append(v2)
                return Cmp(val, name, op, tuple(self._items(words)))
            k2, v2 = take()
            if k2 not in ("word", "str"):
                raise CompileError(f"{val} {op} needs a value")
            return Cmp(val, name, op, (v2,))

        tree = or_()
        if pos != len(toks):
            raise CompileError(f"unexpected {toks[pos][1]!r} in {text!r}")
        return tree

    # ---- inspection and evaluation ---------------------------------------------------------------

    def labels(self, rule: str | None = None) -> set[str]:
        """The field labels the conditions (and outputs) of one rule, or all rules, read."""
        out: set[str] = set()
        names = [rule] if rule else list(self.rules)
        for n in names:
            out |= _labels(self._trees[n])
            for m in re.finditer(r"%(linux\.[a-z_.]+[a-z_](?:\[[^\]]*\])?)", self.rules[n].get("output", "")):
                out.add(m.group(1))
        return out

    def syscalls(self) -> set[str]:
        """The syscall names the conditions test linux.syscall against."""
        out: set[str] = set()
        for t in self._trees.values():
            out |= _syscalls(t)
        return out

    def matches(self, rule: str, values: dict) -> bool:
        return _eval(self._trees[rule], values)


def _labels(node) -> set[str]:
    if isinstance(node, Cmp):
        return {node.label}
    return set().union(*(_labels(x) for x in node[1:]))


def _syscalls(node) -> set[str]:
    if isinstance(node, Cmp):
        return set(node.values) if node.field == "linux.syscall" and node.op in ("=", "in") else set()
    return set().union(*(_syscalls(x) for x in node[1:]))


def _eval(node, values: dict) -> bool:
    if isinstance(node, Cmp):
        return _cmp(node, values)
    if node[0] == "not":
        return not _eval(node[1], values)
    if node[0] == "and":
        return _eval(node[1], values) and _eval(node[2], values)
    return _eval(node[1], values) or _eval(node[2], values)


def _conv(ftype: str, v):
    if ftype in _NUMERIC:
        return int(v)
    if ftype == "bool":
        return v if isinstance(v, bool) else str(v).lower() == "true"
    return str(v)


def _cmp(c: Cmp, values: dict) -> bool:
    if c.label not in values:
        raise KeyError(f"{c.label} was not extracted")
    got = values[c.label]
    if not got:
        return False                          # no value: every comparison is false
    f = FIELDS[c.field]
    if c.op == "exists":
        return True
    have = [_conv(f.type, v) for v in got]
    try:
        rhs = [_conv(f.type, v) for v in c.values]
    except ValueError:
        return False                          # (Falco would refuse a non-number for a number field)
    if c.op == "in":
        return all(v in rhs for v in have) if f.is_list else have[0] in rhs
    if c.op == "intersects":
        return any(v in rhs for v in have)
    v, r = have[0], rhs[0]
    if c.op == "=":
        return v == r
    if c.op == "!=":
        return v != r
    if c.op in ("<", "<=", ">", ">="):
        return {"<": v < r, "<=": v <= r, ">": v > r, ">=": v >= r}[c.op]
    v, r = str(v), str(r)
    if c.op == "contains":
        return r in v
    if c.op == "icontains":
        return r.lower() in v.lower()
    if c.op == "startswith":
        return v.startswith(r)
    if c.op == "endswith":
        return v.endswith(r)
    if c.op == "glob":
        return fnmatch.fnmatchcase(v, r)
    raise CompileError(c.op)
