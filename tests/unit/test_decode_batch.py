"""The compiled consumer's own API: Batch (events view, lifetime, layout, bulk payload access,
column()), Ring (image checks, stop reasons, close), the .pyi stub, and Collector.next_batch()
over an image."""
from __future__ import annotations

import ast
import struct
import time
import types
from pathlib import Path

import numpy as np
import pytest

from lbd import _decode, record, syscalls
from lbd import ringimage as ri
from lbd.batch import Batch, Column
from lbd.syscalls import BY_NAME

K = record.KINDS


def filled(cases_or_records, capacity=4096, **kw) -> tuple[Batch, object]:
    recs = [c.record if isinstance(c, ri.Case) else c for c in cases_or_records]
    img = ri.image_of(recs)
    ring = img.ring(**kw)
    b = Batch(capacity)
    ring.fill(b)
    return b, ring


# ---- events ------------------------------------------------------------------------------------

def test_events_view_and_syscall_id():
    cases = ri.random_cases(50, seed=1)
    b, _ = filled(cases)
    ev = b.events
    assert len(b) == len(ev) == 50
    assert ev.dtype == _decode.EVENT_VIEW_DTYPE
    assert ev.dtype.itemsize == record.EVENT_DTYPE.itemsize
    assert (ev["syscall_id"] == ev["nr"]).all()
    assert ev["syscall_id"].tolist() == [c.nr for c in cases]
    assert ev["res"].tolist() == [c.fields["res"] for c in cases]
    assert set(record.EVENT_DTYPE.names) < set(ev.dtype.names)
    sub = ev[["ts", "pid", "tid", "syscall_id", "nr", "res"]]
    assert sub["syscall_id"].tolist() == sub["nr"].tolist()
    assert ev.base is not None and not ev.flags.writeable          # a view, read-only
    with pytest.raises(ValueError):
        ev["res"][0] = 1
    for a in (b.arena, b.table, b.ptrs):
        assert not a.flags.writeable
    c = ev.copy()
    assert c.flags.writeable and (c["syscall_id"] == ev["nr"]).all()


def test_lifetime_generation_and_reuse():
    cases = ri.random_cases(20, seed=2)
    img = ri.image_of([c.record for c in cases[:10]])
    ring = img.ring()
    b = Batch(64)
    g0 = b.generation
    ring.fill(b)
    first = b.events
    kept = b.events.copy()
    assert b.generation == g0 + 1
    img.extend(c.record for c in cases[10:])
    ring.fill(b)                             # the next batch reuses the same memory
    assert b.generation == g0 + 2
    assert first.__array_interface__["data"][0] == b.events.__array_interface__["data"][0]
    assert b.events["ts"].tolist() == [c.fields["ts"] for c in cases[10:]]
    assert kept["ts"].tolist() == [c.fields["ts"] for c in cases[:10]]
    ring.fill(b, append=True)                # nothing new: unchanged
    assert len(b) == 10
    b.release()
    assert len(b) == 0 and b.generation == g0 + 3 and b.used == _decode.ARENA_OFFSET


def test_arena_layout():
    cases = ri.random_cases(40, seed=3)
    b, _ = filled(cases)
    ev = b.events
    base = b.address()
    assert (ev["rec"] % 8 == 0).all()
    assert ev["rec"][0] == _decode.ARENA_OFFSET + _decode.FALCO_PREFIX_SIZE
    assert (b.ptrs[: len(b)] == base + ev["rec"].astype(np.uint64) - 38).all()
    for i, c in enumerate(cases):
        assert bytes(b.record(i)) == c.record
        fe = bytes(b.falco_event(i))
        assert fe[38:] == c.record
        assert struct.unpack_from("<QQIHIIII", fe) == (c.fields["ts"], c.fields["tid"], 38 + len(c.record),
                                                       _decode.PLUGIN_EVENT_TYPE, 2, 4, len(c.record), 0)
        # the header copy in the table and the record in the arena agree
        hdr = np.frombuffer(b.record(i), dtype=record.HDR_DTYPE, count=1)[0]
        for name in record.HDR_DTYPE.names:
            assert np.array_equal(hdr[name], ev[i][name]), name
    assert b.used == _decode.ARENA_OFFSET + sum((38 + len(c.record) + 7) & ~7 for c in cases)
    with pytest.raises(IndexError):
        b.record(len(b))
    with pytest.raises(IndexError):
        b.falco_event(len(b))


def test_batch_arguments():
    with pytest.raises(ValueError):
        Batch(0)
    with pytest.raises(ValueError):
        Batch(4, 1 << 33)
    b = Batch(4, 1)
    assert b.arena_bytes == 2 + ((38 + _decode.RECORD_MAX_SIZE + 7) & ~7)
    assert Batch(10).arena_bytes == 10 * 640
    assert _decode.RECORD_MAX_SIZE == record.HDR_SIZE + record.PAYLOAD_MAX


# ---- per-event accessors -----------------------------------------------------------------------

