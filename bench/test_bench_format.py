"""Formatting rates: the bulk formatter (lbd._format, a batch per call, large writes) against the
straightforward per-event Python formatter (lbd.output.reference), in the same run, for both
output formats, written to a file.  Plus the enrichment of the same batches (lbd.enrich).

Self-contained: synthetic batches built with lbd.ringimage from a realistic mix of the default
selection (openat, close, connect, execve, socket, unlinkat, sendto, a failed openat), eight
processes with a handful of open files each, enriched from a fake /proc tree
(tests/data/fakeproc.py).  Target: >= 1,000,000 events/s per format on one core (bulk).
The summary at the end of the module prints events/s and the ratio bulk / reference.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.data.fakeproc import O_CLOEXEC, FakeHost, batch_of, rec  # noqa: E402

N_EVENTS = 4096          # one batch of the bulk path (lbd run's batches are 512 by default)
N_REFERENCE = 512        # the reference is ~50x slower: a smaller batch keeps the run short
STR_MAX = 1024           # str_max_size default
TARGET = 1_000_000
T0 = 1_750_000_000_000_000_000

RATES: dict[str, float] = {}


def _records(n: int, distinct_tids: bool = False) -> list[bytes]:
    from lbd.ringimage import sockaddr_in, sockaddr_un

    out = []
    for i in range(n):
        pid = 2000 + i % 8
        p = dict(pid=pid, tid=100_000 + i if distinct_tids else pid, ppid=0, uid=1000 if pid % 2 else 0, gid=1000 if pid % 2 else 0,
                 comm=f"worker{pid % 8}", ts=T0 + i * 997, latency=1500 + i % 300)
        k = i % 8
        if k == 0:
            out.append(rec("openat", {"dfd": -100, "filename": f"/usr/lib/x86_64-linux-gnu/libexample{i % 61}.so.6",
                                      "flags": O_CLOEXEC, "mode": 0}, res=7, **p))
        elif k == 1:
            out.append(rec("close", {"fd": 7}, res=0, **p))
        elif k == 2:
            out.append(rec("openat", {"dfd": -100, "filename": "/etc/ld.so.preload", "flags": O_CLOEXEC},
                           res=-2, **p))
        elif k == 3:
            out.append(rec("connect", {"fd": 4, "uservaddr": sockaddr_in("10.20.30.40", 443), "addrlen": 16},
                           res=0, **p))
        elif k == 4:
            out.append(rec("execve", {"filename": "/usr/bin/git",
                                      "argv": ["git", "status", "--porcelain"],
                                      "envp": ["HOME=/home/alice", "LANG=C.UTF-8", "PATH=/usr/local/bin:/usr/bin:/bin",
                                               "TERM=xterm-256color", "USER=alice"]}, res=-2, **p))
        elif k == 5:
            out.append(rec("connect", {"fd": 5, "uservaddr": sockaddr_un("/run/systemd/journal/socket"),
                                       "addrlen": 30}, res=0, **p))
        elif k == 6:
            out.append(rec("unlinkat", {"dfd": -100, "pathname": f"/tmp/build-{i % 97}/obj.o.tmp", "flag": 0},
                           res=0, **p))
        else:
            out.append(rec("sendto", {"fd": 4, "buff": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 3,
                                      "len": 517, "flags": 0x4000, "addr": None, "addr_len": 0}, res=517, **p))
    return out


def _host(root: Path) -> FakeHost:
    h = FakeHost(root)
    h.add_process(1, "systemd", 0, ["/sbin/init"], exe="/usr/lib/systemd/systemd")
    for k in range(8):
        pid = 2000 + k
        h.add_process(pid, f"worker{k}", 1, [f"/usr/bin/worker{k}", "--serve", f"--port={8000 + k}"],
                      exe=f"/usr/bin/worker{k}", cwd="/srv",
                      fds={0: "/dev/null", 1: "/var/log/worker.log", 2: "/var/log/worker.log",
                           3: "anon_inode:[eventpoll]", 4: "socket:[inet 10.20.30.40:443]",
                           5: "/run/systemd/journal/socket", 6: "pipe:[31337]"})
    return h


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    """(bulk batch, reference batch, enricher, bulk batch with a distinct tid per event), enriched."""
    root = tmp_path_factory.mktemp("fakehost")
    en = _host(root).enricher()
    big = batch_of(*_records(N_EVENTS))
    en.enrich(big)
    small = batch_of(*_records(N_REFERENCE))
    _host(tmp_path_factory.mktemp("fakehost2")).enricher().enrich(small)
    distinct = batch_of(*_records(N_EVENTS, distinct_tids=True))
    _host(tmp_path_factory.mktemp("fakehost3")).enricher().enrich(distinct)
    return big, small, en, distinct


@pytest.fixture
def outfile(tmp_path):
    fd = os.open(tmp_path / "events.out", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    yield fd
    os.close(fd)


class _Summary:
    """Prints the rates after pytest-benchmark's tables (a plugin registered by this module)."""

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter):
        if not RATES:
            return
        tr = terminalreporter
        tr.section("lbd formatting rates (events/s from the median round, one core, written to a file)")
        for fmt in ("normal", "json"):
            bulk, ref = RATES.get(f"bulk {fmt}"), RATES.get(f"reference {fmt}")
            if bulk:
                ratio = f", {bulk / ref:.0f}x the reference ({ref:,.0f}/s)" if ref else ""
                mark = "meets" if bulk >= TARGET else "BELOW"
                best = RATES.get(f"bulk {fmt} best")
                tr.write_line(f"{fmt:6s}  bulk {bulk:12,.0f}/s (best round {best:,.0f}/s; {mark} the {TARGET:,}/s "
                              f"target){ratio}")
            dist = RATES.get(f"bulk {fmt} distinct")
            if dist:
                mark = "meets" if dist >= TARGET else "BELOW"
                tr.write_line(f"{fmt:6s}  bulk {dist:12,.0f}/s with a distinct thread per event ({mark} the target)")
        if "enrich" in RATES:
            tr.write_line(f"enrichment of the bulk batch: {RATES['enrich']:,.0f} events/s")


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    pm = request.config.pluginmanager
    if not pm.has_plugin("lbd-format-summary"):
        pm.register(_Summary(), "lbd-format-summary")
    yield


