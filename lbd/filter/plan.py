"""Push-down: what of a filter the kernel can decide before a record is written.

    plan = derive(ir)          # a KernelPlan
    plan.open_params()         # {"syscalls": [...], "filter_comms": [...], "drop_failed": True, ...}
    plan.admits(batch)         # bool mask: what a kernel applying the plan would let through

The kernel filters on a few header values, each as a set to keep or to drop: the syscall, the
process (pid), its comm, its uid, and whether the call failed; and on path prefixes: a syscall's
path or string argument must start with one of the syscall's prefixes.  A plan holds, for each, what every
event the expression keeps must satisfy, so applying it can only drop events the expression drops
too (it is *implied* by the expression, never stronger).  For ``and`` the constraints meet, for
``or`` they join (a dimension only one side constrains is unconstrained), ``not`` is pushed down
to the tests (De Morgan), and a test on any other field implies nothing.  A dimension with more
values than the kernel's maps hold is left out of open_params() (capturing more is always safe).

Semantics the kernel side must keep for the plan to stay safe (what `admits` models):

* syscalls / drop_syscalls: apply to syscall records only (process-tree records, nr >= 1000, are
  never dropped by them);
* pids: the header's pid (the thread group id), as the kernel's only_pids / filter_pids;
* comms: the header's comm, compared as the kernel compares comm_key (its bytes up to the NUL);
* uids: the header's uid (the real uid);
* failed: True keeps only records with res < 0, False drops records with res < 0 (drop_failed).
  The kernel may drop less (drop_failed spares rt_sigreturn): less is always safe.
* path_prefixes: (syscall, argument, prefix) entries; a record of a syscall that has entries is
  kept when that argument's bytes start with one of its prefixes (an absent argument starts with
  none).  From ``arg.NAME startswith``, ``=`` and ``in`` tests on path and string arguments whose
  needles hold no backslash (bytes then decide the text test exactly: lbd.filter.spans); execve
  and execveat are never constrained (their path is the kernel's, taken at exec).  The kernel
  keeps a dropped record of a state syscall for its tables (not output).

A comm that changes in the call (execve) is filtered by the kernel with the comm it had when the
syscall entered; the same holds for a uid changed by setuid: a plan on comm or uid can drop such a
call's record although its exit header would match.  The lead decides whether that is acceptable
(the existing only_comms has the same property).
"""
from __future__ import annotations

from dataclasses import dataclass, field as dc_field

import numpy as np

from lbd import record
from lbd.config import MAX_PREFIXES, PREFIX_MAX
from lbd.filter.fields import SYSCALL_NAMES, PAnd, PConst, PNot, POr, Pred

__all__ = ["KernelPlan", "derive", "LIMITS"]

#: most entries the kernel's maps take (lbd/config.py: only_pids/filter_pids 64, comms 16)
LIMITS = {"pids": 64, "comms": 16, "uids": 64, "syscalls": 512}

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_U32 = (1 << 32) - 1
_PID_MAX = 4194303                   # lbd/config.py's range for only_pids / filter_pids
_NAMES = {nr: name for name, nr in SYSCALL_NAMES.items()}
_DIMS = ("syscall", "pid", "comm", "uid", "failed", "path")
#: syscall numbers whose path argument the kernel cannot check
_NO_PREFIX = frozenset(SYSCALL_NAMES[n] for n in record.NO_PREFIX_SYSCALLS)


