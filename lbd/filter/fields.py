"""The filter language's fields and what a test on each means: a parsed tree checked and resolved
into predicates (`Pred`) that the evaluator runs and the push-down planner reads.

Every field takes its name from lbd's JSON output (lbd/output/event.schema.json) and has one type:

number  pid tid ppid uid gid nr res latency ts errno sockaddr.port
        cgroup_id pidns mntns loginuid (record header fields a newer probe adds; a batch without
        them is an error naming the field); ppid is the enrichment's when the batch has it
        = != < <= > >= in; values C-style integers (-1, 4096, 0x1f, 0644 octal);
        errno takes names too (EACCES) and is 0 when the call did not fail
bool    failed (the result is negative): a lone ``failed``, or = / != true, false
syscall its name: = != in with names (or numbers), and contains / startswith / endswith / glob
        over the names (``syscall glob "set*id"``)
text    comm, dir (< or >), pcomm user group cmdline exe (= fullpath) fd.name (enrichment),
        sockaddr.ip sockaddr.family sockaddr.path: = != in contains startswith endswith glob;
        sockaddr.ip's = != in take an address or a network (10.0.0.0/8, fe80::/10)
arg.NAME the argument NAME of each syscall that has one (lbd/syscall_table.json): a number for
        integer kinds (flags kinds take their symbolic names too: ``arg.flags contains
        O_CREAT``, ``arg.flags = O_WRONLY|O_CREAT``), the text the normal format prints for the
        others (strings and paths; buffers as text; argv joined by spaces; socket addresses as
        10.0.0.1:80)

Absent values: a field the event does not have (an argument of another syscall, a NULL pointer,
no socket address, an unknown fd) fails every test, ``!=`` included; ``not`` of such a test passes.

Text tests compare the text lbd prints: UTF-8, undecodable bytes as ``\\xNN``.  ``contains``
on a flags argument asks whether its symbolic form lists a name (``arg.flags contains O_CREAT``);
a number there asks for bits.  ``glob`` is fnmatch's: ``*``, ``?``, ``[...]``.

fd.name is the path of the event's file descriptor in its process's fd table after the call:
the first fd argument, or for calls that create one (open, openat, socket, accept, ...) the
returned fd.  A closed fd is gone after close(): fd.name is absent there.
"""
from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass
from typing import Union

from lbd import args as _args, errnos, flags as _flags, record, syscalls
from lbd.filter.syntax import And, Compare, FilterError, Flag, Node, Not, Or

__all__ = ["FIELDS", "Field", "Pred", "ArgGroup", "PAnd", "POr", "PNot", "PConst", "IR", "resolve",
           "parse_int", "SYSCALL_NAMES", "FD_RETURNING"]

K = record.KINDS

NUM_OPS = frozenset(("=", "!=", "<", "<=", ">", ">=", "in"))
TEXT_OPS = frozenset(("=", "!=", "in", "contains", "startswith", "endswith", "glob"))

#: integer kinds: the value is the register (masked / sign-extended as lbd.args.decode does)
INT_KINDS = frozenset(K[k] for k in ("none", "int", "uint", "hex", "fd", "dirfd", "pid", "uid", "gid",
                                     "mode", "flags", "ptr"))
#: text kinds whose payload bytes are the text (argv: NULs become spaces)
BYTES_KINDS = frozenset(K[k] for k in ("str", "path", "buf", "out_buf", "strarr"))
#: kinds decoded into objects, compared on their printed text, per distinct payload
OBJ_KINDS = frozenset(K[k] for k in ("sockaddr", "out_sockaddr", "out_fd2"))

#: syscall (and process-tree record) name -> number
SYSCALL_NAMES: dict[str, int] = {sc.name: sc.nr for sc in syscalls.TABLE}
SYSCALL_NAMES.update({name: nr for nr, name in _args.SCHED_NAMES.items()})