def test_args_payload_truncated_faulted():
    cases = ri.random_cases(300, seed=4)
    b, _ = filled(cases)
    for i, c in enumerate(cases):
        assert b.args(i) == c.args
        assert b.name(i) == c.name
        assert tuple(b.payload(i, k) for k in range(6)) == c.payloads
        assert tuple(k for k in range(6) if b.truncated(i, k)) == c.truncated
        assert tuple(k for k in range(6) if b.faulted(i, k)) == c.faulted
    assert b.names().tolist() == [c.name for c in cases]


# ---- bulk payload access -----------------------------------------------------------------------

@pytest.mark.parametrize("slot", range(6))
def test_bulk_payload_accessors(slot):
    cases = ri.random_cases(400, seed=5 + slot)
    b, _ = filled(cases)
    want = [c.payloads[slot] for c in cases]
    assert b.payloads(slot).tolist() == want
    assert b.payloads(slot, missing=b"").tolist() == [w or b"" for w in want]
    assert b.strings(slot).tolist() == [None if w is None else w.decode("utf-8", "backslashreplace") for w in want]
    assert b.strings(slot, errors="replace", missing="?").tolist() == [
        "?" if w is None else w.decode("utf-8", "replace") for w in want]
    data, off = b.gather(slot)
    assert off.dtype == np.int64 and off[0] == 0 and len(off) == len(cases) + 1
    assert [data[off[k]: off[k + 1]].tobytes() for k in range(len(cases))] == [w or b"" for w in want]
    fx = b.payloads_fixed(slot, 8)
    assert fx.dtype == np.dtype("S8")
    assert fx.tolist() == [(w or b"")[:8].rstrip(b"\0") for w in want]


def test_bulk_index_forms():
    cases = ri.random_cases(60, seed=11)
    b, _ = filled(cases)
    all_ = b.payloads(1)
    idx = [5, 0, 59, 5]
    assert b.payloads(1, idx).tolist() == [all_[i] for i in idx]
    assert b.payloads(1, np.array(idx, dtype=np.uint16)).tolist() == [all_[i] for i in idx]
    assert b.payloads(1, [-1]).tolist() == [all_[59]]
    mask = b.events["nr"] == b.events["nr"][0]
    assert b.payloads(1, mask).tolist() == list(all_[mask])
    assert b.payloads(1, []).tolist() == []
    data, off = b.gather(1, [])
    assert len(data) == 0 and off.tolist() == [0]
    for bad in ([60], [-61], np.array([0.5]), np.zeros((2, 2), dtype=int), np.ones(3, dtype=bool)):
        with pytest.raises(IndexError):
            b.payloads(1, bad)
    for slot in (-1, 6):
        with pytest.raises(IndexError):
            b.gather(slot)
    with pytest.raises(ValueError):
        b.payloads_fixed(0, 0)
    empty = Batch(4)
    assert empty.strings(0).tolist() == [] and len(empty.gather(0)[0]) == 0


def _column_equals_args(b, name):
    specs = BY_NAME[name].args if name in BY_NAME else None
    nr = BY_NAME[name].nr if specs is not None else None
    for k, a in enumerate(specs or ()):
        col = b.column(name, a.name)
        assert isinstance(col, Column)
        idx, vals = col
        assert np.array_equal(b.column(nr, k).index, idx)
        ev = b.events
        want_idx = [i for i in range(len(b)) if ev["nr"][i] == nr and not ev["flags"][i] & record.F_NOENTER]
        assert idx.tolist() == want_idx
        assert len(vals) == len(idx)
        if a.kind_id < K["str"]:
            assert vals.dtype in (np.int64, np.uint64), (name, a.name, vals.dtype)
        for i, v in zip(idx, vals):
            want = b.args(int(i))[a.name]
            got = v.item() if isinstance(v, np.generic) else v
            assert got == want and type(got) is type(want), (name, a.name, got, want)


def test_column_every_kind():
    """column() agrees with args(i) for every argument of syscalls covering every kind."""
    names = ["openat", "connect", "execve", "pipe2", "accept4", "read", "write", "getsockopt", "kill",
             "setuid", "chown", "mmap", "sendto", "exit_group", "recvfrom", "socketpair", "lseek",
             "chmod", "setgid", "pread64", "wait4", "mount", "delete_module", "bpf", "capget", "setgroups",
             "writev", "sendmsg", "recvmsg", "getcwd", "prctl"]
    nrs = [BY_NAME[n].nr for n in names]
    cases = ri.random_cases(1500, seed=12, nrs=nrs, noenter=0.1, enter=0.2, faults=0.1)
    b, _ = filled(cases)
    kinds = set()
    for n in names:
        _column_equals_args(b, n)
        kinds |= {a.kind_id for a in BY_NAME[n].args}
    assert kinds == {a.kind_id for sc in syscalls.TABLE for a in sc.args}   # every kind the table uses


