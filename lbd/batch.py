"""Batch: a numpy table of event headers over an arena of records (see lbd._decode.Batch).

The compiled base class owns the memory and is filled by `Ring.fill()` with the GIL released;
this subclass adds the Python conveniences.  Lifetime: the batch's events (and every view of them)
are valid until the next fill into the batch (`Collector.next_batch()`) or `release()`; the values
the accessors return are copies.

Bulk access, no Python code per event:

    batch.events["res"]                        # every return value (numpy int64)
    batch.events["syscall_id"]                 # the same bytes as batch.events["nr"]
    idx, paths = batch.column("openat", "filename")   # the openat events and their decoded paths
    data, offsets = batch.gather(slot, idx)    # raw payload bytes of one argument, concatenated
    batch.strings(slot, idx)                   # ... decoded as text (numpy object array)
    batch.payloads_fixed(slot, 64, idx)        # ... as numpy S64, for vectorised matching

Per event (convenience, not the bulk path): `args(i)`, `name(i)`, `payload(i, slot)`.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lbd import _decode, args as _args, record, syscalls
from lbd.args import syscall_name

__all__ = ["Batch", "Column", "syscall_name"]

_K = record.KINDS


class Column(NamedTuple):
    """One argument over the events of one syscall in a batch: `values[k]` belongs to event
    `index[k]` and equals `batch.args(index[k])[name]`.

    values: int64 (signed kinds) or uint64 (unsigned kinds) numpy array, else a numpy object array
    of str, bytes, list or SockAddr, with None where the argument has no value.
    """

    index: np.ndarray
    values: np.ndarray


def _signed(raw: np.ndarray, bits: int) -> np.ndarray:
    if bits >= 64:
        return raw.view(np.int64)
    sign = np.int64(1 << (bits - 1))
    return ((raw & np.uint64((1 << bits) - 1)).astype(np.int64) ^ sign) - sign


def _unsigned(raw: np.ndarray, bits: int) -> np.ndarray:
    return raw if bits >= 64 else raw & np.uint64((1 << bits) - 1)


def _resolve(syscall: str | int) -> int:
    if isinstance(syscall, str):
        for nr, name in _args.SCHED_NAMES.items():
            if name == syscall:
                return nr
    elif syscall in _args.SCHED_ARGS:
        return int(syscall)
    return syscalls.lookup(syscall).nr


def spec_nr(batch, idx: np.ndarray) -> int:
    """The syscall number of the events idx (one syscall: Batch.column's selection)."""
    return int(batch.events["nr"][idx[0]]) if len(idx) else -1


class Batch(_decode.Batch):
    """Events of one fill: `events` (numpy, EVENT_VIEW_DTYPE), `column()`, `args(i)`, `record(i)`."""

    # ---- per event ---------------------------------------------------------------------------

    def payload(self, i: int, slot: int) -> bytes | None:
        """Argument `slot`'s payload bytes of event i (None when it has none)."""
        e = self.events[i]
        length = int(e["slot"][slot]["len"])
        if not length:
            return None
        start = int(e["rec"]) + int(e["slot"][slot]["off"])
        return self.arena[start: start + length].tobytes()

    def name(self, i: int) -> str:
        return syscall_name(int(self.events["nr"][i]))

    def args(self, i: int) -> dict:
        """Event i's arguments as {name: decoded value} (convenience; not for the bulk path).

        Empty for an exit without its enter (LBD_F_NOENTER) or an unknown syscall number."""
        e = self.events[i]
        payloads = [self.payload(i, k) for k in range(record.MAX_ARGS)]
        return _args.decode_args(int(e["nr"]), int(e["flags"]), e["args"], payloads, e["slot"]["off"])

    def sock(self, i: int) -> dict | None:
        """The socket the kernel read for event i (connect, bind, accept, accept4 under CO-RE:
        the record's extra slot), decoded by lbd.args.decode_sock(); None when there is none."""
        e = self.events[i]
        length = int(e["xslot"]["len"])
        if not length:
            return None
        start = int(e["rec"]) + int(e["xslot"]["off"])
        return _args.decode_sock(self.arena[start: start + length].tobytes())

    def truncated(self, i: int, slot: int) -> bool:
        """Argument `slot`'s payload of event i was cut (str_max, buffer_max, a full record)."""
        return bool(int(self.events["flags"][i]) >> (record.F_TRUNC_SHIFT + slot) & 1)

    def faulted(self, i: int, slot: int) -> bool:
        """Reading argument `slot` of event i from user memory failed."""
        return bool(int(self.events["flags"][i]) >> (record.F_FAULT_SHIFT + slot) & 1)

    # ---- whole batch -------------------------------------------------------------------------

    def output_mask(self) -> np.ndarray | None:
        """Which events are for output: all but the state records (LBD_F_STATE: captured only so
        that the process and fd tables stay right, not selected by the user).  None: every event."""
        internal = (self.events["flags"] & np.uint32(record.F_STATE)) != 0
        if not internal.any():
            return None
        return ~internal

    def names(self) -> np.ndarray:
        """Syscall names of all events (object array)."""
        nrs = self.events["nr"]
        uniq, inv = np.unique(nrs, return_inverse=True)
        return np.array([syscall_name(int(n)) for n in uniq], dtype=object)[inv]

    def indices(self, syscall: str | int) -> np.ndarray:
        """Numbers of the events of `syscall` (name or number, sched pseudo names too)."""
        return np.flatnonzero(self.events["nr"] == _resolve(syscall))

    def column(self, syscall: str | int, arg: str | int) -> Column:
        """Argument `arg` (name or position) of every event of `syscall` in the batch, decoded in
        bulk: `Column(index, values)` with `values[k] == self.args(index[k])[arg]`.

        Events without their enter (LBD_F_NOENTER) carry no arguments and are left out.
        Integer kinds are numpy int64/uint64 arrays (vectorised); payload kinds are object arrays
        built in one C loop over the arena (strings, bytes), or per distinct value (sockaddr).
        """
        nr = _resolve(syscall)
        specs = _args.arg_specs(nr) or ()
        if isinstance(arg, str):
            pos = next((k for k, a in enumerate(specs) if a.name == arg), None)
            if pos is None:
                raise KeyError(f"{syscall_name(nr)} has no argument {arg!r} "
                               f"(it has {', '.join(a.name for a in specs) or 'none'})")
        else:
            pos = int(arg)
            if not 0 <= pos < len(specs):
                raise IndexError(f"{syscall_name(nr)} has {len(specs)} arguments, not {pos + 1}")
        spec = specs[pos]
        ev = self.events
        idx = np.flatnonzero((ev["nr"] == nr) & (ev["flags"] & np.uint32(record.F_NOENTER) == 0))
        return Column(idx, self._values(idx, pos, spec))

    def _values(self, idx: np.ndarray, k: int, spec) -> np.ndarray:
        kind, bits = spec.kind_id, spec.bits
        ev = self.events
        raw = ev["args"][idx, k]
        if kind in _args.SIGNED_KINDS:
            return _signed(raw, bits if kind == _K["int"] else 32)
        if kind in (_K["uid"], _K["gid"]):
            return _unsigned(raw, 32)
        if kind == _K["ptr"]:
            return raw.copy()
        if kind in _args.UNSIGNED_KINDS:
            return _unsigned(raw, bits)
        res = self._payload_values(idx, k, spec)
        lens = ev["slot"][idx, k]["len"]
        fault = (ev["flags"][idx] >> np.uint32(record.F_FAULT_SHIFT + k)) & np.uint32(1)
        # a read that faulted and gave nothing: lbd.args.UNREADABLE
        for j in np.flatnonzero((lens == 0) & (raw != 0) & (fault != 0)):
            res[j] = _args.UNREADABLE
        return res

    def _payload_values(self, idx: np.ndarray, k: int, spec) -> np.ndarray:
        kind, bits = spec.kind_id, spec.bits
        ev = self.events
        raw = ev["args"][idx, k]
        if kind in _args.SPEC_KINDS or _args.strips_nul(int(spec_nr(self, idx)), k):
            # structures (their layout, a union's selector) and NUL-ended outputs: per event
            res = np.empty(len(idx), dtype=object)
            for j, i in enumerate(idx.tolist()):
                res[j] = self.args(i)[spec.name]
            return res
        empty = None
        lens = ev["slot"][idx, k]["len"]
        fault = (ev["flags"][idx] >> np.uint32(record.F_FAULT_SHIFT + k)) & np.uint32(1)
        offs = ev["slot"][idx, k]["off"]
        # zero-length payload that is an empty value (lbd.args.payload_or_empty): read and nothing
        # found (the slot has an offset), or behind a non-NULL input pointer; never after a fault
        if kind in _args.EMPTY_OK_KINDS:
            empty = np.flatnonzero((lens == 0) & (fault == 0) & ((raw != 0) | (offs != 0)))
        else:
            empty = np.flatnonzero((lens == 0) & (fault == 0) & (offs != 0))
        if kind in (_K["str"], _K["path"]):
            out = self.strings(k, idx)
            if empty is not None and empty.size:
                out[empty] = ""
            return out
        out = self.payloads(k, idx)
        if kind == _K["buf"] or kind == _K["out_buf"]:
            if empty is not None and empty.size:
                out[empty] = b""
            return out
        if kind == _K["strarr"]:
            res = np.empty(len(out), dtype=object)
            for j, p in enumerate(out):
                if p is not None:
                    res[j] = _args.decode(kind, bits, 1, p)
            if empty is not None:
                for j in empty:
                    res[j] = []
            return res
        # sockaddr, out_sockaddr, out_fd2, out_int: decode each distinct payload once
        cache: dict = {}
        res = np.empty(len(out), dtype=object)
        for j, p in enumerate(out):
            if p is None:
                continue
            v = cache.get(p, cache)
            if v is cache:
                v = cache[p] = _args.decode(kind, bits, 0, p)
            res[j] = v
        return res
