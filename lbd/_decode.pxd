# Declarations of lbd/_decode.pyx: the bulk ring-buffer consumer and its batch arena.
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from lbd._record cimport lbd_hdr

# Falco's plugin event prefix in front of every record in the arena (FALCO_PLUGIN_ABI.md):
# ss_plugin_event {u64 ts, u64 tid, u32 len, u16 type, u32 nparams} (26 bytes, packed),
# then u32 len(param 0) = 4, u32 len(param 1) = record size, u32 plugin_id: 38 bytes.
cdef enum:
    FALCO_PREFIX = 38

# One row of Batch.events: the record header, copied while the record is copied to the arena
# (same pass), plus where the record is.  Mirrors lbd.record.EVENT_DTYPE (checked at import).
ctypedef struct lbd_event:
    lbd_hdr h               # ts is wall-clock ns here (the record in the arena keeps boot time)
    uint32_t rec            # byte offset of the record in the arena (its Falco event is FALCO_PREFIX before)
    uint32_t cpu_ring       # reserved: ring index (0 for the single ring)


cdef class Batch:
    # Owns three buffers, allocated once and reused by every fill: the arena (Falco prefix +
    # record, 8-byte aligned, per event), the events table and the event pointer array.  What
    # fill() wrote stays valid until the next fill() into this batch or release().
    cdef readonly object arena          # numpy uint8[arena_bytes]
    cdef readonly object table          # numpy EVENT_DTYPE[capacity]
    cdef readonly object ptrs           # numpy uint64[capacity]: address of each Falco event
    cdef uint8_t *arena_p
    cdef lbd_event *ev_p
    cdef uint64_t *ptrs_p
    cdef readonly size_t capacity
    cdef readonly size_t arena_bytes
    cdef readonly size_t n              # events in the batch
    cdef readonly size_t used           # arena bytes in use
    cdef readonly uint64_t generation   # bumped by every fill() and release()
    cdef public uint32_t plugin_id      # written into each Falco prefix (0: Falco fills it in)


cdef class Ring:
    # A BPF ring buffer mapped as the kernel lays it out, or an in-memory image of one (tests).
    cdef uint64_t *cons_pos             # consumer page (read-write)
    cdef const uint64_t *prod_pos       # producer page (read-only)
    cdef const uint8_t *data            # data pages, mapped twice back to back (read-only)
    cdef uint64_t size                  # data bytes, a power of two
    cdef uint64_t mask
    cdef void *map_cons
    cdef void *map_prod
    cdef size_t map_prod_len
    cdef size_t page
    cdef int map_fd
    cdef int epfd
    cdef object keep                    # the buffers of an in-memory image
    cdef uint8_t valid_nr[1024]         # 1: a record may carry this syscall / sched number
    cdef public int64_t wall_offset     # add to boot-time ns to get wall-clock ns
    cdef readonly uint64_t records      # records copied into batches
    cdef readonly uint64_t malformed    # records that failed validation (skipped)
    cdef readonly uint64_t discarded    # records the producer discarded
    cdef readonly uint64_t bytes        # ring bytes consumed

    cdef _set_valid(self, valid_nrs)
    cdef size_t drain(self, Batch b, size_t max_events) noexcept nogil
