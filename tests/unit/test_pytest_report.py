"""The pytest plugin's reports without a kernel: records from ring images (lbd.ringimage) go through
the per-test capture (membership, recording intervals) into the Log, and the reports' numbers,
paths, assertion messages and the budget's tolerances are held to what those records say.
(tests/kernel/test_pytest_plugin.py runs the plugin for real.)"""
from __future__ import annotations

import os
import threading

import pytest

from lbd import record
from lbd import ringimage as ri
from lbd.batch import Batch
from lbd.pytest.budget import Limit, Tolerance, exceeded, per_call_text
from lbd.pytest.capture import Recording, TestCapture
from lbd.pytest.report import Latency
from lbd.syscalls import BY_NAME

NR = {n: BY_NAME[n].nr for n in ("openat", "newfstatat", "read", "write", "connect", "bind", "sendto", "close",
                                 "mkdirat", "unlinkat", "renameat2", "chdir", "fchdir", "rt_sigreturn", "getpid",
                                 "execve")}
PID, TID, OTHER_TID = 5000, 5000, 5001
AT_FDCWD = -100
O_RDONLY, O_WRONLY_CREAT_TRUNC = os.O_RDONLY, os.O_WRONLY | os.O_CREAT | os.O_TRUNC


def rec(name, args=None, *, ts, res=0, pid=PID, tid=None, latency=1000, flags=0):
    nr = NR[name] if isinstance(name, str) else name
    return ri.make_record(nr, args, pid=pid, tid=pid if tid is None else tid, ts=ts, res=res,
                          latency=latency, flags=flags, str_max=1024)


def fork(parent, child, *, ts, parent_tid=None, thread=False):
    tgid = parent if thread else child
    return ri.make_record(record.NR_SCHED_FORK, {"parent_pid": parent, "child_pid": child,
                                                 "parent_tid": parent_tid or parent, "child_tgid": tgid,
                                                 "child_start": 1}, pid=parent, tid=parent_tid or parent, ts=ts)


def batch_of(records) -> Batch:
    b = Batch(4096)
    ri.image_of(records).ring().fill(b)
    assert len(b) == len(records)
    return b


class FakeSession:
    """What TestCapture needs of a ProbeSession, without a probe."""

    def __init__(self):
        self.lock = threading.RLock()
        self.capture = None
        self.kept = []

    def now(self):
        return 0

    def keep(self, tids):
        self.kept.append(set(tids))

    def drain(self, flush=True):
        pass


def capture(intervals=((100, 10_000),), cwd="/work/dir"):
    cap = TestCapture(FakeSession())
    cap.pid, cap.tids = PID, {TID}
    cap.intervals = [list(i) for i in intervals]
    cap.log.note_cwd(PID, cwd)
    return cap


def block(cap, start=100, end=10_000) -> Recording:
    r = Recording(cap)
    r.start, r.end = start, end
    return r


# ---- membership and intervals --------------------------------------------------------------------

def test_only_the_tests_threads_and_processes_inside_the_intervals_count():
    cap = capture(intervals=((100, 1000), (2000, 3000)))
    cap.ingest(batch_of([
        rec("getpid", ts=50),                                   # before the first interval
        rec("getpid", ts=150),                                  # the test's thread
        rec("getpid", ts=160, tid=OTHER_TID),                   # another thread of pytest: not the test's
        rec("getpid", ts=170, pid=7777),                        # another process
        fork(PID, 6000, ts=200),                                # the test starts 6000
        rec("getpid", ts=210, pid=6000),                        # which counts
        fork(6000, 6001, ts=220),                               # and its child
        rec("getpid", ts=230, pid=6001),
        fork(PID, OTHER_TID + 10, ts=240, thread=True),         # a thread of pytest: not a process
        rec("getpid", ts=1500),                                 # between the intervals (paused)
        rec("getpid", ts=2500, pid=6001),
        rec("getpid", ts=2600, flags=record.F_NOENTER),         # an exit whose enter was not seen
        rec("getpid", ts=3500),                                 # after
    ]))
    r = block(cap, 0, 5000)
    rows = r.table(per="call")
    assert [(x["pid"], x["ts"]) for x in rows] == [(PID, 150), (6000, 210), (6001, 230), (6001, 2500)]
    assert cap.children == {6000, 6001}
    assert r.counts == {"getpid": 4} and r.total == 4


