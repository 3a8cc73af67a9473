"""Differential decoder suite: every test runs against the compiled consumer (lbd._decode) and the
pure-Python reference (lbd.reference) and holds both to what lbd.ringimage says the records mean.
A last group compares the two directly, batch for batch, on the same images."""
from __future__ import annotations

import struct

import pytest

from decode_helpers import DECODERS, Drainer, check_case
from lbd import args as _args
from lbd import record, reference
from lbd import ringimage as ri
from lbd.args import SockAddr
from lbd.syscalls import TABLE, BY_NAME

K = record.KINDS
NR = {n: BY_NAME[n].nr for n in ("getcwd", "openat", "connect", "execve", "pipe2", "accept4", "read", "write",
                                 "getsockopt", "kill", "setuid", "chown", "mmap", "sendto", "exit_group",
                                 "recvfrom", "close")}


@pytest.fixture(params=DECODERS)
def decoder(request) -> str:
    return request.param


def drain_all(image, decoder, **kw):
    d = Drainer(image, decoder, **kw)
    return d, d.drain()


# ---- argument kinds ----------------------------------------------------------------------------

def test_random_cases_cover_every_kind():
    cases = ri.random_cases(400, seed=1)
    kinds = set()
    for c in cases:
        for k, a in enumerate(BY_NAME[c.name].args if c.name in BY_NAME else ()):
            if c.payloads and (c.payloads[k] is not None or a.kind_id < K["str"]):
                kinds.add(a.kind_id)
    used = {a.kind_id for sc in TABLE for a in sc.args}
    assert kinds == used
    assert any(c.truncated for c in cases)
    assert any(c.faulted for c in cases)
    assert any(c.fields["flags"] & record.F_NOENTER for c in cases)
    assert any(c.nr >= record.NR_SCHED_FORK for c in cases)
    assert any(c.fields["dir"] == record.DIR_ENTER for c in cases)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_kind_random(decoder, seed):
    cases = ri.random_cases(600, seed=seed)
    img = ri.image_of([c.record for c in cases])
    d, out = drain_all(img, decoder)
    assert len(out.events) == len(cases)
    for ev, case in zip(out.events, cases):
        check_case(ev, case)
    assert d.stats["records"] == len(cases)
    assert d.stats["malformed"] == d.stats["discarded"] == 0
    assert d.stats["bytes"] == img.prod == img.cons
    assert out.stops[-1] == "empty"


def _one(decoder, rec, **kw) -> dict:
    img = ri.image_of([rec])
    d, out = drain_all(img, decoder, **kw)
    assert d.stats["malformed"] == 0
    (ev,) = out.events
    return ev


