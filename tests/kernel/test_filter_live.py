"""lbd.filter on live captures: the compiled filter selects exactly what the per-event reference
selects on batches the probe wrote (enriched as lbd run enriches them), the plan keeps all of it,
and pushing the plan into the kernel's maps keeps every event the filter wants while the kernel
writes fewer records."""
from __future__ import annotations

import os
import random
import socket
import subprocess

import numpy as np

import lbd.filter as F
from lbd import record, syscalls
from lbd._testing import filter_reference as R
from tests.data.filterexprs import Pools, random_expression

OPENAT = syscalls.lookup("openat").nr
FIXED = [
    "syscall in (open, openat) and arg.filename startswith /etc/ and not comm in (sshd, login)",
    "errno = ENOENT", "failed and syscall = openat", "syscall = connect and sockaddr.port = 9",
    "sockaddr.ip = 127.0.0.0/8", "arg.flags contains O_CLOEXEC", "fd.name startswith /etc",
    "cmdline contains pytest or exe endswith python3", "user = root and not failed",
    "syscall glob 'sched_*' or comm = lbd-live", "arg.buf = lbd", "dir = <",
    "res > 0 and fd.name != /dev/null", "errno = ECONNREFUSED and sockaddr.family = AF_INET",
]


def workload():
    with open("/etc/hostname", "rb") as f:
        f.read()
    for path in ("/nonexistent/lbd-filter", "/etc/lbd-filter-missing"):
        try:
            open(path, "rb")
        except OSError:
            pass
    os.stat("/etc/passwd")
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", 9))          # discard port: refused
    except OSError:
        pass
    s.close()
    with open("/dev/null", "wb") as f:
        f.write(b"lbd")
    subprocess.run(["/bin/true"], check=True)


def capture(cap, fn, on_batch, **changes):
    """Run fn in a child under the probe (its tree only), stop capture, and call on_batch(batch)
    for every non-empty batch the rings held, enriched (the child's exit record among them)."""
    from lbd.enrich import Enricher

    en = Enricher(cap.col.config, selection=cap.probe.selection)
    cap.quiesce()
    child = cap.spawn(fn, comm="lbd-live")
    pid = child[0]
    cap.configure(only_pids=changes.pop("only_pids", [pid]), **changes)
    cap.release([child])
    cap.reap([child])
    cap.probe.update(cap.probe.config.replace(drop_mode=True))   # the child's records are all written
    seen_exit = False
    while True:
        b = cap.col.next_batch(50, flush=True)
        if not len(b):
            break
        en.enrich(b)
        on_batch(b)
        ev = b.events
        seen_exit |= bool(((ev["nr"] == record.NR_SCHED_EXIT) & (ev["pid"] == pid)).any())
    cap.quiesce()
    assert seen_exit, "the child's exit record never arrived"
    return pid


def test_live_differential(cap):
    rng = random.Random(1)
    checked = {"batches": 0, "expressions": 0, "selected": 0}

    def on_batch(b):
        events = R.events_of(b)
        pools = Pools.of(b)
        exprs = FIXED + [random_expression(pools, rng) for _ in range(60)]
        for expr in exprs:
            try:
                f = F.compile(expr)
            except F.FilterError:
                continue
            got = f(b)
            want = np.array(R.evaluate(expr, b, events), dtype=bool)
            assert (got == want).all(), f"{expr!r}: events {np.flatnonzero(got != want)[:10].tolist()} differ"
            assert not (want & ~np.array(R.plan_keeps(f.plan, b))).any(), f"{expr!r}: {f.plan} drops kept events"
            checked["expressions"] += 1
            checked["selected"] += int(want.sum())
        checked["batches"] += 1

    capture(cap, workload, on_batch)
    assert checked["batches"] >= 1 and checked["expressions"] >= 60 and checked["selected"] > 0, checked