def test_blocks_select_their_windows_and_overlapping_blocks_count_once():
    from lbd.pytest.capture import Blocks

    cap = capture()
    cap.ingest(batch_of([rec("getpid", ts=t) for t in (150, 250, 350, 450)]))
    outer, inner, later = block(cap, 100, 400), block(cap, 200, 300), block(cap, 420, 500)
    assert (outer.total, inner.total, later.total) == (3, 1, 1)
    assert Blocks(cap, lambda: [outer, inner, later]).total == 4
    assert Blocks(cap, lambda: [inner, block(cap, 240, 260)]).total == 1


def test_a_thread_registered_later_counts_and_is_kept_in_the_kernel():
    """A thread registered while recording counts as the test's; the kernel keeps it already (it
    follows the threads a kept thread creates), so the keep map is not rewritten from it, and the
    next switch on names it."""
    cap = capture()
    cap.on = True
    kept_before = list(cap.session.kept)
    cap.add_thread(OTHER_TID)
    assert cap.session.kept == kept_before and OTHER_TID in cap.tids
    cap.ingest(batch_of([rec("getpid", ts=150, tid=OTHER_TID)]))
    assert block(cap).counts == {"getpid": 1}


# ---- numbers ----------------------------------------------------------------------------------

def test_counts_failures_latency_and_bytes():
    cap = capture()
    lat = list(range(1, 101))              # 100 calls, latencies 1..100 ns
    recs = [rec("getpid", ts=200 + i, latency=v, res=PID) for i, v in enumerate(lat)]
    recs += [rec("read", {"fd": 3, "count": 100}, ts=400, res=100), rec("read", {"fd": 3}, ts=401, res=-11),
             rec("write", {"fd": 1, "buf": b"x"}, ts=402, res=40), rec("write", {"fd": 1}, ts=403, res=-32),
             rec("openat", [AT_FDCWD, "/nope", O_RDONLY, 0], ts=404, res=-2),
             rec("openat", [AT_FDCWD, "/nope", O_RDONLY, 0], ts=405, res=-2),
             rec("openat", [AT_FDCWD, "/root/x", O_RDONLY, 0], ts=406, res=-13),
             rec("rt_sigreturn", ts=407, res=-1)]    # not a status: never a failure
    cap.ingest(batch_of(recs))
    r = block(cap)
    assert r.counts == {"getpid": 100, "openat": 3, "read": 2, "write": 2, "rt_sigreturn": 1}
    assert list(r.counts)[:2] == ["getpid", "openat"]          # most frequent first
    assert r.failures == {"read": {"EAGAIN": 1}, "write": {"EPIPE": 1}, "openat": {"ENOENT": 2, "EACCES": 1}}
    assert r.latency["getpid"] == Latency(100, sum(lat), 99)   # nearest rank: 99 of 100 are <= 99
    assert r.bytes_read == 100 and r.bytes_written == 40
    c = r.count("openat")
    assert c == 3 and isinstance(c, int)
    assert r.count("openat", "read") == 5
    assert r.table()[0] == {"syscall": "getpid", "count": 100, "failures": 0, "total_ns": sum(lat), "p99_ns": 99}


def test_an_unknown_syscall_name_is_one_clear_error():
    r = block(capture())
    with pytest.raises(ValueError, match=r"^unknown syscall name 'opnat'; did you mean 'openat'\?$"):
        r.count("opnat")
    with pytest.raises(ValueError, match="per must be 'syscall' or 'call'"):
        r.table(per="row")


