"""Kernel tier: one probe per test session (bcc compiles it in about a second), reconfigured
through its maps for each test.

`cap.run(fn, **config)` forks a child that waits for a go signal, points the probe at the child
(only_pids, unless the test says otherwise), lets it run fn() and exit, and returns the events of
the child and its descendants as `Event` objects.  `cap.run_many([fn, ...])` does the same for
several children at once (filter tests: one child dropped, another kept).

Completeness without timing (the libs' driver tests do the same): after the children have
exited, capture stops (drop_mode) and every ring is drained until empty, merged in emit order
(`next_batch(flush=True)`).  Every record of the children was written before they died (the
probe writes at syscall exit and at sched_process_exit, before the parent is told), so everything
of theirs has been read by then, whatever the filters under test dropped.  The rings are several
(one per CPU): nothing relies on one ring's order.
"""
from __future__ import annotations

import ctypes
import os
import pickle
import time
from dataclasses import dataclass, field

import pytest

from tests.conftest import require_bpf

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.syscall.restype = ctypes.c_long
PR_SET_NAME = 15
AT_FDCWD = -100


def syscall(nr: int, *args) -> int:
    """libc syscall(nr, ...): the exact syscall, its raw result; -errno on failure."""
    cargs = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    r = LIBC.syscall(ctypes.c_long(nr), *cargs)
    return -ctypes.get_errno() if r == -1 else r


def set_comm(name: str) -> None:
    LIBC.prctl(PR_SET_NAME, name.encode(), 0, 0, 0)


def own_comm() -> str:
    with open("/proc/self/comm") as f:
        return f.read().strip()


@dataclass
class Event:
    name: str
    nr: int
    dir: str
    res: int
    pid: int
    tid: int
    ppid: int
    uid: int
    gid: int
    comm: str
    flags: int
    latency: int
    ts: int
    args: dict = field(default_factory=dict)
    truncated: tuple = ()
    extra: dict = field(default_factory=dict)      # cgroup_id, pidns, mntns, loginuid
    sock: dict | None = None                       # the socket the kernel read (Batch.sock)
    ring: int = 0                                  # the ring it came from (its CPU's)
    ctx: dict | None = None                        # its enrichment (run(..., enrich=True)): event_info

    def __repr__(self) -> str:
        return f"<{self.name}{self.dir} res={self.res} pid={self.pid} tid={self.tid} flags={self.flags:#x} {self.args}>"


def events_of(batch) -> list[Event]:
    from lbd import record
    from lbd.enrich.layout import event_info, has_enrichment

    out = []
    ev = batch.events
    enriched = has_enrichment(batch)
    for i in range(len(batch)):
        e = ev[i]
        out.append(Event(
            name=batch.name(i), nr=int(e["nr"]), dir=chr(e["dir"]), res=int(e["res"]), pid=int(e["pid"]),
            tid=int(e["tid"]), ppid=int(e["ppid"]), uid=int(e["uid"]), gid=int(e["gid"]),
            comm=e["comm"].decode(errors="replace"), flags=int(e["flags"]), latency=int(e["latency"]),
            ts=int(e["ts"]), args=batch.args(i),
            truncated=tuple(k for k in range(record.MAX_ARGS) if batch.truncated(i, k)),
            extra={k: int(e[k]) for k in ("cgroup_id", "pidns", "mntns", "loginuid")},
            sock=batch.sock(i), ring=int(e["cpu_ring"]),
            ctx=event_info(batch, i) if enriched else None,
        ))
        if TERMINAL_LINES:
            from lbd.output.terminal import terminal_line
            out[-1].extra["terminal"] = terminal_line(batch, i)
    return out


#: set by a test to keep each event's terminal-format line in Event.extra["terminal"]
TERMINAL_LINES = False


def _child_main(r: int, w: int, out: int, fn, comm: str | None) -> None:
    code = 0
    try:
        os.close(w)
        if comm:
            set_comm(comm)
        os.write(out, b"r")        # ready: everything before this is not the workload's
        if os.read(r, 1) != b"g":  # the test gave up before starting us: do nothing
            os._exit(3)
        os.close(r)
        result = fn()
        if result is not None:  # fn's return value goes back to the test (Capture.results)
            data = pickle.dumps(result)
            while data:
                data = data[os.write(out, data):]
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    os._exit(code)


