"""Process context the probe reads in the kernel (CO-RE): namespaces, cgroup, login uid, the real
parent after reparenting, the exec record's argv and executable, sockets behind fds, and
arguments whose user memory was not yet present at enter (read again at exit).

Under the bcc loader (LBD_LOADER=bcc) the CO-RE reads do not exist: the same tests check the
fallback (fields 0 or absent, the parent at fork time) instead of skipping.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from lbd import record
from lbd.args import UNREADABLE
from tests.kernel.conftest import LIBC, by_name, one, sched, syscall

PR_SET_CHILD_SUBREAPER = 36


def core(cap) -> bool:
    return cap.probe.core


def test_namespaces_and_login_uid(cap):
    def work():
        os.getppid()
        return (os.stat("/proc/self/ns/pid").st_ino, os.stat("/proc/self/ns/mnt").st_ino,
                int(open("/proc/self/loginuid").read()))

    ev = cap.run(work, syscalls=["getppid"])
    pidns, mntns, loginuid = cap.result
    e = one(ev, "getppid")
    if core(cap):
        assert (e.extra["pidns"], e.extra["mntns"], e.extra["loginuid"]) == (pidns, mntns, loginuid)
    else:
        assert (e.extra["pidns"], e.extra["mntns"], e.extra["loginuid"]) == (0, 0, 0)


def test_pid_namespace_of_a_child_in_a_new_one(cap):
    """unshare(CLONE_NEWPID): the caller stays in its namespace, its next child is in the new one."""
    CLONE_NEWPID = 0x20000000

    def work():
        if LIBC.unshare(CLONE_NEWPID) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWPID)")
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            os.getppid()
            os.write(w, str(os.stat("/proc/self/ns/pid").st_ino).encode())
            os._exit(0)
        os.close(w)
        child_ns = int(os.read(r, 64))
        os.waitpid(pid, 0)
        os.getppid()
        return os.stat("/proc/self/ns/pid").st_ino, child_ns

    ev = cap.run(work, syscalls=["getppid"])
    mine, childs = cap.result
    assert mine != childs
    got = sorted((e.pid == cap.child_pid, e.extra["pidns"]) for e in by_name(ev, "getppid"))
    if core(cap):
        assert got == [(False, childs), (True, mine)]
    else:
        assert [ns for _, ns in got] == [0, 0]


def _cgroup2_root() -> Path | None:
    for line in open("/proc/self/mountinfo"):
        parts = line.split()
        sep = parts.index("-")
        if parts[sep + 1] == "cgroup2":
            return Path(parts[4])
    return None


def test_cgroup_id_is_the_cgroup_directory_inode(cap):
    root = _cgroup2_root()
    if root is None:
        pytest.skip("no cgroup v2 hierarchy mounted")
    group = Path(tempfile.mkdtemp(prefix="lbd-test-", dir=root))
    try:
        def work():
            (group / "cgroup.procs").write_text(str(os.getpid()))
            time.sleep(0.05)                    # past the probe's 10 ms identity cache
            os.getppid()

        ev = cap.run(work, syscalls=["getppid"])
        e = one(ev, "getppid")
        # bpf_get_current_cgroup_id() needs no CO-RE: both loaders
        assert e.extra["cgroup_id"] == os.stat(group).st_ino
    finally:
        os.rmdir(group)


def test_parent_follows_reparenting_to_a_subreaper(cap):
    """A (subreaper) -> B -> C; B exits; C's next syscall has parent A (CO-RE reads the task's real
    parent at every record; bcc keeps the parent at fork time)."""

    def work():
        if LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "PR_SET_CHILD_SUBREAPER")
        r, w = os.pipe()
        go_r, go_w = os.pipe()
        seen_r, seen_w = os.pipe()
        b = os.fork()
        if b == 0:
            c = os.fork()
            if c == 0:
                os.getppid()                        # before: parent B
                os.write(seen_w, b"s")
                os.read(go_r, 1)                    # B has exited
                while os.getppid() != int(open("/proc/self/stat").read().split()[3]):
                    pass
                os.getppid()                        # after: parent A
                os.write(w, str(os.getpid()).encode())
                os._exit(0)
            os.read(seen_r, 1)                      # C has made its first getppid under B
            os._exit(0)
        os.waitpid(b, 0)                            # B gone: C is A's child now
        os.write(go_w, b"g")
        c = int(os.read(r, 64))
        os.waitpid(c, 0)                            # the subreaper reaps it
        return b, c

    ev = cap.run(work, syscalls=["getppid"], only_pids=[], only_comms=["lbd-reap"], comm="lbd-reap")
    b, c = cap.result
    mine = [e for e in by_name(ev, "getppid") if e.pid == c]
    assert mine[0].ppid == b
    if core(cap):
        assert mine[-1].ppid == cap.child_pid
    else:
        assert mine[-1].ppid == b


def test_exec_record_has_argv_and_executable(cap, tmp_path):
    """Only openat selected: the exec record (a state record) still carries the new image's argv
    and the executable's resolved path (CO-RE)."""
    target = tmp_path / "data"
    target.write_text("x")

    def work():
        subprocess.run(["/bin/cat", str(target)], check=True, stdout=subprocess.DEVNULL)

    cap.run(work, syscalls=["openat"])
    execs = [e for e in sched(cap.all_events, "exec") if e.args["filename"] == "/bin/cat"]
    assert len(execs) == 1, execs
    x = execs[0]
    if core(cap):
        assert x.args["argv"] == ["/bin/cat", str(target)]
        assert x.args["exe"] == os.path.realpath("/bin/cat")
    else:
        assert x.args["argv"] is None and x.args["exe"] is None
    assert x.comm == "cat"


