"""The pytest plugin for real: sample test files run in a subprocess pytest (pytester), which loads
the plugin from lbd's entry point and its own probe; the outer test checks their outcomes, their
output and the files they leave (results as JSON, pytest-benchmark's saved runs).

Each inner test asserts the exact calls of what it did where the code is ours (os.stat, os.open,
os.write): the plugin's own syscalls (bpf, the drain) must never show, and a block must see only
what ran inside it.  Python may allocate memory in between (mmap, brk, munmap), which the checks
allow.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

from tests.conftest import require_bpf

pytest_plugins = ["pytester"]

@pytest.fixture(autouse=True)
def _bpf():
    require_bpf()


def run(pytester, *args, timeout=300):
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", *args, timeout=timeout)


def outcomes(result) -> dict:
    return {k: v for k, v in result.parseoutcomes().items() if k not in ("seconds",)}


# ---- recording --------------------------------------------------------------------------------

def test_recording_counts_failures_latency_files_network_execs_and_bytes(pytester, monkeypatch):
    pytester.makepyfile(test_inner=textwrap.dedent(r'''
        import os, socket, subprocess, json

        ALLOC = {"mmap", "munmap", "brk", "madvise", "mremap"}

        def test_block_sees_exactly_its_calls(syscalls, tmp_path):
            os.stat("/")                                  # before the block: not in it
            with syscalls.record() as rec:
                for _ in range(3):
                    os.stat("/")
                for _ in range(2):
                    try:
                        os.stat("/lbd-pytest-missing")
                    except FileNotFoundError:
                        pass
            os.stat("/")                                  # after: not in it either
            counts = rec.counts
            assert counts.pop("newfstatat") == 5, rec.counts
            assert set(counts) <= ALLOC, rec.counts       # nothing of the plugin (bpf, epoll, ...)
            assert rec.failures == {"newfstatat": {"ENOENT": 2}}
            lat = rec.latency["newfstatat"]
            assert lat.count == 5 and 0 < lat.p99_ns <= lat.total_ns

        def test_files_bytes_and_table(syscalls, tmp_path):
            path = str(tmp_path / "data.bin")
            with syscalls.record() as rec:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.write(fd, b"x" * 1000)
                os.close(fd)
                fd = os.open(path, os.O_RDONLY)
                assert len(os.read(fd, 4096)) == 1000
                os.close(fd)
            (w, r) = rec.files
            assert (w.path, w.resolved, w.flags_text, w.writes) == (path, path, "O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC", True)
            assert (r.path, r.flags_text, r.writes, r.errno) == (path, "O_RDONLY|O_CLOEXEC", False, None)
            assert w.result >= 0 and r.result >= 0 and w.pid == r.pid == os.getpid()
            assert rec.bytes_written == 1000 and rec.bytes_read == 1000
            rows = {row["syscall"]: row for row in rec.table()}
            assert rows["openat"]["count"] == 2 and rows["write"]["count"] == 1 and rows["close"]["count"] == 2
            df = rec.dataframe(per="call")
            assert df[df.syscall == "write"]["result"].tolist() == [1000]

        def test_connections_and_binds(syscalls):
            with syscalls.record() as rec:
                srv = socket.socket()
                srv.bind(("127.0.0.1", 0))
                srv.listen()
                port = srv.getsockname()[1]
                cli = socket.create_connection(("127.0.0.1", port))
                cli.close(); srv.close()
            got = [(c.syscall, c.family, c.address, c.port, c.result) for c in rec.connections]
            assert got == [("bind", "AF_INET", "127.0.0.1", 0, 0), ("connect", "AF_INET", "127.0.0.1", port, 0)]
            assert len(rec.network_calls()) == 2 and rec.network_calls(allow_loopback=True) == []
            assert rec.count("listen") == 1

        def test_processes_executed(syscalls):
            with syscalls.record() as rec:
                subprocess.run(["/bin/sh", "-c", "cat /etc/hostname >/dev/null; true"], check=True)
            argvs = [x.argv for x in rec.execs]
            assert argvs == [["/bin/sh", "-c", "cat /etc/hostname >/dev/null; true"], ["cat", "/etc/hostname"]]
            sh, cat = rec.execs
            assert sh.pid != os.getpid() and cat.pid not in (sh.pid, os.getpid())
            opened = [f for f in rec.files if f.path == "/etc/hostname"]
            assert [f.pid for f in opened] == [cat.pid] and opened[0].result >= 0
            assert rec.count("execve") == 2 and rec.count("wait4") >= 1

        def test_bare_fixture_records_the_whole_test(syscalls):
            for _ in range(4):
                os.stat("/")
            assert syscalls.count("newfstatat") == 4      # a query pauses the recording: not counted
            os.stat("/")
            assert syscalls.count("newfstatat") == 5
            assert "bpf" not in syscalls.counts
            data = json.dumps({"counts": syscalls.counts})   # (writing it is recorded too)
            with open(os.environ["LBD_INNER_OUT"], "w") as f:
                f.write(data)
    '''))
    out = pytester.path / "out.json"
    monkeypatch.setenv("LBD_INNER_OUT", str(out))
    result = run(pytester)
    assert outcomes(result) == {"passed": 5}, result.stdout.str()
    counts = json.loads(out.read_text())["counts"]
    assert counts["newfstatat"] == 5 and "bpf" not in counts


def test_long_recordings_are_drained_while_they_run(pytester):
    """More records than the rings hold: the drainer keeps up; without it, the loss is reported."""
    pytester.makepyfile(test_inner=textwrap.dedent(r'''
        import os
        import time

        N = 200_000                   # about 37 MB of records: more than a 16 MiB ring

        def test_every_call_recorded(syscalls):
            # a busy test, not a syscall benchmark: a pause every 5,000 calls (1 MB of records)
            # lets the drainer in on a machine of 2 CPUs, where the loop alone writes 240 MB/s
            with syscalls.record() as rec:
                for i in range(N):
                    os.getppid()
                    if i % 5000 == 0:
                        time.sleep(0.001)
            assert rec.count("getppid") == N and rec.lost == 0

        def test_loss_is_reported(syscalls):
            session = syscalls._capture.session
            drain_at, session.drain_at = session.drain_at, 1 << 62    # no draining while recording
            try:
                with syscalls.record() as rec:
                    for _ in range(N):
                        os.getppid()
            finally:
                session.drain_at = drain_at
            assert rec.lost > 0 and rec.count("getppid") + rec.lost >= N
    '''))
    result = run(pytester, "-W", "error::lbd.pytest.capture.RecordsLost")
    assert outcomes(result) == {"passed": 2, "errors": 1}, result.stdout.str()
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_loss_is_reported*",
                                 "*RecordsLost: lbd: * syscall records were lost while this test recorded (a ring "
                                 "was full): its counts are too low"])


def test_the_drainer_adds_no_syscalls_to_a_test(pytester):
    """The drainer waits for records without taking the GIL: a thread waiting for the GIL makes
    the test's thread hand it over with futex calls (a benchmark once counted 0.8 futex per call
    that were the plugin's own).  A test that only computes records no futex, however long."""
    pytester.makepyfile(test_inner=textwrap.dedent(r'''
        ALLOC = {"mmap", "munmap", "brk", "madvise", "mremap"}

        def test_computing_makes_no_syscalls(syscalls):
            with syscalls.record() as rec:
                total = 0
                for i in range(4_000_000):        # about 0.2 s of Python: 20 of the drainer's polls
                    total += i & 7
            assert total == 14_000_000
            assert set(rec.counts) <= ALLOC, rec.counts
    '''))
    result = run(pytester)
    assert outcomes(result) == {"passed": 1}, result.stdout.str()


