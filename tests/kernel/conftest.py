"""Kernel tier: one probe per test session (bcc compiles it in about a second), reconfigured
through its maps for each test.

`capture(fn, **config)` forks a child that waits for a go signal, points the probe at the child
(only_pids), lets it run fn() and exit, and returns the child's events as `Event` objects.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import pytest

from tests.conftest import require_bpf


@dataclass
class Event:
    name: str
    nr: int
    dir: str
    res: int
    pid: int
    tid: int
    ppid: int
    uid: int
    gid: int
    comm: str
    flags: int
    latency: int
    ts: int
    args: dict = field(default_factory=dict)
    truncated: tuple = ()

    def __repr__(self) -> str:
        return f"<{self.name} res={self.res} pid={self.pid} {self.args}>"


def events_of(batch) -> list[Event]:
    from lbd import record

    out = []
    ev = batch.events
    for i in range(len(batch)):
        e = ev[i]
        out.append(Event(
            name=batch.name(i), nr=int(e["nr"]), dir=chr(e["dir"]), res=int(e["res"]), pid=int(e["pid"]),
            tid=int(e["tid"]), ppid=int(e["ppid"]), uid=int(e["uid"]), gid=int(e["gid"]),
            comm=e["comm"].decode(errors="replace"), flags=int(e["flags"]), latency=int(e["latency"]),
            ts=int(e["ts"]), args=batch.args(i),
            truncated=tuple(k for k in range(record.MAX_ARGS) if batch.truncated(i, k)),
        ))
    return out


class Capture:
    """Runs workloads in child processes and returns what the probe saw of them."""

    def __init__(self, collector, base_config):
        self.col = collector
        self.base = base_config

    def configure(self, **changes):
        changes.setdefault("drop_mode", False)
        self.col.probe.update(self.base.replace(**changes))

    def drain(self, timeout_ms: int = 20) -> list[Event]:
        out = []
        while True:
            b = self.col.next_batch(timeout_ms)
            if not len(b):
                return out
            out.extend(events_of(b))

    def quiesce(self) -> None:
        """Capture nothing and empty the ring."""
        self.configure(drop_mode=True)
        self.drain()

    def run(self, fn, *, settle_s: float = 0.05, **changes) -> list[Event]:
        """Fork a child, capture its syscalls while it runs fn(), return its events.

        The child's own exit status must be 0 (fn raising makes it 1 and the test fails).
        """
        from lbd import record

        self.quiesce()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                os.close(w)
                os.read(r, 1)
                os.close(r)
                fn()
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            os._exit(code)
        os.close(r)
        only = changes.pop("only_pids", [pid])
        self.configure(only_pids=only, **changes)
        os.write(w, b"g")
        os.close(w)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the workload failed in the child (see stderr)"
        events: list[Event] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            events.extend(self.drain())
            if any(e.nr == record.NR_SCHED_EXIT and e.args.get("pid") == pid for e in events):
                break
        time.sleep(settle_s)
        events.extend(self.drain())
        self.child_pid = pid
        return [e for e in events if e.pid == pid or (e.nr >= 1000 and pid in e.args.values())]


@pytest.fixture(scope="session")
def collector():
    require_bpf()
    from lbd import syscalls
    from lbd.collector import Collector
    from lbd.config import Config

    every = [sc.name for sc in syscalls.TABLE if sc.implemented]
    cfg = Config.default().replace(syscalls=every, drop_mode=True, buf_max=64)
    with Collector(cfg, batch_size=4096) as col:
        col.base_config = cfg
        yield col


@pytest.fixture
def cap(collector):
    c = Capture(collector, collector.base_config)
    yield c
    c.quiesce()


def by_name(events, name, noenter=False):
    """The events of syscall `name`; without exits whose enter was not seen unless noenter."""
    from lbd import record

    return [e for e in events if e.name == name and e.nr < 1000
            and (noenter or not e.flags & record.F_NOENTER)]


def one(events, name, pred=lambda e: True):
    found = [e for e in by_name(events, name) if pred(e)]
    assert len(found) == 1, f"expected one {name}, got {found} among {[e.name for e in events]}"
    return found[0]
