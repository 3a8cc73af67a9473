"""Files lbd reads and writes as root, next to users it must not trust.

Reading (configuration, syscall selection)::

    data = read_input_file(path, "configuration file")       # bytes, or InputFileError

Regular files only (a FIFO, a device or /dev/zero would block or never end), opened without
waiting (O_NONBLOCK), at most MAX_INPUT_BYTES (1 MiB), read whole or not at all.

Writing (event output, log file, the plugin's putfile)::

    f = PrivateFile.open(path, "output file")                 # or PrivateFileError
    os.write(f.fd, ...); f.reopen(); f.rotate(keep); f.close()

The rules of a careful root daemon:

* the last component is opened with O_NOFOLLOW: a symbolic link is refused, never followed;
* the directory is opened first and the file relative to it (no race between the check and the
  open); a directory other users can write (world-writable, or owned by another non-root user)
  is refused unless it is sticky (/tmp), and then only a file that is lbd's own is written;
* a regular file must belong to lbd's user and have one link; it is forced to mode 0600 with
  fchmod after the open (a file created is 0600 from the start);
* FIFOs and character devices (/dev/null, /dev/full) are written as they are; block devices,
  directories and sockets are refused.

Every error is one line naming the file, the reason and what to do.
"""
from __future__ import annotations

import errno
import logging
import os
import stat

__all__ = [
    "MAX_INPUT_BYTES", "InputFileError", "read_input_file", "PrivateFileError", "PrivateFile",
    "open_private", "PrivateLogHandler",
]

#: the largest configuration or selection file lbd reads
MAX_INPUT_BYTES = 1 << 20


class InputFileError(ValueError):
    """An input file that cannot be used; str() is one line naming the file."""


