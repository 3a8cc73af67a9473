"""Shipping events to a remote system: at least once, every loss counted.

An Exporter is a Writer-compatible output (`write_batch`, `flush`, `close`, `top_syscalls`,
`events`, `bytes`, `name`, `format`, `stats()`) that turns each batch into messages and publishes
them from a sender thread of its own; the system-specific part is three coroutines a subclass
implements (`_connect`, `_publish`, `_disconnect`): lbd.output.nats.NatsExporter for NATS
JetStream; a Kafka exporter would be another subclass.

Messages.  One message per batch: the batch's JSON Lines (format normal or json; content type
application/x-ndjson), or an Arrow IPC stream of lbd.output.parquet's record batch, zstd-compressed
(format parquet; application/vnd.apache.arrow.stream).  A batch larger than `max_message_bytes`
(the server's limit) is split at event boundaries.  Each message carries its number of events and
an id unique to this exporter (`<run id>-<sequence>`): a server that deduplicates by id (JetStream's
Nats-Msg-Id) stores a message that was sent twice once.

Delivery.  write_batch encodes in the caller's thread and queues the messages in memory (at most
`queue_bytes`); the sender publishes them with up to `window` awaiting their acknowledgement.  A
message is delivered when the server acknowledged it.  While the server is unreachable (or when
the queue is full), messages go to the spool, a directory of files (`spool_dir`, at most
`spool_bytes`), oldest first; after reconnection the spool is sent first, each file removed once
its message is acknowledged.  The spool outlives the process: a restart sends what the last run
left.  A message that fits neither the queue nor the spool is dropped and its events counted in
`lost`; so `events == delivered + lost + in the queue or spool` at all times (`stats()`).
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lbd.output.writer import OutputError

__all__ = ["Exporter", "Message", "Spool", "CONTENT_TYPES"]

log = logging.getLogger("lbd.output.exporter")

CONTENT_TYPES = {"json": "application/x-ndjson", "parquet": "application/vnd.apache.arrow.stream"}
NSC = 1024


@dataclass
class Message:
    """One message: its id, how many events it holds, its bytes; `spooled`: its spool file."""

    id: str
    events: int
    payload: bytes
    content_type: str
    spooled: Path | None = None


class Spool:
    """Messages waiting on disk, oldest first: one file per message, `<seq>.msg` (a header line
    `id events content-type`, then the payload), written to a temporary name and renamed.

    Invariants: `bytes` is the size of the files it holds (at most `max_bytes`); `events` their
    events; sequence numbers only grow, also across restarts (the next one follows the largest
    file name found).  Thread-safe (one lock)."""

    def __init__(self, directory: str | os.PathLike, max_bytes: int):
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._files: deque[tuple[int, Path, int, int]] = deque()    # (seq, path, size, events)
        self.bytes = 0
        self.events = 0
        self._seq = 0
        if max_bytes:
            try:
                self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as e:
                raise OutputError(e.errno or errno.EIO, f"cannot create spool directory {self.dir}: "
                                                        f"{e.strerror}") from None
            for p in sorted(self.dir.glob("*.msg")):
                try:
                    seq = int(p.stem)
                    with open(p, "rb") as f:
                        head = f.readline().split()
                    events = int(head[1])
                    size = p.stat().st_size
                except (ValueError, IndexError, OSError):
                    log.warning("spool: ignoring %s (not a spooled message)", p)
                    continue
                self._files.append((seq, p, size, events))
                self.bytes += size
                self.events += events
                self._seq = max(self._seq, seq)
            for p in self.dir.glob("*.tmp"):
                p.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self._files)

    def put(self, m: Message) -> bool:
        """Store m; False when it does not fit (the caller counts it lost)."""
        head = f"{m.id} {m.events} {m.content_type}\n".encode()
        size = len(head) + len(m.payload)
        with self._lock:
            if not self.max_bytes or self.bytes + size > self.max_bytes:
                return False
            self._seq += 1
            seq = self._seq
            path = self.dir / f"{seq:016d}.msg"
            tmp = path.with_suffix(".tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
                with open(fd, "wb") as f:
                    f.write(head)
                    f.write(m.payload)
                os.rename(tmp, path)
            except OSError as e:
                tmp.unlink(missing_ok=True)
                log.warning("spool: cannot write %s: %s", path, e.strerror)
                return False
            self._files.append((seq, path, size, m.events))
            self.bytes += size
            self.events += m.events
            return True

    def oldest(self, n: int) -> list[Message]:
        """Up to n of the oldest messages (they stay in the spool until remove())."""
        with self._lock:
            items = list(self._files)[:n]
        out = []
        for _, path, _, _ in items:
            try:
                data = path.read_bytes()
            except OSError:
                continue
            nl = data.index(b"\n")
            mid, events, ctype = data[:nl].decode().split(" ", 2)
            out.append(Message(mid, int(events), data[nl + 1:], ctype, spooled=path))
        return out

    def remove(self, path: Path) -> None:
        with self._lock:
            for k, (seq, p, size, events) in enumerate(self._files):
                if p == path:
                    del self._files[k]
                    self.bytes -= size
                    self.events -= events
                    break
            else:
                return
        path.unlink(missing_ok=True)


class Exporter:
    """Base of the exporters: encoding, the queue, the spool, the sender thread, the counts.

    Subclasses implement `_connect()` (a new connection; raise on failure), `_publish(messages)
    -> list[bool]` (True: acknowledged) and `_disconnect()` (after a failure and at the end),
    coroutines run on the sender's event loop; they may set `max_message_bytes` when they learn
    the server's limit.

    Invariants: every event given to write_batch is in exactly one of: delivered, lost, the queue,
    in flight, the spool (stats() shows it); the sender thread runs from the constructor to
    close(); only it publishes.
    """

    def __init__(self, name: str, fmt: str = "json", limit: int = 0, *, spool_dir: str | None = None,
                 spool_bytes: int = 1 << 30, queue_bytes: int = 64 << 20, window: int = 32,
                 max_message_bytes: int = 1 << 20, close_timeout: float = 10.0, capture_env: bool = False,
                 secret_pattern: str = ""):
        if fmt not in ("normal", "json", "parquet"):
            raise ValueError(f"format {fmt!r}: one of normal, json, parquet")
        self.name = name
        self.format = "parquet" if fmt == "parquet" else "json"
        self.content_type = CONTENT_TYPES[self.format]
        self.limit = limit
        self.env = (capture_env, secret_pattern)     # the environment as the text formats write it
        self.window = window
        self.max_message_bytes = max_message_bytes
        self.queue_bytes = queue_bytes
        self.close_timeout = close_timeout
        self.publish_timeout = 10.0   # most time one _publish/_connect/_disconnect call may take
        self.spool = Spool(spool_dir or ".", spool_bytes if spool_dir else 0)      # 0: no spool
        self._run_id = secrets.token_hex(6)
        self._seq = 0
        self._queue: deque[Message] = deque()
        self._queued_bytes = 0
        self._queued_events = 0
        self._inflight_events = 0
        self._lock = threading.Lock()
        self.events = 0           # events given to write_batch
        self.messages = 0         # messages made
        self.delivered = 0        # events acknowledged by the server
        self.delivered_messages = 0
        self.bytes = 0            # payload bytes acknowledged
        self.lost = 0             # events dropped: neither the queue nor the spool had room
        self.errors = 0           # failed publish attempts and connection failures
        self.spooled_total = 0    # events written to the spool (they may have been sent since)
        self.connected = False
        self.error: OutputError | None = None
        self.counts = np.zeros(NSC, dtype=np.int64)
        self._formatter = None
        self._closing = False
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._wake: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, name=f"lbd-export {name}", daemon=True)
        self._thread.start()
        self._ready.wait()

    # ---- the caller's side -------------------------------------------------------------------

    def write_batch(self, batch, mask=None) -> int:
        """Encode the batch's events (those with a true mask entry) into messages and queue them."""
        msgs = self.encode(batch, mask)
        n = sum(m.events for m in msgs)
        if not n:
            return 0
        nr = batch.events["nr"] if mask is None else batch.events["nr"][np.asarray(mask, dtype=bool)]
        self.counts += np.bincount(nr, minlength=NSC)[:NSC]
        with self._lock:
            self.events += n
            self.messages += len(msgs)
        for m in msgs:
            self._enqueue(m)
        return n

    def _enqueue(self, m: Message) -> None:
        """Queue m in memory; when the queue is full, or the server is away and the spool already
        holds messages, move the queue to the spool and m after it (the order is kept)."""
        with self._lock:
            if self._queued_bytes + len(m.payload) <= self.queue_bytes and (self.connected or not len(self.spool)):
                self._queue.append(m)
                self._queued_bytes += len(m.payload)
                self._queued_events += m.events
                m = None
        if m is not None:
            self._spool_queue()
            self._to_spool(m)
        self._loop.call_soon_threadsafe(self._wake.set)

    def _to_spool(self, m: Message) -> None:
        if m.spooled is not None:
            return
        if self.spool.put(m):
            with self._lock:
                self.spooled_total += m.events
            return
        with self._lock:
            self.lost += m.events
            log.debug("%s: %d events lost: the spool is full", self.name, m.events)

    def _next_id(self) -> str:
        self._seq += 1
        return f"{self._run_id}-{self._seq}"

    def encode(self, batch, mask=None) -> list[Message]:
        """The batch as messages of at most max_message_bytes (split at event boundaries)."""
        limit = max(1024, self.max_message_bytes - 512)      # room for the headers
        out: list[Message] = []
        if self.format == "json":
            if self._formatter is None:
                from lbd._format import Formatter

                self._formatter = Formatter("json", self.limit, capture_env=self.env[0], secret_pattern=self.env[1])
            self._formatter.format(batch, mask)
            data = self._formatter.getvalue()
            start = 0
            while start < len(data):
                end = len(data) if len(data) - start <= limit else data.rfind(b"\n", start, start + limit) + 1
                if end <= start:                          # one event longer than a message
                    end = data.index(b"\n", start) + 1
                chunk = data[start:end]
                out.append(Message(self._next_id(), chunk.count(b"\n"), chunk, self.content_type))
                start = end
            return out
        import pyarrow as pa

        from lbd.output.parquet import record_batch

        rb = record_batch(batch, mask, env=self.env)
        pieces = [rb] if rb.num_rows else []
        while pieces:
            piece = pieces.pop(0)
            sink = pa.BufferOutputStream()
            opts = pa.ipc.IpcWriteOptions(compression="zstd")
            with pa.ipc.new_stream(sink, piece.schema, options=opts) as w:
                w.write_batch(piece)
            payload = sink.getvalue().to_pybytes()
            if len(payload) > limit and piece.num_rows > 1:
                half = piece.num_rows // 2
                pieces[:0] = [piece.slice(0, half), piece.slice(half)]
                continue
            out.append(Message(self._next_id(), piece.num_rows, payload, self.content_type))
        return out

    def flush(self) -> None:
        """Nothing to do: messages are sent as they are made (close() waits for them)."""
        if self.error is not None:
            raise self.error

    def stats(self) -> dict[str, int]:
        """events = delivered + lost + queued + in flight + spooled (events of this run and any a
        previous run left in the spool, which `events` does not count)."""
        with self._lock:
            return {"events": self.events, "messages": self.messages, "delivered": self.delivered,
                    "delivered_messages": self.delivered_messages, "bytes": self.bytes, "lost": self.lost,
                    "errors": self.errors, "queued": self._queued_events, "in_flight": self._inflight_events,
                    "spooled": self.spool.events, "spool_bytes": self.spool.bytes,
                    "spooled_total": self.spooled_total,
                    "connected": int(self.connected)}

    def top_syscalls(self, n: int) -> list[tuple[str, int]]:
        from lbd.args import syscall_name

        order = np.argsort(-self.counts, kind="stable")[:n]
        return [(syscall_name(int(nr)), int(self.counts[nr])) for nr in order if self.counts[nr]]

    def close(self) -> None:
        """Send what is queued and spooled (waiting at most close_timeout while connected), spool
        what could not be sent, stop the sender."""
        if self._closed:
            return
        self._closed = True
        self._closing = True
        self._loop.call_soon_threadsafe(self._wake.set)
        self._thread.join(self.close_timeout + 30)
        st = self.stats()
        log.info("%s: %d events delivered in %d messages, %d lost, %d waiting in the spool",
                 self.name, st["delivered"], st["delivered_messages"], st["lost"], st["spooled"])

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- the sender thread -----------------------------------------------------------------------

    def _thread_main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._wake = asyncio.Event()
        self._ready.set()
        try:
            self._loop.run_until_complete(self._sender())
        finally:
            self._loop.close()

    def _take(self, n: int) -> list[Message]:
        with self._lock:
            out = []
            while self._queue and len(out) < n:
                m = self._queue.popleft()
                self._queued_bytes -= len(m.payload)
                self._queued_events -= m.events
                out.append(m)
            self._inflight_events += sum(m.events for m in out)
            return out

    def _spool_queue(self) -> None:
        """Move what waits in memory to the spool (the server is away, or we are leaving)."""
        for m in self._take(1 << 30):
            with self._lock:
                self._inflight_events -= m.events
            self._to_spool(m)

    async def _sleep(self, seconds: float) -> None:
        """Wait for seconds, or less when write_batch or close() wakes the sender."""
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _sender(self) -> None:
        """Publish the spool (oldest first), then the queue; on a failure spool and reconnect.
        After close(): go on until both are empty or close_timeout has passed, then spool the rest."""
        backoff = 0.05
        deadline = None
        while True:
            if self._closing and deadline is None:
                deadline = time.monotonic() + self.close_timeout
            if deadline is not None and (time.monotonic() > deadline or (not self._queue and not len(self.spool))):
                break
            if not self.connected:
                try:
                    await asyncio.wait_for(self._connect(), self.publish_timeout)
                    self.connected = True
                    backoff = 0.05
                    log.info("%s: connected", self.name)
                except Exception as e:                 # noqa: BLE001 - any failure: spool, retry
                    with self._lock:
                        self.errors += 1
                    log.debug("%s: cannot connect: %s", self.name, e)
                    self._spool_queue()
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
            batch = self.spool.oldest(self.window) if len(self.spool) else []
            if not batch:                              # the spool first: the oldest
                batch = self._take(self.window)
            if not batch:
                if deadline is None:
                    await self._sleep(0.2)
                continue
            try:   # bounded: a client library stuck on a dead connection must not stop the sender
                ok = await asyncio.wait_for(self._publish(batch), self.publish_timeout)
            except Exception as e:                     # noqa: BLE001 - timeout included
                log.debug("%s: publish failed: %s", self.name, e)
                ok = [False] * len(batch)
            failed = False
            for m, good in zip(batch, ok):
                if good:
                    with self._lock:
                        self.delivered += m.events
                        self.delivered_messages += 1
                        self.bytes += len(m.payload)
                        if m.spooled is None:
                            self._inflight_events -= m.events
                    if m.spooled is not None:
                        self.spool.remove(m.spooled)
                else:
                    failed = True
                    if m.spooled is None:
                        with self._lock:
                            self._inflight_events -= m.events
                        self._to_spool(m)
            if failed:
                with self._lock:
                    self.errors += 1
                self.connected = False
                log.info("%s: the server does not acknowledge: spooling until it does", self.name)
                self._spool_queue()
                try:
                    await asyncio.wait_for(self._disconnect(), self.publish_timeout)
                except Exception:                      # noqa: BLE001
                    pass
        self._spool_queue()
        self._closing = True
        try:
            await asyncio.wait_for(self._disconnect(), self.publish_timeout)
        except Exception:                              # noqa: BLE001
            pass
        self.connected = False

    # ---- what a subclass implements ------------------------------------------------------------

    async def _connect(self) -> None:
        raise NotImplementedError

    async def _publish(self, messages: list[Message]) -> list[bool]:
        raise NotImplementedError

    async def _disconnect(self) -> None:
        raise NotImplementedError