@dataclass(frozen=True)
class KernelPlan:
    """What the kernel may drop for a filter.  None for a keep set: no constraint.

    syscalls: keep only these syscalls (names; may include sched_process_* names, which the kernel
    always emits); drop_syscalls: drop these; only_pids / filter_pids, only_comms / filter_comms,
    only_uids / filter_uids: keep only / drop these pids, comms, uids; failed: True keep only
    failed calls (res < 0), False drop them, None either; matches_nothing: the expression can
    never pass (the kernel may drop everything); path_prefixes: (syscall, argument, prefix): a
    record of a syscall named there is kept when its argument starts with one of its prefixes."""

    syscalls: frozenset[str] | None = None
    drop_syscalls: frozenset[str] = frozenset()
    only_pids: frozenset[int] | None = None
    filter_pids: frozenset[int] = frozenset()
    only_comms: frozenset[str] | None = None
    filter_comms: frozenset[str] = frozenset()
    only_uids: frozenset[int] | None = None
    filter_uids: frozenset[int] = frozenset()
    failed: bool | None = None
    matches_nothing: bool = False
    path_prefixes: frozenset[tuple[str, str, str]] = frozenset()

    def open_params(self) -> dict:
        """The plan as lbd's open_params (lists, sorted).  Keys the kernel has today: syscalls,
        only_pids, filter_pids, only_comms, filter_comms, drop_failed; new ones: only_uids,
        filter_uids (uid sets), failed_only (keep only res < 0), filter_syscalls (remove these
        from the selection), drop_mode (matches_nothing).  A key is left out when it constrains
        nothing or has more entries than the kernel takes (LIMITS)."""
        out: dict = {}
        if self.matches_nothing:
            return {"drop_mode": True}
        if self.syscalls is not None:
            real = sorted(n for n in self.syscalls if SYSCALL_NAMES[n] < record.NR_SCHED_FORK)
            if real and len(real) <= LIMITS["syscalls"]:
                out["syscalls"] = real
        drop = sorted(n for n in self.drop_syscalls if SYSCALL_NAMES[n] < record.NR_SCHED_FORK)
        if drop:
            out["filter_syscalls"] = drop
        for key, keep, dropset, limit in (
                ("pids", self.only_pids, self.filter_pids, LIMITS["pids"]),
                ("comms", self.only_comms, self.filter_comms, LIMITS["comms"]),
                ("uids", self.only_uids, self.filter_uids, LIMITS["uids"])):
            fits = (lambda vals: key != "pids" or max(vals, default=0) <= _PID_MAX)
            if keep is not None and len(keep) <= limit and fits(keep):
                out[f"only_{key}"] = sorted(keep)
            if dropset and len(dropset) <= limit and fits(dropset):
                out[f"filter_{key}"] = sorted(dropset)
        if self.failed is True:
            out["failed_only"] = True
        elif self.failed is False:
            out["drop_failed"] = True
        if self.path_prefixes and len(self.path_prefixes) <= MAX_PREFIXES:
            out["path_prefixes"] = [f"{n}:{a}:{p}" for n, a, p in sorted(self.path_prefixes)]
        return out

    def admits(self, batch) -> np.ndarray:
        """bool per event: what a kernel applying every part of the plan would keep (the most it may
        drop; see the module docstring)."""
        ev = batch.events
        n = len(ev)
        if self.matches_nothing:
            return np.zeros(n, dtype=bool)
        keep = np.ones(n, dtype=bool)
        nr = ev["nr"]
        real = nr < record.NR_SCHED_FORK
        if self.syscalls is not None:
            keep &= ~real | np.isin(nr, [SYSCALL_NAMES[s] for s in self.syscalls])
        if self.drop_syscalls:
            keep &= ~(real & np.isin(nr, [SYSCALL_NAMES[s] for s in self.drop_syscalls]))
        if self.only_pids is not None:
            keep &= np.isin(ev["pid"], np.array(sorted(self.only_pids), dtype=np.int64))
        if self.filter_pids:
            keep &= ~np.isin(ev["pid"], np.array(sorted(self.filter_pids), dtype=np.int64))
        if self.only_uids is not None:
            keep &= np.isin(ev["uid"], np.array(sorted(self.only_uids), dtype=np.int64))
        if self.filter_uids:
            keep &= ~np.isin(ev["uid"], np.array(sorted(self.filter_uids), dtype=np.int64))
        if self.only_comms is not None or self.filter_comms:
            comm = ev["comm"]
            if self.only_comms is not None:
                keep &= _comm_in(comm, self.only_comms)
            if self.filter_comms:
                keep &= ~_comm_in(comm, self.filter_comms)
        if self.failed is not None:
            keep &= (ev["res"] < 0) == self.failed
        if self.path_prefixes:
            by_nr: dict[int, tuple[str, list[bytes]]] = {}
            for name, arg, prefix in self.path_prefixes:
                by_nr.setdefault(SYSCALL_NAMES[name], (arg, []))[1].append(prefix.encode())
            # the kernel checks exit records completed from their enter (not enter records, nor
            # exits without enter), before the reread of an argument that faulted at enter
            checked = keep & np.isin(nr, list(by_nr)) & (ev["dir"] == record.DIR_EXIT) \
                & ((ev["flags"] & record.F_NOENTER) == 0)
            for i in np.flatnonzero(checked):
                arg, prefixes = by_nr[int(nr[i])]
                value = _arg_bytes(batch, int(i), arg)
                if value is not _UNREAD:
                    keep[i] = value is not None and any(value.startswith(p) for p in prefixes)
        return keep

    def describe(self) -> str:
        """One line for logs: what is pushed down."""
        p = self.open_params()
        return ", ".join(f"{k}={v}" for k, v in p.items()) or "nothing"


