/* SPDX-License-Identifier: Apache-2.0
 *
 * lbd_plugin.h: what the two halves of liblbd.so share.
 *
 *   lbd_plugin.c   the Falco ABI, the embedded CPython, next_batch (one Python call per batch)
 *   lbd_extract.c  extract_fields: everything per event, in C, without Python or the GIL
 */
#ifndef LBD_PLUGIN_H
#define LBD_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "lbd_plugin_api.h"

#define LBD_ERRLEN 1024

#include "lbd_enrich_layout.h"   /* batch.enrich / batch.fdtab rows (lbd/enrich) */

/* The batch next_batch returned last.  Every pointer is into memory the Python Instance keeps
 * alive (the Collector's Batch, the enrichment arrays; lbd.falco checks their dtypes, and
 * lbd_view_check their offsets, once per batch): valid until the next next_batch() or close(),
 * which reset this view. */
struct lbd_view {
    const uint64_t *ptrs;                   /* address of each event's Falco header */
    uint32_t n;                             /* events; 0: no batch */
    const struct lbd_enrich_row *enrich;    /* n rows, or NULL: no enrichment for this batch */
    const char *strtab;
    uint64_t strtab_len;
    const struct lbd_fd_row *fdtab;
    uint64_t fdtab_len;
    uint32_t hint;                          /* index of the last event looked up */
};

/* Memory for extract_fields results: blocks that are reused, never moved while a call runs.
 * Everything allocated is valid until the next lbd_extract() (which resets it) or free. */
struct lbd_block;
struct lbd_arena {
    struct lbd_block *first;
    struct lbd_block *cur;
};

struct lbd_extractor {
    struct lbd_view view;
    struct lbd_arena arena;
    uint64_t str_max;                       /* init_config str_max_size: 0 = no limit */
    int capture_env;                        /* open_params capture_env of the open capture (0 before) */
    size_t secret_len;
    char secret[1024];                      /* init_config secret_pattern, UTF-8 (256 characters at most) */
    int64_t time_sec;                       /* linux.time cache: the second last formatted */
    char time_prefix[32];                   /* "YYYY-mm-dd HH:MM:SS" of time_sec */
    size_t time_prefix_len;
    int64_t tz_read;                        /* CLOCK_MONOTONIC second the time zone was read */
};

void lbd_extractor_init(struct lbd_extractor *x, uint64_t str_max);

/* Check a batch's enrichment arrays against the contract once, before extract_fields trusts
 * them: every string inside strtab and followed by its NUL, every fd range inside fdtab.  One
 * pass over the rows, in C.  0 if they hold, else -1 with the first problem in why. */
int lbd_view_check(const struct lbd_view *v, char *why, size_t len);

/* Make (ptrs, n) and its enrichment arrays (enrich NULL: none) the current batch of x.  Arrays
 * that fail lbd_view_check are not used (the events get the record's values): returns -1 then,
 * with the reason in why; else 0.  n == 0 forgets the batch. */
int lbd_view_set(struct lbd_extractor *x, const uint64_t *ptrs, uint32_t n, const void *enrich,
                 const char *strtab, uint64_t strtab_len, const void *fdtab, uint64_t fdtab_len,
                 char *why, size_t len);
void lbd_extractor_free(struct lbd_extractor *x);

/* Fill fields[0..n) for one event.  Returns SS_PLUGIN_SUCCESS, or SS_PLUGIN_FAILURE with a
 * message in err (the event is not an lbd event, a field id or argument is unknown, no memory). */
ss_plugin_rc lbd_extract(struct lbd_extractor *x, const ss_plugin_event *evt, uint32_t n,
                         ss_plugin_extract_field *fields, char *err, size_t errlen);

#endif /* LBD_PLUGIN_H */
