# cython: language_level=3
"""Bulk formatter of lbd's output formats (`normal` lines and JSON Lines), one batch at a time.

`Formatter.format(batch)` appends the text of every event of a batch to one growing C buffer, in
a single C loop with the GIL released; `write_to(fd)` writes that buffer with large write(2)s.
What it produces is defined by lbd/output/reference.py, byte for byte (differential tests hold the
two together); this file only makes it fast.

What the fast path trusts: the batch's records were validated by the decoder (every payload slot
lies inside its record, the record inside the arena).  The enrichment arrays come from another
module, so their offsets are checked against the strtab / fdtab lengths before use (an entry that
does not fit reads as empty).  Flag names (JSON) need Python (lbd.flags.names): they are looked up
in a pre-pass that holds the GIL and cached in a C table the nogil pass only reads.

Why it is fast: no Python object per event; text is scanned 8 bytes at a time and copied in runs;
the seconds of the time stamps are formatted once per second; and the two pieces that repeat
from event to event -- the who-fields (user .. cmdline .. parent) of a thread and the fd list of
an enrichment state -- are copied from where this call already wrote them when every input they
come from is equal (a memo per format() call).
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from libc.stdlib cimport malloc, realloc, free, calloc
from libc.string cimport memchr, memcmp, memcpy, memmove, memset
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport errno

cimport numpy as cnp
import numpy as np
import os

from lbd._record cimport lbd_hdr
from lbd._decode cimport lbd_event

cnp.import_array()

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    cdef struct tm:
        int tm_sec
        int tm_min
        int tm_hour
        int tm_mday
        int tm_mon
        int tm_year
    tm *localtime_r(const time_t *t, tm *out)
    tm *gmtime_r(const time_t *t, tm *out)
    void tzset()
    ctypedef int clockid_t
    cdef struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(clockid_t clk, timespec *ts)
    clockid_t CLOCK_MONOTONIC_COARSE

cdef extern from "<stdlib.h>" nogil:
    char *getenv(const char *name)

cdef extern from "<unistd.h>" nogil:
    ssize_t c_write "write"(int fd, const void *buf, size_t n)

cdef extern from "lbd_text.h" nogil:
    bint lbd_text_is_sep(uint8_t c)
    bint lbd_text_is_c1(const uint8_t *s, size_t len)
    bint lbd_secret_name(const uint8_t *pats, size_t plen, const uint8_t *s, size_t n, size_t *name_len)

from lbd import args as _args, flags as _flags, record as _record
from lbd.enrich.layout import ENRICH_DTYPE, FD_DTYPE, has_enrichment

tzset()

# ---- layouts: the C views of the numpy rows, checked against their dtypes at import ----------

from lbd._layout cimport enrich_row, fd_row


if sizeof(enrich_row) != ENRICH_DTYPE.itemsize or sizeof(fd_row) != FD_DTYPE.itemsize:
    raise ImportError("lbd._format: enrichment row sizes differ from lbd.enrich.layout")
if sizeof(lbd_event) != _record.EVENT_DTYPE.itemsize:
    raise ImportError("lbd._format: lbd_event differs from lbd.record.EVENT_DTYPE")

# ---- argument kinds (bpf/lbd_record.h, through lbd.record) ------------------------------------

cdef int K_INT = _record.KINDS["int"], K_UINT = _record.KINDS["uint"], K_HEX = _record.KINDS["hex"]
cdef int K_FD = _record.KINDS["fd"], K_DIRFD = _record.KINDS["dirfd"], K_PID = _record.KINDS["pid"]
cdef int K_UID = _record.KINDS["uid"], K_GID = _record.KINDS["gid"], K_MODE = _record.KINDS["mode"]
cdef int K_FLAGS = _record.KINDS["flags"], K_PTR = _record.KINDS["ptr"], K_STR = _record.KINDS["str"]
cdef int K_PATH = _record.KINDS["path"], K_SOCKADDR = _record.KINDS["sockaddr"], K_BUF = _record.KINDS["buf"]
cdef int K_STRARR = _record.KINDS["strarr"], K_OUT_BUF = _record.KINDS["out_buf"]
cdef int K_OUT_SOCKADDR = _record.KINDS["out_sockaddr"], K_OUT_FD2 = _record.KINDS["out_fd2"]
cdef int K_OUT_INT = _record.KINDS["out_int"]
cdef int K_OUT_BUF_ = _record.KINDS["out_buf"]
cdef uint32_t F_NOENTER = _record.F_NOENTER
cdef int F_TRUNC_SHIFT = _record.F_TRUNC_SHIFT, F_FAULT_SHIFT = _record.F_FAULT_SHIFT

cdef enum:
    NSC = 1024          # syscall and sched numbers are < 1024 (the decoder rejects others)
    MAXA = 6

cdef struct adesc:
    int kind
    int bits
    int flagset             # index into Formatter.flagsets, -1: none, -2: a Switch (see py)
    int env                 # 1: the environment (envp): capture_env and secret_pattern apply
    bint py                 # value text or flag names from the Python pre-pass (pyent)
    bint strip_nul          # an output string that includes its NUL (getcwd)
    const char *name
    size_t name_len
    const char *jname       # the name in JSON (lbd.args.json_arg_names)
    size_t jname_len

cdef struct sdesc:
    const char *name
    size_t name_len
    int nargs               # -1: unknown number (no arguments shown)
    bint has_py             # some argument is py
    adesc a[MAXA]


cdef struct pyent:
    # What the Python pre-pass gives for one event's py arguments (bytes kept by the Formatter
    # until the next format() call): the value text (NULL: the C rules apply), the flag_names
    # entries as JSON fragments ('"a.b","a.c"' and '"X","Y"'; NULL: none).
    const char *val[MAXA]
    size_t vlen[MAXA]
    const char *fla[MAXA]
    size_t flalen[MAXA]
    const char *fln[MAXA]
    size_t flnlen[MAXA]

# ---- output buffer -----------------------------------------------------------------------------
# In C so that the small writers are always inlined (they run a few dozen times per event); only
# the growth path is a call.

cdef extern from *:
    """
    #include <stdlib.h>
    #include <string.h>
    typedef struct lbd_obuf {
        char *p;        /* malloc'd, owned by the Formatter */
        size_t n;       /* bytes in use */
        size_t cap;     /* bytes allocated */
        int err;        /* 1: out of memory (everything after is dropped) */
    } lbd_obuf;

    static __attribute__((noinline)) int lbd_ob_grow_slow(lbd_obuf *b, size_t extra)
    {
        size_t cap;
        char *p;
        if (b->err)
            return 0;
        cap = b->cap ? b->cap * 2 : (size_t)1 << 16;
        while (cap < b->n + extra)
            cap *= 2;
        p = (char *)realloc(b->p, cap);
        if (!p) {
            b->err = 1;
            return 0;
        }
        b->p = p;
        b->cap = cap;
        return 1;
    }

    static inline __attribute__((always_inline)) int lbd_ob_grow(lbd_obuf *b, size_t extra)
    {
        return b->n + extra <= b->cap ? 1 : lbd_ob_grow_slow(b, extra);
    }

    static inline __attribute__((always_inline)) void lbd_put(lbd_obuf *b, const char *s, size_t n)
    {
        if (lbd_ob_grow(b, n)) {
            memcpy(b->p + b->n, s, n);
            b->n += n;
        }
    }

    static inline __attribute__((always_inline)) void lbd_putc(lbd_obuf *b, char c)
    {
        if (lbd_ob_grow(b, 1))
            b->p[b->n++] = c;
    }
    """
    ctypedef struct obuf "lbd_obuf":
        char *p
        size_t n
        size_t cap
        int err
    bint ob_grow "lbd_ob_grow"(obuf *b, size_t extra) noexcept nogil
    void put "lbd_put"(obuf *b, const char *s, size_t n) noexcept nogil
    void putc "lbd_putc"(obuf *b, char c) noexcept nogil


cdef inline size_t u64_digits(uint64_t v, char *out) noexcept nogil:
    """v in decimal at out (at most 20 bytes); returns the length."""
    cdef char tmp[24]
    cdef int k = 0
    cdef size_t n
    if v == 0:
        out[0] = 48
        return 1
    while v:
        tmp[k] = <char>(48 + v % 10)
        v //= 10
        k += 1
    n = k
    while k:
        k -= 1
        out[n - 1 - k] = tmp[k]
    return n


cdef inline size_t i64_digits(int64_t v, char *out) noexcept nogil:
    if v < 0:
        out[0] = 45
        return 1 + u64_digits(<uint64_t>0 - <uint64_t>v, out + 1)
    return u64_digits(<uint64_t>v, out)


cdef inline void put_u64(obuf *b, uint64_t v) noexcept nogil:
    if ob_grow(b, 24):
        b.n += u64_digits(v, b.p + b.n)


cdef inline void put_i64(obuf *b, int64_t v) noexcept nogil:
    if ob_grow(b, 24):
        b.n += i64_digits(v, b.p + b.n)


cdef inline void put_pad(obuf *b, uint64_t v, int width) noexcept nogil:
    """v zero-padded to width digits (width <= 20)."""
    cdef char d[24]
    cdef size_t n = u64_digits(v, d)
    cdef int k
    if ob_grow(b, 24):
        for k in range(<int>n, width):
            b.p[b.n] = 48
            b.n += 1
        memcpy(b.p + b.n, d, n)
        b.n += n


cdef inline void pad_at(char *o, int v, int width) noexcept nogil:
    """v (>= 0) in decimal, exactly width digits (the low ones), at o."""
    cdef int k
    for k in range(width - 1, -1, -1):
        o[k] = <char>(48 + v % 10)
        v //= 10


cdef const char *HEX = b"0123456789abcdef"

# ---- text ---------------------------------------------------------------------------------------

cdef inline int utf8_len(const uint8_t *s, size_t i, size_t n) noexcept nogil:
    """Length of the well-formed UTF-8 sequence starting at s[i] (as Python's decoder accepts
    them), 0 if none starts there."""
    cdef uint8_t c = s[i], c1, c2, c3
    if c < 0x80:
        return 1
    if c < 0xC2 or c > 0xF4:
        return 0
    if i + 1 >= n:
        return 0
    c1 = s[i + 1]
    if c <= 0xDF:
        return 2 if 0x80 <= c1 <= 0xBF else 0
    if i + 2 >= n:
        return 0
    c2 = s[i + 2]
    if not 0x80 <= c2 <= 0xBF:
        return 0
    if c <= 0xEF:
        if c == 0xE0:
            return 3 if 0xA0 <= c1 <= 0xBF else 0
        if c == 0xED:
            return 3 if 0x80 <= c1 <= 0x9F else 0
        return 3 if 0x80 <= c1 <= 0xBF else 0
    if i + 3 >= n:
        return 0
    c3 = s[i + 3]
    if not 0x80 <= c3 <= 0xBF:
        return 0
    if c == 0xF0:
        return 4 if 0x90 <= c1 <= 0xBF else 0
    if c == 0xF4:
        return 4 if 0x80 <= c1 <= 0x8F else 0
    return 4 if 0x80 <= c1 <= 0xBF else 0


cdef inline char *emit_ascii(char *o, uint8_t c, bint json) noexcept nogil:
    """One character < 0x80 of a decoded string, escaped for the format (lbd/lbd_text.h)."""
    if json:
        if c >= 0x20 and c != 34 and c != 92:
            o[0] = <char>c
            return o + 1
        o[0] = 92
        if c == 92:                     # the text's \\ (a backslash of the value), JSON-escaped
            o[1] = 92
            o[2] = 92
            o[3] = 92
            return o + 4
        if c == 34:
            o[1] = <char>c
            return o + 2
        if c == 10:
            o[1] = 110
            return o + 2
        if c == 13:
            o[1] = 114
            return o + 2
        if c == 9:
            o[1] = 116
            return o + 2
        if c == 8:
            o[1] = 98
            return o + 2
        if c == 12:
            o[1] = 102
            return o + 2
        o[1] = 117
        o[2] = 48
        o[3] = 48
        o[4] = HEX[c >> 4]
        o[5] = HEX[c & 15]
        return o + 6
    if c >= 0x20 and c != 0x7F:
        if c == 92 or lbd_text_is_sep(c):
            o[0] = 92
            o[1] = <char>c
            return o + 2
        o[0] = <char>c
        return o + 1
    o[0] = 92
    o[1] = 120
    o[2] = HEX[c >> 4]
    o[3] = HEX[c & 15]
    return o + 4


cdef inline char *emit_byte(char *o, uint8_t c, bint json) noexcept nogil:
    """An undecodable byte: the text \\xNN (JSON-escaped in json)."""
    o[0] = 92
    if json:
        o[1] = 92
        o += 1
    o[1] = 120
    o[2] = HEX[c >> 4]
    o[3] = HEX[c & 15]
    return o + 4


# PLAIN[json][c]: byte c is one character written as is (printable ASCII but the escaped ones:
# normal: not \\ , ( ) =; json: not " or \\)
cdef uint8_t PLAIN[2][256]
cdef int _c
for _c in range(256):
    PLAIN[0][_c] = 0x20 <= _c < 0x7F and _c != 92 and not lbd_text_is_sep(_c)
    PLAIN[1][_c] = 0x20 <= _c < 0x80 and _c != 34 and _c != 92


cdef inline bint has_byte(uint64_t w, uint64_t pattern) noexcept nogil:
    """w holds a byte equal to pattern's (pattern: one byte repeated)."""
    cdef uint64_t v = w ^ pattern
    return ((v - 0x0101010101010101ULL) & ~v & 0x8080808080808080ULL) != 0


