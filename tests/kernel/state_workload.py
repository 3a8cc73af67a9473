"""The scripted workload of tests/kernel/test_state_truth.py: it writes its own ground truth.

Run by copies of the Python interpreter whose names are the workload's process names (lbd-gt-root,
svc-nginx, leaf, thr-exec: an exec renames a process), as `NAME state_workload.py ROLE`.  At each
step a process (or thread) writes one JSON line to the ground-truth pipe (fd $LBD_GT_FD): its pid,
tid, ppid, its parent's comm, its command line, its executable and its whole fd table as /proc
shows them at that moment; then it makes the marker syscalls the test matches steps by:
mkdir("/proc/lbd-gt/TID-N") (fails: ENOENT) and, when the step is about one fd, ftruncate(fd, N).
Between the truth and the markers the process changes nothing.

fd names are written the way lbd names fds (README, "Process and fd context"), computed here from
/proc alone: files by path, "pipe", anonymous inodes as /proc shows them, sockets resolved through
/proc/self/net/{tcp,tcp6,udp,udp6,unix} ("tcp L" listening, "tcp L->R" from the client's side,
"tcp CLIENT->SERVER" on the server's side of a connection to a local listening port), except the
client end of a unix connection, which /proc/net/unix does not name: the workload knows the path
it connected to.

The workload: process trees with exec renames (eaw -> svc-nginx -> child leaf), short-lived
processes (fork without exec; /bin/true and sh -c), an fd lifecycle (open, dup, dup2, dup3,
F_DUPFD, F_DUPFD_CLOEXEC, pipe, socketpair, TCP and unix listen/connect/accept, IPv6, eventfd,
memfd, chdir / fchdir and relative opens, openat with a directory fd, close, close_range), threads
(with their own comm, their own fds, forking), prctl renames, reparenting to a subreaper, and an
exec from a non-main thread.
"""
from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
import time

LIBC = ctypes.CDLL(None, use_errno=True)
GT_FD = int(os.environ["LBD_GT_FD"])
BIN = os.environ["LBD_GT_BIN"]            # the directory of the interpreter copies
TMP = os.environ["LBD_GT_TMP"]            # scratch files
ME = os.path.abspath(__file__)
PR_SET_NAME, PR_SET_CHILD_SUBREAPER = 15, 36
_unix_peer: dict[int, str] = {}           # client unix sockets this process connected: fd -> path
_count = {}
_lock = threading.Lock()
# step numbers of this image start here: a process that execs keeps its tid and counts anew
_BASE = (time.monotonic_ns() // 1000) % 1_000_000 * 1000


def set_comm(name: str) -> None:
    LIBC.prctl(PR_SET_NAME, name.encode(), 0, 0, 0)


def _read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "backslashreplace")


def _addr(hexaddr: str, port: int) -> str:
    raw = bytes.fromhex(hexaddr)
    packed = b"".join(int.from_bytes(raw[i: i + 4], "big").to_bytes(4, "little") for i in range(0, len(raw), 4))
    if len(packed) == 4:
        return f"{ipaddress.IPv4Address(packed)}:{port}"
    return f"[{ipaddress.IPv6Address(packed)}]:{port}"


def _sockets() -> dict[int, str]:
    """inode -> fd name, from /proc/self/net."""
    rows, listening, names = [], set(), {}
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        for line in _read(f"/proc/self/net/{proto}").splitlines()[1:]:
            f = line.split()
            (la, lp), (ra, rp) = (x.split(":") for x in f[1:3])
            row = (proto.rstrip("6"), la, int(lp, 16), ra, int(rp, 16), int(f[3], 16), int(f[9]))
            rows.append(row)
            if row[0] == "tcp" and row[5] == 0x0A:
                listening.add(row[2])
    for word, la, lp, ra, rp, st, ino in rows:
        local = _addr(la, lp)
        if (word == "tcp" and st == 0x0A) or int(ra, 16) == 0 and rp == 0:
            names[ino] = f"{word} {local}"
        elif word == "tcp" and lp in listening:
            names[ino] = f"{word} {_addr(ra, rp)}->{local}"
        else:
            names[ino] = f"{word} {local}->{_addr(ra, rp)}"
    for line in _read("/proc/self/net/unix").splitlines()[1:]:
        f = line.split(None, 7)
        names[int(f[6])] = f"unix {f[7].strip()}" if len(f) > 7 and f[7].strip() else "unix"
    return names


