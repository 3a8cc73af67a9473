"""File syscalls, asserted field by field against what the child did.

Each workload makes the syscall itself (ctypes `syscall(nr, ...)` where Python's os module would
make another one), returns what the test cannot know beforehand (fds, addresses), and the test
compares every argument, the return value and the task fields of the captured record.
"""
from __future__ import annotations

import ctypes
import os

from tests.kernel.conftest import AT_FDCWD, by_name, one, syscall

O_PATH = 0o10000000
RENAME_NOREPLACE = 1
AT_REMOVEDIR = 0x200
AT_SYMLINK_FOLLOW = 0x400


def b(path) -> bytes:
    return str(path).encode()


def test_openat_read_write_close(cap, tmp_path):
    path = tmp_path / "data.txt"
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW

    def work():
        fd = os.open(path, flags, 0o640)      # openat(AT_FDCWD, path, flags, 0640)
        os.write(fd, b"hello lbd\n")
        os.lseek(fd, 0, os.SEEK_SET)
        os.read(fd, 100)
        os.close(fd)
        return fd

    ev = cap.run(work)
    fd = cap.result
    o = one(ev, "openat", lambda e: e.args["filename"] == str(path))
    cap.expect(o, {"dfd": AT_FDCWD, "filename": str(path), "flags": flags, "mode": 0o640}, fd)
    assert fd >= 3
    w = one(ev, "write", lambda e: e.args["fd"] == fd)
    cap.expect(w, {"fd": fd, "buf": b"hello lbd\n", "count": 10}, 10)
    s = one(ev, "lseek", lambda e: e.args["fd"] == fd)
    cap.expect(s, {"fd": fd, "offset": 0, "whence": os.SEEK_SET}, 0)
    r = one(ev, "read", lambda e: e.args["fd"] == fd and e.args["count"] == 100)
    cap.expect(r, {"fd": fd, "buf": b"hello lbd\n", "count": 100}, 10)
    c = one(ev, "close", lambda e: e.args["fd"] == fd and e.ts > o.ts)
    cap.expect(c, {"fd": fd}, 0)
    assert o.ts < w.ts < s.ts < r.ts < c.ts


def test_open_creat_failed_open(cap, tmp_path):
    a, c, missing = tmp_path / "a", tmp_path / "c", tmp_path / "missing" / "x"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC

    def work():
        fa = syscall(2, b(a), flags, 0o600)      # open
        fc = syscall(85, b(c), 0o644)            # creat
        bad = syscall(2, b(missing), os.O_RDONLY, 0)
        return fa, fc, bad

    ev = cap.run(work)
    fa, fc, bad = cap.result
    assert fa >= 3 and fc >= 3 and bad == -2
    cap.expect(one(ev, "open", lambda e: e.args["filename"] == str(a)),
               {"filename": str(a), "flags": flags, "mode": 0o600}, fa)
    cap.expect(one(ev, "creat"), {"pathname": str(c), "mode": 0o644}, fc)
    cap.expect(one(ev, "open", lambda e: e.args["filename"] == str(missing)),
               {"filename": str(missing), "flags": os.O_RDONLY, "mode": 0}, -2)


def test_pread64_pwrite64(cap, tmp_path):
    path = tmp_path / "p"
    path.write_bytes(b"0123456789")

    def work():
        fd = os.open(path, os.O_RDWR)
        os.pwrite(fd, b"ab", 3)
        os.pread(fd, 4, 2)
        return fd

    ev = cap.run(work)
    fd = cap.result
    cap.expect(one(ev, "pwrite64", lambda e: e.args["fd"] == fd), {"fd": fd, "buf": b"ab", "count": 2, "pos": 3}, 2)
    cap.expect(one(ev, "pread64", lambda e: e.args["fd"] == fd), {"fd": fd, "buf": b"2ab5", "count": 4, "pos": 2}, 4)


def test_unlinkat_with_flag(cap, tmp_path):
    d = tmp_path / "dir"
    d.mkdir()
    f = tmp_path / "file"
    f.write_text("x")

    def work():
        fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        os.rmdir("dir", dir_fd=fd)  # unlinkat(fd, "dir", AT_REMOVEDIR)
        syscall(263, AT_FDCWD, b(f), 0)
        return fd

    ev = cap.run(work)
    dirfd = cap.result
    cap.expect(one(ev, "unlinkat", lambda e: e.args["pathname"] == "dir"),
               {"dfd": dirfd, "pathname": "dir", "flag": AT_REMOVEDIR}, 0)
    cap.expect(one(ev, "unlinkat", lambda e: e.args["pathname"] == str(f)),
               {"dfd": AT_FDCWD, "pathname": str(f), "flag": 0}, 0)
    assert not d.exists() and not f.exists()


