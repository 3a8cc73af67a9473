"""Synthetic event streams for enrichment: the mixes the enrichment benchmark
(bench/test_bench_enrich.py) and its profile (bench/profile_enrich.py) run, on a fake host.

    host = mix_host(tmp_path)                        # systemd, a shell, eight workers
    batches = mix_batches("openclose", n_events=8192, batch_size=512, seed=0)
    en = host.enricher()
    for b in batches:
        en.enrich(b)

Mixes (every stream is a plausible sequence: fds are allocated lowest-first and only open fds
are closed, so the fd tables the events build stay small and right):

``openclose``  every event changes an fd table: openat (absolute, relative, O_CLOEXEC, a few
               failures), close, socket + connect, dup / dup2 / dup3 / fcntl(F_DUPFD_CLOEXEC),
               pipe2, accept4, socketpair, close_range: eight workers, interleaved.
``forkexec``   a shell forking children that exec, open and read a file, write and exit
               (sched_process_fork / clone / sched_process_exec / execve / exit / wait4), a
               thread now and then (clone with CLONE_THREAD), several children alive at once.
``readwrite``  mostly read, write, pread64, sendto, recvfrom, futex, epoll_wait, newfstatat,
               mmap; about one event in ten opens or closes a file.

Records are built once per (mix, n, seed): `mix_records` is cached.
"""
from __future__ import annotations

import functools
import random
from pathlib import Path

from lbd import record
from lbd.ringimage import sockaddr_in, sockaddr_un
from tests.data.fakeproc import O_CLOEXEC, FakeHost, batch_of, rec

__all__ = ["MIXES", "T0", "WORKERS", "SHELL", "mix_host", "mix_records", "mix_batches"]

MIXES = ("openclose", "forkexec", "readwrite")
T0 = 1_750_000_000_000_000_000
SHELL = 100
WORKERS = tuple(range(2000, 2008))
_BASE_FDS = {0: "/dev/null", 1: "/var/log/worker.log", 2: "/var/log/worker.log", 3: "anon_inode:[eventpoll]",
             4: "socket:[inet 10.20.30.40:443]", 5: "/run/systemd/journal/socket", 6: "pipe:[31337]"}
_PATHS = ([f"/usr/lib/x86_64-linux-gnu/libexample{k}.so.6" for k in range(24)]
          + [f"/srv/data/shard-{k:03d}/index.db" for k in range(16)]
          + ["/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf", "/proc/self/status", "/dev/urandom"])
_REL = ["config.yaml", "./cache/objects.pack", "../shared/lock", "logs/access.log", "tmp/upload.part"]
_ADDRS = [sockaddr_in(f"10.20.{k}.{k * 7 % 250}", 443 + k) for k in range(6)] + \
         [sockaddr_un("/run/systemd/journal/socket"), sockaddr_un("/run/dbus/system_bus_socket")]
_PROGS = [("/usr/bin/git", ["git", "status", "--porcelain"]), ("/usr/bin/cat", ["cat", "/etc/hostname"]),
          ("/usr/bin/grep", ["grep", "-r", "TODO", "src"]), ("/usr/bin/cc", ["cc", "-O2", "-c", "x.c", "-o", "x.o"]),
          ("/usr/bin/ls", ["ls", "-la"]), ("/bin/sh", ["sh", "-c", "make -j2 all"])]
ENOENT, EINPROGRESS, EAGAIN = 2, 115, 11
CLONE_THREAD_FLAGS = 0x10000 | 0x100 | 0x400 | 0x800 | 0x80000 | 0x200000 | 0x1000000


def mix_host(root: Path) -> FakeHost:
    """systemd (1), a shell (100, cwd /home/alice) and eight workers (2000..2007, cwd /srv, seven
    open fds each, 3 close-on-exec)."""
    h = FakeHost(root)
    h.add_process(1, "systemd", 0, ["/sbin/init"], exe="/usr/lib/systemd/systemd")
    h.add_process(SHELL, "bash", 1, ["-bash"], exe="/usr/bin/bash", cwd="/home/alice",
                  fds={0: "/dev/pts/0", 1: "/dev/pts/0", 2: "/dev/pts/0", 255: "/dev/pts/0"}, cloexec={255})
    for k, pid in enumerate(WORKERS):
        h.add_process(pid, f"worker{k}", 1, [f"/usr/bin/worker{k}", "--serve", f"--port={8000 + k}"],
                      exe=f"/usr/bin/worker{k}", cwd="/srv", fds=_BASE_FDS, cloexec={3})
    return h


