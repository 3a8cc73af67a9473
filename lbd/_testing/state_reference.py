"""The readable oracle of the state engine (lbd/_enrich.pyx): the same process and fd tables, kept
from the same events in the same order, one Python step per event.  Test-only: no product module
imports it (tests/unit/test_enrich_engines.py holds the two to the same per-event context,
bench/test_bench_enrich.py measures the engine against it).

    ref = ReferenceEnricher(proc_root=..., etc_root=..., nss=False)
    ref.enrich(batch)           # batch.enrich / strtab / fdtab, as the engine's contract says
    ref.process(pid)            # the table's entry, as lbd.enrich.Enricher.process gives it

Semantics: lbd._enrich's module docstring; every step below names the engine function it mirrors.
The arrays it writes hold each batch's strings and fd rows afresh (no epochs, no row sharing):
compare them through lbd.enrich.layout.event_info, not byte for byte.
"""
from __future__ import annotations

import posixpath
import struct
from collections import OrderedDict

import numpy as np

from lbd import record, syscalls
from lbd.enrich.layout import ENRICH_DTYPE, FD_DTYPE
from lbd.enrich.procfs import ProcFS
from lbd.enrich.users import Accounts

__all__ = ["ReferenceEnricher", "RefProc"]

AT_FDCWD = -100
O_CLOEXEC = 0o2000000
CLONE_THREAD = 0x10000
EINPROGRESS = 115
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET = 1, 2, 10, 16, 17
FK_FILE, FK_TCP, FK_UDP, FK_RAW, FK_UNIX, FK_SOCK, FK_PIPE, FK_ANON, FK_UNKNOWN = range(9)
NR_FORK, NR_EXEC, NR_EXIT = record.NR_SCHED_FORK, record.NR_SCHED_EXEC, record.NR_SCHED_EXIT
U32 = 0xFFFFFFFF
SOCK = struct.Struct("<HHHH16s16s")


def _nr(name: str) -> int:
    return syscalls.BY_NAME[name].nr


def text(b: bytes) -> str:
    return bytes(b).decode("utf-8", "backslashreplace")


def s32(v: int) -> int:
    v &= U32
    return v - (1 << 32) if v >> 31 else v


def cut_utf8(b: bytes, limit: int) -> bytes:
    """At most `limit` bytes of UTF-8 text `b`, never ending inside a character."""
    if len(b) <= limit:
        return b
    b = b[:limit]
    for k in range(1, min(4, len(b)) + 1):
        c = b[-k]
        if c < 0x80:
            break
        if c >= 0xC0:
            need = 2 if c < 0xE0 else 3 if c < 0xF0 else 4
            if need > k:
                b = b[:-k]
            break
    return b


def needs_norm(p: str) -> bool:
    return (len(p) > 1 and p.endswith("/")) or "//" in p or "/." in p


def addr_text(fam: int, a: bytes, port: int) -> str:
    import ipaddress

    if fam == AF_INET:
        return f"{ipaddress.IPv4Address(a[:4])}:{port}"
    return f"[{ipaddress.IPv6Address(a[:16])}]:{port}"


def proto_word(kind: int) -> str:
    return {FK_TCP: "tcp", FK_UDP: "udp", FK_RAW: "raw", FK_UNIX: "unix"}.get(kind, "socket")


def kind_of_name(name: str) -> int:
    """The kind of an fd named by procfs (lbd.enrich.procfs) or the host."""
    if not name or name[0] == "/":
        return FK_FILE
    if name == "?":
        return FK_UNKNOWN
    word = name.split(" ", 1)[0]
    if word in ("tcp", "udp", "raw", "unix"):
        return {"tcp": FK_TCP, "udp": FK_UDP, "raw": FK_RAW, "unix": FK_UNIX}[word]
    if name == "pipe":
        return FK_PIPE
    if name.startswith("socket:["):
        return FK_SOCK
    return FK_ANON


def kind_of_type(fam: int, typ: int) -> int:
    typ &= 0xF
    if fam in (AF_INET, AF_INET6):
        return {1: FK_TCP, 2: FK_UDP, 3: FK_RAW}.get(typ, FK_SOCK)
    return FK_UNIX if fam == AF_UNIX else FK_SOCK


