"""Process syscalls: fork/clone (and the child's first event, an exit without an enter), execve,
exit, exit_group, kill, wait4, rt_sigreturn, threads; every one emitted exactly once."""
from __future__ import annotations

import ctypes
import os
import signal
import threading
import time

from lbd import record
from tests.kernel.conftest import AT_FDCWD, by_name, one, own_comm, sched, syscall

SIGCHLD = 17
PR_SET_NAME = 15


def test_fork_clone_wait4_kill_exit_group(cap):
    """A raw fork and a raw clone from the child; the grandchildren's first event is the exit of
    the fork/clone (res 0, no enter: flagged NOENTER); exit_group is emitted once, at its enter."""

    def work():
        g1 = syscall(57)                                  # fork()
        if g1 == 0:
            os._exit(7)
        st = ctypes.c_int(0)
        w = syscall(61, g1, ctypes.byref(st), 0, 0)       # wait4(g1, &st, 0, NULL)
        g2 = syscall(56, SIGCHLD, 0, 0, 0, 0)             # clone(SIGCHLD, 0, NULL, NULL, 0)
        if g2 == 0:
            while True:
                signal.pause()
        k = syscall(62, g2, signal.SIGTERM)              # kill(g2, SIGTERM)
        _, st2 = os.waitpid(g2, 0)
        return g1, w, st.value, ctypes.addressof(st), g2, k, st2

    comm = "lbd-fork"
    ev = cap.run(work, comm=comm, only_pids=[], only_comms=[comm])
    child = cap.child_pid
    g1, w, status, st_addr, g2, k, st2 = cap.result
    assert w == g1 and os.waitstatus_to_exitcode(status) == 7 and k == 0
    assert os.WIFSIGNALED(st2) and os.WTERMSIG(st2) == signal.SIGTERM

    cap.expect(one(ev, "fork", lambda e: e.pid == child), {}, g1, comm=comm)
    first = [e for e in by_name(ev, "fork", noenter=True) if e.pid == g1]
    assert len(first) == 1
    cap.expect(first[0], {}, 0, pid=g1, ppid=child, comm=comm, flags=record.F_NOENTER)
    assert first[0].latency == 0
    cap.expect(one(ev, "exit_group", lambda e: e.pid == g1), {"error_code": 7}, 0,
               pid=g1, ppid=child, comm=comm, flags=record.F_NORETURN)
    cap.expect(one(ev, "wait4", lambda e: e.args["upid"] == g1), {"upid": g1, "stat_addr": st_addr, "options": 0, "ru": 0}, g1, comm=comm)

    cap.expect(one(ev, "clone", lambda e: e.pid == child),
               {"clone_flags": SIGCHLD, "newsp": 0, "parent_tidptr": 0, "child_tidptr": 0, "tls": 0}, g2, comm=comm)
    first2 = [e for e in by_name(ev, "clone", noenter=True) if e.pid == g2]
    assert len(first2) == 1
    cap.expect(first2[0], {}, 0, pid=g2, ppid=child, comm=comm, flags=record.F_NOENTER)
    cap.expect(one(ev, "kill"), {"pid": g2, "sig": signal.SIGTERM}, 0, comm=comm)
    assert not by_name(ev, "exit_group", noenter=True) or all(e.pid != g2 for e in by_name(ev, "exit_group"))

    forks = {(e.args["parent_pid"], e.args["child_pid"]) for e in sched(ev, "fork")}
    assert {(child, g1), (child, g2)} <= forks
    exits = {e.args["pid"]: e.args["group_dead"] for e in sched(ev, "exit")}
    assert exits == {g1: 1, g2: 1, child: 1}
    # the parent's own exit_group: exactly once as well
    cap.expect(one(ev, "exit_group", lambda e: e.pid == child), {"error_code": 0}, 0, comm=comm,
               flags=record.F_NORETURN)


def test_execve_new_image_emitted_once(cap):
    argv = ["/bin/true", "arg one", "2"]
    env = {"LBD": "1", "X": "y z"}

    def work():
        os.execve("/bin/true", argv, env)

    ev = cap.run(work)
    ex = [e for e in ev if e.name == "execve"]
    assert len(ex) == 1, ex
    e = ex[0]
    cap.expect(e, {"filename": "/bin/true", "argv": argv, "envp": ["LBD=1", "X=y z"]}, 0,
               comm="true", flags=record.F_NEWIMAGE)
    (s,) = sched(ev, "exec")
    assert s.args == exec_args(cap, cap.child_pid, cap.child_pid, "/bin/true", argv)
    assert s.comm == "true" and s.pid == cap.child_pid and s.ppid == os.getpid()
    assert e.ts < s.ts < e.ts + e.latency       # the exec happened inside the execve call
    later = [x for x in ev if x.ts > s.ts and x.nr < 1000]
    assert later and {x.comm for x in later} == {"true"}


