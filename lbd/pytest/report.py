"""What a test gets from its recorded syscalls, computed from the records of a capture (no kernel).

A `Log` holds what the capture kept of one test: every syscall as one row of `CALL_DTYPE` (number,
result, latency, enter time, pid, tid; copied out of the batch in bulk), and, for the few syscalls
whose arguments matter here (opens, connect/bind/sendto, path changes, chdir, executions), the
decoded call: its arguments, result and its line in lbd's terminal format (strace-like, without
the clock).  Paths are resolved as the process saw them: against its working directory (followed
through chdir/fchdir, inherited at fork) or the directory fd of an *at() call (opened in the
recording, else read from /proc while the fd is still open).

A `Report` is a view of a log through time windows (the `with` blocks of a test): counts per
syscall, failures per errno name, total and p99 latency, files opened, connections and binds,
executions, bytes read and written, tables for pandas, and the assertion helpers.  Records that are
not syscalls (the process-tree records) and exits whose enter was not recorded (a syscall already
running when recording began, a new thread returning from clone) are not counted.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple

import numpy as np

from lbd import errnos, flags as _flags, record, syscalls as _sc

__all__ = ["CALL_DTYPE", "Call", "Count", "Exec", "FileOpen", "Latency", "Log", "NetCall", "Report"]

#: one recorded syscall: its number, result, latency (ns), enter time (ns, the records' clock),
#: process and thread
CALL_DTYPE = np.dtype([("nr", "<u2"), ("res", "<i8"), ("latency", "<u8"), ("ts", "<u8"), ("pid", "<u4"),
                       ("tid", "<u4")])

AT_FDCWD = -100
_WRITE_OPEN = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC
_O_TMPFILE = getattr(os, "O_TMPFILE", 0o20200000)   # includes O_DIRECTORY's bit: compare it whole
_INET = ("AF_INET", "AF_INET6")
#: the device writes never count as writes outside a directory
_ALWAYS_WRITABLE = frozenset({"/dev/null"})


def _nr(name: str) -> int | None:
    sc = _sc.BY_NAME.get(name)
    return sc.nr if sc is not None and sc.name == name else None


def _table(pairs) -> dict[int, object]:
    return {nr: v for name, v in pairs if (nr := _nr(name)) is not None}


#: open-like calls: (dirfd argument or None, path argument, flags argument or None: creat always
#: writes, openat2's flags are in a struct the probe does not read)
OPENS: dict[int, tuple[str | None, str, str | None]] = _table([
    ("open", (None, "filename", "flags")), ("openat", ("dfd", "filename", "flags")),
    ("openat2", ("dfd", "filename", None)), ("creat", (None, "pathname", None)),
])
#: calls that change what is at a path: the (dirfd argument or None, path argument) pairs they change
PATH_WRITES: dict[int, tuple[tuple[str | None, str], ...]] = _table([
    ("creat", ((None, "pathname"),)),
    ("mkdir", ((None, "pathname"),)), ("mkdirat", (("dfd", "pathname"),)), ("rmdir", ((None, "pathname"),)),
    ("unlink", ((None, "pathname"),)), ("unlinkat", (("dfd", "pathname"),)),
    ("rename", ((None, "oldname"), (None, "newname"))),
    ("renameat", (("olddfd", "oldname"), ("newdfd", "newname"))),
    ("renameat2", (("olddfd", "oldname"), ("newdfd", "newname"))),
    ("link", ((None, "newname"),)), ("linkat", (("newdfd", "newname"),)),
    ("symlink", ((None, "newname"),)), ("symlinkat", (("newdfd", "newname"),)),
    ("truncate", ((None, "path"),)), ("mknod", ((None, "filename"),)), ("mknodat", (("dfd", "filename"),)),
    ("chmod", ((None, "filename"),)), ("fchmodat", (("dfd", "filename"),)), ("fchmodat2", (("dfd", "filename"),)),
    ("chown", ((None, "filename"),)), ("lchown", ((None, "filename"),)), ("fchownat", (("dfd", "filename"),)),
    ("utime", ((None, "filename"),)), ("utimes", ((None, "filename"),)), ("utimensat", (("dfd", "filename"),)),
    ("futimesat", (("dfd", "filename"),)),
    ("setxattr", ((None, "pathname"),)), ("lsetxattr", ((None, "pathname"),)),
    ("removexattr", ((None, "pathname"),)), ("lremovexattr", ((None, "pathname"),)),
])
#: calls with a socket address: the address argument
NET_ADDRS: dict[int, str] = _table([("connect", "uservaddr"), ("bind", "umyaddr"), ("sendto", "addr")])
_CHDIR, _FCHDIR = _nr("chdir"), _nr("fchdir")
#: executions: the syscall and its path argument
EXECS: dict[int, str] = _table([("execve", "filename"), ("execveat", "filename")])
#: syscalls decoded in full when recorded (the others are kept as CALL_DTYPE rows only)
DETAIL_NRS = np.array(sorted(set(OPENS) | set(PATH_WRITES) | set(NET_ADDRS) | set(EXECS) | {_CHDIR, _FCHDIR}),
                      dtype=np.uint16)
#: DETAIL_NRS as a table indexed by syscall number (a look-up per event, not a search)
DETAIL_TABLE = np.zeros(1 << 16, dtype=bool)
DETAIL_TABLE[DETAIL_NRS] = True
#: results that are byte counts read / written
READ_NRS = np.array(sorted(_table((n, 1) for n in ("read", "pread64", "readv", "preadv", "preadv2", "recvfrom",
                                                     "recvmsg"))), dtype=np.uint16)
WRITE_NRS = np.array(sorted(_table((n, 1) for n in ("write", "pwrite64", "writev", "pwritev", "pwritev2", "sendto",
                                                      "sendmsg", "sendfile", "copy_file_range", "splice"))),
                     dtype=np.uint16)
#: results that are not a status (rt_sigreturn returns the interrupted context's rax)
_NOT_STATUS = frozenset(n for n in (_nr("rt_sigreturn"),) if n is not None)


def _open_writes(syscall: str, flags: int | None) -> bool:
    """An open that writes: for writing, creating, truncating, an unnamed temporary file; creat."""
    if syscall == "creat":
        return True
    return flags is not None and bool(flags & _WRITE_OPEN or flags & _O_TMPFILE == _O_TMPFILE)


def _errno_name(res: int) -> str | None:
    err = errnos.error_of(res)
    if err is None:
        return None
    return errnos.name(err) or f"errno {err}"


# ---- what a test gets --------------------------------------------------------------------------

class Latency(NamedTuple):
    """Latencies of one syscall's calls, in ns: how many, their total, the 99th percentile
    (nearest rank: the smallest latency that 99% of the calls do not exceed)."""

    count: int
    total_ns: int
    p99_ns: int


@dataclass(frozen=True)
class Call:
    """One decoded call: the syscall's name, its arguments (as `Batch.args()` decodes them), its
    result and errno name, process, thread, enter time (ns) and latency (ns), and `text`: the
    call as lbd's terminal format writes it, ``comm(pid) openat(AT_FDCWD, "/etc/x", O_RDONLY) = 3``."""

    syscall: str
    args: dict
    result: int
    errno: str | None
    pid: int
    tid: int
    ts: int
    latency: int
    text: str
    #: the paths the call names, resolved to absolute paths (None where that was not possible)
    paths: tuple[str | None, ...] = ()

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class FileOpen:
    """A file opened (open, openat, openat2, creat): the path as given and resolved (absolute,
    None when its directory fd was unknown), the flags (None for openat2 and creat), the flags by
    name, the result (the fd, or -errno) and the errno name of a failure."""

    syscall: str
    path: str | None
    resolved: str | None
    flags: int | None
    flags_text: str
    result: int
    errno: str | None
    pid: int
    call: Call = field(repr=False, compare=False)

    @property
    def writes(self) -> bool:
        """Opened for writing, or creating or truncating the file."""
        return _open_writes(self.syscall, self.flags)