def fd_table() -> dict[str, str]:
    links = {}
    for x in os.listdir("/proc/self/fd"):
        try:
            links[int(x)] = os.readlink(f"/proc/self/fd/{x}")
        except OSError:
            pass                           # the listing's own directory fd, closed by now
    socks = None
    out = {}
    for fd, link in sorted(links.items()):
        if link.startswith("socket:["):
            if fd in _unix_peer:
                link = _unix_peer[fd]
            else:
                socks = socks if socks is not None else _sockets()
                link = socks.get(int(link[8:-1]), link)
        elif link.startswith("pipe:["):
            link = "pipe"
        out[str(fd)] = link
    return out


def step(focus: int | None = None) -> None:
    """Write the truth of this moment, then the markers."""
    tid = threading.get_native_id()
    with _lock:
        n = _count[tid] = _count.get(tid, _BASE) + 1
    ppid = os.getppid()
    truth = {
        "key": f"{tid}-{n}", "pid": os.getpid(), "tid": tid, "ppid": ppid,
        "pcomm": _read(f"/proc/{ppid}/comm").rstrip("\n"),
        "cmdline": _read("/proc/self/cmdline").rstrip("\0").replace("\0", " "),
        "exe": os.readlink("/proc/self/exe"), "fds": fd_table(), "focus": focus,
    }
    line = (json.dumps(truth) + "\n").encode()
    assert len(line) <= 4096, "a truth line must fit one atomic pipe write"
    os.write(GT_FD, line)
    try:
        os.mkdir(f"/proc/lbd-gt/{tid}-{n}")
    except OSError:
        pass
    if focus is not None:
        try:
            os.ftruncate(focus, n)
        except OSError:
            pass