_UNREAD = object()


def _arg_bytes(batch, i: int, arg: str):
    """The payload bytes of event i's argument `arg`: None when it has none (a NULL pointer),
    _UNREAD when its read faulted at enter."""
    from lbd import args as _args

    ev = batch.events[i]
    specs = _args.arg_specs(int(ev["nr"])) or ()
    for k, a in enumerate(specs[: record.MAX_ARGS]):
        if a.name == arg:
            off, length = int(ev["slot"][k]["off"]), int(ev["slot"][k]["len"])
            if int(ev["flags"]) & (1 << (record.F_FAULT_SHIFT + k)):
                return _UNREAD
            if not off:
                return None
            base = int(ev["rec"]) + off
            return bytes(batch.arena[base: base + length])
    return None


def _comm_in(comm: np.ndarray, names) -> np.ndarray:
    """The kernel's comm_key match: the comm's bytes up to its first NUL equal the name's."""
    b = np.ascontiguousarray(comm).view(np.uint8).reshape(-1, record.COMM_LEN)
    cut = np.cumsum(b == 0, axis=1) > 0
    key = np.where(cut, 0, b).astype(np.uint8).view(f"S{record.COMM_LEN}").ravel()
    return np.isin(key, np.array([n.encode() for n in names], dtype=f"S{record.COMM_LEN}"))


# ---- derivation --------------------------------------------------------------------------------

@dataclass
class _C:
    """A conjunction of per-dimension constraints: dim -> ("in" | "out", frozenset); never: empty."""

    dims: dict = dc_field(default_factory=dict)
    never: bool = False


_ANY = _C()


def _meet(a: _C, b: _C) -> _C:
    if a.never or b.never:
        return _C(never=True)
    out = dict(a.dims)
    for d, (kb, sb) in b.dims.items():
        if d not in out:
            out[d] = (kb, sb)
            continue
        ka, sa = out[d]
        if d == "path":                         # always "in"
            out[d] = ("in", _path_meet(sa, sb))
            continue
        if ka == "in" and kb == "in":
            out[d] = ("in", sa & sb)
        elif ka == "in":
            out[d] = ("in", sa - sb)
        elif kb == "in":
            out[d] = ("in", sb - sa)
        else:
            out[d] = ("out", sa | sb)
    return _norm(out)


def _join(a: _C, b: _C) -> _C:
    if a.never:
        return b
    if b.never:
        return a
    out = {}
    for d in a.dims.keys() & b.dims.keys():
        (ka, sa), (kb, sb) = a.dims[d], b.dims[d]
        if d == "path":
            out[d] = ("in", _path_join(sa, sb))
            continue
        if ka == "in" and kb == "in":
            out[d] = ("in", sa | sb)
        elif ka == "in":
            out[d] = ("out", sb - sa)
        elif kb == "in":
            out[d] = ("out", sa - sb)
        else:
            out[d] = ("out", sa & sb)
    return _norm(out)


def _norm(dims: dict) -> _C:
    out = {}
    for d, (k, s) in dims.items():
        if d == "path":
            if not s:
                return _C(never=True)
            out[d] = (k, frozenset(s))
            continue
        if d == "failed":                       # domain {True, False}
            if k == "out":
                k, s = "in", frozenset((True, False)) - s
            if s == frozenset((True, False)):
                continue
        if k == "in" and not s:
            return _C(never=True)
        if k == "out" and not s:
            continue
        out[d] = (k, frozenset(s))
    return _C(out)


# The path dimension: always "in", a frozenset of (nr, slot, arg, prefix) entries.  A record
# passes it when its nr has entries and, unless an entry's slot is -1 (the nr is not constrained:
# any record of it passes), its argument starts with one of the nr's prefixes.  So it also
# constrains the syscall, as the syscall dimension of the same test does.

