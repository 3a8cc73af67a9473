/* SPDX-License-Identifier: Apache-2.0
 *
 * lbd_plugin.c: liblbd.so, lbd as a Falco plugin (event source linux_ebpf, plugin id 27182).
 *
 * Design
 *   - CPython is embedded: the first plugin_init starts it (once per process; it is never
 *     finalised, since numpy and the lbd extension cannot be initialised twice), makes libpython's
 *     symbols global (Falco opens plugins RTLD_LOCAL), finds the lbd installation (the venv baked
 *     in at build time, or init_config python_home) and imports lbd.falco.  The GIL is released
 *     right after; every entry point below takes it (PyGILState) only around its Python calls, so
 *     any Falco thread may call in.
 *   - next_batch makes ONE Python call (lbd.falco.Instance.next: fill the batch from the rings,
 *     run the compiled state engine over it, the filter's mask when open_params has a filter,
 *     write it when putfile; or, open_params "replay", the next batch of a capture file, None at
 *     its end: SS_PLUGIN_EOF) and hands Falco pointers into the batch arena, where the decoder
 *     already laid out each record behind its 38-byte plugin-event header: no copy.  Which
 *     events Falco gets is decided here, in C: not the state records (LBD_F_STATE, for the
 *     tables only), not those the filter's mask drops.
 *   - Counters (get_metrics) come from Python (the kernel's, the rings', the engine's) plus this
 *     file's own (handed over, hidden, filtered); drops are announced through Falco's logger
 *     (log_fn): Python says when, at most once per interval, and a summary at close.
 *   - extract_fields is C alone (lbd_extract.c), without the GIL and without a Python object per
 *     event.
 *   - No Python exception crosses into Falco: every failure becomes SS_PLUGIN_FAILURE (or NULL)
 *     with a one-line message for get_last_error.  PyErr_Print is never called (it would exit the
 *     process on SystemExit).
 *
 * Lifetimes
 *   - Strings returned by get_* are static; get_last_error's is the state's buffer, valid until
 *     the next call on that state; list_open_params's until the next list_open_params or destroy.
 *   - Events from next_batch: valid and unmodified until the next next_batch or close (they are
 *     the Collector's Batch, which the Python Instance owns and reuses).
 *   - extract_fields results: until the next extract_fields on the same state.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lbd_plugin.h"
#include "lbd_tables.h"

#ifndef LBD_VENV
#error "LBD_VENV (the lbd venv to embed) is set by plugin/Makefile"
#endif
#ifndef LBD_REPO
#define LBD_REPO ""
#endif
#ifndef LBD_PYTHON_EXE
#error "LBD_PYTHON_EXE (the base interpreter) is set by plugin/Makefile"
#endif
#ifndef LBD_LIBPYTHON
#error "LBD_LIBPYTHON (libpython's soname) is set by plugin/Makefile"
#endif
#ifndef LBD_LIBPYTHON_PATH
#define LBD_LIBPYTHON_PATH LBD_LIBPYTHON
#endif

#define EXPORT __attribute__((visibility("default")))

struct lbd_instance;

/* One plugin_init.  Invariant: py is set iff init succeeded; inst is the open capture or NULL. */
/* Counters of the hand-over, kept in C (next_batch writes them, get_metrics may read them from
 * another thread: relaxed atomics).  Reset at each open. */
struct lbd_counters {
    uint64_t handed;                /* events handed to Falco */
    uint64_t hidden_state;          /* state records applied to the tables, not handed over */
    uint64_t filtered;              /* events the open_params filter removed */
    uint64_t batches;               /* next_batch calls that handed events */
    uint64_t enrich_rejected;       /* batches whose enrichment arrays failed lbd_view_check */
};

/* One plugin_init.  Invariant: py is set iff init succeeded; inst is the open capture or NULL. */
struct lbd_state {
    char err[LBD_ERRLEN];           /* get_last_error */
    PyObject *py;                   /* lbd.falco.PluginState */
    char *open_params;              /* list_open_params result (malloc) */
    struct lbd_instance *inst;
    struct lbd_extractor x;         /* extract_fields: results arena + the current batch view */
    struct lbd_counters c;
    ss_plugin_owner_t *owner;       /* init input: for log_fn */
    ss_plugin_log_fn_t log_fn;      /* Falco's logger, or NULL (then stderr) */
    pthread_mutex_t metrics_lock;   /* get_metrics' result arrays below */
    ss_plugin_metric *metrics;      /* the last get_metrics result: valid until the next call */
    char **metric_names;
    uint32_t nmetrics;
};

