"""lbd.Collector's user API on live captures: filter= (its kernel part in the probe's maps, the
whole expression over every batch), duration=, max_events=, and Ctrl-C inside the with block
(KeyboardInterrupt reaches the user, the probe is detached, the threads are stopped)."""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require_bpf
from tests.kernel.conftest import AT_FDCWD, syscall

ROOT = Path(__file__).resolve().parents[2]
MISSING = "/lbd-api-unique-missing"


def _stat(path: str) -> int:
    buf = ctypes.create_string_buffer(256)
    from lbd import syscalls

    return syscall(syscalls.lookup("newfstatat").nr, AT_FDCWD, path.encode(), buf, 0)


def _drain(col) -> list:
    """Stop the capture and hand out every record the rings still hold: the events, as dicts."""
    col.probe.update(col.probe.config.replace(drop_mode=True))
    out = []
    while True:
        b = col.next_batch(50, flush=True)
        if not len(b):
            return out
        out += [b[i] for i in range(len(b))]


def test_filter_pushed_down_and_applied():
    require_bpf()
    from lbd.collector import Collector

    n = 7
    expr = f"syscall = newfstatat and arg.filename = {MISSING}"
    with Collector(filter=expr) as col:
        # the kernel part: only newfstatat is captured for output
        assert list(col.probe.config.open.syscalls) == ["newfstatat"]
        assert col.probe.config.open.filter == expr
        pid = os.fork()
        if pid == 0:
            try:
                for _ in range(n):
                    _stat(MISSING)
                for other in ("/", "/etc/hostname", MISSING + "-not", "/lbd-api-other-missing"):
                    _stat(other)
                os.stat("/tmp")
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        got = []
        for b in (col.next_batch(50),):
            got += [b[i] for i in range(len(b))]
        got += _drain(col)
    assert len(got) == n, [(e["syscall"], e["args"], e["pid"]) for e in got]
    assert all(e["syscall"] == "newfstatat" and e["args"]["filename"] == MISSING and e["pid"] == pid
               and e["res"] == -2 for e in got)


def test_duration_ends_the_iteration():
    require_bpf()
    from lbd.collector import Collector

    t0 = time.monotonic()
    batches = 0
    with Collector({"syscalls": ["getppid"]}, duration=0.3) as col:
        for _ in col:
            batches += 1
    assert time.monotonic() - t0 >= 0.3 and batches >= 1 and col.probe is None


def test_max_events_exactly():
    require_bpf()
    from lbd.collector import Collector

    from lbd import syscalls

    nr = syscalls.lookup("getppid").nr
    child = os.fork()
    if child == 0:                          # getppid flat out until killed
        try:
            while True:
                os.getppid()
        finally:
            os._exit(0)
    try:
        for n in (1, 1000, 5000):
            got = 0
            with Collector({"syscalls": ["getppid"], "only_pids": [child]}, max_events=n) as col:
                for b in col:
                    got += len(b)
                    assert (b.events["pid"] == child).all() and (b.events["nr"] == nr).all()
            assert got == n == col.events
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def test_nothing_of_other_processes_before_the_settings_are_written():
    """bcc attaches the programs as it loads them, before lbd writes the probe's settings: the
    process-tree programs (which no syscall descriptor gates) then ran on all-zero settings and
    wrote exec and exit records of any process, unflagged, past only_pids (CI saw an exec record
    of another process in a max_events=1 capture).  Processes exec in a loop while captures of one
    other process open: every event handed out is that process's."""
    require_bpf()
    from lbd import record
    from lbd.collector import Collector

    churn = subprocess.Popen(["sh", "-c", "while :; do /bin/true; done"])
    child = subprocess.Popen(["sleep", "60"])
    try:
        for _ in range(4):
            with Collector({"only_pids": [child.pid]}) as col:
                for _ in range(3):
                    b = col.next_batch(50)
                    ev = b.events
                    out = (ev["flags"] & record.F_STATE) == 0
                    stray = out & (ev["pid"] != child.pid)
                    assert not stray.any(), [(b.name(int(i)), int(ev["pid"][i]), bytes(ev["comm"][i]))
                                             for i in np.flatnonzero(stray)]
    finally:
        for p in (churn, child):
            p.kill()
            p.wait()


CHILD = r"""
import json, sys, threading
from lbd.collector import Collector
from tests.kernel.test_detach import wait_gone
col = None
try:
    with Collector({"open_params": {"ring_size": 65536}}, consumers=int(sys.argv[1])) as col:
        progs = set(col.probe.program_ids())
        maps = set(col.probe.map_ids().values())
        print(json.dumps({"ready": True, "progs": len(progs), "threads": threading.active_count()}), flush=True)
        for batch in col:
            pass
except KeyboardInterrupt:
    print(json.dumps({"interrupted": True, "probe": col.probe is None, "ring": col.ring is None,
                      "progs_left": sorted(wait_gone("prog", progs)), "maps_left": sorted(wait_gone("map", maps)),
                      "threads": [t.name for t in threading.enumerate()]}), flush=True)
    sys.exit(3)
print(json.dumps({"interrupted": False}), flush=True)
"""


@pytest.mark.parametrize("consumers", [1, 2])
def test_ctrl_c_leaves_cleanly(consumers):
    require_bpf()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(consumers)], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = json.loads(p.stdout.readline() or "{}")
        assert ready.get("ready"), p.stderr.read()
        assert ready["progs"] > 0
        time.sleep(0.2)                     # inside the loop, waiting for or reading batches
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 3, err
    done = json.loads(out.strip().splitlines()[-1])
    assert done == {"interrupted": True, "probe": True, "ring": True, "progs_left": [], "maps_left": [],
                    "threads": ["MainThread"]}, err
