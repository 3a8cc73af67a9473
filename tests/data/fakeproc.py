"""Fake /proc and /etc trees, and event batches built from synthetic records, for the enrichment
and output tests (tests/unit/test_enrich*.py, test_output*.py) and the format benchmark.

    host = FakeHost(tmp_path)
    host.add_process(1, "systemd", 0, ["/sbin/init"], exe="/usr/lib/systemd/systemd")
    host.add_process(4242, "sh", 1, ["/bin/sh", "-c", "x"], fds={0: "/dev/null"}, cloexec={3})
    en = host.enricher()
    b = batch_of(rec("openat", {"dfd": -100, "filename": "/etc/passwd", "flags": 0}, pid=4242, res=3))
    en.enrich(b)
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from lbd import args as _args, record, syscalls
import numpy as np

from lbd.ringimage import image_of, make_record

__all__ = ["FakeHost", "rec", "batch_of", "nr_of", "PASSWD", "GROUP"]

PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""
GROUP = """root:x:0:
daemon:x:1:
alice:x:1000:
nogroup:x:65534:
"""

O_CLOEXEC = 0o2000000


class FakeHost:
    """A directory with proc/<pid>/... and etc/{passwd,group} laid out as the real ones."""

    def __init__(self, root: Path, passwd: str = PASSWD, group: str = GROUP):
        self.root = Path(root)
        self.proc = self.root / "proc"
        self.proc.mkdir(parents=True, exist_ok=True)
        (self.root / "etc").mkdir(exist_ok=True)
        (self.root / "etc" / "passwd").write_text(passwd)
        (self.root / "etc" / "group").write_text(group)

    def add_process(self, pid: int, comm: str, ppid: int, cmdline: list[str] | None = None, *,
                    exe: str | None = None, cwd: str = "/", fds: dict[int, str] | None = None,
                    cloexec=()) -> Path:
        d = self.proc / str(pid)
        if d.exists():
            shutil.rmtree(d)
        (d / "fd").mkdir(parents=True)
        (d / "fdinfo").mkdir()
        (d / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0\n")
        (d / "comm").write_text(comm + "\n")
        (d / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in (cmdline or [])))
        if exe is not None:
            os.symlink(exe, d / "exe")
        os.symlink(cwd, d / "cwd")
        for fd, path in (fds or {}).items():
            self.add_fd(pid, fd, path, fd in set(cloexec))
        return d

    def add_fd(self, pid: int, fd: int, path: str, cloexec: bool = False) -> None:
        d = self.proc / str(pid)
        os.symlink(path, d / "fd" / str(fd))
        flags = 0o2 | (O_CLOEXEC if cloexec else 0)
        (d / "fdinfo" / str(fd)).write_text(f"pos:\t0\nflags:\t0{flags:o}\nmnt_id:\t25\nino:\t5\n")

    def remove_process(self, pid: int) -> None:
        shutil.rmtree(self.proc / str(pid), ignore_errors=True)

    def enricher(self, **kw):
        """The product's Enricher on this tree (it reads every process now)."""
        from lbd.enrich import Enricher

        kw.setdefault("nss", False)
        return Enricher(proc_root=self.proc, etc_root=self.root, **kw)

    def reference(self, **kw):
        """The oracle (lbd/_testing/state_reference.py) on this tree."""
        from lbd._testing.state_reference import ReferenceEnricher

        kw.setdefault("nss", False)
        return ReferenceEnricher(proc_root=self.proc, etc_root=self.root, **kw)


def nr_of(name: str) -> int:
    for nr, n in _args.SCHED_NAMES.items():
        if n == name:
            return nr
    return syscalls.BY_NAME[name].nr


def sock_bytes(family: int, type: int = 1, laddr: str | None = None, lport: int = 0, raddr: str | None = None,
               rport: int = 0, path: bytes = b"") -> bytes:
    """struct lbd_sock (bpf/lbd_record.h) and, for AF_UNIX, the path bytes after it."""
    import ipaddress

    def packed(a):
        if a is None:
            return bytes(16)
        return ipaddress.ip_address(a).packed.ljust(16, b"\0")

    s = np.zeros(1, dtype=record.SOCK_DTYPE)
    s["family"], s["type"], s["lport"], s["rport"] = family, type, lport, rport
    s["laddr"][0] = np.frombuffer(packed(laddr), dtype=np.uint8)
    s["raddr"][0] = np.frombuffer(packed(raddr), dtype=np.uint8)
    return s.tobytes() + path


def _xslot(r: bytes, off: int, ln: int) -> bytes:
    """r (a record followed by extra bytes) with those bytes as its extra slot."""
    h = np.frombuffer(bytearray(r), dtype=record.HDR_DTYPE, count=1).copy()
    h["size"] = len(r)
    h["xslot"]["off"], h["xslot"]["len"] = off, ln
    return h.tobytes() + r[record.HDR_SIZE:]


def rec(name: str, args=None, *, sock: bytes | None = None, **kw) -> bytes:
    """One record of syscall (or sched_process_*) `name`; keywords as lbd.ringimage.make_record,
    and `sock` (sock_bytes()): the socket the CO-RE probe reads at exit (xslot).

    For sched_process_exec, `filename`, `argv` and `exe` may be given in args (they are stored as
    the kernel's payloads, with no pointer)."""
    nr = nr_of(name)
    if nr == record.NR_SCHED_EXEC and args:
        args = dict(args)
        for key in ("filename", "argv", "exe"):
            if key in args:
                v = args.pop(key)
                if key == "argv":
                    v = b"".join((a.encode() if isinstance(a, str) else a) + b"\0" for a in v)
                kw.setdefault("payloads", {})[key] = v.encode() if isinstance(v, str) else v
    kw.setdefault("comm", "test")
    r = make_record(nr, args, **kw)
    return r if sock is None else _xslot(r + sock, len(r), len(sock))


def batch_of(*records: bytes, capacity: int | None = None):
    """A Batch holding the records, decoded by the compiled consumer from a ring image."""
    from lbd.batch import Batch

    records = list(records)
    cap = capacity or max(16, len(records))
    size = sum(len(r) + 64 for r in records) + (1 << 16)
    b = Batch(cap, size)
    n = image_of(records).ring().fill(b)
    assert n == len(records), f"{n} of {len(records)} records decoded"
    return b
