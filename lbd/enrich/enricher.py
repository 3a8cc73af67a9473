"""Enricher: gives every batch its enrichment (lbd.enrich.layout) from the process table.

The process table is fed by the event stream itself: sched_process_fork / clone exits (parent and
child), sched_process_exec / execve exits (executable and command line), sched_process_exit
(removal after a grace period), and the fd syscalls (the per-process open-file table).  procfs is
read only for processes first seen (they existed before the capture), for a command line the probe
could not capture whole, and for fds when the fd syscalls are not captured at all.

How a batch is enriched (no Python work per ordinary event):

1. pre-pass: the unique pids of the batch; those not in the table (and not born within the batch)
   are read from procfs, once each;
2. scan, in event order, only the events that may change a process (fork, exec, exit, open, close,
   dup, socket, ...) plus each pid's first event: a change makes a new *state* (parent, exec info,
   fd snapshot) for the events that follow, up to the pid's next change;
3. numpy: every event gets its pid's latest state at or before it (a forward fill within each pid's
   events), then the per-event columns (ppid, parent comm, user, group) from the kernel's values.

Semantics: an event's fds are its process's open files *after* the syscall (an openat's new fd is
in its own list, a close's fd is not).  fd names: the path as opened (made absolute against the
directory fd, or the cwd when chdir/fchdir are captured), the unix socket path, socket:[inet
10.0.0.1:80] (peer after connect/accept, local after bind), socket:[inet] before, socket:[unix
pair], pipe:[read] / pipe:[write], anon_inode:..., /memfd:name (deleted); what procfs shows for
fds seeded from it; "?" when neither the events nor procfs could tell.

Nothing raises out of enrich() for a process that vanished or an unreadable procfs file: the event
keeps the kernel's values (pid, comm, ppid, uid, gid) and the rest reads as unknown.
"""
from __future__ import annotations

import array
import logging
import os
import posixpath
from collections import deque

import numpy as np

from lbd import args as _args, record, syscalls
from lbd.enrich.cache import BoundedCache
from lbd.enrich.fdtable import FdTable
from lbd.enrich.layout import ENRICH_DTYPE, FD_DTYPE
from lbd.enrich.procfs import ProcFS
from lbd.enrich.strtab import StringArena
from lbd.enrich.users import Accounts

log = logging.getLogger("lbd.enrich")

__all__ = ["Enricher", "Proc", "Info", "FD_SYSCALLS"]

AT_FDCWD = -100
O_CLOEXEC = 0o2000000          # also SOCK_CLOEXEC, EFD_/TFD_/SFD_/IN_/EPOLL_CLOEXEC on x86_64
FD_CLOEXEC = 1
F_DUPFD, F_SETFD, F_DUPFD_CLOEXEC = 0, 2, 1030
CLOSE_RANGE_CLOEXEC = 4
CLONE_THREAD = 0x10000
EINPROGRESS = 115
_U32 = 0xFFFFFFFF

NR_FORK, NR_EXEC, NR_EXIT = record.NR_SCHED_FORK, record.NR_SCHED_EXEC, record.NR_SCHED_EXIT

#: syscalls whose capture keeps the fd table right; when one is not selected, fds come from procfs
FD_SYSCALLS = ("open", "openat", "openat2", "creat", "close", "close_range", "dup", "dup2", "dup3",
               "fcntl", "socket", "accept", "accept4", "socketpair", "pipe", "pipe2")

_PENDING = "\0pending"         # Info.cmdline: to be read from procfs at the end of the batch


def _nr(name: str) -> int:
    return syscalls.BY_NAME[name].nr


def _signed32(v: int) -> int:
    v &= _U32
    return v - (1 << 32) if v >> 31 else v


class Info:
    """What one exec (or first sight) gave a process; shared by a child until it execs itself.

    cmdline None: unknown (the comm stands in); _PENDING: read procfs at the end of the batch.
    `gen`/`refs`: where these strings are in the current batch's strtab.
    """

    __slots__ = ("comm", "cmdline", "exe", "gen", "refs", "awaiting_execve")

    def __init__(self, comm: str, cmdline: str | None, exe: str | None, awaiting_execve: bool = False):
        self.comm = comm
        self.cmdline = cmdline
        self.exe = exe
        self.gen = -1
        self.refs = None
        self.awaiting_execve = awaiting_execve


class Proc:
    """A process (thread group) in the table.  info None / fds None: not loaded from procfs yet."""

    __slots__ = ("pid", "ppid", "comm", "info", "fds", "cwd", "dead_at", "state")

    def __init__(self, pid: int, ppid: int, comm: str, info: Info | None, fds: FdTable | None, cwd: str | None):
        self.pid = pid
        self.ppid = ppid
        self.comm = comm
        self.info = info
        self.fds = fds
        self.cwd = cwd
        self.dead_at = 0
        self.state = None       # (gen, ppid, info, snapshot, state index) of the last state made

    def __repr__(self) -> str:
        cmd = self.info.cmdline if self.info else None
        return f"<Proc {self.pid} ppid={self.ppid} comm={self.comm!r} cmdline={cmd!r}>"


