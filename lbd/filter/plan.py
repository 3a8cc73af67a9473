"""Push-down: what of a filter the kernel can decide before a record is written.

    plan = derive(ir)          # a KernelPlan
    plan.open_params()         # {"syscalls": [...], "filter_comms": [...], "drop_failed": True, ...}
    plan.admits(batch)         # bool mask: what a kernel applying the plan would let through

The kernel filters on a few header values, each as a set to keep or to drop: the syscall, the
process (pid), its comm, its uid, and whether the call failed.  A plan holds, for each, what every
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

A comm that changes in the call (execve) is filtered by the kernel with the comm it had when the
syscall entered; the same holds for a uid changed by setuid: a plan on comm or uid can drop such a
call's record although its exit header would match.  The lead decides whether that is acceptable
(the existing only_comms has the same property).
"""
from __future__ import annotations

from dataclasses import dataclass, field as dc_field

import numpy as np

from lbd import record
from lbd.filter.fields import SYSCALL_NAMES, PAnd, PConst, PNot, POr, Pred

__all__ = ["KernelPlan", "derive", "LIMITS"]

#: most entries the kernel's maps take (lbd/config.py: only_pids/filter_pids 64, comms 16)
LIMITS = {"pids": 64, "comms": 16, "uids": 64, "syscalls": 512}

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_U32 = (1 << 32) - 1
_PID_MAX = 4194303                   # lbd/config.py's range for only_pids / filter_pids
_NAMES = {nr: name for name, nr in SYSCALL_NAMES.items()}
_DIMS = ("syscall", "pid", "comm", "uid", "failed")


@dataclass(frozen=True)
class KernelPlan:
    """What the kernel may drop for a filter.  None for a keep set: no constraint.

    syscalls: keep only these syscalls (names; may include sched_process_* names, which the kernel
    always emits); drop_syscalls: drop these; only_pids / filter_pids, only_comms / filter_comms,
    only_uids / filter_uids: keep only / drop these pids, comms, uids; failed: True keep only
    failed calls (res < 0), False drop them, None either; matches_nothing: the expression can
    never pass (the kernel may drop everything)."""

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
        return keep

    def describe(self) -> str:
        """One line for logs: what is pushed down."""
        p = self.open_params()
        return ", ".join(f"{k}={v}" for k, v in p.items()) or "nothing"


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
    return _ANY


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
        else:
            key = {"pid": "pids", "comm": "comms", "uid": "uids"}[d]
            kw[("only_" if k == "in" else "filter_") + key] = frozenset(s)
    return KernelPlan(**kw)
