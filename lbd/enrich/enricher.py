"""Enricher: gives every batch its enrichment (lbd.enrich.layout) from the state engine.

The process and fd tables are kept from the events themselves, applied in event order by the
compiled engine (lbd._enrich.Engine, whose docstring states the semantics): the probe captures the
state syscalls and the process-tree records whatever the user selected (open_params.track_state),
flagged LBD_F_STATE when they are for the tables only.  procfs is read once, when the Enricher is
made (a scan of every process: comm, command line, executable, parent, cwd, open fds with sockets
resolved to their addresses), and afterwards only for a pid never seen, never to override what the
events said.  This class owns those reads and the other slow paths the engine calls back (user and
group names per new id, the name of an fd a rare syscall creates, a command line the bcc fallback
could not capture).

The bcc fallback (kernels without BTF) gives less: no argv or executable in the exec record (the
command line comes from execve's argv as read at its enter, else from procfs; the executable is
execve's filename made absolute), no socket in the records (sockets are named from the sockaddr
argument: no real port after a bind to port 0, no local address of a connection), and the parent
at fork time (the engine moves a process whose parent it saw exit to the nearest child subreaper
it knows, else to 1).

Memory: at most max_procs processes (least recently used evicted first; exited ones leave after
grace_s), max_fds fds per process, max_users names of each kind; the strings and fd rows of one
epoch (max_strtab bytes, max_fd_rows rows) before the arrays start over.  stats() counts them.
"""
from __future__ import annotations

import logging
import os

from lbd._enrich import Engine
from lbd.enrich.procfs import ProcFS
from lbd.enrich.users import Accounts

log = logging.getLogger("lbd.enrich")

__all__ = ["Enricher"]


class Enricher:
    """Keeps the process and fd tables and enriches batches.

    Parameters: `config` (a lbd Config or dict: its rich_value_size), `proc_root` and `etc_root`
    (procfs and the directory holding etc/passwd, etc/group: fake trees in tests),
    `rich_value_size` (bytes kept of each string: cmdline, paths; and of an event's fd list,
    counting name bytes; 0: no cmdline, fullpath or fds at all), `max_procs`, `max_users`,
    `max_fds` (per process), `grace_s` (how long an exited process stays for late events and its
    children's parent name), `max_strtab` / `max_fd_rows` (the bounds of an epoch: strings and fd
    rows written for one batch stay valid for the next ones, so batch.strtab and batch.fdtab are
    the epoch's whole arrays and may hold rows no event of this batch uses), `scan` (read every
    process from procfs now: the one full read), `selection` (accepted for compatibility: the
    tables follow the state records whatever the selection).

    `enrich(batch)` sets batch.enrich, batch.strtab and batch.fdtab (views of buffers the next
    call reuses: valid until then, like the batch).  One call per batch, no Python per event.

    Invariants: an entry of the table is the live (or recently exited) process with that pid as
    far as the events told; nothing read from procfs after the scan replaces what events said.
    """

    def __init__(self, config=None, *, proc_root: str | os.PathLike = "/proc", etc_root: str | os.PathLike = "/",
                 rich_value_size: int | None = None, max_procs: int = 16384, max_users: int = 4096,
                 max_fds: int = 65536, grace_s: float = 5.0, selection=None, nss: bool | None = None,
                 max_strtab: int = 1 << 20, max_fd_rows: int = 1 << 16, scan: bool = True):
        if config is not None:
            from lbd.config import coerce

            config = coerce(config)
            if rich_value_size is None:
                rich_value_size = config.init.rich_value_size
        if rich_value_size is None:
            rich_value_size = 65536
        self.rich_value_size = rich_value_size
        self.procfs = ProcFS(proc_root)
        self.accounts = Accounts(etc_root, nss=nss, max_entries=max_users)
        self._engine = Engine(self, rich_value_size=min(rich_value_size, 0xFFFFFFFF), max_procs=max_procs,
                              max_fds=max_fds, max_users=max_users, grace_s=grace_s, max_strtab=max_strtab,
                              max_fd_rows=max_fd_rows)
        self.enrich = self._engine.enrich       # the per-batch entry point, without a Python layer
        self.scanned = 0
        if scan:
            self.scan()

    @classmethod
    def from_config(cls, cfg, selection=None, **kw) -> Enricher:
        """An Enricher for a lbd Config (its rich_value_size)."""
        return cls(cfg, selection=selection, **kw)

    def enrich(self, batch) -> None:  # replaced per instance by the engine's bound method
        """Set batch.enrich, batch.strtab and batch.fdtab for the batch's events."""
        self._engine.enrich(batch)

    def __call__(self, batch) -> None:
        self._engine.enrich(batch)

    def scan(self) -> int:
        """Read every process procfs lists into the tables (the capture's start); how many."""
        n = 0
        for pid in self.procfs.pids():
            info = self.procfs.process(pid)
            if info is not None:
                self._engine.seed(pid, info)
                n += 1
        self.scanned += n
        log.debug("enrichment: %d processes read from %s", n, self.procfs.root)
        return n

    # ---- slow paths the engine calls (rare: per new pid, id or unusual fd) ----------------------

    def load(self, pid: int):
        """A pid never seen: its procfs entry (None: gone)."""
        return self.procfs.process(pid)

    def user(self, uid: int) -> str:
        return self.accounts.user(uid)

    def group(self, gid: int) -> str:
        return self.accounts.group(gid)

    def fd_link(self, pid: int, fd: int) -> bytes | None:
        """The name of an fd the events do not name (open_by_handle_at, pidfd_getfd, ...)."""
        return self.procfs.fd_name(pid, fd)

    def cmdline(self, pid: int) -> bytes | None:
        """A command line the capture lacked (bcc without execve's argv)."""
        return self.procfs.cmdline(pid)

    # ---- inspection ------------------------------------------------------------------------------

    def process(self, pid: int) -> dict | None:
        """The table's entry for pid (pid, ppid, comm, cmdline, exe, cwd, fds, dead, complete,
        subreaper), None when it has none; nothing is read or counted."""
        return self._engine.process(pid)

    def stats(self) -> dict:
        """Counters: batches, events, state changes applied; the process table's size, hits,
        misses, evictions; exited processes in their grace period; user and group caches; fd
        rows, epochs, strtab bytes; procfs reads, processes found gone, processes scanned."""
        d = self._engine.stats()
        d.update(procfs_reads=self.procfs.reads, procfs_vanished=self.procfs.vanished, scanned=self.scanned)
        return d
