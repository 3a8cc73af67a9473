/* SPDX-License-Identifier: Apache-2.0
 *
 * lbd_extract.c: extract_fields of liblbd.so.  The hot path: Falco calls it for every event that
 * reaches a rule condition or output.  It runs in C alone (no Python, no GIL), reads the record
 * behind the event and, when the event is one of the current batch, that batch's enrichment rows.
 *
 * What it trusts: an event of the current batch (its address is in view.ptrs) was validated by
 * the decoder and its enrichment offsets by lbd_view_check (once per batch, in next_batch); any
 * other event (a copy Falco made) is validated here before anything is read, and gets the
 * record's values only.
 *
 * Argument text is what lbd's `normal` output prints for args (lbd.args.decode_args, then
 * lbd.output.reference.format_args): the same kinds, the same empty/NULL rules, each value cut at
 * str_max_size characters with "...", then escaped by lbd/lbd_text.h's rules (undecodable bytes
 * and control characters as \xNN, a backslash as \\, and in linux.args the separators , ( ) =
 * with a backslash); envp is NULL unless capture_env, and with it secret values are ***.  Other
 * text fields (linux.arg[name], linux.comm, socket paths) get the same escapes but the
 * separators'.  tests/unit/test_plugin_extract.py holds the two to each other.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lbd_plugin.h"
#include "lbd_tables.h"
#include "../lbd/lbd_text.h"

/* ---- result memory ---------------------------------------------------------------------------- */

struct lbd_block {
    struct lbd_block *next;
    size_t cap;
    size_t used;
    _Alignas(8) char data[];
};

#define LBD_BLOCK_MIN (64u * 1024u)

static struct lbd_block *block__new(size_t cap)
{
    struct lbd_block *b = malloc(sizeof(*b) + cap);
    if (!b)
        return NULL;
    b->next = NULL;
    b->cap = cap;
    b->used = 0;
    return b;
}

/* Blocks after cur are unused (cur only moves forward, and only cur is allocated from), so the
 * blocks up to cur are the ones to empty: mostly the first alone. */
static inline void arena__reset(struct lbd_arena *a)
{
    for (struct lbd_block *b = a->first; b; b = b->next) {
        b->used = 0;
        if (b == a->cur)
            break;
    }
    a->cur = a->first;
}

static void arena__free(struct lbd_arena *a)
{
    struct lbd_block *b = a->first;
    while (b) {
        struct lbd_block *next = b->next;
        free(b);
        b = next;
    }
    a->first = a->cur = NULL;
}

/* Make the current block one with `need` free bytes (after aligning to 8); NULL: no memory. */
static struct lbd_block *arena__room(struct lbd_arena *a, size_t need)
{
    struct lbd_block *b = a->cur;
    while (b) {
        size_t start = (b->used + 7) & ~(size_t)7;
        if (start + need <= b->cap) {
            a->cur = b;
            return b;
        }
        b = b->next;
    }
    b = block__new(need > LBD_BLOCK_MIN ? need : LBD_BLOCK_MIN);
    if (!b)
        return NULL;
    if (!a->first) {
        a->first = b;
    } else {  /* append at the end of the chain */
        struct lbd_block *t = a->cur ? a->cur : a->first;
        while (t->next)
            t = t->next;
        t->next = b;
    }
    a->cur = b;
    return b;
}

static __attribute__((noinline)) void *arena__alloc_slow(struct lbd_arena *a, size_t size)
{
    struct lbd_block *b = arena__room(a, size);
    if (!b)
        return NULL;
    size_t start = (b->used + 7) & ~(size_t)7;
    b->used = start + size;
    return b->data + start;
}

/* The hot case inline: room in the current block. */
static inline void *arena__alloc(struct lbd_arena *a, size_t size)
{
    struct lbd_block *b = a->cur;
    if (b) {
        size_t start = (b->used + 7) & ~(size_t)7;
        if (start + size <= b->cap) {
            b->used = start + size;
            return b->data + start;
        }
    }
    return arena__alloc_slow(a, size);
}

/* A string built at the free end of the current block; moved to a bigger block when it grows.
 * Nothing else may be allocated between sb__begin and sb__end. */
struct sb {
    struct lbd_arena *a;
    char *p;
    size_t len;
    size_t cap;     /* bytes available at p (room for the NUL included) */
    int oom;
};

static inline void sb__begin(struct sb *s, struct lbd_arena *a)
{
    s->a = a;
    s->len = 0;
    s->oom = 0;
    struct lbd_block *b = a->cur;
    if (b && ((b->used + 7) & ~(size_t)7) + 64 <= b->cap) {
        size_t start = (b->used + 7) & ~(size_t)7;
        s->p = b->data + start;
        s->cap = b->cap - start;
        return;
    }
    b = arena__room(a, 64);
    if (!b) {
        s->p = NULL;
        s->cap = 0;
        s->oom = 1;
        return;
    }
    size_t start = (b->used + 7) & ~(size_t)7;
    s->p = b->data + start;
    s->cap = b->cap - start;
}

static __attribute__((noinline)) int sb__grow(struct sb *s, size_t more)
{
    if (s->oom)
        return -1;
    size_t want = 2 * (s->len + more + 1);
    char *old = s->p;
    /* the partial string is not committed: reserving in another block leaves it where it is */
    struct lbd_block *cur = s->a->cur;
    struct lbd_block *b = NULL;
    for (struct lbd_block *t = cur->next; t; t = t->next) {
        if (t->used == 0 && t->cap >= want) {
            b = t;
            break;
        }
    }
    if (!b) {
        b = block__new(want > LBD_BLOCK_MIN ? want : LBD_BLOCK_MIN);
        if (!b) {
            s->oom = 1;
            return -1;
        }
        b->next = cur->next;
        cur->next = b;
    }
    s->a->cur = b;
    s->p = b->data;
    s->cap = b->cap;
    memcpy(s->p, old, s->len);
    return 0;
}

/* memcpy of n bytes, inline for the short copies text is mostly made of (no call into libc for
 * a few bytes); overlapping word stores, never a byte outside src[:n] or dst[:n]. */
static inline void copy__short(char *dst, const char *src, size_t n)
{
    if (n >= 16) {
        memcpy(dst, src, n);
    } else if (n >= 8) {
        uint64_t a, b;
        memcpy(&a, src, 8);
        memcpy(&b, src + n - 8, 8);
        memcpy(dst, &a, 8);
        memcpy(dst + n - 8, &b, 8);
    } else if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, src, 4);
        memcpy(&b, src + n - 4, 4);
        memcpy(dst, &a, 4);
        memcpy(dst + n - 4, &b, 4);
    } else if (n) {
        char a = src[0], b = src[n / 2], c = src[n - 1];
        dst[0] = a;
        dst[n / 2] = b;
        dst[n - 1] = c;
    }
}

static inline void sb__put(struct sb *s, const char *src, size_t n)
{
    if (s->len + n + 1 > s->cap && sb__grow(s, n) != 0)
        return;
    copy__short(s->p + s->len, src, n);
    s->len += n;
}

static inline void sb__putc(struct sb *s, char c)
{
    if (s->len + 2 > s->cap && sb__grow(s, 1) != 0)
        return;
    s->p[s->len++] = c;
}

static inline void sb__put2(struct sb *s, char c0, char c1)
{
    if (s->len + 3 > s->cap && sb__grow(s, 2) != 0)
        return;
    s->p[s->len] = c0;
    s->p[s->len + 1] = c1;
    s->len += 2;
}

static void sb__puts(struct sb *s, const char *z)
{
    sb__put(s, z, strlen(z));
}

/* Commit the string; NULL when memory ran out. */
static const char *sb__end(struct sb *s)
{
    if (s->oom)
        return NULL;
    s->p[s->len] = '\0';
    struct lbd_block *b = s->a->cur;
    b->used = (size_t)(s->p - b->data) + s->len + 1;
    return s->p;
}

/* ---- value text: the normal output's rules ----------------------------------------------------- */

/* A writer of one value: counts code points and cuts at `limit` with "..." (truncate()). */
struct vw {
    struct sb *sb;
    uint64_t limit;     /* 0: no limit */
    uint64_t count;
    int cut;
    int sep;            /* escape the normal format's separators , ( ) = (linux.args) */
};

/* One character (n bytes of it) of a value's own text (digits, a structure's braces and
 * separators): escaped as the normal format escapes the value's whole text (w->sep: , ( ) = and a
 * backslash get a backslash, so a structure's "key=value, ..." reads back as one value). */
static inline void vw__cp(struct vw *w, const char *s, size_t n)
{
    if (w->cut)
        return;
    if (w->limit && w->count == w->limit) {
        sb__put(w->sb, "...", 3);
        w->cut = 1;
        return;
    }
    if (n == 1) {
        if (s[0] == '\\' || (w->sep && lbd_text_is_sep((uint8_t)s[0])))
            sb__put2(w->sb, '\\', s[0]);
        else
            sb__putc(w->sb, s[0]);
    } else {
        sb__put(w->sb, s, n);
    }
    w->count++;
}