FORK_PROG = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
/* Each string on its own page, touched by nobody before the child's syscall: after fork the child
 * has no page table entry for it yet, so the probe's read at enter faults. */
__attribute__((aligned(4096))) static const char path[4096] = "/etc/hostname";
__attribute__((aligned(4096))) static const char prog[4096] = "/bin/true";
__attribute__((aligned(4096))) static const char arg1[4096] = "untouched-arg";
int main(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY);
        if (fd >= 0)
            close(fd);
        pid_t c = fork();
        if (c == 0) {
            const char *argv[] = {prog, arg1, NULL};
            syscall(SYS_execve, prog, argv, NULL);
            _exit(127);
        }
        waitpid(c, NULL, 0);
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    return 0;
}
"""


@pytest.fixture(scope="module")
def fork_prog(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler to build the fork-then-syscall program")
    d = tmp_path_factory.mktemp("forkprog")
    src, exe = d / "forkprog.c", d / "forkprog"
    src.write_text(FORK_PROG)
    subprocess.run([cc, "-O1", "-o", str(exe), str(src)], check=True)
    return exe


def test_arguments_in_untouched_pages_after_fork(cap, fork_prog):
    """The reproduction of the issue: a forked child's openat and execve whose strings live in
    pages it has not touched.  The probe reads them again at exit (openat) and takes execve's from
    the kernel (filename) and the new image (argv); the records are flagged LBD_F_REREAD."""

    def work():
        subprocess.run([str(fork_prog)], check=True)

    before = cap.stats()
    ev = cap.run(work, syscalls=["openat", "execve"], capture_env=False)
    d = {k: cap.stats()[k] - before[k] for k in before}
    opens = [e for e in by_name(ev, "openat") if e.args["filename"] == "/etc/hostname"]
    assert len(opens) == 1, [(e.name, e.args) for e in by_name(ev, "openat")]
    o = opens[0]
    assert o.res >= 0 and not o.flags & (0x3F << record.F_FAULT_SHIFT)
    execs = [e for e in by_name(ev, "execve") if e.comm == "true"]
    assert len(execs) == 1, [(e.name, e.args) for e in by_name(ev, "execve")]
    x = execs[0]
    if not core(cap):
        # bcc: the old image's memory is gone at exit and nothing else has the strings: they stay
        # marked unreadable (faulted), not shown as NULL pointers
        assert x.args["filename"] is UNREADABLE and x.flags & (1 << record.F_FAULT_SHIFT)
        assert o.flags & record.F_REREAD and d["reread"] >= 1
        return
    assert x.args["filename"] == "/bin/true"
    assert x.args["argv"] == ["/bin/true", "untouched-arg"]
    assert x.res == 0 and x.flags & record.F_NEWIMAGE
    # at least one of them faulted at enter and was recovered (the page was not present)
    assert (o.flags | x.flags) & record.F_REREAD
    assert d["reread"] >= 1


def test_socket_behind_bind_accept_connect(cap):
    """bind to port 0, connect, accept: the records carry the socket (CO-RE), with the port the
    kernel chose and the peer's ephemeral port."""

    def work():
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        cli = socket.socket()
        cli.connect(("127.0.0.1", port))
        conn, peer = srv.accept()
        out = (port, cli.getsockname()[1], srv.fileno(), cli.fileno(), conn.fileno())
        for s in (conn, cli, srv):
            s.close()
        return out

    ev = cap.run(work, syscalls=["bind", "connect", "accept4", "accept"])
    port, cport, sfd, cfd, afd = cap.result
    b = one(ev, "bind")
    c = one(ev, "connect")
    a = [e for e in by_name(ev, "accept4") + by_name(ev, "accept") if e.res == afd]
    assert len(a) == 1
    if not core(cap):
        assert b.sock is None and c.sock is None and a[0].sock is None
        return
    assert b.sock == {"family": socket.AF_INET, "type": socket.SOCK_STREAM, "laddr": "127.0.0.1", "lport": port,
                      "raddr": "0.0.0.0", "rport": 0}
    assert c.sock == {"family": socket.AF_INET, "type": socket.SOCK_STREAM, "laddr": "127.0.0.1", "lport": cport,
                      "raddr": "127.0.0.1", "rport": port}
    assert a[0].sock == {"family": socket.AF_INET, "type": socket.SOCK_STREAM, "laddr": "127.0.0.1",
                         "lport": port, "raddr": "127.0.0.1", "rport": cport}


def test_unix_socket_path(cap, tmp_path):
    path = str(tmp_path / "s.sock")

    def work():
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(path)
        srv.listen(1)
        cli = socket.socket(socket.AF_UNIX)
        cli.connect(path)
        conn, _ = srv.accept()
        for s in (conn, cli, srv):
            s.close()

    ev = cap.run(work, syscalls=["bind", "connect"])
    b, c = one(ev, "bind"), one(ev, "connect")
    if not core(cap):
        assert b.sock is None and c.sock is None
        return
    assert b.sock["family"] == socket.AF_UNIX and b.sock["path"] == path
    assert c.sock["family"] == socket.AF_UNIX and c.sock["path"] == path     # the peer's address
