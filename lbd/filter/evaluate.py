"""The vectorised evaluator: resolved predicates (lbd.filter.fields) over a whole Batch at once.

    mask = Evaluator(ir, expression)(batch)      # numpy bool[len(batch)]

Nothing here runs Python per event.  Numbers are numpy comparisons over header columns (or over
one argument's register column, or the enrichment's ppid); text is tested by lbd.filter.spans
over byte spans (payloads gathered with `Batch.gather`, the comm column, strtab strings); values
that must be decoded first (socket addresses, fd pairs, the symbolic names of flags, dir) are
decoded once per *distinct* value and the answer spread back with numpy.

`and` and `or` short-circuit by event: each operand is evaluated only on the events still
undecided (`cand`), so an expensive text test after ``syscall = openat and`` looks only at the
openat events.  Every helper returns a mask that is false outside `cand`.
"""
from __future__ import annotations

import numpy as np

from lbd import args as _args, flags as _flags, record
from lbd.filter import spans
from lbd.filter.fields import (BYTES_KINDS, FD_RETURNING, INT_KINDS, K, SYSCALL_NAMES, PAnd,
                               PConst, PNot, POr, Pred)
from lbd.filter.syntax import FilterError

__all__ = ["Evaluator"]

_NR_SPACE = 1024                     # syscall numbers a record may carry (lbd._decode N_VALID)
_SIGNED = frozenset(K[k] for k in ("int", "fd", "dirfd", "pid"))
_RAW = frozenset(K[k] for k in ("ptr", "none"))
_EMPTY_OK = _args.EMPTY_OK_KINDS
_F_NOENTER = np.uint32(record.F_NOENTER)

_ENRICH_SOURCE = {"pcomm": "pcomm", "user": "user", "group": "group", "cmdline": "cmdline",
                  "fullpath": "fullpath"}


_count = np.count_nonzero        # a C call: cheaper than ndarray.any() on small arrays


def _lut(nrs) -> np.ndarray:
    t = np.zeros(_NR_SPACE, dtype=bool)
    for nr in nrs:
        if 0 <= nr < _NR_SPACE:
            t[nr] = True
    return t


def _fd_luts() -> tuple[np.ndarray, np.ndarray]:
    """Per syscall number: the slot of its first fd argument (-1: none); whether it returns a new fd."""
    slot = np.full(_NR_SPACE, -1, dtype=np.int64)
    for nr in range(_NR_SPACE):
        specs = _args.arg_specs(nr) or ()
        for k, a in enumerate(specs[: record.MAX_ARGS]):
            if a.kind_id == K["fd"]:
                slot[nr] = k
                break
    ret = _lut(SYSCALL_NAMES[n] for n in FD_RETURNING)
    ret &= slot < 0
    return slot, ret


def _sockaddr_lut() -> np.ndarray:
    slot = np.full(_NR_SPACE, -1, dtype=np.int64)
    for nr in range(_NR_SPACE):
        specs = _args.arg_specs(nr) or ()
        for k, a in enumerate(specs[: record.MAX_ARGS]):
            if a.kind_id in (K["sockaddr"], K["out_sockaddr"]):
                slot[nr] = k
                break
    return slot


_FD_SLOT, _FD_RET = _fd_luts()
_SA_SLOT = _sockaddr_lut()


# ---- numbers -----------------------------------------------------------------------------------

def _cmp(values: np.ndarray, op: str, v: int) -> np.ndarray:
    """values OP v, exact for any Python int v (out of the dtype's range included)."""
    info = np.iinfo(values.dtype)
    if v < info.min or v > info.max:
        below = v < info.min              # every value is above v (else: below it)
        const = {"=": False, "!=": True, "<": not below, "<=": not below, ">": below, ">=": below}[op]
        return np.full(values.shape, const, dtype=bool)
    x = values.dtype.type(v)
    if op == "=":
        return values == x
    if op == "!=":
        return values != x
    if op == "<":
        return values < x
    if op == "<=":
        return values <= x
    if op == ">":
        return values > x
    return values >= x


