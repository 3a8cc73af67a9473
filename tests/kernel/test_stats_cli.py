"""`lbd stats` against the kernel: every syscall counted in the kernel (selected or not) with its
errors; the filtered counts (pid, comm, an expression) from captured events; tables per interval."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from lbd import syscalls
from tests.conftest import require_bpf

N = 300
NEWFSTATAT = syscalls.lookup("newfstatat").nr
GETPPID = syscalls.lookup("getppid").nr
# a child that names itself, waits for a line on stdin, then makes N failing newfstatat (ENOENT)
# and N getppid calls through libc's syscall(): exactly these syscalls, whatever libc's stat does
CHILD = f"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(15, b"lbdstatchild", 0, 0, 0)
sys.stdin.readline()
buf = ctypes.create_string_buffer(256)
for _ in range({N}):
    assert libc.syscall({NEWFSTATAT}, -100, b"/nonexistent/lbd-stats", buf, 0) == -1
    libc.syscall({GETPPID})
"""


def stats(*args, child=None, lines=None) -> list[dict]:
    """Run `lbd stats --json ARGS` until it counts, let the child work (or read `lines` JSON
    lines), stop it with SIGTERM and return its JSON objects."""
    p = subprocess.Popen([sys.executable, "-m", "lbd.cli", "stats", "--json", "-d", "120", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stderr.readline()
        assert "counting" in line, line + p.stderr.read()
        got = []
        if child is not None:
            child.stdin.write("go\n")
            child.stdin.close()
            assert child.wait(timeout=60) == 0
        for _ in range(lines or 0):
            got.append(json.loads(p.stdout.readline()))
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    return got + [json.loads(x) for x in out.splitlines()]


def start_child() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, text=True)


def test_every_syscall_is_counted_in_the_kernel(tmp_path):
    require_bpf()
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"open_params": {"syscalls": ["openat"]}}))     # the selection: openat only
    assert GETPPID not in syscalls.default_selection() and NEWFSTATAT not in syscalls.default_selection()
    child = start_child()
    (doc,) = stats("--config", str(cfg), child=child)
    assert doc["mode"] == "kernel"
    rows = {r["name"]: r for r in doc["syscalls"]}
    assert rows["newfstatat"]["count"] >= N and rows["newfstatat"]["errors"] >= N
    assert rows["getppid"]["count"] >= N                 # not selected, counted all the same
    assert rows["getppid"]["total_ns"] > 0 and rows["getppid"]["p99_ns"] > 0
    assert doc["events"] == sum(r["count"] for r in doc["syscalls"])


def test_filtered_counts_per_process():
    require_bpf()
    child = start_child()
    (doc,) = stats("-p", str(child.pid), "-P", child=child)
    assert doc["mode"] == "events"
    (row,) = doc["processes"]                            # only the child
    assert row["pid"] == child.pid and row["comm"] == "lbdstatchild"
    assert row["count"] >= 2 * N and row["errors"] >= N


def test_filtered_counts_by_comm_and_syscall():
    require_bpf()
    child = start_child()
    (doc,) = stats("-n", "lbdstatchild", "-e", "trace=newfstatat,getppid", child=child)
    rows = {r["name"]: r for r in doc["syscalls"]}
    assert set(rows) == {"newfstatat", "getppid"}
    assert rows["newfstatat"]["count"] == rows["newfstatat"]["errors"] == N
    assert rows["getppid"]["count"] == N and rows["getppid"]["errors"] == 0


def test_expression_and_failed_only():
    require_bpf()
    child = start_child()
    (doc,) = stats(f"pid = {child.pid} and errno = ENOENT", child=child)
    rows = {r["name"]: r for r in doc["syscalls"]}
    assert rows["newfstatat"]["count"] == rows["newfstatat"]["errors"] == N and "getppid" not in rows
    child = start_child()
    (doc,) = stats("-x", "-p", str(child.pid), child=child)
    assert {r["name"] for r in doc["syscalls"]} == {"newfstatat"}
    assert all(r["count"] == r["errors"] for r in doc["syscalls"])


def test_interval_prints_a_table_each_time():
    require_bpf()
    docs = stats("-i", "0.2", "--top", "3", lines=2)
    assert len(docs) >= 2
    assert all(d["mode"] == "kernel" and "time" in d and d["seconds"] > 0 for d in docs)
    # text: each table has its headers
    p = subprocess.run([sys.executable, "-m", "lbd.cli", "stats", "-i", "0.3", "-d", "1", "--top", "2"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    heads = [x for x in p.stdout.splitlines() if x.split() == ["SYSCALL", "COUNT", "ERRORS", "TOTAL_MS", "P99_US"]]
    assert len(heads) >= 2 and "\033[2J" not in p.stdout          # not a terminal: no redraw


def test_interval_on_a_terminal_redraws_the_screen():
    """Like top: each table clears the screen and starts at the top."""
    require_bpf()
    import pty

    main, sub = pty.openpty()
    try:
        p = subprocess.run([sys.executable, "-m", "lbd.cli", "stats", "-i", "0.3", "-d", "1", "--top", "2"],
                           stdout=sub, stderr=subprocess.PIPE, text=True, timeout=120)
        os.close(sub)
        sub = -1
        out = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:                     # EIO: the writer is gone and all was read
                break
            if not chunk:
                break
            out += chunk
    finally:
        if sub >= 0:
            os.close(sub)
        os.close(main)
    assert p.returncode == 0, p.stderr
    screens = out.decode().split("\033[H\033[2J")
    assert screens[0] == "" and len(screens) >= 3        # nothing before the first clear; a table after each
    assert all("SYSCALL" in x and "counted in the kernel" in x for x in screens[1:])
