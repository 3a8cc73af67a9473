"""The state engine on fake /proc trees (lbd.enrich): procfs read once at start, tables kept from
the events in their order, Falco-style fd names, bounded memory, and the array contract the Falco
plugin reads (lbd.enrich.layout).  tests/unit/test_enrich_engines.py holds the engine to the
oracle on random streams; these are the semantics, case by case."""
from __future__ import annotations

import numpy as np
import pytest

from lbd import record
from lbd.enrich import ENRICH_DTYPE, FD_DTYPE, Enricher, event_info, has_enrichment
from lbd.ringimage import sockaddr_in, sockaddr_un
from tests.data.fakeproc import O_CLOEXEC, FakeHost, batch_of, rec, sock_bytes

SEC = 1_000_000_000
T0 = 1_750_000_000 * SEC
CORE = 4026531836          # a pid namespace inode: CO-RE records carry one, bcc records 0


def check_contract(batch) -> None:
    """Everything lbd.enrich.layout promises a C reader about a batch's arrays."""
    n = len(batch)
    en, st, fdt = batch.enrich, batch.strtab, batch.fdtab
    assert en.dtype == ENRICH_DTYPE and en.dtype.itemsize == 52 and len(en) == n
    assert st.dtype == np.uint8 and fdt.dtype == FD_DTYPE and fdt.dtype.itemsize == 12
    assert en.flags.c_contiguous and st.flags.c_contiguous and fdt.flags.c_contiguous
    for col in ("pcomm", "user", "group", "cmdline", "fullpath"):
        off, ln = en[col + "_off"].astype(np.int64), en[col + "_len"].astype(np.int64)
        assert (off + ln < len(st)).all(), col
        assert (st[off + ln] == 0).all(), f"{col}: not NUL-terminated"
        for o, k in zip(off.tolist(), ln.tolist()):
            st[o: o + k].tobytes().decode("utf-8")          # valid UTF-8
            assert 0 not in st[o: o + k]
    assert ((en["user_len"] > 0) & (en["group_len"] > 0)).all()
    end = en["fds_off"].astype(np.int64) + en["fds_n"]
    assert (end <= len(fdt)).all()
    for o, k in zip(en["fds_off"].tolist(), en["fds_n"].tolist()):
        rows = fdt[o: o + k]
        assert (np.diff(rows["fd"]) > 0).all(), "fds not sorted"
        po, pl = rows["path_off"].astype(np.int64), rows["path_len"].astype(np.int64)
        assert (po + pl < len(st)).all() and (st[po + pl] == 0).all()


def info(batch, i):
    return event_info(batch, i)


def fds(batch, i):
    return dict(event_info(batch, i)["fds"])


TTY = {0: "/dev/pts/0", 1: "/dev/pts/0", 2: "/dev/pts/0", 255: "/dev/pts/0"}


@pytest.fixture
def host(tmp_path):
    h = FakeHost(tmp_path)
    h.add_process(1, "systemd", 0, ["/sbin/init", "splash"], exe="/usr/lib/systemd/systemd")
    h.add_process(100, "bash", 1, ["-bash"], exe="/usr/bin/bash", cwd="/home/alice", fds=TTY, cloexec={255})
    h.add_process(4242, "sd-rmrf", 1, ["sd-rmrf"], exe="/usr/lib/systemd/systemd",
                  fds={0: "/dev/null", 1: "/dev/null", 2: "/dev/null"})
    return h


# ---- procfs: once at start, then only for a pid never seen ---------------------------------------

def test_procfs_is_read_once_at_start(host):
    en = host.enricher()
    assert en.stats()["scanned"] == 3
    reads = en.procfs.reads
    b = batch_of(*[rec("unlinkat", {"dfd": -100, "pathname": "/var/tmp/x", "flag": 512}, pid=4242, ppid=0,
                       comm="sd-rmrf", ts=T0 + k) for k in range(5)])
    en.enrich(b)
    check_contract(b)
    assert has_enrichment(b)
    for i in range(5):
        assert info(b, i) == {"ppid": 1, "pcomm": "systemd", "user": "root", "group": "root",
                              "cmdline": "sd-rmrf", "fullpath": "/usr/lib/systemd/systemd",
                              "fds": [(0, "/dev/null"), (1, "/dev/null"), (2, "/dev/null")]}
    assert en.procfs.reads == reads                      # nothing read for known processes
    host.add_fd(4242, 7, "/etc/shadow")                   # procfs changes: the table does not follow it
    en.enrich(b)
    assert 7 not in fds(b, 0) and en.procfs.reads == reads


