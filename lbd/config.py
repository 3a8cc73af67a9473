"""lbd's configuration: one validated, immutable object for the CLI, the Python API and the plugin.

A configuration has two sections, named as in the seed's Falco plugin:

* ``init_config``: user-space behaviour (output, logging, batching), fixed for the plugin's life;
* ``open_params``: kernel-side behaviour (filters, syscall selection, ring), given on every open.

Every key name is unique across both sections, so a flat ``{key: value}`` mapping is also accepted
(``Config.from_dict``, ``Config.replace``).  The defaults live in one place,
``lbd/default_config.json`` (the embedded configuration ``lbd run`` uses without a file, unless
``/etc/lbd/lbd.yaml`` exists: ``Config.load``); a key that is not given takes its value from there.

Sources: a ``.json`` / ``.yaml`` / ``.yml`` file shaped ``{"init_config": {...}, "open_params":
{...}}`` (either section optional, an empty file or ``null`` section means defaults), a dict, or the
two JSON strings a Falco plugin receives (``""``, whitespace, ``null`` and ``{}`` mean defaults).

Keys (type, range, default; seed keys first, in the order of SPEC.md tables 5 and 6)::

  init_config
  rich_value_size        int   0..4294967295           65536     enrichment text (cmdline, fds
                                                                  list) kept per event, in bytes;
                                                                  longer text is cut; 0 = none
  str_max_size           int   0..4294967295           1024      longest argument string printed;
                                                                  longer ones end in "..."; 0 = no
                                                                  limit
  putfile                bool                          false     write every event to `path`
  path                   str   <= 256 chars            "/var/log/lbd/events.log"
                                                                  (must be non-empty if putfile);
                                                                  nats://HOST:PORT/SUBJECT ships
                                                                  the events to NATS JetStream
  format                 enum  normal, json, parquet   "normal"  file format
  log_level              enum  DEBUG, INFO, WARNING, ERROR, FATAL
                                                       "INFO"
  log_file               str   <= 256 chars            ""        log destination; "" = stderr
  batch_size             int   1..65536                512       events per batch handed to consumers
  batch_timeout_ms       int   1..1000                 30        wait for events before returning
                                                                  a partial or empty batch
  consumers              int   1..64                   1         consumer threads draining the
                                                                  rings (order holds within each's)
  merge_window_us        int   0..1000000              1000      how long a record may wait in its
                                                                  ring for the emit-time merge
  python_home            str   <= 256 chars            ""        Falco plugin: the lbd installation
                                                                  (venv) to use; "" = the one it
                                                                  was built from
  spool_dir              str   <= 256 chars            "/var/lib/lbd/spool"
                                                                  shipping (path or --output
                                                                  nats://HOST:PORT/SUBJECT): where
                                                                  batches wait while the server is
                                                                  unreachable
  spool_max_bytes        int   0..1099511627776        1073741824 most bytes the spool holds; what
                                                                  does not fit is dropped (counted);
                                                                  0 = no spool
  secret_pattern         str   <= 256 chars            "*TOKEN*|*SECRET*|*PASSWORD*|*KEY*"
                                                                  with capture_env: environment
                                                                  variables whose name matches one
                                                                  of these |-separated patterns (*
                                                                  and ?, case-insensitive) are
                                                                  written NAME=***; "" = none
  rotate_size            int   0..2^50                 0         rotate a file output once it
                                                                  holds this many bytes (events.log
                                                                  -> events.log.1 ...); 0 = never
  rotate_keep            int   1..1000                 5         rotated files kept

  open_params
  filter_own             bool                          true      drop syscalls of lbd's own threads
  filter_falco           bool                          true      drop syscalls of the Falco process
  filter_pids            int[] <= 64 items, 0..4194303 []        drop these pids
  filter_comms           str[] <= 16 items, 1..16 B    []        drop these command names
  drop_mode              bool                          false     capture nothing at all
  drop_failed            bool                          false     drop failed syscalls
  interest_syscall_file  str   <= 256 chars            ""        JSON file selecting the syscalls;
                                                                  "" = the packaged selection
  ring_size              int   power of two, 65536..1073741824
                                                       8388608   bytes of EACH ring buffer (8 MiB)
  cpus_per_ring          int   1..1024                 1         CPUs sharing one ring
  loader                 enum  auto, libbpf, bcc       "auto"    libbpf + CO-RE object, or bcc
                                                                  (LBD_LOADER overrides)
  track_state            bool                          true      capture the state syscalls (fork,
                                                                  exec, fds) also when not selected,
                                                                  for context only
  follow                 bool                          false     keep the processes kept tasks start
  only_tids              int[] <= 64 items, 1..4194303 []        keep ONLY these threads (+ only_pids)
  filter_uids            int[] <= 64 items, 0..2^32-2  []        drop these uids
  only_uids              int[] <= 64 items, 0..2^32-2  []        keep ONLY these uids
  failed_only            bool                          false     keep only failed syscalls
  capture_env            bool                          false     read execve's envp (secrets!);
                                                                  off: written as NULL; on: names
                                                                  matching secret_pattern masked
  syscall_stats          bool                          false     count every syscall in the kernel
  str_max                int   16..2040                256       bytes captured per string/path
  buf_max                int   0..1024                 32        bytes captured of an I/O buffer
  argv_max               int   0..64                   16        strings captured per argv/envp
  emit_enter             bool                          false     also emit enter events (dir '>')
  wake_bytes             int   0..ring_size-1          0         wake the consumer when this many
                                                                  bytes are pending; 0 = ring_size/4
  only_pids              int[] <= 64 items, 0..4194303 []        keep ONLY these pids ([] = all)
  only_comms             str[] <= 16 items, 1..16 B    []        keep ONLY these comms ([] = all)
  syscalls               str[] <= 512 items, 1..64 chars
                                                       []        syscall names; non-empty overrides
                                                                  interest_syscall_file
  filter                 str   <= 4096 chars           ""        a filter expression (lbd.filter):
                                                                  only matching events are output;
                                                                  what the kernel can decide of it
                                                                  is pushed into the kernel's filters
  path_prefixes          str[] <= 64 items, SYSCALL:ARGUMENT:PREFIX
                                                       []        drop those syscalls in the kernel
                                                                  unless the path argument starts
                                                                  with a prefix (<= 254 bytes)

Value rules:

* bool: a JSON boolean or exactly the seed's lower-case strings ``"true"`` / ``"false"``; nothing
  else (not 0/1, not "True", not "yes").  In YAML files only ``true``/``false`` are booleans (the
  YAML 1.1 words yes/no/on/off stay strings and are rejected).  ``to_dict`` writes JSON booleans.
* int: a JSON integer; booleans, floats (even ``1.0``) and strings are rejected.
* str: path-like strings are counted in characters (at most 256) and may not contain NUL.
* comms are counted in UTF-8 bytes (the kernel compares bytes; its ``comm`` holds at most 15 bytes
  plus NUL, so a 16-byte entry is accepted, as in the seed, but can never match).
* arrays: a JSON array (a list or tuple from Python).  The item limit applies to the entries as
  given; duplicates are then collapsed, keeping the first occurrence's order, and stored as a tuple.
* ``syscalls`` names are only checked for shape here; the syscall table resolves them.
* paths (``path``, ``log_file``, ``spool_dir``, ``python_home``, ``interest_syscall_file``) read
  from a configuration file are relative to that file's directory when they are not absolute
  (``Config.from_file``); from a dict, the plugin's strings or ``replace`` they are used as given.

Errors: every problem raises ``ConfigError`` (a ``ValueError``) whose message names the key (as
``section.key``), the bad value and the limit, e.g. ``open_params.filter_pids: 65 entries, at most
64 allowed``; all problems of one load are reported together, separated by ``; ``.  Unknown keys
suggest the closest known one.  Objects are frozen dataclasses that validate themselves on
construction, so a ``Config`` that exists is valid, and every operation returns a new object: a
failed load or ``replace`` changes nothing.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.resources
import json
import numbers
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = [
    "ConfigError",
    "InitConfig",
    "OpenParams",
    "Config",
    "coerce",
    "init_schema",
    "open_params_schema",
    "open_params_list",
    "key_info",
    "INIT_KEYS",
    "OPEN_KEYS",
    "DESCRIPTIONS",
]

INIT = "init_config"
OPEN = "open_params"
_SECTIONS = (INIT, OPEN)

MAX_PID = (1 << 22) - 1  # PID_MAX_LIMIT - 1 on 64-bit kernels
_U32_MAX = (1 << 32) - 1
_PATH_MAX = 256
_DEFAULT_RESOURCE = "default_config.json"


class ConfigError(ValueError):
    """A configuration value, key or source is not acceptable.

    ``problems`` holds each problem's message; ``str(err)`` joins them with ``"; "``.
    """

    def __init__(self, *problems: str) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("; ".join(problems))

    def prefixed(self, source: str) -> ConfigError:
        """The same problems, each prefixed with ``source: `` (e.g. the file they came from)."""
        return ConfigError(*(f"{source}: {p}" for p in self.problems))


# --------------------------------------------------------------------------------------------
# Value kinds: each checks and normalises a raw value, describes its range and gives its schema.
# --------------------------------------------------------------------------------------------

def _show(value: Any, limit: int = 48) -> str:
    """Short repr of a bad value for a message (long strings are cut; null and booleans as JSON)."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + "..."
    text = repr(value)
    return text if len(text) <= limit + 8 else text[:limit] + "..."


