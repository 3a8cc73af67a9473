"""The two decoders behind one interface, for the differential suites (test_decode*.py, fuzz).

`Drainer(image, decoder, capacity=..., arena_bytes=..., ...)` consumes a ring image in batches
until the ring is empty or a busy record stops it, with either the compiled consumer ("cython":
lbd._decode.Ring + lbd.batch.Batch) or the pure-Python one ("reference": lbd.reference), and
returns the events of each batch as the reference's event dicts.  Both keep their counters across
drains, so a test can drain, change the image, and drain again.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lbd import record, reference

DECODERS = ("cython", "reference")


def effective_arena(capacity: int, arena_bytes: int = 0) -> int:
    """The arena size a Batch(capacity, arena_bytes) really has (room for one largest record)."""
    a = arena_bytes or capacity * 640
    return max(a, reference.ARENA_OFFSET + ((reference.FALCO_PREFIX_SIZE + reference.RECORD_MAX + 7) & ~7))


@dataclass
class Drained:
    batches: list = field(default_factory=list)     # events of each batch
    stops: list = field(default_factory=list)       # why each fill stopped

    @property
    def events(self) -> list:
        return [e for b in self.batches for e in b]


class Drainer:
    def __init__(self, image, decoder: str, *, capacity: int = 512, arena_bytes: int = 0,
                 valid_nrs=None, wall_offset: int = 0, plugin_id: int = 0):
        self.image, self.decoder = image, decoder
        self.capacity = capacity
        self.arena_bytes = effective_arena(capacity, arena_bytes)
        self.valid_nrs, self.wall_offset, self.plugin_id = valid_nrs, wall_offset, plugin_id
        if decoder == "cython":
            from lbd.batch import Batch

            self.ring = image.ring(valid_nrs, wall_offset)
            self.batch = Batch(capacity, arena_bytes)
            self.batch.plugin_id = plugin_id
            assert self.batch.arena_bytes == self.arena_bytes
        else:
            self._stats = dict(records=0, malformed=0, discarded=0, resyncs=0, bytes=0)

    def fill(self) -> tuple[list, str]:
        if self.decoder == "cython":
            from lbd import _decode

            self.ring.fill(self.batch)
            stop = {_decode.STOP_EMPTY: "empty", _decode.STOP_BUSY: "busy",
                    _decode.STOP_FULL: "full"}[self.ring.last_stop]
            return reference.from_batch(self.batch), stop
        res = reference.decode_ring_image(self.image, valid_nrs=self.valid_nrs, wall_offset=self.wall_offset,
                                          max_events=self.capacity, arena_bytes=self.arena_bytes,
                                          plugin_id=self.plugin_id)
        for k, v in res.stats.items():
            self._stats[k] += v
        return res.events, res.stop

    def drain(self, max_fills: int = 100000) -> Drained:
        out = Drained()
        for _ in range(max_fills):
            events, stop = self.fill()
            out.batches.append(events)
            out.stops.append(stop)
            if stop != "full":
                return out
        raise AssertionError("the decoder keeps reporting a full batch")

    @property
    def stats(self) -> dict:
        if self.decoder == "cython":
            return self.ring.stats()
        return dict(self._stats)


def check_case(ev: dict, case, wall_offset: int = 0) -> None:
    """An event dict agrees with what ringimage says the record means."""
    for k, v in case.fields.items():
        want = (v + wall_offset) & (2**64 - 1) if k == "ts" else v
        assert ev[k] == want, (case.name, k, ev[k], want)
    assert ev["syscall_id"] == case.nr
    assert ev["name"] == case.name
    assert ev["decoded"] == case.args, (case.name, ev["decoded"], case.args)
    assert ev["payloads"] == case.payloads, case.name
    assert ev["record"] == case.record
    trunc = tuple(k for k in range(record.MAX_ARGS) if ev["flags"] >> (record.F_TRUNC_SHIFT + k) & 1)
    assert trunc == case.truncated