/* Bytes that stand for themselves in a value's text: printable ASCII but the backslash (1), and
 * the normal format's separators , ( ) = (2: themselves unless w->sep). */
static const uint8_t plain__class[256] = {
    [' ' ... '\''] = 1, ['('] = 2, [')'] = 2, ['*' ... '+'] = 1, [','] = 2, ['-' ... '<'] = 1, ['='] = 2,
    ['>' ... '['] = 1, [']' ... '~'] = 1,     /* all but the backslash */
};

#define ONES (~(uint64_t)0 / 255)      /* 0x0101...01 */
#define HIGHS (ONES * 0x80)

/* The high bit of each byte of w (8 bytes, little endian) that does not stand for itself (not in
 * plain__class: below 0x20, 0x7F and above, the backslash, and with sep the separators).  Exact
 * for every byte: no carry crosses a byte. */
static inline uint64_t plain__mask8(uint64_t w, int sep)
{
    uint64_t t = w & ~HIGHS;                                   /* the low 7 bits of each byte */
    uint64_t flags = w | (t + ONES);                          /* 0x80 and up, 0x7F */
    flags |= ~(t + ONES * (0x80 - 0x20));                     /* below 0x20 */
    uint64_t x = t ^ (ONES * '\\');
    flags |= ~(x + ONES * 0x7F);                              /* the backslash */
    if (sep) {
        x = t ^ (ONES * ',');
        flags |= ~(x + ONES * 0x7F);
        x = t ^ (ONES * '(');
        flags |= ~(x + ONES * 0x7F);
        x = t ^ (ONES * ')');
        flags |= ~(x + ONES * 0x7F);
        x = t ^ (ONES * '=');
        flags |= ~(x + ONES * 0x7F);
    }
    return flags & HIGHS;
}

/* How many bytes at the start of p[:n] stand for themselves (one character each). */
static inline size_t plain__run(const uint8_t *p, size_t n, int sep)
{
    uint8_t bad = sep ? 2 : 0;    /* a class that ends the run besides 0 */
    size_t i = 0;
    while (n - i >= 8) {          /* 8 bytes at a time */
        uint64_t w;
        memcpy(&w, p + i, 8);
        uint64_t m = plain__mask8(w, sep);
        if (m)
            return i + (size_t)(__builtin_ctzll(m) >> 3);
        i += 8;
    }
    while (i < n) {
        uint8_t c = plain__class[p[i]];
        if (!c || c == bad)
            break;
        i++;
    }
    return i;
}

/* n characters that stand for themselves (plain__run), cut as n calls of vw__cp would cut them. */
static inline void vw__run(struct vw *w, const char *s, size_t n)
{
    if (w->cut || !n)
        return;
    size_t m = n;
    if (w->limit && w->limit - w->count < m)
        m = (size_t)(w->limit - w->count);
    sb__put(w->sb, s, m);
    w->count += m;
    if (m < n) {
        sb__put(w->sb, "...", 3);
        w->cut = 1;
    }
}

static void vw__ascii(struct vw *w, const char *z, size_t n)
{
    size_t i = 0;
    while (i < n && !w->cut) {
        size_t r = plain__run((const uint8_t *)z + i, n - i, w->sep);
        if (r) {
            vw__run(w, z + i, r);
            i += r;
        } else {
            vw__cp(w, z + i, 1);
            i++;
        }
    }
}

/* One character written as an escape of several bytes (lbd_text.h): counts as one. */
static inline void vw__esc(struct vw *w, const char *e, size_t n)
{
    if (w->cut)
        return;
    if (w->limit && w->count == w->limit) {
        sb__put(w->sb, "...", 3);
        w->cut = 1;
        return;
    }
    sb__put(w->sb, e, n);
    w->count++;
}