def _signature(b, mask) -> list[tuple]:
    """The selected events for output: not the state records (LBD_F_STATE), which the probe also
    writes for every other process on the host (outside only_pids) and which lbd never outputs."""
    out = []
    keep = b.output_mask()
    if keep is not None:
        mask = mask & keep
    for i in np.flatnonzero(mask):
        a = b.args(int(i))
        out.append((b.name(int(i)), a.get("filename"), int(b.events["res"][i])))
    return out


def test_push_down_keeps_what_the_filter_keeps(cap):
    """The same workload twice: capturing everything of the child, then with the plan's
    open_params in the kernel.  The filter selects the same events both times, and the kernel wrote
    fewer records the second time."""
    expr = "syscall in (openat, connect) and (arg.filename startswith /etc/ or failed) and not comm = sshd"
    f = F.compile(expr)
    pushed = f.plan.open_params()
    assert pushed == {"syscalls": ["connect", "openat"], "filter_comms": ["sshd"]}
    runs = []
    for changes in ({}, pushed):
        got = {"sel": [], "records": 0}

        def on_batch(b, got=got):
            ev = b.events           # the records written for output (state records: the whole host's)
            got["records"] += int(((ev["nr"] < record.NR_SCHED_FORK) & (ev["flags"] & record.F_STATE == 0)).sum())
            got["sel"] += _signature(b, f(b))

        capture(cap, workload, on_batch, **changes)
        runs.append(got)
    full, narrow = runs
    assert sorted(full["sel"]) == sorted(narrow["sel"])
    assert any(n == "openat" and p == "/etc/hostname" and r >= 0 for n, p, r in full["sel"]), full["sel"]
    assert any(n == "connect" and r < 0 for n, p, r in full["sel"]), full["sel"]
    assert narrow["records"] < full["records"]


def test_path_prefixes_in_the_kernel(cap):
    """A path prefix pushed into the kernel: the filter selects the same events as without it, the
    opens outside the prefix are not written for output (a successful one still reaches the tables
    as a state record; a failed one not at all), and the probe counts them (f_path)."""
    expr = "syscall = openat and arg.filename startswith /etc/"
    f = F.compile(expr)
    pushed = f.plan.open_params()
    assert pushed == {"syscalls": ["openat"], "path_prefixes": ["openat:filename:/etc/"]}
    runs = []
    for changes in ({"syscalls": ["openat"]}, pushed):
        got = {"sel": [], "out": [], "state": []}

        def on_batch(b, got=got):
            ev = b.events
            for i in np.flatnonzero(ev["nr"] == OPENAT):
                row = (b.args(int(i)).get("filename"), int(ev["res"][i]), int(ev["pid"][i]))
                got["state" if ev["flags"][i] & record.F_STATE else "out"].append(row)
            got["sel"] += _signature(b, f(b))

        before = cap.probe.stats()["f_path"]
        pid = capture(cap, workload, on_batch, **changes)
        got["f_path"] = cap.probe.stats()["f_path"] - before
        got["pid"] = pid
        runs.append(got)
    full, narrow = runs
    assert sorted(full["sel"]) == sorted(narrow["sel"])
    assert ("openat", "/etc/hostname", 3) in [(n, p, min(r, 3)) for n, p, r in narrow["sel"]], narrow["sel"]
    mine = [(p, r) for p, r, pid in narrow["out"] if pid == narrow["pid"]]
    assert mine and all(p.startswith("/etc/") for p, _ in mine), mine
    assert any(p == "/nonexistent/lbd-filter" for p, _, pid in full["out"] if pid == full["pid"])
    state = [(p, r) for p, r, pid in narrow["state"] if pid == narrow["pid"]]
    assert any(p == "/dev/null" and r >= 0 for p, r in state), state           # the fd table needs it
    assert not any(p == "/nonexistent/lbd-filter" for p, _ in state + mine)     # a failure changes none
    assert narrow["f_path"] >= 2 and full["f_path"] == 0, (full["f_path"], narrow["f_path"])