def read_input_file(path: str | os.PathLike, what: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; InputFileError otherwise."""
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise InputFileError(f"{name}: cannot read the {what}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputFileError(f"{name}: the {what} is {_kind(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise InputFileError(f"{name}: the {what} is {st.st_size} bytes, more than the limit of "
                                 f"{_size(limit)}")
        chunks = []
        total = 0
        while True:                    # read one byte past the limit: the file may grow meanwhile
            chunk = os.read(fd, limit + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise InputFileError(f"{name}: the {what} is more than the limit of {_size(limit)}")
        return b"".join(chunks)
    except OSError as e:
        raise InputFileError(f"{name}: cannot read the {what}: {e.strerror or e}") from None
    finally:
        os.close(fd)


def _size(n: int) -> str:
    return f"{n} bytes ({n >> 20} MiB)" if n >= 1 << 20 and not n & ((1 << 20) - 1) else f"{n} bytes"


def _kind(mode: int) -> str:
    for test, text in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return text
    return "not a regular file"


# ---- files written as root -------------------------------------------------------------------------

class PrivateFileError(OSError):
    """A file lbd must not or cannot write; str() is one line naming the file."""

    def __init__(self, err: int, message: str):
        super().__init__(err, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC


class PrivateFile:
    """An output file opened by the rules of this module's docstring.

    Invariants: `fd` is open for appending until close(); `dir_fd` is the directory it was opened
    in (kept open for reopen() and rotate(), which work relative to it: a directory renamed or
    replaced meanwhile does not redirect them); `regular` tells whether it is a regular file
    (only those are truncated, rotated and chmod'ed).
    """

    def __init__(self, path: str, what: str, dir_fd: int, fd: int, st: os.stat_result):
        self.path = path
        self.what = what
        self.dir_fd = dir_fd
        self.fd = fd
        self.regular = stat.S_ISREG(st.st_mode)
        self.fifo = stat.S_ISFIFO(st.st_mode)
        self.base = os.path.basename(path)

    @classmethod
    def open(cls, path: str | os.PathLike, what: str = "output file") -> PrivateFile:
        name = os.fspath(path)
        base = os.path.basename(name)
        if base in ("", ".", ".."):
            raise PrivateFileError(errno.EISDIR, f"cannot open {what} {name}: it names a directory, not a file")
        parent = os.path.dirname(name) or "."
        try:
            dfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise PrivateFileError(e.errno or errno.EIO, f"cannot open {what} {name}: {e.strerror}") from None
        try:
            fd, st = _open_in(dfd, parent, base, name, what)
        except BaseException:
            os.close(dfd)
            raise
        return cls(name, what, dfd, fd, st)

    def reopen(self) -> None:
        """Open the path anew (after logrotate moved the file away) and close the old fd."""
        fd, st = _open_in(self.dir_fd, os.path.dirname(self.path) or ".", self.base, self.path, self.what)
        old, self.fd = self.fd, fd
        self.regular = stat.S_ISREG(st.st_mode)
        self.fifo = stat.S_ISFIFO(st.st_mode)
        os.close(old)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def ends_inside_line(self) -> bool:
        """A non-empty regular file whose last byte is not a newline (read through a read-only
        open of the same directory entry, checked to be the same file)."""
        st = os.fstat(self.fd)
        if not self.regular or not st.st_size:
            return False
        try:
            rfd = os.open(self.base, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=self.dir_fd)
        except OSError:
            return False
        try:
            rst = os.fstat(rfd)
            if (rst.st_dev, rst.st_ino) != (st.st_dev, st.st_ino):
                return False
            return os.pread(rfd, 1, rst.st_size - 1) not in (b"\n", b"")
        finally:
            os.close(rfd)

    def rotate(self, keep: int) -> None:
        """events.log -> events.log.1 -> ... -> events.log.<keep> (the oldest is replaced), then a
        new events.log.  Renames work on directory entries: a link planted under one of the
        rotated names is replaced, never followed.  When the path no longer names this file
        (moved away), only a new file is opened."""
        d = self.dir_fd
        try:
            cur = os.stat(self.base, dir_fd=d, follow_symlinks=False)
        except FileNotFoundError:
            cur = None
        mine = os.fstat(self.fd)
        if cur is None or (cur.st_dev, cur.st_ino) != (mine.st_dev, mine.st_ino):
            self.reopen()            # moved away already (logrotate before its SIGHUP): start anew
            return
        for k in range(keep - 1, 0, -1):
            try:
                os.rename(f"{self.base}.{k}", f"{self.base}.{k + 1}", src_dir_fd=d, dst_dir_fd=d)
            except FileNotFoundError:
                pass
        os.rename(self.base, f"{self.base}.1", src_dir_fd=d, dst_dir_fd=d)
        self.reopen()

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)

    def close(self) -> None:
        for fd in (self.fd, self.dir_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self.dir_fd = -1


def open_private(path: str | os.PathLike, what: str = "output file") -> PrivateFile:
    return PrivateFile.open(path, what)


def _link_message(what: str, name: str) -> str:
    return (f"cannot open {what} {name}: it is a symbolic link, and lbd does not follow links for the files "
            f"it writes; give the real path")


def _open_in(dfd: int, parent: str, base: str, name: str, what: str) -> tuple[int, os.stat_result]:
    """Open base in the directory dfd by the module's rules: (fd, fstat of it)."""
    dst = os.fstat(dfd)
    euid = os.geteuid()
    others = bool(dst.st_mode & stat.S_IWOTH) or (dst.st_uid not in (0, euid) and bool(dst.st_mode & stat.S_IWUSR))
    sticky = bool(dst.st_mode & stat.S_ISVTX)
    if others and not sticky:
        who = "every user" if dst.st_mode & stat.S_IWOTH else f"uid {dst.st_uid}"
        raise PrivateFileError(errno.EPERM, f"cannot open {what} {name}: its directory {parent} can be written by "
                                            f"{who} (mode {stat.S_IMODE(dst.st_mode):04o}) and is not sticky; "
                                            f"use a directory only root can write")
    # Look first (the open below is what protects: O_NOFOLLOW, and the checks on what it opened;
    # this only gives the clear message, and keeps a FIFO another user made in /tmp from blocking
    # the open until someone reads it)
    try:
        pre = os.stat(base, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        pre = None
    except OSError as e:
        raise PrivateFileError(e.errno or errno.EIO, f"cannot open {what} {name}: {e.strerror}") from None
    if pre is not None and stat.S_ISLNK(pre.st_mode):
        raise PrivateFileError(errno.ELOOP, _link_message(what, name))
    if others and pre is not None and pre.st_uid != euid:
        raise PrivateFileError(errno.EPERM, f"cannot open {what} {name}: it belongs to uid {pre.st_uid} in a "
                                            f"directory every user can write; give another path")
    try:
        fd = os.open(base, _OPEN_FLAGS, 0o600, dir_fd=dfd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise PrivateFileError(errno.ELOOP, _link_message(what, name)) from None
        raise PrivateFileError(e.errno or errno.EIO, f"cannot open {what} {name}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            if st.st_uid != euid:
                raise PrivateFileError(errno.EPERM, f"cannot open {what} {name}: it belongs to uid {st.st_uid}, not to "
                                                    f"lbd's user (uid {euid}); remove it or give another path")
            if st.st_nlink != 1:
                raise PrivateFileError(errno.EPERM, f"cannot open {what} {name}: it has {st.st_nlink} hard links; "
                                                    f"lbd writes only a file with one name")
            if stat.S_IMODE(st.st_mode) != 0o600:
                os.fchmod(fd, 0o600)
        elif not (stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)):
            raise PrivateFileError(errno.EINVAL, f"cannot open {what} {name}: it is {_kind(st.st_mode)}; "
                                                 f"lbd writes regular files, FIFOs and character devices")
        elif others:
            # a sticky world-writable directory: only root can make device nodes, but anyone a FIFO
            if st.st_uid != euid:
                raise PrivateFileError(errno.EPERM, f"cannot open {what} {name}: it belongs to uid {st.st_uid} in a "
                                                    f"directory every user can write; give another path")
        return fd, st
    except BaseException:
        os.close(fd)
        raise


class PrivateLogHandler(logging.StreamHandler):
    """A logging handler appending to a PrivateFile (the log_file): reopen() on SIGHUP."""

    def __init__(self, path: str):
        self.file = PrivateFile.open(path, "log file")
        super().__init__(os.fdopen(os.dup(self.file.fd), "a", encoding="utf-8", errors="backslashreplace"))

    def reopen(self) -> None:
        self.acquire()
        try:
            self.file.reopen()
            old = self.setStream(os.fdopen(os.dup(self.file.fd), "a", encoding="utf-8", errors="backslashreplace"))
            if old is not None:
                old.close()
        finally:
            self.release()

    def close(self) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
            self.file.close()
        finally:
            self.release()
        super().close()
