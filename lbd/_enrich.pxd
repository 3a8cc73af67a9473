# Declarations of lbd/_enrich.pyx: the state engine (process and fd tables kept from the event
# stream, in event order) and the per-batch writer of the enrichment arrays (lbd/enrich/layout.py).
cimport cython
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t

from lbd._decode cimport Batch, lbd_event
from lbd._layout cimport enrich_row, fd_row
from lbd._record cimport lbd_hdr, lbd_sock


# An immutable, reference-counted string: UTF-8 text (bytes that were not UTF-8 are \xNN escapes),
# NUL after its `len` bytes.  Owned by whoever holds a reference (fd rows, processes, caches);
# freed at refcnt 0.  (ar_epoch, ar_off, ar_len): where the string sits in the engine's arena
# (batch.strtab) during arena epoch ar_epoch, so that an event pointing at it costs no look-up.
ctypedef struct lstr:
    Py_ssize_t refcnt
    uint64_t hash
    uint64_t ar_epoch
    uint32_t ar_off
    uint32_t ar_len
    uint32_t len
    char data[1]


# One open file of a process.
ctypedef struct fdrow:
    int32_t fd
    uint8_t cloexec
    uint8_t kind                # FK_* (lbd/_enrich.pyx): what the name says the fd is
    uint16_t pad
    lstr *name                  # owned reference


# One process's open files, rows sorted by fd.  `enc`: the rows as fdtab rows (fd, path_off,
# path_len) of arena epoch enc_epoch, kept parallel to `rows` (enc_bad rows, marked with path_len
# ENC_BAD, still need their name's arena offset), so that writing a snapshot is a copy.
# (w_epoch, w_off, w_n): where the last snapshot was written to fdtab (rows w_off .. w_off + w_n),
# and `pfx`: how many leading rows are unchanged since (their fd and name), so that a snapshot is
# reused or extended instead of copied again.
ctypedef struct fdtable:
    fdrow *rows
    fd_row *enc
    int32_t n
    int32_t cap
    uint64_t nbytes             # sum of name.len + 1 over the rows (rich_value_size cuts on it)
    uint64_t enc_epoch
    uint32_t enc_bad
    uint64_t w_epoch
    uint32_t w_off
    uint32_t w_n
    uint32_t pfx


# A process (thread group), keyed by its tgid.  Lifetime: from its fork record (or its first
# event / the procfs scan) until its grace period after exit ends or the LRU evicts it.
ctypedef struct proc:
    uint32_t pid
    uint32_t ppid               # the parent process: the kernel's value when it gives one
    uint32_t stale_ppid         # bcc: the fork-time parent its records still name after the
                                #   engine gave it to a subreaper or 1 (the header then loses)
    uint32_t flags              # PF_* (lbd/_enrich.pyx)
    uint8_t comm_raw[16]        # the leader thread's comm as the kernel wrote it
    lstr *comm                  # ... as text (owned)
    lstr *cmdline               # NULL: unknown (the comm stands in)
    lstr *exe                   # NULL: unknown
    lstr *cwd                   # NULL: unknown (relative paths stay as given)
    fdtable fds
    uint64_t dead_ts            # wall-clock ns of its exit (PF_DEAD)
    proc *lru_prev              # LRU list: most recently used first
    proc *lru_next
    proc *dead_prev             # exited processes in exit order (the grace period's queue)
    proc *dead_next
    proc *pcache                # the parent's entry as last looked up (valid while
    uint32_t pcache_pid         #   pcache_pid == ppid and pcache_gen == Engine.table_gen)
    uint64_t pcache_gen
    uint64_t stamp              # Engine.seq when anything its rows show last changed
    uint64_t comm_stamp         # Engine.seq when its comm last changed (its children's pcomm)
    enrich_row crow             # the last row written for it, valid while these keys hold:
    uint64_t crow_epoch
    uint64_t crow_stamp
    uint64_t crow_pstamp
    uint32_t crow_uid
    uint32_t crow_gid


