/* SPDX-License-Identifier: Apache-2.0
 *
 * lbd_plugin_api.h: the part of Falco's plugin ABI that liblbd.so and the test host use.
 *
 * Written for lbd from the facts in /work/shared/FALCO_PLUGIN_ABI.md (the authoritative text is
 * falcosecurity/libs userspace/plugin/plugin_api.h and plugin_types.h, plugin API 3.x).  Only the
 * types and members lbd touches are declared; struct layouts up to the last member used match the
 * ABI exactly (checked by the _Static_asserts at the end).
 */
#ifndef LBD_PLUGIN_API_H
#define LBD_PLUGIN_API_H

#include <stddef.h>
#include <stdint.h>

typedef void ss_plugin_t;          /* plugin state, from init() */
typedef void ss_instance_t;        /* open capture, from open() */
typedef void ss_plugin_owner_t;
typedef uint32_t ss_plugin_bool;   /* 4 bytes, as the libs encode booleans */

typedef enum ss_plugin_rc {
    SS_PLUGIN_SUCCESS = 0,
    SS_PLUGIN_FAILURE = 1,
    SS_PLUGIN_TIMEOUT = -1,
    SS_PLUGIN_EOF = 2,
    SS_PLUGIN_NOT_SUPPORTED = 3,
} ss_plugin_rc;

typedef enum ss_plugin_schema_type {
    SS_PLUGIN_SCHEMA_NONE = 0,
    SS_PLUGIN_SCHEMA_JSON = 1,
} ss_plugin_schema_type;

/* Field type codes (ss_plugin_field_type). */
enum {
    FTYPE_UINT64 = 8,
    FTYPE_STRING = 9,
    FTYPE_RELTIME = 20,
    FTYPE_ABSTIME = 21,
    FTYPE_BOOL = 25,
    FTYPE_IPADDR = 40,
    FTYPE_IPNET = 41,
};

/* Event header: packed, 26 bytes.  A plugin event (type 322) follows it with two u32 parameter
 * lengths (4 and the payload's), the u32 plugin id and the payload: 38 bytes before the payload. */
#pragma pack(push, 1)
typedef struct ss_plugin_event {
    uint64_t ts;        /* ns since the epoch; UINT64_MAX: the framework sets it */
    uint64_t tid;       /* the framework writes (uint64_t)-1 into plugin events */
    uint32_t len;       /* whole event, header included */
    uint16_t type;
    uint32_t nparams;
} ss_plugin_event;
#pragma pack(pop)

#define PPME_PLUGINEVENT_E 322
#define LBD_FALCO_PREFIX   38   /* header + u32 len0 + u32 len1 + u32 plugin_id */

typedef struct ss_plugin_event_input {
    const ss_plugin_event *evt;
    uint64_t evtnum;
    const char *evtsrc;
} ss_plugin_event_input;

typedef struct ss_plugin_byte_buffer {
    uint32_t len;
    const void *ptr;
} ss_plugin_byte_buffer;

typedef struct ss_plugin_extract_field {
    union {                      /* the plugin's result arrays, valid until the next extract_fields */
        const char **str;
        uint64_t *u64;
        uint32_t *u32;
        ss_plugin_bool *boolean;
        ss_plugin_byte_buffer *buf;
    } res;
    uint64_t res_len;            /* values in res; 0 = the field has no value */
    uint32_t field_id;           /* index in get_fields()'s array */
    const char *field;
    const char *arg_key;         /* "NAME" of field[NAME] for isKey fields, else NULL */
    uint64_t arg_index;
    ss_plugin_bool arg_present;
    uint32_t ftype;
    ss_plugin_bool flist;
} ss_plugin_extract_field;

typedef struct ss_plugin_field_extract_input {
    ss_plugin_owner_t *owner;
    const char *(*get_owner_last_error)(ss_plugin_owner_t *o);
    uint32_t num_fields;
    ss_plugin_extract_field *fields;
    /* table reader vtables follow (unused by lbd) */
} ss_plugin_field_extract_input;

typedef struct ss_plugin_init_input {
    const char *config;          /* init_config as a JSON string */
    ss_plugin_owner_t *owner;
    const char *(*get_owner_last_error)(ss_plugin_owner_t *o);
    const void *tables;          /* may be NULL; unused by lbd */
    /* log_fn follows from a later API minor; lbd does not use it (it needs only 3.0.0) */
} ss_plugin_init_input;

/* The functions liblbd.so exports, as Falco looks them up (dlsym "plugin_<name>"). */
typedef const char *(*plugin_get_str_fn)(void);
typedef const char *(*plugin_get_init_schema_fn)(ss_plugin_schema_type *schema_type);
typedef ss_plugin_t *(*plugin_init_fn)(const ss_plugin_init_input *in, ss_plugin_rc *rc);
typedef void (*plugin_destroy_fn)(ss_plugin_t *s);
typedef const char *(*plugin_get_last_error_fn)(ss_plugin_t *s);
typedef uint32_t (*plugin_get_id_fn)(void);
typedef ss_instance_t *(*plugin_open_fn)(ss_plugin_t *s, const char *params, ss_plugin_rc *rc);
typedef void (*plugin_close_fn)(ss_plugin_t *s, ss_instance_t *h);
typedef const char *(*plugin_list_open_params_fn)(ss_plugin_t *s, ss_plugin_rc *rc);
typedef const char *(*plugin_get_progress_fn)(ss_plugin_t *s, ss_instance_t *h, uint32_t *pct);
typedef const char *(*plugin_event_to_string_fn)(ss_plugin_t *s, const ss_plugin_event_input *evt);
typedef ss_plugin_rc (*plugin_next_batch_fn)(ss_plugin_t *s, ss_instance_t *h, uint32_t *nevts,
                                             ss_plugin_event ***evts);
typedef ss_plugin_rc (*plugin_extract_fields_fn)(ss_plugin_t *s, const ss_plugin_event_input *evt,
                                                 const ss_plugin_field_extract_input *in);

_Static_assert(sizeof(ss_plugin_event) == 26, "ss_plugin_event is packed, 26 bytes");
_Static_assert(offsetof(ss_plugin_extract_field, res_len) == 8, "res_len");
_Static_assert(offsetof(ss_plugin_extract_field, field_id) == 16, "field_id");
_Static_assert(offsetof(ss_plugin_extract_field, field) == 24, "field");
_Static_assert(offsetof(ss_plugin_extract_field, arg_key) == 32, "arg_key");
_Static_assert(offsetof(ss_plugin_extract_field, arg_index) == 40, "arg_index");
_Static_assert(offsetof(ss_plugin_extract_field, arg_present) == 48, "arg_present");
_Static_assert(offsetof(ss_plugin_extract_field, ftype) == 52, "ftype");
_Static_assert(offsetof(ss_plugin_extract_field, flist) == 56, "flist");
_Static_assert(sizeof(ss_plugin_extract_field) == 64, "ss_plugin_extract_field");
_Static_assert(offsetof(ss_plugin_field_extract_input, num_fields) == 16, "num_fields");
_Static_assert(offsetof(ss_plugin_field_extract_input, fields) == 24, "fields");
_Static_assert(offsetof(ss_plugin_init_input, tables) == 24, "tables");

#endif /* LBD_PLUGIN_API_H */
