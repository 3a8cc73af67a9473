"""Write batches of events to stdout or a file, formatted in bulk (lbd._format; the terminal format:
lbd.output.terminal), in large writes.

    with open_writer(cfg, "/var/log/lbd/events.log") as w:     # or None: cfg's putfile/path, else stdout
        w.write_batch(batch)                                   # batch.enrich is used when present
    w.top_syscalls(5), w.events, w.unwritten

Files are opened by lbd.files' rules (no symbolic link followed, a directory other users can
write refused unless sticky, the file lbd's own and forced to mode 0600), appended to, never
truncated; a file that ends inside a line (a run that was killed) first gets a newline.

What a reader of the output can count on:

* whole lines only: a line is written whole, or not at all.  A regular file whose write fails
  (disk full) is truncated back to its last complete line; a pipe or FIFO gets lines in writes
  that fit its free space, so a stalled reader never sees half a line; on other outputs (a
  terminal, a socket) a line can be cut only when a signal interrupts a blocked write;
* never stuck: a stalled output (a FIFO whose reader is stopped) is waited for in steps of at
  most 50 ms, and `should_stop()` (the CLI: SIGINT or SIGTERM came) is asked between them: once
  it is true, writing goes on for at most 0.1 s, and the events still buffered then are given up
  and counted (`unwritten`);
* the counts: `events` were written, `unwritten` were formatted but lost (write error, stop, the
  reader went away); `error` says why.

Rotation (rotate_size > 0, regular files): before a write would take the file past rotate_size,
events.log becomes events.log.1 (events.log.1 becomes .2, ... up to rotate_keep) and a new
events.log is started.  reopen() (SIGHUP) closes the file and opens the path again: the
convention logrotate's `create` and `postrotate kill -HUP` rely on.

Errors: OutputError, an OSError whose message is one line naming the output and the reason;
OutputClosed (a subclass) when the reader of a pipe went away (EPIPE).
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import select
import stat
import sys
import termios
import time

import numpy as np

from lbd.files import PrivateFile, PrivateFileError

__all__ = ["OutputError", "OutputClosed", "Writer", "open_writer", "open_output_fd", "FORMATS"]

FORMATS = ("normal", "json", "terminal")   # the text formats; "parquet": lbd.output.parquet

log = logging.getLogger("lbd.output")

_PAGE = os.sysconf("SC_PAGE_SIZE")
_F_GETPIPE_SZ = 1032
_WAIT_S = 0.05           # longest single wait for a stalled output: signals are looked at this often
_OTHER_CHUNK = 1 << 16   # largest write to a terminal, socket or device


class OutputError(OSError):
    """Events could not be written (or the output not opened); str() is a one-line message."""

    def __init__(self, err: int, message: str):
        super().__init__(err, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class OutputClosed(OutputError):
    """The reader of the output (a pipe, a FIFO) went away: EPIPE."""


def open_output_fd(path: str) -> int:
    """An fd appending to path, opened by lbd.files' rules; OutputError when it cannot be."""
    f = _open_file(path)
    fd = os.dup(f.fd)
    f.close()
    return fd


def _open_file(path: str, what: str = "output file") -> PrivateFile:
    try:
        return PrivateFile.open(path, what)
    except PrivateFileError as e:
        raise OutputError(e.errno or errno.EIO, str(e)) from None


