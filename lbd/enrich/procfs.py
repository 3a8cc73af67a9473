"""Reads of /proc (or a fake tree with the same layout under another root, for tests).

Every reader returns None when the process is gone (or the file cannot be read) and never raises
for a missing or unreadable process: the caller keeps what the kernel captured.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

O_CLOEXEC = 0o2000000  # the kernel's value, as /proc/<pid>/fdinfo/<fd> "flags:" shows it (octal)


@dataclass(slots=True)
class ProcInfo:
    """What procfs tells about one process at the moment it was read."""

    pid: int
    comm: str
    ppid: int
    cmdline: str | None     # None: empty (kernel thread) or unreadable
    exe: str | None
    cwd: str | None


def _text(b: bytes) -> str:
    return b.decode("utf-8", "backslashreplace")


class ProcFS:
    """procfs under `root` (default "/proc").  Counts its reads and the processes found gone."""

    def __init__(self, root: str | os.PathLike = "/proc"):
        self.root = os.fspath(root)
        self.reads = 0
        self.vanished = 0

    def _path(self, pid: int, name: str) -> str:
        return f"{self.root}/{pid}/{name}"

    def read(self, pid: int, name: str) -> bytes | None:
        self.reads += 1
        try:
            with open(self._path(pid, name), "rb") as f:
                return f.read()
        except OSError:
            return None

    def readlink(self, pid: int, name: str) -> str | None:
        self.reads += 1
        try:
            return os.readlink(self._path(pid, name))
        except OSError:
            return None

    def stat(self, pid: int) -> tuple[str, int] | None:
        """(comm, ppid) from /proc/<pid>/stat; None when the process is gone."""
        raw = self.read(pid, "stat")
        if not raw:
            return None
        try:
            head, tail = raw.rsplit(b")", 1)
            comm = _text(head.split(b"(", 1)[1])
            ppid = int(tail.split()[1])
        except (ValueError, IndexError):
            return None
        return comm, ppid

    def cmdline(self, pid: int) -> str | None:
        """The command line, arguments joined by spaces; None if empty or unreadable."""
        raw = self.read(pid, "cmdline")
        if not raw:
            return None
        return _text(raw.rstrip(b"\0").replace(b"\0", b" "))

    def exe(self, pid: int) -> str | None:
        return self.readlink(pid, "exe")

    def cwd(self, pid: int) -> str | None:
        return self.readlink(pid, "cwd")

    def process(self, pid: int) -> ProcInfo | None:
        """stat, cmdline, exe and cwd of one process; None when it is gone."""
        st = self.stat(pid)
        if st is None:
            self.vanished += 1
            return None
        return ProcInfo(pid, st[0], st[1], self.cmdline(pid), self.exe(pid), self.cwd(pid))

    def fds(self, pid: int, cloexec: bool = True) -> list[tuple[int, str, bool]] | None:
        """The open files [(fd, path, close-on-exec)] sorted by fd; None when the process is gone.

        close-on-exec comes from fdinfo's flags (False when unreadable or cloexec=False).
        """
        d = self._path(pid, "fd")
        self.reads += 1
        try:
            names = os.listdir(d)
        except OSError:
            return None
        out = []
        for name in names:
            try:
                fd = int(name)
            except ValueError:
                continue
            self.reads += 1
            try:
                path = os.readlink(f"{d}/{name}")
            except OSError:
                continue  # closed meanwhile
            ce = False
            if cloexec:
                info = self.read(pid, f"fdinfo/{name}")
                if info:
                    for line in info.splitlines():
                        if line.startswith(b"flags:"):
                            try:
                                ce = bool(int(line.split()[1], 8) & O_CLOEXEC)
                            except (ValueError, IndexError):
                                pass
                            break
            out.append((fd, path, ce))
        out.sort()
        return out