class Capture:
    """Runs workloads in child processes and returns what the probe saw of them."""

    def __init__(self, collector, base_config):
        self.col = collector
        self.base = base_config
        self.child_pid = 0
        self.pids: list[int] = []
        self.results: list | None = []
        self.result = None
        self._parent_fds: set[int] = set()  # pipe ends of children not yet released / reaped
        self.all_events: list[Event] = []     # everything the last run_many() read, all processes
        self.enricher = None                  # the last run_many(enrich=True)'s Enricher
        self.drained = 0                      # records read so far

    @property
    def probe(self):
        return self.col.probe

    def stats(self) -> dict[str, int]:
        return dict(self.probe.stats().counts)

    def configure(self, **changes):
        changes.setdefault("drop_mode", False)
        self.probe.update(self.base.replace(**changes))

    def drain(self, timeout_ms: int = 20) -> list[Event]:
        """Every record the rings hold, merged in emit order (capture should be stopped)."""
        out = []
        while True:
            b = self.col.next_batch(timeout_ms, flush=True)
            if not len(b):
                self.drained += len(out)
                return out
            out.extend(events_of(b))

    def quiesce(self) -> None:
        """Capture nothing and empty the rings."""
        self.configure(drop_mode=True)
        self.drain()

    def stop_and_drain(self, internal: bool = False) -> list[Event]:
        """Stop capture (drop_mode, the filters as they are) and read every record the rings hold:
        all of the workloads that have exited.  The events for output, as lbd writes them, unless
        internal (then the state records too; `all_events` has them anyway)."""
        from lbd import record

        cfg = self.probe.config
        self.probe.update(cfg.replace(drop_mode=True))
        events = self.drain()
        self.all_events = events
        return events if internal else [e for e in events if not e.flags & record.F_STATE]

    def spawn(self, fn, comm: str | None = None) -> tuple[int, int, int]:
        """Fork a child that runs fn() once released; returns (pid, go fd, result fd).

        Returns once the child is ready (its comm set, the pipes of other children closed), so a
        configuration made afterwards sees none of that preparation under the wrong comm.
        """
        r, w = os.pipe()
        res_r, res_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            for fd in self._parent_fds | {res_r}:  # other children's pipes: they must see EOF
                os.close(fd)
            _child_main(r, w, res_w, fn, comm)
        os.close(r)
        os.close(res_w)
        self._parent_fds |= {w, res_r}
        assert os.read(res_r, 1) == b"r", "the child died before it was ready"
        return pid, w, res_r

    def release(self, children) -> None:
        for _, w, _ in children:
            os.write(w, b"g")
            os.close(w)
            self._parent_fds.discard(w)

    def reap(self, children, ok=True) -> list[int]:
        """Wait for the children; their fn() results go to self.results."""
        codes, self.results = [], []
        for pid, _, res_r in children:
            chunks = []
            while chunk := os.read(res_r, 65536):
                chunks.append(chunk)
            os.close(res_r)
            self._parent_fds.discard(res_r)
            self.results.append(pickle.loads(b"".join(chunks)) if chunks else None)
            _, status = os.waitpid(pid, 0)
            codes.append(os.waitstatus_to_exitcode(status))
        if ok:
            assert codes == [0] * len(codes), f"a workload failed in its child (exit codes {codes}, see stderr)"
        return codes

    def run_many(self, fns, *, comms=None, enrich=False, **changes) -> list[list[Event]]:
        """Run each fn in its own child under one configuration; the events of each child's tree.

        only_pids defaults to the children's pids, followed into the processes they start
        (follow=True: the probe adds them to only_pids as they fork); pass only_pids=[] to capture
        everything.  enrich=True: an lbd.enrich.Enricher made once capture runs (its procfs scan
        sees the children waiting for go) enriches every batch (Event.ctx; self.enricher).
        """
        changes.setdefault("follow", True)
        self.col.enricher = None
        self.quiesce()
        comms = comms or [None] * len(fns)
        children = []
        try:
            for fn, comm in zip(fns, comms):
                children.append(self.spawn(fn, comm))
            self.pids = [pid for pid, _, _ in children]
            only = changes.pop("only_pids", self.pids)
            self.configure(only_pids=only, **changes)
            if enrich:
                from lbd.enrich import Enricher

                self.enricher = self.col.enricher = Enricher(self.col.config)
        except BaseException:
            self.col.enricher = None
            for _, w, _ in children:
                os.close(w)
                self._parent_fds.discard(w)
            self.reap(children, ok=False)
            raise
        self.release(children)
        self.reap(children)
        try:
            events = self.stop_and_drain(internal=True)   # the children's records are all written by now
        finally:
            self.col.enricher = None
        return [self._tree_events(events, pid) for pid in self.pids]

    def run(self, fn, *, comm: str | None = None, **changes) -> list[Event]:
        """Fork a child, capture its syscalls while it runs fn(), return its (tree's) events.

        The child's exit status must be 0 (fn raising makes it 1 and the test fails).
        """
        (events,) = self.run_many([fn], comms=[comm], **changes)
        self.child_pid = self.pids[0]
        self.result = self.results[0]
        return events

    def expect(self, e: Event, args: dict, res: int, *, pid: int | None = None, tid: int | None = None,
               ppid: int | None = None, uid: int | None = None, gid: int | None = None,
               comm: str | None = None, flags: int = 0, dir: str = "<") -> None:
        """Assert every field of e; the task fields default to those of the (last) child."""
        pid = self.child_pid if pid is None else pid
        want = dict(args=args, res=res, pid=pid, tid=pid if tid is None else tid,
                    ppid=os.getpid() if ppid is None else ppid,
                    uid=os.getuid() if uid is None else uid, gid=os.getgid() if gid is None else gid,
                    comm=own_comm() if comm is None else comm, flags=flags, dir=dir)
        got = {k: getattr(e, k) for k in want}
        assert got == want, f"{e.name}: got {got}, want {want}"
        if dir == "<" and not flags:
            assert e.latency > 0

    @staticmethod
    def _tree_events(events: list[Event], pid: int, internal: bool = False) -> list[Event]:
        """The events of pid and of the processes and threads it (transitively) forked: those for
        output, as lbd writes them (not the state records, LBD_F_STATE, unless internal)."""
        from lbd import record

        tree = {pid}
        for e in events:
            if e.nr == record.NR_SCHED_FORK and e.args["parent_pid"] in tree:
                tree.add(e.args["child_pid"])
        return [e for e in events if e.pid in tree and (internal or not e.flags & record.F_STATE)]