def _what(value: Any) -> str:
    """``'abc' is a string``, or ``null`` for a missing value: the start of a type-error message."""
    return "null" if value is None else f"{_show(value)} is {_type_name(value)}"


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"a {type(value).__name__}"


class _Kind:
    """One value kind.  ``check`` returns the normalised value or raises ``_Bad(message)``."""

    type_text = ""

    def check(self, value: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def range_text(self) -> str:
        return ""

    def schema(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_json(self, value: Any) -> Any:
        return value


class _Bad(Exception):
    """A value problem, without the key (the caller adds ``section.key`` and ``[index]``)."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class _Bool(_Kind):
    type_text = "bool"

    def check(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value in ("true", "false"):
            return value == "true"
        raise _Bad(f"{_show(value)} is not a boolean; expected true, false, \"true\" or \"false\"")

    def range_text(self) -> str:
        return 'true, false ("true", "false" accepted)'

    def schema(self) -> dict:
        return {"anyOf": [{"type": "boolean"}, {"type": "string", "enum": ["true", "false"]}]}


class _Int(_Kind):
    type_text = "int"

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi

    def _int(self, value: Any) -> int:
        # numbers.Integral admits numpy integers from Python callers; bool is excluded explicitly.
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise _Bad(f"{_what(value)}, expected an integer {self.lo}..{self.hi}")
        return int(value)

    def check(self, value: Any) -> int:
        v = self._int(value)
        if not self.lo <= v <= self.hi:
            raise _Bad(f"{v} is out of range {self.lo}..{self.hi}")
        return v

    def range_text(self) -> str:
        return f"{self.lo}..{self.hi}"

    def schema(self) -> dict:
        return {"type": "integer", "minimum": self.lo, "maximum": self.hi}


class _PowerOfTwo(_Int):
    """A power of two in lo..hi (with lo >= 4096 that also makes it a multiple of the page size)."""

    def check(self, value: Any) -> int:
        v = self._int(value)
        if v <= 0 or v & (v - 1):
            raise _Bad(f"{v} is not a power of two (a power of two {self.lo}..{self.hi} is required)")
        if not self.lo <= v <= self.hi:
            raise _Bad(f"{v} is out of range {self.lo}..{self.hi}")
        return v

    def range_text(self) -> str:
        return f"power of two, {self.lo}..{self.hi}"

    def schema(self) -> dict:
        allowed = [1 << n for n in range(self.lo.bit_length() - 1, self.hi.bit_length())]
        return {"type": "integer", "enum": allowed}


class _Str(_Kind):
    type_text = "str"

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise _Bad(f"{_what(value)}, expected a string of at most "
                       f"{self.max_len} characters")
        if len(value) > self.max_len:
            raise _Bad(f"{_show(value)} is {len(value)} characters long, at most {self.max_len} allowed")
        if "\0" in value:
            raise _Bad(f"{_show(value)} contains a NUL character")
        return value

    def range_text(self) -> str:
        return f"at most {self.max_len} characters"

    def schema(self) -> dict:
        return {"type": "string", "maxLength": self.max_len}


class _FilterExpr(_Str):
    """A filter expression (lbd.filter): "" for none; a bad one is reported in one line with the
    column (the caret diagram of FilterError does not fit a configuration message)."""

    def check(self, value: Any) -> str:
        text = super().check(value)
        if text.strip():
            from lbd.filter import FilterError, compile as compile_filter

            try:
                compile_filter(text)
            except FilterError as e:
                raise _Bad(f"{_show(text)}: {str(e).splitlines()[0]}") from None
        return text

    def range_text(self) -> str:
        return f"a filter expression of at most {self.max_len} characters (\"\": none)"


class _Enum(_Kind):
    type_text = "enum"

    def __init__(self, *choices: str) -> None:
        self.choices = choices

    def check(self, value: Any) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise _Bad(f"{_show(value)} is not one of {', '.join(self.choices)}")
        return value

    def range_text(self) -> str:
        return ", ".join(self.choices)

    def schema(self) -> dict:
        return {"type": "string", "enum": list(self.choices)}


class _Array(_Kind):
    """An array of ``item`` values, at most ``max_items`` as given; duplicates collapsed."""

    def __init__(self, item: _Kind, max_items: int) -> None:
        self.item, self.max_items = item, max_items
        self.type_text = f"{item.type_text}[]"

    def check(self, value: Any) -> tuple:
        if not isinstance(value, (list, tuple)):
            raise _Bad(f"{_what(value)}, expected an array of at most "
                       f"{self.max_items} entries")
        if len(value) > self.max_items:
            raise _Bad(f"{len(value)} entries, at most {self.max_items} allowed")
        out: dict[Any, None] = {}
        for i, v in enumerate(value):
            try:
                out.setdefault(self.item.check(v), None)
            except _Bad as e:
                raise _Bad(str(e), index=i) from None
        return tuple(out)

    def range_text(self) -> str:
        return f"at most {self.max_items} entries, each {self.item.range_text()}"

    def schema(self) -> dict:
        return {"type": "array", "maxItems": self.max_items, "items": self.item.schema()}

    def to_json(self, value: Any) -> list:
        return list(value)


class _PathPrefix(_Kind):
    """``SYSCALL:ARGUMENT:PREFIX``: the syscall's path or string argument must start with PREFIX
    (UTF-8, at most PREFIX_MAX bytes, may be empty).  Only the shape is checked here; the probe
    resolves the syscall and the argument (lbd.probe.resolve_path_prefixes)."""

    type_text = "str"

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise _Bad(f"{_what(value)}, expected SYSCALL:ARGUMENT:PREFIX (openat:filename:/etc/)")
        parts = value.split(":", 2)
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise _Bad(f"{_show(value)} is not SYSCALL:ARGUMENT:PREFIX (openat:filename:/etc/)")
        try:
            n = len(parts[2].encode("utf-8"))
        except UnicodeEncodeError:
            raise _Bad(f"{_show(value)}: the prefix is not encodable as UTF-8") from None
        if n > PREFIX_MAX:
            raise _Bad(f"{_show(value)}: the prefix is {n} bytes, at most {PREFIX_MAX} allowed")
        if "\0" in value:
            raise _Bad(f"{_show(value)} contains a NUL character")
        return value

    def range_text(self) -> str:
        return f"SYSCALL:ARGUMENT:PREFIX, prefix <= {PREFIX_MAX} bytes"

    def schema(self) -> dict:
        return {"type": "string", "pattern": "^[^:]+:[^:]+:"}


def name_bytes(name: str) -> bytes:
    """The bytes a command name (comm) stands for: UTF-8, and each undecodable byte that Python
    read from the command line (os.fsdecode's surrogateescape, U+DC80..U+DCFF) as that byte.
    What the kernel compares; UnicodeEncodeError for any other lone surrogate."""
    return name.encode("utf-8", "surrogateescape")


class _Name(_Kind):
    """A non-empty string of at most ``max_len`` units (UTF-8 bytes if ``in_bytes``)."""

    type_text = "str"

    def __init__(self, max_len: int, in_bytes: bool = False) -> None:
        self.max_len, self.in_bytes = max_len, in_bytes

    def _unit(self) -> str:
        return "bytes" if self.in_bytes else "characters"

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise _Bad(f"{_what(value)}, expected a string of 1..{self.max_len} "
                       f"{self._unit()}")
        if self.in_bytes:
            try:
                n = len(name_bytes(value))
            except UnicodeEncodeError:
                raise _Bad(f"{_show(value)} holds a lone surrogate that stands for no byte "
                           f"(only U+DC80..U+DCFF, undecodable command-line bytes, do)") from None
        else:
            n = len(value)
        if n == 0:
            raise _Bad(f"'' is empty, 1..{self.max_len} {self._unit()} required")
        if n > self.max_len:
            raise _Bad(f"{_show(value)} is {n} {self._unit()} long, at most {self.max_len} allowed")
        if "\0" in value:
            raise _Bad(f"{_show(value)} contains a NUL character")
        return value

    def range_text(self) -> str:
        return f"1..{self.max_len} {self._unit()}"

    def schema(self) -> dict:
        return {"type": "string", "minLength": 1, "maxLength": self.max_len}


# --------------------------------------------------------------------------------------------
# The key table: the one place a key's section, kind and description are written.
# (Defaults: lbd/default_config.json.  Dataclass fields below are checked against this table.)
# --------------------------------------------------------------------------------------------

#: bytes of a path prefix (the kernel's LBD_PREFIX_MAX) and how many prefixes (LBD_MAX_PREFIXES)
PREFIX_MAX = 254
MAX_PREFIXES = 64

_PIDS = _Array(_Int(0, MAX_PID), 64)
_COMMS = _Array(_Name(16, in_bytes=True), 16)

_KEYS: dict[str, tuple[str, _Kind, str]] = {
    # init_config: SPEC.md table 5
    "rich_value_size": (INIT, _Int(0, _U32_MAX),
                        "bytes of enrichment text (cmdline, fds list) kept per event; longer is cut; "
                        "0 = no enrichment"),
    "str_max_size": (INIT, _Int(0, _U32_MAX),
                     "longest argument string printed; longer ones end in '...'; 0 = no limit"),
    "putfile": (INIT, _Bool(), "write every event to the file `path`"),
    "path": (INIT, _Str(_PATH_MAX),
             "the event file written when putfile is true, or nats://HOST:PORT/SUBJECT to publish to NATS"),
    "format": (INIT, _Enum("normal", "json", "parquet"),
               "event file format: the seed's one-line text, JSON Lines, or Parquet (a new file)"),
    "log_level": (INIT, _Enum("DEBUG", "INFO", "WARNING", "ERROR", "FATAL"), "log level"),
    "log_file": (INIT, _Str(_PATH_MAX), "log destination; empty = stderr"),
    # init_config: lbd extensions
    "batch_size": (INIT, _Int(1, 65536), "events per batch handed to consumers"),
    "batch_timeout_ms": (INIT, _Int(1, 1000),
                         "milliseconds a consumer waits for events before returning a partial or "
                         "empty batch"),
    "consumers": (INIT, _Int(1, 64),
                  "consumer threads draining the rings (each owns a share of the rings; order holds "
                  "within each one's rings)"),
    "merge_window_us": (INIT, _Int(0, 1_000_000),
                        "microseconds a record may wait in its ring so that the rings merge in "
                        "emit-time order (records later than this are counted as late)"),
    "python_home": (INIT, _Str(_PATH_MAX),
                    "Falco plugin: the lbd installation (venv) to use; empty = the one it was built from"),
    "spool_dir": (INIT, _Str(_PATH_MAX),
                  "shipping (path nats://...): where batches wait on disk while the server is unreachable"),
    "spool_max_bytes": (INIT, _Int(0, 1 << 40),
                        "shipping: most bytes the spool holds; batches that do not fit are dropped and "
                        "counted; 0 = no spool"),
    "secret_pattern": (INIT, _Str(_PATH_MAX),
                       "with capture_env: environment variables whose NAME matches one of these "
                       "|-separated patterns (* and ? wildcards, case-insensitive) are written NAME=***; "
                       "empty = none masked"),
    "rotate_size": (INIT, _Int(0, 1 << 50),
                    "a file output (--output, path) is rotated once it holds this many bytes: "
                    "events.log -> events.log.1 -> ...; 0 = never"),
    "rotate_keep": (INIT, _Int(1, 1000), "rotated files kept (events.log.1 .. events.log.N)"),
    # open_params: SPEC.md table 6
    "filter_own": (OPEN, _Bool(), "drop syscalls made by lbd's own threads"),
    "filter_falco": (OPEN, _Bool(), "drop syscalls made by the Falco process"),
    "filter_pids": (OPEN, _PIDS, "drop syscalls of these pids"),
    "filter_comms": (OPEN, _COMMS, "drop syscalls of these command names"),
    "drop_mode": (OPEN, _Bool(), "capture nothing at all"),
    "drop_failed": (OPEN, _Bool(), "drop failed syscalls"),
    "interest_syscall_file": (OPEN, _Str(_PATH_MAX),
                              "JSON file selecting the syscalls to capture; empty = the packaged "
                              "selection"),
    # open_params: lbd extensions
    "ring_size": (OPEN, _PowerOfTwo(64 << 10, 1 << 30),
                  "bytes of each BPF ring buffer (one ring per cpus_per_ring CPUs)"),
    "cpus_per_ring": (OPEN, _Int(1, 1024),
                      "CPUs that share one ring (1: a ring per CPU, like Falco's cpus_for_each_buffer)"),
    "loader": (OPEN, _Enum("auto", "libbpf", "bcc"),
               "how the probe is loaded: libbpf with the CO-RE object, bcc compiling the source, or "
               "auto (libbpf when the kernel has BTF); LBD_LOADER overrides it"),
    "track_state": (OPEN, _Bool(),
                    "capture the syscalls the process and fd tables need (fork, exec, fd creation and "
                    "closing, ...) also when not selected, for context only (not output)"),
    "follow": (OPEN, _Bool(), "also keep the processes that kept tasks (only_pids, only_tids) start"),
    "only_tids": (OPEN, _Array(_Int(1, MAX_PID), 64), "keep ONLY syscalls of these threads (besides only_pids)"),
    "filter_uids": (OPEN, _Array(_Int(0, _U32_MAX - 1), 64), "drop syscalls of tasks with these uids"),
    "only_uids": (OPEN, _Array(_Int(0, _U32_MAX - 1), 64), "keep ONLY syscalls of tasks with these uids"),
    "failed_only": (OPEN, _Bool(), "keep only failed syscalls (in the kernel)"),
    "capture_env": (OPEN, _Bool(),
                    "read execve's environment (envp) in the kernel; off, it is never read (secrets "
                    "live there) and the outputs write it as NULL; on, the values of names matching "
                    "secret_pattern are written as ***"),
    "syscall_stats": (OPEN, _Bool(),
                      "count every syscall (selected or not) with errors and latency in the kernel "
                      "(lbd stats)"),
    "str_max": (OPEN, _Int(16, 2040), "bytes captured in the kernel per string or path argument"),
    "buf_max": (OPEN, _Int(0, 1024), "bytes captured in the kernel of an input/output buffer"),
    "argv_max": (OPEN, _Int(0, 64), "strings captured per argv/envp array"),
    "emit_enter": (OPEN, _Bool(), "also emit syscall enter events (dir '>')"),
    "wake_bytes": (OPEN, _Int(0, (1 << 30) - 1),
                   "wake the consumer once this many bytes are pending in the ring; 0 = ring_size/4; "
                   "must be less than ring_size"),
    "only_pids": (OPEN, _PIDS, "keep ONLY syscalls of these pids (empty = all)"),
    "only_comms": (OPEN, _COMMS, "keep ONLY syscalls of these command names (empty = all)"),
    "syscalls": (OPEN, _Array(_Name(64), 512),
                 "syscall names to capture; non-empty overrides interest_syscall_file"),
    "filter": (OPEN, _FilterExpr(4096),
               "a filter expression (README: Filter expressions): only events it keeps are output; the "
               "part the kernel can decide (syscalls, pids, comms, uids, failed, path prefixes) is "
               "applied there too"),
    "path_prefixes": (OPEN, _Array(_PathPrefix(), MAX_PREFIXES),
                      "SYSCALL:ARGUMENT:PREFIX entries: drop those syscalls in the kernel unless that "
                      "path argument starts with one of its prefixes (one argument per syscall; a "
                      "state syscall's record still reaches the tables, not the output)"),
}

INIT_KEYS: tuple[str, ...] = tuple(k for k, (s, _, _) in _KEYS.items() if s == INIT)
OPEN_KEYS: tuple[str, ...] = tuple(k for k, (s, _, _) in _KEYS.items() if s == OPEN)
DESCRIPTIONS: dict[str, str] = {k: d for k, (_, _, d) in _KEYS.items()}
_SECTION_KEYS = {INIT: INIT_KEYS, OPEN: OPEN_KEYS}


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _key_text(key: Any) -> str:
    """A key as a message shows it: as is when it looks like a key, else its short repr (one line)."""
    return key if isinstance(key, str) and _PLAIN_KEY.fullmatch(key) else _show(key)


def _unknown_key(section: str | None, key: Any) -> str:
    """Message for a key that is not known in ``section`` (None: a flat mapping)."""
    where = f"{section}.{_key_text(key)}" if section else _key_text(key)
    if isinstance(key, str) and key in _KEYS and section is not None:
        return f"{where}: unknown key in {section}; '{key}' belongs in {_KEYS[key][0]}"
    pool = _SECTION_KEYS[section] if section else tuple(_KEYS)
    close = difflib.get_close_matches(key[:64], pool, n=1, cutoff=0.6) if isinstance(key, str) else []
    if close:
        return f"{where}: unknown key; did you mean '{close[0]}'?"
    return f"{where}: unknown key; known keys: {', '.join(pool)}"


def _validate(obj: Any, section: str) -> None:
    """Normalise and check every field of a section dataclass (called from its __post_init__)."""
    problems: list[str] = []
    for name in _SECTION_KEYS[section]:
        kind = _KEYS[name][1]
        try:
            object.__setattr__(obj, name, kind.check(getattr(obj, name)))
        except _Bad as e:
            where = f"{section}.{name}" + ("" if e.index is None else f"[{e.index}]")
            problems.append(f"{where}: {e}")
    if not problems:
        problems.extend(obj._cross_check())
    if problems:
        raise ConfigError(*problems)


# --------------------------------------------------------------------------------------------
# The configuration objects
# --------------------------------------------------------------------------------------------

#: the configuration Config.load() (and so `lbd run` without --config) reads when it exists
SYSTEM_PATH = "/etc/lbd/lbd.yaml"

@dataclass(frozen=True)
class InitConfig:
    """The ``init_config`` section (user-space behaviour).

    Invariant: every field holds a checked, normalised value (validated in ``__post_init__``); to
    change one, build a new object (``dataclasses.replace`` or ``Config.replace``).
    """

    rich_value_size: int
    str_max_size: int
    putfile: bool
    path: str
    format: str
    log_level: str
    log_file: str
    batch_size: int
    batch_timeout_ms: int
    consumers: int
    merge_window_us: int
    python_home: str
    spool_dir: str
    spool_max_bytes: int
    secret_pattern: str
    rotate_size: int
    rotate_keep: int

    def __post_init__(self) -> None:
        _validate(self, INIT)

    def _cross_check(self) -> list[str]:
        if self.putfile and not self.path:
            return [f"{INIT}.path: '' is empty, but putfile is true and needs a file path"]
        return []


@dataclass(frozen=True)
class OpenParams:
    """The ``open_params`` section (kernel-side behaviour); arrays are tuples.

    Invariant: every field holds a checked, normalised value and ``wake_bytes < ring_size``.
    """

    filter_own: bool
    filter_falco: bool
    filter_pids: tuple[int, ...]
    filter_comms: tuple[str, ...]
    drop_mode: bool
    drop_failed: bool
    interest_syscall_file: str
    ring_size: int
    cpus_per_ring: int
    loader: str
    track_state: bool
    follow: bool
    only_tids: tuple[int, ...]
    filter_uids: tuple[int, ...]
    only_uids: tuple[int, ...]
    failed_only: bool
    capture_env: bool
    syscall_stats: bool
    str_max: int
    buf_max: int
    argv_max: int
    emit_enter: bool
    wake_bytes: int
    only_pids: tuple[int, ...]
    only_comms: tuple[str, ...]
    syscalls: tuple[str, ...]
    filter: str
    path_prefixes: tuple[str, ...]

    def __post_init__(self) -> None:
        _validate(self, OPEN)

    def _cross_check(self) -> list[str]:
        out = []
        if self.wake_bytes >= self.ring_size:
            out.append(f"{OPEN}.wake_bytes: {self.wake_bytes} must be less than ring_size "
                       f"({self.ring_size}); 0 means ring_size/4")
        args: dict[str, str] = {}
        for entry in self.path_prefixes:
            name, arg, prefix = entry.split(":", 2)
            if args.setdefault(name, arg) != arg:
                out.append(f"{OPEN}.path_prefixes: {entry!r}: {name} has prefixes on {args[name]} "
                           "already; the kernel checks one argument per syscall")
                break
            if len(prefix.encode("utf-8")) > self.str_max:
                out.append(f"{OPEN}.path_prefixes: {entry!r}: the prefix is longer than str_max "
                           f"({self.str_max} bytes captured): it could never match")
                break
        if self.failed_only and self.drop_failed:
            out.append(f"{OPEN}.failed_only: true together with drop_failed: true would keep nothing; "
                       "choose one")
        return out

    @property
    def wake_threshold(self) -> int:
        """Pending ring bytes that wake the consumer (``wake_bytes``, or ``ring_size // 4`` for 0)."""
        return self.wake_bytes or self.ring_size // 4


# The dataclasses and the key table must agree (checked once, at import).
assert tuple(f.name for f in dataclasses.fields(InitConfig)) == INIT_KEYS, "InitConfig != key table"
assert tuple(f.name for f in dataclasses.fields(OpenParams)) == OPEN_KEYS, "OpenParams != key table"
assert not set(INIT_KEYS) & set(OPEN_KEYS)


@dataclass(frozen=True)
class Config:
    """The whole configuration: ``init`` (init_config) and ``open`` (open_params).

    Immutable; every constructor validates, every change returns a new ``Config``.  Keys can be
    read directly: ``cfg.str_max_size`` is ``cfg.init.str_max_size``, ``cfg.filter_pids`` is
    ``cfg.open.filter_pids``.
    """

    init: InitConfig
    open: OpenParams

    def __post_init__(self) -> None:
        if not isinstance(self.init, InitConfig) or not isinstance(self.open, OpenParams):
            raise TypeError("Config(init=InitConfig, open=OpenParams) expected")

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails; never recurses (init/open are not table keys).
        section = _KEYS.get(name, (None,))[0]
        if section == INIT:
            return getattr(self.init, name)
        if section == OPEN:
            return getattr(self.open, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(_KEYS))

    # ---- constructors -------------------------------------------------------------------------

    @classmethod
    def default(cls) -> Config:
        """The embedded default configuration (``lbd/default_config.json``)."""
        return _default()

    @classmethod
    def from_dict(cls, d: Mapping) -> Config:
        """From ``{"init_config": {...}, "open_params": {...}}`` or a flat ``{key: value}`` mapping.

        Missing keys take their defaults.  ``None`` sections mean empty sections.
        """
        init_raw, open_raw = _split(d)
        return _build(_default(), init_raw, open_raw)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Config:
        """From a ``.json``, ``.yaml`` or ``.yml`` file (sectioned shape; an empty file = defaults)."""
        name = os.fspath(path)
        ext = os.path.splitext(name)[1].lower()
        if ext not in (".json", ".yaml", ".yml"):
            raise ConfigError(f"{name}: unknown configuration file type {ext or '(no extension)'!r}; "
                              f"use .json, .yaml or .yml")
        from lbd.files import InputFileError, read_input_file

        try:
            data = read_input_file(name, "configuration file")
        except InputFileError as e:
            raise ConfigError(str(e)) from None
        bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
        text = _text(data[bom:], name, bom)
        doc = _parse_json(text, name, bom) if ext == ".json" else _parse_yaml(text, name, bom)
        base = os.path.dirname(os.path.abspath(name))
        try:
            init_raw, open_raw = _split({} if doc is None else doc)
            return _build(_default(), _relative_to(init_raw, base), _relative_to(open_raw, base))
        except ConfigError as e:
            raise e.prefixed(name) from None

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> Config:
        """From `path`; without one, from SYSTEM_PATH (/etc/lbd/lbd.yaml) when that file exists
        (the service's configuration), else the embedded default.  The CLI's --config."""
        if path is not None:
            return cls.from_file(path)
        if os.path.exists(SYSTEM_PATH):
            return cls.from_file(SYSTEM_PATH)
        return cls.default()

    @classmethod
    def from_plugin(cls, init_config: str | bytes, open_params: str | bytes) -> Config:
        """From the two JSON strings a Falco plugin receives ("", whitespace, "{}", null = defaults)."""
        init_raw = _section_mapping(_parse_json(_text(init_config, INIT), INIT), INIT)
        open_raw = _section_mapping(_parse_json(_text(open_params, OPEN), OPEN), OPEN)
        return _build(_default(), init_raw, open_raw)

    # ---- derived configurations --------------------------------------------------------------

    def replace(self, **changes: Any) -> Config:
        """A new Config with flat ``key=value`` overrides, validated like ``from_dict``."""
        init_raw, open_raw = _split(changes)
        return _build(self, init_raw, open_raw)

    def with_open_params(self, open_params_json: str | bytes) -> Config:
        """``init`` kept; ``open`` re-parsed from a plugin open string (missing keys = defaults)."""
        open_raw = _section_mapping(_parse_json(_text(open_params_json, OPEN), OPEN), OPEN)
        return Config(self.init, _build(_default(), {}, open_raw).open)

    def to_dict(self) -> dict:
        """``{"init_config": {...}, "open_params": {...}}``: JSON-serialisable, every key, table order."""
        return {section: {k: _KEYS[k][1].to_json(getattr(getattr(self, attr), k)) for k in keys}
                for section, attr, keys in ((INIT, "init", INIT_KEYS), (OPEN, "open", OPEN_KEYS))}

    def to_json(self, indent: int | None = 2) -> str:
        """``to_dict`` as JSON text (what ``lbd config`` can print and ``from_file`` reads back)."""
        return json.dumps(self.to_dict(), indent=indent)

    def plugin_strings(self) -> tuple[str, str]:
        """The ``(init_config, open_params)`` JSON strings that ``from_plugin`` turns back into self."""
        d = self.to_dict()
        return json.dumps(d[INIT]), json.dumps(d[OPEN])


def coerce(config: Config | Mapping | str | os.PathLike | None) -> Config:
    """The API's one entry point: None -> defaults, Config as is, mapping -> from_dict, path -> file."""
    if config is None:
        return Config.default()
    if isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        return Config.from_dict(config)
    if isinstance(config, (str, os.PathLike)):
        return Config.from_file(config)
    raise TypeError(f"a Config, mapping, file path or None expected, not {type(config).__name__}")


# --------------------------------------------------------------------------------------------
# Building and parsing
# --------------------------------------------------------------------------------------------

def _build(base: Config, init_raw: Mapping, open_raw: Mapping) -> Config:
    """A new Config: ``base`` overlaid with the raw section values; all problems reported at once."""
    problems = [_unknown_key(s, k) for s, raw in ((INIT, init_raw), (OPEN, open_raw))
                for k in raw if k not in _SECTION_KEYS[s]]
    if problems:
        raise ConfigError(*problems)
    init = open_ = None
    try:
        init = dataclasses.replace(base.init, **init_raw) if init_raw else base.init
    except ConfigError as e:
        problems.extend(e.problems)
    try:
        open_ = dataclasses.replace(base.open, **open_raw) if open_raw else base.open
    except ConfigError as e:
        problems.extend(e.problems)
    if problems:
        raise ConfigError(*problems)
    return Config(init, open_)


def _split(d: Any) -> tuple[Mapping, Mapping]:
    """(init_raw, open_raw) of a sectioned or a flat mapping."""
    d = _top_mapping(d)
    if any(k in _SECTIONS for k in d):
        extra = [k for k in d if k not in _SECTIONS]
        if extra:
            raise ConfigError(*(f"{_key_text(k)}: unknown top-level key; a sectioned configuration has only "
                                f"init_config and open_params" for k in extra))
        return (_section_mapping(d.get(INIT), INIT), _section_mapping(d.get(OPEN), OPEN))
    unknown = [_unknown_key(None, k) for k in d if k not in _KEYS]
    if unknown:
        raise ConfigError(*unknown)
    return ({k: v for k, v in d.items() if _KEYS[k][0] == INIT},
            {k: v for k, v in d.items() if _KEYS[k][0] == OPEN})


#: the keys whose value is a file or directory path: in a configuration file, a relative one is
#: relative to that file's directory (not to the working directory of whoever loads it)
PATH_KEYS = frozenset({"path", "log_file", "spool_dir", "python_home", "interest_syscall_file"})


def _relative_to(raw: Mapping, base: str) -> Mapping:
    """raw with its relative paths (PATH_KEYS; not "" = the default, not a nats:// URL) joined to
    base.  Values of other types are left for validation to reject."""
    out = dict(raw)
    for k, v in raw.items():
        if k in PATH_KEYS and isinstance(v, str) and v and not os.path.isabs(v) and "\0" not in v \
                and not (k == "path" and v.startswith("nats://")):
            out[k] = os.path.normpath(os.path.join(base, v))
    return out


def _top_mapping(d: Any) -> Mapping:
    if not isinstance(d, Mapping):
        raise ConfigError(f"configuration: the top level is {_type_name(d)}, expected a mapping "
                          f'{{"init_config": {{...}}, "open_params": {{...}}}}')
    return d


def _section_mapping(raw: Any, section: str) -> Mapping:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{section}: {_what(raw)}, expected a mapping of keys")
    return raw


#: the largest configuration text (a file, or a plugin's init_config / open_params string)
MAX_TEXT_BYTES = 1 << 20
#: the deepest nesting of arrays and mappings a configuration may have (it needs 3)
MAX_DEPTH = 32


def _text(s: str | bytes, source: str, offset: int = 0) -> str:
    """Text of at most MAX_TEXT_BYTES (bytes: UTF-8; errors name the byte offset)."""
    if isinstance(s, (bytes, bytearray, memoryview)):
        s = bytes(s)
        if len(s) > MAX_TEXT_BYTES:
            raise ConfigError(f"{source}: {len(s)} bytes, more than the limit of {MAX_TEXT_BYTES} bytes (1 MiB)")
        try:
            return s.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{source}: not UTF-8 text at byte {e.start + offset} ({e.reason})") from None
    if not isinstance(s, str):
        raise ConfigError(f"{source}: {_what(s)}, expected a JSON string")
    if len(s) > MAX_TEXT_BYTES and len(s.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
        raise ConfigError(f"{source}: more than the limit of {MAX_TEXT_BYTES} bytes (1 MiB)")
    return s


def _byte_offset(text: str, pos: int, offset: int) -> int:
    return len(text[:pos].encode("utf-8", "surrogatepass")) + offset


def _check_depth(doc: Any, source: str) -> Any:
    """doc, or ConfigError when its arrays and mappings nest deeper than MAX_DEPTH."""
    stack = [(doc, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list)):
            if depth > MAX_DEPTH:
                raise ConfigError(_too_deep(source))
            stack.extend((x, depth + 1) for x in (v.values() if isinstance(v, dict) else v))
    return doc


def _too_deep(source: str) -> str:
    return f"{source}: arrays and mappings nested more than {MAX_DEPTH} levels deep"


def _no_duplicates(source: str):
    def hook(pairs: list[tuple[str, Any]]) -> dict:
        out: dict = {}
        for k, v in pairs:
            if k in out:
                raise ConfigError(f"{source}: duplicate key {k!r}")
            out[k] = v
        return out
    return hook


def _parse_json(text: str, source: str, offset: int = 0) -> Any:
    """The JSON value of ``text``; empty or blank text is None.  Errors name source, line, column
    and byte offset (``offset``: bytes before ``text`` in its file, a BOM)."""
    if not text.strip():
        return None

    def bad_constant(name: str) -> Any:
        raise ConfigError(f"{source}: malformed JSON: {name} is not a JSON value")

    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates(source), parse_constant=bad_constant)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{source}: malformed JSON at line {e.lineno}, column {e.colno} "
                          f"(byte {_byte_offset(text, e.pos, offset)}): {e.msg}") from None
    except RecursionError:
        raise ConfigError(_too_deep(source)) from None
    return _check_depth(doc, source)


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader where only ``true``/``false`` are booleans, duplicate keys are errors and aliases
    (``*name``) are refused: a configuration needs none, and a few nested aliases can stand for an
    exponential number of values."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "YAML aliases (*name) are not accepted in a configuration",
                                              event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"found duplicate key {key_node.value!r}", key_node.start_mark)
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|false)$"), list("tf"))


def _parse_yaml(text: str, source: str, offset: int = 0) -> Any:
    try:
        doc = yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = (f" at line {mark.line + 1}, column {mark.column + 1} (byte {_byte_offset(text, mark.index, offset)})"
                 if mark else "")
        what = " ".join(str(e.problem or e.context or "not YAML").split())
        raise ConfigError(f"{source}: malformed YAML{where}: {what}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: malformed YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise ConfigError(_too_deep(source)) from None
    return _check_depth(doc, source)


@functools.lru_cache(maxsize=1)
def _default() -> Config:
    """Load and check the embedded default (complete: every key present, nothing unknown)."""
    source = f"lbd/{_DEFAULT_RESOURCE}"
    text = importlib.resources.files("lbd").joinpath(_DEFAULT_RESOURCE).read_text("utf-8")
    doc = _top_mapping(_parse_json(text, source))
    missing = [f"{s}.{k}" for s in _SECTIONS for k in _SECTION_KEYS[s]
               if k not in _section_mapping(doc.get(s), s)]
    if missing or set(doc) != set(_SECTIONS):
        raise ConfigError(f"{source}: the embedded default must give every key; missing: "
                          f"{', '.join(missing) or '-'}; sections: {', '.join(map(str, doc))}")
    init_raw, open_raw = doc[INIT], doc[OPEN]
    problems = [_unknown_key(s, k) for s, raw in ((INIT, init_raw), (OPEN, open_raw))
                for k in raw if k not in _SECTION_KEYS[s]]
    if problems:
        raise ConfigError(*problems).prefixed(source)
    try:
        return Config(InitConfig(**init_raw), OpenParams(**open_raw))
    except ConfigError as e:
        raise e.prefixed(source) from None


# --------------------------------------------------------------------------------------------
# Descriptions for Falco and for docs
# --------------------------------------------------------------------------------------------

def key_info(name: str) -> dict:
    """``{"section", "type", "range", "default", "description"}`` of one key (for docs and --help)."""
    if name not in _KEYS:
        raise ConfigError(_unknown_key(None, name))
    section, kind, desc = _KEYS[name]
    return {"section": section, "type": kind.type_text, "range": kind.range_text(),
            "default": _default().to_dict()[section][name], "description": desc}


def _section_schema(section: str) -> dict:
    defaults = _default().to_dict()[section]
    props = {}
    for k in _SECTION_KEYS[section]:
        kind = _KEYS[k][1]
        props[k] = {**kind.schema(), "description": DESCRIPTIONS[k], "default": defaults[k]}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": f"lbd {section}",
        "type": "object",
        "properties": props,
        "additionalProperties": False,
    }


def init_schema() -> dict:
    """JSON Schema (draft-07) of ``init_config``; Falco validates a plugin's init_config with it.

    null is allowed: Falco 0.44 passes an empty ``init_config: {}`` (and a missing one) as JSON
    null, which means the defaults.  Cross-key rules (a non-empty ``path`` when ``putfile``) are
    checked only by this module.
    """
    return {**_section_schema(INIT), "type": ["object", "null"]}


def open_params_schema() -> dict:
    """JSON Schema (draft-07) of ``open_params`` (``wake_bytes < ring_size`` is checked here only)."""
    return _section_schema(OPEN)


def open_params_list() -> list[dict]:
    """Suggested open parameters for a Falco plugin's ``list_open_params``."""
    examples = [
        ({}, "defaults: the packaged syscall selection, lbd's and Falco's own syscalls dropped"),
        ({"drop_failed": True}, "drop failed syscalls"),
        ({"filter_pids": [1], "filter_comms": ["systemd-journal"]},
         "drop syscalls of pid 1 and of the journal daemon"),
        ({"syscalls": ["execve", "execveat", "connect", "openat"]},
         "only program executions, connections and file opens"),
        ({"emit_enter": True, "ring_size": 32 << 20}, "also emit enter events, with a 32 MiB ring"),
    ]
    return [{"value": json.dumps(v), "desc": d} for v, d in examples]
