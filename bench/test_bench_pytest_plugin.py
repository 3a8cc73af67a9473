"""The pytest plugin's costs (lbd.pytest): what recording adds to each syscall of the code under
test, and what it costs per test.

Per syscall: this thread makes LBD_BENCH_PLUGIN_CALLS getppid (os.getppid) in a loop, timed alone,
with the plugin's session probe loaded throughout:

  not recorded   the probe attached, this thread not kept (what every other test and process pays)
  probe alone    the probe keeping this thread (Probe.set_only_tids), nothing reading the rings
                 while the loop runs: the probe's own per-syscall cost
  plugin         inside `with syscalls.record():`, the plugin as a test uses it: its drainer thread
                 empties the rings when one is a quarter full, during the loop

The calls fit a ring (16 MiB, about 11 MB of records), so "probe alone" loses nothing; in "plugin"
the drainer wakes once per round, when a ring is half full.  Figures: the best round's wall ns and this thread's CPU ns per call, and the
overhead over "not recorded".  Target: the plugin's overhead is the probe's own (within 10%: a
shared machine), i.e. no consumer cost on the test's thread: its CPU time shows the work done on
it, the wall time also the waits for the GIL while the drainer decodes (and, on a busy machine,
other processes).  The drain and bookkeeping after the
block (off the code under test) are reported per recorded syscall.

Per test: an empty `with syscalls.record():` block read once (start, stop, drain, count), and a
whole test as the fixture runs it bare (capture set-up, thread hook, the whole-test recording,
its counts, teardown), without pytest's own fixture machinery.  Target: <= 1 ms per test.
"""
from __future__ import annotations

import os
import time

import pytest

import benchlib as bl

CALLS = bl.env_int("LBD_BENCH_PLUGIN_CALLS", 60_000)
ROUNDS = bl.env_int("LBD_BENCH_PLUGIN_ROUNDS", 15)
MODES = ["not recorded", "probe alone", "plugin"]

PER_SYSCALL = bl.group(
    "pytest_syscall",
    f"pytest plugin: per getppid of the code under test ({CALLS} calls a round, best of {ROUNDS}; "
    "overhead: minus 'not recorded')",
    [("wall_ns", "wall ns/call", ".1f"), ("cpu_ns", "CPU ns/call", ".1f"), ("overhead_ns", "wall overhead", ".1f"),
     ("cpu_overhead_ns", "CPU overhead", ".1f"), ("after_ns", "drain after, ns/call", ".1f")],
    base="probe alone",
    ratios=[("overhead_ns", "wall overhead"), ("cpu_overhead_ns", "CPU overhead")],
)
FIXED = bl.group(
    "pytest_fixed",
    "pytest plugin: fixed cost (best round; target <= 1 ms per test)",
    [("us", "us", ".1f")],
)


@pytest.fixture(scope="module")
def session():
    from lbd.pytest.capture import ProbeSession, Unavailable

    s = ProbeSession()
    try:
        s.ensure()
    except Unavailable as e:
        if bl.REQUIRE_BPF:
            pytest.fail(f"LBD_REQUIRE_BPF=1 but {e}", pytrace=False)
        pytest.skip(str(e))
    try:
        yield s
    finally:
        s.close()


def _loop(n: int, times: list) -> None:
    getppid = os.getppid
    w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
    for _ in range(n):
        getppid()
    times.append((time.perf_counter_ns() - w0, time.thread_time_ns() - c0))


