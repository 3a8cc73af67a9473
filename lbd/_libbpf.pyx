# cython: language_level=3
"""lbd's libbpf loader: open a CO-RE object, size its maps, load, attach, hand out map fds, detach.

libbpf (built as a static -fPIC library by scripts/build_libbpf.sh and linked into this module)
does the ELF parsing, the CO-RE relocations against the running kernel's BTF, the verifier round
trip and the attachment; this module is the thin Cython layer in front of it, in named phases
(STYLE.md): open -> map sizes -> load -> attach.  Each phase undoes its own work when it fails, and
close() undoes all of them (links destroyed first, then the object: programs and maps closed).

Errors: LoadError with one line naming the phase, the program or map, the errno text and the last
lines libbpf printed (the verifier's last line included), captured through libbpf's print hook
instead of going to stderr.
"""
from libc.errno cimport errno
from libc.stdint cimport uint32_t
from libc.string cimport strerror

import os


cdef extern from "<bpf/libbpf.h>" nogil:
    struct bpf_object:
        pass
    struct bpf_program:
        pass
    struct bpf_map:
        pass
    struct bpf_link:
        pass
    struct bpf_object_open_opts:
        size_t sz

    bpf_object *bpf_object__open_file(const char *path, const bpf_object_open_opts *opts)
    int bpf_object__load(bpf_object *obj)
    void bpf_object__close(bpf_object *obj)
    bpf_program *bpf_object__next_program(const bpf_object *obj, bpf_program *prog)
    bpf_map *bpf_object__next_map(const bpf_object *obj, const bpf_map *map)
    bpf_map *bpf_object__find_map_by_name(const bpf_object *obj, const char *name)
    const char *bpf_program__name(const bpf_program *prog)
    int bpf_program__fd(const bpf_program *prog)
    int bpf_program__set_autoload(bpf_program *prog, bint autoload)
    bpf_link *bpf_program__attach(const bpf_program *prog)
    int bpf_link__destroy(bpf_link *link)
    const char *bpf_map__name(const bpf_map *map)
    int bpf_map__fd(const bpf_map *map)
    int bpf_map__set_max_entries(bpf_map *map, uint32_t max_entries)
    uint32_t bpf_map__max_entries(const bpf_map *map)
    long libbpf_get_error(const void *ptr)
    int libbpf_num_possible_cpus()

cdef extern from *:
    """
    #include <stdarg.h>
    #include <stdio.h>
    #include <string.h>
    /* libbpf's messages (warnings and the verifier log on failure) go to a small ring of lines
     * instead of stderr; a LoadError quotes the last ones.  libbpf calls this from the thread that
     * loads, under the GIL (the load runs with the GIL held), so no lock is needed. */
    #define LBD_LOG_LINES 64
    #define LBD_LOG_LEN 512
    static char lbd_log[LBD_LOG_LINES][LBD_LOG_LEN];
    static unsigned lbd_log_next;
    static int lbd_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args)
    {
        char buf[4096];
        if (level == LIBBPF_DEBUG)
            return 0;
        int n = vsnprintf(buf, sizeof(buf), fmt, args);
        if (n < 0)
            return 0;
        char *line = buf, *nl;
        while (*line) {
            nl = strchr(line, '\\n');
            if (nl)
                *nl = 0;
            if (*line) {
                size_t len = strlen(line);
                char *dst = lbd_log[lbd_log_next % LBD_LOG_LINES];
                if (len > LBD_LOG_LEN - 1)
                    len = LBD_LOG_LEN - 1;      /* a long verifier line: its start */
                memcpy(dst, line, len);
                dst[len] = 0;
                lbd_log_next++;
            }
            if (!nl)
                break;
            line = nl + 1;
        }
        return 0;
    }
    static void lbd_libbpf_quiet(void) { libbpf_set_print((libbpf_print_fn_t)lbd_libbpf_print); }
    static unsigned lbd_log_count(void) { return lbd_log_next; }
    static const char *lbd_log_line(unsigned i) { return lbd_log[i % LBD_LOG_LINES]; }
    static void lbd_log_clear(void) { lbd_log_next = 0; }
    """
    void lbd_libbpf_quiet()
    unsigned lbd_log_count()
    const char *lbd_log_line(unsigned i)
    void lbd_log_clear()