@dataclass(frozen=True)
class NetCall:
    """A connect, bind or sendto with an address: family (AF_INET, AF_INET6, AF_UNIX, ...),
    address and port (inet), path (unix), result and errno name."""

    syscall: str
    family: str | None
    address: str | None
    port: int | None
    path: str | None
    result: int
    errno: str | None
    pid: int
    call: Call = field(repr=False, compare=False)

    @property
    def inet(self) -> bool:
        return self.family in _INET


@dataclass(frozen=True)
class Exec:
    """A program executed (a successful execve or execveat): the path and argv it was given, the
    process."""

    filename: str | None
    argv: list
    pid: int
    call: Call = field(repr=False, compare=False)


class Count(int):
    """`Report.count()`'s result: an int that also knows the calls it counted, so that a failed
    ``assert syscalls.count("openat") <= 3`` lists them (the plugin's pytest_assertrepr_compare)."""

    report: Report
    names: tuple[str, ...]

    def __new__(cls, value: int, report: Report, names: tuple[str, ...]):
        obj = super().__new__(cls, value)
        obj.report = report
        obj.names = names
        return obj

    def calls(self, limit: int = 20) -> list[str]:
        """The counted calls as lines (at most `limit`, then a line saying how many more)."""
        return self.report.call_lines(self.names, limit)