def test_the_count_of_a_failed_assertion_lists_the_calls():
    cap = capture()
    cap.ingest(batch_of([rec("openat", [AT_FDCWD, "/etc/app.toml", O_RDONLY, 0], ts=200 + i, res=3)
                         for i in range(25)] + [rec("getpid", ts=300, res=PID)]))
    r = block(cap)
    lines = r.count("openat").calls()
    assert len(lines) == 21 and lines[-1] == "... and 5 more"
    assert lines[0].endswith('openat(AT_FDCWD, "/etc/app.toml", O_RDONLY) = 3'), lines[0]
    assert r.count("getpid").calls() == [f"pid {PID} getpid(...) = {PID}"]


def test_a_single_p99_and_an_empty_report():
    cap = capture()
    r = block(cap)
    assert (r.counts, r.total, r.failures, r.latency, r.files, r.execs) == ({}, 0, {}, {}, [], [])
    assert r.summary() == "no syscalls recorded"
    cap.ingest(batch_of([rec("getpid", ts=200, latency=7)]))
    assert r.latency == {"getpid": Latency(1, 7, 7)}


# ---- files, paths, writes ---------------------------------------------------------------------

def test_files_opened_resolve_against_the_cwd_and_directory_fds():
    cap = capture(cwd="/work/dir")
    cap.ingest(batch_of([
        rec("openat", [AT_FDCWD, "rel.txt", O_WRONLY_CREAT_TRUNC, 0o644], ts=200, res=5),
        rec("openat", [AT_FDCWD, "/srv/data", os.O_RDONLY | os.O_DIRECTORY, 0], ts=210, res=6),   # (O_TMPFILE's bit)
        rec("openat", [6, "in/x.csv", O_RDONLY, 0], ts=220, res=7),
        rec("chdir", ["../other"], ts=230),
        rec("openat", [AT_FDCWD, "./a", O_RDONLY, 0], ts=240, res=8),
        rec("fchdir", [6], ts=250),
        rec("openat", [AT_FDCWD, "b", O_RDONLY, 0], ts=260, res=-2),
        rec("openat", [99, "c", O_RDONLY, 0], ts=270, res=9),        # an fd the recording never saw
    ]))
    f = block(cap).files
    assert [(x.path, x.resolved, x.result, x.errno) for x in f] == [
        ("rel.txt", "/work/dir/rel.txt", 5, None), ("/srv/data", "/srv/data", 6, None),
        ("in/x.csv", "/srv/data/in/x.csv", 7, None), ("./a", "/work/other/a", 8, None),
        ("b", "/srv/data/b", -2, "ENOENT"), ("c", None, 9, None)]
    assert f[0].flags_text == "O_WRONLY|O_CREAT|O_TRUNC" and f[0].writes
    assert f[1].flags_text == "O_RDONLY|O_DIRECTORY" and not f[1].writes


def test_each_decoded_call_keeps_its_own_line():
    cap = capture()
    cap.ingest(batch_of([rec("openat", [AT_FDCWD, "/tmp/a\u2028b\nc", O_RDONLY, 0], ts=200, res=3),
                         rec("openat", [AT_FDCWD, "/etc/x", O_RDONLY, 0], ts=201, res=4)]))
    a, b = block(cap).files
    assert a.path == "/tmp/a\u2028b\nc" and a.call.text.endswith('openat(AT_FDCWD, "/tmp/a\u2028b\\nc", O_RDONLY) = 3')
    assert b.call.text.endswith('openat(AT_FDCWD, "/etc/x", O_RDONLY) = 4')


def test_a_forked_child_inherits_the_cwd():
    cap = capture(cwd="/home/t")
    cap.ingest(batch_of([fork(PID, 6000, ts=200),
                         rec("openat", [AT_FDCWD, "x", O_RDONLY, 0], ts=210, pid=6000, res=3)]))
    assert block(cap).files[0].resolved == "/home/t/x"


