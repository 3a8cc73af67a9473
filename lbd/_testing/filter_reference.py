"""The filter language, event by event, in plain Python: the definition lbd.filter is held to.

    keep = evaluate(expression, batch)        # list of bool, one per event
    kept_by_kernel = plan_keeps(plan, batch)  # the same for a KernelPlan

It walks the parse tree (lbd.filter.syntax: the grammar is shared, tested on its own) and reads
each event's values the slow way: `lbd.output.reference.event_fields` (header, enrichment),
`Batch.args(i)` (decoded arguments), lbd.args.SockAddr, lbd.flags.names.  It interprets every
literal itself.  It is what the module docstrings of lbd.filter.fields say, written as directly as
possible; it is slow on purpose (a Python call per event and per test) and never used by lbd.
"""
from __future__ import annotations

import fnmatch
import ipaddress

from lbd import args as _args, flags as _flags, record
from lbd.args import SockAddr
from lbd.filter.syntax import And, Compare, Flag, Not, Or, parse

__all__ = ["evaluate", "events_of", "event_values", "test", "plan_keeps"]

K = record.KINDS
_INT_KINDS = {K[k] for k in ("none", "int", "uint", "hex", "fd", "dirfd", "pid", "uid", "gid", "mode", "flags", "ptr")}
_ENRICHED = {"pcomm", "user", "group", "cmdline", "exe", "fullpath", "fd.name"}
_OPTIONAL = {"cgroup_id", "pidns", "mntns", "loginuid"}
_MISSING = object()


def _int(text: str):
    t = text.strip()
    sign = -1 if t[:1] == "-" else 1
    body = t.lstrip("+-")
    try:
        if body[:2].lower() == "0x":
            return sign * int(body[2:], 16)
        if body[:2].lower() == "0b":
            return sign * int(body[2:], 2)
        if body[:2].lower() == "0o":
            return sign * int(body[2:], 8)
        if len(body) > 1 and body[0] == "0":
            return sign * int(body, 8)
        if body.isdigit():
            return sign * int(body, 10)
    except ValueError:
        return None
    return None


def _errno_number(text: str):
    v = _int(text)
    if v is not None:
        return v
    from lbd import errnos

    return errnos.number(text.upper())


class _Event:
    """One event's values, computed when first asked for."""

    def __init__(self, batch, i: int):
        from lbd.enrich.layout import has_enrichment
        from lbd.output.reference import event_fields

        self.batch, self.i = batch, i
        self.f = event_fields(batch, i)
        self.enriched = has_enrichment(batch)
        self.row = batch.events[i]

    def specs(self):
        return _args.arg_specs(self.f["nr"]) or ()

    def arg(self, name: str):
        """(Arg spec, value) of argument `name`, or None when the event has no such argument."""
        for a in self.specs()[: record.MAX_ARGS]:
            if a.name == name:
                v = self.f["args"].get(name, None) if self.f["args"] else None
                return a, v
        return None

    def fd(self):
        from lbd.filter.fields import FD_RETURNING

        for a in self.specs()[: record.MAX_ARGS]:
            if a.kind_id == K["fd"]:
                return self.f["args"].get(a.name) if self.f["args"] else None
        if self.f["name"] in FD_RETURNING and self.f["res"] >= 0:
            return self.f["res"]
        return None

    def sockaddr(self):
        for a in self.specs()[: record.MAX_ARGS]:
            if a.kind_id in (K["sockaddr"], K["out_sockaddr"]):
                return self.f["args"].get(a.name) if self.f["args"] else None
        return None


def event_values(batch, i: int) -> _Event:
    return _Event(batch, i)


def _field_value(e: _Event, name: str):
    """The value of a non-argument field (None: absent)."""
    f = e.f
    if name in _ENRICHED and not e.enriched:
        raise LookupError(f"{name} needs enrichment")
    if name in _OPTIONAL:
        if name not in e.row.dtype.names:
            raise LookupError(f"{name} is not in the records")
        return int(e.row[name])
    if name == "errno":
        return -f["res"] if f["res"] < 0 else 0
    if name == "failed":
        return f["res"] < 0
    if name == "syscall":
        return f["name"]
    if name in ("exe", "fullpath"):
        return f["fullpath"]
    if name in ("pid", "tid", "ppid", "uid", "gid", "nr", "res", "latency", "ts", "dir", "comm", "pcomm",
                "user", "group", "cmdline"):
        return f[name]
    if name == "fd.name":
        fd = e.fd()
        if fd is None:
            return None
        for n, path in f["fds"]:
            if n == fd:
                return path
        return None
    if name.startswith("sockaddr."):
        sa = e.sockaddr()
        if not isinstance(sa, SockAddr):
            return None
        attr = name.split(".", 1)[1]
        return {"ip": sa.addr, "port": sa.port, "family": sa.family, "path": sa.path}[attr]
    raise KeyError(name)


def _text_op(text: str, op: str, lits) -> bool:
    if op in ("=", "in"):
        return text in lits
    if op == "!=":
        return text not in lits
    n = lits[0]
    return {"contains": n in text, "startswith": text.startswith(n), "endswith": text.endswith(n),
            "glob": fnmatch.fnmatchcase(text, n)}[op]


def _num_op(v: int, op: str, lits) -> bool:
    if any(x is None for x in lits):
        lits = [x for x in lits if x is not None]
    if op in ("=", "in"):
        return v in lits
    if op == "!=":
        return v not in lits
    return {"<": v < lits[0], "<=": v <= lits[0], ">": v > lits[0], ">=": v >= lits[0]}[op]


def _flag_value(flagset: str, text: str):
    names = _flags.name_values(flagset)
    total = 0
    for part in text.split("|"):
        part = part.strip()
        v = _int(part)
        if v is None:
            v = names.get(part)
        if v is None:
            return None
        total |= v
    return total