class _Proc:
    """A generator-side process: its open fds (fd -> kind) for lowest-first allocation."""

    def __init__(self, pid: int, comm: str, uid: int, fds=None):
        self.pid, self.comm, self.uid = pid, comm, uid
        self.fds: dict[int, str] = dict(fds or {})

    def lowest(self, start: int = 0) -> int:
        fd = start
        while fd in self.fds:
            fd += 1
        return fd


class _Gen:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.out: list[bytes] = []
        self.ts = T0

    def emit(self, name: str, args=None, *, p: _Proc, res: int = 0, tid: int | None = None, **kw) -> None:
        self.ts += self.rng.randint(200, 4000)
        self.out.append(rec(name, args, pid=p.pid, tid=tid or p.pid, ppid=0, uid=p.uid, gid=p.uid,
                            comm=kw.pop("comm", p.comm), ts=self.ts, latency=self.rng.randint(300, 5000),
                            res=res, **kw))

    def fd_event(self, p: _Proc) -> None:
        """One fd-changing syscall of p (close more likely the more fds p has open)."""
        r = self.rng
        mine = [fd for fd in p.fds if fd > 6]
        x = r.random()
        if mine and x < 0.12 + 0.05 * len(mine):
            fd = r.choice(mine)
            del p.fds[fd]
            self.emit("close", {"fd": fd}, p=p, res=0)
            return
        x = r.random()
        if x < 0.45:
            fd = p.lowest()
            if r.random() < 0.06:
                self.emit("openat", {"dfd": -100, "filename": r.choice(_PATHS), "flags": O_CLOEXEC}, p=p,
                          res=-ENOENT)
                return
            if r.random() < 0.2:
                name = r.choice(_REL)
            else:
                name = r.choice(_PATHS)
            self.emit("openat", {"dfd": -100, "filename": name, "flags": O_CLOEXEC if r.random() < 0.7 else 0,
                                 "mode": 0}, p=p, res=fd)
            p.fds[fd] = "file"
        elif x < 0.58:
            fd = p.lowest()
            fam = 2 if r.random() < 0.7 else 1
            self.emit("socket", {"family": fam, "type": 1 | (O_CLOEXEC if r.random() < 0.5 else 0), "protocol": 0},
                      p=p, res=fd)
            p.fds[fd] = "sock"
            self.emit("connect", {"fd": fd, "uservaddr": r.choice(_ADDRS[:6] if fam == 2 else _ADDRS[6:]),
                                  "addrlen": 16}, p=p, res=-EINPROGRESS if r.random() < 0.3 else 0)
        elif x < 0.72 and mine:
            old = r.choice(mine)
            kind = r.randrange(4)
            if kind == 0:
                new = p.lowest()
                self.emit("dup", {"fildes": old}, p=p, res=new)
            elif kind == 1:
                new = r.choice([1, 2, p.lowest(10)])
                self.emit("dup2", {"oldfd": old, "newfd": new}, p=p, res=new)
            elif kind == 2:
                new = p.lowest(20)
                self.emit("dup3", {"oldfd": old, "newfd": new, "flags": O_CLOEXEC}, p=p, res=new)
            else:
                new = p.lowest(30)
                self.emit("fcntl", {"fd": old, "cmd": 1030, "arg": 30}, p=p, res=new)
            if new > 6:
                p.fds[new] = p.fds[old]
        elif x < 0.82:
            a = p.lowest()
            b = p.lowest(a + 1)
            self.emit("pipe2", {"fildes": (a, b), "flags": O_CLOEXEC if r.random() < 0.5 else 0}, p=p, res=0)
            p.fds[a] = p.fds[b] = "pipe"
        elif x < 0.9:
            fd = p.lowest()
            self.emit("accept4", {"fd": 4, "upeer_sockaddr": r.choice(_ADDRS[:6]), "upeer_addrlen": (16,),
                                  "flags": O_CLOEXEC}, p=p, res=fd)
            p.fds[fd] = "sock"
        elif x < 0.95:
            a = p.lowest()
            b = p.lowest(a + 1)
            self.emit("socketpair", {"family": 1, "type": 1, "protocol": 0, "usockvec": (a, b)}, p=p, res=0)
            p.fds[a] = p.fds[b] = "sock"
        elif mine and len(mine) > 3:
            lo = sorted(mine)[-2]
            for fd in [fd for fd in p.fds if fd >= lo]:
                del p.fds[fd]
            self.emit("close_range", {"fd": lo, "max_fd": 0xFFFFFFFF, "flags": 0}, p=p, res=0)
        else:
            self.emit("openat", {"dfd": -100, "filename": r.choice(_PATHS), "flags": 0}, p=p, res=-ENOENT)

    def close_all(self, p: _Proc) -> None:
        for fd in sorted(fd for fd in p.fds if fd > 6):
            del p.fds[fd]
            self.emit("close", {"fd": fd}, p=p, res=0)


