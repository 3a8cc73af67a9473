/* SPDX-License-Identifier: Apache-2.0
 *
 * json.c: see json.h.
 */
#define _GNU_SOURCE
#include "json.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct parser {
    const char *s;
    size_t i;
    char *err;
    size_t errlen;
    int depth;
};

static void perr(struct parser *p, const char *f, ...) __attribute__((format(printf, 2, 3)));
static void perr(struct parser *p, const char *f, ...)
{
    if (p->err[0])
        return;
    char msg[256];
    va_list ap;
    va_start(ap, f);
    vsnprintf(msg, sizeof(msg), f, ap);
    va_end(ap);
    snprintf(p->err, p->errlen, "%s at offset %zu", msg, p->i);
}

static void ws(struct parser *p)
{
    while (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r')
        p->i++;
}

static struct jval *jnew(enum jtype t)
{
    struct jval *v = calloc(1, sizeof(*v));
    if (v)
        v->type = t;
    return v;
}

static int push(struct jval *v, struct jval *item, char *key)
{
    struct jval **items = realloc(v->items, (v->n + 1) * sizeof(*items));
    if (!items)
        return -1;
    v->items = items;
    if (v->type == J_OBJECT) {
        char **keys = realloc(v->keys, (v->n + 1) * sizeof(*keys));
        if (!keys)
            return -1;
        v->keys = keys;
        v->keys[v->n] = key;
    }
    v->items[v->n++] = item;
    return 0;
}

static void put_utf8(char *out, size_t *o, uint32_t cp)
{
    if (cp < 0x80) {
        out[(*o)++] = (char)cp;
    } else if (cp < 0x800) {
        out[(*o)++] = (char)(0xC0 | cp >> 6);
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out[(*o)++] = (char)(0xE0 | cp >> 12);
        out[(*o)++] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*o)++] = (char)(0xF0 | cp >> 18);
        out[(*o)++] = (char)(0x80 | (cp >> 12 & 0x3F));
        out[(*o)++] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    }
}

static int hex4(struct parser *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p->s[p->i++];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else {
            perr(p, "bad \\u escape");
            return -1;
        }
    }
    *out = v;
    return 0;
}

