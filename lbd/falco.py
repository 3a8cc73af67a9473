"""The Python side of lbd's Falco plugin (build/liblbd.so, sources in plugin/).

liblbd.so embeds CPython inside Falco and drives this module; everything per event stays in C.

    plugin_init(init_config)        -> PluginState    (validates init_config, sets up logging)
    PluginState.open(open_params)   -> Instance       (Config.from_plugin, lbd.Collector: probe + rings)
    Instance.next()                 -> tuple of ints  (one call per next_batch: fill, engine, filter, write)
    PluginState.metrics()           -> [(name, value, monotonic)]   (get_metrics)
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
pointers, records), of the state engine's arrays and of the filter's mask; they stay valid until
the next ``next()`` or ``close()`` (the Batch and the engine's arrays are reused; the Instance keeps
the mask referenced).

Counters: ``PluginState.metrics()`` gives get_metrics the capture's counters (liblbd.so adds its
own); next() warns in Falco's log (log_fn) when records were lost, at most once per DROP_WARN_S,
and close() logs a summary.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


__all__ = [
    "PLUGIN_ID", "PLUGIN_NAME", "EVENT_SOURCE", "REQUIRED_API_VERSION", "Field", "FIELDS",
    "fields_json", "library_path", "falco_config_fragment", "falco_config_merged", "plugin_init", "PluginState",
    "Instance",
]

PLUGIN_ID = 27182
PLUGIN_NAME = "lbd"
EVENT_SOURCE = "linux_ebpf"
#: lowest plugin API the library needs: get_metrics came with 3.6.0 (libs 0.17, Falco 0.38) and the
#: init input's log_fn with 3.3.0; the extract input and every field type it uses are in 3.0.0
REQUIRED_API_VERSION = "3.6.0"
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
    Field("linux.flags", "string", "The symbolic names of a flags or mode argument, by the argument's "
          "name, one per flag: linux.flags[flags] of openat(O_WRONLY|O_CREAT) is (O_WRONLY, O_CREAT), "
          "linux.flags[mode] of chmod 04755 has S_ISUID; use intersects or in; no value for other "
          "arguments.", is_list=True, arg="name", display="Flags"),
    Field("linux.fd", "string", "The name of one open file of the process by its number, as linux.fds "
          "shows it after the event: linux.fd[0] is stdin, e.g. /dev/null or tcp 10.0.0.5:41067->"
          "10.0.0.9:443; no value when the process has no such fd or the event is not enriched.",
          arg="name", display="File"),
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


def _plugin_entry(init_config: dict | None, open_params: dict | None) -> dict:
    return {"name": PLUGIN_NAME, "library_path": str(library_path()),
            "init_config": init_config if init_config is not None else {"putfile": False, "str_max_size": 1024},
            "open_params": json.dumps(open_params if open_params is not None else {"drop_failed": False})}


def _yaml(doc: dict) -> str:
    import yaml

    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=100)


_RUN_NOTE = (
    "# Rules for lbd's events name `source: linux_ebpf` (rules/lbd_rules.yaml, examples/falco/rules.yaml).\n"
    "# Without Falco's own syscall driver: engine.kind nodriver (or --disable-source syscall).\n"
    "# Each matching rule fires with rule_matching: all (a falco.yaml setting, left to you here).\n")


def falco_config_fragment(init_config: dict | None = None, open_params: dict | None = None) -> str:
    """A config.d drop-in that adds lbd's plugin (printed by ``lbd falco-config``).

    Falco 0.41 and later merge the files of ``config_files`` (``/etc/falco/config.d``) with the
    ``append`` strategy by default: a drop-in's lists are appended to falco.yaml's, its scalars
    override.  So the drop-in holds only the two lists, ``plugins`` (lbd's entry) and
    ``load_plugins`` ([lbd]): the plugins falco.yaml loads stay loaded, and no setting of yours is
    changed.  Where a drop-in replaces lists (Falco 0.38-0.40, or a config_files entry with
    ``strategy: override``), use falco_config_merged() instead."""
    lib = library_path()
    note = "" if lib.is_file() else "# NOTE: not built yet: run `make plugin` in the lbd checkout\n"
    return (
        "# lbd's Falco plugin (event source linux_ebpf, plugin id 27182): a drop-in for\n"
        "# /etc/falco/config.d/ (Falco >= 0.41 appends its lists to falco.yaml's `plugins` and\n"
        "# `load_plugins`: the plugins loaded already stay loaded).  Falco 0.38-0.40, or a config_files\n"
        "# entry with `strategy: override`, replace the lists instead: there, use\n"
        "#   lbd falco-config --merge-with /etc/falco/falco.yaml\n"
        + _RUN_NOTE + note
        + _yaml({"plugins": [_plugin_entry(init_config, open_params)], "load_plugins": [PLUGIN_NAME]}))


def falco_config_merged(falco_yaml: str | os.PathLike, init_config: dict | None = None,
                        open_params: dict | None = None) -> str:
    """The ``plugins`` and ``load_plugins`` lists of a falco.yaml with lbd added (an lbd entry it
    has is replaced): a fragment that keeps every plugin it loads whatever the merge strategy
    (``lbd falco-config --merge-with FILE``).  ConfigError when FILE cannot be read as YAML."""
    import yaml

    from lbd.config import ConfigError

    path = os.fspath(falco_yaml)
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f) or {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: the top level is not a mapping of Falco settings")
    plugins = doc.get("plugins") or []
    loads = doc.get("load_plugins") or []
    if not isinstance(plugins, list) or not isinstance(loads, list):
        raise ConfigError(f"{path}: plugins and load_plugins must be lists")
    plugins = [p for p in plugins if not (isinstance(p, dict) and p.get("name") == PLUGIN_NAME)]
    plugins.append(_plugin_entry(init_config, open_params))
    loads = [x for x in loads if x != PLUGIN_NAME] + [PLUGIN_NAME]
    return (
        f"# The plugins of {path} with lbd's added: replace that file's `plugins` and `load_plugins`\n"
        "# with these (or put them in a config.d drop-in whose config_files entry has `strategy:\n"
        "# override`).  Every plugin it loaded stays loaded.\n" + _RUN_NOTE
        + _yaml({"plugins": plugins, "load_plugins": loads}))


# ---- errors ------------------------------------------------------------------------------------

def error_message(exc: BaseException) -> str:
    """One line for get_last_error, without a Python class name: lbd's own errors (configuration,
    selection, probe, files) as they are, anything else marked as unexpected."""
    from lbd.config import ConfigError

    text = " ".join(str(exc).split())
    known = isinstance(exc, (ConfigError, OSError)) or type(exc).__name__ in ("ProbeError", "InterestingError",
                                                                              "CaptureError")
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

def plugin_init(init_config: str, falco_log=None) -> PluginState:
    """The state behind one plugin_init: raises ConfigError for a bad init_config.  falco_log:
    liblbd.so's bridge to Falco's logger (log_fn), a callable (level, message), or None."""
    return PluginState(init_config, falco_log)


class _FalcoLogHandler(logging.Handler):
    """lbd's log records to Falco's logger (the init input's log_fn, through liblbd.so)."""

    def __init__(self, falco_log):
        super().__init__()
        self.falco_log = falco_log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.falco_log(record.levelno, self.format(record))
        except Exception:  # never let a log line break the capture
            self.handleError(record)


class PluginState:
    """One initialised plugin: the validated init_config and the log handler.

    Logs go to Falco's logger when the framework gave one (log_fn) and init_config.log_file is
    empty, else to log_file or stderr.  Invariant: at most one open Instance at a time (Falco opens
    one capture per plugin state); the counters of the last one closed stay for metrics().
    """

    def __init__(self, init_config: str, falco_log=None):
        from lbd.config import Config

        self.init_json = init_config or ""
        self.config = Config.from_plugin(self.init_json, "")   # init_config alone; open_params at open
        self.str_max_size = self.config.init.str_max_size
        self.secret_pattern_bytes = self.config.init.secret_pattern.encode("utf-8", "surrogateescape")
        self.batch_size = self.config.init.batch_size
        if falco_log is not None and not self.config.init.log_file:
            self.handler: logging.Handler = _FalcoLogHandler(falco_log)
            self.handler.setFormatter(logging.Formatter("%(message)s"))
            self.handler.setLevel(_LEVELS[self.config.init.log_level])
        else:
            self.handler = _log_handler(self.config.init)
        logger = logging.getLogger("lbd")
        logger.addHandler(self.handler)
        logger.setLevel(min(logger.level or logging.CRITICAL, _LEVELS[self.config.init.log_level]))
        self.instance: Instance | None = None
        self.last_metrics: list = []
        log.info("lbd %s plugin initialised (python %s, %s)", plugin_version(), sys.version.split()[0], sys.prefix)

    def list_open_params(self) -> str:
        from lbd.config import open_params_list

        return json.dumps(open_params_list() + [
            {"value": json.dumps({"replay": "/var/lib/lbd/capture.lbdcap"}),
             "desc": "read a capture file (lbd record -o FILE) back instead of capturing live"}])

    def open(self, open_params: str) -> Instance:
        if self.instance is not None:
            raise RuntimeError("a capture is already open for this plugin; close it first")
        from lbd.config import Config

        replay, open_params = split_replay(open_params)
        cfg = Config.from_plugin(self.init_json, open_params or "")
        self.instance = Instance(self, cfg, replay=replay)
        return self.instance

    def metrics(self) -> list[tuple[str, int | float, bool]]:
        """get_metrics: the open capture's counters, else the last one's (see Instance.metrics)."""
        inst = self.instance
        if inst is not None:
            try:
                return inst.metrics()
            except Exception as e:  # a capture closing meanwhile: the last values
                log.debug("metrics: %s", error_message(e))
        return self.last_metrics

    def destroy(self) -> None:
        if self.instance is not None:
            self.instance.close()
        logging.getLogger("lbd").removeHandler(self.handler)
        self.handler.close()


def split_replay(open_params: str | bytes | None) -> tuple[str | None, str]:
    """open_params' ``replay`` key (the path of a capture file to read back instead of capturing
    live) and the open_params without it.  Not a key of lbd's configuration: it chooses where the
    events come from, not how they are captured.  Raises ConfigError for a value that is not a
    path; open_params that are not a JSON object are left to Config.from_plugin to report."""
    from lbd.config import ConfigError

    text = open_params.decode("utf-8", "surrogateescape") if isinstance(open_params, bytes) else (open_params or "")
    if "replay" not in text:
        return None, text
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None, text
    if not isinstance(doc, dict) or "replay" not in doc:
        return None, text
    path = doc.pop("replay")
    if not isinstance(path, str) or not path.strip() or "\0" in path:
        raise ConfigError(f"open_params.replay: {json.dumps(path)[:80]}, the path of a capture file "
                          "(lbd record -o FILE)")
    return path, json.dumps(doc)


#: the tuple Instance.next() returns when nothing arrived in time
_EMPTY = (0, 0, 0, 0, 0, 0, 0, 0)
#: how often next() looks at the kernel's drop counters, and the least time between two warnings
DROP_CHECK_S = 1.0
DROP_WARN_S = 10.0


class Instance:
    """One open capture: the same lbd.Collector as ``lbd run`` (the filter's kernel part pushed
    into the probe), the state engine, the filter (open_params.filter) and (putfile) the writer.

    Invariants: between __init__ and close() the probe is attached; the tuple ``next()`` returned
    last describes memory this object keeps alive (the collector's batch, the engine's arrays, the
    filter's mask) until the next ``next()`` or ``close()``.  next() and metrics() may run on two
    threads (Falco's source and its metrics): a lock keeps metrics() out of a batch in progress.
    close() is idempotent and also runs on a failed open.

    The putfile output never stops the capture: when it cannot be written (disk full, /dev/full,
    its reader gone) the error is logged once, its events are counted (``putfile_unwritten``) and
    the file is opened again PUTFILE_RETRY_S later.
    """

    PUTFILE_RETRY_S = 10.0

    def __init__(self, state: PluginState, cfg, replay: str | None = None):
        from lbd.collector import Collector, fill_until
        from lbd.collector import probe_config
        from lbd.filter.pushdown import compiled

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
        self._engine = None
        self._keep: tuple = ()
        self._fill = fill_until
        self._lock = threading.Lock()
        self.filter = compiled(cfg)
        # the filter's kernel part, its syscalls the selection when open_params name none
        self.kernel_cfg = probe_config(cfg)
        self._attach = bool(cfg.init.putfile) or (self.filter is not None and self.filter.needs_enrichment)
        self._opened = time.monotonic()
        self._next_check = self._opened + DROP_CHECK_S
        self._warned_at = -DROP_WARN_S
        self._lost_seen = 0                 # drops already counted in a warning
        self._lost_unwarned = 0
        self.user_filtered = 0              # events the filter removed (the C side counts too)
        # Inside Falco, filter_falco drops Falco's whole process and filter_own the threads that
        # run lbd's code: the one opening the capture and each one that calls next() (liblbd.so
        # tells add_own_tid()).
        self._own_tid = threading.get_native_id()
        self.replay = replay
        if replay is not None:
            self._open_replay(replay)
            return
        try:
            self.collector = Collector(self.kernel_cfg, host_pid=os.getpid(), own_tids=[self._own_tid],
                                       apply_filter=False).__enter__()
            self.collector.batch.plugin_id = PLUGIN_ID     # the collector's batches all take it
            self.enricher = _make_enricher(cfg, self.collector.probe.selection)
            self._engine = getattr(self.enricher, "_engine", None)
            self._ring = self.collector.ring            # None with consumers > 1
            self._timeout = cfg.init.batch_timeout_ms
            if cfg.init.putfile:
                from lbd.output.writer import open_writer

                self.writer = open_writer(cfg, None).__enter__()
        except BaseException:
            self.close()
            raise
        log.info("capture open: %d syscalls selected, ring %d bytes, batches of %d%s",
                 len(self.collector.probe.selection), cfg.open.ring_size, self.collector.batch_size,
                 f"; filter {self.filter.expression!r}, in the kernel: {self.filter.plan.describe()}"
                 if self.filter is not None else "")

    def _open_replay(self, path: str) -> None:
        """open_params.replay: the batches of a capture file instead of a probe, through the same
        state engine (fed the host's recorded answers, asking nothing of this host), filter and
        hand-over as a live capture: Falco gets the events the recording run's would have got.
        next() returns None at the end of the file (liblbd.so: SS_PLUGIN_EOF)."""
        from lbd.capture import replaying_enricher
        from lbd.collector import Collector

        try:
            self.collector = Collector(self.cfg, replay=path, apply_filter=False).__enter__()
            self.enricher = replaying_enricher(self.cfg)
            self.collector.answer_sink = self.enricher
            self._engine = getattr(self.enricher, "_engine", None)
            self._ring = None
            self._timeout = self.cfg.init.batch_timeout_ms
            if self.cfg.init.putfile:
                from lbd.output.writer import open_writer

                self.writer = open_writer(self.cfg, None).__enter__()
        except BaseException:
            self.close()
            raise
        log.info("replaying %s (recorded by lbd %s on %s)%s", path, self.collector.reader.meta.get("lbd"),
                 self.collector.reader.meta.get("host"),
                 f"; filter {self.filter.expression!r}" if self.filter is not None else "")

    def add_own_tid(self, tid: int) -> None:
        """Another Falco thread now runs the source: its syscalls are the plugin's own too."""
        if self.collector is not None and self.collector.probe is not None and tid != self._own_tid:
            self.collector.probe.add_own_tid(tid)
            self._own_tid = tid

    def next(self) -> tuple[int, int, int, int, int, int, int, int] | None:
        """Fill a batch (waiting up to batch_timeout_ms), run the state engine over it, the filter,
        the putfile writer.  One call per next_batch; no Python per event.

        Returns (n, ptrs, enrich, strtab, strtab_len, fdtab, fdtab_len, mask): the batch's n events
        (state records included) whose Falco event addresses are the n uint64 at ``ptrs``, the
        engine's arrays (one enrichment row per event; 0, 0 when there are none), and the
        address of the filter's n bytes (1: keep), 0 without a filter.  liblbd.so hands Falco the
        events that are neither state records nor removed by the mask.  n == 0: nothing arrived.
        None: a replayed capture file is done (end of the event stream).
        """
        with self._lock:
            col = self.collector
            if self._ring is not None:
                batch = col._rotate()
                self._fill(self._ring, batch, self._timeout)
            else:
                batch = col.next_batch()
            if self.replay is None and time.monotonic() >= self._next_check:
                self._check_drops()
            n = batch.n
            if not n:
                self._keep = ()
                if self.replay is not None and col._stopped:
                    return None                 # the capture file is done: SS_PLUGIN_EOF
                return _EMPTY
            view = None
            if self._engine is not None:
                try:
                    view = self._engine.plugin_view(batch, self._attach)
                except Exception as e:  # enrichment is best effort: the events still go to Falco
                    _warn_once(f"enrichment failed, events carry the kernel's values only: {error_message(e)}")
            if view is None:
                view = (n, int(batch.ptrs.ctypes.data), 0, 0, 0, 0, 0)
            mask = 0
            keep = None
            if self.filter is not None:
                keep = self.filter(batch)
                mask = keep.ctypes.data
            if self.cfg.init.putfile:
                out = batch.output_mask()
                if keep is not None:
                    out = keep if out is None else out & keep
                self._putfile(batch, out)
            self._keep = (batch, keep)
            return (*view, mask)

    def _check_drops(self) -> None:
        """Once per DROP_CHECK_S: a warning (at most one per DROP_WARN_S) when records were lost."""
        now = time.monotonic()
        self._next_check = now + DROP_CHECK_S
        try:
            st = self.collector.stats()
        except Exception:
            return
        lost = st["dropped"] + st["malformed"]
        new = lost - self._lost_seen
        if new <= 0 or now - self._warned_at < DROP_WARN_S:
            return
        self._lost_seen = lost
        since = now - self._warned_at if self._warned_at > 0 else now - self._opened
        rings = ", ".join(f"ring {i} {r['dropped']}" for i, r in enumerate(st["rings"]) if r["dropped"])
        log.warning("%d events lost in the last %.0f s (%d in all since open: ring full %d%s, malformed %d); "
                    "raise open_params.ring_size (%d bytes per ring now), narrow the selection (syscalls, "
                    "filter) or give Falco more CPU", new, since, lost, st["dropped"],
                    f" [{rings}]" if rings else "", st["malformed"], self.cfg.open.ring_size)
        self._warned_at = now

    def metrics(self) -> list[tuple[str, int | float, bool]]:
        """get_metrics: [(name, value, monotonic)]: the kernel's counters (emitted, dropped by
        reason, filtered by reason), what the rings delivered, per ring, and the state engine's
        (procfs cache misses, table size).  liblbd.so adds its own (events handed to Falco,
        state records hidden, filtered by the filter).  Falco shows each as lbd.<name>."""
        with self._lock:
            return self._metrics()

    def _metrics(self) -> list[tuple[str, int | float, bool]]:
        col = self.collector
        if col is not None and col.probe is None and self.replay is not None:
            st = col.stats()          # the recording's final counts (once read), delivered so far
            return [("events_delivered", st["delivered"], True), ("drops", st.get("dropped", 0) + st.get("malformed", 0), True)]
        if col is None or col.probe is None:
            return self.state.last_metrics
        st = col.stats()
        out: list = [
            ("events_emitted", st["emitted"] + st["sched"], True),
            ("events_delivered", st["delivered"], True),
            ("drops", st["dropped"] + st["malformed"], True),
            ("drops_ring_full", st["dropped"], True),
            ("drops_malformed", st["malformed"], True),
            ("events_late", st["late"], True),
            ("filtered_kernel", st["filtered"], True),
        ]
        out += [(f"filtered_kernel_{k[2:]}", v, True) for k, v in sorted(st.items())
                if k.startswith("f_") and isinstance(v, int)]
        out += [("syscalls_seen", st["seen"], True), ("state_records", st["state"], True),
                ("ring_pending_bytes", st["ring_pending_bytes"], False), ("ring_fill_max", float(st["ring_fill_max"]), False)]
        for i, r in enumerate(st["rings"]):
            out += [(f"ring{i}_emitted", r["emitted"], True), (f"ring{i}_delivered", r["delivered"], True),
                    (f"ring{i}_drops", r["dropped"] + r["malformed"], True),
                    (f"ring{i}_pending_bytes", r["pending_bytes"], False)]
        if self._engine is not None:
            c = self._engine.counters()
            out += [("enrich_proc_hits", c["hits"], True), ("enrich_proc_misses", c["misses"], True),
                    ("enrich_procfs_loads", c["loads"], True), ("enrich_evictions", c["evictions"], True),
                    ("enrich_procs", c["procs"], False)]
            if self.enricher is not None and hasattr(self.enricher, "procfs"):
                out.append(("enrich_procfs_reads", self.enricher.procfs.reads, True))
        if self.cfg.init.putfile:
            out += [("putfile_unwritten", self.putfile_unwritten, True), ("putfile_errors", self.putfile_errors, True)]
        return out

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
        if self.collector is not None and (self.collector.probe is not None or self.replay is not None):
            try:
                with self._lock:
                    final = self._metrics()
                self.state.last_metrics = final
                self._summary(dict((k, v) for k, v, _ in final))
            except Exception as e:
                log.debug("summary: %s", error_message(e))
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

    def _summary(self, m: dict) -> None:
        """The capture's closing line in Falco's log: a warning when records were lost."""
        secs = time.monotonic() - self._opened
        level = logging.WARNING if m.get("drops") else logging.INFO
        log.log(level, "capture closed after %.1f s: %d events emitted by the kernel, %d delivered, %d lost "
                "(ring full %d, malformed %d), %d filtered in the kernel",
                secs, m.get("events_emitted", 0), m.get("events_delivered", 0), m.get("drops", 0),
                m.get("drops_ring_full", 0), m.get("drops_malformed", 0), m.get("filtered_kernel", 0))


def plugin_version() -> str:
    """The plugin's version: lbd's (get_version)."""
    from lbd import __version__

    return __version__


_warned: set[str] = set()


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        log.warning("%s", msg)


# ---- enrichment ---------------------------------------------------------------------------------
#
# The contract with lbd.enrich (lbd/enrich/layout.py, lbd/enrich/lbd_enrich_layout.h): one row of
# ENRICH_DTYPE per event of the batch, strtab (NUL after each string), fdtab (FD_DTYPE).  The engine
# checks its rows against the C layout when it loads; liblbd.so checks every offset in C, once per
# batch (lbd_view_check), before extract_fields trusts them.

def _make_enricher(cfg, selection):
    """The enrichment step of ``lbd run``: lbd.enrich's Enricher for this configuration and syscall
    selection (its engine fills the batch's enrichment arrays)."""
    from lbd.enrich import Enricher

    return Enricher.from_config(cfg, selection=selection)