class Enricher:
    """Keeps the process table and enriches batches (see the module docstring).

    Parameters: `config` (a lbd Config or dict: rich_value_size and the syscall selection
    unless given here), `proc_root` and `etc_root` (procfs and the directory holding etc/passwd,
    etc/group: fake trees in tests), `rich_value_size` (bytes kept of each string: cmdline, paths;
    and of an event's fd list, counting path bytes; 0: no cmdline, fullpath or fds at all),
    `max_procs`, `max_born`, `max_users` (entry limits of the caches), `max_fds` (per process),
    `grace_s` (how long an exited process stays for late events), `selection` (the captured
    syscall numbers: decides `fd_source`, "events" when every FD_SYSCALLS is captured, else
    "procfs": each batch reads the fds of its pids once), `max_strtab` / `max_fd_rows` (the
    bounds of an epoch, below).

    Epochs: strings and fd rows written for one batch stay valid for the next ones (a process
    whose state did not change points at the same rows again), so batch.strtab and batch.fdtab
    are the epoch's whole arrays and may hold rows no event of this batch uses.  When the arena
    passes max_strtab bytes or fdtab max_fd_rows rows, the next batch starts a new epoch from
    offset 0 in the same buffers.

    `engine`: "cython" (default) runs each batch through lbd._enrich.Engine, the compiled loop:
    fd tables, states and rows in C, the slow paths below called per distinct pid or id, the
    process-tree handlers per event; "python" runs `enrich()` below, the reference it is held
    to (same arrays, bit for bit: tests/unit/test_enrich_engines.py).  The fd tables are
    lbd._enrich.FdTable or lbd.enrich.fdtable.FdTable accordingly (same API).

    Invariants: a Proc in `procs` is the live (or recently exited) process with that pid; its fd
    table mirrors the process's as far as captured syscalls tell; the arrays given to a batch are
    views of buffers reused by the next `enrich()` call.
    """

    def __init__(self, config=None, *, proc_root: str | os.PathLike = "/proc", etc_root: str | os.PathLike = "/",
                 rich_value_size: int | None = None, max_procs: int = 16384, max_born: int = 8192,
                 max_users: int = 4096, max_fds: int = 65536, grace_s: float = 5.0,
                 selection=None, fd_source: str | None = None, nss: bool | None = None,
                 max_strtab: int = 1 << 20, max_fd_rows: int = 1 << 16, engine: str = "cython"):
        if config is not None:
            from lbd.config import coerce

            config = coerce(config)
            if rich_value_size is None:
                rich_value_size = config.init.rich_value_size
            if selection is None:
                from lbd.probe import resolve_selection

                selection = resolve_selection(config)
        if rich_value_size is None:
            rich_value_size = 65536
        self.procfs = ProcFS(proc_root)
        self.accounts = Accounts(etc_root, nss=nss, max_entries=max_users)
        self.rich_value_size = rich_value_size
        self.text = rich_value_size > 0
        self.max_fds = max_fds
        self.grace_ns = int(grace_s * 1e9)
        self.procs: BoundedCache[int, Proc] = BoundedCache(max_procs)
        self.born: BoundedCache[int, Proc] = BoundedCache(max_born)   # forked, no event seen yet
        self._deaths: deque[tuple[int, int, Proc]] = deque()
        if fd_source is None:
            sel = None if selection is None else set(selection)
            fd_source = "events" if sel is None or all(_nr(n) in sel for n in FD_SYSCALLS) else "procfs"
        if fd_source not in ("events", "procfs"):
            raise ValueError(f"fd_source {fd_source!r}: 'events' or 'procfs'")
        self.fd_source = fd_source
        self._lut = _change_lut(fd_source == "events")
        self._handlers = _HANDLERS if fd_source == "events" else _PROC_HANDLERS
        self._sock_names: dict[bytes, str | None] = {}     # sockaddr bytes -> fd name (bounded)
        sel = None if selection is None else set(selection)
        # cwd is kept from chdir/fchdir: without them it goes stale, so relative paths stay as given
        self.track_cwd = sel is None or (_nr("chdir") in sel and _nr("fchdir") in sel)
        if engine not in ("cython", "python"):
            raise ValueError(f"engine {engine!r}: 'cython' or 'python'")
        self.engine = engine
        if engine == "cython":
            from lbd import _enrich

            self.arena = _enrich.StringArena(limit=rich_value_size)
            self._table = _enrich.FdTable
        else:
            self.arena = StringArena(limit=rich_value_size)
            self._table = FdTable
        self.max_strtab = max_strtab
        self.max_fd_rows = max_fd_rows
        self._rows = array.array("i")       # fdtab of the epoch, flat (fd, path_off, path_len)
        self._fd_flushed = 0
        self._enrich_buf = np.zeros(1024, dtype=ENRICH_DTYPE)
        self._fd_buf = np.zeros(4096, dtype=FD_DTYPE)
        self._gen = 0
        self.epochs = 1
        self.batches = 0
        self.events = 0
        self.fd_rows = 0
        self.states = 0
        self.errors = 0
        self._engine = None
        if engine == "cython":
            self._engine = _enrich.Engine(self, self._lut, _NEED_OK, _family, _sock_text_of)

    @classmethod
    def from_config(cls, cfg, selection=None, **kw) -> Enricher:
        """An Enricher for a lbd Config (its rich_value_size and syscall selection)."""
        return cls(cfg, selection=selection, **kw)

    # ---- public ------------------------------------------------------------------------------

    def enrich(self, batch) -> None:
        """Set batch.enrich, batch.strtab and batch.fdtab for the batch's events."""
        if self._engine is not None:
            self._engine.enrich(batch)
            return
        self._gen += 1
        self.batches += 1
        if len(self.arena) > self.max_strtab or len(self._rows) > 3 * self.max_fd_rows:
            # a new epoch: strings and fd rows start over (the buffers are reused)
            self.arena.reset()
            self._rows = array.array("i")
            self._fd_flushed = 0
            self.epochs += 1
            log.debug("enrichment: epoch %d (strings and fd rows start over)", self.epochs)
        ev = batch.events
        n = len(ev)
        self.events += n
        if n > len(self._enrich_buf):
            self._enrich_buf = np.zeros(max(n, 2 * len(self._enrich_buf)), dtype=ENRICH_DTYPE)
        out = self._enrich_buf[:n]
        if n == 0:
            batch.enrich, batch.strtab, batch.fdtab = out, self.arena.array(), self._fdtab()
            batch.enriched_generation = getattr(batch, "generation", None)
            return
        self._mv = memoryview(batch.arena)
        pids = ev["pid"]
        nrs = ev["nr"]
        upids, first_idx = np.unique(pids, return_index=True)
        upid_list = upids.tolist()
        comms = ev["comm"]
        first_comm = comms[first_idx].tolist()
        first_ppid = ev["ppid"][first_idx].tolist()

        # 1. pre-pass: one procfs look-up per pid that needs one (not for pids born in this batch)
        fork_rows = np.flatnonzero(nrs == NR_FORK)
        born_here = set(ev["args"][fork_rows, 1].tolist()) if len(fork_rows) else ()
        for pid, comm, kppid in zip(upid_list, first_comm, first_ppid):
            if pid not in born_here:
                self._proc_for(pid, comm, kppid)

        # pids grouped, in event order within each pid (also for the forward fill below)
        order = np.argsort(pids, kind="stable")
        sp = pids[order]
        # a pid reused within the batch: its first event after the fork starts the new process
        reborn: set[int] = set()
        for f, c in zip(fork_rows.tolist(), ev["args"][fork_rows, 1].tolist() if len(fork_rows) else ()):
            lo, hi = np.searchsorted(sp, c, "left"), np.searchsorted(sp, c, "right")
            if lo < hi and order[lo] < f:
                idxs = order[lo:hi]
                k = np.searchsorted(idxs, f, "right")
                if k < len(idxs):
                    reborn.add(int(idxs[k]))

        # 2. scan the events that may change a process, and each pid's first event
        # enter records change nothing, nor do the failures of calls that only act on success
        cand = np.flatnonzero(self._lut[nrs] & (ev["dir"] == record.DIR_EXIT) & ~(_NEED_OK[nrs] & (ev["res"] < 0)))
        scan = np.union1d(cand, first_idx) if len(cand) else first_idx
        if reborn:
            scan = np.union1d(scan, np.fromiter(reborn, dtype=np.int64))
        sub = ev[scan]
        first = np.zeros(n, dtype=bool)
        first[first_idx] = True
        self._states: list[tuple] = []
        ev_state = np.full(n, -1, dtype=np.int64)
        changed = np.zeros(n, dtype=bool)
        handlers = self._handlers
        self._pending: list[tuple[int, Info]] = []
        is_cand = np.zeros(n, dtype=bool)
        is_cand[cand] = True
        slots = np.ascontiguousarray(sub["slot"]).view(np.uint16).reshape(-1, 2 * record.MAX_ARGS)
        init_state: dict[int, int] = {}
        new_state: dict[int, int] = {}          # event index -> the state its change made
        procs = self.procs
        pget = self.procs._d.get
        state = self._state
        rows = zip(scan.tolist(), sub["pid"].tolist(), sub["nr"].tolist(), sub["res"].tolist(),
                   sub["args"].tolist(), sub["flags"].tolist(), sub["rec"].tolist(), slots.tolist(),
                   sub["ts"].tolist(), sub["comm"].tolist(), sub["ppid"].tolist(), first[scan].tolist(),
                   is_cand[scan].tolist())
        for i, pid, nr, res, a, fl, rec, sl, ts, comm, kppid, is_first, is_c in rows:
            proc = pget(pid)
            if proc is None or proc.info is None or proc.fds is None:
                # born in this batch, or evicted meanwhile (a tiny table)
                proc = self._proc_for(pid, comm, kppid)
            if is_first:
                init_state[pid] = state(proc)
            elif reborn and i in reborn:
                proc = self._proc_for(pid, comm, kppid)
                new_state[i] = state(proc)
            if not is_c:
                continue
            h = handlers.get(nr)
            if h is None:
                continue
            try:
                if h(self, proc, res, a, fl, rec, sl, ts, comm):
                    new_state[i] = state(proc)
            except Exception:  # a bug must cost one event's bookkeeping, never the capture
                self._handler_failed()
        if new_state:
            idx = np.fromiter(new_state.keys(), dtype=np.int64, count=len(new_state))
            ev_state[idx] = np.fromiter(new_state.values(), dtype=np.int64, count=len(new_state))
            changed[idx] = True

        self._resolve_pending()

        # 3. every event gets its pid's latest state (forward fill within each pid's events)
        start = np.ones(n, dtype=bool)
        start[1:] = sp[1:] != sp[:-1]
        marker = np.where(start | changed[order], np.arange(n), 0)
        src = order[np.maximum.accumulate(marker)]
        if init_state:
            # the first event of each pid that did not change it: the pid's initial state
            keep = ~changed[first_idx]
            ev_state[first_idx[keep]] = [init_state[p] for p in upids[keep].tolist()]
        state_idx = np.empty(n, dtype=np.int64)
        state_idx[order] = ev_state[src]

        cols = self._state_columns()
        kppid = ev["ppid"]
        ppid = np.where(kppid != 0, kppid, cols[0][state_idx])
        out["ppid"] = ppid
        for j, name in enumerate(("cmdline_off", "cmdline_len", "fullpath_off", "fullpath_len", "fds_off", "fds_n")):
            out[name] = cols[j + 1][state_idx]
        self._names(out, "pcomm", ppid, self._pcomm)
        self._names(out, "user", ev["uid"], self.accounts.user)
        self._names(out, "group", ev["gid"], self.accounts.group)

        # 4. upkeep: comms, exited processes past their grace period
        last = n - 1 - np.unique(pids[::-1], return_index=True)[1]
        for pid, c in zip(upid_list, comms[last].tolist()):
            p = procs.peek(pid)
            if p is not None:
                p.comm = _comm(c)
        self._reap(int(ev["ts"].max()))

        batch.enrich = out
        batch.strtab = self.arena.array()
        batch.fdtab = self._fdtab()
        batch.enriched_generation = getattr(batch, "generation", None)
        self.states += len(self._states)
        self._mv = None

    def _handler_failed(self) -> None:
        """Count an event a handler failed on (called while the exception is handled)."""
        self.errors += 1
        if self.errors == 1:
            log.warning("enrichment: an event could not be applied to the process table", exc_info=True)

    def _resolve_pending(self) -> None:
        """Command lines the probe did not capture whole: one procfs read per process."""
        for pid, info in self._pending:
            if info.cmdline is _PENDING:
                info.cmdline = self.procfs.cmdline(pid)
                if info.exe is None:
                    info.exe = self.procfs.exe(pid)
                info.gen = -1

    def _fdtab(self) -> np.ndarray:
        """The epoch's fd rows as FD_DTYPE (only the rows added since the last batch are copied)."""
        n = len(self._rows) // 3
        if n > self._fd_flushed:
            if n > len(self._fd_buf):
                buf = np.zeros(max(n, 2 * len(self._fd_buf)), dtype=FD_DTYPE)
                buf[: self._fd_flushed] = self._fd_buf[: self._fd_flushed]
                self._fd_buf = buf
            new = np.frombuffer(self._rows, dtype=FD_DTYPE)[self._fd_flushed: n]
            self._fd_buf[self._fd_flushed: n] = new
            self.fd_rows += n - self._fd_flushed
            self._fd_flushed = n
        return self._fd_buf[:n]

    def stats(self) -> dict:
        """Counters: batches, events, states, fd rows; per cache size/hits/misses/evictions; procfs."""
        return {
            "batches": self.batches, "events": self.events, "states": self.states, "fd_rows": self.fd_rows,
            "epochs": self.epochs, "strtab_bytes": len(self.arena), "errors": self.errors,
            "fd_source": self.fd_source,
            "procs": self.procs.stats(), "born": self.born.stats(),
            "users": self.accounts.users.stats(), "groups": self.accounts.groups.stats(),
            "procfs_reads": self.procfs.reads, "procfs_vanished": self.procfs.vanished,
            "exited_pending": len(self._deaths),
        }

    def process(self, pid: int) -> Proc | None:
        """The table's entry for pid (no procfs look-up, no counting)."""
        return self.procs.peek(pid)

    # ---- the process table -----------------------------------------------------------------

    def _proc_for(self, pid: int, comm_b: bytes, kppid: int = 0) -> Proc:
        """The loaded entry for pid: born in the stream, in the table, or read from procfs now."""
        proc = self.born.pop(pid)
        if proc is not None:
            self.procs.put(pid, proc)
            if proc.info is not None and proc.fds is not None:
                return proc
            return self._load(pid, proc, _comm(comm_b), kppid)  # its parent was not loaded: ask procfs
        proc = self.procs.get(pid)
        if proc is not None and proc.info is not None and (proc.fds is not None or self.fd_source == "procfs"):
            if self.fd_source == "procfs":
                self._procfs_fds(proc)
            return proc
        return self._load(pid, proc, _comm(comm_b), kppid)

    def _load(self, pid: int, proc: Proc | None, comm: str, kppid: int = 0) -> Proc:
        pi = self.procfs.process(pid)
        if pi is None:  # gone: keep what the kernel captured, the rest is unknown
            if proc is None:
                proc = Proc(pid, kppid, comm, None, None, None)
                self.procs.put(pid, proc)
            if proc.info is None:
                proc.info = Info(comm, None, None)
            if proc.fds is None:
                proc.fds = self._inherited(kppid or proc.ppid)
            return proc
        if proc is None:
            proc = Proc(pid, pi.ppid, pi.comm, None, None, pi.cwd)
            self.procs.put(pid, proc)
        else:
            proc.ppid, proc.comm = pi.ppid, pi.comm
            if proc.cwd is None:
                proc.cwd = pi.cwd
        if proc.info is None:
            proc.info = Info(pi.comm, pi.cmdline, pi.exe)
        if proc.fds is None or self.fd_source == "procfs":
            self._procfs_fds(proc)
        return proc

    def _inherited(self, ppid: int) -> FdTable:
        """The fd table of a process that is gone before it could be read: what it inherited,
        approximated by its parent's table now (the table, else procfs), marked incomplete.  Most
        short-lived commands only ever use the stdin/out/err they got this way."""
        t = None
        if ppid and self.text:
            parent = self.procs.peek(ppid)
            if parent is not None and parent.fds is not None and self.fd_source == "events":
                t = parent.fds.copy()
            else:
                fds = self.procfs.fds(ppid, cloexec=True)
                if fds is not None:
                    t = self._table(fds, max_fds=self.max_fds)
        if t is None:
            t = self._table(max_fds=self.max_fds)
        t.complete = False
        return t

    def _procfs_fds(self, proc: Proc) -> None:
        if not self.text:
            proc.fds = self._table(max_fds=self.max_fds)
            return
        fds = self.procfs.fds(proc.pid, cloexec=self.fd_source == "events")
        if fds is None:
            if proc.fds is None:
                proc.fds = self._table(complete=False, max_fds=self.max_fds)
        else:
            proc.fds = self._table(fds, max_fds=self.max_fds)

    def _parent(self, ppid: int) -> Proc | None:
        """An entry for a parent (stat only, enough for its comm); None when it is gone."""
        p = self.procs.get(ppid)
        if p is None:
            p = self.born.peek(ppid)
        if p is None:
            st = self.procfs.stat(ppid)
            if st is None:
                return None
            p = Proc(ppid, st[1], st[0], None, None, None)
            self.procs.put(ppid, p)
        return p

    def _pcomm(self, ppid: int) -> str:
        if ppid == 0:
            return ""
        p = self._parent(ppid)
        return "" if p is None else p.comm

    def _reap(self, now_ns: int) -> None:
        d = self._deaths
        while d and d[0][0] + self.grace_ns <= now_ns:
            _, pid, proc = d.popleft()
            if self.procs.peek(pid) is proc:
                self.procs.pop(pid)

    # ---- states ----------------------------------------------------------------------------

    def _state(self, proc: Proc) -> int:
        """The index of the state (ppid, exec info, fd list) proc is in now; a new state's fd list
        is written to fdtab at once (the table may change again before the batch ends)."""
        fds = proc.fds
        snap = (fds._snap or fds.snapshot()) if fds is not None else ()
        st = proc.state
        if st is not None and st[0] == self._gen and st[1] == proc.ppid and st[2] is proc.info and st[3] is snap:
            return st[4]
        loc = self._write_snapshot(fds, snap) if snap and self.text else (0, 0)
        idx = len(self._states)
        self._states.append((proc.ppid, proc.info, loc))
        proc.state = (self._gen, proc.ppid, proc.info, snap, idx)
        return idx

    def _state_columns(self) -> list[np.ndarray]:
        """Per state: ppid, cmdline off/len, fullpath off/len, fds off/n (numpy arrays)."""
        refs = self._info_refs
        rows = [(pp, *refs(info), *loc) for pp, info, loc in self._states]
        a = np.array(rows, dtype=np.uint32).reshape(-1, 7)
        return [a[:, j] for j in range(7)]

    def _info_refs(self, info: Info) -> tuple[int, int, int, int]:
        """Where an exec info's command line and executable are in the strtab (added once per
        epoch: the command line, else the comm; the executable, else "")."""
        arena, epoch = self.arena, self.arena.epoch
        if info.gen != epoch:
            if self.text:
                cmd = info.cmdline
                c = arena.add(cmd if cmd is not None and cmd is not _PENDING else info.comm)
                e = arena.add(info.exe or "")
            else:
                c, e = arena.add(info.comm), (0, 0)
            info.refs = (*c, *e)
            info.gen = epoch
        return info.refs

    def _write_snapshot(self, table: FdTable, snap: tuple) -> tuple[int, int]:
        """Put the table's current snapshot in fdtab and return (row offset, rows).

        Within an epoch a snapshot already written is reused; one that is a prefix of the one the
        table wrote last (its highest fds closed) reuses those rows; one that extends it (fds
        opened above the others) appends only the new rows when those rows are the last in fdtab.
        Rows stop where the paths pass rich_value_size characters."""
        rows, arena = self._rows, self.arena
        epoch = arena.epoch
        end = len(rows) // 3
        m = len(snap)
        cut = table.nchars > self.rich_value_size
        w = table.written
        if w is not None and w[0] == epoch:
            _, off, last, kept = w
            if last is snap:
                return off, kept
            ln = len(last)
            if not cut and kept == ln:
                if m <= ln and (last[:m] if m < ln else last) == snap:
                    return off, m
                if m > ln and off + ln == end and snap[:ln] == last:
                    rows.extend(table.encode(arena)[3 * ln:])
                    table.written = (epoch, off, snap, m)
                    return off, m
        enc = table.encode(arena)
        k = m
        if cut:
            used = k = 0
            for _, path in snap:
                used += len(path) + 1
                if used > self.rich_value_size:
                    break
                k += 1
            rows.extend(enc[: 3 * k])
        else:
            rows.extend(enc)
        table.written = (epoch, end, snap, k)
        return end, k

    def _names(self, out, col: str, ids: np.ndarray, name_of) -> None:
        uniq, inv = np.unique(ids, return_inverse=True)
        refs = np.array([self.arena.add(name_of(int(u))) for u in uniq.tolist()], dtype=np.uint32).reshape(-1, 2)
        out[col + "_off"] = refs[inv, 0]
        out[col + "_len"] = refs[inv, 1]

    # ---- helpers for the handlers ----------------------------------------------------------

    def _payload(self, rec: int, slot: list, k: int) -> bytes | None:
        """Argument k's payload; slot: the event's six (off, len) pairs as one flat list."""
        ln = slot[2 * k + 1]
        if not ln:
            return None
        off = rec + slot[2 * k]
        return bytes(self._mv[off: off + ln])

    def _resolve(self, proc: Proc, dirfd: int, path: str) -> str:
        """path made absolute against cwd (AT_FDCWD) or the directory fd, when known."""
        if not path or path[0] == "/":
            return path
        if dirfd == AT_FDCWD:
            base = proc.cwd if self.track_cwd else None
        else:
            base = proc.fds.path(dirfd) if proc.fds is not None else None
        if not base or base[0] != "/":
            return path
        joined = (base if base != "/" else "") + "/" + path
        if "/." in joined:
            joined = posixpath.normpath(joined)
        return joined

    def _fd_link(self, proc: Proc, fd: int, default: str) -> str:
        """An fd the events cannot name: ask procfs once, else `default`."""
        p = self.procfs.readlink(proc.pid, f"fd/{fd}")
        return p if p is not None else default

    def _born_from(self, parent: Proc | None, child: int, comm: str, ts: int) -> None:
        if parent is None or child in self.born:
            return
        p = self.procs.peek(child)
        if p is not None and not p.dead_at:
            return  # already known alive (a late duplicate)
        fds = parent.fds.copy() if parent.fds is not None else None
        self.born.put(child, Proc(child, parent.pid, comm, parent.info, fds, parent.cwd))


