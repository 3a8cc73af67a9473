"""Differential tests: the compiled enrichment (lbd._enrich, Enricher(engine="cython")) against
the pure-Python reference (lbd/enrich/, engine="python") on random event streams, batch by batch.

Each example is a stream of syscall records (every fd syscall the compiled loop handles itself,
the process-tree ones it hands to Python, enter records, failures, missing enters, odd paths,
socket addresses of every family) over a few processes of a fake /proc, cut into batches of
random sizes, and enriched by two Enrichers with the same random parameters (text limits, small
tables that evict, tiny epochs, grace periods, fd source).  After every batch the two must agree
on each event's enrichment as Python values (ppid, parent comm, user, group, cmdline, fullpath,
fd list) and, bit for bit, on the three arrays (batch.enrich, batch.strtab, batch.fdtab).
The pieces are also held to their references one by one: StringArena, FdTable, normpath.
"""
from __future__ import annotations

import os
import posixpath
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from lbd import record, syscalls
from lbd.enrich import event_info
from lbd.enrich.fdtable import FdTable as PyFdTable
from lbd.enrich.strtab import StringArena as PyStringArena
from lbd.ringimage import sockaddr_in, sockaddr_in6, sockaddr_un
from tests.data.fakeproc import O_CLOEXEC, FakeHost, batch_of, rec

_enrich = pytest.importorskip("lbd._enrich")

SEC = 1_000_000_000
T0 = 1_750_000_000 * SEC
PIDS = (100, 4242, 777, 5000, 5001)          # 100, 4242 in /proc; 777 never; 5000/5001 born
COMMS = ("bash", "sd-rmrf", "ghost", "cat", "x\xe9y")
CLONE_THREAD = 0x10000

