# cython: language_level=3
"""Bulk consumer of lbd's BPF ring buffer.

`Ring.fill(batch)` copies every ready record once, with the GIL released, into the batch's arena
(behind a Falco plugin-event prefix) and its header fields into the batch's numpy table in the same
pass.  No Python object is made per record.  Each record is validated once (ring length against
the header's size, version, syscall number, direction, argument count, every payload slot inside
the record) before anything trusts it; a malformed one is counted and skipped.  Positions or
lengths the kernel can never produce (a record longer than what the producer published, unaligned
or impossible positions) cannot be parsed past: the consumer counts a resync and skips to the
producer's position.

Ring space is released (consumer position stored, with release ordering) after the records have
been copied, every 256 records and at the end of the fill: a batch never points into the ring.  The batch's memory is reused by the
next `fill()` into it, which is what its lifetime means: valid until the next `fill()` or
`release()`.

The Batch accessors `gather`, `strings`, `payloads` and `payloads_fixed` extract one argument's
payload over many events in one C loop (the byte copies with the GIL released); they bounds-check
each payload against the arena, so they are safe whatever the table holds.

Debug build (LBD_DEBUG=1 at build time): besides Cython's bounds checks, every pointer the
unchecked loop dereferences is asserted to lie inside the ring image / arena (abort on failure).
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t, UINT64_MAX
from libc.string cimport memcpy, memset
from libc.stdlib cimport malloc, free
from libc.errno cimport errno, EINTR
from posix.unistd cimport close

import os

import numpy as np
cimport numpy as cnp

from lbd._record cimport (lbd_hdr, lbd_slot, lbd_settings, lbd_desc, lbd_sc_stat, lbd_sock,
                          LBD_RECORD_VERSION, LBD_MAX_ARGS, LBD_PAYLOAD_MAX, LBD_RECORD_ALIGN)
from lbd import record as _record

cnp.import_array()

cdef extern from "<sys/mman.h>" nogil:
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void *addr, size_t length)
    int PROT_READ, PROT_WRITE, MAP_SHARED
    void *MAP_FAILED

cdef extern from "<sys/epoll.h>" nogil:
    cdef union epoll_data_t "epoll_data":
        void *ptr
        int fd
        uint32_t u32
        uint64_t u64
    cdef struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)
    int EPOLL_CTL_ADD, EPOLLIN, EPOLLET, EPOLL_CLOEXEC

cdef extern from *:
    """
    #include <stdint.h>
    #include <stdio.h>
    #include <stdlib.h>
    /* BPF ring buffer ABI (kernel/bpf/ringbuf.c, libbpf ringbuf.c): the kernel stores
     * producer_pos with release after writing a reserved record's header (busy bit set), and
     * commits a record by clearing the busy bit with a full barrier (xchg).  We load both with
     * acquire, so the record bytes we then read are the committed ones, and store consumer_pos
     * with release after our last read of the records it frees. */
    static inline uint64_t lbd_load_acq64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline uint32_t lbd_load_acq32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void lbd_store_rel64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    #define LBD_RB_BUSY_BIT    (1u << 31)
    #define LBD_RB_DISCARD_BIT (1u << 30)
    #define LBD_RB_HDR_SZ      8
    #pragma pack(push, 1)
    struct lbd_falco_prefix {
        uint64_t ts; uint64_t tid; uint32_t len; uint16_t type; uint32_t nparams;
        uint32_t plen0; uint32_t plen1; uint32_t plugin_id;
    };
    #pragma pack(pop)
    /* The per-record validation (see rec__valid() in the .pyx for the rules).  The six payload
     * slots are checked together: each slot is one u32 (off | len << 16); with SSE2 all six in
     * two vectors, branch-free. */
    #include "lbd_record.h"
    #ifdef __SSE2__
    #include <emmintrin.h>
    static inline int lbd_slots_bad(const struct lbd_slot *slot, uint32_t rlen)
    {
        const __m128i lo16 = _mm_set1_epi32(0xffff), hdr = _mm_set1_epi32(sizeof(struct lbd_hdr));
        const __m128i zero = _mm_setzero_si128(), lim = _mm_set1_epi32((int)rlen);
        __m128i v[2] = { _mm_loadu_si128((const __m128i *)slot),                /* slots 0..3 */
                         _mm_loadl_epi64((const __m128i *)(slot + 4)) };        /* 4, 5, then 0s */
        __m128i bad = zero;
        for (int i = 0; i < 2; i++) {
            __m128i off = _mm_and_si128(v[i], lo16), len = _mm_srli_epi32(v[i], 16);
            __m128i out = _mm_or_si128(_mm_cmpgt_epi32(hdr, off),                /* off < HDR */
                                       _mm_cmpgt_epi32(_mm_add_epi32(off, len), lim)); /* end > rlen */
            bad = _mm_or_si128(bad, _mm_andnot_si128(_mm_cmpeq_epi32(len, zero), out));
        }
        return _mm_movemask_epi8(bad);
    }
    #else
    static inline int lbd_slots_bad(const struct lbd_slot *slot, uint32_t rlen)
    {
        uint32_t bad = 0;
        for (int i = 0; i < LBD_MAX_ARGS; i++) {
            uint32_t off = slot[i].off, len = slot[i].len;
            bad |= (len != 0) & ((off < sizeof(struct lbd_hdr)) | (off + len > rlen));
        }
        return bad;
    }
    #endif
    /* LBD_DEBUG_CHECKS (setup.py, LBD_DEBUG=1): assert what the unchecked loop trusts. */
    #ifdef LBD_DEBUG_CHECKS
    #define LBD_DEBUG_BUILD 1
    #define LBD_CHECK(c) do { if (!(c)) { \\
        fprintf(stderr, "lbd._decode: internal check failed at %s:%d: %s\\n", __FILE__, __LINE__, #c); \\
        abort(); } } while (0)
    #else
    #define LBD_DEBUG_BUILD 0
    #define LBD_CHECK(c) ((void)0)
    #endif
    """
    uint64_t lbd_load_acq64(const uint64_t *p) nogil
    uint32_t lbd_load_acq32(const uint32_t *p) nogil
    void lbd_store_rel64(uint64_t *p, uint64_t v) nogil
    uint32_t LBD_RB_BUSY_BIT, LBD_RB_DISCARD_BIT, LBD_RB_HDR_SZ
    bint LBD_DEBUG_BUILD
    void LBD_CHECK(bint c) nogil
    int lbd_slots_bad(const lbd_slot *slot, uint32_t rlen) nogil
    struct lbd_falco_prefix:
        uint64_t ts
        uint64_t tid
        uint32_t len
        uint16_t type
        uint32_t nparams
        uint32_t plen0
        uint32_t plen1
        uint32_t plugin_id

cdef enum:
    PPME_PLUGINEVENT_E = 322
    HDR_SIZE = sizeof(lbd_hdr)
    RECORD_MAX = sizeof(lbd_hdr) + LBD_PAYLOAD_MAX
    N_VALID = 1024                      # size of Ring.valid_nr
    DIR_ENTER = 62                      # '>'
    DIR_EXIT = 60                       # '<'
    H_UNKNOWN = 0                       # rview.state: not looked at since the last record
    H_HEAD = 1                          # head is the next record, validated
    H_EMPTY = 2                         # nothing ready up to the loaded producer position
    H_BUSY = 3                          # the next record is reserved, not committed yet

# ---- import-time layout checks: the numpy dtypes must be the C structs, field for field -------

EVENT_DTYPE = _record.EVENT_DTYPE


def _view_dtype(base):
    """EVENT_DTYPE plus `syscall_id`, a second name for the bytes of `nr` (overlapping field)."""
    names = list(base.names) + ["syscall_id"]
    return np.dtype({
        "names": names,
        "formats": [base.fields[n][0] for n in base.names] + [base.fields["nr"][0]],
        "offsets": [base.fields[n][1] for n in base.names] + [base.fields["nr"][1]],
        "itemsize": base.itemsize,
    })


#: The dtype of `Batch.events`: EVENT_DTYPE (the C struct) with the alias `syscall_id` of `nr`.
EVENT_VIEW_DTYPE = _view_dtype(EVENT_DTYPE)


def _check_layout():
    cdef lbd_event e
    cdef lbd_hdr *h = &e.h
    cdef size_t base = <size_t>&e
    c_offsets = {
        "version": <size_t>&h.version - base, "size": <size_t>&h.size - base, "nr": <size_t>&h.nr - base,
        "dir": <size_t>&h.dir - base, "nargs": <size_t>&h.nargs - base, "flags": <size_t>&h.flags - base,
        "pid": <size_t>&h.pid - base, "tid": <size_t>&h.tid - base, "ppid": <size_t>&h.ppid - base,
        "uid": <size_t>&h.uid - base, "gid": <size_t>&h.gid - base, "ts": <size_t>&h.ts - base,
        "latency": <size_t>&h.latency - base, "res": <size_t>&h.res - base, "comm": <size_t>&h.comm - base,
        "args": <size_t>&h.args - base, "slot": <size_t>&h.slot - base,
        "ets": <size_t>&h.ets - base, "cgroup_id": <size_t>&h.cgroup_id - base,
        "pidns": <size_t>&h.pidns - base, "mntns": <size_t>&h.mntns - base,
        "loginuid": <size_t>&h.loginuid - base, "xslot": <size_t>&h.xslot - base,
        "rec": <size_t>&e.rec - base, "cpu_ring": <size_t>&e.cpu_ring - base,
    }
    if sizeof(lbd_hdr) != _record.HDR_DTYPE.itemsize:
        raise ImportError(f"lbd_hdr is {sizeof(lbd_hdr)} bytes in C, {_record.HDR_DTYPE.itemsize} in lbd.record")
    if sizeof(lbd_event) != EVENT_DTYPE.itemsize:
        raise ImportError(f"lbd_event is {sizeof(lbd_event)} bytes in C, {EVENT_DTYPE.itemsize} in lbd.record")
    for name, off in c_offsets.items():
        if EVENT_DTYPE.fields[name][1] != off:
            raise ImportError(f"field {name}: offset {off} in C, {EVENT_DTYPE.fields[name][1]} in lbd.record")
    if sizeof(lbd_falco_prefix) != FALCO_PREFIX:
        raise ImportError("Falco plugin event prefix is not 38 bytes")
    if (ARENA_BASE + FALCO_PREFIX) % 8 or LBD_RECORD_ALIGN != 8:
        raise ImportError("arena records would not be 8-byte aligned")
    if LBD_RECORD_VERSION != _record.VERSION:
        raise ImportError("record version differs between lbd_record.h and lbd.record")
    if _record.NR_SCHED_EXIT >= N_VALID:
        raise ImportError("sched pseudo syscall numbers do not fit Ring.valid_nr")
    # the map value layouts lbd.probe writes with numpy (lbd.record's dtypes)
    cdef lbd_settings st
    cdef size_t sb = <size_t>&st
    s_offsets = {
        "drop_mode": <size_t>&st.drop_mode - sb, "filter_generation": <size_t>&st.filter_generation - sb,
        "state_on": <size_t>&st.state_on - sb, "wake_bytes": <size_t>&st.wake_bytes - sb,
        "only_tids_on": <size_t>&st.only_tids_on - sb, "syscall_stats": <size_t>&st.syscall_stats - sb,
        "path_on": <size_t>&st.path_on - sb,
    }
    cdef lbd_desc de
    cdef lbd_sc_stat sc
    cdef lbd_sock so
    for dtype, csize, what in ((_record.SETTINGS_DTYPE, sizeof(lbd_settings), "lbd_settings"),
                               (_record.DESC_DTYPE, sizeof(lbd_desc), "lbd_desc"),
                               (_record.SC_STAT_DTYPE, sizeof(lbd_sc_stat), "lbd_sc_stat"),
                               (_record.SOCK_DTYPE, sizeof(lbd_sock), "lbd_sock")):
        if dtype.itemsize != csize:
            raise ImportError(f"{what} is {csize} bytes in C, {dtype.itemsize} in lbd.record")
    for name, off in s_offsets.items():
        if _record.SETTINGS_DTYPE.fields[name][1] != off:
            raise ImportError(f"lbd_settings.{name}: offset {off} in C, "
                              f"{_record.SETTINGS_DTYPE.fields[name][1]} in lbd.record")
    if (_record.DESC_DTYPE.fields["flags"][1] != <size_t>&de.flags - <size_t>&de
            or _record.DESC_DTYPE.fields["path_arg"][1] != <size_t>&de.path_arg - <size_t>&de
            or _record.SC_STAT_DTYPE.fields["hist"][1] != <size_t>&sc.hist - <size_t>&sc
            or _record.SOCK_DTYPE.fields["raddr"][1] != <size_t>&so.raddr - <size_t>&so):
        raise ImportError("lbd_desc / lbd_sc_stat / lbd_sock field offsets differ from lbd.record")


_check_layout()

#: bytes of Falco's plugin-event prefix in front of each record in the arena
FALCO_PREFIX_SIZE = FALCO_PREFIX
#: arena offset of the first event's Falco prefix (records are then 8-byte aligned)
ARENA_OFFSET = ARENA_BASE
#: Falco event type of the prefix (PPME_PLUGINEVENT_E)
PLUGIN_EVENT_TYPE = PPME_PLUGINEVENT_E
#: largest record the decoder accepts (header + LBD_PAYLOAD_MAX)
RECORD_MAX_SIZE = RECORD_MAX
#: True in a LBD_DEBUG=1 build (internal checks abort on failure)
DEBUG = bool(LBD_DEBUG_BUILD)


cdef inline size_t align8(size_t n) noexcept nogil:
    return (n + 7) & ~(<size_t>7)


cdef inline bint rec__valid(const lbd_hdr *h, uint32_t rlen, const uint8_t *valid_nr) noexcept nogil:
    """The one validation of a record: after it, the copy and every reader trust its header.

    The caller guarantees rlen bytes at h are readable; nothing of h is read unless
    rlen >= HDR_SIZE.  nargs is range-checked only: readers take argument names from the table.
    """
    if rlen < HDR_SIZE or rlen > RECORD_MAX:
        return False
    if (h.size != rlen or h.version != LBD_RECORD_VERSION or h.nr >= N_VALID or not valid_nr[h.nr]
            or h.nargs > LBD_MAX_ARGS or (h.dir != DIR_EXIT and h.dir != DIR_ENTER)):
        return False
    # each slot with a payload: HDR_SIZE <= off and off + len <= rlen (all six at once, in C),
    # and the same for the extra slot
    if h.xslot.len and (h.xslot.off < HDR_SIZE or <uint32_t>h.xslot.off + h.xslot.len > rlen):
        return False
    return lbd_slots_bad(h.slot, rlen) == 0


cdef inline uint32_t ev__payload(const lbd_event *e, int slot, size_t used, const uint8_t *arena,
                                 const uint8_t **p) noexcept nogil:
    """Length of argument `slot`'s payload of event e and (through p) where it is in the arena;
    0 when it has none.  Checked against the arena bytes in use, so a tampered row reads nothing."""
    cdef uint32_t ln = e.h.slot[slot].len
    cdef size_t start = <size_t>e.rec + e.h.slot[slot].off
    if ln == 0 or start + ln > used:
        return 0
    p[0] = arena + start
    return ln


cdef inline int check_slot(int slot) except -1:
    if slot < 0 or slot >= LBD_MAX_ARGS:
        raise IndexError(f"argument slot {slot}: 0 .. {LBD_MAX_ARGS - 1}")
    return 0


cdef class Batch:
    """A batch of events: an arena of records plus a numpy table of their headers.

    Invariants: the arena, the table and the pointer array are allocated once here and never
    reallocated; rows [0, n) of the table describe records inside arena[ARENA_OFFSET, used), each
    8-byte aligned behind its 38-byte Falco prefix.  Python sees the buffers read-only.

    Lifetime: `events`, the arrays and memoryviews taken from it and the event pointers are valid
    until the next `Ring.fill()` into this batch (`Collector.next_batch()`) or `release()`; after
    that they show other events.  Copy (`batch.events.copy()`) what must outlive it.  Values the
    accessors return (`strings`, `payloads`, `gather`, ...) are copies and stay valid.
    """

    def __cinit__(self, size_t capacity=512, size_t arena_bytes=0):
        if capacity < 1:
            raise ValueError(f"batch capacity: {capacity}, at least 1")
        if arena_bytes == 0:
            arena_bytes = capacity * 640
        # Room for at least one largest record, so a fill can always make progress.
        arena_bytes = max(arena_bytes, ARENA_BASE + align8(FALCO_PREFIX + RECORD_MAX))
        if arena_bytes > 0xFFFFFFFF:
            raise ValueError(f"batch arena of {arena_bytes} bytes: at most 4 GiB (offsets are 32-bit)")
        self.capacity = capacity
        self.arena_bytes = arena_bytes
        self.arena = np.zeros(arena_bytes, dtype=np.uint8)
        self.table = np.zeros(capacity, dtype=EVENT_DTYPE)
        self.ptrs = np.zeros(capacity, dtype=np.uint64)
        self.arena_p = <uint8_t *>cnp.PyArray_DATA(self.arena)
        self.ev_p = <lbd_event *>cnp.PyArray_DATA(self.table)
        self.ptrs_p = <uint64_t *>cnp.PyArray_DATA(self.ptrs)
        for a in (self.arena, self.table, self.ptrs):
            a.flags.writeable = False     # Python reads; only Ring.drain() writes (raw pointers)
        self.view = self.table.view(EVENT_VIEW_DTYPE)
        self.n = 0
        self.used = ARENA_BASE
        self.generation = 0
        self.plugin_id = 0

    def __len__(self):
        return self.n

    @property
    def events(self):
        """numpy structured array (EVENT_VIEW_DTYPE) of this batch's events: a read-only view.

        Fields: those of lbd.record.EVENT_DTYPE (ts is wall-clock ns; `rec` is the record's offset
        in the arena and `size` its length) plus `syscall_id`, another name for `nr`.
        """
        return self.view[: self.n]

    def record(self, size_t i):
        """Event i's record (header + payload) as a read-only memoryview into the arena."""
        if i >= self.n:
            raise IndexError(f"event {i} of a batch of {self.n}")
        cdef size_t rec = self.ev_p[i].rec
        return memoryview(self.arena)[rec: rec + self.ev_p[i].h.size]

    def falco_event(self, size_t i):
        """Event i as Falco's plugin event (prefix + record), a read-only memoryview into the arena."""
        if i >= self.n:
            raise IndexError(f"event {i} of a batch of {self.n}")
        cdef size_t rec = self.ev_p[i].rec
        return memoryview(self.arena)[rec - FALCO_PREFIX: rec + self.ev_p[i].h.size]

    def address(self):
        """Address of the arena (for C consumers in the same process, e.g. the Falco plugin)."""
        return <size_t>self.arena_p

    def arena_bytes_used(self):
        """The events' bytes of the arena: what Batch.load() takes back (a capture's batch)."""
        return memoryview(self.arena)[ARENA_BASE: self.used]

    def load(self, data, cpu_ring=None, int64_t wall_offset=0, valid_nrs=None):
        """Replace the events with those of `data`, bytes laid out as arena_bytes_used() gives them
        (a recorded batch: each event's Falco prefix, its record, padding to 8).  Every record is
        validated as a fill validates it; the table rows get ts + wall_offset as a fill gives them,
        and cpu_ring from `cpu_ring` (one value per event, default 0).  Returns the number of
        events.  Raises ValueError on the first malformed event (a capture file is not trusted)."""
        cdef const uint8_t[::1] d = data
        cdef size_t total = d.shape[0], at = 0, n = 0, rlen, need
        cdef const lbd_falco_prefix *pre
        cdef const lbd_hdr *h
        cdef lbd_event *e
        cdef uint8_t valid[1024]
        memset(valid, 0, sizeof(valid))
        if valid_nrs is None:
            from lbd import syscalls
            valid_nrs = [sc.nr for sc in syscalls.TABLE] + [
                _record.NR_SCHED_FORK, _record.NR_SCHED_EXEC, _record.NR_SCHED_EXIT]
        for nr in valid_nrs:
            if 0 <= nr < N_VALID:
                valid[nr] = 1
        if ARENA_BASE + total > self.arena_bytes:
            raise ValueError(f"a recorded batch of {total} bytes does not fit an arena of {self.arena_bytes}")
        cdef const uint32_t[::1] rings
        cdef size_t nrings = 0
        if cpu_ring is not None:
            rings = np.ascontiguousarray(cpu_ring, dtype=np.uint32)
            nrings = rings.shape[0]
        self.n = 0
        self.used = ARENA_BASE
        self.generation += 1
        if total:
            memcpy(self.arena_p + ARENA_BASE, &d[0], total)
        while at < total:
            if n >= self.capacity:
                raise ValueError(f"a recorded batch holds more than {self.capacity} events")
            if total - at < FALCO_PREFIX:
                raise ValueError(f"event {n}: {total - at} bytes left, less than a prefix")
            pre = <const lbd_falco_prefix *>(self.arena_p + ARENA_BASE + at)
            if pre.len < FALCO_PREFIX or pre.type != PPME_PLUGINEVENT_E:
                raise ValueError(f"event {n}: not a plugin event (type {pre.type}, length {pre.len})")
            rlen = pre.len - FALCO_PREFIX
            need = align8(pre.len)
            if at + need > total or rlen != pre.plen1:
                raise ValueError(f"event {n}: length {pre.len} past the batch's {total} bytes")
            h = <const lbd_hdr *>(self.arena_p + ARENA_BASE + at + FALCO_PREFIX)
            if not rec__valid(h, <uint32_t>rlen, valid):
                raise ValueError(f"event {n}: malformed record")
            e = self.ev_p + n
            memcpy(&e.h, h, HDR_SIZE)
            e.h.ts = e.h.ts + <uint64_t>wall_offset
            e.rec = <uint32_t>(ARENA_BASE + at + FALCO_PREFIX)
            e.cpu_ring = rings[n] if n < nrings else 0
            self.ptrs_p[n] = <uint64_t>(self.arena_p + ARENA_BASE + at)
            at += need
            n += 1
        self.n = n
        self.used = ARENA_BASE + total
        return n

    def release(self):
        """Forget the events; the memory is reused by the next fill."""
        self.n = 0
        self.used = ARENA_BASE
        self.generation += 1

    cdef object _index(self, idx):
        """idx (None: all events; int or bool array-like) as a C-contiguous intp array in [0, n)."""
        cdef Py_ssize_t n = self.n
        if idx is None:
            return np.arange(n, dtype=np.intp)
        a = np.asarray(idx)
        if a.dtype == np.bool_:
            if a.shape != (n,):
                raise IndexError(f"boolean index of shape {a.shape} for a batch of {n}")
            return np.flatnonzero(a).astype(np.intp, copy=False)
        if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
            raise IndexError("index: a 1-d array of event numbers or a boolean mask")
        a = a.astype(np.intp)
        if a.size:
            a = np.where(a < 0, a + n, a)
            if a.min() < 0 or a.max() >= n:
                raise IndexError(f"event index out of range for a batch of {n}")
        return np.ascontiguousarray(a)

    def gather(self, int slot, idx=None):
        """Argument `slot`'s payload bytes of events idx (default: all), concatenated.

        Returns (data, offsets): uint8[total] and int64[len(idx) + 1]; event idx[k]'s payload is
        data[offsets[k]:offsets[k + 1]] (empty when it has none).  One C pass, GIL released.
        """
        check_slot(slot)
        cdef cnp.intp_t[::1] ix = self._index(idx)
        cdef Py_ssize_t m = ix.shape[0], k
        offsets = np.empty(m + 1, dtype=np.int64)
        cdef int64_t[::1] off = offsets
        cdef const uint8_t *p = NULL
        cdef uint32_t ln
        cdef int64_t total = 0
        with nogil:
            off[0] = 0
            for k in range(m):
                LBD_CHECK(<size_t>ix[k] < self.n)
                total += ev__payload(self.ev_p + ix[k], slot, self.used, self.arena_p, &p)
                off[k + 1] = total
        data = np.empty(total, dtype=np.uint8)
        cdef uint8_t *d = <uint8_t *>cnp.PyArray_DATA(data)
        with nogil:
            for k in range(m):
                ln = ev__payload(self.ev_p + ix[k], slot, self.used, self.arena_p, &p)
                if ln:
                    LBD_CHECK(off[k] + ln <= total)
                    memcpy(d + off[k], p, ln)
        return data, offsets

    def strings(self, int slot, idx=None, missing=None, str errors="backslashreplace"):
        """Argument `slot`'s payload of events idx (default: all) decoded as UTF-8 text.

        Returns a numpy object array of str; `missing` (None) where an event has no payload.
        Undecodable bytes follow `errors` (as bytes.decode; default: \\xNN escapes).
        """
        check_slot(slot)
        cdef cnp.intp_t[::1] ix = self._index(idx)
        cdef Py_ssize_t m = ix.shape[0], k
        out = np.empty(m, dtype=object)
        cdef object[::1] ov = out
        eb = errors.encode()
        cdef const char *ep = eb
        cdef const uint8_t *p = NULL
        cdef uint32_t ln
        for k in range(m):
            ln = ev__payload(self.ev_p + ix[k], slot, self.used, self.arena_p, &p)
            ov[k] = PyUnicode_DecodeUTF8(<const char *>p, ln, ep) if ln else missing
        return out

    def payloads(self, int slot, idx=None, missing=None):
        """Argument `slot`'s payload of events idx (default: all) as a numpy object array of
        bytes; `missing` (None) where an event has no payload."""
        check_slot(slot)
        cdef cnp.intp_t[::1] ix = self._index(idx)
        cdef Py_ssize_t m = ix.shape[0], k
        out = np.empty(m, dtype=object)
        cdef object[::1] ov = out
        cdef const uint8_t *p = NULL
        cdef uint32_t ln
        for k in range(m):
            ln = ev__payload(self.ev_p + ix[k], slot, self.used, self.arena_p, &p)
            ov[k] = PyBytes_FromStringAndSize(<const char *>p, ln) if ln else missing
        return out

    def payloads_fixed(self, int slot, Py_ssize_t width, idx=None):
        """Argument `slot`'s payload of events idx (default: all) in a numpy `S<width>` array:
        the first `width` bytes, NUL padded (numpy strips trailing NULs on access).  For
        vectorised matching (np.char.startswith, ==, np.unique).  One C pass, GIL released."""
        check_slot(slot)
        if width < 1:
            raise ValueError(f"width {width}: at least 1")
        cdef cnp.intp_t[::1] ix = self._index(idx)
        cdef Py_ssize_t m = ix.shape[0], k
        out = np.zeros(m, dtype=f"S{width}")
        cdef uint8_t *o = <uint8_t *>cnp.PyArray_DATA(out)
        cdef const uint8_t *p = NULL
        cdef uint32_t ln
        with nogil:
            for k in range(m):
                ln = ev__payload(self.ev_p + ix[k], slot, self.used, self.arena_p, &p)
                if ln > <size_t>width:
                    ln = <uint32_t>width
                if ln:
                    memcpy(o + k * width, p, ln)
        return out


