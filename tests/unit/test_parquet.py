"""Parquet output (lbd.output.parquet): the schema, every column of every kind of event against a
per-event oracle written here from lbd.args and the JSON reference, the writer's files, and a
full disk that stops it between row groups with a valid file."""
from __future__ import annotations

import errno
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lbd import args as _args, flags as _flags, record
from lbd.config import Config
from lbd.output import parquet as P, reference
from lbd.output.writer import OutputError, open_writer
from tests.data import synth
from tests.data.fakeproc import batch_of, rec

K = record.KINDS


# ---- the oracle: one event at a time, from Batch.args() ------------------------------------------

def text(v) -> str:
    return reference.format_value(v, 0)


def expected_row(batch, i: int) -> dict:
    f = reference.event_fields(batch, i)
    nr = f["nr"]
    specs = _args.arg_specs(nr) or ()
    jnames = _args.json_arg_names(nr) or ()
    # Parquet has no value for an unreadable argument (left out of args, null in a typed column)
    a = {k: (None if v is _args.UNREADABLE else v) for k, v in f["args"].items()}
    row = {"ts": f["ts"], "syscall": f["name"], "nr": nr, "dir": f["dir"], "res": f["res"],
           "latency": f["latency"], "pid": f["pid"], "tid": f["tid"], "ppid": f["ppid"], "uid": f["uid"],
           "gid": f["gid"], "comm": f["comm"]}
    enriched = hasattr(batch, "enrich") and batch.enrich is not None
    for col, key in (("pcomm", "pcomm"), ("user", "user"), ("group", "group"), ("cmdline", "cmdline"),
                     ("exe", "fullpath")):
        row[col] = f[key] if enriched else None
    mapped = list(enumerate(zip(specs, jnames)))
    # roles by kind: the first argument of each kind (two for paths)
    taken: dict[str, int] = {}
    for k, (s, jn) in mapped:
        r = None
        if s.kind_id == K["path"]:
            r = "path" if "path" not in taken else "path2" if "path2" not in taken else None
        elif s.kind_id == K["fd"]:
            r = "fd"
        elif s.kind_id == K["dirfd"]:
            r = "dirfd"
        elif s.kind_id in (K["sockaddr"], K["out_sockaddr"]):
            r = "sockaddr"
        elif s.kind_id == K["flags"]:
            r = "flags"
        if r is not None and r not in taken:
            taken[r] = k
    m = []
    for k, (s, jn) in mapped:
        v = a.get(s.name) if a else None
        if k in taken.values():
            continue
        if v is not None and a:
            m.append((jn, text(v)))
    row["args"] = m
    def val(r):
        k = taken.get(r)
        return None if k is None or not a else a[specs[k].name]
    row["path"], row["path2"], row["fd"], row["dirfd"] = val("path"), val("path2"), val("fd"), val("dirfd")
    sa = val("sockaddr")
    row["sa_family"], row["sa_addr"], row["sa_port"], row["sa_path"] = \
        (None,) * 4 if sa is None else (sa.family, sa.addr, sa.port, sa.path)
    fl = val("flags")
    row["flags"] = None if fl is None else _args.json_int(fl)
    row["flag_names"] = None if fl is None else _flags.names(specs[taken["flags"]].flags, fl)
    return row


def actual_rows(rb: pa.RecordBatch) -> list[dict]:
    t = rb.to_pydict() if "ts" not in rb.schema.names else \
        pa.RecordBatch.from_arrays([c.cast(pa.int64()) if c.type == P.SCHEMA.field("ts").type else c
                                    for c in rb.columns], names=rb.schema.names).to_pydict()
    return [{k: t[k][i] for k in t} for i in range(rb.num_rows)]


def assert_same(batch, rb, idx=None) -> None:
    rows = actual_rows(rb)
    idx = range(len(batch)) if idx is None else idx
    assert len(rows) == len(idx)
    for row, i in zip(rows, idx):
        want = expected_row(batch, i)
        for k, v in want.items():
            assert row[k] == v, (i, k, row[k], v, want["syscall"])


# ---- conversion ------------------------------------------------------------------------------------

