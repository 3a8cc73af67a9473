# cython: language_level=3
"""The state engine: process and fd tables kept from the event stream, in event order, and the
enrichment arrays of every batch (lbd/enrich/layout.py: batch.enrich, batch.strtab, batch.fdtab).

`Engine.enrich(batch)` walks the batch's events in their order (the collector's merge makes it the
order the kernel wrote them) and, for each event, first applies what it changes to the tables
(fork, exec, exit, prctl, chdir, every fd creator, dup, fcntl, close, connect, bind, accept: the
state syscalls the probe captures whatever the selection, flagged LBD_F_STATE when not selected),
then writes its row from the tables: so an event sees the state just before it, and the fd it
creates (its "after" state, which is what the fd list means: the process's open files after the
syscall).

Everything per event is C, without the GIL (`run()`): look-ups in an open-addressing pid table,
sorted fd arrays, reference-counted strings that remember where they already are in the arena.
Python is called only on slow paths, each of which makes `run()` return a status and resume at
the same event afterwards (`_slow`): a pid never seen (procfs, through the host), a user or group
id seen for the first time (names), the name of an fd the events cannot tell (rare fd creators:
open_by_handle_at, pidfd_getfd, fsmount, bpf's OBJ_GET), a command line the bcc fallback could not
capture, and growing a numpy buffer.

Semantics (lbd/_testing/state_reference.py is the readable oracle the differential tests hold
this to, event by event):

* process: keyed by tgid.  ppid = the header's ppid when non-zero (CO-RE reads the real parent at
  every record: reparenting shows at once), else the table's (fork record, procfs).  bcc records
  (pidns 0) carry the parent at fork time: when the table knows that parent exited, the process is
  given to the nearest living ancestor that is a child subreaper (prctl), else to 1, as the kernel
  does.  The process's comm is its leader thread's: any event of the leader (tid == pid), exec
  records, prctl renames (their header has the comm after the call) update it; threads keep their
  own comm in their events.  pcomm = the parent process's comm at that moment.
* fork record: a new process (not a thread: child_tgid, CO-RE) starts as a copy of the forking
  process (cmdline, exe, cwd, fd table, comm of the forking thread).  Under bcc (child_tgid 0) the
  child may be a thread: the entry is speculative until an event of that pid confirms it, and a
  clone(CLONE_THREAD) result or a thread's exit removes it.
* exec record: comm, cmdline (argv of the new image: CO-RE), exe (the executable's absolute path:
  CO-RE; else the filename, resolved against the cwd) and the close-on-exec fds dropped, for the
  whole process whatever thread exec'd.  The execve exit then only fills a command line the exec
  record lacked (bcc: argv read at enter); an execve exit without an exec record counts as the exec.
  A command line still missing is read from procfs once (bcc without the execve record).
* fd names: files by absolute path (resolved against the cwd or the directory fd; "." and ".."
  folded), sockets as "proto local->remote" in client->server orientation ("tcp
  10.0.0.1:41067->10.0.0.2:80"; accepted sockets "tcp CLIENT->LOCAL"; bound or listening "tcp
  127.0.0.1:8080"; unix "unix /path"; not yet named: "tcp", "udp", "unix", ...), from the socket the
  kernel read at exit (xslot, CO-RE: the real port after bind to 0, the accepted peer) or else from
  the sockaddr argument; pipes "pipe"; anonymous inodes by kind ("anon_inode:[eventfd]", ...);
  memfd "/memfd:NAME (deleted)"; "?" when nothing tells.
* exit record: the process is kept for grace_ns after its exit (late events, children's pcomm),
  then removed.  The table holds at most max_procs processes (least recently used evicted), each at
  most max_fds fds (more are counted in fd_overflow).

What the loop trusts: the batch is an lbd._decode.Batch whose records were validated by the
decoder (every payload slot, the extra slot included, lies inside its record, the record inside the
arena).
"""
cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport int8_t, uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from libc.stdlib cimport malloc, calloc, realloc, free
from libc.string cimport memcmp, memcpy, memmove, memset, memchr

cimport numpy as cnp

import numpy as np

from lbd._decode cimport Batch, lbd_event
from lbd._record cimport lbd_hdr, lbd_sock, LBD_NR_SCHED_FORK, LBD_NR_SCHED_EXEC, LBD_NR_SCHED_EXIT

cnp.import_array()

cdef extern from *:
    """
    #define LBD_K0 0x9E3779B97F4A7C15ULL
    #define LBD_K1 0xFF51AFD7ED558CCDULL
    #define LBD_K2 0xC4CEB9FE1A85EC53ULL
    #define LBD_HI8 0x8080808080808080ULL
    """
    const uint64_t LBD_K0, LBD_K1, LBD_K2, LBD_HI8

from lbd import record as _record, syscalls as _syscalls

if sizeof(lbd_sock) != _record.SOCK_DTYPE.itemsize:
    raise ImportError("lbd._enrich: struct lbd_sock differs from lbd.record.SOCK_DTYPE")

DEF N_NR = 1024                 # syscall / sched numbers the dispatch table covers (as the decoder)
DEF INTERN = 4096               # entries of the interned-name cache (a power of two)
DEF WALK_MAX = 64               # ancestors looked at when a bcc process is reparented

# What run() stopped for (the slow paths: _slow() serves them, then run() resumes)
cdef enum:
    R_DONE = 0
    R_PROC = 1          # need_pid: never seen (procfs, else the event's header)
    R_USER = 2          # need_id: a user name
    R_GROUP = 3         # need_id: a group name
    R_LINK = 4          # need_pid, need_fd: an fd's name the events do not tell
    R_CMDLINE = 5       # need_pid: a command line the capture lacked (bcc)
    R_ARENA = 6         # need_bytes more arena bytes
    R_FDTAB = 7         # need_bytes more fdtab rows
    R_NOMEM = 8

# proc.flags
cdef enum:
    PF_DEAD = 1         # exited: in its grace period
    PF_SPEC = 2         # from a bcc fork record: a process or a thread, not confirmed yet
    PF_GHOST = 4        # a parent procfs did not know (gone): a placeholder with an empty comm
    PF_SUBREAPER = 8    # prctl(PR_SET_CHILD_SUBREAPER, 1)
    PF_EXECED = 16      # an exec record was applied; its execve exit is still to come
    PF_CMD_WANTED = 32  # the command line of the current image is not known yet
    PF_INCOMPLETE = 64  # the fd table may lack fds (procfs could not be read)

# fdrow.kind: what the fd is (naming a socket's later connect / bind without the kernel's socket)
cdef enum:
    FK_FILE = 0
    FK_TCP = 1
    FK_UDP = 2
    FK_RAW = 3
    FK_UNIX = 4
    FK_SOCK = 5         # another socket family
    FK_PIPE = 6
    FK_ANON = 7
    FK_UNKNOWN = 8

# handler kinds (HK[nr]); parameters HP1..HP3 (argument / slot indexes, -1: none), HMASK, HNAME
cdef enum:
    H_NONE = 0
    H_FORKREC = 1
    H_EXECREC = 2
    H_EXITREC = 3
    H_CLONE = 4
    H_CLONE3 = 5
    H_FORK = 6
    H_EXECVE = 7        # HP1 dirfd arg (-1: AT_FDCWD), HP2 path slot, HP3 argv slot
    H_PRCTL = 8
    H_CHDIR = 9
    H_FCHDIR = 10
    H_OPEN = 11         # HP1 dirfd arg (-1: AT_FDCWD), HP2 path slot, HP3 flags arg (-1), HMASK
    H_NEWFD = 12        # HNAME, HP1 cloexec arg (-1: none, -2: always), HMASK, HP2 "same fd" arg
    H_LINKFD = 13       # like H_NEWFD, the name from the host (procfs)
    H_BPF = 14
    H_MEMFD = 15
    H_SOCKET = 16
    H_CONNECT = 17
    H_BIND = 18
    H_ACCEPT = 19       # HP1 flags arg (-1: none)
    H_SOCKETPAIR = 20
    H_PIPE = 21         # HP1 flags arg (-1: none)
    H_DUP = 22
    H_DUP2 = 23
    H_DUP3 = 24
    H_FCNTL = 25
    H_CLOSE = 26
    H_CLOSE_RANGE = 27
    H_IOCTL = 28        # FIOCLEX / FIONCLEX (not a state syscall: applied when selected)

cdef enum:
    AT_FDCWD = -100
    O_CLOEXEC = 0o2000000
    FD_CLOEXEC = 1
    F_DUPFD = 0
    F_SETFD = 2
    F_DUPFD_CLOEXEC = 1030
    CLOSE_RANGE_CLOEXEC = 4
    CLONE_THREAD = 0x10000
    EINPROGRESS = 115
    PR_SET_NAME = 15
    FIONCLEX = 0x5450
    FIOCLEX = 0x5451
    PR_SET_CHILD_SUBREAPER = 36
    AF_UNIX = 1
    AF_INET = 2
    AF_INET6 = 10
    AF_NETLINK = 16
    AF_PACKET = 17

cdef int64_t U32MAX = 0xFFFFFFFF
cdef uint32_t ENC_BAD = <uint32_t>-1   # fdtable.enc: this row's name has no arena offset yet
cdef int64_t I32MAX = 0x7FFFFFFF
cdef uint32_t F_NOENTER = _record.F_NOENTER
cdef uint32_t F_TRUNC_SHIFT = _record.F_TRUNC_SHIFT
cdef uint32_t F_FAULT_SHIFT = _record.F_FAULT_SHIFT
cdef uint8_t DIR_EXIT = _record.DIR_EXIT

cdef uint8_t HK[N_NR]
cdef int8_t HP1[N_NR]
cdef int8_t HP2[N_NR]
cdef int8_t HP3[N_NR]
cdef uint32_t HMASK[N_NR]
cdef lstr *HNAME[N_NR]

cdef uint64_t g_epoch = 0       # arena epochs, unique across engines (lstr.ar_epoch is one value)


# ---- lstr: reference-counted strings ------------------------------------------------------------

cdef inline uint64_t ls_hash(const char *p, Py_ssize_t n) noexcept nogil:
    """A 64-bit hash, 8 bytes a step (the arena's and the intern cache's key)."""
    cdef uint64_t h = LBD_K0 ^ <uint64_t>n
    cdef uint64_t w = 0
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


cdef lstr *ls_new(const char *p, Py_ssize_t n) noexcept nogil:
    """A new lstr (one reference) holding p[:n] as given (the caller makes it text); NULL: no memory."""
    cdef lstr *s
    if n > 0x7FFFFFF0:
        n = 0x7FFFFFF0
    s = <lstr *>malloc(sizeof(lstr) + n)
    if s == NULL:
        return NULL
    s.refcnt = 1
    s.len = <uint32_t>n
    memcpy(s.data, p, n)
    s.data[n] = 0
    s.hash = ls_hash(p, n)
    s.ar_epoch = 0
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


cdef inline void ls_set(lstr **slot, lstr *s) noexcept nogil:
    """*slot = s (s: a reference the slot takes over), releasing the old value."""
    cdef lstr *old = slot[0]
    slot[0] = s
    ls_unref(old)


cdef inline bint ls_eq_bytes(const lstr *s, const char *p, Py_ssize_t n) noexcept nogil:
    return s.len == n and memcmp(s.data, p, n) == 0


