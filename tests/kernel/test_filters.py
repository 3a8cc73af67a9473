"""In-kernel filters: each drops what it should, keeps the rest, and its counter grows by at least
the number of syscalls it dropped.  All are changed at run time (Probe.update), never reloaded.

The counters are the session probe's own (per-CPU arrays summed), so deltas over one test count
only what this probe saw; lower bounds, since each child also makes the syscalls of its own
start-up and exit.
"""
from __future__ import annotations

import json
import os
import time

from lbd import record
from tests.kernel.conftest import by_name, delta, one, syscall

N = 50  # getppid calls per workload: a count no start-up noise reaches by itself


def busy():
    for _ in range(N):
        os.getppid()


def getppids(events):
    return [e for e in by_name(events, "getppid")]


def syscall_records(events):
    return [e for e in events if e.nr < 1000]


def assert_kept(events):
    assert len(getppids(events)) == N, [e.name for e in events]


def two_children(cap, comms=("lbd-drop", "lbd-keep"), **config):
    before = cap.stats()
    dropped, kept = cap.run_many([busy, busy], comms=list(comms), **config)
    return dropped, kept, delta(before, cap.stats())


def test_filter_comms(cap):
    dropped, kept, d = two_children(cap, filter_comms=["lbd-drop"])
    assert dropped == []                    # its syscalls and its process records
    assert_kept(kept)
    assert d["f_comm"] >= N
    assert {e.comm for e in kept} == {"lbd-keep"}


def test_comm_filter_follows_a_rename(cap):
    """The filters' verdict on a thread is cached in the kernel; a rename (prctl PR_SET_NAME) must
    still take effect at the next syscall, in both directions."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def rename(name: bytes):
        assert libc.prctl(15, ctypes.c_char_p(name), 0, 0, 0) == 0     # PR_SET_NAME

    def work():
        busy()                       # kept: "lbd-keep"
        rename(b"lbd-drop")
        busy()                       # dropped
        rename(b"lbd-back")
        busy()                       # kept again

    before = cap.stats()
    (ev,) = cap.run_many([work], comms=["lbd-keep"], filter_comms=["lbd-drop"], syscalls=["getppid", "prctl"])
    d = delta(before, cap.stats())
    comms = [e.comm for e in getppids(ev)]
    assert comms == ["lbd-keep"] * N + ["lbd-back"] * N
    assert d["f_comm"] >= N


def test_only_comms(cap):
    dropped, kept, d = two_children(cap, only_pids=[], only_comms=["lbd-keep"])
    assert dropped == []
    assert_kept(kept)
    assert d["f_only"] >= N


def drop_first_of_two(cap, counter, config):
    """Two children, spawned (waiting for the go signal) before config(a_pid, b_pid) names them:
    the first's syscalls must be dropped and counted under `counter`, the second's kept."""
    a = cap.spawn(busy)
    b = cap.spawn(busy)
    before = cap.stats()
    cap.configure(**config(a[0], b[0]))
    cap.release([a, b])
    cap.reap([a, b])
    events = cap.stop_and_drain()
    d = delta(before, cap.stats())
    assert [e for e in events if e.pid == a[0]] == []
    assert_kept([e for e in events if e.pid == b[0]])
    assert d[counter] >= N


def test_filter_pids(cap):
    drop_first_of_two(cap, "f_pid", lambda a, b: {"only_pids": [a, b], "filter_pids": [a]})


def test_only_pids(cap):
    drop_first_of_two(cap, "f_only", lambda a, b: {"only_pids": [b]})


def test_filter_own(cap):
    """lbd's own process (here: the test process, whose pid the session probe was given)."""
    me = os.getpid()
    for own, expect in ((True, 0), (False, N)):
        cap.quiesce()
        before = cap.stats()
        cap.configure(only_pids=[me], filter_own=own, filter_falco=False)  # the host is us too
        for _ in range(N):
            syscall(110)                    # getppid
        events = cap.stop_and_drain()              # reconfigures first: our later syscalls are not kept
        d = delta(before, cap.stats())
        assert len([e for e in getppids(events) if e.pid == me]) == expect
        assert d["f_own"] >= (N if own else 0)
        cap.quiesce()


