"""The bulk formatter (lbd._format) against the per-event reference (lbd.output.reference), byte for
byte, and the Writer: files, errors, buffering."""
from __future__ import annotations

import json
import os
import stat
import time

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from lbd import record
from lbd._format import Formatter
from lbd.config import Config
from lbd.enrich import empty_enrichment
from lbd.output import load_schema, reference
from lbd.output.writer import OutputError, Writer, open_writer
from lbd.ringimage import random_records, sockaddr_in, sockaddr_in6, sockaddr_un
from tests.data.fakeproc import FakeHost, batch_of, rec
from tests.data.normal_parser import parse_line

LIMITS = (0, 1, 4, 17, 1024)
VALIDATOR = jsonschema.Draft202012Validator(load_schema(), format_checker=jsonschema.FormatChecker())


def both(batch, fmt, limit, mask=None) -> bytes:
    f = Formatter(fmt, limit)
    n = f.format(batch, mask)
    got = f.getvalue()
    want = reference.format_batch(batch, fmt, limit, mask)
    if got != want:  # show the first differing line, not two megabytes
        for g, w in zip(got.split(b"\n"), want.split(b"\n")):
            assert g == w
    assert got == want
    assert n == (len(batch) if mask is None else int(np.count_nonzero(mask)))
    return got


# ---- differential: every kind of record --------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("fmt", ["normal", "json"])
def test_random_records_without_enrichment(seed, fmt):
    b = batch_of(*random_records(600, seed=seed))
    for limit in LIMITS:
        both(b, fmt, limit)


@pytest.mark.parametrize("fmt", ["normal", "json"])
def test_random_records_with_enrichment(tmp_path, fmt):
    h = FakeHost(tmp_path)
    h.add_process(1, "systemd", 0, ["/sbin/init"], exe="/usr/lib/systemd/systemd", fds={0: "/dev/null"})
    en = h.enricher()
    for seed in (10, 11):
        b = batch_of(*random_records(600, seed=seed))
        en.enrich(b)
        for limit in LIMITS:
            out = both(b, fmt, limit)
        if fmt == "json":
            for line in out.decode().splitlines():
                VALIDATOR.validate(json.loads(line))


def test_empty_enrichment_is_the_kernel_view():
    b = batch_of(rec("getpid", pid=7, ppid=3, uid=1234, gid=99, comm="k"))
    empty_enrichment(b)
    line = both(b, "normal", 0).decode()
    assert "user=1234, comm=(k), cmdline=(k), pid=7, tid=7, ppid=3(), args=(), fds=[]" in line
    obj = json.loads(both(b, "json", 0))
    assert (obj["user"], obj["group"], obj["fullpath"], obj["fds"]) == ("1234", "99", "", {"fd": [], "path": []})


def test_mask_selects_events():
    b = batch_of(*random_records(100, seed=3))
    mask = np.arange(100) % 3 == 0
    for fmt in ("normal", "json"):
        assert both(b, fmt, 0, mask).count(b"\n") == 34


# ---- text rules, through records ----------------------------------------------------------------

def one_line(fmt, limit, *records):
    b = batch_of(*records)
    return both(b, fmt, limit).decode()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.integers(0, 12))
def test_arbitrary_bytes_cut_and_escaped_like_python(data, limit):
    """Any bytes in a path: cut at limit characters + "..." (an undecodable byte is one
    character), escaped (normal: one line a parser reads back; json: a JSON string whose
    \\xNN and \\\\ escapes give back the bytes): the same as the reference."""
    r = rec("openat", {"dfd": -100, "filename": data, "flags": 0}, res=-2)
    cut = reference.truncate(data.decode("utf-8", "surrogateescape"), limit).encode("utf-8", "surrogateescape")
    for fmt in ("normal", "json"):
        out = one_line(fmt, limit, r)
        if fmt == "json":
            obj = json.loads(out)
            assert reference.unescape_text(obj["args"]["filename"]) == cut
        else:
            assert out.count("\n") == 1
            assert dict(parse_line(out[:-1])["args"])["filename"] == cut