def _comm(b: bytes) -> str:
    return b.decode("utf-8", "backslashreplace")


# ---- handlers: (enricher, proc, res, args, flags, rec, slot, ts, comm) -> changed? -------------

def _h_fork(en, proc, res, a, fl, rec, slot, ts, comm):
    parent = en.procs.peek(a[0]) if a[0] != proc.pid else proc
    en._born_from(parent, a[1], _comm(comm), ts)
    return False


def _h_clone(en, proc, res, a, fl, rec, slot, ts, comm):
    if res <= 0:
        return False
    if a[0] & CLONE_THREAD:
        en.born.pop(res)       # a thread, not a process: drop the fork record's entry
        return False
    en._born_from(proc, res, _comm(comm), ts)
    return False


def _h_forklike(en, proc, res, a, fl, rec, slot, ts, comm):
    if res > 0:
        en._born_from(proc, res, _comm(comm), ts)
    return False


def _h_exit(en, proc, res, a, fl, rec, slot, ts, comm):
    t = a[0] & _U32
    if t != proc.pid:
        en.born.pop(t)
    if a[1]:
        proc.dead_at = ts
        en._deaths.append((ts, proc.pid, proc))
    return False


def _h_sched_exec(en, proc, res, a, fl, rec, slot, ts, comm):
    p = en._payload(rec, slot, 2)
    exe = en._resolve(proc, AT_FDCWD, _args.text(p)) if p is not None else None
    proc.info = Info(_comm(comm), _PENDING, exe, awaiting_execve=True)
    en._pending.append((proc.pid, proc.info))
    if proc.fds is not None and en.fd_source == "events":
        proc.fds.exec()
    return True