def sock_word(kind: int, fam: int) -> str:
    if kind in (FK_TCP, FK_UDP, FK_RAW, FK_UNIX):
        return proto_word(kind)
    return {AF_NETLINK: "netlink", AF_PACKET: "packet"}.get(fam, "socket")


def unix_name(path: bytes) -> str:
    if path and path[0] != 0:
        path = path.split(b"\0", 1)[0]
    if not path:
        return "unix"
    if path[0] == 0:
        return "unix @" + text(path[1:])
    return "unix " + text(path)


def inet_name(kind: int, fam: int, la: bytes, lport: int, ra: bytes, rport: int, form: int) -> str:
    w = proto_word(kind) + " "
    if form == 0:
        return w + addr_text(fam, la, lport)
    if form == 1:
        return w + addr_text(fam, la, lport) + "->" + addr_text(fam, ra, rport)
    if form == 2:
        return w + addr_text(fam, ra, rport) + "->" + addr_text(fam, la, lport)
    return w + "->" + addr_text(fam, ra, rport)


def sa_inet(sa: bytes | None):
    if not sa or len(sa) < 2:
        return None
    fam = sa[0] | sa[1] << 8
    if fam == AF_INET and len(sa) >= 8:
        return fam, sa[4:8], sa[2] << 8 | sa[3]
    if fam == AF_INET6 and len(sa) >= 24:
        return fam, sa[8:24], sa[2] << 8 | sa[3]
    return None


class Fd:
    __slots__ = ("name", "cloexec", "kind")

    def __init__(self, name: str, cloexec: bool, kind: int):
        self.name, self.cloexec, self.kind = name, cloexec, kind


class RefProc:
    """A process of the oracle's table (lbd._enrich's struct proc)."""

    __slots__ = ("pid", "ppid", "stale_ppid", "dead", "spec", "ghost", "subreaper", "execed", "cmd_wanted", "incomplete",
                 "comm_raw", "comm", "cmdline", "exe", "cwd", "fds", "dead_ts")

    def __init__(self, pid: int):
        self.pid = pid
        self.ppid = self.stale_ppid = 0
        self.dead = self.spec = self.ghost = self.subreaper = self.execed = self.cmd_wanted = False
        self.incomplete = False
        self.comm_raw = bytes(16)
        self.comm: str | None = None
        self.cmdline: str | None = None
        self.exe: str | None = None
        self.cwd: str | None = None
        self.fds: dict[int, Fd] = {}
        self.dead_ts = 0


