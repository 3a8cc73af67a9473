/* SPDX-License-Identifier: Apache-2.0
 *
 * plugin_host: drives a Falco plugin the way Falco does, for lbd's tests and benchmarks.
 *
 *   plugin_host [--lib PATH] [--framework-api M.m.p] COMMAND [options]
 *
 *   info   [--config JSON]...   load and check: symbols, API version rule, capabilities,
 *                               get_fields by Falco's rules, get_init_schema against "{}" and
 *                               each --config
 *   script STEP...              run steps on one state: init:JSON  open:JSON  next:N  close
 *                               destroy  params  bpffds (BPF fds this process holds)
 *                               (a step that fails is reported, not fatal)
 *   run    [--init JSON] [--open JSON] [--max-events N] [--batches N] [--duration S]
 *          [--field NAME|NAME[ARG]]... [--no-fields] [--arg NAME]... [--copy] [--stdin-stop]
 *          [--bench] [--quiet]
 *                               open a capture, loop next_batch, check every event's layout,
 *                               write into it as Falco does, extract every field in every
 *                               argument form (or the --field ones) and print them
 *   extract --events FILE [--init JSON] [--field NAME]... [--arg NAME]... [--bench]
 *                               no capture: extract the fields of the events in FILE (each a
 *                               little-endian u32 length, then the event), as Falco does for
 *                               events it copied (they are not in the plugin's current batch)
 *
 * Output: one JSON object per line (stdout), for pytest to read.  Exit status: 0 when every
 * check passed, 1 when one failed, 2 for a usage or load error.
 *
 * Falco's behaviour mirrored here (FALCO_PLUGIN_ABI.md): dlopen(RTLD_NOW | RTLD_LOCAL); symbols
 * looked up as plugin_<name>; the API version rule against the framework's version (3.12.0);
 * init_config validated against get_init_schema before init ("" becomes "{}"); next_batch's
 * events written into (tid = -1, ts UINT64_MAX = now, plugin id 0 = the plugin's); SUCCESS with
 * no events is an error; extract_fields with field ids in get_fields order.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
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
};

static struct api A;
static int g_failed;
static unsigned fw_major = 3, fw_minor = 12, fw_patch = 0;

/* ---- output helpers -------------------------------------------------------------------------- */

static void out_kv_str(const char *k, const char *v, int comma)
{
    if (comma)
        fputc(',', stdout);
    json_write_str(stdout, k);
    fputc(':', stdout);
    if (v)
        json_write_str(stdout, v);
    else
        fputs("null", stdout);
}