def test_values_by_kind(decoder):
    """Literal expectations, independent of the generator's own bookkeeping."""
    ev = _one(decoder, ri.make_record(NR["openat"], [0xFFFFFF9C, "/etc/passwd", 0o2000000, 0o644], res=3))
    assert ev["name"] == "openat" and ev["res"] == 3
    assert ev["decoded"] == {"dfd": -100, "filename": "/etc/passwd", "flags": 0o2000000, "mode": 0o644}

    ev = _one(decoder, ri.make_record(NR["connect"], {"fd": 5, "uservaddr": ri.sockaddr_in("10.1.2.3", 443),
                                                      "addrlen": 16}))
    assert ev["decoded"] == {"fd": 5, "uservaddr": SockAddr("AF_INET", "10.1.2.3", 443), "addrlen": 16}
    ev = _one(decoder, ri.make_record(NR["connect"], [3, ri.sockaddr_in6("::1", 22), 28]))
    assert ev["decoded"]["uservaddr"] == SockAddr("AF_INET6", "::1", 22)
    ev = _one(decoder, ri.make_record(NR["connect"], [3, ri.sockaddr_un("/run/x.sock"), 14]))
    assert ev["decoded"]["uservaddr"] == SockAddr("AF_UNIX", path="/run/x.sock")
    ev = _one(decoder, ri.make_record(NR["connect"], [3, ri.sockaddr_un("@abs"), 6]))
    assert ev["decoded"]["uservaddr"] == SockAddr("AF_UNIX", path="@abs")

    ev = _one(decoder, ri.make_record(NR["execve"], ["/bin/ls", ["ls", "-l", ""], []]))
    assert ev["decoded"] == {"filename": "/bin/ls", "argv": ["ls", "-l", ""], "envp": []}

    ev = _one(decoder, ri.make_record(NR["pipe2"], [(3, 4), 0o2000000]))
    assert ev["decoded"] == {"fildes": [3, 4], "flags": 0o2000000}
    ev = _one(decoder, ri.make_record(NR["accept4"], [3, ri.sockaddr_in("1.2.3.4", 80), (16,), 0], res=7))
    assert ev["decoded"] == {"fd": 3, "upeer_sockaddr": SockAddr("AF_INET", "1.2.3.4", 80), "upeer_addrlen": 16,
                             "flags": 0}
    ev = _one(decoder, ri.make_record(NR["read"], [0, b"\x00\xffdata", 4096], res=6))
    assert ev["decoded"] == {"fd": 0, "buf": b"\x00\xffdata", "count": 4096}
    ev = _one(decoder, ri.make_record(NR["write"], [-1, b"hi", 2**64 - 1]))
    assert ev["decoded"] == {"fd": -1, "buf": b"hi", "count": 2**64 - 1}
    ev = _one(decoder, ri.make_record(NR["kill"], [0xFFFFFFFF, 9]))
    assert ev["decoded"] == {"pid": -1, "sig": 9}
    ev = _one(decoder, ri.make_record(NR["setuid"], [2**64 - 1]))
    assert ev["decoded"] == {"uid": 2**32 - 1}
    ev = _one(decoder, ri.make_record(NR["mmap"], [0x7F0000001000, 4096, 3, 0x22, 0xFFFFFFFF, 0]))
    assert ev["decoded"] == {"addr": 0x7F0000001000, "len": 4096, "prot": 3, "flags": 0x22, "fd": -1, "off": 0}
    ev = _one(decoder, ri.make_record(NR["exit_group"], [2**32 - 2], flags=record.F_NORETURN))
    assert ev["decoded"] == {"error_code": -2}
    ev = _one(decoder, ri.make_record(NR["openat"], [3, b"\xff\xfeok", 0, 0]))
    assert ev["decoded"]["filename"] == "\\xff\\xfeok"


def test_outputs_only_at_successful_exit(decoder):
    ev = _one(decoder, ri.make_record(NR["pipe2"], [(3, 4), 0], dir=">"))
    assert ev["decoded"]["fildes"] is None and ev["dir"] == ord(">")
    ev = _one(decoder, ri.make_record(NR["read"], [0, b"data", 10], res=-11))
    assert ev["decoded"]["buf"] is None and ev["res"] == -11


def test_empty_null_and_fault(decoder):
    """An empty string is "", a NULL pointer None, a failed read UNREADABLE with the fault flag, an
    output buffer that received 0 bytes b"" (the probe set its slot's offset)."""
    ev = _one(decoder, ri.make_record(NR["openat"], [-100, "", 0, 0]))
    assert ev["decoded"]["filename"] == "" and ev["payloads"][1] is None
    ev = _one(decoder, ri.make_record(NR["openat"], [-100, None, 0, 0]))
    assert ev["decoded"]["filename"] is None and ev["args"][1] == 0
    ev = _one(decoder, ri.make_record(NR["openat"], [-100, "/x", 0, 0], faults=["filename"]))
    assert ev["decoded"]["filename"] is _args.UNREADABLE
    assert ev["flags"] >> (record.F_FAULT_SHIFT + 1) & 1
    ev = _one(decoder, ri.make_record(NR["write"], [1, b"", 0]))
    assert ev["decoded"]["buf"] == b""
    ev = _one(decoder, ri.make_record(NR["execve"], ["/bin/true", [], None]))
    assert ev["decoded"]["argv"] == [] and ev["decoded"]["envp"] is None
    ev = _one(decoder, ri.make_record(NR["read"], [5, b"", 1], res=0))
    assert ev["decoded"]["buf"] == b"" and ev["slot"][1][0] != 0
    ev = _one(decoder, ri.make_record(NR["read"], [5, b"", 1], res=-9))        # failed: not read
    assert ev["decoded"]["buf"] is None
    ev = _one(decoder, ri.make_record(NR["getcwd"], [b"/tmp\0", 64], res=5))
    assert ev["decoded"]["buf"] == b"/tmp"