cdef inline bint plain8(uint64_t w, bint json) noexcept nogil:
    """All 8 bytes of w are PLAIN[json] (SWAR: "has a byte < n" is (w - n*0x01..) & ~w & 0x80..)."""
    cdef uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL
    if w & high:
        return False
    if (w - 0x20 * ones) & ~w & high:
        return False                                    # a control character
    if has_byte(w, 0x5C * ones):
        return False                                    # backslash
    if json:
        return not has_byte(w, 0x22 * ones)             # "
    return not (has_byte(w, 0x7F * ones) or has_byte(w, 0x2C * ones) or has_byte(w, 0x3D * ones)
                or has_byte(w | ones, 0x29 * ones))     # DEL , = ( )


cdef bint put_text_at(obuf *b, const uint8_t *s, size_t n, size_t limit, bint json, bint nul_space,
                      size_t *countp) noexcept nogil:
    """Bytes s as the text Python gets from s.decode("utf-8", "surrogateescape"), cut like
    reference.truncate (limit characters, then "..."; an undecodable byte is one character),
    escaped for the format (reference.escape_text: normal, or a JSON string body).  nul_space:
    NUL bytes read as spaces.  countp: characters of this value already written (a value made of
    pieces), updated; returns True once the value was cut (nothing more may follow).

    Fast path: runs of plain ASCII are found 8 bytes at a time and copied with one memcpy."""
    cdef size_t i = 0, count = countp[0], j, run
    cdef int L
    cdef uint8_t c
    cdef char *o
    cdef const uint8_t *plain = PLAIN[1 if json else 0]
    cdef uint64_t w
    cdef bint cut = False
    if limit and count > limit:
        return True
    if not ob_grow(b, 6 * n + 8):       # at most 6 bytes per byte of s (JSON's \u00NN), and "..."
        return True
    o = b.p + b.n
    while i < n:
        j = i
        while j + 8 <= n:
            memcpy(&w, s + j, 8)
            if not plain8(w, json):
                break
            j += 8
        while j < n and plain[s[j]]:
            j += 1
        if j > i:
            run = j - i
            if limit and count + run > limit:
                run = limit - count
                memcpy(o, s + i, run)
                o += run
                memcpy(o, b"...", 3)
                o += 3
                cut = True
                break
            memcpy(o, s + i, run)
            o += run
            count += run
            i = j
            if i == n:
                break
        if limit and count == limit:
            memcpy(o, b"...", 3)
            o += 3
            cut = True
            break
        c = s[i]
        if c == 0 and nul_space:
            c = 32
        L = utf8_len(s, i, n) if c >= 0x80 else 1
        count += 1
        if L == 1:
            o = emit_ascii(o, c, json)
            i += 1
        elif L:
            if not json and lbd_text_is_c1(s + i, L):
                for j in range(<size_t>L):
                    o = emit_byte(o, s[i + j], False)
            else:
                memcpy(o, s + i, L)
                o += L
            i += L
        else:
            o = emit_byte(o, c, json)
            i += 1
    b.n = o - b.p
    countp[0] = count
    return cut


cdef inline void put_text(obuf *b, const uint8_t *s, size_t n, size_t limit, bint json, bint nul_space) noexcept nogil:
    """One whole text value (put_text_at from its first character)."""
    cdef size_t count = 0
    put_text_at(b, s, n, limit, json, nul_space, &count)


cdef inline void put_ascii_cut(obuf *b, const char *s, size_t n, size_t limit) noexcept nogil:
    """ASCII text s (a number, an address) cut at limit characters with "..."."""
    if limit and n > limit:
        put(b, s, limit)
        put(b, b"...", 3)
    else:
        put(b, s, n)


cdef inline void put_jstr(obuf *b, const char *s, size_t n) noexcept nogil:
    """A JSON string of text that needs no escaping (names, numbers as text): "s"."""
    if ob_grow(b, n + 2):
        b.p[b.n] = 34
        memcpy(b.p + b.n + 1, s, n)
        b.p[b.n + n + 1] = 34
        b.n += n + 2


cdef inline void put_jtext(obuf *b, const uint8_t *s, size_t n, size_t limit) noexcept nogil:
    putc(b, 34)
    put_text(b, s, n, limit, True, False)
    putc(b, 34)


cdef inline void put_key(obuf *b, const char *k, size_t n) noexcept nogil:
    ""","k":  (the comma is the caller's: it writes keys after the first with a leading comma)."""
    if ob_grow(b, n + 3):
        b.p[b.n] = 34
        memcpy(b.p + b.n + 1, k, n)
        b.p[b.n + n + 1] = 34
        b.p[b.n + n + 2] = 58
        b.n += n + 3