# A small id -> name cache (user and group names): open addressing, cleared when full.
ctypedef struct idcache:
    uint32_t *keys
    lstr **vals                 # NULL: empty slot
    uint32_t cap                # a power of two
    uint32_t count
    uint32_t max
    uint64_t hits
    uint64_t misses
    uint64_t evictions
    uint32_t last_key
    lstr *last_val              # borrowed from the table (NULL: none)


ctypedef struct arent:
    uint64_t hash
    uint32_t off
    uint32_t len


@cython.final
cdef class Engine:
    # Configuration
    cdef uint32_t limit                 # rich_value_size: bytes kept of a string / an fd list
    cdef bint text                      # limit > 0: cmdline, fullpath and fds at all
    cdef uint32_t max_procs
    cdef int32_t max_fds
    cdef uint64_t grace_ns
    cdef size_t max_strtab
    cdef size_t max_fd_rows
    cdef object host                    # the slow paths (lbd.enrich.enricher.Enricher)

    # The process table: open addressing pid -> proc *, an LRU list, the exited processes.
    cdef uint32_t *hkeys
    cdef proc **hvals
    cdef uint32_t hcap
    cdef uint32_t hcount
    cdef proc *lru_head
    cdef proc *lru_tail
    cdef proc *dead_head
    cdef proc *dead_tail
    cdef uint64_t table_gen             # bumped whenever an entry is freed (pcache validity)
    cdef uint64_t seq                   # stamps (proc.stamp, comm_stamp): unique, increasing
    cdef proc *last                     # the entry of last_pid (look-up cache; never evicted)
    cdef proc *protect                  # an entry an insertion must not evict (fork's parent)
    cdef uint32_t last_pid

    # The string arena behind batch.strtab (numpy buffer written in place; an epoch's offsets
    # stay valid until the next epoch, which starts at offset 0 in the same buffer).
    cdef object ar_buf
    cdef uint8_t *ar
    cdef size_t ar_cap
    cdef size_t ar_size
    cdef arent *ents
    cdef size_t nents
    cdef size_t ents_cap
    cdef int32_t *aidx
    cdef size_t aicap
    cdef readonly uint64_t epoch

    # fdtab and the enrich rows (numpy buffers, reused; grown by replacement)
    cdef object fd_dtype                # lbd.enrich.layout.FD_DTYPE, ENRICH_DTYPE
    cdef object enrich_dtype
    cdef object fd_buf
    cdef fd_row *fdr
    cdef size_t fd_cap
    cdef size_t fd_used
    cdef object out_buf
    cdef enrich_row *out
    cdef size_t out_cap

    # The batch in progress (run() resumes here after a slow path)
    cdef lbd_event *ev
    cdef const uint8_t *arena_p
    cdef size_t arena_used
    cdef Py_ssize_t n
    cdef Py_ssize_t i
    cdef int phase
    cdef uint64_t now
    cdef uint32_t need_pid
    cdef uint32_t need_id
    cdef int32_t need_fd
    cdef size_t need_bytes
    cdef bint running                   # an enrich() is in progress (it releases the GIL)
    cdef lstr *link_name                # the slow path's answer for the event at i (owned)
    cdef bint link_ready

    cdef idcache users
    cdef idcache groups

    # Interned names of fds and comms (direct-mapped: hash -> lstr, owned)
    cdef lstr **intern
    cdef uint32_t intern_mask

    # Counters (stats())
    cdef readonly uint64_t batches
    cdef readonly uint64_t events
    cdef readonly uint64_t applied
    cdef readonly uint64_t hits
    cdef readonly uint64_t misses
    cdef readonly uint64_t evictions
    cdef readonly uint64_t reaped
    cdef readonly uint64_t loads
    cdef readonly uint64_t fd_rows
    cdef readonly uint64_t fd_overflow
    cdef readonly uint64_t epochs
    cdef readonly uint64_t slow_calls

    # (methods: lbd/_enrich.pyx)
    cdef void new_epoch(self) noexcept
    cdef int ar_add(self, const char *p, uint32_t k, uint64_t h, uint32_t *off, uint32_t *ln) noexcept nogil
    cdef int ar_ref(self, lstr *s, uint32_t *off, uint32_t *ln) noexcept nogil
    cdef lstr *intern_bytes(self, const char *p, Py_ssize_t n) noexcept nogil
    cdef lstr *intern_text(self, const uint8_t *p, Py_ssize_t n) noexcept nogil
    cdef lstr *comm_text(self, const char *comm) noexcept nogil
    cdef proc *lookup(self, uint32_t pid) noexcept nogil
    cdef void lru_unlink(self, proc *p) noexcept nogil
    cdef void lru_front(self, proc *p) noexcept nogil
    cdef void dead_unlink(self, proc *p) noexcept nogil
    cdef void mark_dead(self, proc *p, uint64_t ts) noexcept nogil
    cdef void remove(self, proc *p) noexcept nogil
    cdef proc *insert(self, uint32_t pid) noexcept nogil
    cdef void set_comm(self, proc *p, const char *comm16) noexcept nogil
    cdef proc *parent_of(self, proc *p) noexcept nogil
    cdef void reparent_bcc(self, proc *p) noexcept nogil
    cdef const uint8_t *payload(self, const lbd_event *e, int k, uint32_t *ln) noexcept nogil
    cdef lstr *resolve(self, proc *p, int64_t dirfd, const uint8_t *path, uint32_t n) noexcept nogil
    cdef int put_fd(self, proc *p, int64_t fd, lstr *name, bint cloexec, int kind) noexcept nogil
    cdef int dup_fd(self, proc *p, int64_t old, int64_t new, bint cloexec) noexcept nogil
    cdef int take_argv(self, proc *p, const lbd_event *e, int slot) noexcept nogil
    cdef int sock_named(self, proc *p, const lbd_event *e, int64_t fd, int how) noexcept nogil
    cdef int apply(self, proc *p, const lbd_event *e) noexcept nogil
    cdef lstr *sock_word(self, int kind, int fam) noexcept nogil
    cdef lstr *memfd_name(self, const uint8_t *q, uint32_t n) noexcept nogil
    cdef int fd_snapshot(self, fdtable *t, uint32_t *off, uint32_t *cnt) noexcept nogil
    cdef lstr *id_name(self, idcache *c, uint32_t ident) noexcept nogil
    cdef int row(self, const lbd_event *e, enrich_row *o) noexcept nogil
    cdef int run(self) noexcept nogil
    cdef void unghost(self, proc *p, const lbd_event *e) noexcept nogil
    cdef void reap(self) noexcept nogil
    cdef int _slow(self, int why) except -1
    cdef _enrich(self, Batch batch)
    cdef _attach(self, Batch batch)
    cdef lstr *py_text(self, object b) except NULL
    cdef int id_put(self, idcache *c, uint32_t ident, object name) except -1
    cdef int grow_arena(self, size_t extra) except -1
    cdef int grow_fdtab(self, size_t extra) except -1
    cdef int load(self, uint32_t pid, const lbd_event *e) except -1
    cdef int seed_entry(self, uint32_t pid, tuple info) except -1
    cdef int fork_child(self, proc *parent, uint32_t child, uint32_t ppid, const char *comm16,
                        bint spec) noexcept nogil
    cdef const lbd_sock *xsock(self, const lbd_event *e, const uint8_t **path,
                               uint32_t *plen) noexcept nogil
    cdef int exec_image(self, proc *p, const lbd_event *e, int dirfd_arg, int path_slot, int argv_slot,
                        int exe_slot) noexcept nogil
    cdef lstr *accepted_name(self, int kind, int fam, const uint8_t *peer, uint32_t pport,
                             fdrow *listener) noexcept nogil
    cdef int fd_encode(self, fdtable *t) noexcept nogil
