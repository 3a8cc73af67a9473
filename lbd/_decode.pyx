# cython: language_level=3
"""Bulk consumer of lbd's BPF ring buffer.

`Ring.fill(batch)` copies every ready record once, with the GIL released, into the batch's arena
(behind a Falco plugin-event prefix) and its header fields into the batch's numpy table in the same
pass.  No Python object is made per record.  Each record is validated once (lengths, version,
syscall number, payload slots inside the record) before anything trusts it; a malformed one is
counted and skipped.

Ring space is released (consumer position stored) as soon as a record has been copied: a batch
never points into the ring.  The batch's memory is reused by the next `fill()` into it.
"""
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.string cimport memcpy, memset
from libc.errno cimport errno
from posix.unistd cimport close

import os

import numpy as np
cimport numpy as cnp

from lbd._record cimport lbd_hdr, lbd_slot, LBD_RECORD_VERSION, LBD_MAX_ARGS, LBD_PAYLOAD_MAX
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
    int EPOLL_CTL_ADD, EPOLLIN, EPOLL_CLOEXEC

cdef extern from *:
    """
    #include <stdint.h>
    /* The kernel publishes producer_pos and each record's length word with release semantics;
     * we read them with acquire, and publish consumer_pos with release (BPF ring buffer ABI). */
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
    """
    uint64_t lbd_load_acq64(const uint64_t *p) nogil
    uint32_t lbd_load_acq32(const uint32_t *p) nogil
    void lbd_store_rel64(uint64_t *p, uint64_t v) nogil
    uint32_t LBD_RB_BUSY_BIT, LBD_RB_DISCARD_BIT, LBD_RB_HDR_SZ
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

# ---- import-time layout checks: the numpy dtypes must be the C structs, field for field -------

EVENT_DTYPE = _record.EVENT_DTYPE


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
    if LBD_RECORD_VERSION != _record.VERSION:
        raise ImportError("record version differs between lbd_record.h and lbd.record")


_check_layout()

FALCO_PREFIX_SIZE = FALCO_PREFIX


cdef inline size_t align8(size_t n) noexcept nogil:
    return (n + 7) & ~(<size_t>7)


cdef class Batch:
    """A batch of events: an arena of records plus a numpy table of their headers.

    Lifetime: the arrays returned by `events`, `arena` views and event pointers are valid until
    the next `Ring.fill()` into this batch or `release()`; after that they show other events.
    Copy (`batch.events.copy()`) what must outlive it.
    """

    def __cinit__(self, size_t capacity=512, size_t arena_bytes=0):
        if capacity < 1:
            raise ValueError(f"batch capacity: {capacity}, at least 1")
        if arena_bytes == 0:
            arena_bytes = capacity * 640
        # Room for at least one largest record, so a fill can always make progress.
        arena_bytes = max(arena_bytes, align8(FALCO_PREFIX + HDR_SIZE + LBD_PAYLOAD_MAX))
        self.capacity = capacity
        self.arena_bytes = arena_bytes
        self.arena = np.zeros(arena_bytes, dtype=np.uint8)
        self.table = np.zeros(capacity, dtype=EVENT_DTYPE)
        self.ptrs = np.zeros(capacity, dtype=np.uint64)
        self.arena_p = <uint8_t *>cnp.PyArray_DATA(self.arena)
        self.ev_p = <lbd_event *>cnp.PyArray_DATA(self.table)
        self.ptrs_p = <uint64_t *>cnp.PyArray_DATA(self.ptrs)
        self.n = 0
        self.used = 0
        self.generation = 0
        self.plugin_id = 0

    def __len__(self):
        return self.n

    @property
    def events(self):
        """numpy structured array (EVENT_DTYPE) of this batch's events: a view, not a copy."""
        return self.table[: self.n]

    def record(self, size_t i):
        """Event i's record (header + payload) as a memoryview into the arena."""
        if i >= self.n:
            raise IndexError(f"event {i} of a batch of {self.n}")
        cdef size_t rec = self.ev_p[i].rec
        return memoryview(self.arena)[rec: rec + self.ev_p[i].h.size]

    def falco_event(self, size_t i):
        """Event i as Falco's plugin event (prefix + record), a memoryview into the arena."""
        if i >= self.n:
            raise IndexError(f"event {i} of a batch of {self.n}")
        cdef size_t rec = self.ev_p[i].rec
        return memoryview(self.arena)[rec - FALCO_PREFIX: rec + self.ev_p[i].h.size]

    def address(self):
        """Address of the arena (for C consumers in the same process, e.g. the Falco plugin)."""
        return <size_t>self.arena_p

    def release(self):
        """Forget the events; the memory is reused by the next fill."""
        self.n = 0
        self.used = 0
        self.generation += 1


