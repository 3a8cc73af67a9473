/* SPDX-License-Identifier: Apache-2.0
 *
 * extract_shim.c: plugin/lbd_extract.c (extract_fields' C core) as a plain shared library for
 * tests/unit/test_plugin_enrich.py, which drives it through ctypes with batches and enrichment
 * arrays it builds itself, without a kernel or Falco.  Built by plugin/Makefile as
 * build/liblbd_extract_test.so; not part of the plugin.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lbd_plugin.h"

#define SHIM __attribute__((visibility("default")))

SHIM struct lbd_extractor *shim_new(uint64_t str_max)
{
    struct lbd_extractor *x = malloc(sizeof(*x));
    if (x)
        lbd_extractor_init(x, str_max);
    return x;
}

SHIM void shim_free(struct lbd_extractor *x)
{
    lbd_extractor_free(x);
    free(x);
}

SHIM int shim_view(struct lbd_extractor *x, const uint64_t *ptrs, uint32_t n, const void *enrich,
                   const char *strtab, uint64_t strtab_len, const void *fdtab, uint64_t fdtab_len,
                   char *why, size_t len)
{
    why[0] = '\0';
    return lbd_view_set(x, ptrs, n, enrich, strtab, strtab_len, fdtab, fdtab_len, why, len);
}

/* One field of one event; its values as text, each followed by '\n', into out.  Returns the
 * number of values, or -1 with the message in out. */
SHIM int shim_extract(struct lbd_extractor *x, const void *evt, uint32_t field_id, const char *arg,
                      uint32_t ftype, char *out, size_t outlen)
{
    ss_plugin_extract_field f;
    memset(&f, 0, sizeof(f));
    f.field_id = field_id;
    f.arg_key = arg;
    f.arg_present = arg != NULL;
    f.ftype = ftype;
    if (lbd_extract(x, evt, 1, &f, out, outlen) != SS_PLUGIN_SUCCESS)
        return -1;
    size_t o = 0;
    out[0] = '\0';
    for (uint64_t i = 0; i < f.res_len && o < outlen; i++) {
        if (ftype == FTYPE_STRING)
            o += (size_t)snprintf(out + o, outlen - o, "%s\n", f.res.str[i]);
        else if (ftype == FTYPE_BOOL)
            o += (size_t)snprintf(out + o, outlen - o, "%u\n", f.res.boolean[i]);
        else if (ftype == FTYPE_IPADDR)
            o += (size_t)snprintf(out + o, outlen - o, "ip%u\n", f.res.buf[i].len);
        else
            o += (size_t)snprintf(out + o, outlen - o, "%llu\n", (unsigned long long)f.res.u64[i]);
    }
    return (int)f.res_len;
}

/* capture_env (from open_params) and secret_pattern (from init_config), as plugin_open and
 * plugin_init set them. */
SHIM int shim_env(struct lbd_extractor *x, int capture_env, const char *pattern, size_t len)
{
    if (len > sizeof(x->secret))
        return -1;
    x->capture_env = capture_env;
    memcpy(x->secret, pattern, len);
    x->secret_len = len;
    return 0;
}
