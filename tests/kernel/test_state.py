"""Each event's process and fd context (lbd.enrich over the state records), for every failure
issue 11 lists: each test makes the situation that went wrong and asserts the context lbd gives
now, field by field (Event.ctx: ppid, pcomm, user, group, cmdline, fullpath, fds).

The selections are small on purpose: the tables must be right from the state records the probe
captures whatever the user selected.  Under the bcc loader (LBD_LOADER=bcc) the kernel gives no
exec argv, executable or socket, and the parent at fork time: where that changes what lbd can know,
the test asserts the documented fallback instead (README, "Process and fd context").
"""
from __future__ import annotations

import fcntl
import os
import socket
import threading

from tests.kernel.conftest import LIBC, by_name, one, sched, set_comm

PR_SET_CHILD_SUBREAPER = 36


def core(cap) -> bool:
    return cap.probe.core


def fds(e) -> dict:
    return dict(e.ctx["fds"])


def test_child_of_a_just_execd_service_has_its_new_comm(cap, tmp_path):
    """'eaw' execs a binary named svc-nginx, which spawns a child: the child's parent comm is the
    service's (it used to be 'eaw', the comm before the exec)."""
    svc = tmp_path / "svc-nginx"
    svc.symlink_to("/bin/sh")

    def work():
        os.execv(str(svc), ["svc-nginx", "-c", "/bin/true lbd-leaf; exit 0"])

    ev = cap.run(work, comm="eaw", enrich=True, syscalls=["execve", "exit_group"])
    leaf = [e for e in by_name(ev, "execve") if e.comm == "true"]
    assert len(leaf) == 1, [(e.comm, e.args) for e in by_name(ev, "execve")]
    x = leaf[0]
    assert x.ctx["ppid"] == cap.child_pid and x.ctx["pcomm"] == "svc-nginx"
    assert x.ctx["cmdline"] == "/bin/true lbd-leaf"
    done = [e for e in by_name(ev, "exit_group") if e.pid == x.pid]
    assert done and done[0].ctx["pcomm"] == "svc-nginx" and done[0].ctx["cmdline"] == "/bin/true lbd-leaf"
    svc_exit = [e for e in by_name(ev, "exit_group") if e.pid == cap.child_pid]
    assert svc_exit and svc_exit[0].ctx["cmdline"] == "svc-nginx -c /bin/true lbd-leaf; exit 0"


def test_prctl_renames_are_followed_threads_keep_their_own(cap):
    """The parent renames itself (prctl) after forking: the child's next event has the new parent
    comm; a thread renaming itself changes its own comm, not the process's."""

    def work():
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.read(go_r, 1)
            os.getppid()
            os._exit(0)
        set_comm("renamed-par")
        t = threading.Thread(target=lambda: (set_comm("thr-name"), os.getppid()))
        t.start()
        t.join()
        os.write(go_w, b"g")
        os.waitpid(pid, 0)
        return pid

    ev = cap.run(work, comm="lbd-before", enrich=True, syscalls=["getppid"])
    child = cap.result
    c = one(ev, "getppid", lambda e: e.pid == child)
    assert c.ctx["ppid"] == cap.child_pid and c.ctx["pcomm"] == "renamed-par"
    t = one(ev, "getppid", lambda e: e.pid == cap.child_pid)
    assert t.comm == "thr-name" and t.tid != t.pid
    assert cap.enricher.process(cap.child_pid)["comm"] == "renamed-par"


def test_reparenting_to_a_subreaper(cap):
    """A (subreaper) -> B -> C; B exits: C's later events have parent A, and A's comm."""

    def work():
        if LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError("PR_SET_CHILD_SUBREAPER failed")
        r, w = os.pipe()
        go_r, go_w = os.pipe()
        b = os.fork()
        if b == 0:
            set_comm("lbd-mid")
            c = os.fork()
            if c == 0:
                set_comm("lbd-orphan")
                os.read(go_r, 1)                     # B has exited
                while os.getppid() == b:
                    pass
                try:
                    os.mkdir("/proc/lbd-state-after")       # the marker (fails: ENOENT)
                except OSError:
                    pass
                os.write(w, str(os.getpid()).encode())
                os._exit(0)
            os._exit(0)
        os.waitpid(b, 0)
        os.write(go_w, b"g")
        c = int(os.read(r, 64))
        os.waitpid(c, 0)
        return b, c

    ev = cap.run(work, comm="lbd-reaper", enrich=True, syscalls=["mkdir"])
    b, c = cap.result
    m = one(ev, "mkdir", lambda e: e.pid == c)
    assert m.ctx["ppid"] == cap.child_pid and m.ctx["pcomm"] == "lbd-reaper"
    assert m.comm == "lbd-orphan"


