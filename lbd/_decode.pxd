# Declarations of lbd/_decode.pyx: the bulk ring-buffer consumer and its batch arena.
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from lbd._record cimport lbd_hdr

# Falco's plugin event prefix in front of every record in the arena (FALCO_PLUGIN_ABI.md):
# ss_plugin_event {u64 ts, u64 tid, u32 len, u16 type, u32 nparams} (26 bytes, packed),
# then u32 len(param 0) = 4, u32 len(param 1) = record size, u32 plugin_id: 38 bytes.
# ARENA_BASE: the first prefix starts 2 bytes into the arena, and every slot's length is a
# multiple of 8, so each record (prefix + 38) sits 8-byte aligned and C readers may cast it.
cdef enum:
    FALCO_PREFIX = 38
    ARENA_BASE = 2

# Why Ring.drain() stopped (Ring.last_stop; exported to Python as lbd._decode.STOP_*).
cpdef enum:
    STOP_EMPTY = 0          # consumed everything the producer had published
    STOP_BUSY = 1           # the next record is reserved but not committed yet: it waits
    STOP_FULL = 2           # the batch had no room (max_events or arena bytes): records remain
    STOP_HELD = 3           # Rings: records wait in a ring for the order (another ring is empty
                            # or busy and may still write older ones)

# One row of Batch.events: the record header, copied while the record is copied to the arena
# (same pass), plus where the record is.  Mirrors lbd.record.EVENT_DTYPE (checked at import).
ctypedef struct lbd_event:
    lbd_hdr h               # ts is wall-clock ns here (the record in the arena keeps boot time)
    uint32_t rec            # byte offset of the record in the arena, 8-aligned (its Falco event
                            # starts FALCO_PREFIX bytes before); h.size is its length
    uint32_t cpu_ring       # index of the ring the record came from (Ring index)


cdef class Batch:
    # Owns three buffers, allocated once in __cinit__, never reallocated, freed with the object:
    # the arena, the events table and the event pointer array.  Python sees them read-only; only
    # Ring.drain() writes them (through the raw pointers below).  What a fill wrote stays valid
    # until the next fill() into this batch or release().
    cdef readonly object arena          # numpy uint8[arena_bytes]: per event, Falco prefix + record
                                        # + padding to 8; lifetime: the batch's
    cdef readonly object table          # numpy EVENT_DTYPE[capacity]: rows [0, n) are this fill's
    cdef readonly object ptrs           # numpy uint64[capacity]: address of each event's Falco
                                        # prefix in the arena (for a C consumer); rows [0, n)
    cdef object view                    # table viewed as EVENT_VIEW_DTYPE (adds `syscall_id`)
    cdef uint8_t *arena_p               # data of `arena`: valid while the batch lives
    cdef lbd_event *ev_p                # data of `table`
    cdef uint64_t *ptrs_p               # data of `ptrs`
    cdef readonly size_t capacity       # rows of `table`: the most events one fill can hold
    cdef readonly size_t arena_bytes    # size of `arena` (< 4 GiB: `rec` is 32 bits)
    cdef readonly size_t n              # events in the batch (rows [0, n) of `table`)
    cdef readonly size_t used           # arena bytes in use, counted from 0 (>= ARENA_BASE)
    cdef readonly uint64_t generation   # bumped by every fill() that starts over and release()
    cdef public uint32_t plugin_id      # written into each Falco prefix (0: Falco fills it in)

    cdef object _index(self, idx)


# One ring's drain state, as merge_drain() reads it without the GIL: the Ring's mapping, the
# positions of the drain in progress, its head record and counters.  Lives in the Ring (Ring.v);
# a Rings copies the views of its members in and out around a merged drain.
ctypedef struct rview:
    uint64_t *cons_pos              # consumer page (read-write): only the drain stores to it
    const uint64_t *prod_pos        # producer page (read-only): loaded with acquire
    const uint8_t *data             # data pages, mapped twice back to back (read-only):
                                    # [data, data + 2 * size) is readable
    uint64_t size                   # data bytes, a power of two, >= 8
    uint64_t mask                   # size - 1
    const uint8_t *valid_nr         # the owning Ring's table: 1 where a record may carry the nr
    uint32_t index                  # the ring's number (events["cpu_ring"])
    int state                       # H_* of the drain in progress
    uint64_t cons, prod, start      # the drain's local consumer position, the producer position
                                    # it loaded, and where it started
    const lbd_hdr *head             # state H_HEAD: the next record, validated
    uint32_t head_rlen
    uint64_t head_total             # its ring bytes (header + record, aligned)
    uint64_t head_ets
    uint64_t last_ets               # ets of the last record released from this ring
    uint64_t records                # records copied into batches
    uint64_t malformed              # records that failed validation (skipped), and resyncs
    uint64_t discarded              # records the producer discarded
    uint64_t resyncs                # impossible positions / lengths: skipped to the producer
    uint64_t bytes                  # ring bytes consumed (copied, discarded or skipped)


cdef class Ring:
    # A BPF ring buffer mapped as the kernel lays it out, or an in-memory image of one (tests).
    # The maps live from __init__ (or from_image) to close(); close() is deferred while a fill()
    # or wait() of another thread runs with the GIL released, so no pointer dangles there.
    cdef rview v                        # the mapping, positions and counters (see rview)
    cdef void *map_cons                 # mmap of the consumer page (NULL for an image)
    cdef void *map_prod                 # mmap of the producer page + data twice (NULL for an image)
    cdef size_t map_prod_len
    cdef size_t page
    cdef int map_fd                     # the BPF map's fd: borrowed (the probe owns and closes it)
    cdef int epfd                       # epoll fd watching map_fd: owned, closed by close()
    cdef object keep                    # an image's buffers (memoryviews hold their exports)
    cdef int active                     # fill()/wait() calls now running with the GIL released
    cdef bint filling                   # a fill() is running (one at a time), or a Rings' merge
    cdef bint close_pending             # close() was called while active: unmap when it ends
    cdef uint8_t valid_nr[1024]         # 1: a record may carry this syscall / sched number
    cdef public int64_t wall_offset     # add to boot-time ns to get wall-clock ns
    cdef readonly int last_stop         # STOP_* of the last drain
    cdef uint64_t last_ets              # ets of the last record this ring's own fill() released
    cdef readonly uint64_t late         # records older than one released before (own fill())

    cdef _set_valid(self, valid_nrs)
    cdef _unmap(self)
    cdef _leave(self)


cdef class Rings:
    # Several Rings merged in ets order (see the class docstring in _decode.pyx).
    cdef list rings                     # the member Ring objects (kept alive here)
    cdef rview *views                   # k views, copied from / to the members around a drain
    cdef int *heap                      # k ints: merge_drain()'s heap of rings by head
    cdef int k
    cdef int epfd                       # one epoll over every member's map fd: owned
    cdef int active
    cdef bint filling
    cdef readonly uint64_t window_ns    # the merge window (see the class docstring)
    cdef public int64_t wall_offset
    cdef uint64_t last_ets              # ets of the last record released
    cdef readonly uint64_t late         # records released after a newer one (late producers)
    cdef readonly int last_stop
    cdef const uint64_t **prod_at       # k producer / consumer positions for wait_pending()
    cdef const uint64_t **cons_at       # (pointers into the members' pages, read without the GIL)
    cdef public uint64_t wait_at        # wait_pending() returns once this many bytes are pending
    cdef bint wait_halted               # halt_wait() was called: wait_pending() returns False