@pytest.fixture(scope="session")
def collector():
    require_bpf()
    from lbd import syscalls
    from lbd.collector import Collector
    from lbd.config import Config

    every = [sc.name for sc in syscalls.TABLE if sc.implemented]
    cfg = Config.default().replace(syscalls=every, drop_mode=True, buf_max=64, capture_env=True)
    with Collector(cfg, batch_size=4096) as col:
        col.base_config = cfg
        yield col


@pytest.fixture
def cap(collector):
    c = Capture(collector, collector.base_config)
    yield c
    c.quiesce()


def by_name(events, name, noenter=False):
    """The events of syscall `name`; without exits whose enter was not seen unless noenter."""
    from lbd import record

    return [e for e in events if e.name == name and e.nr < 1000
            and (noenter or not e.flags & record.F_NOENTER)]


def one(events, name, pred=lambda e: True):
    found = [e for e in by_name(events, name) if pred(e)]
    assert len(found) == 1, f"expected one {name}, got {found} among {[e.name for e in events]}"
    return found[0]


def sched(events, nr_name: str):
    """The process-tree records ('fork', 'exec', 'exit') among events."""
    from lbd import record

    nr = {"fork": record.NR_SCHED_FORK, "exec": record.NR_SCHED_EXEC, "exit": record.NR_SCHED_EXIT}[nr_name]
    return [e for e in events if e.nr == nr]


def delta(before: dict, after: dict) -> dict:
    return {k: after[k] - before[k] for k in after}


def recorded_batches(cfg, cap_path, workload, tmp: str):
    """Run workload(tmp) in a forked child while lbd.Collector(cfg, enrich=True, record=cap_path)
    captures; then stop capturing (drop_mode) and yield every batch until the rings are empty (a
    batch is reused: use it before the next one)."""
    from lbd.collector import Collector

    with Collector(cfg, enrich=True, record=cap_path) as col:
        pid = os.fork()
        if pid == 0:
            try:
                workload(tmp)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        col.probe.update(col.probe.config.replace(drop_mode=True))
        while True:
            b = col.next_batch(50, flush=True)
            if not len(b):
                break
            yield b