# ---- the log of one capture --------------------------------------------------------------------

class Log:
    """What a capture kept: syscall rows (CALL_DTYPE), decoded calls of the detail syscalls,
    and the state that resolves paths (working directories, directory fds).

    `ingest(batch, keep)` appends the kept events of a batch (valid only during the call: every
    value is copied out)."""

    def __init__(self):
        # column by column (contiguous copies at drain time); rows() joins them when asked
        self._cols: dict[str, list[np.ndarray]] = {name: [] for name in CALL_DTYPE.names}
        self._rows: np.ndarray | None = np.zeros(0, CALL_DTYPE)
        self.details: list[Call] = []
        self.cwd: dict[int, str] = {}              # pid -> working directory
        self.fds: dict[tuple[int, int], str] = {}  # (pid, fd) -> path, from opens in the recording

    @property
    def rows(self) -> np.ndarray:
        """Every kept syscall, in the order recorded."""
        if self._rows is None:
            cols = {name: np.concatenate(parts) for name, parts in self._cols.items()}
            rows = np.empty(len(cols["nr"]), CALL_DTYPE)
            for name, col in cols.items():
                rows[name] = col
                self._cols[name] = [col]
            self._rows = rows
        return self._rows

    def note_cwd(self, pid: int, cwd: str) -> None:
        self.cwd[pid] = cwd

    def ingest(self, batch, keep: np.ndarray) -> int:
        """Append the events of `batch` where `keep` is true; returns how many syscalls that was."""
        ev = batch.events
        nr = ev["nr"]
        flags = ev["flags"]
        real = keep & (nr < record.NR_SCHED_FORK) & ((flags & np.uint32(record.F_NOENTER)) == 0)
        n = int(np.count_nonzero(real))
        if n:
            # column by column into contiguous arrays: indexing the whole records (their argument and
            # slot arrays), or filling a structured array, took most of a drain's time
            idx = None if n == len(ev) else np.flatnonzero(real)
            for name, parts in self._cols.items():
                col = ev[name]
                parts.append(col.copy() if idx is None else col[idx])
            self._rows = None
        detail = real & DETAIL_TABLE[nr]
        forks = keep & (nr == record.NR_SCHED_FORK)
        if detail.any() or forks.any():
            self._decode(batch, detail, forks)
        return n

    def _decode(self, batch, detail: np.ndarray, forks: np.ndarray) -> None:
        from lbd.output.terminal import TerminalFormatter

        lines: dict[int, str] = {}
        if detail.any():
            fmt = TerminalFormatter()
            fmt.format(batch, detail)
            # one line per event, each ending in "\n" (the format escapes it inside values; not
            # splitlines(), which also splits at U+2028 and friends that a path may hold)
            text = fmt.getvalue().decode("utf-8", "surrogateescape").split("\n")[:-1]
            # each line starts with the clock: "13:18:10.347507 comm(pid) call(...) = res"
            lines = {int(i): t.split(" ", 1)[1] for i, t in zip(np.flatnonzero(detail), text)}
        ev = batch.events
        for i in np.flatnonzero(detail | forks).tolist():
            e = ev[i]
            nr, pid, tid, ts = int(e["nr"]), int(e["pid"]), int(e["tid"]), int(e["ts"])
            args = batch.args(i)
            if nr == record.NR_SCHED_FORK:
                child = int(args.get("child_tgid") or args.get("child_pid") or 0)
                if child and child != pid:
                    self._inherit(pid, child)
                continue
            res = int(e["res"])
            paths = self._paths(nr, pid, args)
            call = Call(_sc.BY_NR[nr].name, args, res, _errno_name(res), pid, tid, ts, int(e["latency"]),
                        lines.get(i, ""), paths)
            self.details.append(call)
            self._track(nr, pid, args, res, paths)

    # -- paths ---------------------------------------------------------------------------------

    def _inherit(self, parent: int, child: int) -> None:
        if parent in self.cwd:
            self.cwd[child] = self.cwd[parent]
        for (p, fd), path in list(self.fds.items()):
            if p == parent:
                self.fds[(child, fd)] = path

    def _dir_of(self, pid: int, fd: int | None) -> str | None:
        if fd is None or fd == AT_FDCWD:
            cwd = self.cwd.get(pid)
            if cwd is None:
                cwd = _readlink(f"/proc/{pid}/cwd")
            return cwd
        path = self.fds.get((pid, fd))
        return path if path is not None else _readlink(f"/proc/{pid}/fd/{fd}")

    def resolve(self, pid: int, dirfd: int | None, path: str | None) -> str | None:
        """`path` as an absolute path, as process `pid` names it relative to `dirfd`; None when the
        directory is unknown.  A NULL path names the dirfd itself (utimensat(fd, NULL, ...))."""
        if path is not None and path.startswith("/"):
            return os.path.normpath(path)
        base = self._dir_of(pid, dirfd)
        if base is None:
            return None
        return os.path.normpath(os.path.join(base, path)) if path else base

    def _paths(self, nr: int, pid: int, args: dict) -> tuple[str | None, ...]:
        if nr in OPENS:
            dfd, p, _ = OPENS[nr]
            return (self.resolve(pid, args.get(dfd) if dfd else None, args.get(p)),)
        if nr in PATH_WRITES:
            return tuple(self.resolve(pid, args.get(d) if d else None, args.get(p)) for d, p in PATH_WRITES[nr])
        if nr == _CHDIR:
            return (self.resolve(pid, None, args.get("filename")),)
        return ()

    def _track(self, nr: int, pid: int, args: dict, res: int, paths: tuple) -> None:
        if res < 0:
            return
        if nr in OPENS and paths and paths[0] is not None:
            self.fds[(pid, res)] = paths[0]
        elif nr == _CHDIR and paths and paths[0] is not None:
            self.cwd[pid] = paths[0]
        elif nr == _FCHDIR:
            d = self._dir_of(pid, args.get("fd"))
            if d is not None:
                self.cwd[pid] = d


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


