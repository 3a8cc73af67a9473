# cython: language_level=3
"""The compiled core of lbd.enrich: fd tables, the string arena and the per-event loop.

lbd/enrich/ (enricher.py, fdtable.py, strtab.py) is the reference: readable Python that defines
what every batch's enrichment is.  This module produces the same arrays, bit for bit (offsets
included: strings and fd rows are added in the same order), without a Python object per event; a
differential test (tests/unit/test_enrich_engines.py) holds the two together on random event
streams.  `Enricher(engine="cython")` (the default) uses it; `engine="python"` runs the reference.

What moved here, and why it is fast:

* `FdTable`: one process's open files as a sorted C array of (fd, close-on-exec, path), the paths
  reference-counted C strings (`lstr`), plus the rows already encoded as (fd, path_off, path_len)
  for the current arena epoch, so that writing a snapshot to fdtab is a memcpy.
* `StringArena`: batch.strtab, written in place, with a C hash index.
* `Engine.enrich(batch)`: the whole per-batch pass in C loops: pids to slots, the fd syscalls
  (open/openat/openat2/creat, socket/connect/bind/accept/accept4/socketpair, pipe/pipe2,
  dup/dup2/dup3, fcntl F_DUPFD*/F_SETFD, close, close_range and the fixed-name fd creators) applied
  to the fd tables from the records, the enrichment states and their fdtab rows, and the
  ENRICH_DTYPE rows themselves.

What stays in Python (lbd.enrich.enricher, called from here): the process table (Proc objects,
its LRU caches: per distinct pid and batch), procfs reads, the process-tree syscalls (fork, clone,
exec, exit, chdir: they build Proc / Info objects), rare fd syscalls whose name needs procfs or
Python formatting (memfd_create, bpf, pidfd_getfd, ...), user / group / parent names (per distinct
id and batch), and command lines.  Those calls get the same arguments as the reference's loop,
which is why the results agree; after each, the slot of that process is re-read.

What the loop trusts: the batch's records were validated by the decoder (every payload slot lies
inside its record, the record inside the arena), and it is an lbd._decode.Batch.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.list cimport PyList_GET_ITEM
from cpython.ref cimport PyObject
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int8_t, uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t, INT32_MAX
from libc.stdlib cimport malloc, realloc, free, calloc, qsort
from libc.string cimport memcmp, memcpy, memmove, memset

cimport numpy as cnp
import array as _array
import logging

import numpy as np

from lbd._decode cimport Batch, lbd_event
from lbd._record cimport LBD_MAX_ARGS, LBD_NR_SCHED_FORK

cnp.import_array()

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL

cdef extern from "<stdio.h>" nogil:
    int snprintf(char *buf, size_t n, const char *fmt, ...)

cdef extern from *:
    """
    #define LBD_K0 0x9E3779B97F4A7C15ULL
    #define LBD_K1 0xFF51AFD7ED558CCDULL
    #define LBD_K2 0xC4CEB9FE1A85EC53ULL
    #define LBD_HI8 0x8080808080808080ULL
    """
    const uint64_t LBD_K0, LBD_K1, LBD_K2, LBD_HI8

from lbd import record as _record
from lbd.enrich.layout import ENRICH_DTYPE, FD_DTYPE

log = logging.getLogger("lbd.enrich")

DEF N_NR = 1024                 # syscall / sched numbers the dispatch tables cover (as the decoder)
DEF NONE32 = 0xFFFFFFFF
DEF SOCK_CACHE_MAX = 4096       # sockaddr -> fd name cache entries (cleared when full)
DEF N_FAM = 64                  # socket families with a precomputed name

cdef enum:
    AT_FDCWD = -100
    O_CLOEXEC = 0o2000000
    FD_CLOEXEC = 1
    F_DUPFD = 0
    F_SETFD = 2
    F_DUPFD_CLOEXEC = 1030
    CLOSE_RANGE_CLOEXEC = 4
    EINPROGRESS = 115
    AF_INET = 2
    AF_INET6 = 10

# handler kinds of the dispatch table (Engine.hkind), from each reference handler's `fast` spec
cdef enum:
    H_NONE = 0
    H_PY = 1            # the reference handler itself, called with the reference's arguments
    H_OPEN = 2          # p1 dirfd arg (-1: AT_FDCWD), p2 path slot, p3 flags arg (-1: none)
    H_NEWFD = 3         # hname, p1 cloexec arg (-1: none), hmask, p2 always
    H_SOCKET = 4
    H_CONNECT = 5
    H_ACCEPT = 6        # p1 flags arg (-1: none)
    H_PAIR = 7          # p1 pipe, p2 flags arg (-1: none), p3 fd pair slot
    H_DUP = 8
    H_DUP3 = 9
    H_FCNTL = 10
    H_CLOSE = 11
    H_CLOSE_RANGE = 12

cdef uint32_t F_NOENTER = _record.F_NOENTER
cdef uint8_t DIR_EXIT = _record.DIR_EXIT

# ---- layouts: the C views of the numpy rows, checked against their dtypes at import ----------

from lbd._layout cimport enrich_row, fd_row

if sizeof(enrich_row) != ENRICH_DTYPE.itemsize or sizeof(fd_row) != FD_DTYPE.itemsize:
    raise ImportError("lbd._enrich: enrichment row sizes differ from lbd.enrich.layout")


# ---- lstr: reference-counted strings ------------------------------------------------------------

cdef inline uint64_t ls_hash(const char *p, Py_ssize_t n) noexcept nogil:
    """A 64-bit hash, 8 bytes a step (the arena's and the caches' key)."""
    cdef uint64_t h = LBD_K0 ^ <uint64_t>n
    cdef uint64_t w
    while n >= 8:
        memcpy(&w, p, 8)
        h = (h ^ w) * LBD_K1
        h ^= h >> 32
        p += 8
        n -= 8
    w = 0
    memcpy(&w, p, n)
    h = (h ^ w) * LBD_K2
    h ^= h >> 29
    return h


cdef lstr *ls_new(const char *p, Py_ssize_t n) except NULL:
    """A new lstr (one reference) holding p[:n]: UTF-8, possibly with encoded surrogates."""
    cdef lstr *s
    cdef Py_ssize_t i
    cdef uint32_t nch = 0
    cdef uint8_t c, special = 0
    if n > 0x7FFFFFF0:
        raise OverflowError("string too long")
    s = <lstr *>malloc(sizeof(lstr) + n)
    if s == NULL:
        raise MemoryError()
    s.refcnt = 1
    s.len = <uint32_t>n
    memcpy(s.data, p, n)
    s.data[n] = 0
    s.hash = ls_hash(p, n)
    for i in range(n):
        c = <uint8_t>p[i]
        if (c & 0xC0) != 0x80:
            nch += 1
            if c == 0xED and i + 1 < n and <uint8_t>p[i + 1] >= 0xA0:
                special = 1             # an encoded surrogate (U+D800..U+DFFF)
    s.nchars = nch
    s.special = special
    return s


cdef inline lstr *ls_ref(lstr *s) noexcept nogil:
    if s != NULL:
        s.refcnt += 1
    return s


cdef inline void ls_unref(lstr *s) noexcept nogil:
    if s != NULL:
        s.refcnt -= 1
        if s.refcnt == 0:
            free(s)


cdef inline bint ls_eq(const lstr *a, const lstr *b) noexcept nogil:
    return a == b or (a.len == b.len and a.hash == b.hash and memcmp(a.data, b.data, a.len) == 0)


cdef lstr *ls_from_str(str s) except NULL:
    """The lstr of a Python str (lone surrogates encoded as 'surrogatepass' does: exact)."""
    cdef Py_ssize_t n
    cdef const char *p
    try:
        p = PyUnicode_AsUTF8AndSize(s, &n)
    except UnicodeEncodeError:
        b = s.encode("utf-8", "surrogatepass")
        return ls_new(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))
    return ls_new(p, n)


cdef inline str ls_str(const lstr *s):
    return PyUnicode_DecodeUTF8(s.data, s.len, "surrogatepass")


cdef bint utf8_valid(const uint8_t *p, Py_ssize_t n) noexcept nogil:
    """True when p[:n] is UTF-8 as Python's strict decoder accepts it (no surrogates, no
    overlong forms, at most U+10FFFF): then decoding it with backslashreplace changes nothing."""
    cdef Py_ssize_t i = 0
    cdef uint64_t w
    cdef uint8_t c, c1
    while i < n:
        if i + 8 <= n:
            memcpy(&w, p + i, 8)
            if (w & LBD_HI8) == 0:
                i += 8
                continue
        c = p[i]
        if c < 0x80:
            i += 1
        elif c < 0xC2:
            return False
        elif c < 0xE0:
            if i + 1 >= n or (p[i + 1] & 0xC0) != 0x80:
                return False
            i += 2
        elif c < 0xF0:
            if i + 2 >= n:
                return False
            c1 = p[i + 1]
            if (c1 & 0xC0) != 0x80 or (p[i + 2] & 0xC0) != 0x80:
                return False
            if (c == 0xE0 and c1 < 0xA0) or (c == 0xED and c1 >= 0xA0):
                return False
            i += 3
        elif c < 0xF5:
            if i + 3 >= n:
                return False
            c1 = p[i + 1]
            if (c1 & 0xC0) != 0x80 or (p[i + 2] & 0xC0) != 0x80 or (p[i + 3] & 0xC0) != 0x80:
                return False
            if (c == 0xF0 and c1 < 0x90) or (c == 0xF4 and c1 >= 0x90):
                return False
            i += 4
        else:
            return False
    return True


cdef lstr *ls_text(const uint8_t *p, Py_ssize_t n) except NULL:
    """lbd.args.text(p): user bytes as text (invalid UTF-8 as \\xNN escapes), as an lstr."""
    cdef Py_ssize_t m
    cdef const char *q
    if utf8_valid(p, n):
        return ls_new(<const char *>p, n)
    s = PyUnicode_DecodeUTF8(<const char *>p, n, "backslashreplace")
    q = PyUnicode_AsUTF8AndSize(s, &m)
    return ls_new(q, m)


cdef Py_ssize_t cut_utf8(const char *b, Py_ssize_t n, Py_ssize_t limit) noexcept nogil:
    """lbd.enrich.strtab.cut_utf8: how many of b's n bytes to keep (at most limit, never ending
    inside a character)."""
    cdef Py_ssize_t k
    cdef uint8_t c
    cdef int need
    if n <= limit:
        return n
    n = limit
    for k in range(1, (4 if n > 4 else n) + 1):
        c = <uint8_t>b[n - k]
        if c < 0x80:
            break
        if c >= 0xC0:
            need = 2 if c < 0xE0 else 3 if c < 0xF0 else 4
            if need > k:
                n -= k
            break
    return n


cdef Py_ssize_t normpath_abs(char *p, Py_ssize_t n) noexcept nogil:
    """posixpath.normpath of p[:n], a path starting with "/", in place; returns the new length.

    One or two leading slashes are kept (three or more are one), empty and "." components go,
    ".." removes the component before it (none at the root)."""
    cdef Py_ssize_t initial = 1, r, w, start, seg, last
    if n >= 2 and p[1] == b'/' and not (n >= 3 and p[2] == b'/'):
        initial = 2
    w = initial                     # write position: components are written after the slashes
    r = 0
    while r < n:
        while r < n and p[r] == b'/':
            r += 1
        start = r
        while r < n and p[r] != b'/':
            r += 1
        seg = r - start
        if seg == 0 or (seg == 1 and p[start] == b'.'):
            continue
        if seg == 2 and p[start] == b'.' and p[start + 1] == b'.':
            if w > initial:         # pop the last component written
                last = w - 1
                while last > initial and p[last - 1] != b'/':
                    last -= 1
                w = last - 1 if last > initial else initial
            continue
        if w > initial:
            p[w] = b'/'
            w += 1
        memmove(p + w, p + start, seg)
        w += seg
    for r in range(initial):
        p[r] = b'/'
    return w


def _normpath(bytes path):
    """normpath_abs on a copy (for the tests: it must agree with posixpath.normpath)."""
    b = bytearray(path)
    cdef char *p = b
    cdef Py_ssize_t n = normpath_abs(p, len(b))
    return bytes(b[:n])


cdef lstr *ls_join(const lstr *base, const char *rel, Py_ssize_t rn) except NULL:
    """Enricher._resolve's join: (base if base != "/" else "") + "/" + rel, normalised when it
    holds "/." (base starts with "/")."""
    cdef Py_ssize_t bn = base.len
    cdef Py_ssize_t n, i
    cdef char *buf
    cdef bint dot = False
    cdef lstr *out
    if bn == 1:
        bn = 0
    n = bn + 1 + rn
    buf = <char *>malloc(n + 1)
    if buf == NULL:
        raise MemoryError()
    memcpy(buf, base.data, bn)
    buf[bn] = b'/'
    memcpy(buf + bn + 1, rel, rn)
    for i in range(n - 1):
        if buf[i] == b'/' and buf[i + 1] == b'.':
            dot = True
            break
    if dot:
        n = normpath_abs(buf, n)
    try:
        out = ls_new(buf, n)
    finally:
        free(buf)
    return out


# ---- StringArena ---------------------------------------------------------------------------------

ctypedef struct ar_ent:
    uint64_t hash
    uint32_t off            # where the string is in the arena
    uint32_t len
    uint32_t koff           # its key (the str's bytes) in `keys`; NONE32: the stored bytes are the key
    uint32_t klen


cdef class StringArena:
    """Strings stored as UTF-8 + NUL; `add(s)` returns (off, len) and the same pair for the same s
    (lbd.enrich.strtab.StringArena, in C: same offsets for the same calls).

    Strings persist from one batch to the next within an epoch; `reset()` starts a new epoch from
    offset 0 (a view returned by `array()` is valid until then).  `limit` cuts every string to
    that many bytes (0 = no limit), never inside a character.
    """

    def __cinit__(self):
        self.index = NULL
        self.ents = NULL
        self.keys = NULL

    def __init__(self, Py_ssize_t limit=0, Py_ssize_t initial=1 << 16):
        self.limit = limit
        self.cap = max(initial, 64)
        self.buf = np.zeros(self.cap, dtype=np.uint8)
        self.data = <uint8_t *>cnp.PyArray_DATA(self.buf)
        self.index_cap = 1024
        self.index = <int32_t *>calloc(self.index_cap, sizeof(int32_t))
        self.ents_cap = 512
        self.ents = malloc(self.ents_cap * sizeof(ar_ent))
        if self.index == NULL or self.ents == NULL:
            raise MemoryError()
        self.epoch = 0
        self.reset()

    def __dealloc__(self):
        free(self.index)
        free(self.ents)
        free(self.keys)

    def reset(self):
        """A new epoch: every offset handed out before is void; the buffer is reused from 0."""
        self.epoch += 1
        memset(self.index, 0, self.index_cap * sizeof(int32_t))
        self.n_ents = 0
        self.size = 0
        self.keys_size = 0
        self.add("")            # offset 0 is the empty string: (0, 0)

    def __len__(self):
        return self.size

    def array(self):
        """Every string of the epoch as a uint8 array (a view of the buffer)."""
        return self.buf[: self.size]

    def add(self, str s):
        cdef uint32_t off, ln
        cdef Py_ssize_t n
        cdef const char *p
        try:
            p = PyUnicode_AsUTF8AndSize(s, &n)
            special = False
        except UnicodeEncodeError:          # lone surrogates (os.readlink's surrogateescape)
            b = s.encode("utf-8", "surrogatepass")
            p = PyBytes_AS_STRING(b)
            n = PyBytes_GET_SIZE(b)
            special = True
        self.add_bytes(p, <uint32_t>n, ls_hash(p, n), special, &off, &ln)
        return (off, ln)

    cdef int add_ls(self, const lstr *s, uint32_t *off, uint32_t *ln) except -1:
        return self.add_bytes(s.data, s.len, s.hash, s.special, off, ln)

    cdef int _grow_index(self) except -1:
        cdef Py_ssize_t cap = self.index_cap * 2, k, j
        cdef int32_t *idx = <int32_t *>calloc(cap, sizeof(int32_t))
        cdef ar_ent *ents = <ar_ent *>self.ents
        if idx == NULL:
            raise MemoryError()
        for k in range(self.n_ents):
            j = ents[k].hash & (cap - 1)
            while idx[j]:
                j = (j + 1) & (cap - 1)
            idx[j] = <int32_t>(k + 1)
        free(self.index)
        self.index = idx
        self.index_cap = cap
        return 0

    cdef int _reserve(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t need = self.size + extra
        if need <= self.cap:
            return 0
        if need > 0xFFFFFFF0:
            raise OverflowError("string arena past 4 GiB")
        cap = max(need, 2 * self.cap)
        nb = np.zeros(cap, dtype=np.uint8)
        memcpy(cnp.PyArray_DATA(nb), self.data, self.size)
        self.buf = nb                     # views of the old buffer keep it alive
        self.data = <uint8_t *>cnp.PyArray_DATA(nb)
        self.cap = cap
        return 0

    cdef int add_bytes(self, const char *key, uint32_t klen, uint64_t h, bint special,
                       uint32_t *off, uint32_t *ln) except -1:
        cdef Py_ssize_t mask = self.index_cap - 1
        cdef Py_ssize_t j = h & mask
        cdef int32_t e
        cdef ar_ent *ent
        cdef const char *kp
        cdef const char *sp
        cdef Py_ssize_t sl
        while True:
            e = self.index[j]
            if e == 0:
                break
            ent = (<ar_ent *>self.ents) + (e - 1)
            if ent.hash == h and ent.klen == klen:
                if ent.koff != NONE32:
                    kp = <const char *>self.keys + ent.koff
                else:
                    kp = <const char *>self.data + ent.off
                if memcmp(kp, key, klen) == 0:
                    off[0] = ent.off
                    ln[0] = ent.len
                    return 0
            j = (j + 1) & mask
        # a new string: what the arena stores is str.encode("utf-8", "backslashreplace"), cut
        stored = None
        if special:
            stored = PyUnicode_DecodeUTF8(key, klen, "surrogatepass").encode("utf-8", "backslashreplace")
            sp = PyBytes_AS_STRING(stored)
            sl = PyBytes_GET_SIZE(stored)
        else:
            sp = key
            sl = klen
        if self.limit and sl > self.limit:
            sl = cut_utf8(sp, sl, self.limit)
        if 2 * (self.n_ents + 1) > self.index_cap:
            self._grow_index()
            mask = self.index_cap - 1
            j = h & mask
            while self.index[j]:
                j = (j + 1) & mask
        if self.n_ents == self.ents_cap:
            p = realloc(self.ents, 2 * self.ents_cap * sizeof(ar_ent))
            if p == NULL:
                raise MemoryError()
            self.ents = p
            self.ents_cap *= 2
        if self.size + sl + 1 > self.cap:
            # `key` may point into the arena buffer only for strings found above, never here
            self._reserve(sl + 1)
        ent = (<ar_ent *>self.ents) + self.n_ents
        ent.hash = h
        ent.off = <uint32_t>self.size
        ent.len = <uint32_t>sl
        ent.klen = klen
        if special or sl != klen:
            if self.keys_size + klen > self.keys_cap:
                ncap = max(self.keys_size + klen, 2 * self.keys_cap, 256)
                p = realloc(self.keys, ncap)
                if p == NULL:
                    raise MemoryError()
                self.keys = <char *>p
                self.keys_cap = ncap
            memcpy(self.keys + self.keys_size, key, klen)
            ent.koff = <uint32_t>self.keys_size
            self.keys_size += klen
        else:
            ent.koff = NONE32
        memcpy(self.data + self.size, sp, sl)
        self.data[self.size + sl] = 0
        self.size += sl + 1
        self.n_ents += 1
        self.index[j] = <int32_t>self.n_ents
        off[0] = ent.off
        ln[0] = ent.len
        return 0


# ---- FdTable ----------------------------------------------------------------------------------------

cdef class FdTable:
    """fd -> (path, close-on-exec), sorted by fd (lbd.enrich.fdtable.FdTable's contract and
    Python API, in C).

    Invariants: `rows[:n]` sorted by fd, each holding a reference to its path; `nchars` is the sum
    of len(path) + 1 over the rows; while `enc_arena.epoch == enc_epoch`, `enc[:3n]` is the rows
    as (fd, path_off, path_len) in that arena, kept up to date by every change; `version` changes
    whenever the (fd, path) rows do (not for close-on-exec flags).  `complete` is False when the
    table may lack fds opened before it was seeded; `overflow` counts fds not kept because the
    table held `max_fds` already.
    """

    def __cinit__(self):
        self.rows = NULL
        self.enc = NULL
        self.n = self.cap = 0
        self.complete = True
        self.overflow = 0
        self.max_fds = 65536
        self.enc_epoch = -1
        self.version = 0
        self.w_valid = False

    def __init__(self, entries=(), *, complete=True, max_fds=65536):
        self.complete = complete
        self.max_fds = max_fds
        for fd, path, cloexec in entries:
            self.set(fd, path, cloexec)

    def __dealloc__(self):
        cdef Py_ssize_t i
        for i in range(self.n):
            ls_unref(self.rows[i].path)
        free(self.rows)
        free(self.enc)

    # ---- C level ----

    cdef Py_ssize_t find(self, int32_t fd) noexcept nogil:
        """The row of fd, or -(insertion point) - 1."""
        cdef Py_ssize_t lo = 0, hi = self.n, mid
        if hi and self.rows[hi - 1].fd < fd:
            return -hi - 1
        while lo < hi:
            mid = (lo + hi) >> 1
            if self.rows[mid].fd < fd:
                lo = mid + 1
            else:
                hi = mid
        if lo < self.n and self.rows[lo].fd == fd:
            return lo
        return -lo - 1

    cdef lstr *path_of(self, int64_t fd) noexcept nogil:
        """fd's path (borrowed), NULL when fd is not in the table."""
        cdef Py_ssize_t i
        if fd < 0 or fd > INT32_MAX:
            return NULL
        i = self.find(<int32_t>fd)
        return self.rows[i].path if i >= 0 else NULL

    cdef bint live(self) noexcept:
        return self.enc_arena is not None and self.enc_epoch == self.enc_arena.epoch

    cdef int _reserve(self, Py_ssize_t need) except -1:
        cdef Py_ssize_t cap
        if need <= self.cap:
            return 0
        cap = max(need, 2 * self.cap, 8)
        p = realloc(self.rows, cap * sizeof(ft_row))
        if p == NULL:
            raise MemoryError()
        self.rows = <ft_row *>p
        q = realloc(self.enc, 3 * cap * sizeof(int32_t))
        if q == NULL:
            raise MemoryError()
        self.enc = <int32_t *>q
        self.cap = cap
        return 0

    cdef int put(self, int64_t fd, lstr *path, bint cloexec) except -1:
        """set(fd, path, cloexec) (path borrowed)."""
        cdef Py_ssize_t i
        cdef lstr *old
        cdef uint32_t off = 0, ln = 0
        cdef bint live
        if fd < 0:
            return 0
        if fd > INT32_MAX:
            raise OverflowError(f"fd {fd} out of range")
        i = self.find(<int32_t>fd)
        live = self.live()
        if i >= 0:
            old = self.rows[i].path
            if not ls_eq(old, path):
                if live:
                    self.enc_arena.add_ls(path, &off, &ln)
                    self.enc[3 * i + 1] = <int32_t>off
                    self.enc[3 * i + 2] = <int32_t>ln
                self.rows[i].path = ls_ref(path)
                self.nchars += <Py_ssize_t>path.nchars - <Py_ssize_t>old.nchars
                self.version += 1
                ls_unref(old)
            self.rows[i].cloexec = cloexec
            return 0
        if self.n >= self.max_fds:
            self.overflow += 1
            return 0
        i = -i - 1
        if live:
            self.enc_arena.add_ls(path, &off, &ln)
        self._reserve(self.n + 1)
        if i < self.n:
            memmove(self.rows + i + 1, self.rows + i, (self.n - i) * sizeof(ft_row))
            if live:
                memmove(self.enc + 3 * i + 3, self.enc + 3 * i, 3 * (self.n - i) * sizeof(int32_t))
        self.rows[i].fd = <int32_t>fd
        self.rows[i].cloexec = cloexec
        self.rows[i].path = ls_ref(path)
        if live:
            self.enc[3 * i] = <int32_t>fd
            self.enc[3 * i + 1] = <int32_t>off
            self.enc[3 * i + 2] = <int32_t>ln
        self.n += 1
        self.nchars += path.nchars + 1
        self.version += 1
        return 0

    cdef bint drop(self, int64_t fd) noexcept:
        """close(fd): True when it was open."""
        cdef Py_ssize_t i
        cdef lstr *old
        if fd < 0 or fd > INT32_MAX:
            return False
        i = self.find(<int32_t>fd)
        if i < 0:
            return False
        old = self.rows[i].path
        memmove(self.rows + i, self.rows + i + 1, (self.n - i - 1) * sizeof(ft_row))
        if self.live():
            memmove(self.enc + 3 * i, self.enc + 3 * i + 3, 3 * (self.n - i - 1) * sizeof(int32_t))
        self.n -= 1
        self.nchars -= old.nchars + 1
        self.version += 1
        ls_unref(old)
        return True

    cdef int _remove_if(self, Py_ssize_t lo, Py_ssize_t hi, bint cloexec_only) noexcept:
        """Remove rows lo..hi that are close-on-exec (cloexec_only) or all of them."""
        cdef Py_ssize_t r, w = lo
        cdef bint live = self.live()
        cdef int removed = 0
        for r in range(lo, self.n):
            if r < hi and (not cloexec_only or self.rows[r].cloexec):
                self.nchars -= self.rows[r].path.nchars + 1
                ls_unref(self.rows[r].path)
                removed += 1
                continue
            if w != r:
                self.rows[w] = self.rows[r]
                if live:
                    memcpy(self.enc + 3 * w, self.enc + 3 * r, 3 * sizeof(int32_t))
            w += 1
        self.n = w
        if removed:
            self.version += 1
        return removed

    cdef int encode(self, StringArena arena) except -1:
        """Encode the rows for `arena`'s current epoch (adding their paths) unless they are."""
        cdef Py_ssize_t i
        cdef uint32_t off, ln
        if self.enc_arena is arena and self.enc_epoch == arena.epoch:
            return 0
        for i in range(self.n):
            arena.add_ls(self.rows[i].path, &off, &ln)
            self.enc[3 * i] = self.rows[i].fd
            self.enc[3 * i + 1] = <int32_t>off
            self.enc[3 * i + 2] = <int32_t>ln
        self.enc_arena = arena
        self.enc_epoch = arena.epoch
        return 0

    cdef int set_cloexec_c(self, int64_t fd, bint cloexec) noexcept:
        cdef Py_ssize_t i
        if 0 <= fd <= INT32_MAX:
            i = self.find(<int32_t>fd)
            if i >= 0:
                self.rows[i].cloexec = cloexec
        return 0

    cdef int close_range_c(self, int64_t first, int64_t last, bint cloexec_only) noexcept:
        cdef Py_ssize_t lo = 0, hi
        cdef Py_ssize_t i
        if last < 0 or first > last:
            return 0
        while lo < self.n and self.rows[lo].fd < first:
            lo += 1
        hi = lo
        while hi < self.n and self.rows[hi].fd <= last:
            hi += 1
        if cloexec_only:
            for i in range(lo, hi):
                self.rows[i].cloexec = True
        elif hi > lo:
            self._remove_if(lo, hi, False)
        return 0

    # ---- Python API (the reference's) ----

    def __len__(self):
        return self.n

    def __contains__(self, fd):
        return self.path_of(fd) != NULL if -(1 << 63) <= fd < (1 << 63) else False

    def __repr__(self):
        return f"<FdTable {list(self.snapshot())}>"

    def path(self, fd):
        cdef lstr *p = self.path_of(fd) if -(1 << 63) <= fd < (1 << 63) else NULL
        return None if p == NULL else ls_str(p)

    def cloexec(self, fd):
        cdef Py_ssize_t i
        if not 0 <= fd <= INT32_MAX:
            return None
        i = self.find(fd)
        return None if i < 0 else bool(self.rows[i].cloexec)

    def items(self):
        cdef Py_ssize_t i
        return [(self.rows[i].fd, ls_str(self.rows[i].path), bool(self.rows[i].cloexec)) for i in range(self.n)]

    def set(self, fd, str path, cloexec=False):
        cdef lstr *p
        if fd < 0:
            return
        p = ls_from_str(path)
        try:
            self.put(fd, p, bool(cloexec))
        finally:
            ls_unref(p)

    def set_cloexec(self, fd, cloexec):
        if 0 <= fd <= INT32_MAX:
            self.set_cloexec_c(fd, bool(cloexec))

    def close(self, fd):
        return self.drop(fd) if 0 <= fd <= INT32_MAX else False

    def dup(self, old, new, cloexec=False, str unknown="?"):
        """new becomes a copy of old (old unknown: new's path is `unknown`)."""
        if old == new:
            return
        p = self.path(old)
        self.set(new, p if p is not None else unknown, cloexec)

    def close_range(self, first, last, cloexec_only=False):
        self.close_range_c(first, last, bool(cloexec_only))

    def exec(self):
        """A successful execve: the close-on-exec fds are closed."""
        self._remove_if(0, self.n, True)

    def copy(self):
        """The table a forked child starts with (without `written`: that is the parent's)."""
        cdef FdTable t = FdTable.__new__(FdTable)
        cdef Py_ssize_t i
        t.complete = self.complete
        t.max_fds = self.max_fds
        t._reserve(self.n)
        memcpy(t.rows, self.rows, self.n * sizeof(ft_row))
        for i in range(self.n):
            ls_ref(t.rows[i].path)
        t.n = self.n
        t.nchars = self.nchars
        t.version = self.version
        if self.live():
            memcpy(t.enc, self.enc, 3 * self.n * sizeof(int32_t))
            t.enc_arena = self.enc_arena
            t.enc_epoch = self.enc_epoch
        return t

    def snapshot(self):
        """The open files as ((fd, path), ...) sorted by fd."""
        cdef Py_ssize_t i
        return tuple([(self.rows[i].fd, ls_str(self.rows[i].path)) for i in range(self.n)])

    def encode_rows(self, StringArena arena):
        """The rows as (fd, path_off, path_len) triples of `arena`'s current epoch (array 'i')."""
        self.encode(arena)
        a = _array.array("i")
        cdef Py_ssize_t i
        for i in range(3 * self.n):
            a.append(self.enc[i])
        return a


