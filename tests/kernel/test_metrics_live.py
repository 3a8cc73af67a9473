"""The metrics endpoint over a live Collector: its counters are what stats() says (each scraped
value lies between stats() just before and just after the scrape; the counters the workload does
not move are equal), and `lbd run --metrics` serves them."""
from __future__ import annotations

import os
import re
import signal
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from lbd.collector import Collector
from lbd.metrics import StatsCollector, serve
from tests.conftest import require_bpf
from tests.kernel.test_cli_run import finish, start_lbd


def scrape(url: str) -> dict:
    """{(name, labels without the ring): value summed over the rings} (one series per ring)."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    out: dict = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "ring")))
            out[key] = out.get(key, 0) + s.value
    return out


def key_of(name: str):
    if name.startswith("f_"):
        return ("lbd_filtered_total", (("reason", name[2:]),))
    if name == "drop_ringfull":
        return ("lbd_dropped_total", (("reason", "ring_full"),))
    if name == "malformed":
        return ("lbd_dropped_total", (("reason", "malformed"),))
    if name == "ring_pending_bytes":
        return ("lbd_ring_pending_bytes", ())
    return (f"lbd_{name}_total", ())


def test_live_counters_equal_stats():
    require_bpf()
    # no state records: nothing of other processes moves the counters checked for equality
    with Collector({"syscalls": ["openat"], "only_comms": ["lbdmetrics"], "track_state": False},
                   enrich=True) as col:
        with serve("127.0.0.1:0", StatsCollector.for_collector(col)) as server:
            for _ in range(200):
                os.close(os.open("/etc/hostname", os.O_RDONLY))
            for _ in range(3):
                col.next_batch(50)
            before = col.stats()
            m = scrape(f"http://127.0.0.1:{server.port}/metrics")
            after = col.stats()
            ring_size = col.probe.ring_size
            col_rings = col.probe.nrings
    keys = [k for k in before if k not in ("filtered", "dropped", "rings", "ring_fill_max", "late")]
    assert {"seen", "emitted", "delivered", "f_syscall", "f_comm", "drop_ringfull"} <= set(keys)
    for k in keys:
        got = m[key_of(k)]
        if k == "ring_pending_bytes":
            continue
        assert before[k] <= got <= after[k], (k, before[k], got, after[k])
    # nothing of the selection ran between the two calls: these did not move
    for k in ("emitted", "delivered", "malformed", "drop_ringfull"):
        assert before[k] == m[key_of(k)] == after[k], k
    assert m[("lbd_ring_size_bytes", ())] == ring_size * col_rings
    assert ("lbd_enrich_cache_entries", (("cache", "procs"),)) in m


def test_run_serves_metrics(tmp_path):
    require_bpf()
    out = tmp_path / "e.log"
    p = start_lbd("--metrics", "127.0.0.1:0", "--output", str(out), "--quiet", "--syscall", "openat")
    # port 0 is any free port: the log line after "capturing" says which
    line = p.stderr.readline().decode()
    port = int(re.fullmatch(r"lbd: metrics at http://127\.0\.0\.1:(\d+)/metrics\n", line).group(1))
    for _ in range(100):
        os.close(os.open("/etc/hostname", os.O_RDONLY))
    time.sleep(0.5)
    m = scrape(f"http://127.0.0.1:{port}/metrics")
    _, err = finish(p, signal.SIGINT)
    assert p.returncode == 130, err          # Ctrl-C: after the summary, the exit status of SIGINT
    assert m[("lbd_emitted_total", ())] >= 100
    assert m[("lbd_output_events_total", (("output", str(out)),))] >= 0
    delivered = int(re.search(r"lbd: (\d+) events in", err).group(1))
    assert m[("lbd_delivered_total", ())] <= delivered