def test_a_pid_never_seen_is_read_once(host):
    en = host.enricher()
    host.add_process(500, "late", 100, ["late", "--x"], exe="/opt/late", fds={0: "/dev/null"})
    b = batch_of(rec("getpid", pid=500, ppid=0, comm="late", ts=T0),
                 rec("getpid", pid=500, ppid=0, comm="late", ts=T0 + 1))
    reads = en.procfs.reads
    en.enrich(b)
    assert info(b, 1) == {"ppid": 100, "pcomm": "bash", "user": "root", "group": "root", "cmdline": "late --x",
                          "fullpath": "/opt/late", "fds": [(0, "/dev/null")]}
    after = en.procfs.reads
    assert after > reads and en.stats()["loads"] == 1
    en.enrich(b)
    assert en.procfs.reads == after


def test_kernel_ppid_wins_and_users_groups_from_files(host):
    host.add_process(500, "worker", 100, ["worker", "--x"], exe="/opt/w")
    en = host.enricher()
    b = batch_of(rec("getpid", pid=500, ppid=1, uid=1000, gid=65534, comm="worker", ts=T0, pidns=CORE),
                 rec("getpid", pid=500, ppid=0, uid=4321, gid=4321, comm="worker", ts=T0 + 1, pidns=CORE))
    en.enrich(b)
    check_contract(b)
    a, c = info(b, 0), info(b, 1)
    assert (a["ppid"], a["pcomm"], a["user"], a["group"]) == (1, "systemd", "alice", "nogroup")
    # a record without a parent keeps the table's, which the kernel's value changed; ids as text
    assert (c["ppid"], c["pcomm"], c["user"], c["group"]) == (1, "systemd", "4321", "4321")
    assert a["cmdline"] == "worker --x" and a["fullpath"] == "/opt/w"


def test_vanished_process_keeps_kernel_values(host):
    en = host.enricher()
    b = batch_of(rec("openat", {"dfd": -100, "filename": "/tmp/f", "flags": 0}, pid=777, ppid=100, res=3,
                     comm="ghost", ts=T0),
                 rec("close", {"fd": 3}, pid=778, ppid=0, res=0, comm="ghost2", ts=T0 + 1))
    en.enrich(b)
    check_contract(b)
    a = info(b, 0)
    assert a["cmdline"] == "ghost" and a["fullpath"] == "" and a["ppid"] == 100 and a["pcomm"] == "bash"
    # what it inherited is approximated by the parent's table, plus its own open
    assert fds(b, 0) == {**TTY, 3: "/tmp/f"}
    assert en.process(777)["complete"] is False
    c = info(b, 1)
    assert (c["cmdline"], c["ppid"], c["pcomm"], c["fds"]) == ("ghost2", 0, "", [])
    assert en.stats()["procfs_vanished"] == 2


def test_procfs_errors_never_escape(tmp_path):
    h = FakeHost(tmp_path)
    d = h.add_process(9, "odd", 1, ["odd"])
    (d / "stat").write_text("garbage")               # unparsable: as if gone
    (h.proc / "10").mkdir()                           # a directory without files
    en = h.enricher()
    b = batch_of(rec("getpid", pid=9, comm="odd"), rec("getpid", pid=10, comm="x"))
    en.enrich(b)
    check_contract(b)
    assert info(b, 0)["cmdline"] == "odd" and info(b, 1)["cmdline"] == "x"


def test_sockets_at_start_are_resolved_from_proc_net(host):
    """Socket inodes of the scan become "proto local->remote" names, client->server."""
    net = host.proc / "net"
    net.mkdir()
    hdr = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    row = "   0: {l} {r} {st} 00000000:00000000 00:00000000 00000000     0        0 {ino} 1 0000000000000000 20 4 0 10 -1\n"
    lo = "0100007F"
    (net / "tcp").write_text(hdr + "".join(row.format(l=l, r=r, st=st, ino=ino) for l, r, st, ino in [
        (f"{lo}:1F90", "00000000:0000", "0A", 1001),            # listening 127.0.0.1:8080
        (f"{lo}:A05B", f"{lo}:1F90", "01", 1002),               # client 41051 -> 8080
        (f"{lo}:1F90", f"{lo}:A05B", "01", 1003),               # the accepted side
        (f"{lo}:C000", "0100000A:01BB", "01", 1004)]))          # out to 10.0.0.1:443
    (net / "tcp6").write_text(hdr + row.format(l="00000000000000000000000001000000:0016",
                                               r="00000000000000000000000000000000:0000", st="0A", ino=1005))
    (net / "udp").write_text(hdr + row.format(l="00000000:0035", r="00000000:0000", st="07", ino=1006))
    (net / "udp6").write_text(hdr)
    (net / "unix").write_text("Num       RefCount Protocol Flags    Type St Inode Path\n"
                              "0000000000000000: 00000002 00000000 00010000 0001 01 1007 /run/x.sock\n"
                              "0000000000000000: 00000003 00000000 00000000 0001 03 1008\n")
    for fd, ino in enumerate(range(1001, 1009), start=3):
        host.add_fd(100, fd, f"socket:[{ino}]")
    host.add_fd(100, 11, "socket:[9999]")
    host.add_fd(100, 12, "pipe:[31337]")
    host.add_fd(100, 13, "anon_inode:[eventfd]")
    en = host.enricher()
    b = batch_of(rec("getpid", pid=100, comm="bash"))
    en.enrich(b)
    f = fds(b, 0)
    assert f[3] == "tcp 127.0.0.1:8080"
    assert f[4] == f[5] == "tcp 127.0.0.1:41051->127.0.0.1:8080"
    assert f[6] == "tcp 127.0.0.1:49152->10.0.0.1:443"
    assert f[7] == "tcp [::1]:22"
    assert f[8] == "udp 0.0.0.0:53"
    assert f[9] == "unix /run/x.sock" and f[10] == "unix"
    assert f[11] == "socket:[9999]" and f[12] == "pipe" and f[13] == "anon_inode:[eventfd]"