cdef lstr *inet_text(const uint8_t *p, uint32_t n) except? NULL:
    """"socket:[inet a.b.c.d:port]" / "socket:[inet6 [v6]:port]" (new reference), NULL for
    other families or short addresses (lbd.args.decode_sockaddr + _sock_text)."""
    cdef char buf[96]
    cdef int w, k, best, blen, run, rstart, i
    cdef uint16_t hx[8]
    cdef uint32_t fam, port
    if n < 2:
        return NULL
    fam = p[0] | (<uint32_t>p[1] << 8)
    port = (<uint32_t>p[2] << 8) | p[3] if n >= 4 else 0
    if fam == AF_INET and n >= 8:
        w = snprintf(buf, sizeof(buf), "socket:[inet %u.%u.%u.%u:%u]", p[4], p[5], p[6], p[7], port)
        return ls_new(buf, w)
    if fam == AF_INET6 and n >= 24:
        for k in range(8):
            hx[k] = (<uint16_t>p[8 + 2 * k] << 8) | p[9 + 2 * k]
        # ipaddress._compress_hextets: the first longest run (2 or more) of zeros becomes "::"
        best = -1
        blen = 0
        run = 0
        rstart = -1
        for k in range(8):
            if hx[k] == 0:
                run += 1
                if rstart == -1:
                    rstart = k
                if run > blen:
                    blen = run
                    best = rstart
            else:
                run = 0
                rstart = -1
        w = snprintf(buf, sizeof(buf), "socket:[inet6 [")
        k = 0
        while k < 8:
            if blen > 1 and k == best:
                if k == 0:
                    buf[w] = b':'
                    w += 1
                buf[w] = b':'
                w += 1
                k += blen
                continue
            w += snprintf(buf + w, sizeof(buf) - w, "%x", hx[k])
            if k < 7:
                buf[w] = b':'
                w += 1
            k += 1
        w += snprintf(buf + w, sizeof(buf) - w, "]:%u]", port)
        return ls_new(buf, w)
    return NULL