def _exec_common(en, proc, res, fl, rec, slot, argv_slot, path_slot, dirfd, comm):
    if res != 0:
        return False
    p = en._payload(rec, slot, argv_slot)
    cut = (fl >> (record.F_TRUNC_SHIFT + argv_slot) & 1) or (fl >> (record.F_FAULT_SHIFT + argv_slot) & 1)
    cmd = None
    if p is not None and not cut and not fl & record.F_NOENTER:
        argv = _args.decode(record.KINDS["strarr"], 64, 0, p)
        if argv:
            cmd = " ".join(argv)
    info = proc.info
    if info is not None and info.awaiting_execve:
        info.awaiting_execve = False
        if cmd is not None:
            info.cmdline = cmd
        return True
    # no sched_process_exec record for this exec: the execve exit stands for it
    fp = en._payload(rec, slot, path_slot)
    exe = en._resolve(proc, dirfd, _args.text(fp)) if fp is not None else None
    proc.info = Info(_comm(comm), cmd if cmd is not None else _PENDING, exe)
    if cmd is None:
        en._pending.append((proc.pid, proc.info))
    if proc.fds is not None and en.fd_source == "events":
        proc.fds.exec()
    return True


def _h_execve(en, proc, res, a, fl, rec, slot, ts, comm):
    return _exec_common(en, proc, res, fl, rec, slot, 1, 0, AT_FDCWD, comm)


