"""Straightforward per-event formatters: the readable definition of lbd's two output formats.

This is what the bulk formatter (lbd/_format.pyx) must produce byte for byte (tests hold the two
to each other) and the baseline it is benchmarked against; it is not the fast path.

``normal``, the seed's line (SPEC.md)::

    [<time>]: <syscall>, syscall_id=<n>, dir=<dir>, res=<ret>, user=<name>, comm=(<comm>),
    cmdline=(<cmdline>), pid=<pid>, tid=<tid>, ppid=<ppid>(<parent comm>),
    args=(<name>=<value>, ...), fds=[<fd>(<path>), ...]

* time: local time, ``2025-06-12 13:18:10.347507525``;
* argument values: ``format_value`` (integers in decimal as the seed prints them, ``flag=512``;
  strings and paths as UTF-8; socket addresses ``127.0.0.1:80``, ``[::1]:80`` or the unix path;
  argv joined by spaces; a NULL pointer ``NULL``); every value and the cmdline are cut at
  ``str_max_size`` characters and then end in ``...`` (0: no limit); an undecodable byte counts
  as one character;
* then every text field (user, comm, cmdline, parent comm, each argument value, each fd path) is
  escaped (``escape_text``, lbd/lbd_text.h): an undecodable byte and a control character
  (U+0000..U+001F, U+007F; U+0080..U+009F, U+2028 and U+2029 as their UTF-8 bytes) as ``\\xNN``, a backslash as ``\\\\``, and ``,`` ``(`` ``)`` ``=`` as
  ``\\,`` ``\\(`` ``\\)`` ``\\=``.  So an event is always one line, a value cannot end its field
  or pass for another ``name=``, and ``unescape_text`` gives back the exact text (square
  brackets are not escaped: ``anon_inode:[eventfd]`` and ``[::1]:80`` print as they are);
* ``envp`` is ``NULL`` unless ``capture_env``; with it, a ``NAME=VALUE`` whose name matches
  ``secret_pattern`` is written ``NAME=***`` (``mask_env``).

``json``: JSON Lines, one object per event, always the same keys in this order (schema:
lbd/output/event.schema.json)::

    time      RFC 3339 UTC with nanoseconds, "2025-06-12T11:18:10.347507525Z"
    ts        the same instant, integer ns since the epoch
    syscall, nr, dir ("<" exit, ">" enter), res
    err       the errno's name when the call failed (res in -4095 .. -1 and lbd.errnos names -res),
              "EACCES"; "" otherwise (always a string: a reader that infers types from the first
              lines, duckdb's 20,480, would type a column of nulls as NULL and lose later names)
    latency   ns from enter to exit
    pid, tid, ppid, pcomm, uid, user, gid, group, comm, cmdline, fullpath
    args      {name: value}, names by lbd.args.json_arg_names (one JSON type per name across
              all syscalls): integers (unsigned 64-bit values >= 2**63 as their signed value,
              lbd.args.json_int), strings (cut like the normal format), argv as an array of
              strings (each cut), fd pairs as [fd, fd], socket addresses as
              {"family", "addr", "port", "path", "raw" (hex)} with null for the parts the family
              lacks; an argument without a value (a NULL pointer, nothing read) is left out
    flag_names  {"arg": [names], "names": ["O_RDONLY|O_CLOEXEC", ...]}: the symbolic form of each
              flags-kind argument (lbd.flags.names); empty arrays when there is none
    truncated [argument names the probe cut]
    fds       {"fd": [0, 1, ...], "path": ["/dev/null", ...]}

Every key is always present and has one type (objects of arrays, never arrays of objects, and
no null where an object or array can stand), so that readers that infer a schema from the first
lines (pyarrow.json, duckdb read_json_auto) read a whole capture.
Written compactly (``separators=(",", ":")``, ``ensure_ascii=False``: UTF-8 text as is).  Text
values are cut like the normal format's, then ``escape_text(..., "json")``: an undecodable byte as
the text ``\\xNN`` and a backslash as ``\\\\``, which JSON then writes ``"\\\\xNN"`` and
``"\\\\\\\\"``: after json.loads, ``unescape_text`` gives back the exact bytes.  ``envp`` is left
out (no value) unless capture_env, and masked as in the normal format with it.
"""
from __future__ import annotations

import json
import re
import time

import numpy as np

from lbd import args as _args, errnos, flags as _flags, record
from lbd.args import SockAddr

