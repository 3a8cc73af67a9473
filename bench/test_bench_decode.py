"""Decode of a synthetic ring image (no kernel): lbd.ringimage.random_records(), built from the
syscall table (every argument kind, variable payloads, failed calls, sched records), written into
an lbd.ringimage.RingImage as the kernel lays records out, then drained.

  Ring.fill                the compiled decoder (lbd._decode): every record validated, copied into
                           the batch arena and its header into the numpy event table, batches of
                           512 (the Collector's default)
  Ring.fill + Batch.args   the same, then every event's arguments decoded to Python objects one
                           by one (the convenience API: what the reference does for every event)
  reference                lbd.reference.decode_image, the plain-Python decoder (struct + lbd.args:
                           one dict per event with its decoded arguments)

The image is rewound (consumer position back to the start) before each drain.
"""
from __future__ import annotations

import pytest

import benchlib as bl

N = bl.env_int("LBD_BENCH_DECODE_RECORDS", 20_000)
SEED = 7

DECODE = bl.group(
    "decode",
    f"Decode of a synthetic ring image ({N} random records from the syscall table, variable payloads)",
    [("records", "records", "d"), ("mean_record_bytes", "bytes/record", ".0f"),
     ("records_per_s", "records/s", "si"), ("ns_per_record", "ns/record", ".1f")],
    base="reference",
    ratios=[("records_per_s", "records/s")],
)


@pytest.fixture(scope="module")
def image():
    ringimage = pytest.importorskip("lbd.ringimage")
    records = ringimage.random_records(N, SEED)
    img = ringimage.image_of(records)
    img.mean_record_bytes = sum(map(len, records)) / len(records)
    return img


def _record(benchmark, name, img, n):
    mean = benchmark.stats.stats.min      # seconds per drain of the whole image, best round
    bl.record(benchmark, "decode", name, records=n, mean_record_bytes=img.mean_record_bytes,
              records_per_s=n / mean, ns_per_record=1e9 * mean / n)


def _drain(ring, batch, img, with_args=False):
    img.rewind()
    n = 0
    while True:
        k = ring.fill(batch)
        if not k:
            return n
        if with_args:
            for i in range(k):
                batch.args(i)
        n += k


def test_decode_cython(benchmark, image):
    from lbd.batch import Batch

    ring, batch = image.ring(), Batch(512)
    benchmark.group = "decode"
    n = benchmark(_drain, ring, batch, image)
    assert n == N and ring.stats()["malformed"] == 0
    _record(benchmark, "Ring.fill", image, n)


def test_decode_cython_args(benchmark, image):
    from lbd.batch import Batch

    ring, batch = image.ring(), Batch(512)
    benchmark.group = "decode"
    n = benchmark.pedantic(_drain, (ring, batch, image, True), rounds=3, iterations=1)
    assert n == N
    _record(benchmark, "Ring.fill + Batch.args", image, n)


def test_decode_reference(benchmark, image):
    reference = pytest.importorskip("lbd.reference")
    benchmark.group = "decode"

    def run():
        image.rewind()
        return reference.decode_image(*image.image())

    res = benchmark.pedantic(run, rounds=3, iterations=1)
    assert len(res.events) == N and res.stats["malformed"] == 0
    _record(benchmark, "reference", image, len(res.events))