#: syscalls with no fd argument whose result is a new fd (fd.name looks the result up).
#: A fact the syscall table does not record yet: see the report of lbd.filter.
FD_RETURNING = ("open", "openat", "openat2", "creat", "open_by_handle_at", "memfd_create", "socket",
                "accept", "accept4", "eventfd", "eventfd2", "epoll_create", "epoll_create1",
                "timerfd_create", "signalfd", "signalfd4", "inotify_init", "inotify_init1",
                "fanotify_init", "userfaultfd", "io_uring_setup", "perf_event_open", "pidfd_open",
                "pidfd_getfd", "fsopen", "fspick", "fsmount", "open_tree", "landlock_create_ruleset")


@dataclass(frozen=True)
class Field:
    """One field of the language: name, type (number, bool, syscall, text, arg), where it comes from
    (`source`: header column, enrichment column, or a computed value) and whether it needs the
    batch's enrichment."""

    name: str
    type: str
    source: str
    enriched: bool = False
    optional: bool = False      # a header column older records lack (cgroup_id, ...)
    doc: str = ""


def _f(name, type_, source, doc, **kw) -> Field:
    return Field(name, type_, source, doc=doc, **kw)


#: the fixed fields (arg.NAME is made per name)
FIELDS: dict[str, Field] = {f.name: f for f in (
    _f("syscall", "syscall", "nr", "syscall name (sched_process_* for process-tree records)"),
    _f("nr", "number", "nr", "syscall number"),
    _f("dir", "text", "dir", "'<' exit, '>' enter"),
    _f("res", "number", "res", "return value (negative errno on failure)"),
    _f("failed", "bool", "res", "the result is negative"),
    _f("errno", "number", "errno", "-res when the call failed, else 0; names allowed (EACCES)"),
    _f("latency", "number", "latency", "ns from enter to exit"),
    _f("ts", "number", "ts", "event time, ns since the epoch"),
    _f("pid", "number", "pid", "process id"),
    _f("tid", "number", "tid", "thread id"),
    _f("ppid", "number", "ppid", "parent pid (the enrichment's when the batch has it)"),
    _f("uid", "number", "uid", "user id"),
    _f("gid", "number", "gid", "group id"),
    _f("comm", "text", "comm", "thread command name"),
    _f("pcomm", "text", "pcomm", "parent's command name", enriched=True),
    _f("user", "text", "user", "user name", enriched=True),
    _f("group", "text", "group", "group name", enriched=True),
    _f("cmdline", "text", "cmdline", "command line, arguments joined by spaces", enriched=True),
    _f("exe", "text", "fullpath", "the executable's path", enriched=True),
    _f("fullpath", "text", "fullpath", "the executable's path (exe)", enriched=True),
    _f("fd.name", "text", "fd.name", "path of the event's fd", enriched=True),
    _f("sockaddr.ip", "text", "sockaddr.ip", "address of the event's socket address argument"),
    _f("sockaddr.port", "number", "sockaddr.port", "port of the event's socket address argument"),
    _f("sockaddr.family", "text", "sockaddr.family", "AF_INET, AF_INET6, AF_UNIX, ..."),
    _f("sockaddr.path", "text", "sockaddr.path", "AF_UNIX path ('@' for abstract names)"),
    _f("cgroup_id", "number", "cgroup_id", "cgroup v2 id", optional=True),
    _f("pidns", "number", "pidns", "pid namespace inode", optional=True),
    _f("mntns", "number", "mntns", "mount namespace inode", optional=True),
    _f("loginuid", "number", "loginuid", "audit login uid", optional=True),
)}


# ---- the predicates (what resolve() returns) ---------------------------------------------------

@dataclass(frozen=True)
class ArgGroup:
    """The syscalls where arg.NAME has one slot, kind and width, and what the test means there.

    mode: "num" (operand: ints), "flagtext" (contains on symbolic names: operand ((name|None,
    int bits), ...) per alternative), "text" (operand: strs, on the printed text), or None: the
    test never passes in this group (its `!=` passes when the value is present)."""

    nrs: tuple[int, ...]
    slot: int
    kind: int
    bits: int
    flagset: str | None
    mode: str | None
    operand: tuple = ()