def test_writes_outside_a_directory(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    link = tmp_path / "link"
    link.symlink_to(root)
    cap = capture(cwd=str(root))
    cap.ingest(batch_of([
        rec("openat", [AT_FDCWD, "inside.txt", O_WRONLY_CREAT_TRUNC, 0o644], ts=200, res=3),
        rec("openat", [AT_FDCWD, f"{link}/via-link.txt", O_WRONLY_CREAT_TRUNC, 0o644], ts=201, res=3),
        rec("openat", [AT_FDCWD, "/etc/passwd", O_RDONLY, 0], ts=202, res=3),          # read: fine
        rec("openat", [AT_FDCWD, "/dev/null", os.O_RDWR, 0], ts=203, res=3),           # never counts
        rec("openat", [AT_FDCWD, "/tmp/out.log", os.O_WRONLY | os.O_APPEND, 0], ts=204, res=3),
        rec("openat", [AT_FDCWD, "/etc/shadow", O_WRONLY_CREAT_TRUNC, 0], ts=205, res=-13),  # failed: no write
        rec("mkdirat", [AT_FDCWD, "../sibling", 0o755], ts=206),
        rec("unlinkat", [AT_FDCWD, "inside.txt", 0], ts=207),
        rec("renameat2", [AT_FDCWD, "inside.txt", AT_FDCWD, "/var/tmp/moved", 0], ts=208),
        rec("unlinkat", [42, "gone", 0], ts=209),                                     # unknown dir fd
    ]))
    r = block(cap)
    bad = r.writes_outside(root)
    assert [c.syscall for c in bad] == ["openat", "mkdirat", "renameat2", "unlinkat"]
    assert bad[0].paths == ("/tmp/out.log",)
    assert bad[1].paths == (str(tmp_path / "sibling"),)
    assert bad[3].paths == (None,)
    assert r.writes_outside(root, "/tmp/out.log", tmp_path, "/var/tmp") == [bad[3]]
    with pytest.raises(AssertionError) as e:
        r.assert_no_writes_outside(root)
    msg = str(e.value).splitlines()
    assert msg[0] == f"4 writes outside {root}:"
    assert msg[1].endswith('openat(AT_FDCWD, "/tmp/out.log", O_WRONLY|O_APPEND) = 3'), msg[1]
    assert msg[3].endswith('renameat2(AT_FDCWD, "inside.txt", AT_FDCWD, "/var/tmp/moved", 0) = 0'), msg[3]
    with pytest.raises(TypeError):
        r.writes_outside()


# ---- network ----------------------------------------------------------------------------------

def test_connections_binds_and_the_network_assertion():
    cap = capture()
    cap.ingest(batch_of([
        rec("connect", {"fd": 3, "uservaddr": ri.sockaddr_in("10.0.0.1", 443), "addrlen": 16}, ts=200, res=-111),
        rec("bind", {"fd": 4, "umyaddr": ri.sockaddr_in6("::1", 8080), "addrlen": 28}, ts=201),
        rec("connect", {"fd": 5, "uservaddr": ri.sockaddr_un("/run/app.sock"), "addrlen": 16}, ts=202),
        rec("sendto", {"fd": 6, "buff": b"q", "len": 1, "addr": ri.sockaddr_in("127.0.0.1", 53),
                       "addr_len": 16}, ts=203, res=1),
        rec("sendto", {"fd": 6, "buff": b"q", "len": 1}, ts=204, res=1),             # connected: no address
    ]))
    r = block(cap)
    got = [(c.syscall, c.family, c.address, c.port, c.path, c.result, c.errno) for c in r.connections]
    assert got == [("connect", "AF_INET", "10.0.0.1", 443, None, -111, "ECONNREFUSED"),
                   ("bind", "AF_INET6", "::1", 8080, None, 0, None),
                   ("connect", "AF_UNIX", None, None, "/run/app.sock", 0, None),
                   ("sendto", "AF_INET", "127.0.0.1", 53, None, 1, None)]
    assert [c.address for c in r.network_calls()] == ["10.0.0.1", "::1", "127.0.0.1"]
    assert [c.address for c in r.network_calls(allow_loopback=True)] == ["10.0.0.1"]
    with pytest.raises(AssertionError) as e:
        r.assert_no_network(allow_loopback=True)
    assert str(e.value).splitlines() == [
        "1 network call (connect, bind, sendto to an IP address):",
        f"  lbd-test({PID}) connect(3, {{AF_INET, 10.0.0.1:443}}, 16) = -1 ECONNREFUSED (Connection refused)"]


def test_executions_are_the_successful_execves():
    cap = capture()
    cap.ingest(batch_of([
        fork(PID, 6000, ts=200),
        rec("execve", {"filename": "/usr/local/bin/sh", "argv": ["sh", "-c", "true"]}, ts=205, pid=6000, res=-2),
        rec("execve", {"filename": "/bin/sh", "argv": ["sh", "-c", "true"]}, ts=210, pid=6000,
            flags=record.F_NEWIMAGE),
        rec("execve", {"filename": "/bin/x", "argv": ["x"]}, ts=220, pid=7000),          # not the test's
    ]))
    r = block(cap)
    (x,) = r.execs
    assert (x.filename, x.argv, x.pid) == ("/bin/sh", ["sh", "-c", "true"], 6000)
    assert r.count("execve") == 2 and r.failures == {"execve": {"ENOENT": 1}}


def test_dataframe_has_the_tables_columns():
    # (pandas is in lbd's test extra)
    cap = capture()
    cap.ingest(batch_of([rec("getpid", ts=200, res=PID), rec("read", {"fd": 0}, ts=201, res=-4)]))
    r = block(cap)
    df = r.dataframe()
    assert list(df.columns) == ["syscall", "count", "failures", "total_ns", "p99_ns"]
    assert df.set_index("syscall")["failures"].to_dict() == {"getpid": 0, "read": 1}
    calls = r.dataframe(per="call")
    assert calls["errno"].isna().tolist() == [True, False] and calls["errno"][1] == "EINTR"
    assert calls["pid"].tolist() == [PID, PID]


# ---- budget -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, default, per", [
    ("", Limit(10, 0.5), {}),
    ("10%+0.5", Limit(10, 0.5), {}),
    ("0", Limit(0, 0), {}),
    ("25%", Limit(25, 0), {}),
    ("2.5", Limit(0, 2.5), {}),
    ("any,openat=0,read=50%", Limit(any=True), {"openat": Limit(0, 0), "read": Limit(50, 0)}),
    (" openat = 1 ", Limit(10, 0.5), {"openat": Limit(0, 1)}),
])
def test_tolerance_forms(text, default, per):
    t = Tolerance.parse(text)
    assert t.default == default and t.per_syscall == per


