"""The pytest plugin (entry point `pytest11` named `lbd`): the `syscalls` fixture, its options,
the pytest-benchmark integration and the syscall budget.  See lbd/pytest/__init__.py and the
README's "pytest plugin" section.

Importing this module costs nothing beyond pytest (it is imported by every pytest run where lbd is
installed): the probe, numpy and the decoder load when a test first uses the fixture.

Hooks, in the order a test meets them: the fixture (setup: load the probe once, skip when it
cannot be; start the test's capture; follow the benchmark's rounds when the test also uses
`benchmark`), `pytest_pyfunc_call` (record the whole test function when the fixture is used bare),
`pytest_runtest_makereport` (the budget check; a failed test's report gets the syscall summary),
`pytest_assertrepr_compare` (a failed ``assert syscalls.count(...) <= N`` lists the calls),
`pytest_terminal_summary` (syscalls per call against the saved run).
"""
from __future__ import annotations

import os
import sys

import pytest

__all__ = ["syscalls"]

_STATE = pytest.StashKey["_State"]()
_FIXTURE = pytest.StashKey["object"]()


class _State:
    """The plugin's state for one pytest run (config.stash)."""

    def __init__(self, config):
        from lbd.pytest.budget import DEFAULT_ROUNDS, Tolerance

        self.config = config
        self.enabled = not config.getoption("no_syscalls") and _ini_bool(config, "syscalls_enabled")
        self.budget = bool(config.getoption("syscall_budget"))
        text = config.getoption("syscall_tolerance") or config.getini("syscall_tolerance")
        try:
            self.tolerance = Tolerance.parse(text)
        except ValueError as e:
            raise pytest.UsageError(str(e)) from None
        rounds = config.getoption("syscall_rounds") or config.getini("syscall_rounds") or DEFAULT_ROUNDS
        try:
            self.rounds = int(rounds)
        except ValueError:
            self.rounds = 0
        if not 1 <= self.rounds <= 1000:
            raise pytest.UsageError(f"--syscall-rounds: {rounds!r}: rounds recorded per benchmark, 1 to 1000")
        self.session = None              # lbd.pytest.capture.ProbeSession, on first use
        self._saved = None               # (path, {fullname: saved benchmark}) once loaded
        self.compared: list[tuple[str, dict | None, dict]] = []   # (test, saved per call, now per call)

    def probe_session(self):
        if self.session is None:
            from lbd.pytest.capture import ProbeSession

            self.session = ProbeSession()
        return self.session

    def saved_run(self):
        """(path, {fullname: benchmark}) of the run to compare with: --benchmark-compare's, else,
        with --syscall-budget, the latest saved one; None without pytest-benchmark or a saved run."""
        if self._saved is not None:
            return self._saved
        bs = getattr(self.config, "_benchmarksession", None)
        if bs is None:
            return None
        mapping = getattr(bs, "compared_mapping", None) or {}
        if not mapping and self.budget:
            for path, data in list(bs.storage.load())[-1:]:
                mapping = {path: {b["fullname"]: b for b in data.get("benchmarks", [])}}
        if not mapping:
            return None
        path, benches = next(iter(mapping.items()))
        self._saved = (str(path), benches)
        return self._saved


def _ini_bool(config, name: str) -> bool:
    v = config.getini(name)
    if isinstance(v, bool):
        return v
    text = str(v).strip().lower()
    if text in ("true", "1", "yes", "on", ""):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise pytest.UsageError(f"ini {name}: {v!r}: true or false")


# ---- options -----------------------------------------------------------------------------------

def pytest_addoption(parser):
    group = parser.getgroup("lbd", "lbd: the syscalls of the code under test (the `syscalls` fixture)")
    group.addoption("--no-syscalls", action="store_true", default=False, dest="no_syscalls",
                    help="turn syscall recording off: tests that use the `syscalls` fixture skip "
                         "(ini: syscalls_enabled = false; -p no:lbd removes the plugin)")
    group.addoption("--syscall-budget", action="store_true", default=False, dest="syscall_budget",
                    help="fail a benchmark whose syscalls per call grew beyond --syscall-tolerance over "
                         "the saved run (--benchmark-compare's, else the latest saved one)")
    group.addoption("--syscall-tolerance", metavar="SPEC", default=None, dest="syscall_tolerance",
                    help="growth allowed per syscall: LIMIT[,SYSCALL=LIMIT...], LIMIT = N calls, N%% of "
                         "the saved count, N%%+M, or any (default 10%%+0.5; ini: syscall_tolerance)")
    group.addoption("--syscall-rounds", metavar="N", default=None, dest="syscall_rounds",
                    help="benchmark rounds recorded for syscalls per call (default 5; ini: syscall_rounds)")
    parser.addini("syscalls_enabled", "record syscalls for the `syscalls` fixture (false: its tests skip)",
                  default="true")
    parser.addini("syscall_tolerance", "growth allowed per syscall with --syscall-budget (see "
                  "--syscall-tolerance)", default="")
    parser.addini("syscall_rounds", "benchmark rounds recorded for syscalls per call", default="")