cdef inline bint utf8_seq(const uint8_t *p, Py_ssize_t n, Py_ssize_t i, Py_ssize_t *k) noexcept nogil:
    """Whether a valid UTF-8 sequence (as Python's strict decoder takes it: no surrogates, no
    overlong forms, at most U+10FFFF) starts at p[i]; its length in k."""
    cdef uint8_t c = p[i], c1
    if c < 0x80:
        k[0] = 1
        return True
    if c < 0xC2:
        return False
    if c < 0xE0:
        if i + 1 >= n or (p[i + 1] & 0xC0) != 0x80:
            return False
        k[0] = 2
        return True
    if c < 0xF0:
        if i + 2 >= n:
            return False
        c1 = p[i + 1]
        if (c1 & 0xC0) != 0x80 or (p[i + 2] & 0xC0) != 0x80:
            return False
        if (c == 0xE0 and c1 < 0xA0) or (c == 0xED and c1 >= 0xA0):
            return False
        k[0] = 3
        return True
    if c < 0xF5:
        if i + 3 >= n:
            return False
        c1 = p[i + 1]
        if (c1 & 0xC0) != 0x80 or (p[i + 2] & 0xC0) != 0x80 or (p[i + 3] & 0xC0) != 0x80:
            return False
        if (c == 0xF0 and c1 < 0x90) or (c == 0xF4 and c1 >= 0x90):
            return False
        k[0] = 4
        return True
    return False


