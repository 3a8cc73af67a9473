# The C view of a batch's enrichment arrays: lbd/enrich/lbd_enrich_layout.h (its one definition,
# shared with the Falco plugin).  Row i of batch.enrich describes event i; strings are in
# batch.strtab, fd rows in batch.fdtab; all valid as long as the batch.
from libc.stdint cimport int32_t, uint32_t

cdef extern from "lbd_enrich_layout.h" nogil:
    ctypedef struct enrich_row "struct lbd_enrich_row":
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
        uint32_t fds_off
        uint32_t fds_n

    ctypedef struct fd_row "struct lbd_fd_row":
        int32_t fd
        uint32_t path_off
        uint32_t path_len