def test_noenter_and_sched(decoder):
    ev = _one(decoder, ri.make_record(NR["read"], [3, b"x", 1], flags=record.F_NOENTER, res=1))
    assert ev["decoded"] == {} and ev["nargs"] == 0
    ev = _one(decoder, ri.make_record(record.NR_SCHED_EXEC, [10, 9, 0], payloads={2: b"/usr/bin/env"}))
    assert ev["name"] == "sched_process_exec"
    assert ev["decoded"] == {"pid": 10, "old_pid": 9, "filename": "/usr/bin/env", "argv": None, "exe": None}
    ev = _one(decoder, ri.make_record(record.NR_SCHED_FORK, [1, 2, 1, 2, 5000]))
    assert ev["decoded"] == {"parent_pid": 1, "child_pid": 2, "parent_tid": 1, "child_tgid": 2, "child_start": 5000}
    ev = _one(decoder, ri.make_record(record.NR_SCHED_EXIT, [77, 1, 256]))
    assert ev["decoded"] == {"pid": 77, "group_dead": 1, "exit_code": 256}


def test_truncated_strings(decoder):
    long = "/very/" + "x" * 500
    case = ri.make_case(NR["openat"], [-100, long, 0, 0], str_max=100)
    ev = _one(decoder, case.record)
    check_case(ev, case)
    assert ev["decoded"]["filename"] == long[:100]
    assert ev["flags"] >> (record.F_TRUNC_SHIFT + 1) & 1
    # a multi-byte character cut in the middle decodes with an escape, not an error
    case = ri.make_case(NR["openat"], [-100, "é" * 10, 0, 0], str_max=5)
    ev = _one(decoder, case.record)
    assert ev["decoded"]["filename"] == "éé\\xc3"
    # the record fills up (LBD_PAYLOAD_MAX): later arguments are cut to what fits, then to nothing
    case = ri.make_case(NR["execve"], ["/" + "p" * 3000, ["a" * 2000], ["b" * 10]])
    ev = _one(decoder, case.record)
    check_case(ev, case)
    assert ev["size"] == record.HDR_SIZE + record.PAYLOAD_MAX
    assert case.truncated == (1, 2)
    assert ev["decoded"]["envp"] == [] and ev["slot"][2][1] == 0


# ---- ring mechanics ----------------------------------------------------------------------------

@pytest.mark.parametrize("back", [8, 16, 96, 144, 152, 160, 200, 512, 1000])
def test_wrap_around(decoder, back):
    """Records that straddle the ring's end (the header never splits; the body can)."""
    size = 4096
    cases = ri.random_cases(40, seed=back)
    img = ri.RingImage(size, start=10 * size - back)
    n = img.extend(c.record for c in cases)
    assert n >= 3
    d, out = drain_all(img, decoder)
    assert len(out.events) == n
    for ev, case in zip(out.events, cases):
        check_case(ev, case)
    assert img.cons == img.prod
    # refill across the end again from where it stopped
    n2 = img.extend(c.record for c in cases[n:])
    out2 = d.drain()
    assert [e["record"] for e in out2.events] == [c.record for c in cases[n: n + n2]]


def test_discarded(decoder):
    cases = ri.random_cases(30, seed=5)
    img = ri.RingImage(1 << 16)
    keep = []
    for i, c in enumerate(cases):
        img.write(c.record, discard=i % 3 == 0)
        if i % 3:
            keep.append(c)
    d, out = drain_all(img, decoder)
    assert [e["record"] for e in out.events] == [c.record for c in keep]
    assert d.stats["discarded"] == 10 and d.stats["malformed"] == 0
    assert img.cons == img.prod == d.stats["bytes"]


