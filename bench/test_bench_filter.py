"""Filter rates: events/s through a three-predicate filter on one core, the compiled filter
(lbd.filter: numpy over header columns, text in lbd._filter's span loop or numpy) against the
plain per-event evaluator (lbd._testing.filter_reference), in the same run.

Self-contained: synthetic batches (512 events, lbd run's default, and 65536) built with
lbd.ringimage from a mix of a busy
host's syscalls (openat of libraries and of /etc files, read, write, close, connect, execve,
futex, newfstatat; forty processes with their comms).  Target: >= 10,000,000 events/s (compiled).
The summary at the end of the module prints events/s and the ratios.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.data.fakeproc import O_CLOEXEC, batch_of, rec  # noqa: E402

SIZES = (512, 65536)     # lbd run's default batch, and a large one
N_REFERENCE = 2048
TARGET = 10_000_000
T0 = 1_750_000_000_000_000_000

#: the issue's example: three tests, one of them on a payload string
FILTERS = {
    "etc": "syscall in (open, openat) and arg.filename startswith /etc/ and not comm in (sshd, login)",
    "header": "syscall = openat and uid = 0 and not failed",
    "text": "comm startswith worker and arg.filename contains shadow and failed",
}
COMMS = ["sshd", "login", "bash", "nginx", "postgres", "systemd", "cron", "python3"] + [f"worker{k}" for k in range(32)]

RATES: dict[str, float] = {}


def _records(n: int) -> list[bytes]:
    from lbd.ringimage import sockaddr_in

    out = []
    for i in range(n):
        pid = 3000 + (i * 13) % 40
        p = dict(pid=pid, tid=pid, ppid=1, uid=0 if pid % 3 else 1000, gid=0, comm=COMMS[pid % 40], ts=T0 + i * 500,
                 latency=900 + i % 200)
        k = i % 10
        if k == 0:
            out.append(rec("openat", {"dfd": -100, "filename": f"/usr/lib/x86_64-linux-gnu/libexample{i % 61}.so.6",
                                      "flags": O_CLOEXEC}, res=5, **p))
        elif k == 1:
            path = ("/etc/shadow", "/etc/passwd", "/etc/ld.so.cache", "/etc/hosts")[(i // 10) % 4]
            out.append(rec("openat", {"dfd": -100, "filename": path, "flags": O_CLOEXEC}, res=-13 if (i // 10) % 3 == 0 else 6,
                           **p))
        elif k == 2:
            out.append(rec("read", {"fd": 5, "buf": b"\x7fELF\x02\x01\x01", "count": 832}, res=832, **p))
        elif k == 3:
            out.append(rec("close", {"fd": 5}, res=0, **p))
        elif k == 4:
            out.append(rec("write", {"fd": 1, "buf": b"GET /index.html HTTP/1.1\r\n", "count": 26}, res=26, **p))
        elif k == 5:
            out.append(rec("connect", {"fd": 7, "uservaddr": sockaddr_in("10.20.30.40", 443), "addrlen": 16},
                           res=-115, **p))
        elif k == 6:
            out.append(rec("futex", {"uaddr": 0x7F0000001000, "op": 128, "val": 1}, res=0, **p))
        elif k == 7:
            out.append(rec("newfstatat", {"dfd": 5, "filename": "", "statbuf": 0x7FFF0000, "flag": 0x1000}, res=0, **p))
        elif k == 8:
            out.append(rec("open", {"filename": "/proc/self/status", "flags": 0, "mode": 0}, res=8, **p))
        else:
            out.append(rec("execve", {"filename": "/usr/bin/git", "argv": ["git", "status"], "envp": ["HOME=/root"]},
                           res=0, **p))
    return out


@pytest.fixture(scope="module")
def batches():
    recs = _records(max(SIZES))
    return {n: batch_of(*recs[:n]) for n in SIZES}, batch_of(*recs[:N_REFERENCE])


class _Summary:
    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter):
        if not RATES:
            return
        tr = terminalreporter
        tr.section("lbd filter rates (events/s from the median round, one core)")
        for name, expr in FILTERS.items():
            tr.write_line(f"{name}: {expr}")
            r = RATES.get(f"reference {name}")
            for size in SIZES:
                c, n = (RATES.get(f"{kind} {name} {size}") for kind in ("compiled", "numpy"))
                if c is None:
                    continue
                mark = "meets" if c >= TARGET else "BELOW"
                extra = f", numpy path {n:,.0f}/s ({c / n:.1f}x)" if n else ""
                extra += f", reference {r:,.0f}/s ({c / r:,.0f}x)" if r else ""
                tr.write_line(f"  batches of {size:5d}: compiled {c:14,.0f}/s ({mark} the {TARGET:,}/s target){extra}")


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    pm = request.config.pluginmanager
    if not pm.has_plugin("lbd-filter-summary"):
        pm.register(_Summary(), "lbd-filter-summary")
    yield


def _rate(benchmark, name: str, n: int) -> None:
    stats = getattr(benchmark, "stats", None)
    s = getattr(stats, "stats", None) if stats is not None else None
    if s is not None and s.median:
        RATES[name] = n / s.median
        benchmark.extra_info["events_per_s"] = round(RATES[name])
    benchmark.extra_info["events"] = n


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("path", ["compiled", "numpy"])
@pytest.mark.parametrize("name", list(FILTERS))
def test_bench_filter(benchmark, batches, name, path, size):
    import lbd.filter as F
    from lbd.filter import spans

    if path == "compiled" and spans._c is None:
        pytest.skip("lbd._filter is not built (add it to setup.py's EXTENSIONS)")
    big = batches[0][size]
    f = F.compile(FILTERS[name])
    old = spans.use_compiled(path == "compiled")
    try:
        benchmark.group = f"filter {name} {size}"
        calls = max(1, 20000 // size)            # small batches: time many calls per round

        def run():
            for _ in range(calls):
                m = f(big)
            return m
        mask = benchmark.pedantic(run, rounds=30, warmup_rounds=3)
    finally:
        spans.use_compiled(old)
    assert 0 < int(mask.sum()) < len(big)        # a filter that selects something, not everything
    _rate(benchmark, f"{path} {name} {size}", len(big) * calls)


@pytest.mark.parametrize("name", list(FILTERS))
def test_bench_filter_reference(benchmark, batches, name):
    from lbd._testing import filter_reference as R

    small = batches[1]
    benchmark.group = f"filter {name}"
    benchmark.pedantic(R.evaluate, args=(FILTERS[name], small), rounds=3, warmup_rounds=0)
    _rate(benchmark, f"reference {name}", len(small))


def test_bench_filters_agree(batches):
    """Both sides of the comparison select the same events (a guard, not a benchmark)."""
    import numpy as np

    import lbd.filter as F
    from lbd._testing import filter_reference as R

    small = batches[1]
    for expr in FILTERS.values():
        assert F.compile(expr)(small).tolist() == R.evaluate(expr, small)
        assert np.any(F.compile(expr)(small))