def test_assertion_messages_list_the_offending_calls(pytester):
    pytester.makepyfile(test_inner=textwrap.dedent(r'''
        import os, socket

        def test_count(syscalls):
            for _ in range(3):
                open("/etc/hostname").close()
            assert syscalls.count("openat") <= 1

        def test_network(syscalls):
            s = socket.socket()
            try:
                s.connect(("127.0.0.1", 9))
            except OSError:
                pass
            s.close()
            syscalls.assert_no_network()

        def test_writes(syscalls, tmp_path):
            (tmp_path / "fine.txt").write_text("ok")
            outside = tmp_path.parent / (tmp_path.name + "-outside.txt")
            outside.write_text("no")
            syscalls.assert_no_writes_outside(tmp_path)

        def test_clean(syscalls, tmp_path):
            (tmp_path / "fine.txt").write_text("ok")
            syscalls.assert_no_network()
            syscalls.assert_no_writes_outside(tmp_path)
    '''))
    result = run(pytester)
    assert outcomes(result) == {"failed": 3, "passed": 1}, result.stdout.str()
    result.stdout.fnmatch_lines([
        "*def test_count(syscalls):*",
        "E       assert 3 <= 1",
        "E         3 openat calls:",
        'E           python*(*) openat(AT_FDCWD, "/etc/hostname", O_RDONLY|O_CLOEXEC) = *',
        'E           python*(*) openat(AT_FDCWD, "/etc/hostname", O_RDONLY|O_CLOEXEC) = *',
        'E           python*(*) openat(AT_FDCWD, "/etc/hostname", O_RDONLY|O_CLOEXEC) = *',
        "*syscalls recorded*",
        "openat * 3 *",
    ])
    result.stdout.fnmatch_lines([
        "E       AssertionError: 1 network call (connect, bind, sendto to an IP address):",
        "E         python*(*) connect(*, {AF_INET, 127.0.0.1:9}, 16) = -1 ECONNREFUSED (Connection refused)",
    ])
    result.stdout.fnmatch_lines([
        "E       AssertionError: 1 write outside */test_writes0:",
        'E         python*(*) openat(AT_FDCWD, "*/test_writes0-outside.txt", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0666) = *',
    ])
    text = result.stdout.str()
    assert "lbd/pytest/" not in text          # no frame of the plugin in the failures
    errors = [line for line in text.splitlines() if line.startswith("E ")]
    assert not [line for line in errors if "fine.txt" in line]    # writes inside are not listed