@dataclass(frozen=True)
class Pred:
    """One test: `field op operand`, resolved.  `node` is the tree node it came from (positions).

    operand by field type: number -> tuple of ints; bool -> (True,) or (False,); syscall -> a
    frozenset of syscall numbers (op is "in" or "!="... see resolve); text -> tuple of strs (for
    sockaddr.ip with = != in: tuple of ipaddress networks); arg -> tuple of ArgGroup."""

    field: Field
    op: str
    operand: tuple
    node: Node
    argname: str | None = None


@dataclass(frozen=True)
class PAnd:
    items: tuple


@dataclass(frozen=True)
class POr:
    items: tuple


@dataclass(frozen=True)
class PNot:
    item: object


@dataclass(frozen=True)
class PConst:
    value: bool


IR = Union[Pred, PAnd, POr, PNot, PConst]


# ---- literals ----------------------------------------------------------------------------------

_INT = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+|0[0-7]*|[1-9][0-9]*)")


def parse_int(text: str) -> int | None:
    """A C-style integer literal (123, -1, 0x1f, 0b101, 0o17, 0644 as octal), or None."""
    t = text.strip()
    if not _INT.fullmatch(t):
        return None
    neg = t.startswith("-")
    body = t.lstrip("+-")
    if len(body) > 1 and body[0] == "0" and body[1] in "0123456789":
        v = int(body, 8)
    else:
        v = int(body, 0)
    return -v if neg else v


def flag_value(flagset: str, text: str) -> int | None:
    """`A|B|0x10` in a flag set: the OR of the names' values (an enumeration takes one name)."""
    consts = _flag_names(flagset)
    total = 0
    for part in text.split("|"):
        part = part.strip()
        v = parse_int(part)
        if v is None:
            v = consts.get(part)
        if v is None:
            return None
        total |= v
    return total


def _flag_names(flagset: str) -> dict[str, int]:
    return _flags.name_values(flagset)


def flag_parts(flagset: str, text: str) -> tuple | None:
    """`contains A|B` on a flags argument: ((name, 0), (None, bits), ...), or None if a part is
    neither a name of the set nor a number."""
    consts = _flag_names(flagset)
    out = []
    for part in text.split("|"):
        part = part.strip()
        v = parse_int(part)
        if v is not None:
            out.append((None, v))
        elif part in consts:
            out.append((part, 0))
        else:
            return None
    return tuple(out)


# ---- resolve -----------------------------------------------------------------------------------

class _Ctx:
    def __init__(self, expression: str):
        self.expression = expression

    def error(self, message: str, pos: int) -> FilterError:
        return FilterError(message, self.expression, pos)


def resolve(node: Node, expression: str) -> IR:
    """The predicates of a parsed expression: fields known, operators allowed, values typed."""
    return _resolve(node, _Ctx(expression))


def _resolve(node: Node, c: _Ctx) -> IR:
    if isinstance(node, And):
        return PAnd(tuple(_resolve(x, c) for x in node.items))
    if isinstance(node, Or):
        return POr(tuple(_resolve(x, c) for x in node.items))
    if isinstance(node, Not):
        return PNot(_resolve(node.item, c))
    if isinstance(node, Flag):
        f = _field(node.field, node.pos, c)
        if f.type != "bool":
            raise c.error(f"{node.field} is not a yes/no field: compare it ({node.field} = ...)",
                          node.pos + len(node.field))
        return Pred(f, "=", (True,), node)
    return _compare(node, c)