def _by_nr(entries) -> dict:
    out: dict = {}
    for nr, slot, arg, prefix in entries:
        cur = out.get(nr)
        if slot < 0 or (cur is not None and cur[0] < 0):
            out[nr] = (-1, None, frozenset())
        else:
            out[nr] = (slot, arg, (cur[2] if cur else frozenset()) | {prefix})
    return out


def _entries(by_nr: dict) -> frozenset:
    out = set()
    for nr, (slot, arg, prefixes) in by_nr.items():
        if slot < 0:
            out.add((nr, -1, None, None))
        else:
            out.update((nr, slot, arg, p) for p in _minimal(prefixes))
    return frozenset(out)


def _minimal(prefixes) -> frozenset:
    """The prefixes not covered by a shorter one (which matches everything they match)."""
    ps = sorted(prefixes, key=len)
    keep: list = []
    for p in ps:
        if not any(p.startswith(q) for q in keep):
            keep.append(p)
    return frozenset(keep)


def _path_meet(a, b) -> frozenset:
    """Both constraints hold: the nrs of both; the prefixes that satisfy both sides."""
    A, B = _by_nr(a), _by_nr(b)
    out = {}
    for nr in A.keys() & B.keys():
        (sa, arga, pa), (sb, argb, pb) = A[nr], B[nr]
        if sa < 0:
            out[nr] = B[nr]
        elif sb < 0 or sa != sb:
            out[nr] = A[nr]                      # two arguments: the kernel checks one (either holds)
        else:
            both = {p for p in pa if any(p.startswith(q) for q in pb)} | \
                   {q for q in pb if any(q.startswith(p) for p in pa)}
            if both:
                out[nr] = (sa, arga, frozenset(both))
    return _entries(out)


def _path_join(a, b) -> frozenset:
    """Either constraint holds: the nrs of either; on a nr of both, the prefixes of either."""
    A, B = _by_nr(a), _by_nr(b)
    out = dict(A)
    for nr, vb in B.items():
        va = out.get(nr)
        if va is None:
            out[nr] = vb
        elif va[0] < 0 or vb[0] < 0 or va[0] != vb[0]:
            out[nr] = (-1, None, frozenset())
        else:
            out[nr] = (va[0], va[1], va[2] | vb[2])
    return _entries(out)


_FLIP = {"=": "!=", "in": "!=", "!=": "in", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}


def _implied(node, positive: bool) -> _C:
    if isinstance(node, PNot):
        return _implied(node.item, not positive)
    if isinstance(node, (PAnd, POr)):
        parts = [_implied(x, positive) for x in node.items]
        combine = _meet if isinstance(node, PAnd) == positive else _join
        acc = parts[0]
        for p in parts[1:]:
            acc = combine(acc, p)
        return acc
    if isinstance(node, PConst):
        return _ANY if node.value == positive else _C(never=True)
    if isinstance(node, Pred):
        return _pred(node, positive)
    return _ANY


def _dim(d: str, kind_in: bool, values) -> _C:
    return _norm({d: ("in" if kind_in else "out", frozenset(values))})


def _pred(p: Pred, positive: bool) -> _C:
    name = p.field.name
    op = p.op if positive else _FLIP.get(p.op, "")
    if name == "syscall":
        return _dim("syscall", op == "in", p.operand[0])
    if name in ("pid", "uid"):
        vals = [v for v in p.operand if 0 <= v <= _U32]      # the header's columns are u32
        if op in ("=", "in"):
            return _dim(name, True, vals)
        if op == "!=":
            return _dim(name, False, vals)
        return _ANY
    if name == "comm":
        return _comm(p, op)
    if name == "failed":
        want = p.operand[0] if positive else not p.operand[0]
        return _dim("failed", True, (want,))
    if name in ("res", "errno"):
        neg, nonneg = (_res_signs if name == "res" else _errno_signs)(op, p.operand)
        return _dim("failed", True, ([True] if neg else []) + ([False] if nonneg else []))
    if p.argname is not None and positive and op in ("startswith", "=", "in"):
        # (not negated: `not (arg.x != v)` passes where x is absent, `arg.x = v` does not)
        return _arg_prefixes(p)
    return _ANY


