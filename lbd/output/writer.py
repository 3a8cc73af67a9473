"""Write batches of events to stdout or a file, formatted in bulk (lbd._format; the terminal format:
lbd.output.terminal), in large writes.

    with open_writer(cfg, "/var/log/lbd/events.log") as w:     # or None: cfg's putfile/path, else stdout
        w.write_batch(batch)                                   # batch.enrich is used when present
    w.top_syscalls(5)

A file is opened O_APPEND | O_CREAT with mode 0600: created if missing, appended to, never
truncated.  Any failure to open or write it (permission, missing directory, disk full) raises
OutputError, an OSError whose message names the file and the reason.
"""
from __future__ import annotations

import errno
import os
import sys
import time

import numpy as np

__all__ = ["OutputError", "Writer", "open_writer", "open_output_fd", "FORMATS"]

FORMATS = ("normal", "json", "terminal")   # the text formats; "parquet": lbd.output.parquet


class OutputError(OSError):
    """Events could not be written (or the output not opened); str() is a one-line message."""

    def __init__(self, err: int, message: str):
        super().__init__(err, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def open_output_fd(path: str) -> int:
    """An fd appending to path (created 0600 if missing); OutputError when it cannot be opened."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise OutputError(e.errno or errno.EIO, f"cannot open output file {path}: {e.strerror}") from None


class Writer:
    """Formats batches into one buffer and writes it to `fd` when it holds `flush_bytes` or
    `flush_s` seconds have passed since the last write (and on flush()/close()).

    Invariants: the fd is open until close(); it is closed by close() only if this object opened it
    (close_fd); the buffer only ever holds whole lines.  After a write error the writer is broken:
    further writes raise the same OutputError, and close() discards what is buffered.
    """

    def __init__(self, fd: int, fmt: str = "normal", limit: int = 0, *, name: str = "output",
                 close_fd: bool = False, flush_bytes: int = 1 << 20, flush_s: float = 0.2,
                 color: bool | None = None, formatter=None):
        """fmt "terminal": lbd.output.terminal's lines, coloured when `color` (None: when fd is a
        terminal and NO_COLOR is not set).  `formatter`: any object with the bulk formatter's
        interface (format, buffered, write_to, clear), e.g. a TerminalFormatter with extras."""
        if fmt not in FORMATS:
            raise ValueError(f"format {fmt!r}: one of {', '.join(FORMATS)}")
        self.fd = fd
        self.name = name
        self.format = fmt
        self.limit = limit
        self.close_fd = close_fd
        self.flush_bytes = flush_bytes
        self.flush_s = flush_s
        if formatter is not None:
            self.formatter = formatter
        elif fmt == "terminal":
            from lbd.output.terminal import TerminalFormatter, use_color

            self.formatter = TerminalFormatter(limit, color=use_color(fd) if color is None else color)
        else:
            from lbd._format import Formatter

            self.formatter = Formatter(fmt, limit)
        self.counts = np.zeros(1024, dtype=np.int64)   # events written, by syscall number
        self.events = 0
        self.bytes = 0
        self.error: OutputError | None = None
        self._last = time.monotonic()
        self.closed = False

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
            self.events += n
        if self.formatter.buffered >= self.flush_bytes or time.monotonic() - self._last >= self.flush_s:
            self.flush()
        return n

    def flush(self) -> None:
        if self.error is not None:
            raise self.error
        self._last = time.monotonic()
        if not self.formatter.buffered:
            return
        try:
            self.bytes += self.formatter.write_to(self.fd)
        except OSError as e:
            if e.errno == errno.EPIPE and self.name == "stdout":
                self.formatter.clear()
                raise BrokenPipeError(errno.EPIPE, "stdout closed") from None
            self.error = OutputError(e.errno or errno.EIO, f"cannot write events to {self.name}: {e.strerror}")
            self.formatter.clear()
            raise self.error from None

    def top_syscalls(self, n: int) -> list[tuple[str, int]]:
        from lbd.args import syscall_name

        order = np.argsort(-self.counts, kind="stable")[:n]
        return [(syscall_name(int(nr)), int(self.counts[nr])) for nr in order if self.counts[nr]]

    def close(self) -> None:
        """Write what is buffered (unless the writer is broken) and close the fd if it is ours."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.error is None:
                self.flush()
        finally:
            if self.close_fd:
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


def open_writer(cfg, output: str | None = None, *, fmt: str | None = None, **kw) -> Writer:
    """A Writer for a lbd Config: to `output` ("-": stdout), else to cfg's path when putfile is
    true, else to stdout; in cfg's format (or `fmt`), cutting values at cfg's str_max_size.
    The parquet format gives a lbd.output.parquet.ParquetWriter (same methods; a file only); an
    output nats://HOST:PORT/SUBJECT a lbd.output.nats.NatsExporter (JSON Lines or, for parquet,
    Arrow IPC messages)."""
    from lbd.config import coerce

    cfg = coerce(cfg)
    fmt = fmt or cfg.init.format
    if output is None and cfg.init.putfile:
        output = cfg.init.path
    if output is not None and output.startswith("nats://"):
        from lbd.output.nats import NatsExporter

        return NatsExporter(output, fmt, cfg.init.str_max_size, spool_dir=cfg.init.spool_dir,
                            spool_bytes=cfg.init.spool_max_bytes, **kw)
    if fmt == "parquet":
        try:
            from lbd.output.parquet import open_parquet
        except ImportError:
            raise OutputError(errno.ENOSYS, "the parquet format needs pyarrow: pip install 'lbd[parquet]'") from None
        return open_parquet(cfg, output, **kw)
    if output is None and cfg.init.putfile:
        output = cfg.init.path
    if output is None or output == "-":
        try:
            sys.stdout.flush()
            fd = sys.stdout.fileno()
        except (AttributeError, ValueError, OSError) as e:
            raise OutputError(errno.EBADF, f"cannot write events to stdout: {e}") from None
        return Writer(fd, fmt, cfg.init.str_max_size, name="stdout", **kw)
    fd = open_output_fd(output)
    return Writer(fd, fmt, cfg.init.str_max_size, name=output, close_fd=True, **kw)