/* One open capture. */
struct lbd_instance {
    struct lbd_state *s;
    PyObject *py;                   /* lbd.falco.Instance */
    PyObject *next;                 /* its bound next() */
    uint64_t *out;                  /* the event pointers handed to Falco (malloc, out_cap) */
    uint32_t out_cap;
    long tid;                       /* the thread that called next_batch last (filter_own) */
};

/* ---- errors ------------------------------------------------------------------------------------- */

static void set_err(char *err, const char *f, ...) __attribute__((format(printf, 2, 3)));
static void set_err(char *err, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    vsnprintf(err, LBD_ERRLEN, f, ap);
    va_end(ap);
}

static PyObject *g_falco;           /* module lbd.falco, once imported (GIL to use) */

/* The current Python exception as "<context>: <message>" in err; clears it.  GIL held. */
static void py_err(char *err, const char *context)
{
    PyObject *type = NULL, *value = NULL, *tb = NULL;
    PyErr_Fetch(&type, &value, &tb);
    if (!type) {
        set_err(err, "%s: failed without a Python exception", context);
        return;
    }
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *msg = NULL;
    if (g_falco && value)
        msg = PyObject_CallMethod(g_falco, "error_message", "O", value);
    if (!msg) {
        PyErr_Clear();
        PyObject *s = value ? PyObject_Str(value) : NULL;
        const char *tname = ((PyTypeObject *)type)->tp_name;
        if (s && PyUnicode_Check(s))
            msg = PyUnicode_FromFormat("%s: %U", tname, s);
        else
            msg = PyUnicode_FromString(tname);
        Py_XDECREF(s);
        PyErr_Clear();
    }
    const char *text = msg ? PyUnicode_AsUTF8(msg) : NULL;
    if (!text) {
        PyErr_Clear();
        text = "(the Python error could not be described)";
    }
    set_err(err, "%s: %s", context, text);
    Py_XDECREF(msg);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
}

/* ---- Falco's logger ------------------------------------------------------------------------------- */

/* One message to Falco's log (or stderr when the framework gave no log_fn).  Any thread. */
static void falco_log(struct lbd_state *s, ss_plugin_log_severity sev, const char *msg)
{
    if (s && s->log_fn)
        s->log_fn(s->owner, NULL, msg, sev);
    else
        fprintf(stderr, "lbd: %s\n", msg);
}

/* Python's logging levels (10 DEBUG .. 50 CRITICAL) as Falco's severities. */
static ss_plugin_log_severity severity_of(long level)
{
    if (level >= 50)
        return SS_PLUGIN_LOG_SEV_CRITICAL;
    if (level >= 40)
        return SS_PLUGIN_LOG_SEV_ERROR;
    if (level >= 30)
        return SS_PLUGIN_LOG_SEV_WARNING;
    if (level >= 20)
        return SS_PLUGIN_LOG_SEV_INFO;
    return SS_PLUGIN_LOG_SEV_DEBUG;
}

/* lbd.falco's logging handler calls this (GIL held): (level, message) -> None.  Its self is a
 * capsule holding the state; the state outlives it (destroy drops the PluginState first). */
static PyObject *py_falco_log(PyObject *self, PyObject *args)
{
    long level;
    const char *msg;
    if (!PyArg_ParseTuple(args, "ls", &level, &msg))
        return NULL;
    struct lbd_state *s = PyCapsule_GetPointer(self, "lbd.falco.state");
    if (!s)
        return NULL;
    falco_log(s, severity_of(level), msg);
    Py_RETURN_NONE;
}

static PyMethodDef falco_log_def = {"falco_log", py_falco_log, METH_VARARGS,
                                    "falco_log(level, message): one line to Falco's log"};

/* ---- the embedded interpreter ------------------------------------------------------------------ */

static pthread_mutex_t g_py_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_py_started;            /* Py_Initialize ran in this process (by us or the host) */
static char g_py_fatal[LBD_ERRLEN]; /* the interpreter could not start: sticky */

