"""Enrichment rates: the compiled state engine (lbd._enrich through lbd.enrich.Enricher) against
the per-event Python oracle (lbd/_testing/state_reference.py) in the same run, per event mix.

Self-contained (no kernel, no root): synthetic streams from tests/data/enrichmix.py on its fake
/proc tree, cut into batches of LBD_BENCH_ENRICH_BATCH events (512, `lbd run`'s default):

  openclose  every event changes an fd table (openat, close, socket + connect, dup*, fcntl,
             pipe2, accept4, socketpair, close_range)
  forkexec   a shell forking children that exec, open, read, write and exit (a third of the
             events are fork / clone / exec / exit)
  readwrite  mostly read / write / send / recv / futex / epoll, one event in ten an fd change
  format     the format benchmark's mix (bench/test_bench_format.py: openat, close, connect,
             execve, unlinkat, sendto over eight processes)

Each round enriches the whole stream (LBD_BENCH_ENRICH_EVENTS events, 8192) with an Enricher
that has seen it once already (the setup, not timed: the procfs scan, the tables filled), so the
timed work is the steady state of a running capture: per batch one call, no Python per event.
Targets: >= 5,000,000 events/s on the open/close mix on one core, >= 1,000,000 on every mix
(compiled).  The summary prints events/s of both and their ratio.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

import benchlib

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.data.enrichmix import MIXES, mix_batches, mix_host  # noqa: E402
from tests.data.fakeproc import batch_of  # noqa: E402

N_EVENTS = benchlib.env_int("LBD_BENCH_ENRICH_EVENTS", 8192)
BATCH = benchlib.env_int("LBD_BENCH_ENRICH_BATCH", 512)
ALL_MIXES = (*MIXES, "format")
ROUNDS = {"compiled": 40, "oracle": 4}

benchlib.group(
    "enrich",
    f"enrichment, events/s on one core (batches of {BATCH}; reference: the oracle, lbd/_testing)",
    [("compiled_eps", "compiled", "si"), ("reference_eps", "reference", "si"), ("speedup", "speedup", ".1f"),
     ("compiled_ns", "ns/event", ".0f"), ("reference_ns", "ref ns/event", ".0f")],
)


def _batches(mix: str) -> list:
    if mix == "format":
        from test_bench_format import _records

        recs = _records(N_EVENTS)
        return [batch_of(*recs[i: i + BATCH], capacity=BATCH) for i in range(0, len(recs), BATCH)]
    return mix_batches(mix, N_EVENTS, BATCH)


def _host(mix: str, root: Path):
    if mix == "format":
        from test_bench_format import _host as format_host

        return format_host(root)
    return mix_host(root)


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    """mix -> (fake host, batches): built once (records are slow to make in Python)."""
    return {mix: (_host(mix, tmp_path_factory.mktemp(mix)), _batches(mix)) for mix in ALL_MIXES}


def _record(benchmark, mix: str, engine: str, events: int) -> None:
    s = benchmark.stats.stats
    key = "compiled" if engine == "compiled" else "reference"
    metrics = {f"{key}_eps": events / s.min, f"{key}_ns": s.min * 1e9 / events,
               f"{key}_eps_median": events / s.median}
    row = benchlib.RESULTS["enrich"].rows.setdefault(mix, benchlib.Row(mix))
    row.metrics.update(metrics)
    c, r = row.metrics.get("compiled_eps"), row.metrics.get("reference_eps")
    if c and r:
        row.metrics["speedup"] = c / r
    for k, v in metrics.items():
        benchmark.extra_info[k] = round(v, 3)
    benchmark.extra_info["events"] = events
    benchmark.extra_info["batch"] = BATCH


@pytest.mark.parametrize("engine", ["compiled", "oracle"])
@pytest.mark.parametrize("mix", ALL_MIXES)
def test_bench_enrich(benchmark, streams, mix, engine):
    host, batches = streams[mix]
    events = sum(len(b) for b in batches)

    def setup():
        en = host.enricher() if engine == "compiled" else host.reference()
        for b in batches:              # first sight: procfs, the tables filled
            en.enrich(b)
        return (en,), {}

    def run(en):
        for b in batches:
            en.enrich(b)

    benchmark.group = f"enrich {mix}"
    benchmark.pedantic(run, setup=setup, rounds=ROUNDS[engine], warmup_rounds=0)
    _record(benchmark, mix, engine, events)


def test_bench_engines_agree(streams):
    """The two sides of the comparison give every event the same context (not a benchmark: a guard)."""
    from lbd.enrich import event_info

    for mix, (host, batches) in streams.items():
        ref, en = host.reference(), host.enricher()
        for b in batches[:4]:
            ref.enrich(b)
            want = [event_info(b, i) for i in range(len(b))]
            en.enrich(b)
            assert [event_info(b, i) for i in range(len(b))] == want, mix
