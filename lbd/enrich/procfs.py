"""Reads of /proc (or a fake tree with the same layout under another root, for tests): the state
engine's view of processes that existed before the capture, or that it never saw start.

Every reader returns None when the process is gone (or the file cannot be read) and never raises
for a missing or unreadable process: the caller keeps what the kernel captured.  Text is returned
as bytes, as the kernel gives it (the engine makes it text).

fd names are given the way the engine names fds from events (lbd/_enrich.pyx): paths as the link
says, "socket:[INODE]" resolved from the process's network namespace's /proc/PID/net/{tcp,tcp6,
udp,udp6,unix} into "tcp 10.0.0.1:41067->10.0.0.2:80" (client->server: a connection to a local
listening port is shown from its peer), "tcp 127.0.0.1:8080" (listening or bound), "udp ...",
"unix /path" or "unix"; "pipe:[INODE]" as "pipe"; anonymous inodes as the link says.
"""
from __future__ import annotations

import ipaddress
import os
import struct
import time

O_CLOEXEC = 0o2000000  # the kernel's value, as /proc/<pid>/fdinfo/<fd> "flags:" shows it (octal)
TCP_LISTEN = 0x0A



def _addr(hexaddr: str, port: int) -> str:
    """An address of /proc/net/tcp{,6} ("0100007F" / 32 hex digits, u32 words in host order)."""
    raw = bytes.fromhex(hexaddr)
    words = [raw[i: i + 4] for i in range(0, len(raw), 4)]
    packed = b"".join(struct.pack("<I", int.from_bytes(w, "big")) for w in words)
    if len(packed) == 4:
        return f"{ipaddress.IPv4Address(packed)}:{port}"
    return f"[{ipaddress.IPv6Address(packed)}]:{port}"


def _split(endpoint: str) -> tuple[str, int]:
    a, _, p = endpoint.partition(":")
    return a, int(p, 16)


class SocketNames:
    """inode -> fd name of one network namespace, from its /proc/PID/net files."""

    def __init__(self, netdir: str, reads: list):
        self.names: dict[int, bytes] = {}
        inet = []                       # (word, laddr, lport, raddr, rport, state, inode)
        listening: set[tuple[str, int]] = set()
        for proto in ("tcp", "tcp6", "udp", "udp6"):
            text = _read_text(f"{netdir}/{proto}", reads)
            if text is None:
                continue
            for line in text.splitlines()[1:]:
                f = line.split()
                if len(f) < 10:
                    continue
                try:
                    la, lp = _split(f[1])
                    ra, rp = _split(f[2])
                    st = int(f[3], 16)
                    ino = int(f[9])
                except ValueError:
                    continue
                if ino == 0:
                    continue
                word = proto.rstrip("6")
                inet.append((word, la, lp, ra, rp, st, ino))
                if word == "tcp" and st == TCP_LISTEN:
                    listening.add((la, lp))
        for word, la, lp, ra, rp, st, ino in inet:
            local = _addr(la, lp)
            if (word == "tcp" and st == TCP_LISTEN) or (rp == 0 and int(ra, 16) == 0):
                name = f"{word} {local}"
            else:
                remote = _addr(ra, rp)
                server = word == "tcp" and ((la, lp) in listening or ("0" * len(la), lp) in listening)
                name = f"{word} {remote}->{local}" if server else f"{word} {local}->{remote}"
            self.names[ino] = name.encode()
        text = _read_text(f"{netdir}/unix", reads)
        for line in (text or "").splitlines()[1:]:
            f = line.split(None, 7)
            if len(f) < 7:
                continue
            try:
                ino = int(f[6])
            except ValueError:
                continue
            path = f[7].strip() if len(f) > 7 else ""
            self.names[ino] = (f"unix {path}" if path else "unix").encode("utf-8", "surrogateescape")

    def get(self, inode: int) -> bytes | None:
        return self.names.get(inode)


def _read_text(path: str, reads: list) -> str | None:
    reads[0] += 1
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "surrogateescape")
    except OSError:
        return None