# ---- socket addresses (lbd.args.decode_sockaddr and SockAddr) -----------------------------------

cdef struct saddr:
    int kind                # 0 none (NULL), 1 inet (addr + port), 2 unix path, 3 other (raw)
    char fam[24]
    size_t fam_len
    char addr[48]
    size_t addr_len
    bint v6
    int port
    const uint8_t *path     # unix: the path bytes (abstract: after the leading NUL)
    size_t path_len
    bint abstract
    const uint8_t *raw      # other: the bytes after the family
    size_t raw_len


cdef size_t fmt_v4(const uint8_t *a, char *o) noexcept nogil:
    cdef size_t n = 0
    cdef int k
    for k in range(4):
        if k:
            o[n] = 46
            n += 1
        n += u64_digits(a[k], o + n)
    return n


cdef size_t fmt_v6(const uint8_t *a, char *o) noexcept nogil:
    """ipaddress.IPv6Address's text: lower-case hextets, the longest run (>= 2, leftmost) of
    zero hextets as "::"."""
    cdef int h[8]
    cdef int k, best = -1, best_len = 0, cur = -1, cur_len = 0
    cdef size_t n = 0
    cdef int v, d, started
    for k in range(8):
        h[k] = a[2 * k] << 8 | a[2 * k + 1]
        if h[k] == 0:
            cur_len += 1
            if cur == -1:
                cur = k
            if cur_len > best_len:
                best_len = cur_len
                best = cur
        else:
            cur_len = 0
            cur = -1
    if best_len < 2:
        best = -1
    k = 0
    while k < 8:
        if k == best:
            if k == 0:
                o[n] = 58
                n += 1
            o[n] = 58
            n += 1
            k += best_len
            continue
        v = h[k]
        started = 0
        for d in range(3, -1, -1):
            if (v >> (4 * d)) & 15 or started or d == 0:
                o[n] = HEX[(v >> (4 * d)) & 15]
                n += 1
                started = 1
        k += 1
        if k < 8 and k != best:
            o[n] = 58
            n += 1
    return n


cdef void parse_sockaddr(const uint8_t *p, size_t n, saddr *sa) noexcept nogil:
    cdef unsigned fam
    cdef size_t k
    sa.kind = 0
    if n < 2:
        return
    fam = p[0] | p[1] << 8
    if fam == 1:
        memcpy(sa.fam, b"AF_UNIX", 7)
        sa.fam_len = 7
    elif fam == 2:
        memcpy(sa.fam, b"AF_INET", 7)
        sa.fam_len = 7
    elif fam == 10:
        memcpy(sa.fam, b"AF_INET6", 8)
        sa.fam_len = 8
    elif fam == 16:
        memcpy(sa.fam, b"AF_NETLINK", 10)
        sa.fam_len = 10
    elif fam == 17:
        memcpy(sa.fam, b"AF_PACKET", 9)
        sa.fam_len = 9
    elif fam == 0:
        memcpy(sa.fam, b"AF_UNSPEC", 9)
        sa.fam_len = 9
    else:
        sa.fam_len = u64_digits(fam, sa.fam)
    if fam == 2 and n >= 8:
        sa.kind = 1
        sa.v6 = False
        sa.port = p[2] << 8 | p[3]
        sa.addr_len = fmt_v4(p + 4, sa.addr)
    elif fam == 10 and n >= 24:
        sa.kind = 1
        sa.v6 = True
        sa.port = p[2] << 8 | p[3]
        sa.addr_len = fmt_v6(p + 8, sa.addr)
    elif fam == 1:
        sa.kind = 2
        if n > 2 and p[2] == 0:
            sa.abstract = True
            sa.path = p + 3
            sa.path_len = n - 3
        else:
            sa.abstract = False
            sa.path = p + 2
            k = 0
            while 2 + k < n and p[2 + k] != 0:
                k += 1
            sa.path_len = k
    else:
        sa.kind = 3
        sa.raw = p + 2
        sa.raw_len = n - 2


cdef void put_sockaddr_text(obuf *b, saddr *sa, size_t limit, char *scratch) noexcept nogil:
    """str(SockAddr), cut at limit (normal format)."""
    cdef size_t m = 0, k
    if sa.kind == 1:
        if sa.v6:
            scratch[0] = 91
            memcpy(scratch + 1, sa.addr, sa.addr_len)
            m = 1 + sa.addr_len
            scratch[m] = 93
            m += 1
        else:
            memcpy(scratch, sa.addr, sa.addr_len)
            m = sa.addr_len
        scratch[m] = 58
        m += 1
        m += u64_digits(sa.port, scratch + m)
        put_ascii_cut(b, scratch, m, limit)
    elif sa.kind == 2:
        if sa.abstract:
            scratch[0] = 64
            memcpy(scratch + 1, sa.path, sa.path_len)
            put_text(b, <const uint8_t *>scratch, sa.path_len + 1, limit, False, False)
        else:
            put_text(b, sa.path, sa.path_len, limit, False, False)
    else:
        memcpy(scratch, sa.fam, sa.fam_len)
        m = sa.fam_len
        if sa.raw_len:
            scratch[m] = 58
            m += 1
            for k in range(sa.raw_len):
                scratch[m] = HEX[sa.raw[k] >> 4]
                scratch[m + 1] = HEX[sa.raw[k] & 15]
                m += 2
        put_text(b, <const uint8_t *>scratch, m, limit, False, False)


cdef void put_sockaddr_json(obuf *b, saddr *sa, char *scratch) noexcept nogil:
    """SockAddr.as_json() as a JSON object: always family, addr, port, path, raw (null where
    the family has no such part)."""
    cdef size_t k
    put(b, b'{"family":', 10)
    put_jtext(b, <const uint8_t *>sa.fam, sa.fam_len, 0)
    if sa.kind == 1:
        put(b, b',"addr":', 8)
        put_jstr(b, sa.addr, sa.addr_len)
        put(b, b',"port":', 8)
        put_u64(b, sa.port)
    else:
        put(b, b',"addr":null,"port":null', 24)
    if sa.kind == 2:
        put(b, b',"path":"', 9)
        if sa.abstract:
            putc(b, 64)
        put_text(b, sa.path, sa.path_len, 0, True, False)
        putc(b, 34)
    else:
        put(b, b',"path":null', 12)
    if sa.kind == 3 and sa.raw_len:
        put(b, b',"raw":"', 8)
        if ob_grow(b, 2 * sa.raw_len + 1):
            for k in range(sa.raw_len):
                b.p[b.n] = HEX[sa.raw[k] >> 4]
                b.p[b.n + 1] = HEX[sa.raw[k] & 15]
                b.n += 2
        putc(b, 34)
    else:
        put(b, b',"raw":null', 11)
    putc(b, 125)

# ---- flag names (JSON): (flag set, value) -> text, filled with the GIL, read without ---------------

cdef struct fname:
    uint64_t value
    int32_t set1            # flag set index + 1; 0: empty slot
    const char *text        # owned by Formatter._fname_keep
    size_t len


cdef inline size_t fname_hash(int32_t s, uint64_t v, size_t mask) noexcept nogil:
    return <size_t>(((v ^ (<uint64_t>s << 56)) * <uint64_t>0x9E3779B97F4A7C15ULL) >> 20) & mask

# ---- the formatter ------------------------------------------------------------------------------

cdef enum:
    MEMO = 256
    WHO = 256

cdef struct whokey:             # everything the who-fields of an event are made of (no padding)
    uint32_t pid
    uint32_t tid
    uint32_t uid
    uint32_t gid
    uint32_t has_r
    uint32_t ppid
    uint32_t pcomm_off
    uint32_t pcomm_len
    uint32_t user_off
    uint32_t user_len
    uint32_t group_off
    uint32_t group_len
    uint32_t cmdline_off
    uint32_t cmdline_len
    uint32_t fullpath_off
    uint32_t fullpath_len
    char comm[16]

cdef struct whomemo:
    uint64_t gen
    whokey key
    size_t pos
    size_t len

cdef struct fdmemo:
    uint64_t gen
    uint32_t off
    uint32_t n
    size_t pos
    size_t len

cdef enum:
    FMT_NORMAL = 0
    FMT_JSON = 1

cdef struct ctx:
    const lbd_event *ev
    size_t n
    const uint8_t *arena
    size_t arena_len
    const enrich_row *en
    const uint8_t *st
    size_t st_len
    const fd_row *fds
    size_t fds_len
    const uint8_t *mask
    size_t limit
    int fmt
    const int32_t *pyix         # per event: index into pyents, -1 none (NULL: no py event)
    const pyent *pyents


# JSON "err": the errno name of a failed call's result (-4095 .. -1), from lbd.errnos; 24 bytes
# a name, NUL padded, and its length (0: no name, no key).
cdef enum:
    ERR_MAX = 4095
    ERR_W = 24

from lbd import errnos as _errnos