cdef inline void view__load(rview *v) noexcept nogil:
    """Start a drain of ring v: its positions now.  Positions the kernel never produces (prod -
    cons <= size - 8, both multiples of 8) cannot be parsed: resynchronise on the producer."""
    v.cons = v.cons_pos[0]
    v.start = v.cons
    v.prod = lbd_load_acq64(v.prod_pos)
    v.state = H_UNKNOWN
    if v.cons != v.prod and (((v.cons | v.prod) & 7) != 0 or v.prod - v.cons > v.size):
        v.malformed += 1
        v.resyncs += 1
        v.cons = v.prod


cdef inline int view__head(rview *v) noexcept nogil:
    """Make v's next ready record its head (H_HEAD, validated, head_ets set), skipping discarded
    and malformed ones, or tell why there is none: H_EMPTY (nothing published up to the position
    loaded by view__load), H_BUSY (the next record is reserved, not committed)."""
    cdef const uint8_t *rp
    cdef uint32_t word, rlen
    cdef uint64_t total
    cdef const lbd_hdr *h
    if v.state == H_HEAD:
        return H_HEAD
    while v.cons < v.prod:
        rp = v.data + (v.cons & v.mask)
        LBD_CHECK(rp >= v.data and rp + 8 <= v.data + 2 * v.size)
        word = lbd_load_acq32(<const uint32_t *>rp)
        if word & LBD_RB_BUSY_BIT:
            v.state = H_BUSY                            # being written: it and the rest wait
            return H_BUSY
        rlen = word & ~(LBD_RB_BUSY_BIT | LBD_RB_DISCARD_BIT)
        total = align8(<uint64_t>rlen + LBD_RB_HDR_SZ)
        if total > v.prod - v.cons:
            # Longer than what was published: the length word is corrupt and the next
            # record's position unknown.  Resynchronise on the producer.
            v.malformed += 1
            v.resyncs += 1
            v.cons = v.prod
            break
        LBD_CHECK(rp + total <= v.data + 2 * v.size and total <= v.size)
        if word & LBD_RB_DISCARD_BIT:
            v.discarded += 1
            v.cons += total
            continue
        h = <const lbd_hdr *>(rp + LBD_RB_HDR_SZ)
        if not rec__valid(h, rlen, v.valid_nr):     # validated once; trusted from here on
            v.malformed += 1
            v.cons += total
            continue
        v.head = h
        v.head_rlen = rlen
        v.head_total = total
        v.head_ets = h.ets
        v.state = H_HEAD
        return H_HEAD
    v.state = H_EMPTY
    return H_EMPTY