def test_values_as_the_seed_prints_them():
    line = one_line("normal", 0,
                    rec("unlinkat", {"dfd": -100, "pathname": "/tmp/x", "flag": 512}),
                    rec("connect", {"fd": 3, "uservaddr": sockaddr_in("127.0.0.1", 80), "addrlen": 16}),
                    rec("connect", {"fd": 3, "uservaddr": sockaddr_in6("::1", 80), "addrlen": 28}),
                    rec("connect", {"fd": 3, "uservaddr": sockaddr_un("/run/x.sock"), "addrlen": 14}),
                    rec("connect", {"fd": 3, "uservaddr": sockaddr_un("@abstract"), "addrlen": 12}),
                    rec("execve", {"filename": "/bin/ls", "argv": ["ls", "-l", "/"], "envp": None}),
                    rec("pipe2", {"fildes": (3, 4), "flags": 0}),
                    rec("openat", {"dfd": -100, "filename": None, "flags": 0}, res=-14)).splitlines()
    assert "args=(dfd=-100, pathname=/tmp/x, flag=512)" in line[0]
    assert "uservaddr=127.0.0.1:80," in line[1]
    assert "uservaddr=[::1]:80," in line[2]
    assert "uservaddr=/run/x.sock," in line[3]
    assert "uservaddr=@abstract," in line[4]
    assert "argv=ls -l /, envp=NULL" in line[5]
    assert "fildes=3 4" in line[6]
    assert "filename=NULL" in line[7]


def test_str_max_size_cuts_values_and_cmdline(tmp_path):
    h = FakeHost(tmp_path)
    h.add_process(50, "long", 1, ["long"] + ["arg"] * 20)
    en = h.enricher()
    b = batch_of(rec("openat", {"dfd": -100, "filename": "/abcdefghij", "flags": 0}, pid=50, comm="long"))
    en.enrich(b)
    line = both(b, "normal", 5).decode()
    assert "filename=/abcd..." in line and "cmdline=(long ...)" in line and "dfd=-100" in line
    obj = json.loads(both(b, "json", 5))
    assert obj["args"]["filename"] == "/abcd..." and obj["cmdline"] == "long ..."
    assert "dfd=-1..., filename=/a..." in both(b, "normal", 2).decode()       # numbers are cut too


def test_times():
    ts = 1_700_000_000_123_456_789
    b = batch_of(rec("getpid", ts=ts))
    assert both(b, "normal", 0).decode().startswith(f"[{reference.format_time(ts)}]: getpid,")
    assert json.loads(both(b, "json", 0))["time"] == "2023-11-14T22:13:20.123456789Z"
    # local time follows TZ
    old = os.environ.get("TZ")
    try:
        os.environ["TZ"] = "UTC"
        time.tzset()
        assert both(b, "normal", 0).decode().startswith("[2023-11-14 22:13:20.123456789]")
        os.environ["TZ"] = "CST-8"
        time.tzset()
        assert both(b, "normal", 0).decode().startswith("[2023-11-15 06:13:20.123456789]")
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


def test_json_flag_names_and_truncated():
    b = batch_of(rec("openat", {"dfd": -100, "filename": "/etc/passwd", "flags": 0o2000002}, str_max=4),
                 rec("close", {"fd": 3}, flags=record.F_NOENTER))
    objs = [json.loads(x) for x in both(b, "json", 0).decode().splitlines()]
    assert objs[0]["flag_names"] == {"arg": ["flags"], "names": ["O_RDWR|O_CLOEXEC"]}
    assert objs[0]["truncated"] == ["filename"] and objs[0]["args"]["filename"] == "/etc"
    assert objs[1]["args"] == {} and objs[1]["flag_names"] == {"arg": [], "names": []}
    assert objs[1]["truncated"] == []
    f = Formatter("json", 0)
    f.clear_flag_names()
    f.format(b)
    assert f.getvalue() == both(b, "json", 0)


def test_formatter_validates_its_inputs():
    b = batch_of(rec("getpid"))
    f = Formatter("json", 0)
    with pytest.raises(ValueError):
        Formatter("xml", 0)
    with pytest.raises(TypeError):
        f.format_arrays(np.zeros(3, dtype=np.uint8), b.arena)
    with pytest.raises(TypeError):
        f.format_arrays(b.events, b.arena, enrich=np.zeros(1, dtype=np.uint8))
    with pytest.raises(ValueError):
        f.format(b, mask=np.ones(5, dtype=bool))
    # enrichment offsets out of range read as empty, never out of bounds
    empty_enrichment(b)
    bad = b.enrich.copy()
    bad["cmdline_off"] = 1 << 30
    bad["fds_off"], bad["fds_n"] = 1 << 30, 5
    f.format_arrays(b.events, b.arena, bad, b.strtab, b.fdtab)
    obj = json.loads(f.getvalue())
    assert obj["cmdline"] == "" and obj["fds"] == {"fd": [], "path": []}