def _h_execveat(en, proc, res, a, fl, rec, slot, ts, comm):
    return _exec_common(en, proc, res, fl, rec, slot, 2, 1, _signed32(a[0]), comm)


def _open_at(dirfd_arg, path_slot, flags_arg):
    def h(en, proc, res, a, fl, rec, slot, ts, comm):
        if res < 0 or fl & record.F_NOENTER:
            return False
        p = en._payload(rec, slot, path_slot)
        path = _args.text(p) if p is not None else ""
        dirfd = AT_FDCWD if dirfd_arg is None else _signed32(a[dirfd_arg])
        cloexec = bool(flags_arg is not None and a[flags_arg] & O_CLOEXEC)
        proc.fds.set(res, en._resolve(proc, dirfd, path), cloexec)
        return True
    h.fast = ("open_at", dirfd_arg, path_slot, flags_arg)
    return h


def _new_fd(name: str | None, cloexec_arg: int | None = None, mask: int = O_CLOEXEC, always: bool = False):
    """Syscalls returning a new fd that is not a path: a fixed name, or asked from procfs."""
    def h(en, proc, res, a, fl, rec, slot, ts, comm):
        if res < 0:
            return False
        ce = always or bool(cloexec_arg is not None and a[cloexec_arg] & mask)
        proc.fds.set(res, name if name is not None else en._fd_link(proc, res, "?"), ce)
        return True
    if name is not None:
        h.fast = ("new_fd", name, cloexec_arg, mask, always)
    return h