__all__ = [
    "format_time", "format_time_utc", "truncate", "format_value", "format_args", "format_fds",
    "escape_text", "unescape_text", "secret_name", "mask_env", "env_value", "exact_args", "line_safe", "normal_line", "event_fields",
    "normal_event", "json_event", "json_line", "format_batch",
]

ENV_ARG = "envp"        # the strarr arguments capture_env governs (execve, execveat)


# ---- pieces ------------------------------------------------------------------------------------

def format_time(ns: int) -> str:
    """`2025-06-12 13:18:10.347507525` in local time."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(secs)) + f".{frac:09d}"


def format_time_utc(ns: int) -> str:
    """`2025-06-12T11:18:10.347507525Z` (RFC 3339, UTC)."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def truncate(s: str, limit: int) -> str:
    """str_max_size: longer strings end in `...` (0 = no limit)."""
    if limit and len(s) > limit:
        return s[:limit] + "..."
    return s


def format_value(v, limit: int) -> str:
    """One argument value as the normal format (and the Falco plugin's linux.args) prints it."""
    if v is None:
        return "NULL"
    if isinstance(v, bytes):
        return truncate(v.decode("utf-8", "backslashreplace"), limit)
    if isinstance(v, list):
        return truncate(" ".join(str(x) for x in v), limit)
    if isinstance(v, SockAddr):
        return truncate(str(v), limit)
    return truncate(str(v), limit)


_ESCAPE = {
    "normal": re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\\\\,()=\udc80-\udcff]"),   # a normal line's field
    "plain": re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\\\\\udc80-\udcff]"),        # a value alone (plugin)
    "json": re.compile("[\\\\\udc80-\udcff]"),                       # before JSON's own escaping
}


def _escape_one(m: re.Match) -> str:
    c = m.group()
    o = ord(c)
    if o >= 0xDC80:                       # surrogateescape: an undecodable byte
        return f"\\x{o - 0xDC00:02x}"
    if o < 0x20 or o == 0x7F:
        return f"\\x{o:02x}"
    if o >= 0x80:                         # C1 controls, U+2028, U+2029: line breaks to some readers
        return "".join(f"\\x{b:02x}" for b in c.encode())
    return "\\" + c                      # backslash, and , ( ) = in a normal field


def escape_text(s: str, mode: str = "normal") -> str:
    """A text value as the output writes it (lbd/lbd_text.h): s decoded with surrogateescape and
    already cut; undecodable bytes and (normal, plain) control characters as \\xNN (C1 controls
    U+0080..U+009F and the line separators U+2028, U+2029: their UTF-8 bytes, \\xc2\\x85), a
    backslash as \\\\, and (normal) , ( ) = with a backslash before them."""
    return _ESCAPE[mode].sub(_escape_one, s)


_UNESCAPE = re.compile(r"\\(x[0-9a-f]{2}|.)", re.S)


def unescape_text(s: str) -> bytes:
    """The bytes escape_text's text stands for: the inverse of escape_text for every mode."""
    out = bytearray()
    pos = 0
    for m in _UNESCAPE.finditer(s):
        out += s[pos:m.start()].encode("utf-8", "surrogateescape")
        g = m.group(1)
        out += bytes([int(g[1:], 16)]) if len(g) == 3 else g.encode("utf-8", "surrogateescape")
        pos = m.end()
    out += s[pos:].encode("utf-8", "surrogateescape")
    return bytes(out)


def line_safe(s: str) -> str:
    """Control characters as \\xNN, so that an event stays on one line (escape_text's "plain"
    mode for text without a backslash or an undecodable byte)."""
    return escape_text(s, "plain")


def _glob(pattern: bytes) -> re.Pattern:
    return re.compile(b"".join(b".*" if c == b"*" else b"." if c == b"?" else re.escape(c)
                               for c in (pattern[i:i + 1] for i in range(len(pattern)))), re.S)


def secret_name(pattern: str, name: bytes) -> bool:
    """Does an environment variable name match secret_pattern (|-separated globs, * and ?, ASCII
    case-insensitive; lbd_secret_name)?"""
    up = name.upper()
    return any(p and _glob(p.encode("utf-8", "surrogateescape").upper()).fullmatch(up) for p in pattern.split("|"))


def mask_env(s: str, pattern: str) -> str:
    """NAME=VALUE as written with capture_env: NAME=*** when the name is a secret one."""
    name, eq, _ = s.partition("=")
    if eq and secret_name(pattern, name.encode("utf-8", "surrogateescape")):
        return name + "=***"
    return s


