"""File syscalls, asserted field by field against what the child did."""
from __future__ import annotations

import os

from tests.kernel.conftest import one


def test_openat_read_close(cap, tmp_path):
    path = tmp_path / "data.txt"
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW

    def work():
        fd = os.open(path, flags, 0o640)
        os.write(fd, b"hello lbd\n")
        os.lseek(fd, 0, os.SEEK_SET)
        os.read(fd, 100)
        os.close(fd)

    ev = cap.run(work)
    pid = cap.child_pid
    o = one(ev, "openat", lambda e: e.args["filename"] == str(path))
    assert o.args == {"dfd": -100, "filename": str(path), "flags": flags, "mode": 0o640}
    assert o.res >= 3 and o.pid == pid and o.tid == pid and o.ppid == os.getpid()
    assert o.uid == os.getuid() and o.gid == os.getgid() and o.dir == "<"
    assert o.latency > 0 and o.flags == 0
    r = one(ev, "read", lambda e: e.args["fd"] == o.res)
    w = one(ev, "write", lambda e: e.args["fd"] == o.res)
    assert w.res == 10 and w.args == {"fd": o.res, "buf": b"hello lbd\n", "count": 10}
    assert r.res == 10 and r.args == {"fd": o.res, "buf": b"hello lbd\n", "count": 100}
    c = one(ev, "close", lambda e: e.args["fd"] == o.res and e.ts > o.ts)
    assert c.res == 0


def test_unlinkat_with_flag(cap, tmp_path):
    d = tmp_path / "dir"
    d.mkdir()

    def work():
        fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        os.rmdir("dir", dir_fd=fd)  # unlinkat(fd, "dir", AT_REMOVEDIR)

    ev = cap.run(work)
    dirfd = one(ev, "openat", lambda e: e.args["filename"] == str(tmp_path)).res
    u = one(ev, "unlinkat")
    assert u.args == {"dfd": dirfd, "pathname": "dir", "flag": 0x200} and u.res == 0
    assert not d.exists()