# ---- reports ---------------------------------------------------------------------------------

def _inside(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _more(lines: list[str], total: int, limit: int) -> list[str]:
    if total > limit:
        lines.append(f"... and {total - limit} more")
    return lines


class Report:
    """Syscalls recorded in some time windows of a capture (a `with` block, or the whole test).

    Subclasses give `_log()` (the Log), `_windows()` ((start, end) pairs, end None while open) and
    may make `_settled()` stop recording for the time of a query (so that the query's own
    syscalls are not recorded).  Every value is computed on demand from the records drained so
    far."""

    # -- what subclasses give --------------------------------------------------------------------

    def _log(self) -> Log:
        raise NotImplementedError

    def _windows(self) -> list[tuple[int, int | None]]:
        raise NotImplementedError

    def _settled(self):
        """A context in which the log holds everything recorded so far (no recording running)."""
        import contextlib

        return contextlib.nullcontext()

    #: records lost because a ring was full (counts are then too low)
    lost: int = 0

    # -- selection -------------------------------------------------------------------------------

    def _mask(self, ts: np.ndarray) -> np.ndarray:
        m = np.zeros(len(ts), dtype=bool)
        for start, end in self._windows():
            if end is None:
                m |= ts >= np.uint64(start)
            else:
                m |= (ts >= np.uint64(start)) & (ts <= np.uint64(end))
        return m

    def _in(self, ts: int) -> bool:
        return any(start <= ts and (end is None or ts <= end) for start, end in self._windows())

    def _rows(self) -> np.ndarray:
        with self._settled():
            rows = self._log().rows
            return rows[self._mask(rows["ts"])]

    def _details(self) -> list[Call]:
        with self._settled():
            return [c for c in self._log().details if self._in(c.ts)]

    # -- counts --------------------------------------------------------------------------------

    @property
    def counts(self) -> dict[str, int]:
        """Calls per syscall name, most frequent first."""
        rows = self._rows()
        nrs, n = np.unique(rows["nr"], return_counts=True)
        pairs = sorted(((_sc.BY_NR[int(a)].name, int(b)) for a, b in zip(nrs, n)), key=lambda p: (-p[1], p[0]))
        return dict(pairs)

    @property
    def total(self) -> int:
        """Calls of every syscall."""
        return len(self._rows())

    def count(self, *names: str) -> Count:
        """Calls of these syscalls (names as `lbd syscalls` lists them: "openat", "connect").
        Raises ValueError for an unknown name."""
        if not names:
            raise TypeError("count() needs at least one syscall name")
        nrs = [_lookup(n) for n in names]
        rows = self._rows()
        return Count(int(np.count_nonzero(np.isin(rows["nr"], np.array(nrs, dtype=np.uint16)))), self,
                     tuple(_sc.BY_NR[n].name for n in nrs))

    @property
    def failures(self) -> dict[str, dict[str, int]]:
        """Failed calls per syscall name and errno name: {"openat": {"ENOENT": 3}}."""
        rows = self._rows()
        res = rows["res"]
        failed = (res < 0) & (res >= -errnos.MAX_ERRNO)
        if _NOT_STATUS:
            failed &= ~np.isin(rows["nr"], np.array(sorted(_NOT_STATUS), dtype=np.uint16))
        out: dict[str, dict[str, int]] = {}
        for nr, r in zip(rows["nr"][failed].tolist(), res[failed].tolist()):
            per = out.setdefault(_sc.BY_NR[nr].name, {})
            name = _errno_name(r)
            per[name] = per.get(name, 0) + 1
        return out

    @property
    def latency(self) -> dict[str, Latency]:
        """Per syscall name: calls, total latency and p99 latency (ns)."""
        rows = self._rows()
        out = {}
        order = np.argsort(rows["nr"], kind="stable")
        nrs, starts, counts = np.unique(rows["nr"][order], return_index=True, return_counts=True)
        lat = rows["latency"][order]
        for nr, s, n in zip(nrs.tolist(), starts.tolist(), counts.tolist()):
            group = np.sort(lat[s: s + n])
            p99 = int(group[max(0, math.ceil(0.99 * n) - 1)])
            out[_sc.BY_NR[nr].name] = Latency(n, int(group.sum()), p99)
        return out

    @property
    def bytes_read(self) -> int:
        """Bytes the successful read, pread64, readv, preadv(2), recvfrom and recvmsg calls returned."""
        rows = self._rows()
        res = rows["res"][np.isin(rows["nr"], READ_NRS)]
        return int(res[res > 0].sum())

    @property
    def bytes_written(self) -> int:
        """Bytes the successful write, pwrite64, writev, pwritev(2), sendto, sendmsg, sendfile,
        copy_file_range and splice calls returned."""
        rows = self._rows()
        res = rows["res"][np.isin(rows["nr"], WRITE_NRS)]
        return int(res[res > 0].sum())

    # -- decoded calls ---------------------------------------------------------------------------

    @property
    def files(self) -> list[FileOpen]:
        """Files opened, in order (failed opens too: their result is -errno)."""
        out = []
        for c in self._details():
            nr = _sc.BY_NAME[c.syscall].nr
            if nr not in OPENS:
                continue
            _, p, fl = OPENS[nr]
            flags = c.args.get(fl) if fl else None
            text = _flags.names("open_flags", flags) if flags is not None else ""
            out.append(FileOpen(c.syscall, c.args.get(p), c.paths[0] if c.paths else None, flags, text, c.result,
                                c.errno, c.pid, c))
        return out

    @property
    def connections(self) -> list[NetCall]:
        """connect, bind and sendto calls that name an address, in order (failed ones too)."""
        out = []
        for c in self._details():
            nr = _sc.BY_NAME[c.syscall].nr
            if nr not in NET_ADDRS:
                continue
            sa = c.args.get(NET_ADDRS[nr])
            if sa is None:            # sendto on a connected socket: no address
                continue
            out.append(NetCall(c.syscall, sa.family, sa.addr, sa.port, sa.path, c.result, c.errno, c.pid, c))
        return out

    @property
    def execs(self) -> list[Exec]:
        """Programs executed (successful execve / execveat), in order."""
        return [Exec(c.args.get("filename"), list(c.args.get("argv") or []), c.pid, c)
                for c in self._details() if c.result == 0 and _sc.BY_NAME[c.syscall].nr in EXECS]

    @property
    def calls(self) -> list[Call]:
        """The decoded calls: opens, path changes (mkdir, unlink, rename, chmod, ...), chdir,
        connect / bind / sendto, execve / execveat; in order."""
        return self._details()

    # -- tables ----------------------------------------------------------------------------------

    def table(self, per: str = "syscall") -> list[dict]:
        """Rows for `pandas.DataFrame(rows)`: per="syscall" one row per syscall (syscall, count,
        failures, total_ns, p99_ns); per="call" one row per call (syscall, pid, tid, result,
        errno, latency_ns, ts)."""
        if per == "syscall":
            fails = self.failures
            return [{"syscall": name, "count": lat.count, "failures": sum(fails.get(name, {}).values()),
                     "total_ns": lat.total_ns, "p99_ns": lat.p99_ns}
                    for name, lat in sorted(self.latency.items(), key=lambda kv: (-kv[1].count, kv[0]))]
        if per == "call":
            rows = self._rows()
            names = [_sc.BY_NR[n].name for n in rows["nr"].tolist()]
            return [{"syscall": name, "pid": pid, "tid": tid, "result": res, "errno": _errno_name(res),
                     "latency_ns": lat, "ts": ts}
                    for name, pid, tid, res, lat, ts in zip(names, rows["pid"].tolist(), rows["tid"].tolist(),
                                                             rows["res"].tolist(), rows["latency"].tolist(),
                                                             rows["ts"].tolist())]
        raise ValueError(f"table(per={per!r}): per must be 'syscall' or 'call'")

    def dataframe(self, per: str = "syscall"):
        """`table(per)` as a pandas DataFrame (pandas must be installed)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("dataframe() needs pandas (pip install pandas); table() gives the same rows "
                              "as a list of dicts") from None
        rows = self.table(per)
        cols = ["syscall", "count", "failures", "total_ns", "p99_ns"] if per == "syscall" else \
            ["syscall", "pid", "tid", "result", "errno", "latency_ns", "ts"]
        return pd.DataFrame(rows, columns=cols)

    def summary(self, top: int = 15) -> str:
        """The most frequent syscalls as a small text table (count, failures, total and p99 ms)."""
        rows = self.table()
        if not rows:
            return "no syscalls recorded"
        out = [f"{'syscall':<20} {'count':>8} {'failed':>7} {'total ms':>9} {'p99 us':>9}"]
        for r in rows[:top]:
            out.append(f"{r['syscall']:<20} {r['count']:>8} {r['failures']:>7} {r['total_ns'] / 1e6:>9.3f} "
                       f"{r['p99_ns'] / 1e3:>9.1f}")
        if len(rows) > top:
            out.append(f"... {len(rows) - top} more syscalls")
        out.append(f"{'total':<20} {sum(r['count'] for r in rows):>8}")
        return "\n".join(out)

    def call_lines(self, names: tuple[str, ...], limit: int = 20) -> list[str]:
        """The calls of these syscalls as lines (at most `limit`, then how many more): decoded, in
        the terminal format, for the detail syscalls (opens, path changes, connect, ...); process,
        name and result for the others."""
        detail = set(DETAIL_NRS.tolist())
        want = set(names)
        lines = [c.text for c in self._details() if c.syscall in want]
        plain = np.array([_sc.BY_NAME[n].nr for n in names if _sc.BY_NAME[n].nr not in detail], dtype=np.uint16)
        rows = self._rows()
        rows = rows[np.isin(rows["nr"], plain)]
        total = len(lines) + len(rows)
        lines = lines[:limit]
        for r in rows[: max(0, limit - len(lines))].tolist():
            nr, res, _, _, pid, tid = r
            err = _errno_name(res)
            who = f"{pid}" if pid == tid else f"{pid}:{tid}"
            lines.append(f"pid {who} {_sc.BY_NR[nr].name}(...) = {f'-1 {err}' if err else res}")
        return _more(lines, total, limit)

    # -- assertions ------------------------------------------------------------------------------

    def network_calls(self, allow_loopback: bool = False) -> list[NetCall]:
        """connect, bind and sendto calls to an IP address (AF_INET, AF_INET6), failed ones
        too; with allow_loopback, not those to 127.0.0.0/8 or ::1."""
        import ipaddress

        out = []
        for n in self.connections:
            if not n.inet:
                continue
            if allow_loopback and n.address is not None and ipaddress.ip_address(n.address).is_loopback:
                continue
            out.append(n)
        return out

    def assert_no_network(self, allow_loopback: bool = False) -> None:
        """Fail when the recorded code connected, bound or sent to an IP address (see
        network_calls()); the message lists those calls."""
        __tracebackhide__ = True
        bad = self.network_calls(allow_loopback)
        if bad:
            raise AssertionError(_listing(f"{len(bad)} network call{'s' if len(bad) != 1 else ''} "
                                          f"(connect, bind, sendto to an IP address)", [n.call.text for n in bad]))

    def writes_outside(self, *paths) -> list[Call]:
        """Successful calls that wrote or changed a path outside all of `paths` (opens for
        writing or creating, creat, mkdir, rmdir, unlink, rename, link, symlink, truncate, mknod,
        chmod, chown, utime*, *xattr); /dev/null never counts.  A path whose directory fd is
        unknown counts as outside."""
        if not paths:
            raise TypeError("writes_outside() needs at least one directory")
        roots = set()
        for p in paths:
            p = os.fspath(p)
            roots.add(os.path.normpath(os.path.abspath(p)))
            roots.add(os.path.realpath(p))
        bad = []
        for c in self._details():
            if c.result < 0:
                continue
            nr = _sc.BY_NAME[c.syscall].nr
            if nr in OPENS:
                _, _, fl = OPENS[nr]
                if not _open_writes(c.syscall, c.args.get(fl) if fl else None):
                    continue
            elif nr not in PATH_WRITES:
                continue
            for p in c.paths:
                if p in _ALWAYS_WRITABLE:
                    continue
                if p is None or not (_inside(p, roots) or _inside(_real_dir(p), roots)):
                    bad.append(c)
                    break
        return bad

    def assert_no_writes_outside(self, *paths) -> None:
        """Fail when the recorded code wrote or changed a path outside all of `paths` (see
        writes_outside()); the message lists those calls."""
        __tracebackhide__ = True
        bad = self.writes_outside(*paths)
        if bad:
            where = ", ".join(os.fspath(p) for p in paths)
            raise AssertionError(_listing(f"{len(bad)} write{'s' if len(bad) != 1 else ''} outside {where}",
                                          [c.text for c in bad]))

    def __repr__(self) -> str:
        counts = self.counts
        head = ", ".join(f"{k}={v}" for k, v in list(counts.items())[:5])
        return f"<{type(self).__name__} {sum(counts.values())} syscalls{': ' + head if head else ''}>"


def _real_dir(path: str) -> str:
    """The path with its directory's symlinks resolved (the file itself may be gone)."""
    d, base = os.path.split(path)
    return os.path.join(os.path.realpath(d), base)


def _listing(head: str, lines: list[str], limit: int = 20) -> str:
    shown = _more(list(lines[:limit]), len(lines), limit)
    return head + ":\n" + "\n".join("  " + s for s in shown)


def _lookup(name: str) -> int:
    if not isinstance(name, str):
        raise TypeError(f"syscall names are strings, not {type(name).__name__}: {name!r}")
    sc = _sc.BY_NAME.get(name.strip())
    if sc is None:
        import difflib

        close = difflib.get_close_matches(name, list(_sc.BY_NAME), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown syscall name {name!r}{hint}")
    return sc.nr


