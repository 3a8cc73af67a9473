"""Capture files: record what lbd captured and play it back (`lbd record`, `lbd replay`,
`lbd run --record`, `lbd.Collector(replay=...)`, the Falco plugin's open_params `replay`).

A capture keeps the records exactly as the rings delivered them, batch by batch (the batch arena's
bytes: each event's Falco prefix and record, copied raw), and everything decoding and enrichment
need to give the same output again on another day or host: the syscall table's and the record
layout's versions, the clock offset that turns the records' boot times into wall time, and the
answers the process tables got from the host (the /proc scan at start, a never-seen process read
later, user and group names, the names of fds no event named), in the order they were asked.
Replaying feeds the same batches to the same state engine with those answers, so every output
format gives byte for byte what the live run gave.

File format (version 1; all integers little-endian)::

    header   8 bytes  magic b"LBDCAP\\x00\\x01"
             4 bytes  format version (1)
             4 bytes  flags (bit 0: chunks are zstd-compressed)
             4 bytes  length of the metadata, then the metadata: UTF-8 JSON
                      {"lbd": version, "record_version", "table_sha256", "wall_offset_ns",
                       "created_ns", "host", "kernel", "loader", "rings", "config": {...}}
    chunks   4 bytes  magic b"LBDC"
             4 bytes  type: 1 batch, 2 answers, 3 end
             8 bytes  raw length, 8 bytes stored length (zstd frame when compressed), then the data
             batch    u32 events, u32 arena bytes, the arena bytes, u32 cpu_ring per event
             answers  UTF-8 JSON: [[method, [args], result], ...] (bytes as {"b64": "..."})
             end      UTF-8 JSON: the capture's final stats (Collector.stats())

A reader checks the magic, the format and record versions and the syscall table's hash, and
validates every record of a batch (lbd._decode.Batch.load) and every answer's shape: a capture
file is not trusted.  Answers are served by (method, arguments) in the order they were recorded;
a question the capture has no answer for gets "unknown" (None), as a process gone from /proc would.
"""
from __future__ import annotations

import base64
import collections
import hashlib
import json
import os
import platform
import socket
import struct
import threading
import time
from typing import Iterator

import numpy as np

from lbd import record
from lbd._paths import PACKAGE_DIR

MAGIC = b"LBDCAP\x00\x01"
CHUNK_MAGIC = b"LBDC"
FORMAT_VERSION = 1
F_ZSTD = 1
T_BATCH, T_ANSWERS, T_END = 1, 2, 3
_HEAD = struct.Struct("<8sIII")
_CHUNK = struct.Struct("<4sIQQ")
MAX_META = 1 << 20
MAX_CHUNK = 1 << 31
#: zstd's level for captures (bench/test_bench_record.py: on host-like records levels -3 to 1 all
#: cost about the same CPU, 1 gives the smallest files of them: 0.14 of the raw size)
LEVEL = 1


class CaptureError(ValueError):
    """A capture file cannot be written or read; the message says which and why in one line."""


def table_sha256() -> str:
    """The syscall table's hash: a capture is decoded with the table it was made with."""
    return hashlib.sha256((PACKAGE_DIR / "syscall_table.json").read_bytes()).hexdigest()


def _enc(v):
    if isinstance(v, bytes):
        return {"b64": base64.b64encode(v).decode()}
    if isinstance(v, (list, tuple)):
        return [_enc(x) for x in v]
    if isinstance(v, dict):
        return {k: _enc(x) for k, x in v.items()}
    return v


