"""`lbd.Collector`: the probe, the ring consumers and the batches, behind one context manager.

    with lbd.Collector({"syscalls": ["openat", "connect"]}) as c:
        for batch in c:
            for i in range(len(batch)):
                print(batch.events["pid"][i], batch.args(i))

The probe writes into one ring per cpus_per_ring CPUs.  With one consumer (the default) the
collector drains them all, merged in emit-time order (lbd._decode.Rings: a batch is in the order
the records were written, across CPUs).  With `consumers` > 1, each consumer thread drains its
share of the rings (ring i goes to consumer i % consumers), merged in order among them, and the
iterator hands out their batches as they come: the order holds within each consumer's rings,
not across consumers (a process whose threads run on CPUs of different consumers may show its
events of one moment in two batches, in either order).

A filter expression (``Collector(filter=EXPR)`` or the configuration's ``filter``, lbd.filter)
is applied in two places: its kernel-decidable part (syscalls, pids, comms, uids, failed) goes into
the probe's maps (lbd.filter.pushdown.kernel_config), and the whole compiled filter runs over every
batch, after the state engine and the recorder saw all of it, so that the batches handed out hold
only the events the expression keeps (copied into a batch of their own, Batch.select_into).

Invariants: between __enter__ and __exit__ the probe is attached and batches are reused (a batch
is valid until the next one is asked for: copy what you keep); __exit__, also on an exception,
stops the consumer threads, detaches the probe and unmaps the rings.
"""
from __future__ import annotations

import os
import queue
import threading
import time
from typing import Iterator

import numpy as np

from lbd import record
from lbd.batch import Batch
from lbd.config import Config, coerce
from lbd._decode import STOP_FULL, Ring, Rings


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


def probe_config(cfg: Config) -> Config:
    """The configuration the probe is loaded with: cfg with its filter's kernel part pushed down
    (lbd.filter.pushdown.kernel_config).  When the user chose no syscalls (neither ``syscalls``
    nor ``interest_syscall_file``) and the filter names the syscalls it keeps, those are the
    selection: ``filter="syscall = newfstatat and ..."`` captures newfstatat even though the
    packaged default selection leaves it out (met with the default selection, it would capture
    nothing)."""
    from lbd.filter.fields import SYSCALL_NAMES
    from lbd.filter.plan import LIMITS
    from lbd.filter.pushdown import kernel_config, plan_of

    plan = plan_of(cfg)
    if plan is None:
        return cfg
    o = cfg.open
    if not o.syscalls and not o.interest_syscall_file and plan.syscalls is not None and not plan.matches_nothing:
        real = sorted(n for n in plan.syscalls - set(plan.drop_syscalls)
                      if SYSCALL_NAMES[n] < record.NR_SCHED_FORK)
        if real and len(real) <= LIMITS["syscalls"]:
            cfg = cfg.replace(syscalls=real)
    return kernel_config(cfg)


