"""Prometheus metrics of a running lbd: `lbd run --metrics ADDR:PORT` (prometheus_client, the
`lbd[metrics]` extra).

Nothing is counted twice and nothing is counted per event here: every scrape reads the counters
lbd keeps anyway (`Collector.stats()`, `Enricher.stats()`, the outputs' own counts) and turns them
into metric families.  `serve("127.0.0.1:9464", collector, outputs=[writer])` starts the HTTP
endpoint in a daemon thread and returns a `MetricsServer` (`port`, `close()`).

Metrics (all with the label ``ring`` where they are per ring: "0" while there is one ring; one
series per ring when rings are per CPU):

    lbd_seen_total, lbd_emitted_total, lbd_delivered_total, ...   every counter of
        Collector.stats(), as lbd_<name>_total, but:
    lbd_filtered_total{reason}   the f_* counters (reason: syscall, own, pid, comm, failed, ...)
    lbd_dropped_total{reason}    drop_ringfull (reason "ring_full") and malformed ("malformed")
    lbd_ring_pending_bytes, lbd_ring_size_bytes, lbd_ring_fill_ratio   ring fill (gauges)
    lbd_enrich_cache_entries{cache}, lbd_enrich_cache_capacity{cache},
    lbd_enrich_cache_hits_total{cache}, _misses_total, _evictions_total   procs, born, users, groups
    lbd_enrich_<name> / lbd_enrich_<name>_total   the other Enricher.stats() numbers
    lbd_output_events_total{output}, lbd_output_bytes_total{output},
    lbd_output_errors_total{output}, lbd_output_lost_total{output}   per output (file, NATS, ...)

The sums stats() also has (filtered, dropped) are the sums of the labelled series and are not
repeated.  A source whose stats() raises is skipped for that scrape (lbd_scrape_errors_total).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

__all__ = ["MetricsServer", "StatsCollector", "serve", "parse_address", "MetricsError"]

#: stats() keys that are sums of other keys (not exported again) or gauges (exported as such)
_DERIVED = {"filtered", "dropped"}
_GAUGES = {"ring_pending_bytes"}
_DROP_REASONS = {"drop_ringfull": "ring_full", "malformed": "malformed"}
_CACHES = ("procs", "users", "groups")
#: Enricher.stats() values that are levels, not counts (the rest are counters)
_ENRICH_GAUGES = {"strtab_bytes", "exited_pending", "epochs", "scanned"}


class MetricsError(ValueError):
    """A bad metrics address: str() is one line naming the value and the expected form."""


def parse_address(text: str) -> tuple[str, int]:
    """"ADDR:PORT" (IPv6 as "[::1]:9464") -> (addr, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise MetricsError(f"--metrics: {text!r} is not ADDR:PORT (for example 127.0.0.1:9464; port 0-65535)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def output_stats(out) -> dict[str, int]:
    """An output's counts: its stats() when it has one, else the Writer attributes."""
    if hasattr(out, "stats") and callable(out.stats):
        return dict(out.stats())
    return {"events": int(getattr(out, "events", 0)), "bytes": int(getattr(out, "bytes", 0)),
            "errors": int(getattr(out, "error", None) is not None), "lost": int(getattr(out, "lost", 0))}


class StatsCollector:
    """A prometheus_client collector over lbd's stats sources (read at each scrape).

    stats: Collector.stats-like callable (flat dict of totals); ring_stats: optional callable
    returning one such dict per ring (default: [stats()], ring "0"); ring_size: bytes of each
    ring; enricher_stats: Enricher.stats-like callable or None; outputs: objects with a `name`
    and stats() (or the Writer attributes events, bytes, error, lost)."""

    def __init__(self, stats: Callable[[], dict] | None = None, *, ring_stats: Callable[[], list] | None = None,
                 ring_size: int | None = None, enricher_stats: Callable[[], dict] | None = None,
                 outputs: Iterable = ()):
        self.stats = stats
        self.ring_stats = ring_stats
        self.ring_size = ring_size
        self.enricher_stats = enricher_stats
        self.outputs = list(outputs)
        self.scrape_errors = 0
        self._lock = threading.Lock()

    @classmethod
    def for_collector(cls, col, outputs: Iterable = ()) -> StatsCollector:
        """Sources of an open lbd.Collector (and its enricher, when it has one)."""
        ring_size = getattr(getattr(col, "probe", None), "ring_size", None)
        en = getattr(col, "enricher", None)
        return cls(col.stats, ring_stats=getattr(col, "ring_stats", None), ring_size=ring_size,
                   enricher_stats=en.stats if en is not None else None, outputs=outputs)

    def _call(self, fn):
        try:
            return fn()
        except Exception:
            self.scrape_errors += 1
            return None

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        with self._lock:
            fams: dict[str, object] = {}

            def counter(name, doc, labels):
                if name not in fams:
                    fams[name] = CounterMetricFamily(name, doc, labels=labels)
                return fams[name]

            def gauge(name, doc, labels):
                if name not in fams:
                    fams[name] = GaugeMetricFamily(name, doc, labels=labels)
                return fams[name]

            rings = None
            if self.ring_stats is not None:
                rings = self._call(self.ring_stats)
            elif self.stats is not None:
                one = self._call(self.stats)
                rings = None if one is None else [one]
            for r, st in enumerate(rings or ()):
                ring = str(r)
                for key, v in st.items():
                    if key in _DERIVED or not isinstance(v, int):
                        continue
                    if key.startswith("f_"):
                        counter("lbd_filtered", "Syscalls filtered in the kernel, by reason.",
                                ["ring", "reason"]).add_metric([ring, key[2:]], v)
                    elif key in _DROP_REASONS:
                        counter("lbd_dropped", "Events lost, by reason (ring full, malformed record).",
                                ["ring", "reason"]).add_metric([ring, _DROP_REASONS[key]], v)
                    elif key in _GAUGES:
                        gauge(f"lbd_{key}", "Bytes written to the ring and not read yet.",
                              ["ring"]).add_metric([ring], v)
                    else:
                        counter(f"lbd_{key}", f"Collector.stats() counter {key!r}.", ["ring"]).add_metric([ring], v)
                if self.ring_size:
                    gauge("lbd_ring_size_bytes", "Size of the ring buffer.", ["ring"]).add_metric([ring], self.ring_size)
                    if "ring_pending_bytes" in st:
                        gauge("lbd_ring_fill_ratio", "Fraction of the ring holding unread records.",
                              ["ring"]).add_metric([ring], st["ring_pending_bytes"] / self.ring_size)
            if self.enricher_stats is not None:
                en = self._call(self.enricher_stats)
                for key, v in (en or {}).items():
                    if key in _CACHES and isinstance(v, dict):
                        gauge("lbd_enrich_cache_entries", "Entries in an enrichment cache.",
                              ["cache"]).add_metric([key], v.get("size", 0))
                        gauge("lbd_enrich_cache_capacity", "Most entries an enrichment cache keeps.",
                              ["cache"]).add_metric([key], v.get("max", 0))
                        for c in ("hits", "misses", "evictions"):
                            counter(f"lbd_enrich_cache_{c}", f"Enrichment cache {c}.",
                                    ["cache"]).add_metric([key], v.get(c, 0))
                    elif isinstance(v, int) and not isinstance(v, bool):
                        if key in _ENRICH_GAUGES:
                            gauge(f"lbd_enrich_{key}", f"Enricher.stats() {key!r}.", []).add_metric([], v)
                        else:
                            counter(f"lbd_enrich_{key}", f"Enricher.stats() counter {key!r}.", []).add_metric([], v)
            for out in self.outputs:
                st = self._call(lambda: output_stats(out))
                if st is None:
                    continue
                name = str(getattr(out, "name", "output"))
                for key, doc in (("events", "Events written."), ("bytes", "Bytes written."),
                                 ("errors", "Write errors."), ("lost", "Events not written (errors, overflow).")):
                    counter(f"lbd_output_{key}", doc, ["output"]).add_metric([name], st.get(key, 0))
            counter("lbd_scrape_errors", "Stats sources that failed during a scrape.", []).add_metric(
                [], self.scrape_errors)
            yield from fams.values()


class MetricsServer:
    """The HTTP endpoint (prometheus_client's WSGI server in a daemon thread).  close() stops it."""

    def __init__(self, httpd, thread, registry, collector: StatsCollector):
        self._httpd, self._thread = httpd, thread
        self.registry = registry
        self.collector = collector
        self.address = httpd.server_address[0]
        self.port = httpd.server_address[1]

    def close(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def serve(address: str, source: StatsCollector) -> MetricsServer:
    """Serve source's metrics at http://ADDR:PORT/metrics (port 0: any free port)."""
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError:
        raise MetricsError("--metrics needs prometheus_client: pip install 'lbd[metrics]'") from None
    host, port = parse_address(address)
    registry = CollectorRegistry()
    registry.register(source)
    try:
        httpd, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        raise MetricsError(f"--metrics: cannot listen on {address}: {e.strerror or e}") from None
    return MetricsServer(httpd, thread, registry, source)
