"""Text tests over many byte spans at once: the string half of the filter evaluator.

    match(buf, start, length, op, needles, raw) -> bool array, one per span

A span is (start, length) in the uint8 array `buf`: the gathered payloads of one argument, the
comms of a batch, or strings of the enrichment's strtab.  Its *text* is its bytes decoded as UTF-8
with undecodable bytes written ``\\xNN`` (what lbd's outputs print), and `match` answers on that
text, exactly as ``text == n``, ``text.startswith(n)``, ``text.endswith(n)``, ``n in text`` or
``fnmatch.fnmatchcase(text, n)`` would for any needle n.  `raw`: the spans may hold undecodable
bytes (payloads, comms); strtab strings are well-formed (the enrichment encodes text).

Three paths, one answer:

* the compiled loop, lbd._filter.match_spans (one C pass, GIL released), when it is built;
* the numpy path, the same tests as whole-array operations (no Python per span), otherwise;
* the text path, for what bytes cannot decide: needles with a backslash or not encodable (on raw
  spans), ``[`` classes in a glob, and spans that are not well-formed UTF-8 under endswith,
  contains and glob.  It decodes each *distinct* span once (numpy groups equal spans) and tests the
  text in Python: its cost follows the number of distinct values, not of events.

Why bytes are enough elsewhere (see lbd/_filter.pyx): a needle without a backslash can only meet
the decoded characters of a span, never the ``\\xNN`` escapes, and UTF-8 is prefix-free.
"""
from __future__ import annotations

import fnmatch

import numpy as np

try:
    from lbd import _filter as _c
except ImportError:  # not built: the numpy path (the lead adds lbd/_filter.pyx to setup.py)
    _c = None

__all__ = ["OPS", "Needles", "match", "text_match", "distinct", "decode", "compiled", "use_compiled"]

#: the text operations, as the filter language names them
OPS = ("=", "startswith", "endswith", "contains", "glob")
_OP_CODE = {"=": 0, "startswith": 1, "endswith": 2, "contains": 3, "glob": 4}

_use_c = _c is not None


def compiled() -> bool:
    """Whether the compiled loop (lbd._filter) is built and in use."""
    return _use_c


def use_compiled(on: bool) -> bool:
    """Use the compiled loop (when built) or the numpy path; returns the previous setting.  For the
    tests and the benchmark, which run both."""
    global _use_c
    old = _use_c
    _use_c = bool(on) and _c is not None
    return old


def text_match(text: str, op: str, needles) -> bool:
    """The definition: does `text` pass `op` against any of the needles (str)?"""
    for n in needles:
        if op == "=":
            ok = text == n
        elif op == "startswith":
            ok = text.startswith(n)
        elif op == "endswith":
            ok = text.endswith(n)
        elif op == "contains":
            ok = n in text
        else:
            ok = fnmatch.fnmatchcase(text, n)
        if ok:
            return True
    return False


def decode(b: bytes) -> str:
    return b.decode("utf-8", "backslashreplace")


def _encodable(n: str) -> bytes | None:
    try:
        return n.encode("utf-8")
    except UnicodeEncodeError:
        return None


class Needles:
    """A test's needles, prepared once: their UTF-8 bytes and whether bytes can decide the test."""

    __slots__ = ("op", "texts", "enc", "bytes_ok_raw", "bytes_ok", "empty_matches")

    def __init__(self, op: str, texts):
        if op not in _OP_CODE:
            raise ValueError(f"unknown text operation {op!r}")
        self.op = op
        self.texts = list(texts)
        self.enc = [_encodable(n) for n in self.texts]
        self.bytes_ok = not ((op == "glob" and any("[" in n for n in self.texts))
                             or any(e is None for e in self.enc) or len(self.texts) > 64)
        self.bytes_ok_raw = self.bytes_ok and not any("\\" in n for n in self.texts)
        #: whether an empty text passes (else an absent value, read as empty, cannot pass either)
        self.empty_matches = text_match("", op, self.texts)


def match(buf: np.ndarray, start: np.ndarray, length: np.ndarray, op: str, needles, raw: bool) -> np.ndarray:
    """bool per span: its text passes `op` against one of the needles (see the module docstring).
    `needles`: strs, or a Needles made for op."""
    nd = needles if isinstance(needles, Needles) else Needles(op, needles)
    m = len(start)
    if m == 0:
        return np.zeros(0, dtype=bool)
    start = np.ascontiguousarray(start, dtype=np.int64)
    length = np.ascontiguousarray(length, dtype=np.int64)
    if not (nd.bytes_ok_raw if raw else nd.bytes_ok):
        return _text_path(buf, start, length, op, nd.texts, np.ones(m, dtype=bool))
    buf = np.ascontiguousarray(buf, dtype=np.uint8)
    if _use_c:
        r = _c.match_spans(buf, start, length, _OP_CODE[op], nd.enc, raw)
    else:
        if op in ("endswith", "contains") and len(buf) > 2 * int(length.sum()) + 4096:
            # these scan the whole buffer: copy scattered spans together first
            buf, start = _compact(buf, start, length)
        r = _numpy_match(buf, start, length, op, nd.enc, raw)
    out = r == 1
    if raw and op in ("endswith", "contains", "glob") or op == "glob":
        undecided = r == 2
        if np.count_nonzero(undecided):
            out[undecided] = _text_path(buf, start, length, op, nd.texts, undecided)[undecided]
    return out


# ---- the numpy path ----------------------------------------------------------------------------

