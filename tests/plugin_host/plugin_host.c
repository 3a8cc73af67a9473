/* SPDX-License-Identifier: Apache-2.0
 *
 * plugin_host: drives a Falco plugin the way Falco does, for lbd's tests and benchmarks.
 *
 *   plugin_host [--lib PATH] [--framework-api M.m.p] COMMAND [options]
 *
 *   info                        load and check: symbols, API version rule, capabilities,
 *                               get_fields by Falco's rules, get_init_schema a JSON object
 *   script STEP...              run steps on one state: init:JSON  open:JSON  next:N  close
 *                               destroy  params  bpffds (BPF fds this process holds)
 *                               metrics (get_metrics)  sleep:MS
 *                               signal:PID (SIGUSR1 to PID: a workload waiting for the attach)
 *                               (a step that fails is reported, not fatal)
 *   run    [--init JSON] [--open JSON] [--max-events N] [--batches N] [--duration S]
 *          [--field NAME|NAME[ARG]]... [--no-fields] [--arg NAME]... [--copy] [--stdin-stop]
 *          [--bench] [--quiet] [--metrics-thread MS]
 *                               open a capture, loop next_batch, check every event's layout,
 *                               write into it as Falco does, extract every field in every
 *                               argument form (or the --field ones) and print them; the
 *                               metrics (get_metrics) once the loop ends, and every MS ms from
 *                               another thread meanwhile (as Falco's metrics and web server do)
 *   extract --events FILE [--init JSON] [--field NAME]... [--arg NAME]... [--bench]
 *                               no capture: extract the fields of the events in FILE (each a
 *                               little-endian u32 length, then the event), as Falco does for
 *                               events it copied (they are not in the plugin's current batch)
 *
 * Global options: --no-log-fn (an init input without Falco's logger: the plugin writes to stderr).
 * Otherwise the init input carries a log_fn that prints {"log": MSG, "severity": N, "component": C}.
 *
 * Output: one JSON object per line (stdout, written with cJSON), for pytest to read.  Exit
 * status: 0 when every check passed, 1 when one failed, 2 for a usage or load error.
 *
 * Falco's behaviour mirrored here (FALCO_PLUGIN_ABI.md): dlopen(RTLD_NOW | RTLD_LOCAL); symbols
 * looked up as plugin_<name>; the API version rule against the framework's version (3.12.0);
 * next_batch's events written into (tid = -1, ts UINT64_MAX = now, plugin id 0 = the plugin's);
 * SUCCESS with no events is an error; extract_fields with field ids in get_fields order.
 * Falco also validates init_config against get_init_schema before init ("" becomes "{}"; it uses
 * valijson): here every command prints the schema in its "init_schema" line and
 * tests/plugin_host/host.py validates with the jsonschema package (info's and script's init
 * steps, run's --init before it starts the host).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "lbd_plugin_api.h"

struct api {
    void *dl;
    plugin_get_str_fn get_required_api_version, get_version, get_name, get_description, get_contact;
    plugin_get_str_fn get_event_source, get_fields;
    plugin_get_init_schema_fn get_init_schema;
    plugin_init_fn init;
    plugin_destroy_fn destroy;
    plugin_get_last_error_fn get_last_error;
    plugin_get_id_fn get_id;
    plugin_open_fn open;
    plugin_close_fn close;
    plugin_list_open_params_fn list_open_params;
    plugin_next_batch_fn next_batch;
    plugin_extract_fields_fn extract_fields;
    plugin_get_metrics_fn get_metrics;
};

static struct api A;
static int g_failed;
static int g_log_fn = 1;                /* pass a log_fn in the init input */
static pthread_mutex_t g_out = PTHREAD_MUTEX_INITIALIZER;   /* one line at a time on stdout */
static unsigned fw_major = 3, fw_minor = 12, fw_patch = 0;

/* ---- output: each line a cJSON object -------------------------------------------------------- */

static void *need(void *p)
{
    if (!p) {
        fprintf(stderr, "plugin_host: out of memory\n");
        exit(2);
    }
    return p;
}

static cJSON *new_obj(void)
{
    return need(cJSON_CreateObject());
}

/* Print o as one line and free it. */
static void emit(cJSON *o)
{
    char *text = need(cJSON_PrintUnformatted(o));
    pthread_mutex_lock(&g_out);
    puts(text);
    pthread_mutex_unlock(&g_out);
    cJSON_free(text);
    cJSON_Delete(o);
}

static void add_str(cJSON *o, const char *k, const char *v)     /* NULL: null */
{
    need(v ? cJSON_AddStringToObject(o, k, v) : cJSON_AddNullToObject(o, k));
}

static void add_bool(cJSON *o, const char *k, int v)
{
    need(cJSON_AddBoolToObject(o, k, v));
}

static void add_num(cJSON *o, const char *k, double v)
{
    need(cJSON_AddNumberToObject(o, k, v));
}

/* cJSON's numbers are doubles: a u64 (timestamps, values) goes out as its exact digits. */
static cJSON *u64_item(uint64_t v)
{
    char digits[24];
    snprintf(digits, sizeof(digits), "%" PRIu64, v);
    return need(cJSON_CreateRaw(digits));
}

static void add_u64(cJSON *o, const char *k, uint64_t v)
{
    cJSON_AddItemToObject(o, k, u64_item(v));
}

/* Parse all of text (nothing may follow the value); NULL with the reason in err. */
static cJSON *parse_json(const char *text, char *err, size_t len)
{
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithOpts(text, &end, 1);
    if (!v)
        snprintf(err, len, "not valid JSON (error at offset %td)", (end ? end : text) - text);
    return v;
}