cdef bint utf8_valid(const uint8_t *p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i = 0, k = 0
    cdef uint64_t w = 0
    while i < n:
        if i + 8 <= n:
            memcpy(&w, p + i, 8)
            if (w & LBD_HI8) == 0:
                i += 8
                continue
        if not utf8_seq(p, n, i, &k):
            return False
        i += k
    return True


cdef Py_ssize_t text_into(const uint8_t *p, Py_ssize_t n, char *out) noexcept nogil:
    """bytes.decode("utf-8", "backslashreplace") re-encoded: valid sequences as they are, every
    other byte as \\xNN (the bytes of one invalid sequence are escaped one by one either way: a
    continuation byte never starts a valid sequence).  out: room for 4 * n bytes."""
    cdef Py_ssize_t i = 0, w = 0, k = 0
    cdef const char *hexd = b"0123456789abcdef"
    while i < n:
        if utf8_seq(p, n, i, &k):
            memcpy(out + w, p + i, k)
            w += k
            i += k
        else:
            out[w] = b'\\'
            out[w + 1] = b'x'
            out[w + 2] = hexd[p[i] >> 4]
            out[w + 3] = hexd[p[i] & 15]
            w += 4
            i += 1
    return w


cdef Py_ssize_t cut_utf8(const char *b, Py_ssize_t n, Py_ssize_t limit) noexcept nogil:
    """How many of b's n bytes to keep: at most limit, never ending inside a character."""
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
    w = initial
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
            if w > initial:
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


cdef inline bint needs_norm(const char *p, Py_ssize_t n) noexcept nogil:
    """An absolute path posixpath.normpath would change: "//" or "/." in it, or a trailing "/"."""
    cdef Py_ssize_t i
    if n > 1 and p[n - 1] == b'/':
        return True
    for i in range(n - 1):
        if p[i] == b'/' and (p[i + 1] == b'/' or p[i + 1] == b'.'):
            return True
    return False


def _normpath(bytes path):
    """normpath_abs on a copy (for the tests: it must agree with posixpath.normpath)."""
    b = bytearray(path)
    cdef char *p = b
    cdef Py_ssize_t n = normpath_abs(p, len(b))
    return bytes(b[:n])


# ---- socket names ---------------------------------------------------------------------------------

cdef inline int put_dec(char *out, uint32_t v) noexcept nogil:
    cdef char tmp[10]
    cdef int n = 0, k
    while True:
        tmp[n] = <char>(48 + v % 10)
        n += 1
        v //= 10
        if v == 0:
            break
    for k in range(n):
        out[k] = tmp[n - 1 - k]
    return n


cdef inline int put_hex(char *out, uint32_t v) noexcept nogil:
    cdef char tmp[8]
    cdef int n = 0, k
    cdef const char *hexd = b"0123456789abcdef"
    while True:
        tmp[n] = hexd[v & 15]
        n += 1
        v >>= 4
        if v == 0:
            break
    for k in range(n):
        out[k] = tmp[n - 1 - k]
    return n


cdef int addr_text(char *out, int fam, const uint8_t *a, uint32_t port) noexcept nogil:
    """"a.b.c.d:port" or "[v6]:port" (the hextets compressed as ipaddress does) into out (64+)."""
    cdef int w = 0, k, best, blen, run, rstart
    cdef uint16_t hx[8]
    if fam == AF_INET:
        for k in range(4):
            w += put_dec(out + w, a[k])
            out[w] = b'.' if k < 3 else b':'
            w += 1
        return w + put_dec(out + w, port)
    for k in range(8):
        hx[k] = (<uint16_t>a[2 * k] << 8) | a[2 * k + 1]
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
    out[0] = b'['
    w = 1
    k = 0
    while k < 8:
        if blen > 1 and k == best:
            if k == 0:
                out[w] = b':'
                w += 1
            out[w] = b':'
            w += 1
            k += blen
            continue
        w += put_hex(out + w, hx[k])
        if k < 7:
            out[w] = b':'
            w += 1
        k += 1
    out[w] = b']'
    out[w + 1] = b':'
    w += 2
    return w + put_dec(out + w, port)


cdef inline bint zero16(const uint8_t *a, int n) noexcept nogil:
    cdef int k
    for k in range(n):
        if a[k]:
            return False
    return True


cdef int put_word(char *out, int kind) noexcept nogil:
    """proto_word(kind) and a space into out; its length."""
    cdef const char *p = proto_word(kind)
    cdef int n = 0
    while p[n]:
        out[n] = p[n]
        n += 1
    out[n] = b' '
    return n + 1


cdef const char *proto_word(int kind) noexcept nogil:
    if kind == FK_TCP:
        return b"tcp"
    if kind == FK_UDP:
        return b"udp"
    if kind == FK_RAW:
        return b"raw"
    if kind == FK_UNIX:
        return b"unix"
    return b"socket"


cdef int kind_of_name(lstr *s) noexcept nogil:
    """The kind of an fd from its name (names procfs gave: lbd.enrich.procfs)."""
    cdef const char *d = s.data
    cdef uint32_t n = s.len
    if n == 0 or d[0] == b'/':
        return FK_FILE
    if n == 1 and d[0] == b'?':
        return FK_UNKNOWN
    if n >= 3 and (n == 3 or d[3] == b' '):
        if memcmp(d, b"tcp", 3) == 0:
            return FK_TCP
        if memcmp(d, b"udp", 3) == 0:
            return FK_UDP
        if memcmp(d, b"raw", 3) == 0:
            return FK_RAW
    if n >= 4 and (n == 4 or d[4] == b' ') and memcmp(d, b"unix", 4) == 0:
        return FK_UNIX
    if n == 4 and memcmp(d, b"pipe", 4) == 0:
        return FK_PIPE
    if n >= 8 and memcmp(d, b"socket:[", 8) == 0:
        return FK_SOCK
    return FK_ANON


cdef inline int kind_of_type(int fam, uint32_t typ) noexcept nogil:
    typ &= 0xF
    if fam == AF_INET or fam == AF_INET6:
        if typ == 1:
            return FK_TCP
        if typ == 2:
            return FK_UDP
        if typ == 3:
            return FK_RAW
        return FK_SOCK
    if fam == AF_UNIX:
        return FK_UNIX
    return FK_SOCK


cdef lstr *unix_name(const uint8_t *path, Py_ssize_t n) noexcept nogil:
    """"unix /path" / "unix @abstract" / "unix" (sun_path bytes: a file name ends at its NUL)."""
    cdef char *buf
    cdef Py_ssize_t w
    cdef const uint8_t *z
    cdef lstr *s
    if n > 0 and path[0] != 0:
        z = <const uint8_t *>memchr(path, 0, n)
        if z != NULL:
            n = z - path
    buf = <char *>malloc(6 + 4 * n + 1)
    if buf == NULL:
        return NULL
    memcpy(buf, b"unix", 4)
    w = 4
    if n > 0:
        buf[4] = b' '
        w = 5
        if path[0] == 0:
            buf[5] = b'@'
            w = 6 + text_into(path + 1, n - 1, buf + 6)
        else:
            w = 5 + text_into(path, n, buf + 5)
    s = ls_new(buf, w)
    free(buf)
    return s


cdef lstr *inet_name(int kind, int fam, const uint8_t *la, uint32_t lport, const uint8_t *ra,
                     uint32_t rport, int form) noexcept nogil:
    """form 0: "proto L" (bound), 1: "proto L->R" (connected), 2: "proto R->L" (accepted),
    3: "proto ->R" (connected, local unknown); la / ra: 4 or 16 address bytes (network order)."""
    cdef char buf[192]
    cdef int w = put_word(buf, kind)
    if form == 0:
        w += addr_text(buf + w, fam, la, lport)
    elif form == 1:
        w += addr_text(buf + w, fam, la, lport)
        buf[w] = b'-'
        buf[w + 1] = b'>'
        w += 2
        w += addr_text(buf + w, fam, ra, rport)
    elif form == 2:
        w += addr_text(buf + w, fam, ra, rport)
        buf[w] = b'-'
        buf[w + 1] = b'>'
        w += 2
        w += addr_text(buf + w, fam, la, lport)
    else:
        buf[w] = b'-'
        buf[w + 1] = b'>'
        w += 2
        w += addr_text(buf + w, fam, ra, rport)
    return ls_new(buf, w)


cdef bint sa_inet(const uint8_t *p, uint32_t n, int *fam, const uint8_t **addr, uint32_t *port) noexcept nogil:
    """A sockaddr_in / sockaddr_in6: its family, address bytes and port."""
    if n < 2:
        return False
    fam[0] = p[0] | (p[1] << 8)
    if fam[0] == AF_INET and n >= 8:
        port[0] = (<uint32_t>p[2] << 8) | p[3]
        addr[0] = p + 4
        return True
    if fam[0] == AF_INET6 and n >= 24:
        port[0] = (<uint32_t>p[2] << 8) | p[3]
        addr[0] = p + 8
        return True
    return False


def _sock_name(int kind, bytes sockaddr, int form=1):
    """The name an fd of `kind` (FK_*) gets from a sockaddr (tests: against the oracle)."""
    cdef int fam = 0
    cdef const uint8_t *a = NULL
    cdef uint32_t port = 0
    cdef lstr *s
    cdef uint8_t zero[16]
    memset(zero, 0, 16)
    if not sa_inet(<const uint8_t *>PyBytes_AS_STRING(sockaddr), len(sockaddr), &fam, &a, &port):
        return None
    s = inet_name(kind, fam, zero, 0, a, port, form) if form == 3 else inet_name(kind, fam, a, port, zero, 0, 0)
    try:
        return PyBytes_FromStringAndSize(s.data, s.len).decode()
    finally:
        ls_unref(s)


# ---- fd tables --------------------------------------------------------------------------------------

cdef inline Py_ssize_t ft_find(const fdtable *t, int32_t fd) noexcept nogil:
    """The row index of fd, or -(insertion point) - 1."""
    cdef Py_ssize_t lo = 0, hi = t.n, mid
    if hi and t.rows[hi - 1].fd < fd:
        return -hi - 1
    while lo < hi:
        mid = (lo + hi) >> 1
        if t.rows[mid].fd < fd:
            lo = mid + 1
        else:
            hi = mid
    if lo < t.n and t.rows[lo].fd == fd:
        return lo
    return -lo - 1


cdef inline fdrow *ft_get(const fdtable *t, int64_t fd) noexcept nogil:
    if fd < 0 or fd > I32MAX:
        return NULL
    cdef Py_ssize_t i = ft_find(t, <int32_t>fd)
    return &t.rows[i] if i >= 0 else NULL


cdef inline void ft_touch(fdtable *t, Py_ssize_t i) noexcept nogil:
    if t.pfx > i:
        t.pfx = <uint32_t>i


cdef int ft_put(fdtable *t, int64_t fd, lstr *name, bint cloexec, int kind, int32_t max_fds) noexcept nogil:
    """fd -> name (a reference the table takes over).  1: added or renamed, 0: unchanged or
    over max_fds (name released), -1: no memory."""
    cdef Py_ssize_t i
    cdef fdrow *r
    cdef void *p
    if fd < 0 or fd > I32MAX:
        ls_unref(name)
        return 0
    i = ft_find(t, <int32_t>fd)
    if i >= 0:
        r = &t.rows[i]
        r.cloexec = cloexec
        r.kind = kind
        if r.name == name or (r.name.len == name.len and memcmp(r.name.data, name.data, name.len) == 0):
            ls_unref(name)
            return 0
        t.nbytes += <uint64_t>name.len - r.name.len
        ls_unref(r.name)
        r.name = name
        if t.enc[i].path_len != ENC_BAD:
            t.enc[i].path_len = ENC_BAD
            t.enc_bad += 1
        ft_touch(t, i)
        return 1
    if t.n >= max_fds:
        ls_unref(name)
        return 0
    i = -i - 1
    if t.n == t.cap:
        p = realloc(t.rows, (t.cap * 2 if t.cap else 8) * sizeof(fdrow))
        if p == NULL:
            ls_unref(name)
            return -1
        t.rows = <fdrow *>p
        p = realloc(t.enc, (t.cap * 2 if t.cap else 8) * sizeof(fd_row))
        if p == NULL:
            ls_unref(name)
            return -1
        t.enc = <fd_row *>p
        t.cap = t.cap * 2 if t.cap else 8
    if i < t.n:
        memmove(&t.rows[i + 1], &t.rows[i], (t.n - i) * sizeof(fdrow))
        memmove(&t.enc[i + 1], &t.enc[i], (t.n - i) * sizeof(fd_row))
    t.enc[i].fd = <int32_t>fd
    t.enc[i].path_len = ENC_BAD
    t.enc_bad += 1
    r = &t.rows[i]
    r.fd = <int32_t>fd
    r.cloexec = cloexec
    r.kind = kind
    r.pad = 0
    r.name = name
    t.n += 1
    t.nbytes += name.len + 1
    ft_touch(t, i)
    return 1


cdef inline void ft_remove_at(fdtable *t, Py_ssize_t i) noexcept nogil:
    t.nbytes -= t.rows[i].name.len + 1
    ls_unref(t.rows[i].name)
    if t.enc[i].path_len == ENC_BAD:
        t.enc_bad -= 1
    memmove(&t.rows[i], &t.rows[i + 1], (t.n - i - 1) * sizeof(fdrow))
    memmove(&t.enc[i], &t.enc[i + 1], (t.n - i - 1) * sizeof(fd_row))
    t.n -= 1
    ft_touch(t, i)


cdef bint ft_del(fdtable *t, int64_t fd) noexcept nogil:
    if fd < 0 or fd > I32MAX:
        return False
    cdef Py_ssize_t i = ft_find(t, <int32_t>fd)
    if i < 0:
        return False
    ft_remove_at(t, i)
    return True


cdef void ft_exec(fdtable *t) noexcept nogil:
    """A successful exec: the close-on-exec fds are gone."""
    cdef Py_ssize_t i = t.n - 1
    while i >= 0:
        if t.rows[i].cloexec:
            ft_remove_at(t, i)
        i -= 1


cdef void ft_clear(fdtable *t) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(t.n):
        ls_unref(t.rows[i].name)
    free(t.rows)
    free(t.enc)
    t.rows = NULL
    t.enc = NULL
    t.n = t.cap = 0
    t.nbytes = 0
    t.pfx = 0
    t.w_epoch = 0
    t.enc_epoch = 0
    t.enc_bad = 0


cdef int ft_copy(fdtable *dst, const fdtable *src) noexcept nogil:
    """dst (empty) becomes a copy of src, with src's written snapshot (same rows, so it holds)."""
    cdef Py_ssize_t i
    dst[0] = src[0]
    dst.rows = NULL
    dst.enc = NULL
    dst.cap = 0
    if src.n:
        dst.rows = <fdrow *>malloc(src.n * sizeof(fdrow))
        dst.enc = <fd_row *>malloc(src.n * sizeof(fd_row))
        if dst.rows == NULL or dst.enc == NULL:
            free(dst.rows)
            free(dst.enc)
            dst.rows = NULL
            dst.enc = NULL
            dst.n = 0
            dst.nbytes = 0
            dst.w_epoch = 0
            dst.enc_epoch = 0
            dst.enc_bad = 0
            return -1
        memcpy(dst.rows, src.rows, src.n * sizeof(fdrow))
        memcpy(dst.enc, src.enc, src.n * sizeof(fd_row))
        dst.cap = src.n
        for i in range(src.n):
            ls_ref(dst.rows[i].name)
    return 0


# ---- the engine ---------------------------------------------------------------------------------------

cdef inline bint needs_link(const lbd_hdr *h) noexcept nogil:
    """An fd creator whose new fd the events cannot name (its name is asked for first)."""
    cdef uint64_t cmd
    if h.dir != DIR_EXIT or h.res < 0 or (h.flags & F_NOENTER):
        return False
    if HK[h.nr] == H_LINKFD:
        return True
    if HK[h.nr] == H_BPF:
        cmd = u32(h.args[0])
        return not (cmd == 0 or cmd == 5 or cmd == 13 or cmd == 14 or cmd == 17 or cmd == 18
                    or cmd == 19 or cmd == 28 or cmd == 30)
    return False


cdef inline uint32_t u32(uint64_t v) noexcept nogil:
    return <uint32_t>v


cdef inline int32_t s32(uint64_t v) noexcept nogil:
    return <int32_t><uint32_t>v


cdef inline uint32_t pid_slot(uint32_t pid, uint32_t mask) noexcept nogil:
    return <uint32_t>((pid * <uint64_t>0x9E3779B1) >> 7) & mask


@cython.final
cdef class Engine:
    """The process and fd tables and the per-batch writer (see the module docstring).

    host: the owner of the slow paths (lbd.enrich.Enricher): load(pid) -> None or (ppid, comm,
    cmdline, exe, cwd, fds) with bytes values and fds [(fd, name, cloexec, kind)], user(uid) and
    group(gid) -> str, fd_link(pid, fd) -> bytes or None, cmdline(pid) -> bytes or None.

    Invariants: every proc in the pid table is on the LRU list, exited ones also on the dead list
    in exit order; `hcount <= max_procs`.  One enrich() at a time (it releases the GIL while it
    walks the events; a second caller meanwhile gets RuntimeError).  The arrays given to a batch are views of buffers the
    next enrich() reuses (or replaces when it grows them: views held on keep the old ones alive).
    """

    def __cinit__(self):
        self.hkeys = NULL
        self.hvals = NULL
        self.ents = NULL
        self.aidx = NULL
        self.intern = NULL
        self.link_name = NULL
        self.users.keys = NULL
        self.users.vals = NULL
        self.groups.keys = NULL
        self.groups.vals = NULL

    def __init__(self, host, *, uint32_t rich_value_size=65536, uint32_t max_procs=16384,
                 int32_t max_fds=65536, uint32_t max_users=4096, double grace_s=5.0,
                 size_t max_strtab=1 << 20, size_t max_fd_rows=1 << 16):
        # (imported here, not at module level: lbd.enrich imports this module)
        from lbd.enrich.layout import ENRICH_DTYPE, FD_DTYPE

        if sizeof(enrich_row) != ENRICH_DTYPE.itemsize or sizeof(fd_row) != FD_DTYPE.itemsize:
            raise ImportError("lbd._enrich: enrichment row sizes differ from lbd.enrich.layout")
        if max_procs < 2:
            raise ValueError(f"max_procs {max_procs}: at least 2")
        if max_users < 1:
            raise ValueError(f"max_users {max_users}: at least 1")
        self.host = host
        self.limit = rich_value_size
        self.text = rich_value_size > 0
        self.max_procs = max_procs
        self.max_fds = max_fds if max_fds > 0 else 0
        self.grace_ns = <uint64_t>(grace_s * 1e9) if grace_s > 0 else 0
        self.max_strtab = max_strtab
        self.max_fd_rows = max_fd_rows
        self.hcap = 16
        while self.hcap < 2 * max_procs:
            self.hcap *= 2
        self.hkeys = <uint32_t *>calloc(self.hcap, sizeof(uint32_t))
        self.hvals = <proc **>calloc(self.hcap, sizeof(proc *))
        self.intern = <lstr **>calloc(INTERN, sizeof(lstr *))
        self.intern_mask = INTERN - 1
        if self.hkeys == NULL or self.hvals == NULL or self.intern == NULL:
            raise MemoryError()
        ic_init(&self.users, max_users)
        ic_init(&self.groups, max_users)
        self.ar_cap = 1 << 16
        self.ar_buf = np.zeros(self.ar_cap, dtype=np.uint8)
        self.ar = <uint8_t *>cnp.PyArray_DATA(self.ar_buf)
        self.aicap = 1024
        self.aidx = <int32_t *>calloc(self.aicap, sizeof(int32_t))
        self.ents_cap = 512
        self.ents = <arent *>malloc(self.ents_cap * sizeof(arent))
        if self.aidx == NULL or self.ents == NULL:
            raise MemoryError()
        self.fd_dtype, self.enrich_dtype = FD_DTYPE, ENRICH_DTYPE
        self.fd_cap = 4096
        self.fd_buf = np.zeros(self.fd_cap, dtype=FD_DTYPE)
        self.fdr = <fd_row *>cnp.PyArray_DATA(self.fd_buf)
        self.out_cap = 1024
        self.out_buf = np.zeros(self.out_cap, dtype=ENRICH_DTYPE)
        self.out = <enrich_row *>cnp.PyArray_DATA(self.out_buf)
        self.epochs = 0
        self.new_epoch()

    def __dealloc__(self):
        cdef uint32_t k
        cdef proc *p
        cdef proc *nxt
        p = self.lru_head
        while p != NULL:
            nxt = p.lru_next
            proc_free(p)
            p = nxt
        free(self.hkeys)
        free(self.hvals)
        if self.intern != NULL:
            for k in range(INTERN):
                ls_unref(self.intern[k])
            free(self.intern)
        ic_free(&self.users)
        ic_free(&self.groups)
        free(self.aidx)
        free(self.ents)
        ls_unref(self.link_name)

    # ---- the arena -------------------------------------------------------------------------------

    cdef void new_epoch(self) noexcept:
        """Strings and fd rows start over at offset 0 (every cached reference is void)."""
        global g_epoch
        g_epoch += 1
        self.epoch = g_epoch
        self.epochs += 1
        memset(self.aidx, 0, self.aicap * sizeof(int32_t))
        self.nents = 0
        self.ar_size = 0
        self.fd_used = 0
        self.ar[0] = 0                  # offset 0: the empty string
        self.ar_size = 1

    cdef int ar_add(self, const char *p, uint32_t k, uint64_t h, uint32_t *off, uint32_t *ln) noexcept nogil:
        """(off, len) of p[:k] in the arena, added if new.  R_ARENA (need_bytes) when the buffer
        is full, R_NOMEM."""
        cdef size_t mask = self.aicap - 1
        cdef size_t j = h & mask, q
        cdef int32_t e
        cdef arent *ent
        cdef void *np_
        if k == 0:
            off[0] = 0
            ln[0] = 0
            return 0
        while True:
            e = self.aidx[j]
            if e == 0:
                break
            ent = &self.ents[e - 1]
            if ent.hash == h and ent.len == k and memcmp(self.ar + ent.off, p, k) == 0:
                off[0] = ent.off
                ln[0] = k
                return 0
            j = (j + 1) & mask
        if self.ar_size + k + 1 > self.ar_cap:
            self.need_bytes = k + 1
            return R_ARENA
        if 2 * (self.nents + 1) > self.aicap:
            np_ = calloc(self.aicap * 2, sizeof(int32_t))
            if np_ == NULL:
                return R_NOMEM
            free(self.aidx)
            self.aidx = <int32_t *>np_
            self.aicap *= 2
            mask = self.aicap - 1
            for q in range(self.nents):
                j = self.ents[q].hash & mask
                while self.aidx[j]:
                    j = (j + 1) & mask
                self.aidx[j] = <int32_t>(q + 1)
            j = h & mask
            while self.aidx[j]:
                j = (j + 1) & mask
        if self.nents == self.ents_cap:
            np_ = realloc(self.ents, 2 * self.ents_cap * sizeof(arent))
            if np_ == NULL:
                return R_NOMEM
            self.ents = <arent *>np_
            self.ents_cap *= 2
        ent = &self.ents[self.nents]
        ent.hash = h
        ent.off = <uint32_t>self.ar_size
        ent.len = k
        memcpy(self.ar + self.ar_size, p, k)
        self.ar[self.ar_size + k] = 0
        self.ar_size += k + 1
        self.nents += 1
        self.aidx[j] = <int32_t>self.nents
        off[0] = ent.off
        ln[0] = k
        return 0

    cdef inline int ar_ref(self, lstr *s, uint32_t *off, uint32_t *ln) noexcept nogil:
        """Where s is in the arena (cut to rich_value_size), added once per epoch."""
        cdef uint32_t k
        cdef uint64_t h
        cdef int r
        if s.ar_epoch == self.epoch:
            off[0] = s.ar_off
            ln[0] = s.ar_len
            return 0
        k = s.len
        h = s.hash
        if self.limit and k > self.limit:
            k = <uint32_t>cut_utf8(s.data, k, self.limit)
            h = ls_hash(s.data, k)
        r = self.ar_add(s.data, k, h, off, ln)
        if r:
            return r
        s.ar_epoch = self.epoch
        s.ar_off = off[0]
        s.ar_len = ln[0]
        return 0

    # ---- interned strings --------------------------------------------------------------------------

    cdef lstr *intern_bytes(self, const char *p, Py_ssize_t n) noexcept nogil:
        """A reference to an lstr holding p[:n] (text already), shared with earlier equal ones."""
        cdef uint64_t h = ls_hash(p, n)
        cdef uint32_t j = <uint32_t>(h >> 20) & self.intern_mask
        cdef lstr *s = self.intern[j]
        if s != NULL and s.hash == h and s.len == n and memcmp(s.data, p, n) == 0:
            return ls_ref(s)
        s = ls_new(p, n)
        if s == NULL:
            return NULL
        ls_set(&self.intern[j], ls_ref(s))
        return s

    cdef lstr *intern_text(self, const uint8_t *p, Py_ssize_t n) noexcept nogil:
        cdef char *buf
        cdef lstr *s
        if utf8_valid(p, n):
            return self.intern_bytes(<const char *>p, n)
        buf = <char *>malloc(4 * n + 1)
        if buf == NULL:
            return NULL
        s = self.intern_bytes(buf, text_into(p, n, buf))
        free(buf)
        return s

    cdef lstr *comm_text(self, const char *comm) noexcept nogil:
        cdef Py_ssize_t n = 0
        while n < 16 and comm[n]:
            n += 1
        return self.intern_text(<const uint8_t *>comm, n)

    # ---- the process table -------------------------------------------------------------------------

    cdef proc *lookup(self, uint32_t pid) noexcept nogil:
        cdef uint32_t mask = self.hcap - 1
        cdef uint32_t j = pid_slot(pid, mask)
        cdef proc *p
        while True:
            p = self.hvals[j]
            if p == NULL:
                return NULL
            if self.hkeys[j] == pid:
                return p
            j = (j + 1) & mask

    cdef void lru_unlink(self, proc *p) noexcept nogil:
        if p.lru_prev != NULL:
            p.lru_prev.lru_next = p.lru_next
        else:
            self.lru_head = p.lru_next
        if p.lru_next != NULL:
            p.lru_next.lru_prev = p.lru_prev
        else:
            self.lru_tail = p.lru_prev
        p.lru_prev = p.lru_next = NULL

    cdef inline void lru_front(self, proc *p) noexcept nogil:
        if self.lru_head == p:
            return
        self.lru_unlink(p)
        p.lru_next = self.lru_head
        if self.lru_head != NULL:
            self.lru_head.lru_prev = p
        self.lru_head = p
        if self.lru_tail == NULL:
            self.lru_tail = p

    cdef void dead_unlink(self, proc *p) noexcept nogil:
        if not (p.flags & PF_DEAD):
            return
        if p.dead_prev != NULL:
            p.dead_prev.dead_next = p.dead_next
        else:
            self.dead_head = p.dead_next
        if p.dead_next != NULL:
            p.dead_next.dead_prev = p.dead_prev
        else:
            self.dead_tail = p.dead_prev
        p.dead_prev = p.dead_next = NULL
        p.flags &= ~PF_DEAD

    cdef void mark_dead(self, proc *p, uint64_t ts) noexcept nogil:
        self.dead_unlink(p)
        p.flags |= PF_DEAD
        p.dead_ts = ts
        p.dead_prev = self.dead_tail
        p.dead_next = NULL
        if self.dead_tail != NULL:
            self.dead_tail.dead_next = p
        else:
            self.dead_head = p
        self.dead_tail = p

    cdef void remove(self, proc *p) noexcept nogil:
        """Take p out of the table and free it."""
        cdef uint32_t mask = self.hcap - 1
        cdef uint32_t j = pid_slot(p.pid, mask), k, home
        while self.hvals[j] != p:
            j = (j + 1) & mask
        # backward-shift deletion (linear probing)
        k = j
        while True:
            k = (k + 1) & mask
            if self.hvals[k] == NULL:
                break
            home = pid_slot(self.hkeys[k], mask)
            if (k > j and (home <= j or home > k)) or (k < j and (home <= j and home > k)):
                self.hkeys[j] = self.hkeys[k]
                self.hvals[j] = self.hvals[k]
                j = k
        self.hvals[j] = NULL
        self.hkeys[j] = 0
        self.hcount -= 1
        self.lru_unlink(p)
        self.dead_unlink(p)
        if self.last == p:
            self.last = NULL
        self.table_gen += 1
        proc_free(p)

    cdef proc *insert(self, uint32_t pid) noexcept nogil:
        """A new, empty entry for pid (replacing an old one; evicting the least recently used
        when full), at the front of the LRU list.  NULL: no memory."""
        cdef proc *p = self.lookup(pid)
        cdef uint32_t mask, j
        cdef proc *victim
        if p != NULL:
            self.remove(p)
        while self.hcount >= self.max_procs and self.lru_tail != NULL:
            victim = self.lru_tail
            while victim != NULL and (victim == self.last or victim == self.protect):
                victim = victim.lru_prev
            if victim == NULL:
                break
            self.evictions += 1
            self.remove(victim)
        p = <proc *>calloc(1, sizeof(proc))
        if p == NULL:
            return NULL
        p.pid = pid
        self.seq += 1
        p.stamp = p.comm_stamp = self.seq
        mask = self.hcap - 1
        j = pid_slot(pid, mask)
        while self.hvals[j] != NULL:
            j = (j + 1) & mask
        self.hkeys[j] = pid
        self.hvals[j] = p
        self.hcount += 1
        p.lru_next = self.lru_head
        if self.lru_head != NULL:
            self.lru_head.lru_prev = p
        self.lru_head = p
        if self.lru_tail == NULL:
            self.lru_tail = p
        return p

    cdef void set_comm(self, proc *p, const char *comm16) noexcept nogil:
        cdef lstr *s
        if p.comm != NULL and memcmp(p.comm_raw, comm16, 16) == 0:
            return
        s = self.comm_text(comm16)
        if s == NULL:
            return
        memcpy(p.comm_raw, comm16, 16)
        ls_set(&p.comm, s)
        self.seq += 1
        p.stamp = p.comm_stamp = self.seq

    cdef proc *parent_of(self, proc *p) noexcept nogil:
        """The entry of p's parent (NULL: not in the table), cached in p."""
        if p.pcache_pid == p.ppid and p.pcache_gen == self.table_gen and p.pcache != NULL:
            return p.pcache
        p.pcache = self.lookup(p.ppid)
        p.pcache_pid = p.ppid
        p.pcache_gen = self.table_gen
        return p.pcache

    cdef void reparent_bcc(self, proc *p) noexcept nogil:
        """bcc records name the parent at fork time: when the table saw that parent exit, p
        belongs to the nearest living ancestor that is a child subreaper, else to 1."""
        cdef proc *q = self.parent_of(p)
        cdef proc *a
        cdef uint32_t up, found = 1
        cdef int k
        if q == NULL or not (q.flags & PF_DEAD):
            return                       # (a placeholder, PF_GHOST, is a parent already gone)
        up = q.ppid
        for k in range(WALK_MAX):
            if up <= 1:
                break
            a = self.lookup(up)
            if a == NULL:
                break
            if not (a.flags & PF_DEAD) and (a.flags & PF_SUBREAPER):
                found = up
                break
            up = a.ppid
        if p.ppid != found:
            p.stale_ppid = p.ppid
            p.ppid = found
            self.seq += 1
            p.stamp = self.seq

    cdef int fork_child(self, proc *parent, uint32_t child, uint32_t ppid, const char *comm16,
                        bint spec) noexcept nogil:
        """A new process forked by `parent`: a copy of it (its comm: the forking thread's)."""
        cdef proc *c
        if child == 0 or child == parent.pid:
            return 0
        self.protect = parent
        c = self.insert(child)
        self.protect = NULL
        if c == NULL:
            return R_NOMEM
        c.ppid = ppid if ppid else parent.pid
        c.flags = (parent.flags & (PF_INCOMPLETE | PF_CMD_WANTED)) | (PF_SPEC if spec else 0)
        memcpy(c.comm_raw, comm16, 16)
        c.comm = self.comm_text(comm16)
        c.cmdline = ls_ref(parent.cmdline)
        c.exe = ls_ref(parent.exe)
        c.cwd = ls_ref(parent.cwd)
        if ft_copy(&c.fds, &parent.fds) < 0:
            return R_NOMEM
        self.applied += 1
        return 0

    # ---- the per-event loop ------------------------------------------------------------------------

    cdef inline const uint8_t *payload(self, const lbd_event *e, int k, uint32_t *ln) noexcept nogil:
        cdef uint32_t n = e.h.slot[k].len
        ln[0] = n
        if n == 0:
            return NULL
        return self.arena_p + e.rec + e.h.slot[k].off

    cdef inline const lbd_sock *xsock(self, const lbd_event *e, const uint8_t **path,
                                      uint32_t *plen) noexcept nogil:
        cdef uint32_t n = e.h.xslot.len
        cdef const uint8_t *p
        if n < sizeof(lbd_sock):
            return NULL
        p = self.arena_p + e.rec + e.h.xslot.off
        path[0] = p + sizeof(lbd_sock)
        plen[0] = n - <uint32_t>sizeof(lbd_sock)
        return <const lbd_sock *>p

    cdef lstr *resolve(self, proc *p, int64_t dirfd, const uint8_t *path, uint32_t n) noexcept nogil:
        """A path as the process named it, made absolute against its cwd (AT_FDCWD) or the
        directory fd when they are known, "." / ".." / "//" folded (posixpath.normpath)."""
        cdef lstr *base = NULL
        cdef fdrow *r
        cdef char *buf
        cdef Py_ssize_t bn, w
        cdef lstr *s
        if n == 0:
            return ls_ref(HNAME[0])         # "" (an empty path names nothing)
        if path[0] != b'/':
            if dirfd == AT_FDCWD:
                base = p.cwd
            else:
                r = ft_get(&p.fds, dirfd)
                if r != NULL and r.kind == FK_FILE:
                    base = r.name
            if base == NULL or base.len == 0 or base.data[0] != b'/':
                return self.intern_text(path, n)
        else:
            if not needs_norm(<const char *>path, n) and utf8_valid(path, n):
                return self.intern_bytes(<const char *>path, n)
        bn = base.len if base != NULL else 0
        if bn == 1:
            bn = 0
        buf = <char *>malloc(bn + 1 + 4 * n + 1)
        if buf == NULL:
            return NULL
        w = 0
        if base != NULL:
            memcpy(buf, base.data, bn)
            buf[bn] = b'/'
            w = bn + 1
        w += text_into(path, n, buf + w)
        if needs_norm(buf, w):
            w = normpath_abs(buf, w)
        s = self.intern_bytes(buf, w)
        free(buf)
        return s

    cdef int put_fd(self, proc *p, int64_t fd, lstr *name, bint cloexec, int kind) noexcept nogil:
        cdef int r
        if name == NULL:
            return R_NOMEM
        if p.fds.n >= self.max_fds and ft_get(&p.fds, fd) == NULL:
            self.fd_overflow += 1
        r = ft_put(&p.fds, fd, name, cloexec, kind, self.max_fds)
        if r < 0:
            return R_NOMEM
        return 0

    cdef int dup_fd(self, proc *p, int64_t old, int64_t new, bint cloexec) noexcept nogil:
        cdef fdrow *r
        if old == new:
            return 0
        r = ft_get(&p.fds, old)
        if r == NULL:
            return self.put_fd(p, new, ls_ref(HNAME[1]), cloexec, FK_UNKNOWN)
        return self.put_fd(p, new, ls_ref(r.name), cloexec, r.kind)

    cdef int exec_image(self, proc *p, const lbd_event *e, int dirfd_arg, int path_slot, int argv_slot,
                        int exe_slot) noexcept nogil:
        """An exec: comm, command line (argv slot), executable (exe slot, else the path slot
        resolved), close-on-exec fds dropped."""
        cdef const lbd_hdr *h = &e.h
        cdef const uint8_t *q
        cdef uint32_t n = 0
        cdef int64_t dirfd = AT_FDCWD
        cdef lstr *s = NULL
        self.set_comm(p, h.comm)
        ls_set(&p.cmdline, NULL)
        p.flags |= PF_CMD_WANTED
        if argv_slot >= 0 and self.take_argv(p, e, argv_slot) < 0:
            return R_NOMEM
        if exe_slot >= 0:
            q = self.payload(e, exe_slot, &n)
            if n:
                s = self.intern_text(q, n)
                if s == NULL:
                    return R_NOMEM
        if s == NULL and path_slot >= 0:
            q = self.payload(e, path_slot, &n)
            if n:
                if dirfd_arg >= 0:
                    dirfd = s32(h.args[dirfd_arg])
                s = self.resolve(p, dirfd, q, n)
                if s == NULL:
                    return R_NOMEM
        ls_set(&p.exe, s)
        ft_exec(&p.fds)
        return 0

    cdef int take_argv(self, proc *p, const lbd_event *e, int slot) noexcept nogil:
        """The command line from an argv payload (NUL-separated strings): 1 taken, 0 none."""
        cdef uint32_t n = 0, k
        cdef const uint8_t *q = self.payload(e, slot, &n)
        cdef char *buf
        cdef Py_ssize_t w
        cdef lstr *s
        if n == 0:
            return 0
        while n and q[n - 1] == 0:
            n -= 1
        if n == 0:
            return 0
        buf = <char *>malloc(4 * n + 1)
        if buf == NULL:
            return -1
        w = text_into(q, n, buf)
        for k in range(w):
            if buf[k] == 0:
                buf[k] = b' '
        s = ls_new(buf, w)
        free(buf)
        if s == NULL:
            return -1
        ls_set(&p.cmdline, s)
        p.flags &= ~PF_CMD_WANTED
        return 1

    cdef int sock_named(self, proc *p, const lbd_event *e, int64_t fd, int how) noexcept nogil:
        """connect (how 1), bind (0) or accept (2, fd: the new one): the fd's name from the
        kernel's socket (xslot), else from the sockaddr argument."""
        cdef const lbd_hdr *h = &e.h
        cdef const uint8_t *upath = NULL
        cdef uint32_t plen = 0, n = 0, port = 0
        cdef const lbd_sock *so = self.xsock(e, &upath, &plen)
        cdef fdrow *r = ft_get(&p.fds, fd)
        cdef fdrow *lr
        cdef int kind, fam = 0, form
        cdef const uint8_t *sa
        cdef const uint8_t *a = NULL
        cdef lstr *name = NULL
        cdef uint8_t zero[16]
        cdef bint cloexec = False
        memset(zero, 0, 16)
        if how == 2:
            cloexec = HP1[h.nr] >= 0 and (h.args[HP1[h.nr]] & O_CLOEXEC) != 0
        elif r != NULL:
            cloexec = r.cloexec
        if so != NULL:
            kind = kind_of_type(so.family, so.type)
            if so.family == AF_INET or so.family == AF_INET6:
                if how == 0:
                    form = 0
                elif how == 2:
                    form = 2
                elif so.rport == 0 and zero16(so.raddr, 4 if so.family == AF_INET else 16):
                    form = 0
                else:
                    form = 1
                name = inet_name(kind, so.family, so.laddr, so.lport, so.raddr, so.rport, form)
            elif so.family == AF_UNIX:
                if plen:
                    name = unix_name(upath, plen)
                else:
                    sa = self.payload(e, 1, &n)
                    if how != 2 and n > 2:
                        name = unix_name(sa + 2, n - 2)
                    elif how == 2:
                        lr = ft_get(&p.fds, s32(h.args[0]))
                        name = ls_ref(lr.name) if lr != NULL and lr.kind == FK_UNIX else ls_ref(HNAME[4])
                    else:
                        name = ls_ref(HNAME[4])
            else:
                return 0
            return self.put_fd(p, fd, name, cloexec, kind)
        # no socket from the kernel (bcc): the sockaddr argument
        sa = self.payload(e, 1, &n)
        if how == 2:
            lr = ft_get(&p.fds, s32(h.args[0]))           # the listening socket
            kind = lr.kind if lr != NULL else FK_UNKNOWN
            if sa_inet(sa, n, &fam, &a, &port):
                if kind != FK_TCP and kind != FK_UDP and kind != FK_RAW:
                    kind = FK_TCP
                name = self.accepted_name(kind, fam, a, port, lr)
            elif lr != NULL:
                name = ls_ref(lr.name)
                kind = lr.kind
            else:
                name = ls_ref(HNAME[1])
            return self.put_fd(p, fd, name, cloexec, kind)
        if n < 2:
            return 0
        fam = sa[0] | (sa[1] << 8)
        kind = r.kind if r != NULL else FK_UNKNOWN
        if sa_inet(sa, n, &fam, &a, &port):
            if kind != FK_TCP and kind != FK_UDP and kind != FK_RAW:
                kind = FK_TCP if kind == FK_UNKNOWN or kind == FK_FILE else FK_SOCK
            name = inet_name(kind, fam, a, port, a, port, 0 if how == 0 else 3)
        elif fam == AF_UNIX:
            kind = FK_UNIX
            name = unix_name(sa + 2, n - 2)
        else:
            return 0
        return self.put_fd(p, fd, name, cloexec, kind)

    cdef lstr *accepted_name(self, int kind, int fam, const uint8_t *peer, uint32_t pport,
                             fdrow *listener) noexcept nogil:
        """bcc accept: "proto PEER->LOCAL", LOCAL from the listening socket's name."""
        cdef char buf[192]
        cdef int w = put_word(buf, kind)
        cdef const char *sp
        cdef uint32_t k = 0
        w += addr_text(buf + w, fam, peer, pport)
        buf[w] = b'-'
        buf[w + 1] = b'>'
        w += 2
        if listener != NULL:
            sp = <const char *>memchr(listener.name.data, b' ', listener.name.len)
            if sp != NULL and memchr(sp, b'>', listener.name.len - (sp - listener.name.data)) == NULL:
                k = listener.name.len - <uint32_t>(sp + 1 - listener.name.data)
                if k > 100:
                    k = 100
                memcpy(buf + w, sp + 1, k)
                w += k
        return ls_new(buf, w)

    cdef int apply(self, proc *p, const lbd_event *e) noexcept nogil:
        """What event e changes in the tables (p: its process's entry)."""
        cdef const lbd_hdr *h = &e.h
        cdef uint32_t nr = h.nr
        cdef int hk = HK[nr] if nr < N_NR else H_NONE
        cdef int64_t res = h.res
        cdef int64_t fd, first, last
        cdef const uint8_t *q
        cdef uint32_t n = 0, child, tgid
        cdef bint ce
        cdef proc *c
        cdef lstr *s
        cdef fdrow *r
        cdef int32_t pair[2]
        cdef int k, rc
        if hk == H_NONE:
            return 0
        if nr < 1000 and (h.dir != DIR_EXIT or (h.flags & F_NOENTER)):
            return 0                     # enter records change nothing; without enter: no args
        self.applied += 1
        if hk == H_FORKREC:
            child = u32(h.args[1])
            tgid = u32(h.args[3])
            if tgid != 0 and tgid != child:
                return 0                 # a thread
            return self.fork_child(p, child, u32(h.args[0]), h.comm, tgid == 0)
        if hk == H_EXECREC:
            rc = self.exec_image(p, e, -1, 2, 3, 4)
            p.flags |= PF_EXECED
            return rc
        if hk == H_EXITREC:
            child = u32(h.args[0])
            if h.args[1]:
                self.mark_dead(p, h.ts)
            elif child != h.pid:
                c = self.lookup(child)
                if c != NULL and (c.flags & PF_SPEC):
                    self.remove(c)
            return 0
        if hk == H_CLONE or hk == H_FORK or hk == H_CLONE3:
            if res <= 0 or res > U32MAX:
                return 0
            child = <uint32_t>res
            c = self.lookup(child)
            if hk == H_CLONE and (h.args[0] & CLONE_THREAD):
                if c != NULL and (c.flags & PF_SPEC):
                    self.remove(c)
                return 0
            if c != NULL and not (c.flags & PF_GHOST):
                if hk != H_CLONE3:
                    c.flags &= ~PF_SPEC
                return 0
            if hk == H_CLONE3:
                return 0                 # thread or process: its fork record or its events tell
            return self.fork_child(p, child, p.pid, h.comm, False)
        if hk == H_EXECVE:
            if res != 0:
                return 0
            if p.flags & PF_EXECED:
                p.flags &= ~PF_EXECED
                if p.flags & PF_CMD_WANTED:
                    if self.take_argv(p, e, HP3[nr]) < 0:
                        return R_NOMEM
                return 0
            return self.exec_image(p, e, HP1[nr], HP2[nr], HP3[nr], -1)
        if hk == H_PRCTL:
            if res == 0 and u32(h.args[0]) == PR_SET_CHILD_SUBREAPER:
                if h.args[1]:
                    p.flags |= PF_SUBREAPER
                else:
                    p.flags &= ~PF_SUBREAPER
            return 0                     # PR_SET_NAME: the header's comm (after the call)
        if hk == H_CHDIR:
            if res == 0:
                q = self.payload(e, 0, &n)
                if n:
                    s = self.resolve(p, AT_FDCWD, q, n)
                    if s == NULL:
                        return R_NOMEM
                    if s.len and s.data[0] == b'/':
                        ls_set(&p.cwd, s)
                    else:
                        ls_unref(s)
                        ls_set(&p.cwd, NULL)
            return 0
        if hk == H_FCHDIR:
            if res == 0:
                r = ft_get(&p.fds, s32(h.args[0]))
                if r != NULL and r.kind == FK_FILE and r.name.len and r.name.data[0] == b'/':
                    ls_set(&p.cwd, ls_ref(r.name))
                else:
                    ls_set(&p.cwd, NULL)
            return 0
        if hk == H_CLOSE:
            ft_del(&p.fds, s32(h.args[0]))   # released whatever close returns (EBADF: not open)
            return 0
        if res < 0:
            if hk == H_CONNECT and res == -EINPROGRESS:
                return self.sock_named(p, e, s32(h.args[0]), 1)
            return 0
        if hk == H_OPEN:
            q = self.payload(e, HP2[nr], &n)
            ce = HP3[nr] >= 0 and (h.args[HP3[nr]] & HMASK[nr]) != 0
            s = self.resolve(p, s32(h.args[HP1[nr]]) if HP1[nr] >= 0 else AT_FDCWD, q, n)
            return self.put_fd(p, res, s, ce, FK_FILE)
        if hk == H_NEWFD or hk == H_LINKFD or hk == H_BPF:
            if HP1[nr] == -2:
                ce = True
            else:
                ce = HP1[nr] >= 0 and (h.args[HP1[nr]] & HMASK[nr]) != 0
            if hk == H_NEWFD:
                return self.put_fd(p, res, ls_ref(HNAME[nr]), ce, FK_ANON)
            if hk == H_BPF:
                k = u32(h.args[0])
                if k == 0 or k == 14:
                    return self.put_fd(p, res, ls_ref(HNAME[5]), True, FK_ANON)
                if k == 5 or k == 13:
                    return self.put_fd(p, res, ls_ref(HNAME[6]), True, FK_ANON)
                if k == 17 or k == 28 or k == 30:
                    return self.put_fd(p, res, ls_ref(HNAME[7]), True, FK_ANON)
                if k == 18 or k == 19:
                    return self.put_fd(p, res, ls_ref(HNAME[8]), True, FK_ANON)
            s = self.link_name
            self.link_name = NULL
            self.link_ready = False
            if s == NULL:
                s = ls_ref(HNAME[1])
            return self.put_fd(p, res, s, ce, kind_of_name(s))
        if hk == H_MEMFD:
            q = self.payload(e, 0, &n)
            s = self.memfd_name(q, n)
            return self.put_fd(p, res, s, (h.args[1] & 1) != 0, FK_FILE)
        if hk == H_SOCKET:
            k = kind_of_type(<int>u32(h.args[0]), u32(h.args[1]))
            return self.put_fd(p, res, ls_ref(self.sock_word(k, <int>u32(h.args[0]))),
                               (h.args[1] & O_CLOEXEC) != 0, k)
        if hk == H_CONNECT:
            if res != 0:
                return 0
            return self.sock_named(p, e, s32(h.args[0]), 1)
        if hk == H_BIND:
            if res != 0:
                return 0
            return self.sock_named(p, e, s32(h.args[0]), 0)
        if hk == H_ACCEPT:
            return self.sock_named(p, e, res, 2)
        if hk == H_SOCKETPAIR or hk == H_PIPE:
            if res != 0:
                return 0
            q = self.payload(e, 3 if hk == H_SOCKETPAIR else 0, &n)
            if n != 8:
                return 0
            memcpy(pair, q, 8)
            k = HP1[nr]
            ce = k >= 0 and (h.args[k] & O_CLOEXEC) != 0
            if hk == H_PIPE:
                rc = self.put_fd(p, pair[0], ls_ref(HNAME[2]), ce, FK_PIPE)
                if rc == 0:
                    rc = self.put_fd(p, pair[1], ls_ref(HNAME[2]), ce, FK_PIPE)
                return rc
            k = kind_of_type(<int>u32(h.args[0]), u32(h.args[1]))
            s = self.sock_word(k, <int>u32(h.args[0]))
            rc = self.put_fd(p, pair[0], ls_ref(s), ce, k)
            if rc == 0:
                rc = self.put_fd(p, pair[1], ls_ref(s), ce, k)
            return rc
        if hk == H_DUP or hk == H_DUP2:
            return self.dup_fd(p, s32(h.args[0]), res, False)
        if hk == H_DUP3:
            return self.dup_fd(p, s32(h.args[0]), res, (h.args[2] & O_CLOEXEC) != 0)
        if hk == H_FCNTL:
            k = <int>u32(h.args[1])
            if k == F_DUPFD or k == F_DUPFD_CLOEXEC:
                return self.dup_fd(p, s32(h.args[0]), res, k == F_DUPFD_CLOEXEC)
            if k == F_SETFD:
                r = ft_get(&p.fds, s32(h.args[0]))
                if r != NULL:
                    r.cloexec = (h.args[2] & FD_CLOEXEC) != 0
            return 0
        if hk == H_IOCTL:
            k = <int>u32(h.args[1])
            if res == 0 and (k == FIOCLEX or k == FIONCLEX):
                r = ft_get(&p.fds, s32(h.args[0]))
                if r != NULL:
                    r.cloexec = k == FIOCLEX
            return 0
        if hk == H_CLOSE_RANGE:
            if res != 0:
                return 0
            first = u32(h.args[0])
            last = u32(h.args[1])
            k = p.fds.n - 1
            while k >= 0:
                fd = p.fds.rows[k].fd
                if first <= fd <= last:
                    if h.args[2] & CLOSE_RANGE_CLOEXEC:
                        p.fds.rows[k].cloexec = 1
                    else:
                        ft_remove_at(&p.fds, k)
                k -= 1
            return 0
        return 0

    cdef lstr *sock_word(self, int kind, int fam) noexcept nogil:
        """The name of a socket nothing has named yet: "tcp", "udp", "unix", "netlink", ..."""
        if kind == FK_TCP:
            return HNAME[9]
        if kind == FK_UDP:
            return HNAME[10]
        if kind == FK_RAW:
            return HNAME[11]
        if kind == FK_UNIX:
            return HNAME[4]
        if fam == AF_NETLINK:
            return HNAME[12]
        if fam == AF_PACKET:
            return HNAME[13]
        return HNAME[14]

    cdef lstr *memfd_name(self, const uint8_t *q, uint32_t n) noexcept nogil:
        cdef char *buf = <char *>malloc(4 * n + 32)
        cdef Py_ssize_t w
        cdef lstr *s
        if buf == NULL:
            return NULL
        memcpy(buf, b"/memfd:", 7)
        w = 7 + text_into(q, n, buf + 7)
        memcpy(buf + w, b" (deleted)", 10)
        s = self.intern_bytes(buf, w + 10)
        free(buf)
        return s

    cdef int fd_encode(self, fdtable *t) noexcept nogil:
        """Bring t.enc up to date for this epoch (the arena offsets of rows added or renamed)."""
        cdef Py_ssize_t k
        cdef int r
        cdef fd_row *x
        if t.enc_epoch != self.epoch:
            for k in range(t.n):
                x = &t.enc[k]
                r = self.ar_ref(t.rows[k].name, &x.path_off, &x.path_len)
                if r:
                    t.enc_bad = t.n       # (a retry encodes every row again: they are marked so)
                    for k in range(t.n):
                        t.enc[k].path_len = ENC_BAD
                    return r
                x.fd = t.rows[k].fd
            t.enc_epoch = self.epoch
            t.enc_bad = 0
            return 0
        k = 0
        while t.enc_bad and k < t.n:
            x = &t.enc[k]
            if x.path_len == ENC_BAD:
                r = self.ar_ref(t.rows[k].name, &x.path_off, &x.path_len)
                if r:
                    x.path_len = ENC_BAD
                    return r
                t.enc_bad -= 1
            k += 1
        return 0

    cdef int fd_snapshot(self, fdtable *t, uint32_t *off, uint32_t *cnt) noexcept nogil:
        """Where t's rows (cut at rich_value_size bytes of names) are in fdtab: the rows written
        last time when they still hold (or a prefix of them), else those extended by the new
        rows when they are the last in fdtab, else a new copy at the end."""
        cdef uint32_t m = <uint32_t>t.n, start, same
        cdef uint64_t used
        cdef int r
        if m == 0:
            off[0] = 0
            cnt[0] = 0
            return 0
        if self.limit and t.nbytes > self.limit:
            used = 0
            m = 0
            while m < <uint32_t>t.n:
                used += t.rows[m].name.len + 1
                if used > self.limit:
                    break
                m += 1
        if t.w_epoch == self.epoch and t.pfx >= m and m <= t.w_n:
            off[0] = t.w_off                  # nothing changed in the rows shown
            cnt[0] = m
            return 0
        r = self.fd_encode(t)
        if r:
            return r
        start = 0
        if t.w_epoch == self.epoch:
            # how many leading rows equal those written last time (a close and a reopen of the
            # same file, a dup of the same name, are no change)
            same = t.pfx if t.pfx < t.w_n else t.w_n
            while same < m and same < t.w_n and memcmp(&t.enc[same], &self.fdr[t.w_off + same],
                                                        sizeof(fd_row)) == 0:
                same += 1
            t.pfx = same
            if same >= m:
                off[0] = t.w_off
                cnt[0] = m
                return 0
            if same == t.w_n and t.w_off + t.w_n == self.fd_used:
                start = t.w_n                 # extend the rows written last, at the end of fdtab
        if self.fd_used + (m - start) > self.fd_cap:
            self.need_bytes = m - start
            return R_FDTAB
        if start == 0:
            t.w_off = <uint32_t>self.fd_used
        memcpy(self.fdr + self.fd_used, t.enc + start, (m - start) * sizeof(fd_row))
        self.fd_used += m - start
        self.fd_rows += m - start
        t.w_epoch = self.epoch
        t.w_n = m
        t.pfx = m
        off[0] = t.w_off
        cnt[0] = m
        return 0

    cdef inline lstr *id_name(self, idcache *c, uint32_t ident) noexcept nogil:
        cdef uint32_t mask, j
        if c.last_val != NULL and c.last_key == ident:
            c.hits += 1
            return c.last_val
        mask = c.cap - 1
        j = pid_slot(ident, mask)
        while c.vals[j] != NULL:
            if c.keys[j] == ident:
                c.hits += 1
                c.last_key = ident
                c.last_val = c.vals[j]
                return c.vals[j]
            j = (j + 1) & mask
        return NULL

    cdef int row(self, const lbd_event *e, enrich_row *o) noexcept nogil:
        """Event e's row, from its process's entry after the event was applied."""
        cdef const lbd_hdr *h = &e.h
        cdef proc *p = self.lookup(h.pid) if self.last == NULL or self.last_pid != h.pid else self.last
        cdef proc *q
        cdef lstr *s
        cdef int r
        cdef uint32_t fo = 0, fn = 0
        cdef uint64_t pst = 0
        if p == NULL:
            self.need_pid = h.pid
            return R_PROC
        q = NULL
        if p.ppid:
            q = self.parent_of(p)
            if q == NULL:
                self.need_pid = p.ppid
                return R_PROC
            pst = q.comm_stamp
        if (p.crow_epoch == self.epoch and p.crow_stamp == p.stamp and p.crow_pstamp == pst
                and p.crow_uid == h.uid and p.crow_gid == h.gid):
            o[0] = p.crow                 # nothing it shows changed since its last row
            return 0
        o.ppid = p.ppid
        if p.ppid == 0:
            o.pcomm_off = 0
            o.pcomm_len = 0
        else:
            if q.comm == NULL:
                o.pcomm_off = 0
                o.pcomm_len = 0
            else:
                r = self.ar_ref(q.comm, &o.pcomm_off, &o.pcomm_len)
                if r:
                    return r
        s = self.id_name(&self.users, h.uid)
        if s == NULL:
            self.need_id = h.uid
            return R_USER
        r = self.ar_ref(s, &o.user_off, &o.user_len)
        if r:
            return r
        s = self.id_name(&self.groups, h.gid)
        if s == NULL:
            self.need_id = h.gid
            return R_GROUP
        r = self.ar_ref(s, &o.group_off, &o.group_len)
        if r:
            return r
        if self.text and p.cmdline != NULL:
            s = p.cmdline
        else:
            if self.text and (p.flags & PF_CMD_WANTED) and not (p.flags & PF_EXECED):
                self.need_pid = p.pid
                return R_CMDLINE
            s = p.comm
        if s != NULL:
            r = self.ar_ref(s, &o.cmdline_off, &o.cmdline_len)
            if r:
                return r
        else:
            o.cmdline_off = 0
            o.cmdline_len = 0
        if self.text and p.exe != NULL:
            r = self.ar_ref(p.exe, &o.fullpath_off, &o.fullpath_len)
            if r:
                return r
        else:
            o.fullpath_off = 0
            o.fullpath_len = 0
        if self.text:
            r = self.fd_snapshot(&p.fds, &fo, &fn)
            if r:
                return r
        o.fds_off = fo
        o.fds_n = fn
        p.crow = o[0]
        p.crow_epoch = self.epoch
        p.crow_stamp = p.stamp
        p.crow_pstamp = pst
        p.crow_uid = h.uid
        p.crow_gid = h.gid
        return 0

    cdef int run(self) noexcept nogil:
        """The events from self.i on: apply, then write the row; returns R_DONE, or the slow
        path the event at self.i needs (phase says whether it was applied already)."""
        cdef lbd_event *e
        cdef const lbd_hdr *h
        cdef proc *p
        cdef int r
        cdef uint32_t nr
        while self.i < self.n:
            e = &self.ev[self.i]
            h = &e.h
            if self.phase == 0:
                if self.last != NULL and self.last_pid == h.pid:
                    p = self.last
                    self.hits += 1
                else:
                    p = self.lookup(h.pid)
                    if p == NULL:
                        self.misses += 1
                        self.need_pid = h.pid
                        return R_PROC
                    self.hits += 1
                    self.lru_front(p)
                    self.last = p
                    self.last_pid = h.pid
                if p.flags & (PF_SPEC | PF_GHOST):
                    if p.flags & PF_GHOST:
                        self.unghost(p, e)
                    p.flags &= ~PF_SPEC
                if h.tid == h.pid:
                    self.set_comm(p, h.comm)
                if h.ppid and h.ppid != p.ppid and not (h.pidns == 0 and h.ppid == p.stale_ppid):
                    p.ppid = h.ppid
                    self.seq += 1
                    p.stamp = self.seq
                if h.pidns == 0 and p.ppid:
                    self.reparent_bcc(p)
                nr = h.nr
                if (p.flags & PF_EXECED) and (nr >= N_NR or (HK[nr] != H_EXECVE and HK[nr] != H_EXECREC)):
                    p.flags &= ~PF_EXECED        # the exec's execve exit is not coming (not captured)
                if nr < N_NR and not self.link_ready and needs_link(h):
                    self.need_pid = h.pid
                    self.need_fd = <int32_t>h.res
                    return R_LINK
                if nr < N_NR and HK[nr] != H_NONE:
                    r = self.apply(p, e)
                    self.seq += 1
                    p.stamp = self.seq
                    if r:
                        return r
                self.phase = 1
            r = self.row(e, &self.out[self.i])
            if r:
                return r
            self.phase = 0
            self.i += 1
        return R_DONE

    cdef void unghost(self, proc *p, const lbd_event *e) noexcept nogil:
        """A pid procfs did not know shows its own event: what the header tells."""
        cdef proc *q
        self.dead_unlink(p)
        p.flags &= ~(PF_GHOST | PF_DEAD)
        p.flags |= PF_INCOMPLETE
        self.seq += 1
        p.stamp = self.seq
        p.ppid = e.h.ppid
        memset(p.comm_raw, 0, 16)
        self.set_comm(p, e.h.comm)
        q = self.lookup(p.ppid) if p.ppid else NULL
        if q != NULL and q != p and not (q.flags & PF_GHOST) and p.fds.n == 0:
            ft_copy(&p.fds, &q.fds)
            p.fds.w_epoch = 0

    cdef void reap(self) noexcept nogil:
        """Remove the processes whose grace period after exit has ended."""
        while self.dead_head != NULL and self.dead_head.dead_ts + self.grace_ns <= self.now:
            self.reaped += 1
            self.remove(self.dead_head)

    # ---- slow paths (with the GIL) -------------------------------------------------------------------

    cdef int _slow(self, int why) except -1:
        cdef lbd_event *e = &self.ev[self.i]
        self.slow_calls += 1
        if why == R_PROC:
            self.load(self.need_pid, e)
        elif why == R_USER or why == R_GROUP:
            name = (self.host.user if why == R_USER else self.host.group)(self.need_id)
            self.id_put(&self.users if why == R_USER else &self.groups, self.need_id, name)
        elif why == R_LINK:
            link = self.host.fd_link(self.need_pid, self.need_fd)
            ls_set(&self.link_name, self.py_text(link) if link else NULL)
            self.link_ready = True
        elif why == R_CMDLINE:
            p = self.lookup(self.need_pid)
            if p != NULL:
                p.flags &= ~PF_CMD_WANTED
                cmd = self.host.cmdline(self.need_pid)
                if cmd:
                    ls_set(&p.cmdline, self.py_text(cmd))
                self.seq += 1
                p.stamp = self.seq
        elif why == R_ARENA:
            self.grow_arena(self.need_bytes)
        elif why == R_FDTAB:
            self.grow_fdtab(self.need_bytes)
        else:
            raise MemoryError()
        return 0

    cdef lstr *py_text(self, object b) except NULL:
        """bytes (or str) from Python as text, interned."""
        if isinstance(b, str):
            b = b.encode("utf-8", "surrogateescape")
        cdef lstr *s = self.intern_text(<const uint8_t *>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))
        if s == NULL:
            raise MemoryError()
        return s

    cdef int id_put(self, idcache *c, uint32_t ident, object name) except -1:
        cdef uint32_t mask, j
        cdef lstr *s = self.py_text(name)
        if c.count >= c.max:
            c.evictions += c.count
            ic_clear(c)
        mask = c.cap - 1
        j = pid_slot(ident, mask)
        while c.vals[j] != NULL:
            if c.keys[j] == ident:
                ls_set(&c.vals[j], s)
                c.last_val = NULL
                return 0
            j = (j + 1) & mask
        c.keys[j] = ident
        c.vals[j] = s
        c.count += 1
        c.misses += 1
        return 0

    cdef int grow_arena(self, size_t extra) except -1:
        cdef size_t cap = self.ar_cap * 2
        while cap < self.ar_size + extra:
            cap *= 2
        if cap > 0xFFFFFFF0:
            raise OverflowError("string arena past 4 GiB")
        nb = np.empty(cap, dtype=np.uint8)
        memcpy(cnp.PyArray_DATA(nb), self.ar, self.ar_size)
        self.ar_buf = nb                  # views of the old buffer keep it alive
        self.ar = <uint8_t *>cnp.PyArray_DATA(nb)
        self.ar_cap = cap
        return 0

    cdef int grow_fdtab(self, size_t extra) except -1:
        cdef size_t cap = self.fd_cap * 2
        while cap < self.fd_used + extra:
            cap *= 2
        nb = np.empty(cap, dtype=self.fd_dtype)
        memcpy(cnp.PyArray_DATA(nb), self.fdr, self.fd_used * sizeof(fd_row))
        self.fd_buf = nb
        self.fdr = <fd_row *>cnp.PyArray_DATA(nb)
        self.fd_cap = cap
        return 0

    cdef int load(self, uint32_t pid, const lbd_event *e) except -1:
        """A pid never seen: procfs through the host, else what the event's header tells (its own
        pid: comm, ppid, the parent's fds as an incomplete table), else a placeholder (a parent)."""
        cdef proc *p
        cdef proc *q
        cdef char comm16[16]
        self.loads += 1
        info = self.host.load(pid)
        if info is not None:
            self.seed_entry(pid, info)
            return 0
        p = self.insert(pid)
        if p == NULL:
            raise MemoryError()
        if pid == e.h.pid:
            p.ppid = e.h.ppid
            memcpy(comm16, e.h.comm, 16)
            self.set_comm(p, comm16)
            p.flags = PF_INCOMPLETE
            q = self.lookup(p.ppid) if p.ppid else NULL
            if q != NULL and q != p and not (q.flags & PF_GHOST):
                if ft_copy(&p.fds, &q.fds) < 0:
                    raise MemoryError()
        else:
            p.flags = PF_GHOST | PF_INCOMPLETE
            p.comm = ls_ref(HNAME[0])
            self.mark_dead(p, self.now)
        return 0

    cdef int seed_entry(self, uint32_t pid, tuple info) except -1:
        cdef proc *p = self.insert(pid)
        cdef lstr *s
        cdef char comm16[16]
        cdef bytes cb
        if p == NULL:
            raise MemoryError()
        ppid, comm, cmdline, exe, cwd, fds = info
        p.ppid = ppid
        cb = (comm.encode("utf-8", "surrogateescape") if isinstance(comm, str) else bytes(comm))[:15]
        memset(comm16, 0, 16)
        memcpy(comm16, PyBytes_AS_STRING(cb), len(cb))
        memcpy(p.comm_raw, comm16, 16)
        p.comm = self.py_text(cb)
        if cmdline:
            p.cmdline = self.py_text(cmdline)
        if exe:
            p.exe = self.py_text(exe)
        if cwd:
            p.cwd = self.py_text(cwd)
        if fds is None:
            p.flags |= PF_INCOMPLETE
        else:
            for fd, name, cloexec in fds:
                s = self.py_text(name)
                if ft_put(&p.fds, fd, s, bool(cloexec), kind_of_name(s), self.max_fds) < 0:
                    raise MemoryError()
        return 0

    # ---- Python API ------------------------------------------------------------------------------------

    def seed(self, uint32_t pid, tuple info):
        """Put a process read from procfs in the table: info = (ppid, comm, cmdline, exe, cwd,
        fds) with text as bytes (None: unknown) and fds [(fd, name, cloexec, kind)] or None."""
        self.seed_entry(pid, info)

    def enrich(self, Batch batch not None):
        """Set batch.enrich, batch.strtab and batch.fdtab for the batch's events (in their order)."""
        self._enrich(batch)
        self._attach(batch)

    def plugin_view(self, Batch batch not None, bint attach=False):
        """enrich(batch) for the Falco plugin: the addresses it reads, without a numpy view made
        per batch: (n, ptrs, enrich, strtab, strtab_len, fdtab, fdtab_len), the batch's event
        pointers and this engine's buffers (valid until the next enrich or plugin_view, like the
        batch).  attach: also set batch.enrich, batch.strtab, batch.fdtab (a filter on enriched
        fields, the putfile writer)."""
        self._enrich(batch)
        if attach:
            self._attach(batch)
        return (batch.n, <size_t>batch.ptrs_p, <size_t>self.out, <size_t>self.ar, self.ar_size,
                <size_t>self.fdr, self.fd_used)

    cdef _attach(self, Batch batch):
        batch.enrich = self.out_buf[:batch.n]
        batch.strtab = self.ar_buf[:self.ar_size]
        batch.fdtab = self.fd_buf[:self.fd_used]
        batch.enriched_generation = batch.generation

    cdef _enrich(self, Batch batch):
        cdef int r
        cdef Py_ssize_t n = batch.n
        if self.running:
            raise RuntimeError("Engine.enrich is already running: one batch at a time (one thread)")
        self.running = True
        self.batches += 1
        self.events += n
        if self.ar_size > self.max_strtab or self.fd_used > self.max_fd_rows:
            self.new_epoch()
        if <size_t>n > self.out_cap:
            self.out_cap = max(<size_t>n, 2 * self.out_cap)
            self.out_buf = np.zeros(self.out_cap, dtype=self.enrich_dtype)
            self.out = <enrich_row *>cnp.PyArray_DATA(self.out_buf)
        self.ev = batch.ev_p
        self.arena_p = batch.arena_p
        self.n = n
        self.i = 0
        self.phase = 0
        self.link_ready = False
        if n:
            self.now = batch.ev_p[n - 1].h.ts
        try:
            while True:
                with nogil:
                    r = self.run()
                if r == R_DONE:
                    break
                self._slow(r)
        finally:
            self.ev = NULL
            self.arena_p = NULL
            self.running = False
            ls_set(&self.link_name, NULL)
        with nogil:
            self.reap()

    def counters(self) -> dict:
        """The counters of stats() that are cheap to read (no walk of the tables): batches,
        events, state changes applied, table size, hits, misses, evictions, procfs loads."""
        return {"batches": self.batches, "events": self.events, "applied": self.applied,
                "procs": self.hcount, "hits": self.hits, "misses": self.misses, "evictions": self.evictions,
                "loads": self.loads, "slow_calls": self.slow_calls, "epochs": self.epochs}

    def process(self, uint32_t pid):
        """The table's entry for pid as a dict (None: not in the table); no look-up counted."""
        cdef proc *p = self.lookup(pid)
        if p == NULL:
            return None
        s = lambda x: None if x == 0 else PyBytes_FromStringAndSize((<lstr *><size_t>x).data,
                                                                    (<lstr *><size_t>x).len).decode()
        return {
            "pid": p.pid, "ppid": p.ppid, "comm": s(<size_t>p.comm), "cmdline": s(<size_t>p.cmdline),
            "exe": s(<size_t>p.exe), "cwd": s(<size_t>p.cwd), "dead": bool(p.flags & PF_DEAD),
            "complete": not (p.flags & PF_INCOMPLETE), "subreaper": bool(p.flags & PF_SUBREAPER),
            "fds": [(p.fds.rows[k].fd, s(<size_t>p.fds.rows[k].name), bool(p.fds.rows[k].cloexec))
                    for k in range(p.fds.n)],
        }

    def stats(self) -> dict:
        """Counters and sizes (see lbd.enrich.Enricher.stats)."""
        cdef proc *p = self.dead_head
        cdef Py_ssize_t dead = 0
        while p != NULL:
            dead += 1
            p = p.dead_next
        return {
            "batches": self.batches, "events": self.events, "applied": self.applied,
            "procs": {"size": self.hcount, "max": self.max_procs, "hits": self.hits, "misses": self.misses,
                      "evictions": self.evictions},
            "exited_pending": dead, "reaped": self.reaped, "loads": self.loads, "slow_calls": self.slow_calls,
            "users": ic_stats(&self.users), "groups": ic_stats(&self.groups),
            "fd_rows": self.fd_rows, "fd_overflow": self.fd_overflow, "epochs": self.epochs,
            "strtab_bytes": self.ar_size,
        }