cdef bytes _ERR_NAMES = b"".join((_errnos.name(k) or "").encode()[:ERR_W].ljust(ERR_W, b"\0") for k in range(ERR_MAX + 1))
cdef bytes _ERR_LENS = bytes(len((_errnos.name(k) or "")[:ERR_W]) for k in range(ERR_MAX + 1))
cdef const char *ERR_NAME = _ERR_NAMES
cdef const uint8_t *ERR_LEN = _ERR_LENS


cdef class Formatter:
    """Formats whole batches into one buffer: `format(batch)` appends, `write_to(fd)` drains.

    Invariants: the buffer (C memory, owned) holds the text of the events formatted since the last
    `write_to`/`getvalue`/`clear`, whole lines only; the descriptor table (names and argument kinds
    per syscall number) is built once from lbd.args and points into bytes objects this object
    keeps alive; the flag-name table only grows (entries stay until `clear_flag_names()`).
    """

    cdef sdesc *desc
    cdef obuf out
    cdef readonly str format_name
    cdef int fmt
    cdef readonly size_t limit
    cdef object _keep
    cdef list flagsets
    cdef char *scratch
    cdef int64_t sec_local, sec_utc
    cdef int64_t tz_read                # monotonic second of the last tzset (see check_zone)
    cdef char tz_env[256]               # TZ when it was last read ("\x01" after it: unset)
    cdef char tbuf_local[32]
    cdef char tbuf_utc[32]
    cdef fname *fnames
    cdef size_t fn_cap, fn_used
    cdef list _fname_keep
    cdef readonly uint64_t events_formatted
    cdef readonly bint capture_env
    cdef readonly str secret_pattern
    cdef bytes _secret                 # secret_pattern in UTF-8 (surrogateescape), owns sp
    cdef const uint8_t *sp
    cdef size_t spn
    cdef fdmemo memo[MEMO]             # fd list text already written in this format() call
    cdef uint64_t memo_gen             # bumped by every format() call: older entries are stale
    cdef whomemo who[WHO]              # the who-fields text (user .. ppid) already written, by tid
    cdef pyent *pyents                 # the py pre-pass's results of the current format() call
    cdef size_t py_cap
    cdef int32_t *pyix
    cdef size_t pyix_cap
    cdef list _py_keep                 # the bytes pyents point into

    def __cinit__(self):
        self.desc = <sdesc *>calloc(NSC, sizeof(sdesc))
        self.scratch = <char *>malloc(16384)
        self.fn_cap = 1024
        self.fnames = <fname *>calloc(self.fn_cap, sizeof(fname))
        if self.desc == NULL or self.scratch == NULL or self.fnames == NULL:
            raise MemoryError()
        memset(&self.out, 0, sizeof(obuf))
        self.sec_local = -1
        self.sec_utc = -1
        self.tz_read = -1
        self.tz_env[0] = 1
        self.tz_env[1] = 0

    def __dealloc__(self):
        free(self.pyents)
        free(self.pyix)
        free(self.desc)
        free(self.scratch)
        free(self.fnames)
        free(self.out.p)

    def __init__(self, str format="normal", size_t limit=0, *, bint capture_env=False, str secret_pattern=""):
        """format: "normal" or "json"; limit: str_max_size (0: no limit); capture_env: write envp
        (else NULL), with the values of names matching secret_pattern as *** (lbd/lbd_text.h)."""
        if format not in ("normal", "json"):
            raise ValueError(f"format {format!r}: 'normal' or 'json'")
        self.format_name = format
        self.fmt = FMT_JSON if format == "json" else FMT_NORMAL
        self.limit = limit
        self.capture_env = capture_env
        self.secret_pattern = secret_pattern
        self._secret = secret_pattern.encode("utf-8", "surrogateescape")
        self.sp = <const uint8_t *>(<const char *>self._secret)
        self.spn = len(self._secret)
        self._fname_keep = []
        self.flagsets = []
        keep = []
        index = {}
        cdef int nr, k
        cdef bytes bname
        for nr in range(NSC):
            name = _args.syscall_name(nr)
            specs = _args.arg_specs(nr)
            bname = name.encode()
            keep.append(bname)
            self.desc[nr].name = bname
            self.desc[nr].name_len = len(bname)
            if specs is None:
                self.desc[nr].nargs = -1
                continue
            self.desc[nr].nargs = min(len(specs), MAXA)
            jnames = _args.json_arg_names(nr)
            for k, a in enumerate(specs[:MAXA]):
                self.desc[nr].a[k].py = a.kind_id in _args.SPEC_KINDS or a.flags in _flags.SWITCHES
                self.desc[nr].a[k].strip_nul = _args.strips_nul(nr, k)
                if self.desc[nr].a[k].py:
                    self.desc[nr].has_py = True
                an = a.name.encode()
                keep.append(an)
                jn = jnames[k].encode()
                keep.append(jn)
                self.desc[nr].a[k].jname = jn
                self.desc[nr].a[k].jname_len = len(jn)
                self.desc[nr].a[k].kind = a.kind_id
                self.desc[nr].a[k].bits = a.bits
                self.desc[nr].a[k].name = an
                self.desc[nr].a[k].name_len = len(an)
                self.desc[nr].a[k].env = a.name == "envp" and a.kind == "strarr"
                if a.flags in _flags.SWITCHES:
                    self.desc[nr].a[k].flagset = -2
                elif a.flags:
                    if a.flags not in index:
                        index[a.flags] = len(self.flagsets)
                        self.flagsets.append(a.flags)
                    self.desc[nr].a[k].flagset = index[a.flags]
                else:
                    self.desc[nr].a[k].flagset = -1
        self._keep = keep

    # ---- buffer ------------------------------------------------------------------------------

    @property
    def buffered(self):
        """Bytes formatted and not yet written."""
        return self.out.n

    def getvalue(self):
        """The buffered text as bytes; the buffer is emptied."""
        v = PyBytes_FromStringAndSize(self.out.p, self.out.n) if self.out.n else b""
        self.out.n = 0
        return v

    def clear(self):
        self.out.n = 0

    @property
    def buffered_lines(self):
        """Lines (events) formatted and not yet written, the one partly written included."""
        cdef size_t k = 0, lines = 0
        cdef const char *q
        while k < self.out.n:
            q = <const char *>memchr(self.out.p + k, 10, self.out.n - k)
            if q == NULL:
                break
            lines += 1
            k = q - self.out.p + 1
        return lines

    def write_to(self, int fd):
        """Write the whole buffer to fd (GIL released), then empty it.  Raises OSError (with what
        was not written still buffered).  An interrupted write returns to Python to run the
        signal handlers (and raises what they raise) before it goes on."""
        cdef size_t done = 0
        while self.out.n:
            try:
                done += self.write_some(fd, 0, True)[0]
            except InterruptedError:
                pass
            PyErr_CheckSignals()        # a Cython loop: the interpreter would not run the handlers
        return done

    def line_end(self):
        """Bytes up to and including the first newline of the buffer (all of it when none)."""
        cdef const char *q
        if not self.out.n:
            return 0
        q = <const char *>memchr(self.out.p, 10, self.out.n)
        return self.out.n if q == NULL else q - self.out.p + 1

    def write_some(self, int fd, size_t limit=0, bint partial=False):
        """One write(2) of the buffer's start: (bytes written, lines completed, bytes of the
        last line written after its last newline); the bytes written leave the buffer.

        limit: at most this many bytes (0: the whole buffer); unless partial, cut back to the
        end of a line, and when not even one line fits nothing is written: (0, 0, 0).  A write
        that takes fewer bytes than asked may still end inside a line (the third value says how
        far in).  OSError when write(2) fails (EINTR and EAGAIN included: nothing was written);
        a write that takes nothing at all is ENOSPC."""
        cdef size_t n = self.out.n, k, lines = 0, last = 0
        cdef ssize_t r
        cdef int err = 0
        cdef const char *q
        if limit and limit < n:
            n = limit
            if not partial:
                while n and self.out.p[n - 1] != 10:
                    n -= 1
        if n == 0:
            return (0, 0, 0)
        with nogil:
            r = c_write(fd, self.out.p, n)
            if r < 0:
                err = errno
            elif r == 0:
                err = 28            # ENOSPC: a device that takes nothing
            else:
                k = 0
                while k < <size_t>r:
                    q = <const char *>memchr(self.out.p + k, 10, <size_t>r - k)
                    if q == NULL:
                        break
                    lines += 1
                    k = q - self.out.p + 1
                    last = k
                memmove_front(&self.out, <size_t>r)
        if err:
            raise OSError(err, os.strerror(err))
        return (<size_t>r, lines, <size_t>r - last)

    # ---- flag names --------------------------------------------------------------------------

    cdef const fname *fname_get(self, int32_t s, uint64_t v) noexcept nogil:
        cdef size_t mask = self.fn_cap - 1
        cdef size_t h = fname_hash(s + 1, v, mask)
        cdef fname *e
        while True:
            e = &self.fnames[h]
            if e.set1 == 0:
                return NULL
            if e.set1 == s + 1 and e.value == v:
                return e
            h = (h + 1) & mask

    cdef int fname_put(self, int32_t s, uint64_t v) except -1:
        cdef bytes text = _flags.names(self.flagsets[s], v).encode()
        cdef size_t mask, h, k
        cdef fname *old
        cdef size_t old_cap
        if 2 * (self.fn_used + 1) > self.fn_cap:
            old, old_cap = self.fnames, self.fn_cap
            self.fnames = <fname *>calloc(2 * old_cap, sizeof(fname))
            if self.fnames == NULL:
                self.fnames = old
                raise MemoryError()
            self.fn_cap = 2 * old_cap
            mask = self.fn_cap - 1
            for k in range(old_cap):
                if old[k].set1:
                    h = fname_hash(old[k].set1, old[k].value, mask)
                    while self.fnames[h].set1:
                        h = (h + 1) & mask
                    self.fnames[h] = old[k]
            free(old)
        mask = self.fn_cap - 1
        h = fname_hash(s + 1, v, mask)
        while self.fnames[h].set1:
            h = (h + 1) & mask
        self._fname_keep.append(text)
        self.fnames[h].set1 = s + 1
        self.fnames[h].value = v
        self.fnames[h].text = text
        self.fnames[h].len = len(text)
        self.fn_used += 1
        return 0

    def clear_flag_names(self):
        memset(self.fnames, 0, self.fn_cap * sizeof(fname))
        self.fn_used = 0
        self._fname_keep = []

    cdef int prefetch_flag_names(self, ctx *c) except -1:
        """The pre-pass (GIL held): make sure every flag value of the batch has its name."""
        cdef size_t i
        cdef int k
        cdef const lbd_event *e
        cdef const sdesc *d
        cdef uint64_t v
        if self.fn_used > 65536:
            self.clear_flag_names()
        for i in range(c.n):
            if c.mask != NULL and not c.mask[i]:
                continue
            e = c.ev + i
            if e.h.nr >= NSC:
                continue
            d = self.desc + e.h.nr
            if d.nargs <= 0 or e.h.flags & F_NOENTER:
                continue
            for k in range(d.nargs):
                if d.a[k].flagset >= 0:
                    v = mask_bits(e.h.args[k], d.a[k].bits)
                    if self.fname_get(d.a[k].flagset, v) == NULL:
                        self.fname_put(d.a[k].flagset, v)
        return 0

    # ---- the Python pre-pass: structures and dependent names ---------------------------------

    cdef int py_prepass(self, ctx *c, arena) except -1:
        """For every event with a py argument (a structure, an array32, a Switch name set), the
        text lbd.args gives for it (GIL held; these syscalls are the rare ones), kept in pyents
        for the nogil pass."""
        cdef size_t i, m = 0
        cdef int k
        cdef const lbd_event *e
        cdef const sdesc *d
        cdef pyent *pe
        self._py_keep = []
        for i in range(c.n):
            if c.mask != NULL and not c.mask[i]:
                continue
            e = c.ev + i
            if e.h.nr < NSC and self.desc[e.h.nr].has_py and not e.h.flags & F_NOENTER:
                m += 1
        if m == 0:
            return 0
        if self.pyix_cap < c.n:
            free(self.pyix)
            self.pyix = <int32_t *>malloc(c.n * sizeof(int32_t))
            self.pyix_cap = c.n if self.pyix != NULL else 0
        if self.py_cap < m:
            free(self.pyents)
            self.pyents = <pyent *>malloc(m * sizeof(pyent))
            self.py_cap = m if self.pyents != NULL else 0
        if self.pyix == NULL or self.pyents == NULL:
            raise MemoryError()
        ar = memoryview(arena).cast("B") if not isinstance(arena, bytes) else arena
        m = 0
        for i in range(c.n):
            self.pyix[i] = -1
            if c.mask != NULL and not c.mask[i]:
                continue
            e = c.ev + i
            if e.h.nr >= NSC:
                continue
            d = self.desc + e.h.nr
            if not d.has_py or e.h.flags & F_NOENTER:
                continue
            pe = self.pyents + m
            memset(pe, 0, sizeof(pyent))
            payloads = []
            for k in range(MAXA):
                ln = e.h.slot[k].len
                st = e.rec + e.h.slot[k].off
                payloads.append(bytes(ar[st: st + ln]) if ln and st + ln <= c.arena_len else None)
            raws = [e.h.args[k] for k in range(MAXA)]
            offs = [e.h.slot[k].off for k in range(MAXA)]
            parts = _args.py_parts(e.h.nr, e.h.flags, raws, payloads, offs, c.limit, c.fmt == FMT_JSON)
            for k, val, fla, fln in parts:
                if val is not None:
                    self._py_keep.append(val)
                    pe.val[k] = val
                    pe.vlen[k] = len(val)
                if fla:
                    self._py_keep.append(fla)
                    self._py_keep.append(fln)
                    pe.fla[k] = fla
                    pe.flalen[k] = len(fla)
                    pe.fln[k] = fln
                    pe.flnlen[k] = len(fln)
            self.pyix[i] = <int32_t>m
            m += 1
        c.pyix = self.pyix
        c.pyents = self.pyents
        return 0

    # ---- formatting --------------------------------------------------------------------------

    def format(self, batch, mask=None):
        """Append the text of batch's events (those with a true `mask` entry) to the buffer.

        Uses batch.enrich / strtab / fdtab when the batch has them (for this fill), else the
        kernel's values alone.  Returns the number of events formatted."""
        en = batch.enrich if has_enrichment(batch) else None
        return self.format_arrays(batch.events, batch.arena, en,
                                  getattr(batch, "strtab", None) if en is not None else None,
                                  getattr(batch, "fdtab", None) if en is not None else None, mask)

    def format_arrays(self, events, arena, enrich=None, strtab=None, fdtab=None, mask=None):
        """format() on the arrays themselves (events: EVENT_DTYPE rows; arena: the batch's bytes)."""
        cdef ctx c
        cdef size_t before = self.out.n
        cdef cnp.ndarray ev_a = np.ascontiguousarray(events)
        cdef cnp.ndarray ar_a = np.ascontiguousarray(arena, dtype=np.uint8)
        cdef cnp.ndarray en_a, st_a, fd_a, m_a
        if ev_a.dtype.itemsize != sizeof(lbd_event) or ev_a.ndim != 1:
            raise TypeError("events: a 1-d array of lbd.record.EVENT_DTYPE rows")
        memset(&c, 0, sizeof(ctx))
        c.ev = <const lbd_event *>cnp.PyArray_DATA(ev_a)
        c.n = ev_a.shape[0]
        c.arena = <const uint8_t *>cnp.PyArray_DATA(ar_a)
        c.arena_len = ar_a.shape[0]
        c.limit = self.limit
        c.fmt = self.fmt
        if enrich is not None:
            en_a = np.ascontiguousarray(enrich)
            st_a = np.ascontiguousarray(strtab if strtab is not None else np.zeros(0, np.uint8), dtype=np.uint8)
            fd_a = np.ascontiguousarray(fdtab if fdtab is not None else np.zeros(0, FD_DTYPE))
            if en_a.dtype != ENRICH_DTYPE or <size_t>en_a.shape[0] != c.n:
                raise TypeError("enrich: ENRICH_DTYPE rows, one per event")
            if fd_a.dtype != FD_DTYPE:
                raise TypeError("fdtab: FD_DTYPE rows")
            c.en = <const enrich_row *>cnp.PyArray_DATA(en_a)
            c.st = <const uint8_t *>cnp.PyArray_DATA(st_a)
            c.st_len = st_a.shape[0]
            c.fds = <const fd_row *>cnp.PyArray_DATA(fd_a)
            c.fds_len = fd_a.shape[0]
        if mask is not None:
            m_a = np.ascontiguousarray(mask, dtype=np.uint8)
            if <size_t>m_a.shape[0] != c.n:
                raise ValueError("mask: one entry per event")
            c.mask = <const uint8_t *>cnp.PyArray_DATA(m_a)
        if c.fmt == FMT_JSON:
            self.prefetch_flag_names(&c)
        self.check_zone()
        self.py_prepass(&c, arena)
        cdef size_t done
        with nogil:
            done = self.run(&c)
        if self.out.err:
            self.out.err = 0
            self.out.n = before
            raise MemoryError("lbd._format: out of memory for the output buffer")
        self.events_formatted += done
        return done

    # The fds of consecutive events of a process are mostly the same rows (one enrichment state):
    # their text is copied from where this call wrote it first instead of formatted again.

    cdef inline bint memo_hit(self, const enrich_row *r) noexcept nogil:
        cdef fdmemo *m = &self.memo[(r.fds_off * 31 + r.fds_n) & (MEMO - 1)]
        cdef obuf *b = &self.out
        if m.gen != self.memo_gen or m.off != r.fds_off or m.n != r.fds_n:
            return False
        if not ob_grow(b, m.len):
            return True
        memcpy(b.p + b.n, b.p + m.pos, m.len)    # from earlier in the buffer: no overlap
        b.n += m.len
        return True

    cdef inline void memo_put(self, const enrich_row *r, size_t start) noexcept nogil:
        cdef fdmemo *m = &self.memo[(r.fds_off * 31 + r.fds_n) & (MEMO - 1)]
        m.gen = self.memo_gen
        m.off = r.fds_off
        m.n = r.fds_n
        m.pos = start
        m.len = self.out.n - start

    # Likewise the fields that say who made the call (pid .. cmdline .. parent) repeat for every
    # event of a thread in one enrichment state: copied when every field they come from is equal.

    cdef inline bint who_hit(self, const lbd_event *e, const whokey *key) noexcept nogil:
        cdef whomemo *m = &self.who[e.h.tid & (WHO - 1)]
        cdef obuf *b = &self.out
        if m.gen != self.memo_gen or memcmp(&m.key, key, sizeof(whokey)) != 0:
            return False
        if not ob_grow(b, m.len):
            return True
        memcpy(b.p + b.n, b.p + m.pos, m.len)
        b.n += m.len
        return True

    cdef inline void who_put(self, const lbd_event *e, const whokey *key, size_t start) noexcept nogil:
        cdef whomemo *m = &self.who[e.h.tid & (WHO - 1)]
        m.gen = self.memo_gen
        m.key = key[0]
        m.pos = start
        m.len = self.out.n - start

    cdef size_t run(self, ctx *c) noexcept nogil:
        cdef size_t i, done = 0
        self.memo_gen += 1
        for i in range(c.n):
            if c.mask != NULL and not c.mask[i]:
                continue
            if c.ev[i].h.nr >= NSC:
                continue                # the decoder never lets one through
            if c.fmt == FMT_JSON:
                self.json_event(c, i)
            else:
                self.normal_event(c, i)
            done += 1
        return done

    # -- shared pieces

    cdef void check_zone(self) noexcept nogil:
        """The local time zone as the process has it now, once per format() call: glibc's
        localtime_r reads TZ and /etc/localtime once per process, so a zone changed during a run
        (TZ set, the host's zone changed) left the normal format's times in the old zone while
        Falco's prefix and linux.time (plugin/lbd_extract.c) moved.  A changed TZ is seen at the
        next call; the zone file (a stat, in tzset) is looked at once per second at most."""
        cdef timespec now
        cdef const char *tz = getenv("TZ")
        cdef size_t k = 0
        cdef bint same = False
        clock_gettime(CLOCK_MONOTONIC_COARSE, &now)
        if tz == NULL:
            same = self.tz_env[0] == 1 and self.tz_env[1] == 0
        else:
            while k < 255 and tz[k] != 0 and tz[k] == self.tz_env[k]:
                k += 1
            same = tz[k] == self.tz_env[k] and (tz[k] == 0 or k == 255)
        if same and <int64_t>now.tv_sec == self.tz_read:
            return
        tzset()
        self.tz_read = <int64_t>now.tv_sec
        self.sec_local = -1                 # the cached second's text may be another zone's
        if tz == NULL:
            self.tz_env[0] = 1
            self.tz_env[1] = 0
        else:
            k = 0
            while k < 255 and tz[k] != 0:
                self.tz_env[k] = tz[k]
                k += 1
            self.tz_env[k] = 0

    cdef void put_time(self, int64_t ns, bint utc) noexcept nogil:
        cdef int64_t sec = ns // 1000000000
        cdef int64_t frac = ns % 1000000000
        cdef time_t t
        cdef tm tmv
        cdef char *buf
        if utc:
            buf = &self.tbuf_utc[0]
        else:
            buf = &self.tbuf_local[0]
        if frac < 0:
            frac += 1000000000
            sec -= 1
        if (self.sec_utc if utc else self.sec_local) != sec:
            t = <time_t>sec
            if utc:
                gmtime_r(&t, &tmv)
            else:
                localtime_r(&t, &tmv)
            pad_at(buf, tmv.tm_year + 1900, 4)
            buf[4] = 45
            pad_at(buf + 5, tmv.tm_mon + 1, 2)
            buf[7] = 45
            pad_at(buf + 8, tmv.tm_mday, 2)
            buf[10] = 84 if utc else 32
            pad_at(buf + 11, tmv.tm_hour, 2)
            buf[13] = 58
            pad_at(buf + 14, tmv.tm_min, 2)
            buf[16] = 58
            pad_at(buf + 17, tmv.tm_sec, 2)
            buf[19] = 46
            if utc:
                self.sec_utc = sec
            else:
                self.sec_local = sec
        put(&self.out, buf, 20)
        put_pad(&self.out, <uint64_t>frac, 9)

    cdef void put_comm(self, const lbd_event *e, bint json) noexcept nogil:
        cdef size_t k = 0
        while k < 16 and e.h.comm[k] != 0:
            k += 1
        put_text(&self.out, <const uint8_t *>e.h.comm, k, 0, json, False)

    # -- normal

    cdef void normal_event(self, ctx *c, size_t i) noexcept nogil:
        cdef obuf *b = &self.out
        cdef const lbd_event *e = c.ev + i
        cdef const sdesc *d = self.desc + e.h.nr
        cdef const enrich_row *r = c.en + i if c.en != NULL else NULL
        cdef const uint8_t *s
        cdef size_t sn, k, f_end, start
        cdef const fd_row *f
        cdef whokey key
        putc(b, 91)
        self.put_time(<int64_t>e.h.ts, False)
        put(b, b"]: ", 3)
        put_text(b, <const uint8_t *>d.name, d.name_len, 0, False, False)
        put(b, b", syscall_id=", 13)
        put_u64(b, e.h.nr)
        put(b, b", dir=", 6)
        putc(b, <char>e.h.dir)
        put(b, b", res=", 6)
        put_i64(b, e.h.res)
        who_key(e, r, &key)
        if not self.who_hit(e, &key):
            start = b.n
            put(b, b", user=", 7)
            if r != NULL:
                estr(c, r.user_off, r.user_len, &s, &sn)
                put_text(b, s, sn, 0, False, False)
            else:
                put_u64(b, e.h.uid)
            put(b, b", comm=(", 8)
            self.put_comm(e, False)
            put(b, b"), cmdline=(", 12)
            if r != NULL:
                estr(c, r.cmdline_off, r.cmdline_len, &s, &sn)
                put_text(b, s, sn, c.limit, False, False)
            else:
                k = 0
                while k < 16 and e.h.comm[k] != 0:
                    k += 1
                put_text(b, <const uint8_t *>e.h.comm, k, c.limit, False, False)
            put(b, b"), pid=", 7)
            put_u64(b, e.h.pid)
            put(b, b", tid=", 6)
            put_u64(b, e.h.tid)
            put(b, b", ppid=", 7)
            put_u64(b, r.ppid if r != NULL else e.h.ppid)
            putc(b, 40)
            if r != NULL:
                estr(c, r.pcomm_off, r.pcomm_len, &s, &sn)
                put_text(b, s, sn, 0, False, False)
            self.who_put(e, &key, start)
        put(b, b"), args=(", 9)
        self.normal_args(c, e, d)
        put(b, b"), fds=[", 8)
        if r != NULL and r.fds_n and <size_t>r.fds_off + r.fds_n <= c.fds_len and not self.memo_hit(r):
            start = b.n
            f_end = <size_t>r.fds_off + r.fds_n
            for k in range(r.fds_off, f_end):
                f = c.fds + k
                if k != r.fds_off:
                    put(b, b", ", 2)
                put_i64(b, f.fd)
                putc(b, 40)
                estr(c, f.path_off, f.path_len, &s, &sn)
                put_text(b, s, sn, 0, False, False)
                putc(b, 41)
            self.memo_put(r, start)
        put(b, b"]\n", 2)

    cdef void normal_args(self, ctx *c, const lbd_event *e, const sdesc *d) noexcept nogil:
        cdef obuf *b = &self.out
        cdef int k, kind
        cdef uint64_t raw
        cdef const uint8_t *p
        cdef size_t pn, m
        cdef bint present
        cdef char num[32]
        cdef saddr sa
        cdef const pyent *pe = NULL
        if d.nargs <= 0 or e.h.flags & F_NOENTER:
            return
        if c.pyix != NULL and c.pyix[e - c.ev] >= 0:
            pe = c.pyents + c.pyix[e - c.ev]
        for k in range(d.nargs):
            if k:
                put(b, b", ", 2)
            put(b, d.a[k].name, d.a[k].name_len)
            putc(b, 61)
            kind = d.a[k].kind
            raw = e.h.args[k]
            if is_int_kind(kind):
                m = int_text(kind, d.a[k].bits, raw, num)
                put_ascii_cut(b, num, m, c.limit)
                continue
            pn = e.h.slot[k].len
            if pn and <size_t>e.rec + e.h.slot[k].off + pn > c.arena_len:
                pn = 0                  # outside the arena: never from the decoder
            p = c.arena + e.rec + e.h.slot[k].off if pn else NULL
            if d.a[k].env and not self.capture_env:
                put(b, b"NULL", 4)      # the environment, not captured
                continue
            if is_unreadable(e, k, pn, raw):
                put(b, b"<unreadable>", 12)
                continue
            if pe != NULL and pe.val[k] != NULL:
                put(b, pe.val[k], pe.vlen[k])       # cut and escaped by the pre-pass
                continue
            present = is_present(e, k, pn, raw, kind)
            if not present:
                put(b, b"NULL", 4)
            elif kind == K_STR or kind == K_PATH or kind == K_BUF or kind == K_OUT_BUF:
                if d.a[k].strip_nul and pn and p[pn - 1] == 0:
                    pn -= 1
                put_text(b, p, pn, c.limit, False, False)
            elif kind == K_STRARR:
                if pn and p[pn - 1] == 0:
                    pn -= 1
                if d.a[k].env:
                    self.put_env_normal(p, pn, c.limit)
                else:
                    put_text(b, p, pn, c.limit, False, True)
            elif kind == K_SOCKADDR or kind == K_OUT_SOCKADDR:
                parse_sockaddr(p, pn, &sa)
                if sa.kind == 0:
                    put(b, b"NULL", 4)
                else:
                    put_sockaddr_text(b, &sa, c.limit, self.scratch)
            elif kind == K_OUT_FD2:
                if pn == 8:
                    m = i64_digits((<const int32_t *>p)[0], num)
                    num[m] = 32
                    m += 1
                    m += i64_digits((<const int32_t *>p)[1], num + m)
                    put_ascii_cut(b, num, m, c.limit)
                else:
                    put(b, b"NULL", 4)
            elif kind == K_OUT_INT:
                if pn == 4:
                    m = i64_digits((<const int32_t *>p)[0], num)
                    put_ascii_cut(b, num, m, c.limit)
                else:
                    put(b, b"NULL", 4)
            else:
                m = u64_digits(raw, num)
                put_ascii_cut(b, num, m, c.limit)

    # -- the environment (capture_env): NAME=VALUE strings, secret values masked

    cdef void put_env_normal(self, const uint8_t *p, size_t pn, size_t limit) noexcept nogil:
        """The strings of p[:pn] (NUL-separated) joined by spaces, each secret one as NAME=***,
        cut at limit characters as one value (reference.format_value of env_value)."""
        cdef obuf *b = &self.out
        cdef size_t j, start = 0, count = 0, nl
        cdef bint first = True
        for j in range(pn + 1):
            if j == pn or p[j] == 0:
                if not first and put_text_at(b, <const uint8_t *>b" ", 1, limit, False, False, &count):
                    return
                first = False
                if lbd_secret_name(self.sp, self.spn, p + start, j - start, &nl):
                    if (put_text_at(b, p + start, nl, limit, False, False, &count)
                            or put_text_at(b, <const uint8_t *>b"=***", 4, limit, False, False, &count)):
                        return
                elif put_text_at(b, p + start, j - start, limit, False, True, &count):
                    return
                start = j + 1

    cdef void put_env_json(self, const uint8_t *s, size_t n, size_t limit) noexcept nogil:
        """One environment string as a JSON string (NAME=*** when secret), cut at limit."""
        cdef obuf *b = &self.out
        cdef size_t count = 0, nl
        putc(b, 34)
        if lbd_secret_name(self.sp, self.spn, s, n, &nl):
            if not put_text_at(b, s, nl, limit, True, False, &count):
                put_text_at(b, <const uint8_t *>b"=***", 4, limit, True, False, &count)
        else:
            put_text(b, s, n, limit, True, False)
        putc(b, 34)

    # -- json

    cdef void json_event(self, ctx *c, size_t i) noexcept nogil:
        cdef obuf *b = &self.out
        cdef const lbd_event *e = c.ev + i
        cdef const sdesc *d = self.desc + e.h.nr
        cdef const enrich_row *r = c.en + i if c.en != NULL else NULL
        cdef const uint8_t *s
        cdef size_t sn, k, f_end, start
        cdef const fd_row *f
        cdef whokey key
        put(b, b'{"time":"', 9)
        self.put_time(<int64_t>e.h.ts, True)
        put(b, b'Z","ts":', 8)
        put_u64(b, e.h.ts)
        put(b, b',"syscall":', 11)
        put_jtext(b, <const uint8_t *>d.name, d.name_len, 0)
        put(b, b',"nr":', 6)
        put_u64(b, e.h.nr)
        put(b, b',"dir":"', 8)
        putc(b, <char>e.h.dir)
        put(b, b'","res":', 8)
        put_i64(b, e.h.res)
        if e.h.res < 0 and e.h.res >= -ERR_MAX and ERR_LEN[-e.h.res]:
            put(b, b',"err":"', 8)
            put(b, ERR_NAME + (-e.h.res) * ERR_W, ERR_LEN[-e.h.res])
            putc(b, 34)
        else:
            put(b, b',"err":""', 9)           # always a string: readers infer types from the first lines
        put(b, b',"latency":', 11)
        put_u64(b, e.h.latency)
        who_key(e, r, &key)
        if not self.who_hit(e, &key):
            start = b.n
            put(b, b',"pid":', 7)
            put_u64(b, e.h.pid)
            put(b, b',"tid":', 7)
            put_u64(b, e.h.tid)
            put(b, b',"ppid":', 8)
            put_u64(b, r.ppid if r != NULL else e.h.ppid)
            put(b, b',"pcomm":', 9)
            if r != NULL:
                estr(c, r.pcomm_off, r.pcomm_len, &s, &sn)
                put_jtext(b, s, sn, 0)
            else:
                put(b, b'""', 2)
            put(b, b',"uid":', 7)
            put_u64(b, e.h.uid)
            put(b, b',"user":', 8)
            if r != NULL:
                estr(c, r.user_off, r.user_len, &s, &sn)
                put_jtext(b, s, sn, 0)
            else:
                putc(b, 34)
                put_u64(b, e.h.uid)
                putc(b, 34)
            put(b, b',"gid":', 7)
            put_u64(b, e.h.gid)
            put(b, b',"group":', 9)
            if r != NULL:
                estr(c, r.group_off, r.group_len, &s, &sn)
                put_jtext(b, s, sn, 0)
            else:
                putc(b, 34)
                put_u64(b, e.h.gid)
                putc(b, 34)
            put(b, b',"comm":"', 9)
            self.put_comm(e, True)
            put(b, b'","cmdline":', 12)
            if r != NULL:
                estr(c, r.cmdline_off, r.cmdline_len, &s, &sn)
                put_jtext(b, s, sn, c.limit)
            else:
                k = 0
                while k < 16 and e.h.comm[k] != 0:
                    k += 1
                put_jtext(b, <const uint8_t *>e.h.comm, k, c.limit)
            put(b, b',"fullpath":', 12)
            if r != NULL:
                estr(c, r.fullpath_off, r.fullpath_len, &s, &sn)
                put_jtext(b, s, sn, 0)
            else:
                put(b, b'""', 2)
            self.who_put(e, &key, start)
        put(b, b',"args":{', 9)
        self.json_args(c, e, d)
        putc(b, 125)
        self.json_extras(c, e, d)
        put(b, b',"fds":{"fd":[', 14)
        if r != NULL and r.fds_n and <size_t>r.fds_off + r.fds_n <= c.fds_len:
            if not self.memo_hit(r):
                start = b.n
                f_end = <size_t>r.fds_off + r.fds_n
                for k in range(r.fds_off, f_end):
                    if k != r.fds_off:
                        putc(b, 44)
                    put_i64(b, c.fds[k].fd)
                put(b, b'],"path":[', 10)
                for k in range(r.fds_off, f_end):
                    f = c.fds + k
                    if k != r.fds_off:
                        putc(b, 44)
                    estr(c, f.path_off, f.path_len, &s, &sn)
                    put_jtext(b, s, sn, 0)
                self.memo_put(r, start)
        else:
            put(b, b'],"path":[', 10)
        put(b, b"]}}\n", 4)

    cdef void json_args(self, ctx *c, const lbd_event *e, const sdesc *d) noexcept nogil:
        """The members of "args": every argument that has a value, by its JSON name."""
        cdef obuf *b = &self.out
        cdef int k, kind
        cdef uint64_t raw
        cdef const uint8_t *p
        cdef size_t pn, m, j, start
        cdef bint present, first = True, item
        cdef char num[32]
        cdef saddr sa
        cdef const pyent *pe = NULL
        if d.nargs <= 0 or e.h.flags & F_NOENTER:
            return
        if c.pyix != NULL and c.pyix[e - c.ev] >= 0:
            pe = c.pyents + c.pyix[e - c.ev]
        for k in range(d.nargs):
            kind = d.a[k].kind
            raw = e.h.args[k]
            if is_int_kind(kind):
                if not first:
                    putc(b, 44)
                first = False
                put_key(b, d.a[k].jname, d.a[k].jname_len)
                m = json_int_text(kind, d.a[k].bits, raw, num)
                put(b, num, m)
                continue
            pn = e.h.slot[k].len
            if pn and <size_t>e.rec + e.h.slot[k].off + pn > c.arena_len:
                pn = 0                  # outside the arena: never from the decoder
            p = c.arena + e.rec + e.h.slot[k].off if pn else NULL
            if d.a[k].env and not self.capture_env:
                continue                # the environment, not captured: left out
            if is_unreadable(e, k, pn, raw):
                continue                # named in "unreadable"
            if pe != NULL and pe.val[k] != NULL:
                if not first:
                    putc(b, 44)
                first = False
                put_key(b, d.a[k].jname, d.a[k].jname_len)
                put(b, pe.val[k], pe.vlen[k])
                continue
            present = is_present(e, k, pn, raw, kind)
            if not present or d.a[k].py:
                continue                # no value: left out
            if kind == K_SOCKADDR or kind == K_OUT_SOCKADDR:
                parse_sockaddr(p, pn, &sa)
                if sa.kind == 0:
                    continue
            elif (kind == K_OUT_FD2 and pn != 8) or (kind == K_OUT_INT and pn != 4):
                continue
            if not first:
                putc(b, 44)
            first = False
            put_key(b, d.a[k].jname, d.a[k].jname_len)
            if kind == K_STR or kind == K_PATH or kind == K_BUF or kind == K_OUT_BUF:
                if d.a[k].strip_nul and pn and p[pn - 1] == 0:
                    pn -= 1
                put_jtext(b, p, pn, c.limit)
            elif kind == K_STRARR:
                putc(b, 91)
                if pn and p[pn - 1] == 0:
                    pn -= 1
                    # "a\0b\0" -> ["a", "b"]; "" -> []
                if pn or (e.h.slot[k].len and p[0] == 0):
                    start = 0
                    item = False
                    for j in range(pn + 1):
                        if j == pn or p[j] == 0:
                            if item:
                                putc(b, 44)
                            item = True
                            if d.a[k].env:
                                self.put_env_json(p + start, j - start, c.limit)
                            else:
                                put_jtext(b, p + start, j - start, c.limit)
                            start = j + 1
                putc(b, 93)
            elif kind == K_SOCKADDR or kind == K_OUT_SOCKADDR:
                put_sockaddr_json(b, &sa, self.scratch)
            elif kind == K_OUT_FD2:
                putc(b, 91)
                put_i64(b, (<const int32_t *>p)[0])
                putc(b, 44)
                put_i64(b, (<const int32_t *>p)[1])
                putc(b, 93)
            elif kind == K_OUT_INT:
                put_i64(b, (<const int32_t *>p)[0])
            else:
                put_i64(b, <int64_t>raw)

    cdef void json_extras(self, ctx *c, const lbd_event *e, const sdesc *d) noexcept nogil:
        """"flag_names" ({"arg": [...], "names": [...]}) and "truncated" ([...]), always written,
        empty when the event has none."""
        cdef obuf *b = &self.out
        cdef int k, n = 0
        cdef bint first = True
        cdef const fname *fn
        cdef const fname *fns[MAXA]
        cdef const pyent *pe = NULL
        cdef size_t pn
        if d.nargs > 0 and not e.h.flags & F_NOENTER:
            n = d.nargs
            if c.pyix != NULL and c.pyix[e - c.ev] >= 0:
                pe = c.pyents + c.pyix[e - c.ev]
        put(b, b',"flag_names":{"arg":[', 22)
        for k in range(n):
            fns[k] = NULL
            if d.a[k].flagset >= 0:
                fns[k] = self.fname_get(d.a[k].flagset, mask_bits(e.h.args[k], d.a[k].bits))
            if fns[k] != NULL:
                if not first:
                    putc(b, 44)
                first = False
                put_jstr(b, d.a[k].jname, d.a[k].jname_len)
            if pe != NULL and pe.fla[k] != NULL:
                if not first:
                    putc(b, 44)
                first = False
                put(b, pe.fla[k], pe.flalen[k])
        put(b, b'],"names":[', 11)
        first = True
        for k in range(n):
            fn = fns[k]
            if fn != NULL:
                if not first:
                    putc(b, 44)
                first = False
                put_jtext(b, <const uint8_t *>fn.text, fn.len, 0)
            if pe != NULL and pe.fln[k] != NULL:
                if not first:
                    putc(b, 44)
                first = False
                put(b, pe.fln[k], pe.flnlen[k])
        put(b, b']},"truncated":[', 16)
        first = True
        for k in range(n):
            if (e.h.flags >> (F_TRUNC_SHIFT + k)) & 1:
                if not first:
                    putc(b, 44)
                first = False
                put_jstr(b, d.a[k].jname, d.a[k].jname_len)
        put(b, b'],"unreadable":[', 16)
        first = True
        for k in range(n):
            pn = e.h.slot[k].len
            if is_unreadable(e, k, pn, e.h.args[k]) and not (d.a[k].env and not self.capture_env):
                if not first:
                    putc(b, 44)
                first = False
                put_jstr(b, d.a[k].jname, d.a[k].jname_len)
        putc(b, 93)


