"""The terminal format: one compact, strace-like line per event, for a person at a terminal.

    13:18:10.347507 cat(4242) openat(AT_FDCWD, "/etc/shadow", O_RDONLY|O_CLOEXEC) = -1 EACCES (Permission denied)
    13:18:10.347515 cat(4242) read(3, "root:x:0:0:root:/root:/bin/bash\\n"..., 4096) = 32
    13:18:10.347601 curl(4300:4301) connect(5, {AF_INET, 10.0.0.1:443}, 16) = 0
    13:18:10.348000 sh(4302) sched_process_exec(pid=4302, old_pid=4302, filename="/usr/bin/true")

* time: local, to the microsecond; then ``comm(pid)``, ``comm(pid:tid)`` for a thread other than
  the main one;
* arguments as strace shows them: flags by name (lbd.flags), AT_FDCWD, modes in octal, pointers
  in hex or NULL, strings and buffers quoted with C escapes (``\\n``, ``\\"``, ``\\xNN`` for a
  control character or a byte that is not UTF-8), cut at `limit` characters and then ``...``, as
  when the probe cut them; argv as ``["git", "status"]``; socket addresses as
  ``{AF_INET, 10.0.0.1:443}``, ``{AF_UNIX, "/run/x"}``; output arguments of a failed call (the
  probe does not read them) as their address;
* structures as strace shows them: ``{map_type=BPF_MAP_TYPE_HASH, key_size=4, ...}`` with their
  fields' names (lbd/layouts.py), iovecs ``[{iov_base=0x..., iov_len=16}]``, a msghdr's name,
  iovec lengths and control messages (``cmsg_data=[5]`` for SCM_RIGHTS), group lists ``[0, 4]``;
  names that depend on another argument (prctl's arg2 by option, a socket's protocol by family,
  a socket option by level); prctl(PR_SET_NAME)'s name is the thread's comm after the call;
* execve's environment as the other formats write it: its address unless capture_env (the probe
  did not read it), with capture_env the strings with secret_pattern's values as ``NAME=***``;
* open's mode is left out when the flags do not create a file (as strace does);
* the result: ``= 3``; a failed call ``= -1 ENAME (message)`` (lbd.errnos); mmap and friends in hex;
  ``= ?`` for exit and exit_group; an enter record (dir ``>``) ends in `` ...`` and an exit whose
  enter was not seen shows ``(?)`` for its arguments; process-tree records have no result;
* on request: `` <0.000123>`` the latency in seconds (``latency=True``), the command line
  (``cmdline=True``) and the open files (``fds=True``) from the enrichment, after the line.

Colours (ANSI) when `color` is true: time dim, ``comm(pid)`` cyan, the syscall bold, strings
green, symbolic names yellow, a failed result red.  `use_color(fd)` is the automatic choice: not
when NO_COLOR is set (https://no-color.org), else when fd is a terminal whose TERM is not "dumb".

`TerminalFormatter` has the interface of the bulk formatter (lbd._format.Formatter: `format(batch,
mask)`, `buffered`, `getvalue()`, `clear()`, `write_to(fd)`), so lbd.output.writer.Writer uses it for
``fmt="terminal"``.  It formats event by event in Python (tens of thousands of lines a second, more
than a terminal shows); `terminal_line(batch, i)` is one event's line.
"""
from __future__ import annotations

import errno as _errno
import os
import re
import time

from lbd import args as _args, errnos, flags as _flags, layouts, record, syscalls
from lbd.args import SockAddr

__all__ = ["TerminalFormatter", "terminal_line", "use_color", "quote", "Palette", "PLAIN", "ANSI"]

K = record.KINDS
_AT_FDCWD = -100
#: syscalls whose result is an address, shown in hex (as strace does)
_HEX_RESULT = frozenset(("mmap", "mremap", "brk", "shmat"))
_PR_SET_NAME = 15


class Palette:
    """Escape sequences around each kind of text (all empty: no colour)."""

    def __init__(self, time="", who="", name="", string="", symbol="", error="", reset=""):
        self.time, self.who, self.name, self.string, self.symbol, self.error = time, who, name, string, symbol, error
        self.reset = reset


PLAIN = Palette()
ANSI = Palette(time="\x1b[2m", who="\x1b[36m", name="\x1b[1m", string="\x1b[32m", symbol="\x1b[33m",
               error="\x1b[1;31m", reset="\x1b[0m")


def use_color(fd: int, environ=None) -> bool:
    """Colours by default: not when NO_COLOR is set and not empty, else when fd is a terminal
    (and TERM is not "dumb")."""
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR"):
        return False
    if env.get("TERM", "") == "dumb":
        return False
    try:
        return os.isatty(fd)
    except OSError:
        return False