static char *pstring(struct parser *p)
{
    p->i++;                                         /* opening quote */
    size_t start = p->i, cap = 0;
    while (p->s[p->i] && p->s[p->i] != '"') {
        if (p->s[p->i] == '\\' && p->s[p->i + 1])
            p->i++;
        p->i++;
        cap++;
    }
    if (p->s[p->i] != '"') {
        perr(p, "unterminated string");
        return NULL;
    }
    p->i = start;
    char *out = malloc(cap * 4 + 1);
    size_t o = 0;
    if (!out)
        return NULL;
    while (p->s[p->i] != '"') {
        unsigned char c = (unsigned char)p->s[p->i++];
        if (c < 0x20) {
            perr(p, "control character in string");
            free(out);
            return NULL;
        }
        if (c != '\\') {
            out[o++] = (char)c;
            continue;
        }
        char e = p->s[p->i++];
        switch (e) {
        case '"': out[o++] = '"'; break;
        case '\\': out[o++] = '\\'; break;
        case '/': out[o++] = '/'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (hex4(p, &cp) != 0) {
                free(out);
                return NULL;
            }
            if (cp >= 0xD800 && cp < 0xDC00 && p->s[p->i] == '\\' && p->s[p->i + 1] == 'u') {
                p->i += 2;
                if (hex4(p, &lo) != 0) {
                    free(out);
                    return NULL;
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            put_utf8(out, &o, cp);
            break;
        }
        default:
            perr(p, "bad escape \\%c", e);
            free(out);
            return NULL;
        }
    }
    p->i++;
    out[o] = '\0';
    return out;
}

static struct jval *pvalue(struct parser *p);

static struct jval *pcontainer(struct parser *p, enum jtype t)
{
    char close = t == J_ARRAY ? ']' : '}';
    struct jval *v = jnew(t);
    if (!v)
        return NULL;
    if (++p->depth > 64) {
        perr(p, "nested too deeply");
        json_free(v);
        return NULL;
    }
    p->i++;
    ws(p);
    if (p->s[p->i] == close) {
        p->i++;
        p->depth--;
        return v;
    }
    for (;;) {
        char *key = NULL;
        ws(p);
        if (t == J_OBJECT) {
            if (p->s[p->i] != '"') {
                perr(p, "expected a string key");
                goto fail;
            }
            key = pstring(p);
            if (!key)
                goto fail;
            ws(p);
            if (p->s[p->i] != ':') {
                free(key);
                perr(p, "expected ':'");
                goto fail;
            }
            p->i++;
        }
        struct jval *item = pvalue(p);
        if (!item || push(v, item, key) != 0) {
            free(key);
            json_free(item);
            goto fail;
        }
        ws(p);
        if (p->s[p->i] == ',') {
            p->i++;
            continue;
        }
        if (p->s[p->i] == close) {
            p->i++;
            p->depth--;
            return v;
        }
        perr(p, "expected ',' or '%c'", close);
        goto fail;
    }
fail:
    json_free(v);
    return NULL;
}

static struct jval *pvalue(struct parser *p)
{
    ws(p);
    char c = p->s[p->i];
    struct jval *v;
    if (c == '{')
        return pcontainer(p, J_OBJECT);
    if (c == '[')
        return pcontainer(p, J_ARRAY);
    if (c == '"') {
        char *s = pstring(p);
        if (!s)
            return NULL;
        v = jnew(J_STRING);
        if (!v) {
            free(s);
            return NULL;
        }
        v->str = s;
        return v;
    }
    if (!strncmp(p->s + p->i, "true", 4) || !strncmp(p->s + p->i, "false", 5)) {
        v = jnew(J_BOOL);
        if (!v)
            return NULL;
        v->boolean = c == 't';
        p->i += v->boolean ? 4 : 5;
        return v;
    }
    if (!strncmp(p->s + p->i, "null", 4)) {
        p->i += 4;
        return jnew(J_NULL);
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        const char *start = p->s + p->i;
        char *end;
        double d = strtod(start, &end);
        if (end == start) {
            perr(p, "bad number");
            return NULL;
        }
        v = jnew(J_NUMBER);
        if (!v)
            return NULL;
        v->number = d;
        v->is_int = !memchr(start, '.', (size_t)(end - start)) && !memchr(start, 'e', (size_t)(end - start)) &&
                    !memchr(start, 'E', (size_t)(end - start));
        p->i += (size_t)(end - start);
        return v;
    }
    perr(p, "unexpected %s", c ? "character" : "end of text");
    return NULL;
}

struct jval *json_parse(const char *text, char *err, size_t errlen)
{
    struct parser p = {text, 0, err, errlen, 0};
    err[0] = '\0';
    struct jval *v = pvalue(&p);
    if (!v) {
        if (!err[0])
            snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ws(&p);
    if (p.s[p.i]) {
        perr(&p, "trailing characters");
        json_free(v);
        return NULL;
    }
    return v;
}

void json_free(struct jval *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->n; i++) {
        json_free(v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->str);
    free(v);
}

const struct jval *json_get(const struct jval *obj, const char *key)
{
    if (!obj || obj->type != J_OBJECT)
        return NULL;
    for (size_t i = 0; i < obj->n; i++)
        if (!strcmp(obj->keys[i], key))
            return obj->items[i];
    return NULL;
}

void json_write_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c < 0x20 || *c == 0x7F)
            fprintf(f, "\\u%04x", *c);
        else
            fputc(*c, f);
    }
    fputc('"', f);
}

/* ---- JSON Schema: the keywords lbd's schemas use ----------------------------------------- */

static const char *type_name(const struct jval *v)
{
    switch (v->type) {
    case J_NULL: return "null";
    case J_BOOL: return "boolean";
    case J_NUMBER: return v->is_int || v->number == floor(v->number) ? "integer" : "number";
    case J_STRING: return "string";
    case J_ARRAY: return "array";
    default: return "object";
    }
}

static int type_ok(const char *want, const struct jval *v)
{
    const char *have = type_name(v);
    if (!strcmp(want, have))
        return 1;
    return !strcmp(want, "number") && !strcmp(have, "integer");
}

static size_t utf8_len(const char *s)
{
    size_t n = 0;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        n += (*c & 0xC0) != 0x80;
    return n;
}

static int jequal(const struct jval *a, const struct jval *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case J_NULL: return 1;
    case J_BOOL: return a->boolean == b->boolean;
    case J_NUMBER: return a->number == b->number;
    case J_STRING: return !strcmp(a->str, b->str);
    default:
        if (a->n != b->n)
            return 0;
        for (size_t i = 0; i < a->n; i++)
            if (!jequal(a->items[i], b->items[i]) || (a->keys && strcmp(a->keys[i], b->keys[i])))
                return 0;
        return 1;
    }
}

static int sv(const struct jval *s, const struct jval *v, const char *path, char *err, size_t errlen);

static int fail(char *err, size_t errlen, const char *path, const char *f, ...) __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, const char *path, const char *f, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, f);
    vsnprintf(msg, sizeof(msg), f, ap);
    va_end(ap);
    snprintf(err, errlen, "%s: %s", path[0] ? path : "(top)", msg);
    return -1;
}

