"""Fuzzing the ring consumer: random and mutated ring images go to the compiled decoder, whose
image sits right before an inaccessible page (an out-of-bounds read crashes the run), and to the
reference decoder; they must agree batch for batch, counters included.

LBD_FUZZ_EXAMPLES=N raises the number of examples per test (default 150).  Under a debug build
(LBD_DEBUG=1, lbd._decode.DEBUG) the decoder also asserts every pointer it follows.
"""
from __future__ import annotations

import os
import struct

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from decode_helpers import Drainer
from lbd import record
from lbd import ringimage as ri

EXAMPLES = int(os.environ.get("LBD_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# where the fields a mutation may target are, in a record behind its 8-byte ring header
_FIELD_AT = {name: record.HDR_DTYPE.fields[name][1] for name in ("version", "size", "nr", "dir", "nargs", "flags")}
_FIELD_AT.update({f"slot{i}": record.HDR_DTYPE.fields["slot"][1] + 4 * i for i in range(record.MAX_ARGS)})
_WIDTH = {"version": 2, "size": 2, "nr": 2, "dir": 1, "nargs": 1, "flags": 4}


def twin(img: ri.RingImage) -> ri.RingImage:
    """A guarded copy of img (same size, positions and bytes)."""
    g = ri.RingImage(img.size, start=img.start, guard=True)
    g.data[:] = img.data
    g.cons, g.prod = img.cons, img.prod
    return g


def run_both(img: ri.RingImage, capacity: int, arena: int, extra_accessors: bool = True):
    guarded = twin(img)
    dc = Drainer(guarded, "cython", capacity=capacity, arena_bytes=arena)
    dr = Drainer(img, "reference", capacity=capacity, arena_bytes=arena)
    oc = dc.drain()
    if extra_accessors and len(dc.batch):
        b = dc.batch
        for slot in range(record.MAX_ARGS):
            b.gather(slot)
            b.strings(slot)
            b.payloads_fixed(slot, 16)
        for nr in set(int(x) for x in b.events["nr"]):
            for k in range(record.MAX_ARGS):
                try:
                    b.column(nr, k)
                except IndexError:
                    break
    orf = dr.drain()
    assert oc.batches == orf.batches
    assert oc.stops == orf.stops
    assert guarded.cons == img.cons
    sc, sr = dc.stats, dr.stats
    assert sc == sr
    assert sc["records"] == len(oc.events)
    assert sc["resyncs"] <= sc["malformed"]
    # what the example reached (pytest --hypothesis-show-statistics)
    event(f"records: {'yes' if sc['records'] else 'no'}")
    event(f"malformed records: {'yes' if sc['malformed'] > sc['resyncs'] else 'no'}")
    event(f"resync: {'yes' if sc['resyncs'] else 'no'}")
    event(f"discarded: {'yes' if sc['discarded'] else 'no'}")
    event(f"stopped busy: {'yes' if oc.stops[-1] == 'busy' else 'no'}")
    event(f"batches: {'several' if len(oc.batches) > 1 else 'one'}")
    return oc, sc


@st.composite
def mutated_images(draw):
    size = 1 << draw(st.integers(9, 15))
    start = draw(st.integers(0, 8 * size // 8)) * 8
    img = ri.RingImage(size, start=start)
    seed = draw(st.integers(0, 2**32 - 1))
    long = draw(st.sampled_from([0, 24, 200, 3000]))
    cases = ri.random_cases(draw(st.integers(0, 30)), seed=seed, long=long, str_max=draw(st.sampled_from([None, 7, 256])))
    positions = []
    for c in cases:
        try:
            positions.append(img.write(c.record, discard=draw(st.integers(0, 9)) == 0))
        except ri.RingFull:
            break
    if positions and draw(st.integers(0, 3)) == 0:       # one record still being written
        pos = draw(st.sampled_from(positions))
        img.poke(pos + 3, bytes([img.peek(pos + 3, 1)[0] | 0x80]))
    # targeted mutations: a header field of some record gets a random value
    for _ in range(draw(st.integers(0, 4))):
        if not positions:
            break
        pos = draw(st.sampled_from(positions))
        field = draw(st.sampled_from(sorted(_FIELD_AT)))
        if field.startswith("slot"):
            off = draw(st.sampled_from([0, 1, 100, 143, 144, 145, 200, 4000, 4239, 4240, 65535]))
            ln = draw(st.sampled_from([0, 1, 2, 8, 100, 4096, 65535]))
            img.poke(pos + 8 + _FIELD_AT[field], struct.pack("<HH", off, ln))
        else:
            w = _WIDTH[field]
            v = draw(st.integers(0, (1 << (8 * w)) - 1))
            img.poke(pos + 8 + _FIELD_AT[field], v.to_bytes(w, "little"))
    # ring-header mutations: length words
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        if not positions:
            break
        pos = draw(st.sampled_from(positions))
        word = draw(st.one_of(st.integers(0, 2**32 - 1), st.integers(0, 5000),
                              st.integers(0, 300).map(lambda x: x | ri.DISCARD_BIT)))
        img.poke(pos, struct.pack("<I", word))
    # random byte flips anywhere in what was written
    span = max(8, img.prod - img.cons)
    for _ in range(draw(st.sampled_from([0, 0, 1, 2, 4, 12]))):
        img.poke(img.cons + draw(st.integers(0, span - 1)), bytes([draw(st.integers(0, 255))]))
    # positions the kernel never produces
    pert = draw(st.sampled_from(["none"] * 24 + ["cons", "prod", "prod_far"]))
    if pert == "cons":
        img.cons = max(0, img.cons + draw(st.integers(-16, 16)))
    elif pert == "prod":
        img.prod = max(0, img.prod + draw(st.integers(-16, 16)))
    elif pert == "prod_far":
        img.prod = draw(st.integers(0, 2**64 - 1))
    capacity = draw(st.sampled_from([1, 3, 16, 512]))
    arena = draw(st.sampled_from([0, 1, 9000]))
    return img, capacity, arena


@FUZZ
@given(mutated_images())
def test_mutated_images(arg):
    img, capacity, arena = arg
    run_both(img, capacity, arena)


@FUZZ
@given(size_exp=st.integers(3, 12), data=st.data())
def test_random_images(size_exp, data):
    size = 1 << size_exp
    img = ri.RingImage(max(size, 16))
    size = img.size
    raw = data.draw(st.binary(min_size=size, max_size=size))
    img.poke(0, raw)
    aligned = data.draw(st.booleans())
    cons = data.draw(st.integers(0, 2**40))
    span = data.draw(st.integers(0, size + 16))
    if aligned:
        cons &= ~7
        span &= ~7
    img.cons, img.prod = cons, cons + span
    run_both(img, data.draw(st.sampled_from([1, 7, 512])), 0)


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60), back=st.integers(0, 600))
def test_valid_images_decode_exactly(seed, n, back):
    """Unmutated random records wrapping at any point: everything decodes, nothing is malformed."""
    size = 1 << 14
    img = ri.RingImage(size, start=size * 3 - back * 8)
    cases = ri.random_cases(n, seed=seed)
    k = img.extend(c.record for c in cases)
    out, stats = run_both(img, 512, 0)
    assert stats["malformed"] == 0 and stats["records"] == k
    assert [e["record"] for e in out.events] == [c.record for c in cases[:k]]
    assert [e["decoded"] for e in out.events] == [c.args for c in cases[:k]]


def test_debug_build_flag_is_visible():
    from lbd import _decode

    assert isinstance(_decode.DEBUG, bool)
    assert np.dtype(_decode.EVENT_DTYPE) == record.EVENT_DTYPE