def pytest_configure(config):
    config.stash[_STATE] = _State(config)


def pytest_sessionstart(session):
    state = session.config.stash.get(_STATE, None)
    if state is not None and state.budget and getattr(session.config, "_benchmarksession", None) is None:
        raise pytest.UsageError("--syscall-budget compares pytest-benchmark runs: it needs the pytest-benchmark "
                                "plugin (pip install pytest-benchmark; not -p no:benchmark)")


def pytest_unconfigure(config):
    state = config.stash.get(_STATE, None)
    if state is not None and state.session is not None:
        state.session.close()


# ---- the fixture -------------------------------------------------------------------------------

@pytest.fixture
def syscalls(request):
    """The syscalls of this test's threads and of the processes they start: inside
    ``with syscalls.record():`` blocks, or the whole test function when no block is used.
    Counts, failures, latency, files, connections, executions, bytes; see lbd.pytest.report."""
    state = request.config.stash[_STATE]
    if not state.enabled:
        pytest.skip("syscall recording is off (--no-syscalls, or syscalls_enabled = false)")
    from lbd.pytest.capture import Syscalls, TestCapture, Unavailable

    session = state.probe_session()
    try:
        session.ensure()
    except Unavailable as e:
        pytest.skip(f"lbd: {e}")
    cap = TestCapture(session)
    fx = Syscalls(cap)
    if "benchmark" in request.fixturenames:
        from lbd.pytest.budget import BenchRounds

        bm = request.getfixturevalue("benchmark")
        if BenchRounds.usable(bm):
            fx._bench = BenchRounds(bm, fx, state.rounds)
    cap.start()
    request.node.stash[_FIXTURE] = fx
    try:
        yield fx
    finally:
        cap.close()
    if cap.lost:
        import warnings

        from lbd.pytest.capture import RecordsLost

        warnings.warn(RecordsLost(f"lbd: {cap.lost} syscall records were lost while this test recorded (a ring "
                                  "was full): its counts are too low"), stacklevel=1)


@pytest.hookimpl(hookwrapper=True)
def pytest_pyfunc_call(pyfuncitem):
    fx = pyfuncitem.stash.get(_FIXTURE, None)
    if fx is not None and fx._bench is None:
        fx._begin_implicit()
    yield
    if fx is not None:
        fx._end_implicit()
        if fx._bench is not None:
            fx._bench.finish()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when != "call":
        return
    fx = item.stash.get(_FIXTURE, None)
    if fx is None:
        return
    rep = outcome.get_result()
    state = item.config.stash[_STATE]
    if rep.failed:
        rep.sections.append(("syscalls recorded", fx.summary()))
        return
    per_call = fx.per_call
    if per_call is None:
        return
    saved = state.saved_run()
    before = None
    if saved is not None:
        entry = saved[1].get(fx._bench.bm.fullname)
        before = (entry or {}).get("extra_info", {}).get("syscalls")
    state.compared.append((item.nodeid, before, per_call))
    if not (state.budget and rep.passed):
        return
    if before is None:
        return
    from lbd.pytest.budget import exceeded

    over = exceeded(before, per_call, state.tolerance)
    if over:
        rep.outcome = "failed"
        rep.longrepr = (f"syscall budget exceeded against {os.path.basename(saved[0])} "
                        f"(tolerance {state.tolerance}):\n" + "\n".join("  " + s for s in over))


def pytest_assertrepr_compare(config, op, left, right):
    report = sys.modules.get("lbd.pytest.report")
    if report is None:        # no test recorded anything: not ours
        return None
    for side in (left, right):
        if isinstance(side, report.Count):
            names = "/".join(side.names)
            head = f"{int(left)!r} {op} {int(right)!r}" if all(isinstance(s, int) for s in (left, right)) \
                else f"{left!r} {op} {right!r}"
            return [head, f"{int(side)} {names} call{'s' if int(side) != 1 else ''}:"] + \
                ["  " + line for line in side.calls()]
    return None


def pytest_terminal_summary(terminalreporter):
    state = terminalreporter.config.stash.get(_STATE, None)
    if state is None or not state.compared:
        return
    saved = state.saved_run()
    if saved is None:
        if state.budget:
            terminalreporter.write_line("lbd: --syscall-budget found no saved benchmark run to compare with "
                                        "(save one with --benchmark-autosave)", yellow=True)
        return
    from lbd.pytest.budget import per_call_text

    terminalreporter.section(f"syscalls per call (lbd), against {os.path.basename(saved[0])}", sep="-")
    for nodeid, before, now in state.compared:
        terminalreporter.write_line(f"{nodeid}: {per_call_text(before, now)}")