class Collector:
    """Loads the probe on enter, detaches it on exit; iterating yields Batch objects.

    A yielded batch may be empty when nothing arrived within batch_timeout_ms, so that a loop can
    look at the clock or a stop flag; stop() ends the iteration.

    enrich=True (or an lbd.enrich.Enricher) gives every batch its enrichment (batch.enrich,
    batch.strtab, batch.fdtab: parent, command line, user, group, open files; see lbd.enrich)
    before it is returned; `enricher` is then the Enricher (its stats(), its process table).

    filter=EXPR (or the configuration's "filter"): only the events the expression keeps are handed
    out (state records never, when a filter is set); the enrichment and the recording still see
    every event.  A filter that reads enriched fields (cmdline, user, fd.name, ...) turns the
    enrichment on.  apply_filter=False hands the batches out whole and leaves the filter to the
    caller (lbd run and the Falco plugin apply it themselves); its kernel part is pushed down
    either way.

    duration=S ends the iteration S seconds after the probe is attached (or the replay opened);
    max_events=N ends it once N events were handed out (the last batch cut to exactly N; state
    records are not handed out then either: they are not events of the selection).
    Ctrl-C (KeyboardInterrupt) inside the with block leaves it as any exception does: the
    consumer threads stopped, the probe detached, the exception raised to the caller.

    record=PATH also writes every batch the iterator hands out to a capture file (lbd.capture),
    with what the enrichment asked of the host; replay=PATH loads no probe and hands out the
    batches of a capture file instead, enriched from the recorded answers, so that every output
    is what the recording run gave (iteration ends with the file).
    """

    def __init__(self, config: Config | dict | None = None, *, batch_size: int | None = None,
                 own_pid: int | None = None, host_pid: int | None = None, own_tids=None, enrich=False,
                 consumers: int | None = None, record: str | os.PathLike | None = None,
                 replay: str | os.PathLike | None = None, compress: str = "zstd",
                 filter: str | None = None, apply_filter: bool = True,  # noqa: A002 - as the config key
                 duration: float | None = None, max_events: int | None = None):
        if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float))
                                     or not duration > 0):
            raise ValueError(f"duration: {duration!r}, a number of seconds > 0 (or None: no limit)")
        if max_events is not None and (isinstance(max_events, bool) or not isinstance(max_events, int)
                                       or max_events < 1):
            raise ValueError(f"max_events: {max_events!r}, an integer >= 1 (or None: no limit)")
        if filter is not None and not isinstance(filter, str):
            raise ValueError(f"filter: {filter!r}, a filter expression (text)")
        self.duration, self.max_events = duration, max_events
        self._deadline: float | None = None
        self._record_path, self._replay_path, self._compress = record, replay, compress
        if record is not None and replay is not None:
            raise ValueError("a collector records a live capture or replays one, not both")
        self.recorder = None
        self.reader = None
        self._chunks = None
        self.replayed_stats: dict = {}
        self.wall_offset = 0
        if replay is not None and config is None:
            from lbd.capture import CaptureReader

            self.reader = CaptureReader(replay)        # the recording run's configuration
            config = self.reader.meta.get("config") or None
        self.config = coerce(config)
        if filter is not None:
            self.config = self.config.replace(filter=filter)
        from lbd.filter.pushdown import compiled

        #: the whole compiled filter applied to every batch (None: none, or apply_filter=False)
        self.filter = compiled(self.config) if apply_filter else None
        if self.filter is not None and self.filter.needs_enrichment and not enrich:
            enrich = True
        self._enrich = enrich
        #: replaying without an enricher of its own: the object whose feed() takes the recorded
        #: answers (the Falco plugin runs the state engine itself)
        self.answer_sink = None
        self._views: list[Batch] = []
        self._view_turn = 0
        self.enricher = None
        self.batch_size = batch_size or self.config.init.batch_size
        self.timeout_ms = self.config.init.batch_timeout_ms
        self.consumers = consumers or self.config.init.consumers
        self._own_pid, self._host_pid, self._own_tids = own_pid, host_pid, own_tids
        self.probe = None
        self.rings: list[Ring] = []
        self.ring = None                    # one consumer: the merged Rings it reads
        self.batch: Batch | None = None
        self._pool: list[Batch] = []
        self._turn = 0
        self._stopped = False
        self._threads: list[_Consumer] = []
        self._ready: queue.Queue | None = None
        self._held: Batch | None = None     # the batch handed out last (threaded mode)
        self.batches = 0
        self.events = 0                     # handed out (after the filter)
        self.events_read = 0                # read from the rings or the capture

    def __enter__(self) -> Collector:
        if self._replay_path is not None:
            return self._enter_replay()
        from lbd.probe import Probe

        # the filter's part the kernel can decide goes into the probe's maps
        self.probe = Probe(probe_config(self.config), own_pid=self._own_pid, host_pid=self._host_pid,
                           own_tids=self._own_tids)
        try:
            wall = self.wall_offset = wall_offset_ns()
            window = self.config.init.merge_window_us * 1000
            self.rings = [Ring(fd, self.probe.ring_size, wall_offset=wall, index=i)
                          for i, fd in enumerate(self.probe.ring_fds)]
            self.batch = Batch(self.batch_size)
            k = max(1, min(self.consumers, len(self.rings)))
            if k == 1:
                self.ring = Rings(self.rings, window_ns=window, wall_offset=wall)
            else:
                self._ready = queue.Queue()
                for c in range(k):
                    share = Rings(self.rings[c::k], window_ns=window, wall_offset=wall)
                    self._threads.append(_Consumer(self, share, c))
            if self._enrich is True and self._record_path is not None:
                from lbd.capture import recording_enricher

                self.enricher = recording_enricher(self.config, selection=self.probe.selection)
            elif self._enrich is True:
                from lbd.enrich import Enricher

                self.enricher = Enricher(self.config, selection=self.probe.selection)
            elif self._enrich:
                self.enricher = self._enrich
            if self._record_path is not None:
                from lbd.capture import Recorder

                self.recorder = Recorder(self._record_path, self, compress=self._compress)
            for t in self._threads:
                t.start()
        except BaseException:
            self.close()
            raise
        self._start_clock()
        return self

    def _start_clock(self) -> None:
        self._deadline = None if self.duration is None else time.monotonic() + self.duration

    def _enter_replay(self) -> Collector:
        from lbd.capture import CaptureReader, replaying_enricher

        if self.reader is None:
            self.reader = CaptureReader(self._replay_path)
        self.wall_offset = self.reader.wall_offset
        self.batch = Batch(self.batch_size)
        if self._enrich is True:
            self.enricher = replaying_enricher(self.config)
        elif self._enrich:
            self.enricher = self._enrich
        self._chunks = self.reader.chunks()
        self._start_clock()
        return self

    def _next_replayed(self) -> Batch:
        """The capture's next batch (answers fed to the enricher first); an empty batch and the
        end of iteration when the file is done."""
        batch = self._rotate()
        batch.release()
        for kind, data in self._chunks:
            if kind == "answers":
                sink = self.enricher if self.enricher is not None else self.answer_sink
                if hasattr(sink, "feed"):
                    sink.feed(data)
            elif kind == "end":
                self.replayed_stats = data if isinstance(data, dict) else {}
            else:
                n, arena, rings = data
                if n > batch.capacity or len(arena) + 8 > batch.arena_bytes:
                    batch = Batch(max(n, batch.capacity), len(arena) + 64)
                    batch.plugin_id = self.batch.plugin_id
                    self.batch = batch
                    self._pool = []
                try:
                    batch.load(arena, rings, self.wall_offset)
                except ValueError as e:
                    from lbd.capture import CaptureError

                    raise CaptureError(f"{self.reader.path}: batch {self.batches + 1}: {e}") from None
                return self._deliver(batch)
        self._stopped = True
        return self._deliver(batch)

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self, stats: dict | None = None) -> None:
        """Stop the consumers, detach the probe, unmap the rings; a recording gets its end chunk
        (stats: the final counts to keep in it, default this collector's stats())."""
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            try:
                recorder.close(stats if stats is not None else (self.stats() if self.probe else {}))
            except Exception:
                recorder.writer.closed = True
        reader, self.reader = self.reader, None
        if reader is not None:
            reader.close()
        threads, self._threads = self._threads, []
        for t in threads:
            t.halt()
        for t in threads:
            t.join()
        for t in threads:
            t.rings.close()
        ring, self.ring = self.ring, None
        if ring is not None:
            ring.close()
        rings, self.rings = self.rings, []
        for r in rings:
            r.close()
        probe, self.probe = self.probe, None
        if probe is not None:
            probe.close()

    def stop(self) -> None:
        """End the iteration after the current batch (safe from a signal handler)."""
        self._stopped = True

    def next_batch(self, timeout_ms: int | None = None, *, flush: bool = False) -> Batch:
        """The next batch: full, or whatever arrived within timeout_ms (default batch_timeout_ms).

        It fills the batch with what is ready; if that is not a full batch it sleeps until the probe
        wakes it (a ring is filling up) or the time is up, then takes what is there: it never
        chases the producer record by record.  With several consumers, the next batch one of them
        filled (an empty one when none did within the time).

        flush=True (capture stopped, e.g. drop_mode): release every record the rings hold, merged
        in order, without holding the newest for the merge window (one consumer only).
        """
        if self._chunks is not None:
            return self._next_replayed()
        if self._ready is not None:
            return self._next_threaded(timeout_ms)
        if self.ring is None:
            raise RuntimeError("the collector is not open (use it in a with block)")
        batch = self._rotate()
        timeout = self.timeout_ms if timeout_ms is None else timeout_ms
        fill_until(self.ring, batch, timeout, flush)
        return self._deliver(batch)

    def _deliver(self, batch: Batch) -> Batch:
        """The batch as handed out: enriched and recorded whole, then narrowed to what the filter
        keeps and to max_events."""
        self.batches += 1
        self.events_read += len(batch)
        if self.enricher is not None:
            self.enricher.enrich(batch)
        if self.recorder is not None:
            self.recorder.write(batch)
        out = batch
        if (self.filter is not None or self.max_events is not None) and len(batch):
            keep = batch.output_mask()          # state records: for the tables, never output
            if self.filter is not None:
                f = self.filter(batch)
                keep = f if keep is None else keep & f
            if keep is not None and not keep.all():
                out = self._select(batch, np.flatnonzero(keep))
        if self.max_events is not None:
            left = self.max_events - self.events
            if len(out) >= left:
                self._stopped = True
                if len(out) > left:
                    out = self._select(out, np.arange(max(left, 0)))
        self.events += len(out)
        return out

    def _select(self, batch: Batch, idx) -> Batch:
        """The events idx of batch in a batch of their own (two such batches, used in turn)."""
        self._view_turn ^= 1
        if len(self._views) < 2:
            self._views = [None, None]
        view = self._views[self._view_turn]
        if view is None or view.capacity < batch.capacity or view.arena_bytes < batch.arena_bytes:
            view = self._views[self._view_turn] = Batch(batch.capacity, batch.arena_bytes)
        return batch.select_into(view, idx, self.wall_offset)

    def _next_threaded(self, timeout_ms: int | None) -> Batch:
        held, self._held = self._held, None
        if held is not None:
            held.owner.recycle(held)        # the previous batch's lifetime ends here
        timeout = self.timeout_ms if timeout_ms is None else timeout_ms
        try:
            batch = self._ready.get(timeout=timeout / 1000.0)
        except queue.Empty:
            if self.batch is None:
                raise RuntimeError("the collector is not open (use it in a with block)") from None
            self.batch.release()
            return self._deliver(self.batch)
        if isinstance(batch, BaseException):
            raise batch
        self._held = batch
        return self._deliver(batch)

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
            if self._deadline is None:
                yield self.next_batch()
                continue
            left = self._deadline - time.monotonic()
            if left <= 0:
                self._stopped = True
                break
            yield self.next_batch(max(1, min(self.timeout_ms, int(left * 1000) + 1)))

    def ring_stats(self) -> list[dict]:
        """Per ring, the counters of stats() that belong to one ring, as a flat dict: the kernel's
        counters of the CPUs that write to it, what was delivered from it, its malformed records
        and pending bytes (lbd.metrics labels them by ring).  Summed over the rings they are
        stats()'s totals."""
        if self.probe is None:
            raise RuntimeError("the collector is not open")
        return _ring_stats(self)

    def stats(self) -> dict:
        """Counts so far: emitted, dropped, filtered, malformed, delivered, late (and every kernel
        counter); `rings`: per ring, the kernel's counters of its CPUs, what was delivered from it,
        its fill (pending bytes / size).  Replaying: the recording's final counts (once its end is
        read), with delivered = the events replayed so far (before the filter)."""
        if self._replay_path is not None:
            d = dict(self.replayed_stats)
            d.setdefault("dropped", 0)
            d.setdefault("filtered", 0)
            d.setdefault("malformed", 0)
            d.setdefault("ring_pending_bytes", 0)
            d.setdefault("ring_fill_max", 0.0)
            d["delivered"] = self.events_read
            return d
        if self.probe is None:
            raise RuntimeError("the collector is not open")
        ks = self.probe.stats()
        d = ks.as_dict()
        per = []
        for r, kr in zip(self.rings, ks.per_ring):
            rs = r.stats()
            pend = r.pending_bytes()
            per.append({"emitted": kr["emitted"] + kr["sched"], "dropped": kr["drop_ringfull"],
                        "delivered": rs["records"], "malformed": rs["malformed"],
                        "pending_bytes": pend, "fill": pend / r.ring_size if r.ring_size else 0.0})
        d["malformed"] = sum(p["malformed"] for p in per)
        d["delivered"] = sum(p["delivered"] for p in per)
        d["late"] = (self.ring.late if self.ring is not None else 0) + sum(t.rings.late for t in self._threads)
        d["ring_pending_bytes"] = sum(p["pending_bytes"] for p in per)
        d["ring_fill_max"] = max((p["fill"] for p in per), default=0.0)
        d["rings"] = per
        return d


