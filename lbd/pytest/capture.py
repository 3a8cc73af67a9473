"""The session's probe, the capture of one test, and its `with syscalls.record():` blocks.

`ProbeSession` owns the one probe of a pytest session (an lbd Collector, loaded on first use):
every implemented syscall selected, the process-tree records on, no state records for other
processes (track_state off), and the keep-set empty: only_pids holds the idle task's pid 0, which
makes no syscalls, so that nothing is captured until `keep(tids)` names the threads of a test
(Probe.set_only_tids: one map and the settings rewritten, no reload).  `follow` is on: a process a
kept thread starts joins only_pids in the kernel as it forks, and its own children after it.

Timing without timing: the records carry their enter time on CLOCK_MONOTONIC (plus the rings'
wall offset, which the session adds to its own clock reads too).  Capture is switched on, then the
clock is read; the clock is read, then capture is switched off.  A recording interval is the span
between those two reads, and a record counts when its syscall entered inside one: the plugin's own
syscalls around the switch fall outside, whatever the order the kernel wrote them in.  After
switching off, every ring is drained until empty (`next_batch(flush=True)`): each syscall of the
test's threads returned before the clock read that closed the interval, so its record is in a ring
by then; a process the test started and waited for has written all of its records too.

While a test records, a drainer thread (not kept, so never recorded) empties the rings when a
quarter of a ring is pending, so that a long recording does not fill them.  It waits for that
without the GIL (Rings.wait_pending): a thread waiting for the GIL makes the thread holding it
hand it over with futex calls, which would be counted as the test's own syscalls.  Once woken,
it only copies the records out (holding the GIL: see _read_ahead) into batches kept until the
recording stops, and decodes them then (or when it holds more than HOLD_MAX bytes).  Records lost
anyway (a full ring) are counted (`lost`) and reported.

`TestCapture` is one test's: its threads (the test's thread and the Python threads started while
the fixture is active, registered by a threading profile hook as they start), the processes they
started (followed), the recording intervals, the `Log`, the blocks.  A record belongs to the test
when its process is one the test started, or it is the test's process and one of its threads.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import Callable

import numpy as np

from lbd import record
from lbd.args import SCHED_ARGS
from lbd.pytest.report import Log, Report

__all__ = ["Blocks", "ProbeSession", "Recording", "RecordsLost", "Syscalls", "TestCapture", "Unavailable"]

#: the keep-set while no test records: the idle task's pid (it makes no syscalls)
_NOBODY = 0
_FORK_ARGS = [a.name for a in SCHED_ARGS[record.NR_SCHED_FORK]]
_CHILD_PID, _CHILD_TGID = _FORK_ARGS.index("child_pid"), _FORK_ARGS.index("child_tgid")
#: rings: at most this many (cpus_per_ring grows on larger machines: only a test's few threads
#: write, so CPUs sharing a ring rarely meet), each of RING_SIZE bytes (about 90k small records)
MAX_RINGS = 4
RING_SIZE = 16 << 20
#: the drainer drains when this much is pending: a quarter of a ring, which a test calling getppid
#: in a loop (about 240 MB/s of records) fills in about 17 ms
DRAIN_AT = RING_SIZE // 4
#: how often the drainer looks (ms): the probe does not wake readers for each record, and a ring
#: must not fill between two looks (16 MiB at 240 MB/s: 70 ms)
DRAIN_POLL_MS = 10
#: what the drainer reads while a test records is decoded only when the recording stops, so that
#: decoding never holds the GIL while the test runs; up to this many bytes of batches, then decoded
HOLD_MAX = 64 << 20
HOLD_CAPACITY, HOLD_ARENA = 8192, 8192 * 256
#: the fewest records a full ring holds (each at most a header and LBD_PAYLOAD_MAX, 8-aligned)
FULL_RING_RECORDS = RING_SIZE // (record.HDR_SIZE + record.PAYLOAD_MAX + 8)


class RecordsLost(UserWarning):
    """Records of a test were lost (a ring was full): its counts are too low."""


class Unavailable(RuntimeError):
    """The probe cannot be used here; the message says why, in one line."""


def probe_config(ncpus: int | None = None):
    """The session probe's configuration (see the module docstring)."""
    from lbd import syscalls
    from lbd.config import Config
    from lbd.probe import possible_cpus

    ncpus = ncpus or possible_cpus()
    every = [sc.name for sc in syscalls.TABLE if sc.implemented]
    return Config.default().replace(
        syscalls=every, track_state=False, filter_own=False, filter_falco=False, follow=True,
        only_pids=[_NOBODY], drop_mode=False, emit_enter=False, capture_env=False,
        buf_max=0, str_max=1024, argv_max=64, ring_size=RING_SIZE, cpus_per_ring=-(-ncpus // MAX_RINGS),
        wake_bytes=DRAIN_AT,
    )


def privileges_problem() -> str | None:
    """Why this process cannot load a probe (no root, no CAP_BPF+CAP_PERFMON), or None."""
    from lbd import doctor

    c = doctor.check_privileges(doctor.Host())
    return None if c.ok else c.detail


class ProbeSession:
    """The one probe of a pytest session.  Invariants: `collector` is open from the first
    successful `ensure()` to `close()`; only the lock's holder reads the rings or switches the
    keep-set; `capture` (the test records go to) is set only between a test's setup and teardown."""

    def __init__(self):
        self.lock = threading.RLock()
        self.collector = None
        self.reason: str | None = None          # why loading failed (then it is not tried again)
        self.capture: TestCapture | None = None
        self.wall = 0
        self.lost = 0                            # records lost to full rings, all tests
        self._drops = 0                          # the probe's drop counter at the last check
        self._read = 0                           # records read since then
        self._held: list = []                    # batches the drainer read, not decoded yet
        self._held_bytes = 0
        self._drain_at = DRAIN_AT
        self._halt = threading.Event()
        self._drainer: threading.Thread | None = None

    # -- life ----------------------------------------------------------------------------------

    def ensure(self) -> None:
        """Load the probe unless it is loaded; raise Unavailable (with the same reason on every
        later call) when that is not possible here."""
        if self.collector is not None:
            return
        if self.reason is None:
            self.reason = self._load()
        if self.reason is not None:
            raise Unavailable(self.reason)

    def _load(self) -> str | None:
        problem = privileges_problem()
        if problem is not None:
            return (f"recording syscalls needs root or CAP_BPF+CAP_PERFMON: {problem}; "
                    "`lbd doctor` lists what this host lacks")
        try:
            from lbd.collector import Collector
            from lbd.config import ConfigError
            from lbd.probe import ProbeError

            col = Collector(probe_config(), batch_size=4096, consumers=1)
        except ImportError as e:
            return f"lbd is not built here ({e}); run `make build`"
        try:
            col.__enter__()
        except (ProbeError, ConfigError, OSError) as e:
            return f"cannot load lbd's probe: {e}; `lbd doctor` says what is missing"
        self.collector = col
        self.wall = col.ring.wall_offset
        col.ring.wait_at = self._drain_at
        self._drops = self._drop_count()
        self._drainer = threading.Thread(target=self._drain_loop, name="lbd-pytest-drainer", daemon=True)
        self._drainer._lbd_internal = True      # not one of a test's threads (see thread_hook)
        self._drainer.start()
        return None

    @property
    def drain_at(self) -> int:
        """The drainer empties the rings when this many bytes are pending (tests and benchmarks
        raise it to keep the drainer out of a measurement)."""
        return self._drain_at

    @drain_at.setter
    def drain_at(self, nbytes: int) -> None:
        self._drain_at = nbytes
        if self.collector is not None:
            self.collector.ring.wait_at = nbytes

    def close(self) -> None:
        self._halt.set()
        if self.collector is not None:
            self.collector.ring.halt_wait()
        if self._drainer is not None:
            self._drainer.join()
            self._drainer = None
        with self.lock:
            col, self.collector = self.collector, None
            if col is not None:
                col.close()

    # -- switching -----------------------------------------------------------------------------

    def now(self) -> int:
        """The records' clock: CLOCK_MONOTONIC ns plus the rings' wall offset."""
        return time.monotonic_ns() + self.wall

    def keep(self, tids) -> None:
        """Capture exactly these threads (and the processes they start); none: capture nothing."""
        with self.lock:
            self.collector.probe.set_only_tids(tids)

    # -- draining ------------------------------------------------------------------------------

    def drain(self, flush: bool = True) -> int:
        """Read the rings (until empty with flush) and hand the batches to the current capture,
        after those the drainer read ahead.  Returns the records read from the rings."""
        with self.lock:
            col = self.collector
            if col is None:
                return 0
            self._decode_held()
            got = 0
            while True:
                batch = col.next_batch(0, flush=flush)
                if not len(batch):
                    break
                got += len(batch)
                self._read += len(batch)
                cap = self.capture
                if cap is not None:
                    cap.ingest(batch)
            # A ring that was full held at least FULL_RING_RECORDS records, all read since: with
            # fewer, nothing can have been dropped, and the counters (a map read per CPU and
            # counter, most of a test's fixed cost) need not be read.
            if self._read < FULL_RING_RECORDS:
                return got
            self._read = 0
            drops = self._drop_count()
            if drops != self._drops:
                self.lost += drops - self._drops
                if self.capture is not None:
                    self.capture.lost += drops - self._drops
                self._drops = drops
            return got

    def _read_ahead(self) -> int:
        """The drainer's read while a test records: copy the records out of the rings into batches
        of their own, decoded later (drain()).  The copy holds the GIL: a test's Python threads
        calling syscalls in a loop fill a ring faster than a copy competing with them for the CPU
        and the GIL empties it (800 ns a record against 100 alone on 2 CPUs), so they wait for
        the few ms the copy takes rather than lose records."""
        from lbd.batch import Batch

        with self.lock:
            col = self.collector
            if col is None:
                return 0
            if self.capture is None:                 # nobody's records: read and forget
                return self.drain(flush=False)
            got = 0
            while True:
                b = Batch(HOLD_CAPACITY, HOLD_ARENA)
                n = col.ring.fill(b, release_gil=False)
                if not n:
                    return got
                got += n
                self._read += n
                self._held.append(b)
                self._held_bytes += b.arena_bytes + b.capacity * b.table.itemsize
                if self._held_bytes > HOLD_MAX:      # a very long recording: decode now
                    self._decode_held()

    def _decode_held(self) -> None:
        held, self._held, self._held_bytes = self._held, [], 0
        cap = self.capture
        for b in held:
            if cap is not None:
                cap.ingest(b)
            b.release()

    def _drop_count(self) -> int:
        return self.collector.probe.stats()["drop_ringfull"]

    def _drain_loop(self) -> None:
        rings = self.collector.ring
        while rings.wait_pending(DRAIN_POLL_MS) and not self._halt.is_set():
            if not self._read_ahead():
                # all pending records held back for the merge's order (or, without a test, the
                # drain's counter reset): look again after a poll instead of spinning
                self._halt.wait(DRAIN_POLL_MS / 1000)


# ---- threads -----------------------------------------------------------------------------------

_current: TestCapture | None = None


def _thread_hook(prev: Callable | None):
    """A threading profile hook: a Python thread started while a test runs registers itself as one
    of the test's threads (before its target runs), then puts back the hook it replaced."""

    def hook(frame, event, arg):
        sys.setprofile(prev)
        cap = _current
        th = threading.current_thread()
        if cap is not None and not getattr(th, "_lbd_internal", False):
            cap.add_thread(threading.get_native_id())
        if prev is not None:
            return prev(frame, event, arg)
        return None

    return hook


# ---- one test ----------------------------------------------------------------------------------

class TestCapture:
    """What one test records (see the module docstring).  Created at the fixture's setup, closed at
    its teardown; `on` while the kernel captures the test's threads."""

    __test__ = False   # not a test class, whatever pytest's collection thinks of the name

    def __init__(self, session: ProbeSession):
        self.session = session
        self.pid = os.getpid()
        self.tids: set[int] = {threading.get_native_id()}
        self.children: set[int] = set()
        self.intervals: list[list] = []          # [on, off]: off None while recording
        self.log = Log()
        self.lost = 0
        self.on = False
        self._open = 0                           # blocks open now
        self._prev_profile = None
        self._closed = False

    def start(self) -> None:
        global _current
        with self.session.lock:
            self.session.capture = self
        _current = self
        self._prev_profile = threading.getprofile()
        threading.setprofile(_thread_hook(self._prev_profile))

    def close(self) -> None:
        global _current
        if self._closed:
            return
        self._closed = True
        threading.setprofile(self._prev_profile)
        if _current is self:
            _current = None
        if self.on:
            self._pause()
        with self.session.lock:
            if self.session.capture is self:
                self.session.capture = None

    # -- switching -----------------------------------------------------------------------------

    def _resume(self) -> int:
        self.log.note_cwd(self.pid, os.getcwd())
        with self.session.lock:
            self.session.keep(self.tids)
            t = self.session.now()
            self.intervals.append([t, None])
            self.on = True
        return t

    def _pause(self) -> int:
        with self.session.lock:
            t = self.session.now()
            self.intervals[-1][1] = t
            self.session.keep(())
            self.on = False
        self.session.drain(flush=True)
        return t

    @contextlib.contextmanager
    def settled(self):
        """The log complete and still for the time of the block: recording paused (the rings
        drained) if it was on, and the drainer kept out (it may still add a late record)."""
        was_on = self.on
        if was_on:
            self._pause()
        try:
            with self.session.lock:
                yield
        finally:
            if was_on:
                self._resume()

    def add_thread(self, tid: int) -> None:
        """A thread of the test's: its records belong to the test.  The kernel keeps it already
        when a kept thread created it while recording (follow adds it to only_tids at its fork):
        rewriting the map here would record this thread's own bpf() calls; the next _resume()
        names it to the kernel otherwise."""
        with self.session.lock:
            self.tids.add(tid)

    # -- blocks --------------------------------------------------------------------------------

    def open_block(self, block: Recording) -> None:
        if self._closed:
            raise RuntimeError("this test's syscall recording is over (record() after the test)")
        self._open += 1
        block.start = self._resume() if not self.on else self.session.now()

    def close_block(self, block: Recording) -> None:
        t = self.session.now()
        block.end = t
        self._open -= 1
        if self._open == 0 and self.on:
            self._pause()

    # -- records -------------------------------------------------------------------------------

    def ingest(self, batch) -> None:
        """Keep the events of the test's processes and threads inside its recording intervals."""
        ev = batch.events
        ts = ev["ts"]
        inside = np.zeros(len(batch), dtype=bool)
        for on, off in self.intervals:
            if off is None:
                inside |= ts >= np.uint64(on)
            else:
                inside |= (ts >= np.uint64(on)) & (ts <= np.uint64(off))
        if not inside.any():
            return
        pid, tid, nr = ev["pid"], ev["tid"], ev["nr"]
        for i in np.flatnonzero(inside & (nr == record.NR_SCHED_FORK)).tolist():
            p, t = int(pid[i]), int(tid[i])
            if p in self.children or (p == self.pid and t in self.tids):
                a = ev["args"][i]
                child = int(a[_CHILD_TGID] or a[_CHILD_PID])
                if child != self.pid:
                    self.children.add(child)
        mine = (pid == self.pid) & _member(tid, self.tids)
        if self.children:
            mine |= _member(pid, self.children)
        self.log.ingest(batch, mine & inside)


def _member(values: np.ndarray, wanted: set[int]) -> np.ndarray:
    """values in wanted: compared one by one for the few threads and processes a test has (faster
    than np.isin's sort or table there)."""
    if len(wanted) > 16:
        return np.isin(values, np.fromiter(wanted, values.dtype, len(wanted)))
    m = np.zeros(len(values), dtype=bool)
    for w in wanted:
        m |= values == w
    return m


# ---- what tests use ----------------------------------------------------------------------------

class Recording(Report):
    """One `with syscalls.record():` block: the syscalls of the test's threads and processes while
    it ran (blocks may nest and repeat; each has its own).  Usable inside the block too (the
    recording pauses for the query)."""

    def __init__(self, capture: TestCapture):
        self._capture = capture
        self.start: int | None = None
        self.end: int | None = None

    def __enter__(self) -> Recording:
        if self.start is not None:
            raise RuntimeError("a Recording is entered once; call syscalls.record() again for a new block")
        self._capture.open_block(self)
        return self

    def __exit__(self, *exc) -> None:
        self._capture.close_block(self)

    def _log(self) -> Log:
        return self._capture.log

    def _windows(self):
        return [] if self.start is None else [(self.start, self.end)]

    def _settled(self):
        return self._capture.settled()

    @property
    def lost(self) -> int:
        return self._capture.lost


class Blocks(Report):
    """The syscalls of some blocks of a capture (each once where they overlap)."""

    def __init__(self, capture: TestCapture, blocks: Callable[[], list]):
        self._capture = capture
        self._blocks = blocks

    def _log(self) -> Log:
        return self._capture.log

    def _windows(self):
        return [(b.start, b.end) for b in self._blocks() if b.start is not None]

    def _settled(self):
        return self._capture.settled()

    @property
    def lost(self) -> int:
        return self._capture.lost


class Syscalls(Blocks):
    """The `syscalls` fixture: `record()` blocks, and the report of the whole test: every block's
    syscalls (each once where blocks nest), or the whole test function when it used no block.
    With pytest-benchmark, the benchmark's recorded rounds count too (see `per_call`)."""

    def __init__(self, capture: TestCapture):
        super().__init__(capture, self._all_blocks)
        self._implicit: Recording | None = None
        self._counted: list[Recording] = []
        self._bench = None                       # lbd.pytest.budget.BenchRounds

    def record(self) -> Recording:
        """A block that records what runs inside it: ``with syscalls.record() as rec: ...``."""
        if self._implicit is not None:
            self._drop_implicit()
        r = Recording(self._capture)
        self._counted.append(r)
        return r

    @property
    def per_call(self) -> dict[str, float] | None:
        """With `benchmark`: syscalls per call of the benchmarked function, over the rounds
        recorded so far (--syscall-rounds); None before the benchmark ran, or without it."""
        return None if self._bench is None else self._bench.per_call()

    def _all_blocks(self) -> list:
        return self._counted + ([self._implicit] if self._implicit is not None else [])

    # -- the plugin's side -----------------------------------------------------------------------

    def _begin_implicit(self) -> None:
        """Record the whole test (the fixture used bare), until a record() block replaces it."""
        r = Recording(self._capture)
        r.__enter__()
        self._implicit = r

    def _end_implicit(self) -> None:
        if self._implicit is not None and self._implicit.end is None:
            self._implicit.__exit__(None, None, None)

    def _drop_implicit(self) -> None:
        r, self._implicit = self._implicit, None
        if r.end is None:
            r.__exit__(None, None, None)

    def _round(self) -> Recording:
        """A block that counts for the test (a benchmark round), entered."""
        r = Recording(self._capture)
        self._counted.append(r)
        r.__enter__()
        return r