def test_nested_and_repeated_records(pytester):
    pytester.makepyfile(test_inner=textwrap.dedent(r'''
        import os

        ALLOC = {"mmap", "munmap", "brk", "madvise", "mremap"}

        def stats(rec):
            c = dict(rec.counts)
            n = c.pop("newfstatat", 0)
            assert set(c) <= ALLOC, rec.counts
            return n

        def test_nested(syscalls):
            with syscalls.record() as outer:
                os.stat("/")
                with syscalls.record() as inner:
                    os.stat("/"); os.stat("/")
                    assert stats(inner) == 2          # queried inside the block: what it has so far
                    os.stat("/")
                os.stat("/")
                with syscalls.record() as inner2:
                    os.stat("/")
            assert (stats(outer), stats(inner), stats(inner2)) == (6, 3, 1)
            assert stats(syscalls) == 6               # the blocks overlap: each call once

        def test_repeated(syscalls):
            blocks = []
            for n in (1, 2, 3):
                with syscalls.record() as rec:
                    for _ in range(n):
                        os.stat("/")
                blocks.append(rec)
                os.stat("/")                          # between the blocks: never counted
            assert [stats(b) for b in blocks] == [1, 2, 3]
            assert stats(syscalls) == 6

        def test_block_replaces_the_whole_test(syscalls):
            os.stat("/")                              # before the first block: not counted
            with syscalls.record():
                os.stat("/")
            os.stat("/")
            assert stats(syscalls) == 1

        def test_a_block_is_entered_once(syscalls):
            rec = syscalls.record()
            with rec:
                pass
            try:
                with rec:
                    pass
            except RuntimeError as e:
                assert "entered once" in str(e)
            else:
                raise AssertionError("entered twice")
    '''))
    result = run(pytester)
    assert outcomes(result) == {"passed": 4}, result.stdout.str()


def test_threads(pytester):
    pytester.makepyfile(test_inner=textwrap.dedent(r'''
        import os, threading
        from concurrent.futures import ThreadPoolExecutor

        def stat_missing(n):
            for _ in range(n):
                try:
                    os.stat("/lbd-pytest-thread-missing")
                except FileNotFoundError:
                    pass
            return threading.get_native_id()

        def test_thread_started_in_the_block(syscalls):
            tids = []
            with syscalls.record() as rec:
                t = threading.Thread(target=lambda: tids.append(stat_missing(3)))
                t.start(); t.join()
            # futex waits of the thread machinery may fail with EAGAIN: the stat calls are the point
            assert rec.failures["newfstatat"] == {"ENOENT": 3}
            assert set(rec.failures) <= {"newfstatat", "futex"}, rec.failures
            rows = [r for r in rec.table(per="call") if r["syscall"] == "newfstatat"]
            assert {r["tid"] for r in rows} == {tids[0]} and tids[0] != threading.get_native_id()

        def test_pool_started_before_the_block(syscalls):
            with ThreadPoolExecutor(2) as pool:
                pool.submit(stat_missing, 0).result()     # the pool's threads start outside the block
                with syscalls.record() as rec:
                    done = [pool.submit(stat_missing, 2) for _ in range(4)]
                    tids = {f.result() for f in done}
            assert rec.failures["newfstatat"] == {"ENOENT": 8}
            assert set(rec.failures) <= {"newfstatat", "futex"}, rec.failures
            assert {r["tid"] for r in rec.table(per="call") if r["syscall"] == "newfstatat"} == tids

        background = []

        def test_thread_of_another_test_is_not_recorded(syscalls):
            stop = threading.Event()
            def loop():
                while not stop.is_set():
                    stat_missing(1)
                    stop.wait(0.001)
            t = threading.Thread(target=loop, daemon=True)
            background.append((t, stop))
            t.start()

        def test_after_it(syscalls):
            import time
            with syscalls.record() as rec:
                time.sleep(0.2)                           # the previous test's thread runs meanwhile
            t, stop = background[0]
            stop.set(); t.join()
            assert "newfstatat" not in rec.counts, rec.counts
    '''))
    result = run(pytester)
    assert outcomes(result) == {"passed": 4}, result.stdout.str()