def _inet_text(bytes raw):
    """inet_text (for the tests: it must agree with lbd.args and ipaddress)."""
    cdef lstr *s = inet_text(<const uint8_t *>PyBytes_AS_STRING(raw), <uint32_t>len(raw))
    if s == NULL:
        return None
    try:
        return ls_str(s)
    finally:
        ls_unref(s)


# ---- the per-batch loop ------------------------------------------------------------------------------

cdef class _Slot:
    """One pid of the batch being enriched: its Proc (as the reference's loop would find it), what
    the loop read from it, and the reference's `Proc.state` (the last enrichment state made)."""
    cdef uint32_t pid
    cdef Py_ssize_t first, reborn_after
    cdef bint born_here
    cdef uint64_t procs_gen         # Engine.procs_gen when `proc` was last checked against the table
    cdef object key                 # the pid as a Python int (for the table look-up)
    cdef object proc                # the Proc; None until the pid's first scanned event
    cdef object info                # proc.info, proc.fds, proc.ppid as last read
    cdef FdTable fds
    cdef uint32_t ppid
    cdef Py_ssize_t info_idx        # info's index in Engine.infos (-1: none yet)
    cdef bint cwd_known
    cdef lstr *cwd                  # proc.cwd (NULL: None) when cwd_known
    cdef Py_ssize_t st_idx          # -1: no state made this batch (by this proc object)
    cdef uint32_t st_ppid
    cdef object st_info
    cdef FdTable st_table
    cdef uint64_t st_version
    cdef Py_ssize_t cur             # the state of the pid's events from here on

    def __dealloc__(self):
        ls_unref(self.cwd)


