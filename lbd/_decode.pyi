"""Type stub of lbd/_decode.pyx: the bulk consumer of lbd's BPF ring buffer and its batches."""
from __future__ import annotations

from types import TracebackType
from typing import Any, Iterable

import numpy as np
import numpy.typing as npt

#: lbd.record.EVENT_DTYPE: one row of a batch's table (the C struct lbd_event)
EVENT_DTYPE: np.dtype
#: EVENT_DTYPE plus `syscall_id`, a second name for the bytes of `nr`: the dtype of Batch.events
EVENT_VIEW_DTYPE: np.dtype
#: bytes of Falco's plugin-event prefix in front of each record in the arena (38)
FALCO_PREFIX_SIZE: int
#: arena offset of the first Falco prefix (2: records are then 8-byte aligned)
ARENA_OFFSET: int
#: Falco event type written into each prefix (PPME_PLUGINEVENT_E, 322)
PLUGIN_EVENT_TYPE: int
#: largest record accepted: header + LBD_PAYLOAD_MAX bytes
RECORD_MAX_SIZE: int
#: True in a LBD_DEBUG=1 build (internal pointer checks abort on failure)
DEBUG: bool
#: Ring.last_stop: the ring was emptied
STOP_EMPTY: int
#: Ring.last_stop: the next record is reserved but not committed yet
STOP_BUSY: int
#: Ring.last_stop: the batch had no room (events or arena bytes); records remain in the ring
STOP_FULL: int
#: Rings.last_stop: records wait in a ring for the order (another ring may still write older ones)
STOP_HELD: int

_Index = None | npt.ArrayLike

class Batch:
    """Arena of records + numpy table of their headers, allocated once and reused.

    Valid until the next Ring.fill() into this batch or release(); copy what must outlive it.
    """

    arena: np.ndarray          # uint8[arena_bytes], read-only
    table: np.ndarray          # EVENT_DTYPE[capacity], read-only; rows [0, n) are this fill's
    ptrs: np.ndarray           # uint64[capacity], read-only: address of each event's Falco prefix
    capacity: int
    arena_bytes: int
    n: int
    used: int
    generation: int
    plugin_id: int             # written into each Falco prefix (0: Falco fills it in)

    def __init__(self, capacity: int = 512, arena_bytes: int = 0) -> None: ...
    def __len__(self) -> int: ...
    @property
    def events(self) -> np.ndarray:
        """Read-only view (EVENT_VIEW_DTYPE) of this batch's events."""
    def record(self, i: int) -> memoryview: ...
    def falco_event(self, i: int) -> memoryview: ...
    def address(self) -> int: ...
    def release(self) -> None: ...
    def arena_bytes_used(self) -> memoryview: ...
    def load(self, data: Any, cpu_ring: Any = None, wall_offset: int = 0,
             valid_nrs: Iterable[int] | None = None) -> int: ...
    def gather(self, slot: int, idx: _Index = None) -> tuple[np.ndarray, np.ndarray]:
        """(data uint8[total], offsets int64[m + 1]): argument slot's payloads, concatenated."""
    def strings(self, slot: int, idx: _Index = None, missing: Any = None,
                errors: str = "backslashreplace") -> np.ndarray:
        """Object array of str (UTF-8 decoded payloads); `missing` where there is none."""
    def payloads(self, slot: int, idx: _Index = None, missing: Any = None) -> np.ndarray:
        """Object array of bytes; `missing` where there is no payload."""
    def payloads_fixed(self, slot: int, width: int, idx: _Index = None) -> np.ndarray:
        """numpy S<width> array of the payloads' first `width` bytes."""

class Ring:
    """One of lbd's BPF ring buffers (or an in-memory image of one), read in bulk."""

    wall_offset: int
    last_stop: int
    late: int
    records: int
    malformed: int
    discarded: int
    resyncs: int
    bytes: int

    def __init__(self, map_fd: int = -1, size: int = 0, valid_nrs: Iterable[int] | None = None,
                 wall_offset: int = 0, index: int = 0) -> None: ...
    @staticmethod
    def from_image(cons: Any, prod: Any, data: Any, valid_nrs: Iterable[int] | None = None,
                   wall_offset: int = 0, index: int = 0) -> Ring: ...
    @property
    def ring_size(self) -> int: ...
    @property
    def index(self) -> int: ...
    @property
    def map_fd(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    @property
    def consumer_pos(self) -> int: ...
    @property
    def producer_pos(self) -> int: ...
    def pending_bytes(self) -> int: ...
    def wait(self, timeout_ms: int) -> bool: ...
    def fill(self, batch: Batch, max_events: int = 0, append: bool = False, release_gil: bool = True) -> int: ...
    def close(self) -> None: ...
    def __enter__(self) -> Ring: ...
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...
    def stats(self) -> dict[str, int]: ...


class Rings:
    """Several Rings merged in emit-time (ets) order into one Batch; one epoll over all."""

    window_ns: int
    wall_offset: int
    late: int
    last_stop: int

    def __init__(self, rings: Iterable[Ring], window_ns: int = 1000000, wall_offset: int = 0) -> None: ...
    @property
    def count(self) -> int: ...
    def wait(self, timeout_ms: int) -> bool: ...
    def fill(self, batch: Batch, max_events: int = 0, append: bool = False,
             horizon_ns: int | None = None, release_gil: bool = True) -> int: ...
    def pending_bytes(self) -> int: ...
    def stats(self) -> dict[str, Any]: ...
    def close(self) -> None: ...