# LBD_DIFF_EXAMPLES=20000 for a long hunt (the suite's default keeps it to a few seconds)
SETTINGS = settings(max_examples=int(os.environ.get("LBD_DIFF_EXAMPLES", "150")), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


def make_host(tmp_path) -> FakeHost:
    h = FakeHost(tmp_path)
    h.add_process(1, "systemd", 0, ["/sbin/init", "splash"], exe="/usr/lib/systemd/systemd")
    h.add_process(100, "bash", 1, ["-bash"], exe="/usr/bin/bash", cwd="/home/alice",
                  fds={0: "/dev/pts/0", 1: "/dev/pts/0", 2: "/dev/pts/0", 5: "/srv/dir", 255: "/dev/pts/0"},
                  cloexec={5, 255})
    h.add_process(4242, "sd-rmrf", 1, ["sd-rmrf", "--x"], exe="/usr/lib/systemd/systemd", cwd="/",
                  fds={0: "/dev/null", 1: "/dev/null", 2: "/dev/null", 7: "socket:[1234]", 9: "/tmp/\udcff-odd"})
    h.add_process(5001, "cat", 100, ["cat", "/etc/hostname"], exe="/usr/bin/cat", cwd="/tmp")
    return h


# ---- strategies -----------------------------------------------------------------------------------

fds = st.integers(min_value=-3, max_value=12)
new_fd = st.integers(min_value=0, max_value=12)
paths = st.sampled_from([
    "/etc/hosts", "/etc/passwd", "notes.txt", "./a/../b", "../up", "a/./b/.", "//srv//x", "///root",
    "", ".", "..", "/", "dir/", "/tmp/../../x", "x/..", "/usr/lib/x86_64-linux-gnu/libexample-long-name.so.6",
    b"bad\xffname", b"/abs/\xc3\x28", "caf\xe9", b"\xed\xa0\x80surrogate", "sub/dir/file.txt",
]) | st.text(alphabet="ab./\xe9", max_size=12)
ip4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ip6 = st.lists(st.sampled_from([0, 0, 0, 1, 0xFFFF, 0xDB8, 0x2001, 0xA]), min_size=8, max_size=8).map(
    lambda h: ":".join(f"{x:x}" for x in h))
ports = st.integers(0, 65535)
sockaddrs = st.one_of(
    st.builds(sockaddr_in, ip4, ports),
    st.builds(lambda a, p: sockaddr_in6(a, p), ip6, ports),
    st.sampled_from([sockaddr_un("/run/x.sock"), sockaddr_un("@abstract"), sockaddr_un(""), b"\x01\x00",
                     b"\x02\x00", b"\x02\x00\x00\x50", b"\x0a\x00" + b"\x00" * 10, b"\x10\x00abc",
                     b"\x11\x00" + bytes(10), b"\x01\x00/run/\xff.sock\x00junk", b"\x01\x00\x00abs\x00t"]),
)
cloexec_flags = st.sampled_from([0, O_CLOEXEC, O_CLOEXEC | 0o100])
families = st.sampled_from([1, 2, 10, 16, 17, 46, 63, 64, 70000, 2**32 + 2])


def _ev(name, args=None, **kw):
    return (name, args, kw)


@st.composite
def events(draw):
    """One event: (name, args, keywords of rec() other than pid/ts/comm)."""
    k = draw(st.integers(0, 33))
    res_fd = draw(st.one_of(new_fd, st.sampled_from([-2, -9, -24])))
    if k == 0:
        return _ev("openat", {"dfd": draw(st.sampled_from([-100, -100, 3, 5, 9, 1])), "filename": draw(paths),
                              "flags": draw(cloexec_flags)}, res=res_fd)
    if k == 1:
        return _ev("open", {"filename": draw(paths), "flags": draw(cloexec_flags)}, res=res_fd)
    if k == 2:
        if draw(st.booleans()):
            return _ev("creat", {"pathname": draw(paths), "mode": 0o644}, res=res_fd)
        return _ev("openat2", {"dfd": draw(st.sampled_from([-100, 5])), "filename": draw(paths)}, res=res_fd)
    if k == 3:
        return _ev("socket", {"family": draw(families), "type": draw(st.sampled_from([1, 2, 1 | O_CLOEXEC])),
                              "protocol": 0}, res=res_fd)
    if k in (4, 5):
        return _ev(draw(st.sampled_from(["connect", "bind"])),
                   [draw(fds), draw(sockaddrs | st.none()), 16], res=draw(st.sampled_from([0, 0, -115, -111])))
    if k == 6:
        name = draw(st.sampled_from(["accept", "accept4"]))
        args = {"fd": draw(fds), "upeer_sockaddr": draw(sockaddrs | st.none()), "upeer_addrlen": (16,)}
        if name == "accept4":
            args["flags"] = draw(cloexec_flags)
        return _ev(name, args, res=res_fd)
    if k == 7:
        return _ev("socketpair", {"family": draw(families), "type": 1, "protocol": 0,
                                  "usockvec": (draw(new_fd), draw(new_fd))}, res=draw(st.sampled_from([0, 0, -24])))
    if k == 8:
        pair = (draw(new_fd), draw(new_fd))
        if draw(st.booleans()):
            return _ev("pipe", {"fildes": pair}, res=draw(st.sampled_from([0, -24])))
        return _ev("pipe2", {"fildes": pair, "flags": draw(cloexec_flags)}, res=draw(st.sampled_from([0, -24])))
    if k == 9:
        return _ev("dup", {"fildes": draw(fds)}, res=res_fd)
    if k == 10:
        return _ev("dup2", {"oldfd": draw(fds), "newfd": draw(new_fd)}, res=res_fd)
    if k == 11:
        return _ev("dup3", {"oldfd": draw(fds), "newfd": draw(new_fd), "flags": draw(cloexec_flags)}, res=res_fd)
    if k == 12:
        return _ev("fcntl", {"fd": draw(fds), "cmd": draw(st.sampled_from([0, 1030, 2, 1, 3, 4])),
                             "arg": draw(st.sampled_from([0, 1, 10]))}, res=res_fd)
    if k in (13, 14, 15):
        return _ev("close", {"fd": draw(fds)}, res=draw(st.sampled_from([0, 0, -9, -4])))
    if k == 16:
        return _ev("close_range", {"fd": draw(new_fd), "max_fd": draw(st.sampled_from([3, 8, 0xFFFFFFFF, 2])),
                                   "flags": draw(st.sampled_from([0, 4, 2]))}, res=draw(st.sampled_from([0, -22])))
    if k == 17:
        name = draw(st.sampled_from(["eventfd2", "epoll_create1", "inotify_init1", "timerfd_create",
                                     "pidfd_open", "io_uring_setup", "signalfd4", "epoll_create", "eventfd"]))
        nargs = len(syscalls.BY_NAME[name].args)
        return _ev(name, [draw(st.sampled_from([0, O_CLOEXEC, 1]))] * nargs, res=res_fd)
    if k == 18:
        return _ev("memfd_create", {"uname": draw(st.sampled_from(["buf", "", "x\xe9"])), "flags": draw(st.sampled_from([0, 1]))},
                   res=res_fd)
    if k == 19:
        return _ev(draw(st.sampled_from(["bpf", "pidfd_getfd", "open_by_handle_at"])), None, res=res_fd)
    if k == 20:
        return _ev("chdir", {"filename": draw(paths)}, res=draw(st.sampled_from([0, -2])))
    if k == 21:
        return _ev("fchdir", {"fd": draw(fds)}, res=draw(st.sampled_from([0, -9])))
    if k == 22:
        return _ev("sched_process_fork", {"parent_pid": draw(st.sampled_from(PIDS)), "child_pid": draw(st.sampled_from(PIDS)),
                                          "parent_tid": 0})
    if k == 23:
        return _ev("clone", {"clone_flags": draw(st.sampled_from([0x1200011, CLONE_THREAD | 0x100]))},
                   res=draw(st.sampled_from(PIDS + (-11, 0))))
    if k == 24:
        return _ev(draw(st.sampled_from(["fork", "vfork"])), None, res=draw(st.sampled_from(PIDS + (-11,))))
    if k == 25:
        return _ev("sched_process_exec", {"pid": 0, "old_pid": 0, "filename": draw(st.sampled_from(
            ["/usr/bin/cat", "rel/prog", "/bin/sh"]))})
    if k == 26:
        fl = draw(st.sampled_from([0, 0, 1 << (record.F_TRUNC_SHIFT + 1), 1 << (record.F_FAULT_SHIFT + 1)]))
        return _ev("execve", {"filename": draw(st.sampled_from(["/usr/bin/ls", "ls"])),
                              "argv": draw(st.sampled_from([["ls", "-l"], [], ["a\xe9"]])), "envp": []},
                   res=draw(st.sampled_from([0, 0, -2])), flags=fl)
    if k == 27:
        return _ev("execveat", {"fd": draw(st.sampled_from([-100, 5])), "filename": "prog", "argv": ["prog"],
                                "envp": [], "flags": 0}, res=draw(st.sampled_from([0, -2])))
    if k == 28:
        return _ev("sched_process_exit", {"pid": draw(st.sampled_from(PIDS)), "group_dead": draw(st.sampled_from([0, 1]))})
    if k in (29, 30):
        return _ev(draw(st.sampled_from(["getpid", "read", "write"])), None, res=0)
    if k == 31:   # an enter record of an fd syscall: changes nothing
        return _ev(draw(st.sampled_from(["openat", "close", "dup2"])), None, dir=">", res=0)
    if k == 32:   # an exit without its enter: no arguments
        return _ev(draw(st.sampled_from(["openat", "close", "connect", "dup"])), None, flags=record.F_NOENTER,
                   res=draw(new_fd))
    return _ev("newfstatat", {"dfd": -100, "filename": draw(paths), "statbuf": 0, "flag": 0}, res=0)


@st.composite
def streams(draw):
    evs = draw(st.lists(events(), min_size=1, max_size=120))
    out = []
    ts = T0
    for name, args, kw in evs:
        ts += draw(st.sampled_from([1, 1000, SEC // 3, 2 * SEC]))
        pid = draw(st.sampled_from(PIDS))
        kw = dict(kw)
        kw.setdefault("res", 0)
        if name in ("sched_process_exec", "sched_process_exit") and args and "pid" in args and not args["pid"]:
            args = {**args, "pid": pid, "old_pid": pid}
        kw.update(pid=pid, tid=pid, ts=ts, comm=draw(st.sampled_from(COMMS)),
                  ppid=draw(st.sampled_from([0, 0, 1, 100])), uid=draw(st.sampled_from([0, 1000, 4321])),
                  gid=draw(st.sampled_from([0, 65534, 4321])))
        out.append(rec(name, args, **kw))
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(out) - 1)), max_size=4))))
    bounds = [0, *cuts, len(out)]
    return [out[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


params = st.fixed_dictionaries({
    "rich_value_size": st.sampled_from([65536, 65536, 40, 12, 0]),
    "max_procs": st.sampled_from([16384, 16384, 3]),
    "max_born": st.sampled_from([8192, 2]),
    "max_strtab": st.sampled_from([1 << 20, 1 << 20, 200]),
    "max_fd_rows": st.sampled_from([1 << 16, 1 << 16, 3]),
    "grace_s": st.sampled_from([5.0, 0.0, 1.0]),
    "max_fds": st.sampled_from([65536, 65536, 4]),
    "selection": st.sampled_from(["all", "all", "no_chdir", "procfs"]),
})


def _selection(kind: str):
    """all: every syscall (fds from the events); no_chdir: relative paths stay as given;
    procfs: an fd syscall missing, so fds come from procfs each batch."""
    nrs = {sc.nr for sc in syscalls.TABLE}
    if kind == "all":
        return None
    if kind == "no_chdir":
        return nrs - {syscalls.BY_NAME["chdir"].nr}
    return nrs - {syscalls.BY_NAME["dup3"].nr}


def assert_same(b, ref: tuple, k: int) -> None:
    """b's enrichment (compiled) equals ref (the reference's arrays of the same batch)."""
    en, stt, fdt = ref
    r = SimpleNamespace(enrich=en, strtab=stt, fdtab=fdt)
    for i in range(len(b)):
        assert event_info(b, i) == event_info(r, i), f"batch {k}, event {i}"
    assert b.enrich.dtype == en.dtype and np.array_equal(b.enrich.view(np.uint32), en.view(np.uint32)), f"batch {k}: enrich"
    assert bytes(b.strtab) == bytes(stt), f"batch {k}: strtab"
    assert b.fdtab.dtype == fdt.dtype and bytes(b.fdtab) == bytes(fdt), f"batch {k}: fdtab"


def run_both(host, batches_recs, **kw):
    sel = _selection(kw.pop("selection", "all"))
    py = host.enricher(engine="python", selection=sel, **kw)
    cy = host.enricher(engine="cython", selection=sel, **kw)
    for k, recs in enumerate(batches_recs):
        b = batch_of(*recs)
        py.enrich(b)
        ref = (b.enrich.copy(), b.strtab.copy(), b.fdtab.copy())
        cy.enrich(b)
        assert_same(b, ref, k)
    sp, sc = py.stats(), cy.stats()
    for key in ("batches", "events", "fd_rows", "epochs", "strtab_bytes", "errors", "procs", "born", "users",
                "groups", "procfs_reads", "procfs_vanished", "exited_pending", "fd_source"):
        assert sp[key] == sc[key], key
    return py, cy


@pytest.fixture
def host(tmp_path):
    return make_host(tmp_path)


@SETTINGS
@given(stream=streams(), kw=params)
def test_random_streams_enrich_the_same(host, stream, kw):
    run_both(host, stream, **kw)


def test_the_mixes_enrich_the_same(tmp_path):
    """The benchmark's streams, replayed twice with one Enricher each (warm tables, epochs)."""
    from tests.data.enrichmix import MIXES, mix_batches, mix_host

    h = mix_host(tmp_path)
    for mix in MIXES:
        batches = mix_batches(mix, 3000, 256, seed=7)
        py, cy = h.enricher(engine="python", max_strtab=4096), h.enricher(engine="cython", max_strtab=4096)
        for k, b in enumerate(batches * 2):
            py.enrich(b)
            ref = (b.enrich.copy(), b.strtab.copy(), b.fdtab.copy())
            cy.enrich(b)
            assert_same(b, ref, k)
        assert cy.stats()["errors"] == 0


def test_random_records_enrich_the_same(host):
    """Every kind of record with random values (lbd.ringimage.random_records), fd numbers kept in
    the kernel's range: the same arrays."""
    from lbd.ringimage import random_records

    for seed in range(4):
        recs = []
        for r in random_records(400, seed=seed):
            b = batch_of(r)
            res = int(b.events["res"][0])
            if res > 1 << 20:              # not an fd any kernel returns (the reference keeps it
                continue                    # as a Python int, the tables as int32)
            recs.append(r)
        run_both(host, [recs[i: i + 97] for i in range(0, len(recs), 97)])


# ---- the pieces -------------------------------------------------------------------------------------

texts = st.text(max_size=20) | st.sampled_from(["", "\udcff", "a\udc80b", "\ud800", "\U0001F600x", "é" * 30])


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["add", "add", "reset", "array"]), texts), max_size=60),
       limit=st.sampled_from([0, 0, 5, 1]))
