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

Per event (convenience, not the bulk path): `args(i)`, `name(i)`, `payload(i, slot)`, `comm(i)`,
and `batch[i]` / `event(i)`: the event as a dict of Python values (str names, decoded arguments).

Text and tables: `comms()` and `names()` (str per event, decoded once per distinct value),
`to_arrow()` (a pyarrow RecordBatch of the Parquet output's schema, lbd.output.parquet) and
`to_pandas()` (a DataFrame of the same columns); pyarrow and pandas are the optional extras
``lbd[arrow]`` / ``lbd[pandas]``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lbd import _decode, args as _args, record, syscalls
from lbd.args import syscall_name

__all__ = ["Batch", "Column", "syscall_name"]

#: the keys of Batch.event(i): the JSON output's names (lbd/output/event.schema.json)
EVENT_KEYS = ("ts", "syscall", "nr", "dir", "res", "latency", "pid", "tid", "ppid", "uid", "gid", "comm",
              "args")
#: added when the batch carries its enrichment (lbd.enrich)
ENRICHED_KEYS = ("pcomm", "user", "group", "cmdline", "exe", "fds")

_K = record.KINDS


class Column(NamedTuple):
    """One argument over the events of one syscall in a batch: `values[k]` belongs to event
    `index[k]` and equals `batch.args(index[k])[name]`.

    values: int64 (signed kinds) or uint64 (unsigned kinds) numpy array, else a numpy object array
    of str, bytes, list or SockAddr, with None where the argument has no value.
    """

    index: np.ndarray
    values: np.ndarray


def _comm_text(c: bytes) -> str:
    return bytes(c).split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


_VALID_NRS = [sc.nr for sc in syscalls.TABLE] + [record.NR_SCHED_FORK, record.NR_SCHED_EXEC, record.NR_SCHED_EXIT]


def _take_rows(rows: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """rows[idx] for a packed structured array (ENRICH_DTYPE): taken as rows of 32-bit words, 8x
    faster than numpy's structured fancy indexing."""
    size = rows.dtype.itemsize
    if rows.flags.c_contiguous and rows.ndim == 1 and size % 4 == 0:
        return rows.view(np.uint32).reshape(-1, size // 4)[idx].view(rows.dtype).reshape(-1)
    return rows[idx]


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

    def comm(self, i: int) -> str:
        """Event i's thread command name as text (the `comm` column holds the kernel's bytes)."""
        return _comm_text(self.events["comm"][i])

    def event(self, i: int) -> dict:
        """Event i as a dict of Python values (a copy: it outlives the batch).

        Keys: ts (wall-clock ns), syscall (name), nr, dir ('<' exit, '>' enter), res, latency, pid,
        tid, ppid, uid, gid, comm (str), args ({name: decoded value}); with the batch's enrichment
        also pcomm, user, group, cmdline, exe (str) and fds ([(fd, name)]), and ppid from the
        process table.  Convenience, not the bulk path: see to_arrow() for many events."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"event {i} of a batch of {n}")
        i = int(i) % n
        e = self.events[i]
        d = {"ts": int(e["ts"]), "syscall": syscall_name(int(e["nr"])), "nr": int(e["nr"]),
             "dir": chr(int(e["dir"])), "res": int(e["res"]), "latency": int(e["latency"]),
             "pid": int(e["pid"]), "tid": int(e["tid"]), "ppid": int(e["ppid"]), "uid": int(e["uid"]),
             "gid": int(e["gid"]), "comm": _comm_text(e["comm"]), "args": self.args(i)}
        from lbd.enrich.layout import event_info, has_enrichment

        if has_enrichment(self):
            info = event_info(self, i)
            d.update(ppid=info["ppid"], pcomm=info["pcomm"], user=info["user"], group=info["group"],
                     cmdline=info["cmdline"], exe=info["fullpath"], fds=info["fds"])
        return d

    def __getitem__(self, i: int) -> dict:
        """batch[i]: event(i)."""
        if not isinstance(i, (int, np.integer)):
            raise TypeError("batch[i]: an event number (use batch.events for numpy selections)")
        return self.event(int(i))

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

    def comms(self) -> np.ndarray:
        """Thread command names of all events as str (object array; decoded once per distinct
        value, the bytes stay in events["comm"])."""
        comm = self.events["comm"]
        if not len(comm):
            return np.empty(0, dtype=object)
        uniq, inv = np.unique(comm, return_inverse=True)
        return np.array([_comm_text(c) for c in uniq], dtype=object)[inv.reshape(-1)]

    def to_arrow(self, mask=None):
        """The events (those with a true mask entry) as a pyarrow RecordBatch with the Parquet
        output's schema (lbd.output.parquet.SCHEMA: ts, syscall, comm, ... as decoded, typed
        columns; the enrichment's columns null without it).  Needs pyarrow (``lbd[arrow]``)."""
        try:
            from lbd.output.parquet import record_batch
        except ImportError as e:
            raise ImportError(f"batch.to_arrow() needs pyarrow (pip install 'lbd[arrow]'): {e}") from None
        return record_batch(self, mask)

    def to_pandas(self, mask=None):
        """to_arrow() as a pandas DataFrame (one row per event; syscall, comm and other repeated
        texts as categoricals).  Needs pyarrow and pandas (``lbd[pandas]``)."""
        try:
            import pandas  # noqa: F401
        except ImportError as e:
            raise ImportError(f"batch.to_pandas() needs pandas (pip install 'lbd[pandas]'): {e}") from None
        return self.to_arrow(mask).to_pandas()

    def select_into(self, target: Batch, idx, wall_offset: int) -> Batch:
        """Copy the events idx (ascending event numbers) into `target` (a Batch with at least this
        batch's capacity and arena size) as its only events, with their enrichment rows when this
        batch has them: a batch of the kept events that outlives nothing of this one but the
        enrichment's string and fd tables (shared; valid as long as this batch's).  wall_offset:
        the one this batch was filled with (the table's ts = record ts + wall_offset).  No Python
        per event: the records' bytes are copied a run of adjacent records at a time (or, for many
        runs, gathered as 8-byte words in one numpy take) and validated again by load()."""
        ev = self.events
        idx = np.asarray(idx, dtype=np.intp)
        if len(idx):
            start = ev["rec"][idx].astype(np.int64) - _decode.FALCO_PREFIX_SIZE
            span = (ev["size"][idx].astype(np.int64) + (_decode.FALCO_PREFIX_SIZE + 7)) & ~np.int64(7)
            end = start + span
            # runs of records that lie end to end in the arena (a fill writes them so): one slice each
            cut = np.flatnonzero(start[1:] != end[:-1]) + 1
            firsts = np.concatenate(([0], cut))
            lasts = np.concatenate((cut - 1, [len(idx) - 1]))
            arena = self.arena
            base = _decode.ARENA_OFFSET
            if len(firsts) > 16 and not ((start - base) & 7).any():
                # many runs: each record's span is whole 8-byte words from the arena's first prefix,
                # gathered as words (one numpy take) rather than one slice per run
                words = arena[base: base + (len(arena) - base) // 8 * 8].view(np.uint64)
                w0, nw = (start - base) >> 3, span >> 3
                ends = np.cumsum(nw)
                pos = np.repeat(w0 - (ends - nw), nw) + np.arange(int(ends[-1]), dtype=np.int64)
                data = words[pos].view(np.uint8)
            else:
                data = np.concatenate([arena[a:b] for a, b in zip(start[firsts].tolist(), end[lasts].tolist())])
            target.load(data, ev["cpu_ring"][idx], wall_offset, _VALID_NRS)
        else:
            target.release()
        from lbd.enrich.layout import has_enrichment

        if has_enrichment(self):
            target.enrich = _take_rows(self.enrich, idx)
            target.strtab = self.strtab
            target.fdtab = self.fdtab
            target.enriched_generation = target.generation
        else:
            target.enrich = None
        return target

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
