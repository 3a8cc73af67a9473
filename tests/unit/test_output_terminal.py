"""The terminal format (lbd.output.terminal): golden output of tests/data/golden.py, plain and in
colour with the extras; each rule of the line on hand-made events; colour choice (NO_COLOR); the
Writer's "terminal" format."""
from __future__ import annotations

import os
import re

import pytest
from hypothesis import given, settings, strategies as st

from lbd import record
from lbd.output.terminal import ANSI, TerminalFormatter, quote, terminal_line, use_color
from lbd.output.writer import Writer
from lbd.ringimage import random_records, sockaddr_in
from tests.data import golden
from tests.data.fakeproc import O_CLOEXEC, batch_of, rec

PLAIN = golden.DATA / "golden_terminal.txt"
COLOR = golden.DATA / "golden_terminal_color.txt"
ANSI_RE = re.compile("\x1b\\[[0-9;]*m")


def render(batch, **kw) -> str:
    f = TerminalFormatter(kw.pop("limit", 64), **kw)
    n = f.format(batch)
    assert n == len(batch)
    return f.getvalue().decode()


def test_golden(tmp_path, seed_tz):
    b = golden.enriched_batch(tmp_path)
    plain = render(b)
    color = render(b, color=True, cmdline=True, fds=True, latency=True)
    if os.environ.get("LBD_REGEN_GOLDEN") == "1":
        PLAIN.write_text(plain)
        COLOR.write_text(color)
    assert plain.splitlines() == PLAIN.read_text().splitlines()
    assert color.splitlines() == COLOR.read_text().splitlines()
    # colour only adds escapes around the same text
    stripped = [ANSI_RE.sub("", line) for line in color.splitlines()]
    for p, c in zip(plain.splitlines(), stripped):
        assert c.startswith(p)
    lines = plain.splitlines()
    assert lines[9] == ('13:18:10.347516 curl(4000) openat(AT_FDCWD, "/etc/nonexistent", O_RDONLY|O_CLOEXEC) '
                        '= -1 ENOENT (No such file or directory)')
    assert len(lines) == len(b)
    assert max(len(x) for x in lines) < 200          # the issue's 400-1500 characters per event


def one(*records, **kw) -> str:
    b = batch_of(*records)
    return "\n".join(terminal_line(b, i, **kw) for i in range(len(b)))


def body(line: str) -> str:
    """The line without its time stamp."""
    return line.split(" ", 1)[1]


def test_the_issues_example():
    r = rec("openat", {"dfd": -100, "filename": "/etc/shadow", "flags": os.O_RDONLY | O_CLOEXEC}, comm="cat",
            pid=7, res=-13)
    assert body(one(r)) == 'cat(7) openat(AT_FDCWD, "/etc/shadow", O_RDONLY|O_CLOEXEC) = -1 EACCES (Permission denied)'


@pytest.mark.parametrize("record_, want", [
    (rec("openat", {"dfd": 3, "filename": "x", "flags": os.O_WRONLY | os.O_CREAT, "mode": 0o644}, res=4),
     'openat(3, "x", O_WRONLY|O_CREAT, 0644) = 4'),
    (rec("read", {"fd": 3, "buf": b"a\x00\xff\t\"\\", "count": 4096}, res=6),
     'read(3, "a\\x00\\xff\\t\\"\\\\", 4096) = 6'),
    (rec("read", {"fd": 3, "buf": b"x" * 40, "count": 4096}, res=40, ),
     'read(3, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"..., 4096) = 40'),      # cut at the limit (32)
    (rec("read", {"fd": 3, "buf": b"never read", "count": 10}, res=-9),
     'read(3, 0x7ffd10001000, 10) = -1 EBADF (Bad file descriptor)'),    # a failed call's output: its address
    (rec("write", {"fd": 1, "buf": "héllo €".encode(), "count": 10}, res=10), 'write(1, "héllo €", 10) = 10'),
    (rec("mmap", {"addr": 0, "len": 4096, "prot": 3, "flags": 0x22, "fd": -1, "off": 0}, res=0x7F0000000000),
     "mmap(0x0, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000"),
    (rec("exit_group", {"error_code": 0}, res=0), "exit_group(0) = ?"),
    (rec("kill", {"pid": 42, "sig": 9}, res=0), "kill(42, SIGKILL) = 0"),
    (rec("setuid", {"uid": 0xFFFFFFFF}, res=-1), "setuid(-1) = -1 EPERM (Operation not permitted)"),
    (rec("chmod", {"filename": "/tmp/x", "mode": 0o4755}, res=0), 'chmod("/tmp/x", 04755) = 0'),
    (rec("openat", {"dfd": -100, "filename": None, "flags": 0}, res=-14),
     "openat(AT_FDCWD, NULL, O_RDONLY) = -1 EFAULT (Bad address)"),
    (rec("openat", {"dfd": -100, "filename": "", "flags": 0}, res=-2),
     'openat(AT_FDCWD, "", O_RDONLY) = -1 ENOENT (No such file or directory)'),
    (rec("pipe2", {"fildes": (3, 4), "flags": O_CLOEXEC}, res=0), "pipe2([3, 4], O_CLOEXEC) = 0"),
    (rec("connect", {"fd": 3, "uservaddr": sockaddr_in("10.0.0.1", 443), "addrlen": 16}, res=-115),
     "connect(3, {AF_INET, 10.0.0.1:443}, 16) = -1 EINPROGRESS (Operation now in progress)"),
    (rec("openat", {"dfd": -100, "filename": "/x", "flags": 0}, dir=">"), 'openat(AT_FDCWD, "/x", O_RDONLY) ...'),
    (rec("read", {"fd": 3}, flags=record.F_NOENTER, res=5), "read(?) = 5"),
    (rec("read", {"fd": 3, "buf": b"", "count": 1}, res=-41), "read(3, 0x7ffd10001000, 1) = -1 errno 41 (Unknown error 41)"),
    (rec("read", {"fd": 3, "buf": b"", "count": 1}, res=-512),
     "read(3, 0x7ffd10001000, 1) = -1 ERESTARTSYS (To be restarted if SA_RESTART is set)"),
])
def test_rules(record_, want):
    line = one(record_, limit=32)
    assert body(line).split(" ", 1)[1] == want