def _rate(benchmark, name: str, n: int) -> None:
    """events/s of the median and of the best round, into RATES and the saved extra_info."""
    stats = getattr(benchmark, "stats", None)
    s = getattr(stats, "stats", None) if stats is not None else None
    if s is not None and s.median and s.min:
        RATES[name] = n / s.median
        RATES[name + " best"] = n / s.min
        benchmark.extra_info["events_per_s"] = round(RATES[name])
        benchmark.extra_info["events_per_s_best"] = round(RATES[name + " best"])
    benchmark.extra_info["events"] = n


@pytest.mark.parametrize("tids", ["per-process", "distinct"])
@pytest.mark.parametrize("fmt", ["normal", "json"])
def test_bench_format_bulk(benchmark, batches, outfile, fmt, tids):
    """The bulk formatter.  per-process: events of 8 processes (a thread's repeated who-fields and
    fd lists are copied); distinct: every event from another thread (only the fd lists repeat)."""
    from lbd._format import Formatter

    batch = batches[0] if tids == "per-process" else batches[3]
    f = Formatter(fmt, STR_MAX)

    def run():
        f.format(batch)
        f.write_to(outfile)

    benchmark.group = f"format {fmt}"
    benchmark.pedantic(run, setup=lambda: os.ftruncate(outfile, 0), rounds=60, warmup_rounds=5)
    _rate(benchmark, f"bulk {fmt}" + ("" if tids == "per-process" else " distinct"), len(batch))


@pytest.mark.parametrize("fmt", ["normal", "json"])
def test_bench_format_reference(benchmark, batches, outfile, fmt):
    from lbd.output import reference

    batch = batches[1]

    def run():
        os.write(outfile, reference.format_batch(batch, fmt, STR_MAX))

    benchmark.group = f"format {fmt}"
    benchmark.pedantic(run, setup=lambda: os.ftruncate(outfile, 0), rounds=5, warmup_rounds=1)
    _rate(benchmark, f"reference {fmt}", len(batch))


def test_bench_outputs_agree(batches):
    """The two sides of the comparison write the same bytes (not a benchmark: a guard)."""
    from lbd._format import Formatter
    from lbd.output import reference

    small = batches[1]
    for fmt in ("normal", "json"):
        f = Formatter(fmt, STR_MAX)
        f.format(small)
        assert f.getvalue() == reference.format_batch(small, fmt, STR_MAX)


def test_bench_enrich(benchmark, batches):
    big, _, en, _ = batches
    benchmark.group = "enrich"
    benchmark.pedantic(en.enrich, args=(big,), rounds=20, warmup_rounds=2)
    _rate(benchmark, "enrich", len(big))
