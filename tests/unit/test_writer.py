"""The writer under pressure: a stalled reader, a signal, a reader that went away, a full disk, a
rotation, a reopen.  Whatever happens the output holds whole lines only, the writer never gets
stuck once told to stop, and every event formatted is counted as written or not written."""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap

import pytest

from lbd.config import Config
from lbd.output.writer import OutputClosed, OutputError, Writer, open_writer
from tests.data.fakeproc import batch_of, rec
from tests.data.normal_parser import parse_line


def events(n: int, path: bytes = b"/var/lib/some/file/name"):
    return batch_of(*[rec("openat", {"dfd": -100, "filename": path + b"%d" % k, "flags": 0}, res=3)
                      for k in range(n)], capacity=n)


def whole_lines(data: bytes) -> int:
    """Every line parses (none cut, none glued to another); their number."""
    assert not data or data.endswith(b"\n")
    lines = data.decode().split("\n")[:-1]
    for line in lines:
        parse_line(line)
    return len(lines)


def drain(fd: int) -> bytes:
    os.set_blocking(fd, False)
    out = []
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        out.append(chunk)
    return b"".join(out)


def test_a_stalled_pipe_is_given_up_once_told_to_stop():
    r, wfd = os.pipe()
    stop = {"now": False}
    w = Writer(wfd, "normal", 0, flush_bytes=1 << 30, flush_s=3600, should_stop=lambda: stop["now"])
    try:
        for _ in range(10):
            w.write_batch(events(500))             # about 500 KiB: far more than the pipe holds
        stop["now"] = True                         # the reader never reads: a stopped reader
        w.flush()                                  # returns (at most about 0.1 s later)
        assert w.stopped and w.formatter.buffered
        data = drain(r)
        assert whole_lines(data) == w.events > 0   # whole lines only, all of them counted
        w.close()
        assert w.events + w.unwritten == w.formatted == 5000
    finally:
        os.close(r)
        os.close(wfd)


def test_a_pipe_that_is_read_gets_everything_in_whole_lines():
    r, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:                                   # a slow reader, small reads
        os.close(wfd)
        got = bytearray()
        while chunk := os.read(r, 777):
            got += chunk
        os._exit(0 if got.count(b"\n") == 3000 and got.endswith(b"\n") else 1)
    os.close(r)
    w = Writer(wfd, "json", 0, flush_bytes=1 << 16)
    for _ in range(6):
        w.write_batch(events(500))
    w.close()
    os.close(wfd)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and w.events == 3000 and w.unwritten == 0