# ---- helpers outside the class ---------------------------------------------------------------------

cdef void proc_free(proc *p) noexcept nogil:
    ls_unref(p.comm)
    ls_unref(p.cmdline)
    ls_unref(p.exe)
    ls_unref(p.cwd)
    ft_clear(&p.fds)
    free(p)


cdef int ic_init(idcache *c, uint32_t max) except -1:
    c.max = max
    c.cap = 16
    while c.cap < 2 * max:
        c.cap *= 2
    c.keys = <uint32_t *>calloc(c.cap, sizeof(uint32_t))
    c.vals = <lstr **>calloc(c.cap, sizeof(lstr *))
    if c.keys == NULL or c.vals == NULL:
        raise MemoryError()
    return 0


cdef void ic_clear(idcache *c) noexcept nogil:
    cdef uint32_t k
    for k in range(c.cap):
        if c.vals[k] != NULL:
            ls_unref(c.vals[k])
            c.vals[k] = NULL
    c.count = 0
    c.last_val = NULL


cdef void ic_free(idcache *c) noexcept nogil:
    if c.vals != NULL:
        ic_clear(c)
    free(c.keys)
    free(c.vals)
    c.keys = NULL
    c.vals = NULL


cdef dict ic_stats(idcache *c):
    return {"size": c.count, "max": c.max, "hits": c.hits, "misses": c.misses, "evictions": c.evictions}