def test_busy_stops_there(decoder):
    cases = ri.random_cases(12, seed=6)
    img = ri.RingImage(1 << 16)
    for c in cases[:4]:
        img.write(c.record)
    busy = img.write_busy(length=len(cases[4].record))
    for c in cases[5:]:
        img.write(c.record)
    d = Drainer(img, decoder)
    out = d.drain()
    assert [e["record"] for e in out.events] == [c.record for c in cases[:4]]
    assert out.stops == ["busy"] and img.cons == busy
    assert d.drain().events == [] and img.cons == busy           # still busy: nothing moves
    img.commit(busy, rec=cases[4].record)
    out = d.drain()
    assert [e["record"] for e in out.events] == [c.record for c in cases[4:]]
    assert img.cons == img.prod and out.stops == ["empty"]


def test_busy_then_discarded(decoder):
    cases = ri.random_cases(3, seed=7)
    img = ri.RingImage(4096)
    img.write(cases[0].record)
    pos = img.write_busy(length=300)
    img.write(cases[1].record)
    d = Drainer(img, decoder)
    assert len(d.drain().events) == 1
    img.commit(pos, discard=True)
    out = d.drain()
    assert [e["record"] for e in out.events] == [cases[1].record]
    assert d.stats["discarded"] == 1


def _malformations():
    good = ri.make_record(NR["openat"], [-100, "/etc/hosts", 0, 0])
    rlen = len(good)
    return {
        "version": ri.patch(good, version=record.VERSION + 1),
        "size_smaller": ri.patch(good, size=rlen - 1),
        "size_larger": ri.patch(good, size=rlen + 8),
        "size_below_header": ri.patch(good, size=10),
        "short_record": good[:100],
        "empty_record": b"",
        "too_long": ri.patch(good + bytes(record.PAYLOAD_MAX), size=rlen + record.PAYLOAD_MAX),
        "nr_unknown": ri.patch(good, nr=511),
        "nr_beyond_table": ri.patch(good, nr=999),
        "nr_huge": ri.patch(good, nr=65535),
        "nargs": ri.patch(good, nargs=7),
        "dir": ri.patch(good, dir="x"),
        "slot_in_header": ri.patch(good, slot={1: (100, 4)}),
        "slot_past_end": ri.patch(good, slot={1: (record.HDR_SIZE, rlen)}),
        "slot_end_overflow": ri.patch(good, slot={3: (65535, 65535)}),
        "slot_off_only": ri.patch(good, slot={5: (rlen, 1)}),
    }


@pytest.mark.parametrize("kind", sorted(_malformations()))
def test_malformed_record_skipped(decoder, kind):
    bad = _malformations()[kind]
    before, after = ri.random_cases(4, seed=8), ri.random_cases(4, seed=9)
    img = ri.RingImage(1 << 15, start=(1 << 15) - 200)          # and across the ring's end
    for c in before:
        img.write(c.record)
    img.write(bad)
    for c in after:
        img.write(c.record)
    d, out = drain_all(img, decoder)
    assert [e["record"] for e in out.events] == [c.record for c in before + after]
    assert d.stats["malformed"] == 1 and d.stats["resyncs"] == 0
    assert img.cons == img.prod


def test_good_edge_records_accepted(decoder):
    """The limits themselves are valid: a payload ending exactly at the record's end, an empty
    slot with any offset, nargs 6, the largest record."""
    case = ri.make_case(NR["openat"], [-100, "a" * 5000, 0, 0], str_max=None)
    rec = ri.patch(case.record, slot={0: (0, 0), 2: (60000, 0)}, nargs=6)
    assert len(rec) == record.HDR_SIZE + record.PAYLOAD_MAX
    ev = _one(decoder, rec)
    assert ev["decoded"]["filename"] == "a" * record.PAYLOAD_MAX