def _field(name: str, pos: int, c: _Ctx) -> Field:
    f = FIELDS.get(name)
    if f is not None:
        return f
    if name.startswith("arg.") and len(name) > 4:
        return Field(name, "arg", "arg")
    known = list(FIELDS) + ["arg.NAME"]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else f" (fields: {', '.join(sorted(known))})"
    raise c.error(f"unknown field {name!r}{hint}", pos)


def _compare(node: Compare, c: _Ctx) -> IR:
    f = _field(node.field, node.pos, c)
    op = node.op
    t = f.type
    allowed = {"number": NUM_OPS, "bool": frozenset(("=", "!=")), "syscall": TEXT_OPS,
               "text": TEXT_OPS, "arg": NUM_OPS | TEXT_OPS}[t]
    if f.name in ("sockaddr.ip",):
        allowed = TEXT_OPS
    if op not in allowed:
        kind = {"number": "a number", "bool": "yes/no", "syscall": "a name", "text": "text"}[t]
        ops = " ".join(o for o in ("=", "!=", "<", "<=", ">", ">=", "in", "contains", "startswith",
                                   "endswith", "glob") if o in allowed)
        raise c.error(f"{op} does not apply to {f.name}, which is {kind} (it takes {ops})", node.op_pos)
    if t == "number":
        return Pred(f, op, tuple(_number(f, v, c) for v in node.values), node)
    if t == "bool":
        v = node.values[0]
        b = {"true": True, "false": False}.get(v.text.lower())
        if b is None:
            raise c.error(f"{f.name} is true or false, not {v.text!r}", v.pos)
        return Pred(f, "=", (b if op == "=" else not b,), node)
    if t == "syscall":
        return _syscall(f, node, c)
    if t == "text":
        if f.name == "sockaddr.ip" and op in ("=", "!=", "in"):
            return Pred(f, op, tuple(_network(v, c) for v in node.values), node)
        if f.name == "dir" and op in ("=", "!=", "in"):
            for v in node.values:
                if v.text not in ("<", ">"):
                    raise c.error(f"dir is '<' (exit) or '>' (enter), not {v.text!r}", v.pos)
        return Pred(f, op, tuple(v.text for v in node.values), node)
    return _arg(f, node, c)