def num_test(values: np.ndarray, op: str, operand) -> np.ndarray:
    """`values op operand` (operand: the test's ints; = and in: any; !=: none)."""
    if op in ("=", "in"):
        m = np.zeros(values.shape, dtype=bool)
        for o in operand:
            m |= _cmp(values, "=", o)
        return m
    if op == "!=":
        m = np.ones(values.shape, dtype=bool)
        for o in operand:
            m &= _cmp(values, "!=", o)
        return m
    return _cmp(values, op, operand[0])


def num_scalar(v: int, op: str, operand) -> bool:
    if op in ("=", "in"):
        return any(v == o for o in operand)
    if op == "!=":
        return all(v != o for o in operand)
    o = operand[0]
    return {"<": v < o, "<=": v <= o, ">": v > o, ">=": v >= o}[op]


def _reg_values(raw: np.ndarray, kind: int, bits: int) -> np.ndarray:
    """An integer argument's value from its register (as lbd.args.decode)."""
    if kind in _RAW:
        return raw
    if kind in _SIGNED:
        b = bits if kind == K["int"] else 32
        if b >= 64:
            return raw.view(np.int64)
        sign = np.int64(1 << (b - 1))
        return ((raw & np.uint64((1 << b) - 1)).astype(np.int64) ^ sign) - sign
    if kind in (K["uid"], K["gid"]):
        return raw & np.uint64(0xFFFFFFFF)
    return raw if bits >= 64 else raw & np.uint64((1 << bits) - 1)


# ---- the evaluator -----------------------------------------------------------------------------

class Evaluator:
    """Runs resolved predicates over batches; callable: `mask = ev(batch)`.

    Holds per-predicate tables built once (syscall lookup tables, argument groups); the batch is
    only read, during the call."""

    def __init__(self, ir, expression: str):
        self.ir = _cheap_first(ir)
        self.expression = expression
        self._luts: dict[int, np.ndarray] = {}
        self._needles: dict[tuple, spans.Needles] = {}
        self._preds = list(_preds(ir))

    def __call__(self, batch) -> np.ndarray:
        n = len(batch)
        run = _Run(self, batch)
        for p in self._preds:                 # what the batch must provide, whatever the events
            run.require(p)
        if n == 0:
            return np.zeros(0, dtype=bool)
        return run.eval(self.ir, np.ones(n, dtype=bool))

    def lut(self, key, nrs) -> np.ndarray:
        t = self._luts.get(id(key))
        if t is None:
            t = self._luts[id(key)] = _lut(nrs)
        return t

    def groups(self, p: Pred) -> "_Groups":
        g = self._luts.get(id(p))
        if g is None:
            g = self._luts[id(p)] = _Groups(p.operand)
        return g

    def needles(self, op: str, operand) -> spans.Needles:
        key = (op, operand)
        nd = self._needles.get(key)
        if nd is None:
            nd = self._needles[key] = spans.Needles(op, operand)
        return nd


class _Groups:
    """Tables of an arg.NAME test: per syscall number its group (-1: none, or never passes); per
    group its slot, whether its text is read in place (str, path, buf, out_buf in text mode), and
    whether an empty payload is a value there (lbd.args.EMPTY_OK_KINDS)."""

    def __init__(self, groups):
        self.of_nr = np.full(_NR_SPACE, -1, dtype=np.int64)
        n = len(groups)
        self.slot = np.zeros(max(n, 1), dtype=np.int64)
        self.direct = np.zeros(max(n, 1), dtype=bool)
        self.empty_ok = np.zeros(max(n, 1), dtype=bool)
        self.text_operand = ()
        for gi, g in enumerate(groups):
            if g.mode is None:
                continue
            self.of_nr[list(g.nrs)] = gi
            self.slot[gi] = g.slot
            self.empty_ok[gi] = g.kind in _EMPTY_OK
            if g.mode == "text" and g.kind in BYTES_KINDS and g.kind != K["strarr"]:
                self.direct[gi] = True
                self.text_operand = g.operand


def _preds(node):
    if isinstance(node, Pred):
        yield node
    elif isinstance(node, (PAnd, POr)):
        for x in node.items:
            yield from _preds(x)
    elif isinstance(node, PNot):
        yield from _preds(node.item)