def _dec(v):
    if isinstance(v, dict):
        if set(v) == {"b64"}:
            return base64.b64decode(v["b64"], validate=True)
        return {k: _dec(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_dec(x) for x in v]
    return v


def _tuplify(v):
    """JSON gives lists; the engine's answers are tuples (the procfs entry, its fd rows)."""
    if isinstance(v, list):
        return tuple(_tuplify(x) for x in v)
    return v


class CaptureWriter:
    """Writes a capture file (see the module docstring).  The file must not exist: it is created
    0600, without following a symlink, and never appended to.

    Invariants: the header is written at open; chunks reach the file whole and in the order of
    the write_*() calls; close() writes the end chunk (once) and closes the file.  After a write
    error the writer is broken and raises CaptureError again.

    Compressed chunks are compressed by `workers` threads (zstd releases the GIL), each chunk its
    own frame as before: write_batch() copies the batch's bytes and returns while earlier chunks
    are still being compressed (at most 2 x workers pending; a full pipeline waits for the oldest),
    so a recording keeps up with the capture on several cores.  A write error is raised by the
    write_*() or close() call that reaches it."""

    def __init__(self, path: str | os.PathLike, meta: dict, *, compress: str = "zstd", level: int = LEVEL,
                 workers: int | None = None):
        if compress not in ("zstd", "none"):
            raise CaptureError(f"capture compression {compress!r}: zstd or none")
        self.path = os.fspath(path)
        self._z = None
        self._pool = None
        self._pending: collections.deque = collections.deque()
        if compress == "zstd":
            import zstandard

            self._z = zstandard.ZstdCompressor(level=level)
            n = workers if workers is not None else min(4, max(1, (os.cpu_count() or 1)))
            if n > 1:
                from concurrent.futures import ThreadPoolExecutor

                local = threading.local()

                def compress_one(raw: bytes) -> bytes:
                    z = getattr(local, "z", None)
                    if z is None:       # a ZstdCompressor is not thread-safe: one per worker
                        z = local.z = zstandard.ZstdCompressor(level=level)
                    return z.compress(raw)

                self._compress_one = compress_one
                self._pool = ThreadPoolExecutor(n, thread_name_prefix="lbd-capture-zstd")
                self._depth = 2 * n
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise CaptureError(f"cannot create capture file {self.path}: {e.strerror}") from None
        self.batches = 0
        self.events = 0
        self.bytes = 0
        self.closed = False
        full = dict(meta)
        full.update(lbd=_version(), record_version=record.VERSION, table_sha256=table_sha256(),
                    created_ns=time.time_ns(), host=socket.gethostname(), kernel=platform.release())
        raw = json.dumps(full, separators=(",", ":")).encode()
        self._write(_HEAD.pack(MAGIC, FORMAT_VERSION, F_ZSTD if self._z else 0, len(raw)) + raw)

    def _write(self, data) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
                self.bytes += n
        except OSError as e:
            self.closed = True
            os.close(self.fd)
            raise CaptureError(f"cannot write capture file {self.path}: {e.strerror}") from None

    def _chunk(self, kind: int, *parts) -> None:
        if self.closed:
            self._stop_pool()
            raise CaptureError(f"capture file {self.path} is closed")
        raw = b"".join(bytes(p) for p in parts)
        if self._pool is None:
            data = self._z.compress(raw) if self._z is not None else raw
            self._write(_CHUNK.pack(CHUNK_MAGIC, kind, len(raw), len(data)))
            self._write(data)
            return
        self._pending.append((kind, len(raw), self._pool.submit(self._compress_one, raw)))
        self._drain(self._depth)

    def _drain(self, keep: int) -> None:
        """Write the compressed chunks in order: those done, and the oldest until at most `keep`
        are pending."""
        q = self._pending
        try:
            while q and (len(q) > keep or q[0][2].done()):
                kind, n, fut = q.popleft()
                data = fut.result()
                self._write(_CHUNK.pack(CHUNK_MAGIC, kind, n, len(data)))
                self._write(data)
        except CaptureError:
            self._stop_pool()
            raise

    def _stop_pool(self) -> None:
        pool, self._pool = self._pool, None
        self._pending.clear()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def write_batch(self, batch) -> None:
        """One batch, as its arena holds it (raw copy)."""
        n = len(batch)
        if not n:
            return
        arena = batch.arena_bytes_used()
        rings = np.ascontiguousarray(batch.events["cpu_ring"], dtype="<u4")
        self._chunk(T_BATCH, struct.pack("<II", n, len(arena)), arena, rings.tobytes())
        self.batches += 1
        self.events += n

    def write_answers(self, answers: list) -> None:
        """The host's answers to the state engine since the last batch (see Recorder)."""
        if answers:
            self._chunk(T_ANSWERS, json.dumps(_enc(answers), separators=(",", ":")).encode())

    def close(self, stats: dict | None = None) -> None:
        if self.closed:
            self._stop_pool()
            return
        try:
            self._chunk(T_END, json.dumps(_enc(stats or {}), separators=(",", ":"), default=str).encode())
            if self._pool is not None:
                self._drain(0)
        finally:
            self._stop_pool()
            if not self.closed:
                self.closed = True
                os.close(self.fd)


def _version() -> str:
    from lbd import __version__

    return __version__


class CaptureReader:
    """Reads a capture file: `meta` (the header's JSON), then `chunks()` yields ("batch",
    (events, arena bytes, cpu_ring array)), ("answers", list) and ("end", stats) in file order."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as e:
            raise CaptureError(f"cannot open capture file {self.path}: {e.strerror}") from None
        self.f = os.fdopen(fd, "rb", buffering=1 << 20)
        head = self.f.read(_HEAD.size)
        if len(head) < _HEAD.size or head[:8] != MAGIC:
            self.f.close()
            raise CaptureError(f"{self.path}: not an lbd capture file (no LBDCAP header)")
        _, version, self.flags, mlen = _HEAD.unpack(head)
        if version != FORMAT_VERSION:
            self.f.close()
            raise CaptureError(f"{self.path}: capture format version {version}, this lbd reads {FORMAT_VERSION}")
        if mlen > MAX_META:
            self.f.close()
            raise CaptureError(f"{self.path}: metadata of {mlen} bytes, at most {MAX_META}")
        try:
            self.meta = json.loads(self.f.read(mlen).decode())
        except (UnicodeDecodeError, ValueError) as e:
            self.f.close()
            raise CaptureError(f"{self.path}: metadata is not JSON ({e})") from None
        if not isinstance(self.meta, dict):
            self.f.close()
            raise CaptureError(f"{self.path}: metadata is not a JSON object")
        if self.meta.get("record_version") != record.VERSION:
            self.f.close()
            raise CaptureError(f"{self.path}: records of version {self.meta.get('record_version')}, this lbd "
                               f"reads version {record.VERSION}")
        if self.meta.get("table_sha256") != table_sha256():
            self.f.close()
            raise CaptureError(f"{self.path}: recorded with another syscall table (lbd {self.meta.get('lbd')}); "
                               "replay it with that version")
        self._z = None
        if self.flags & F_ZSTD:
            import zstandard

            self._z = zstandard.ZstdDecompressor()

    @property
    def wall_offset(self) -> int:
        return int(self.meta.get("wall_offset_ns", 0))

    def chunks(self) -> Iterator[tuple[str, object]]:
        k = 0
        while True:
            head = self.f.read(_CHUNK.size)
            if len(head) < _CHUNK.size:
                return                             # a capture cut short (no end chunk): what is whole
            magic, kind, raw_len, stored = _CHUNK.unpack(head)
            if magic != CHUNK_MAGIC or raw_len > MAX_CHUNK or stored > MAX_CHUNK:
                raise CaptureError(f"{self.path}: chunk {k} is damaged")
            data = self.f.read(stored)
            if len(data) < stored:
                return                             # the last chunk was not written whole
            if self._z is not None:
                try:
                    data = self._z.decompress(data, max_output_size=raw_len)
                except Exception as e:  # zstandard.ZstdError
                    raise CaptureError(f"{self.path}: chunk {k} does not decompress ({e})") from None
            if len(data) != raw_len:
                raise CaptureError(f"{self.path}: chunk {k}: {len(data)} bytes, its header says {raw_len}")
            k += 1
            if kind == T_BATCH:
                if raw_len < 8:
                    raise CaptureError(f"{self.path}: batch chunk {k} too short")
                n, alen = struct.unpack_from("<II", data)
                if 8 + alen + 4 * n != raw_len:
                    raise CaptureError(f"{self.path}: batch chunk {k}: sizes do not add up")
                arena = memoryview(data)[8: 8 + alen]
                rings = np.frombuffer(data, dtype="<u4", count=n, offset=8 + alen)
                yield "batch", (n, arena, rings)
            elif kind == T_ANSWERS:
                try:
                    yield "answers", _dec(json.loads(bytes(data).decode()))
                except (UnicodeDecodeError, ValueError) as e:
                    raise CaptureError(f"{self.path}: answers chunk {k} is not JSON ({e})") from None
            elif kind == T_END:
                try:
                    yield "end", _dec(json.loads(bytes(data).decode()))
                except (UnicodeDecodeError, ValueError):
                    yield "end", {}
                return
            else:
                raise CaptureError(f"{self.path}: chunk {k} of unknown type {kind}")

    def close(self) -> None:
        self.f.close()


# ---- the state engine's questions to the host, recorded and answered again ---------------------

#: the Enricher methods the engine asks the host through (lbd.enrich.enricher.Enricher)
_ASKS = ("load", "user", "group", "fd_link", "cmdline")


def recording_enricher(config, selection=None, **kw):
    """An Enricher whose questions to the host (the /proc scan, processes never seen, names) are
    answered by the host as usual and kept in `answers` until take_answers() (the recorder writes
    them before the batch that needed them)."""
    from lbd.enrich import Enricher

    class RecordingEnricher(Enricher):
        def __init__(self, *a, **k):
            self.answers: list = []
            super().__init__(*a, **k)

        def scan(self) -> int:
            n = 0
            for pid in self.procfs.pids():
                info = self.procfs.process(pid)
                self.answers.append(["scan", [pid], info])
                if info is not None:
                    self._engine.seed(pid, info)
                    n += 1
            self.scanned += n
            return n

        def take_answers(self) -> list:
            out, self.answers = self.answers, []
            return out

    for name in _ASKS:
        def ask(self, *args, _name=name):
            result = getattr(Enricher, _name)(self, *args)
            self.answers.append([_name, list(args), result])
            return result
        setattr(RecordingEnricher, name, ask)
    return RecordingEnricher(config, selection=selection, **kw)


def replaying_enricher(config, **kw):
    """An Enricher that asks nothing of this host: feed() it the recorded answers before each
    batch; a question without a recorded answer gets None (unknown)."""
    from lbd.enrich import Enricher

    class ReplayingEnricher(Enricher):
        def __init__(self, *a, **k):
            self._queue: dict = {}
            super().__init__(*a, scan=False, **k)

        def feed(self, answers: list) -> None:
            for entry in answers:
                if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[1], list)):
                    raise CaptureError("a recorded answer is not [method, [args], result]")
                method, args, result = entry
                if method == "scan":
                    if not (len(args) == 1 and isinstance(args[0], int)):
                        raise CaptureError("a recorded scan answer has no pid")
                    if result is not None:
                        self._engine.seed(args[0], _tuplify(result))
                        self.scanned += 1
                    continue
                if method not in _ASKS:
                    raise CaptureError(f"a recorded answer to an unknown question {method!r}")
                self._queue.setdefault((method, tuple(args)), []).append(_tuplify(result))

        def _answer(self, method: str, args: tuple):
            q = self._queue.get((method, args))
            return q.pop(0) if q else None

        def load(self, pid):
            return self._answer("load", (pid,))

        def user(self, uid):
            got = self._answer("user", (uid,))
            return got if isinstance(got, str) else str(uid)

        def group(self, gid):
            got = self._answer("group", (gid,))
            return got if isinstance(got, str) else str(gid)

        def fd_link(self, pid, fd):
            return self._answer("fd_link", (pid, fd))

        def cmdline(self, pid):
            return self._answer("cmdline", (pid,))

    return ReplayingEnricher(config, **kw)


class Recorder:
    """Records a live Collector's batches (and its enricher's answers) to a capture file."""

    def __init__(self, path, collector, *, compress: str = "zstd"):
        col = collector
        meta = {"wall_offset_ns": col.wall_offset, "loader": col.probe.kind if col.probe else None,
                "rings": col.probe.nrings if col.probe else 0, "config": col.config.to_dict()}
        self.writer = CaptureWriter(path, meta, compress=compress)
        self.enricher = col.enricher if hasattr(col.enricher, "take_answers") else None

    def write(self, batch) -> None:
        if self.enricher is not None:
            self.writer.write_answers(self.enricher.take_answers())
        self.writer.write_batch(batch)

    def close(self, stats: dict | None = None) -> None:
        if self.enricher is not None and not self.writer.closed:
            self.writer.write_answers(self.enricher.take_answers())
        self.writer.close(stats)
