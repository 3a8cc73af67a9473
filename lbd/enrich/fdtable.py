"""One process's open files, kept from its syscalls (threads share it: keyed by the tgid)."""
from __future__ import annotations

import array
import bisect
from operator import itemgetter

_FD = itemgetter(0)


class FdTable:
    """fd -> (path, close-on-exec), and the sorted ((fd, path), ...) snapshot events point at.

    Invariants: `_rows` is `_fds` as (fd, path) tuples sorted by fd; `_snap` is None or
    tuple(_rows); `nchars` is the sum of len(path) + 1 over the rows.  `complete` is False when the
    table may lack fds opened before it was seeded (the process could not be read from procfs);
    `overflow` counts fds not kept because the table held `max_fds` already.

    `enc` (owned by the Enricher): the rows as flat int32 triples (fd, path_off, path_len) in the
    string arena `enc_arena` of epoch `enc_epoch`; kept up to date by every change while that
    epoch lasts, so that writing a snapshot to a batch's fdtab is one array copy.  `written`: where
    the last snapshot sits in the Enricher's fdtab (epoch, row offset, snapshot, rows kept).
    """

    __slots__ = ("_fds", "_rows", "_snap", "nchars", "complete", "overflow", "max_fds",
                 "enc", "enc_arena", "enc_epoch", "written")

    def __init__(self, entries=(), *, complete: bool = True, max_fds: int = 65536):
        self._fds: dict[int, tuple[str, bool]] = {}
        self._rows: list[tuple[int, str]] = []
        self._snap: tuple | None = None
        self.nchars = 0
        self.complete = complete
        self.overflow = 0
        self.max_fds = max_fds
        self.enc = None
        self.enc_arena = None
        self.enc_epoch = -1
        self.written = None
        for fd, path, cloexec in entries:
            self.set(fd, path, cloexec)

    def __len__(self) -> int:
        return len(self._fds)

    def __contains__(self, fd: int) -> bool:
        return fd in self._fds

    def __repr__(self) -> str:
        return f"<FdTable {self._rows}>"

    def path(self, fd: int) -> str | None:
        e = self._fds.get(fd)
        return None if e is None else e[0]

    def cloexec(self, fd: int) -> bool | None:
        e = self._fds.get(fd)
        return None if e is None else e[1]

    def items(self) -> list[tuple[int, str, bool]]:
        return [(fd, p, c) for fd, (p, c) in sorted(self._fds.items())]

    def _live_enc(self):
        enc = self.enc
        if enc is not None and self.enc_arena.epoch != self.enc_epoch:
            enc = self.enc = None
        return enc

    def set(self, fd: int, path: str, cloexec: bool = False) -> None:
        if fd < 0:
            return
        rows = self._rows
        enc = self._live_enc()
        old = self._fds.get(fd)
        if old is not None:
            if old[0] != path:
                i = bisect.bisect_left(rows, fd, key=_FD)
                rows[i] = (fd, path)
                self._snap = None
                self.nchars += len(path) - len(old[0])
                if enc is not None:
                    off, ln = self.enc_arena.add(path)
                    enc[3 * i + 1] = off
                    enc[3 * i + 2] = ln
        else:
            if len(self._fds) >= self.max_fds:
                self.overflow += 1
                return
            if not rows or rows[-1][0] < fd:
                i = len(rows)
                rows.append((fd, path))
            else:
                i = bisect.bisect_left(rows, fd, key=_FD)
                rows.insert(i, (fd, path))
            self._snap = None
            self.nchars += len(path) + 1
            if enc is not None:
                enc[3 * i: 3 * i] = array.array("i", (fd, *self.enc_arena.add(path)))
        self._fds[fd] = (path, cloexec)

    def set_cloexec(self, fd: int, cloexec: bool) -> None:
        e = self._fds.get(fd)
        if e is not None:
            self._fds[fd] = (e[0], cloexec)

    def close(self, fd: int) -> bool:
        e = self._fds.pop(fd, None)
        if e is None:
            return False
        rows = self._rows
        i = len(rows) - 1 if rows[-1][0] == fd else bisect.bisect_left(rows, fd, key=_FD)
        del rows[i]
        self._snap = None
        self.nchars -= len(e[0]) + 1
        enc = self._live_enc()
        if enc is not None:
            del enc[3 * i: 3 * i + 3]
        return True

    def dup(self, old: int, new: int, cloexec: bool = False, unknown: str = "?") -> None:
        """new becomes a copy of old (old unknown: new's path is `unknown`)."""
        if old == new:
            return
        e = self._fds.get(old)
        self.set(new, e[0] if e is not None else unknown, cloexec)

    def close_range(self, first: int, last: int, cloexec_only: bool = False) -> None:
        hit = [fd for fd in self._fds if first <= fd <= last]
        for fd in hit:
            if cloexec_only:
                self.set_cloexec(fd, True)
            else:
                self.close(fd)

    def exec(self) -> None:
        """A successful execve: the close-on-exec fds are closed."""
        for fd in [fd for fd, (_, ce) in self._fds.items() if ce]:
            self.close(fd)

    def copy(self) -> FdTable:
        """The table a forked child starts with (not `written`: that is the parent's)."""
        t = FdTable(complete=self.complete, max_fds=self.max_fds)
        t._fds = dict(self._fds)
        t._rows = list(self._rows)
        t._snap = self._snap
        t.nchars = self.nchars
        enc = self._live_enc()
        if enc is not None:
            t.enc = array.array("i", enc)
            t.enc_arena, t.enc_epoch = self.enc_arena, self.enc_epoch
        return t

    def encode(self, arena) -> array.array:
        """The rows as (fd, path_off, path_len) triples of `arena`'s current epoch."""
        enc = self.enc
        if enc is None or self.enc_arena is not arena or self.enc_epoch != arena.epoch:
            add = arena.add
            enc = array.array("i")
            for fd, path in self._rows:
                enc.extend((fd, *add(path)))
            self.enc, self.enc_arena, self.enc_epoch = enc, arena, arena.epoch
        return enc

    def snapshot(self) -> tuple[tuple[int, str], ...]:
        """The open files as ((fd, path), ...) sorted by fd; the same object until a change."""
        s = self._snap
        if s is None:
            s = self._snap = tuple(self._rows)
        return s