def test_reparenting_to_init_or_the_nearest_subreaper(cap):
    """A double fork without a subreaper in between: the orphan's parent is whatever the kernel
    says (/proc/self/status after the reparenting), and its comm."""

    def work():
        r, w = os.pipe()
        b = os.fork()
        if b == 0:
            c = os.fork()
            if c == 0:
                while os.getppid() == b:
                    pass
                ppid = os.getppid()
                pcomm = open(f"/proc/{ppid}/comm").read().strip()
                try:
                    os.mkdir("/proc/lbd-state-orphan")
                except OSError:
                    pass
                os.write(w, f"{os.getpid()} {ppid} {pcomm}".encode())
                os._exit(0)
            os._exit(0)
        os.waitpid(b, 0)
        c, ppid, pcomm = os.read(r, 256).decode().split(" ", 2)
        return int(c), int(ppid), pcomm

    ev = cap.run(work, enrich=True, syscalls=["mkdir"])
    c, ppid, pcomm = cap.result
    m = one(ev, "mkdir", lambda e: e.pid == c)
    if core(cap) or ppid == 1:
        assert (m.ctx["ppid"], m.ctx["pcomm"]) == (ppid, pcomm)
    else:   # bcc: a subreaper the events did not show (set before the capture) is not known
        assert m.ctx["ppid"] in (ppid, 1)


def test_fd_names_without_any_fd_syscall_selected(cap, tmp_path):
    """write(N) right after openat returned N shows the file, not what N is later (a socket)."""
    path = str(tmp_path / "out.txt")

    def work():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"file")
        os.close(fd)
        a, b = socket.socketpair()
        assert a.fileno() == fd
        os.write(a.fileno(), b"sock")
        return fd

    ev = cap.run(work, enrich=True, syscalls=["write"])
    fd = cap.result
    writes = [e for e in by_name(ev, "write") if e.args["fd"] == fd]
    assert len(writes) == 2, writes
    assert fds(writes[0])[fd] == path
    assert fds(writes[1])[fd] == "unix"


def test_cmdline_without_execve_selected(cap):
    def work():
        os.execv("/bin/true", ["/bin/true", "lbd-no-execve-arg"])

    ev = cap.run(work, enrich=True, syscalls=["exit_group"])
    e = one(ev, "exit_group")
    assert e.comm == "true"
    assert e.ctx["cmdline"] == "/bin/true lbd-no-execve-arg"
    assert e.ctx["fullpath"] == (os.path.realpath("/bin/true") if core(cap) else "/bin/true")


def test_sh_c_children_have_their_command_line(cap):
    """sh -c forks children whose argv sh built in pages the child never touched before execve."""

    def work():
        os.execv("/bin/sh", ["sh", "-c", "/bin/true lbd-sh-arg; /bin/true lbd-sh-arg2; exit 0"])

    ev = cap.run(work, enrich=True, syscalls=["exit_group"])
    kids = sorted((e for e in by_name(ev, "exit_group") if e.pid != cap.child_pid), key=lambda e: e.ts)
    assert [e.comm for e in kids] == ["true", "true"]
    want = ["/bin/true lbd-sh-arg", "/bin/true lbd-sh-arg2"]
    got = [e.ctx["cmdline"] for e in kids]
    if core(cap):
        assert got == want
    else:   # bcc: execve's argv as read at its enter, else the comm (the process is gone for procfs)
        assert all(g in (w, "true") for g, w in zip(got, want)), got
    assert all(e.ctx["pcomm"] == "sh" and e.ctx["ppid"] == cap.child_pid for e in kids)