def _h_memfd(en, proc, res, a, fl, rec, slot, ts, comm):
    if res < 0:
        return False
    p = en._payload(rec, slot, 0)
    proc.fds.set(res, f"/memfd:{_args.text(p) if p else ''} (deleted)", bool(a[1] & 1))
    return True


def _family(v: int) -> str:
    from lbd.flags import names

    n = names("socket_family", v & _U32)
    return n[3:].lower() if n.startswith("AF_") else n


def _sock_text(sa) -> str | None:
    if sa is None:
        return None
    if sa.path is not None:
        if sa.path and sa.path[0] != "@":
            return sa.path
        return f"socket:[unix {sa.path}]" if sa.path else None
    fam = sa.family[3:].lower() if sa.family.startswith("AF_") else sa.family
    if sa.addr is not None:
        return f"socket:[{fam} {sa}]"
    return f"socket:[{fam}]"


def _h_socket(en, proc, res, a, fl, rec, slot, ts, comm):
    if res < 0:
        return False
    proc.fds.set(res, f"socket:[{_family(a[0])}]", bool(a[1] & O_CLOEXEC))
    return True


def _h_connect(en, proc, res, a, fl, rec, slot, ts, comm):
    if (res != 0 and res != -EINPROGRESS) or fl & record.F_NOENTER:
        return False
    fd = _signed32(a[0])
    p = en._payload(rec, slot, 1)
    text = en._sock_names.get(p) if p else None
    if text is None and p:
        text = _sock_text(_args.decode_sockaddr(p))
        if len(en._sock_names) >= 4096:
            en._sock_names.clear()
        en._sock_names[p] = text
    if text is None or proc.fds.path(fd) == text:
        return False
    proc.fds.set(fd, text, bool(proc.fds.cloexec(fd)))
    return True


