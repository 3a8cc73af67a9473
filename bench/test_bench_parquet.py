"""Parquet output against JSON Lines, in the same run: events/s on one core (CPU time, the
conversion and the zstd row groups included, written to a file) and bytes per event of each.

Self-contained: a host-like synthetic capture (tests/data/synth.py host_like_batches: a dozen
processes, opens/closes/reads/stats over a few hundred paths, connects to a few peers, execs and
process-tree records), enriched from a fake /proc tree, in batches of LBD_BENCH_PARQUET_BATCH
events (16,384: what `lbd run --format parquet` asks the collector for).  Target: >= 1,000,000
events/s per core.  The summary prints events/s and bytes/event of both formats.
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

from benchlib import env_int  # noqa: E402

N_EVENTS = env_int("LBD_BENCH_PARQUET_EVENTS", 262_144)
BATCH = env_int("LBD_BENCH_PARQUET_BATCH", 16_384)
TARGET = 1_000_000
RESULTS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    from tests.data import synth

    return synth.host_like_batches(N_EVENTS, seed=1, batch_size=BATCH, root=tmp_path_factory.mktemp("host"))


def _record(benchmark, name: str, path: Path) -> None:
    s = benchmark.stats.stats
    size = path.stat().st_size
    RESULTS[name] = {"events_per_s": N_EVENTS / s.median, "best": N_EVENTS / s.min, "bytes_per_event": size / N_EVENTS}
    benchmark.extra_info.update({k: round(v, 2) for k, v in RESULTS[name].items()})
    benchmark.extra_info["batch"] = BATCH


def test_bench_parquet(benchmark, batches, tmp_path):
    from lbd.output.parquet import ParquetWriter

    path = tmp_path / "events.parquet"

    def setup():
        if path.exists():
            path.unlink()

    def run():
        with ParquetWriter(str(path)) as w:
            for b in batches:
                w.write_batch(b)

    benchmark._timer = time.process_time              # CPU time of the process (all its threads)
    benchmark.group = "output"
    benchmark.pedantic(run, setup=setup, rounds=5, warmup_rounds=1)
    _record(benchmark, "parquet", path)
    import pyarrow.parquet as pq

    assert pq.read_metadata(path).num_rows == N_EVENTS


def test_bench_json(benchmark, batches, tmp_path):
    from lbd._format import Formatter

    path = tmp_path / "events.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)

    def run():
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        f = Formatter("json", 1024)
        for b in batches:
            f.format(b)
            f.write_to(fd)

    try:
        benchmark._timer = time.process_time
        benchmark.group = "output"
        benchmark.pedantic(run, rounds=5, warmup_rounds=1)
        _record(benchmark, "json", path)
    finally:
        os.close(fd)


class _Summary:
    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter):
        if not RESULTS:
            return
        tr = terminalreporter
        tr.section(f"lbd data output ({N_EVENTS:,} host-like events in batches of {BATCH:,}; one core, CPU time)")
        for name, r in RESULTS.items():
            mark = ("meets" if r["events_per_s"] >= TARGET else "BELOW") + f" the {TARGET:,}/s target"
            tr.write_line(f"{name:8s} {r['events_per_s']:12,.0f} events/s (best {r['best']:,.0f}; {mark}), "
                          f"{r['bytes_per_event']:7.1f} bytes/event")
        if "parquet" in RESULTS and "json" in RESULTS:
            p, j = RESULTS["parquet"], RESULTS["json"]
            tr.write_line(f"parquet/json: {p['events_per_s'] / j['events_per_s']:.2f}x the rate, "
                          f"{j['bytes_per_event'] / p['bytes_per_event']:.0f}x smaller")


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    pm = request.config.pluginmanager
    if not pm.has_plugin("lbd-parquet-summary"):
        pm.register(_Summary(), "lbd-parquet-summary")
    yield
