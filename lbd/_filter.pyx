# cython: language_level=3
"""Compiled core of lbd.filter: text tests over many byte spans in one C loop (GIL released).

A *span* is (start, length) in a uint8 buffer: an argument's payloads gathered from a batch
(`Batch.gather`), the comms of the event table, or strings of the enrichment's strtab.
`match_spans(buf, start, length, op, needles, raw)` tests every span against the needles (UTF-8
bytes; any needle may match) and returns int8 per span: 1 match, 0 no match, 2 undecided.

What "match" means is the filter language's text semantics: the span's text is its bytes decoded
as UTF-8 with undecodable bytes shown as ``\\xNN`` (what the outputs print), and the needle a
string without a backslash (lbd.filter.spans sends the others to its text path).  On bytes:

* OP_EQ, OP_PREFIX: byte comparison is exact for any span (an escape in the text would put a
  backslash where the needle has none);
* OP_SUFFIX, OP_CONTAINS, OP_GLOB: exact when the span is well-formed UTF-8 (then text and bytes
  are the same characters); with `raw` (spans that may hold undecodable bytes: payloads, comms)
  a span that is not well-formed is *undecided* (2), and the caller decides it on its text.
* OP_GLOB: ``*`` any run of characters, ``?`` one character (one UTF-8 sequence), anything else
  itself; patterns with ``[`` go to the text path (fnmatch's classes), not here.

Trusts: start[k] + length[k] <= len(buf) for every k (checked once before the loop; a span
outside the buffer raises ValueError).  Lifetime: reads `buf` only during the call.
"""
from libc.stdint cimport uint8_t, int8_t, int64_t
from libc.string cimport memcmp

import numpy as np
cimport numpy as cnp

cnp.import_array()

cdef extern from "<string.h>" nogil:
    void *memmem(const void *haystack, size_t haystacklen, const void *needle, size_t needlelen)

cpdef enum:
    OP_EQ = 0
    OP_PREFIX = 1
    OP_SUFFIX = 2
    OP_CONTAINS = 3
    OP_GLOB = 4

cdef enum:
    MAX_NEEDLES = 64


cdef inline bint utf8_ok(const uint8_t *s, int64_t n) noexcept nogil:
    """Well-formed UTF-8 (Unicode table 3-7, as Python's decoder checks it)."""
    cdef int64_t i = 0
    cdef uint8_t c, c1
    while i < n:
        c = s[i]
        if c < 0x80:
            i += 1
            continue
        if c >= 0xC2 and c <= 0xDF:
            if i + 1 >= n or (s[i + 1] & 0xC0) != 0x80:
                return False
            i += 2
            continue
        if c >= 0xE0 and c <= 0xEF:
            if i + 2 >= n:
                return False
            c1 = s[i + 1]
            if (c == 0xE0 and (c1 < 0xA0 or c1 > 0xBF)) or (c == 0xED and (c1 < 0x80 or c1 > 0x9F)) \
                    or (c1 & 0xC0) != 0x80 or (s[i + 2] & 0xC0) != 0x80:
                return False
            i += 3
            continue
        if c >= 0xF0 and c <= 0xF4:
            if i + 3 >= n:
                return False
            c1 = s[i + 1]
            if (c == 0xF0 and (c1 < 0x90 or c1 > 0xBF)) or (c == 0xF4 and (c1 < 0x80 or c1 > 0x8F)) \
                    or (c1 & 0xC0) != 0x80 or (s[i + 2] & 0xC0) != 0x80 or (s[i + 3] & 0xC0) != 0x80:
                return False
            i += 4
            continue
        return False
    return True


cdef inline bint ascii_only(const uint8_t *s, int64_t n) noexcept nogil:
    cdef int64_t i
    cdef uint8_t acc = 0
    for i in range(n):
        acc |= s[i]
    return acc < 0x80


cdef inline int64_t char_len(uint8_t c) noexcept nogil:
    if c < 0x80:
        return 1
    if c < 0xE0:
        return 2
    if c < 0xF0:
        return 3
    return 4


cdef bint glob_match(const uint8_t *p, int64_t pn, const uint8_t *s, int64_t sn) noexcept nogil:
    """`*` / `?` / literal glob over well-formed UTF-8 (iterative, backtracking to the last `*`)."""
    cdef int64_t pi = 0, si = 0, star_p = -1, star_s = 0, k
    while si < sn:
        if pi < pn and p[pi] == 63:                 # '?': one character
            k = char_len(s[si])
            si += k
            pi += 1
        elif pi < pn and p[pi] == 42:               # '*': remember, match nothing first
            star_p = pi
            pi += 1
            star_s = si
        elif pi < pn and p[pi] == s[si]:
            pi += 1
            si += 1
        elif star_p >= 0:                           # let the last '*' take one more character
            star_s += char_len(s[star_s])
            si = star_s
            pi = star_p + 1
        else:
            return False
    while pi < pn and p[pi] == 42:
        pi += 1
    return pi == pn and si == sn


def match_spans(const uint8_t[::1] buf, const int64_t[::1] start, const int64_t[::1] length, int op,
                list needles, bint raw):
    """int8 per span: 1 when a needle matches, 0 when none does, 2 undecided (see the module
    docstring).  needles: at most 64 bytes objects (UTF-8 of strings without a backslash)."""
    cdef Py_ssize_t m = start.shape[0], k, j, nn = len(needles)
    if length.shape[0] != m:
        raise ValueError(f"{m} span starts, {length.shape[0]} lengths")
    if op < OP_EQ or op > OP_GLOB:
        raise ValueError(f"unknown operation {op}")
    if nn < 1 or nn > MAX_NEEDLES:
        raise ValueError(f"{nn} needles: 1 .. {MAX_NEEDLES}")
    cdef const uint8_t *np_[MAX_NEEDLES]
    cdef int64_t nl[MAX_NEEDLES]
    keep = [bytes(x) for x in needles]
    for j in range(nn):
        np_[j] = <const uint8_t *><char *>keep[j]
        nl[j] = len(keep[j])
    out = np.zeros(m, dtype=np.int8)
    cdef int8_t[::1] o = out
    cdef int64_t size = buf.shape[0], s0, ln
    cdef const uint8_t *base = &buf[0] if size else NULL
    cdef const uint8_t *s
    cdef int8_t r
    cdef bint checked, ok
    for k in range(m):
        if start[k] < 0 or length[k] < 0 or start[k] + length[k] > size:
            raise ValueError(f"span {k} ({start[k]}, {length[k]}) outside a buffer of {size} bytes")
    with nogil:
        for k in range(m):
            ln = length[k]
            s = base + start[k] if ln else base
            r = 0
            checked = False
            for j in range(nn):
                if op == OP_EQ:
                    ok = ln == nl[j] and (ln == 0 or memcmp(s, np_[j], ln) == 0)
                elif op == OP_PREFIX:
                    ok = ln >= nl[j] and (nl[j] == 0 or memcmp(s, np_[j], nl[j]) == 0)
                else:
                    if raw and not checked:
                        checked = True
                        if not ascii_only(s, ln) and not utf8_ok(s, ln):
                            r = 2
                            break
                    if op == OP_SUFFIX:
                        ok = ln >= nl[j] and (nl[j] == 0 or memcmp(s + ln - nl[j], np_[j], nl[j]) == 0)
                    elif op == OP_CONTAINS:
                        ok = nl[j] == 0 or (ln >= nl[j] and memmem(s, ln, np_[j], nl[j]) != NULL)
                    else:
                        ok = glob_match(np_[j], nl[j], s, ln)
                if ok:
                    r = 1
                    break
            o[k] = r
    return out
