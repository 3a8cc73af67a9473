"""Soak (about 60 s; `-m "not soak"` leaves it out): two load generators make more syscalls than
the consumer can take, for LBD_SOAK_SECONDS (35 by default), while lbd's pipeline (Collector ->
JSON formatter -> file writer) runs in this process.  Afterwards, exactly:

* every syscall the generators made is either delivered or counted as dropped (ring full);
* every event delivered is a line of the file, whole (and the writer's count says so);
* the consumer's memory (RSS) grew by less than 5 MB from the first seconds to the end.
"""
from __future__ import annotations

import json
import os
import time

import pytest

from tests.conftest import require_bpf

SECONDS = float(os.environ.get("LBD_SOAK_SECONDS", "35"))
RING = 1 << 18                    # small: the generators overrun it for sure


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def generator(go_r: int, done_w: int, stop_r: int) -> None:
    """getppid as fast as Python calls it for SECONDS; then report the count and wait to exit."""
    code = 1
    try:
        if os.read(go_r, 1) != b"g":
            os._exit(2)
        n = 0
        end = time.monotonic() + SECONDS
        getppid = os.getppid
        while time.monotonic() < end:
            for _ in range(1000):
                getppid()
            n += 1000
        os.write(done_w, json.dumps(n).encode())
        os.read(stop_r, 1)            # exit only once the test has read the ring to its end
        code = 0
    finally:
        os._exit(code)


@pytest.mark.soak
def test_soak_overload_exact_counts_whole_lines_flat_memory(tmp_path):
    require_bpf()
    from lbd.collector import Collector
    from lbd.config import Config
    from lbd.output.writer import open_writer

    # track_state off: the ring holds only what the filters keep (no state records of other tasks)
    cfg = Config.default().replace(syscalls=["getppid"], ring_size=RING, drop_mode=True, format="json",
                                   track_state=False)
    out = tmp_path / "events.jsonl"
    kids = []
    with Collector(cfg, batch_size=4096, enrich=True) as col, open_writer(cfg, str(out)) as w:
        for _ in range(2):
            go_r, go_w = os.pipe()
            done_r, done_w = os.pipe()
            stop_r, stop_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                generator(go_r, done_w, stop_r)
            for fd in (go_r, done_w, stop_r):
                os.close(fd)
            kids.append((pid, go_w, done_r, stop_w))
        try:
            col.probe.update(cfg.replace(drop_mode=False, only_pids=[k[0] for k in kids]))
            while len(col.next_batch(20)):          # nothing of theirs yet: an empty ring to start from
                pass
            before = col.stats()
            for _, go_w, _, _ in kids:
                os.write(go_w, b"g")
            t0 = time.monotonic()
            rss0 = None
            counts = []
            while len(counts) < len(kids):
                b = col.next_batch()
                if len(b):
                    w.write_batch(b)
                if rss0 is None and time.monotonic() - t0 > 5:
                    rss0 = rss_kib()                 # after the warm-up: buffers and caches in place
                counts = [json.loads(os.read(k[2], 64)) for k in kids] if _readable([k[2] for k in kids]) else counts
            idle = 0
            while idle < 3:                          # every record they made is in the ring: read it all
                b = col.next_batch(20)
                if len(b):
                    w.write_batch(b)
                    idle = 0
                else:
                    idle += 1
            after = col.stats()
            rss1 = rss_kib()
            w.flush()
        finally:
            for pid, go_w, done_r, stop_w in kids:        # a byte, not EOF: the other child holds our pipes too
                os.write(stop_w, b"s")
                os.write(go_w, b"x")
            for pid, go_w, done_r, stop_w in kids:
                for fd in (go_w, done_r, stop_w):
                    os.close(fd)
                os.waitpid(pid, 0)
    d = {k: after[k] - before[k] for k in ("emitted", "drop_ringfull", "delivered", "sched", "malformed")}
    made = sum(counts)
    assert d["drop_ringfull"] > 0, f"not an overload: {d}"                   # the consumer was overrun
    assert d["sched"] == 0 and d["malformed"] == 0, d
    assert made == d["emitted"] + d["drop_ringfull"], (made, d)              # emitted or counted dropped
    assert d["delivered"] == d["emitted"], d                                  # everything emitted was read
    lines = out.read_bytes()
    assert lines.endswith(b"\n") and lines.count(b"\n") == w.events == d["delivered"] and w.unwritten == 0
    assert rss1 - rss0 < 5 * 1024, f"RSS grew by {rss1 - rss0} KiB"


def _readable(fds) -> bool:
    import select

    r, _, _ = select.select(fds, [], [], 0)
    return len(r) == len(fds)