static int sv(const struct jval *s, const struct jval *v, const char *path, char *err, size_t errlen)
{
    if (s->type == J_BOOL)
        return s->boolean ? 0 : fail(err, errlen, path, "not allowed");
    if (s->type != J_OBJECT)
        return fail(err, errlen, path, "schema is not an object");
    for (size_t i = 0; i < s->n; i++) {
        const char *kw = s->keys[i];
        const struct jval *a = s->items[i];
        char sub[512];
        if (!strcmp(kw, "$schema") || !strcmp(kw, "title") || !strcmp(kw, "description") ||
            !strcmp(kw, "default") || !strcmp(kw, "$comment") || !strcmp(kw, "examples")) {
            continue;
        } else if (!strcmp(kw, "type")) {
            int ok = 0;
            if (a->type == J_STRING)
                ok = type_ok(a->str, v);
            for (size_t k = 0; a->type == J_ARRAY && k < a->n; k++)
                ok |= a->items[k]->type == J_STRING && type_ok(a->items[k]->str, v);
            if (!ok)
                return fail(err, errlen, path, "%s where the schema wants another type", type_name(v));
        } else if (!strcmp(kw, "enum")) {
            int ok = 0;
            for (size_t k = 0; a->type == J_ARRAY && k < a->n; k++)
                ok |= jequal(a->items[k], v);
            if (!ok)
                return fail(err, errlen, path, "not one of the enum values");
        } else if (!strcmp(kw, "minimum") || !strcmp(kw, "maximum")) {
            if (v->type == J_NUMBER && (kw[1] == 'i' ? v->number < a->number : v->number > a->number))
                return fail(err, errlen, path, "%g is beyond the %s %g", v->number, kw, a->number);
        } else if (!strcmp(kw, "maxLength") || !strcmp(kw, "minLength")) {
            if (v->type == J_STRING) {
                size_t n = utf8_len(v->str);
                if (kw[1] == 'a' ? n > (size_t)a->number : n < (size_t)a->number)
                    return fail(err, errlen, path, "length %zu breaks %s %g", n, kw, a->number);
            }
        } else if (!strcmp(kw, "maxItems") || !strcmp(kw, "minItems")) {
            if (v->type == J_ARRAY && (kw[1] == 'a' ? v->n > (size_t)a->number : v->n < (size_t)a->number))
                return fail(err, errlen, path, "%zu items break %s %g", v->n, kw, a->number);
        } else if (!strcmp(kw, "items")) {
            for (size_t k = 0; v->type == J_ARRAY && k < v->n; k++) {
                snprintf(sub, sizeof(sub), "%s[%zu]", path, k);
                if (sv(a, v->items[k], sub, err, errlen))
                    return -1;
            }
        } else if (!strcmp(kw, "properties")) {
            for (size_t k = 0; v->type == J_OBJECT && k < v->n; k++) {
                const struct jval *ps = json_get(a, v->keys[k]);
                snprintf(sub, sizeof(sub), "%s%s%s", path, path[0] ? "." : "", v->keys[k]);
                if (ps && sv(ps, v->items[k], sub, err, errlen))
                    return -1;
            }
        } else if (!strcmp(kw, "additionalProperties")) {
            const struct jval *props = json_get(s, "properties");
            for (size_t k = 0; v->type == J_OBJECT && k < v->n; k++) {
                if (json_get(props, v->keys[k]))
                    continue;
                snprintf(sub, sizeof(sub), "%s%s%s", path, path[0] ? "." : "", v->keys[k]);
                if (a->type == J_BOOL && !a->boolean)
                    return fail(err, errlen, sub, "unknown property");
                if (a->type == J_OBJECT && sv(a, v->items[k], sub, err, errlen))
                    return -1;
            }
        } else if (!strcmp(kw, "required")) {
            for (size_t k = 0; v->type == J_OBJECT && a->type == J_ARRAY && k < a->n; k++)
                if (!json_get(v, a->items[k]->str))
                    return fail(err, errlen, path, "missing required property %s", a->items[k]->str);
        } else if (!strcmp(kw, "anyOf") || !strcmp(kw, "oneOf")) {
            int matches = 0;
            char first[512] = "";
            for (size_t k = 0; a->type == J_ARRAY && k < a->n; k++) {
                char e2[512];
                if (sv(a->items[k], v, path, e2, sizeof(e2)) == 0)
                    matches++;
                else if (!first[0])
                    snprintf(first, sizeof(first), "%s", e2);
            }
            if (!matches || (kw[0] == 'o' && matches != 1))
                return fail(err, errlen, path, "matches %d of the %s alternatives (%s)", matches, kw, first);
        } else {
            return fail(err, errlen, path, "schema keyword %s is not supported by this validator", kw);
        }
    }
    return 0;
}

int json_schema_validate(const struct jval *schema, const struct jval *v, char *err, size_t errlen)
{
    err[0] = '\0';
    return sv(schema, v, "", err, errlen);
}
