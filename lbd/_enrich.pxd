# Declarations of lbd/_enrich.pyx: the compiled fd tables, string arena and per-event loop of
# lbd.enrich (the pure-Python modules of lbd/enrich/ are the reference they are held to).
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int32_t, int64_t


# An immutable, reference-counted string: the UTF-8 bytes of a Python str, with lone surrogates
# (os.readlink's surrogateescape) encoded as "surrogatepass" does, so that str <-> lstr is exact.
# Owned by whoever holds a reference (fd table rows, caches); freed at refcnt 0.
ctypedef struct lstr:
    Py_ssize_t refcnt
    uint64_t hash           # ls_hash(data, len): the arena's look-up key
    uint32_t len            # bytes of data (without the NUL after them)
    uint32_t nchars         # len(str): code points (the reference counts characters, not bytes)
    uint8_t special         # 1: data holds encoded surrogates (the arena stores another text)
    char data[1]            # len bytes, then a NUL


# One row of an fd table, sorted by fd.
ctypedef struct ft_row:
    int32_t fd
    uint8_t cloexec
    lstr *path              # owned reference


cdef class StringArena:
    # The string table behind batch.strtab (lbd.enrich.strtab.StringArena's contract): every
    # string of an epoch once, UTF-8 + NUL, looked up by the str's bytes through an open-addressing
    # index.  `buf` is a numpy uint8 array written in place; growing replaces it by a larger copy
    # (views handed out earlier keep the old one alive), reset() starts the next epoch at offset 0.
    cdef readonly Py_ssize_t limit      # bytes kept of each string (0: all)
    cdef readonly Py_ssize_t epoch      # bumped by reset(); offsets are valid within one epoch
    cdef object buf                     # numpy uint8[capacity]
    cdef uint8_t *data                  # buf's data: valid until the next growth
    cdef Py_ssize_t cap
    cdef Py_ssize_t size                # bytes in use
    cdef int32_t *index                 # open addressing: entry number + 1, 0 = empty
    cdef Py_ssize_t index_cap           # a power of two
    cdef void *ents                     # ar_ent[n_ents]
    cdef Py_ssize_t n_ents, ents_cap
    cdef char *keys                     # full bytes of strings stored cut or rewritten
    cdef Py_ssize_t keys_size, keys_cap

    cdef int add_ls(self, const lstr *s, uint32_t *off, uint32_t *ln) except -1
    cdef int add_bytes(self, const char *key, uint32_t klen, uint64_t h, bint special,
                       uint32_t *off, uint32_t *ln) except -1
    cdef int _grow_index(self) except -1
    cdef int _reserve(self, Py_ssize_t extra) except -1


cdef class FdTable:
    # One process's open files (lbd.enrich.fdtable.FdTable's contract, in C): rows sorted by fd.
    # `enc` mirrors rows as (fd, path_off, path_len) int32 triples in `enc_arena` while its epoch
    # is `enc_epoch` (kept up to date by every change), so a snapshot is one memcpy into fdtab.
    # `version` changes with every change of the (fd, path) rows (the reference's snapshot
    # identity); `w_*` is where the last snapshot was written to the Engine's fdtab.
    cdef ft_row *rows
    cdef int32_t *enc
    cdef Py_ssize_t n, cap
    cdef public bint complete
    cdef public Py_ssize_t overflow
    cdef public Py_ssize_t max_fds
    cdef readonly Py_ssize_t nchars     # sum of nchars + 1 over the rows
    cdef StringArena enc_arena
    cdef Py_ssize_t enc_epoch           # -1: enc not valid
    cdef uint64_t version
    cdef bint w_valid
    cdef Py_ssize_t w_epoch
    cdef uint32_t w_off
    cdef uint64_t w_version
    cdef Py_ssize_t w_kept, w_len

    cdef Py_ssize_t find(self, int32_t fd) noexcept nogil
    cdef lstr *path_of(self, int64_t fd) noexcept nogil
    cdef int put(self, int64_t fd, lstr *path, bint cloexec) except -1
    cdef bint drop(self, int64_t fd) noexcept
    cdef int encode(self, StringArena arena) except -1
    cdef bint live(self) noexcept
    cdef int _reserve(self, Py_ssize_t need) except -1
    cdef int _remove_if(self, Py_ssize_t lo, Py_ssize_t hi, bint cloexec_only) noexcept
    cdef int set_cloexec_c(self, int64_t fd, bint cloexec) noexcept
    cdef int close_range_c(self, int64_t first, int64_t last, bint cloexec_only) noexcept