def test_a_signal_interrupts_a_blocked_write_to():
    """Formatter.write_to on a full blocking pipe: the signal handler runs and what it raises
    comes out (it retried EINTR forever, so SIGTERM was never acted on)."""
    script = textwrap.dedent("""
        import os, signal
        from lbd._format import Formatter
        from tests.data.fakeproc import batch_of, rec
        class Stop(Exception):
            pass
        def handler(signum, frame):
            raise Stop()
        signal.signal(signal.SIGALRM, handler)
        r, w = os.pipe()
        f = Formatter("normal", 0)
        f.format(batch_of(*[rec("getpid")] * 2000, capacity=2000))
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        try:
            f.write_to(w)
        except Stop:
            print("stopped", f.buffered > 0)
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                       cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert p.stdout == "stopped True\n", p.stderr


def test_the_reader_going_away_is_output_closed():
    r, wfd = os.pipe()
    os.close(r)
    w = Writer(wfd, "normal", 0)
    w.write_batch(events(10))
    with pytest.raises(OutputClosed) as e:
        w.flush()
    assert str(e.value) == "the reader of output went away" and w.unwritten == 10
    w.close()
    os.close(wfd)


def test_a_full_disk_leaves_no_partial_line(tmp_path):
    """A file that may not grow past 20000 bytes (RLIMIT_FSIZE: EFBIG, like ENOSPC): the write
    that fails part way is truncated back to the last complete line, the events are counted."""
    path = tmp_path / "events.log"
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
            w = open_writer(Config.default(), str(path))
            err = ""
            try:
                for _ in range(20):
                    w.write_batch(events(50))
                    w.flush()
            except OutputError as e:
                err = str(e)
            w.close()
            os.write(wfd, json.dumps([err, w.events, w.unwritten, w.formatted]).encode())
        finally:
            os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd) as f:
        err, written, unwritten, formatted = json.loads(f.read())
    os.waitpid(pid, 0)
    assert err == f"cannot write events to {path}: File too large"
    data = path.read_bytes()
    assert len(data) <= 20000 and whole_lines(data) == written > 0
    assert written + unwritten == formatted


def test_a_file_ending_inside_a_line_gets_a_newline_first(tmp_path):
    path = tmp_path / "events.log"
    path.write_bytes(b"[half a line")
    with open_writer(Config.default(), str(path)) as w:
        w.write_batch(events(2))
    data = path.read_bytes()
    assert data.startswith(b"[half a line\n[") and whole_lines(data.split(b"\n", 1)[1]) == 2


def test_rotation_by_size(tmp_path):
    path = tmp_path / "events.log"
    cfg = Config.default().replace(rotate_size=8192, rotate_keep=100)
    with open_writer(cfg, str(path), flush_bytes=1) as w:
        for _ in range(20):
            w.write_batch(events(25))
    names = sorted(os.listdir(tmp_path))
    assert w.rotations >= 5 and len(names) == w.rotations + 1
    total = 0
    for n in names:
        data = (tmp_path / n).read_bytes()
        assert 0 < len(data) <= 8192
        total += whole_lines(data)
    assert total == w.events == 500
    # events.log.N is the oldest: it starts with the first event written
    oldest = parse_line((tmp_path / f"events.log.{w.rotations}").read_text().split("\n")[0])
    assert dict(oldest["args"])["filename"] == b"/var/lib/some/file/name0"


def test_rotation_keeps_rotate_keep_files(tmp_path):
    path = tmp_path / "events.log"
    cfg = Config.default().replace(rotate_size=4096, rotate_keep=2)
    with open_writer(cfg, str(path), flush_bytes=1) as w:
        for _ in range(20):
            w.write_batch(events(10))
    assert sorted(os.listdir(tmp_path)) == ["events.log", "events.log.1", "events.log.2"]
    assert w.rotations > 2


def test_reopen_after_the_file_was_moved(tmp_path):
    path = tmp_path / "events.log"
    with open_writer(Config.default(), str(path)) as w:
        w.write_batch(events(30))
        os.rename(path, tmp_path / "events.log.1")          # logrotate
        w.write_batch(events(5))                             # buffered: goes to the old file
        assert w.reopen()
        w.write_batch(events(7))
    assert whole_lines((tmp_path / "events.log.1").read_bytes()) == 35
    assert whole_lines(path.read_bytes()) == 7 and w.events == 42


def test_write_some_writes_whole_lines():
    from lbd._format import Formatter

    f = Formatter("normal", 0)
    f.format(events(3))
    first = f.line_end()
    r, w = os.pipe()
    try:
        assert f.write_some(w, first - 1) == (0, 0, 0)                 # not one whole line fits
        assert f.write_some(w, first + 10) == (first, 1, 0)            # cut back to the line's end
        n, lines, tail = f.write_some(w, 5, True)                      # partial: a line's start
        assert (n, lines, tail) == (5, 0, 5) and f.buffered_lines == 2
        rest = f.buffered
        assert f.write_some(w) == (rest, 2, 0) and f.buffered == 0
    finally:
        os.close(r)
        os.close(w)


def test_rotation_after_the_file_was_moved_away(tmp_path):
    """logrotate moved the file and the SIGHUP has not come yet: a rotation due then starts a new
    file at the path instead of failing (and rotation goes on afterwards)."""
    path = tmp_path / "events.log"
    cfg = Config.default().replace(rotate_size=4096, rotate_keep=9)
    with open_writer(cfg, str(path), flush_bytes=1) as w:
        w.write_batch(events(5))
        os.rename(path, tmp_path / "moved.log")
        for _ in range(10):
            w.write_batch(events(10))
    names = sorted(os.listdir(tmp_path))
    assert "moved.log" in names and "events.log" in names and "events.log.1" in names, names
    assert sum(whole_lines((tmp_path / n).read_bytes()) for n in names) == w.events == 105


def test_a_full_pipe_whose_reader_went_away_is_output_closed():
    """The pipe is full of bytes nobody will read and its reader is gone: there is never room for
    a line, but the writer still finds out (EPIPE) instead of waiting forever."""
    import time

    r, wfd = os.pipe()
    deadline = time.monotonic() + 10                     # a guard: a writer that waits on would stop here
    w = Writer(wfd, "normal", 0, flush_bytes=1 << 30, flush_s=3600, should_stop=lambda: time.monotonic() > deadline)
    try:
        w.write_batch(events(2000))
        stop = w.should_stop
        w.should_stop = lambda: True
        w.flush()                                        # fills the pipe, then gives up (stop)
        w.should_stop = stop
        os.close(r)                                      # the reader goes away, the pipe still full
        r = -1
        with pytest.raises(OutputClosed):
            w.flush()
        assert time.monotonic() < deadline
        w.close()
        assert w.events + w.unwritten == 2000
    finally:
        if r >= 0:
            os.close(r)
        os.close(wfd)