def env_value(v, capture_env: bool, pattern: str):
    """The envp argument as written: None unless capture_env, else each string through mask_env."""
    if not capture_env or v is None:
        return None
    return [mask_env(x, pattern) for x in v]


def format_args(args: dict, limit: int, mode: str = "normal") -> str:
    """The args text: name=value, each value cut and escaped (mode "normal"; None: not escaped)."""
    if mode is None:
        return ", ".join(f"{k}={format_value(v, limit)}" for k, v in args.items())
    return ", ".join(f"{k}={escape_text(format_value(v, limit), mode)}" for k, v in args.items())


def format_fds(fds) -> str:
    return ", ".join(f"{fd}({escape_text(path)})" for fd, path in fds)


def normal_line(*, ts: int, name: str, nr: int, dir: str, res: int, user: str, comm: str, cmdline: str,
                pid: int, tid: int, ppid: int, pcomm: str, args: dict, fds, limit: int, **_ignored) -> str:
    """The normal line of one event from its values (text: decoded with surrogateescape)."""
    s = escape_text
    return (
        f"[{format_time(ts)}]: {s(name)}, syscall_id={nr}, dir={dir}, res={res}, user={s(user)}, "
        f"comm=({s(comm)}), cmdline=({s(truncate(cmdline, limit))}), pid={pid}, tid={tid}, "
        f"ppid={ppid}({s(pcomm)}), args=({format_args(args, limit)}), "
        f"fds=[{format_fds(fds)}]"
    )


# ---- one event of a batch ----------------------------------------------------------------------