def exec_args(cap, pid: int, old_pid: int, filename: str, argv: list[str]) -> dict:
    """What a sched_process_exec record says: under CO-RE also the new image's argv (from its mm)
    and the executable's resolved path (here /bin -> /usr/bin); bcc reads neither."""
    core = cap.probe.core
    return {"pid": pid, "old_pid": old_pid, "filename": filename, "argv": argv if core else None,
            "exe": os.path.realpath(filename) if core else None}


def test_execve_failure_and_execveat(cap):
    def work():
        try:
            os.execve("/nonexistent/prog", ["prog", "-x"], {"A": "1"})
        except FileNotFoundError:
            pass
        argv = (ctypes.c_char_p * 3)(b"true", b"via-execveat", None)
        envp = (ctypes.c_char_p * 2)(b"B=2", None)
        syscall(322, AT_FDCWD, b"/bin/true", argv, envp, 0)   # execveat

    ev = cap.run(work)
    cap.expect(one(ev, "execve"), {"filename": "/nonexistent/prog", "argv": ["prog", "-x"], "envp": ["A=1"]}, -2)
    cap.expect(one(ev, "execveat"), {"fd": AT_FDCWD, "filename": "/bin/true", "argv": ["true", "via-execveat"],
                                     "envp": ["B=2"], "flags": 0}, 0, comm="true", flags=record.F_NEWIMAGE)
    (s,) = sched(ev, "exec")
    assert s.args["filename"] == "/bin/true"


def test_thread_clone3_exit_tgkill_tkill(cap):
    """A thread: its tid differs from the pid, its first event is clone3's exit without an enter,
    and it ends with exit (not exit_group), emitted once at its enter."""

    def work():
        out = {}

        def body():
            out["tid"] = syscall(186)                     # gettid
            out["tg"] = syscall(234, os.getpid(), out["tid"], 0)   # tgkill(pid, tid, 0)

        t = threading.Thread(target=body)
        t.start()
        t.join()
        while os.path.exists(f"/proc/self/task/{out['tid']}"):  # join() returns before the exit
            time.sleep(0.001)
        out["tk"] = syscall(200, os.getpid(), 0)          # tkill(pid, 0)
        return out

    ev = cap.run(work)
    pid = cap.child_pid
    out = cap.result
    tid = out["tid"]
    assert tid != pid and out["tg"] == 0 and out["tk"] == 0
    c3 = one(ev, "clone3", lambda e: e.tid == pid)
    assert c3.res == tid and c3.args["size"] >= 64 and c3.args["uargs"] != 0
    cap.expect(c3, {"uargs": c3.args["uargs"], "size": c3.args["size"]}, tid)
    first = [e for e in ev if e.tid == tid and e.nr < 1000]
    assert first[0].name == "clone3"
    cap.expect(first[0], {}, 0, tid=tid, flags=record.F_NOENTER)
    gettids = [e for e in by_name(ev, "gettid") if e.tid == tid]   # ours and the threading module's
    assert gettids
    for g in gettids:
        cap.expect(g, {}, tid, tid=tid)
    cap.expect(one(ev, "tgkill"), {"tgid": pid, "pid": tid, "sig": 0}, 0, tid=tid)
    cap.expect(one(ev, "tkill"), {"pid": pid, "sig": 0}, 0)
    cap.expect(one(ev, "exit", lambda e: e.tid == tid), {"error_code": 0}, 0, tid=tid, flags=record.F_NORETURN)
    exits = [(e.args["pid"], e.args["group_dead"]) for e in sched(ev, "exit")]
    assert (tid, 0) in exits and (pid, 1) in exits


def test_rt_sigreturn_emitted_once(cap):
    """rt_sigreturn's exit reports syscall number -1 (the restored orig_ax): the probe completes
    the thread's pending record with it.  Its result is the restored rax: here kill()'s 0."""

    def work():
        got = []
        signal.signal(signal.SIGUSR1, lambda *a: got.append(1))
        r = syscall(62, os.getpid(), signal.SIGUSR1)     # the handler runs on the way out
        os.getppid()
        assert got == [1]
        return r

    for emit_enter in (False, True):
        ev = cap.run(work, emit_enter=emit_enter)
        k = [e for e in by_name(ev, "kill") if e.dir == "<"]
        rs = by_name(ev, "rt_sigreturn", noenter=True)
        exits = [e for e in rs if e.dir == "<"]
        assert len(exits) == 1, ev
        cap.expect(exits[0], {}, 0)
        assert len(k) == 1 and k[0].ts < exits[0].ts
        if emit_enter:
            enters = [e for e in rs if e.dir == ">"]
            assert len(enters) == 1 and enters[0].ts == exits[0].ts
            cap.expect(enters[0], {}, 0, dir=">")
        else:
            assert len(rs) == 1


