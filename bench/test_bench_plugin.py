"""The Falco plugin's hot paths, through the Falco-style host (build/plugin_host, run by `make plugin`).

Live: bench/loadgen makes getppid flat out on one CPU while the host, on the other, loops
next_batch on liblbd.so (capturing only the load generator) and, as Falco's filterchecks do,
calls extract_fields once per field for each event.  Side by side in one run:

  plugin + 5 fields    next_batch (fill, enrich) + 5 extract_fields calls per event
  plugin, no fields    next_batch alone: what Falco pays when no rule looks at the event
  Collector (Python)   lbd.Collector.next_batch() in a Python loop, no enrichment (bench/benchlib)

Reported: delivered events (and their share of the calls made), events/s through the consumer
(events / time inside next_batch calls that returned events + extraction), the host's CPU ns per
event, and ns per extracted field.

Kernel-free: `plugin_host extract --bench` on synthetic records (every argument kind) measures the
extraction alone: ns per field with the record in cache, for the fields a rule output uses.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

import benchlib as bl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.plugin_host.host import ensure_built, extract  # noqa: E402

# five extractions per event, as a rule output might ask: one form each
FIELDS5 = ("linux.syscall", "linux.pid.num", "linux.comm", "linux.user[value]", "linux.args")
PLUGIN = bl.group(
    "plugin",
    "Falco plugin, live (loadgen on one CPU, the consumer on the other; events/s: delivered events per "
    "CPU second of the consumer, i.e. through next_batch (+ extraction); delivered %: of the calls made)",
    [("delivered_pct", "delivered %", ".3f"), ("events", "events", "d"), ("events_per_s", "events/s", "si"),
     ("cpu_ns_per_event", "CPU ns/event", ".1f"), ("ns_per_field", "ns/field", ".1f")],
    base="plugin, no fields",
    ratios=[("events_per_s", "events/s"), ("cpu_ns_per_event", "CPU/event")],
)
EXTRACT = bl.group(
    "plugin-extract",
    "Falco plugin, extract_fields alone (synthetic records, one call per field, record in cache)",
    [("ns_per_field", "ns/field", ".1f"), ("fields", "fields/event", "d")],
)


def _run_plugin(fields: tuple) -> dict:
    """One round: host open, loadgen for bl.CALLS calls, drain, host stop.  Its figures."""
    lines, lg = bl.plugin_host_round({"syscalls": ["getppid"]}, fields, bl.CALLS)
    summary = next(d["summary"] for d in lines if "summary" in d)
    busy = summary["busy_next_batch_seconds"] + summary["extract_seconds"]
    ev = summary["events"]
    return {
        "events": ev,
        "delivered_pct": 100.0 * ev / lg.calls if lg.calls else 0.0,
        "events_per_s": ev / summary["cpu_seconds"] if summary["cpu_seconds"] else 0.0,
        "busy_events_per_s": ev / busy if busy else 0.0,
        "cpu_ns_per_event": 1e9 * summary["cpu_seconds"] / ev if ev else 0.0,   # the capture loop's CPU
        "ns_per_field": 1e9 * summary["extract_seconds"] / summary["extracted"] if summary["extracted"] else 0.0,
        "extract_errors": summary["extract_errors"],
        "requests": summary["requests_per_event"],
        "layout_errors": summary["layout_errors"],
    }


@pytest.mark.parametrize("fields", [FIELDS5, ()], ids=["plugin + 5 fields", "plugin, no fields"])
def test_plugin_live(benchmark, fields):
    bl.require_kernel()
    ensure_built()
    name = "plugin + 5 fields" if fields else "plugin, no fields"
    benchmark.group = "plugin live"
    runs = []
    benchmark.pedantic(lambda: runs.append(_run_plugin(fields)), rounds=bl.ROUNDS, iterations=1)
    assert all(r["extract_errors"] == 0 and r["layout_errors"] == 0 for r in runs), runs
    assert all(r["requests"] == len(fields) for r in runs), runs
    best = max(runs, key=lambda r: r["events_per_s"])
    bl.record(benchmark, "plugin", name, events=best["events"], delivered_pct=best["delivered_pct"],
              events_per_s=best["events_per_s"], busy_events_per_s=best["busy_events_per_s"],
              cpu_ns_per_event=min(r["cpu_ns_per_event"] for r in runs),
              ns_per_field=min(r["ns_per_field"] for r in runs) if fields else 0.0,
              fields=len(fields), calls=bl.CALLS, rounds=len(runs))


@pytest.mark.parametrize("enrich", [True, False], ids=["Collector + Enricher (Python)", "Collector (Python)"])
def test_collector_reference(benchmark, live_probe, enrich):
    """The same load read in Python by lbd.Collector.next_batch(), with and without lbd.enrich's
    Enricher: what the plugin's one Python call per batch does, minus the hand-over to C."""
    from lbd.enrich import Enricher

    consumer = bl.CONSUMERS["lbd"](live_probe)
    enricher = Enricher.from_config(live_probe.config, selection=live_probe.selection).enrich if enrich else None
    name = "Collector + Enricher (Python)" if enrich else "Collector (Python)"
    benchmark.group = "plugin live"
    runs = []

    def consume(stop):
        c = consumer.collector
        n = 0
        c0 = time.thread_time()
        while True:
            b = c.next_batch() if not stop.flag else c.next_batch(0)
            k = len(b)
            if k and enricher is not None:
                enricher(b)
            n += k
            if stop.flag and not k:
                break
        return n, time.thread_time() - c0

    def target():
        bl.drain_all(live_probe)
        s0 = live_probe.stats()
        proc = bl.start_loadgen(bl.CALLS)
        n, cpu = consume(bl._Stop(proc))
        bl.finish_loadgen(proc)
        runs.append((n, cpu, bl.Counters.between(s0, live_probe.stats())))

    try:
        with bl.pinned(bl.CONSUMER_CPU):
            benchmark.pedantic(target, rounds=bl.ROUNDS, iterations=1)
    finally:
        consumer.close()
    n, cpu, c = max(runs, key=lambda r: r[0] / r[1] if r[1] else 0)
    bl.record(benchmark, "plugin", name, events=n, delivered_pct=100.0 * n / c.offered if c.offered else 0.0,
              events_per_s=n / cpu if cpu else 0.0, cpu_ns_per_event=1e9 * cpu / n if n else 0.0, ns_per_field=0.0)


def test_extract_fields_alone(benchmark):
    """ns per extracted field on 2000 synthetic events (100 passes each), one call per field."""
    ensure_built()
    from lbd.ringimage import random_cases
    from tests.unit.test_plugin_extract import decode_all

    events = [d[0] for d in decode_all([c.record for c in random_cases(2000, seed=7, long=120)])]
    benchmark.group = "plugin extract"
    results = []
    benchmark.pedantic(lambda: results.append(extract(events, fields=FIELDS5, bench=True)[1]),
                       rounds=bl.ROUNDS, iterations=1)
    assert all(s["requests_per_event"] == len(FIELDS5) for s in results), results
    ns = min(1e9 * s["extract_seconds"] / s["extracted"] for s in results)
    bl.record(benchmark, "plugin-extract", "5 fields: " + ", ".join(FIELDS5), ns_per_field=ns, fields=len(FIELDS5))
