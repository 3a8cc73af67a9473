"""lbd stats' counting (lbd.stats): per syscall and per process, errors, total and p99 latency, against
a plain per-event count; the kernel counters' differences; the table's headers."""
from __future__ import annotations

import math
import random
from collections import defaultdict

import numpy as np
import pytest

from lbd import record, stats
from lbd.args import syscall_name
from tests.data.fakeproc import batch_of, rec

NAMES = ("openat", "read", "close", "newfstatat", "getppid")


def _plain_p99(lats: list[int]) -> int:
    """The oracle: the nearest-rank 99th percentile, then the upper edge of its log2 bucket."""
    lats = sorted(lats)
    v = lats[max(1, math.ceil(0.99 * len(lats))) - 1]
    b = min(max(v, 1).bit_length() - 1, record.LAT_BUCKETS - 1)
    return 1 << (b + 1)


def _random_batch(seed: int, n: int = 300):
    rnd = random.Random(seed)
    recs, plain = [], []
    for _ in range(n):
        name = rnd.choice(NAMES)
        pid = rnd.choice((10, 11, 12))
        comm = {10: "a", 11: "b", 12: "a"}[pid]
        res = rnd.choice((0, 3, -2, -13, -4096))           # -4096 is not an errno: not an error
        lat = rnd.choice((0, 1, 7, 900, 10_000, 3_000_000, 1 << 40))
        recs.append(rec(name, pid=pid, tid=pid, comm=comm, res=res, latency=lat))
        plain.append((name, pid, comm, res, lat))
    recs.append(rec("sched_process_exit", {"pid": 10, "group_dead": 1}, pid=10, comm="a"))   # not a syscall
    return batch_of(*recs), plain


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("per_process", [False, True])
def test_counts_match_a_plain_count(seed, per_process):
    b, plain = _random_batch(seed)
    keep = np.array([random.Random(seed + 100).random() < 0.7 for _ in range(len(b))])
    c = stats.Counts(per_process)
    c.add_batch(b, keep)
    c.add_batch(b, keep)                                   # sums over batches
    want: dict = defaultdict(list)
    for (name, pid, comm, res, lat), k in zip(plain, keep):
        if k:
            want[(pid, comm) if per_process else name].append((res, lat))
    got = {((r.pid, r.comm) if per_process else r.name): r for r in c.rows()}
    assert set(got) == set(want)
    for key, calls in want.items():
        r = got[key]
        assert r.count == 2 * len(calls)
        assert r.errors == 2 * sum(-4095 <= res < 0 for res, _ in calls)
        assert r.total_ns == 2 * sum(lat for _, lat in calls)
        assert r.p99_ns == _plain_p99([lat for _, lat in calls])
    counts = [r.count for r in c.rows()]
    assert counts == sorted(counts, reverse=True)
    assert c.total == 2 * int(keep[:-1].sum())


def test_enter_records_are_not_counted():
    b = batch_of(rec("read", dir=chr(record.DIR_ENTER)), rec("read", res=1, latency=5))
    c = stats.Counts()
    c.add_batch(b)
    assert [(r.name, r.count) for r in c.rows()] == [("read", 1)]


def test_p99_is_the_upper_edge_of_its_bucket():
    hist = [0] * record.LAT_BUCKETS
    assert stats.p99_ns(hist) == 0
    hist[3] = 99                     # 8..15 ns
    hist[20] = 1                     # ~1 ms: the 100th call, above the 99th percentile
    assert stats.p99_ns(hist) == 16
    hist[20] = 2
    assert stats.p99_ns(hist) == 1 << 21


def test_kernel_counts_of_an_interval_are_differences():
    h = lambda **b: [b.get(f"b{i}", 0) for i in range(record.LAT_BUCKETS)]  # noqa: E731
    before = {0: {"count": 5, "errors": 1, "lat_sum": 100, "hist": h(b3=5)}}
    now = {0: {"count": 8, "errors": 1, "lat_sum": 160, "hist": h(b3=7, b4=1)},
           39: {"count": 2, "errors": 0, "lat_sum": 10, "hist": h(b2=2)}}
    d = stats.kernel_counts(now, before)
    assert d[0] == {"count": 3, "errors": 0, "lat_sum": 60, "hist": h(b3=2, b4=1)}
    assert d[39] == now[39]
    assert stats.kernel_counts(now, now) == {}
    c = stats.Counts()
    c.add_kernel(d)
    rows = {r.name: r for r in c.rows()}
    assert rows[syscall_name(0)].count == 3 and rows[syscall_name(0)].p99_ns == 32
    assert [r.name for r in c.rows(only_nrs={39})] == [syscall_name(39)]


def test_table_has_headers_and_top_rows():
    rows = [stats.Row(count=10, errors=2, total_ns=3_500_000, p99_ns=16_384, name="openat", nr=257),
            stats.Row(count=4, errors=0, total_ns=1000, p99_ns=2048, name="read", nr=0)]
    text = stats.table(rows, False, 1).splitlines()
    assert text[0].split() == ["SYSCALL", "COUNT", "ERRORS", "TOTAL_MS", "P99_US"]
    assert text[1].split() == ["openat", "10", "2", "3.500", "16.4"] and len(text) == 2
    prow = [stats.Row(count=3, errors=1, total_ns=0, p99_ns=0, pid=42, comm="my prog")]
    ptext = stats.table(prow, True, 5).splitlines()
    assert ptext[0].split() == ["PID", "COMM", "COUNT", "ERRORS", "TOTAL_MS", "P99_US"]
    assert ptext[1].startswith("     42 my prog ")
    assert rows[0].to_json() == {"name": "openat", "nr": 257, "count": 10, "errors": 2, "total_ns": 3_500_000,
                                 "p99_ns": 16_384}
    assert prow[0].to_json()["pid"] == 42 and "name" not in prow[0].to_json()