def test_thread_comm_escapes_and_truncation():
    r = rec("getpid", {}, pid=10, tid=11, comm=b"a\nb\xff", res=10)
    assert body(one(r)) == "a\\nb\\xff(10:11) getpid() = 10"
    cut = rec("openat", {"dfd": -100, "filename": "/very/long/path", "flags": 0}, str_max=5, res=3)
    assert '"/very"...' in one(cut)                  # the probe cut it: ... although under the limit
    argv = rec("execve", {"filename": "/bin/x", "argv": ["x", "-y"], "envp": []}, res=0)
    assert body(one(argv, capture_env=True)).endswith('execve("/bin/x", ["x", "-y"], []) = 0')


def test_latency_and_extras_need_enrichment(tmp_path):
    b = batch_of(rec("close", {"fd": 3}, res=0, latency=1_500_000))
    assert terminal_line(b, 0, latency=True).endswith("close(3) = 0 <0.001500>")
    assert "cmdline=" not in terminal_line(b, 0, cmdline=True, fds=True)     # no enrichment: nothing
    from lbd.enrich.layout import empty_enrichment

    empty_enrichment(b)
    assert terminal_line(b, 0, cmdline=True, fds=True).endswith('close(3) = 0  cmdline="test"  fds=[]')


def test_colours():
    r = rec("openat", {"dfd": -100, "filename": "/etc/shadow", "flags": 0}, comm="cat", pid=7, res=-13)
    line = one(r, color=True)
    assert f"{ANSI.error}-1 EACCES (Permission denied){ANSI.reset}" in line
    assert f'{ANSI.string}"/etc/shadow"{ANSI.reset}' in line
    assert f"{ANSI.who}cat(7){ANSI.reset}" in line
    assert ANSI_RE.sub("", line) == one(r)
    assert "\x1b" not in one(r)


def test_use_color(tmp_path):
    r, w = os.pipe()
    try:
        assert not use_color(w, {})                                    # a pipe: no colours
        f = os.open(tmp_path / "x", os.O_WRONLY | os.O_CREAT)
        assert not use_color(f, {})
        os.close(f)
    finally:
        os.close(r)
        os.close(w)
    try:
        master, slave = os.openpty()
    except OSError:
        pytest.skip("no pseudo-terminal here")
    try:
        assert use_color(slave, {"TERM": "xterm-256color"})
        assert not use_color(slave, {"TERM": "xterm", "NO_COLOR": "1"})   # https://no-color.org
        assert use_color(slave, {"TERM": "xterm", "NO_COLOR": ""})         # set but empty: ignored
        assert not use_color(slave, {"TERM": "dumb"})
    finally:
        os.close(master)
        os.close(slave)