# ---- fd tables from the events ---------------------------------------------------------------------

def test_fd_table_follows_the_syscalls(host):
    en = host.enricher()
    p = dict(pid=100, comm="bash", pidns=CORE)
    sock = dict(laddr="127.0.0.1", lport=41067, raddr="127.0.0.1", rport=5555)
    evs = [
        rec("getpid", ts=T0, **p),                                                             # 0
        rec("openat", {"dfd": -100, "filename": "notes.txt", "flags": O_CLOEXEC}, res=3, **p),  # 1 relative
        rec("socket", {"family": 2, "type": 1, "protocol": 0}, res=4, **p),                     # 2
        rec("connect", {"fd": 4, "uservaddr": sockaddr_in("127.0.0.1", 5555), "addrlen": 16}, res=0,
            sock=sock_bytes(2, 1, **sock), **p),                                                 # 3
        rec("socket", {"family": 1, "type": 1, "protocol": 0}, res=5, **p),                     # 4
        rec("connect", {"fd": 5, "uservaddr": sockaddr_un("/run/x.sock"), "addrlen": 14}, res=0,
            sock=sock_bytes(1, 1, path=b"/run/x.sock\0"), **p),                                  # 5
        rec("pipe2", {"fildes": (6, 7), "flags": O_CLOEXEC}, res=0, **p),                       # 6
        rec("dup2", {"oldfd": 4, "newfd": 1}, res=1, **p),                                      # 7
        rec("fcntl", {"fd": 3, "cmd": 1030, "arg": 10}, res=10, **p),                           # 8 F_DUPFD_CLOEXEC
        rec("close", {"fd": 7}, res=0, **p),                                                    # 9
        rec("openat", {"dfd": 3, "filename": "x", "flags": 0}, res=-2, **p),                    # 10 failed
        rec("dup3", {"oldfd": 5, "newfd": 20, "flags": 0}, res=20, **p),                        # 11
        rec("socketpair", {"family": 1, "type": 1, "protocol": 0, "usockvec": (21, 22)}, res=0, **p),
        rec("close_range", {"fd": 21, "max_fd": 0xFFFFFFFF, "flags": 0}, res=0, **p),          # 13
        rec("accept4", {"fd": 4, "upeer_sockaddr": sockaddr_in("10.0.0.9", 40000), "flags": 0}, res=23,
            sock=sock_bytes(2, 1, laddr="10.0.0.1", lport=80, raddr="10.0.0.9", rport=40000), **p),
        rec("eventfd2", {"count": 0, "flags": O_CLOEXEC}, res=24, **p),                        # 15
        rec("memfd_create", {"uname": "jit", "flags": 1}, res=25, **p),                        # 16
    ]
    b = batch_of(*evs)
    en.enrich(b)
    check_contract(b)
    assert fds(b, 0) == TTY
    assert fds(b, 1)[3] == "/home/alice/notes.txt"
    assert fds(b, 2)[4] == "tcp"
    assert fds(b, 3)[4] == "tcp 127.0.0.1:41067->127.0.0.1:5555"
    assert fds(b, 4)[5] == "unix" and fds(b, 5)[5] == "unix /run/x.sock"
    assert (fds(b, 6)[6], fds(b, 6)[7]) == ("pipe", "pipe")
    assert fds(b, 7)[1] == "tcp 127.0.0.1:41067->127.0.0.1:5555"
    assert fds(b, 8)[10] == "/home/alice/notes.txt"
    assert 7 not in fds(b, 9) and fds(b, 10) == fds(b, 9)
    assert fds(b, 11)[20] == "unix /run/x.sock"
    assert fds(b, 12)[21] == fds(b, 12)[22] == "unix"
    assert set(fds(b, 13)) == {0, 1, 2, 3, 4, 5, 6, 10, 20}                  # 21.. closed (255 too)
    assert fds(b, 14)[23] == "tcp 10.0.0.9:40000->10.0.0.1:80"               # client -> server
    assert fds(b, 15)[24] == "anon_inode:[eventfd]" and fds(b, 16)[25] == "/memfd:jit (deleted)"
    # exec closes the close-on-exec fds: 3 (O_CLOEXEC), 6 (pipe2), 10, 24, 25
    b2 = batch_of(rec("sched_process_exec", {"pid": 100, "old_pid": 100, "filename": "/usr/bin/ls",
                                             "argv": ["ls", "-l"], "exe": "/usr/bin/ls"}, **p),
                  rec("execve", {"filename": "/usr/bin/ls", "argv": ["ls", "-l"], "envp": []}, res=0, **p))
    en.enrich(b2)
    check_contract(b2)
    assert set(fds(b2, 1)) == {0, 1, 2, 4, 5, 20, 23}
    assert info(b2, 0)["cmdline"] == info(b2, 1)["cmdline"] == "ls -l"
    assert info(b2, 1)["fullpath"] == "/usr/bin/ls"


