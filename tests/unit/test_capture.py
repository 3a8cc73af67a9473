"""Capture files without a kernel: the format round trip, and damaged or foreign files refused
with one clear line (a capture file is not trusted)."""
from __future__ import annotations

import os
import struct

import pytest

from lbd import capture, syscalls
from lbd.batch import Batch
from lbd.capture import CaptureError, CaptureReader, CaptureWriter
from lbd.ringimage import image_of, random_cases


def batches(n_batches=3, per=100, seed=5):
    cases = random_cases(n_batches * per, seed=seed)
    img = image_of([c.record for c in cases], size=1 << 22)
    ring = img.ring(index=1)
    out = []
    while True:
        b = Batch(per, per * 2048)
        if not ring.fill(b):
            break
        out.append(b)
    return out


@pytest.mark.parametrize("compress", ["zstd", "none"])
def test_round_trip(tmp_path, compress):
    path = tmp_path / "c.lbdcap"
    bs = batches()
    w = CaptureWriter(path, {"wall_offset_ns": 123, "config": {}}, compress=compress)
    w.write_answers([["user", [0], "root"], ["load", [7], [1, b"x\xff", None, None, None, []]]])
    for b in bs:
        w.write_batch(b)
    w.close({"emitted": 5})
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    r = CaptureReader(path)
    assert r.wall_offset == 123 and r.meta["record_version"] == capture.record.VERSION
    chunks = list(r.chunks())
    assert [k for k, _ in chunks] == ["answers"] + ["batch"] * len(bs) + ["end"]
    assert chunks[0][1] == [["user", [0], "root"], ["load", [7], [1, b"x\xff", None, None, None, []]]]
    assert chunks[-1][1] == {"emitted": 5}
    for b, (_, (n, arena, rings)) in zip(bs, chunks[1:-1]):
        again = Batch(b.capacity, b.arena_bytes)
        assert again.load(arena, rings) == n == len(b)
        assert bytes(again.arena_bytes_used()) == bytes(b.arena_bytes_used())
        assert again.events.tobytes() == b.events.tobytes()        # cpu_ring, rec, every field
        assert list(again.ptrs[:n] - again.address()) == list(b.ptrs[:n] - b.address())


def test_the_file_is_never_overwritten_nor_followed(tmp_path):
    path = tmp_path / "c.lbdcap"
    path.write_bytes(b"keep")
    with pytest.raises(CaptureError, match="cannot create capture file .*: File exists"):
        CaptureWriter(path, {})
    assert path.read_bytes() == b"keep"
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "target")
    with pytest.raises(CaptureError, match="cannot create capture file"):
        CaptureWriter(link, {})
    assert not (tmp_path / "target").exists()


def write_one(path, compress="none") -> bytes:
    w = CaptureWriter(path, {"wall_offset_ns": 0}, compress=compress)
    w.write_batch(batches(1, 20)[0])
    w.close({})
    return path.read_bytes()


def read_all(path):
    r = CaptureReader(path)
    try:
        return [(k, v) for k, v in r.chunks()]
    finally:
        r.close()


def test_foreign_and_damaged_files(tmp_path):
    good = write_one(tmp_path / "good")
    bad = tmp_path / "bad"
    for data, msg in (
        (b"", "not an lbd capture file"),
        (b"PK\x03\x04" + b"\0" * 40, "not an lbd capture file"),
        (good[:8] + struct.pack("<I", 99) + good[12:], "capture format version 99"),
    ):
        bad.write_bytes(data)
        with pytest.raises(CaptureError, match=msg):
            CaptureReader(bad)
    # another syscall table (a hash that is not ours)
    meta_len = struct.unpack_from("<I", good, 16)[0]
    meta = good[20:20 + meta_len].replace(b'"table_sha256":"', b'"table_sha256":"0')
    bad.write_bytes(good[:16] + struct.pack("<I", len(meta)) + meta + good[20 + meta_len:])
    with pytest.raises(CaptureError, match="another syscall table"):
        CaptureReader(bad)
    # a chunk with a damaged magic, and a record damaged inside a batch
    body = 20 + meta_len
    bad.write_bytes(good[:body] + b"XXXX" + good[body + 4:])
    with pytest.raises(CaptureError, match="chunk 0 is damaged"):
        read_all(bad)
    data = bytearray(good)
    data[body + 24 + 8 + 38] ^= 0xFF                      # the first record's version
    bad.write_bytes(bytes(data))
    kind, (n, arena, rings) = read_all(bad)[0]
    with pytest.raises(ValueError, match="event 0: malformed record"):
        Batch(64, 1 << 20).load(arena, rings)


def test_a_capture_cut_short_reads_what_is_whole(tmp_path):
    good = write_one(tmp_path / "good")
    cut = tmp_path / "cut"
    cut.write_bytes(good[:-10])                            # the end chunk is not whole
    assert [k for k, _ in read_all(cut)] == ["batch"]


def test_replayed_answers_are_checked(tmp_path):
    from lbd.config import Config

    en = capture.replaying_enricher(Config.default())
    with pytest.raises(CaptureError, match="not \\[method, \\[args\\], result\\]"):
        en.feed([["load", 7, None]])
    with pytest.raises(CaptureError, match="unknown question 'exec'"):
        en.feed([["exec", [1], None]])
    en.feed([["user", [1000], "alice"], ["user", [1000], "bob"]])
    assert en.user(1000) == "alice" and en.user(1000) == "bob" and en.user(1000) == "1000"
    assert en.load(99) is None                              # nothing recorded: unknown