def _workers() -> list[_Proc]:
    return [_Proc(pid, f"worker{k}", 1000 if k % 2 else 0, _BASE_FDS) for k, pid in enumerate(WORKERS)]


def _openclose(g: _Gen, n: int) -> None:
    ws = _workers()
    while len(g.out) < n:
        g.fd_event(g.rng.choice(ws))
    for p in ws:
        g.close_all(p)


def _readwrite(g: _Gen, n: int) -> None:
    ws = _workers()
    r = g.rng
    while len(g.out) < n:
        p = r.choice(ws)
        if r.random() < 0.1:
            g.fd_event(p)
            continue
        fd = r.choice(sorted(p.fds))
        x = r.random()
        if x < 0.3:
            g.emit("read", {"fd": fd, "buf": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[: r.randint(0, 28)], "count": 4096},
                   p=p, res=r.randint(0, 28))
        elif x < 0.55:
            g.emit("write", {"fd": fd, "buf": b"127.0.0.1 - - [12/Jun/2025] \"GET /\" 200 512\n", "count": 46},
                   p=p, res=46)
        elif x < 0.62:
            g.emit("pread64", {"fd": fd, "buf": b"\x00" * 64, "count": 64, "pos": 4096}, p=p, res=64)
        elif x < 0.7:
            g.emit("sendto", {"fd": 4, "buff": b"\x16\x03\x01" * 10, "len": 30, "flags": 0x4000, "addr": None,
                              "addr_len": 0}, p=p, res=30)
        elif x < 0.78:
            g.emit("recvfrom", {"fd": 4, "ubuf": b"\x17\x03\x03" * 8, "size": 16384, "flags": 0, "addr": None,
                                "addr_len": None}, p=p, res=24 if r.random() < 0.8 else -EAGAIN)
        elif x < 0.88:
            g.emit("futex", {"uaddr": 0x7F00_0000_1000, "op": 128, "val": 0}, p=p, res=0,
                   tid=p.pid + 100 * r.randint(0, 3))
        elif x < 0.94:
            g.emit("epoll_wait", {"epfd": 3, "events": 0x7FFD_0000_2000, "maxevents": 64, "timeout": 1000}, p=p,
                   res=r.randint(0, 3))
        elif x < 0.98:
            g.emit("newfstatat", {"dfd": -100, "filename": r.choice(_PATHS), "statbuf": 0x7FFD_0000_3000,
                                  "flag": 0}, p=p, res=0)
        else:
            g.emit("mmap", {"addr": 0, "len": 1 << 20, "prot": 3, "flags": 0x22, "fd": -1, "off": 0}, p=p,
                   res=0x7F12_3456_0000)
    for p in ws:
        g.close_all(p)