def test_schema_is_fixed_and_documented():
    assert P.SCHEMA.metadata[b"lbd.schema_version"] == P.SCHEMA_VERSION.encode()
    doc = P.__doc__
    for f in P.SCHEMA:
        assert f"    {f.name} " in doc or f" {f.name}," in doc or f", {f.name} " in doc, f.name
    assert P.SCHEMA.field("args").type == pa.map_(pa.string(), pa.string())


@pytest.mark.parametrize("seed", [1, 2])
def test_every_kind_of_event_without_enrichment(seed):
    b = next(synth.batches(3000, seed, batch_size=3000, enrich=False))
    rb = P.record_batch(b)
    assert rb.schema == P.SCHEMA
    assert_same(b, rb)


def test_every_kind_of_event_enriched():
    for b in synth.batches(4000, 5, batch_size=2000):
        assert_same(b, P.record_batch(b))


def test_mask_selects_events():
    b = next(synth.batches(500, 7, batch_size=500))
    mask = np.arange(500) % 3 == 1
    assert_same(b, P.record_batch(b, mask), np.flatnonzero(mask))
    assert P.record_batch(b, np.zeros(500, bool)).num_rows == 0


def test_typed_columns_of_common_calls():
    b = batch_of(rec("openat", {"dfd": -100, "filename": "/etc/passwd", "flags": os.O_RDONLY | os.O_CLOEXEC},
                     res=3),
                 rec("renameat2", {"olddfd": -100, "oldname": "/a", "newdfd": 5, "newname": "/b", "flags": 0}),
                 rec("connect", {"fd": 3, "uservaddr": synth_sockaddr(), "addrlen": 16}, res=-115),
                 rec("execve", {"filename": "/bin/ls", "argv": ["ls", "-l"], "envp": None}),
                 rec("pipe2", {"fildes": (3, 4), "flags": 0}))
    t = P.record_batch(b).to_pydict()
    assert t["syscall"] == ["openat", "renameat2", "connect", "execve", "pipe2"]
    assert (t["path"][0], t["dirfd"][0], t["flags"][0], t["flag_names"][0]) == \
        ("/etc/passwd", -100, 0o2000000, "O_RDONLY|O_CLOEXEC")
    assert (t["path"][1], t["path2"][1], t["dirfd"][1], dict(t["args"][1])["newdfd"]) == ("/a", "/b", -100, "5")
    assert (t["fd"][2], t["sa_family"][2], t["sa_addr"][2], t["sa_port"][2], t["res"][2]) == \
        (3, "AF_INET", "10.1.2.3", 8443, -115)
    assert dict(t["args"][3]) == {"argv": "ls -l"} and t["path"][3] == "/bin/ls"   # envp NULL: left out
    assert dict(t["args"][4]) == {"fildes": "3 4"}


def synth_sockaddr():
    from lbd.ringimage import sockaddr_in

    return sockaddr_in("10.1.2.3", 8443)


# ---- the writer ------------------------------------------------------------------------------------

def write(path, batches, **kw):
    with P.ParquetWriter(str(path), **kw) as w:
        for b in batches:
            w.write_batch(b)
    return w


def test_file_round_trip(tmp_path):
    batches = list(synth.batches(9000, 9, batch_size=1500))
    path = tmp_path / "e.parquet"
    old = os.umask(0)
    try:
        w = write(path, batches, row_group_size=4000)
    finally:
        os.umask(old)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    meta = pq.read_metadata(path)
    # row groups close at the first batch that reaches row_group_size: 3 + 3 batches of 1500
    assert meta.num_rows == 9000 == w.events and meta.num_row_groups == 2 == w.row_groups
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert w.bytes == os.path.getsize(path)
    t = pq.read_table(path)
    assert t.schema.metadata[b"lbd.schema_version"] == b"1"
    got = t.to_batches()
    rows = [r for rb in got for r in actual_rows(rb)]
    want = [expected_row(b, i) for b in batches for i in range(len(b))]
    for r, x in zip(rows, want):
        assert {k: r[k] for k in x} == x
    assert w.top_syscalls(3)[0][1] >= 1