@pytest.mark.parametrize("how", ["cons_unaligned", "prod_unaligned", "too_far", "prod_behind", "long_word"])
def test_resync_on_impossible_positions(decoder, how):
    cases = ri.random_cases(6, seed=10)
    img = ri.RingImage(4096, start=4096 * 3)
    for c in cases[:3]:
        img.write(c.record)
    expect = []
    if how == "cons_unaligned":
        img.cons += 4
    elif how == "prod_unaligned":
        img.prod += 3
    elif how == "too_far":
        img.prod = img.cons + 4096 + 8
    elif how == "prod_behind":
        img.prod = img.cons - 8
    else:  # a committed record whose length runs past the producer position
        img.write_raw(4000, b"", advance=16)
        expect = [c.record for c in cases[:3]]
    d, out = drain_all(img, decoder)
    assert [e["record"] for e in out.events] == expect
    assert d.stats["malformed"] == 1 and d.stats["resyncs"] == 1
    assert img.cons == img.prod
    # the consumer is back in step with the producer: new records decode
    img.prod = img.cons = (img.prod + 7) & ~7
    for c in cases[3:]:
        img.write(c.record)
    out = d.drain()
    assert [e["record"] for e in out.events] == [c.record for c in cases[3:]]


def test_valid_nrs_and_wall_offset(decoder):
    recs = [ri.make_record(NR["openat"], [-100, "/a", 0, 0], ts=5), ri.make_record(NR["close"], [3], ts=6)]
    img = ri.image_of(recs)
    d, out = drain_all(img, decoder, valid_nrs=[NR["close"]], wall_offset=-2)
    assert [e["name"] for e in out.events] == ["close"]
    assert out.events[0]["ts"] == 4 and d.stats["malformed"] == 1


@pytest.mark.parametrize("capacity,arena", [(1, 0), (3, 0), (7, 9000), (64, 1), (512, 0)])
def test_batch_limits(decoder, capacity, arena):
    """Full batches (by events or by arena bytes) leave the rest in the ring for the next fill."""
    cases = ri.random_cases(150, seed=capacity, long=2000)
    img = ri.image_of([c.record for c in cases])
    d, out = drain_all(img, decoder, capacity=capacity, arena_bytes=arena)
    assert len(out.events) == len(cases)
    for ev, case in zip(out.events, cases):
        check_case(ev, case)
    assert all(len(b) <= capacity for b in out.batches)
    assert out.stops[:-1] == ["full"] * (len(out.batches) - 1) and out.stops[-1] == "empty"
    for b in out.batches:
        assert sum((reference.FALCO_PREFIX_SIZE + len(e["record"]) + 7) & ~7 for e in b) + 2 <= d.arena_bytes


def test_falco_prefix(decoder):
    rec = ri.make_record(NR["close"], [3], ts=1000, tid=77)
    d, out = drain_all(ri.image_of([rec]), decoder, wall_offset=10, plugin_id=9)
    fe = out.events[0]["falco"]
    ts, tid, ln, typ, nparams, l0, l1, pid = struct.unpack_from("<QQIHIIII", fe)
    assert (ts, tid, ln, typ, nparams, l0, l1, pid) == (1010, 77, 38 + len(rec), 322, 2, 4, len(rec), 9)
    assert fe[38:] == rec


# ---- the two decoders, side by side ------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_decoders_agree(seed):
    cases = ri.random_cases(300, seed=100 + seed, long=1500)
    size = 1 << 18
    start = size * 7 - 8 * seed * 13
    img_c, img_r = ri.RingImage(size, start=start), ri.RingImage(size, start=start)
    dc = Drainer(img_c, "cython", capacity=17 + seed, arena_bytes=12000 * (seed % 2))
    dr = Drainer(img_r, "reference", capacity=17 + seed, arena_bytes=12000 * (seed % 2))
    i = 0
    while i < len(cases):
        for img in (img_c, img_r):
            for c in cases[i: i + 40]:
                if c.nr == NR["close"] or c.fields["pid"] % 11 == 0:
                    img.write(ri.patch(c.record, version=9))          # malformed
                elif c.fields["pid"] % 7 == 0:
                    img.write(c.record, discard=True)
                else:
                    img.write(c.record)
        i += 40
        oc, orf = dc.drain(), dr.drain()
        assert oc.batches == orf.batches
        assert oc.stops == orf.stops
        assert img_c.cons == img_r.cons
    assert dc.stats == dr.stats