class ProcFS:
    """procfs under `root` (default "/proc").  Counts its reads and the processes found gone.

    Socket inodes are resolved per network namespace (the /proc/PID/ns/net link; its tables read
    once, from that process's /proc/PID/net), so one scan reads each namespace's tables once.
    """

    def __init__(self, root: str | os.PathLike = "/proc", net_max_age_s: float = 1.0):
        self.root = os.fspath(root)
        self._reads = [0]
        self.vanished = 0
        self._nets: dict[bytes, SocketNames] = {}
        self._nets_time = 0.0
        self.net_max_age_s = net_max_age_s

    @property
    def reads(self) -> int:
        return self._reads[0]

    def _path(self, pid: int, name: str) -> str:
        return f"{self.root}/{pid}/{name}"

    def read(self, pid: int, name: str) -> bytes | None:
        self._reads[0] += 1
        try:
            with open(self._path(pid, name), "rb") as f:
                return f.read()
        except OSError:
            return None

    def readlink(self, pid: int, name: str) -> bytes | None:
        self._reads[0] += 1
        try:
            return os.readlink(os.fsencode(self._path(pid, name)))
        except OSError:
            return None

    def pids(self) -> list[int]:
        """The processes (thread groups) procfs lists now."""
        try:
            names = os.listdir(self.root)
        except OSError:
            return []
        return sorted(int(n) for n in names if n.isdigit())

    def stat(self, pid: int) -> tuple[bytes, int] | None:
        """(comm, ppid) from /proc/<pid>/stat; None when the process is gone."""
        raw = self.read(pid, "stat")
        if not raw:
            return None
        try:
            head, tail = raw.rsplit(b")", 1)
            return head.split(b"(", 1)[1], int(tail.split()[1])
        except (ValueError, IndexError):
            return None

    def cmdline(self, pid: int) -> bytes | None:
        """The command line, arguments joined by spaces; None if empty or unreadable."""
        raw = self.read(pid, "cmdline")
        if not raw:
            return None
        return raw.rstrip(b"\0").replace(b"\0", b" ")

    def process(self, pid: int) -> tuple | None:
        """(ppid, comm, cmdline, exe, cwd, fds) of one process, None when it is gone: what the
        state engine seeds an entry with (lbd._enrich.Engine.seed)."""
        st = self.stat(pid)
        if st is None:
            self.vanished += 1
            return None
        comm, ppid = st
        return (ppid, comm, self.cmdline(pid), self.readlink(pid, "exe"), self.readlink(pid, "cwd"), self.fds(pid))

    def _net(self, pid: int) -> SocketNames:
        now = time.monotonic()
        if now - self._nets_time > self.net_max_age_s:
            self._nets.clear()           # a snapshot: read again when it is older than that
            self._nets_time = now
        key = self.readlink(pid, "ns/net") or b""
        net = self._nets.get(key)
        if net is None:
            net = SocketNames(self._path(pid, "net") if key else f"{self.root}/net", self._reads)
            if len(self._nets) > 64:
                self._nets.clear()
            self._nets[key] = net
        return net

    def _name(self, pid: int, link: bytes) -> bytes:
        """An fd link as the engine names fds (sockets by address, pipes as "pipe")."""
        if link.startswith(b"socket:["):
            try:
                found = self._net(pid).get(int(link[8:-1]))
            except ValueError:
                found = None
            return found if found is not None else link
        if link.startswith(b"pipe:["):
            return b"pipe"
        return link

    def fd_name(self, pid: int, fd: int) -> bytes | None:
        """One fd's name (None: not open, or the process is gone)."""
        link = self.readlink(pid, f"fd/{fd}")
        return None if link is None else self._name(pid, link)

    def fds(self, pid: int) -> list[tuple[int, bytes, bool]] | None:
        """The open files [(fd, name, close-on-exec)] sorted by fd; None when the process is gone."""
        d = self._path(pid, "fd")
        self._reads[0] += 1
        try:
            names = os.listdir(d)
        except OSError:
            return None
        out = []
        for name in names:
            try:
                fd = int(name)
            except ValueError:
                continue
            self._reads[0] += 1
            try:
                link = os.readlink(os.fsencode(f"{d}/{name}"))
            except OSError:
                continue  # closed meanwhile
            link = self._name(pid, link)
            ce = False
            info = self.read(pid, f"fdinfo/{name}")
            if info:
                for line in info.splitlines():
                    if line.startswith(b"flags:"):
                        try:
                            ce = bool(int(line.split()[1], 8) & O_CLOEXEC)
                        except (ValueError, IndexError):
                            pass
                        break
            out.append((fd, link, ce))
        out.sort()
        return out