def test_an_existing_file_is_never_overwritten(tmp_path):
    path = tmp_path / "e.parquet"
    path.write_bytes(b"keep")
    with pytest.raises(OutputError) as e:
        P.ParquetWriter(str(path))
    assert str(e.value) == (f"cannot open output file {path}: it exists (Parquet files are not appended to: "
                            "remove it or choose another path)")
    assert path.read_bytes() == b"keep"


def test_open_writer_gives_parquet_for_a_file_only(tmp_path):
    cfg = Config.default().replace(format="parquet")
    with pytest.raises(OutputError, match="the parquet format writes a file: give --output PATH"):
        open_writer(cfg)
    w = open_writer(cfg, str(tmp_path / "x.parquet"))
    assert isinstance(w, P.ParquetWriter) and w.format == "parquet"
    w.close()
    assert pq.read_table(tmp_path / "x.parquet").num_rows == 0


def test_disk_full_keeps_the_complete_row_groups(tmp_path, monkeypatch):
    """posix_fallocate says ENOSPC before the third row group: the file ends with the footer of
    the first two, the rest is counted lost, and the writer reports one line."""
    calls = {"n": 0}
    real = os.posix_fallocate

    def fallocate(fd, off, length):
        calls["n"] += 1
        if calls["n"] >= 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, off, length)

    monkeypatch.setattr(os, "posix_fallocate", fallocate)
    batches = list(synth.batches(5000, 11, batch_size=1000))
    path = tmp_path / "e.parquet"
    w = P.ParquetWriter(str(path), row_group_size=1000)
    with pytest.raises(OutputError) as e:
        for b in batches:
            w.write_batch(b)
    assert str(e.value) == (f"cannot write events to {path}: No space left on device "
                            "(2000 events in 2 row groups kept)")
    with pytest.raises(OutputError):
        w.write_batch(batches[0])
    with pytest.raises(OutputError):
        w.close()
    assert (w.events, w.lost) == (2000, 1000)
    t = pq.read_table(path)
    assert t.num_rows == 2000 and os.path.getsize(path) == w.bytes
    assert t.column("nr").to_pylist() == [int(x) for b in batches[:2] for x in b.events["nr"]]


def test_environment_follows_capture_env_and_masks_secrets(tmp_path):
    """envp in Parquet (and the Arrow messages of the NATS exporter) as in the text formats:
    secret values masked with capture_env, nothing without it (open_parquet passes the
    configuration's).  Parquet wrote every value."""
    from lbd.output.parquet import ParquetWriter, record_batch
    from tests.data.fakeproc import batch_of, rec

    b = batch_of(rec("execve", {"filename": "/bin/x", "argv": ["x"],
                                "envp": ["HOME=/root", "API_TOKEN=ab cd", "LANG=C"]}, res=0))

    def envp(rb):
        return dict(rb.column("args").to_pylist()[0]).get("envp")

    assert envp(record_batch(b)) == "HOME=/root API_TOKEN=ab cd LANG=C"          # the API: as recorded
    assert envp(record_batch(b, env=(True, "*TOKEN*"))) == "HOME=/root API_TOKEN=*** LANG=C"
    assert envp(record_batch(b, env=(False, "*TOKEN*"))) is None
    for capture, want in ((True, "HOME=/root API_TOKEN=*** LANG=C"), (False, None)):
        path = tmp_path / f"e{capture}.parquet"
        w = ParquetWriter(str(path), env=(capture, "*TOKEN*|*KEY*"))
        w.write_batch(b)
        w.close()
        got = dict(pq.read_table(path).column("args").to_pylist()[0]).get("envp")
        assert got == want


def test_open_parquet_takes_the_configurations_environment_settings(tmp_path):
    cfg = Config.default().replace(capture_env=True, secret_pattern="*TOKEN*")
    w = P.open_parquet(cfg, str(tmp_path / "c.parquet"))
    assert w.env == (True, "*TOKEN*")
    w.close()
    w = P.open_parquet(Config.default(), str(tmp_path / "d.parquet"))
    assert w.env == (False, Config.default().init.secret_pattern)
    w.close()