cdef inline void heap__down(int *hp, int hn, int i, const rview *rv) noexcept nogil:
    """Restore the min-heap (by head_ets) of ring indices hp[0..hn) below position i."""
    cdef int c, x = hp[i]
    cdef uint64_t key = rv[x].head_ets
    while True:
        c = 2 * i + 1
        if c >= hn:
            break
        if c + 1 < hn and rv[hp[c + 1]].head_ets < rv[hp[c]].head_ets:
            c += 1
        if rv[hp[c]].head_ets >= key:
            break
        hp[i] = hp[c]
        i = c
    hp[i] = x


cdef inline void heap__up(int *hp, int i, const rview *rv) noexcept nogil:
    cdef int p, x = hp[i]
    cdef uint64_t key = rv[x].head_ets
    while i > 0:
        p = (i - 1) // 2
        if rv[hp[p]].head_ets <= key:
            break
        hp[i] = hp[p]
        i = p
    hp[i] = x


cdef size_t merge_drain(rview *rv, int k, int *hp, Batch b, size_t max_events, uint64_t horizon,
                        uint64_t wall, uint64_t *last_ets, uint64_t *late, int *stop_out) noexcept nogil:
    """Copy the ready records of rings rv[0..k) into batch b in ets (emit time) order.

    Each ring is in ets order (the probe reads ets just before writing), so this is a k-way merge:
    the rings with a head are kept in a min-heap by head (hp: k ints of scratch), and the ring at
    its top gives a run of records up to the next smallest head (a child of the top) or the bound
    of the rings without one.  A record is released only when no ring can still produce an older
    one: an empty ring bounds the others by `horizon` (the caller's clock minus the merge window:
    what an empty ring writes from now on is newer); a ring whose next record is being written
    (busy) by its last released ets.  Records past those bounds stay in their rings for the next
    fill (stop STOP_HELD).  A record older than one already released (a producer held up longer
    than the window) is released at once and counted in `late`.  Per record: O(1) within a run,
    O(log k) per change of ring.

    It trusts the ring mappings and the batch buffers, and validates every record once
    (view__head).  Each ring's consumer position is stored, with release ordering, after the
    copies it frees: every 256 records and at the end.
    """
    cdef uint8_t *arena = b.arena_p
    cdef lbd_event *ev = b.ev_p
    cdef size_t n = b.n, used = b.used, arena_bytes = b.arena_bytes, need, at
    cdef uint32_t plugin_id = b.plugin_id
    cdef int stop = STOP_EMPTY, r, best, st, hn = 0, n_empty = 0, n_busy = 0
    cdef uint64_t bound, best_ets, ets, busy_min = UINT64_MAX
    cdef rview *v
    cdef const lbd_hdr *h
    cdef const uint8_t *rp
    cdef uint32_t rlen
    cdef lbd_event *e
    cdef lbd_falco_prefix *pre
    for r in range(k):
        view__load(&rv[r])
    if n < max_events:
        for r in range(k):
            st = view__head(&rv[r])
            if st == H_HEAD:
                hp[hn] = r
                heap__up(hp, hn, rv)
                hn += 1
            elif st == H_EMPTY:
                n_empty += 1
            else:
                n_busy += 1
                if rv[r].last_ets < busy_min:
                    busy_min = rv[r].last_ets
    while True:
        if n >= max_events:
            # full: as a single ring's drain always did, without parsing what is left
            for r in range(k):
                if rv[r].cons < rv[r].prod:
                    stop = STOP_FULL
            break
        if hn == 0:
            if n_busy:
                stop = STOP_BUSY
            break
        # the oldest head, and the bound the other rings set
        best = hp[0]
        best_ets = rv[best].head_ets
        bound = UINT64_MAX
        if hn > 1:
            bound = rv[hp[1]].head_ets
            if hn > 2 and rv[hp[2]].head_ets < bound:
                bound = rv[hp[2]].head_ets
        if n_empty and horizon < bound:
            bound = horizon
        if n_busy and busy_min < bound:
            bound = busy_min
        if best_ets > bound and best_ets >= last_ets[0]:
            stop = STOP_HELD                            # another ring may still write older ones
            break
        # the run: best's records up to the bound (a late one goes at once, alone)
        v = &rv[best]
        while True:
            h = v.head
            rlen = v.head_rlen
            need = align8(FALCO_PREFIX + rlen)
            if used + need > arena_bytes:
                stop = STOP_FULL                        # the record stays for the next batch
                break
            rp = <const uint8_t *>h - LBD_RB_HDR_SZ
            at = used
            LBD_CHECK(at + need <= arena_bytes and n < b.capacity and (at + FALCO_PREFIX) % 8 == 0)
            pre = <lbd_falco_prefix *>(arena + at)
            pre.ts = h.ts + wall
            pre.tid = h.tid
            pre.len = FALCO_PREFIX + rlen
            pre.type = PPME_PLUGINEVENT_E
            pre.nparams = 2
            pre.plen0 = 4
            pre.plen1 = rlen
            pre.plugin_id = plugin_id
            # The copies, all from the ring (reading back the arena copy just stored would stall
            # on store forwarding).  The header's fixed size lets the compiler inline both header
            # copies; a short payload is copied as a fixed 64 bytes (inlined too) when the bytes
            # past it are inside the mapping and the arena (the extra bytes land in this slot's
            # padding or where the next record goes, and are never read as data); a long one
            # goes through memcpy().
            e = ev + n
            memcpy(arena + at + FALCO_PREFIX, h, HDR_SIZE)
            memcpy(&e.h, h, HDR_SIZE)
            if rlen > HDR_SIZE:
                if (rlen <= HDR_SIZE + 64 and at + FALCO_PREFIX + HDR_SIZE + 64 <= arena_bytes
                        and rp + LBD_RB_HDR_SZ + HDR_SIZE + 64 <= v.data + 2 * v.size):
                    memcpy(arena + at + FALCO_PREFIX + HDR_SIZE, <const uint8_t *>h + HDR_SIZE, 64)
                else:
                    memcpy(arena + at + FALCO_PREFIX + HDR_SIZE, <const uint8_t *>h + HDR_SIZE,
                           rlen - HDR_SIZE)
            e.h.ts = e.h.ts + wall
            e.rec = <uint32_t>(at + FALCO_PREFIX)
            e.cpu_ring = v.index
            b.ptrs_p[n] = <uint64_t>(arena + at)
            used = at + need
            n += 1
            ets = v.head_ets
            if ets < last_ets[0]:
                late[0] += 1
            else:
                last_ets[0] = ets
            v.last_ets = ets
            v.records += 1
            v.cons += v.head_total
            v.state = H_UNKNOWN
            if (v.records & 255) == 0:
                # a big batch frees ring space as it goes, so producers see room sooner
                lbd_store_rel64(v.cons_pos, v.cons)
            if n >= max_events or view__head(v) != H_HEAD or v.head_ets > bound:
                break
        if stop == STOP_FULL:
            break
        if n >= max_events:
            continue                                    # full: nothing more is parsed (see above)
        # best's new head (or its leaving the heap) and the heap order
        st = view__head(v)
        if st == H_HEAD:
            heap__down(hp, hn, 0, rv)
        else:
            hn -= 1
            if hn:
                hp[0] = hp[hn]
                heap__down(hp, hn, 0, rv)
            if st == H_EMPTY:
                n_empty += 1
            else:
                n_busy += 1
                if v.last_ets < busy_min:
                    busy_min = v.last_ets
    b.n = n
    b.used = used
    for r in range(k):
        v = &rv[r]
        if v.cons != v.start:
            if v.cons > v.start:                        # (a resync may move backwards)
                v.bytes += v.cons - v.start
            lbd_store_rel64(v.cons_pos, v.cons)         # after the last read of what it frees
        v.state = H_UNKNOWN
    stop_out[0] = stop
    return n