def test_writer_terminal_format(tmp_path):
    b = batch_of(rec("close", {"fd": 3}, res=0), rec("close", {"fd": 4}, res=-9))
    path = tmp_path / "out.txt"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    w = Writer(fd, "terminal", 0, close_fd=True)
    assert isinstance(w.formatter, TerminalFormatter) and not w.formatter.color   # a file: no colours
    assert w.write_batch(b, mask=[False, True]) == 1
    w.close()
    text = path.read_text()
    assert text.count("\n") == 1 and text.endswith("close(4) = -1 EBADF (Bad file descriptor)\n")
    w2 = Writer(os.open(os.devnull, os.O_WRONLY), "terminal", close_fd=True, color=True)
    assert w2.formatter.color
    w2.close()
    custom = TerminalFormatter(0, fds=True)
    w3 = Writer(os.open(os.devnull, os.O_WRONLY), "terminal", close_fd=True, formatter=custom)
    assert w3.formatter is custom
    w3.close()


def test_write_to_keeps_what_was_not_written():
    f = TerminalFormatter()
    f.format(batch_of(rec("close", {"fd": 3}, res=0)))
    n = f.buffered
    r, w = os.pipe()
    os.close(r)
    with pytest.raises(BrokenPipeError):
        f.write_to(w)
    os.close(w)
    assert f.buffered == n
    r, w = os.pipe()
    assert f.write_to(w) == n and f.buffered == 0
    assert os.read(r, 1000).endswith(b"close(3) = 0\n")
    os.close(r)
    os.close(w)


def test_every_kind_of_record_makes_one_line():
    b = batch_of(*random_records(500, seed=3))
    for color in (False, True):
        text = render(b, limit=48, color=color, latency=True)
        lines = text.split("\n")
        assert lines[-1] == "" and len(lines) - 1 == len(b)
        for line in lines[:-1]:
            assert "\r" not in line and "\x00" not in line
            assert re.match(r"^(\x1b\[[0-9;]*m)?\d\d:\d\d:\d\d\.\d{6}", line)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.integers(0, 50))
def test_quote_reads_back(data, limit):
    """A quoted value is a C literal that gives back the bytes (or a prefix of them, then ...)."""
    q = quote(data, limit)
    cut = q.endswith("...")
    inner = q[1:-4] if cut else q[1:-1]
    assert "\n" not in q and "\x1b" not in q
    out = bytearray()
    i = 0
    while i < len(inner):
        c = inner[i]
        if c == "\\":
            e = inner[i + 1]
            if e == "x":
                out.append(int(inner[i + 2: i + 4], 16))
                i += 4
                continue
            out += {"n": b"\n", "t": b"\t", "r": b"\r", "v": b"\v", "f": b"\f", '"': b'"', "\\": b"\\"}[e]
            i += 2
            continue
        out += c.encode()
        i += 1
    if cut:
        assert data.startswith(bytes(out)) and len(out) < len(data)
    else:
        assert bytes(out) == data


def test_environment_follows_capture_env_and_masks_secrets():
    """envp as the other formats write it: not shown unless capture_env (its address, as strace
    shows a pointer it does not read; was `[, ...]`), and secret values masked when it is on."""
    r = rec("execve", {"filename": "/bin/x", "argv": ["x"], "envp": ["HOME=/root", "API_TOKEN=s3cr3t"]}, res=0)
    off = body(one(r))
    assert "s3cr3t" not in off and "HOME" not in off and "[, ...]" not in off
    assert re.search(r'execve\("/bin/x", \["x"\], (0x[0-9a-f]+|NULL)\) = 0$', off), off
    on = body(one(r, capture_env=True, secret_pattern="*TOKEN*"))
    assert on.endswith('execve("/bin/x", ["x"], ["HOME=/root", "API_TOKEN=***"]) = 0'), on
    f = TerminalFormatter(0, capture_env=True, secret_pattern="*TOKEN*")
    f.format(batch_of(r))
    assert b'"API_TOKEN=***"' in f.getvalue()


def test_open_mode_left_out_for_a_directory_open():
    """O_DIRECTORY shares a bit with O_TMPFILE: a plain directory open takes no mode (strace
    leaves it out; lbd showed `, 0`), O_TMPFILE and O_CREAT do."""
    d = rec("openat", {"dfd": -100, "filename": "/root", "mode": 0,
                       "flags": os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC}, res=3)
    assert body(one(d)).endswith('openat(AT_FDCWD, "/root", O_RDONLY|O_DIRECTORY|O_CLOEXEC) = 3'), one(d)
    t = rec("openat", {"dfd": -100, "filename": "/tmp", "mode": 0o600, "flags": os.O_RDWR | os.O_TMPFILE}, res=3)
    assert body(one(t)).endswith(", 0600) = 3"), one(t)
    c = rec("openat", {"dfd": -100, "filename": "/tmp/x", "mode": 0o644, "flags": os.O_WRONLY | os.O_CREAT}, res=3)
    assert body(one(c)).endswith(", 0644) = 3"), one(c)