static void check_line(const char *name, int ok, const char *detail)
{
    cJSON *o = new_obj();
    add_str(o, "check", name);
    add_bool(o, "ok", ok);
    if (detail)
        add_str(o, "detail", detail);
    emit(o);
    if (!ok)
        g_failed = 1;
}

/* CPU seconds this process has used (all threads: the plugin's Python runs in them too). */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- Falco's logger and metrics -------------------------------------------------------------------- */

static char g_owner;                    /* the owner handle the host gives (its address) */

/* The init input's log_fn: one line {"log", "severity", "component"}.  Any thread. */
static void host_log(ss_plugin_owner_t *o, const char *component, const char *msg, ss_plugin_log_severity sev)
{
    cJSON *line = new_obj();
    add_str(line, "log", msg);
    add_num(line, "severity", sev);
    add_str(line, "component", component);
    add_bool(line, "owner_ok", o == &g_owner);
    emit(line);
    pthread_mutex_lock(&g_out);
    fflush(stdout);
    pthread_mutex_unlock(&g_out);
}

static ss_plugin_init_input init_input(const char *config)
{
    ss_plugin_init_input in = {config ? config : "", &g_owner, NULL, NULL, g_log_fn ? host_log : NULL};
    return in;
}

/* get_metrics as Falco's metrics collector reads it: an object name -> value (u64 as digits,
 * doubles as numbers), and "metric_types" name -> "monotonic" / "non_monotonic".  NULL when the
 * plugin has no get_metrics. */
static cJSON *metrics_obj(ss_plugin_t *s)
{
    if (!A.get_metrics || !s)
        return NULL;
    uint32_t n = 0;
    ss_plugin_metric *m = A.get_metrics(s, &n);
    cJSON *o = new_obj(), *values = need(cJSON_AddObjectToObject(o, "values"));
    cJSON *types = need(cJSON_AddObjectToObject(o, "types"));
    for (uint32_t i = 0; m && i < n; i++) {
        if (!m[i].name) {
            g_failed = 1;
            continue;
        }
        switch (m[i].value_type) {
        case SS_PLUGIN_METRIC_VALUE_TYPE_U64:
            add_u64(values, m[i].name, m[i].value.u64);
            break;
        case SS_PLUGIN_METRIC_VALUE_TYPE_D:
            add_num(values, m[i].name, m[i].value.d);
            break;
        default:
            add_str(values, m[i].name, "(unexpected value type)");
            g_failed = 1;
        }
        add_str(types, m[i].name, m[i].type == SS_PLUGIN_METRIC_TYPE_MONOTONIC ? "monotonic" : "non_monotonic");
    }
    add_num(o, "count", n);
    return o;
}

struct metrics_thread {
    pthread_t t;
    ss_plugin_t *s;
    long every_ms;
    volatile int stop;
    uint64_t calls;
};