cdef class Ring:
    """lbd's BPF ring buffer, read in bulk.

    Invariants: `data` is the ring's data area mapped twice back to back, so a record that wraps
    past the end is contiguous in memory; only this object advances the consumer position, and it
    does so only past records it has copied (or skipped as discarded / malformed).
    """

    def __cinit__(self):
        self.map_cons = NULL
        self.map_prod = NULL
        self.map_fd = -1
        self.epfd = -1
        self.keep = None
        self.wall_offset = 0
        memset(self.valid_nr, 0, sizeof(self.valid_nr))

    def __init__(self, int map_fd=-1, uint64_t size=0, valid_nrs=None, int64_t wall_offset=0):
        """Map the ring buffer behind map_fd (a BPF_MAP_TYPE_RINGBUF of `size` data bytes)."""
        self._set_valid(valid_nrs)
        self.wall_offset = wall_offset
        if map_fd < 0:
            return  # an image: see from_image()
        if size == 0 or size & (size - 1):
            raise ValueError(f"ring size {size}: must be a power of two")
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.size = size
        self.mask = size - 1
        cdef void *cons = mmap(NULL, self.page, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0)
        if cons == MAP_FAILED:
            raise OSError(errno, f"mmap of the ring's consumer page: {os.strerror(errno)}")
        self.map_cons = cons
        self.map_prod_len = self.page + 2 * size
        cdef void *prod = mmap(NULL, self.map_prod_len, PROT_READ, MAP_SHARED, map_fd, self.page)
        if prod == MAP_FAILED:
            err = errno
            self.close()
            raise OSError(err, f"mmap of the ring's producer page and data: {os.strerror(err)}")
        self.map_prod = prod
        self.cons_pos = <uint64_t *>cons
        self.prod_pos = <const uint64_t *>prod
        self.data = <const uint8_t *>prod + self.page
        self.map_fd = map_fd
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        cdef epoll_event ev
        ev.events = EPOLLIN
        ev.data.fd = map_fd
        if self.epfd < 0 or epoll_ctl(self.epfd, EPOLL_CTL_ADD, map_fd, &ev) != 0:
            err = errno
            self.close()
            raise OSError(err, f"epoll on the ring buffer: {os.strerror(err)}")

    @staticmethod
    def from_image(cons, prod, data, valid_nrs=None, int64_t wall_offset=0):
        """A ring over in-memory buffers laid out like the kernel's (for tests and benchmarks).

        cons, prod: writable uint64 buffers holding the consumer and producer positions;
        data: 2 * size bytes, the second half a copy of the first (as the kernel maps it).
        """
        cdef Ring r = Ring(-1, 0, valid_nrs, wall_offset)
        cdef uint64_t[::1] c = cons
        cdef const uint64_t[::1] p = prod
        cdef const uint8_t[::1] d = data
        if d.shape[0] == 0 or d.shape[0] % 2 or (d.shape[0] // 2) & (d.shape[0] // 2 - 1):
            raise ValueError("image data must be twice a power of two bytes")
        r.keep = (cons, prod, data)
        r.cons_pos = &c[0]
        r.prod_pos = &p[0]
        r.data = &d[0]
        r.size = d.shape[0] // 2
        r.mask = r.size - 1
        return r

    cdef _set_valid(self, valid_nrs):
        if valid_nrs is None:
            from lbd import syscalls
            valid_nrs = [sc.nr for sc in syscalls.TABLE] + [
                _record.NR_SCHED_FORK, _record.NR_SCHED_EXEC, _record.NR_SCHED_EXIT]
        for nr in valid_nrs:
            if 0 <= nr < 1024:
                self.valid_nr[nr] = 1

    @property
    def ring_size(self):
        return self.size

    def pending_bytes(self):
        """Bytes written by the producer and not yet consumed."""
        if self.prod_pos == NULL:
            return 0
        return lbd_load_acq64(self.prod_pos) - self.cons_pos[0]

    def wait(self, int timeout_ms):
        """Sleep until the producer wakes us or timeout_ms passes (GIL released).  True if woken."""
        cdef epoll_event ev
        cdef int rc
        if self.epfd < 0:
            return self.pending_bytes() > 0
        with nogil:
            rc = epoll_wait(self.epfd, &ev, 1, timeout_ms)
        return rc > 0

    def fill(self, Batch batch, size_t max_events=0, bint append=False):
        """Replace batch's events with the ready records (at most max_events, 0 = its capacity).

        With append=True the records are added after the batch's current events instead.
        Returns the number of events in the batch.  Never blocks.
        """
        cdef size_t n
        if self.data == NULL:
            raise ValueError("ring is closed")
        if max_events == 0 or max_events > batch.capacity:
            max_events = batch.capacity
        if not append:
            batch.n = 0
            batch.used = 0
            batch.generation += 1
        with nogil:
            n = self.drain(batch, max_events)
        return n

    cdef size_t drain(self, Batch b, size_t max_events) noexcept nogil:
        cdef uint64_t cons = self.cons_pos[0]
        cdef uint64_t prod = lbd_load_acq64(self.prod_pos)
        cdef uint64_t start = cons
        cdef const uint8_t *rp
        cdef uint32_t word, rlen
        cdef uint64_t total
        cdef const lbd_hdr *h
        cdef lbd_event *e
        cdef lbd_falco_prefix *pre
        cdef size_t need, at
        cdef int i
        cdef uint32_t end
        cdef bint ok
        while cons < prod and b.n < max_events:
            rp = self.data + (cons & self.mask)
            word = lbd_load_acq32(<const uint32_t *>rp)
            if word & LBD_RB_BUSY_BIT:
                break                                   # being written: the rest waits
            rlen = word & ~(LBD_RB_BUSY_BIT | LBD_RB_DISCARD_BIT)
            total = align8(rlen + LBD_RB_HDR_SZ)
            if total > prod - cons or rlen > self.size:  # inconsistent positions: skip what is there
                self.malformed += 1
                cons = prod
                break
            if word & LBD_RB_DISCARD_BIT:
                self.discarded += 1
                cons += total
                continue
            h = <const lbd_hdr *>(rp + LBD_RB_HDR_SZ)
            # Validate once; everything after this trusts the record.
            ok = (rlen >= HDR_SIZE and h.size >= HDR_SIZE and h.size <= rlen
                  and h.version == LBD_RECORD_VERSION and h.nr < 1024 and self.valid_nr[h.nr]
                  and h.nargs <= LBD_MAX_ARGS and (h.dir == 60 or h.dir == 62))
            if ok:
                for i in range(LBD_MAX_ARGS):
                    if h.slot[i].len:
                        end = <uint32_t>h.slot[i].off + h.slot[i].len
                        if h.slot[i].off < HDR_SIZE or end > h.size:
                            ok = False
                            break
            if not ok:
                self.malformed += 1
                cons += total
                continue
            need = align8(FALCO_PREFIX + h.size)
            if b.used + need > b.arena_bytes:
                break                                   # arena full: the record stays for the next batch
            at = b.used
            pre = <lbd_falco_prefix *>(b.arena_p + at)
            pre.ts = h.ts + self.wall_offset
            pre.tid = h.tid
            pre.len = FALCO_PREFIX + h.size
            pre.type = PPME_PLUGINEVENT_E
            pre.nparams = 2
            pre.plen0 = 4
            pre.plen1 = h.size
            pre.plugin_id = b.plugin_id
            memcpy(b.arena_p + at + FALCO_PREFIX, h, h.size)
            e = b.ev_p + b.n
            memcpy(&e.h, h, HDR_SIZE)
            e.h.ts = h.ts + self.wall_offset
            e.rec = <uint32_t>(at + FALCO_PREFIX)
            e.cpu_ring = 0
            b.ptrs_p[b.n] = <uint64_t>(b.arena_p + at)
            b.used = at + need
            b.n += 1
            self.records += 1
            cons += total
        if cons != start:
            self.bytes += cons - start
            lbd_store_rel64(self.cons_pos, cons)
        return b.n

    def close(self):
        if self.epfd >= 0:
            close(self.epfd)
            self.epfd = -1
        if self.map_prod != NULL:
            munmap(self.map_prod, self.map_prod_len)
            self.map_prod = NULL
        if self.map_cons != NULL:
            munmap(self.map_cons, self.page)
            self.map_cons = NULL
        self.data = NULL
        self.prod_pos = NULL
        self.cons_pos = NULL
        self.keep = None

    def __dealloc__(self):
        self.close()

    def stats(self):
        return {"records": self.records, "malformed": self.malformed,
                "discarded": self.discarded, "bytes": self.bytes}