cdef inline bint is_unreadable(const lbd_event *e, int k, size_t pn, uint64_t raw) noexcept nogil:
    """lbd.args.unreadable: a pointer argument whose read faulted and gave nothing."""
    return pn == 0 and raw != 0 and (e.h.flags >> (F_FAULT_SHIFT + k)) & 1


cdef inline bint is_present(const lbd_event *e, int k, size_t pn, uint64_t raw, int kind) noexcept nogil:
    """lbd.args.payload_or_empty gives a value: a payload, or an empty one (read and nothing
    found: the slot has an offset; or an input kind's non-NULL pointer) that did not fault."""
    if pn:
        return True
    if (e.h.flags >> (F_FAULT_SHIFT + k)) & 1:
        return False
    return e.h.slot[k].off != 0 or (empty_ok(kind) and raw != 0)


cdef inline void memmove_front(obuf *b, size_t done) noexcept nogil:
    if done >= b.n:
        b.n = 0
    else:
        memmove(b.p, b.p + done, b.n - done)
        b.n -= done


cdef inline void estr(ctx *c, uint32_t off, uint32_t ln, const uint8_t **p, size_t *n) noexcept nogil:
    """Where an enrichment string is; empty when it does not lie inside the strtab."""
    if ln == 0 or <size_t>off + ln > c.st_len:
        p[0] = NULL
        n[0] = 0
    else:
        p[0] = c.st + off
        n[0] = ln