ctypedef struct st_row:
    uint32_t ppid
    int32_t info
    uint32_t fds_off
    uint32_t fds_n


ctypedef struct sc_ent:                 # sockaddr -> fd name cache
    uint64_t hash
    uint32_t klen
    uint8_t used
    char *key                           # owned
    lstr *val                           # owned; NULL: no name


def _opt(v):
    return -1 if v is None else int(v)


cdef int cmp_u64(const void *a, const void *b) noexcept nogil:
    cdef uint64_t x = (<const uint64_t *>a)[0], y = (<const uint64_t *>b)[0]
    return (x > y) - (x < y)


cdef inline Py_ssize_t fib(uint32_t v, int bits) noexcept nogil:
    """Slot of v in a table of 1 << bits (Fibonacci hashing: the product's high bits)."""
    return <Py_ssize_t>((<uint64_t>v * LBD_K0) >> (64 - bits))


cdef inline int32_t s32(uint64_t v) noexcept nogil:
    return <int32_t>(<uint32_t>v)


cdef inline bytes comm_bytes(const lbd_event *e):
    """The comm as numpy's S16 shows it: trailing NULs removed."""
    cdef Py_ssize_t n = 16
    while n and e.h.comm[n - 1] == 0:
        n -= 1
    return PyBytes_FromStringAndSize(e.h.comm, n)