# ---- the writer -------------------------------------------------------------------------------------

def test_file_is_created_0600_and_appended(tmp_path):
    path = tmp_path / "events.log"
    b = batch_of(rec("getpid"), rec("getppid"))
    cfg = Config.default().replace(putfile=True, path=str(path))
    old = os.umask(0)
    try:
        with open_writer(cfg) as w:
            w.write_batch(b)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    first = path.read_bytes()
    assert first.count(b"\n") == 2
    with open_writer(cfg, str(path), fmt="json") as w:
        w.write_batch(b)
        assert w.top_syscalls(5) == [("getpid", 1), ("getppid", 1)]
    data = path.read_bytes()
    assert data.startswith(first) and data.count(b"\n") == 4           # appended, not truncated
    assert json.loads(data.splitlines()[-1])["syscall"] == "getppid"


@pytest.mark.parametrize("where,reason", [("missing/dir/events.log", "No such file or directory"),
                                          (".", "Is a directory")])
def test_file_that_cannot_be_opened(tmp_path, where, reason):
    with pytest.raises(OutputError) as e:
        open_writer(Config.default(), str(tmp_path / where))
    assert str(e.value) == f"cannot open output file {tmp_path / where}: {reason}"
    assert "\n" not in str(e.value)


def test_disk_full_is_an_error_and_the_writer_stays_broken():
    b = batch_of(rec("getpid"))
    w = open_writer(Config.default(), "/dev/full")
    w.write_batch(b)                       # buffered
    with pytest.raises(OutputError) as e:
        w.flush()
    assert str(e.value) == "cannot write events to /dev/full: No space left on device"
    with pytest.raises(OutputError):
        w.write_batch(b)
    w.close()                               # discards, closes, no second error


def test_writer_buffers_and_writes_whole_lines(tmp_path):
    r, wfd = os.pipe()
    try:
        w = Writer(wfd, "normal", 0, flush_bytes=1 << 30, flush_s=3600)
        b = batch_of(*[rec("getpid")] * 50)
        w.write_batch(b)
        assert w.formatter.buffered > 0 and w.bytes == 0
        w.flush()
        data = os.read(r, 1 << 20)
        assert data.count(b"\n") == 50 and data.endswith(b"\n") and w.bytes == len(data)
        w.close()                            # not ours: the fd stays open
        os.fstat(wfd)
    finally:
        os.close(r)
        os.close(wfd)


def test_repeated_text_is_copied_only_when_identical(tmp_path):
    """The formatter copies the who-fields and fd lists it already wrote for the same thread and
    state: events that differ in any of them (uid, comm, parent, cmdline, fds) get their own."""
    h = FakeHost(tmp_path)
    h.add_process(1, "systemd", 0, ["/sbin/init"])
    for pid in (20, 21):
        h.add_process(pid, "w", 1, ["w", str(pid)], fds={0: "/dev/null", 1: f"/log/{pid}"})
    en = h.enricher()
    recs = []
    for k in range(120):
        pid = 20 + k % 2
        p = dict(pid=pid, tid=pid + 1000 * (k % 3 == 0), uid=(k // 7) % 2, gid=0, ppid=0,
                 comm="w" if k % 11 else "renamed")
        if k % 5 == 0:
            recs.append(rec("openat", {"dfd": -100, "filename": f"/f{k}", "flags": 0}, res=3 + k % 4, **p))
        elif k % 5 == 1:
            recs.append(rec("close", {"fd": 3 + k % 4}, res=0, **p))
        elif k == 60:
            recs.append(rec("sched_process_exec", {"pid": pid, "old_pid": pid, "filename": "/bin/x"}, **p))
        else:
            recs.append(rec("getpid", **p))
    b = batch_of(*recs)
    en.enrich(b)
    for fmt in ("normal", "json"):
        both(b, fmt, 0)
        both(b, fmt, 3)
        both(b, fmt, 0, np.arange(len(b)) % 4 != 1)
