/* SPDX-License-Identifier: Apache-2.0
 *
 * json.h: a small JSON reader for the plugin host: a parse tree, lookups, a JSON string writer,
 * and a validator for the JSON Schema keywords lbd's init schema uses (anything else is reported
 * as unsupported rather than silently accepted).
 */
#ifndef PLUGIN_HOST_JSON_H
#define PLUGIN_HOST_JSON_H

#include <stddef.h>
#include <stdio.h>

enum jtype { J_NULL, J_BOOL, J_NUMBER, J_STRING, J_ARRAY, J_OBJECT };

struct jval {
    enum jtype type;
    int boolean;
    double number;
    int is_int;             /* the number was written without fraction or exponent */
    char *str;              /* J_STRING (UTF-8, NUL-terminated) */
    size_t n;               /* J_ARRAY / J_OBJECT: items */
    struct jval **items;    /* values */
    char **keys;            /* J_OBJECT: keys, parallel to items */
};

/* Parse text; NULL with a message in err (position included) on error. */
struct jval *json_parse(const char *text, char *err, size_t errlen);
void json_free(struct jval *v);
/* Member of an object, or NULL. */
const struct jval *json_get(const struct jval *obj, const char *key);
/* Write s as a JSON string literal. */
void json_write_str(FILE *f, const char *s);
/* Validate v against schema (a subset of draft-07); 0 if valid, else -1 with the first problem. */
int json_schema_validate(const struct jval *schema, const struct jval *v, char *err, size_t errlen);

#endif