class ReferenceEnricher:
    """lbd.enrich.Enricher's contract, one Python step per event (see the module docstring)."""

    def __init__(self, config=None, *, proc_root="/proc", etc_root="/", rich_value_size: int | None = None,
                 max_procs: int = 16384, max_users: int = 4096, max_fds: int = 65536, grace_s: float = 5.0,
                 nss: bool | None = None, scan: bool = True, **_ignored):
        if config is not None and rich_value_size is None:
            from lbd.config import coerce

            rich_value_size = coerce(config).init.rich_value_size
        self.limit = 65536 if rich_value_size is None else rich_value_size
        self.text = self.limit > 0
        self.procfs = ProcFS(proc_root)
        self.accounts = Accounts(etc_root, nss=nss, max_entries=max_users)
        self.max_procs = max_procs
        self.max_fds = max_fds
        self.grace_ns = int(grace_s * 1e9) if grace_s > 0 else 0
        self.procs: OrderedDict[int, RefProc] = OrderedDict()     # least recently used first
        self.dead: OrderedDict[int, RefProc] = OrderedDict()      # in exit order
        self.last: RefProc | None = None
        self.last_pid = 0
        self.protect: RefProc | None = None
        self.now = 0
        self.fd_overflow = 0
        if scan:
            for pid in self.procfs.pids():
                info = self.procfs.process(pid)
                if info is not None:
                    self._seed(pid, info)

    # ---- the table (Engine.lookup / insert / remove / lru_front / mark_dead) ----------------------

    def process(self, pid: int) -> dict | None:
        p = self.procs.get(pid)
        if p is None:
            return None
        return {"pid": p.pid, "ppid": p.ppid, "comm": p.comm, "cmdline": p.cmdline, "exe": p.exe, "cwd": p.cwd,
                "dead": p.dead, "complete": not p.incomplete, "subreaper": p.subreaper,
                "fds": [(fd, f.name, f.cloexec) for fd, f in sorted(p.fds.items())]}

    def _remove(self, p: RefProc) -> None:
        del self.procs[p.pid]
        self.dead.pop(p.pid, None)
        p.dead = False
        if self.last is p:
            self.last = None

    def _insert(self, pid: int) -> RefProc:
        old = self.procs.get(pid)
        if old is not None:
            self._remove(old)
        while len(self.procs) >= self.max_procs:
            victim = next((v for v in self.procs.values() if v is not self.last and v is not self.protect), None)
            if victim is None:
                break
            self._remove(victim)
        p = RefProc(pid)
        self.procs[pid] = p
        return p

    def _mark_dead(self, p: RefProc, ts: int) -> None:
        self.dead.pop(p.pid, None)
        p.dead = True
        p.dead_ts = ts
        self.dead[p.pid] = p

    def _dead_unlink(self, p: RefProc) -> None:
        if p.dead:
            self.dead.pop(p.pid, None)
            p.dead = False

    def _set_comm(self, p: RefProc, comm16: bytes) -> None:
        if p.comm is not None and p.comm_raw == comm16:
            return
        p.comm_raw = comm16
        p.comm = text(comm16.split(b"\0", 1)[0])

    def _seed(self, pid: int, info) -> None:
        ppid, comm, cmdline, exe, cwd, fds = info
        p = self._insert(pid)
        p.ppid = ppid
        cb = bytes(comm)[:15]
        p.comm_raw = cb.ljust(16, b"\0")
        p.comm = text(cb)
        p.cmdline = text(cmdline) if cmdline else None
        p.exe = text(exe) if exe else None
        p.cwd = text(cwd) if cwd else None
        if fds is None:
            p.incomplete = True
        else:
            for fd, name, cloexec in fds:
                self._ft_put(p, fd, text(name), bool(cloexec), kind_of_name(text(name)))

    def _load(self, pid: int, h) -> None:
        """Engine.load: procfs, else the event's header (its own pid) or a placeholder (a parent)."""
        info = self.procfs.process(pid)
        if info is not None:
            self._seed(pid, info)
            return
        p = self._insert(pid)
        if pid == h["pid"]:
            p.ppid = h["ppid"]
            self._set_comm(p, h["comm16"])
            p.incomplete = True
            q = self.procs.get(p.ppid) if p.ppid else None
            if q is not None and q is not p and not q.ghost:
                p.fds = {fd: Fd(f.name, f.cloexec, f.kind) for fd, f in q.fds.items()}
        else:
            p.ghost = p.incomplete = True
            p.comm = ""
            self._mark_dead(p, self.now)

    def _lookup_or_load(self, pid: int, h) -> RefProc:
        p = self.procs.get(pid)
        if p is None:
            self._load(pid, h)
            p = self.procs[pid]
        return p

    # ---- fd tables ----------------------------------------------------------------------------

    def _ft_put(self, p: RefProc, fd: int, name: str, cloexec: bool, kind: int) -> None:
        if not 0 <= fd <= 0x7FFFFFFF:
            return
        f = p.fds.get(fd)
        if f is not None:
            f.cloexec, f.kind, f.name = cloexec, kind, name
            return
        if len(p.fds) >= self.max_fds:
            return
        p.fds[fd] = Fd(name, cloexec, kind)

    def _put_fd(self, p: RefProc, fd: int, name: str, cloexec: bool, kind: int) -> None:
        if len(p.fds) >= self.max_fds and fd not in p.fds:
            self.fd_overflow += 1
        self._ft_put(p, fd, name, cloexec, kind)

    def _dup(self, p: RefProc, old: int, new: int, cloexec: bool) -> None:
        if old == new:
            return
        r = p.fds.get(old)
        if r is None:
            self._put_fd(p, new, "?", cloexec, FK_UNKNOWN)
        else:
            self._put_fd(p, new, r.name, cloexec, r.kind)

    def _resolve(self, p: RefProc, dirfd: int, path: bytes | None) -> str:
        if not path:
            return ""
        base = None
        if path[:1] != b"/":
            if dirfd == AT_FDCWD:
                base = p.cwd
            else:
                r = p.fds.get(dirfd)
                base = r.name if r is not None and r.kind == FK_FILE else None
            if not base or base[0] != "/":
                return text(path)
        joined = ((base if base != "/" else "") + "/" if base is not None else "") + text(path)
        if needs_norm(joined):
            joined = posixpath.normpath(joined)
        return joined

    # ---- per event (Engine.run / apply / row) -----------------------------------------------------

    def enrich(self, batch) -> None:
        ev = batch.events
        n = len(ev)
        arena = memoryview(batch.arena)
        self.now = int(ev["ts"][n - 1]) if n else self.now
        strings: dict[bytes, tuple[int, int]] = {b"": (0, 0)}
        chunks = [b"\0"]
        size = 1
        fdrows: list[tuple[int, int, int]] = []

        def add(s: str) -> tuple[int, int]:
            nonlocal size
            b = s.encode("utf-8", "surrogateescape")
            if self.limit and len(b) > self.limit:
                b = cut_utf8(b, self.limit)
            ref = strings.get(b)
            if ref is None:
                ref = strings[b] = (size, len(b))
                chunks.append(b + b"\0")
                size += len(b) + 1
            return ref

        out = np.zeros(n, dtype=ENRICH_DTYPE)
        for i in range(n):
            e = ev[i]
            rec = int(e["rec"])
            h = {k: int(e[k]) for k in ("pid", "tid", "ppid", "uid", "gid", "nr", "dir", "flags", "res", "pidns", "ts")}
            h["comm16"] = bytes(e["comm"]).ljust(16, b"\0")
            h["args"] = [int(a) for a in e["args"]]

            def payload(k: int, e=e, rec=rec) -> bytes | None:
                ln = int(e["slot"][k]["len"])
                if not ln:
                    return None
                off = rec + int(e["slot"][k]["off"])
                return bytes(arena[off: off + ln])

            xs = None
            if int(e["xslot"]["len"]) >= SOCK.size:
                off = rec + int(e["xslot"]["off"])
                raw = bytes(arena[off: off + int(e["xslot"]["len"])])
                xs = SOCK.unpack_from(raw) + (raw[SOCK.size:],)
            h["payload"], h["xsock"] = payload, xs
            p = self._lookup_or_load(h["pid"], h)
            if not (self.last is not None and self.last_pid == h["pid"]):
                self.procs.move_to_end(p.pid)
                self.last, self.last_pid = p, h["pid"]
            if p.ghost:
                self._dead_unlink(p)
                p.ghost = False
                p.incomplete = True
                p.ppid = h["ppid"]
                p.comm_raw = bytes(16)
                p.comm = None
                self._set_comm(p, h["comm16"])
                q = self.procs.get(p.ppid) if p.ppid else None
                if q is not None and q is not p and not q.ghost and not p.fds:
                    p.fds = {fd: Fd(f.name, f.cloexec, f.kind) for fd, f in q.fds.items()}
            p.spec = False
            if h["tid"] == h["pid"]:
                self._set_comm(p, h["comm16"])
            if h["ppid"] and h["ppid"] != p.ppid and not (h["pidns"] == 0 and h["ppid"] == p.stale_ppid):
                p.ppid = h["ppid"]
            if h["pidns"] == 0 and p.ppid:
                self._reparent_bcc(p)
            if p.execed and _SPECS.get(h["nr"], ("",))[0] not in ("execve", "execrec"):
                p.execed = False            # the exec's execve exit is not coming (not captured)
            self._apply(p, h)
            # the row
            p = self._lookup_or_load(h["pid"], h)
            o = out[i]
            o["ppid"] = p.ppid
            if p.ppid:
                q = self._lookup_or_load(p.ppid, h)
                o["pcomm_off"], o["pcomm_len"] = add(q.comm) if q.comm is not None else (0, 0)
            o["user_off"], o["user_len"] = add(text(self.accounts.user(h["uid"]).encode("utf-8", "surrogateescape")))
            o["group_off"], o["group_len"] = add(text(self.accounts.group(h["gid"]).encode("utf-8", "surrogateescape")))
            if self.text and p.cmdline is None and p.cmd_wanted and not p.execed:
                p.cmd_wanted = False
                cmd = self.procfs.cmdline(p.pid)
                if cmd:
                    p.cmdline = text(cmd)
            cmd = p.cmdline if self.text and p.cmdline is not None else p.comm
            o["cmdline_off"], o["cmdline_len"] = add(cmd) if cmd is not None else (0, 0)
            if self.text and p.exe is not None:
                o["fullpath_off"], o["fullpath_len"] = add(p.exe)
            if self.text and p.fds:
                rows = sorted(p.fds.items())
                total = sum(len(f.name.encode("utf-8", "surrogateescape")) + 1 for _, f in rows)
                if self.limit and total > self.limit:
                    used = k = 0
                    for _, f in rows:
                        used += len(f.name.encode("utf-8", "surrogateescape")) + 1
                        if used > self.limit:
                            break
                        k += 1
                    rows = rows[:k]
                o["fds_off"], o["fds_n"] = len(fdrows), len(rows)
                fdrows.extend((fd, *add(f.name)) for fd, f in rows)
        while self.dead:
            p = next(iter(self.dead.values()))
            if p.dead_ts + self.grace_ns > self.now:
                break
            self._remove(p)
        batch.enrich = out
        batch.strtab = np.frombuffer(b"".join(chunks), dtype=np.uint8).copy()
        batch.fdtab = np.array(fdrows, dtype=FD_DTYPE) if fdrows else np.zeros(0, dtype=FD_DTYPE)
        batch.enriched_generation = batch.generation

    def _reparent_bcc(self, p: RefProc) -> None:
        q = self.procs.get(p.ppid)
        if q is None or not q.dead:
            return
        found, up = 1, q.ppid
        for _ in range(64):
            if up <= 1:
                break
            a = self.procs.get(up)
            if a is None:
                break
            if not a.dead and a.subreaper:
                found = up
                break
            up = a.ppid
        if p.ppid != found:
            p.stale_ppid = p.ppid
            p.ppid = found

    def _fork_child(self, parent: RefProc, child: int, ppid: int, comm16: bytes, spec: bool) -> None:
        if child == 0 or child == parent.pid:
            return
        self.protect = parent
        c = self._insert(child)
        self.protect = None
        c.ppid = ppid or parent.pid
        c.incomplete, c.cmd_wanted, c.spec = parent.incomplete, parent.cmd_wanted, spec
        c.comm_raw = comm16
        c.comm = text(comm16.split(b"\0", 1)[0])
        c.cmdline, c.exe, c.cwd = parent.cmdline, parent.exe, parent.cwd
        c.fds = {fd: Fd(f.name, f.cloexec, f.kind) for fd, f in parent.fds.items()}

    def _take_argv(self, p: RefProc, h, slot: int) -> None:
        b = h["payload"](slot)
        if not b:
            return
        b = b.rstrip(b"\0")
        if not b:
            return
        p.cmdline = text(b).replace("\0", " ")
        p.cmd_wanted = False

    def _exec_image(self, p: RefProc, h, dirfd_arg: int, path_slot: int, argv_slot: int, exe_slot: int) -> None:
        self._set_comm(p, h["comm16"])
        p.cmdline = None
        p.cmd_wanted = True
        if argv_slot >= 0:
            self._take_argv(p, h, argv_slot)
        exe = None
        if exe_slot >= 0:
            b = h["payload"](exe_slot)
            if b:
                exe = text(b)
        if exe is None and path_slot >= 0:
            b = h["payload"](path_slot)
            if b:
                dirfd = s32(h["args"][dirfd_arg]) if dirfd_arg >= 0 else AT_FDCWD
                exe = self._resolve(p, dirfd, b)
        p.exe = exe
        p.fds = {fd: f for fd, f in p.fds.items() if not f.cloexec}

    def _sock_named(self, p: RefProc, h, fd: int, how: int) -> None:
        a = h["args"]
        r = p.fds.get(fd)
        if how == 2:
            k = _ACCEPT_FLAGS.get(h["nr"], -1)
            cloexec = k >= 0 and bool(a[k] & O_CLOEXEC)
        else:
            cloexec = r.cloexec if r is not None else False
        xs = h["xsock"]
        if xs is not None:
            fam, typ, lport, rport, laddr, raddr, upath = xs
            kind = kind_of_type(fam, typ)
            if fam in (AF_INET, AF_INET6):
                if how == 0:
                    form = 0
                elif how == 2:
                    form = 2
                elif rport == 0 and not any(raddr[: 4 if fam == AF_INET else 16]):
                    form = 0
                else:
                    form = 1
                name = inet_name(kind, fam, laddr, lport, raddr, rport, form)
            elif fam == AF_UNIX:
                sa = h["payload"](1) or b""
                if upath:
                    name = unix_name(upath)
                elif how != 2 and len(sa) > 2:
                    name = unix_name(sa[2:])
                elif how == 2:
                    lr = p.fds.get(s32(a[0]))
                    name = lr.name if lr is not None and lr.kind == FK_UNIX else "unix"
                else:
                    name = "unix"
            else:
                return
            self._put_fd(p, fd, name, cloexec, kind)
            return
        sa = h["payload"](1)
        if how == 2:
            lr = p.fds.get(s32(a[0]))
            kind = lr.kind if lr is not None else FK_UNKNOWN
            ia = sa_inet(sa)
            if ia is not None:
                if kind not in (FK_TCP, FK_UDP, FK_RAW):
                    kind = FK_TCP
                fam, addr, port = ia
                name = proto_word(kind) + " " + addr_text(fam, addr, port) + "->"
                if lr is not None:
                    lb = lr.name.encode("utf-8", "surrogateescape")
                    sp = lb.find(b" ")
                    if sp >= 0 and b">" not in lb[sp:]:
                        name += lb[sp + 1: sp + 1 + 100].decode("utf-8", "surrogateescape")
            elif lr is not None:
                name, kind = lr.name, lr.kind
            else:
                name = "?"
            self._put_fd(p, fd, name, cloexec, kind)
            return
        if not sa or len(sa) < 2:
            return
        fam = sa[0] | sa[1] << 8
        kind = r.kind if r is not None else FK_UNKNOWN
        ia = sa_inet(sa)
        if ia is not None:
            if kind not in (FK_TCP, FK_UDP, FK_RAW):
                kind = FK_TCP if kind in (FK_UNKNOWN, FK_FILE) else FK_SOCK
            fam, addr, port = ia
            name = inet_name(kind, fam, addr, port, addr, port, 0 if how == 0 else 3)
        elif fam == AF_UNIX:
            kind = FK_UNIX
            name = unix_name(sa[2:])
        else:
            return
        self._put_fd(p, fd, name, cloexec, kind)

    def _apply(self, p: RefProc, h) -> None:
        nr, res, a = h["nr"], h["res"], h["args"]
        spec = _SPECS.get(nr)
        if spec is None:
            return
        if nr < 1000 and (h["dir"] != record.DIR_EXIT or h["flags"] & record.F_NOENTER):
            return
        kind = spec[0]
        if kind == "forkrec":
            child, tgid = a[1] & U32, a[3] & U32
            if tgid != 0 and tgid != child:
                return
            self._fork_child(p, child, a[0] & U32, h["comm16"], tgid == 0)
            return
        if kind == "execrec":
            self._exec_image(p, h, -1, 2, 3, 4)
            p.execed = True
            return
        if kind == "exitrec":
            child = a[0] & U32
            if a[1]:
                self._mark_dead(p, h["ts"])
            elif child != h["pid"]:
                c = self.procs.get(child)
                if c is not None and c.spec:
                    self._remove(c)
            return
        if kind in ("clone", "fork", "clone3"):
            if res <= 0 or res > U32:
                return
            c = self.procs.get(res)
            if kind == "clone" and a[0] & CLONE_THREAD:
                if c is not None and c.spec:
                    self._remove(c)
                return
            if c is not None and not c.ghost:
                if kind != "clone3":
                    c.spec = False
                return
            if kind == "clone3":
                return
            self._fork_child(p, res, p.pid, h["comm16"], False)
            return
        if kind == "execve":
            if res != 0:
                return
            _, dirfd_arg, path_slot, argv_slot = spec
            if p.execed:
                p.execed = False
                if p.cmd_wanted:
                    self._take_argv(p, h, argv_slot)
                return
            self._exec_image(p, h, dirfd_arg, path_slot, argv_slot, -1)
            return
        if kind == "prctl":
            if res == 0 and a[0] & U32 == 36:
                p.subreaper = bool(a[1])
            return
        if kind == "chdir":
            if res == 0:
                b = h["payload"](0)
                if b:
                    s = self._resolve(p, AT_FDCWD, b)
                    p.cwd = s if s.startswith("/") else None
            return
        if kind == "fchdir":
            if res == 0:
                r = p.fds.get(s32(a[0]))
                p.cwd = r.name if r is not None and r.kind == FK_FILE and r.name.startswith("/") else None
            return
        if kind == "close":
            p.fds.pop(s32(a[0]), None)
            return
        if res < 0:
            if kind == "connect" and res == -EINPROGRESS:
                self._sock_named(p, h, s32(a[0]), 1)
            return
        if kind == "open":
            _, dirfd_arg, path_slot, flags_arg, mask = spec
            ce = flags_arg >= 0 and bool(a[flags_arg] & mask)
            dirfd = s32(a[dirfd_arg]) if dirfd_arg >= 0 else AT_FDCWD
            self._put_fd(p, res, self._resolve(p, dirfd, h["payload"](path_slot)), ce, FK_FILE)
            return
        if kind in ("newfd", "linkfd", "bpf"):
            ce_arg = spec[1]
            ce = True if ce_arg == -2 else (ce_arg >= 0 and bool(a[ce_arg] & spec[2]))
            if kind == "newfd":
                self._put_fd(p, res, spec[3], ce, FK_ANON)
                return
            if kind == "bpf":
                name = _BPF_NAMES.get(a[0] & U32)
                if name is not None:
                    self._put_fd(p, res, name, True, FK_ANON)
                    return
            link = self.procfs.fd_name(p.pid, res)
            name = text(link) if link else "?"
            self._put_fd(p, res, name, ce, kind_of_name(name))
            return
        if kind == "memfd":
            self._put_fd(p, res, "/memfd:" + text(h["payload"](0) or b"") + " (deleted)", bool(a[1] & 1), FK_FILE)
            return
        if kind == "socket":
            k = kind_of_type(a[0] & U32, a[1] & U32)
            self._put_fd(p, res, sock_word(k, a[0] & U32), bool(a[1] & O_CLOEXEC), k)
            return
        if kind == "connect":
            if res == 0:
                self._sock_named(p, h, s32(a[0]), 1)
            return
        if kind == "bind":
            if res == 0:
                self._sock_named(p, h, s32(a[0]), 0)
            return
        if kind == "accept":
            self._sock_named(p, h, res, 2)
            return
        if kind in ("socketpair", "pipe"):
            if res != 0:
                return
            b = h["payload"](3 if kind == "socketpair" else 0)
            if not b or len(b) != 8:
                return
            fd0, fd1 = struct.unpack("<ii", b)
            flags_arg = spec[1]
            ce = flags_arg >= 0 and bool(a[flags_arg] & O_CLOEXEC)
            if kind == "pipe":
                self._put_fd(p, fd0, "pipe", ce, FK_PIPE)
                self._put_fd(p, fd1, "pipe", ce, FK_PIPE)
            else:
                k = kind_of_type(a[0] & U32, a[1] & U32)
                name = sock_word(k, a[0] & U32)
                self._put_fd(p, fd0, name, ce, k)
                self._put_fd(p, fd1, name, ce, k)
            return
        if kind == "dup":
            self._dup(p, s32(a[0]), res, False)
        elif kind == "dup3":
            self._dup(p, s32(a[0]), res, bool(a[2] & O_CLOEXEC))
        elif kind == "fcntl":
            cmd = a[1] & U32
            if cmd in (0, 1030):
                self._dup(p, s32(a[0]), res, cmd == 1030)
            elif cmd == 2:
                r = p.fds.get(s32(a[0]))
                if r is not None:
                    r.cloexec = bool(a[2] & 1)
        elif kind == "ioctl":
            cmd = a[1] & U32
            if res == 0 and cmd in (0x5450, 0x5451):
                r = p.fds.get(s32(a[0]))
                if r is not None:
                    r.cloexec = cmd == 0x5451
        elif kind == "close_range":
            if res != 0:
                return
            first, last = a[0] & U32, a[1] & U32
            for fd in [fd for fd in p.fds if first <= fd <= last]:
                if a[2] & 4:
                    p.fds[fd].cloexec = True
                else:
                    del p.fds[fd]