/* Runs once the interpreter is up, before lbd is imported: read python_home from the raw
 * init_config (lbd.config validates it later with everything else), activate that venv the way
 * its bin/python would (site.main() reads its pyvenv.cfg), import lbd.falco.  A failed attempt
 * leaves sys.path as it was, so a later plugin_init with a good python_home can still work. */
static const char bootstrap_src[] =
    "import json, os, sys\n"
    "def bootstrap(init_config, baked_venv, baked_repo):\n"
    "    home = ''\n"
    "    try:\n"
    "        text = init_config.decode('utf-8')\n"
    "        doc = json.loads(text) if text.strip() and len(text) <= 1 << 20 else None\n"
    "    except (ValueError, RecursionError):\n"
    "        doc = None                  # lbd.config says what is wrong with it\n"
    "    if isinstance(doc, dict) and isinstance(doc.get('python_home'), str):\n"
    "        home = doc['python_home']\n"
    "    loaded = getattr(sys, '_lbd_plugin_home', None)\n"
    "    if loaded is not None:\n"
    "        if home and os.path.realpath(home) != os.path.realpath(loaded):\n"
    "            raise RuntimeError(f'init_config.python_home: {home!r}, but this process already runs '\n"
    "                               f'lbd from {loaded!r} (CPython cannot switch installations: restart Falco)')\n"
    "        import lbd.falco\n"
    "        return lbd.falco\n"
    "    venv = home or baked_venv\n"
    "    what = 'init_config.python_home' if home else 'the lbd installation liblbd.so was built from'\n"
    "    if not os.path.isdir(venv):\n"
    "        raise RuntimeError(f'{what}: {venv!r} is not a directory' + ('' if home else\n"
    "                           '; set init_config.python_home to an lbd installation (a venv)'))\n"
    "    import site\n"
    "    saved = (list(sys.path), sys.prefix, sys.exec_prefix, sys.executable, list(site.PREFIXES))\n"
    "    try:\n"
    "        if os.path.isfile(os.path.join(venv, 'pyvenv.cfg')):\n"
    "            sys.executable = os.path.join(venv, 'bin', 'python')\n"
    "            site.main()\n"
    "        else:\n"
    "            site.main()\n"
    "            sys.path.insert(0, venv)\n"
    "        if not home and baked_repo and os.path.isfile(os.path.join(baked_repo, 'lbd', '__init__.py')):\n"
    "            sys.path.insert(0, baked_repo)\n"
    "        try:\n"
    "            import lbd.falco\n"
    "        except ImportError as e:\n"
    "            raise ImportError(f'cannot import lbd from {what} {venv!r}: {e}') from e\n"
    "    except BaseException:\n"
    "        sys.path[:] = saved[0]\n"
    "        sys.prefix, sys.exec_prefix, sys.executable = saved[1], saved[2], saved[3]\n"
    "        site.PREFIXES[:] = saved[4]\n"
    "        for m in [m for m in sys.modules if m == 'lbd' or m.startswith('lbd.')]:\n"
    "            del sys.modules[m]\n"
    "        raise\n"
    "    sys._lbd_plugin_home = venv\n"
    "    return lbd.falco\n";

/* Make libpython's symbols global: the extension modules lbd imports (numpy, lbd._decode) look
 * their Py* symbols up globally, and Falco loaded us (and so libpython) RTLD_LOCAL. */
static int libpython_global(char *err)
{
    if (dlopen(LBD_LIBPYTHON, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD))
        return 0;
    if (dlopen(LBD_LIBPYTHON_PATH, RTLD_NOW | RTLD_GLOBAL))
        return 0;
    const char *why = dlerror();
    set_err(err, "cannot load %s with global symbols: %s", LBD_LIBPYTHON_PATH, why ? why : "unknown error");
    return -1;
}