lbd_libbpf_quiet()


class LoadError(OSError):
    """The object could not be opened, loaded or attached; str() is one line saying why."""


def _log_tail(int n=3):
    """The last n lines libbpf printed (verifier last lines first to go), joined with ' | '."""
    cdef unsigned count = lbd_log_count(), i
    lines = []
    start = count - n if count > <unsigned>n else 0
    for i in range(start, count):
        line = lbd_log_line(i).decode("utf-8", "replace").strip()
        if line and not line.startswith("-- "):
            lines.append(line)
    return " | ".join(lines)


def possible_cpus():
    """The number of possible CPUs (libbpf_num_possible_cpus: per-CPU maps have this many values)."""
    cdef int n = libbpf_num_possible_cpus()
    if n <= 0:
        raise OSError(-n, f"cannot count the possible CPUs: {os.strerror(-n)}")
    return n


cdef class BpfObject:
    """One loaded BPF object file.

    Invariants: between a successful load() and close(), `obj` is the loaded object whose maps have
    fds; `links` holds the attachment of each program attach() attached.  close() destroys the links
    (detach), then closes the object (programs and maps: the kernel frees them when no other fd
    holds them); it is idempotent and runs from __dealloc__ too.
    """
    cdef bpf_object *obj
    cdef list links            # addresses of bpf_link, destroyed by close()
    cdef dict by_prog          # program name -> its bpf_link address (in links)
    cdef readonly str path
    cdef readonly bint loaded

    def __cinit__(self):
        self.obj = NULL
        self.links = []
        self.by_prog = {}
        self.loaded = False

    def __init__(self, path):
        """Open (parse) the object file; nothing is in the kernel yet."""
        self.path = os.fspath(path)
        lbd_log_clear()
        cdef bytes bpath = self.path.encode()
        cdef bpf_object *o = bpf_object__open_file(bpath, NULL)
        cdef long err = libbpf_get_error(o)
        if err or o == NULL:
            raise LoadError(-err, f"open {self.path}: {os.strerror(-err)}" + self._why())
        self.obj = o

    def _why(self):
        tail = _log_tail()
        return f" ({tail})" if tail else ""

    cdef bpf_map *_map(self, str name) except NULL:
        if self.obj == NULL:
            raise ValueError("the BPF object is closed")
        cdef bpf_map *m = bpf_object__find_map_by_name(self.obj, name.encode())
        if m == NULL:
            raise KeyError(f"no map {name!r} in {self.path}")
        return m

    def set_max_entries(self, str name, uint32_t n):
        """Before load(): the size of map `name`.  (Not of an inner map's template: libbpf 1.1
        crashes on that, and ring buffer inner maps need not match their template's size.)"""
        if self.loaded:
            raise ValueError(f"map {name}: sizes are set before the object is loaded")
        cdef bpf_map *m = self._map(name)
        cdef int rc = bpf_map__set_max_entries(m, n)
        if rc:
            raise LoadError(-rc, f"map {name}: cannot set {n} entries: {os.strerror(-rc)}")

    def max_entries(self, str name):
        return bpf_map__max_entries(self._map(name))

    def set_autoload(self, str name, bint autoload):
        """Before load(): load program `name` or not."""
        cdef bpf_program *p = self._prog(name)
        bpf_program__set_autoload(p, autoload)

    cdef bpf_program *_prog(self, str name) except NULL:
        if self.obj == NULL:
            raise ValueError("the BPF object is closed")
        cdef bpf_program *p = bpf_object__next_program(self.obj, NULL)
        while p != NULL:
            if bpf_program__name(p).decode() == name:
                return p
            p = bpf_object__next_program(self.obj, p)
        raise KeyError(f"no program {name!r} in {self.path}")

    def load(self):
        """Relocate (CO-RE) and load every program and map into the kernel."""
        if self.obj == NULL:
            raise ValueError("the BPF object is closed")
        lbd_log_clear()
        cdef int rc = bpf_object__load(self.obj)
        if rc:
            raise LoadError(-rc, f"load {os.path.basename(self.path)}: {os.strerror(-rc)}" + self._why())
        self.loaded = True

    def attach(self):
        """Attach every loaded program at the place its section names; undoes itself on failure."""
        if not self.loaded:
            raise ValueError("attach() before load()")
        cdef bpf_program *p = bpf_object__next_program(self.obj, NULL)
        cdef bpf_link *link
        cdef long err
        done = []
        while p != NULL:
            if bpf_program__fd(p) >= 0:
                lbd_log_clear()
                link = bpf_program__attach(p)
                err = libbpf_get_error(link)
                if err or link == NULL:
                    name = bpf_program__name(p).decode()
                    for addr in done:
                        bpf_link__destroy(<bpf_link *><size_t>addr)
                    raise LoadError(-err, f"attach {name}: {os.strerror(-err)}" + self._why())
                done.append(<size_t>link)
                self.by_prog[bpf_program__name(p).decode()] = <size_t>link
            p = bpf_object__next_program(self.obj, p)
        self.links.extend(done)

    def detach(self):
        """Destroy every attachment (the programs stay loaded until close())."""
        links, self.links = self.links, []
        self.by_prog = {}
        for addr in links:
            bpf_link__destroy(<bpf_link *><size_t>addr)

    def detach_program(self, str name):
        """Detach one program (benchmarks: time the syscall path without the probe, in one run)."""
        addr = self.by_prog.pop(name, None)
        if addr is None:
            return
        self.links.remove(addr)
        bpf_link__destroy(<bpf_link *><size_t>addr)

    def attach_program(self, str name):
        """Attach one loaded program again (after detach_program)."""
        if name in self.by_prog:
            return
        cdef bpf_program *p = self._prog(name)
        lbd_log_clear()
        cdef bpf_link *link = bpf_program__attach(p)
        cdef long err = libbpf_get_error(link)
        if err or link == NULL:
            raise LoadError(-err, f"attach {name}: {os.strerror(-err)}" + self._why())
        self.links.append(<size_t>link)
        self.by_prog[name] = <size_t>link

    def map_fd(self, str name):
        """The fd of map `name` (owned by this object: valid until close())."""
        cdef int fd = bpf_map__fd(self._map(name))
        if fd < 0:
            raise ValueError(f"map {name} is not loaded")
        return fd

    def map_names(self):
        """Names of the object's maps (internal ones such as .rodata included)."""
        out = []
        if self.obj == NULL:
            return out
        cdef const bpf_map *m = bpf_object__next_map(self.obj, NULL)
        while m != NULL:
            out.append(bpf_map__name(m).decode())
            m = bpf_object__next_map(self.obj, m)
        return out

    def program_fds(self):
        """{program name: fd} of the loaded programs."""
        out = {}
        if self.obj == NULL:
            return out
        cdef bpf_program *p = bpf_object__next_program(self.obj, NULL)
        while p != NULL:
            if bpf_program__fd(p) >= 0:
                out[bpf_program__name(p).decode()] = bpf_program__fd(p)
            p = bpf_object__next_program(self.obj, p)
        return out

    @property
    def attached(self):
        return len(self.links)

    def close(self):
        self.detach()
        cdef bpf_object *o = self.obj
        self.obj = NULL
        self.loaded = False
        if o != NULL:
            bpf_object__close(o)

    def __dealloc__(self):
        for addr in self.links:
            bpf_link__destroy(<bpf_link *><size_t>addr)
        self.links = []
        if self.obj != NULL:
            bpf_object__close(self.obj)
            self.obj = NULL

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
