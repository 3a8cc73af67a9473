"""The metrics endpoint (lbd.metrics) with fake stats sources: every counter of stats() is served,
with the values stats() returns at the scrape, per ring, per filter reason, per cache, per output."""
from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lbd.metrics import MetricsError, StatsCollector, parse_address, serve

STATS = {"seen": 1000, "emitted": 400, "f_syscall": 500, "f_own": 90, "f_pid": 10, "drop_ringfull": 7,
         "truncated": 3, "read_fault": 2, "noenter": 1, "sched": 5, "filtered": 600, "dropped": 7,
         "malformed": 4, "delivered": 389, "ring_pending_bytes": 4096}
ENRICH = {"batches": 9, "events": 389, "applied": 12, "fd_rows": 40, "epochs": 1, "strtab_bytes": 777,
          "procs": {"size": 5, "max": 16384, "hits": 300, "misses": 6, "evictions": 0},
          "users": {"size": 2, "max": 4096, "hits": 50, "misses": 2, "evictions": 0},
          "groups": {"size": 2, "max": 4096, "hits": 50, "misses": 2, "evictions": 0},
          "procfs_reads": 11, "procfs_vanished": 1, "exited_pending": 0, "reaped": 3, "loads": 6,
          "slow_calls": 4, "fd_overflow": 0, "scanned": 83}


class FakeOutput:
    name = "/var/log/lbd/events.jsonl"
    events, bytes, error, lost = 389, 123456, None, 0


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def served():
    state = {"stats": dict(STATS)}
    src = StatsCollector(lambda: state["stats"], ring_size=1 << 23, enricher_stats=lambda: ENRICH,
                         outputs=[FakeOutput()])
    with serve("127.0.0.1:0", src) as server:
        yield server, state


def test_every_stats_counter_is_served(served):
    server, state = served
    m = scrape(server.port)
    ring = ("ring", "0")
    for key, v in STATS.items():
        if key in ("filtered", "dropped"):
            continue                                           # sums of the labelled series
        if key.startswith("f_"):
            assert m[("lbd_filtered_total", (("reason", key[2:]), ring))] == v
        elif key == "drop_ringfull":
            assert m[("lbd_dropped_total", (("reason", "ring_full"), ring))] == v
        elif key == "malformed":
            assert m[("lbd_dropped_total", (("reason", "malformed"), ring))] == v
        elif key == "ring_pending_bytes":
            assert m[("lbd_ring_pending_bytes", (ring,))] == v
        else:
            assert m[(f"lbd_{key}_total", (ring,))] == v, key
    assert sum(v for (n, _), v in m.items() if n == "lbd_filtered_total") == STATS["filtered"]
    assert m[("lbd_ring_fill_ratio", (ring,))] == 4096 / (1 << 23)
    assert m[("lbd_enrich_cache_entries", (("cache", "procs"),))] == 5
    assert m[("lbd_enrich_cache_hits_total", (("cache", "users"),))] == 50
    assert m[("lbd_enrich_strtab_bytes", ())] == 777 and m[("lbd_enrich_procfs_reads_total", ())] == 11
    assert m[("lbd_enrich_fd_rows_total", ())] == 40 and m[("lbd_enrich_scanned", ())] == 83
    out = (("output", FakeOutput.name),)
    assert (m[("lbd_output_events_total", out)], m[("lbd_output_bytes_total", out)],
            m[("lbd_output_errors_total", out)], m[("lbd_output_lost_total", out)]) == (389, 123456, 0, 0)
    # read at each scrape: new values show
    state["stats"] = {**STATS, "delivered": 5000}
    assert scrape(server.port)[("lbd_delivered_total", (ring,))] == 5000


def test_one_series_per_ring():
    rings = [{"emitted": 10, "drop_ringfull": 1}, {"emitted": 20, "drop_ringfull": 0}]
    with serve("127.0.0.1:0", StatsCollector(ring_stats=lambda: rings)) as server:
        m = scrape(server.port)
    assert m[("lbd_emitted_total", (("ring", "0"),))] == 10 and m[("lbd_emitted_total", (("ring", "1"),))] == 20
    assert m[("lbd_dropped_total", (("reason", "ring_full"), ("ring", "0")))] == 1


def test_a_failing_source_is_counted_not_fatal():
    def boom():
        raise RuntimeError("probe closed")

    with serve("127.0.0.1:0", StatsCollector(boom, outputs=[FakeOutput()])) as server:
        m = scrape(server.port)
        assert m[("lbd_scrape_errors_total", ())] == 1
        assert ("lbd_output_events_total", (("output", FakeOutput.name),)) in m


@pytest.mark.parametrize("text,ok", [("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::1]:80", ("::1", 80)),
                                     (":9464", None), ("localhost", None), ("h:99999", None), ("h:x", None)])
def test_addresses(text, ok):
    if ok:
        assert parse_address(text) == ok
    else:
        with pytest.raises(MetricsError) as e:
            parse_address(text)
        assert str(e.value) == f"--metrics: {text!r} is not ADDR:PORT (for example 127.0.0.1:9464; port 0-65535)"


def test_port_in_use_is_one_line(served):
    server, _ = served
    with pytest.raises(MetricsError) as e:
        serve(f"127.0.0.1:{server.port}", StatsCollector(lambda: {}))
    assert str(e.value) == f"--metrics: cannot listen on 127.0.0.1:{server.port}: Address already in use"


def test_run_with_a_bad_metrics_address_is_one_line(tmp_path):
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "lbd.cli", "run", "--metrics", "9464", "--output",
                        str(tmp_path / "e.log"), "--duration", "1"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert p.stderr == ("lbd: error: --metrics: '9464' is not ADDR:PORT (for example 127.0.0.1:9464; "
                        "port 0-65535)\n")
    assert not (tmp_path / "e.log").exists()                  # nothing opened before the check
