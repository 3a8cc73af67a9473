"""lbd.Collector's user-facing API without a kernel, on a capture file replayed: the filter
(exactly the events the expression keeps, by the plain-Python reference; state records never;
the enrichment and the recording still see everything), max_events, events as dicts with str
names, to_arrow()/to_pandas(), and bad arguments refused in one line."""
from __future__ import annotations

import numpy as np
import pytest

from lbd import record, syscalls
from lbd._testing import filter_reference as R
from lbd.batch import Batch
from lbd.capture import CaptureWriter
from lbd.collector import Collector
from lbd.ringimage import image_of, patch, random_cases

NRS = [syscalls.lookup(n).nr for n in ("openat", "close", "read", "connect", "newfstatat")]


@pytest.fixture(scope="module")
def capfile(tmp_path_factory):
    """600 records in batches of 100, every 7th a state record (LBD_F_STATE)."""
    cases = random_cases(600, seed=11, nrs=NRS, sched=0.0)
    recs = []
    for k, c in enumerate(cases):
        rec = c.record
        if k % 7 == 3:
            flags = int(np.frombuffer(rec, dtype=record.HDR_DTYPE, count=1)["flags"][0])
            rec = patch(rec, flags=flags | record.F_STATE)
        recs.append(rec)
    ring = image_of(recs, size=1 << 22).ring(index=2)
    path = tmp_path_factory.mktemp("api") / "c.lbdcap"
    w = CaptureWriter(path, {"wall_offset_ns": 1_700_000_000 * 10**9, "config": {}})
    while True:
        b = Batch(100, 100 * 2048)
        if not ring.fill(b):
            break
        w.write_batch(b)
    w.close({})
    return path


def replayed(path, **kw) -> list[list[dict]]:
    """The event dicts of every batch a replaying collector hands out."""
    out = []
    with Collector(replay=path, enrich=True, **kw) as c:
        for b in c:
            out.append([b[i] for i in range(len(b))])
    return out


EXPRESSIONS = [
    "syscall = openat",
    "syscall in (close, read) and not failed",
    "res < 0 or comm startswith a",
    "arg.filename contains a",
    "syscall = connect and sockaddr.port > 1000",
]


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_filter_hands_out_exactly_what_the_expression_keeps(capfile, expr):
    expected, seen_state = [], 0
    with Collector(replay=capfile, enrich=True) as c:           # the whole stream, and the oracle
        for b in c:
            keep = R.evaluate(expr, b)
            state = (b.events["flags"] & record.F_STATE) != 0
            seen_state += int(state.sum())
            expected.append([b[i] for i in range(len(b)) if keep[i] and not state[i]])
    assert seen_state > 50
    for kw in ({"filter": expr}, {}):
        cfg = None if kw else {"open_params": {"filter": expr}}
        with Collector(cfg, replay=capfile, enrich=True, **kw) as c:
            got = []
            for b in c:
                assert not ((b.events["flags"] & record.F_STATE) != 0).any()
                got.append([b[i] for i in range(len(b))])
            assert c.stats()["delivered"] == 600 and c.events == sum(map(len, got))
        assert got == expected
    assert 0 < sum(map(len, expected)) < 600 - seen_state


def test_filtered_batches_keep_ts_rings_and_enrichment(capfile):
    full = {}
    with Collector(replay=capfile, enrich=True) as c:
        for b in c:
            for i in range(len(b)):
                full[(int(b.events["ts"][i]), int(b.events["tid"][i]))] = (b.events[i].copy(), b[i])
    with Collector(replay=capfile, enrich=True, filter="syscall in (openat, read)") as c:
        n = 0
        for b in c:
            assert b.enriched_generation == b.generation and len(b.enrich) == len(b)
            for i in range(len(b)):
                row, d = full[(int(b.events["ts"][i]), int(b.events["tid"][i]))]
                mine = b.events[i]
                for f in record.EVENT_DTYPE.names:
                    if f != "rec":
                        assert np.array_equal(mine[f], row[f]), f
                assert b[i] == d
                n += 1
    assert n > 0


def test_max_events_cuts_the_last_batch(capfile):
    whole = []
    with Collector(replay=capfile, enrich=True) as c:      # the events of the selection, in order
        for b in c:
            out = b.output_mask()
            whole += [b[i] for i in range(len(b)) if out is None or out[i]]
    assert 400 < len(whole) < 600
    for n in (1, 99, 100, 101, 250, len(whole)):
        got = replayed(capfile, max_events=n)
        assert sum(map(len, got)) == n
        assert [e for batch in got for e in batch] == whole[:n]
    assert sum(map(len, replayed(capfile, max_events=len(whole) + 1))) == len(whole)   # the file ends first
    got = replayed(capfile, max_events=10, filter="syscall = close")
    assert sum(map(len, got)) == 10 and all(e["syscall"] == "close" for b in got for e in b)


def test_duration_ends_a_replay(capfile):
    got = replayed(capfile, duration=3600)           # the file ends first
    assert sum(map(len, got)) == 600


