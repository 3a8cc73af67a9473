"""One ring per CPU: records of a thread that moves between CPUs come out in order, the counters of
each ring add up, a full ring drops on its own CPU only, and several consumers share the rings.

Needs at least two CPUs (the point is more than one ring); on a one-CPU host these tests fail
under LBD_REQUIRE_BPF=1 and skip otherwise, with the reason.
"""
from __future__ import annotations

import os
import time

import pytest

from lbd import record
from tests.conftest import REQUIRE_BPF, require_bpf
from tests.kernel.conftest import Capture, by_name, syscall

NR_GETPGID = 121
BASE = 3_000_000           # getpgid(BASE + i): no such pid (ESRCH); the argument numbers the call


def cpus() -> list[int]:
    c = sorted(os.sched_getaffinity(0))
    if len(c) < 2:
        reason = f"this host runs lbd on {len(c)} CPU: one ring, nothing to merge"
        if REQUIRE_BPF:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return c


def numbered(events) -> list[int]:
    return [e.args["pid"] - BASE for e in by_name(events, "getpgid") if e.args["pid"] >= BASE]


def test_a_thread_moving_between_cpus_stays_in_order(cap):
    """The thread pins itself to each CPU in turn (every few calls): its records land in every
    ring, and the merge by emit time gives them back in the order they were made."""
    cs = cpus()
    n = 600

    def work():
        for i in range(n):
            if i % 7 == 0:
                os.sched_setaffinity(0, {cs[(i // 7) % len(cs)]})
            syscall(NR_GETPGID, BASE + i)

    ev = cap.run(work, syscalls=["getpgid"])
    assert numbered(ev) == list(range(n))
    rings = {e.ring for e in by_name(ev, "getpgid")}
    assert len(rings) == min(len(cs), cap.probe.nrings), rings       # it really used several rings
    ts = [e.ts for e in by_name(ev, "getpgid")]
    assert ts == sorted(ts)


def test_counters_of_each_ring_add_up(cap):
    """After a run and a full drain: per ring (the CPUs that write to it), the records the probe
    wrote are the records delivered from that ring; in total too.  (The session probe's rings never
    filled: nothing dropped.)"""
    cs = cpus()

    def work():
        for i in range(200):
            if i % 50 == 0:
                os.sched_setaffinity(0, {cs[(i // 50) % len(cs)]})
            os.getppid()

    cap.run(work)
    st = cap.col.stats()
    assert st["dropped"] == 0 and st["malformed"] == 0
    for i, r in enumerate(st["rings"]):
        assert r["emitted"] == r["delivered"], (i, r)
        assert r["pending_bytes"] == 0
    assert sum(r["emitted"] for r in st["rings"]) == st["emitted"] + st["sched"] == st["delivered"]


@pytest.fixture
def small_rings(collector):
    require_bpf()
    from lbd import syscalls
    from lbd.collector import Collector
    from lbd.config import Config

    every = [sc.name for sc in syscalls.TABLE if sc.implemented]
    cfg = Config.default().replace(syscalls=every, drop_mode=True, ring_size=64 * 1024, track_state=False)
    with Collector(cfg, batch_size=4096) as col:
        yield Capture(col, cfg)


def test_a_full_ring_drops_on_its_own_cpu_only(small_rings):
    """Nobody reads while a flooder on one CPU fills that CPU's ring; a quiet process on another
    CPU loses nothing, and the drops are counted on the flooder's ring only."""
    cs = cpus()
    cap = small_rings
    flood_cpu, quiet_cpu = cs[-1], cs[0]

    def flood():
        os.sched_setaffinity(0, {flood_cpu})
        for i in range(5000):
            os.getppid()

    def quiet():
        os.sched_setaffinity(0, {quiet_cpu})
        time.sleep(0.05)                           # after the flood has filled its ring
        for i in range(50):
            syscall(NR_GETPGID, BASE + i)

    before = cap.col.stats()
    f_ev, q_ev = cap.run_many([flood, quiet])
    after = cap.col.stats()
    ring = cap.probe.ring_of_cpu
    dropped = [a["dropped"] - b["dropped"] for a, b in zip(after["rings"], before["rings"])]
    assert dropped[ring[flood_cpu]] > 0
    assert dropped[ring[quiet_cpu]] == 0
    assert numbered(q_ev) == list(range(50))
    # what the flooder's ring held was delivered whole, and what it lost was counted
    assert len(by_name(f_ev, "getppid")) + dropped[ring[flood_cpu]] >= 5000


def test_several_consumers_share_the_rings(collector):
    """consumers=2: each consumer thread drains its share of the rings; every record arrives once,
    and each consumer's records are in order among its rings."""
    require_bpf()
    cs = cpus()
    from lbd.collector import Collector
    from lbd.config import Config

    cfg = Config.default().replace(syscalls=["getpgid"], only_comms=["lbd-multi"], track_state=False,
                                   consumers=2)
    n = 2000
    with Collector(cfg) as col:
        assert len(col._threads) == 2
        pid = os.fork()
        if pid == 0:
            try:
                from tests.kernel.conftest import set_comm

                set_comm("lbd-multi")
                for i in range(n):
                    if i % 100 == 0:
                        os.sched_setaffinity(0, {cs[(i // 100) % len(cs)]})
                    syscall(NR_GETPGID, BASE + i)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        got: list[tuple[int, int, int]] = []            # (ring, number, ets)
        deadline = time.monotonic() + 10
        while len(got) < n and time.monotonic() < deadline:
            b = col.next_batch(50)
            ev = b.events
            for i in range(len(b)):
                if ev["nr"][i] == NR_GETPGID and ev["pid"][i] == pid:
                    got.append((int(ev["cpu_ring"][i]), int(ev["args"][i][0]) - BASE, int(ev["ets"][i])))
        st = col.stats()
    assert sorted(x[1] for x in got) == list(range(n))   # each once
    for c in range(2):
        mine = [x for x in got if x[0] % 2 == c]          # ring i belongs to consumer i % 2
        assert [x[2] for x in mine] == sorted(x[2] for x in mine)
    assert st["late"] == 0