def test_child_processes(pytester):
    pytester.makepyfile(test_inner=textwrap.dedent(r'''
        import os, subprocess, time

        procs = []

        def test_children_and_grandchildren(syscalls):
            with syscalls.record() as rec:
                subprocess.run(["/bin/sh", "-c", "/bin/sh -c 'cat /etc/hostname; true' >/dev/null; true"],
                               check=True)
            assert [x.argv[0] for x in rec.execs] == ["/bin/sh", "/bin/sh", "cat"]
            assert len({x.pid for x in rec.execs}) == 3
            cat = rec.execs[-1].pid
            assert [f.pid for f in rec.files if f.path == "/etc/hostname"] == [cat]
            assert rec.count("exit_group") == 3           # the three processes ended inside the block

        def test_start_a_process_that_outlives_the_test(syscalls):
            procs.append(subprocess.Popen(
                ["/bin/sh", "-c", "while :; do cat /etc/hostname >/dev/null; sleep 0.01; done"]))
            deadline = time.monotonic() + 10
            while not any(x.argv[0] == "cat" for x in syscalls.execs):   # (each query drains)
                assert time.monotonic() < deadline, "the loop never ran cat"
                time.sleep(0.01)

        def test_the_next_test_does_not_record_it(syscalls):
            time.sleep(0.3)                                # the loop runs about 20 more cats meanwhile
            p = procs.pop()
            p.kill(); p.wait()
            assert syscalls.execs == [] and [f for f in syscalls.files if f.path == "/etc/hostname"] == []
    '''))
    result = run(pytester)
    assert outcomes(result) == {"passed": 3}, result.stdout.str()


# ---- pytest-benchmark -------------------------------------------------------------------------

BENCH = r'''
import os

CACHED = os.environ.get("LBD_INNER_CACHED") == "1"
_cache = {}

def read_config(path):
    """Reads its configuration file on every call, unless CACHED."""
    if CACHED and path in _cache:
        return _cache[path]
    with open(path) as f:
        _cache[path] = f.read()
    return _cache[path]

def test_read_config(benchmark, syscalls, tmp_path):
    path = tmp_path / "app.toml"
    path.write_text("x = 1\n")
    read_config(str(path))                                 # warm the cache (when there is one)
    benchmark(read_config, str(path))
    per_call = syscalls.per_call
    assert per_call.get("openat", 0) == (0 if CACHED else 1), per_call
'''


def _saved_runs(pytester) -> list[dict]:
    files = sorted((pytester.path / ".benchmarks").glob("*/*.json"))
    return [json.loads(f.read_text()) for f in files]