_EVERYTHING = (1 << 64) - 1


def _ring_stats(col: Collector) -> list[dict]:
    """Collector.ring_stats(): one flat dict per ring (see there)."""
    ks = col.probe.stats()
    out = []
    for r, kr in zip(col.rings, ks.per_ring):
        d = dict(kr)
        d["filtered"] = sum(v for k, v in kr.items() if k.startswith("f_"))
        d["dropped"] = kr["drop_ringfull"]
        rs = r.stats()
        d["delivered"] = rs["records"]
        d["malformed"] = rs["malformed"]
        d["ring_pending_bytes"] = r.pending_bytes()
        out.append(d)
    return out


def fill_until(ring, batch: Batch, timeout_ms: float, flush: bool = False) -> int:
    """Fill batch from ring (a Ring or Rings) until it is full or timeout_ms passed: fill what is
    ready, then sleep until the probe wakes us or the time is up, and take what is there.
    flush (a Rings): release every record present, not holding the newest for the merge."""
    kw = {"horizon_ns": _EVERYTHING} if flush and isinstance(ring, Rings) else {}
    deadline = time.monotonic() + timeout_ms / 1000.0
    n = ring.fill(batch, **kw)
    # STOP_FULL: the arena has no room for the next record; waiting would only spin (the
    # ring's poll stays readable while records are pending).
    while n < batch.capacity and ring.last_stop != STOP_FULL:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ring.wait(max(1, int(left * 1000)))
        n = ring.fill(batch, append=True, **kw)
    return n


class _Consumer(threading.Thread):
    """One consumer thread (consumers > 1): fills batches from its share of the rings and queues
    the non-empty ones for the collector's iterator.  Its batches come back through recycle() once
    the iterator moved past them.  Drains with the GIL released (Rings.fill, Rings.wait)."""

    POOL = 4

    def __init__(self, col: Collector, rings: Rings, index: int):
        super().__init__(name=f"lbd-consumer-{index}", daemon=True)
        self.col, self.rings, self.index = col, rings, index
        self.free: queue.Queue = queue.Queue()
        for _ in range(self.POOL):
            b = Batch(col.batch_size)
            b.plugin_id = col.batch.plugin_id
            b.owner = self
            self.free.put(b)
        self._halt = threading.Event()

    def recycle(self, batch: Batch) -> None:
        self.free.put(batch)

    def halt(self) -> None:
        self._halt.set()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                try:
                    batch = self.free.get(timeout=0.05)
                except queue.Empty:
                    continue
                fill_until(self.rings, batch, self.col.timeout_ms)
                if len(batch):
                    self.col._ready.put(batch)
                else:
                    self.free.put(batch)
        except BaseException as e:  # surfaces in next_batch(), not lost in a thread
            self.col._ready.put(e)