def test_column_sched_and_errors():
    recs = [ri.make_record(record.NR_SCHED_EXEC, [5, 5, 0], payloads={2: b"/bin/sh"}),
            ri.make_record(record.NR_SCHED_EXEC, [6, 6, 0], faults=[2]),
            ri.make_record(BY_NAME["openat"].nr, [-100, "/etc", 0, 0])]
    b, _ = filled(recs)
    idx, vals = b.column("sched_process_exec", "filename")
    assert idx.tolist() == [0, 1] and vals.tolist() == ["/bin/sh", None]
    assert b.column(record.NR_SCHED_EXEC, "pid").values.tolist() == [5, 6]
    assert b.indices("openat").tolist() == [2]
    idx, vals = b.column("openat", "filename")
    assert vals.tolist() == ["/etc"]
    idx, vals = b.column("connect", "uservaddr")
    assert len(idx) == 0 and len(vals) == 0
    with pytest.raises(KeyError):
        b.column("openat", "nope")
    with pytest.raises(IndexError):
        b.column("openat", 4)
    with pytest.raises(KeyError):
        b.column("no_such_syscall", 0)


# ---- Ring --------------------------------------------------------------------------------------

def test_from_image_checks():
    c, p = np.zeros(1, np.uint64), np.zeros(1, np.uint64)
    for n in (0, 6, 24, 2 * 12):
        with pytest.raises(ValueError):
            _decode.Ring.from_image(c, p, np.zeros(n, np.uint8))
    with pytest.raises(ValueError):
        _decode.Ring.from_image(np.zeros(0, np.uint64), p, np.zeros(64, np.uint8))
    with pytest.raises(ValueError):
        _decode.Ring.from_image(c, p, np.zeros(65, np.uint8)[1:])       # unaligned data
    r = _decode.Ring.from_image(c, p, np.zeros(64, np.uint8))
    assert r.ring_size == 32 and not r.closed
    with pytest.raises(RuntimeError):
        r.__init__(-1, 0)
    with pytest.raises(ValueError):
        _decode.Ring(0, 3000)                 # not a power of two


def test_ring_close_and_stats():
    img = ri.image_of(ri.random_records(5, seed=1))
    with img.ring() as ring:
        assert ring.pending_bytes() == img.prod
        assert ring.producer_pos == img.prod and ring.consumer_pos == 0
        assert ring.wait(0) is True
        b = Batch(2)
        assert ring.fill(b) == 2 and ring.last_stop == _decode.STOP_FULL
        assert ring.fill(b, max_events=1) == 1
        assert ring.fill(b) == 2 and ring.last_stop == _decode.STOP_EMPTY
        assert ring.wait(0) is False
        assert set(ring.stats()) >= {"records", "malformed", "discarded", "resyncs", "bytes"}
        assert ring.stats()["records"] == 5 == ring.records
    assert ring.closed
    ring.close()
    with pytest.raises(ValueError):
        ring.fill(Batch(2))
    with pytest.raises(ValueError):
        ring.wait(0)
    assert ring.pending_bytes() == 0


def test_ring_keeps_image_alive():
    img = ri.image_of(ri.random_records(3, seed=2))
    ring = img.ring()
    del img
    b = Batch(8)
    assert ring.fill(b) == 3


def test_guarded_image_layout():
    img = ri.RingImage(4096, guard=True, start=4096 - 64)
    cases = ri.random_cases(10, seed=3)
    n = img.extend(c.record for c in cases)
    assert np.array_equal(img.data[:4096], img.data[4096:])
    b = Batch(64)
    assert img.ring().fill(b) == n
    assert bytes(b.record(0)) == cases[0].record


# ---- stub --------------------------------------------------------------------------------------

def _stub_names():
    tree = ast.parse((Path(_decode.__file__).parent / "_decode.pyi").read_text())
    top, classes = set(), {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            members = set()
            for m in node.body:
                if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    members.add(m.name)
                elif isinstance(m, ast.AnnAssign):
                    members.add(m.target.id)
            classes[node.name] = members
            top.add(node.name)
        elif isinstance(node, ast.AnnAssign):
            top.add(node.target.id)
        elif isinstance(node, ast.Assign):
            top.update(t.id for t in node.targets)
    return top, classes


def test_stub_complete():
    top, classes = _stub_names()
    public = {n for n in dir(_decode) if not n.startswith("_")
              and not isinstance(getattr(_decode, n), types.ModuleType)}
    assert public <= top, public - top
    assert {n for n in top if not n.startswith("_")} <= public
    for cls in ("Batch", "Ring"):
        real = {n for n in dir(getattr(_decode, cls)) if not n.startswith("_")}
        stub = {n for n in classes[cls] if not n.startswith("_")}
        assert real == stub, (cls, real ^ stub)


# ---- Collector over an image -------------------------------------------------------------------

def test_collector_returns_at_once_when_the_arena_is_full():
    """A batch whose arena is full must be returned, not waited on until the timeout (the ring's
    poll stays readable while records are pending, so waiting would spin)."""
    from lbd.collector import Collector

    big = [ri.make_record(BY_NAME["write"].nr, [1, bytes(4000), 4000], res=4000) for _ in range(6)]
    img = ri.image_of(big)
    col = Collector()
    col.ring, col.batch = img.ring(), Batch(100, 1)
    t = time.monotonic()
    b = col.next_batch(timeout_ms=500)
    assert len(b) == 1 and time.monotonic() - t < 0.25
    total = 1
    while len(col.next_batch(timeout_ms=0)):
        total += len(col.batch)
    assert total == 6