def _forkexec(g: _Gen, n: int) -> None:
    r = g.rng
    sh = _Proc(SHELL, "bash", 1000, {0: "tty", 1: "tty", 2: "tty", 255: "tty"})
    next_pid = 30000
    live: list[list] = []            # [proc, steps left, program]
    while len(g.out) < n or live:
        if len(g.out) < n and (not live or (len(live) < 4 and r.random() < 0.35)):
            child = _Proc(next_pid, "bash", 1000, sh.fds)
            next_pid += 1
            g.emit("sched_process_fork", {"parent_pid": SHELL, "child_pid": child.pid, "parent_tid": SHELL},
                   p=sh)
            g.emit("clone", {"clone_flags": 0x1200011}, p=sh, res=child.pid)
            live.append([child, 0, r.choice(_PROGS)])
            continue
        k = r.randrange(len(live))
        child, step, (exe, argv) = live[k]
        live[k][1] += 1
        comm = exe.rsplit("/", 1)[1][:15]
        if step == 0:
            g.emit("sched_process_exec", {"pid": child.pid, "old_pid": child.pid, "filename": exe}, p=child,
                   comm=comm)
            child.comm = comm
            for fd in [fd for fd in child.fds if fd == 255]:
                del child.fds[fd]
        elif step == 1:
            g.emit("execve", {"filename": exe, "argv": argv, "envp": ["HOME=/home/alice", "LANG=C.UTF-8"]},
                   p=child, res=0, flags=record.F_NEWIMAGE)
        elif step == 2:
            fd = child.lowest()
            g.emit("openat", {"dfd": -100, "filename": "/etc/ld.so.cache", "flags": O_CLOEXEC}, p=child, res=fd)
            child.fds[fd] = "file"
        elif step == 3:
            g.emit("mmap", {"addr": 0, "len": 1 << 16, "prot": 1, "flags": 2, "fd": 3, "off": 0}, p=child,
                   res=0x7F00_0000_0000)
        elif step == 4:
            g.emit("close", {"fd": 3}, p=child, res=0)
            child.fds.pop(3, None)
        elif step == 5:
            fd = child.lowest()
            g.emit("openat", {"dfd": -100, "filename": r.choice(_REL + _PATHS), "flags": 0}, p=child, res=fd)
            child.fds[fd] = "file"
        elif step == 6:
            g.emit("read", {"fd": 3, "buf": b"data\n", "count": 4096}, p=child, res=5)
        elif step == 7 and r.random() < 0.3:
            tid = child.pid + 50_000
            g.emit("sched_process_fork", {"parent_pid": child.pid, "child_pid": tid, "parent_tid": child.pid},
                   p=child)
            g.emit("clone", {"clone_flags": CLONE_THREAD_FLAGS}, p=child, res=tid)
        elif step == 8:
            g.emit("write", {"fd": 1, "buf": b"ok\n", "count": 3}, p=child, res=3)
        elif step == 9:
            g.emit("close", {"fd": 3}, p=child, res=0)
            child.fds.pop(3, None)
        elif step == 10:
            g.emit("exit_group", {"error_code": 0}, p=child, res=0)
        elif step >= 11:
            g.emit("sched_process_exit", {"pid": child.pid, "group_dead": 1}, p=child)
            g.emit("wait4", {"upid": -1, "stat_addr": 0x7FFD_0000_4000, "options": 0, "ru": 0}, p=sh,
                   res=child.pid)
            del live[k]


_MIX_FUNCS = {"openclose": _openclose, "forkexec": _forkexec, "readwrite": _readwrite}


@functools.lru_cache(maxsize=16)
def mix_records(mix: str, n: int, seed: int = 0) -> tuple[bytes, ...]:
    """About n records of the mix (a little more: open fds are closed and children reaped at the
    end, so that the stream can be replayed)."""
    g = _Gen(seed)
    _MIX_FUNCS[mix](g, n)
    return tuple(g.out)


def mix_batches(mix: str, n_events: int, batch_size: int = 512, seed: int = 0) -> list:
    """The mix's records as Batches of batch_size events (decoded by the compiled consumer)."""
    recs = mix_records(mix, n_events, seed)
    return [batch_of(*recs[i: i + batch_size], capacity=batch_size) for i in range(0, len(recs), batch_size)]
