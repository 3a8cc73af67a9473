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
from lbd.ringimage import sockaddr_in, sockaddr_in6, sockaddr_un
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


# ---- random state streams (the differential tests of tests/unit/test_enrich_engines.py) ------------

_AF_UNIX, _AF_INET, _AF_INET6 = 1, 2, 10
_NAMES = ["/etc/hosts", "data/./x.db", "../up/file", "/a//b/../c", "rel", "", "/tmp/\xe9t\xe9", b"/bad/\xff\xfe",
          "/srv/dir", "./", "/"]
_COMMS = ["bash", "nginx", "svc-nginx", "eaw", "leaf", "worker:1", "x" * 15, b"\xffbad", ""]


def state_records(n: int, seed: int = 0, *, core: bool = True) -> list[bytes]:
    """About n records exercising every path of the state engine: forks (processes and threads,
    CO-RE's child_tgid or bcc's speculative entries), exec records with and without argv / exe,
    execve exits, exits, prctl renames and subreapers, reparenting, chdir / fchdir, every fd
    creator, dup*, fcntl, close, close_range, sockets with and without the kernel's socket (xslot),
    enter records, records without enter, failures, pids never seen, invalid UTF-8, ids.
    Not a plausible workload: the oracle, not a model, says what each event's context is."""
    from tests.data.fakeproc import sock_bytes

    r = random.Random(seed)
    out: list[bytes] = []
    ts = [T0]
    pidns = 4026531836 if core else 0
    pids = [1, SHELL, *WORKERS]
    threads: dict[int, list[int]] = {}
    nxt = [40000]

    def emit(name, args=None, *, pid, tid=None, **kw):
        ts[0] += r.choice((1000, 1000, 50_000, 7_000_000_000 if r.random() < 0.01 else 1000))
        comm = kw.pop("comm", r.choice(_COMMS) if r.random() < 0.1 else f"c{pid % 7}")
        ppid = kw.pop("ppid", r.choice([0, 0, 1, SHELL, r.choice(pids)]))
        out.append(rec(name, args, pid=pid, tid=tid or pid, ppid=ppid, uid=r.choice((0, 1000, 4321)),
                       gid=r.choice((0, 1000, 65534)), comm=comm, ts=ts[0], pidns=kw.pop("pidns", pidns), **kw))

    def fd(pid_):
        return r.choice([0, 1, 2, 3, 4, 5, 6, 7, 10, 20, 255, -1, r.randrange(64)])

    def path():
        p = r.choice(_NAMES)
        return p if isinstance(p, bytes) else p.encode()

    def new_pid():
        nxt[0] += r.randint(1, 3)
        return nxt[0]

    while len(out) < n:
        pid = r.choice(pids) if r.random() > 0.02 else new_pid()       # now and then: never seen
        tid = r.choice(threads.get(pid, [pid])) if r.random() < 0.3 else pid
        x = r.random()
        res_fd = r.choice([3, 4, 5, 6, 7, 8, 9, 11, 12, 13, -2, -24])
        kw = {}
        if r.random() < 0.03:
            kw["dir"] = ">"
        elif r.random() < 0.02:
            kw["flags"] = record.F_NOENTER
        if x < 0.06:                                              # fork: a process or a thread
            child = new_pid()
            thread = r.random() < 0.3
            tgid = (pid if thread else child) if core else 0
            emit("sched_process_fork", {"parent_pid": r.choice([pid, pid, 1]), "child_pid": child, "parent_tid": tid,
                                        "child_tgid": tgid}, pid=pid, tid=tid)
            emit("clone", {"clone_flags": CLONE_THREAD_FLAGS if thread else 0x1200011}, pid=pid, tid=tid,
                 res=child, **kw)
            if thread:
                threads.setdefault(pid, [pid]).append(child)
            else:
                pids.append(child)
        elif x < 0.08:
            emit(r.choice(["fork", "vfork", "clone3"]), pid=pid, res=new_pid() if r.random() < 0.8 else -11)
        elif x < 0.13:                                            # exec, from any thread
            prog = r.choice(_PROGS)
            args = {"pid": pid, "old_pid": tid, "filename": r.choice([prog[0], "rel/prog", "../x/y"])}
            if core and r.random() < 0.9:
                args["argv"] = prog[1] if r.random() < 0.9 else []
                if r.random() < 0.9:
                    args["exe"] = "/usr/lib/" + prog[0].rsplit("/", 1)[1]
            comm = prog[0].rsplit("/", 1)[1][:15]
            emit("sched_process_exec", args, pid=pid, comm=comm)
            if r.random() < 0.85:
                fl = record.F_NEWIMAGE | (1 << (record.F_TRUNC_SHIFT + 1) if r.random() < 0.1 else 0)
                nm = r.choice(["execve", "execve", "execveat"])
                a = ({"filename": prog[0], "argv": prog[1], "envp": []} if nm == "execve" else
                     {"fd": r.choice([-100, 3]), "filename": prog[0], "argv": prog[1], "envp": [], "flags": 0})
                emit(nm, a, pid=pid, comm=comm, res=0, flags=fl)
        elif x < 0.15:                                            # execve without an exec record
            emit("execve", {"filename": path(), "argv": ["a", "b\xe9"], "envp": []}, pid=pid, res=r.choice([0, -2]),
                 **kw)
        elif x < 0.18:
            group = r.random() < 0.6
            emit("sched_process_exit", {"pid": pid if group else tid, "group_dead": int(group), "exit_code": 0},
                 pid=pid, tid=tid)
            if group and pid in pids and pid not in (1, SHELL) and r.random() < 0.5:
                pids.remove(pid)
        elif x < 0.21:
            opt = r.choice([15, 15, 36, 36, 4])
            emit("prctl", {"option": opt, "arg2": r.choice([0, 1])}, pid=pid, tid=tid, res=r.choice([0, 0, -22]),
                 comm=r.choice(_COMMS), **kw)
        elif x < 0.24:
            emit("chdir", {"filename": path()}, pid=pid, res=r.choice([0, 0, -2]), **kw)
        elif x < 0.25:
            emit("fchdir", {"fd": fd(pid)}, pid=pid, res=0, **kw)
        elif x < 0.36:
            nm = r.choice(["open", "openat", "openat", "openat2", "creat", "open_tree"])
            fl = r.choice([0, O_CLOEXEC])
            a = {"open": {"filename": path(), "flags": fl}, "openat": {"dfd": r.choice([-100, -100, 3, 5]),
                 "filename": path(), "flags": fl}, "openat2": {"dfd": -100, "filename": path()},
                 "creat": {"pathname": path()}, "open_tree": {"dfd": -100, "filename": path(), "flags": fl}}[nm]
            emit(nm, a, pid=pid, tid=tid, res=res_fd, **kw)
        elif x < 0.47:
            emit("close", {"fd": fd(pid)}, pid=pid, tid=tid, res=r.choice([0, 0, -9]), **kw)
        elif x < 0.53:
            nm = r.choice(["dup", "dup2", "dup3", "fcntl", "fcntl"])
            a = {"dup": {"fildes": fd(pid)}, "dup2": {"oldfd": fd(pid), "newfd": fd(pid)},
                 "dup3": {"oldfd": fd(pid), "newfd": fd(pid), "flags": r.choice([0, O_CLOEXEC])},
                 "fcntl": {"fd": fd(pid), "cmd": r.choice([0, 1030, 2, 1]), "arg": r.choice([0, 1, 10])}}[nm]
            emit(nm, a, pid=pid, res=res_fd, **kw)
        elif x < 0.545:
            emit("ioctl", {"fd": fd(pid), "cmd": r.choice([0x5450, 0x5451, 0x5401]), "arg": 0}, pid=pid,
                 res=r.choice([0, 0, -25]), **kw)
        elif x < 0.56:
            emit("close_range", {"fd": r.choice([3, 5, 10]), "max_fd": r.choice([6, 0xFFFFFFFF]),
                                 "flags": r.choice([0, 4])}, pid=pid, res=r.choice([0, 0, -22]), **kw)
        elif x < 0.70:                                            # sockets
            fam = r.choice([_AF_INET, _AF_INET, _AF_INET6, _AF_UNIX, 16])
            typ = r.choice([1, 1, 2, 3, 5]) | r.choice([0, O_CLOEXEC])
            s = res_fd
            emit("socket", {"family": fam, "type": typ, "protocol": 0}, pid=pid, res=s, **kw)
            lp, rp = r.choice([0, 41067, 8080]), r.choice([0, 80, 443])
            la = {_AF_INET: "127.0.0.1", _AF_INET6: "::1"}.get(fam)
            ra = {_AF_INET: "10.1.2.3", _AF_INET6: "fe80::1:0:0:1"}.get(fam)
            if fam == _AF_UNIX:
                sa = sockaddr_un(r.choice(["/run/x.sock", "@abstract", ""]))
            elif fam == _AF_INET6:
                sa = sockaddr_in6(ra, rp)
            elif fam == _AF_INET:
                sa = sockaddr_in(ra, rp)
            else:
                sa = b"\x10\x00" + bytes(10)
            so = None
            if core and r.random() < 0.85:
                so = sock_bytes(fam, typ & 0xF, la, lp, ra if r.random() < 0.8 else None, rp,
                                path=r.choice([b"/run/srv.sock\0", b"\0abs", b""]) if fam == _AF_UNIX else b"")
            y = r.random()
            if y < 0.45:
                emit("connect", {"fd": s if r.random() < 0.8 else fd(pid), "uservaddr": sa, "addrlen": len(sa)},
                     pid=pid, res=r.choice([0, 0, -115, -111]), sock=so, **kw)
            elif y < 0.7:
                emit("bind", {"fd": s, "umyaddr": sa, "addrlen": len(sa)}, pid=pid, res=r.choice([0, -98]), sock=so,
                     **kw)
            else:
                nm = r.choice(["accept", "accept4"])
                a = {"fd": s, "upeer_sockaddr": sa, "upeer_addrlen": (len(sa),)}
                if nm == "accept4":
                    a["flags"] = r.choice([0, O_CLOEXEC])
                emit(nm, a, pid=pid, res=res_fd + 1 if res_fd > 0 else res_fd, sock=so, **kw)
        elif x < 0.75:
            nm = r.choice(["pipe", "pipe2", "socketpair"])
            a, b = r.sample([3, 4, 5, 6, 7, 8, 9], 2)
            args = {"pipe": {"fildes": (a, b)}, "pipe2": {"fildes": (a, b), "flags": r.choice([0, O_CLOEXEC])},
                    "socketpair": {"family": 1, "type": r.choice([1, 2]) | r.choice([0, O_CLOEXEC]), "protocol": 0,
                                   "usockvec": (a, b)}}[nm]
            emit(nm, args, pid=pid, res=r.choice([0, 0, -24]), **kw)
        elif x < 0.80:
            nm = r.choice(["eventfd2", "epoll_create1", "timerfd_create", "signalfd4", "inotify_init1", "memfd_create",
                           "bpf", "pidfd_open", "pidfd_getfd", "open_by_handle_at", "fsmount", "userfaultfd",
                           "io_uring_setup", "perf_event_open", "fanotify_init", "landlock_create_ruleset"])
            a = {"memfd_create": {"uname": r.choice(["jit", "\xe9", ""]), "flags": r.choice([0, 1])},
                 "bpf": {"cmd": r.choice([0, 5, 7, 18, 28, 2])}}.get(nm, [r.choice([0, O_CLOEXEC, 1, 8])] * 5)
            emit(nm, a, pid=pid, res=res_fd, **kw)
        else:                                                     # no change: the context only
            emit(r.choice(["read", "write", "getpid", "futex", "mkdir", "ftruncate"]), None, pid=pid, tid=tid,
                 res=r.choice([0, 3, -2]), **kw)
    return out
