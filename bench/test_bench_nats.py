"""Shipping to NATS JetStream: events/s delivered (acknowledged) to a local nats-server with
JetStream (file storage), JSON Lines messages against Arrow IPC messages (--format parquet), in
the same run; and the CPU seconds lbd's process spends per event (encoding, publishing).

Self-contained: host-like synthetic batches (tests/data/synth.py) of LBD_BENCH_NATS_BATCH events
(16,384), LBD_BENCH_NATS_EVENTS events per round (262,144).  Needs nats-server (Debian's
nats-server package); skipped with the reason without it.  Target: >= 1,000,000 events/s.
On a 2-core machine lbd and the server share the cores: read the ratio, and the CPU per event.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from benchlib import env_int  # noqa: E402

N_EVENTS = env_int("LBD_BENCH_NATS_EVENTS", 262_144)
BATCH = env_int("LBD_BENCH_NATS_BATCH", 16_384)
TARGET = 1_000_000
RESULTS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    exe = shutil.which("nats-server")
    if exe is None:
        pytest.skip("nats-server is not installed (apt-get install nats-server)")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    store = tmp_path_factory.mktemp("js")
    proc = subprocess.Popen([exe, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"nats://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    from tests.data import synth

    return synth.host_like_batches(N_EVENTS, seed=1, batch_size=BATCH, root=tmp_path_factory.mktemp("host"))


@pytest.mark.parametrize("fmt", ["json", "parquet"])
def test_bench_nats(benchmark, server, batches, tmp_path, fmt):
    from lbd.output.nats import NatsExporter

    ex = NatsExporter(f"{server}/lbd.bench.{fmt}", fmt=fmt, spool_dir=str(tmp_path / "spool"))
    cpu = []

    def run():
        c0, d0 = time.process_time(), ex.delivered
        for b in batches:
            ex.write_batch(b)
        while ex.delivered - d0 < N_EVENTS:
            assert ex.stats()["lost"] == 0
            time.sleep(0.0005)
        cpu.append(time.process_time() - c0)

    try:
        time.sleep(0.5)                                    # connected, stream created
        benchmark.group = "nats"
        benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    finally:
        ex.close()
    s = benchmark.stats.stats
    st = ex.stats()
    RESULTS[fmt] = {"events_per_s": N_EVENTS / s.median, "best": N_EVENTS / s.min,
                    "cpu_ns_per_event": 1e9 * sorted(cpu)[len(cpu) // 2] / N_EVENTS,
                    "bytes_per_event": st["bytes"] / st["delivered"]}
    benchmark.extra_info.update({k: round(v, 1) for k, v in RESULTS[fmt].items()})
    assert st["lost"] == 0 and st["delivered"] == st["events"]


class _Summary:
    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter):
        if not RESULTS:
            return
        tr = terminalreporter
        tr.section(f"lbd to NATS JetStream ({N_EVENTS:,} host-like events a round, batches of {BATCH:,}; "
                   "a local nats-server)")
        for fmt, r in RESULTS.items():
            mark = ("meets" if r["events_per_s"] >= TARGET else "BELOW") + f" the {TARGET:,}/s target"
            name = "json" if fmt == "json" else "arrow"
            tr.write_line(f"{name:6s} {r['events_per_s']:12,.0f} events/s delivered (best {r['best']:,.0f}; {mark}), "
                          f"{r['cpu_ns_per_event']:5.0f} ns lbd CPU per event, {r['bytes_per_event']:6.1f} bytes/event")


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    pm = request.config.pluginmanager
    if not pm.has_plugin("lbd-nats-summary"):
        pm.register(_Summary(), "lbd-nats-summary")
    yield