def _flag_contains(flagset: str, value: int, text: str) -> bool:
    shown = _flags.names(flagset, value).split("|")
    for part in text.split("|"):
        part = part.strip()
        v = _int(part)
        if v is not None:
            if value & v != v:
                return False
        elif part not in shown:
            return False
    return True


def _arg_test(e: _Event, name: str, op: str, lits: list[str]) -> bool:
    from lbd.output.reference import format_value

    found = e.arg(name)
    if found is None:
        return False
    spec, v = found
    if v is None or v is _args.UNREADABLE:      # no value: no comparison holds (as for NULL)
        return False
    kind = spec.kind_id
    if kind in _INT_KINDS or kind == K["out_int"]:
        if op in ("contains", "startswith", "endswith", "glob"):
            if not spec.flags:
                return False
            if op == "contains":
                return _flag_contains(spec.flags, v, lits[0])
            return _text_op(_flags.names(spec.flags, v), op, lits)
        nums = [(_flag_value(spec.flags, t) if spec.flags else _int(t)) for t in lits]
        return _num_op(v, op, nums)
    if op in ("<", "<=", ">", ">="):
        return False
    return _text_op(format_value(v, 0), op, lits)


def test(node: Compare | Flag, e: _Event) -> bool:
    """One test on one event."""
    if isinstance(node, Flag):
        return bool(_field_value(e, node.field))
    name, op = node.field, node.op
    lits = [v.text for v in node.values]
    if name.startswith("arg."):
        return _arg_test(e, name[4:], op, lits)
    v = _field_value(e, name)
    if v is None:
        return False
    if name == "failed":
        want = lits[0].lower() == "true"
        return (v == want) if op == "=" else (v != want)
    if name == "syscall":
        if op in ("=", "!=", "in"):
            hit = any((_int(t) == e.f["nr"]) if _int(t) is not None else t == v for t in lits)
            return not hit if op == "!=" else hit
        return _text_op(v, op, lits)
    if name == "sockaddr.ip" and op in ("=", "!=", "in"):
        ip = ipaddress.ip_address(v)
        nets = [ipaddress.ip_network(t, strict=False) for t in lits]
        inside = any(ip.version == n.version and ip in n for n in nets)
        return not inside if op == "!=" else inside
    if isinstance(v, str):
        return _text_op(v, op, lits)
    nums = [_errno_number(t) if name == "errno" else _int(t) for t in lits]
    return _num_op(int(v), op, nums)


def _eval(node, e: _Event) -> bool:
    if isinstance(node, And):
        return all(_eval(x, e) for x in node.items)
    if isinstance(node, Or):
        return any(_eval(x, e) for x in node.items)
    if isinstance(node, Not):
        return not _eval(node.item, e)
    return test(node, e)


def events_of(batch) -> list[_Event]:
    """The batch's events as the reference reads them (to evaluate many expressions over one batch)."""
    return [_Event(batch, i) for i in range(len(batch))]


def evaluate(expression: str, batch, events: list | None = None) -> list[bool]:
    """Whether the expression keeps each event of the batch, one event and one test at a time.
    `events`: events_of(batch), when several expressions are evaluated over the same batch."""
    tree = parse(expression)
    return [_eval(tree, e) for e in (events if events is not None else events_of(batch))]


def plan_keeps(plan, batch) -> list[bool]:
    """What a kernel applying the KernelPlan keeps, event by event (the most it may drop)."""
    from lbd.filter.fields import SYSCALL_NAMES

    out = []
    ev = batch.events
    for i in range(len(batch)):
        e = ev[i]
        nr, pid, uid, res = int(e["nr"]), int(e["pid"]), int(e["uid"]), int(e["res"])
        comm = bytes(e["comm"]).split(b"\0", 1)[0]
        real = nr < record.NR_SCHED_FORK
        keep = not plan.matches_nothing
        if plan.syscalls is not None and real:
            keep &= nr in {SYSCALL_NAMES[s] for s in plan.syscalls}
        if real:
            keep &= nr not in {SYSCALL_NAMES[s] for s in plan.drop_syscalls}
        if plan.only_pids is not None:
            keep &= pid in plan.only_pids
        keep &= pid not in plan.filter_pids
        if plan.only_uids is not None:
            keep &= uid in plan.only_uids
        keep &= uid not in plan.filter_uids
        if plan.only_comms is not None:
            keep &= comm in {c.encode() for c in plan.only_comms}
        keep &= comm not in {c.encode() for c in plan.filter_comms}
        if plan.failed is not None:
            keep &= (res < 0) == plan.failed
        prefixes = [(a, p.encode()) for n, a, p in plan.path_prefixes if SYSCALL_NAMES[n] == nr]
        if keep and prefixes and e["dir"] == record.DIR_EXIT and not e["flags"] & record.F_NOENTER:
            keep = _path_kept(batch, i, nr, prefixes)
        out.append(bool(keep))
    return out


def _path_kept(batch, i: int, nr: int, prefixes: list[tuple[str, bytes]]) -> bool:
    """The kernel's path check (bpf/lbd.bpf.c path__kept): the argument read at enter starts with
    one of the prefixes; a NULL pointer starts with none; a read that faulted at enter is kept."""
    from lbd import args as _args

    (arg,) = {a for a, _ in prefixes}
    slot = [a.name for a in _args.arg_specs(nr)].index(arg)
    e = batch.events[i]
    if e["flags"] & (1 << (record.F_FAULT_SHIFT + slot)):
        return True
    if not e["slot"][slot]["off"]:
        return False
    value = batch.payload(i, slot) or b""
    return any(value.startswith(p) for _, p in prefixes)