def test_bind_to_port_0_and_accept_use_the_kernels_socket(host):
    """CO-RE: the port the kernel chose after bind(0); bcc (no socket): the sockaddr's."""
    en = host.enricher()
    p = dict(pid=100, comm="bash")
    core = dict(p, pidns=CORE)
    b = batch_of(
        rec("socket", {"family": 2, "type": 1, "protocol": 0}, res=3, **core),
        rec("bind", {"fd": 3, "umyaddr": sockaddr_in("127.0.0.1", 0), "addrlen": 16}, res=0,
            sock=sock_bytes(2, 1, laddr="127.0.0.1", lport=43210), **core),
        rec("accept4", {"fd": 3, "upeer_sockaddr": sockaddr_in("127.0.0.1", 50000), "flags": 0}, res=4,
            sock=sock_bytes(2, 1, laddr="127.0.0.1", lport=43210, raddr="127.0.0.1", rport=50000), **core),
        rec("socket", {"family": 2, "type": 1, "protocol": 0}, res=5, **p),
        rec("bind", {"fd": 5, "umyaddr": sockaddr_in("127.0.0.1", 0), "addrlen": 16}, res=0, **p),
        rec("accept4", {"fd": 5, "upeer_sockaddr": sockaddr_in("127.0.0.1", 50001), "flags": 0}, res=6, **p),
        rec("socket", {"family": 2, "type": 2, "protocol": 0}, res=7, **p),
        rec("connect", {"fd": 7, "uservaddr": sockaddr_in("10.0.0.53", 53), "addrlen": 16}, res=0, **p),
    )
    en.enrich(b)
    f = fds(b, len(b) - 1)
    assert f[3] == "tcp 127.0.0.1:43210" and f[4] == "tcp 127.0.0.1:50000->127.0.0.1:43210"
    assert f[5] == "tcp 127.0.0.1:0" and f[6] == "tcp 127.0.0.1:50001->127.0.0.1:0"
    assert f[7] == "udp ->10.0.0.53:53"


def test_fd_names_are_the_state_just_after_each_event(host):
    """write(N) right after openat returned N names the file, even when N is a socket later."""
    en = host.enricher()
    p = dict(pid=4242, comm="sd-rmrf")
    b = batch_of(rec("openat", {"dfd": -100, "filename": "/var/log/a.log", "flags": 0}, res=3, **p),
                 rec("write", {"fd": 3, "buf": b"x", "count": 1}, res=1, **p),
                 rec("close", {"fd": 3}, res=0, **p),
                 rec("socket", {"family": 2, "type": 1, "protocol": 0}, res=3, **p),
                 rec("write", {"fd": 3, "buf": b"x", "count": 1}, res=-32, **p))
    en.enrich(b)
    assert fds(b, 1)[3] == "/var/log/a.log" and 3 not in fds(b, 2) and fds(b, 4)[3] == "tcp"


def test_paths_resolve_against_cwd_and_directory_fds(host):
    en = host.enricher()
    p = dict(pid=100, comm="bash")
    b = batch_of(rec("chdir", {"filename": "../bob/./src"}, res=0, **p),
                 rec("openat", {"dfd": -100, "filename": "a/../b.c", "flags": 0}, res=3, **p),
                 rec("openat", {"dfd": -100, "filename": "/etc//ssl/./certs/", "flags": 0}, res=4, **p),
                 rec("openat", {"dfd": 4, "filename": "ca.pem", "flags": 0}, res=5, **p),
                 rec("fchdir", {"fd": 4}, res=0, **p),
                 rec("open", {"filename": "x.pem", "flags": 0}, res=6, **p),
                 rec("openat", {"dfd": 9, "filename": "unknown-base", "flags": 0}, res=7, **p))
    en.enrich(b)
    f = fds(b, len(b) - 1)
    assert f[3] == "/home/bob/src/b.c" and f[4] == "/etc/ssl/certs" and f[5] == "/etc/ssl/certs/ca.pem"
    assert f[6] == "/etc/ssl/certs/x.pem" and f[7] == "unknown-base"
    assert en.process(100)["cwd"] == "/etc/ssl/certs"