def _arg_prefixes(p: Pred) -> _C:
    """arg.NAME startswith / = / in, not negated: the record is of a syscall where the test can
    pass, and (where the kernel can compare its bytes) the argument starts with a needle."""
    entries = set()
    for g in p.operand:
        if g.mode is None:
            continue                             # never passes on these syscalls
        needles = g.operand
        exact = (g.mode == "text" and g.kind in record.PREFIX_KINDS and needles
                 and all(_byte_prefix(n) for n in needles))
        for nr in g.nrs:
            if exact and nr < record.NR_SCHED_FORK and nr not in _NO_PREFIX:
                entries.update((nr, g.slot, p.argname, n) for n in needles)
            else:
                entries.add((nr, -1, None, None))
    if not entries:
        return _C(never=True)
    nrs = {nr for nr, _, _, _ in entries}
    return _norm({"syscall": ("in", frozenset(nrs)), "path": ("in", _entries(_by_nr(entries)))})


def _byte_prefix(needle: str) -> bool:
    """The needle's UTF-8 bytes decide a text test on the raw bytes (lbd.filter.spans) and fit the
    kernel's prefix key."""
    if "\\" in needle:
        return False
    try:
        return len(needle.encode("utf-8")) <= PREFIX_MAX
    except UnicodeEncodeError:
        return False


def _comm(p: Pred, op: str) -> _C:
    if op not in ("=", "in", "!="):
        return _ANY
    keep = op != "!="
    vals = []
    for text in p.operand:
        try:
            b = text.encode("utf-8")
        except UnicodeEncodeError:
            if keep:
                return _ANY                  # a value the kernel cannot compare: keep everything
            continue
        if keep and "\\" in text:
            return _ANY                      # \xNN stands for a byte: the text, not the bytes
        if len(b) <= record.COMM_LEN and b"\0" not in b:
            vals.append(text)                # longer names never match a comm (at most 15 bytes)
    return _dim("comm", keep, vals)


def _res_signs(op: str, operand) -> tuple[bool, bool]:
    """(some negative res passes, some res >= 0 passes)."""
    if op in ("=", "in"):
        return any(o < 0 for o in operand), any(o >= 0 for o in operand)
    if op == "!=":
        return True, True
    v = operand[0]
    return {"<": (v > _INT64_MIN, v > 0), "<=": (v >= _INT64_MIN, v >= 0),
            ">": (v < -1, v < _INT64_MAX), ">=": (v < 0, v <= _INT64_MAX)}[op]


def _errno_signs(op: str, operand) -> tuple[bool, bool]:
    """(some failed call passes, some call that did not fail passes): errno is 0 unless it failed."""
    top = 1 << 63
    if op in ("=", "in"):
        return any(1 <= o <= top for o in operand), 0 in operand
    if op == "!=":
        return True, 0 not in operand
    v = operand[0]
    return {"<": (v > 1, v > 0), "<=": (v >= 1, v >= 0),
            ">": (v < top, v < 0), ">=": (v <= top, v <= 0)}[op]


def derive(ir) -> KernelPlan:
    """The KernelPlan implied by resolved predicates (lbd.filter.fields.resolve)."""
    c = _implied(ir, True)
    if c.never:
        return KernelPlan(matches_nothing=True)
    if "path" in c.dims:
        # the path entries name the syscalls where the tests can pass: meet them with the syscall
        # dimension, and keep the entries of the syscalls that remain
        c = _meet(c, _dim("syscall", True, {nr for nr, _, _, _ in c.dims["path"][1]}))
        if c.never:
            return KernelPlan(matches_nothing=True)
        k, nrs = c.dims["syscall"]
        live = {e for e in c.dims["path"][1] if (e[0] in nrs) == (k == "in")}
        c.dims["path"] = ("in", frozenset(live))
    kw: dict = {}
    for d, (k, s) in c.dims.items():
        if d == "syscall":
            names = frozenset(_NAMES[nr] for nr in s)
            if k == "in":
                kw["syscalls"] = names
            else:
                kw["drop_syscalls"] = names
        elif d == "failed":
            (want,) = tuple(s)
            kw["failed"] = want
        elif d == "path":
            prefixes = frozenset((_NAMES[nr], arg, prefix) for nr, slot, arg, prefix in s if slot >= 0)
            if prefixes:
                kw["path_prefixes"] = prefixes
        else:
            key = {"pid": "pids", "comm": "comms", "uid": "uids"}[d]
            kw[("only_" if k == "in" else "filter_") + key] = frozenset(s)
    return KernelPlan(**kw)
