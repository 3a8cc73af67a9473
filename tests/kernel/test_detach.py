"""Clean detach: after Probe.close() (or leaving a Collector, also on an exception) none of lbd's
programs or maps remain in the kernel, as bpftool lists them."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.conftest import require_bpf


def bpftool(kind: str) -> set[int]:
    out = subprocess.run(["bpftool", "-j", kind, "show"], check=True, capture_output=True, text=True).stdout
    return {obj["id"] for obj in json.loads(out or "[]")}


def wait_gone(kind: str, ids: set[int]) -> set[int]:
    """The ids still listed once they are gone or 30 s passed (maps go after an RCU grace period)."""
    deadline = time.monotonic() + 30
    left = ids & bpftool(kind)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = ids & bpftool(kind)
    return left


def test_probe_close_removes_programs_and_maps():
    require_bpf()
    from lbd.probe import Probe, map_names

    p = Probe({"open_params": {"ring_size": 65536}})
    progs = set(p.program_ids())
    maps = p.map_ids()
    rings = {f"ring{i}" for i in range(p.nrings)}
    assert len(progs) == 5 and set(maps) == set(map_names(p.kind)) | rings
    assert progs <= bpftool("prog") and set(maps.values()) <= bpftool("map")
    p.close()
    p.close()                              # twice is fine
    assert wait_gone("prog", progs) == set()
    assert wait_gone("map", set(maps.values())) == set()


def test_collector_exit_on_exception_detaches():
    require_bpf()
    from lbd.collector import Collector

    with pytest.raises(KeyboardInterrupt):
        with Collector({"open_params": {"ring_size": 65536}}) as c:
            progs = set(c.probe.program_ids())
            maps = set(c.probe.map_ids().values())
            assert progs <= bpftool("prog")
            raise KeyboardInterrupt
    assert c.probe is None and c.ring is None
    assert wait_gone("prog", progs) == set()
    assert wait_gone("map", maps) == set()
