"""Memory syscalls: mmap (anonymous and file-backed), mprotect, munmap, madvise, mremap, brk."""
from __future__ import annotations

import mmap
import os

from tests.kernel.conftest import one, syscall

PROT_RW = mmap.PROT_READ | mmap.PROT_WRITE
MAP_ANON_PRIVATE = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
MREMAP_MAYMOVE = 1


def test_mmap_mprotect_madvise_mremap_munmap(cap):
    def work():
        a = syscall(9, 0, 8192, PROT_RW, MAP_ANON_PRIVATE, -1, 0)
        p = syscall(10, a, 8192, mmap.PROT_READ)
        d = syscall(28, a, 8192, mmap.MADV_DONTNEED)
        r = syscall(25, a, 8192, 16384, MREMAP_MAYMOVE, 0)
        u = syscall(11, r, 16384)
        return a, p, d, r, u

    ev = cap.run(work)
    a, p, d, r, u = cap.result
    assert a > 0 and p == d == u == 0 and r > 0
    cap.expect(one(ev, "mmap", lambda e: e.res == a),
               {"addr": 0, "len": 8192, "prot": PROT_RW, "flags": MAP_ANON_PRIVATE, "fd": -1, "off": 0}, a)
    cap.expect(one(ev, "mprotect", lambda e: e.args["start"] == a),
               {"start": a, "len": 8192, "prot": mmap.PROT_READ}, 0)
    cap.expect(one(ev, "madvise", lambda e: e.args["start"] == a),
               {"start": a, "len_in": 8192, "behavior": mmap.MADV_DONTNEED}, 0)
    cap.expect(one(ev, "mremap"), {"addr": a, "old_len": 8192, "new_len": 16384, "flags": MREMAP_MAYMOVE,
                                   "new_addr": 0}, r)
    cap.expect(one(ev, "munmap", lambda e: e.args["addr"] == r), {"addr": r, "len": 16384}, 0)


def test_mmap_file_and_failure(cap, tmp_path):
    path = tmp_path / "m"
    path.write_bytes(b"\0" * 8192)

    def work():
        fd = os.open(path, os.O_RDONLY)
        a = syscall(9, 0, 4096, mmap.PROT_READ, mmap.MAP_SHARED, fd, 4096)
        bad = syscall(9, 0, 4096, mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)   # read-only fd: EACCES
        return fd, a, bad

    ev = cap.run(work)
    fd, a, bad = cap.result
    assert a > 0 and bad == -13
    cap.expect(one(ev, "mmap", lambda e: e.res == a),
               {"addr": 0, "len": 4096, "prot": mmap.PROT_READ, "flags": mmap.MAP_SHARED, "fd": fd, "off": 4096}, a)
    cap.expect(one(ev, "mmap", lambda e: e.res == -13),
               {"addr": 0, "len": 4096, "prot": mmap.PROT_WRITE, "flags": mmap.MAP_SHARED, "fd": fd, "off": 0}, -13)


def test_brk(cap):
    def work():
        cur = syscall(12, 0)
        return cur

    ev = cap.run(work)
    cur = cap.result
    cap.expect(one(ev, "brk", lambda e: e.args["brk"] == 0 and e.res == cur), {"brk": 0}, cur)
