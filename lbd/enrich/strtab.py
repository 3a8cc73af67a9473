"""StringArena: the string table behind ``batch.strtab``, with every string stored once."""
from __future__ import annotations

import numpy as np


def cut_utf8(b: bytes, limit: int) -> bytes:
    """At most `limit` bytes of UTF-8 text `b`, never ending inside a character."""
    if len(b) <= limit:
        return b
    b = b[:limit]
    # drop a trailing incomplete sequence (at most 3 bytes: a lead byte and its continuations)
    for k in range(1, min(4, len(b)) + 1):
        c = b[-k]
        if c < 0x80:
            break
        if c >= 0xC0:
            need = 2 if c < 0xE0 else 3 if c < 0xF0 else 4
            if need > k:
                b = b[:-k]
            break
    return b


class StringArena:
    """Strings stored as UTF-8 + NUL; `add(s)` returns (off, len) and the same pair for the same s.

    Strings persist from one batch to the next within an *epoch*: offsets handed out stay valid
    (callers may cache them per `epoch`), and `array()` copies only what was added since its last
    call into a numpy buffer.  `reset()` starts a new epoch (the owner does it when the arena
    passed its size bound): the buffer is then reused from its start, so a view returned by
    `array()` is valid until the next `reset()` (a batch's lifetime, by the owner's contract).
    `limit` cuts every string to that many bytes (0 = no limit).
    """

    def __init__(self, limit: int = 0, initial: int = 1 << 16):
        self.limit = limit
        self._buf = np.zeros(initial, dtype=np.uint8)
        self.epoch = 0
        self.reset()

    def reset(self) -> None:
        self.epoch += 1
        self._index: dict[str, tuple[int, int]] = {}
        self._chunks: list[bytes] = []
        self._size = 0
        self._flushed = 0
        self.add("")  # offset 0 is the empty string: (0, 0)

    def add(self, s: str) -> tuple[int, int]:
        ref = self._index.get(s)
        if ref is None:
            b = s.encode("utf-8", "backslashreplace")
            if self.limit and len(b) > self.limit:
                b = cut_utf8(b, self.limit)
            ref = (self._size, len(b))
            self._chunks.append(b + b"\0")
            self._size += len(b) + 1
            self._index[s] = ref
        return ref

    def __len__(self) -> int:
        return self._size

    def array(self) -> np.ndarray:
        """Every string of the epoch as a uint8 array (a view of the reused buffer)."""
        if self._chunks:
            data = b"".join(self._chunks)
            self._chunks = []
            n = self._size
            if n > len(self._buf):
                buf = np.zeros(max(n, 2 * len(self._buf)), dtype=np.uint8)
                buf[: self._flushed] = self._buf[: self._flushed]
                self._buf = buf
            self._buf[self._flushed: n] = np.frombuffer(data, dtype=np.uint8)
            self._flushed = n
        return self._buf[: self._size]