def test_renameat2_rename_renameat(cap, tmp_path):
    (tmp_path / "a").write_text("a")
    (tmp_path / "exists").write_text("e")

    def work():
        dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        ok = syscall(316, AT_FDCWD, b(tmp_path / "a"), dfd, b"b", RENAME_NOREPLACE)
        clash = syscall(316, dfd, b"b", dfd, b"exists", RENAME_NOREPLACE)
        syscall(82, b(tmp_path / "b"), b(tmp_path / "c"))          # rename
        syscall(264, dfd, b"c", AT_FDCWD, b(tmp_path / "d"))       # renameat
        return dfd, ok, clash

    ev = cap.run(work)
    dfd, ok, clash = cap.result
    assert ok == 0 and clash == -17  # EEXIST
    cap.expect(one(ev, "renameat2", lambda e: e.args["newname"] == "b"),
               {"olddfd": AT_FDCWD, "oldname": str(tmp_path / "a"), "newdfd": dfd, "newname": "b",
                "flags": RENAME_NOREPLACE}, 0)
    cap.expect(one(ev, "renameat2", lambda e: e.args["newname"] == "exists"),
               {"olddfd": dfd, "oldname": "b", "newdfd": dfd, "newname": "exists", "flags": RENAME_NOREPLACE}, -17)
    cap.expect(one(ev, "rename"), {"oldname": str(tmp_path / "b"), "newname": str(tmp_path / "c")}, 0)
    cap.expect(one(ev, "renameat"),
               {"olddfd": dfd, "oldname": "c", "newdfd": AT_FDCWD, "newname": str(tmp_path / "d")}, 0)
    assert (tmp_path / "d").read_text() == "a"


def test_dup_dup2_dup3_close(cap, tmp_path):
    def work():
        fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        d1 = syscall(32, fd)                          # dup
        d2 = syscall(33, fd, 120)                     # dup2
        d3 = syscall(292, fd, 121, os.O_CLOEXEC)      # dup3
        bad = syscall(292, 121, 121, 0)               # dup3 with oldfd == newfd: EINVAL
        for x in (d1, 120, 121):
            os.close(x)
        return fd, d1

    ev = cap.run(work)
    fd, d1 = cap.result
    dup = one(ev, "dup")
    cap.expect(dup, {"fildes": fd}, d1)
    cap.expect(one(ev, "dup2"), {"oldfd": fd, "newfd": 120}, 120)
    cap.expect(one(ev, "dup3", lambda e: e.res >= 0), {"oldfd": fd, "newfd": 121, "flags": os.O_CLOEXEC}, 121)
    cap.expect(one(ev, "dup3", lambda e: e.res < 0), {"oldfd": 121, "newfd": 121, "flags": 0}, -22)
    for x in (d1, 120, 121):
        cap.expect(one(ev, "close", lambda e: e.args["fd"] == x and e.ts > dup.ts), {"fd": x}, 0)


def test_pipe2_and_pipe(cap):
    def work():
        r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)  # pipe2(fds, flags)
        fds = (ctypes.c_int * 2)()
        syscall(22, fds)                              # pipe(fds)
        os.write(w, b"xy")
        return r, w, list(fds)

    ev = cap.run(work)
    r, w, fds = cap.result
    cap.expect(one(ev, "pipe2"), {"fildes": [r, w], "flags": os.O_CLOEXEC | os.O_NONBLOCK}, 0)
    cap.expect(one(ev, "pipe"), {"fildes": fds}, 0)
    cap.expect(one(ev, "write", lambda e: e.args["fd"] == w), {"fd": w, "buf": b"xy", "count": 2}, 2)