static int interpreter_start(char *err)
{
    PyStatus st;
    PyPreConfig pre;
    /* numpy's OpenBLAS starts worker threads when lbd imports it, which spin for a while on
     * Falco's CPUs (35% of a benchmark's samples); lbd does no linear algebra.  One thread,
     * unless whoever started Falco chose otherwise. */
    setenv("OPENBLAS_NUM_THREADS", "1", 0);
    PyPreConfig_InitIsolatedConfig(&pre);
    pre.utf8_mode = 1;                      /* Falco may run in the C locale: text is UTF-8 anyway */
    st = Py_PreInitialize(&pre);
    if (PyStatus_Exception(st)) {
        set_err(err, "cannot pre-initialise Python: %s%s%s", st.func ? st.func : "", st.func ? ": " : "",
                st.err_msg ? st.err_msg : "unknown error");
        return -1;
    }
    PyConfig cfg;
    PyConfig_InitIsolatedConfig(&cfg);      /* no env vars, no user site, no signal handlers, no argv */
    cfg.site_import = 0;                    /* the bootstrap runs site for the chosen venv */
    cfg.install_signal_handlers = 0;        /* Falco's signals stay Falco's */
    cfg.parse_argv = 0;
    cfg.write_bytecode = 0;
    st = PyConfig_SetBytesString(&cfg, &cfg.program_name, LBD_PYTHON_EXE);
    if (!PyStatus_Exception(st))
        st = Py_InitializeFromConfig(&cfg);
    PyConfig_Clear(&cfg);
    if (PyStatus_Exception(st)) {
        set_err(err, "cannot start Python (%s): %s%s%s", LBD_PYTHON_EXE, st.func ? st.func : "",
                st.func ? ": " : "", st.err_msg ? st.err_msg : "unknown error");
        return -1;
    }
    return 0;
}

/* Start Python if needed and import lbd.falco for this init_config.  On success the GIL is held
 * (*gil tells how to release it: see python_leave). */
static int python_enter_init(const char *init_config, char *err, PyGILState_STATE *gil)
{
    pthread_mutex_lock(&g_py_lock);
    if (g_py_fatal[0]) {
        set_err(err, "%s", g_py_fatal);
        pthread_mutex_unlock(&g_py_lock);
        return -1;
    }
    if (!g_py_started) {
        if (Py_IsInitialized()) {
            g_py_started = 1;               /* a host that runs Python itself: share it */
        } else {
            if (libpython_global(g_py_fatal) != 0 || interpreter_start(g_py_fatal) != 0) {
                set_err(err, "%s", g_py_fatal);
                pthread_mutex_unlock(&g_py_lock);
                return -1;
            }
            g_py_started = 1;
            PyEval_SaveThread();            /* release the GIL: from now on PyGILState everywhere */
        }
    }
    *gil = PyGILState_Ensure();
    int rc = -1;
    PyObject *ns = PyDict_New();
    PyObject *res = NULL, *fn = NULL, *mod = NULL;
    if (ns && PyDict_SetItemString(ns, "__builtins__", PyEval_GetBuiltins()) == 0)
        res = PyRun_String(bootstrap_src, Py_file_input, ns, ns);
    if (res)
        fn = PyDict_GetItemString(ns, "bootstrap");         /* borrowed */
    if (fn)
        mod = PyObject_CallFunction(fn, "yss", init_config, LBD_VENV, LBD_REPO);
    if (mod) {
        if (!g_falco) {
            g_falco = mod;
            mod = NULL;
        }
        rc = 0;
    } else {
        py_err(err, "cannot load lbd");
    }
    Py_XDECREF(mod);
    Py_XDECREF(res);
    Py_XDECREF(ns);
    pthread_mutex_unlock(&g_py_lock);
    if (rc != 0)
        PyGILState_Release(*gil);
    return rc;
}

/* ---- identity --------------------------------------------------------------------------------- */

EXPORT const char *plugin_get_required_api_version(void) { return LBD_REQUIRED_API_VERSION; }
EXPORT const char *plugin_get_version(void) { return LBD_PLUGIN_VERSION; }
EXPORT const char *plugin_get_name(void) { return LBD_PLUGIN_NAME; }
EXPORT const char *plugin_get_description(void) { return LBD_PLUGIN_DESCRIPTION; }
EXPORT const char *plugin_get_contact(void) { return LBD_PLUGIN_CONTACT; }
EXPORT uint32_t plugin_get_id(void) { return LBD_PLUGIN_ID; }
EXPORT const char *plugin_get_event_source(void) { return LBD_EVENT_SOURCE; }
EXPORT const char *plugin_get_fields(void) { return lbd_fields_json; }

/* Baked from lbd.config.init_schema(): Falco asks for it before plugin_init, when no Python runs. */
EXPORT const char *plugin_get_init_schema(ss_plugin_schema_type *schema_type)
{
    if (schema_type)
        *schema_type = SS_PLUGIN_SCHEMA_JSON;
    return lbd_init_schema_json;
}

