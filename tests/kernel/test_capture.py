"""Capture and replay: a live run recorded with its enrichment's answers plays back to the same
output, byte for byte, in every format; the replay asks nothing of this host."""
from __future__ import annotations

import os
import socket
import subprocess

import pytest

from lbd import record
from tests.conftest import require_bpf
from tests.kernel.conftest import recorded_batches


def workload(tmp: str) -> None:
    from tests.kernel.conftest import set_comm

    set_comm("lbd-rec")
    path = os.path.join(tmp, "f")
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, b"x")
    os.dup2(fd, 10)
    os.close(fd)
    r, w = os.pipe()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    c = socket.create_connection(s.getsockname())
    a, _ = s.accept()
    for x in (a, c, s):
        x.close()
    subprocess.run(["/bin/true", "arg"], check=True)
    os.close(r)
    os.close(w)
    os.close(10)


def formats(batches) -> dict[str, bytes]:
    from lbd._format import Formatter

    out = {}
    for fmt in ("normal", "json"):
        f = Formatter(fmt, 1024)
        chunks = []
        for b in batches:
            f.format(b, b.output_mask())
            chunks.append(f.getvalue())
        out[fmt] = b"".join(chunks)
    return out


def test_replay_gives_the_live_output(tmp_path):
    require_bpf()
    from lbd.collector import Collector
    from lbd.config import Config

    cap = tmp_path / "run.lbdcap"
    cfg = Config.default().replace(only_comms=["lbd-rec", "true"], syscalls=["openat", "dup2", "close", "bind",
                                   "connect", "accept4", "write", "execve", "pipe2"])
    live = []

    class Keep:                      # format each batch as it comes (batches are reused)
        def __init__(self):
            self.normal, self.json = [], []

    from lbd._format import Formatter

    fn, fj = Formatter("normal", 1024), Formatter("json", 1024)
    got = Keep()
    for b in recorded_batches(cfg, cap, workload, str(tmp_path)):
        for f, acc in ((fn, got.normal), (fj, got.json)):
            f.format(b, b.output_mask())
            acc.append(f.getvalue())
        live.append(len(b))
    live_out = {"normal": b"".join(got.normal), "json": b"".join(got.json)}
    assert sum(live) > 0 and b"lbd-rec" in live_out["normal"]
    assert b"execve" in live_out["normal"] and b"tcp 127.0.0.1" in live_out["normal"]

    fn, fj = Formatter("normal", 1024), Formatter("json", 1024)
    again = Keep()
    with Collector(replay=cap, enrich=True) as rep:
        assert rep.probe is None
        sizes = []
        for b in rep:
            if not len(b):
                continue
            sizes.append(len(b))
            for f, acc in ((fn, again.normal), (fj, again.json)):
                f.format(b, b.output_mask())
                acc.append(f.getvalue())
        st = rep.stats()
    assert sizes == [n for n in live if n]
    assert b"".join(again.normal) == live_out["normal"]
    assert b"".join(again.json) == live_out["json"]
    assert st["delivered"] == sum(live) and st["emitted"] >= 0
