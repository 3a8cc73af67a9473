/* SPDX-License-Identifier: Apache-2.0
 *
 * lbd_plugin_api.h: the part of Falco's plugin ABI that liblbd.so and the test host use.
 *
 * Written for lbd from the facts in /work/shared/FALCO_PLUGIN_ABI.md (the authoritative text is
 * falcosecurity/libs userspace/plugin/plugin_api.h and plugin_types.h, plugin API 3.x; log_fn and
 * the metrics types as of libs 0.25 / API 3.12, where they were added in 3.3.0 and 3.6.0).  Only the
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

/* Severities of log_fn (ss_plugin_log_severity, API 3.3.0). */
typedef enum ss_plugin_log_severity {
    SS_PLUGIN_LOG_SEV_FATAL = 1,
    SS_PLUGIN_LOG_SEV_CRITICAL = 2,
    SS_PLUGIN_LOG_SEV_ERROR = 3,
    SS_PLUGIN_LOG_SEV_WARNING = 4,
    SS_PLUGIN_LOG_SEV_NOTICE = 5,
    SS_PLUGIN_LOG_SEV_INFO = 6,
    SS_PLUGIN_LOG_SEV_DEBUG = 7,
    SS_PLUGIN_LOG_SEV_TRACE = 8,
} ss_plugin_log_severity;

/* The framework's logger (API 3.3.0): component NULL means the plugin's name; msg needs no '\n'. */
typedef void (*ss_plugin_log_fn_t)(ss_plugin_owner_t *o, const char *component, const char *msg,
                                   ss_plugin_log_severity sev);

typedef struct ss_plugin_init_input {
    const char *config;          /* init_config as a JSON string */
    ss_plugin_owner_t *owner;    /* constant for the plugin's life: kept for log_fn */
    const char *(*get_owner_last_error)(ss_plugin_owner_t *o);
    const void *tables;          /* may be NULL; unused by lbd */
    ss_plugin_log_fn_t log_fn;   /* API >= 3.3.0 (lbd requires 3.6.0, so it is there); may be NULL */
} ss_plugin_init_input;

/* Metrics (API 3.6.0: get_metrics).  Falco names each one "<plugin name>.<name>". */
typedef enum ss_plugin_metric_value_type {
    SS_PLUGIN_METRIC_VALUE_TYPE_U32 = 0,
    SS_PLUGIN_METRIC_VALUE_TYPE_S32 = 1,
    SS_PLUGIN_METRIC_VALUE_TYPE_U64 = 2,
    SS_PLUGIN_METRIC_VALUE_TYPE_S64 = 3,
    SS_PLUGIN_METRIC_VALUE_TYPE_D = 4,
    SS_PLUGIN_METRIC_VALUE_TYPE_F = 5,
    SS_PLUGIN_METRIC_VALUE_TYPE_I = 6,
} ss_plugin_metric_value_type;

typedef union ss_plugin_metric_value {
    uint32_t u32;
    int32_t s32;
    uint64_t u64;
    int64_t s64;
    double d;
    float f;
    int i;
} ss_plugin_metric_value;

typedef enum ss_plugin_metric_type {
    SS_PLUGIN_METRIC_TYPE_MONOTONIC = 0,
    SS_PLUGIN_METRIC_TYPE_NON_MONOTONIC = 1,
} ss_plugin_metric_type;

typedef struct ss_plugin_metric {
    const char *name;                        /* owned by the plugin */
    ss_plugin_metric_type type;
    ss_plugin_metric_value value;
    ss_plugin_metric_value_type value_type;
} ss_plugin_metric;

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
typedef ss_plugin_metric *(*plugin_get_metrics_fn)(ss_plugin_t *s, uint32_t *num_metrics);

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
_Static_assert(offsetof(ss_plugin_init_input, log_fn) == 32, "log_fn");
_Static_assert(sizeof(ss_plugin_metric_value) == 8, "ss_plugin_metric_value");
_Static_assert(offsetof(ss_plugin_metric, type) == 8, "metric type");
_Static_assert(offsetof(ss_plugin_metric, value) == 16, "metric value");
_Static_assert(offsetof(ss_plugin_metric, value_type) == 24, "metric value_type");
_Static_assert(sizeof(ss_plugin_metric) == 32, "ss_plugin_metric");

#endif /* LBD_PLUGIN_API_H */