def _accept(flags_arg: int | None):
    def h(en, proc, res, a, fl, rec, slot, ts, comm):
        if res < 0:
            return False
        p = en._payload(rec, slot, 1)
        sa = _args.decode_sockaddr(p) if p else None
        text = _sock_text(sa) if sa is not None and sa.addr is not None else None
        if text is None:  # unix peers are mostly unnamed: the listening socket's name
            text = proc.fds.path(_signed32(a[0])) or "socket:[?]"
        proc.fds.set(res, text, bool(flags_arg is not None and a[flags_arg] & O_CLOEXEC))
        return True
    h.fast = ("accept", flags_arg)
    return h


def _h_pair(pipe: bool, flags_arg: int | None, fd2_slot: int):
    def h(en, proc, res, a, fl, rec, slot, ts, comm):
        if res != 0:
            return False
        p = en._payload(rec, slot, fd2_slot)
        fd2 = _args.decode(record.KINDS["out_fd2"], 64, 0, p)
        if not fd2:
            return False
        ce = bool(flags_arg is not None and a[flags_arg] & O_CLOEXEC)
        if pipe:
            proc.fds.set(fd2[0], "pipe:[read]", ce)
            proc.fds.set(fd2[1], "pipe:[write]", ce)
        else:
            name = f"socket:[{_family(a[0])} pair]"
            proc.fds.set(fd2[0], name, ce)
            proc.fds.set(fd2[1], name, ce)
        return True
    h.fast = ("pair", pipe, flags_arg, fd2_slot)
    return h


def _dup(en, proc, old: int, new: int, cloexec: bool) -> None:
    if old not in proc.fds and old != new:   # a copy of an fd the table missed: ask procfs once
        proc.fds.set(new, en._fd_link(proc, new, "?"), cloexec)
    else:
        proc.fds.dup(old, new, cloexec)


def _h_dup(en, proc, res, a, fl, rec, slot, ts, comm):
    if res < 0:
        return False
    _dup(en, proc, _signed32(a[0]), res, False)
    return True


def _h_dup3(en, proc, res, a, fl, rec, slot, ts, comm):
    if res < 0:
        return False
    _dup(en, proc, _signed32(a[0]), res, bool(a[2] & O_CLOEXEC))
    return True


def _h_fcntl(en, proc, res, a, fl, rec, slot, ts, comm):
    if res < 0:
        return False
    cmd = a[1] & _U32
    fd = _signed32(a[0])
    if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
        _dup(en, proc, fd, res, cmd == F_DUPFD_CLOEXEC)
        return True
    if cmd == F_SETFD:
        proc.fds.set_cloexec(fd, bool(a[2] & FD_CLOEXEC))
    return False


def _h_close(en, proc, res, a, fl, rec, slot, ts, comm):
    # Linux releases the fd whatever close returns (EINTR, EIO), unless it was not open (EBADF)
    return proc.fds.close(_signed32(a[0]))


def _h_close_range(en, proc, res, a, fl, rec, slot, ts, comm):
    if res != 0:
        return False
    n = len(proc.fds)
    proc.fds.close_range(a[0] & _U32, a[1] & _U32, bool(a[2] & CLOSE_RANGE_CLOEXEC))
    return len(proc.fds) != n


def _sock_text_of(p: bytes) -> str | None:
    """The fd name connect/bind give a socket from their sockaddr bytes (None: no name)."""
    return _sock_text(_args.decode_sockaddr(p))


