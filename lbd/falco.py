"""The Python side of lbd's Falco plugin (build/liblbd.so, sources in plugin/).

liblbd.so embeds CPython inside Falco and drives this module; everything per event stays in C.

    plugin_init(init_config)        -> PluginState    (validates init_config, sets up logging)
    PluginState.open(open_params)   -> Instance       (Config.from_plugin, lbd.Collector: probe + ring)
    Instance.next()                 -> tuple of ints  (one call per next_batch: fill, enrich, write)
    Instance.close(), PluginState.destroy()

Identity (documented in the README's Falco section; never change it, Falco's state and capture
files key on it): plugin name ``lbd``, event source ``linux_ebpf``, plugin id ``27182`` (the first
digits of e, outside the ids the Falco registry hands out so far; 999 is for development only).

The field table ``FIELDS`` is the one definition of the plugin's fields: plugin/gen_tables.py turns
it into the ``get_fields`` JSON and the C field ids (plugin/lbd_tables.h, GENERATED), and the
README lists it.  Seed fields keep the seed's names, types and list rendering (a one-value list
prints ``(3(close))`` in Falco output, as in SPEC.md table 4); the typed fields lbd adds are
scalars.

Lifetimes: the tuple ``Instance.next()`` returns holds addresses of the collector's Batch (event
pointers, records) and of its enrichment arrays; they stay valid until the next ``next()`` or
``close()`` (the Batch is reused; the Instance keeps the enrichment arrays referenced).
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "PLUGIN_ID", "PLUGIN_NAME", "EVENT_SOURCE", "REQUIRED_API_VERSION", "Field", "FIELDS",
    "fields_json", "library_path", "falco_config_fragment", "plugin_init", "PluginState", "Instance",
]

PLUGIN_ID = 27182
PLUGIN_NAME = "lbd"
EVENT_SOURCE = "linux_ebpf"
#: lowest plugin API the library needs: init input, extract input and every field type it uses
#: (string, uint64, bool, reltime, ipaddr) are all in 3.0.0
REQUIRED_API_VERSION = "3.0.0"
CONTACT = "https://github.com/lbd-project/lbd"
DESCRIPTION = ("Linux behavior detection: every Linux system call captured in the kernel with eBPF, "
               "arguments decoded (paths, strings, socket addresses, flags, fds), as Falco events")

log = logging.getLogger("lbd.falco")


# ---- the field table ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Field:
    """One extractable field.  ``arg``: None, ``"keyvalue"`` (optional ``[key]`` / ``[value]``) or
    ``"name"`` (required ``[NAME]``)."""

    name: str
    type: str
    desc: str
    is_list: bool = False
    arg: str | None = None
    display: str = ""
    seed: bool = False

    def as_json(self) -> dict:
        d: dict = {"name": self.name, "type": self.type, "desc": self.desc}
        if self.display:
            d["display"] = self.display
        if self.is_list:
            d["isList"] = True
        if self.arg == "keyvalue":
            d["arg"] = {"isRequired": False, "isKey": True}
        elif self.arg == "name":
            d["arg"] = {"isRequired": True, "isKey": True}
        return d


def _seed(name: str, desc: str, display: str, *, arg: str | None = None, is_list: bool = True) -> Field:
    return Field(name, "string", desc, is_list=is_list, arg=arg, display=display, seed=True)


FIELDS: tuple[Field, ...] = (
    # SPEC.md table 4: the seed's fields, names and rendering unchanged
    _seed("linux.type", "The syscall as nr(name), e.g. 3(close); [key]: the number, [value]: the name.",
          "Syscall", arg="keyvalue"),
    _seed("linux.user", "The task's user as uid(name), e.g. 0(root); [key]: the uid, [value]: the name.",
          "User", arg="keyvalue"),
    _seed("linux.group", "The task's group as gid(name), e.g. 0(root); [key]: the gid, [value]: the name.",
          "Group", arg="keyvalue"),
    _seed("linux.fds", "The process's open files, one fd(path) per fd, e.g. 0(/dev/null); "
          "[key]: the fds, [value]: the paths.", "Open files", arg="keyvalue"),
    _seed("linux.args", "All arguments of the syscall as lbd's normal output prints them, "
          "e.g. fd=43 for close.", "Arguments"),
    _seed("linux.time", "Event time (local), e.g. 2025-06-12 09:43:49.410583558.", "Time", is_list=False),
    _seed("linux.dir", "Direction: > syscall enter, < syscall exit.", "Direction"),
    _seed("linux.comm", "The thread's command name (comm).", "Command"),
    _seed("linux.pid", "Process id (tgid) of the task.", "PID"),
    _seed("linux.tid", "Thread id of the task.", "TID"),
    _seed("linux.ppid", "Parent process id.", "Parent PID"),
    _seed("linux.cmdline", "The process's full command line.", "Command line"),
    _seed("linux.fullpath", "Absolute path of the process's executable.", "Executable"),
    # typed fields lbd adds (scalars)
    Field("linux.syscall", "string", "The syscall's name, e.g. openat (sched_process_* for the "
          "process-tree events).", display="Syscall name"),
    Field("linux.syscall_id", "uint64", "The syscall's number (1000-1002 for the process-tree events).",
          display="Syscall number"),
    Field("linux.res", "uint64", "Return value of a syscall that succeeded (res >= 0); no value for a "
          "failed one (see linux.errno) or an enter event.", display="Return value"),
    Field("linux.failed", "bool", "True when the syscall failed (returned -errno); no value for an "
          "enter event.", display="Failed"),
    Field("linux.errno", "uint64", "errno of a failed syscall (e.g. 2 for ENOENT), 0 when it "
          "succeeded; no value for an enter event.", display="errno"),
    Field("linux.latency", "reltime", "Time the syscall took, from enter to exit (0 for enter "
          "events).", display="Latency"),
    Field("linux.pid.num", "uint64", "linux.pid as a number.", display="PID number"),
    Field("linux.tid.num", "uint64", "linux.tid as a number.", display="TID number"),
    Field("linux.ppid.num", "uint64", "linux.ppid as a number.", display="Parent PID number"),
    Field("linux.user.num", "uint64", "The task's uid.", display="UID"),
    Field("linux.group.num", "uint64", "The task's gid.", display="GID"),
    Field("linux.pcomm", "string", "The parent process's command name.", display="Parent command"),
    Field("linux.arg", "string", "One argument by name, as linux.args prints it, e.g. "
          "linux.arg[pathname]; no value when the syscall has no such argument.",
          arg="name", display="Argument"),
    Field("linux.sockaddr.family", "string", "Family of the syscall's socket address argument "
          "(AF_INET, AF_INET6, AF_UNIX, ...): the peer of connect, sendto, accept, accept4, recvfrom, "
          "the local address of bind.", display="Address family"),
    Field("linux.sockaddr.ip", "ipaddr", "IP address of the syscall's socket address argument "
          "(IPv4 or IPv6).", display="IP address"),
    Field("linux.sockaddr.port", "uint64", "Port of the syscall's socket address argument (IPv4 or "
          "IPv6).", display="Port"),
    Field("linux.sockaddr.path", "string", "Path of the syscall's AF_UNIX socket address argument "
          "(abstract names start with @).", display="Socket path"),
    # container context, from the record header (the kernel reads them: CO-RE, except cgroup_id)
    Field("linux.cgroup_id", "uint64", "The task's cgroup v2 id (the inode of its cgroup directory).",
          display="Cgroup id"),
    Field("linux.pidns", "uint64", "Inode of the task's pid namespace (/proc/PID/ns/pid); no value when "
          "the probe cannot read it (bcc loader).", display="PID namespace"),
    Field("linux.mntns", "uint64", "Inode of the task's mount namespace (/proc/PID/ns/mnt); no value when "
          "the probe cannot read it (bcc loader).", display="Mount namespace"),
    Field("linux.loginuid", "uint64", "The task's audit login uid (4294967295: never set, as for daemons); "
          "no value when the probe cannot read it (bcc loader).", display="Login UID"),
)


def fields_json() -> str:
    """The ``get_fields`` JSON (baked into liblbd.so by plugin/gen_tables.py)."""
    return json.dumps([f.as_json() for f in FIELDS], separators=(",", ":"))


# ---- where the library is, and a falco.yaml fragment -----------------------------------------

_REPO = Path(__file__).resolve().parent.parent


def library_path() -> Path:
    """Absolute path of liblbd.so: ``$LBD_PLUGIN_LIBRARY``, else ``build/liblbd.so`` of this checkout."""
    env = os.environ.get("LBD_PLUGIN_LIBRARY")
    return Path(env).resolve() if env else _REPO / "build" / "liblbd.so"


def falco_config_fragment(init_config: dict | None = None, open_params: dict | None = None) -> str:
    """A falco.yaml fragment that loads lbd's plugin (printed by ``lbd falco-config``)."""
    lib = library_path()
    init = json.dumps(init_config if init_config is not None else {"putfile": False, "str_max_size": 1024})
    params = json.dumps(open_params if open_params is not None else {"drop_failed": False})
    note = "" if lib.is_file() else "# NOTE: not built yet: run `make plugin` in the lbd checkout\n"
    return (
        "# lbd's Falco plugin (event source linux_ebpf, plugin id 27182); run Falco with\n"
        "#   falco -c falco.yaml -r rules.yaml --disable-source syscall\n"
        f"{note}"
        "plugins:\n"
        f"  - name: {PLUGIN_NAME}\n"
        f"    library_path: {lib}\n"
        f"    init_config: {init}\n"
        f"    open_params: '{params}'\n"
        "load_plugins: [lbd]\n"
        "rule_matching: all\n"
    )