cdef inline void who_key(const lbd_event *e, const enrich_row *r, whokey *k) noexcept nogil:
    memset(k, 0, sizeof(whokey))
    k.pid = e.h.pid
    k.tid = e.h.tid
    k.uid = e.h.uid
    k.gid = e.h.gid
    memcpy(k.comm, e.h.comm, 16)
    if r != NULL:
        k.has_r = 1
        k.ppid = r.ppid
        k.pcomm_off = r.pcomm_off
        k.pcomm_len = r.pcomm_len
        k.user_off = r.user_off
        k.user_len = r.user_len
        k.group_off = r.group_off
        k.group_len = r.group_len
        k.cmdline_off = r.cmdline_off
        k.cmdline_len = r.cmdline_len
        k.fullpath_off = r.fullpath_off
        k.fullpath_len = r.fullpath_len
    else:
        k.ppid = e.h.ppid


cdef inline uint64_t mask_bits(uint64_t raw, int bits) noexcept nogil:
    return raw if bits >= 64 else raw & ((<uint64_t>1 << bits) - 1)


cdef inline bint is_int_kind(int kind) noexcept nogil:
    return kind < K_STR


cdef inline bint empty_ok(int kind) noexcept nogil:
    return kind == K_STR or kind == K_PATH or kind == K_BUF or kind == K_STRARR