cdef class Engine:
    """The compiled enrich() of an Enricher (see the module docstring).

    Owns the epoch's fdtab buffer and the batch buffers; the Enricher owns the arena and the
    process table, and is called for the slow paths.  Invariants: `fd_p[:3 * fd_n]` are the
    epoch's fd rows (FD_DTYPE), `en_p` has room for `en_cap` rows; both numpy buffers are replaced
    (not resized) when they grow, so arrays handed to earlier batches stay valid; the per-batch
    scratch (slots, states) is released when enrich() returns.
    """
    cdef object en
    cdef StringArena arena
    cdef bint text, track_cwd
    cdef Py_ssize_t rich_value_size
    cdef uint8_t lut[N_NR]
    cdef uint8_t need_ok[N_NR]
    cdef uint8_t hkind[N_NR]
    cdef int8_t hp1[N_NR]
    cdef int8_t hp2[N_NR]
    cdef int8_t hp3[N_NR]
    cdef uint32_t hmask[N_NR]
    cdef lstr *hname[N_NR]
    cdef list pyh
    cdef object family
    cdef object sock_text_py
    cdef lstr *fam_sock[N_FAM]
    cdef lstr *fam_pair[N_FAM]
    cdef lstr *s_pipe_r
    cdef lstr *s_pipe_w
    cdef lstr *s_sock_unknown
    cdef sc_ent *sc
    cdef Py_ssize_t sc_cap, sc_n
    # fdtab of the epoch
    cdef object fdbuf
    cdef int32_t *fd_p
    cdef Py_ssize_t fd_cap, fd_n, fd_flushed
    # enrichment rows
    cdef object enbuf
    cdef enrich_row *en_p
    cdef Py_ssize_t en_cap
    # per batch
    cdef int32_t *ev_slot
    cdef int32_t *ev_state
    cdef uint32_t *col
    cdef Py_ssize_t ev_cap
    cdef int32_t *ph                    # pid hash: slot + 1, 0 = empty
    cdef Py_ssize_t ph_cap
    cdef int ph_bits                    # ph_cap == 1 << ph_bits
    cdef list slots
    cdef st_row *states
    cdef Py_ssize_t n_states, st_cap
    cdef list infos
    cdef dict info_ids
    cdef object procs_d
    cdef uint64_t procs_gen
    cdef const lbd_event *ev
    cdef const uint8_t *arena_p         # the batch's arena (records) and its bytes in use,
    cdef size_t arena_used              # during enrich()
    cdef uint32_t *spid                 # per slot: pid, last event
    cdef int32_t *slast
    cdef uint32_t *uv                   # unique values scratch (names)
    cdef int32_t *uh
    cdef Py_ssize_t uh_cap

    def __cinit__(self):
        self.sc = NULL
        self.ev_slot = self.ev_state = NULL
        self.col = NULL
        self.ph = NULL
        self.states = NULL
        self.uv = NULL
        self.uh = NULL
        self.spid = NULL
        self.slast = NULL
        self.s_pipe_r = self.s_pipe_w = self.s_sock_unknown = NULL
        memset(self.hname, 0, sizeof(self.hname))
        memset(self.fam_sock, 0, sizeof(self.fam_sock))
        memset(self.fam_pair, 0, sizeof(self.fam_pair))

    def __init__(self, en, lut, need_ok, family, sock_text):
        """en: the Enricher (its arena, rich_value_size, track_cwd, _handlers); lut / need_ok: the
        reference's candidate tables (bool[1024]); family(v): a socket family's name;
        sock_text(payload): the fd name of a sockaddr (None: none)."""
        cdef Py_ssize_t k
        self.en = en
        self.arena = en.arena
        self.text = en.text
        self.track_cwd = en.track_cwd
        self.rich_value_size = en.rich_value_size
        self.family = family
        self.sock_text_py = sock_text
        memset(self.lut, 0, N_NR)
        memset(self.need_ok, 0, N_NR)
        memset(self.hkind, 0, N_NR)
        for k in range(min(N_NR, len(lut))):
            self.lut[k] = bool(lut[k])
            self.need_ok[k] = bool(need_ok[k])
        self.pyh = [None] * N_NR
        for nr, h in en._handlers.items():
            if 0 <= nr < N_NR:
                self._dispatch(nr, h)
        self.s_pipe_r = ls_from_str("pipe:[read]")
        self.s_pipe_w = ls_from_str("pipe:[write]")
        self.s_sock_unknown = ls_from_str("socket:[?]")
        for k in range(N_FAM):
            name = family(k)
            self.fam_sock[k] = ls_from_str(f"socket:[{name}]")
            self.fam_pair[k] = ls_from_str(f"socket:[{name} pair]")
        self.sc_cap = 2 * SOCK_CACHE_MAX
        self.sc = <sc_ent *>calloc(self.sc_cap, sizeof(sc_ent))
        self.fd_cap = 4096
        self.fdbuf = np.zeros(self.fd_cap, dtype=FD_DTYPE)
        self.fd_p = <int32_t *>cnp.PyArray_DATA(self.fdbuf)
        self.fd_n = self.fd_flushed = 0
        self.en_cap = 1024
        self.enbuf = np.zeros(self.en_cap, dtype=ENRICH_DTYPE)
        self.en_p = <enrich_row *>cnp.PyArray_DATA(self.enbuf)
        self.procs_gen = 0
        if self.sc == NULL:
            raise MemoryError()

    def __dealloc__(self):
        cdef Py_ssize_t k
        for k in range(N_NR):
            ls_unref(self.hname[k])
        for k in range(N_FAM):
            ls_unref(self.fam_sock[k])
            ls_unref(self.fam_pair[k])
        ls_unref(self.s_pipe_r)
        ls_unref(self.s_pipe_w)
        ls_unref(self.s_sock_unknown)
        self._sc_clear()
        free(self.sc)
        self._free_scratch()
        free(self.states)

    cdef _dispatch(self, int nr, h):
        """The C handler for the reference handler h when it says which one it is (h.fast), else h."""
        fast = getattr(h, "fast", None)
        self.hkind[nr] = H_PY
        self.pyh[nr] = h
        if fast is None:
            return
        kind = fast[0]
        opt = _opt
        if kind == "open_at":
            self.hkind[nr] = H_OPEN
            self.hp1[nr], self.hp2[nr], self.hp3[nr] = opt(fast[1]), fast[2], opt(fast[3])
        elif kind == "new_fd":
            self.hkind[nr] = H_NEWFD
            self.hname[nr] = ls_from_str(fast[1])
            self.hp1[nr], self.hmask[nr], self.hp2[nr] = opt(fast[2]), fast[3], bool(fast[4])
        elif kind == "socket":
            self.hkind[nr] = H_SOCKET
        elif kind == "connect":
            self.hkind[nr] = H_CONNECT
        elif kind == "accept":
            self.hkind[nr] = H_ACCEPT
            self.hp1[nr] = opt(fast[1])
        elif kind == "pair":
            self.hkind[nr] = H_PAIR
            self.hp1[nr], self.hp2[nr], self.hp3[nr] = bool(fast[1]), opt(fast[2]), fast[3]
        elif kind == "dup":
            self.hkind[nr] = H_DUP
        elif kind == "dup3":
            self.hkind[nr] = H_DUP3
        elif kind == "fcntl":
            self.hkind[nr] = H_FCNTL
        elif kind == "close":
            self.hkind[nr] = H_CLOSE
        elif kind == "close_range":
            self.hkind[nr] = H_CLOSE_RANGE
        else:
            raise ValueError(f"unknown fast handler {fast!r}")

    # ---- buffers ----

    cdef int _reserve_batch(self, Py_ssize_t n) except -1:
        cdef Py_ssize_t cap
        if n > self.en_cap:
            self.en_cap = max(n, 2 * self.en_cap)
            self.enbuf = np.zeros(self.en_cap, dtype=ENRICH_DTYPE)
            self.en_p = <enrich_row *>cnp.PyArray_DATA(self.enbuf)
        if n > self.ev_cap:
            cap = max(n, 2 * self.ev_cap, 512)
            self._free_scratch()
            self.ev_slot = <int32_t *>malloc(cap * sizeof(int32_t))
            self.ev_state = <int32_t *>malloc(cap * sizeof(int32_t))
            self.col = <uint32_t *>malloc(cap * sizeof(uint32_t))
            self.spid = <uint32_t *>malloc(cap * sizeof(uint32_t))
            self.slast = <int32_t *>malloc(cap * sizeof(int32_t))
            self.uv = <uint32_t *>malloc(cap * sizeof(uint32_t))
            self.ph_cap = 1
            self.ph_bits = 0
            while self.ph_cap < 2 * cap:
                self.ph_cap <<= 1
                self.ph_bits += 1
            self.ph = <int32_t *>malloc(self.ph_cap * sizeof(int32_t))
            self.uh = <int32_t *>malloc(self.ph_cap * sizeof(int32_t))
            self.ev_cap = cap
            if (self.ev_slot == NULL or self.ev_state == NULL or self.col == NULL or self.ph == NULL
                    or self.uv == NULL or self.uh == NULL or self.spid == NULL or self.slast == NULL):
                self._free_scratch()
                raise MemoryError()
        return 0

    cdef void _free_scratch(self) noexcept:
        free(self.ev_slot)
        free(self.ev_state)
        free(self.col)
        free(self.spid)
        free(self.slast)
        free(self.uv)
        free(self.ph)
        free(self.uh)
        self.ev_slot = self.ev_state = self.slast = self.ph = self.uh = NULL
        self.col = self.spid = self.uv = NULL
        self.ev_cap = 0
        self.ph_cap = 0

    cdef int _fd_reserve(self, Py_ssize_t rows) except -1:
        cdef Py_ssize_t need = self.fd_n + rows
        if need <= self.fd_cap:
            return 0
        cap = max(need, 2 * self.fd_cap)
        nb = np.zeros(cap, dtype=FD_DTYPE)
        memcpy(cnp.PyArray_DATA(nb), self.fd_p, 3 * self.fd_n * sizeof(int32_t))
        self.fdbuf = nb
        self.fd_p = <int32_t *>cnp.PyArray_DATA(nb)
        self.fd_cap = cap
        return 0

    def fdtab(self):
        """The epoch's fd rows (FD_DTYPE view); counts the rows added since the last call."""
        if self.fd_n > self.fd_flushed:
            self.en.fd_rows += self.fd_n - self.fd_flushed
            self.fd_flushed = self.fd_n
        return self.fdbuf[: self.fd_n]

    @property
    def fd_row_count(self):
        return self.fd_n

    # ---- sockaddr names ----

    cdef void _sc_clear(self) noexcept:
        cdef Py_ssize_t k
        if self.sc == NULL:
            return
        for k in range(self.sc_cap):
            if self.sc[k].used:
                free(self.sc[k].key)
                ls_unref(self.sc[k].val)
        memset(self.sc, 0, self.sc_cap * sizeof(sc_ent))
        self.sc_n = 0

    cdef lstr *sock_text(self, const uint8_t *p, uint32_t n) except? NULL:
        """_sock_text(decode_sockaddr(p)) (new reference; NULL: None), cached by the bytes."""
        cdef lstr *r = inet_text(p, n)
        cdef uint64_t h
        cdef Py_ssize_t j
        cdef sc_ent *e
        cdef uint32_t fam
        if r != NULL or n < 2:
            return r
        fam = p[0] | (<uint32_t>p[1] << 8)
        if (fam == AF_INET and n >= 8) or (fam == AF_INET6 and n >= 24):
            return NULL
        h = ls_hash(<const char *>p, n)
        j = h & (self.sc_cap - 1)
        while self.sc[j].used:
            e = self.sc + j
            if e.hash == h and e.klen == n and memcmp(e.key, p, n) == 0:
                return ls_ref(e.val)
            j = (j + 1) & (self.sc_cap - 1)
        text = self.sock_text_py(PyBytes_FromStringAndSize(<const char *>p, n))
        r = ls_from_str(text) if text is not None else NULL
        if self.sc_n >= SOCK_CACHE_MAX:
            self._sc_clear()
            j = h & (self.sc_cap - 1)
        e = self.sc + j
        e.key = <char *>malloc(n if n else 1)
        if e.key == NULL:
            ls_unref(r)
            raise MemoryError()
        memcpy(e.key, p, n)
        e.hash = h
        e.klen = n
        e.used = 1
        e.val = ls_ref(r)
        self.sc_n += 1
        return r

    cdef lstr *fam_name(self, uint64_t v, bint pair) except NULL:
        """"socket:[<family>]" or "socket:[<family> pair]" (new reference)."""
        v &= 0xFFFFFFFF
        if v < N_FAM:
            return ls_ref(self.fam_pair[v] if pair else self.fam_sock[v])
        name = self.family(v)
        return ls_from_str(f"socket:[{name} pair]" if pair else f"socket:[{name}]")

    # ---- slots ----

    cdef int adopt(self, _Slot s, proc) except -1:
        """proc is now the pid's Proc (another object than before: its own state)."""
        s.proc = proc
        s.ppid = proc.ppid
        s.info = proc.info
        s.info_idx = -1
        s.fds = proc.fds
        s.cwd_known = False
        s.st_idx = -1
        s.st_info = None
        s.st_table = None
        return 0

    cdef int refresh(self, _Slot s) except -1:
        """Re-read what a Python handler may have changed of the slot's Proc."""
        proc = s.proc
        s.ppid = proc.ppid
        info = proc.info
        if info is not s.info:
            s.info = info
            s.info_idx = -1
        fds = proc.fds
        if fds is not s.fds:
            s.fds = fds
        s.cwd_known = False
        return 0

    cdef int sync(self, _Slot s, const lbd_event *e) except -1:
        """The reference's `proc = pget(pid)` (and `_proc_for` when it is not loaded), done only
        when a Python call may have changed the process table since the slot last looked."""
        cdef PyObject *p
        if s.procs_gen == self.procs_gen:
            return 0
        p = PyDict_GetItem(self.procs_d, s.key)
        if p == NULL or (<object>p is not s.proc and
                         ((<object>p).info is None or (<object>p).fds is None)):
            self.load(s, e)
        elif <object>p is not s.proc:
            self.adopt(s, <object>p)
        s.procs_gen = self.procs_gen
        return 0

    cdef int load(self, _Slot s, const lbd_event *e) except -1:
        """Enricher._proc_for(pid, comm, kppid): the slot follows the Proc it returns (a known
        Proc may come back with another fd table: procfs mode reads it again)."""
        proc = self.en._proc_for(s.pid, comm_bytes(e), e.h.ppid)
        self.procs_gen += 1
        if proc is not s.proc:
            self.adopt(s, proc)
        else:
            self.refresh(s)
        s.procs_gen = self.procs_gen
        return 0

    cdef lstr *cwd(self, _Slot s) except? NULL:
        """proc.cwd (borrowed; NULL: None)."""
        if not s.cwd_known:
            ls_unref(s.cwd)
            s.cwd = NULL
            c = s.proc.cwd
            if c is not None:
                s.cwd = ls_from_str(c)
            s.cwd_known = True
        return s.cwd

    # ---- states ----

    cdef Py_ssize_t state(self, _Slot s) except -1:
        """Enricher._state: the index of the state (ppid, exec info, fd list) the pid is in now;
        a new state's fd list is written to fdtab at once."""
        cdef FdTable fds = s.fds
        cdef uint32_t off = 0, k = 0
        cdef st_row *r
        cdef Py_ssize_t idx
        if (s.st_idx >= 0 and s.st_ppid == s.ppid and s.st_info is s.info and s.st_table is fds
                and s.st_version == fds.version):
            return s.st_idx
        if fds.n and self.text:
            self.write_snapshot(fds, &off, &k)
        if s.info_idx < 0:
            s.info_idx = self.info_index(s.info)
        if self.n_states == self.st_cap:
            cap = max(64, 2 * self.st_cap)
            p = realloc(self.states, cap * sizeof(st_row))
            if p == NULL:
                raise MemoryError()
            self.states = <st_row *>p
            self.st_cap = cap
        idx = self.n_states
        r = self.states + idx
        r.ppid = s.ppid
        r.info = <int32_t>s.info_idx
        r.fds_off = off
        r.fds_n = k
        self.n_states += 1
        s.st_idx = idx
        s.st_ppid = s.ppid
        s.st_info = s.info
        s.st_table = fds
        s.st_version = fds.version
        return idx

    cdef Py_ssize_t info_index(self, info) except -1:
        cdef PyObject *p = PyDict_GetItem(self.info_ids, info)
        if p != NULL:
            return <object>p
        k = len(self.infos)
        self.infos.append(info)
        self.info_ids[info] = k
        return k

    cdef int write_snapshot(self, FdTable t, uint32_t *off, uint32_t *kept) except -1:
        """Enricher._write_snapshot: put the table's rows in fdtab (reusing rows already written
        this epoch: the same snapshot, a prefix of the last one, or an extension of it at the end
        of fdtab), cut where the paths pass rich_value_size characters."""
        cdef Py_ssize_t epoch = self.arena.epoch
        cdef Py_ssize_t end = self.fd_n
        cdef Py_ssize_t m = t.n, ln, k, j, used
        cdef bint cut = t.nchars > self.rich_value_size
        if t.w_valid and t.w_epoch == epoch and t.live():
            if t.w_version == t.version:
                off[0] = t.w_off
                kept[0] = <uint32_t>t.w_kept
                return 0
            ln = t.w_len
            if not cut and t.w_kept == ln:
                if m <= ln and memcmp(self.fd_p + 3 * t.w_off, t.enc, 3 * m * sizeof(int32_t)) == 0:
                    off[0] = t.w_off
                    kept[0] = <uint32_t>m
                    return 0
                if (m > ln and t.w_off + ln == end
                        and memcmp(self.fd_p + 3 * t.w_off, t.enc, 3 * ln * sizeof(int32_t)) == 0):
                    self._fd_reserve(m - ln)
                    memcpy(self.fd_p + 3 * end, t.enc + 3 * ln, 3 * (m - ln) * sizeof(int32_t))
                    self.fd_n += m - ln
                    t.w_version = t.version
                    t.w_kept = t.w_len = m
                    off[0] = t.w_off
                    kept[0] = <uint32_t>m
                    return 0
        t.encode(self.arena)
        k = m
        if cut:
            used = k = 0
            for j in range(m):
                used += t.rows[j].path.nchars + 1
                if used > self.rich_value_size:
                    break
                k += 1
        self._fd_reserve(k)
        memcpy(self.fd_p + 3 * end, t.enc, 3 * k * sizeof(int32_t))
        self.fd_n += k
        t.w_valid = True
        t.w_epoch = epoch
        t.w_off = <uint32_t>end
        t.w_version = t.version
        t.w_kept = k
        t.w_len = m
        off[0] = <uint32_t>end
        kept[0] = <uint32_t>k
        return 0

    # ---- handlers ----

    cdef inline uint32_t payload(self, const lbd_event *e, int k, const uint8_t **p) noexcept:
        """Argument k's payload (the decoder validated it; a row pointing past the arena bytes in
        use reads as none, as lbd._decode's accessors do)."""
        cdef uint32_t ln = e.h.slot[k].len
        cdef size_t start = <size_t>e.rec + e.h.slot[k].off
        if ln == 0 or start + ln > self.arena_used:
            return 0
        p[0] = self.arena_p + start
        return ln

    cdef lstr *resolve(self, _Slot s, int64_t dirfd, const uint8_t *p, uint32_t n) except NULL:
        """Enricher._resolve(proc, dirfd, text(p)): made absolute against the cwd (AT_FDCWD) or
        the directory fd when known (new reference)."""
        cdef lstr *t = ls_text(p, n)
        cdef lstr *base
        cdef lstr *r
        if t.len == 0 or t.data[0] == b'/':
            return t
        if dirfd == AT_FDCWD:
            base = self.cwd(s) if self.track_cwd else NULL
        else:
            base = s.fds.path_of(dirfd)
        if base == NULL or base.len == 0 or base.data[0] != b'/':
            return t
        try:
            r = ls_join(base, t.data, t.len)
        finally:
            ls_unref(t)
        return r

    cdef int dup(self, _Slot s, int64_t old, int64_t new, bint cloexec) except -1:
        """The reference's _dup: a copy of an fd the table missed is named by procfs."""
        cdef FdTable t = s.fds
        cdef lstr *p = t.path_of(old)
        cdef lstr *q
        if p == NULL and old != new:
            q = ls_from_str(self.en._fd_link(s.proc, new, "?"))
            try:
                t.put(new, q, cloexec)
            finally:
                ls_unref(q)
        elif old != new:
            t.put(new, p, cloexec)
        return 0

    cdef int run_c(self, _Slot s, const lbd_event *e, int nr) except -1:
        """The fd syscall handlers of the reference (lbd.enrich.enricher), on the C tables.
        Returns 1 when the process changed (a new state follows)."""
        cdef int kind = self.hkind[nr]
        cdef int64_t res = e.h.res
        cdef const uint64_t *a = <const uint64_t *>&e.h.args[0]
        cdef FdTable t = s.fds
        cdef const uint8_t *p = NULL
        cdef uint32_t ln
        cdef lstr *x
        cdef lstr *cur
        cdef int32_t fd0, fd1
        cdef int64_t dirfd, fd
        cdef uint32_t cmd
        cdef Py_ssize_t n0
        cdef bint ce
        if kind == H_CLOSE:
            # Linux releases the fd whatever close returns, unless it was not open (EBADF)
            return t.drop(s32(a[0]))
        if kind == H_OPEN:
            if res < 0 or e.h.flags & F_NOENTER:
                return 0
            ln = self.payload(e, self.hp2[nr], &p)
            dirfd = AT_FDCWD if self.hp1[nr] < 0 else s32(a[self.hp1[nr]])
            ce = self.hp3[nr] >= 0 and (a[self.hp3[nr]] & O_CLOEXEC) != 0
            x = self.resolve(s, dirfd, p, ln)
            try:
                t.put(res, x, ce)
            finally:
                ls_unref(x)
            return 1
        if kind == H_SOCKET:
            if res < 0:
                return 0
            x = self.fam_name(a[0], False)
            try:
                t.put(res, x, (a[1] & O_CLOEXEC) != 0)
            finally:
                ls_unref(x)
            return 1
        if kind == H_CONNECT:
            if (res != 0 and res != -EINPROGRESS) or e.h.flags & F_NOENTER:
                return 0
            fd = s32(a[0])
            ln = self.payload(e, 1, &p)
            if ln == 0:
                return 0
            x = self.sock_text(p, ln)
            if x == NULL:
                return 0
            try:
                cur = t.path_of(fd)
                if cur != NULL and ls_eq(cur, x):
                    return 0
                ce = False
                if 0 <= fd <= INT32_MAX:
                    n0 = t.find(<int32_t>fd)
                    ce = n0 >= 0 and t.rows[n0].cloexec
                t.put(fd, x, ce)
            finally:
                ls_unref(x)
            return 1
        if kind == H_ACCEPT:
            if res < 0:
                return 0
            ln = self.payload(e, 1, &p)
            x = inet_text(p, ln) if ln else NULL
            if x == NULL:           # unix peers are mostly unnamed: the listening socket's name
                cur = t.path_of(s32(a[0]))
                x = ls_ref(cur if cur != NULL and cur.len else self.s_sock_unknown)
            ce = self.hp1[nr] >= 0 and (a[self.hp1[nr]] & O_CLOEXEC) != 0
            try:
                t.put(res, x, ce)
            finally:
                ls_unref(x)
            return 1
        if kind == H_PAIR:
            if res != 0:
                return 0
            ln = self.payload(e, self.hp3[nr], &p)
            if ln != 8:
                return 0
            memcpy(&fd0, p, 4)
            memcpy(&fd1, p + 4, 4)
            ce = self.hp2[nr] >= 0 and (a[self.hp2[nr]] & O_CLOEXEC) != 0
            if self.hp1[nr]:
                t.put(fd0, self.s_pipe_r, ce)
                t.put(fd1, self.s_pipe_w, ce)
            else:
                x = self.fam_name(a[0], True)
                try:
                    t.put(fd0, x, ce)
                    t.put(fd1, x, ce)
                finally:
                    ls_unref(x)
            return 1
        if kind == H_DUP:
            if res < 0:
                return 0
            self.dup(s, s32(a[0]), res, False)
            return 1
        if kind == H_DUP3:
            if res < 0:
                return 0
            self.dup(s, s32(a[0]), res, (a[2] & O_CLOEXEC) != 0)
            return 1
        if kind == H_FCNTL:
            if res < 0:
                return 0
            cmd = <uint32_t>a[1]
            if cmd == F_DUPFD or cmd == F_DUPFD_CLOEXEC:
                self.dup(s, s32(a[0]), res, cmd == F_DUPFD_CLOEXEC)
                return 1
            if cmd == F_SETFD:
                t.set_cloexec_c(s32(a[0]), (a[2] & FD_CLOEXEC) != 0)
            return 0
        if kind == H_CLOSE_RANGE:
            if res != 0:
                return 0
            n0 = t.n
            t.close_range_c(<uint32_t>a[0], <uint32_t>a[1], (a[2] & CLOSE_RANGE_CLOEXEC) != 0)
            return t.n != n0
        if kind == H_NEWFD:
            if res < 0:
                return 0
            ce = self.hp2[nr] or (self.hp1[nr] >= 0 and (a[self.hp1[nr]] & self.hmask[nr]) != 0)
            t.put(res, self.hname[nr], ce)
            return 1
        return 0

    cdef int run_py(self, _Slot s, const lbd_event *e, int nr) except -1:
        """The reference handler itself, with the reference loop's arguments."""
        cdef int k
        h = self.pyh[nr]
        a = [e.h.args[k] for k in range(LBD_MAX_ARGS)]
        sl = []
        for k in range(LBD_MAX_ARGS):
            sl.append(e.h.slot[k].off)
            sl.append(e.h.slot[k].len)
        try:
            changed = bool(h(self.en, s.proc, e.h.res, a, e.h.flags, e.rec, sl, e.h.ts, comm_bytes(e)))
        finally:
            self.refresh(s)
        return changed

    # ---- the batch ----

    def enrich(self, batch):
        """Enricher.enrich(batch): set batch.enrich, batch.strtab and batch.fdtab."""
        cdef Batch b = <Batch?>batch
        cdef Py_ssize_t n = b.n
        en = self.en
        en._gen += 1
        en.batches += 1
        if len(self.arena) > en.max_strtab or self.fd_n > en.max_fd_rows:
            # a new epoch: strings and fd rows start over (the buffers are reused)
            self.arena.reset()
            self.fd_n = self.fd_flushed = 0
            en.epochs += 1
            log.debug("enrichment: epoch %d (strings and fd rows start over)", en.epochs)
        en.events += n
        self._reserve_batch(n)
        out = self.enbuf[:n]
        if n:
            en._mv = memoryview(batch.arena)
            self.procs_d = en.procs._d
            self.slots = []
            self.infos = []
            self.info_ids = {}
            self.n_states = 0
            self.ev = b.ev_p
            self.arena_p = b.arena_p
            self.arena_used = b.used
            try:
                self._run(n)
            finally:
                self.slots = None
                self.infos = None
                self.info_ids = None
                self.procs_d = None
                self.ev = NULL
                self.arena_p = NULL
                en._mv = None
        batch.enrich = out
        batch.strtab = self.arena.array()
        batch.fdtab = self.fdtab()
        batch.enriched_generation = b.generation

    cdef int _run(self, Py_ssize_t n) except -1:
        cdef const lbd_event *ev = self.ev
        cdef const lbd_event *e
        cdef Py_ssize_t i, j, nslots, mask = self.ph_cap - 1
        cdef int32_t si, last_si = -1
        cdef uint32_t pid, last_pid = 0
        cdef uint64_t child
        cdef _Slot s
        cdef _Slot c
        cdef int nr, kind, changed
        cdef bint first, reborn, cand
        cdef uint64_t *order
        cdef st_row *st
        cdef enrich_row *row
        cdef uint32_t kpp
        cdef uint64_t tsmax = 0
        cdef uint32_t *refs
        cdef PyObject *p
        cdef Py_ssize_t ninfo
        cdef bint any_cand = False, any_reborn = False
        en = self.en
        slots = self.slots
        # 1. pids -> slots (a slot per pid, in order of first appearance)
        memset(self.ph, 0, self.ph_cap * sizeof(int32_t))
        for i in range(n):
            pid = ev[i].h.pid
            if i and pid == last_pid:
                self.ev_slot[i] = last_si
                continue
            si = self._slot_of(pid)
            if si < 0:
                s = _Slot.__new__(_Slot)
                s.pid = pid
                s.first = i
                s.reborn_after = -1
                s.procs_gen = <uint64_t>-1
                s.key = pid
                s.st_idx = -1
                s.info_idx = -1
                s.cur = -1
                si = <int32_t>len(slots)
                slots.append(s)
                self.spid[si] = pid
                j = fib(pid, self.ph_bits)
                while self.ph[j]:
                    j = (j + 1) & mask
                self.ph[j] = si + 1
            self.ev_slot[i] = si
            last_si, last_pid = si, pid
        for i in range(n):
            self.slast[self.ev_slot[i]] = <int32_t>i
        nslots = len(slots)
        for i in range(n):
            e = ev + i
            nr = e.h.nr
            if nr < N_NR and self.lut[nr] and e.h.dir == DIR_EXIT and not (self.need_ok[nr] and e.h.res < 0):
                any_cand = True
            if nr == LBD_NR_SCHED_FORK and e.h.args[1] <= 0xFFFFFFFF:
                si = self._slot_of(<uint32_t>e.h.args[1])
                if si >= 0:
                    c = <_Slot>slots[si]
                    c.born_here = True
                    if c.first < i:
                        any_reborn = True
        # 2. pre-pass: one procfs look-up per pid that needs one (not for pids born in this batch),
        #    in pid order as the reference does
        order = <uint64_t *>malloc(nslots * sizeof(uint64_t))
        if order == NULL:
            raise MemoryError()
        try:
            for si in range(nslots):
                order[si] = (<uint64_t>(<_Slot>slots[si]).pid << 32) | <uint64_t>si
            qsort(order, nslots, sizeof(uint64_t), cmp_u64)
            for j in range(nslots):
                s = <_Slot>slots[<int32_t>(order[j] & 0xFFFFFFFF)]
                if not s.born_here:
                    e = ev + s.first
                    en._proc_for(s.pid, comm_bytes(e), e.h.ppid)
                    self.procs_gen += 1
            en._pending = []
            if not any_cand and not any_reborn:
                # nothing changes a process: the pids' first events make the states, in pid order
                # (the reference scans `first_idx` unsorted by event then)
                for j in range(nslots):
                    s = <_Slot>slots[<int32_t>(order[j] & 0xFFFFFFFF)]
                    self.sync(s, ev + s.first)
                    s.cur = self.state(s)
        finally:
            free(order)
        # 3. every event in order: the scanned ones (the pid's first event, the first after its
        #    pid was forked again, the candidates) may make a new state; the others take the last
        for i in range(n):
            e = ev + i
            s = <_Slot>slots[self.ev_slot[i]]
            nr = e.h.nr
            first = s.first == i and (any_cand or any_reborn)
            reborn = s.reborn_after >= 0 and i > s.reborn_after
            cand = nr < N_NR and self.lut[nr] and e.h.dir == DIR_EXIT and not (self.need_ok[nr] and e.h.res < 0)
            if first or reborn or cand:
                self.sync(s, e)
                if first:
                    s.cur = self.state(s)
                elif reborn:
                    s.reborn_after = -1
                    self.load(s, e)
                    s.cur = self.state(s)
                if cand:
                    kind = self.hkind[nr]
                    try:
                        changed = self.run_py(s, e, nr) if kind == H_PY else self.run_c(s, e, nr)
                        if changed:
                            s.cur = self.state(s)
                    except Exception:  # a bug must cost one event's bookkeeping, never the capture
                        en._handler_failed()
            self.ev_state[i] = <int32_t>s.cur
            if nr == LBD_NR_SCHED_FORK:
                child = e.h.args[1]
                if child <= 0xFFFFFFFF:
                    si = self._slot_of(<uint32_t>child)
                    if si >= 0:
                        c = <_Slot>slots[si]
                        if c.first < i:
                            c.reborn_after = i
            if e.h.ts > tsmax:
                tsmax = e.h.ts
        # 4. command lines the probe did not capture whole, then each exec info's strings
        en._resolve_pending()
        ninfo = len(self.infos)
        refs = <uint32_t *>malloc((4 * ninfo + 4) * sizeof(uint32_t))
        if refs == NULL:
            raise MemoryError()
        try:
            for j in range(ninfo):
                r = en._info_refs(self.infos[j])
                refs[4 * j], refs[4 * j + 1], refs[4 * j + 2], refs[4 * j + 3] = r
            # 5. the rows: ppid (the kernel's, else the state's), exec info, fds
            row = self.en_p
            for i in range(n):
                st = self.states + self.ev_state[i]
                kpp = ev[i].h.ppid
                row.ppid = kpp if kpp else st.ppid
                self.col[i] = row.ppid
                row.cmdline_off = refs[4 * st.info]
                row.cmdline_len = refs[4 * st.info + 1]
                row.fullpath_off = refs[4 * st.info + 2]
                row.fullpath_len = refs[4 * st.info + 3]
                row.fds_off = st.fds_off
                row.fds_n = st.fds_n
                row += 1
        finally:
            free(refs)
        self._names(n, 1, en._pcomm)
        for i in range(n):
            self.col[i] = ev[i].h.uid
        self._names(n, 3, en.accounts.user)
        for i in range(n):
            self.col[i] = ev[i].h.gid
        self._names(n, 5, en.accounts.group)
        # 6. upkeep: comms (the last event's), exited processes past their grace period
        for si in range(nslots):
            s = <_Slot>slots[si]
            p = PyDict_GetItem(self.procs_d, s.key)
            if p != NULL:
                (<object>p).comm = comm_bytes(ev + self.slast[si]).decode("utf-8", "backslashreplace")
        en._reap(tsmax)
        en.states += self.n_states
        return 0

    cdef inline int32_t _slot_of(self, uint32_t pid) noexcept:
        cdef Py_ssize_t mask = self.ph_cap - 1
        cdef Py_ssize_t j = fib(pid, self.ph_bits)
        cdef int32_t v
        while True:
            v = self.ph[j]
            if v == 0:
                return -1
            if self.spid[v - 1] == pid:
                return v - 1
            j = (j + 1) & mask

    cdef int _names(self, Py_ssize_t n, int field, name_of) except -1:
        """Enricher._names: column `field` (pcomm / user / group _off, then _len) of every row
        from the ids in self.col, one name_of(id) per distinct id in ascending order."""
        cdef Py_ssize_t i, j, nu = 0, mask = self.ph_cap - 1
        cdef uint32_t v, last = 0
        cdef int32_t u, lu = -1
        cdef uint32_t *vals = self.uv               # distinct ids, in order of appearance
        cdef uint32_t *rp
        cdef uint64_t *order
        cdef uint32_t off, ln
        memset(self.uh, 0, self.ph_cap * sizeof(int32_t))
        for i in range(n):
            v = self.col[i]
            if lu >= 0 and v == last:
                self.ev_state[i] = lu
                continue
            j = fib(v, self.ph_bits)
            while True:
                u = self.uh[j]
                if u == 0:
                    vals[nu] = v
                    nu += 1
                    u = self.uh[j] = <int32_t>nu
                    break
                if vals[u - 1] == v:
                    break
                j = (j + 1) & mask
            lu = u - 1
            last = v
            self.ev_state[i] = lu
        order = <uint64_t *>malloc(nu * sizeof(uint64_t))
        rp = <uint32_t *>malloc(2 * nu * sizeof(uint32_t))
        if order == NULL or rp == NULL:
            free(order)
            free(rp)
            raise MemoryError()
        try:
            for j in range(nu):
                order[j] = (<uint64_t>vals[j] << 32) | <uint64_t>j
            qsort(order, nu, sizeof(uint64_t), cmp_u64)
            for j in range(nu):
                u = <int32_t>(order[j] & 0xFFFFFFFF)
                off, ln = self.arena.add(name_of(vals[u]))
                rp[2 * u] = off
                rp[2 * u + 1] = ln
            for i in range(n):
                u = self.ev_state[i]
                (<uint32_t *>(self.en_p + i))[field] = rp[2 * u]
                (<uint32_t *>(self.en_p + i))[field + 1] = rp[2 * u + 1]
        finally:
            free(order)
            free(rp)
        return 0