static void *metrics_loop(void *arg)
{
    struct metrics_thread *mt = arg;
    while (!mt->stop) {
        uint32_t n = 0;
        ss_plugin_metric *m = A.get_metrics(mt->s, &n);
        for (uint32_t i = 0; m && i < n; i++)
            if (!m[i].name)
                g_failed = 1;
        mt->calls++;
        struct timespec ts = {mt->every_ms / 1000, (mt->every_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- loading --------------------------------------------------------------------------------- */

#define SYM(name) (*(void **)&A.name = dlsym(A.dl, "plugin_" #name))

static int load(const char *path)
{
    A.dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!A.dl) {
        cJSON *o = new_obj();
        add_str(o, "load", "error");
        add_str(o, "error", dlerror());
        emit(o);
        return -1;
    }
    SYM(get_required_api_version);
    SYM(get_version);
    SYM(get_name);
    SYM(get_description);
    SYM(get_contact);
    SYM(get_event_source);
    SYM(get_fields);
    SYM(get_init_schema);
    SYM(init);
    SYM(destroy);
    SYM(get_last_error);
    SYM(get_id);
    SYM(open);
    SYM(close);
    SYM(list_open_params);
    SYM(next_batch);
    SYM(extract_fields);
    SYM(get_metrics);
    cJSON *o = new_obj();
    add_str(o, "load", "ok");
    emit(o);
    return 0;
}

/* Falco's checks on a freshly loaded plugin; returns 0 if it would accept it. */
static int check_plugin(void)
{
    int ok = 1;
    const char *missing = NULL;
#define REQ(n) if (!A.n && !missing) missing = #n
    REQ(get_required_api_version);
    REQ(get_version);
    REQ(get_name);
    REQ(get_description);
    REQ(get_contact);
    REQ(init);
    REQ(destroy);
    REQ(get_last_error);
#undef REQ
    check_line("symbols", !missing, missing ? missing : "all required symbols present");
    if (missing)
        return -1;

    const char *ver = A.get_required_api_version();
    unsigned M, m, p;
    char detail[256];
    const char *why = NULL;
    if (!ver || sscanf(ver, "%u.%u.%u", &M, &m, &p) != 3)
        why = "not M.m.p";
    else if (M != fw_major)
        why = "major versions disagree";
    else if (fw_minor < m)
        why = "framework's minor is less than the requested one";
    else if (fw_minor == m && fw_patch < p)
        why = "framework's patch is less than the requested one";
    snprintf(detail, sizeof(detail), "required %s, framework %u.%u.%u%s%s", ver ? ver : "(null)", fw_major,
             fw_minor, fw_patch, why ? ": " : "", why ? why : "");
    check_line("api_version", !why, detail);
    ok &= !why;

    const char *pv = A.get_version();
    check_line("version", pv && sscanf(pv, "%u.%u.%u", &M, &m, &p) == 3, pv);

    int sourcing = A.get_id && A.get_event_source && A.open && A.close && A.next_batch;
    int extraction = A.get_fields && A.extract_fields;
    uint32_t id = A.get_id ? A.get_id() : 0;
    const char *src = A.get_event_source ? A.get_event_source() : NULL;
    int id_ok = !!A.get_id == !!A.get_event_source && (!A.get_id || (id != 0 && src && src[0] &&
                                                                      strcmp(src, "syscall") != 0));
    cJSON *o = new_obj();
    add_str(o, "check", "capabilities");
    add_bool(o, "ok", sourcing && extraction && id_ok);
    add_bool(o, "sourcing", sourcing);
    add_bool(o, "extraction", extraction);
    add_bool(o, "get_metrics", A.get_metrics != NULL);
    add_num(o, "id", id);
    add_str(o, "source", src);
    add_str(o, "name", A.get_name());
    emit(o);
    if (!(sourcing && extraction && id_ok))
        g_failed = ok = 0;
    return ok ? 0 : -1;
}

/* ---- fields ---------------------------------------------------------------------------------- */

struct field {
    char *name;
    uint32_t ftype;
    int is_list;
    int arg_key;        /* takes a [key] argument */
    int arg_index;
    int arg_required;
};

static struct field *g_fields;
static size_t g_nfields;

static uint32_t ftype_of(const char *t)
{
    static const struct { const char *n; uint32_t t; } types[] = {
        {"string", FTYPE_STRING}, {"uint64", FTYPE_UINT64}, {"bool", FTYPE_BOOL}, {"reltime", FTYPE_RELTIME},
        {"abstime", FTYPE_ABSTIME}, {"ipaddr", FTYPE_IPADDR}, {"ipnet", FTYPE_IPNET}};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (!strcmp(t, types[i].n))
            return types[i].t;
    return 0;
}

static int field_error(const char *name, const char *what)
{
    char msg[512];
    snprintf(msg, sizeof(msg), "%s: %s", name ? name : "(unnamed)", what);
    check_line("fields", 0, msg);
    return -1;
}

/* get_fields by Falco's rules (libsinsp plugin.cpp): an array of objects with non-empty name, type
 * and desc; a known type; isList / addOutput booleans; arg flags booleans, isRequired only with
 * isIndex or isKey; properties an array of strings.  Stricter than Falco: unknown keys, unknown
 * properties and duplicate names are errors too. */
static int load_fields(void)
{
    char err[512];
    const char *text = A.get_fields();
    if (!text)
        return field_error(NULL, "get_fields returned NULL");
    cJSON *root = parse_json(text, err, sizeof(err));
    if (!root || !cJSON_IsArray(root)) {
        field_error(NULL, root ? "not a JSON array" : err);
        cJSON_Delete(root);
        return -1;
    }
    int rc = -1;
    g_fields = need(calloc((size_t)cJSON_GetArraySize(root) + 1, sizeof(*g_fields)));
    const cJSON *f;
    cJSON_ArrayForEach(f, root) {
        if (!cJSON_IsObject(f)) {
            field_error(NULL, "entry is not an object");
            goto out;
        }
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(f, "name");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(f, "type");
        const cJSON *desc = cJSON_GetObjectItemCaseSensitive(f, "desc");
        const char *fname = cJSON_IsString(name) ? name->valuestring : NULL;
        const char *why = NULL;
        if (!fname || !fname[0]) {
            field_error(NULL, "no name");
            goto out;
        }
        for (const char *c = fname; *c && !why; c++)
            if (!(*c == '.' || *c == '_' || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9')))
                why = "name has a character Falco's rule parser does not take";
        if (!why && (!cJSON_IsString(type) || !type->valuestring[0]))
            why = "no type";
        else if (!why && !ftype_of(type->valuestring))
            why = "invalid field type";
        else if (!why && (!cJSON_IsString(desc) || !desc->valuestring[0]))
            why = "no desc";
        const cJSON *v;
        cJSON_ArrayForEach(v, f) {
            const char *key = v->string;
            if (why)
                break;
            if (!strcmp(key, "name") || !strcmp(key, "type") || !strcmp(key, "desc"))
                continue;
            if (!strcmp(key, "display")) {
                if (!cJSON_IsString(v))
                    why = "display is not a string";
            } else if (!strcmp(key, "isList") || !strcmp(key, "addOutput")) {
                if (!cJSON_IsBool(v))
                    why = "isList / addOutput is not boolean";
            } else if (!strcmp(key, "arg")) {
                if (!cJSON_IsObject(v)) {
                    why = "arg is not an object";
                    break;
                }
                const cJSON *flag;
                cJSON_ArrayForEach(flag, v) {
                    if (strcmp(flag->string, "isRequired") && strcmp(flag->string, "isIndex") &&
                        strcmp(flag->string, "isKey"))
                        why = "arg has an unknown flag";
                    else if (!cJSON_IsBool(flag))
                        why = "arg flag is not boolean";
                    if (why)
                        break;
                }
            } else if (!strcmp(key, "properties")) {
                if (!cJSON_IsArray(v)) {
                    why = "properties is not an array";
                    break;
                }
                const cJSON *pr;
                cJSON_ArrayForEach(pr, v) {
                    if (!cJSON_IsString(pr))
                        why = "properties value is not a string";
                    else if (strcmp(pr->valuestring, "hidden") && strcmp(pr->valuestring, "info") &&
                             strcmp(pr->valuestring, "conversation"))
                        why = "unknown property";
                    if (why)
                        break;
                }
            } else {
                why = "unknown key";
            }
        }
        if (why) {
            field_error(fname, why);
            goto out;
        }
        const cJSON *arg = cJSON_GetObjectItemCaseSensitive(f, "arg");
        struct field *out = &g_fields[g_nfields];
        out->name = need(strdup(fname));
        out->ftype = ftype_of(type->valuestring);
        out->is_list = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(f, "isList"));
        out->arg_required = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(arg, "isRequired"));
        out->arg_index = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(arg, "isIndex"));
        out->arg_key = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(arg, "isKey"));
        if (out->arg_required && !out->arg_index && !out->arg_key) {
            field_error(fname, "arg has isRequired true, but none of isKey nor isIndex is true");
            goto out;
        }
        for (size_t j = 0; j < g_nfields; j++)
            if (!strcmp(g_fields[j].name, fname)) {
                field_error(fname, "duplicate name");
                goto out;
            }
        g_nfields++;
    }
    char detail[64];
    snprintf(detail, sizeof(detail), "%zu fields", g_nfields);
    check_line("fields", 1, detail);
    cJSON *line = new_obj(), *list = need(cJSON_AddArrayToObject(line, "field_list"));
    for (size_t i = 0; i < g_nfields; i++) {
        const struct field *fl = &g_fields[i];
        cJSON *o = new_obj();
        add_str(o, "name", fl->name);
        add_num(o, "ftype", fl->ftype);
        add_bool(o, "list", fl->is_list);
        add_str(o, "arg", fl->arg_key ? "key" : fl->arg_index ? "index" : NULL);
        add_bool(o, "required", fl->arg_required);
        cJSON_AddItemToArray(list, o);
    }
    emit(line);
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

/* ---- init schema ----------------------------------------------------------------------------- */

/* get_init_schema as Falco takes it: a JSON object when the schema type is JSON.  The check line
 * carries it as "schema" (minified, the plugin's own text: cJSON would print its numbers as
 * doubles), or null when the plugin has none; no "schema" when it is broken.  host.py validates
 * init_config against it. */
static int load_schema(void)
{
    char err[512];
    ss_plugin_schema_type t = SS_PLUGIN_SCHEMA_NONE;
    const char *text = A.get_init_schema ? A.get_init_schema(&t) : NULL, *detail;
    cJSON *schema = NULL;
    int ok, broken = 0;
    if (!A.get_init_schema) {
        ok = 1;
        detail = "no schema";
    } else if (t != SS_PLUGIN_SCHEMA_JSON || !text) {
        ok = t == SS_PLUGIN_SCHEMA_NONE;
        detail = "schema type is not JSON";
    } else {
        schema = parse_json(text, err, sizeof(err));
        ok = cJSON_IsObject(schema);
        broken = !ok;
        detail = ok ? "a JSON object" : schema ? "get_init_schema did not return a json object" : err;
    }
    cJSON *o = new_obj();
    add_str(o, "check", "init_schema");
    add_bool(o, "ok", ok);
    add_str(o, "detail", detail);
    if (ok && schema) {
        char *mini = need(strdup(text));
        cJSON_Minify(mini);
        need(cJSON_AddRawToObject(o, "schema", mini));
        free(mini);
    } else if (!broken) {
        add_str(o, "schema", NULL);
    }
    emit(o);
    cJSON_Delete(schema);
    if (!ok)
        g_failed = 1;
    return broken ? -1 : 0;
}

/* ---- one event --------------------------------------------------------------------------------- */

struct opts {
    const char *init, *open;
    long max_events, max_batches;
    double duration;
    const char **fields;
    int nfields_sel;
    const char **args;
    int nargs;
    int copy, stdin_stop, bench, quiet, no_fields;
    long metrics_ms;
    const char *events;
};

struct req {             /* one extraction request: a field in one argument form */
    uint32_t field_id;
    const char *label;   /* "linux.type[key]" */
    const char *arg_key;
};

static struct req *g_reqs;
static size_t g_nreqs;

static void add_req(uint32_t id, const char *arg)
{
    char label[256];
    g_reqs = realloc(g_reqs, (g_nreqs + 1) * sizeof(*g_reqs));
    if (arg)
        snprintf(label, sizeof(label), "%s[%s]", g_fields[id].name, arg);
    else
        snprintf(label, sizeof(label), "%s", g_fields[id].name);
    g_reqs[g_nreqs].field_id = id;
    g_reqs[g_nreqs].label = strdup(label);
    g_reqs[g_nreqs].arg_key = arg ? strdup(arg) : NULL;
    g_nreqs++;
}

/* Every field, in every argument form: none, [key], [value] for the key/value fields, each
 * --arg NAME for the fields that require a key. */
static void build_reqs(const struct opts *o)
{
    for (uint32_t i = 0; i < g_nfields && !o->no_fields; i++) {
        const struct field *f = &g_fields[i];
        int wanted = o->nfields_sel == 0;
        size_t nl = strlen(f->name);
        for (int k = 0; k < o->nfields_sel; k++) {
            const char *sel = o->fields[k];
            wanted |= !strcmp(sel, f->name);
            if (!strncmp(sel, f->name, nl) && sel[nl] == '[' && sel[strlen(sel) - 1] == ']') {
                /* --field NAME[ARG]: that one form only */
                char arg[256];
                snprintf(arg, sizeof(arg), "%.*s", (int)(strlen(sel) - nl - 2), sel + nl + 1);
                add_req(i, arg);
            }
        }
        if (!wanted)
            continue;
        if (f->arg_key && f->arg_required) {
            for (int k = 0; k < o->nargs; k++)
                add_req(i, o->args[k]);
            continue;
        }
        add_req(i, NULL);
        if (f->arg_key) {
            add_req(i, "key");
            add_req(i, "value");
        }
    }
}

struct stats {
    uint64_t batches, events, timeouts, success_empty, layout_errors, extract_errors, eof, max_batch;
    double max_timeout_s, t_next, t_extract, t_busy;   /* t_busy: next_batch calls that gave events */
    double cpu_next;                                    /* this thread's CPU inside next_batch */
    uint64_t extracted;
};

/* The layout Falco expects of a sourcing plugin's event, then Falco's own writes into it. */
static int check_layout(ss_plugin_event *e, uint32_t id, char *why, size_t len)
{
    uint8_t *p = (uint8_t *)e;
    uint32_t plen0, plen1, pid;
    if (e->type != PPME_PLUGINEVENT_E || e->nparams != 2) {
        snprintf(why, len, "type %u, nparams %u", e->type, e->nparams);
        return -1;
    }
    if (e->len < LBD_FALCO_PREFIX) {
        snprintf(why, len, "len %u < 38", e->len);
        return -1;
    }
    memcpy(&plen0, p + 26, 4);
    memcpy(&plen1, p + 30, 4);
    memcpy(&pid, p + 34, 4);
    if (plen0 != 4 || plen1 != e->len - LBD_FALCO_PREFIX) {
        snprintf(why, len, "parameter lengths %u, %u for an event of %u bytes", plen0, plen1, e->len);
        return -1;
    }
    if (pid != id && pid != 0) {
        snprintf(why, len, "plugin id %u, expected %u", pid, id);
        return -1;
    }
    /* what Falco writes: */
    e->tid = (uint64_t)-1;
    if (e->ts == UINT64_MAX) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        e->ts = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    }
    if (pid == 0)
        memcpy(p + 34, &id, 4);
    return 0;
}

static cJSON *value_item(const ss_plugin_extract_field *f, uint64_t i)
{
    char ip[64];
    switch (f->ftype) {
    case FTYPE_STRING:
        return need(cJSON_CreateString(f->res.str[i] ? f->res.str[i] : "(null pointer)"));
    case FTYPE_BOOL:
        return need(cJSON_CreateBool(f->res.boolean[i]));
    case FTYPE_IPADDR:
    case FTYPE_IPNET: {
        const ss_plugin_byte_buffer *b = &f->res.buf[i];
        if (b->len == 4 || b->len == 16)
            inet_ntop(b->len == 4 ? AF_INET : AF_INET6, b->ptr, ip, sizeof(ip));
        else
            snprintf(ip, sizeof(ip), "(bad length %u)", b->len);
        return need(cJSON_CreateString(ip));
    }
    default:
        return u64_item(f->res.u64[i]);
    }
}

static void extract_event(ss_plugin_t *s, ss_plugin_event *evt, uint64_t evtnum, const struct opts *o,
                          struct stats *st, ss_plugin_extract_field *fx)
{
    ss_plugin_event_input in = {evt, evtnum, "linux_ebpf"};
    ss_plugin_field_extract_input ein;
    memset(&ein, 0, sizeof(ein));
    uint8_t *copy = NULL;
    if (o->copy) {      /* a copy at an odd address: the plugin must not rely on its own memory */
        copy = malloc(evt->len + 1);
        memcpy(copy + 1, evt, evt->len);
        in.evt = (const ss_plugin_event *)(copy + 1);
    }
    for (size_t k = 0; k < g_nreqs; k++) {
        memset(&fx[k], 0, sizeof(fx[k]));
        fx[k].field_id = g_reqs[k].field_id;
        fx[k].field = g_fields[g_reqs[k].field_id].name;
        fx[k].arg_key = g_reqs[k].arg_key;
        fx[k].arg_present = g_reqs[k].arg_key != NULL;
        fx[k].ftype = g_fields[g_reqs[k].field_id].ftype;
        fx[k].flist = (ss_plugin_bool)g_fields[g_reqs[k].field_id].is_list;
    }
    if (o->bench) {     /* as Falco's filterchecks do: one field per call (the caller times a batch) */
        for (size_t k = 0; k < g_nreqs; k++) {
            ein.num_fields = 1;
            ein.fields = &fx[k];
            if (A.extract_fields(s, &in, &ein) != SS_PLUGIN_SUCCESS)
                st->extract_errors++;
        }
        st->extracted += g_nreqs;
        free(copy);
        return;
    }
    ein.num_fields = (uint32_t)g_nreqs;
    ein.fields = fx;
    ss_plugin_rc rc = A.extract_fields(s, &in, &ein);
    st->extracted += g_nreqs;
    if (rc != SS_PLUGIN_SUCCESS) {
        st->extract_errors++;
        cJSON *line = new_obj();
        add_str(line, "extract_error", A.get_last_error(s));
        add_u64(line, "evtnum", evtnum);
        emit(line);
        free(copy);
        return;
    }
    if (!o->quiet) {
        cJSON *line = new_obj();
        add_u64(line, "evtnum", evtnum);
        add_u64(line, "ts", evt->ts);
        cJSON *fields = need(cJSON_AddObjectToObject(line, "fields"));
        for (size_t k = 0; k < g_nreqs; k++) {
            const ss_plugin_extract_field *f = &fx[k];
            cJSON *values = need(cJSON_AddArrayToObject(fields, g_reqs[k].label));
            if (!f->flist && f->res_len > 1)
                g_failed = 1;           /* a scalar field with several values */
            for (uint64_t i = 0; i < f->res_len; i++)
                cJSON_AddItemToArray(values, value_item(f, i));
        }
        emit(line);
    }
    free(copy);
}

/* ---- commands ---------------------------------------------------------------------------------- */

static int cmd_info(void)
{
    if (check_plugin() != 0)
        return 1;
    if (load_fields() != 0 || load_schema() != 0)
        return 1;
    return g_failed;
}

/* A step's line: its extra members (line), then step, arg, rc and the error. */
static void step_line(cJSON *line, const char *step, const char *arg, ss_plugin_rc rc, ss_plugin_t *s)
{
    add_str(line, "step", step);
    add_str(line, "arg", arg);
    add_num(line, "rc", rc);
    add_str(line, "error", rc != SS_PLUGIN_SUCCESS && s ? A.get_last_error(s) : NULL);
    emit(line);
    fflush(stdout);
}

static int cmd_script(int argc, char **argv)
{
    if (check_plugin() != 0 || load_fields() != 0 || load_schema() != 0)
        return 1;
    ss_plugin_t *s = NULL;
    ss_instance_t *h = NULL;
    for (int i = 0; i < argc; i++) {
        char *step = argv[i];
        char *arg = strchr(step, ':');
        if (arg)
            *arg++ = '\0';
        ss_plugin_rc rc = SS_PLUGIN_SUCCESS;
        cJSON *line = new_obj();
        if (!strcmp(step, "init")) {
            if (s) {
                A.destroy(s);
                s = NULL;
            }
            ss_plugin_init_input in = init_input(arg);
            s = A.init(&in, &rc);
        } else if (!strcmp(step, "open")) {
            h = s ? A.open(s, arg ? arg : "", &rc) : NULL;
            if (!s)
                rc = SS_PLUGIN_FAILURE;
        } else if (!strcmp(step, "next")) {
            long n = arg ? atol(arg) : 1, events = 0, calls = 0;
            rc = SS_PLUGIN_FAILURE;
            for (long k = 0; k < n && h; k++) {
                uint32_t nevts = 0;
                ss_plugin_event **evts = NULL;
                rc = A.next_batch(s, h, &nevts, &evts);
                calls++;
                events += nevts;
                if (rc == SS_PLUGIN_FAILURE || rc == SS_PLUGIN_EOF)
                    break;
            }
            add_num(line, "calls", calls);
            add_num(line, "events", events);
            if (rc == SS_PLUGIN_TIMEOUT)
                rc = SS_PLUGIN_SUCCESS;          /* a quiet host: timeouts are fine here */
        } else if (!strcmp(step, "close")) {
            if (h)
                A.close(s, h);
            h = NULL;
        } else if (!strcmp(step, "destroy")) {
            if (s)
                A.destroy(s);
            s = NULL;
            h = NULL;
        } else if (!strcmp(step, "bpffds")) {
            /* what this process holds of BPF: close() must give the probe's programs and maps back */
            int progs = 0, maps = 0, perf = 0;
            char path[64], link[128];
            for (int fd = 0; fd < 65536; fd++) {
                snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
                ssize_t n = readlink(path, link, sizeof(link) - 1);
                if (n < 0)
                    continue;
                link[n] = '\0';
                progs += !strcmp(link, "anon_inode:bpf-prog");
                maps += !strcmp(link, "anon_inode:bpf-map");
                perf += !strcmp(link, "anon_inode:[perf_event]");
            }
            add_num(line, "bpf_progs", progs);
            add_num(line, "bpf_maps", maps);
            add_num(line, "perf_events", perf);
        } else if (!strcmp(step, "metrics")) {
            cJSON *m = metrics_obj(s);
            if (m)
                cJSON_AddItemToObject(line, "metrics", m);
            else
                rc = SS_PLUGIN_NOT_SUPPORTED;
        } else if (!strcmp(step, "sleep")) {
            long ms = arg ? atol(arg) : 0;
            struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        } else if (!strcmp(step, "signal")) {
            long pid = arg ? atol(arg) : 0;
            if (pid <= 0 || kill((pid_t)pid, SIGUSR1) != 0)
                rc = SS_PLUGIN_FAILURE;
        } else if (!strcmp(step, "params")) {
            const char *p = s ? A.list_open_params(s, &rc) : NULL;
            if (p) {
                cJSON *v = cJSON_ParseWithOpts(p, NULL, 1), *item;
                int ok = cJSON_IsArray(v);
                cJSON_ArrayForEach(item, v) {
                    const cJSON *val = cJSON_IsObject(item) ? cJSON_GetObjectItemCaseSensitive(item, "value") : NULL;
                    ok = ok && cJSON_IsString(val) && val->valuestring[0];
                }
                add_bool(line, "valid", ok);
                add_num(line, "count", cJSON_GetArraySize(v));
                cJSON_Delete(v);
            }
        } else {
            fprintf(stderr, "unknown step %s\n", step);
            cJSON_Delete(line);
            return 2;
        }
        step_line(line, step, arg, rc, s);
    }
    if (h)
        A.close(s, h);
    if (s)
        A.destroy(s);
    return 0;
}

static void init_line(ss_plugin_t *s, ss_plugin_rc rc)
{
    cJSON *line = new_obj();
    add_num(line, "init", rc);
    add_num(line, "pid", getpid());
    add_str(line, "error", rc != SS_PLUGIN_SUCCESS && s ? A.get_last_error(s) : NULL);
    emit(line);
}

static int stdin_closed(void)
{
    struct pollfd p = {0, POLLIN, 0};
    if (poll(&p, 1, 0) <= 0)
        return 0;
    char buf[256];
    ssize_t n = read(0, buf, sizeof(buf));
    return n == 0;
}

static int cmd_run(const struct opts *o)
{
    if (check_plugin() != 0 || load_fields() != 0 || load_schema() != 0)
        return 1;
    ss_plugin_rc rc;
    ss_plugin_init_input in = init_input(o->init);
    ss_plugin_t *s = A.init(&in, &rc);
    init_line(s, rc);
    if (rc != SS_PLUGIN_SUCCESS) {
        if (s)
            A.destroy(s);
        return 1;
    }
    ss_instance_t *h = A.open(s, o->open ? o->open : "", &rc);
    cJSON *line = new_obj();
    add_num(line, "open", rc);
    add_str(line, "error", rc != SS_PLUGIN_SUCCESS ? A.get_last_error(s) : NULL);
    emit(line);
    fflush(stdout);
    if (rc != SS_PLUGIN_SUCCESS) {
        A.destroy(s);
        return 1;
    }
    build_reqs(o);
    ss_plugin_extract_field *fx = calloc(g_nreqs ? g_nreqs : 1, sizeof(*fx));
    uint32_t id = A.get_id();
    struct stats st;
    memset(&st, 0, sizeof(st));
    uint64_t evtnum = 0;
    struct metrics_thread mt;
    memset(&mt, 0, sizeof(mt));
    mt.s = s;
    mt.every_ms = o->metrics_ms;
    int mt_on = o->metrics_ms > 0 && A.get_metrics && pthread_create(&mt.t, NULL, metrics_loop, &mt) == 0;
    double t_start = now_s(), cpu_start = cpu_s();    /* the capture loop only, not init/open */
    for (;;) {
        if (o->max_batches && (long)st.batches >= o->max_batches)
            break;
        if (o->max_events && (long)st.events >= o->max_events)
            break;
        if (o->duration > 0 && now_s() - t_start >= o->duration)
            break;
        if (o->stdin_stop && stdin_closed())
            break;
        uint32_t nevts = 0;
        ss_plugin_event **evts = NULL;
        double t0 = now_s(), c0 = thread_cpu_s();
        rc = A.next_batch(s, h, &nevts, &evts);
        double dt = now_s() - t0;
        st.cpu_next += thread_cpu_s() - c0;
        st.t_next += dt;
        if (rc == SS_PLUGIN_TIMEOUT) {
            st.timeouts++;
            if (dt > st.max_timeout_s)
                st.max_timeout_s = dt;
        } else if (rc == SS_PLUGIN_EOF) {
            st.eof++;
        } else if (rc != SS_PLUGIN_SUCCESS) {
            line = new_obj();
            add_str(line, "next_batch_error", A.get_last_error(s));
            emit(line);
            g_failed = 1;
            break;
        } else if (nevts == 0) {
            st.success_empty++;
            g_failed = 1;
        }
        if (nevts) {
            st.batches++;
            st.t_busy += dt;
        }
        if (nevts > st.max_batch)
            st.max_batch = nevts;
        /* --bench: the layout first, then the extraction of the whole batch timed at once (a
         * clock read per event would weigh on the ns per field) */
        uint32_t good = 0;
        static uint8_t *ok;                 /* (the plugin's array is the plugin's: not written) */
        static uint32_t ok_cap;
        if (nevts > ok_cap) {
            ok = need(realloc(ok, nevts));
            ok_cap = nevts;
        }
        for (uint32_t i = 0; i < nevts; i++) {
            ok[i] = 0;
            char why[256];
            if (check_layout(evts[i], id, why, sizeof(why)) != 0) {
                st.layout_errors++;
                g_failed = 1;
                line = new_obj();
                add_str(line, "layout_error", why);
                emit(line);
                continue;
            }
            ok[i] = 1;
            good++;
            if (!o->bench) {
                extract_event(s, evts[i], ++evtnum, o, &st, fx);
                st.events++;
            }
        }
        if (o->bench && good) {
            double t0 = now_s();
            for (uint32_t i = 0; i < nevts; i++)
                if (ok[i])
                    extract_event(s, evts[i], ++evtnum, o, &st, fx);
            st.t_extract += now_s() - t0;
            st.events += good;
        }
        if (!o->quiet)
            fflush(stdout);
        if (rc == SS_PLUGIN_EOF)
            break;
    }
    double elapsed = now_s() - t_start, cpu = cpu_s() - cpu_start;
    if (mt_on) {
        mt.stop = 1;
        pthread_join(mt.t, NULL);
    }
    cJSON *mline = metrics_obj(s);
    if (mline) {
        line = new_obj();
        cJSON_AddItemToObject(line, "metrics", mline);
        emit(line);
    }
    A.close(s, h);
    mline = metrics_obj(s);                /* after close: the capture's final counters */
    if (mline) {
        line = new_obj();
        cJSON_AddItemToObject(line, "metrics_after_close", mline);
        emit(line);
    }
    A.destroy(s);
    if (st.extract_errors)
        g_failed = 1;
    line = new_obj();
    cJSON *sum = need(cJSON_AddObjectToObject(line, "summary"));
    add_u64(sum, "batches", st.batches);
    add_u64(sum, "events", st.events);
    add_u64(sum, "timeouts", st.timeouts);
    add_u64(sum, "success_empty", st.success_empty);
    add_u64(sum, "layout_errors", st.layout_errors);
    add_u64(sum, "extract_errors", st.extract_errors);
    add_num(sum, "max_timeout_ms", st.max_timeout_s * 1e3);
    add_num(sum, "seconds", elapsed);
    add_num(sum, "next_batch_seconds", st.t_next);
    add_num(sum, "busy_next_batch_seconds", st.t_busy);
    add_num(sum, "next_batch_cpu_seconds", st.cpu_next);
    add_u64(sum, "metrics_calls", mt.calls);
    add_num(sum, "extract_seconds", st.t_extract);
    add_num(sum, "cpu_seconds", cpu);
    add_u64(sum, "extracted", st.extracted);
    add_u64(sum, "requests_per_event", g_nreqs);
    add_u64(sum, "max_batch", st.max_batch);
    emit(line);
    free(fx);
    return g_failed;
}

static int cmd_extract(const struct opts *o)
{
    if (check_plugin() != 0 || load_fields() != 0 || load_schema() != 0)
        return 1;
    FILE *f = fopen(o->events, "rb");
    if (!f) {
        fprintf(stderr, "plugin_host: %s: %s\n", o->events, strerror(errno));
        return 2;
    }
    ss_plugin_rc rc;
    ss_plugin_init_input in = init_input(o->init);
    ss_plugin_t *s = A.init(&in, &rc);
    init_line(s, rc);
    if (rc != SS_PLUGIN_SUCCESS) {
        if (s)
            A.destroy(s);
        fclose(f);
        return 1;
    }
    build_reqs(o);
    ss_plugin_extract_field *fx = calloc(g_nreqs ? g_nreqs : 1, sizeof(*fx));
    struct stats st;
    memset(&st, 0, sizeof(st));
    uint32_t id = A.get_id(), len;
    uint64_t evtnum = 0;
    int rounds = o->bench ? 100 : 1;
    while (fread(&len, 4, 1, f) == 1) {
        uint8_t *buf = malloc(len ? len : 1);
        if (!buf || fread(buf, 1, len, f) != len) {
            fprintf(stderr, "plugin_host: %s: truncated event\n", o->events);
            free(buf);
            break;
        }
        ss_plugin_event *evt = (ss_plugin_event *)buf;
        char why[256];
        if (len < sizeof(ss_plugin_event) || evt->len != len || check_layout(evt, id, why, sizeof(why)) != 0) {
            cJSON *line = new_obj();
            add_str(line, "layout_error", len < sizeof(ss_plugin_event) || evt->len != len ? "length" : why);
            emit(line);
            st.layout_errors++;
            g_failed = 1;
        } else {
            ++evtnum;
            double t0 = now_s();
            for (int r = 0; r < rounds; r++)
                extract_event(s, evt, evtnum, o, &st, fx);
            if (o->bench)
                st.t_extract += now_s() - t0;
            st.events++;
        }
        free(buf);
    }
    fclose(f);
    A.destroy(s);
    if (st.extract_errors)
        g_failed = 1;
    cJSON *line = new_obj(), *sum = need(cJSON_AddObjectToObject(line, "summary"));
    add_u64(sum, "events", st.events);
    add_u64(sum, "layout_errors", st.layout_errors);
    add_u64(sum, "extract_errors", st.extract_errors);
    add_num(sum, "extract_seconds", st.t_extract);
    add_u64(sum, "extracted", st.extracted);
    add_u64(sum, "requests_per_event", g_nreqs);
    emit(line);
    free(fx);
    return g_failed;
}

static void usage(void)
{
    fprintf(stderr, "usage: plugin_host [--lib PATH] [--framework-api M.m.p] [--no-log-fn] info|script|run|extract [options]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *lib = "build/liblbd.so";
    int i = 1;
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--lib") && i + 1 < argc)
            lib = argv[++i];
        else if (!strcmp(argv[i], "--no-log-fn"))
            g_log_fn = 0;
        else if (!strcmp(argv[i], "--framework-api") && i + 1 < argc) {
            if (sscanf(argv[++i], "%u.%u.%u", &fw_major, &fw_minor, &fw_patch) != 3)
                usage();
        } else
            usage();
    }
    if (i >= argc)
        usage();
    const char *cmd = argv[i++];
    if (!strcmp(cmd, "info") && i < argc)
        usage();                        /* info takes no options (host.py validates configs) */
    if (load(lib) != 0) {
        fflush(stdout);
        return 2;
    }
    int rc;
    if (!strcmp(cmd, "info")) {
        rc = cmd_info();
    } else if (!strcmp(cmd, "script")) {
        rc = cmd_script(argc - i, argv + i);
    } else if (!strcmp(cmd, "run") || !strcmp(cmd, "extract")) {
        struct opts o;
        memset(&o, 0, sizeof(o));
        o.fields = calloc((size_t)argc, sizeof(char *));
        o.args = calloc((size_t)argc, sizeof(char *));
        for (; i < argc; i++) {
            const char *a = argv[i];
            int more = i + 1 < argc;
            if (!strcmp(a, "--init") && more)
                o.init = argv[++i];
            else if (!strcmp(a, "--open") && more)
                o.open = argv[++i];
            else if (!strcmp(a, "--max-events") && more)
                o.max_events = atol(argv[++i]);
            else if (!strcmp(a, "--batches") && more)
                o.max_batches = atol(argv[++i]);
            else if (!strcmp(a, "--duration") && more)
                o.duration = atof(argv[++i]);
            else if (!strcmp(a, "--field") && more)
                o.fields[o.nfields_sel++] = argv[++i];
            else if (!strcmp(a, "--arg") && more)
                o.args[o.nargs++] = argv[++i];
            else if (!strcmp(a, "--copy"))
                o.copy = 1;
            else if (!strcmp(a, "--stdin-stop"))
                o.stdin_stop = 1;
            else if (!strcmp(a, "--bench"))
                o.bench = o.quiet = 1;
            else if (!strcmp(a, "--quiet"))
                o.quiet = 1;
            else if (!strcmp(a, "--no-fields"))
                o.no_fields = 1;
            else if (!strcmp(a, "--metrics-thread") && more)
                o.metrics_ms = atol(argv[++i]);
            else if (!strcmp(a, "--events") && more)
                o.events = argv[++i];
            else
                usage();
        }
        if (!strcmp(cmd, "extract") && !o.events)
            usage();
        rc = !strcmp(cmd, "run") ? cmd_run(&o) : cmd_extract(&o);
    } else {
        usage();
        rc = 2;
    }
    fflush(stdout);
    return rc;
}