def test_emit_enter_and_noreturn(cap, tmp_path):
    """emit_enter: an enter record ('>', args, no result) before each exit; exit_group still once."""
    path = tmp_path / "e"

    def work():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))

    ev = cap.run(work, emit_enter=True)
    opens = [e for e in by_name(ev, "openat") if e.args["filename"] == str(path)]
    assert [e.dir for e in opens] == [">", "<"]
    args = {"dfd": AT_FDCWD, "filename": str(path), "flags": os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, "mode": 0o600}
    cap.expect(opens[0], args, 0, dir=">")
    assert opens[0].latency == 0
    cap.expect(opens[1], args, opens[1].res)
    assert opens[1].res >= 3 and opens[0].ts == opens[1].ts
    eg = by_name(ev, "exit_group")
    assert len(eg) == 1
    cap.expect(eg[0], {"error_code": 0}, 0, dir=">", flags=record.F_NORETURN)


def test_ids_prctl_umask_setsid(cap):
    """Argument-less syscalls, and the comm change of prctl(PR_SET_NAME) seen by the next record."""

    def work():
        name = ctypes.create_string_buffer(b"lbd-renamed")
        out = {
            "getpid": syscall(39), "getppid": syscall(110), "umask": syscall(95, 0o027),
            "prctl": syscall(157, PR_SET_NAME, name, 0, 0, 0), "addr": ctypes.addressof(name),
            "setsid": syscall(112),
        }
        return out

    ev = cap.run(work)
    pid = cap.child_pid
    o = cap.result
    cap.expect(one(ev, "getpid", lambda e: e.res == pid), {}, pid)
    cap.expect(one(ev, "getppid"), {}, os.getpid())
    cap.expect(one(ev, "umask", lambda e: e.args["mask"] == 0o027), {"mask": 0o027}, o["umask"])
    # the record shows the identity after the call: the new name (as Falco's prctl event does)
    cap.expect(one(ev, "prctl", lambda e: e.args["option"] == PR_SET_NAME),
               {"option": PR_SET_NAME, "arg2": o["addr"], "arg3": 0, "arg4": 0, "arg5": 0}, 0, comm="lbd-renamed")
    cap.expect(one(ev, "setsid"), {}, pid, comm="lbd-renamed")
    assert o["setsid"] == pid


def test_execve_from_a_thread(cap):
    """A non-leader thread execs: the kernel kills the other threads and gives it the leader's
    pid.  The execve record still comes once, with its arguments (the probe moves the thread's
    record to the new tid at sched_process_exec), and the process keeps its ppid."""

    def work():
        t = threading.Thread(target=os.execve, args=("/bin/true", ["true", "from-thread"], {"T": "1"}))
        t.start()
        t.join()                            # never returns: the exec ends this thread too

    ev = cap.run(work)
    pid = cap.child_pid
    (s,) = sched(ev, "exec")
    tid = s.args["old_pid"]
    assert tid != pid and s.args == exec_args(cap, pid, tid, "/bin/true", ["true", "from-thread"])
    ex = by_name(ev, "execve", noenter=True)
    assert len(ex) == 1, ex
    # tid: the thread that called execve (the record's task fields are taken at enter)
    cap.expect(ex[0], {"filename": "/bin/true", "argv": ["true", "from-thread"], "envp": ["T=1"]}, 0,
               tid=tid, comm="true", flags=record.F_NEWIMAGE)
    after = [e for e in ev if e.ts > s.ts and e.nr < 1000 and e.name != "execve"]
    assert after and all(e.ppid == os.getpid() and e.tid == pid and e.comm == "true" for e in after)


def test_thread_and_process_state_freed_at_exit(cap):
    """The per-thread record and the parent entry of every thread of an exited process are gone."""

    def work():
        tids = []

        def body():
            tids.append(threading.get_native_id())
            os.getppid()

        ts = [threading.Thread(target=body) for _ in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        for tid in tids:
            while os.path.exists(f"/proc/self/task/{tid}"):
                time.sleep(0.001)
        return tids

    before = cap.stats()
    ev = cap.run(work)
    d = {k: v - before[k] for k, v in cap.stats().items()}
    tids = cap.result
    ids = {cap.child_pid, *tids}
    assert {e.tid for e in by_name(ev, "getppid")} == set(tids)
    # (The threads' records are task-local storage: the kernel frees them with the tasks.  Under
    # bcc a hash map keeps each thread's parent from its fork record; CO-RE reads the parent from
    # the task and has no such map.)
    if cap.probe.kind == "bcc":
        import struct

        from lbd import bpfsys

        ppids = {struct.unpack("<I", k)[0] for k in bpfsys.map_keys(cap.probe.map_fd("ppids"), 4)}
        assert not ids & ppids
    assert d["noenter"] >= 3                 # each thread's first event: clone3 returning 0
    assert d["sched"] >= len(sched(ev, "exit")) == 4
