"""Random filter expressions over the values of a batch: for the differential tests of lbd.filter
(tests/unit/test_filter_eval.py, tests/kernel/test_filter_live.py).

    pools = Pools.of(batch)                      # literals taken from the batch (plus near misses)
    expr = data.draw(expressions(pools))         # hypothesis
    expr = random_expression(pools, rng)         # random.Random, for the kernel tier

Tests draw literals from what the events hold (so that tests match some events and not others),
edited (prefixes, suffixes, inner pieces, glob patterns with * ? [..]) and mixed with text that
exercises the corner cases: quoting, non-ASCII, the ``\\xNN`` form of undecodable bytes, values
out of a column's range.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from hypothesis import strategies as st

from lbd import args as _args, errnos, flags as _flags, record
from lbd.args import SockAddr

__all__ = ["Pools", "expressions", "random_expression", "quote"]

_NUM_OPS = ["=", "!=", "<", "<=", ">", ">=", "in"]
_TEXT_OPS = ["=", "!=", "in", "contains", "startswith", "endswith", "glob"]
_ODD_TEXT = ["", " ", "é", "\\x", "\\xff", "\\xc3", "x,y", "(a)", "a b", "'", '"', "*", "?", "[a-z]*", "/", ".", "AND"]
_INT_KINDS = {record.KINDS[k] for k in ("none", "int", "uint", "hex", "fd", "dirfd", "pid", "uid", "gid", "mode",
                                        "flags", "ptr", "out_int")}


def quote(text: str) -> str:
    """A literal as the language reads it back: bare when it can be, else double-quoted."""
    from lbd.filter.syntax import _quote

    return _quote(text)


@dataclass
class Pools:
    """Values found in a batch, by field."""

    enriched: bool = False
    numbers: dict = field(default_factory=dict)     # field -> [int]
    texts: dict = field(default_factory=dict)       # field -> [str]
    args_text: dict = field(default_factory=dict)   # arg name -> [str]
    args_num: dict = field(default_factory=dict)    # arg name -> [int]
    args_flags: dict = field(default_factory=dict)  # arg name -> [flag names]
    syscalls: list = field(default_factory=list)

    @classmethod
    def of(cls, batch) -> "Pools":
        from lbd._testing.filter_reference import events_of
        from lbd.output.reference import format_value

        evs = events_of(batch)
        p = cls(enriched=bool(evs) and evs[0].enriched)
        num = {k: set() for k in ("pid", "tid", "ppid", "uid", "gid", "res", "nr", "latency", "errno", "sockaddr.port")}
        txt = {k: set() for k in ("comm", "dir", "sockaddr.ip", "sockaddr.family", "sockaddr.path")}
        if p.enriched:
            txt.update({k: set() for k in ("pcomm", "user", "group", "cmdline", "exe", "fd.name")})
        names = set()
        for e in evs:
            f = e.f
            for k in ("pid", "tid", "ppid", "uid", "gid", "res", "nr", "latency"):
                num[k].add(f[k])
            num["errno"].add(-f["res"] if f["res"] < 0 else 0)
            txt["comm"].add(f["comm"])
            txt["dir"].add(f["dir"])
            names.add(f["name"])
            if p.enriched:
                for k, src in (("pcomm", "pcomm"), ("user", "user"), ("group", "group"), ("cmdline", "cmdline"),
                               ("exe", "fullpath")):
                    txt[k].add(f[src])
                for _, path in f["fds"]:
                    txt["fd.name"].add(path)
            sa = e.sockaddr()
            if isinstance(sa, SockAddr):
                txt["sockaddr.family"].add(sa.family)
                if sa.addr:
                    txt["sockaddr.ip"].add(sa.addr)
                if sa.port is not None:
                    num["sockaddr.port"].add(sa.port)
                if sa.path is not None:
                    txt["sockaddr.path"].add(sa.path)
            for a in (_args.arg_specs(f["nr"]) or ())[: record.MAX_ARGS]:
                v = f["args"].get(a.name) if f["args"] else None
                if v is None:
                    continue
                if a.kind_id in _INT_KINDS and isinstance(v, int):
                    p.args_num.setdefault(a.name, set()).add(v)
                    if a.flags:
                        p.args_flags.setdefault(a.name, set()).update(_flags.names(a.flags, v).split("|"))
                else:
                    p.args_text.setdefault(a.name, set()).add(format_value(v, 0))
        p.numbers = {k: sorted(v) for k, v in num.items() if v}
        p.texts = {k: sorted(v) for k, v in txt.items() if v}
        p.args_text = {k: sorted(v) for k, v in p.args_text.items()}
        p.args_num = {k: sorted(v) for k, v in p.args_num.items()}
        p.args_flags = {k: sorted(v) for k, v in p.args_flags.items()}
        p.syscalls = sorted(names)
        return p


# ---- one random generator, two drivers (hypothesis and random.Random) --------------------------

class _Hyp:
    def __init__(self, draw):
        self.draw = draw

    def choice(self, seq):
        return self.draw(st.sampled_from(list(seq)))

    def random(self) -> float:
        return self.draw(st.integers(0, 999)) / 1000

    def randrange(self, a, b):
        return self.draw(st.integers(a, b - 1))


def _piece(r, text: str) -> str:
    """A literal made from text: itself, a prefix, a suffix, an inner piece, or a glob of it."""
    if not text:
        return text
    x = r.random()
    n = len(text)
    if x < 0.3:
        return text
    if x < 0.45:
        return text[: r.randrange(0, n + 1)]
    if x < 0.6:
        return text[r.randrange(0, n + 1):]
    if x < 0.75:
        a = r.randrange(0, n + 1)
        return text[a: a + r.randrange(0, 6)]
    if x < 0.9:
        a = r.randrange(0, n + 1)
        b = r.randrange(a, n + 1)
        return text[:a] + r.choice(["*", "?", "*?", "[!x]", "[a-z]"]) + text[b:]
    return text + r.choice(["x", "/", "é", "*"])


def _text_literal(r, pool) -> str:
    if pool and r.random() < 0.85:
        return _piece(r, r.choice(pool)).replace("\0", "")     # the language has no NUL
    return r.choice(_ODD_TEXT)


def _num_literal(r, pool) -> str:
    if pool and r.random() < 0.8:
        v = r.choice(pool)
        v += r.choice([0, 0, 0, 1, -1])
    else:
        v = r.choice([0, -1, 1, 2**31, -(2**63), 2**64, 4096, -4095])
    x = r.random()
    if x < 0.1 and v >= 0:
        return hex(v)
    if x < 0.15 and v > 0:
        return "0" + oct(v)[2:]
    return str(v)


def _values(r, pool, lit, op) -> str:
    if op == "in":
        k = r.randrange(1, 4)
        return "(" + ", ".join(quote(lit(r, pool)) for _ in range(k)) + ")"
    return quote(lit(r, pool))


def _atom(r, p: Pools) -> str:
    kinds = ["num", "num", "text", "text", "syscall", "failed", "errno", "arg", "arg", "arg", "sockaddr"]
    kind = r.choice(kinds)
    if kind == "num":
        f = r.choice([k for k in p.numbers if not k.startswith("sockaddr")] or ["pid"])
        op = r.choice(_NUM_OPS)
        return f"{f} {op} {_values(r, p.numbers.get(f, []), _num_literal, op)}"
    if kind == "text":
        fields = [k for k in p.texts if not k.startswith("sockaddr")] or ["comm"]
        f = r.choice(fields)
        op = r.choice(_TEXT_OPS)
        if f == "dir" and op in ("=", "!=", "in"):
            return f"dir {op} " + ("(<, >)" if op == "in" else quote(r.choice(["<", ">"])))
        return f"{f} {op} {_values(r, p.texts.get(f, []), _text_literal, op)}"
    if kind == "syscall":
        op = r.choice(_TEXT_OPS)
        if op in ("=", "!=", "in"):
            return f"syscall {op} {_values(r, p.syscalls, lambda r_, pool: r_.choice(pool), op)}"
        return f"syscall {op} {quote(_piece(r, r.choice(p.syscalls)))}"
    if kind == "failed":
        return r.choice(["failed", "failed = true", "failed != true", "failed = false"])
    if kind == "errno":
        op = r.choice(_NUM_OPS)
        pool = p.numbers.get("errno", [])

        def lit(r_, pool_):
            v = r_.choice(pool_) if pool_ and r_.random() < 0.8 else r_.choice([0, 1, 2, 13, 4095])
            name = errnos.name(v)
            return name if name and r_.random() < 0.6 else str(v)
        return f"errno {op} {_values(r, pool, lit, op)}"
    if kind == "sockaddr":
        f = r.choice(["sockaddr.ip", "sockaddr.port", "sockaddr.family", "sockaddr.path"])
        if f == "sockaddr.port":
            op = r.choice(_NUM_OPS)
            return f"{f} {op} {_values(r, p.numbers.get(f, []), _num_literal, op)}"
        op = r.choice(_TEXT_OPS)
        pool = p.texts.get(f, [])
        if f == "sockaddr.ip" and op in ("=", "!=", "in"):
            def lit(r_, pool_):
                base = r_.choice(pool_) if pool_ else "10.0.0.1"
                if ":" in base:
                    return base if r_.random() < 0.6 else base + "/" + str(r_.randrange(0, 129))
                return base if r_.random() < 0.6 else base + "/" + str(r_.randrange(0, 33))
            return f"{f} {op} {_values(r, pool, lit, op)}"
        return f"{f} {op} {_values(r, pool, _text_literal, op)}"
    # arg.NAME
    names = sorted(set(p.args_text) | set(p.args_num)) or ["filename"]
    name = r.choice(names)
    f = f"arg.{name}"
    if name in p.args_num and (name not in p.args_text or r.random() < 0.5):
        if name in p.args_flags and r.random() < 0.5:
            op = r.choice(["contains", "=", "startswith", "glob"])
            flags = p.args_flags[name]
            if op == "contains":
                return f"{f} contains {quote(r.choice(flags))}"
            if op == "=":
                return f"{f} = {quote('|'.join(sorted({r.choice(flags) for _ in range(r.randrange(1, 3))})))}"
            return f"{f} {op} {quote(_piece(r, r.choice(flags)))}"
        op = r.choice(_NUM_OPS)
        return f"{f} {op} {_values(r, p.args_num[name], _num_literal, op)}"
    op = r.choice(_TEXT_OPS)
    return f"{f} {op} {_values(r, p.args_text.get(name, []), _text_literal, op)}"


def _expr(r, p: Pools, depth: int) -> str:
    x = r.random()
    if depth <= 0 or x < 0.35:
        return _atom(r, p)
    if x < 0.5:
        return "not " + _wrap(r, _expr(r, p, depth - 1))
    joiner = " and " if x < 0.78 else " or "
    items = [_wrap(r, _expr(r, p, depth - 1)) for _ in range(r.randrange(2, 4))]
    return joiner.join(items)


def _wrap(r, s: str) -> str:
    return f"({s})" if (" and " in s or " or " in s or r.random() < 0.1) else s


def random_expression(p: Pools, rng: random.Random, depth: int = 3) -> str:
    return _expr(rng, p, depth)


@st.composite
def expressions(draw, p: Pools, depth: int = 3) -> str:
    return _expr(_Hyp(draw), p, depth)