def test_benchmark_autosave_compare_and_budget(pytester, monkeypatch):
    pytester.makepyfile(test_bench=BENCH)
    fast = ("--benchmark-max-time=0.05", "--benchmark-min-rounds=5")

    # 1. the cached version, saved: syscalls per call in extra_info
    monkeypatch.setenv("LBD_INNER_CACHED", "1")
    result = run(pytester, "--benchmark-autosave", *fast)
    assert outcomes(result) == {"passed": 1}, result.stdout.str()
    (saved,) = _saved_runs(pytester)
    (bench,) = saved["benchmarks"]
    assert bench["fullname"] == "test_bench.py::test_read_config"
    info = bench["extra_info"]
    assert info["syscalls"].get("openat", 0) == 0 and info["syscalls_calls"] >= 5

    # 2. the regression (no cache), compared: the syscalls per call are shown against the saved run
    monkeypatch.setenv("LBD_INNER_CACHED", "0")
    result = run(pytester, "--benchmark-compare", "--benchmark-autosave", *fast)
    assert outcomes(result) == {"passed": 1}, result.stdout.str()
    result.stdout.fnmatch_lines(["*syscalls per call (lbd), against 0001_*.json*",
                                 "test_bench.py::test_read_config: * syscalls per call: *openat 0->1*"])
    second = _saved_runs(pytester)[1]["benchmarks"][0]["extra_info"]["syscalls"]
    assert second["openat"] == 1 and second["close"] == 1

    # 3. the budget fails the regression against the cached run ...
    result = run(pytester, "--benchmark-compare=0001", "--syscall-budget", *fast)
    assert outcomes(result) == {"failed": 1}, result.stdout.str()
    result.stdout.fnmatch_lines([
        "syscall budget exceeded against 0001_*.json (tolerance 10%+0.5):",
        "  openat: 0 -> 1 per call (+1; at most 0.5 allowed by 10%+0.5)",
    ])

    # 4. ... and passes the cached version against itself
    monkeypatch.setenv("LBD_INNER_CACHED", "1")
    result = run(pytester, "--benchmark-compare=0001", "--syscall-budget", *fast)
    assert outcomes(result) == {"passed": 1}, result.stdout.str()

    # 5. without --benchmark-compare the budget uses the latest saved run (the regression): passes,
    #    also with no growth allowed for openat
    monkeypatch.setenv("LBD_INNER_CACHED", "0")
    result = run(pytester, "--syscall-budget", "--syscall-tolerance=openat=0", *fast)
    assert outcomes(result) == {"passed": 1}, result.stdout.str()
    result.stdout.fnmatch_lines(["*syscalls per call (lbd), against 0002_*.json*",
                                 "test_bench.py::test_read_config: * syscalls per call*"])


def test_budget_options_are_checked(pytester):
    pytester.makepyfile(test_bench=BENCH)
    result = run(pytester, "--syscall-tolerance=openat=lots")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--syscall-tolerance: 'openat=lots': a limit is N (calls per call)*"])
    result = run(pytester, "--syscall-rounds=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--syscall-rounds: '0': rounds recorded per benchmark, 1 to 1000*"])
    result = run(pytester, "--syscall-budget", "-p", "no:benchmark")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --syscall-budget compares pytest-benchmark runs: it needs the "
                                 "pytest-benchmark plugin (pip install pytest-benchmark; not -p no:benchmark)"])
    result = run(pytester, "--syscall-budget", "--benchmark-max-time=0.05")    # nothing saved yet
    assert outcomes(result) == {"passed": 1}, result.stdout.str()
    result.stdout.fnmatch_lines(["lbd: --syscall-budget found no saved benchmark run to compare with "
                                 "(save one with --benchmark-autosave)"])


# ---- switching off, and without privileges ------------------------------------------------------

SIMPLE = r'''
def test_uses_it(syscalls):
    import os
    os.stat("/")
    assert syscalls.count("newfstatat") == 1
'''


def test_switched_off_by_option_ini_or_plugin_flag(pytester, monkeypatch):
    pytester.makepyfile(test_simple=SIMPLE)
    result = run(pytester, "--no-syscalls")
    assert outcomes(result) == {"skipped": 1}
    result.stdout.fnmatch_lines(["*syscall recording is off (--no-syscalls, or syscalls_enabled = false)*"])
    pytester.makeini("[pytest]\nsyscalls_enabled = false\n")
    result = run(pytester)
    assert outcomes(result) == {"skipped": 1}
    pytester.makeini("[pytest]\n")
    result = run(pytester, "-p", "no:lbd")
    assert outcomes(result) == {"errors": 1}
    result.stdout.fnmatch_lines(["*fixture 'syscalls' not found*"])
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = run(pytester, "-p", "lbd")                   # the entry point's name loads it
    assert outcomes(result) == {"passed": 1}, result.stdout.str()


def test_skips_without_privileges():
    """As nobody (no root, no capability) the fixture skips with one clear reason; nothing errors."""
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to run pytest as an unprivileged user")
    d = tempfile.mkdtemp(prefix="lbd-pytest-nobody-")
    try:
        os.chmod(d, 0o755)
        with open(os.path.join(d, "test_simple.py"), "w") as f:
            f.write(SIMPLE)
        os.chmod(os.path.join(d, "test_simple.py"), 0o644)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "LBD_REQUIRE"))}
        env["HOME"] = d
        proc = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
             sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "-q", "test_simple.py"],
            cwd=d, env=env, capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "1 skipped" in out and "error" not in out.lower(), out
    reasons = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert len(reasons) == 1, out
    assert ("lbd: recording syscalls needs root or CAP_BPF+CAP_PERFMON: uid 65534 without CAP_BPF and CAP_PERFMON"
            in reasons[0]), reasons
    assert "`lbd doctor` lists what this host lacks" in reasons[0]
