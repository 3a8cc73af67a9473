"""Terminal format rate: lbd.output.terminal (Python, event by event) beside the bulk `normal`
formatter (lbd._format) and the per-event `normal` reference, on the same synthetic batch
(bench/test_bench_filter.py's mix).  The terminal format is for a person at a terminal, which shows
far fewer lines a second than either figure: read the ratio, and keep it above what a terminal
takes (tens of thousands of lines a second)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]
for p in (_ROOT, _ROOT / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from test_bench_filter import _records  # noqa: E402
from tests.data.fakeproc import batch_of  # noqa: E402

N_EVENTS = 4096


@pytest.fixture(scope="module")
def batch():
    return batch_of(*_records(N_EVENTS))


def _rate(benchmark, n):
    s = getattr(getattr(benchmark, "stats", None), "stats", None)
    if s is not None and s.median:
        benchmark.extra_info["events_per_s"] = round(n / s.median)
    benchmark.extra_info["events"] = n


@pytest.mark.parametrize("kind", ["terminal", "terminal-color", "normal-bulk", "normal-reference"])
def test_bench_terminal(benchmark, batch, kind):
    from lbd._format import Formatter
    from lbd.output import reference
    from lbd.output.terminal import TerminalFormatter

    if kind.startswith("terminal"):
        f = TerminalFormatter(64, color=kind.endswith("color"))
        run = lambda: (f.format(batch), f.clear())  # noqa: E731
    elif kind == "normal-bulk":
        f = Formatter("normal", 1024)
        run = lambda: (f.format(batch), f.clear())  # noqa: E731
    else:
        run = lambda: reference.format_batch(batch, "normal", 1024)  # noqa: E731
    benchmark.group = "terminal format"
    benchmark.pedantic(run, rounds=5 if kind == "normal-reference" else 15, warmup_rounds=1)
    _rate(benchmark, len(batch))