def run(argv: list[str]) -> None:
    """fork + exec without Python's subprocess machinery (no helper fds)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    os.waitpid(pid, 0)


def child(fn) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fn()
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        os._exit(code)
    return pid


def wait(pid: int) -> None:
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"child {pid} failed")


# ---- roles --------------------------------------------------------------------------------------

def fd_lifecycle() -> None:
    d = os.path.join(TMP, f"fds-{os.getpid()}")
    os.mkdir(d)
    f = os.open(os.path.join(d, "a.txt"), os.O_RDWR | os.O_CREAT, 0o600)
    step(f)
    g = os.dup(f)                                          # fcntl(F_DUPFD_CLOEXEC)
    step(g)
    os.dup2(f, 10)                                         # dup2
    step(10)
    os.dup2(f, 11, inheritable=False)                      # dup3(O_CLOEXEC)
    step(11)
    h = fcntl.fcntl(f, fcntl.F_DUPFD, 20)
    step(h)
    r, w = os.pipe()
    step(w)
    a, b = socket.socketpair()
    step(a.fileno())
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    step(srv.fileno())
    cli = socket.create_connection(("127.0.0.1", srv.getsockname()[1]))
    step(cli.fileno())
    conn, _ = srv.accept()
    step(conn.fileno())
    six = []
    try:
        s6 = socket.create_server(("::1", 0), family=socket.AF_INET6)
        c6 = socket.create_connection(("::1", s6.getsockname()[1]))
        a6, _ = s6.accept()
        six = [s6, c6, a6]
        step(a6.fileno())
    except OSError:
        pass
    path = os.path.join(d, "u.sock")
    us = socket.socket(socket.AF_UNIX)
    us.bind(path)
    us.listen(1)
    step(us.fileno())
    uc = socket.socket(socket.AF_UNIX)
    uc.connect(path)
    _unix_peer[uc.fileno()] = f"unix {path}"
    step(uc.fileno())
    ua, _ = us.accept()
    step(ua.fileno())
    e = os.eventfd(0)
    step(e)
    m = os.memfd_create("lbd-gt")
    step(m)
    os.close(g)
    step()
    os.closerange(10, 12)                                  # close_range(10, 11)
    step()
    os.chdir(d)
    rel = os.open("rel.txt", os.O_RDWR | os.O_CREAT, 0o600)
    step(rel)
    sub = os.path.join(d, "sub")
    os.mkdir(sub)
    dfd = os.open(sub, os.O_RDONLY | os.O_DIRECTORY)
    at = os.open("in-sub.txt", os.O_RDWR | os.O_CREAT, 0o600, dir_fd=dfd)
    step(at)
    os.fchdir(dfd)
    up = os.open("../up.txt", os.O_RDWR | os.O_CREAT, 0o600)
    step(up)
    for s in (a, b, srv, cli, conn, us, uc, ua, *six):
        _unix_peer.pop(s.fileno(), None)
        s.close()
    for x in (f, h, r, w, e, m, rel, dfd, at, up):
        os.close(x)
    step()


def svc() -> None:
    """svc-nginx (exec'd from eaw): spawns a leaf, a shell and a /bin/true."""
    step()
    wait(child(lambda: os.execv(os.path.join(BIN, "leaf"), ["leaf", ME, "leaf"])))
    run(["/bin/sh", "-c", "/bin/true lbd-gt-sh; exit 0"])
    run(["/bin/true", "lbd-gt-true"])
    step()


def leaf() -> None:
    step()
    f = os.open(os.path.join(TMP, f"leaf-{os.getpid()}"), os.O_RDWR | os.O_CREAT, 0o600)
    step(f)
    os.close(f)
    step()


def threads() -> None:
    set_comm("lbd-thr-main")
    step()
    out = {}

    def t1():
        set_comm("thr-a")
        f = os.open(os.path.join(TMP, f"thr-{os.getpid()}"), os.O_RDWR | os.O_CREAT, 0o600)
        out["f"] = f
        step(f)

    def t2():
        a, b = socket.socketpair()
        step(a.fileno())
        wait(child(lambda: (step(), step(b.fileno()))))     # forked by a thread: parent comm = leader's
        a.close()
        b.close()

    for fn in (t1, t2):
        t = threading.Thread(target=fn)
        t.start()
        t.join()
    step(out["f"])                                          # the thread's fd, seen by the leader
    os.close(out["f"])
    step()


def reparent() -> None:
    set_comm("lbd-f")
    r, w = os.pipe()
    f = os.getpid()

    def g():
        set_comm("lbd-g")
        step()
        os.write(w, b"s")
        while os.getppid() == f:
            time.sleep(0.001)
        step()                                               # the subreaper's child now

    child(g)
    os.read(r, 1)


def thread_exec() -> None:
    step()

    def go():
        os.execv(os.path.join(BIN, "thr-exec"), ["thr-exec", ME, "after-exec"])

    t = threading.Thread(target=go)
    t.start()
    t.join()


def after_exec() -> None:
    step()


def root() -> None:
    if LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError("PR_SET_CHILD_SUBREAPER")
    step()
    wait(child(fd_lifecycle))                                # fork without exec
    wait(child(lambda: (set_comm("lbd-fds2"), wait(child(fd_lifecycle)))))

    def eaw():
        set_comm("eaw")
        step()
        os.execv(os.path.join(BIN, "svc-nginx"), ["svc-nginx", ME, "svc", "--port=8080"])

    wait(child(eaw))
    wait(child(threads))
    wait(child(reparent))                                    # F exits; G, its child, is ours now
    os.waitpid(-1, 0)                                        # reap G
    wait(child(thread_exec))
    for k in range(16):                                      # short-lived processes
        wait(child(step))
        run(["/bin/true", f"lbd-gt-{k}"])
    set_comm("root-renamed")
    step()
    wait(child(lambda: (step(), step())))
    subprocess.run(["/bin/true"], check=True)                # Python's own spawn path
    step()
    os.write(GT_FD, b"END\n")


ROLES = {"root": root, "svc": svc, "leaf": leaf, "after-exec": after_exec}

if __name__ == "__main__":
    ROLES[sys.argv[1]]()
