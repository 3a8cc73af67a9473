/* SPDX-License-Identifier: Apache-2.0
 *
 * lbd_text.h: the text rules that lbd's output formats (lbd/_format.pyx) and the Falco plugin's
 * argument fields (plugin/lbd_extract.c) share; lbd/output/reference.py is their Python
 * definition (escape_text, secret_name).  Header-only, no allocation, no locale.
 *
 * Escaping of a text value (after it is cut at str_max_size characters, so that a cut never
 * splits an escape; every escape counts as one character):
 *   - a byte that is not part of well-formed UTF-8                    -> \xNN
 *   - a control character (U+0000..U+001F) or DEL (U+007F)            -> \xNN   (normal format)
 *   - a C1 control (U+0080..U+009F) or U+2028, U+2029 (line breaks to some readers, a CSI to
 *     some terminals): each of its UTF-8 bytes                      -> \xNN   (normal format)
 *   - a backslash                                                     -> \\
 *   - in the normal format, the characters that delimit its fields:
 *     , ( ) =                                                         -> \, \( \) \=
 * so the one backslash a value can contain starts an escape, and no value can end a field or
 * make a second `name=` of its own.  Square brackets are left alone: they delimit nothing a value
 * can reach (the time's bracket is at the start of the line, the fds list's `]` follows a `)`).
 *
 * Secret names: with capture_env, an environment string NAME=VALUE whose NAME matches one of the
 * |-separated glob patterns of secret_pattern (`*` any run, `?` one byte, ASCII case-insensitive)
 * is written NAME=***.
 */
#ifndef LBD_TEXT_H
#define LBD_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* Is the well-formed UTF-8 sequence s[:len] (len 2 or 3) one the normal format writes as \xNN
 * bytes: a C1 control (C2 80..C2 9F), U+2028 or U+2029 (E2 80 A8, E2 80 A9)? */
static inline int lbd_text_is_c1(const uint8_t *s, size_t len)
{
    if (len == 2)
        return s[0] == 0xC2 && s[1] < 0xA0;
    return len == 3 && s[0] == 0xE2 && s[1] == 0x80 && (s[2] == 0xA8 || s[2] == 0xA9);
}

/* A character the normal format writes with a backslash before it (besides the backslash). */
static inline int lbd_text_is_sep(uint8_t c)
{
    return c == ',' || c == '(' || c == ')' || c == '=';
}

static inline uint8_t lbd_text_upper(uint8_t c)
{
    return c >= 'a' && c <= 'z' ? (uint8_t)(c - 32) : c;
}

/* Does s[:n] match the glob p[:pn] (`*`, `?`, everything else literal, ASCII case-insensitive)?
 * Iterative with one backtrack point: linear in practice, O(pn * n) at worst. */
static inline int lbd_glob_match(const uint8_t *p, size_t pn, const uint8_t *s, size_t n)
{
    size_t pi = 0, si = 0, star = (size_t)-1, mark = 0;
    while (si < n) {
        if (pi < pn && p[pi] == '*') {
            star = pi++;
            mark = si;
        } else if (pi < pn && (p[pi] == '?' || lbd_text_upper(p[pi]) == lbd_text_upper(s[si]))) {
            pi++;
            si++;
        } else if (star != (size_t)-1) {
            pi = star + 1;
            si = ++mark;
        } else {
            return 0;
        }
    }
    while (pi < pn && p[pi] == '*')
        pi++;
    return pi == pn;
}

/* Does the environment string s[:n] (NAME=VALUE) have a secret NAME for the |-separated patterns
 * pats[:plen]?  The name is the bytes before the first '='; a string without '=' has no value to
 * hide and never matches.  Empty patterns (as in "a||b" or "") match nothing. */
static inline int lbd_secret_name(const uint8_t *pats, size_t plen, const uint8_t *s, size_t n, size_t *name_len)
{
    size_t k = 0, start = 0;
    while (k < n && s[k] != '=')
        k++;
    if (k == n)
        return 0;
    *name_len = k;
    for (size_t i = 0; i <= plen; i++) {
        if (i == plen || pats[i] == '|') {
            if (i > start && lbd_glob_match(pats + start, i - start, s, k))
                return 1;
            start = i + 1;
        }
    }
    return 0;
}

#endif /* LBD_TEXT_H */
