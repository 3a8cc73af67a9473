"""The reference decoder: lbd's ring-buffer records decoded in plain Python (struct and numpy).

It reads the same ring layout as the compiled consumer (lbd/_decode.pyx) and applies the same
rules, written the plain way: it wraps around the ring's end by hand instead of relying on the
double mapping, unpacks each header with struct, and decodes every argument with lbd.args.
Differential tests (tests/unit/test_decode.py) run one suite against both and require them to
agree event for event; it is also the readable definition of what the fast path must do.

    result = decode_image(cons, prod, data)          # data: the ring's 2 * size bytes
    result.events   # [{"nr": 257, "name": "openat", "decoded": {...}, "payloads": (...), ...}]
    result.stats    # {"records", "malformed", "discarded", "resyncs", "bytes"}
    result.cons     # the consumer position after it

The rules, in order, for the consumer position `cons` and the producer position `prod`:

1. cons and prod must be multiples of 8 with 0 <= prod - cons <= size; otherwise nothing between
   them can be parsed: count one malformed record and one resync and move cons to prod.
2. While cons < prod: stop ("full") when max_events events were taken.  The ring header at cons
   is a u32 length word (bit 31 busy, bit 30 discard) and a u32 page offset.  Busy: stop
   ("busy"), the record is still being written and everything after it waits.  A length whose
   8-aligned total (with the 8-byte header) exceeds prod - cons: malformed + resync, cons = prod.
   Discarded: count it, skip it.
3. The record (length rlen) is valid when HDR_SIZE <= rlen <= HDR_SIZE + LBD_PAYLOAD_MAX, its
   `size` field equals rlen, `version` is LBD_RECORD_VERSION, `nr` is a known number (the syscall
   table and the sched pseudo numbers, or valid_nrs), `nargs` <= 6, `dir` is '<' or '>', and each
   slot with a non-zero length has HDR_SIZE <= off and off + len <= rlen.  Otherwise: malformed,
   skipped.
4. A valid record takes align8(38 + rlen) arena bytes; if the arena (arena_bytes, counted from
   offset 2) has no room: stop ("full"), the record stays.  Else it becomes an event.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from lbd import args as _args, record, syscalls

__all__ = ["Result", "decode_image", "decode_ring_image", "from_batch", "FALCO_PREFIX_SIZE",
           "PLUGIN_EVENT_TYPE", "ARENA_OFFSET", "EVENT_KEYS"]

HDR = record.HDR_DTYPE
HDR_SIZE = record.HDR_SIZE
RECORD_MAX = HDR_SIZE + record.PAYLOAD_MAX
FALCO_PREFIX_SIZE = 38          # ss_plugin_event (26 bytes, packed) + 3 x u32
PLUGIN_EVENT_TYPE = 322         # PPME_PLUGINEVENT_E
ARENA_OFFSET = 2                # the first Falco prefix's offset in a batch arena
BUSY_BIT, DISCARD_BIT = 1 << 31, 1 << 30
_FALCO = struct.Struct("<QQIHIIII")
_HDR_FIELDS = [n for n in HDR.names if n not in ("args", "slot", "xslot")]
_FIXED = struct.Struct("<HHHBBIIIIIIQQq16s6Q12HQQIII2H")
assert _FIXED.size == HDR_SIZE, "lbd.reference's header format differs from lbd.record.HDR_DTYPE"

#: the keys of every event dict (both decoders)
EVENT_KEYS = tuple(_HDR_FIELDS) + ("args", "slot", "xslot", "syscall_id", "name", "decoded", "payloads",
                                   "record", "falco")


def _default_valid() -> frozenset[int]:
    return frozenset([sc.nr for sc in syscalls.TABLE]
                     + [record.NR_SCHED_FORK, record.NR_SCHED_EXEC, record.NR_SCHED_EXIT])


def _align8(n: int) -> int:
    return (n + 7) & ~7


@dataclass
class Result:
    """What one drain produced: events (dicts with EVENT_KEYS), counters, the new consumer
    position and why it stopped ("empty", "busy", "full")."""

    events: list = field(default_factory=list)
    stats: dict = field(default_factory=lambda: dict(records=0, malformed=0, discarded=0, resyncs=0, bytes=0))
    cons: int = 0
    stop: str = "empty"


def _parse(rec: bytes, wall_offset: int, plugin_id: int) -> dict:
    v = _FIXED.unpack(rec[:HDR_SIZE])
    ev = dict(zip(_HDR_FIELDS[:15], v[:15]))
    ev["comm"] = ev["comm"].rstrip(b"\0")
    ev["ts"] = (ev["ts"] + wall_offset) & (2**64 - 1)
    ev["args"] = tuple(v[15:21])
    ev["slot"] = tuple((v[21 + 2 * i], v[22 + 2 * i]) for i in range(record.MAX_ARGS))
    ev.update(zip(_HDR_FIELDS[15:], v[33:38]))
    ev["xslot"] = (v[38], v[39])
    ev["syscall_id"] = ev["nr"]
    ev["name"] = _args.syscall_name(ev["nr"])
    payloads = tuple(rec[off: off + ln] if ln else None for off, ln in ev["slot"])
    ev["payloads"] = payloads
    ev["decoded"] = _args.decode_args(ev["nr"], ev["flags"], ev["args"], payloads, [off for off, _ in ev["slot"]])
    ev["record"] = bytes(rec)
    ev["falco"] = _FALCO.pack(ev["ts"], ev["tid"], FALCO_PREFIX_SIZE + len(rec), PLUGIN_EVENT_TYPE, 2, 4,
                              len(rec), plugin_id) + bytes(rec)
    return ev


def _valid(rec: bytes, valid: frozenset[int]) -> bool:
    rlen = len(rec)
    if not HDR_SIZE <= rlen <= RECORD_MAX:
        return False
    version, size, nr, dir_, nargs = struct.unpack_from("<HHHBB", rec)
    if size != rlen or version != record.VERSION or nr not in valid or nargs > record.MAX_ARGS:
        return False
    if dir_ not in (record.DIR_EXIT, record.DIR_ENTER):
        return False
    slots = struct.unpack_from("<12H", rec, HDR.fields["slot"][1]) + struct.unpack_from(
        "<2H", rec, HDR.fields["xslot"][1])
    for i in range(record.MAX_ARGS + 1):          # the six argument slots and the extra one
        off, ln = slots[2 * i], slots[2 * i + 1]
        if ln and (off < HDR_SIZE or off + ln > rlen):
            return False
    return True


def decode_image(cons: int, prod: int, data, *, valid_nrs=None, wall_offset: int = 0,
                 max_events: int | None = None, arena_bytes: int | None = None,
                 plugin_id: int = 0) -> Result:
    """Decode the ring image between cons and prod (see the module docstring for the rules).

    data: the ring's data, 2 * size bytes as mapped (only the first half is read).  max_events /
    arena_bytes: the batch's limits (None: no limit).  Does not write anything back.
    """
    buf = memoryview(np.asarray(data, dtype=np.uint8)).cast("B")
    if len(buf) % 2:
        raise ValueError("data must be 2 * size bytes")
    size = len(buf) // 2
    ring = bytes(buf[:size])
    valid = _default_valid() if valid_nrs is None else frozenset(valid_nrs)
    res = Result(cons=cons)
    st = res.stats

    def read(pos: int, n: int) -> bytes:          # wrap around the ring's end by hand
        off = pos % size
        if off + n <= size:
            return ring[off: off + n]
        return ring[off:] + ring[: off + n - size]

    start = cons
    used = ARENA_OFFSET
    if cons != prod and ((cons | prod) % 8 or not 0 <= prod - cons <= size):
        st["malformed"] += 1
        st["resyncs"] += 1
        cons = prod
    while cons < prod:
        if max_events is not None and len(res.events) >= max_events:
            res.stop = "full"
            break
        word = struct.unpack("<I", read(cons, 4))[0]
        if word & BUSY_BIT:
            res.stop = "busy"
            break
        rlen = word & ~(BUSY_BIT | DISCARD_BIT)
        total = _align8(rlen + 8)
        if total > prod - cons:
            st["malformed"] += 1
            st["resyncs"] += 1
            cons = prod
            break
        if word & DISCARD_BIT:
            st["discarded"] += 1
            cons += total
            continue
        rec = read(cons + 8, rlen)
        if not _valid(rec, valid):
            st["malformed"] += 1
            cons += total
            continue
        need = _align8(FALCO_PREFIX_SIZE + rlen)
        if arena_bytes is not None and used + need > arena_bytes:
            res.stop = "full"
            break
        used += need
        res.events.append(_parse(rec, wall_offset, plugin_id))
        st["records"] += 1
        cons += total
    st["bytes"] = max(0, cons - start)
    res.cons = cons
    return res


def decode_ring_image(image, **kw) -> Result:
    """decode_image over an lbd.ringimage.RingImage, storing the new consumer position in it
    (as the compiled Ring does)."""
    res = decode_image(image.cons, image.prod, image.data, **kw)
    image.cons = res.cons
    return res


def from_batch(batch) -> list[dict]:
    """The events of an lbd Batch as the reference's event dicts (for comparisons)."""
    out = []
    ev = batch.events
    for i in range(len(batch)):
        e = ev[i]
        d = {n: (bytes(e[n]) if n == "comm" else int(e[n])) for n in _HDR_FIELDS}
        d["args"] = tuple(int(x) for x in e["args"])
        d["slot"] = tuple((int(s["off"]), int(s["len"])) for s in e["slot"])
        d["xslot"] = (int(e["xslot"]["off"]), int(e["xslot"]["len"]))
        d["syscall_id"] = int(e["syscall_id"])
        d["name"] = batch.name(i)
        d["payloads"] = tuple(batch.payload(i, k) for k in range(record.MAX_ARGS))
        d["decoded"] = batch.args(i)
        d["record"] = bytes(batch.record(i))
        d["falco"] = bytes(batch.falco_event(i))
        out.append(d)
    return out