def test_names_as_text(capfile):
    with Collector(replay=capfile) as c:
        b = next(iter(c))
        comms = b.comms()
        assert comms.dtype == object and all(isinstance(x, str) for x in comms)
        for i in range(len(b)):
            raw = bytes(b.events["comm"][i])
            assert comms[i] == b.comm(i) == raw.decode("utf-8", "backslashreplace") == b[i]["comm"]
            assert b[i]["syscall"] == b.name(i) == syscalls.lookup(int(b.events["nr"][i])).name
        assert b[-1] == b[len(b) - 1]
        with pytest.raises(IndexError):
            b[len(b)]


def test_to_arrow_and_pandas(capfile):
    pytest.importorskip("pandas")
    from lbd.output.parquet import SCHEMA

    with Collector(replay=capfile, enrich=True, filter="syscall = openat") as c:
        for b in c:
            if len(b):
                break
        t = b.to_arrow()
        assert t.schema == SCHEMA and t.num_rows == len(b)
        assert t.column("comm").to_pylist() == list(b.comms())
        assert t.column("syscall").to_pylist() == ["openat"] * len(b)
        assert t.column("pid").to_pylist() == b.events["pid"].tolist()
        df = b.to_pandas()
        assert list(df.columns) == SCHEMA.names and len(df) == len(b)
        assert list(df["comm"].astype(str)) == list(b.comms())
        assert list(df["cmdline"].astype(str)) == [b[i]["cmdline"] for i in range(len(b))]
        half = np.zeros(len(b), dtype=bool)
        half[::2] = True
        assert b.to_pandas(half)["tid"].tolist() == b.events["tid"][half].tolist()


@pytest.mark.parametrize("kw, msg", [
    ({"duration": 0}, "duration: 0, a number of seconds > 0"),
    ({"duration": "5"}, "duration: '5', a number of seconds > 0"),
    ({"max_events": 0}, "max_events: 0, an integer >= 1"),
    ({"max_events": 2.5}, "max_events: 2.5, an integer >= 1"),
    ({"filter": 3}, "filter: 3, a filter expression"),
])
def test_bad_arguments_one_line(kw, msg):
    with pytest.raises(ValueError) as e:
        Collector(**kw)
    assert str(e.value).startswith(msg) and "\n" not in str(e.value)


def test_bad_filter_points_at_the_column():
    from lbd.config import ConfigError

    with pytest.raises(ConfigError) as e:
        Collector(filter="syscall = openat and nosuchfield = 1")
    assert "nosuchfield" in str(e.value)


def test_probe_config_selects_the_filters_syscalls():
    """A filter naming syscalls outside the packaged default selection captured nothing (the
    pushdown met the default selection with them: drop_mode); with no syscalls of the user's,
    the filter's are the selection."""
    from lbd.collector import probe_config
    from lbd.config import Config
    from lbd.probe import resolve_selection

    d = Config.default()
    assert syscalls.lookup("newfstatat").nr not in resolve_selection(d)
    k = probe_config(d.replace(filter="syscall = newfstatat and arg.filename = /x"))
    assert list(k.open.syscalls) == ["newfstatat"] and not k.open.drop_mode
    k = probe_config(d.replace(filter="syscall in (openat, sched_process_exit) and pid = 7"))
    assert list(k.open.syscalls) == ["openat"] and list(k.open.only_pids) == [7]
    # the user's own selection is met, never widened
    k = probe_config(d.replace(syscalls=["openat", "close"], filter="syscall in (close, newfstatat)"))
    assert list(k.open.syscalls) == ["close"]
    k = probe_config(d.replace(syscalls=["openat"], filter="syscall = newfstatat"))
    assert k.open.drop_mode
    assert probe_config(d) is d and probe_config(d.replace(filter="pid = 3")).open.syscalls == ()


@pytest.mark.parametrize("pattern", ["all", "none", "first", "last", "every other", "random", "blocks"])
def test_select_into_copies_exactly_the_chosen_events(pattern):
    """Batch.select_into: both ways of copying (a slice per run of adjacent records; many runs
    gathered as words) give the chosen records, their table rows and their enrichment rows."""
    from lbd.enrich.layout import empty_enrichment

    cases = random_cases(300, seed=4)
    ring = image_of([c.record for c in cases], size=1 << 22).ring(index=3)
    b = Batch(300, 300 * 2048)
    assert ring.fill(b) == 300
    empty_enrichment(b)
    n = len(b)
    rng = np.random.default_rng(7)
    keep = {"all": np.ones(n, bool), "none": np.zeros(n, bool), "first": np.arange(n) == 0,
            "last": np.arange(n) == n - 1, "every other": np.arange(n) % 2 == 0,
            "random": rng.random(n) < 0.4, "blocks": (np.arange(n) // 7) % 3 == 1}[pattern]
    idx = np.flatnonzero(keep)
    t = b.select_into(Batch(b.capacity, b.arena_bytes), idx, 0)
    assert len(t) == len(idx)
    for k, i in enumerate(idx.tolist()):
        assert bytes(t.record(k)) == bytes(b.record(i))
        assert bytes(t.falco_event(k)) == bytes(b.falco_event(i))
        for f in record.EVENT_DTYPE.names:
            if f != "rec":
                assert np.array_equal(t.events[k][f], b.events[i][f]), f
        assert t.args(k) == b.args(i)
    assert t.enrich.tobytes() == b.enrich[idx].tobytes() and t.strtab is b.strtab