def test_filter_own_threads(cap):
    """Inside Falco, filter_own drops the threads running lbd's code, not Falco's whole process:
    here a second thread of the test process is "ours" and the main thread is not."""
    import threading

    me = os.getpid()
    main_tid = threading.get_native_id()
    go, done = threading.Event(), threading.Event()
    tid = []

    def worker():
        tid.append(threading.get_native_id())
        go.wait()
        for _ in range(N):
            syscall(110)                    # getppid
        done.set()

    t = threading.Thread(target=worker)
    t.start()
    while not tid:
        time.sleep(0.001)
    probe = cap.probe
    try:
        cap.quiesce()
        before = cap.stats()
        probe.update(cap.base.replace(drop_mode=False, only_pids=[me], filter_own=True, filter_falco=False),
                     own_tids=[tid[0]])
        go.set()
        done.wait()
        for _ in range(N):
            syscall(110)
        events = cap.stop_and_drain()
        d = delta(before, cap.stats())
    finally:
        t.join()
        probe.update(cap.base, own_pid=me)
    mine = getppids(events)
    assert [e for e in mine if e.tid == tid[0]] == []
    assert len([e for e in mine if e.tid == main_tid]) == N
    assert d["f_own"] >= N


def test_filter_falco(cap):
    """filter_falco drops the host process (Falco's pid when lbd runs as its plugin)."""
    a = cap.spawn(busy)
    b = cap.spawn(busy)
    probe = cap.probe
    try:
        before = cap.stats()
        probe.update(cap.base.replace(drop_mode=False, only_pids=[a[0], b[0]], filter_falco=True), host_pid=a[0])
        cap.release([a, b])
        cap.reap([a, b])
        d = delta(before, cap.stats())
        events = cap.stop_and_drain()
    finally:
        probe.update(cap.base, host_pid=os.getpid())
    assert [e for e in events if e.pid == a[0]] == []
    assert_kept([e for e in events if e.pid == b[0]])
    assert d["f_falco"] >= N
    # and off: the same host pid is captured
    ev = cap.run(busy, filter_falco=False)
    assert_kept(ev)


def test_drop_mode(cap):
    before = cap.stats()
    ev = cap.run(busy, drop_mode=True)
    d = delta(before, cap.stats())
    assert ev == []
    assert d["f_drop_mode"] >= N
    assert d["sched"] == 0                       # nothing of the child


def test_drop_failed(cap, tmp_path):
    ok = tmp_path / "exists"
    ok.write_text("x")
    missing = tmp_path / "missing"

    def work():
        for _ in range(N):
            syscall(257, -100, str(missing).encode(), os.O_RDONLY, 0)   # openat: ENOENT
        os.close(os.open(ok, os.O_RDONLY))
        busy()

    for on in (True, False):
        before = cap.stats()
        ev = cap.run(work, drop_failed=on)
        d = delta(before, cap.stats())
        fails = [e for e in by_name(ev, "openat") if e.args["filename"] == str(missing)]
        one(ev, "openat", lambda e: e.args["filename"] == str(ok))
        assert_kept(ev)
        if on:
            assert fails == [] and d["f_failed"] >= N
            assert all(e.res >= 0 for e in syscall_records(ev) if not e.flags & record.F_NORETURN)
        else:
            assert len(fails) == N and all(e.res == -2 for e in fails) and d["f_failed"] == 0


def test_syscall_selection(cap, tmp_path):
    path = tmp_path / "sel"

    def work():
        busy()
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))

    before = cap.stats()
    ev = cap.run(work, syscalls=["openat"])
    d = delta(before, cap.stats())
    assert {e.name for e in syscall_records(ev)} == {"openat"}
    one(ev, "openat", lambda e: e.args["filename"] == str(path))
    assert d["f_syscall"] >= N + 1            # the getppid calls and the close


def test_interest_syscall_file(cap, tmp_path):
    """The seed's selection file: {"name": {"syscall_id": n, "interesting": 0|1}}."""
    sel = tmp_path / "interesting.json"
    sel.write_text(json.dumps({"getppid": {"syscall_id": 110, "interesting": 1},
                               "openat": {"syscall_id": 257, "interesting": 0}}))
    ev = cap.run(busy, syscalls=[], interest_syscall_file=str(sel))
    assert {e.name for e in syscall_records(ev)} == {"getppid"}
    assert_kept(ev)


def test_filters_apply_before_any_copy(cap):
    """A dropped child's bad pointers are never read: no read fault, nothing truncated, and every
    record written reached the consumer (nothing lost)."""

    def faulty():
        for _ in range(N):
            syscall(2, 1, os.O_RDONLY, 0)   # open(0x1, ...): EFAULT if anything read the path
        busy()

    def clean():
        busy()

    before = cap.stats()
    drained = cap.drained
    dropped, kept = cap.run_many([faulty, clean], comms=["lbd-drop", "lbd-keep"], filter_comms=["lbd-drop"])
    d = delta(before, cap.stats())
    assert dropped == [] and d["f_comm"] >= 2 * N
    assert_kept(kept)
    # counted once per syscall, at its enter (its exit is dropped by the same filter, uncounted):
    # the dropped child made about N more syscalls than the kept one, not twice as many
    assert d["f_comm"] < 1.5 * (len(syscall_records(kept)) + N), (d["f_comm"], len(syscall_records(kept)))
    assert d["read_fault"] == 0 and d["truncated"] == 0 and d["drop_ringfull"] == 0
    assert d["emitted"] + d["sched"] == cap.drained - drained


