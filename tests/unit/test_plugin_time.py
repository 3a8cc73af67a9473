"""linux.time and Falco's own timestamp agree: both are the event's wall clock in the process's
local time zone, read as Falco reads it (its %evt.time prefix calls localtime(), which takes TZ
and /etc/localtime anew each time).

The bug this holds down: one event printed by two rules showed 19:51:07.666497198 in one place and
18:51:07.666497198 in the other.  liblbd.so formatted linux.time with localtime_r, which reads the
zone once per process (glibc): a zone set after the plugin's first event (TZ changed, the host's
zone changed with timedatectl) left linux.time in the old zone, an hour off Falco's prefix.
"""
from __future__ import annotations

import ctypes as ct
import os
import time

import pytest

from lbd import syscalls
from lbd.ringimage import make_record
from tests.unit.test_plugin_enrich import Core, make_batch

#: 2025-06-12 18:51:07.666497198 UTC
T0 = 1749754267_666497198


@pytest.fixture
def zone():
    saved = os.environ.get("TZ")

    def set_zone(tz: str | None) -> None:
        # the environment only, as a zone change reaches a running Falco (and the formatter must
        # notice by itself); None: no TZ (the zone file)
        if tz is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = tz

    yield set_zone
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


class _Tm(ct.Structure):
    _fields_ = [(n, ct.c_int) for n in ("sec", "min", "hour", "mday", "mon", "year", "wday", "yday", "isdst")]


def _falco_clock(ns: int) -> str:
    """HH:MM:SS as Falco's prefix shows ns: glibc's localtime(), which reads the zone anew."""
    libc = ct.CDLL(None)
    libc.localtime.restype = ct.POINTER(_Tm)
    t = ct.c_long(ns // 1_000_000_000)
    tm = libc.localtime(ct.byref(t)).contents
    return f"{tm.hour:02d}:{tm.min:02d}:{tm.sec:02d}"


def _events(*ts: int):
    recs = [make_record(syscalls.lookup("close").nr, {"fd": 3}, ts=t) for t in ts]
    batch = make_batch(recs)
    assert len(batch) == len(ts)
    return batch


def test_linux_time_follows_a_zone_set_after_the_first_event(zone):
    zone("UTC0")
    time.tzset()                   # the zone when the capture starts
    batch = _events(T0, T0 + 1_000_000_000)
    core = Core()
    try:
        rc, why = core.view(batch)
        assert rc == 0, why
        first, second = (int(p) for p in batch.ptrs[:2])
        assert core.field(first, "linux.time") == ["2025-06-12 18:51:07.666497198"]
        zone("XST-1")              # one hour east of UTC (POSIX TZ: no tzdata needed)
        assert core.field(second, "linux.time") == ["2025-06-12 19:51:08.666497198"]
        assert core.field(first, "linux.time") == ["2025-06-12 19:51:07.666497198"]
        # Falco's prefix for the same event (libsinsp ts_to_string: localtime(), the zone read now)
        assert _falco_clock(T0) == "19:51:07"
    finally:
        core.close()