def _number(f: Field, v, c: _Ctx) -> int:
    n = parse_int(v.text)
    if n is None and f.name == "errno":
        n = errnos.number(v.text.upper())
        if n is None:
            close = difflib.get_close_matches(v.text.upper(), list(errnos.NUMBERS), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise c.error(f"unknown errno {v.text!r}{hint}", v.pos)
    if n is None:
        hint = " (errno takes names)" if f.name == "errno" else ""
        if f.name in ("uid", "gid"):
            hint = f" (use {'user' if f.name == 'uid' else 'group'} = NAME for names)"
        raise c.error(f"{f.name} is a number: {v.text!r} is not one{hint}", v.pos)
    return n


def _network(v, c: _Ctx):
    try:
        return ipaddress.ip_network(v.text, strict=False)
    except ValueError:
        raise c.error(f"sockaddr.ip takes an address or a network (10.0.0.1, 10.0.0.0/8, ::1), "
                      f"not {v.text!r}", v.pos) from None


def _syscall(f: Field, node: Compare, c: _Ctx) -> Pred:
    op = node.op
    if op in ("=", "!=", "in"):
        nrs = set()
        for v in node.values:
            n = parse_int(v.text)
            if n is not None:
                if n not in _args.SCHED_NAMES and n not in syscalls.BY_NR:
                    raise c.error(f"no syscall has number {n}", v.pos)
                nrs.add(n)
                continue
            n = SYSCALL_NAMES.get(v.text)
            if n is None:
                close = difflib.get_close_matches(v.text, list(SYSCALL_NAMES), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise c.error(f"unknown syscall {v.text!r}{hint}", v.pos)
            nrs.add(n)
        return Pred(f, "!=" if op == "!=" else "in", (frozenset(nrs),), node)
    from lbd.filter.spans import text_match

    needles = [v.text for v in node.values]
    nrs = frozenset(nr for name, nr in SYSCALL_NAMES.items() if text_match(name, op, needles))
    return Pred(f, "in", (nrs,), node)


def arg_slots(name: str) -> list[tuple[int, int, object]]:
    """(nr, slot, Arg) of every syscall (and process-tree record) with an argument `name`."""
    out = []
    nrs = [sc.nr for sc in syscalls.TABLE] + list(_args.SCHED_NAMES)
    for nr in nrs:
        specs = _args.arg_specs(nr) or ()
        for k, a in enumerate(specs[: record.MAX_ARGS]):
            if a.name == name:
                out.append((nr, k, a))
                break
    return out


def _arg(f: Field, node: Compare, c: _Ctx) -> Pred:
    name = f.name[4:]
    found = arg_slots(name)
    if not found:
        allnames = sorted({a.name for sc in syscalls.TABLE for a in sc.args[: record.MAX_ARGS]}
                          | {a.name for specs in _args.SCHED_ARGS.values() for a in specs})
        close = difflib.get_close_matches(name, allnames, n=1)
        hint = f" (did you mean arg.{close[0]}?)" if close else ""
        raise c.error(f"no syscall has an argument {name!r}{hint}", node.pos)
    groups: dict[tuple, list[int]] = {}
    for nr, k, a in found:
        groups.setdefault((k, a.kind_id, a.bits if a.kind_id != K["ptr"] else 64, a.flags), []).append(nr)
    op = node.op
    texts = [v.text for v in node.values]
    out = []
    used = [False] * len(texts)
    for (k, kind, bits, fset), nrs in sorted(groups.items()):
        mode, operand = None, ()
        if kind in INT_KINDS or kind == K["out_int"]:
            if op == "contains" and fset:
                parts = [flag_parts(fset, t) for t in texts]
                keep = [(i, p) for i, p in enumerate(parts) if p is not None]
                if keep:
                    mode, operand = "flagtext", tuple(p for _, p in keep)
                    for i, _ in keep:
                        used[i] = True
            elif op in ("startswith", "endswith", "glob") and fset:
                mode, operand = "text", tuple(texts)
                used = [True] * len(texts)
            elif op in NUM_OPS:
                vals = [(i, parse_int(t) if not fset else flag_value(fset, t)) for i, t in enumerate(texts)]
                keep = [(i, v) for i, v in vals if v is not None]
                if keep:
                    mode, operand = "num", tuple(v for _, v in keep)
                    for i, _ in keep:
                        used[i] = True
                elif op == "!=":
                    mode, operand = "num", ()
        elif op in TEXT_OPS:
            mode, operand = "text", tuple(texts)
            used = [True] * len(texts)
        out.append(ArgGroup(tuple(sorted(nrs)), k, kind, bits, fset, mode, operand))
    if op in ("<", "<=", ">", ">=") and not any(g.mode == "num" for g in out):
        if not any(g.kind in INT_KINDS or g.kind == K["out_int"] for g in out):
            raise c.error(f"{op} compares numbers, and {f.name} is text wherever it exists", node.op_pos)
    for i, ok in enumerate(used):
        if not ok:
            v = node.values[i]
            sets = sorted({g.flagset for g in out if g.flagset})
            if op in ("contains", "startswith", "endswith", "glob") and not sets:
                raise c.error(f"{op} tests text, and {f.name} is a number wherever it exists", node.op_pos)
            if not sets:
                raise c.error(f"{f.name} is a number wherever it exists: {v.text!r} is not one", v.pos)
            names = sorted({n for s in sets for n in _flag_names(s)})
            close = difflib.get_close_matches(v.text.split("|")[0].strip(), names, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise c.error(f"{f.name} takes a number or flag names joined by '|': {v.text!r} is not one{hint}",
                          v.pos)
    return Pred(f, op, tuple(out), node, argname=name)