_BPF_NAMES = {0: "anon_inode:bpf-map", 14: "anon_inode:bpf-map", 5: "anon_inode:bpf-prog",
              13: "anon_inode:bpf-prog", 17: "anon_inode:bpf_link", 28: "anon_inode:bpf_link",
              30: "anon_inode:bpf_link", 18: "anon_inode:btf", 19: "anon_inode:btf"}

_ANON = {
    "eventfd": (-1, 0, "anon_inode:[eventfd]"), "eventfd2": (1, O_CLOEXEC, "anon_inode:[eventfd]"),
    "epoll_create": (-1, 0, "anon_inode:[eventpoll]"), "epoll_create1": (0, O_CLOEXEC, "anon_inode:[eventpoll]"),
    "timerfd_create": (1, O_CLOEXEC, "anon_inode:[timerfd]"), "signalfd": (-1, 0, "anon_inode:[signalfd]"),
    "signalfd4": (3, O_CLOEXEC, "anon_inode:[signalfd]"), "inotify_init": (-1, 0, "anon_inode:inotify"),
    "inotify_init1": (0, O_CLOEXEC, "anon_inode:inotify"), "fanotify_init": (0, 1, "anon_inode:[fanotify]"),
    "userfaultfd": (0, O_CLOEXEC, "anon_inode:[userfaultfd]"), "io_uring_setup": (-2, 0, "anon_inode:[io_uring]"),
    "perf_event_open": (4, 8, "anon_inode:[perf_event]"), "pidfd_open": (-2, 0, "anon_inode:[pidfd]"),
    "fsopen": (1, 1, "anon_inode:[fscontext]"), "fspick": (2, 1, "anon_inode:[fscontext]"),
    "landlock_create_ruleset": (-2, 0, "anon_inode:landlock-ruleset"),
}