static void check_line(const char *name, int ok, const char *detail)
{
    printf("{\"check\":");
    json_write_str(stdout, name);
    printf(",\"ok\":%s", ok ? "true" : "false");
    if (detail)
        out_kv_str("detail", detail, 1);
    printf("}\n");
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

/* ---- loading --------------------------------------------------------------------------------- */

#define SYM(name) (*(void **)&A.name = dlsym(A.dl, "plugin_" #name))

static int load(const char *path)
{
    A.dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!A.dl) {
        printf("{\"load\":\"error\"");
        out_kv_str("error", dlerror(), 1);
        printf("}\n");
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
    printf("{\"load\":\"ok\"}\n");
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
    printf("{\"check\":\"capabilities\",\"ok\":%s,\"sourcing\":%s,\"extraction\":%s,\"id\":%u",
           sourcing && extraction && id_ok ? "true" : "false", sourcing ? "true" : "false",
           extraction ? "true" : "false", id);
    out_kv_str("source", src, 1);
    out_kv_str("name", A.get_name(), 1);
    printf("}\n");
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
    struct jval *root = json_parse(text, err, sizeof(err));
    if (!root || root->type != J_ARRAY)
        return field_error(NULL, root ? "not a JSON array" : err);
    g_fields = calloc(root->n, sizeof(*g_fields));
    for (size_t i = 0; i < root->n; i++) {
        const struct jval *f = root->items[i];
        if (f->type != J_OBJECT)
            return field_error(NULL, "entry is not an object");
        const struct jval *name = json_get(f, "name"), *type = json_get(f, "type"), *desc = json_get(f, "desc");
        const char *fname = name && name->type == J_STRING ? name->str : NULL;
        if (!fname || !fname[0])
            return field_error(NULL, "no name");
        for (const char *c = fname; *c; c++)
            if (!(*c == '.' || *c == '_' || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9')))
                return field_error(fname, "name has a character Falco's rule parser does not take");
        if (!type || type->type != J_STRING || !type->str[0])
            return field_error(fname, "no type");
        if (!ftype_of(type->str))
            return field_error(fname, "invalid field type");
        if (!desc || desc->type != J_STRING || !desc->str[0])
            return field_error(fname, "no desc");
        for (size_t k = 0; k < f->n; k++) {
            const char *key = f->keys[k];
            const struct jval *v = f->items[k];
            if (!strcmp(key, "name") || !strcmp(key, "type") || !strcmp(key, "desc"))
                continue;
            if (!strcmp(key, "display")) {
                if (v->type != J_STRING)
                    return field_error(fname, "display is not a string");
            } else if (!strcmp(key, "isList") || !strcmp(key, "addOutput")) {
                if (v->type != J_BOOL)
                    return field_error(fname, "isList / addOutput is not boolean");
            } else if (!strcmp(key, "arg")) {
                if (v->type != J_OBJECT)
                    return field_error(fname, "arg is not an object");
                for (size_t j = 0; j < v->n; j++) {
                    if (strcmp(v->keys[j], "isRequired") && strcmp(v->keys[j], "isIndex") && strcmp(v->keys[j], "isKey"))
                        return field_error(fname, "arg has an unknown flag");
                    if (v->items[j]->type != J_BOOL)
                        return field_error(fname, "arg flag is not boolean");
                }
            } else if (!strcmp(key, "properties")) {
                if (v->type != J_ARRAY)
                    return field_error(fname, "properties is not an array");
                for (size_t j = 0; j < v->n; j++) {
                    const struct jval *pr = v->items[j];
                    if (pr->type != J_STRING)
                        return field_error(fname, "properties value is not a string");
                    if (strcmp(pr->str, "hidden") && strcmp(pr->str, "info") && strcmp(pr->str, "conversation"))
                        return field_error(fname, "unknown property");
                }
            } else {
                return field_error(fname, "unknown key");
            }
        }
        const struct jval *arg = json_get(f, "arg"), *il = json_get(f, "isList");
        const struct jval *req = json_get(arg, "isRequired"), *idx = json_get(arg, "isIndex"), *key = json_get(arg, "isKey");
        struct field *out = &g_fields[i];
        out->name = strdup(fname);
        out->ftype = ftype_of(type->str);
        out->is_list = il && il->boolean;
        out->arg_required = req && req->boolean;
        out->arg_index = idx && idx->boolean;
        out->arg_key = key && key->boolean;
        if (out->arg_required && !out->arg_index && !out->arg_key)
            return field_error(fname, "arg has isRequired true, but none of isKey nor isIndex is true");
        for (size_t j = 0; j < i; j++)
            if (!strcmp(g_fields[j].name, fname))
                return field_error(fname, "duplicate name");
        g_nfields = i + 1;
    }
    char detail[64];
    snprintf(detail, sizeof(detail), "%zu fields", g_nfields);
    check_line("fields", 1, detail);
    printf("{\"field_list\":[");
    for (size_t i = 0; i < g_nfields; i++) {
        struct field *f = &g_fields[i];
        printf("%s{\"name\":", i ? "," : "");
        json_write_str(stdout, f->name);
        printf(",\"ftype\":%u,\"list\":%s,\"arg\":%s,\"required\":%s}", f->ftype, f->is_list ? "true" : "false",
               f->arg_key ? "\"key\"" : f->arg_index ? "\"index\"" : "null", f->arg_required ? "true" : "false");
    }
    printf("]}\n");
    json_free(root);
    return 0;
}

/* ---- init schema ----------------------------------------------------------------------------- */

static struct jval *g_schema;

static int load_schema(void)
{
    char err[512];
    if (!A.get_init_schema) {
        check_line("init_schema", 1, "no schema");
        return 0;
    }
    ss_plugin_schema_type t = SS_PLUGIN_SCHEMA_NONE;
    const char *text = A.get_init_schema(&t);
    if (t != SS_PLUGIN_SCHEMA_JSON || !text) {
        check_line("init_schema", t == SS_PLUGIN_SCHEMA_NONE, "schema type is not JSON");
        return 0;
    }
    g_schema = json_parse(text, err, sizeof(err));
    if (!g_schema || g_schema->type != J_OBJECT) {
        check_line("init_schema", 0, g_schema ? "get_init_schema did not return a json object" : err);
        return -1;
    }
    check_line("init_schema", 1, "a JSON object");
    return 0;
}

/* Falco's validate_config: "" becomes "{}", then the config must parse and match the schema. */
static int schema_check(const char *config, char *err, size_t errlen)
{
    if (!g_schema)
        return 0;
    struct jval *v = json_parse(config && config[0] ? config : "{}", err, errlen);
    if (!v) {
        char tmp[512];
        snprintf(tmp, sizeof(tmp), "init config is not a valid json (%s)", err);
        snprintf(err, errlen, "%s", tmp);
        return -1;
    }
    int rc = json_schema_validate(g_schema, v, err, errlen);
    json_free(v);
    return rc;
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

static void print_value(const ss_plugin_extract_field *f, uint64_t i)
{
    char ip[64];
    switch (f->ftype) {
    case FTYPE_STRING:
        json_write_str(stdout, f->res.str[i] ? f->res.str[i] : "(null pointer)");
        break;
    case FTYPE_BOOL:
        fputs(f->res.boolean[i] ? "true" : "false", stdout);
        break;
    case FTYPE_IPADDR:
    case FTYPE_IPNET: {
        const ss_plugin_byte_buffer *b = &f->res.buf[i];
        if (b->len == 4 || b->len == 16)
            inet_ntop(b->len == 4 ? AF_INET : AF_INET6, b->ptr, ip, sizeof(ip));
        else
            snprintf(ip, sizeof(ip), "(bad length %u)", b->len);
        json_write_str(stdout, ip);
        break;
    }
    default:
        printf("%" PRIu64, f->res.u64[i]);
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
    if (o->bench) {     /* as Falco's filterchecks do: one field per call */
        if (!g_nreqs) {
            free(copy);
            return;
        }
        double t0 = now_s();
        for (size_t k = 0; k < g_nreqs; k++) {
            ein.num_fields = 1;
            ein.fields = &fx[k];
            if (A.extract_fields(s, &in, &ein) != SS_PLUGIN_SUCCESS)
                st->extract_errors++;
        }
        st->t_extract += now_s() - t0;
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
        printf("{\"extract_error\":");
        json_write_str(stdout, A.get_last_error(s));
        printf(",\"evtnum\":%" PRIu64 "}\n", evtnum);
        free(copy);
        return;
    }
    if (!o->quiet) {
        printf("{\"evtnum\":%" PRIu64 ",\"ts\":%" PRIu64 ",\"fields\":{", evtnum, evt->ts);
        for (size_t k = 0; k < g_nreqs; k++) {
            const ss_plugin_extract_field *f = &fx[k];
            printf("%s", k ? "," : "");
            json_write_str(stdout, g_reqs[k].label);
            printf(":[");
            if (!f->flist && f->res_len > 1)
                g_failed = 1;           /* a scalar field with several values */
            for (uint64_t i = 0; i < f->res_len; i++) {
                if (i)
                    fputc(',', stdout);
                print_value(f, i);
            }
            printf("]");
        }
        printf("}}\n");
    }
    free(copy);
}

/* ---- commands ---------------------------------------------------------------------------------- */

static int cmd_info(int argc, char **argv)
{
    if (check_plugin() != 0)
        return 1;
    if (load_fields() != 0 || load_schema() != 0)
        return 1;
    char err[512];
    check_line("init_schema_default", schema_check("", err, sizeof(err)) == 0, err[0] ? err : "\"{}\" is valid");
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            int ok = schema_check(argv[++i], err, sizeof(err)) == 0;
            printf("{\"check\":\"init_schema_config\",\"ok\":%s", ok ? "true" : "false");
            out_kv_str("config", argv[i], 1);
            out_kv_str("detail", ok ? NULL : err, 1);
            printf("}\n");
            /* a config the test expects to be rejected is not a host failure */
        }
    }
    return g_failed;
}

static void step_line(const char *step, const char *arg, ss_plugin_rc rc, ss_plugin_t *s, const char *extra)
{
    printf("{\"step\":");
    json_write_str(stdout, step);
    out_kv_str("arg", arg, 1);
    printf(",\"rc\":%d", rc);
    out_kv_str("error", rc != SS_PLUGIN_SUCCESS && s ? A.get_last_error(s) : NULL, 1);
    if (extra)
        printf(",%s", extra);
    printf("}\n");
    fflush(stdout);
}

static int cmd_script(int argc, char **argv)
{
    if (check_plugin() != 0 || load_fields() != 0 || load_schema() != 0)
        return 1;
    ss_plugin_t *s = NULL;
    ss_instance_t *h = NULL;
    char err[512], extra[1024];
    for (int i = 0; i < argc; i++) {
        char *step = argv[i];
        char *arg = strchr(step, ':');
        if (arg)
            *arg++ = '\0';
        ss_plugin_rc rc = SS_PLUGIN_SUCCESS;
        extra[0] = '\0';
        if (!strcmp(step, "init")) {
            if (s) {
                A.destroy(s);
                s = NULL;
            }
            int sok = schema_check(arg, err, sizeof(err)) == 0;
            snprintf(extra, sizeof(extra), "\"schema_ok\":%s", sok ? "true" : "false");
            ss_plugin_init_input in = {arg ? arg : "", NULL, NULL, NULL};
            s = A.init(&in, &rc);
            if (!sok) {
                size_t n = strlen(extra);
                snprintf(extra + n, sizeof(extra) - n, ",\"schema_error\":\"");
                for (const char *c = err; *c && strlen(extra) < sizeof(extra) - 8; c++) {
                    n = strlen(extra);
                    if (*c == '"' || *c == '\\')
                        snprintf(extra + n, sizeof(extra) - n, "\\%c", *c);
                    else
                        snprintf(extra + n, sizeof(extra) - n, "%c", *c);
                }
                strcat(extra, "\"");
            }
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
            snprintf(extra, sizeof(extra), "\"calls\":%ld,\"events\":%ld", calls, events);
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
            snprintf(extra, sizeof(extra), "\"bpf_progs\":%d,\"bpf_maps\":%d,\"perf_events\":%d", progs, maps, perf);
        } else if (!strcmp(step, "params")) {
            const char *p = s ? A.list_open_params(s, &rc) : NULL;
            if (p) {
                struct jval *v = json_parse(p, err, sizeof(err));
                int ok = v && v->type == J_ARRAY;
                for (size_t k = 0; ok && k < v->n; k++) {
                    const struct jval *val = json_get(v->items[k], "value");
                    ok = val && val->type == J_STRING && val->str[0];
                }
                snprintf(extra, sizeof(extra), "\"valid\":%s,\"count\":%zu", ok ? "true" : "false", v ? v->n : 0);
                json_free(v);
            }
        } else {
            fprintf(stderr, "unknown step %s\n", step);
            return 2;
        }
        step_line(step, arg, rc, s, extra[0] ? extra : NULL);
    }
    if (h)
        A.close(s, h);
    if (s)
        A.destroy(s);
    return 0;
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
    char err[512];
    if (schema_check(o->init, err, sizeof(err)) != 0) {
        printf("{\"init\":\"rejected by the schema\"");
        out_kv_str("error", err, 1);
        printf("}\n");
        return 1;
    }
    ss_plugin_rc rc;
    ss_plugin_init_input in = {o->init ? o->init : "", NULL, NULL, NULL};
    ss_plugin_t *s = A.init(&in, &rc);
    printf("{\"init\":%d,\"pid\":%d", rc, (int)getpid());
    out_kv_str("error", rc != SS_PLUGIN_SUCCESS && s ? A.get_last_error(s) : NULL, 1);
    printf("}\n");
    if (rc != SS_PLUGIN_SUCCESS) {
        if (s)
            A.destroy(s);
        return 1;
    }
    ss_instance_t *h = A.open(s, o->open ? o->open : "", &rc);
    printf("{\"open\":%d", rc);
    out_kv_str("error", rc != SS_PLUGIN_SUCCESS ? A.get_last_error(s) : NULL, 1);
    printf("}\n");
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
        double t0 = now_s();
        rc = A.next_batch(s, h, &nevts, &evts);
        double dt = now_s() - t0;
        st.t_next += dt;
        if (rc == SS_PLUGIN_TIMEOUT) {
            st.timeouts++;
            if (dt > st.max_timeout_s)
                st.max_timeout_s = dt;
        } else if (rc == SS_PLUGIN_EOF) {
            st.eof++;
        } else if (rc != SS_PLUGIN_SUCCESS) {
            printf("{\"next_batch_error\":");
            json_write_str(stdout, A.get_last_error(s));
            printf("}\n");
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
        for (uint32_t i = 0; i < nevts; i++) {
            char why[256];
            if (check_layout(evts[i], id, why, sizeof(why)) != 0) {
                st.layout_errors++;
                g_failed = 1;
                printf("{\"layout_error\":");
                json_write_str(stdout, why);
                printf("}\n");
                continue;
            }
            extract_event(s, evts[i], ++evtnum, o, &st, fx);
            st.events++;
        }
        if (!o->quiet)
            fflush(stdout);
        if (rc == SS_PLUGIN_EOF)
            break;
    }
    double elapsed = now_s() - t_start, cpu = cpu_s() - cpu_start;
    A.close(s, h);
    A.destroy(s);
    if (st.extract_errors)
        g_failed = 1;
    printf("{\"summary\":{\"batches\":%" PRIu64 ",\"events\":%" PRIu64 ",\"timeouts\":%" PRIu64
           ",\"success_empty\":%" PRIu64 ",\"layout_errors\":%" PRIu64 ",\"extract_errors\":%" PRIu64
           ",\"max_timeout_ms\":%.1f,\"seconds\":%.6f,\"next_batch_seconds\":%.6f,\"busy_next_batch_seconds\":%.6f"
           ",\"extract_seconds\":%.6f,\"cpu_seconds\":%.6f"
           ",\"extracted\":%" PRIu64 ",\"requests_per_event\":%zu,\"max_batch\":%" PRIu64 "}}\n",
           st.batches, st.events, st.timeouts, st.success_empty, st.layout_errors, st.extract_errors,
           st.max_timeout_s * 1e3, elapsed, st.t_next, st.t_busy, st.t_extract, cpu, st.extracted, g_nreqs,
           st.max_batch);
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
    ss_plugin_init_input in = {o->init ? o->init : "", NULL, NULL, NULL};
    ss_plugin_t *s = A.init(&in, &rc);
    printf("{\"init\":%d,\"pid\":%d", rc, (int)getpid());
    out_kv_str("error", rc != SS_PLUGIN_SUCCESS && s ? A.get_last_error(s) : NULL, 1);
    printf("}\n");
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
            printf("{\"layout_error\":");
            json_write_str(stdout, len < sizeof(ss_plugin_event) || evt->len != len ? "length" : why);
            printf("}\n");
            st.layout_errors++;
            g_failed = 1;
        } else {
            ++evtnum;
            for (int r = 0; r < rounds; r++)
                extract_event(s, evt, evtnum, o, &st, fx);
            st.events++;
        }
        free(buf);
    }
    fclose(f);
    A.destroy(s);
    if (st.extract_errors)
        g_failed = 1;
    printf("{\"summary\":{\"events\":%" PRIu64 ",\"layout_errors\":%" PRIu64 ",\"extract_errors\":%" PRIu64
           ",\"extract_seconds\":%.6f,\"extracted\":%" PRIu64 ",\"requests_per_event\":%zu}}\n",
           st.events, st.layout_errors, st.extract_errors, st.t_extract, st.extracted, g_nreqs);
    free(fx);
    return g_failed;
}

static void usage(void)
{
    fprintf(stderr, "usage: plugin_host [--lib PATH] [--framework-api M.m.p] info|script|run|extract [options]\n");
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
        else if (!strcmp(argv[i], "--framework-api") && i + 1 < argc) {
            if (sscanf(argv[++i], "%u.%u.%u", &fw_major, &fw_minor, &fw_patch) != 3)
                usage();
        } else
            usage();
    }
    if (i >= argc)
        usage();
    const char *cmd = argv[i++];
    if (load(lib) != 0) {
        fflush(stdout);
        return 2;
    }
    int rc;
    if (!strcmp(cmd, "info")) {
        rc = cmd_info(argc - i, argv + i);
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