def test_updates_do_not_reload(cap):
    ids = sorted(cap.probe.program_ids())
    assert len(ids) == 5
    cap.run(busy, filter_comms=["x"], drop_failed=True, syscalls=["getppid"], emit_enter=True)
    cap.run(busy, only_comms=["y"], only_pids=[])
    assert sorted(cap.probe.program_ids()) == ids


def wait_blocked_in_read(pid: int, fd: int) -> None:
    """Until the process sleeps in read(fd, ...) (/proc/<pid>/syscall: number, then arguments)."""
    want = f"0 {fd:#x} "
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/syscall") as f:
            if f.read().startswith(want):
                return
        time.sleep(0.001)
    raise AssertionError(f"process {pid} never blocked in read({fd})")


def test_resuming_capture_forgets_records_whose_exit_was_skipped(cap):
    """A read armed at its enter returns while drop_mode is on (its exit is skipped, its record stays
    armed); the next read enters under drop_mode and returns after capture resumed.  That exit must
    not complete the first read's record: it is an exit without enter."""
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()

    def work():
        os.read(r1, 1)
        os.read(r2, 1)

    cap.quiesce()
    child = cap.spawn(work)
    pid = child[0]
    try:
        cap.configure(only_pids=[pid])
        cap.release([child])
        wait_blocked_in_read(pid, r1)
        cap.configure(drop_mode=True)
        os.write(w1, b"1")
        wait_blocked_in_read(pid, r2)
        cap.configure(only_pids=[pid])
        os.write(w2, b"2")
        cap.reap([child])
    finally:
        for fd in (r1, w1, r2, w2):
            os.close(fd)
    events = cap.stop_and_drain()
    reads = [e for e in events if e.pid == pid and e.name == "read"]
    assert [e for e in reads if e.args.get("fd") == r1] == []
    last = reads[-1]                                  # before it: the go signal's read
    assert last.res == 1 and last.flags == record.F_NOENTER and last.args == {}, reads


def test_filter_lists_at_their_limits(cap):
    """64 pids and 16 comms, replaced at run time by other full lists (the maps never overflow)."""
    bogus = list(range(4_000_000, 4_000_000 + 200))
    comms = [f"lbd-x{i}" for i in range(15)]
    cap.configure(drop_mode=True, filter_pids=bogus[:64], filter_comms=comms + ["lbd-y"])
    a = cap.spawn(busy, comm="lbd-drop")
    b = cap.spawn(busy, comm="lbd-keep")
    before = cap.stats()
    cap.configure(only_pids=[a[0], b[0]], filter_pids=[a[0]] + bogus[100:163], filter_comms=comms + ["lbd-drop"])
    from lbd import bpfsys

    assert len(bpfsys.map_keys(cap.probe.map_fd("filter_pids"), 4)) == 64
    cap.release([a, b])
    cap.reap([a, b])
    events = cap.stop_and_drain()
    d = delta(before, cap.stats())
    assert [e for e in events if e.pid == a[0]] == []
    assert_kept([e for e in events if e.pid == b[0]])
    assert d["f_pid"] >= N                   # pids are checked before comms


def test_following_keeps_threads_a_kept_thread_creates(cap):
    """only_tids with follow: threads the kept thread creates, and the threads they create, are
    kept from their first syscall (the kernel adds them at sched_process_fork; Python registers
    nothing); the test process's own threads, which nothing kept created, are not."""
    import threading

    def work():
        out = {}

        def body(key):
            out[key] = threading.get_native_id()
            syscall(121, 3_000_000 + len(key))        # getpgid(numbered)

        def nested():
            body("bb")
            t2 = threading.Thread(target=body, args=("ccc",))   # a thread's thread
            t2.start()
            t2.join()

        for target, arg in ((body, ("a",)), (nested, ())):
            t = threading.Thread(target=target, args=arg)
            t.start()
            t.join()
        return out

    mine = []

    def here():
        mine.append(threading.get_native_id())
        syscall(121, 3_000_009)

    a = cap.spawn(work)
    try:
        cap.configure(only_pids=[], only_tids=[a[0]], follow=True, syscalls=["getpgid"])
        cap.release([a])
        t = threading.Thread(target=here)            # created by the test process: not kept
        t.start()
        t.join()
        cap.reap([a])
        events = cap.stop_and_drain()
    finally:
        cap.configure(follow=False)
    tids = cap.results[0]
    got = {e.tid for e in by_name(events, "getpgid")}
    assert {tids["a"], tids["bb"], tids["ccc"]} <= got
    assert mine[0] not in got
