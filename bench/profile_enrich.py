"""Profile or time enrichment on the synthetic mixes (tests/data/enrichmix.py), outside pytest.

    .venv/bin/python bench/profile_enrich.py                       # events/s per mix and path
    .venv/bin/python bench/profile_enrich.py --profile openclose   # pyinstrument tree of one mix
    .venv/bin/python bench/profile_enrich.py --path oracle ...     # the per-event Python oracle
    py-spy record -o out.svg -- .venv/bin/python bench/profile_enrich.py --loop 20 openclose

Each pass enriches the whole stream (batches of --batch events) with one Enricher, after one
warm-up pass (the tables filled), as bench/test_bench_enrich.py does.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.data.enrichmix import MIXES, mix_batches, mix_host  # noqa: E402

EXTRA = ("format",)


def batches_for(mix: str, n: int, batch: int):
    if mix == "format":
        sys.path.insert(0, str(_ROOT / "bench"))
        from test_bench_format import _records  # the format benchmark's mix
        from tests.data.fakeproc import batch_of

        recs = _records(n)
        return [batch_of(*recs[i: i + batch], capacity=batch) for i in range(0, len(recs), batch)]
    return mix_batches(mix, n, batch)


def enricher(root: Path, mix: str, path: str):
    if mix == "format":
        sys.path.insert(0, str(_ROOT / "bench"))
        from test_bench_format import _host

        h = _host(root)
    else:
        h = mix_host(root)
    return h.reference() if path == "oracle" else h.enricher()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mixes", nargs="*", default=list(MIXES) + list(EXTRA))
    ap.add_argument("--events", type=int, default=16384)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--loop", type=int, default=5, help="timed passes")
    ap.add_argument("--path", default="default", help="default | oracle")
    ap.add_argument("--profile", action="store_true", help="pyinstrument the timed passes")
    a = ap.parse_args()
    for mix in a.mixes:
        bs = batches_for(mix, a.events, a.batch)
        n = sum(len(b) for b in bs)
        with tempfile.TemporaryDirectory() as tmp:
            en = enricher(Path(tmp), mix, a.path)
            for b in bs:
                en.enrich(b)
            prof = None
            if a.profile:
                from pyinstrument import Profiler

                prof = Profiler(interval=0.0002)
                prof.start()
            best = float("inf")
            for _ in range(a.loop):
                t = time.perf_counter()
                for b in bs:
                    en.enrich(b)
                best = min(best, time.perf_counter() - t)
            if prof is not None:
                prof.stop()
                print(prof.output_text(unicode=True, color=False, show_all=False))
            print(f"{mix:10s} {a.path:8s} {n:7d} events in batches of {a.batch}: {n / best:12,.0f} events/s "
                  f"(best of {a.loop})")


if __name__ == "__main__":
    main()
