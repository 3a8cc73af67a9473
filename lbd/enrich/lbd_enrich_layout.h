/* lbd_enrich_layout.h: the C view of a batch's enrichment arrays (lbd/enrich/layout.py:
 * ENRICH_DTYPE, FD_DTYPE), the one definition read by lbd/_enrich.pyx, lbd/_format.pyx (through
 * lbd/_layout.pxd) and the Falco plugin (plugin/lbd_plugin.h).  Each reader checks the sizes
 * against the numpy dtypes when it loads. */
#ifndef LBD_ENRICH_LAYOUT_H
#define LBD_ENRICH_LAYOUT_H

#include <stdint.h>

/* One row of batch.enrich per event: 52 bytes.  *_off/_len locate a UTF-8 string in
 * batch.strtab, followed there by a NUL (len excludes it). */
struct lbd_enrich_row {
    uint32_t ppid;
    uint32_t pcomm_off, pcomm_len;
    uint32_t user_off, user_len;
    uint32_t group_off, group_len;
    uint32_t cmdline_off, cmdline_len;
    uint32_t fullpath_off, fullpath_len;
    uint32_t fds_off, fds_n;        /* the event's rows of batch.fdtab */
};

/* One row of batch.fdtab: 12 bytes. */
struct lbd_fd_row {
    int32_t fd;
    uint32_t path_off, path_len;    /* the path in batch.strtab */
};

_Static_assert(sizeof(struct lbd_enrich_row) == 52, "ENRICH_DTYPE is 52 bytes");
_Static_assert(sizeof(struct lbd_fd_row) == 12, "FD_DTYPE is 12 bytes");

#endif /* LBD_ENRICH_LAYOUT_H */
