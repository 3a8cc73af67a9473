"""lbd._decode.Rings: several ring images merged by emit time (ets), without a kernel.

The guarantee under test: a fill releases records in ets order; a record waits in its ring while
another ring may still write an older one (an empty ring bounds the others by the horizon, a busy
one by its last released ets); a record older than one already released is released at once and
counted as late; each ring's consumer position moves only past what was copied.
"""
from __future__ import annotations

import random

import pytest

from lbd import _decode, record, syscalls
from lbd.batch import Batch
from lbd.ringimage import RingImage, make_record

NR = syscalls.BY_NAME["getpgid"].nr


def rec(n: int, ets: int, pid: int = 100) -> bytes:
    """A getpgid record numbered n (its argument) written at ets."""
    return make_record(NR, [n], pid=pid, ts=ets - 10, latency=10, ets=ets)


def numbers(b: Batch) -> list[int]:
    return [int(x) for x in b.events["args"][:, 0]]


def rings_of(*images: RingImage, window_ns: int = 0) -> _decode.Rings:
    return _decode.Rings([img.ring(index=i) for i, img in enumerate(images)], window_ns=window_ns)


def images(k: int) -> list[RingImage]:
    return [RingImage(1 << 16) for _ in range(k)]


def test_interleaved_rings_merge_in_ets_order():
    a, b = images(2)
    for n in range(0, 20, 2):
        a.write(rec(n, 1000 + n))
    for n in range(1, 20, 2):
        b.write(rec(n, 1000 + n))
    rs = rings_of(a, b)
    batch = Batch(64)
    # both rings have records: everything up to the last head of the other ring goes at once
    assert rs.fill(batch, horizon_ns=10**18) == 20
    assert numbers(batch) == list(range(20))
    assert [int(r) for r in batch.events["cpu_ring"]] == [n % 2 for n in range(20)]
    assert a.cons == a.prod and b.cons == b.prod


def test_an_empty_ring_holds_newer_records_until_the_horizon_passes():
    a, b = images(2)
    for n in range(5):
        a.write(rec(n, 1000 + 10 * n))
    rs = rings_of(a, b)
    batch = Batch(64)
    # ring b is empty: it may still write anything newer than the horizon
    assert rs.fill(batch, horizon_ns=1025) == 3            # ets 1000, 1010, 1020
    assert numbers(batch) == [0, 1, 2] and rs.last_stop == _decode.STOP_HELD
    b.write(rec(99, 1015))                                   # too late: older than one released
    b.write(rec(100, 1035))
    # 99 at once (late: older than 2, released before), then 3 and 100 (bounded by each other's
    # heads); 4 (1040) waits again: b is empty and 1040 is past the horizon
    assert rs.fill(batch, horizon_ns=1025) == 3
    assert numbers(batch) == [99, 3, 100] and rs.late == 1 and rs.last_stop == _decode.STOP_HELD
    rs.fill(batch, append=True, horizon_ns=10**18)
    assert numbers(batch) == [99, 3, 100, 4]


def test_a_busy_ring_bounds_the_others_by_its_last_released_record():
    a, b = images(2)
    a.write(rec(0, 1000))
    b.write(rec(1, 1005))
    a.write(rec(2, 1010))
    pos = b.write_busy(rec(3, 1012))                       # reserved, not committed
    a.write(rec(4, 1020))
    rs = rings_of(a, b)
    batch = Batch(64)
    assert rs.fill(batch, horizon_ns=10**18) == 2             # 0, 1: then b is busy after 1005
    assert numbers(batch) == [0, 1] and rs.last_stop == _decode.STOP_HELD
    b.commit(pos)
    assert rs.fill(batch, horizon_ns=10**18) == 3
    assert numbers(batch) == [2, 3, 4]


def test_a_full_batch_stops_and_the_rest_follows():
    a, b = images(2)
    for n in range(0, 40, 2):
        a.write(rec(n, 1000 + n))
        b.write(rec(n + 1, 1001 + n))
    rs = rings_of(a, b)
    batch = Batch(16)
    out = []
    while True:
        k = rs.fill(batch, horizon_ns=10**18)
        out += numbers(batch)
        if rs.last_stop != _decode.STOP_FULL:
            break
        assert k == 16
    assert out == list(range(40))


@pytest.mark.parametrize("k", [1, 2, 3, 8])
def test_random_streams_merge_like_a_sort(k):
    """k rings, each with increasing ets drawn at random: one merged drain is the sort of all."""
    rnd = random.Random(k)
    imgs = images(k)
    allrecs = []
    for i, img in enumerate(imgs):
        t = rnd.randrange(1000)
        for j in range(rnd.randrange(10, 60)):
            t += rnd.randrange(1, 50)
            n = len(allrecs)
            allrecs.append((t, i, n))
            img.write(rec(n, t, pid=100 + i))
    rs = rings_of(*imgs)
    batch = Batch(4096)
    rs.fill(batch, horizon_ns=10**18)
    got = list(zip([int(x) for x in batch.events["ets"]], numbers(batch)))
    assert [e for e, _ in got] == sorted(e for e, _, _ in allrecs)
    assert sorted(n for _, n in got) == list(range(len(allrecs)))
    assert rs.late == 0
    assert rs.stats()["records"] == len(allrecs)


def test_malformed_and_discarded_records_are_skipped_per_ring():
    a, b = images(2)
    a.write(rec(0, 1000))
    a.write(rec(1, 1001), discard=True)                                     # discarded by the producer
    b.write(b"\xff" * len(rec(2, 1002)))                                     # not a record
    b.write(rec(3, 1003))
    rs = rings_of(a, b)
    batch = Batch(64)
    assert rs.fill(batch, horizon_ns=10**18) == 2
    assert numbers(batch) == [0, 3]
    st = rs.stats()
    assert st["discarded"] == 1 and st["malformed"] == 1
    assert [r["malformed"] for r in st["rings"]] == [0, 1]


def test_wait_pending_compares_the_pending_bytes_with_wait_at():
    a, b = images(2)
    a.write(rec(1, 1000))
    b.write(rec(2, 1001))
    b.write(rec(3, 1002))
    rs = rings_of(a, b)
    pending = (a.prod - a.cons) + (b.prod - b.cons)
    rs.wait_at = pending
    assert rs.wait_pending(0) is True
    rs.wait_at = pending + 1
    assert rs.wait_pending(0) is False
    assert rs.fill(Batch(8), horizon_ns=10**18) == 3
    rs.wait_at = 1
    assert rs.wait_pending(0) is False
