"""Recording a capture (lbd record, lbd run --record, Collector(record=...)) against writing the
same bytes with plain file writes, in the same run: GB/s of raw records to a local file.

Issue 14 item 3: recording must keep up with live capture (raw copies only), target >= 1 GB/s to a
local file.  The data: host-like batches (tests/data/synth.py host_like_batches: enriched, the
records' real sizes) of LBD_BENCH_RECORD_BATCH events; each round writes every batch to a new
file (CaptureWriter.write_batch: the arena bytes and the cpu_ring column, as a chunk), closed at
the end, not fsync'd (the page cache, as a live recording writes).  Rows:

  plain write      os.write of each batch's arena bytes: the floor (base of the ratios)
  record, none     CaptureWriter(compress="none")
  record, zstd     CaptureWriter(compress="zstd"): the default (level 1, chunks compressed by a
                   pool of up to 4 threads)
  record, zstd, 1 thread   the same compressed on the calling thread alone

GB/s counts the raw record bytes (the arena) per second of wall time; "GB/CPU s" per second of
the process's CPU time (what one core does: zstd is the cost, the pool spreads it over the free
cores); the file's size per raw byte too.  The summary says whether the default meets the target
in wall time on this machine (on a busy machine with 2 CPUs it cannot: zstd level 1 does about
0.7 GB per CPU second here).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import benchlib  # noqa: E402
from benchlib import env_int  # noqa: E402

N_EVENTS = env_int("LBD_BENCH_RECORD_EVENTS", 262_144)
BATCH = env_int("LBD_BENCH_RECORD_BATCH", 4096)
TARGET_GBS = 1.0
GROUP = "record"


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    from tests.data import synth

    bs = synth.host_like_batches(N_EVENTS, seed=3, batch_size=BATCH, root=tmp_path_factory.mktemp("host"))
    return bs, sum(len(b.arena_bytes_used()) for b in bs)


def _group():
    g = benchlib.group(GROUP, f"recording {N_EVENTS:,} host-like events in batches of {BATCH:,} to a local file "
                       "(wall time; GB/s of raw records)",
                       [("gb_per_s", "GB/s", ".2f"), ("gb_per_cpu_s", "GB/CPU s", ".2f"), ("cpu_s", "CPU s", ".3f"),
                        ("file_ratio", "file/raw", ".3f")],
                       base="plain write", ratios=[("gb_per_s", "GB/s")])
    return g


def _run(benchmark, name: str, raw: int, fn, path: Path) -> None:
    cpu = []

    def setup():
        if path.exists():
            path.unlink()

    def timed():
        c0 = time.process_time()
        fn()
        cpu.append(time.process_time() - c0)

    benchmark.group = "record"
    benchmark.pedantic(timed, setup=setup, rounds=5, warmup_rounds=1)
    s = benchmark.stats.stats
    g = _group()
    cpu_s = sorted(cpu)[len(cpu) // 2]
    benchlib.record(benchmark, GROUP, name, gb_per_s=raw / s.median / 1e9, gb_per_cpu_s=raw / cpu_s / 1e9,
                    cpu_s=cpu_s, file_ratio=path.stat().st_size / raw)
    row = g.rows.get("record, zstd")
    if row is not None and not any(n.startswith("target") for n in g.notes):
        v = row.metrics["gb_per_s"]
        g.notes.append(f"target (issue 14): recording >= {TARGET_GBS:.0f} GB/s: "
                       f"{'met' if v >= TARGET_GBS else 'MISSED'} ({v:.2f} GB/s with the default zstd, "
                       f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} before the run)")


def test_bench_plain_write(benchmark, batches, tmp_path):
    bs, raw = batches
    path = tmp_path / "plain.bin"

    def run():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            for b in bs:
                view = memoryview(b.arena_bytes_used())
                while view:
                    view = view[os.write(fd, view):]
        finally:
            os.close(fd)

    _run(benchmark, "plain write", raw, run, path)
    assert path.stat().st_size == raw


@pytest.mark.parametrize("compress, workers", [("none", None), ("zstd", None), ("zstd", 1)])
def test_bench_record(benchmark, batches, tmp_path, compress, workers):
    from lbd.capture import CaptureReader, CaptureWriter

    bs, raw = batches
    path = tmp_path / f"rec-{compress}.lbdcap"
    kw = {} if workers is None else {"workers": workers}

    def run():
        w = CaptureWriter(path, {"wall_offset_ns": 0, "config": {}}, compress=compress, **kw)
        for b in bs:
            w.write_batch(b)
        w.close({})

    name = f"record, {compress}" + ("" if workers is None else f", {workers} thread")
    _run(benchmark, name, raw, run, path)
    r = CaptureReader(path)
    try:
        assert sum(d[0] for k, d in r.chunks() if k == "batch") == N_EVENTS
    finally:
        r.close()