@pytest.mark.parametrize("text, bad", [("10", None), ("ten", "'ten'"), ("10%5", "'10%5'"), ("+1", "'+1'"),
                                       ("-1", "'-1'"), ("openat=", "'openat='"), ("opnat=1", "'opnat' is not"),
                                       ("1e3", "'1e3'"), ("inf", "'inf'")])
def test_tolerance_errors_are_one_line(text, bad):
    if bad is None:
        Tolerance.parse(text)
        return
    with pytest.raises(ValueError) as e:
        Tolerance.parse(text)
    msg = str(e.value)
    assert msg.startswith("--syscall-tolerance: ") and bad in msg and "\n" not in msg


def test_exceeded_and_the_comparison_line():
    tol = Tolerance.parse("10%+0.5,openat=0,futex=any")
    saved = {"openat": 1, "read": 10, "futex": 1}
    assert exceeded(saved, {"openat": 1, "read": 11.5, "futex": 50}, tol) == []
    assert exceeded(saved, {"openat": 2, "read": 11.6, "brk": 0.4}, tol) == [
        "openat: 1 -> 2 per call (+1; at most 1 allowed by 0)",
        "read: 10 -> 11.6 per call (+1.6; at most 11.5 allowed by 10%+0.5)"]
    assert exceeded({}, {"brk": 0.6}, tol) == ["brk: 0 -> 0.6 per call (+0.6; at most 0.5 allowed by 10%+0.5)"]
    assert per_call_text({"openat": 0, "read": 2}, {"openat": 1, "read": 2}) == \
        "2 -> 3 syscalls per call: openat 0->1"
    assert per_call_text({"read": 2}, {"read": 2}) == "2 -> 2 syscalls per call (no change)"
    assert per_call_text(None, {"read": 2}) == "2 syscalls per call (nothing saved to compare)"