def test_directories_and_links(cap, tmp_path):
    (tmp_path / "target").write_text("t")

    def work():
        dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        syscall(83, b(tmp_path / "d1"), 0o750)                     # mkdir
        syscall(258, dfd, b"d2", 0o700)                            # mkdirat
        syscall(84, b(tmp_path / "d1"))                            # rmdir
        syscall(88, b"target", b(tmp_path / "s1"))                 # symlink
        syscall(266, b"target", dfd, b"s2")                        # symlinkat
        syscall(86, b(tmp_path / "target"), b(tmp_path / "h1"))    # link
        syscall(265, dfd, b"s2", AT_FDCWD, b(tmp_path / "h2"), AT_SYMLINK_FOLLOW)  # linkat
        syscall(87, b(tmp_path / "h1"))                            # unlink
        syscall(259, dfd, b"fifo", 0o10600, 0)                     # mknodat(S_IFIFO | 0600)
        return dfd

    ev = cap.run(work)
    dfd = cap.result
    cap.expect(one(ev, "mkdir"), {"pathname": str(tmp_path / "d1"), "mode": 0o750}, 0)
    cap.expect(one(ev, "mkdirat"), {"dfd": dfd, "pathname": "d2", "mode": 0o700}, 0)
    cap.expect(one(ev, "rmdir"), {"pathname": str(tmp_path / "d1")}, 0)
    cap.expect(one(ev, "symlink"), {"oldname": "target", "newname": str(tmp_path / "s1")}, 0)
    cap.expect(one(ev, "symlinkat"), {"oldname": "target", "newdfd": dfd, "newname": "s2"}, 0)
    cap.expect(one(ev, "link"), {"oldname": str(tmp_path / "target"), "newname": str(tmp_path / "h1")}, 0)
    cap.expect(one(ev, "linkat"), {"olddfd": dfd, "oldname": "s2", "newdfd": AT_FDCWD,
                                   "newname": str(tmp_path / "h2"), "flags": AT_SYMLINK_FOLLOW}, 0)
    cap.expect(one(ev, "unlink"), {"pathname": str(tmp_path / "h1")}, 0)
    cap.expect(one(ev, "mknodat"), {"dfd": dfd, "filename": "fifo", "mode": 0o10600, "dev": 0}, 0)
    assert (tmp_path / "h2").read_text() == "t" and (tmp_path / "d2").is_dir()


def test_truncate_ftruncate_fcntl(cap, tmp_path):
    path = tmp_path / "t"
    path.write_bytes(b"x" * 100)

    def work():
        syscall(76, b(path), 10)                      # truncate
        fd = os.open(path, os.O_RDWR)
        syscall(77, fd, 5)                            # ftruncate
        syscall(72, fd, 2, 1)                         # fcntl(fd, F_SETFD, FD_CLOEXEC)
        return fd

    ev = cap.run(work)
    fd = cap.result
    cap.expect(one(ev, "truncate"), {"path": str(path), "length": 10}, 0)
    cap.expect(one(ev, "ftruncate"), {"fd": fd, "length": 5}, 0)
    cap.expect(one(ev, "fcntl", lambda e: e.args["fd"] == fd and e.args["cmd"] == 2),
               {"fd": fd, "cmd": 2, "arg": 1}, 0)
    assert path.stat().st_size == 5


def test_output_buffers_getcwd_readlinkat_newfstatat(cap, tmp_path):
    """Output arguments are read at exit: the bytes the kernel wrote, cut to buf_max (64)."""
    os.symlink("some/where/else", tmp_path / "ln")

    def work():
        syscall(80, b(tmp_path))                                  # chdir
        buf = ctypes.create_string_buffer(4096)
        n = syscall(79, buf, 4096)                                # getcwd
        lbuf = ctypes.create_string_buffer(100)
        m = syscall(267, AT_FDCWD, b"ln", lbuf, 100)              # readlinkat
        st = ctypes.create_string_buffer(256)
        syscall(262, AT_FDCWD, b"ln", st, 0x100)                  # newfstatat(AT_SYMLINK_NOFOLLOW)
        fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
        syscall(81, fd)                                           # fchdir
        return n, m, ctypes.addressof(buf), ctypes.addressof(lbuf), ctypes.addressof(st), fd

    ev = cap.run(work)
    n, m, abuf, albuf, ast, fd = cap.result
    cwd = str(tmp_path).encode() + b"\0"
    assert n == len(cwd) and m == len("some/where/else")
    cap.expect(one(ev, "chdir"), {"filename": str(tmp_path)}, 0)
    g = one(ev, "getcwd")
    cap.expect(g, {"buf": cwd[:64].rstrip(b"\0"), "size": 4096}, n)     # the string, as strace shows it
    assert g.truncated == ((0,) if len(cwd) > 64 else ())
    cap.expect(one(ev, "readlinkat"), {"dfd": AT_FDCWD, "pathname": "ln", "buf": b"some/where/else", "bufsiz": 100}, m)
    cap.expect(one(ev, "newfstatat", lambda e: e.args["filename"] == "ln"),
               {"dfd": AT_FDCWD, "filename": "ln", "statbuf": ast, "flag": 0x100}, 0)
    cap.expect(one(ev, "fchdir"), {"fd": fd}, 0)


def test_memfd_create_close_range(cap):
    def work():
        fd = os.memfd_create("lbd-test", os.MFD_CLOEXEC)
        os.dup2(fd, 200)
        r = syscall(436, 200, 210, 0)                 # close_range(200, 210, 0)
        return fd, r

    ev = cap.run(work)
    fd, r = cap.result
    cap.expect(one(ev, "memfd_create"), {"uname": "lbd-test", "flags": os.MFD_CLOEXEC}, fd)
    cap.expect(one(ev, "close_range"), {"fd": 200, "max_fd": 210, "flags": 0}, r)
    assert r == 0
    assert [e.res for e in by_name(ev, "close_range")] == [0]