def test_enter_records_and_failures_change_nothing(host):
    en = host.enricher()
    b = batch_of(rec("openat", {"dfd": -100, "filename": "/etc/x", "flags": 0}, pid=4242, dir=">", res=0),
                 rec("close", {"fd": 1}, pid=4242, dir=">"),
                 rec("dup2", {"oldfd": 0, "newfd": 9}, pid=4242, res=-9),
                 rec("close", {"fd": 2}, pid=4242, flags=record.F_NOENTER, res=0))
    en.enrich(b)
    for i in range(4):
        assert fds(b, i) == {0: "/dev/null", 1: "/dev/null", 2: "/dev/null"}


def test_fd_snapshots_share_rows(host):
    """Open/close loops reuse or extend the rows already written: fdtab grows by the new fds only."""
    en = host.enricher()
    evs = []
    for k in range(200):
        evs.append(rec("openat", {"dfd": -100, "filename": "/etc/hosts", "flags": 0}, pid=4242, res=3))
        evs.append(rec("close", {"fd": 3}, pid=4242, res=0))
    b = batch_of(*evs)
    en.enrich(b)
    check_contract(b)
    assert fds(b, 398) == {0: "/dev/null", 1: "/dev/null", 2: "/dev/null", 3: "/etc/hosts"}
    assert fds(b, 399) == {0: "/dev/null", 1: "/dev/null", 2: "/dev/null"}
    assert len(b.fdtab) <= 8
    n = len(b.fdtab)
    en.enrich(b)                                  # the same again: nothing new to write
    check_contract(b)
    assert len(b.fdtab) <= n + 4


# ---- process tree: fork, exec, exit, names, parents ------------------------------------------------