# ---- errors ------------------------------------------------------------------------------------

def error_message(exc: BaseException) -> str:
    """One line for get_last_error, without a Python class name: lbd's own errors (configuration,
    selection, probe, files) as they are, anything else marked as unexpected."""
    from lbd.config import ConfigError

    text = " ".join(str(exc).split())
    known = isinstance(exc, (ConfigError, OSError)) or type(exc).__name__ in ("ProbeError", "InterestingError")
    if known and text:
        return text
    if isinstance(exc, RecursionError):
        return "input nested too deep"
    return f"unexpected failure: {text or 'no message'}"


# ---- logging -----------------------------------------------------------------------------------

_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING,
           "ERROR": logging.ERROR, "FATAL": logging.CRITICAL}


def _log_handler(init) -> logging.Handler:
    if init.log_file:
        from lbd.files import PrivateLogHandler

        handler: logging.Handler = PrivateLogHandler(init.log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s lbd[%(process)d] %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(_LEVELS[init.log_level])
    return handler


# ---- plugin state and open instances ----------------------------------------------------------

def plugin_init(init_config: str) -> PluginState:
    """The state behind one plugin_init: raises ConfigError for a bad init_config."""
    return PluginState(init_config)


class PluginState:
    """One initialised plugin: the validated init_config and the log handler.

    Invariant: at most one open Instance at a time (Falco opens one capture per plugin state).
    """

    def __init__(self, init_config: str):
        from lbd.config import Config

        self.init_json = init_config or ""
        self.config = Config.from_plugin(self.init_json, "")   # init_config alone; open_params at open
        self.str_max_size = self.config.init.str_max_size
        self.secret_pattern_bytes = self.config.init.secret_pattern.encode("utf-8", "surrogateescape")
        self.batch_size = self.config.init.batch_size
        self.handler = _log_handler(self.config.init)
        logger = logging.getLogger("lbd")
        logger.addHandler(self.handler)
        logger.setLevel(min(logger.level or logging.CRITICAL, _LEVELS[self.config.init.log_level]))
        self.instance: Instance | None = None
        log.info("lbd %s plugin initialised (python %s, %s)", plugin_version(), sys.version.split()[0], sys.prefix)

    def list_open_params(self) -> str:
        from lbd.config import open_params_list

        return json.dumps(open_params_list())

    def open(self, open_params: str) -> Instance:
        if self.instance is not None:
            raise RuntimeError("a capture is already open for this plugin; close it first")
        from lbd.config import Config

        cfg = Config.from_plugin(self.init_json, open_params or "")
        self.instance = Instance(self, cfg)
        return self.instance

    def destroy(self) -> None:
        if self.instance is not None:
            self.instance.close()
        logging.getLogger("lbd").removeHandler(self.handler)
        self.handler.close()


class Instance:
    """One open capture: the same lbd.Collector as ``lbd run``, plus enrichment and (putfile) the writer.

    Invariants: between __init__ and close() the probe is attached; the tuple ``next()`` returned
    last describes memory this object keeps alive (the collector's batch, the enrichment arrays)
    until the next ``next()`` or ``close()``.  close() is idempotent and also runs on a failed open.

    The putfile output never stops the capture: when it cannot be written (disk full, /dev/full,
    its reader gone) the error is logged once, its events are counted (``putfile_unwritten``) and
    the file is opened again PUTFILE_RETRY_S later.
    """

    PUTFILE_RETRY_S = 10.0

    def __init__(self, state: PluginState, cfg):
        from lbd.collector import Collector

        self.state = state
        self.cfg = cfg
        self.capture_env = cfg.open.capture_env       # read by liblbd.so for linux.args' envp
        self.collector = None
        self.writer = None
        self.putfile_unwritten = 0
        self.putfile_errors = 0
        self._putfile_retry = 0.0
        self._putfile_error = ""
        self.enricher = None
        self._keep: tuple = ()
        # Inside Falco, filter_falco drops Falco's whole process and filter_own the threads that
        # run lbd's code: the one opening the capture and each one that calls next() (next()
        # adds it).
        self._own_tid = threading.get_native_id()
        try:
            self.collector = Collector(cfg, host_pid=os.getpid(), own_tids=[self._own_tid]).__enter__()
            self.collector.batch.plugin_id = PLUGIN_ID     # the collector's batches all take it
            self.enricher = _make_enricher(cfg, self.collector.probe.selection)
            if cfg.init.putfile:
                from lbd.output.writer import open_writer

                self.writer = open_writer(cfg, None).__enter__()
        except BaseException:
            self.close()
            raise
        log.info("capture open: %d syscalls selected, ring %d bytes, batches of %d",
                 len(self.collector.probe.selection), cfg.open.ring_size, self.collector.batch_size)

    def next(self) -> tuple[int, int, int, int, int, int, int]:
        """Fill the batch (waiting up to batch_timeout_ms), enrich it, write it (putfile).

        Returns (n, ptrs, enrich, strtab, strtab_len, fdtab, fdtab_len): n events whose Falco event
        addresses are the first n uint64 at ``ptrs``; then the enrichment arrays' addresses and
        lengths (0, 0 when there are none).  n == 0: nothing arrived in time.
        """
        tid = threading.get_native_id()
        if tid != self._own_tid:     # another Falco thread now runs the source: it is ours too
            self.collector.probe.add_own_tid(tid)
            self._own_tid = tid
        batch = self.collector.next_batch()
        n = len(batch)
        ptrs_arr = batch.ptrs
        if not n:
            self._keep = ()
            return (0, _addr(ptrs_arr), 0, 0, 0, 0, 0)
        enrich = strtab = fdtab = None
        if self.enricher is not None:
            try:
                self.enricher(batch)
                enrich, strtab, fdtab = _checked_enrichment(batch, n)
            except Exception as e:  # enrichment is best effort: the events still go to Falco
                _warn_once(f"enrichment failed, events carry the kernel's values only: {error_message(e)}")
        out = batch.output_mask()
        if self.cfg.init.putfile:
            self._putfile(batch, out)
        if out is not None:
            # state records fed the tables above; Falco gets the others (their pointers still
            # ascend, and the enrichment rows follow them)
            ptrs_arr = np.ascontiguousarray(batch.ptrs[:n][out])
            n = len(ptrs_arr)
            if enrich is not None:
                enrich = np.ascontiguousarray(enrich[:len(out)][out])
            if not n:
                self._keep = ()
                return (0, 0, 0, 0, 0, 0, 0)
        if enrich is None:
            self._keep = (ptrs_arr,)
            return (n, _addr(ptrs_arr), 0, 0, 0, 0, 0)
        self._keep = (ptrs_arr, enrich, strtab, fdtab)
        return (n, _addr(ptrs_arr), _addr(enrich), _addr(strtab), len(strtab), _addr(fdtab), len(fdtab))

    def _putfile(self, batch, mask) -> None:
        """Write the batch (its events with a true mask entry) to the putfile; on failure count
        them and try again later."""
        import time

        from lbd.output.writer import OutputError, open_writer

        n = len(batch) if mask is None else int(np.count_nonzero(mask))
        if self.writer is None:
            if time.monotonic() < self._putfile_retry:
                self.putfile_unwritten += n
                return
            try:
                self.writer = open_writer(self.cfg, None)
            except OutputError as e:
                self.putfile_unwritten += n
                self._putfile_failed(e)
                return
            log.info("putfile: writing to %s again (%d events not written meanwhile)", self.writer.name,
                     self.putfile_unwritten)
        try:
            self.writer.write_batch(batch, mask)
        except OutputError as e:
            writer, self.writer = self.writer, None
            try:
                writer.close()
            except OSError:
                pass
            self.putfile_unwritten += writer.unwritten
            self._putfile_failed(e)

    def _putfile_failed(self, e) -> None:
        import time

        self.putfile_errors += 1
        self._putfile_retry = time.monotonic() + self.PUTFILE_RETRY_S
        msg = str(e)
        if msg != self._putfile_error:          # once per distinct error, not once per batch
            self._putfile_error = msg
            log.error("putfile: %s; the capture goes on, events are counted as not written and the file "
                      "is tried again every %.0f s", msg, self.PUTFILE_RETRY_S)

    def stats(self) -> dict:
        st = self.collector.stats() if self.collector is not None and self.collector.probe else {}
        if self.cfg.init.putfile:
            st = {**st, "putfile_unwritten": self.putfile_unwritten, "putfile_errors": self.putfile_errors}
        return st

    def close(self) -> None:
        self._keep = ()
        writer, self.writer = self.writer, None
        collector, self.collector = self.collector, None
        try:
            if writer is not None:
                writer.__exit__(None, None, None)
                self.putfile_unwritten += writer.unwritten
                if self.putfile_unwritten:
                    log.warning("putfile: %d events were not written to %s", self.putfile_unwritten, writer.name)
        finally:
            if collector is not None:
                collector.close()
            if self.state.instance is self:
                self.state.instance = None


def plugin_version() -> str:
    """The plugin's version: lbd's (get_version)."""
    from lbd import __version__

    return __version__


def _addr(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0]) if len(a) else 0