EXPORT const char *plugin_get_last_error(ss_plugin_t *s)
{
    return s ? ((struct lbd_state *)s)->err : "lbd: no plugin state";
}

/* ---- init / destroy ----------------------------------------------------------------------------- */

EXPORT ss_plugin_t *plugin_init(const ss_plugin_init_input *in, ss_plugin_rc *rc)
{
    struct lbd_state *s = calloc(1, sizeof(*s));
    ss_plugin_rc dummy;
    if (!rc)
        rc = &dummy;
    if (!s) {
        *rc = SS_PLUGIN_FAILURE;
        return NULL;
    }
    lbd_extractor_init(&s->x, 0);
    pthread_mutex_init(&s->metrics_lock, NULL);
    if (in) {
        s->owner = in->owner;
        s->log_fn = in->log_fn;             /* API 3.3.0 and later; lbd requires 3.6.0 */
    }
    const char *config = in && in->config ? in->config : "";
    PyGILState_STATE gil;
    if (python_enter_init(config, s->err, &gil) != 0) {
        *rc = SS_PLUGIN_FAILURE;            /* the state carries the message for get_last_error */
        return s;
    }
    PyObject *cap = PyCapsule_New(s, "lbd.falco.state", NULL);
    PyObject *logf = cap && s->log_fn ? PyCFunction_New(&falco_log_def, cap) : NULL;
    PyObject *st = cap ? PyObject_CallMethod(g_falco, "plugin_init", "yO", config, logf ? logf : Py_None) : NULL;
    Py_XDECREF(logf);
    Py_XDECREF(cap);
    PyObject *limit = st ? PyObject_GetAttrString(st, "str_max_size") : NULL;
    unsigned long long str_max = limit ? PyLong_AsUnsignedLongLong(limit) : 0;
    PyObject *secret = st && !PyErr_Occurred() ? PyObject_GetAttrString(st, "secret_pattern_bytes") : NULL;
    char *sp = NULL;
    Py_ssize_t spn = 0;
    if (!st || !limit || !secret || PyErr_Occurred() || PyBytes_AsStringAndSize(secret, &sp, &spn) != 0 ||
        (size_t)spn > sizeof(s->x.secret)) {
        if (!PyErr_Occurred() && secret)
            PyErr_SetString(PyExc_ValueError, "init_config.secret_pattern: too long");
        py_err(s->err, "init");
        Py_XDECREF(st);
        Py_XDECREF(limit);
        Py_XDECREF(secret);
        PyGILState_Release(gil);
        *rc = SS_PLUGIN_FAILURE;
        return s;
    }
    memcpy(s->x.secret, sp, (size_t)spn);
    s->x.secret_len = (size_t)spn;
    Py_DECREF(secret);
    Py_DECREF(limit);
    s->py = st;
    s->x.str_max = str_max;
    PyGILState_Release(gil);
    *rc = SS_PLUGIN_SUCCESS;
    return s;
}

static void instance_free(struct lbd_instance *h)   /* GIL held */
{
    PyObject *r = PyObject_CallMethod(h->py, "close", NULL);
    if (!r)
        py_err(h->s->err, "close");
    Py_XDECREF(r);
    Py_XDECREF(h->next);
    Py_XDECREF(h->py);
    memset(&h->s->x.view, 0, sizeof(h->s->x.view));
    h->s->inst = NULL;
    free(h->out);
    free(h);
}

EXPORT void plugin_destroy(ss_plugin_t *sp)
{
    struct lbd_state *s = sp;
    if (!s)
        return;
    if (s->py || s->inst) {
        PyGILState_STATE gil = PyGILState_Ensure();
        if (s->inst)
            instance_free(s->inst);
        if (s->py) {
            PyObject *r = PyObject_CallMethod(s->py, "destroy", NULL);
            if (!r)
                PyErr_Clear();
            Py_XDECREF(r);
            Py_CLEAR(s->py);
        }
        PyGILState_Release(gil);
    }
    lbd_extractor_free(&s->x);
    for (uint32_t i = 0; i < s->nmetrics; i++)
        free(s->metric_names[i]);
    free(s->metric_names);
    free(s->metrics);
    pthread_mutex_destroy(&s->metrics_lock);
    free(s->open_params);
    free(s);
}