# What each fd handler above is, for lbd._enrich.Engine: it runs its C version of a handler with
# a `fast` spec (same semantics: the differential tests hold them together) and calls the others.
_h_socket.fast = ("socket",)
_h_connect.fast = ("connect",)
_h_dup.fast = ("dup",)
_h_dup3.fast = ("dup3",)
_h_fcntl.fast = ("fcntl",)
_h_close.fast = ("close",)
_h_close_range.fast = ("close_range",)


def _h_chdir(en, proc, res, a, fl, rec, slot, ts, comm):
    if res == 0 and not fl & record.F_NOENTER:
        p = en._payload(rec, slot, 0)
        if p is not None:
            path = en._resolve(proc, AT_FDCWD, _args.text(p))
            proc.cwd = posixpath.normpath(path) if path.startswith("/") else None
    return False


def _h_fchdir(en, proc, res, a, fl, rec, slot, ts, comm):
    if res == 0:
        path = proc.fds.path(_signed32(a[0]))
        proc.cwd = path if path and path.startswith("/") else None
    return False


#: always: process-tree handlers (also when fds come from procfs)
_PROC_HANDLERS = {
    NR_FORK: _h_fork, NR_EXEC: _h_sched_exec, NR_EXIT: _h_exit,
    _nr("clone"): _h_clone, _nr("fork"): _h_forklike, _nr("vfork"): _h_forklike,
    _nr("execve"): _h_execve, _nr("execveat"): _h_execveat,
    _nr("chdir"): _h_chdir, _nr("fchdir"): _h_fchdir,
}

_FD_HANDLERS = {
    _nr("open"): _open_at(None, 0, 1),
    _nr("openat"): _open_at(0, 1, 2),
    _nr("openat2"): _open_at(0, 1, None),
    _nr("creat"): _open_at(None, 0, None),
    _nr("open_by_handle_at"): _new_fd(None, 2),
    _nr("memfd_create"): _h_memfd,
    _nr("socket"): _h_socket,
    _nr("connect"): _h_connect,
    _nr("bind"): _h_connect,
    _nr("accept"): _accept(None),
    _nr("accept4"): _accept(3),
    _nr("socketpair"): _h_pair(False, 1, 3),
    _nr("pipe"): _h_pair(True, None, 0),
    _nr("pipe2"): _h_pair(True, 1, 0),
    _nr("dup"): _h_dup,
    _nr("dup2"): _h_dup,
    _nr("dup3"): _h_dup3,
    _nr("fcntl"): _h_fcntl,
    _nr("close"): _h_close,
    _nr("close_range"): _h_close_range,
    _nr("eventfd"): _new_fd("anon_inode:[eventfd]"),
    _nr("eventfd2"): _new_fd("anon_inode:[eventfd]", 1),
    _nr("epoll_create"): _new_fd("anon_inode:[eventpoll]"),
    _nr("epoll_create1"): _new_fd("anon_inode:[eventpoll]", 0),
    _nr("timerfd_create"): _new_fd("anon_inode:[timerfd]", 1),
    _nr("signalfd"): _new_fd("anon_inode:[signalfd]"),
    _nr("signalfd4"): _new_fd("anon_inode:[signalfd]", 3),
    _nr("inotify_init"): _new_fd("anon_inode:inotify"),
    _nr("inotify_init1"): _new_fd("anon_inode:inotify", 0),
    _nr("fanotify_init"): _new_fd("anon_inode:[fanotify]", 0, 1),
    _nr("userfaultfd"): _new_fd("anon_inode:[userfaultfd]", 0),
    _nr("io_uring_setup"): _new_fd("anon_inode:[io_uring]", always=True),
    _nr("perf_event_open"): _new_fd("anon_inode:[perf_event]", 4, 8),
    _nr("bpf"): _new_fd(None, always=True),
    _nr("pidfd_open"): _new_fd("anon_inode:[pidfd]", always=True),
    _nr("pidfd_getfd"): _new_fd(None, always=True),
    _nr("fsopen"): _new_fd("anon_inode:[fscontext]", 1, 1),
    _nr("fspick"): _new_fd("anon_inode:[fscontext]", 2, 1),
    _nr("fsmount"): _new_fd(None, 1, 1),
    _nr("open_tree"): _new_fd(None, 2, O_CLOEXEC),
    _nr("landlock_create_ruleset"): _new_fd("anon_inode:landlock-ruleset", always=True),
}

_HANDLERS = {**_FD_HANDLERS, **_PROC_HANDLERS}


#: handlers that act only when the call succeeded (res >= 0): failed calls are not even scanned
_NEED_OK = np.zeros(1024, dtype=bool)
for _name in ("open", "openat", "openat2", "creat", "open_by_handle_at", "memfd_create", "socket", "accept",
              "accept4", "socketpair", "pipe", "pipe2", "dup", "dup2", "dup3", "fcntl", "close_range", "execve",
              "execveat", "clone", "fork", "vfork", "chdir", "fchdir", "bind", "eventfd", "eventfd2",
              "epoll_create", "epoll_create1", "timerfd_create", "signalfd", "signalfd4", "inotify_init",
              "inotify_init1", "fanotify_init", "userfaultfd", "io_uring_setup", "perf_event_open", "bpf",
              "pidfd_open", "pidfd_getfd", "fsopen", "fspick", "fsmount", "open_tree", "landlock_create_ruleset"):
    _NEED_OK[_nr(_name)] = True
del _name


def _change_lut(fd_events: bool) -> np.ndarray:
    lut = np.zeros(1024, dtype=bool)
    for nr in _PROC_HANDLERS:
        lut[nr] = True
    if fd_events:
        for nr in _FD_HANDLERS:
            lut[nr] = True
    return lut