_warned: set[str] = set()


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        log.warning("%s", msg)


# ---- enrichment ---------------------------------------------------------------------------------
#
# The contract with lbd.enrich (lbd/enrich/layout.py): batch.enrich (ENRICH_DTYPE, one row per
# event), batch.strtab (uint8, NUL after each string), batch.fdtab (FD_DTYPE).  Dtypes and sizes
# are checked here; the offsets in C (liblbd.so, lbd_view_check), once per batch.

_ENRICH_FIELDS = ("ppid", "pcomm_off", "pcomm_len", "user_off", "user_len", "group_off", "group_len",
                  "cmdline_off", "cmdline_len", "fullpath_off", "fullpath_len", "fds_off", "fds_n")
ENRICH_DTYPE = np.dtype([(n, "<u4") for n in _ENRICH_FIELDS])
FD_DTYPE = np.dtype([("fd", "<i4"), ("path_off", "<u4"), ("path_len", "<u4")])


def _make_enricher(cfg, selection):
    """The enrichment step of ``lbd run``: lbd.enrich's Enricher for this configuration and syscall
    selection (its ``enrich(batch)`` sets batch.enrich, batch.strtab, batch.fdtab)."""
    from lbd.enrich import Enricher

    return Enricher.from_config(cfg, selection=selection).enrich


def _checked_enrichment(batch, n: int):
    """(enrich, strtab, fdtab) of a batch: the arrays of the contract, C-contiguous, or ValueError.

    Only the dtypes and sizes are checked here (O(1)); liblbd.so checks every offset in C, once per
    batch, before extract_fields trusts them (lbd_view_check)."""
    enrich = getattr(batch, "enrich", None)
    strtab = getattr(batch, "strtab", None)
    fdtab = getattr(batch, "fdtab", None)
    if enrich is None or strtab is None or fdtab is None:
        raise ValueError("the batch has no enrich/strtab/fdtab arrays")
    if enrich.dtype != ENRICH_DTYPE or fdtab.dtype != FD_DTYPE or strtab.dtype != np.uint8:
        raise ValueError(f"enrichment dtypes differ from the contract: {enrich.dtype}, {strtab.dtype}, {fdtab.dtype}")
    if len(enrich) < n:
        raise ValueError(f"{len(enrich)} enrichment rows for {n} events")
    if not len(strtab):
        raise ValueError("empty strtab: no string can be right")
    return (np.ascontiguousarray(enrich[:n]), np.ascontiguousarray(strtab), np.ascontiguousarray(fdtab))
