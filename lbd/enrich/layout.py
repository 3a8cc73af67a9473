"""The enrichment layout: what every batch carries besides its events (the Falco plugin's contract).

Per batch, aligned with ``batch.events`` rows (row i enriches event i):

``batch.enrich``  numpy ``ENRICH_DTYPE[n]``: little-endian, no padding, 52 bytes a row::

     0 ppid u4         4 pcomm_off u4    8 pcomm_len u4   12 user_off u4     16 user_len u4
    20 group_off u4   24 group_len u4   28 cmdline_off u4 32 cmdline_len u4  36 fullpath_off u4
    40 fullpath_len u4 44 fds_off u4    48 fds_n u4

  ``ppid``: the parent pid, the kernel's value when it is non-zero, else the process table's
  (procfs).  Each ``*_off``/``*_len`` pair locates a UTF-8 string in ``batch.strtab``; the string is
  followed by a NUL that ``len`` does not count; ``len == 0`` with ``off`` at a NUL is an empty or
  unknown value.  Unknown values: user and group are the numeric id as text, cmdline is the comm,
  fullpath is empty, pcomm is empty.
``batch.strtab``  numpy ``uint8[m]``: the string arena (every string appears once).  It may also
  hold strings of earlier batches (the Enricher keeps them while their offsets stay valid).
``batch.fdtab``   numpy ``FD_DTYPE[k]`` (``fd`` i4, ``path_off`` u4, ``path_len`` u4; 12 bytes):
  event i's open files are rows ``fds_off .. fds_off + fds_n``, sorted by fd; ``path_*`` locate
  the path in ``strtab`` like the strings above.  Events may share rows, and rows no event of
  this batch uses may be present (written for an earlier batch).

Lifetime: the three arrays are views of buffers the Enricher reuses for every batch (growing them
when needed); they are valid until the next batch is enriched, like the batch itself.
"""
from __future__ import annotations

import numpy as np

__all__ = ["ENRICH_DTYPE", "FD_DTYPE", "ENRICH_FIELDS", "event_info", "empty_enrichment", "has_enrichment", "string_at"]

#: field order of ENRICH_DTYPE (all little-endian u4): part of the contract, never reorder
ENRICH_FIELDS = (
    "ppid",
    "pcomm_off", "pcomm_len",
    "user_off", "user_len",
    "group_off", "group_len",
    "cmdline_off", "cmdline_len",
    "fullpath_off", "fullpath_len",
    "fds_off", "fds_n",
)

ENRICH_DTYPE = np.dtype([(name, "<u4") for name in ENRICH_FIELDS])
FD_DTYPE = np.dtype([("fd", "<i4"), ("path_off", "<u4"), ("path_len", "<u4")])

assert ENRICH_DTYPE.itemsize == 52 and not ENRICH_DTYPE.isalignedstruct
assert [ENRICH_DTYPE.fields[n][1] for n in ENRICH_FIELDS] == list(range(0, 52, 4))
assert FD_DTYPE.itemsize == 12


def string_at(strtab: np.ndarray, off: int, length: int) -> str:
    """The string at (off, length) of a strtab, decoded (invalid UTF-8 as \\xNN escapes)."""
    if not length:
        return ""
    return strtab[off: off + length].tobytes().decode("utf-8", "backslashreplace")


def has_enrichment(batch) -> bool:
    """True when the batch carries enrichment made for its current events (not a previous fill's)."""
    en = getattr(batch, "enrich", None)
    if en is None or len(en) != len(batch):
        return False
    gen = getattr(batch, "generation", None)
    return getattr(batch, "enriched_generation", gen) == gen


def event_info(batch, i: int) -> dict:
    """Event i's enrichment as Python values (for the reference formatter, tests and the API).

    Keys: ppid, pcomm, user, group, cmdline, fullpath, fds (list of (fd, path)).
    """
    row = batch.enrich[i]
    st = batch.strtab

    def s(name: str) -> str:
        return string_at(st, int(row[name + "_off"]), int(row[name + "_len"]))

    off, n = int(row["fds_off"]), int(row["fds_n"])
    fds = [(int(r["fd"]), string_at(st, int(r["path_off"]), int(r["path_len"]))) for r in batch.fdtab[off: off + n]]
    return {"ppid": int(row["ppid"]), "pcomm": s("pcomm"), "user": s("user"), "group": s("group"),
            "cmdline": s("cmdline"), "fullpath": s("fullpath"), "fds": fds}


def empty_enrichment(batch) -> None:
    """Give a batch the enrichment of the kernel's values alone: no tables, no procfs.

    ppid as captured, user/group as numeric text, cmdline = comm, no parent comm, no fds.
    """
    ev = batch.events
    n = len(ev)
    chunks: list[bytes] = [b"\0"]           # offset 0: the empty string
    index: dict[bytes, tuple[int, int]] = {}
    size = 1

    def add(b: bytes) -> tuple[int, int]:
        nonlocal size
        ref = index.get(b)
        if ref is None:
            ref = index[b] = (size, len(b)) if b else (0, 0)
            if b:
                chunks.append(b + b"\0")
                size += len(b) + 1
        return ref

    out = np.zeros(n, dtype=ENRICH_DTYPE)
    out["ppid"] = ev["ppid"]
    for col, field in (("user", "uid"), ("group", "gid")):
        uniq, inv = np.unique(ev[field], return_inverse=True)
        refs = np.array([add(str(int(u)).encode()) for u in uniq], dtype=np.uint32).reshape(-1, 2)
        out[col + "_off"] = refs[inv, 0] if n else 0
        out[col + "_len"] = refs[inv, 1] if n else 0
    uniq, inv = np.unique(ev["comm"], return_inverse=True)
    refs = np.array([add(c.decode("utf-8", "backslashreplace").encode()) for c in uniq],
                    dtype=np.uint32).reshape(-1, 2)
    out["cmdline_off"] = refs[inv, 0] if n else 0
    out["cmdline_len"] = refs[inv, 1] if n else 0
    batch.enrich = out
    batch.strtab = np.frombuffer(b"".join(chunks), dtype=np.uint8).copy()
    batch.fdtab = np.zeros(0, dtype=FD_DTYPE)
    batch.enriched_generation = getattr(batch, "generation", None)