# ---- the dispatch table ----------------------------------------------------------------------------

cdef lstr *_const(str s) except NULL:
    b = s.encode()
    cdef lstr *r = ls_new(PyBytes_AS_STRING(b), len(b))
    if r == NULL:
        raise MemoryError()
    return r


#: syscall -> (handler, p1, p2, p3, mask, fixed name); the fd names are those procfs shows
_SPECS = {
    "clone": (H_CLONE,), "clone3": (H_CLONE3,), "fork": (H_FORK,), "vfork": (H_FORK,),
    "execve": (H_EXECVE, -1, 0, 1), "execveat": (H_EXECVE, 0, 1, 2),
    "prctl": (H_PRCTL,), "chdir": (H_CHDIR,), "fchdir": (H_FCHDIR,),
    "open": (H_OPEN, -1, 0, 1, O_CLOEXEC), "openat": (H_OPEN, 0, 1, 2, O_CLOEXEC),
    "openat2": (H_OPEN, 0, 1, -1, 0), "creat": (H_OPEN, -1, 0, -1, 0),
    "open_tree": (H_OPEN, 0, 1, 2, O_CLOEXEC),
    "open_by_handle_at": (H_LINKFD, 2, 0, 0, O_CLOEXEC), "pidfd_getfd": (H_LINKFD, -2),
    "fsmount": (H_LINKFD, 1, 0, 0, 1), "bpf": (H_BPF, -2),
    "memfd_create": (H_MEMFD,), "socket": (H_SOCKET,), "connect": (H_CONNECT,), "bind": (H_BIND,),
    "accept": (H_ACCEPT, -1), "accept4": (H_ACCEPT, 3), "socketpair": (H_SOCKETPAIR, 1),
    "pipe": (H_PIPE, -1), "pipe2": (H_PIPE, 1),
    "dup": (H_DUP,), "dup2": (H_DUP2,), "dup3": (H_DUP3,), "fcntl": (H_FCNTL,), "close": (H_CLOSE,),
    "close_range": (H_CLOSE_RANGE,), "ioctl": (H_IOCTL,),
    "eventfd": (H_NEWFD, -1, 0, 0, 0, "anon_inode:[eventfd]"),
    "eventfd2": (H_NEWFD, 1, 0, 0, O_CLOEXEC, "anon_inode:[eventfd]"),
    "epoll_create": (H_NEWFD, -1, 0, 0, 0, "anon_inode:[eventpoll]"),
    "epoll_create1": (H_NEWFD, 0, 0, 0, O_CLOEXEC, "anon_inode:[eventpoll]"),
    "timerfd_create": (H_NEWFD, 1, 0, 0, O_CLOEXEC, "anon_inode:[timerfd]"),
    "signalfd": (H_NEWFD, -1, 0, 0, 0, "anon_inode:[signalfd]"),
    "signalfd4": (H_NEWFD, 3, 0, 0, O_CLOEXEC, "anon_inode:[signalfd]"),
    "inotify_init": (H_NEWFD, -1, 0, 0, 0, "anon_inode:inotify"),
    "inotify_init1": (H_NEWFD, 0, 0, 0, O_CLOEXEC, "anon_inode:inotify"),
    "fanotify_init": (H_NEWFD, 0, 0, 0, 1, "anon_inode:[fanotify]"),
    "userfaultfd": (H_NEWFD, 0, 0, 0, O_CLOEXEC, "anon_inode:[userfaultfd]"),
    "io_uring_setup": (H_NEWFD, -2, 0, 0, 0, "anon_inode:[io_uring]"),
    "perf_event_open": (H_NEWFD, 4, 0, 0, 8, "anon_inode:[perf_event]"),
    "pidfd_open": (H_NEWFD, -2, 0, 0, 0, "anon_inode:[pidfd]"),
    "fsopen": (H_NEWFD, 1, 0, 0, 1, "anon_inode:[fscontext]"),
    "fspick": (H_NEWFD, 2, 0, 0, 1, "anon_inode:[fscontext]"),
    "landlock_create_ruleset": (H_NEWFD, -2, 0, 0, 0, "anon_inode:landlock-ruleset"),
}