def _text(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _enrichment(batch, i: int) -> dict:
    """lbd.enrich.event_info with the strings decoded with surrogateescape (exact bytes)."""
    row = batch.enrich[i]
    st = np.asarray(batch.strtab, dtype=np.uint8)

    def at(off: int, n: int) -> str:
        return _text(st[off: off + n].tobytes()) if n and off + n <= len(st) else ""

    def s(name: str) -> str:
        return at(int(row[name + "_off"]), int(row[name + "_len"]))

    off, n = int(row["fds_off"]), int(row["fds_n"])
    fdtab = batch.fdtab
    fds = ([(int(r["fd"]), at(int(r["path_off"]), int(r["path_len"]))) for r in fdtab[off: off + n]]
           if n and off + n <= len(fdtab) else [])
    return {"ppid": int(row["ppid"]), "pcomm": s("pcomm"), "user": s("user"), "group": s("group"),
            "cmdline": s("cmdline"), "fullpath": s("fullpath"), "fds": fds}


def exact_args(nr: int, flags: int, raw, payloads, capture_env: bool = False, secret_pattern: str = "") -> dict:
    """An event's arguments as the output formats write them, before the cut and the escapes:
    text decoded with surrogateescape (buffers too: an undecodable byte is one U+DC80..U+DCFF
    character), envp as env_value makes it."""
    args = _args.decode_args(nr, flags, raw, payloads, errors="surrogateescape")
    for a in _args.arg_specs(nr) or ():
        if a.name not in args:
            continue
        if a.name == ENV_ARG and a.kind == "strarr":
            args[a.name] = env_value(args[a.name], capture_env, secret_pattern)
        elif isinstance(args[a.name], bytes):
            args[a.name] = _text(args[a.name])
    return args


def event_fields(batch, i: int, *, exact: bool = False, capture_env: bool = False,
                 secret_pattern: str = "") -> dict:
    """Everything both formats show of event i: header, decoded arguments, enrichment.

    Without enrichment (no batch.enrich) the kernel's values stand in: user and group as numbers,
    cmdline = comm, no parent comm, no fullpath, no fds.

    exact (what the output formats write): text decoded with surrogateescape (an undecodable byte
    is one U+DC80..U+DCFF character, told apart from a backslash), buffers as text, envp as
    env_value makes it of capture_env / secret_pattern.  Otherwise (the filter's reference, the
    API) text decoded with backslashreplace and the arguments as batch.args gives them.
    """
    from lbd.enrich.layout import event_info, has_enrichment

    e = batch.events[i]
    nr = int(e["nr"])
    raw_comm = bytes(e["comm"]).split(b"\0", 1)[0]
    if exact:
        comm = _text(raw_comm)
        payloads = [batch.payload(i, k) for k in range(record.MAX_ARGS)]
        args = exact_args(nr, int(e["flags"]), e["args"], payloads, capture_env, secret_pattern)
    else:
        comm = raw_comm.decode("utf-8", "backslashreplace")
        args = batch.args(i)
    f = dict(ts=int(e["ts"]), name=_args.syscall_name(nr), nr=nr, dir=chr(int(e["dir"])), res=int(e["res"]),
             latency=int(e["latency"]), pid=int(e["pid"]), tid=int(e["tid"]), uid=int(e["uid"]),
             gid=int(e["gid"]), comm=comm, flags=int(e["flags"]), args=args)
    if has_enrichment(batch):
        f.update(_enrichment(batch, i) if exact else event_info(batch, i))
    else:
        f.update(ppid=int(e["ppid"]), pcomm="", user=str(f["uid"]), group=str(f["gid"]), cmdline=comm,
                 fullpath="", fds=[])
    return f


def normal_event(batch, i: int, limit: int, capture_env: bool = False, secret_pattern: str = "") -> str:
    return normal_line(limit=limit, **event_fields(batch, i, exact=True, capture_env=capture_env,
                                                   secret_pattern=secret_pattern))


def _jtext(s: str, limit: int = 0) -> str:
    return escape_text(truncate(s, limit), "json")


def _json_value(v, limit: int):
    if isinstance(v, int):
        return _args.json_int(v)
    if isinstance(v, str):
        return _jtext(v, limit)
    if isinstance(v, bytes):
        return _jtext(_text(v), limit)
    if isinstance(v, SockAddr):
        d = v.as_json()
        if d.get("path") is not None:
            d["path"] = _jtext(d["path"])
        return d
    if isinstance(v, list):
        return [_jtext(x, limit) if isinstance(x, str) else x for x in v]
    raise TypeError(f"no JSON form for {type(v).__name__}")


def json_event(batch, i: int, limit: int, capture_env: bool = False, secret_pattern: str = "") -> dict:
    """Event i as the JSON object of the json format (see the module docstring)."""
    f = event_fields(batch, i, exact=True, capture_env=capture_env, secret_pattern=secret_pattern)
    specs = _args.arg_specs(f["nr"]) or ()
    jnames = _args.json_arg_names(f["nr"]) or ()
    args = f["args"]
    shown = [(a, jn) for a, jn in zip(specs, jnames) if a.name in args]
    fl_arg, fl_names = [], []
    for a, jn in shown:
        if a.flags and args[a.name] is not None:
            fl_arg.append(jn)
            fl_names.append(_flags.names(a.flags, args[a.name]))
    err = errnos.error_of(f["res"])
    return {
        "time": format_time_utc(f["ts"]), "ts": f["ts"], "syscall": f["name"], "nr": f["nr"], "dir": f["dir"],
        "res": f["res"], "err": (errnos.name(err) or "") if err is not None else "",
        "latency": f["latency"], "pid": f["pid"], "tid": f["tid"], "ppid": f["ppid"],
        "pcomm": _jtext(f["pcomm"]), "uid": f["uid"], "user": _jtext(f["user"]), "gid": f["gid"],
        "group": _jtext(f["group"]), "comm": _jtext(f["comm"]), "cmdline": _jtext(f["cmdline"], limit),
        "fullpath": _jtext(f["fullpath"]),
        "args": {jn: _json_value(args[a.name], limit) for a, jn in shown if args[a.name] is not None},
        "flag_names": {"arg": fl_arg, "names": fl_names},
        "truncated": [jn for k, (a, jn) in enumerate(zip(specs, jnames))
                      if args and f["flags"] >> (record.F_TRUNC_SHIFT + k) & 1],
        "fds": {"fd": [fd for fd, _ in f["fds"]], "path": [_jtext(p) for _, p in f["fds"]]},
    }


def json_line(batch, i: int, limit: int, capture_env: bool = False, secret_pattern: str = "") -> str:
    return json.dumps(json_event(batch, i, limit, capture_env, secret_pattern), ensure_ascii=False,
                      separators=(",", ":"))


def format_batch(batch, fmt: str = "normal", limit: int = 0, mask=None, capture_env: bool = False,
                 secret_pattern: str = "") -> bytes:
    """The output of a whole batch, one line per event (those with a true `mask` entry)."""
    one = normal_event if fmt == "normal" else json_line
    lines = [one(batch, i, limit, capture_env, secret_pattern) for i in range(len(batch)) if mask is None or mask[i]]
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""