def test_string_arena_matches_the_reference(ops, limit):
    a, b = PyStringArena(limit=limit, initial=8), _enrich.StringArena(limit=limit, initial=8)
    for op, s in ops:
        if op == "add":
            assert a.add(s) == b.add(s), s
        elif op == "reset":
            a.reset()
            b.reset()
        else:
            assert bytes(a.array()) == bytes(b.array())
        assert len(a) == len(b) and a.epoch == b.epoch
    assert bytes(a.array()) == bytes(b.array())


table_ops = st.lists(st.one_of(
    st.tuples(st.just("set"), new_fd, st.sampled_from(["/a", "/b", "", "\udcff", "é/x"]), st.booleans()),
    st.tuples(st.just("close"), fds),
    st.tuples(st.just("dup"), fds, new_fd, st.booleans()),
    st.tuples(st.just("set_cloexec"), fds, st.booleans()),
    st.tuples(st.just("close_range"), new_fd, st.sampled_from([2, 5, 0xFFFFFFFF]), st.booleans()),
    st.tuples(st.just("exec")),
    st.tuples(st.just("copy")),
    st.tuples(st.just("epoch")),
), max_size=50)


@settings(max_examples=300, deadline=None)
@given(ops=table_ops, max_fds=st.sampled_from([65536, 3]))
def test_fd_table_matches_the_reference(ops, max_fds):
    seed = [(0, "/dev/null", False), (3, "/x", True)]
    ta, tb = PyFdTable(seed, max_fds=max_fds), _enrich.FdTable(seed, max_fds=max_fds)
    aa, ab = PyStringArena(), _enrich.StringArena()
    ta.encode(aa)
    tb.encode_rows(ab)
    for op, *args in ops:
        if op == "copy":
            ta, tb = ta.copy(), tb.copy()
        elif op == "epoch":
            aa.reset()
            ab.reset()
        else:
            ra, rb = getattr(ta, op)(*args), getattr(tb, op)(*args)
            assert ra == rb, op
        assert ta.items() == tb.items() and len(ta) == len(tb) and ta.nchars == tb.nchars
        assert ta.snapshot() == tb.snapshot() and ta.overflow == tb.overflow
        for fd in range(-1, 13):
            assert (ta.path(fd), ta.cloexec(fd), fd in ta) == (tb.path(fd), tb.cloexec(fd), fd in tb)
        # the rows encoded for the current epoch: the same offsets in arenas fed the same way
        assert list(ta.encode(aa)) == list(tb.encode_rows(ab))
        assert bytes(aa.array()) == bytes(ab.array())


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(["", ".", "..", "a", "bc", "é", "..."]), max_size=8),
       st.sampled_from(["/", "//", "///"]))