class Writer:
    """Formats batches into one buffer and writes it to `fd` when it holds `flush_bytes` or
    `flush_s` seconds have passed since the last write (and on flush()/close()).

    Invariants: the fd is open until close(); it is closed by close() only if this object opened
    it (close_fd, or `file`); the buffer only ever holds whole lines, and `owed` is how much of
    its first line is already out (non-zero only after a short write).  After a write error the
    writer is broken: further writes raise the same OutputError, and close() discards what is
    buffered (counted in `unwritten`).
    """

    def __init__(self, fd: int, fmt: str = "normal", limit: int = 0, *, name: str = "output",
                 close_fd: bool = False, flush_bytes: int = 1 << 20, flush_s: float = 0.2,
                 file: PrivateFile | None = None, capture_env: bool = False, secret_pattern: str = "",
                 rotate_size: int = 0, rotate_keep: int = 5, should_stop=None, color: bool | None = None,
                 formatter=None):
        """fmt "terminal": lbd.output.terminal's lines, coloured when `color` (None: when fd is a
        terminal and NO_COLOR is not set).  `formatter`: any object with the bulk formatter's
        interface (format, buffered, buffered_lines, line_end, write_some, clear), e.g. a
        TerminalFormatter with extras.  capture_env / secret_pattern: the environment (normal,
        json); file: the PrivateFile fd belongs to (rotation, reopen); should_stop: see the module
        docstring."""
        if fmt not in FORMATS:
            raise ValueError(f"format {fmt!r}: one of {', '.join(FORMATS)}")
        self.fd = fd
        self.name = name
        self.format = fmt
        self.limit = limit
        self.close_fd = close_fd
        self.file = file
        self.flush_bytes = flush_bytes
        self.flush_s = flush_s
        self.rotate_size = rotate_size if file is not None else 0
        self.rotate_keep = rotate_keep
        self._rotate_at = self.rotate_size     # the size that starts a rotation (later after one failed)
        self.should_stop = should_stop
        if formatter is not None:
            self.formatter = formatter
        elif fmt == "terminal":
            from lbd.output.terminal import TerminalFormatter, use_color

            self.formatter = TerminalFormatter(limit, color=use_color(fd) if color is None else color,
                                               capture_env=capture_env, secret_pattern=secret_pattern)
        else:
            from lbd._format import Formatter

            self.formatter = Formatter(fmt, limit, capture_env=capture_env, secret_pattern=secret_pattern)
        self.counts = np.zeros(1024, dtype=np.int64)   # events formatted, by syscall number
        self.formatted = 0
        self.events = 0          # events written (their whole line)
        self.unwritten = 0       # events formatted and then lost (error, stop, reader gone)
        self.bytes = 0
        self.owed = 0            # bytes of the buffer's first line already written
        self.rotations = 0
        self.error: OutputError | None = None
        self.stopped = False     # should_stop() cut a flush short
        self._last = time.monotonic()
        self.closed = False
        self._own_fd = -1        # a non-blocking duplicate description of a pipe (ours to close)
        self._gone = False       # poll said POLLERR: the reader went away (a write tells for sure)
        self._setup()

    # ---- the kind of output --------------------------------------------------------------------

    def _setup(self) -> None:
        st = os.fstat(self.fd)
        self.regular = stat.S_ISREG(st.st_mode)
        self.pipe = stat.S_ISFIFO(st.st_mode)
        self._size = st.st_size if self.regular else 0
        self._wfd = self.fd
        if self.pipe:
            # Writes must not block (or a stop could leave half a line): a description of our own
            # in non-blocking mode.  A FIFO we opened is ours; a pipe we were given (stdout) is
            # opened again through /proc, so the shell's description keeps its flags.
            if self.file is not None:
                fl = fcntl.fcntl(self.fd, fcntl.F_GETFL)
                fcntl.fcntl(self.fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)
            else:
                try:
                    self._own_fd = os.open(f"/proc/self/fd/{self.fd}", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                    self._wfd = self._own_fd
                except OSError:
                    self.pipe = False        # written like a terminal: poll, then bounded writes
            if self.pipe:
                try:
                    self._pipe_slots = max(1, fcntl.fcntl(self._wfd, _F_GETPIPE_SZ) // _PAGE)
                except OSError:
                    self._pipe_slots = 16
        if self.regular and self._size and self.file is not None and self.file.ends_inside_line():
            log.warning("%s ended inside a line (an earlier writer was stopped mid-line): a newline ends it",
                        self.name)
            os.write(self.fd, b"\n")
            self._size += 1

    # ---- writing -------------------------------------------------------------------------------

    def write_batch(self, batch, mask=None) -> int:
        """Format the batch's events (those with a true mask entry) and write when due."""
        if self.error is not None:
            raise self.error
        n = self.formatter.format(batch, mask)
        if n:
            nr = batch.events["nr"]
            if mask is not None:
                nr = nr[np.asarray(mask, dtype=bool)]
            self.counts += np.bincount(nr, minlength=1024)[:1024]
            self.formatted += n
        if self.formatter.buffered >= self.flush_bytes or time.monotonic() - self._last >= self.flush_s:
            self.flush()
        return n

    def _stop(self) -> bool:
        return self.should_stop is not None and bool(self.should_stop())

    def flush(self) -> None:
        """Write what is buffered, whole lines, waiting for a stalled output in short steps.

        Once should_stop() is true, writing goes on for at most 0.1 s (0.2 s to finish a line
        that is half out); what is left stays buffered (close() counts it in `unwritten`)."""
        if self.error is not None:
            raise self.error
        self._last = time.monotonic()
        f = self.formatter
        deadline = None
        while f.buffered:
            if deadline is None and self._stop():
                deadline = time.monotonic() + 0.1
            if deadline is not None and time.monotonic() > deadline + (0.1 if self.owed else 0):
                self.stopped = True
                return
            try:
                if self.owed:
                    n = self._write(f.line_end(), True)       # the rest of a line that is half out
                elif self.regular:
                    n = self._write_file()
                elif self.pipe:
                    n = self._write_pipe()
                else:
                    n = self._write_other()
            except (InterruptedError, BlockingIOError):
                n = 0
            except OSError as e:
                self._fail(e)
            if not n:
                self._wait()

    def _write(self, limit: int, partial: bool) -> int:
        n, lines, tail = self.formatter.write_some(self._wfd, limit, partial)
        if n:
            self.bytes += n
            self.events += lines
            self._size += n
            self.owed = tail if lines else self.owed + n
        return n

    def _write_file(self) -> int:
        if not self.rotate_size:
            return self._write(0, False)
        first = self.formatter.line_end()
        if self._size and self._size + first > self._rotate_at:
            self._rotate()
        room = max(self._rotate_at - self._size, first)    # an empty file takes a longer line
        return self._write(room, False)

    def _write_pipe(self) -> int:
        # Free bytes for sure: a pipe is slots of one page; with one writer every slot but the
        # last one written and the first one being read is full, so the bytes unread tell how
        # many slots are taken (at most).
        buf = bytearray(4)
        try:
            fcntl.ioctl(self._wfd, termios.FIONREAD, buf)
            unread = int.from_bytes(buf, sys.byteorder)
        except OSError:
            unread = 0
        taken = -(-unread // _PAGE) + 1
        room = (self._pipe_slots - taken) * _PAGE
        first = self.formatter.line_end()
        if self._gone:
            return self._write(first, False)        # EPIPE: what the unread bytes hid
        if first > room:
            if unread == 0 and first > (self._pipe_slots - 1) * _PAGE:
                return self._write(first, True)     # a line longer than the pipe: it must be cut
            return 0
        return self._write(room, False)

    def _write_other(self) -> int:
        if not _ready(self._wfd, 0) and not self._gone:
            return 0
        return self._write(max(_OTHER_CHUNK, self.formatter.line_end()), False)

    def _wait(self) -> None:
        """Wait until the output may take more (at most _WAIT_S); signal handlers run meanwhile."""
        if self.regular:
            return
        self._gone = _ready(self._wfd, _WAIT_S) & (select.POLLERR | select.POLLHUP) != 0

    def _fail(self, e: OSError) -> None:
        """Give up after a write error: no partial line left behind, the lost events counted."""
        err = e.errno or errno.EIO
        if self.owed and self.regular:
            try:
                os.ftruncate(self.fd, os.fstat(self.fd).st_size - self.owed)
                self._size -= self.owed
                self.owed = 0
            except OSError as te:
                log.warning("%s: cannot remove the partly written last line: %s", self.name, te.strerror)
        self._discard()
        if err == errno.EPIPE:
            self.error = OutputClosed(err, f"the reader of {self.name} went away")
        else:
            self.error = OutputError(err, f"cannot write events to {self.name}: {e.strerror or os.strerror(err)}")
        raise self.error from None

    def _discard(self) -> None:
        self.unwritten += self.formatter.buffered_lines
        self.formatter.clear()

    # ---- rotation and reopening ------------------------------------------------------------------

    def _rotate(self) -> None:
        try:
            self.file.rotate(self.rotate_keep)
        except OSError as e:
            # keep writing to this file; try again once it has grown by another rotate_size
            log.error("%s: rotation failed (%s); writing on to the same file", self.name, e.strerror or e)
            self._rotate_at = self._size + self.rotate_size
            return
        self._switch()
        self._rotate_at = self.rotate_size
        self.rotations += 1

    def reopen(self) -> bool:
        """Write what is buffered, then open the path again (SIGHUP: the file was moved away).
        False when there is nothing to reopen (not a file) or it failed (logged; the old file
        stays in use)."""
        if self.file is None:
            return False
        self.flush()
        try:
            self.file.reopen()
        except OSError as e:
            log.error("cannot reopen %s, still writing to the file opened before: %s", self.name, e)
            return False
        self._switch()
        return True

    def _switch(self) -> None:
        self.fd = self.file.fd
        self.owed = 0
        self._setup()

    # ---- the end ---------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Events formatted and not written yet."""
        return self.formatter.buffered_lines

    def top_syscalls(self, n: int) -> list[tuple[str, int]]:
        from lbd.args import syscall_name

        order = np.argsort(-self.counts, kind="stable")[:n]
        return [(syscall_name(int(nr)), int(self.counts[nr])) for nr in order if self.counts[nr]]

    def close(self) -> None:
        """Write what is buffered (unless the writer is broken or told to stop: then it is
        counted in `unwritten`) and close the fds that are ours."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.error is None:
                self.flush()
        finally:
            if self.formatter.buffered:
                if self.owed and self.regular:
                    try:
                        os.ftruncate(self.fd, os.fstat(self.fd).st_size - self.owed)
                    except OSError:
                        pass
                self._discard()
            if self._own_fd >= 0:
                os.close(self._own_fd)
                self._own_fd = -1
            if self.file is not None:
                self.file.close()
            elif self.close_fd:
                os.close(self.fd)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # leaving on an error: write what we have if we can, never mask that error
            self.close()
        except OSError:
            pass


def _ready(fd: int, timeout: float) -> int:
    """poll(2) for POLLOUT: the events (POLLOUT, POLLERR for a pipe without reader), 0 on timeout."""
    p = select.poll()
    p.register(fd, select.POLLOUT)
    ev = p.poll(timeout * 1000)
    return ev[0][1] if ev else 0


#: what only the text Writer takes (the Parquet writer and the NATS exporter do not)
_TEXT_KEYWORDS = ("should_stop", "capture_env", "secret_pattern", "rotate_size", "rotate_keep", "file", "color",
                  "formatter")


def open_writer(cfg, output: str | None = None, *, fmt: str | None = None, **kw) -> Writer:
    """A Writer for a lbd Config: to `output` ("-": stdout), else to cfg's path when putfile is
    true, else to stdout; in cfg's format (or `fmt`), cutting values at cfg's str_max_size, the
    environment as capture_env / secret_pattern say, files rotated per rotate_size / rotate_keep.
    The parquet format gives a lbd.output.parquet.ParquetWriter (same methods; a file only); an
    output nats://HOST:PORT/SUBJECT a lbd.output.nats.NatsExporter (JSON Lines or, for parquet,
    Arrow IPC messages); neither takes the text writer's keywords (should_stop, ...)."""
    from lbd.config import coerce

    cfg = coerce(cfg)
    fmt = fmt or cfg.init.format
    if output is None and cfg.init.putfile:
        output = cfg.init.path
    text_only = {k: kw.pop(k) for k in _TEXT_KEYWORDS if k in kw}
    if output is not None and output.startswith("nats://"):
        from lbd.output.nats import NatsExporter

        return NatsExporter(output, fmt, cfg.init.str_max_size, spool_dir=cfg.init.spool_dir,
                            spool_bytes=cfg.init.spool_max_bytes, capture_env=cfg.open.capture_env,
                            secret_pattern=cfg.init.secret_pattern, **kw)
    if fmt == "parquet":
        try:
            from lbd.output.parquet import open_parquet
        except ImportError:
            raise OutputError(errno.ENOSYS, "the parquet format needs pyarrow: pip install 'lbd[parquet]'") from None
        return open_parquet(cfg, output, **kw)
    kw.update(text_only)
    kw.setdefault("capture_env", cfg.open.capture_env)
    kw.setdefault("secret_pattern", cfg.init.secret_pattern)
    if output is None or output == "-":
        try:
            sys.stdout.flush()
            fd = sys.stdout.fileno()
        except (AttributeError, ValueError, OSError) as e:
            raise OutputError(errno.EBADF, f"cannot write events to stdout: {e}") from None
        return Writer(fd, fmt, cfg.init.str_max_size, name="stdout", **kw)
    f = _open_file(output)
    kw.setdefault("rotate_size", cfg.init.rotate_size)
    kw.setdefault("rotate_keep", cfg.init.rotate_keep)
    try:
        return Writer(f.fd, fmt, cfg.init.str_max_size, name=output, file=f, **kw)
    except BaseException:
        f.close()
        raise