@pytest.mark.parametrize("mode", MODES)
def test_per_syscall(benchmark, session, mode):
    """The loop's time per getppid in each mode (see the module docstring)."""
    import threading

    from lbd.pytest.capture import Syscalls, TestCapture

    benchmark.group = "pytest plugin per syscall"
    times: list = []
    after: list = []
    state: dict = {}
    tid = threading.get_native_id()

    def setup():
        if mode == "probe alone":
            state["drain_at"] = session.drain_at
            session.drain_at = 1 << 62                 # nothing reads the rings during the loop
            session.keep({tid})
        elif mode == "plugin":
            cap = TestCapture(session)
            cap.start()
            state["fx"] = fx = Syscalls(cap)
            state["rec"] = fx.record().__enter__()
        return (CALLS, times), {}

    def teardown(*args):
        t0 = time.perf_counter_ns()
        if mode == "probe alone":
            session.keep(())
            session.drain()                             # no capture: thrown away
            session.drain_at = state["drain_at"]
        elif mode == "plugin":
            rec = state["rec"]
            rec.__exit__(None, None, None)
            n = rec.count("getppid")
            after.append(time.perf_counter_ns() - t0)
            assert n == CALLS and rec.lost == 0, (n, rec.lost)   # every call recorded, none lost
            state["fx"]._capture.close()

    benchmark.pedantic(_loop, setup=setup, teardown=teardown, rounds=ROUNDS, iterations=1)
    wall = min(w for w, _ in times) / CALLS
    cpu = min(c for _, c in times) / CALLS
    base = PER_SYSCALL.rows.get("not recorded")
    metrics = {"wall_ns": wall, "cpu_ns": cpu, "calls": CALLS, "rounds": ROUNDS}
    if mode == "not recorded":
        metrics.update(overhead_ns=0.0, cpu_overhead_ns=0.0)
    elif base is not None:
        metrics.update(overhead_ns=wall - base.metrics["wall_ns"], cpu_overhead_ns=cpu - base.metrics["cpu_ns"])
    if after:
        metrics["after_ns"] = min(after) / CALLS
    bl.record(benchmark, "pytest_syscall", mode, **metrics)
    _notes()


def test_fixed_cost_per_block(benchmark, session):
    """An empty `with syscalls.record():` block and one count read from it."""
    from lbd.pytest.capture import Syscalls, TestCapture

    benchmark.group = "pytest plugin fixed cost"
    cap = TestCapture(session)
    cap.start()
    fx = Syscalls(cap)

    def block():
        with fx.record() as rec:
            pass
        return rec.count("openat")

    try:
        assert benchmark(block) == 0
    finally:
        cap.close()
    bl.record(benchmark, "pytest_fixed", "empty record() block, one count", us=benchmark.stats.stats.min * 1e6)
    _notes()


def test_fixed_cost_per_test(benchmark, session):
    """What the fixture does for a test that uses it bare: set-up, the whole-test recording (empty
    here), its counts, teardown."""
    from lbd.pytest.capture import Syscalls, TestCapture

    benchmark.group = "pytest plugin fixed cost"

    def one_test():
        cap = TestCapture(session)
        fx = Syscalls(cap)
        cap.start()
        fx._begin_implicit()
        fx._end_implicit()
        n = fx.counts
        cap.close()
        return n

    assert benchmark(one_test) == {}
    bl.record(benchmark, "pytest_fixed", "a test using the fixture bare", us=benchmark.stats.stats.min * 1e6)
    _notes()


def _notes() -> None:
    notes = []
    probe = PER_SYSCALL.rows.get("probe alone")
    plugin = PER_SYSCALL.rows.get("plugin")
    for key, what in (("cpu_overhead_ns", "this thread's CPU"), ("overhead_ns", "wall")):
        if probe and plugin and key in probe.metrics and key in plugin.metrics:
            a, b = plugin.metrics[key], probe.metrics[key]
            ok = a <= b * 1.10 + 5
            notes.append(f"{'met   ' if ok else 'MISSED'}  plugin overhead per syscall <= the probe's own (+10%), "
                         f"{what}: {a:.1f} ns vs {b:.1f} ns")
    PER_SYSCALL.notes[:] = notes
    row = FIXED.rows.get("a test using the fixture bare")
    FIXED.notes[:] = [] if row is None else [
        f"{'met   ' if row.metrics['us'] <= 1000 else 'MISSED'}  fixed cost per test <= 1 ms: {row.metrics['us']:.0f} us"]
