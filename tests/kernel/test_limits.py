"""Capture limits: strings, argv and buffers cut at their configured size and flagged, exact fits
not flagged, unreadable user pointers flagged and counted, and a record whose payload is full
keeps what it already holds."""
from __future__ import annotations

import ctypes
import os

from lbd import record
from lbd.args import UNREADABLE
from tests.kernel.conftest import AT_FDCWD, delta, one, syscall

STR_MAX = 256   # the session probe's str_max (the default)
ARGV_MAX = 16   # and argv_max


def fault_bit(slot: int) -> int:
    return 1 << (record.F_FAULT_SHIFT + slot)


def long_path(base, length: int) -> str:
    """A path of exactly `length` characters under base (components short enough for the kernel)."""
    p = str(base) + "/"
    while len(p) < length:
        p += "d" * min(200, length - len(p) - 1) + "/"
    p = p[:length]
    assert len(p) == length
    return p


def test_path_cut_at_str_max_and_flagged(cap, tmp_path):
    exact, over = long_path(tmp_path, STR_MAX), long_path(tmp_path, STR_MAX + 1) + "x" * 40

    def work():
        return [syscall(257, AT_FDCWD, p.encode(), os.O_RDONLY, 0) for p in (exact, over)]

    before = cap.stats()
    ev = cap.run(work)
    d = delta(before, cap.stats())
    r_exact, r_over = cap.result
    e = one(ev, "openat", lambda e: e.args["filename"] == exact)
    cap.expect(e, {"dfd": AT_FDCWD, "filename": exact, "flags": os.O_RDONLY, "mode": 0}, r_exact)
    assert e.truncated == ()
    o = one(ev, "openat", lambda e: e.args["filename"] == over[:STR_MAX])
    assert o.truncated == (1,) and o.flags == 1 << (record.F_TRUNC_SHIFT + 1)
    assert o.args == {"dfd": AT_FDCWD, "filename": over[:STR_MAX], "flags": os.O_RDONLY, "mode": 0}
    assert o.res == r_over < 0
    assert d["truncated"] >= 1


def test_argv_cut_at_argv_max_and_long_strings(cap):
    exact = ["prog", "s" * STR_MAX] + [f"a{i}" for i in range(ARGV_MAX - 2)]   # fits exactly: not cut
    more = ["prog"] + [f"b{i}" for i in range(ARGV_MAX + 4)]
    longs = ["prog", "s" * STR_MAX, "t" * (STR_MAX + 1), "end"]

    def work():
        for argv in (exact, more, longs):
            try:
                os.execve("/nonexistent/prog", argv, {"E": "1"})
            except FileNotFoundError:
                pass

    ev = cap.run(work)
    ex = [e for e in ev if e.name == "execve"]
    assert len(ex) == 3
    a, b, c = ex
    cap.expect(a, {"filename": "/nonexistent/prog", "argv": exact, "envp": ["E=1"]}, -2)
    assert a.truncated == ()
    assert b.args == {"filename": "/nonexistent/prog", "argv": more[:ARGV_MAX], "envp": ["E=1"]}
    assert b.truncated == (1,) and b.res == -2
    # a string of exactly str_max bytes is whole; one byte more is cut to str_max
    assert c.args == {"filename": "/nonexistent/prog", "argv": ["prog", "s" * STR_MAX, "t" * STR_MAX, "end"],
                      "envp": ["E=1"]}
    assert c.truncated == (1,)


def test_buffer_cut_at_buf_max(cap):
    data = bytes(range(100))

    def work():
        r, w = os.pipe()
        os.write(w, data)
        os.read(r, 1000)
        return r, w

    ev = cap.run(work)     # the session probe has buf_max=64
    r, w = cap.result
    wr = one(ev, "write", lambda e: e.args["fd"] == w)
    cap.expect(wr, {"fd": w, "buf": data[:64], "count": 100}, 100, flags=1 << (record.F_TRUNC_SHIFT + 1))
    assert wr.truncated == (1,)
    rd = one(ev, "read", lambda e: e.args["fd"] == r and e.args["count"] == 1000)
    cap.expect(rd, {"fd": r, "buf": data[:64], "count": 1000}, 100, flags=1 << (record.F_TRUNC_SHIFT + 1))


def test_read_fault_flagged_and_counted(cap):
    def work():
        argv = (ctypes.c_char_p * 3)(b"prog", ctypes.c_char_p(8), None)   # an unreadable argv[1]
        return (syscall(2, 1, os.O_RDONLY, 0),                # open((char *)1, ...)
                syscall(42, 99, 16, 16),                      # connect(99, (void *)16, 16)
                syscall(59, b"/nonexistent/x", argv, 0))      # execve(path, argv, NULL)

    before = cap.stats()
    ev = cap.run(work)
    d = delta(before, cap.stats())
    r_open, r_conn, r_exec = cap.result
    assert r_open == -14 and r_conn == -9 and r_exec < 0   # execve fails on the path first
    o = one(ev, "open", lambda e: e.res == -14)
    cap.expect(o, {"filename": UNREADABLE, "flags": os.O_RDONLY, "mode": 0}, -14, flags=fault_bit(0))
    c = one(ev, "connect", lambda e: e.args["fd"] == 99)
    cap.expect(c, {"fd": 99, "uservaddr": UNREADABLE, "addrlen": 16}, -9, flags=fault_bit(1))
    x = one(ev, "execve", lambda e: e.args["filename"] == "/nonexistent/x")
    # the strings before the bad one are kept; envp NULL is no payload at all
    cap.expect(x, {"filename": "/nonexistent/x", "argv": ["prog"], "envp": None}, r_exec, flags=fault_bit(1))
    assert d["read_fault"] >= 3


def test_full_payload_keeps_earlier_arguments(cap, tmp_path):
    """mount() has four strings: at str_max 2040 the record's 4096 payload bytes fill up in the
    third; the fourth must not be written over the first (it is empty and flagged truncated)."""
    dev = "v" * 2040
    target = long_path(tmp_path / "missing", 2040)
    fstype = "t" * 2040
    data = "o" * 100

    def work():
        return syscall(165, dev.encode(), target.encode(), fstype.encode(), 0, data.encode())

    ev = cap.run(work, str_max=2040)
    m = one(ev, "mount")
    assert m.res == cap.result < 0
    kept = 4096 - 2 * 2040
    assert m.args["dev_name"] == dev and m.args["dir_name"] == target
    assert m.args["type"] == fstype[:kept] and m.args["data"] == ""
    assert m.truncated == (2, 4) and m.args["flags"] == 0