/* ---- event sourcing ----------------------------------------------------------------------------- */

EXPORT const char *plugin_list_open_params(ss_plugin_t *sp, ss_plugin_rc *rc)
{
    struct lbd_state *s = sp;
    ss_plugin_rc dummy;
    if (!rc)
        rc = &dummy;
    *rc = SS_PLUGIN_FAILURE;
    if (!s)
        return NULL;
    if (!s->py) {
        set_err(s->err, "list_open_params: the plugin is not initialised");
        return NULL;
    }
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *r = PyObject_CallMethod(s->py, "list_open_params", NULL);
    const char *text = r ? PyUnicode_AsUTF8(r) : NULL;
    char *copy = text ? strdup(text) : NULL;
    if (!text)
        py_err(s->err, "list_open_params");
    Py_XDECREF(r);
    PyGILState_Release(gil);
    if (!copy) {
        if (text)
            set_err(s->err, "list_open_params: out of memory");
        return NULL;
    }
    free(s->open_params);
    s->open_params = copy;
    *rc = SS_PLUGIN_SUCCESS;
    return copy;
}

EXPORT ss_instance_t *plugin_open(ss_plugin_t *sp, const char *params, ss_plugin_rc *rc)
{
    struct lbd_state *s = sp;
    ss_plugin_rc dummy;
    if (!rc)
        rc = &dummy;
    *rc = SS_PLUGIN_FAILURE;
    if (!s)
        return NULL;
    if (!s->py) {
        /* keep the init error visible: Falco may ask get_last_error after a failed open too */
        if (!s->err[0])
            set_err(s->err, "open: the plugin is not initialised");
        return NULL;
    }
    if (s->inst) {
        set_err(s->err, "open: a capture is already open on this plugin state; close it first");
        return NULL;
    }
    struct lbd_instance *h = calloc(1, sizeof(*h));
    if (!h) {
        set_err(s->err, "open: out of memory");
        return NULL;
    }
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *inst = PyObject_CallMethod(s->py, "open", "y", params ? params : "");
    PyObject *next = inst ? PyObject_GetAttrString(inst, "next") : NULL;
    PyObject *env = next ? PyObject_GetAttrString(inst, "capture_env") : NULL;
    int capture_env = env ? PyObject_IsTrue(env) : -1;
    Py_XDECREF(env);
    if (!inst || !next || capture_env < 0) {
        Py_XDECREF(next);
        py_err(s->err, "open");
        if (inst) {
            PyObject *r = PyObject_CallMethod(inst, "close", NULL);
            if (!r)
                PyErr_Clear();
            Py_XDECREF(r);
        }
        Py_XDECREF(inst);
        PyGILState_Release(gil);
        free(h);
        return NULL;
    }
    PyGILState_Release(gil);
    h->s = s;
    h->py = inst;
    h->next = next;
    h->tid = (long)gettid();                /* the thread that opened: Instance knows it already */
    s->inst = h;
    memset(&s->c, 0, sizeof(s->c));
    memset(&s->x.view, 0, sizeof(s->x.view));
    s->x.capture_env = capture_env;
    *rc = SS_PLUGIN_SUCCESS;
    return h;
}

EXPORT void plugin_close(ss_plugin_t *sp, ss_instance_t *hp)
{
    struct lbd_instance *h = hp;
    (void)sp;
    if (!h)
        return;
    PyGILState_STATE gil = PyGILState_Ensure();
    instance_free(h);
    PyGILState_Release(gil);
}

#define RELAXED_ADD(x, v) __atomic_fetch_add(&(x), (v), __ATOMIC_RELAXED)

/* The thread calling next_batch changed (Falco may move the source to another thread): its
 * syscalls are the plugin's own too (filter_own).  GIL held. */
static void own_thread(struct lbd_instance *h)
{
    long tid = (long)gettid();
    if (tid == h->tid)
        return;
    PyObject *r = PyObject_CallMethod(h->py, "add_own_tid", "l", tid);
    if (!r)
        PyErr_Clear();                      /* best effort: the capture goes on */
    Py_XDECREF(r);
    h->tid = tid;
}