# ---- values ------------------------------------------------------------------------------------

_ESC = {0x22: '\\"', 0x5C: "\\\\", 0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r", 0x0B: "\\v", 0x0C: "\\f"}
_TABLE = {c: _ESC.get(c, f"\\x{c:02x}") for c in list(range(0x20)) + [0x22, 0x5C, 0x7F]}
_TABLE.update({0xDC80 + b: f"\\x{0x80 + b:02x}" for b in range(0x80)})    # surrogateescape'd bytes
_NEEDS = re.compile("[\x00-\x1f\"\\\\\x7f\udc80-\udcff]")


def quote(data: bytes, limit: int = 0, cut: bool = False) -> str:
    """`data` as a C string literal: UTF-8 text kept, escapes for quotes, backslashes, control
    characters and bytes that are not UTF-8; cut at `limit` characters (0: no limit) or when `cut`
    (the probe cut it), then ``...`` after the closing quote."""
    text = bytes(data).decode("utf-8", "surrogateescape")
    if limit and len(text) > limit:
        text, cut = text[:limit], True
    if _NEEDS.search(text):
        text = text.translate(_TABLE)
    return f'"{text}"...' if cut else f'"{text}"'


def _sockaddr(sa: SockAddr, limit: int) -> str:
    if sa.path is not None:
        return f"{{{sa.family}, {quote(sa.path.encode('utf-8', 'surrogateescape'), limit)}}}"
    if sa.addr is not None:
        return f"{{{sa.family}, {sa}}}"
    if sa.raw:
        return f"{{{sa.family}, {sa.raw.hex()}}}"
    return f"{{{sa.family}}}"


class _Ctx:
    """What one format() call shares: palette, limit, the batch's arrays as Python values."""

    def __init__(self, batch, palette: Palette, limit: int, capture_env: bool = False, secret_pattern: str = ""):
        self.p = palette
        self.limit = limit
        self.batch = batch
        self.arena = memoryview(batch.arena)
        self.capture_env = capture_env
        self.secret_pattern = secret_pattern


def _field_text(c: _Ctx, f, v, others) -> str:
    """A structure field (lbd.layouts.Field) as strace shows it."""
    p = c.p
    if f.flags:
        n = _flags.arg_names(f.flags, v, others)
        if n is not None:
            return f"{p.symbol}{n}{p.reset}"
    if f.kind == "c":
        return f"{p.string}{quote(v.encode('utf-8', 'surrogateescape'), c.limit)}{p.reset}"
    if f.kind == "b":
        return f'"{v}"'
    if f.kind == "p":
        return "NULL" if not v else hex(v)
    if f.kind == "x":
        return hex(v)
    if f.kind == "o":
        return "0" + format(v, "o") if v else "0"
    return str(v)


def _struct_text(c: _Ctx, spec, v) -> str:
    """A structure, an iovec array, a msghdr or a group list as strace shows them."""
    p = c.p
    if isinstance(v, list):
        return "[" + ", ".join(str(x) for x in v) + "]"
    if v.layout == "iovec":
        return "[" + ", ".join(f"{{iov_base={hex(b) if b else 'NULL'}, iov_len={n}}}"
                               for b, n in zip(v["base"], v["len"])) + "]"
    if v.layout == "msghdr":
        parts = []
        if v["name"] is not None:
            parts.append(f"msg_name={_sockaddr(v['name'], c.limit)}")
        parts.append(f"msg_namelen={v['namelen']}")
        parts.append("msg_iov=[" + ", ".join(f"{{iov_len={n}}}" for n in v["iov_len"]) + "]")
        parts.append(f"msg_iovlen={v['iovlen']}")
        if v["cmsg_type"]:
            cm = []
            for lv, t in zip(v["cmsg_level"], v["cmsg_type"]):
                level = _flags.names("sockopt_level", lv)
                typ = _flags.names("scm_type", t) if lv == 1 else str(t)
                data = f", cmsg_data={v['scm_rights']}" if lv == 1 and t == 1 else ""
                cm.append(f"{{cmsg_level={p.symbol}{level}{p.reset}, cmsg_type={p.symbol}{typ}{p.reset}{data}}}")
            parts.append("msg_control=[" + ", ".join(cm) + "]")
        parts.append(f"msg_controllen={v['controllen']}")
        parts.append(f"msg_flags={p.symbol}{_flags.names('msg_flags', v['flags'])}{p.reset}")
        return "{" + ", ".join(parts) + "}"
    fields = layouts.LAYOUTS[v.layout].all_fields()
    return "{" + ", ".join(f"{k}={_field_text(c, fields[k], x, v)}" for k, x in v.items() if x is not None) + "}"


def _arg_text(c: _Ctx, spec, raw: int, payload: bytes | None, faulted: bool, cut: bool, others=None,
              off: int = 0) -> str:
    """One argument as strace shows it (see the module docstring)."""
    p = c.p
    kind = spec.kind_id
    if kind in (K["int"], K["fd"], K["pid"]):
        return str(_args.signed(raw, spec.bits if kind == K["int"] else 32))
    if kind == K["dirfd"]:
        v = _args.signed(raw, 32)
        return f"{p.symbol}AT_FDCWD{p.reset}" if v == _AT_FDCWD else str(v)
    if kind in (K["uid"], K["gid"]):
        v = raw & 0xFFFFFFFF
        return "-1" if v == 0xFFFFFFFF else str(v)
    if kind == K["uint"]:
        return str(raw & ((1 << spec.bits) - 1))
    if kind == K["hex"]:
        return hex(raw & ((1 << spec.bits) - 1))
    if kind == K["mode"]:
        v = raw & ((1 << spec.bits) - 1)
        return "0" + format(v, "o") if v else "0"
    if kind == K["flags"]:
        v = raw & ((1 << spec.bits) - 1)
        if spec.flags:
            n = _flags.arg_names(spec.flags, v, others)
            if n is not None:
                return f"{p.symbol}{n}{p.reset}"
        return "NULL" if v == 0 and spec.type.endswith("*") else hex(v) if v > 0xFFFF else str(v)
    if kind in (K["ptr"], K["none"]):
        return "NULL" if raw == 0 else hex(raw)
    # pointer kinds with a payload
    payload = _args.payload_or_empty(kind, raw, payload, faulted, off)
    if payload is None:
        return "NULL" if raw == 0 else hex(raw)          # not read: a fault, an output not written
    if kind in _args.SPEC_KINDS:
        v = _args.decode_arg(spec, raw, payload, others)
        return hex(raw) if v is None else _struct_text(c, spec, v) + (" ..." if cut else "")
    if kind in (K["str"], K["path"], K["buf"], K["out_buf"]):
        return f"{p.string}{quote(payload, c.limit, cut)}{p.reset}"
    if kind == K["strarr"]:
        parts = payload.split(b"\0")
        if parts and parts[-1] == b"":
            parts.pop()
        inner = ", ".join(f"{p.string}{quote(x, c.limit)}{p.reset}" for x in parts)
        return f"[{inner}{', ...' if cut else ''}]"
    v = _args.decode(kind, spec.bits, raw, payload)
    if v is None:
        return hex(raw)
    if isinstance(v, SockAddr):
        return _sockaddr(v, c.limit)
    if kind == K["out_fd2"]:
        return f"[{v[0]}, {v[1]}]"
    if kind == K["out_int"]:
        return f"[{v}]"
    return str(v)


def _result(c: _Ctx, name: str, res: int, noreturn: bool) -> str:
    p = c.p
    if noreturn:
        return " = ?"
    err = errnos.error_of(res)
    if err is not None:
        ename = errnos.name(err)
        label = ename if ename else f"errno {err}"
        return f" = {p.error}-1 {label} ({errnos.message(err)}){p.reset}"
    if name in _HEX_RESULT and res >= 0:
        return f" = {hex(res)}"
    return f" = {res}"


_clock_cache: dict[int, str] = {}


def _clock(ns: int) -> str:
    sec, frac = divmod(ns, 1_000_000_000)
    s = _clock_cache.get(sec)
    if s is None:
        if len(_clock_cache) > 4096:
            _clock_cache.clear()
        s = _clock_cache[sec] = time.strftime("%H:%M:%S", time.localtime(sec))
    return f"{s}.{frac // 1000:06d}"


class _Rows:
    """The header columns of the events to format, as Python lists (one conversion per batch)."""

    def __init__(self, ev):
        for name in ("nr", "flags", "pid", "tid", "comm", "ts", "dir", "res", "latency", "rec", "args"):
            setattr(self, name, ev[name].tolist())
        self.off = ev["slot"]["off"].tolist()
        self.len = ev["slot"]["len"].tolist()


def _line(c: _Ctx, r: _Rows, j: int, enrich: dict | None, opts) -> str:
    p = c.p
    nr = r.nr[j]
    name = _args.syscall_name(nr)
    flags = r.flags[j]
    pid, tid = r.pid[j], r.tid[j]
    comm_q = quote(r.comm[j].split(b"\0", 1)[0])
    comm = comm_q[1:-1]
    who = f"{comm}({pid})" if pid == tid else f"{comm}({pid}:{tid})"
    head = f"{p.time}{_clock(r.ts[j])}{p.reset} {p.who}{who}{p.reset} {p.name}{name}{p.reset}"
    specs = _args.arg_specs(nr)
    sched = nr >= record.NR_SCHED_FORK
    exit_rec = r.dir[j] == record.DIR_EXIT
    res = r.res[j]
    if specs is None or flags & record.F_NOENTER:
        body = "(?)"
    else:
        parts = []
        rec = r.rec[j]
        raws, offs, lens = r.args[j], r.off[j], r.len[j]
        shown = specs[: record.MAX_ARGS]
        if _mode_unused(shown, raws):
            shown = shown[:-1]
        others = _args.raw_others(specs[: record.MAX_ARGS], raws)
        for k, spec in enumerate(shown):
            ln = lens[k]
            payload = c.arena[rec + offs[k]: rec + offs[k] + ln].tobytes() if ln else None
            if payload and _args.strips_nul(nr, k) and payload[-1:] == b"\0":
                payload = payload[:-1]
            if name == "prctl" and k == 1 and raws[0] == _PR_SET_NAME and exit_rec and res == 0:
                # the new name: the probe reads the thread's comm again after the call
                parts.append(f"{p.string}{comm_q}{p.reset}")
                continue
            if spec.name == "envp" and spec.kind_id == K["strarr"]:
                if not c.capture_env:           # not read (capture_env off): its address
                    parts.append(f"{spec.name}={_ptr(raws[k])}" if sched else _ptr(raws[k]))
                    continue
                if payload:                     # as the other formats: secret values masked
                    payload = b"\0".join(_mask_env(x, c.secret_pattern) for x in payload.split(b"\0"))
            text = _arg_text(c, spec, raws[k], payload, bool(flags >> (record.F_FAULT_SHIFT + k) & 1),
                             bool(flags >> (record.F_TRUNC_SHIFT + k) & 1), others, offs[k])
            parts.append(f"{spec.name}={text}" if sched else text)
        body = "(" + ", ".join(parts) + ")"
    if sched:
        tail = ""
    elif not exit_rec:
        tail = " ..."
    else:
        sc = syscalls.BY_NR.get(nr)
        tail = _result(c, name, res, bool(sc and sc.noreturn))
        if opts.latency:
            tail += f" <{r.latency[j] / 1e9:.6f}>"
    extra = ""
    if enrich is not None:
        if opts.cmdline:
            extra += f"  cmdline={p.string}{quote(enrich['cmdline'].encode('utf-8', 'surrogateescape'), c.limit)}{p.reset}"
        if opts.fds:
            fds = ", ".join(f"{fd}:{quote(path.encode('utf-8', 'surrogateescape'), c.limit)[1:-1]}"
                            for fd, path in enrich["fds"])
            extra += f"  fds=[{fds}]"
    return head + body + tail + extra


_O_TMPFILE = getattr(os, "O_TMPFILE", 0o20200000)      # __O_TMPFILE | O_DIRECTORY


def _mode_unused(specs, raws) -> bool:
    """open / openat / creat-like calls: the last argument is a mode that the flags before it do
    not use (no O_CREAT, no O_TMPFILE), so strace leaves it out."""
    if len(specs) < 2 or specs[-1].name != "mode" or specs[-2].flags != "open_flags":
        return False
    flags = int(raws[len(specs) - 2])
    return not (flags & os.O_CREAT or flags & _O_TMPFILE == _O_TMPFILE)


def _ptr(raw: int) -> str:
    return "NULL" if raw == 0 else hex(raw)


def _mask_env(s: bytes, pattern: str) -> bytes:
    """NAME=VALUE: NAME=*** when NAME matches secret_pattern (lbd.output.reference.mask_env)."""
    from lbd.output.reference import secret_name

    name, eq, _ = s.partition(b"=")
    return name + b"=***" if eq and pattern and secret_name(pattern, name) else s


class _Opts:
    def __init__(self, cmdline: bool, fds: bool, latency: bool):
        self.cmdline, self.fds, self.latency = cmdline, fds, latency


def terminal_line(batch, i: int, *, limit: int = 0, color: bool = False, cmdline: bool = False, fds: bool = False,
                  latency: bool = False, capture_env: bool = False, secret_pattern: str = "") -> str:
    """Event i of the batch as one line of the terminal format (no newline)."""
    from lbd.enrich.layout import event_info, has_enrichment

    c = _Ctx(batch, ANSI if color else PLAIN, limit, capture_env, secret_pattern)
    info = event_info(batch, i) if (cmdline or fds) and has_enrichment(batch) else None
    return _line(c, _Rows(batch.events[i: i + 1]), 0, info, _Opts(cmdline, fds, latency))


class TerminalFormatter:
    """Formats batches into a buffer of terminal lines (the interface of lbd._format.Formatter).

    limit: characters of a string shown before ``...`` (0: all); color: ANSI colours; cmdline,
    fds, latency: the extras of the module docstring.  Invariant: the buffer holds whole lines."""

    def __init__(self, limit: int = 0, *, color: bool = False, cmdline: bool = False, fds: bool = False,
                 latency: bool = False, capture_env: bool = False, secret_pattern: str = ""):
        self.limit = limit
        self.capture_env, self.secret_pattern = capture_env, secret_pattern
        self.color = color
        self.palette = ANSI if color else PLAIN
        self.opts = _Opts(cmdline, fds, latency)
        self._chunks: list[bytes] = []
        self._size = 0

    def format(self, batch, mask=None) -> int:
        """Append the lines of batch's events (those with a true `mask` entry); returns how many."""
        from lbd.enrich.layout import event_info, has_enrichment

        n = len(batch)
        if not n:
            return 0
        if mask is None:
            idx = range(n)
        else:
            import numpy as np

            idx = np.flatnonzero(np.asarray(mask, dtype=bool)).tolist()
        c = _Ctx(batch, self.palette, self.limit, self.capture_env, self.secret_pattern)
        extras = (self.opts.cmdline or self.opts.fds) and has_enrichment(batch)
        rows = _Rows(batch.events[idx] if mask is not None else batch.events)
        lines = [_line(c, rows, j, event_info(batch, i) if extras else None, self.opts) for j, i in enumerate(idx)]
        if lines:
            data = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
            self._chunks.append(data)
            self._size += len(data)
        return len(lines)

    @property
    def buffered(self) -> int:
        """Bytes formatted and not yet written."""
        return self._size

    def getvalue(self) -> bytes:
        """The buffered text; the buffer is emptied."""
        v = b"".join(self._chunks)
        self.clear()
        return v

    def clear(self) -> None:
        self._chunks = []
        self._size = 0

    @property
    def buffered_lines(self) -> int:
        """Lines formatted and not yet written (the one partly written included)."""
        return sum(c.count(b"\n") for c in self._chunks)

    def line_end(self) -> int:
        """Bytes up to and including the buffer's first newline (all of it when none)."""
        for c in self._chunks:
            if c:
                self._join()
                k = self._chunks[0].find(b"\n")
                return self._size if k < 0 else k + 1
        return 0

    def _join(self) -> None:
        if len(self._chunks) > 1:
            self._chunks = [b"".join(self._chunks)]

    def write_some(self, fd: int, limit: int = 0, partial: bool = False) -> tuple[int, int, int]:
        """One write(2) of the buffer's start, as lbd._format.Formatter.write_some: cut back to a
        line end unless partial (nothing when not one line fits in limit); (bytes written, lines
        completed, bytes after the last newline written).  OSError on failure."""
        if not self._size:
            return (0, 0, 0)
        self._join()
        data = self._chunks[0]
        n = len(data)
        if limit and limit < n:
            n = limit if partial else data.rfind(b"\n", 0, limit) + 1
        if n <= 0:
            return (0, 0, 0)
        w = os.write(fd, memoryview(data)[:n])
        if w == 0:
            raise OSError(_errno.ENOSPC, os.strerror(_errno.ENOSPC))
        done = data[:w]
        rest = data[w:]
        self._chunks = [rest] if rest else []
        self._size = len(rest)
        last = done.rfind(b"\n") + 1
        return (w, done.count(b"\n"), w - last)

    def write_to(self, fd: int) -> int:
        """Write the whole buffer to fd, then empty it; returns the bytes written.  Raises OSError
        with what was not written still buffered."""
        data = memoryview(b"".join(self._chunks))
        done = 0
        try:
            while done < len(data):
                try:
                    w = os.write(fd, data[done:])
                except InterruptedError:
                    continue
                if w == 0:
                    raise OSError(_errno.ENOSPC, os.strerror(_errno.ENOSPC))
                done += w
        finally:
            rest = data[done:].tobytes()
            self._chunks = [rest] if rest else []
            self._size = len(rest)
        return done