#: nr -> (handler kind, parameters...): lbd/_enrich.pyx's _SPECS, read the same way
_SPECS: dict[int, tuple] = {
    NR_FORK: ("forkrec",), NR_EXEC: ("execrec",), NR_EXIT: ("exitrec",),
    _nr("clone"): ("clone",), _nr("clone3"): ("clone3",), _nr("fork"): ("fork",), _nr("vfork"): ("fork",),
    _nr("execve"): ("execve", -1, 0, 1), _nr("execveat"): ("execve", 0, 1, 2),
    _nr("prctl"): ("prctl",), _nr("chdir"): ("chdir",), _nr("fchdir"): ("fchdir",),
    _nr("open"): ("open", -1, 0, 1, O_CLOEXEC), _nr("openat"): ("open", 0, 1, 2, O_CLOEXEC),
    _nr("openat2"): ("open", 0, 1, -1, 0), _nr("creat"): ("open", -1, 0, -1, 0),
    _nr("open_tree"): ("open", 0, 1, 2, O_CLOEXEC),
    _nr("open_by_handle_at"): ("linkfd", 2, O_CLOEXEC), _nr("pidfd_getfd"): ("linkfd", -2, 0),
    _nr("fsmount"): ("linkfd", 1, 1), _nr("bpf"): ("bpf", -2, 0),
    _nr("memfd_create"): ("memfd",), _nr("socket"): ("socket",), _nr("connect"): ("connect",),
    _nr("bind"): ("bind",), _nr("accept"): ("accept",), _nr("accept4"): ("accept",),
    _nr("socketpair"): ("socketpair", 1), _nr("pipe"): ("pipe", -1), _nr("pipe2"): ("pipe", 1),
    _nr("dup"): ("dup",), _nr("dup2"): ("dup",), _nr("dup3"): ("dup3",), _nr("fcntl"): ("fcntl",),
    _nr("close"): ("close",), _nr("close_range"): ("close_range",), _nr("ioctl"): ("ioctl",),
    **{_nr(name): ("newfd", arg, mask, fixed) for name, (arg, mask, fixed) in _ANON.items()},
}
_ACCEPT_FLAGS = {_nr("accept"): -1, _nr("accept4"): 3}