def _cost(node) -> int:
    """Rough cost class of a test per event: header numbers 0, comm and dir 1, enrichment strings 2,
    arguments, socket addresses and fd names 3."""
    if isinstance(node, Pred):
        f = node.field
        if f.type in ("number", "bool", "syscall") and not f.source.startswith("sockaddr"):
            return 0
        if f.source in ("comm", "dir"):
            return 1
        if f.enriched and f.source != "fd.name":
            return 2
        return 3
    if isinstance(node, (PAnd, POr)):
        return max(_cost(x) for x in node.items)
    if isinstance(node, PNot):
        return _cost(node.item)
    return 0


def _cheap_first(node):
    """The same predicates with the operands of each and / or in increasing cost (stable): tests
    have no side effects, so the order only changes how many events the costly ones look at."""
    if isinstance(node, (PAnd, POr)):
        items = sorted((_cheap_first(x) for x in node.items), key=_cost)
        return type(node)(tuple(items))
    if isinstance(node, PNot):
        return PNot(_cheap_first(node.item))
    return node


class _Run:
    """One evaluation of the predicates over one batch (caches what several tests share)."""

    def __init__(self, ev: Evaluator, batch):
        self.owner = ev
        self.batch = batch
        self.events = batch.events
        self.n = len(batch)
        self._enriched = None
        self._noenter = None

    def error(self, message: str, pred: Pred) -> FilterError:
        return FilterError(message, self.owner.expression, pred.node.pos)

    # -- structure

    def eval(self, node, cand: np.ndarray) -> np.ndarray:
        if isinstance(node, Pred):
            return self.pred(node, cand) & cand
        if isinstance(node, PAnd):
            m = cand
            for item in node.items:
                if not _count(m):
                    break
                m = self.eval(item, m)
            return m
        if isinstance(node, POr):
            acc = np.zeros(self.n, dtype=bool)
            rest = cand.copy()
            for item in node.items:
                if not _count(rest):
                    break
                r = self.eval(item, rest)
                acc |= r
                rest &= ~r
            return acc
        if isinstance(node, PNot):
            return cand & ~self.eval(node.item, cand)
        if isinstance(node, PConst):
            return cand.copy() if node.value else np.zeros(self.n, dtype=bool)
        raise TypeError(f"not a predicate: {node!r}")

    # -- shared columns

    def require(self, p: Pred) -> None:
        """FilterError when the batch lacks what p reads (enrichment, a header column)."""
        if p.field.enriched:
            self.enriched(p)
        if p.field.optional:
            self.column(p.field.source, p)

    def enriched(self, pred: Pred) -> None:
        if self._enriched is None:
            from lbd.enrich.layout import has_enrichment

            self._enriched = has_enrichment(self.batch)
        if not self._enriched:
            raise self.error(f"{pred.field.name} needs the enrichment, and this batch has none "
                             f"(lbd.Collector(enrich=True) gives it)", pred)

    def noenter(self) -> np.ndarray:
        if self._noenter is None:
            self._noenter = (self.events["flags"] & _F_NOENTER) != 0
        return self._noenter

    def column(self, name: str, pred: Pred) -> np.ndarray:
        ev = self.events
        if name not in ev.dtype.names:
            raise self.error(f"{pred.field.name} is not in this batch's records (the probe that "
                             f"wrote them does not record it)", pred)
        return ev[name]

    # -- predicates

    def pred(self, p: Pred, cand: np.ndarray) -> np.ndarray:
        f = p.field
        t = f.type
        if t == "number":
            return self.number(p, cand)
        if t == "bool":
            return (self.events["res"] < 0) == p.operand[0]
        if t == "syscall":
            m = self.owner.lut(p, p.operand[0]).take(self.events["nr"])
            return ~m if p.op == "!=" else m
        if t == "arg":
            return self.arg(p, cand)
        return self.text(p, cand)

    def number(self, p: Pred, cand: np.ndarray) -> np.ndarray:
        src = p.field.source
        ev = self.events
        if src == "errno":
            res = ev["res"]
            vals = np.where(res < 0, np.uint64(0) - res.view(np.uint64), np.uint64(0))
        elif src == "ppid":
            vals = self.batch.enrich["ppid"] if self._has_enrichment() else ev["ppid"]
        elif src == "sockaddr.port":
            return self.sockaddr(p, cand)
        elif p.field.optional:
            vals = self.column(src, p)
        else:
            vals = ev[src]
        return num_test(vals, p.op, p.operand)

    def _has_enrichment(self) -> bool:
        if self._enriched is None:
            from lbd.enrich.layout import has_enrichment

            self._enriched = has_enrichment(self.batch)
        return self._enriched

    # -- text fields

    def text(self, p: Pred, cand: np.ndarray) -> np.ndarray:
        src = p.field.source
        if src == "comm":
            idx = np.flatnonzero(cand)
            comm = np.ascontiguousarray(self.events["comm"][idx])
            b = comm.view(np.uint8).reshape(-1, record.COMM_LEN)
            nz = b != 0
            first_nul = nz.argmin(axis=1)             # 0 also when there is none: see nz[:, 0]
            length = np.where(nz[:, 0] & (first_nul == 0), record.COMM_LEN, first_nul).astype(np.int64)
            start = np.arange(len(idx), dtype=np.int64) * record.COMM_LEN
            return self._spread(idx, self._text_spans(b.ravel(), start, length, p.op, p.operand, raw=True))
        if src == "dir":
            return self._categorical(cand, self.events["dir"], lambda d: chr(int(d)), p)
        if src in _ENRICH_SOURCE:
            self.enriched(p)
            idx = np.flatnonzero(cand)
            en = self.batch.enrich
            start = en[src + "_off"][idx].astype(np.int64)
            length = en[src + "_len"][idx].astype(np.int64)
            return self._spread(idx, self._strtab_spans(start, length, p))
        if src == "fd.name":
            self.enriched(p)
            return self.fd_name(p, cand)
        return self.sockaddr(p, cand)

    def _spread(self, idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        out = np.zeros(self.n, dtype=bool)
        out[idx] = values
        return out

    def _text_spans(self, buf, start, length, op: str, operand, raw: bool, present=None) -> np.ndarray:
        """`text op operand` over spans.  present: None (every span has a value) or a function
        giving which do (asked only when it matters: for != and for tests an empty text passes)."""
        mop = "=" if op in ("!=", "in") else op
        nd = self.owner.needles(mop, tuple(operand))
        m = spans.match(buf, start, length, mop, nd, raw)
        if op == "!=":
            m = ~m
        if present is not None and (op == "!=" or nd.empty_matches):
            m &= present()
        return m

    def _strtab_spans(self, start, length, p: Pred, present=None) -> np.ndarray:
        st = self.batch.strtab
        bad = (start < 0) | (start + length > len(st))        # outside the strtab: read as empty
        if bad.any():
            start = np.where(bad, 0, start)
            length = np.where(bad, 0, length)
        return self._text_spans(st, start, length, p.op, p.operand, raw=False, present=present)

    def _categorical(self, cand, codes, text_of, p: Pred) -> np.ndarray:
        """A text test on a value decoded from a small set of codes: once per distinct code."""
        idx = np.flatnonzero(cand)
        uniq, inv = np.unique(codes[idx], return_inverse=True)
        verdict = np.array([_text_scalar(text_of(u), p.op, p.operand) for u in uniq], dtype=bool)
        return self._spread(idx, verdict[inv.ravel()] if len(uniq) else np.zeros(0, dtype=bool))

    def fd_name(self, p: Pred, cand: np.ndarray) -> np.ndarray:
        ev = self.events
        nr = ev["nr"].astype(np.int64)
        slot = _FD_SLOT[nr]
        ret = _FD_RET[nr] & (ev["res"] >= 0)
        has = cand & (((slot >= 0) & ~self.noenter()) | ret)
        idx = np.flatnonzero(has)
        if not len(idx):
            return np.zeros(self.n, dtype=bool)
        s = slot[idx]
        raw = ev["args"][idx, np.maximum(s, 0)]
        fdv = np.where(s >= 0, _reg_values(raw, K["fd"], 32), ev["res"][idx])
        en = self.batch.enrich
        fdtab = self.batch.fdtab
        off = en["fds_off"][idx].astype(np.int64)
        cnt = en["fds_n"][idx].astype(np.int64)
        bad = off + cnt > len(fdtab)
        cnt = np.where(bad, 0, cnt)
        total = int(cnt.sum())
        if total == 0:
            return np.zeros(self.n, dtype=bool)
        owner = np.repeat(np.arange(len(idx)), cnt)
        first = np.cumsum(cnt) - cnt
        rows = np.repeat(off, cnt) + (np.arange(total) - np.repeat(first, cnt))
        hit = fdtab["fd"][rows].astype(np.int64) == fdv[owner]
        found, at = np.unique(owner[hit], return_index=True)
        r = rows[hit][at]
        start = fdtab["path_off"][r].astype(np.int64)
        length = fdtab["path_len"][r].astype(np.int64)
        out = np.zeros(self.n, dtype=bool)
        out[idx[found]] = self._strtab_spans(start, length, p)
        return out

    # -- socket addresses

    def sockaddr(self, p: Pred, cand: np.ndarray) -> np.ndarray:
        ev = self.events
        slot = _SA_SLOT[ev["nr"].astype(np.int64)]
        out = np.zeros(self.n, dtype=bool)
        attr = p.field.name.split(".", 1)[1]
        for k in np.unique(slot[cand & (slot >= 0) & ~self.noenter()]):
            idx = np.flatnonzero(cand & (slot == k) & ~self.noenter())
            data, offsets = self.batch.gather(int(k), idx)
            start = offsets[:-1]
            length = np.diff(offsets)
            values, inv = spans.distinct(data, start, length)
            verdict = np.array([_sockaddr_test(v, attr, p) for v in values], dtype=bool)
            if len(values):
                out[idx] = verdict[inv]
        return out

    # -- arguments

    def arg(self, p: Pred, cand: np.ndarray) -> np.ndarray:
        G = self.owner.groups(p)
        ev = self.events
        gid = G.of_nr.take(ev["nr"])
        out = np.zeros(self.n, dtype=bool)
        every = np.flatnonzero(cand & (gid >= 0) & ~self.noenter())
        if not len(every):
            return out
        of = gid[every]
        direct = G.direct.take(of)
        if _count(direct):
            # text payloads (str, path, buf) of every group at once, read in place in the arena
            idx = every[direct]
            g = of[direct]
            ks = G.slot.take(g)
            slot = ev["slot"][idx, ks]
            length = slot["len"].astype(np.int64)
            start = ev["rec"][idx].astype(np.int64) + slot["off"]
            arena = self.batch.arena
            bad = start + length > len(arena)            # (the decoder's rows never are)
            if _count(bad):
                length[bad] = 0

            def present():
                raw = ev["args"][idx, ks]
                fault = (ev["flags"][idx] >> (np.uint32(record.F_FAULT_SHIFT) + ks.astype(np.uint32))) & np.uint32(1)
                # an empty value (lbd.args.payload_or_empty): read and nothing found (the slot has
                # an offset), or behind a non-NULL input pointer; never after a fault
                return (length > 0) | ((fault == 0) & ((slot["off"] != 0) | (G.empty_ok.take(g) & (raw != 0))))

            out[idx] = self._text_spans(arena, start, length, p.op, G.text_operand, raw=True, present=present)
            if len(idx) == len(every):
                return out
            every, of = every[~direct], of[~direct]
        groups = np.flatnonzero(np.bincount(of, minlength=len(p.operand)))
        for gi in groups.tolist():
            idx = every if len(groups) == 1 else every[of == gi]
            out[idx] = self._arg_group(p.operand[gi], p, idx)
        return out

    def _arg_group(self, g, p: Pred, idx: np.ndarray) -> np.ndarray:
        ev = self.events
        k, kind = g.slot, g.kind
        if kind in INT_KINDS:
            vals = _reg_values(ev["args"][idx, k], kind, g.bits)
            if g.mode == "num":
                return num_test(vals, p.op, g.operand)
            uniq, inv = np.unique(vals, return_inverse=True)
            if g.mode == "flagtext":
                verdict = [_flag_contains(g.flagset, int(u), g.operand) for u in uniq]
            else:
                verdict = [_text_scalar(_flags.names(g.flagset, int(u)), p.op, g.operand) for u in uniq]
            return np.array(verdict, dtype=bool)[inv.ravel()] if len(uniq) else np.zeros(0, dtype=bool)
        if kind in _args.SPEC_KINDS:
            # structures and arrays: their layout (a union's variant chosen by another argument)
            # makes the printed text; per event, as Batch.args decodes them (rare syscalls)
            verdict = np.zeros(len(idx), dtype=bool)
            for j, i in enumerate(idx.tolist()):
                v = self.batch.args(i).get(p.argname)
                if v is not None and v is not _args.UNREADABLE:
                    verdict[j] = _text_scalar(_printed(v), p.op, g.operand)
            return verdict
        data, offsets = self.batch.gather(k, idx)
        start = offsets[:-1]
        length = offsets[1:] - start
        if kind == K["out_int"]:
            ok = length == 4
            pos = start[ok]
            b = data[pos[:, None] + np.arange(4)].astype(np.uint32) if len(pos) else np.zeros((0, 4), np.uint32)
            v = (b[:, 0] | b[:, 1] << 8 | b[:, 2] << 16 | b[:, 3] << 24).view(np.int32).astype(np.int64)
            res = np.zeros(len(idx), dtype=bool)
            res[ok] = num_test(v, p.op, g.operand)
            return res
        if kind in BYTES_KINDS:
            given = length > 0

            def present():
                raw = ev["args"][idx, k]
                fault = (ev["flags"][idx] >> np.uint32(record.F_FAULT_SHIFT + k)) & np.uint32(1)
                empty = ev["slot"][idx, k]["off"] != 0
                if kind in _EMPTY_OK:
                    empty |= raw != 0
                return given | (empty & (fault == 0))

            if kind == K["strarr"]:
                if len(data):
                    data = data.copy()
                    last = np.where(length > 0, start + length - 1, 0)
                    trail = (length > 0) & (data[last] == 0)
                    length = length - trail
                    data[data == 0] = 0x20
            return self._text_spans(data, start, length, p.op, g.operand, raw=True, present=present)
        # sockaddr, out_sockaddr, out_fd2: on the printed text of each distinct payload
        values, inv = spans.distinct(data, start, length)
        verdict = []
        for v in values:
            d = _args.decode(kind, g.bits, 0, v if v else None)
            verdict.append(d is not None and _text_scalar(_printed(d), p.op, g.operand))
        return np.array(verdict, dtype=bool)[inv] if values else np.zeros(len(idx), dtype=bool)


def _printed(v) -> str:
    from lbd.output.reference import format_value

    return format_value(v, 0)


def _text_scalar(text: str, op: str, operand) -> bool:
    if op == "!=":
        return not spans.text_match(text, "=", operand)
    if op == "in":
        return spans.text_match(text, "=", operand)
    return spans.text_match(text, op, operand)


def _flag_contains(flagset: str, value: int, alternatives) -> bool:
    """`contains` on a flags argument: some alternative's every part is listed (a name) or set (bits)."""
    listed = set(_flags.names(flagset, value).split("|"))
    for parts in alternatives:
        if all((name in listed) if name is not None else (value & bits) == bits for name, bits in parts):
            return True
    return False


def _sockaddr_test(payload: bytes, attr: str, p: Pred) -> bool:
    sa = _args.decode_sockaddr(payload) if payload else None
    if sa is None:
        return False
    if attr == "port":
        return sa.port is not None and num_scalar(sa.port, p.op, p.operand)
    if attr == "family":
        return _text_scalar(sa.family, p.op, p.operand)
    if attr == "path":
        return sa.path is not None and _text_scalar(sa.path, p.op, p.operand)
    if sa.addr is None:
        return False
    if p.op in ("=", "!=", "in"):
        import ipaddress

        ip = ipaddress.ip_address(sa.addr)
        inside = any(ip.version == net.version and ip in net for net in p.operand)
        return not inside if p.op == "!=" else inside
    return _text_scalar(sa.addr, p.op, p.operand)