EXPORT ss_plugin_rc plugin_next_batch(ss_plugin_t *sp, ss_instance_t *hp, uint32_t *nevts,
                                      ss_plugin_event ***evts)
{
    struct lbd_state *s = sp;
    struct lbd_instance *h = hp;
    unsigned int n = 0;
    unsigned long long ptrs = 0, enrich = 0, strtab = 0, strtab_len = 0, fdtab = 0, fdtab_len = 0, mask = 0;
    *nevts = 0;
    *evts = NULL;
    if (!s || !h) {
        if (s)
            set_err(s->err, "next_batch: no open capture");
        return SS_PLUGIN_FAILURE;
    }
    /* the batch is about to be refilled: events of the last one are no longer ours to read */
    memset(&s->x.view, 0, sizeof(s->x.view));
    PyGILState_STATE gil = PyGILState_Ensure();
    own_thread(h);
    PyObject *r = PyObject_CallNoArgs(h->next);
    if (r == Py_None) {                     /* a replayed capture file is done */
        Py_DECREF(r);
        PyGILState_Release(gil);
        return SS_PLUGIN_EOF;
    }
    int ok = r && PyArg_ParseTuple(r, "IKKKKKKK;Instance.next() returned an unexpected tuple", &n, &ptrs,
                                   &enrich, &strtab, &strtab_len, &fdtab, &fdtab_len, &mask);
    if (!ok)
        py_err(s->err, "next_batch");
    Py_XDECREF(r);
    PyGILState_Release(gil);
    if (!ok)
        return SS_PLUGIN_FAILURE;
    if (!n)
        return SS_PLUGIN_TIMEOUT;           /* Instance.next() already waited batch_timeout_ms */
    if (n > h->out_cap) {
        uint64_t *out = realloc(h->out, (size_t)n * sizeof(*out));
        if (!out) {
            set_err(s->err, "next_batch: out of memory for %u event pointers", n);
            return SS_PLUGIN_FAILURE;
        }
        h->out = out;
        h->out_cap = n;
    }
    /* Falco's list: the batch's events less the state records and what the filter removed. */
    const uint64_t *all = (const uint64_t *)(uintptr_t)ptrs;
    const uint8_t *keep = (const uint8_t *)(uintptr_t)mask;
    uint32_t m = 0, state = 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct lbd_hdr *hd = (const struct lbd_hdr *)(uintptr_t)(all[i] + LBD_FALCO_PREFIX);
        if (hd->flags & LBD_F_STATE)
            state++;
        else if (!keep || keep[i])
            h->out[m++] = all[i];
    }
    RELAXED_ADD(s->c.hidden_state, state);
    RELAXED_ADD(s->c.filtered, n - state - m);
    if (!m)
        return SS_PLUGIN_TIMEOUT;           /* nothing for Falco in this batch: ask again */
    char why[256];
    /* The view is the whole batch (its enrichment rows follow the batch's events, one each):
     * the extractor finds an event among all of them. */
    if (lbd_view_set(&s->x, all, n, (const void *)(uintptr_t)enrich, (const char *)(uintptr_t)strtab,
                     strtab_len, (const void *)(uintptr_t)fdtab, fdtab_len, why, sizeof(why)) != 0 &&
        !RELAXED_ADD(s->c.enrich_rejected, 1)) {
        /* not the contract: this batch's events carry the record's values only */
        char msg[400];
        snprintf(msg, sizeof(msg), "enrichment arrays rejected (%s); events carry the kernel's values", why);
        falco_log(s, SS_PLUGIN_LOG_SEV_ERROR, msg);
    }
    RELAXED_ADD(s->c.handed, m);
    RELAXED_ADD(s->c.batches, 1);
    *nevts = m;
    *evts = (ss_plugin_event **)h->out;
    return SS_PLUGIN_SUCCESS;
}

/* ---- metrics ------------------------------------------------------------------------------------ */

/* The C counters, then Python's (lbd.falco.PluginState.metrics(): [(name, value, monotonic)], the
 * kernel's, the rings' and the engine's counters of the open capture, or of the last one). */
static const struct {
    const char *name;
    size_t off;
} c_metrics[] = {
    {"events_handed", offsetof(struct lbd_counters, handed)},
    {"events_hidden_state", offsetof(struct lbd_counters, hidden_state)},
    {"events_filtered_user", offsetof(struct lbd_counters, filtered)},
    {"batches", offsetof(struct lbd_counters, batches)},
    {"enrich_rejected_batches", offsetof(struct lbd_counters, enrich_rejected)},
};
#define N_C_METRICS (sizeof(c_metrics) / sizeof(c_metrics[0]))