/* An undecodable byte or a control character (U+0000..U+001F, U+007F): \xNN. */
static inline void vw__hex(struct vw *w, uint8_t byte)
{
    static const char hex[] = "0123456789abcdef";
    if (w->cut)
        return;
    if (w->limit && w->count == w->limit) {
        sb__put(w->sb, "...", 3);
        w->cut = 1;
        return;
    }
    struct sb *s = w->sb;
    if (s->len + 5 <= s->cap || sb__grow(s, 4) == 0) {
        char *d = s->p + s->len;
        d[0] = '\\';
        d[1] = 'x';
        d[2] = hex[byte >> 4];
        d[3] = hex[byte & 15];
        s->len += 4;
    }
    w->count++;
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 if none starts there
 * (Python's decoder: no overlongs, no surrogates, nothing above U+10FFFF). */
static size_t utf8__seq(const uint8_t *p, size_t n)
{
    uint8_t b = p[0];
    uint8_t lo = 0x80, hi = 0xBF;
    size_t len;
    if (b < 0x80)
        return 1;
    if (b >= 0xC2 && b <= 0xDF) {
        len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
        len = 3;
        if (b == 0xE0)
            lo = 0xA0;
        else if (b == 0xED)
            hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4;
        if (b == 0xF0)
            lo = 0x90;
        else if (b == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return len;
}

/* bytes.decode("utf-8", "surrogateescape"), written through w and escaped (escape_text). */
static void vw__text(struct vw *w, const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n && !w->cut) {
        size_t r = plain__run(p + i, n - i, w->sep);
        if (r) {
            vw__run(w, (const char *)p + i, r);
            i += r;
            if (i == n || w->cut)
                break;
        }
        uint8_t c = p[i];
        if (c < 0x20 || c == 0x7F) {
            vw__hex(w, c);
            i++;
            continue;
        }
        if (c == '\\' || (w->sep && lbd_text_is_sep(c))) {
            char e[2] = {'\\', (char)c};
            vw__esc(w, e, 2);
            i++;
            continue;
        }
        size_t k = utf8__seq(p + i, n - i);
        if (k > 1 && lbd_text_is_c1(p + i, k)) {
            static const char hex[] = "0123456789abcdef";
            char e[12];
            for (size_t j = 0; j < k; j++) {
                e[4 * j] = '\\';
                e[4 * j + 1] = 'x';
                e[4 * j + 2] = hex[p[i + j] >> 4];
                e[4 * j + 3] = hex[p[i + j] & 15];
            }
            vw__esc(w, e, 4 * k);
            i += k;
        } else if (k) {
            vw__cp(w, (const char *)p + i, k);
            i += k;
        } else {
            vw__hex(w, c);
            i++;
        }
    }
}

static size_t dec_u64(char *buf, uint64_t v);
static size_t dec_i64(char *buf, int64_t v);

/* The number of decimal digits of v: from its bit width (log10(2) ~ 1233/4096), then one compare. */
static inline size_t dec__len(uint64_t v)
{
    static const uint64_t pow10[20] = {
        1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull, 100000000ull,
        1000000000ull, 10000000000ull, 100000000000ull, 1000000000000ull, 10000000000000ull,
        100000000000000ull, 1000000000000000ull, 10000000000000000ull, 100000000000000000ull,
        1000000000000000000ull, 10000000000000000000ull,
    };
    if (v < 10)
        return 1;
    unsigned t = (unsigned)(64 - __builtin_clzll(v)) * 1233u >> 12;
    return (size_t)t + (v >= pow10[t]);
}

static const char dec__pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* The 8 digits of c < 10^8 (leading zeros included) into q[0..8). */
static inline void dec__8(char *q, uint32_t c)
{
    uint32_t a = c / 10000, b = c % 10000;
    memcpy(q, dec__pairs + 2 * (a / 100), 2);
    memcpy(q + 2, dec__pairs + 2 * (a % 100), 2);
    memcpy(q + 4, dec__pairs + 2 * (b / 100), 2);
    memcpy(q + 6, dec__pairs + 2 * (b % 100), 2);
}

/* The n = dec__len(v) digits of v into out[0..n) (no NUL): the low 8-digit groups in 32-bit
 * arithmetic, then the rest two digits at a time. */
static inline void dec__write(char *out, uint64_t v, size_t n)
{
    char *q = out + n;
    while (v >= 100000000) {
        uint64_t hi = v / 100000000;
        q -= 8;
        dec__8(q, (uint32_t)(v - hi * 100000000));
        v = hi;
    }
    uint32_t u = (uint32_t)v;
    while (u >= 100) {
        uint32_t r = u % 100;
        u /= 100;
        q -= 2;
        memcpy(q, dec__pairs + 2 * r, 2);
    }
    if (u >= 10) {
        q -= 2;
        memcpy(q, dec__pairs + 2 * u, 2);
    } else {
        *--q = (char)('0' + u);
    }
}

static void vw__uint(struct vw *w, uint64_t v);

/* An integer: ASCII digits, so each byte is one character; cut like any other value. */
static void vw__int(struct vw *w, int64_t v)
{
    if (v >= 0) {
        vw__uint(w, (uint64_t)v);
        return;
    }
    char buf[24];
    size_t n = dec_i64(buf, v);
    if (!w->limit || w->count + n <= w->limit) {
        sb__put(w->sb, buf, n);
        w->count += n;
    } else {
        vw__ascii(w, buf, n);
    }
}

static void vw__uint(struct vw *w, uint64_t v)
{
    size_t n = dec__len(v);
    if (!w->limit || w->count + n <= w->limit) {
        struct sb *s = w->sb;
        if (s->len + n + 1 > s->cap && sb__grow(s, n) != 0)
            return;
        dec__write(s->p + s->len, v, n);     /* the digits in place */
        s->len += n;
        w->count += n;
    } else {
        char buf[24];
        dec__write(buf, v, n);
        vw__ascii(w, buf, n);
    }
}

static inline int64_t sext(uint64_t v, unsigned bits)
{
    if (bits >= 64)
        return (int64_t)v;
    uint64_t m = (1ull << bits) - 1, sign = 1ull << (bits - 1);
    v &= m;
    return (v & sign) ? (int64_t)(v | ~m) : (int64_t)v;
}

static inline uint64_t zext(uint64_t v, unsigned bits)
{
    return bits >= 64 ? v : v & ((1ull << bits) - 1);
}

static const char *family__name(uint16_t fam, char *buf, size_t len)
{
    for (size_t i = 0; i < LBD_N_FAMILY_NAMES; i++)
        if (lbd_family_names[i].family == fam)
            return lbd_family_names[i].name;
    snprintf(buf, len, "%u", fam);
    return buf;
}

/* str(ipaddress.IPv6Address(b)) of Python 3.11: lower-case hex groups without leading zeros, the
 * first longest run of two or more zero groups as "::". */
static void ipv6__format(const uint8_t *b, char *out, size_t len)
{
    unsigned g[8];
    int best = -1, best_len = 0, run = -1, run_len = 0;
    for (int i = 0; i < 8; i++) {
        g[i] = (unsigned)b[2 * i] << 8 | b[2 * i + 1];
        if (g[i] == 0) {
            if (run < 0)
                run = i;
            run_len++;
            if (run_len > best_len) {
                best_len = run_len;
                best = run;
            }
        } else {
            run = -1;
            run_len = 0;
        }
    }
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; i < 8; i++) {
        if (best_len > 1 && i == best) {
            o += (size_t)snprintf(out + o, len - o, "%s", i == 0 ? "::" : ":");
            i += best_len - 1;
            if (i == 7)
                break;
            continue;
        }
        o += (size_t)snprintf(out + o, len - o, "%x%s", g[i], i < 7 ? ":" : "");
    }
}

/* str(lbd.args.decode_sockaddr(b)); b has at least 2 bytes. */
static void vw__sockaddr(struct vw *w, const uint8_t *b, size_t n)
{
    uint16_t fam = (uint16_t)(b[0] | b[1] << 8);
    char buf[64];
    if (fam == 2 && n >= 8) {                                 /* AF_INET */
        int k = snprintf(buf, sizeof(buf), "%u.%u.%u.%u:%u", b[4], b[5], b[6], b[7],
                         (unsigned)b[2] << 8 | b[3]);
        vw__ascii(w, buf, (size_t)k);
    } else if (fam == 10 && n >= 24) {                        /* AF_INET6 */
        char a[48];
        ipv6__format(b + 8, a, sizeof(a));
        int k = snprintf(buf, sizeof(buf), "[%s]:%u", a, (unsigned)b[2] << 8 | b[3]);
        vw__ascii(w, buf, (size_t)k);
    } else if (fam == 1) {                                    /* AF_UNIX */
        const uint8_t *p = b + 2;
        size_t m = n - 2;
        if (m && p[0] == 0) {                                  /* abstract: "@" + the rest */
            vw__cp(w, "@", 1);
            vw__text(w, p + 1, m - 1);
        } else {
            const uint8_t *z = memchr(p, 0, m);
            vw__text(w, p, z ? (size_t)(z - p) : m);
        }
    } else {
        const char *name = family__name(fam, buf, sizeof(buf));
        vw__ascii(w, name, strlen(name));
        if (n > 2) {
            vw__cp(w, ":", 1);
            for (size_t i = 2; i < n && !w->cut; i++) {
                static const char hex[] = "0123456789abcdef";
                vw__cp(w, &hex[b[i] >> 4], 1);
                vw__cp(w, &hex[b[i] & 15], 1);
            }
        }
    }
}

/* ---- the record ----------------------------------------------------------------------------- */

struct ev {
    const ss_plugin_event *evt;
    const uint8_t *rec;         /* the record: header + payload (maybe unaligned in a copy) */
    const struct lbd_hdr *h;    /* its header: in the arena (8-aligned), or `copy` */
    struct lbd_hdr copy;        /* the header of an event outside the batch, copied aligned */
    const struct lbd_enrich_row *en;   /* this event's enrichment row, or NULL */
    const struct lbd_view *view;
};

static __attribute__((noinline)) int event__check(const ss_plugin_event *e, struct ev *out, char *err, size_t errlen)
{
    const uint8_t *p = (const uint8_t *)e;
    uint32_t plen0, plen1, id;
    if (e->type != PPME_PLUGINEVENT_E || e->nparams != 2) {
        snprintf(err, errlen, "not an lbd event: type %u with %u parameters (expected 322 with 2)",
                 e->type, e->nparams);
        return -1;
    }
    if (e->len < LBD_FALCO_PREFIX + sizeof(struct lbd_hdr)) {
        snprintf(err, errlen, "not an lbd event: %u bytes, shorter than a record", e->len);
        return -1;
    }
    memcpy(&plen0, p + 26, 4);
    memcpy(&plen1, p + 30, 4);
    memcpy(&id, p + 34, 4);
    if (plen0 != 4 || plen1 != e->len - LBD_FALCO_PREFIX || (id != LBD_PLUGIN_ID && id != 0)) {
        snprintf(err, errlen, "not an lbd event: parameter lengths %u, %u, plugin id %u", plen0, plen1, id);
        return -1;
    }
    out->rec = p + LBD_FALCO_PREFIX;
    memcpy(&out->copy, out->rec, sizeof(out->copy));
    out->h = &out->copy;
    const struct lbd_hdr *h = out->h;
    if (h->version != LBD_RECORD_VERSION || h->size != plen1 || h->nargs > LBD_MAX_ARGS) {
        snprintf(err, errlen, "not an lbd record: version %u, size %u of %u bytes", h->version, h->size, plen1);
        return -1;
    }
    for (int i = 0; i < LBD_MAX_ARGS; i++) {
        uint32_t off = h->slot[i].off, len = h->slot[i].len;
        if (len && (off < sizeof(struct lbd_hdr) || off + len > h->size)) {
            snprintf(err, errlen, "lbd record: argument %d's payload lies outside the record", i);
            return -1;
        }
    }
    out->evt = e;
    return 0;
}

/* The batch index of an event, or -1 (not one of the current batch: a copy, or an old one).
 * Falco extracts events in batch order, so the hint makes this O(1) in practice. */
static int64_t view__index(struct lbd_view *v, const ss_plugin_event *e)
{
    uint64_t a = (uint64_t)(uintptr_t)e;
    if (!v->n)
        return -1;
    uint32_t h = v->hint;
    if (h < v->n && v->ptrs[h] == a)
        return h;
    /* the next events first: Falco gets the batch less its state records and what the filter
     * removed, so the next one it extracts is a few events further at most, mostly */
    for (uint32_t k = h + 1; k < v->n && k <= h + 8; k++)
        if (v->ptrs[k] == a)
            return v->hint = k;
    uint32_t lo = 0, hi = v->n;             /* ptrs ascend: events are laid out in arena order */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (v->ptrs[mid] < a)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < v->n && v->ptrs[lo] == a)
        return v->hint = lo;
    return -1;
}

static const struct lbd_sc_spec *spec__of(uint16_t nr)
{
    if (nr < LBD_SC_TABLE_SIZE)
        return lbd_sc_table[nr].name ? &lbd_sc_table[nr] : NULL;
    if (nr >= LBD_SCHED_FIRST && nr <= LBD_SCHED_LAST)
        return &lbd_sched_table[nr - LBD_SCHED_FIRST];
    return NULL;
}

static const char *syscall__name(uint16_t nr, char *buf, size_t len)
{
    const struct lbd_sc_spec *s = spec__of(nr);
    if (s)
        return s->name;
    snprintf(buf, len, "syscall_%u", nr);
    return buf;
}

/* Argument k's payload (NULL, 0 when its slot is empty). */
static const uint8_t *ev__payload(const struct ev *e, int k, uint32_t *len)
{
    *len = e->h->slot[k].len;
    return *len ? e->rec + e->h->slot[k].off : NULL;
}

static inline int is_empty_ok(uint8_t kind)
{
    return kind == LBD_K_STR || kind == LBD_K_PATH || kind == LBD_K_BUF || kind == LBD_K_STRARR ||
           kind == LBD_K_STRUCT || kind == LBD_K_ARRAY32 || kind == LBD_K_IOVEC;
}

/* ---- structures: str(lbd.layouts.Value), lbd.args.normal_text before line_safe ---------------- */

static uint64_t le__read(const uint8_t *p, unsigned size)
{
    uint64_t v = 0;
    memcpy(&v, p, size);        /* x86_64: little endian */
    return v;
}

static void vw__sep(struct vw *w, int *first)
{
    if (!*first)
        vw__ascii(w, ", ", 2);
    *first = 0;
}

static void vw__key(struct vw *w, int *first, const char *name)
{
    vw__sep(w, first);
    vw__ascii(w, name, strlen(name));
    vw__cp(w, "=", 1);
}

/* One field's value, or 0 when the bytes read do not reach it (None: left out). */
static int field__value(const struct lbd_field *f, const uint8_t *p, uint32_t len, int64_t *out)
{
    if (f->kind == 'C') {
        if ((uint32_t)f->off + 4 > len)
            return 0;
        uint64_t lo = le__read(p + f->off, 4);
        uint64_t hi = (uint32_t)f->off2 + 4 <= len ? le__read(p + f->off2, 4) : 0;
        *out = (int64_t)(lo | hi << 32);
        return 1;
    }
    if ((uint32_t)f->off + f->size > len)
        return 0;
    uint64_t v = le__read(p + f->off, f->size);
    *out = f->kind == 's' ? sext(v, 8u * f->size) : (int64_t)v;
    return 1;
}

static void vw__layout(struct vw *w, const struct ev *e, const struct lbd_arg_spec *a, const uint8_t *p,
                       uint32_t len)
{
    static const char hex[] = "0123456789abcdef";
    const struct lbd_layout *L = &lbd_layouts[a->layout];
    const struct lbd_variant *v = NULL, *def = NULL;
    uint64_t sel = a->select >= 0 ? e->h->args[a->select] : 0;
    for (int i = 0; i < L->nvariants; i++) {
        const struct lbd_variant *t = &L->variants[i];
        if (!t->nsel) {
            def = t;
            continue;
        }
        for (int j = 0; a->select >= 0 && j < t->nsel && !v; j++)
            if (t->sel[j] == sel)
                v = t;
    }
    if (!v)
        v = def;
    int first = 1;
    vw__cp(w, "{", 1);
    for (int i = 0; v && i < v->nfields && !w->cut; i++) {
        const struct lbd_field *f = &v->fields[i];
        int64_t x;
        if (f->kind == 'c') {
            if (len <= f->off)
                continue;
            uint32_t n = len - f->off < f->size ? len - f->off : f->size;
            const uint8_t *z = memchr(p + f->off, 0, n);
            vw__key(w, &first, f->name);
            vw__text(w, p + f->off, z ? (size_t)(z - (p + f->off)) : n);
        } else if (f->kind == 'b') {
            uint64_t n = f->size;
            if (f->count >= 0) {
                if (!field__value(&v->fields[f->count], p, len, &x))
                    continue;
                n = (uint64_t)x;
            }
            if (len <= f->off)
                continue;
            if (n > f->size)
                n = f->size;
            if (n > len - f->off)
                n = len - f->off;
            vw__key(w, &first, f->name);
            for (uint64_t k = 0; k < n && !w->cut; k++) {
                vw__cp(w, &hex[p[f->off + k] >> 4], 1);
                vw__cp(w, &hex[p[f->off + k] & 15], 1);
            }
        } else if (field__value(f, p, len, &x)) {
            vw__key(w, &first, f->name);
            if (f->kind == 's')
                vw__int(w, x);
            else
                vw__uint(w, (uint64_t)x);
        }
    }
    vw__cp(w, "}", 1);
}

static void vw__iovec(struct vw *w, const uint8_t *p, uint32_t len)
{
    uint32_t n = len / 16;
    vw__ascii(w, "{base=[", 7);
    for (uint32_t k = 0; k < n && !w->cut; k++) {
        if (k)
            vw__ascii(w, ", ", 2);
        vw__uint(w, le__read(p + 16 * k, 8));
    }
    vw__ascii(w, "], len=[", 8);
    for (uint32_t k = 0; k < n && !w->cut; k++) {
        if (k)
            vw__ascii(w, ", ", 2);
        vw__uint(w, le__read(p + 16 * k + 8, 8));
    }
    vw__ascii(w, "]}", 2);
}

/* lbd.layouts.decode_msghdr: struct lbd_msg, the name, the iovecs, the control data. */
static int vw__msghdr(struct vw *w, const uint8_t *p, uint32_t len)
{
    if (len < sizeof(struct lbd_msg))
        return 0;
    struct lbd_msg m;
    memcpy(&m, p, sizeof(m));
    uint32_t namelen = (uint32_t)le__read(m.msghdr + 8, 4);
    uint64_t iovlen = le__read(m.msghdr + 24, 8), ctllen = le__read(m.msghdr + 40, 8);
    uint32_t flags = (uint32_t)le__read(m.msghdr + 48, 4);
    uint32_t at = sizeof(struct lbd_msg);
    int first = 1;
    vw__cp(w, "{", 1);
    uint32_t name_n = at < len ? (len - at < m.name_len ? len - at : m.name_len) : 0;
    if (m.name_len && name_n >= 2) {
        vw__key(w, &first, "name");
        vw__sockaddr(w, p + at, name_n);
    }
    at += m.name_len;
    vw__key(w, &first, "namelen");
    vw__uint(w, namelen);
    vw__key(w, &first, "iov_len");
    vw__cp(w, "[", 1);
    for (uint32_t k = 0, shown = 0; k < m.iov_n && !w->cut; k++) {
        if ((uint64_t)at + 16 * k + 16 > len)
            continue;
        if (shown++)
            vw__ascii(w, ", ", 2);
        vw__uint(w, le__read(p + at + 16 * k + 8, 8));
    }
    vw__cp(w, "]", 1);
    at += 16u * m.iov_n;
    vw__key(w, &first, "iovlen");
    vw__uint(w, iovlen);
    vw__key(w, &first, "controllen");
    vw__uint(w, ctllen);
    const uint8_t *ctl = at <= len ? p + at : p + len;
    uint32_t cn = at <= len ? (len - at < m.control_len ? len - at : m.control_len) : 0;
    for (int pass = 0; pass < 3; pass++) {
        static const char *const keys[3] = {"cmsg_level", "cmsg_type", "scm_rights"};
        vw__key(w, &first, keys[pass]);
        vw__cp(w, "[", 1);
        int shown = 0;
        for (uint32_t k = 0; k + 16 <= cn && !w->cut;) {
            uint64_t clen = le__read(ctl + k, 8);
            int32_t level = (int32_t)le__read(ctl + k + 8, 4), type = (int32_t)le__read(ctl + k + 12, 4);
            if (clen < 16)
                break;
            if (pass < 2) {
                if (shown++)
                    vw__ascii(w, ", ", 2);
                vw__int(w, pass == 0 ? level : type);
            } else if (level == 1 && type == 1) {
                uint64_t end = k + clen < cn ? k + clen : cn;
                for (uint64_t q = k + 16; q + 4 <= end && !w->cut; q += 4) {
                    if (shown++)
                        vw__ascii(w, ", ", 2);
                    vw__int(w, (int32_t)le__read(ctl + q, 4));
                }
            }
            uint64_t step = (clen + 7) & ~(uint64_t)7;
            if (step > cn)
                break;
            k += (uint32_t)step;
        }
        vw__cp(w, "]", 1);
    }
    vw__key(w, &first, "flags");
    vw__uint(w, flags);
    vw__cp(w, "}", 1);
    return 1;
}

/* The environment strings of p[:end] (NUL-separated) joined by spaces, each NAME=VALUE whose name
 * is a secret one as NAME=*** (reference.env_value, format_value). */
static void vw__env(struct vw *w, const struct lbd_extractor *x, const uint8_t *p, size_t end)
{
    size_t start = 0, nl;
    int first = 1;
    for (size_t i = 0; i <= end && !w->cut; i++) {
        if (i == end || p[i] == 0) {
            if (!first)
                vw__cp(w, " ", 1);
            first = 0;
            if (lbd_secret_name((const uint8_t *)x->secret, x->secret_len, p + start, i - start, &nl)) {
                vw__text(w, p + start, nl);
                vw__text(w, (const uint8_t *)"=***", 4);
            } else {
                vw__text(w, p + start, i - start);
            }
            start = i + 1;
        }
    }
}

/* format_value(decode(kind, bits, raw, payload_or_empty(...)), limit) of argument k. */
static void vw__arg(struct vw *w, const struct lbd_extractor *x, const struct ev *e, int k,
                    const struct lbd_arg_spec *a)
{
    uint64_t raw = e->h->args[k];
    uint32_t len;
    const uint8_t *p = ev__payload(e, k, &len);
    static const uint8_t none[1];
    int faulted = e->h->flags >> (LBD_F_FAULT_SHIFT + k) & 1;
    int present = p != NULL;
    if (a->kind == LBD_K_STRARR && !x->capture_env && strcmp(a->name, "envp") == 0) {
        sb__put(w->sb, "NULL", 4);             /* the environment, not captured */
        return;
    }
    if (faulted && !p && raw && a->kind >= LBD_K_STR) {
        sb__put(w->sb, "<unreadable>", 12);    /* lbd.args.UNREADABLE: never cut */
        return;
    }
    if (!present && !faulted && (e->h->slot[k].off || (is_empty_ok(a->kind) && raw)))
        present = 1;                           /* an empty value: read, nothing there */
    if (present && a->strip_nul && len && p[len - 1] == 0)
        len--;
    switch (a->kind) {
    case LBD_K_INT:
        vw__int(w, sext(raw, a->bits));
        return;
    case LBD_K_FD:
    case LBD_K_DIRFD:
    case LBD_K_PID:
        vw__int(w, sext(raw, 32));
        return;
    case LBD_K_UINT:
    case LBD_K_HEX:
    case LBD_K_MODE:
    case LBD_K_FLAGS:
        vw__uint(w, zext(raw, a->bits));
        return;
    case LBD_K_UID:
    case LBD_K_GID:
        vw__uint(w, raw & 0xFFFFFFFFull);
        return;
    case LBD_K_STR:
    case LBD_K_PATH:
    case LBD_K_BUF:
    case LBD_K_OUT_BUF:
        if (!present)
            break;
        vw__text(w, p, len);
        return;
    case LBD_K_SOCKADDR:
    case LBD_K_OUT_SOCKADDR:
        if (!p || len < 2)
            break;
        vw__sockaddr(w, p, len);
        return;
    case LBD_K_STRUCT:
    case LBD_K_OUT_STRUCT:
        if (!present || a->layout < 0)
            break;
        vw__layout(w, e, a, p ? p : none, len);
        return;
    case LBD_K_IOVEC:
        if (!present)
            break;
        vw__iovec(w, p ? p : none, len);
        return;
    case LBD_K_ARRAY32:
        if (!present)
            break;
        for (uint32_t i = 0; i + 4 <= len && !w->cut; i += 4) {
            if (i)
                vw__cp(w, " ", 1);
            vw__uint(w, le__read(p + i, 4));
        }
        return;
    case LBD_K_MSGHDR:
    case LBD_K_OUT_MSGHDR:
        if (!p || !vw__msghdr(w, p, len))
            break;
        return;
    case LBD_K_STRARR: {
        int env = strcmp(a->name, "envp") == 0;
        if (!present || (env && !x->capture_env))
            break;                             /* NULL: no array, or the environment not captured */
        if (!p)
            p = none;                          /* an empty array: len 0 */
        /* " ".join(parts), parts = payload.split(b"\0") without one trailing empty part; an
         * empty payload ([]) and one NUL ([""]) both print nothing */
        size_t end = len;
        if (end && p[end - 1] == 0)
            end--;
        if (env) {
            vw__env(w, x, p, end);
            return;
        }
        size_t start = 0;
        int first = 1;
        for (size_t i = 0; i <= end && !w->cut; i++) {
            if (i == end || p[i] == 0) {
                if (!first)
                    vw__cp(w, " ", 1);
                first = 0;
                vw__text(w, p + start, i - start);
                start = i + 1;
            }
        }
        return;
    }
    case LBD_K_OUT_FD2: {
        if (!p || len != 8)
            break;
        int32_t fds[2];
        memcpy(fds, p, 8);
        vw__int(w, fds[0]);
        vw__cp(w, " ", 1);
        vw__int(w, fds[1]);
        return;
    }
    case LBD_K_OUT_INT: {
        if (!p || len != 4)
            break;
        int32_t v;
        memcpy(&v, p, 4);
        vw__int(w, v);
        return;
    }
    case LBD_K_PTR:
    default:
        vw__uint(w, raw);
        return;
    }
    sb__put(w->sb, "NULL", 4);                 /* None: never cut */
}

/* The arguments this event renders: its specs, or NULL (unknown number, or exit without enter). */
static const struct lbd_sc_spec *ev__specs(const struct ev *e)
{
    if (e->h->flags & LBD_F_NOENTER)
        return NULL;
    return spec__of(e->h->nr);
}

static const char *render__args(struct lbd_extractor *x, const struct ev *e)
{
    struct sb s;
    struct vw w = {&s, x->str_max, 0, 0, 1};
    sb__begin(&s, &x->arena);
    const struct lbd_sc_spec *sp = ev__specs(e);
    for (int k = 0; sp && k < sp->nargs; k++) {
        if (k)
            sb__put(&s, ", ", 2);
        sb__puts(&s, sp->args[k].name);
        sb__putc(&s, '=');
        w.count = 0;
        w.cut = 0;
        vw__arg(&w, x, e, k, &sp->args[k]);
    }
    return sb__end(&s);
}

/* linux.arg[name]: the value text, or NULL with *found = 0 when there is no such argument. */
static const char *render__arg(struct lbd_extractor *x, const struct ev *e, const char *name, int *found)
{
    const struct lbd_sc_spec *sp = ev__specs(e);
    *found = 0;
    for (int k = 0; sp && k < sp->nargs; k++) {
        if (strcmp(sp->args[k].name, name) != 0)
            continue;
        struct sb s;
        struct vw w = {&s, x->str_max, 0, 0, 0};
        sb__begin(&s, &x->arena);
        vw__arg(&w, x, e, k, &sp->args[k]);
        *found = 1;
        return sb__end(&s);
    }
    return NULL;
}

static const char *fmt(struct lbd_extractor *x, const char *f, ...) __attribute__((format(printf, 2, 3)));

/* linux.flags[NAME]: the names of a flags or mode argument's value, as lbd.flags.names() joins
 * them with '|' (an enumeration: its one name or the decimal number; a bit mask: the enumerated
 * field's name first, the names of the bits set in printing order, the unnamed bits as one hex
 * number, the set's zero name for 0).  Returns the count (0: the event has no such argument or
 * it is neither flags nor mode), -1 when out of memory. */
static int flags__names(struct lbd_extractor *x, const struct ev *e, const char *name, const char ***out)
{
    const struct lbd_sc_spec *sp = ev__specs(e);
    int k = -1;
    for (int i = 0; sp && i < sp->nargs; i++)
        if (!strcmp(sp->args[i].name, name)) {
            k = i;
            break;
        }
    if (k < 0 || !sp->args[k].flagset || sp->args[k].flagset > LBD_N_FLAG_SETS)
        return 0;
    const struct lbd_flag_set *fs = &lbd_flag_sets[sp->args[k].flagset];
    uint64_t v = zext(e->h->args[k], sp->args[k].bits);
    const char **arr = arena__alloc(&x->arena, (size_t)(fs->nbits + 3) * sizeof(*arr));
    if (!arr)
        return -1;
    *out = arr;
    int n = 0;
    if (fs->field_mask == -1) {
        for (uint16_t i = 0; i < fs->nfield; i++)
            if (fs->field[i].mask == v) {
                arr[0] = fs->field[i].name;
                return 1;
            }
        arr[0] = fmt(x, "%" PRIu64, v);
        return arr[0] ? 1 : -1;
    }
    if (fs->field_mask) {
        uint64_t fv = v & (uint64_t)fs->field_mask;
        v &= ~(uint64_t)fs->field_mask;
        const struct lbd_flag_set *names = fs->field_from ? &lbd_flag_sets[fs->field_from] : fs;
        if (fv || fs->field_zero) {
            const char *nm = NULL;
            for (uint16_t i = 0; i < names->nfield; i++)
                if (names->field[i].mask == fv)
                    nm = names->field[i].name;
            arr[n] = nm ? nm : fmt(x, "0x%" PRIx64, fv);
            if (!arr[n++])
                return -1;
        }
    }
    uint64_t matched = 0;                   /* bit i: match[i] matched (nbits <= 64) */
    for (uint16_t i = 0; i < fs->nbits && i < 64; i++)
        if ((v & fs->match[i].mask) == fs->match[i].mask) {
            matched |= 1ull << i;
            v &= ~fs->match[i].mask;
        }
    for (uint16_t j = 0; j < fs->nbits; j++)
        for (uint16_t i = 0; i < fs->nbits && i < 64; i++)
            if ((matched >> i & 1) && fs->match[i].mask == fs->bits[j].mask && !strcmp(fs->match[i].name, fs->bits[j].name)) {
                arr[n++] = fs->bits[j].name;
                break;
            }
    if (v) {
        arr[n] = fmt(x, "0x%" PRIx64, v);
        if (!arr[n++])
            return -1;
    }
    if (!n)
        arr[n++] = fs->zero;
    *out = arr;
    return n;
}

/* The first socket address argument with a payload: its bytes, or NULL. */
static const uint8_t *ev__sockaddr(const struct ev *e, uint32_t *len)
{
    const struct lbd_sc_spec *sp = ev__specs(e);
    for (int k = 0; sp && k < sp->nargs; k++) {
        uint8_t kind = sp->args[k].kind;
        if (kind != LBD_K_SOCKADDR && kind != LBD_K_OUT_SOCKADDR)
            continue;
        const uint8_t *p = ev__payload(e, k, len);
        if (p && *len >= 2)
            return p;
    }
    return NULL;
}

/* ---- fields ---------------------------------------------------------------------------------- */

enum argform { AF_NONE, AF_KEY, AF_VALUE };

static const char *fmt(struct lbd_extractor *x, const char *f, ...) __attribute__((format(printf, 2, 3)));
static const char *fmt(struct lbd_extractor *x, const char *f, ...)
{
    char buf[128];
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(buf, sizeof(buf), f, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    if ((size_t)n >= sizeof(buf))
        n = sizeof(buf) - 1;
    char *out = arena__alloc(&x->arena, (size_t)n + 1);
    if (out)
        memcpy(out, buf, (size_t)n + 1);
    return out;
}

/* Decimal text of v into buf (at least 21 bytes), returns its length: no snprintf on the hot path. */
static size_t dec_u64(char *buf, uint64_t v)
{
    size_t n = dec__len(v);
    dec__write(buf, v, n);
    buf[n] = '\0';
    return n;
}

static size_t dec_i64(char *buf, int64_t v)
{
    if (v >= 0)
        return dec_u64(buf, (uint64_t)v);
    buf[0] = '-';
    return 1 + dec_u64(buf + 1, (uint64_t)0 - (uint64_t)v);
}

/* The decimal text of v, in the results arena. */
static inline const char *dec(struct lbd_extractor *x, int64_t v)
{
    char *out = arena__alloc(&x->arena, 24);
    if (out)
        dec_i64(out, v);
    return out;
}

/* A string of the batch's strtab (NUL-terminated there: lbd_view_check checked it). */
static inline const char *strtab__at(const struct lbd_view *v, uint32_t off)
{
    return v->strtab + off;
}

static __attribute__((noinline)) const char *text__copy(struct lbd_extractor *x, const uint8_t *p, size_t n)
{
    struct sb s;
    struct vw w = {&s, 0, 0, 0, 0};
    sb__begin(&s, &x->arena);
    vw__text(&w, p, n);
    return sb__end(&s);
}

static inline const char *ev__comm(struct lbd_extractor *x, const struct ev *e)
{
    const uint8_t *c = (const uint8_t *)e->h->comm;
    _Static_assert(LBD_COMM_LEN == 16, "comm: two words");
    uint64_t w[2];
    memcpy(w, c, 16);
    /* the first byte that is not plain text: the NUL that ends the name, or something to escape */
    uint64_t m0 = plain__mask8(w[0], 0), m1 = plain__mask8(w[1], 0);
    size_t n = m0 ? (size_t)(__builtin_ctzll(m0) >> 3) : m1 ? 8 + (size_t)(__builtin_ctzll(m1) >> 3) : 16;
    if (n < 16 && c[n] != 0) {
        n = strnlen((const char *)c, LBD_COMM_LEN);
        return text__copy(x, c, n);
    }
    char *out = arena__alloc(&x->arena, LBD_COMM_LEN + 1);    /* its text is its bytes */
    if (out) {
        memcpy(out, c, LBD_COMM_LEN);
        out[n] = '\0';
    }
    return out;
}

/* "id(name)", "id" or "name" of the task's user or group. */
static const char *idname(struct lbd_extractor *x, const struct ev *e, uint32_t id, uint32_t off,
                          uint32_t len, enum argform form)
{
    /* without enrichment, the enrichment's convention for an unknown name: the number */
    const char *name = e->en ? (len ? strtab__at(e->view, off) : "") : dec(x, id);
    if (!name)
        return NULL;
    switch (form) {
    case AF_KEY:
        return dec(x, id);
    case AF_VALUE:
        return name;
    default: {
        struct sb s;
        char idtxt[24];
        size_t k = dec_u64(idtxt, id);
        sb__begin(&s, &x->arena);
        sb__put(&s, idtxt, k);
        sb__putc(&s, '(');
        sb__puts(&s, name);
        sb__putc(&s, ')');
        return sb__end(&s);
    }
    }
}

/* linux.time: the event's wall clock in the local time zone, as Falco prints its own prefix
 * (%evt.time: libsinsp's ts_to_string, whose localtime() re-reads TZ and /etc/localtime on every
 * call).  localtime_r alone reads them once per process (glibc), so a zone set or changed after
 * the first event (TZ exported later, timedatectl set-timezone) printed linux.time an hour off
 * Falco's prefix.  Here the zone is read again (tzset) for each new second of event time and at
 * least once per second of real time; the text of a second is cached. */
static const char *ev__time(struct lbd_extractor *x, uint64_t ns)
{
    int64_t sec = (int64_t)(ns / 1000000000ull);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    if (sec != x->time_sec || !x->time_prefix[0] || (int64_t)now.tv_sec != x->tz_read) {
        time_t t = (time_t)sec;
        struct tm tm;
        tzset();
        x->tz_read = (int64_t)now.tv_sec;
        if (!localtime_r(&t, &tm))
            return NULL;
        x->time_prefix_len = strftime(x->time_prefix, sizeof(x->time_prefix), "%Y-%m-%d %H:%M:%S", &tm);
        x->time_sec = sec;
    }
    /* "%s.%09u" of the prefix and the nanoseconds, without printf */
    size_t k = x->time_prefix_len;
    char *out = arena__alloc(&x->arena, k + 11);
    if (!out)
        return NULL;
    memcpy(out, x->time_prefix, k);
    out[k] = '.';
    uint32_t frac = (uint32_t)(ns % 1000000000ull);
    for (int d = 9; d >= 1; d--) {
        out[k + (size_t)d] = (char)('0' + frac % 10);
        frac /= 10;
    }
    out[k + 10] = '\0';
    return out;
}

static inline int set_str(struct lbd_extractor *x, ss_plugin_extract_field *f, const char *v)
{
    if (!v)
        return -1;
    const char **arr = arena__alloc(&x->arena, sizeof(*arr));
    if (!arr)
        return -1;
    arr[0] = v;
    f->res.str = arr;
    f->res_len = 1;
    return 0;
}

static inline int set_u64(struct lbd_extractor *x, ss_plugin_extract_field *f, uint64_t v)
{
    uint64_t *p = arena__alloc(&x->arena, sizeof(*p));
    if (!p)
        return -1;
    *p = v;
    f->res.u64 = p;
    f->res_len = 1;
    return 0;
}

static inline int set_bool(struct lbd_extractor *x, ss_plugin_extract_field *f, int v)
{
    ss_plugin_bool *p = arena__alloc(&x->arena, sizeof(*p));
    if (!p)
        return -1;
    *p = v ? 1 : 0;
    f->res.boolean = p;
    f->res_len = 1;
    return 0;
}

static int set_ip(struct lbd_extractor *x, ss_plugin_extract_field *f, const uint8_t *a, uint32_t n)
{
    ss_plugin_byte_buffer *b = arena__alloc(&x->arena, sizeof(*b) + 16);
    if (!b)
        return -1;
    uint8_t *copy = (uint8_t *)(b + 1);
    memcpy(copy, a, n);
    b->len = n;
    b->ptr = copy;
    f->res.buf = b;
    f->res_len = 1;
    return 0;
}

static int fds__list(struct lbd_extractor *x, const struct ev *e, ss_plugin_extract_field *f, enum argform form)
{
    if (!e->en || !e->en->fds_n)
        return 0;
    const struct lbd_view *v = e->view;
    uint32_t n = e->en->fds_n;
    const char **arr = arena__alloc(&x->arena, n * sizeof(*arr));
    if (!arr)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        const struct lbd_fd_row *r = &v->fdtab[e->en->fds_off + i];
        const char *path = strtab__at(v, r->path_off);
        if (form == AF_KEY)
            arr[i] = dec(x, r->fd);
        else if (form == AF_VALUE)
            arr[i] = path;
        else {
            struct sb s;
            char num[24];
            size_t k = dec_i64(num, r->fd);
            sb__begin(&s, &x->arena);
            sb__put(&s, num, k);
            sb__putc(&s, '(');
            sb__put(&s, path, r->path_len);
            sb__putc(&s, ')');
            arr[i] = sb__end(&s);
        }
        if (!arr[i])
            return -1;
    }
    f->res.str = arr;
    f->res_len = n;
    return 0;
}

/* A string of the enrichment (empty: no value), or NULL without enrichment. */
static const char *en__str(const struct ev *e, uint32_t off, uint32_t len)
{
    return e->en && len ? strtab__at(e->view, off) : NULL;
}

/* strcmp(z, w) == 0 for a short constant w of n bytes, inline. */
static inline int arg__is(const char *z, const char *w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (z[i] != w[i])
            return 0;
    return z[n] == '\0';
}

/* The fields that render text or walk tables (and the error messages): out of line, so that
 * field__extract, inlined into lbd_extract, stays small for the one-value fields most rules read. */
static __attribute__((noinline)) ss_plugin_rc field__extract_rare(struct lbd_extractor *x, const struct ev *e,
                                                                  ss_plugin_extract_field *f, char *err,
                                                                  size_t errlen)
{
    const struct lbd_hdr *h = e->h;
    const struct lbd_enrich_row *en = e->en;
    enum argform form = AF_NONE;
    char buf[32];
    int rc = 0;
    switch (f->field_id) {
    case LBD_FLD_TYPE:
    case LBD_FLD_USER:
    case LBD_FLD_GROUP:
    case LBD_FLD_FDS:
        if (f->arg_key && arg__is(f->arg_key, "key", 3))
            form = AF_KEY;
        else if (f->arg_key && arg__is(f->arg_key, "value", 5))
            form = AF_VALUE;
        else if (f->arg_key || f->arg_present) {
            snprintf(err, errlen, "%s[%s]: the argument must be key or value", lbd_field_names[f->field_id],
                     f->arg_key ? f->arg_key : "");
            return SS_PLUGIN_FAILURE;
        }
        break;
    default:
        break;
    }
    switch (f->field_id) {
    case LBD_FLD_TYPE: {
        const char *name = syscall__name(h->nr, buf, sizeof(buf));
        if (form == AF_KEY) {
            rc = set_str(x, f, dec(x, h->nr));
        } else if (form == AF_VALUE) {
            rc = set_str(x, f, name == buf ? fmt(x, "%s", name) : name);
        } else {
            struct sb s;
            char num[24];
            size_t k = dec_u64(num, h->nr);
            sb__begin(&s, &x->arena);
            sb__put(&s, num, k);
            sb__putc(&s, '(');
            sb__puts(&s, name);
            sb__putc(&s, ')');
            rc = set_str(x, f, sb__end(&s));
        }
        break;
    }
    case LBD_FLD_USER:
        rc = set_str(x, f, idname(x, e, h->uid, en ? en->user_off : 0, en ? en->user_len : 0, form));
        break;
    case LBD_FLD_GROUP:
        rc = set_str(x, f, idname(x, e, h->gid, en ? en->group_off : 0, en ? en->group_len : 0, form));
        break;
    case LBD_FLD_FDS:
        rc = fds__list(x, e, f, form);
        break;
    case LBD_FLD_ARGS:
        rc = set_str(x, f, render__args(x, e));
        break;
    case LBD_FLD_TIME:
        rc = set_str(x, f, ev__time(x, e->evt->ts));
        break;
    case LBD_FLD_CMDLINE: {
        const char *c = en ? en__str(e, en->cmdline_off, en->cmdline_len) : ev__comm(x, e);
        if (c)
            rc = set_str(x, f, c);
        break;
    }
    case LBD_FLD_SYSCALL: {
        const char *name = syscall__name(h->nr, buf, sizeof(buf));
        rc = set_str(x, f, name == buf ? fmt(x, "%s", name) : name);
        break;
    }
    case LBD_FLD_ARG: {
        if (!f->arg_key || !f->arg_key[0]) {
            snprintf(err, errlen, "linux.arg needs an argument name, e.g. linux.arg[pathname]");
            return SS_PLUGIN_FAILURE;
        }
        int found;
        const char *v = render__arg(x, e, f->arg_key, &found);
        if (found)
            rc = set_str(x, f, v);
        break;
    }
    case LBD_FLD_FD: {
        char *end = NULL;
        long fd = f->arg_key ? strtol(f->arg_key, &end, 10) : -1;
        if (!f->arg_key || !f->arg_key[0]) {
            snprintf(err, errlen, "linux.fd needs an fd number, e.g. linux.fd[0]");
            return SS_PLUGIN_FAILURE;
        }
        if (*end || fd < 0 || fd > INT32_MAX)
            break;                          /* no such fd, like linux.arg[nope] */
        const struct lbd_view *v = e->view;
        for (uint32_t i = 0; en && i < en->fds_n; i++) {
            const struct lbd_fd_row *r = &v->fdtab[en->fds_off + i];
            if (r->fd == (int32_t)fd) {
                rc = set_str(x, f, strtab__at(v, r->path_off));
                break;
            }
        }
        break;
    }
    case LBD_FLD_FLAGS: {
        if (!f->arg_key || !f->arg_key[0]) {
            snprintf(err, errlen, "linux.flags needs an argument name, e.g. linux.flags[flags]");
            return SS_PLUGIN_FAILURE;
        }
        const char **names = NULL;
        int n = flags__names(x, e, f->arg_key, &names);
        if (n < 0)
            rc = -1;
        else if (n > 0) {
            f->res.str = names;
            f->res_len = (uint64_t)n;
        }
        break;
    }
    case LBD_FLD_SOCKADDR_FAMILY:
    case LBD_FLD_SOCKADDR_IP:
    case LBD_FLD_SOCKADDR_PORT:
    case LBD_FLD_SOCKADDR_PATH: {
        uint32_t len;
        const uint8_t *sa = ev__sockaddr(e, &len);
        if (!sa)
            break;
        uint16_t fam = (uint16_t)(sa[0] | sa[1] << 8);
        int in4 = fam == 2 && len >= 8, in6 = fam == 10 && len >= 24;
        if (f->field_id == LBD_FLD_SOCKADDR_FAMILY) {
            const char *name = family__name(fam, buf, sizeof(buf));
            rc = set_str(x, f, name == buf ? fmt(x, "%s", name) : name);
        } else if (f->field_id == LBD_FLD_SOCKADDR_IP) {
            if (in4)
                rc = set_ip(x, f, sa + 4, 4);
            else if (in6)
                rc = set_ip(x, f, sa + 8, 16);
        } else if (f->field_id == LBD_FLD_SOCKADDR_PORT) {
            if (in4 || in6)
                rc = set_u64(x, f, (uint64_t)sa[2] << 8 | sa[3]);
        } else if (fam == 1) {
            struct sb s;
            struct vw w = {&s, 0, 0, 0, 0};
            sb__begin(&s, &x->arena);
            vw__sockaddr(&w, sa, len);
            rc = set_str(x, f, sb__end(&s));
        }
        break;
    }
    default:
        snprintf(err, errlen, "field %s is not implemented", lbd_field_names[f->field_id]);
        return SS_PLUGIN_FAILURE;
    }
    if (rc != 0) {
        f->res_len = 0;
        snprintf(err, errlen, "%s: out of memory", lbd_field_names[f->field_id]);
        return SS_PLUGIN_FAILURE;
    }
    return SS_PLUGIN_SUCCESS;
}

/* One field: the one-value fields here, the rest in field__extract_rare. */
static inline ss_plugin_rc field__extract(struct lbd_extractor *x, const struct ev *e, ss_plugin_extract_field *f,
                                          char *err, size_t errlen)
{
    const struct lbd_hdr *h = e->h;
    const struct lbd_enrich_row *en = e->en;
    int rc = 0;
    f->res_len = 0;
    if (__builtin_expect(f->field_id >= LBD_N_FIELDS, 0)) {
        snprintf(err, errlen, "unknown field id %u (the plugin has %d fields)", f->field_id, LBD_N_FIELDS);
        return SS_PLUGIN_FAILURE;
    }
    switch (f->field_id) {
    case LBD_FLD_USER:                          /* [value] with enrichment: the strtab's string */
    case LBD_FLD_GROUP:
        if (en && f->arg_key && arg__is(f->arg_key, "value", 5)) {
            uint32_t off = f->field_id == LBD_FLD_USER ? en->user_off : en->group_off;
            uint32_t len = f->field_id == LBD_FLD_USER ? en->user_len : en->group_len;
            rc = set_str(x, f, len ? strtab__at(e->view, off) : "");
            break;
        }
        return field__extract_rare(x, e, f, err, errlen);
    case LBD_FLD_SYSCALL: {
        const struct lbd_sc_spec *sp = spec__of(h->nr);
        if (!sp)
            return field__extract_rare(x, e, f, err, errlen);
        rc = set_str(x, f, sp->name);
        break;
    }
    case LBD_FLD_DIR:
        rc = set_str(x, f, h->dir == LBD_DIR_ENTER ? ">" : "<");
        break;
    case LBD_FLD_COMM:
        rc = set_str(x, f, ev__comm(x, e));
        break;
    case LBD_FLD_PID:
        rc = set_str(x, f, dec(x, h->pid));
        break;
    case LBD_FLD_TID:
        rc = set_str(x, f, dec(x, h->tid));
        break;
    case LBD_FLD_PPID:
        rc = set_str(x, f, dec(x, en ? en->ppid : h->ppid));
        break;
    case LBD_FLD_FULLPATH:
        if (en && en->fullpath_len)
            rc = set_str(x, f, en__str(e, en->fullpath_off, en->fullpath_len));
        break;
    case LBD_FLD_SYSCALL_ID:
        rc = set_u64(x, f, h->nr);
        break;
    case LBD_FLD_RES:
        if (h->dir == LBD_DIR_EXIT && h->res >= 0)
            rc = set_u64(x, f, (uint64_t)h->res);
        break;
    case LBD_FLD_FAILED:
        if (h->dir == LBD_DIR_EXIT)
            rc = set_bool(x, f, h->res < 0);
        break;
    case LBD_FLD_ERRNO:
        if (h->dir == LBD_DIR_EXIT)
            rc = set_u64(x, f, h->res < 0 ? (uint64_t)(-h->res) : 0);
        break;
    case LBD_FLD_LATENCY:
        rc = set_u64(x, f, h->latency);
        break;
    case LBD_FLD_PID_NUM:
        rc = set_u64(x, f, h->pid);
        break;
    case LBD_FLD_TID_NUM:
        rc = set_u64(x, f, h->tid);
        break;
    case LBD_FLD_PPID_NUM:
        rc = set_u64(x, f, en ? en->ppid : h->ppid);
        break;
    case LBD_FLD_USER_NUM:
        rc = set_u64(x, f, h->uid);
        break;
    case LBD_FLD_GROUP_NUM:
        rc = set_u64(x, f, h->gid);
        break;
    case LBD_FLD_CGROUP_ID:
        rc = set_u64(x, f, h->cgroup_id);
        break;
    case LBD_FLD_PIDNS:                         /* 0: not read (the bcc loader) */
        if (h->pidns)
            rc = set_u64(x, f, h->pidns);
        break;
    case LBD_FLD_MNTNS:
        if (h->mntns)
            rc = set_u64(x, f, h->mntns);
        break;
    case LBD_FLD_LOGINUID:                      /* 0 with no namespace read: the bcc loader */
        if (h->pidns || h->loginuid)
            rc = set_u64(x, f, h->loginuid);
        break;
    case LBD_FLD_PCOMM:
        if (en && en->pcomm_len)
            rc = set_str(x, f, en__str(e, en->pcomm_off, en->pcomm_len));
        break;
    default:
        return field__extract_rare(x, e, f, err, errlen);
    }
    if (__builtin_expect(rc != 0, 0)) {
        f->res_len = 0;
        snprintf(err, errlen, "%s: out of memory", lbd_field_names[f->field_id]);
        return SS_PLUGIN_FAILURE;
    }
    return SS_PLUGIN_SUCCESS;
}

static inline int str__ok(const struct lbd_view *v, uint32_t off, uint32_t len)
{
    uint64_t end = (uint64_t)off + len;
    return end < v->strtab_len && v->strtab[end] == '\0';
}

int lbd_view_check(const struct lbd_view *v, char *why, size_t len)
{
    static const char *const names[] = {"pcomm", "user", "group", "cmdline", "fullpath"};
    for (uint32_t i = 0; i < v->n; i++) {
        const struct lbd_enrich_row *r = &v->enrich[i];
        /* a row equal to the one before it was checked already (a process's events in a row
         * mostly share one: the engine copies its cached row) */
        if (i > 0 && memcmp(r, r - 1, sizeof(*r)) == 0)
            continue;
        const uint32_t pairs[5][2] = {{r->pcomm_off, r->pcomm_len}, {r->user_off, r->user_len},
                                      {r->group_off, r->group_len}, {r->cmdline_off, r->cmdline_len},
                                      {r->fullpath_off, r->fullpath_len}};
        for (int k = 0; k < 5; k++) {
            if (!str__ok(v, pairs[k][0], pairs[k][1])) {
                snprintf(why, len, "row %u: %s at %u+%u is outside strtab (%" PRIu64 " bytes) or lacks its NUL",
                         i, names[k], pairs[k][0], pairs[k][1], v->strtab_len);
                return -1;
            }
        }
        if ((uint64_t)r->fds_off + r->fds_n > v->fdtab_len) {
            snprintf(why, len, "row %u: fds %u+%u outside fdtab (%" PRIu64 " rows)", i, r->fds_off, r->fds_n,
                     v->fdtab_len);
            return -1;
        }
        /* Only the fd rows this batch's events use: fdtab keeps the rows of earlier batches of its
         * epoch too (up to 64K).  Consecutive events of one process mostly share their rows. */
        if (i > 0 && r->fds_off == r[-1].fds_off && r->fds_n == r[-1].fds_n)
            continue;
        for (uint64_t j = r->fds_off; j < (uint64_t)r->fds_off + r->fds_n; j++) {
            if (!str__ok(v, v->fdtab[j].path_off, v->fdtab[j].path_len)) {
                snprintf(why, len, "fdtab row %" PRIu64 ": the path is outside strtab or lacks its NUL", j);
                return -1;
            }
        }
    }
    return 0;
}

int lbd_view_set(struct lbd_extractor *x, const uint64_t *ptrs, uint32_t n, const void *enrich,
                 const char *strtab, uint64_t strtab_len, const void *fdtab, uint64_t fdtab_len,
                 char *why, size_t len)
{
    struct lbd_view *v = &x->view;
    memset(v, 0, sizeof(*v));
    if (!n || !ptrs)
        return 0;
    v->ptrs = ptrs;
    v->n = n;
    if (!enrich || !strtab)
        return 0;
    v->enrich = enrich;
    v->strtab = strtab;
    v->strtab_len = strtab_len;
    v->fdtab = fdtab;
    v->fdtab_len = fdtab ? fdtab_len : 0;
    if (lbd_view_check(v, why, len) != 0) {
        v->enrich = NULL;
        return -1;
    }
    return 0;
}

void lbd_extractor_init(struct lbd_extractor *x, uint64_t str_max)
{
    memset(x, 0, sizeof(*x));
    x->str_max = str_max;
    x->time_sec = -1;
}

void lbd_extractor_free(struct lbd_extractor *x)
{
    arena__free(&x->arena);
    memset(&x->view, 0, sizeof(x->view));
}

ss_plugin_rc lbd_extract(struct lbd_extractor *x, const ss_plugin_event *evt, uint32_t n,
                         ss_plugin_extract_field *fields, char *err, size_t errlen)
{
    struct ev e;
    arena__reset(&x->arena);       /* the previous call's results are released here */
    if (!evt) {
        snprintf(err, errlen, "extract_fields: no event");
        return SS_PLUGIN_FAILURE;
    }
    e.view = &x->view;
    e.en = NULL;
    int64_t i = view__index(&x->view, evt);
    const uint8_t *rec = (const uint8_t *)evt + LBD_FALCO_PREFIX;
    if (i >= 0 && !((uintptr_t)rec & 7)) {
        /* one of the current batch: the decoder validated it and Falco wrote only ts, tid and the
         * plugin id of its header; the record sits 8-aligned in the arena */
        e.evt = evt;
        e.rec = rec;
        e.h = (const struct lbd_hdr *)rec;
        if (x->view.enrich)
            e.en = &x->view.enrich[i];
    } else if (event__check(evt, &e, err, errlen) != 0) {
        return SS_PLUGIN_FAILURE;
    } else if (i >= 0 && x->view.enrich) {
        e.en = &x->view.enrich[i];
    }
    for (uint32_t k = 0; k < n; k++) {
        if (field__extract(x, &e, &fields[k], err, errlen) != SS_PLUGIN_SUCCESS)
            return SS_PLUGIN_FAILURE;
    }
    return SS_PLUGIN_SUCCESS;
}