def test_bind_to_port_0_and_accepted_sockets_show_real_ports(cap):
    def work():
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        cli = socket.create_connection(("127.0.0.1", port))
        conn, peer = srv.accept()
        os.getppid()
        return port, peer[1], srv.fileno(), cli.fileno(), conn.fileno()

    ev = cap.run(work, enrich=True, syscalls=["getppid"])
    port, cport, sfd, cfd, afd = cap.result
    f = fds(one(ev, "getppid"))
    if core(cap):
        assert f[sfd] == f"tcp 127.0.0.1:{port}"
        assert f[cfd] == f[afd] == f"tcp 127.0.0.1:{cport}->127.0.0.1:{port}"
    else:   # bcc: the sockaddr arguments only
        assert f[sfd] == "tcp 127.0.0.1:0"
        assert f[cfd] == f"tcp ->127.0.0.1:{port}"
        assert f[afd] == f"tcp 127.0.0.1:{cport}->127.0.0.1:0"


def test_ipv6_and_unix_socket_names(cap, tmp_path):
    path = str(tmp_path / "u.sock")

    def work():
        out = {}
        try:
            s6 = socket.create_server(("::1", 0), family=socket.AF_INET6)
            c6 = socket.create_connection(("::1", s6.getsockname()[1]))
            a6, _ = s6.accept()
            out["v6"] = (s6.getsockname()[1], c6.getsockname()[1], s6.fileno(), c6.fileno(), a6.fileno())
        except OSError:
            pass
        us = socket.socket(socket.AF_UNIX)
        us.bind(path)
        us.listen(1)
        uc = socket.socket(socket.AF_UNIX)
        uc.connect(path)
        ua, _ = us.accept()
        out["unix"] = (us.fileno(), uc.fileno(), ua.fileno())
        os.getppid()
        return out

    ev = cap.run(work, enrich=True, syscalls=["getppid"])
    f = fds(one(ev, "getppid"))
    us, uc, ua = cap.result["unix"]
    assert f[us] == f[uc] == f[ua] == f"unix {path}"
    if "v6" in cap.result:
        port, cport, s, c, a = cap.result["v6"]
        if core(cap):
            assert f[s] == f"tcp [::1]:{port}"
            assert f[c] == f[a] == f"tcp [::1]:{cport}->[::1]:{port}"
        else:   # bcc: create_server binds port 0
            assert f[s] == "tcp [::1]:0" and f[c] == f"tcp ->[::1]:{port}"


def test_execve_from_a_non_main_thread(cap):
    """A thread execs: the new image's records (the execve's own included) have the new comm,
    command line and executable, for the whole process."""

    def work():
        t = threading.Thread(target=lambda: os.execv("/bin/true", ["/bin/true", "lbd-from-thread"]))
        t.start()
        t.join()

    ev = cap.run(work, comm="lbd-threxec", enrich=True, syscalls=["execve", "exit_group"])
    x = one(ev, "execve", lambda e: e.res == 0)
    assert x.comm == "true" and x.pid == cap.child_pid
    execs = sched(cap.all_events, "exec")
    mine = [e for e in execs if e.pid == cap.child_pid]
    assert len(mine) == 1 and mine[0].args["old_pid"] != cap.child_pid     # a non-main thread exec'd
    for e in (x, one(ev, "exit_group")):
        assert e.ctx["cmdline"] == "/bin/true lbd-from-thread"
        assert e.ctx["fullpath"] == (os.path.realpath("/bin/true") if core(cap) else "/bin/true")


def test_cloexec_fds_leave_at_exec(cap, tmp_path):
    """O_CLOEXEC, fcntl(F_SETFD) and (when ioctl is selected) FIONCLEX decide which fds an exec
    keeps (Python opens everything close-on-exec; os.set_inheritable uses ioctl)."""
    keep, drop, kept = str(tmp_path / "keep"), str(tmp_path / "drop"), str(tmp_path / "kept")

    def work():
        a = os.open(keep, os.O_WRONLY | os.O_CREAT, 0o600)
        fcntl.fcntl(a, fcntl.F_SETFD, 0)
        b = os.open(drop, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        c = os.open(kept, os.O_WRONLY | os.O_CREAT, 0o600)
        os.set_inheritable(c, True)
        os.execv("/bin/true", ["/bin/true", str(a), str(b), str(c)])

    ev = cap.run(work, enrich=True, syscalls=["exit_group", "ioctl"])
    e = one(ev, "exit_group")
    names = set(fds(e).values())
    assert keep in names and kept in names and drop not in names