EXPORT ss_plugin_metric *plugin_get_metrics(ss_plugin_t *sp, uint32_t *num_metrics)
{
    struct lbd_state *s = sp;
    *num_metrics = 0;
    if (!s || !s->py)
        return NULL;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *list = PyObject_CallMethod(s->py, "metrics", NULL);
    PyObject *seq = list ? PySequence_Fast(list, "metrics() is not a sequence") : NULL;
    Py_ssize_t np = seq ? PySequence_Fast_GET_SIZE(seq) : 0;
    if (!seq)
        PyErr_Clear();                      /* Falco's metrics go on with the C counters */
    pthread_mutex_lock(&s->metrics_lock);
    for (uint32_t i = 0; i < s->nmetrics; i++)
        free(s->metric_names[i]);
    s->nmetrics = 0;
    size_t cap = N_C_METRICS + (size_t)np;
    ss_plugin_metric *m = realloc(s->metrics, cap * sizeof(*m));
    if (m)
        s->metrics = m;
    char **names = m ? realloc(s->metric_names, cap * sizeof(*names)) : NULL;
    if (names)
        s->metric_names = names;
    if (m && names) {
        uint32_t k = 0;
        for (size_t i = 0; i < N_C_METRICS; i++, k++) {
            names[k] = strdup(c_metrics[i].name);
            m[k].name = names[k];
            m[k].type = SS_PLUGIN_METRIC_TYPE_MONOTONIC;
            m[k].value_type = SS_PLUGIN_METRIC_VALUE_TYPE_U64;
            m[k].value.u64 = __atomic_load_n((uint64_t *)((char *)&s->c + c_metrics[i].off), __ATOMIC_RELAXED);
        }
        for (Py_ssize_t i = 0; i < np; i++) {
            PyObject *t = PySequence_Fast_GET_ITEM(seq, i);      /* borrowed */
            const char *name;
            PyObject *val;
            int mono;
            if (!PyArg_ParseTuple(t, "sOp", &name, &val, &mono)) {
                PyErr_Clear();
                continue;
            }
            memset(&m[k].value, 0, sizeof(m[k].value));
            if (PyFloat_Check(val)) {
                m[k].value.d = PyFloat_AsDouble(val);
                m[k].value_type = SS_PLUGIN_METRIC_VALUE_TYPE_D;
            } else {
                m[k].value.u64 = PyLong_AsUnsignedLongLongMask(val);
                m[k].value_type = SS_PLUGIN_METRIC_VALUE_TYPE_U64;
            }
            if (PyErr_Occurred()) {
                PyErr_Clear();
                continue;
            }
            names[k] = strdup(name);
            m[k].name = names[k];
            m[k].type = mono ? SS_PLUGIN_METRIC_TYPE_MONOTONIC : SS_PLUGIN_METRIC_TYPE_NON_MONOTONIC;
            k++;
        }
        int oom = 0;
        for (uint32_t i = 0; i < k; i++)
            oom |= !names[i];
        if (oom) {                          /* out of memory: no metrics this time */
            for (uint32_t i = 0; i < k; i++)
                free(names[i]);
            k = 0;
        }
        s->nmetrics = k;
    }
    uint32_t count = s->nmetrics;
    ss_plugin_metric *out = s->metrics;
    pthread_mutex_unlock(&s->metrics_lock);
    Py_XDECREF(seq);
    Py_XDECREF(list);
    PyGILState_Release(gil);
    *num_metrics = count;
    return count ? out : NULL;
}

/* ---- field extraction ---------------------------------------------------------------------------- */

EXPORT ss_plugin_rc plugin_extract_fields(ss_plugin_t *sp, const ss_plugin_event_input *ev,
                                          const ss_plugin_field_extract_input *in)
{
    struct lbd_state *s = sp;
    if (!s || !ev || !in)
        return SS_PLUGIN_FAILURE;
    if (!s->py) {
        set_err(s->err, "extract_fields: the plugin is not initialised");
        return SS_PLUGIN_FAILURE;
    }
    return lbd_extract(&s->x, ev->evt, in->num_fields, in->fields, s->err, sizeof(s->err));
}