def test_fork_exec_exit(host):
    en = host.enricher(grace_s=1.0)
    sh = dict(pid=100, comm="bash", pidns=CORE)
    child = dict(pid=5000, ppid=100, comm="bash", pidns=CORE)
    b = batch_of(
        rec("sched_process_fork", {"parent_pid": 100, "child_pid": 5000, "parent_tid": 100, "child_tgid": 5000},
            ts=T0, **sh),
        rec("openat", {"dfd": -100, "filename": "/tmp/out", "flags": 0o1101}, res=3, ts=T0 + 1, **sh),
        rec("dup2", {"oldfd": 0, "newfd": 7}, res=7, ts=T0 + 2, **child),
        rec("sched_process_exec", {"pid": 5000, "old_pid": 5000, "filename": "/usr/bin/cat",
                                   "argv": ["cat", "/etc/hostname"], "exe": "/usr/bin/cat"}, ts=T0 + 3,
            **dict(child, comm="cat")),
        rec("execve", {"filename": "/usr/bin/cat", "argv": ["cat", "/etc/hostname"], "envp": ["A=1"]}, res=0,
            ts=T0 + 4, flags=record.F_NEWIMAGE, **dict(child, comm="cat")),
        rec("openat", {"dfd": -100, "filename": "/etc/hostname", "flags": 0}, res=3, ts=T0 + 5,
            **dict(child, comm="cat")),
        rec("sched_process_exit", {"pid": 5000, "group_dead": 1}, ts=T0 + 6, **dict(child, comm="cat")),
    )
    reads = en.procfs.reads
    en.enrich(b)
    check_contract(b)
    assert en.procfs.reads == reads                      # the fork told everything
    # the child started with its parent's table as it was at the fork (not /tmp/out, opened after)
    assert fds(b, 2) == {**TTY, 7: "/dev/pts/0"}
    assert info(b, 2)["cmdline"] == "-bash" and info(b, 2)["pcomm"] == "bash"
    assert fds(b, 1)[3] == "/tmp/out"
    for i in (3, 4, 5):
        assert info(b, i)["cmdline"] == "cat /etc/hostname" and info(b, i)["fullpath"] == "/usr/bin/cat"
    assert fds(b, 5) == {0: "/dev/pts/0", 1: "/dev/pts/0", 2: "/dev/pts/0", 3: "/etc/hostname", 7: "/dev/pts/0"}
    assert en.process(5000)["dead"]                       # exited, in its grace period
    late = batch_of(rec("close", {"fd": 3}, res=0, ts=T0 + SEC // 2, pid=5000, comm="cat"))
    en.enrich(late)
    assert info(late, 0)["cmdline"] == "cat /etc/hostname" and en.procfs.reads == reads
    en.enrich(batch_of(rec("getpid", ts=T0 + 2 * SEC, **sh)))
    assert en.process(5000) is None and en.stats()["reaped"] == 1


def test_child_of_a_just_execd_service_sees_its_new_comm(host):
    """eaw execs svc-nginx, which forks a leaf: the leaf's parent comm is svc-nginx."""
    en = host.enricher()
    svc = dict(pid=600, ppid=100, pidns=CORE)
    b = batch_of(
        rec("sched_process_fork", {"parent_pid": 100, "child_pid": 600, "child_tgid": 600}, pid=100, comm="bash",
            pidns=CORE),
        rec("prctl", {"option": 15}, res=0, comm="eaw", **svc),
        rec("sched_process_exec", {"pid": 600, "old_pid": 600, "filename": "/opt/svc-nginx",
                                   "argv": ["svc-nginx", "-g", "daemon off;"], "exe": "/opt/svc-nginx"},
            comm="svc-nginx", **svc),
        rec("sched_process_fork", {"parent_pid": 600, "child_pid": 601, "child_tgid": 601}, comm="svc-nginx", **svc),
        rec("execve", {"filename": "/bin/sh", "argv": ["sh", "-c", "id"], "envp": []}, res=0, pid=601, ppid=600,
            comm="sh", pidns=CORE, flags=record.F_NEWIMAGE),
    )
    en.enrich(b)
    assert info(b, 4)["pcomm"] == "svc-nginx" and info(b, 4)["ppid"] == 600
    assert info(b, 3)["cmdline"] == "svc-nginx -g daemon off;"


def test_prctl_renames_and_thread_comms(host):
    en = host.enricher()
    core = dict(pidns=CORE)
    b = batch_of(
        rec("sched_process_fork", {"parent_pid": 100, "child_pid": 700, "child_tgid": 700}, pid=100, comm="bash",
            **core),
        rec("prctl", {"option": 15}, pid=100, comm="renamed", res=0, **core),       # the leader: the process
        rec("getpid", pid=700, ppid=100, comm="bash", **core),
        rec("prctl", {"option": 15}, pid=100, tid=101, comm="thread-x", res=0, **core),   # a thread: its own
        rec("getpid", pid=700, ppid=100, comm="bash", **core),
    )
    en.enrich(b)
    assert info(b, 2)["pcomm"] == "renamed" and info(b, 4)["pcomm"] == "renamed"


def test_reparenting(host):
    """CO-RE: the header's parent is the truth; bcc (parent at fork time): a parent the table saw
    exit gives way to the nearest living subreaper ancestor, else to 1."""
    en = host.enricher()
    b = batch_of(
        rec("prctl", {"option": 36, "arg2": 1}, pid=100, comm="bash", res=0),                 # subreaper
        rec("sched_process_fork", {"parent_pid": 100, "child_pid": 800}, pid=100, comm="bash"),
        rec("sched_process_fork", {"parent_pid": 800, "child_pid": 801}, pid=800, ppid=100, comm="mid"),
        rec("sched_process_fork", {"parent_pid": 4242, "child_pid": 901}, pid=4242, comm="sd-rmrf"),
        rec("getpid", pid=801, ppid=800, comm="orphan"),
        rec("sched_process_exit", {"pid": 800, "group_dead": 1}, pid=800, ppid=100, comm="mid"),
        rec("getpid", pid=801, ppid=800, comm="orphan"),                                     # bcc: stale ppid
        rec("sched_process_exit", {"pid": 4242, "group_dead": 1}, pid=4242, ppid=1, comm="sd-rmrf"),
        rec("getpid", pid=901, ppid=4242, comm="orphan2"),
        rec("getpid", pid=901, ppid=1, comm="orphan2", pidns=CORE),                          # CO-RE: the truth
    )
    en.enrich(b)
    assert (info(b, 4)["ppid"], info(b, 4)["pcomm"]) == (800, "mid")
    assert (info(b, 6)["ppid"], info(b, 6)["pcomm"]) == (100, "bash")
    assert (info(b, 8)["ppid"], info(b, 8)["pcomm"]) == (1, "systemd")
    assert (info(b, 9)["ppid"], info(b, 9)["pcomm"]) == (1, "systemd")


def test_bcc_reparenting_outlives_the_dead_parents_grace_period(host):
    """bcc records keep naming the fork-time parent: once the table gave the process to the
    subreaper, it stays there after the dead parent is gone from the table and from procfs."""
    en = host.enricher(grace_s=1.0)
    b1 = batch_of(
        rec("prctl", {"option": 36, "arg2": 1}, pid=100, comm="bash", res=0, ts=T0),
        rec("sched_process_fork", {"parent_pid": 100, "child_pid": 800}, pid=100, comm="bash", ts=T0),
        rec("sched_process_fork", {"parent_pid": 800, "child_pid": 801}, pid=800, ppid=100, comm="mid", ts=T0),
        rec("sched_process_exit", {"pid": 800, "group_dead": 1}, pid=800, ppid=100, comm="mid", ts=T0 + 1),
        rec("getpid", pid=801, ppid=800, comm="orphan", ts=T0 + 2),
    )
    en.enrich(b1)
    assert (info(b1, 4)["ppid"], info(b1, 4)["pcomm"]) == (100, "bash")
    for k in (3, 4):                                       # 800 is reaped after the first of these
        b2 = batch_of(rec("getpid", pid=801, ppid=800, comm="orphan", ts=T0 + k * SEC))
        en.enrich(b2)
        assert (info(b2, 0)["ppid"], info(b2, 0)["pcomm"]) == (100, "bash")
    assert en.process(800) is None


def test_exec_from_a_non_main_thread_updates_the_whole_process(host):
    en = host.enricher()
    p = dict(pid=100, pidns=CORE)
    b = batch_of(
        rec("getpid", tid=103, comm="worker", **p),
        rec("sched_process_exec", {"pid": 100, "old_pid": 103, "filename": "/usr/bin/id", "argv": ["id", "-u"],
                                   "exe": "/usr/bin/id"}, comm="id", **p),
        rec("execve", {"filename": "/usr/bin/id", "argv": ["id", "-u"], "envp": []}, res=0, comm="id",
            flags=record.F_NEWIMAGE, **p),
    )
    en.enrich(b)
    assert info(b, 0)["cmdline"] == "-bash"
    assert info(b, 2)["cmdline"] == "id -u" and info(b, 2)["fullpath"] == "/usr/bin/id"
    assert en.process(100)["comm"] == "id"


def test_bcc_exec_takes_argv_from_execve_else_procfs(host):
    """bcc: no argv in the exec record: the execve's argv (read at enter), else procfs once."""
    host.add_process(6001, "make", 100, ["make", "-j2"], exe="/usr/bin/make", cwd="/srv")
    en = host.enricher()
    b = batch_of(rec("sched_process_exec", {"pid": 6000, "old_pid": 6000, "filename": "/usr/bin/cc"},
                     pid=6000, ppid=100, comm="cc"),
                 rec("execve", {"filename": "/usr/bin/cc", "argv": ["cc", "-c", "x.c"], "envp": []}, res=0,
                     pid=6000, ppid=100, comm="cc"),
                 rec("sched_process_exec", {"pid": 6001, "old_pid": 6001, "filename": "make"},
                     pid=6001, ppid=100, comm="make"),
                 rec("getpid", pid=6001, comm="make"))
    en.enrich(b)
    assert info(b, 1)["cmdline"] == "cc -c x.c" and info(b, 1)["fullpath"] == "/usr/bin/cc"
    assert info(b, 3)["cmdline"] == "make -j2"                           # procfs, once
    assert info(b, 3)["fullpath"] == "/srv/make"                          # the filename, against the cwd


def test_threads_share_the_process_table(host):
    en = host.enricher()
    p = dict(pid=100, comm="bash")
    b = batch_of(
        rec("sched_process_fork", {"parent_pid": 100, "child_pid": 101, "parent_tid": 100}, **p),
        rec("clone", {"clone_flags": 0x10000 | 0x100 | 0x400 | 0x800}, res=101, **p),   # CLONE_THREAD
        rec("openat", {"dfd": -100, "filename": "/etc/t", "flags": 0}, res=9, tid=101, **p),
        rec("getpid", tid=100, **p),
    )
    en.enrich(b)
    assert fds(b, 3)[9] == "/etc/t"                 # opened by the thread, seen by the leader
    assert en.process(101) is None                   # bcc's speculative entry is gone


def test_pid_reuse_after_exit(host):
    en = host.enricher(grace_s=0)
    p = dict(pid=100, comm="bash")
    b = batch_of(
        rec("sched_process_fork", {"parent_pid": 100, "child_pid": 7000, "parent_tid": 100}, ts=T0, **p),
        rec("sched_process_exec", {"pid": 7000, "old_pid": 7000, "filename": "/bin/true"}, ts=T0 + 1, pid=7000,
            comm="true"),
        rec("sched_process_exit", {"pid": 7000, "group_dead": 1}, ts=T0 + 2, pid=7000, comm="true"),
        rec("sched_process_fork", {"parent_pid": 100, "child_pid": 7000, "parent_tid": 100}, ts=T0 + 3, **p),
        rec("getpid", ts=T0 + 4, pid=7000, ppid=0, comm="bash"),
    )
    en.enrich(b)
    assert info(b, 4)["cmdline"] == "-bash" and info(b, 4)["ppid"] == 100


# ---- bounds, caches, contract -----------------------------------------------------------------------

def test_process_table_is_a_bounded_lru(host):
    for pid in range(2000, 2010):
        host.add_process(pid, f"p{pid}", 1, [f"p{pid}"])
    en = host.enricher(max_procs=4)
    st = en.stats()["procs"]
    assert st["size"] == 4 and st["evictions"] == 9 and st["max"] == 4       # the scan kept the last 4
    for pid in range(2000, 2010):
        en.enrich(batch_of(rec("getpid", pid=pid, comm=f"p{pid}")))
    st = en.stats()["procs"]
    assert st["size"] <= 4 and st["evictions"] >= 15 and st["misses"] >= 6
    b = batch_of(rec("getpid", pid=2000, comm="p2000"))       # evicted: read again
    en.enrich(b)
    assert info(b, 0)["cmdline"] == "p2000"


def test_user_cache_is_bounded_and_counts(host):
    en = host.enricher(max_users=2)
    b = batch_of(*[rec("getpid", pid=4242, uid=u, gid=u) for u in (0, 1, 1000, 65534, 0)])
    en.enrich(b)
    assert [info(b, i)["user"] for i in range(5)] == ["root", "daemon", "alice", "nobody", "root"]
    st = en.stats()["users"]
    assert st["size"] <= 2 and st["evictions"] >= 2 and st["misses"] == 5


def test_fds_per_process_are_bounded(host):
    en = host.enricher(max_fds=4)
    b = batch_of(*[rec("openat", {"dfd": -100, "filename": f"/f{k}", "flags": 0}, pid=4242, res=3 + k)
                   for k in range(3)])
    en.enrich(b)
    assert set(fds(b, 2)) == {0, 1, 2, 3} and en.stats()["fd_overflow"] == 2


def test_rich_value_size_cuts_text(host):
    host.add_process(300, "long", 1, ["x" * 50, "y" * 50], exe="/bin/long",
                     fds={k: f"/very/long/path/{k:04d}" for k in range(10)})
    en = host.enricher(rich_value_size=40)
    b = batch_of(rec("getpid", pid=300, comm="long"))
    en.enrich(b)
    check_contract(b)
    a = info(b, 0)
    assert a["cmdline"] == "x" * 40
    assert len(a["fds"]) == 1                         # 21 + 1 bytes fit in 40, two do not
    off = Enricher(proc_root=host.proc, etc_root=host.root, rich_value_size=0, nss=False)
    off.enrich(b)
    check_contract(b)
    assert info(b, 0)["fds"] == [] and info(b, 0)["fullpath"] == "" and info(b, 0)["cmdline"] == "long"


def test_epochs_start_the_arrays_over(host):
    en = host.enricher(max_strtab=64, max_fd_rows=2)
    for k in range(5):
        b = batch_of(rec("openat", {"dfd": -100, "filename": f"/etc/f{k}", "flags": 0}, pid=4242, res=3))
        en.enrich(b)
        check_contract(b)
        assert fds(b, 0)[3] == f"/etc/f{k}"
    assert en.stats()["epochs"] > 1


def test_empty_batch_and_stale_enrichment(host):
    en = host.enricher()
    b = batch_of(rec("getpid", pid=4242))
    en.enrich(b)
    assert has_enrichment(b)
    b.release()                                        # the batch is reused: its enrichment is stale
    assert not has_enrichment(b)
    en.enrich(b)
    assert len(b.enrich) == 0 and has_enrichment(b)


def test_enricher_from_config():
    from lbd.config import Config

    en = Enricher(Config.default().replace(rich_value_size=100), scan=False)
    assert en.rich_value_size == 100 and en.stats()["procs"]["size"] == 0
    en = Enricher.from_config(Config.default().replace(syscalls=["openat"]), scan=False)
    assert en.rich_value_size == 65536


def test_random_records_never_break_enrichment(tmp_path):
    """Every kind of record, with random values: enrichment completes and keeps the contract."""
    from lbd.ringimage import random_records

    h = FakeHost(tmp_path)
    en = h.enricher()
    for seed in range(3):
        b = batch_of(*random_records(500, seed=seed))
        en.enrich(b)
        check_contract(b)


def test_no_product_module_imports_the_oracle():
    import re
    from pathlib import Path

    import lbd

    root = Path(lbd.__file__).parent
    imports = re.compile(r"^\s*(from\s+lbd(\.|\s+import\s+)_testing|import\s+lbd\._testing)", re.M)
    for path in root.rglob("*.py*"):
        if "_testing" in path.parts or path.suffix not in (".py", ".pyx"):
            continue
        assert not imports.search(path.read_text()), path
