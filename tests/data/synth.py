"""A whole-system-like synthetic capture: random records of every syscall in the table (and the
process-tree records), decoded from ring images into batches and enriched against a fake host,
for the data-output tests (JSON readers, Parquet, NATS) and benchmarks.

Every 7th event belongs to a process the fake host knows (so it has a cmdline, a parent and
open files); the others are unknown processes (kernel view).  `prefix` events of one syscall
(`prefix_name`) come first: readers that infer types from the first lines meet everything else
late.
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

from lbd import syscalls
from lbd.ringimage import make_record, patch, random_records
from tests.data.fakeproc import FakeHost, batch_of

KNOWN_PID = 4242


def fake_host(root: Path) -> FakeHost:
    h = FakeHost(root)
    h.add_process(1, "systemd", 0, ["/sbin/init", "splash"], exe="/usr/lib/systemd/systemd", fds={0: "/dev/null"})
    h.add_process(KNOWN_PID, "sshd", 1, ["sshd:", "alice", "[priv]"], exe="/usr/sbin/sshd",
                  fds={0: "/dev/null", 1: "/dev/null", 2: "/dev/null", 3: "socket:[inet 10.0.0.1:22]"})
    return h


def records(n: int, seed: int = 0, *, prefix: int = 0, prefix_name: str = "getpid") -> list[bytes]:
    sc = syscalls.lookup(prefix_name)
    first = make_record(sc.nr, [3, b"x" * 8, 8][: len(sc.args)], pid=KNOWN_PID, comm="sshd")
    out = [first] * prefix
    for k, r in enumerate(random_records(n, seed=seed)):
        out.append(patch(r, pid=KNOWN_PID) if k % 7 == 0 else r)
    return out


def batches(n: int, seed: int = 0, *, batch_size: int = 4096, enrich: bool = True, root: Path | None = None,
            **kw) -> Iterator:
    """The capture as enriched Batches of batch_size events (each a new Batch)."""
    recs = records(n, seed, **kw)
    tmp = None
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="lbd-synth-")
        root = Path(tmp.name)
    try:
        en = fake_host(root).enricher() if enrich else None
        for i in range(0, len(recs), batch_size):
            b = batch_of(*recs[i: i + batch_size])
            if en is not None:
                en.enrich(b)
            yield b
    finally:
        if tmp is not None:
            tmp.cleanup()
