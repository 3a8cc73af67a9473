"""`lbd.Collector`: the probe, the ring consumer and the batches, behind one context manager.

    with lbd.Collector({"syscalls": ["openat", "connect"]}) as c:
        for batch in c:
            for i in range(len(batch)):
                print(batch.events["pid"][i], batch.args(i))

Invariants: between __enter__ and __exit__ the probe is attached and one Batch is reused for every
iteration (a batch is valid until the next one is asked for: copy what you keep); __exit__, also on
an exception, detaches the probe and unmaps the ring.
"""
from __future__ import annotations

import os
import time
from typing import Iterator

from lbd import record
from lbd.batch import Batch
from lbd.config import Config, coerce
from lbd._decode import STOP_FULL, Ring


POOL_BYTES = 3 << 20   # the batches the collector fills in turn hold about this much (see _rotate)
POOL_MAX = 8


def wall_offset_ns() -> int:
    """Add to a bpf_ktime_get_ns() timestamp (CLOCK_MONOTONIC) to get wall-clock ns."""
    best = None
    for _ in range(3):  # the tightest of three brackets
        a = time.monotonic_ns()
        w = time.time_ns()
        b = time.monotonic_ns()
        if best is None or b - a < best[0]:
            best = (b - a, w - (a + b) // 2)
    return best[1]


class Collector:
    """Loads the probe on enter, detaches it on exit; iterating yields Batch objects.

    A yielded batch may be empty when nothing arrived within batch_timeout_ms, so that a loop can
    look at the clock or a stop flag; stop() ends the iteration.

    enrich=True (or an lbd.enrich.Enricher) gives every batch its enrichment (batch.enrich,
    batch.strtab, batch.fdtab: parent, command line, user, group, open files; see lbd.enrich)
    before it is returned; `enricher` is then the Enricher (its stats(), its process table).
    """

    def __init__(self, config: Config | dict | None = None, *, batch_size: int | None = None,
                 own_pid: int | None = None, host_pid: int | None = None, own_tids=None, enrich=False):
        self.config = coerce(config)
        self._enrich = enrich
        self.enricher = None
        self.batch_size = batch_size or self.config.init.batch_size
        self.timeout_ms = self.config.init.batch_timeout_ms
        self._own_pid, self._host_pid, self._own_tids = own_pid, host_pid, own_tids
        self.probe = None
        self.ring: Ring | None = None
        self.batch: Batch | None = None
        self._pool: list[Batch] = []
        self._turn = 0
        self._stopped = False
        self.batches = 0
        self.events = 0

    def __enter__(self) -> Collector:
        from lbd.probe import Probe

        self.probe = Probe(self.config, own_pid=self._own_pid, host_pid=self._host_pid,
                           own_tids=self._own_tids)
        try:
            self.ring = Ring(self.probe.ring_fd, self.probe.ring_size, wall_offset=wall_offset_ns())
            self.batch = Batch(self.batch_size)
            if self._enrich is True:
                from lbd.enrich import Enricher

                self.enricher = Enricher(self.config, selection=self.probe.selection)
            elif self._enrich:
                self.enricher = self._enrich
        except BaseException:
            self.probe.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        ring, self.ring = self.ring, None
        if ring is not None:
            ring.close()
        probe, self.probe = self.probe, None
        if probe is not None:
            probe.close()

    def stop(self) -> None:
        """End the iteration after the current batch (safe from a signal handler)."""
        self._stopped = True

    def next_batch(self, timeout_ms: int | None = None) -> Batch:
        """The next batch: full, or whatever arrived within timeout_ms (default batch_timeout_ms).

        It fills the batch with what is ready; if that is not a full batch it sleeps until the probe
        wakes it (the ring is filling up) or the time is up, then takes what is there: it never
        chases the producer record by record.
        """
        if self.ring is None:
            raise RuntimeError("the collector is not open (use it in a with block)")
        ring, batch = self.ring, self._rotate()
        timeout = self.timeout_ms if timeout_ms is None else timeout_ms
        deadline = time.monotonic() + timeout / 1000.0
        n = ring.fill(batch)
        # STOP_FULL: the arena has no room for the next record; waiting would only spin (the
        # ring's poll stays readable while records are pending).
        while n < batch.capacity and ring.last_stop != STOP_FULL:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ring.wait(max(1, int(left * 1000)))
            n = ring.fill(batch, append=True)
        self.batches += 1
        self.events += n
        if self.enricher is not None:
            self.enricher.enrich(batch)
        return batch

    def _rotate(self) -> Batch:
        """The batch to fill next: the batches of a small pool in turn.

        Refilling one small batch over and over drained a ring markedly slower than filling a few
        in turn (measured: batches of 512, 23.8 ns per record with one, 15.8 with six; the same
        memory reused while it is still in the CPU's caches, apparently); a pool of about
        POOL_BYTES keeps that reuse distance.  The contract is unchanged: a batch is valid until
        the next one is asked for (in fact for a few more).  The pool is built around the current
        self.batch, with its capacity, arena size and plugin id.
        """
        pool, cur = self._pool, self.batch
        if cur is None:
            raise RuntimeError("the collector has no batch")
        if not any(b is cur for b in pool):
            size = cur.arena_bytes + cur.capacity * (cur.table.itemsize + 8)
            k = max(1, min(POOL_MAX, -(-POOL_BYTES // size)))
            pool = self._pool = [cur] + [Batch(cur.capacity, cur.arena_bytes) for _ in range(k - 1)]
            for b in pool:
                b.plugin_id = cur.plugin_id
            self._turn = 0
        self._turn = (self._turn + 1) % len(pool)
        self.batch = pool[self._turn]
        return self.batch

    def __iter__(self) -> Iterator[Batch]:
        while not self._stopped:
            yield self.next_batch()

    def stats(self) -> dict[str, int]:
        """Counts so far: emitted, dropped, filtered, malformed (and every kernel counter)."""
        if self.probe is None:
            raise RuntimeError("the collector is not open")
        d = self.probe.stats().as_dict()
        rs = self.ring.stats()
        d["malformed"] = rs["malformed"]
        d["delivered"] = rs["records"]
        d["ring_pending_bytes"] = self.ring.pending_bytes()
        return d