cdef size_t json_int_text(int kind, int bits, uint64_t raw, char *out) noexcept nogil:
    """int_text as JSON writes it: unsigned values >= 2**63 as their signed 64-bit value
    (lbd.args.json_int)."""
    cdef uint64_t v
    if kind == K_INT or kind == K_FD or kind == K_DIRFD or kind == K_PID:
        return int_text(kind, bits, raw, out)
    if kind == K_PTR:
        v = raw
    elif kind == K_UID or kind == K_GID:
        v = raw & <uint64_t>0xFFFFFFFFU
    else:
        v = mask_bits(raw, bits)
    return i64_digits(<int64_t>v, out)


cdef size_t int_text(int kind, int bits, uint64_t raw, char *out) noexcept nogil:
    """lbd.args.decode of an integer kind, in decimal."""
    cdef int sb
    cdef uint64_t v
    if kind == K_INT or kind == K_FD or kind == K_DIRFD or kind == K_PID:
        sb = bits if kind == K_INT else 32
        if sb >= 64:
            return i64_digits(<int64_t>raw, out)
        v = mask_bits(raw, sb)
        if (v >> (sb - 1)) & 1:
            return i64_digits(<int64_t>(v | ~((<uint64_t>1 << sb) - 1)), out)
        return i64_digits(<int64_t>v, out)
    if kind == K_PTR:
        return u64_digits(raw, out)
    if kind == K_UID or kind == K_GID:
        return u64_digits(raw & <uint64_t>0xFFFFFFFFU, out)
    return u64_digits(mask_bits(raw, bits), out)