def _compact(buf: np.ndarray, start: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The spans' bytes copied end to end, and their new starts (the numpy tests scan buffers)."""
    new_start = np.concatenate(([0], np.cumsum(length)[:-1])).astype(np.int64)
    total = int(length.sum())
    pos = np.repeat(start - new_start, length) + np.arange(total, dtype=np.int64)
    return buf[pos], new_start


def _window(buf: np.ndarray, pos: np.ndarray, w: int) -> np.ndarray:
    """(len(pos), w) bytes buf[pos[k] : pos[k] + w] (pos and w within buf)."""
    return buf[pos[:, None] + np.arange(w, dtype=np.int64)]


def _nonascii(buf: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    high = np.concatenate(([0], np.cumsum(buf >= 0x80, dtype=np.int64)))
    return high[start + length] - high[start] > 0


def _numpy_match(buf, start, length, op, enc, raw) -> np.ndarray:
    """int8 per span, as lbd._filter.match_spans: 1, 0, or 2 (undecided: glob always, and
    endswith/contains over raw spans that are not ASCII)."""
    m = len(start)
    res = np.zeros(m, dtype=bool)
    if op == "glob":
        return np.full(m, 2, dtype=np.int8)
    for n in enc:
        w = len(n)
        nv = np.frombuffer(n, dtype=np.uint8)
        todo = ~res
        if op == "=":
            cand = np.flatnonzero(todo & (length == w))
            pos = start[cand]
        elif op == "startswith":
            cand = np.flatnonzero(todo & (length >= w))
            pos = start[cand]
        elif op == "endswith":
            cand = np.flatnonzero(todo & (length >= w))
            pos = start[cand] + length[cand] - w
        else:
            res |= todo & _contains(buf, start, length, nv)
            continue
        if w == 0:
            res[cand] = True
        elif len(cand):
            res[cand] = (_window(buf, pos, w) == nv).all(axis=1)
    out = res.astype(np.int8)
    if raw and op in ("endswith", "contains"):
        out[_nonascii(buf, start, length)] = 2
    return out


def _contains(buf, start, length, nv) -> np.ndarray:
    """Whether each span holds the byte string nv: hits over the whole buffer, counted per span."""
    w = len(nv)
    if w == 0:
        return np.ones(len(start), dtype=bool)
    total = len(buf)
    if total < w:
        return np.zeros(len(start), dtype=bool)
    hit = buf[: total - w + 1] == nv[0]
    for j in range(1, w):
        hit &= buf[j: total - w + 1 + j] == nv[j]
    cs = np.concatenate(([0], np.cumsum(hit, dtype=np.int64)))
    last = start + length - w + 1          # hits may start in [start, start + length - w]
    ok = length >= w
    lo = np.where(ok, start, 0)
    hi = np.where(ok, last, 0)
    return ok & (cs[hi] - cs[lo] > 0)


# ---- the text path -----------------------------------------------------------------------------

def distinct(buf: np.ndarray, start: np.ndarray, length: np.ndarray, sel: np.ndarray | None = None,
             max_bytes: int = 1 << 25) -> tuple[list[bytes], np.ndarray]:
    """The distinct byte strings among spans (those with a true `sel`), and for each selected span
    the number of its string: (values, inverse) with values[inverse[k]] the k-th selected span.

    Grouping is numpy's (a sort of fixed-width rows); Python touches each distinct value once."""
    idx = np.arange(len(start)) if sel is None else np.flatnonzero(sel)
    st, ln = start[idx], length[idx]
    inverse = np.zeros(len(idx), dtype=np.int64)
    values: list[bytes] = []
    if not len(idx):
        return values, inverse
    index: dict[bytes, int] = {}
    w = int(ln.max()) if len(ln) else 0
    rows = max(1, max_bytes // (w + 8))
    for a in range(0, len(idx), rows):
        s, n = st[a: a + rows], ln[a: a + rows]
        if w:
            mat = _window_clipped(buf, s, n, w)
        else:
            mat = np.zeros((len(s), 0), dtype=np.uint8)
        key = np.concatenate((mat, n.astype("<i8").view(np.uint8).reshape(-1, 8)), axis=1)
        keyv = np.ascontiguousarray(key).view(f"V{w + 8}").ravel()
        uniq, first, inv = np.unique(keyv, return_index=True, return_inverse=True)
        local = np.empty(len(uniq), dtype=np.int64)
        for u, f in enumerate(first):
            b = bytes(mat[f, : n[f]])
            k = index.get(b)
            if k is None:
                k = index[b] = len(values)
                values.append(b)
            local[u] = k
        inverse[a: a + rows] = local[inv.ravel()]
    return values, inverse


def _window_clipped(buf, s, n, w):
    """(len(s), w) bytes of each span, zero past its length."""
    if not len(buf):
        return np.zeros((len(s), w), dtype=np.uint8)
    cols = np.arange(w, dtype=np.int64)
    pos = s[:, None] + cols
    inside = cols < n[:, None]
    return np.where(inside, buf[np.where(inside, pos, 0)], 0).astype(np.uint8)


def _text_path(buf, start, length, op, needles, sel) -> np.ndarray:
    """bool per span (meaningful where sel): decode each distinct span once, test its text."""
    out = np.zeros(len(start), dtype=bool)
    values, inv = distinct(np.ascontiguousarray(buf, dtype=np.uint8), start, length, sel)
    verdict = np.array([text_match(decode(v), op, needles) for v in values], dtype=bool)
    if len(values):
        out[np.flatnonzero(sel)] = verdict[inv]
    return out