def test_normpath_matches_posixpath(parts, lead):
    p = lead + "/".join(parts)
    assert _enrich._normpath(p.encode()) == posixpath.normpath(p).encode()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([0, 0, 0, 1, 0xFFFF, 0xABC]) | st.integers(0, 0xFFFF), min_size=8, max_size=8),
       ports, st.tuples(*[st.integers(0, 255)] * 4))
def test_inet_names_match_lbd_args(hextets, port, v4):
    """The fd name connect/accept give an inet / inet6 socket: lbd.args' (ipaddress's) text."""
    from lbd.enrich.enricher import _sock_text_of

    p = port.to_bytes(2, "big")
    raw6 = b"\x0a\x00" + p + bytes(4) + b"".join(h.to_bytes(2, "big") for h in hextets) + bytes(4)
    raw4 = b"\x02\x00" + p + bytes(v4) + bytes(8)
    for raw in (raw6, raw4, raw4[:8], raw6[:24]):
        assert _enrich._inet_text(raw) == _sock_text_of(raw)
    assert _enrich._inet_text(raw4[:7]) is None and _enrich._inet_text(raw6[:23]) is None


def test_stub_complete():
    """lbd/_enrich.pyi names every public name of the module and of its classes, and no other."""
    import ast
    from pathlib import Path

    tree = ast.parse((Path(_enrich.__file__).parent / "_enrich.pyi").read_text())
    top, classes = set(), {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            classes[node.name] = {m.name if isinstance(m, ast.FunctionDef) else m.target.id
                                  for m in node.body if isinstance(m, (ast.FunctionDef, ast.AnnAssign))}
            top.add(node.name)
        elif isinstance(node, ast.FunctionDef):
            top.add(node.name)
    defined = {n for n in dir(_enrich) if callable(getattr(_enrich, n))
               and getattr(getattr(_enrich, n), "__module__", None) == "lbd._enrich"}
    public = {n for n in defined if not n.startswith("_")}
    assert public == {n for n in top if not n.startswith("_")}, public ^ top
    assert top <= defined, top - defined            # the test hooks the stub names exist
    for name, members in classes.items():
        cls = getattr(_enrich, name)
        have = {m for m in dir(cls) if not m.startswith("_") or m in ("__init__", "__len__", "__contains__")}
        have -= {m for m in dir(object) if not m.startswith("__init__")}
        assert have <= members | {"__init__"}, (name, have - members)
