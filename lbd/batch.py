"""Batch: a numpy table of event headers over an arena of records (see lbd._decode.Batch).

The compiled base class owns the memory and is filled by `Ring.fill()` with the GIL released;
this subclass adds the Python conveniences.  Lifetime: valid until the next fill into the batch.
"""
from __future__ import annotations

import numpy as np

from lbd import _decode, args as _args, record, syscalls

_SCHED_ARGS = {
    record.NR_SCHED_FORK: ("parent_pid", "child_pid", "parent_tid"),
    record.NR_SCHED_EXEC: ("pid", "old_pid", "filename"),
    record.NR_SCHED_EXIT: ("pid", "group_dead"),
}
_SCHED_NAMES = {
    record.NR_SCHED_FORK: "sched_process_fork",
    record.NR_SCHED_EXEC: "sched_process_exec",
    record.NR_SCHED_EXIT: "sched_process_exit",
}


def syscall_name(nr: int) -> str:
    sc = syscalls.BY_NR.get(nr)
    if sc is not None:
        return sc.name
    return _SCHED_NAMES.get(nr, f"syscall_{nr}")


class Batch(_decode.Batch):
    """Events of one fill: `events` (numpy, EVENT_DTYPE), `args(i)`, `record(i)`."""

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
        """Event i's arguments as {name: decoded value} (convenience; not for the bulk path)."""
        e = self.events[i]
        nr = int(e["nr"])
        raw = e["args"]
        if nr in _SCHED_ARGS:
            names = _SCHED_ARGS[nr]
            out = {n: int(raw[k]) for k, n in enumerate(names) if n != "filename"}
            if nr == record.NR_SCHED_EXEC:
                p = self.payload(i, 2)
                out["filename"] = None if p is None else _args.text(p)
            return out
        sc = syscalls.BY_NR.get(nr)
        if sc is None or int(e["flags"]) & record.F_NOENTER:
            return {}
        out = {}
        for k, a in enumerate(sc.args[: record.MAX_ARGS]):
            payload = self.payload(i, k)
            v = _args.decode(a.kind_id, a.bits, int(raw[k]), payload)
            if v is None and a.kind_id not in record.EXIT_KINDS and a.kind_id < record.KINDS["str"]:
                v = int(raw[k])
            out[a.name] = v
        return out

    def truncated(self, i: int, slot: int) -> bool:
        return bool(int(self.events["flags"][i]) >> (record.F_TRUNC_SHIFT + slot) & 1)

    def names(self) -> np.ndarray:
        """Syscall names of all events (object array)."""
        nrs = self.events["nr"]
        uniq, inv = np.unique(nrs, return_inverse=True)
        return np.array([syscall_name(int(n)) for n in uniq], dtype=object)[inv]
