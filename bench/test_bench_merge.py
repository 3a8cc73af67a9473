"""The ordered merge and the drain into Batches, without a kernel (issue 10: the merge <= 5 ns per
event; one consumer >= 20 M events/s into Batches).

The same N getppid records (lbd.ringimage.make_record: a 176-byte header, no payload, as the probe
writes a captured getppid), emit times (`ets`) strictly increasing, are laid out in ring images
(lbd.ringimage.RingImage, the kernel's layout) in two ways:

  Ring              one image holding all of them, drained by a single lbd._decode.Ring (no merge)
  Rings of k        k images, each record in a ring chosen at random (each ring in ets order, as a
                    CPU's ring is: busy CPUs interleave record by record), drained by one
                    lbd._decode.Rings: the k-way merge by ets that lbd.Collector does over the
                    probe's rings (k = 1: the merge's fixed cost)
  ..., runs of 64   the records in runs of 64 per ring (bursts): the merge pays per change of ring

into a pool of 512-event Batches filled in turn, as lbd.Collector does.  Per event: ns, events/s,
and the merge's cost = Rings of k minus Ring.  Each round drains fresh Ring objects over rewound
images; the best round counts.
"""
from __future__ import annotations

import numpy as np
import pytest

import benchlib as bl

N = bl.env_int("LBD_BENCH_MERGE_RECORDS", 400_000)
KS = sorted(set(bl.env_ints("LBD_BENCH_MERGE_RINGS", (1, 2, 4, 16)) + [bl.NCPUS]))
RUN = 64          # test_merged_rings_in_runs: records per run
POOL = 6          # batches filled in turn (lbd.collector: about POOL_BYTES of them)
RB_HDR = 8        # the kernel's ring record header: u32 length, u32 page offset

MERGE = bl.group(
    "merge",
    f"Merge and drain into Batches of 512, no kernel: {N} getppid records (176 bytes) in ring images",
    [("rings", "rings", "d"), ("ns_per_event", "ns/event", ".2f"), ("events_per_s", "events/s", "si"),
     ("merge_ns_per_event", "merge ns/event", ".2f")],
    base="Ring",
    ratios=[("events_per_s", "events/s")],
)


def _images(k: int, seed: int = 11, run: int = 1):
    """k RingImages holding the N records between them (the ring of each record, or of each run of
    `run` consecutive records, at random)."""
    from lbd import record, syscalls
    from lbd.ringimage import RingImage, make_record

    tmpl = np.frombuffer(make_record(syscalls.lookup("getppid").nr, {}, pid=4242, comm="lbd-bench"),
                         dtype=record.HDR_DTYPE)
    hdrs = np.repeat(tmpl, N)
    ets = 1_000_000_000 + np.arange(N, dtype=np.uint64) * 50      # one every 50 ns, all in the past
    hdrs["ets"] = ets
    hdrs["ts"] = ets - 500
    hdrs["tid"] = 4242 + np.arange(N) % 64
    if k > 1:
        ring_of = np.random.default_rng(seed).integers(0, k, -(-N // run)).repeat(run)[:N]
    else:
        ring_of = np.zeros(N, dtype=np.int64)
    rec = record.HDR_SIZE
    step = RB_HDR + (rec + 7) // 8 * 8
    images = []
    for r in range(k):
        mine = hdrs[ring_of == r]
        m = len(mine)
        size = 1 << 16
        while size - 1 < m * step + 8:
            size *= 2
        img = RingImage(size)
        body = np.zeros((m, step), dtype=np.uint8)
        pos = np.arange(m, dtype=np.uint64) * step
        body[:, 0:4] = np.full(m, rec, dtype="<u4").view(np.uint8).reshape(m, 4)
        body[:, 4:8] = ((pos % size) // 4096).astype("<u4").view(np.uint8).reshape(m, 4)
        body[:, RB_HDR:RB_HDR + rec] = mine.view(np.uint8).reshape(m, rec)
        flat = body.reshape(-1)
        img.data[: flat.size] = flat
        img.data[size: size + flat.size] = flat
        img.prod = m * step
        images.append(img)
    return images


@pytest.fixture(scope="module")
def batches():
    from lbd.batch import Batch

    return [Batch(512) for _ in range(POOL)]


def _drain(reader, pool) -> int:
    n = 0
    turn = 0
    while True:
        b = pool[turn]
        turn = (turn + 1) % len(pool)
        k = reader.fill(b)
        if not k:
            return n
        n += k


def _bench(benchmark, name, images, pool, merged: bool):
    from lbd._decode import Rings

    readers = []

    def setup():
        for img in images:
            img.rewind()
        rings = [img.ring() for img in images]
        readers.append(Rings(rings) if merged else rings[0])
        return (readers[-1],), {}

    counts = []
    benchmark.group = "merge"
    benchmark.pedantic(lambda r: counts.append(_drain(r, pool)), setup=setup, rounds=max(3, bl.ROUNDS),
                       iterations=1)
    assert all(c == N for c in counts), f"drained {counts} of {N}"
    if merged:
        last = readers[-1]
        assert last.late == 0, f"{last.late} records out of order"
    ns = 1e9 * benchmark.stats.stats.min / N
    single = bl._metric("merge", "Ring", "ns_per_event")
    bl.record(benchmark, "merge", name, rings=len(images), ns_per_event=ns, events_per_s=1e9 / ns,
              merge_ns_per_event=(ns - single) if (merged and single is not None) else None, records=N)


def test_single_ring(benchmark, batches):
    _bench(benchmark, "Ring", _images(1), batches, merged=False)


@pytest.mark.parametrize("k", KS)
def test_merged_rings(benchmark, batches, k):
    _bench(benchmark, f"Rings of {k}", _images(k), batches, merged=True)


@pytest.mark.parametrize("k", [max(KS)])
def test_merged_rings_in_runs(benchmark, batches, k):
    """The same with the records in runs of RUN consecutive ones per ring (a CPU that writes a burst
    before another CPU's next record): the merge's cost is per change of ring."""
    _bench(benchmark, f"Rings of {k}, runs of {RUN}", _images(k, run=RUN), batches, merged=True)
