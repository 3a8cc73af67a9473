"""A full ring: with no consumer, records that do not fit are counted (drop_ringfull), the probe
keeps running, every record that was written is still readable, and after draining events flow
again.  Needs its own probe with a small ring (the session probe's ring size is fixed at load)."""
from __future__ import annotations

import os

import pytest

from tests.conftest import require_bpf
from tests.kernel.conftest import Capture, by_name, delta

RING = 64 * 1024
CALLS = 5000            # getppid records of 184 ring bytes each: about 14 rings' worth


@pytest.fixture
def small(collector):   # after the session probe, so both are loaded together
    require_bpf()
    from lbd import syscalls
    from lbd.collector import Collector
    from lbd.config import Config

    every = [sc.name for sc in syscalls.TABLE if sc.implemented]
    # no state records: only the child's own syscalls reach the rings
    cfg = Config.default().replace(syscalls=every, drop_mode=True, ring_size=RING, track_state=False)
    with Collector(cfg, batch_size=4096) as col:
        yield Capture(col, cfg)


def flood():
    for _ in range(CALLS):
        os.getppid()


def test_ring_full_is_counted_and_recovers(small):
    cap = small
    assert cap.probe.ring_size == RING
    cap.quiesce()
    child = cap.spawn(flood)
    before = cap.stats()
    cap.configure(only_pids=[child[0]])
    cap.release([child])
    cap.reap([child])                      # nobody reads the rings meanwhile
    cap.probe.update(cap.probe.config.replace(drop_mode=True))
    d = delta(before, cap.stats())
    assert d["drop_ringfull"] > 0
    assert d["emitted"] < cap.probe.nrings * RING // 184      # what fitted (each CPU has its ring)
    assert d["emitted"] + d["drop_ringfull"] >= CALLS   # every getppid: written or counted lost

    # what was written is all there, in order, whole
    drained = cap.drained
    events = cap.drain()
    assert len(events) == cap.drained - drained == d["emitted"] + d["sched"]
    assert all(e.pid == child[0] for e in events), ([(e, e.comm, e.ppid, e.flags) for e in events if e.pid != child[0]][:5], os.getpid(), child[0])
    assert cap.col.stats()["malformed"] == 0

    # the probe kept running: the next child is captured completely, nothing lost
    before = cap.stats()
    ev = cap.run(lambda: [os.getppid() for _ in range(100)])
    d = delta(before, cap.stats())
    assert len(by_name(ev, "getppid")) == 100
    assert d["drop_ringfull"] == 0