cdef class Ring:
    """One of lbd's BPF ring buffers (the probe writes one per cpus_per_ring CPUs), read in bulk.

    Invariants: `data` is the ring's data area mapped twice back to back, so a record that wraps
    past the end is contiguous in memory; only this object (or a Rings merging it) advances the
    consumer position, and only past records it has copied (or skipped as discarded / malformed),
    after its last read of them.  The maps stay until close(); a close() from another thread while
    a fill() or wait() runs without the GIL takes effect when that call returns.  A ring read on its
    own (fill) is in its records' order, which is ets order; Rings merges several.
    """

    def __cinit__(self):
        self.map_cons = NULL
        self.map_prod = NULL
        self.map_fd = -1
        self.epfd = -1
        self.keep = None
        self.wall_offset = 0
        self.active = 0
        self.filling = False
        self.close_pending = False
        self.last_stop = STOP_EMPTY
        self.last_ets = 0
        self.late = 0
        memset(&self.v, 0, sizeof(self.v))
        memset(self.valid_nr, 0, sizeof(self.valid_nr))
        self.v.valid_nr = self.valid_nr

    def __init__(self, int map_fd=-1, uint64_t size=0, valid_nrs=None, int64_t wall_offset=0, int index=0):
        """Map the ring buffer behind map_fd (a BPF_MAP_TYPE_RINGBUF of `size` data bytes).

        valid_nrs: the syscall numbers a record may carry (default: the syscall table and the
        sched pseudo numbers); others are malformed.  wall_offset: added to each record's
        boot-time ts for `events["ts"]` and the Falco prefix.  index: this ring's number among the
        probe's rings (events["cpu_ring"] of its records).
        """
        if self.v.data != NULL or self.map_fd >= 0:
            raise RuntimeError("Ring is already initialised")
        self._set_valid(valid_nrs)
        self.wall_offset = wall_offset
        self.v.index = index
        if map_fd < 0:
            return  # an image: see from_image()
        if size < 8 or size & (size - 1):
            raise ValueError(f"ring size {size}: must be a power of two")
        self.page = os.sysconf("SC_PAGE_SIZE")
        # Layout of a BPF ring buffer map's mmap (kernel/bpf/ringbuf.c, as libbpf maps it):
        # offset 0: consumer page (read-write); offset page: producer page, then the data pages
        # twice (read-only).
        cdef void *cons = mmap(NULL, self.page, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0)
        if cons == MAP_FAILED:
            raise OSError(errno, f"mmap of the ring's consumer page: {os.strerror(errno)}")
        self.map_cons = cons
        self.map_prod_len = self.page + 2 * size
        cdef void *prod = mmap(NULL, self.map_prod_len, PROT_READ, MAP_SHARED, map_fd, self.page)
        if prod == MAP_FAILED:
            err = errno
            self._unmap()
            raise OSError(err, f"mmap of the ring's producer page and data: {os.strerror(err)}")
        self.map_prod = prod
        self.v.cons_pos = <uint64_t *>cons
        self.v.prod_pos = <const uint64_t *>prod
        self.v.data = <const uint8_t *>prod + self.page
        self.v.size = size
        self.v.mask = size - 1
        self.map_fd = map_fd
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        cdef epoll_event ev
        # Edge-triggered: wait() returns when the probe wakes us, not whenever a record is pending
        # (level-triggered, it returned at once while the producer kept writing, and the consumer
        # chased it a few records at a time: about 8x the CPU per event, measured in bench/).
        ev.events = EPOLLIN | EPOLLET
        ev.data.fd = map_fd
        if self.epfd < 0 or epoll_ctl(self.epfd, EPOLL_CTL_ADD, map_fd, &ev) != 0:
            err = errno
            self._unmap()
            raise OSError(err, f"epoll on the ring buffer: {os.strerror(err)}")

    @staticmethod
    def from_image(cons, prod, data, valid_nrs=None, int64_t wall_offset=0, int index=0):
        """A ring over in-memory buffers laid out like the kernel's (for tests and benchmarks).

        cons, prod: writable / readable uint64 buffers whose element 0 is the consumer / producer
        position; data: 2 * size bytes (size a power of two >= 8), 8-byte aligned, the second
        half a copy of the first (as the kernel maps it).  The ring holds the buffers' exports
        until close().  See lbd.ringimage.RingImage, which builds such images.
        """
        cdef Ring r = Ring(-1, 0, valid_nrs, wall_offset, index)
        cdef uint64_t[::1] c = cons
        cdef const uint64_t[::1] p = prod
        cdef const uint8_t[::1] d = data
        cdef size_t size = d.shape[0] // 2
        if c.shape[0] < 1 or p.shape[0] < 1:
            raise ValueError("image cons and prod need one uint64 each")
        if d.shape[0] % 2 or size < 8 or size & (size - 1):
            raise ValueError(f"image data of {d.shape[0]} bytes: must be twice a power of two >= 8")
        if (<size_t>&d[0]) & 7 or (<size_t>&c[0]) & 7 or (<size_t>&p[0]) & 7:
            raise ValueError("image buffers must be 8-byte aligned")
        r.keep = (c, p, d)      # typed memoryviews: they keep the buffers exported (not resizable)
        r.v.cons_pos = &c[0]
        r.v.prod_pos = &p[0]
        r.v.data = &d[0]
        r.v.size = size
        r.v.mask = size - 1
        return r

    cdef _set_valid(self, valid_nrs):
        if valid_nrs is None:
            from lbd import syscalls
            valid_nrs = [sc.nr for sc in syscalls.TABLE] + [
                _record.NR_SCHED_FORK, _record.NR_SCHED_EXEC, _record.NR_SCHED_EXIT]
        for nr in valid_nrs:
            if 0 <= nr < N_VALID:
                self.valid_nr[nr] = 1

    @property
    def ring_size(self):
        """Data bytes of the ring (a power of two)."""
        return self.v.size

    @property
    def index(self):
        """This ring's number among the probe's rings."""
        return self.v.index

    @property
    def map_fd(self):
        return self.map_fd

    @property
    def closed(self):
        return self.v.data == NULL or self.close_pending

    @property
    def consumer_pos(self):
        """The consumer position (bytes consumed since the ring was created)."""
        return 0 if self.v.cons_pos == NULL else self.v.cons_pos[0]

    @property
    def producer_pos(self):
        """The producer position (bytes reserved by the producer)."""
        return 0 if self.v.prod_pos == NULL else lbd_load_acq64(self.v.prod_pos)

    def pending_bytes(self):
        """Bytes written by the producer and not yet consumed."""
        if self.v.prod_pos == NULL or self.v.cons_pos == NULL:
            return 0
        cdef uint64_t prod = lbd_load_acq64(self.v.prod_pos), cons = self.v.cons_pos[0]
        return prod - cons if prod >= cons else 0

    def wait(self, int timeout_ms):
        """Sleep until the producer wakes us or timeout_ms passes (GIL released).  True if woken.

        The ring is watched edge-triggered: records pending since before the call do not end the
        wait, a wakeup does.  The probe writes without waking us until a CPU has written
        wake_bytes, so this sleeps until the ring is filling up or the time is up, and a consumer
        never chases the producer record by record.  Callers fill() before waiting.  An
        interrupted wait (EINTR) returns False.  An image ring returns pending_bytes() > 0 at once.
        """
        cdef epoll_event ev
        cdef int rc, epfd = self.epfd
        if self.closed:
            raise ValueError("ring is closed")
        if epfd < 0:
            return self.pending_bytes() > 0
        self.active += 1
        try:
            with nogil:
                rc = epoll_wait(epfd, &ev, 1, timeout_ms)
        finally:
            self._leave()
        return rc > 0

    def fill(self, Batch batch, size_t max_events=0, bint append=False, bint release_gil=True):
        """Replace batch's events with the ready records (at most max_events, 0 = its capacity).

        With append=True the records are added after the batch's current events instead (then
        max_events bounds the batch's total).  Returns the number of events in the batch.  Never
        blocks.  `last_stop` tells why it stopped (STOP_EMPTY, STOP_BUSY, STOP_FULL).  Ring space
        of the copied records is released before it returns.  release_gil=False copies holding
        the GIL: the process's other Python threads wait (lbd.pytest's drainer, when the test's own
        threads fill a ring faster than a copy competing with them empties it).
        """
        cdef size_t n
        cdef int stop = STOP_EMPTY, hp1
        cdef uint64_t wall = <uint64_t>self.wall_offset
        if self.closed:
            raise ValueError("ring is closed")
        if self.filling:
            raise RuntimeError("Ring.fill() is already running in another thread")
        if max_events == 0 or max_events > batch.capacity:
            max_events = batch.capacity
        if not append:
            batch.n = 0
            batch.used = ARENA_BASE
            batch.generation += 1
        self.filling = True
        self.active += 1
        try:
            if release_gil:
                with nogil:
                    n = merge_drain(&self.v, 1, &hp1, batch, max_events, UINT64_MAX, wall, &self.last_ets,
                                    &self.late, &stop)
            else:
                n = merge_drain(&self.v, 1, &hp1, batch, max_events, UINT64_MAX, wall, &self.last_ets,
                                &self.late, &stop)
        finally:
            self.filling = False
            self._leave()
        self.last_stop = stop
        return n

    cdef _leave(self):
        self.active -= 1
        if self.active == 0 and self.close_pending:
            self._unmap()

    def close(self):
        """Unmap the ring and close its epoll fd (the map fd belongs to the probe).  Idempotent."""
        if self.active > 0:
            self.close_pending = True       # another thread is in fill()/wait(): it unmaps
            return
        self._unmap()

    cdef _unmap(self):
        if self.epfd >= 0:
            close(self.epfd)
            self.epfd = -1
        if self.map_prod != NULL:
            munmap(self.map_prod, self.map_prod_len)
            self.map_prod = NULL
        if self.map_cons != NULL:
            munmap(self.map_cons, self.page)
            self.map_cons = NULL
        self.v.data = NULL
        self.v.prod_pos = NULL
        self.v.cons_pos = NULL
        self.keep = None
        self.close_pending = False

    def __dealloc__(self):
        self._unmap()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def records(self):
        return self.v.records

    @property
    def malformed(self):
        return self.v.malformed

    @property
    def discarded(self):
        return self.v.discarded

    @property
    def resyncs(self):
        return self.v.resyncs

    @property
    def bytes(self):
        return self.v.bytes

    def stats(self):
        """Counts so far: records (copied into batches), malformed (skipped records and resyncs),
        discarded (by the producer), resyncs, bytes (ring bytes consumed).  (`late`, records this
        ring's own fill() released after a newer one, is an attribute.)"""
        return {"records": self.v.records, "malformed": self.v.malformed, "discarded": self.v.discarded,
                "resyncs": self.v.resyncs, "bytes": self.v.bytes}


cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec *ts)
    int CLOCK_MONOTONIC


cdef inline uint64_t monotonic_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000000000ULL + <uint64_t>ts.tv_nsec


cdef class Rings:
    """Several Rings read as one: one epoll over all of them, each drained in bulk, the records
    merged in emit-time (`ets`) order into one Batch (merge_drain()).

    The guarantee: a fill releases records in ets order, and a record is released only when no
    ring can still produce an older one, allowing `window_ns` for a record whose time was taken
    just before an empty ring was looked at.  So a thread that migrated between CPUs still appears
    in order, a fork precedes its child's first syscall and an openat the read on its fd.  A
    record that arrives later than that (its producer held up between reading the clock and
    writing for more than the window: preemption) is released at once and counted in `late`.
    Records newer than the clock minus the window wait in their ring while another ring is
    empty (last_stop STOP_HELD): at most the window of latency.

    Invariants: the Ring objects stay alive while this object lives (it holds them); only this
    object drains them (Ring.fill on a member would break the order: it raises while merged);
    close() closes the epoll fd only (the rings belong to the caller).
    """

    def __cinit__(self):
        self.views = NULL
        self.heap = NULL
        self.k = 0
        self.epfd = -1
        self.active = 0
        self.filling = False
        self.last_ets = 0
        self.late = 0
        self.last_stop = STOP_EMPTY
        self.prod_at = NULL
        self.cons_at = NULL
        self.wait_at = 1
        self.wait_halted = False

    def __init__(self, rings, uint64_t window_ns=1000000, int64_t wall_offset=0):
        self.rings = list(rings)
        if not self.rings:
            raise ValueError("Rings of no ring")
        self.k = len(self.rings)
        self.window_ns = window_ns
        self.wall_offset = wall_offset
        self.views = <rview *>malloc(self.k * sizeof(rview))
        self.heap = <int *>malloc(self.k * sizeof(int))
        self.prod_at = <const uint64_t **>malloc(self.k * sizeof(uint64_t *))
        self.cons_at = <const uint64_t **>malloc(self.k * sizeof(uint64_t *))
        if self.views == NULL or self.heap == NULL or self.prod_at == NULL or self.cons_at == NULL:
            raise MemoryError()
        cdef Ring r
        cdef int i
        for i, r in enumerate(self.rings):
            self.prod_at[i] = r.v.prod_pos
            self.cons_at[i] = r.v.cons_pos
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise OSError(errno, f"epoll_create1: {os.strerror(errno)}")
        cdef epoll_event ev
        for i, r in enumerate(self.rings):
            if r.closed:
                raise ValueError(f"ring {i} is closed")
            if r.map_fd >= 0:
                ev.events = EPOLLIN | EPOLLET
                ev.data.u32 = i
                if epoll_ctl(self.epfd, EPOLL_CTL_ADD, r.map_fd, &ev) != 0:
                    raise OSError(errno, f"epoll on ring {i}: {os.strerror(errno)}")

    @property
    def count(self):
        return self.k

    def wait(self, int timeout_ms):
        """Sleep until a ring's producer wakes us or timeout_ms passes (GIL released).  True if
        woken.  Edge-triggered, as Ring.wait(); image rings: True at once when one has records."""
        cdef epoll_event evs[64]
        cdef int rc, epfd = self.epfd
        cdef Ring r
        if all(r.map_fd < 0 for r in self.rings):
            return any(r.pending_bytes() > 0 for r in self.rings)
        self.active += 1
        try:
            with nogil:
                rc = epoll_wait(epfd, evs, 64, timeout_ms)
        finally:
            self.active -= 1
        return rc > 0

    def wait_pending(self, int poll_ms):
        """Sleep until at least `wait_at` bytes are pending over the rings (True), or until
        halt_wait() is called (False), without taking the GIL in between: the rings are looked at
        after each wakeup and every poll_ms (the probe wakes readers only after wake_bytes per
        CPU), and wait_at is read at each look, so another thread may change it meanwhile.  For a
        reader that must not compete for the GIL with the threads it watches (lbd.pytest's
        drainer): Python's GIL hand-over is a futex of theirs.  Image rings: as wait()."""
        cdef epoll_event evs[64]
        cdef int i, rc, k = self.k, epfd = self.epfd
        cdef uint64_t pending, prod, cons
        cdef bint full = False
        cdef Ring r
        if self.epfd < 0:
            raise ValueError("Rings is closed")
        for i, r in enumerate(self.rings):
            if r.closed:
                raise ValueError(f"ring {i} is closed")
        if all(r.map_fd < 0 for r in self.rings):
            return self.pending_bytes() >= self.wait_at
        self.active += 1
        for r in self.rings:
            r.active += 1                   # not unmapped under us (close() defers to _leave())
        try:
            with nogil:
                while not self.wait_halted:
                    pending = 0
                    for i in range(k):
                        prod = lbd_load_acq64(self.prod_at[i])
                        cons = lbd_load_acq64(self.cons_at[i])
                        if prod > cons:
                            pending += prod - cons
                    if pending >= self.wait_at:
                        full = True
                        break
                    rc = epoll_wait(epfd, evs, 64, poll_ms)
                    if rc < 0 and errno != EINTR:
                        break
        finally:
            self.active -= 1
            for r in self.rings:
                r._leave()
        return full

    def halt_wait(self):
        """Make the wait_pending() running in another thread (within its poll_ms), and every later
        one, return False."""
        self.wait_halted = True

    def fill(self, Batch batch, size_t max_events=0, bint append=False, horizon_ns=None,
             bint release_gil=True):
        """Fill batch with the merged ready records (see the class docstring).  As Ring.fill(); also
        stops with STOP_HELD when records wait for the order.  horizon_ns (tests): release records
        of a ring up to this ets while another is empty, instead of now minus the window."""
        cdef size_t n
        cdef int stop = STOP_EMPTY, i
        cdef uint64_t wall = <uint64_t>self.wall_offset
        cdef uint64_t horizon
        cdef Ring r
        if self.filling:
            raise RuntimeError("Rings.fill() is already running in another thread")
        if max_events == 0 or max_events > batch.capacity:
            max_events = batch.capacity
        if not append:
            batch.n = 0
            batch.used = ARENA_BASE
            batch.generation += 1
        for i, r in enumerate(self.rings):
            if r.closed:
                raise ValueError(f"ring {i} is closed")
            if r.filling:
                raise RuntimeError(f"ring {i} is being filled on its own")
            self.views[i] = r.v
            r.filling = True
            r.active += 1
        if horizon_ns is not None:
            horizon = horizon_ns
        else:
            horizon = monotonic_ns()
            horizon = horizon - self.window_ns if horizon > self.window_ns else 0
        self.filling = True
        try:
            if release_gil:
                with nogil:
                    n = merge_drain(self.views, self.k, self.heap, batch, max_events, horizon, wall,
                                    &self.last_ets, &self.late, &stop)
            else:
                n = merge_drain(self.views, self.k, self.heap, batch, max_events, horizon, wall,
                                &self.last_ets, &self.late, &stop)
        finally:
            self.filling = False
            for i, r in enumerate(self.rings):
                r.v = self.views[i]
                r.filling = False
                r._leave()
        self.last_stop = stop
        return n

    def pending_bytes(self):
        cdef Ring r
        return sum(r.pending_bytes() for r in self.rings)

    def stats(self):
        """Totals over the rings (as Ring.stats()) plus `late`, and `rings`: each ring's own."""
        per = [r.stats() for r in self.rings]
        tot = {key: sum(p[key] for p in per) for key in ("records", "malformed", "discarded", "resyncs", "bytes")}
        tot["late"] = self.late
        tot["rings"] = per
        return tot

    def close(self):
        """Close the epoll fd (the rings are the caller's to close).  Idempotent."""
        if self.epfd >= 0 and self.active == 0:
            close(self.epfd)
            self.epfd = -1

    def __dealloc__(self):
        if self.epfd >= 0:
            close(self.epfd)
        if self.views != NULL:
            free(self.views)
            self.views = NULL
        if self.heap != NULL:
            free(self.heap)
            self.heap = NULL
        if self.prod_at != NULL:
            free(self.prod_at)
            self.prod_at = NULL
        if self.cons_at != NULL:
            free(self.cons_at)
            self.cons_at = NULL