#: fixed names HNAME[0..14] (syscall numbers start above them only for H_NEWFD entries, which
#: are never 0..14: read, write, open, close, stat, ... have other handlers or none)
_FIXED = ("", "?", "pipe", "", "unix", "anon_inode:bpf-map", "anon_inode:bpf-prog", "anon_inode:bpf_link",
          "anon_inode:btf", "tcp", "udp", "raw", "netlink", "packet", "socket")


def _init_tables():
    memset(HK, 0, sizeof(HK))
    memset(HP1, -1, sizeof(HP1))
    memset(HP2, -1, sizeof(HP2))
    memset(HP3, -1, sizeof(HP3))
    memset(HMASK, 0, sizeof(HMASK))
    memset(HNAME, 0, sizeof(HNAME))
    for k, s in enumerate(_FIXED):
        HNAME[k] = _const(s)
    HK[LBD_NR_SCHED_FORK] = H_FORKREC
    HK[LBD_NR_SCHED_EXEC] = H_EXECREC
    HK[LBD_NR_SCHED_EXIT] = H_EXITREC
    for name, spec in _SPECS.items():
        nr = _syscalls.BY_NAME[name].nr
        if nr < len(_FIXED) and len(spec) > 5:
            raise ImportError(f"lbd._enrich: {name} ({nr}) collides with the fixed names")
        HK[nr] = spec[0]
        if len(spec) > 1:
            HP1[nr] = spec[1]
        if len(spec) > 2:
            HP2[nr] = spec[2]
        if len(spec) > 3:
            HP3[nr] = spec[3]
        if len(spec) > 4:
            HMASK[nr] = spec[4]
        if len(spec) > 5:
            HNAME[nr] = _const(spec[5])


_init_tables()

#: the syscalls whose records change the tables (tests: every state syscall of the probe is here)
STATE_NAMES = frozenset(_SPECS)
