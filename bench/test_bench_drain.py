"""Drain capacity: how fast each consumer empties a ring that is already full of records.

Before each round nobody consumes while bench/loadgen makes LBD_BENCH_DRAIN getppid calls, so a
large ring (LBD_BENCH_DRAIN_RING, 256 MiB) holds that many records (checked: no drop_ringfull);
then the consumer drains it and the benchmark's time is that drain's CPU time (benchlib.cpu_timer).  Records per CPU second (the
consumer thread's CPU time, best round) is what a consumer can take at most, whatever the producer
does; records/s (wall, best round) is the same when nothing else wants the CPU.

  lbd               lbd.Collector.next_batch(0) in a loop, default batch (512): records copied into
                    the batch arena and their headers into the numpy event table (structured array)
  lbd, batch 8192   the same with bigger batches (fewer Python round trips)
  bcc callback      bcc's ring_buffer_consume with a Python callback that counts
  bcc ..., fields   the same, the callback reading the header fields through ctypes
  libbpf C          libbpf's ring_buffer__consume with a C callback reading the header
"""
from __future__ import annotations

import pytest

import benchlib as bl

DRAIN = bl.group(
    "drain",
    f"Drain capacity: a pre-filled ring of {bl.DRAIN_RECORDS} records, emptied by each consumer",
    [("records", "records", "d"), ("records_per_s", "records/s", "si"), ("records_per_cpu_s", "records/CPU s", "si"),
     ("cpu_ns_per_record", "CPU ns/record", ".1f")],
    base="bcc callback",
    ratios=[("records_per_cpu_s", "records/CPU s")],
)

KINDS = {
    "lbd": lambda p: bl.LbdConsumer(p),
    "lbd-8192": lambda p: bl.LbdConsumer(p, batch_size=8192),
    "bcc": lambda p: bl.BccConsumer(p),
    "bcc-fields": lambda p: bl.BccConsumer(p, parse=True),
    "libbpf": lambda p: bl.LibbpfConsumer(p),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_drain(benchmark, drain_probe, kind):
    consumer = KINDS[kind](drain_probe)
    benchmark.group = "drain"
    bl.time_by_cpu(benchmark)
    runs = []
    fills = []

    def setup():
        bl.drain_all(drain_probe)
        s0 = drain_probe.stats()
        bl.run_loadgen(bl.DRAIN_RECORDS)
        c = bl.Counters.between(s0, drain_probe.stats())
        fills.append(c)
        if c.dropped:
            pytest.fail(f"the ring overflowed while filling ({c.dropped} dropped): lower LBD_BENCH_DRAIN "
                        f"or raise LBD_BENCH_DRAIN_RING")
        return (), {}

    def target():
        runs.append(consumer.drain())

    try:
        with bl.pinned(bl.CONSUMER_CPU):
            benchmark.pedantic(target, setup=setup, rounds=bl.ROUNDS, iterations=1)
    finally:
        consumer.close()
    written = min(c.written for c in fills)
    assert min(r.delivered for r in runs) >= written, f"drained {[r.delivered for r in runs]} of {written} written"
    fastest = min(runs, key=lambda r: r.wall_s / r.delivered)
    cheapest = min(runs, key=lambda r: r.cpu_s / r.delivered)
    bl.record(benchmark, "drain", consumer.name, records=cheapest.delivered,
              records_per_s=fastest.delivered / fastest.wall_s,
              records_per_cpu_s=cheapest.delivered / cheapest.cpu_s,
              cpu_ns_per_record=1e9 * cheapest.cpu_s / cheapest.delivered, rounds=len(runs))
