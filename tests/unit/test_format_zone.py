"""The normal format's local times follow the process's time zone as it is now, as Falco's prefix
and the plugin's linux.time do (tests/unit/test_plugin_time.py).

The bug this holds down: lbd._format called tzset() once at import and then localtime_r, which
reads TZ and /etc/localtime once per process (glibc): a zone changed during a run (TZ set, the
host's zone changed) left every later line in the old zone, an hour off the plugin's times."""
from __future__ import annotations

import time

from lbd import syscalls
from lbd._format import Formatter
from lbd.ringimage import make_record
from tests.unit.test_plugin_enrich import make_batch
# the same instant and TZ fixture as the plugin's linux.time tests
from tests.unit.test_plugin_time import T0, zone  # noqa: F401 (zone: a fixture)


def _line(f: Formatter, batch) -> bytes:
    f.format(batch)
    return f.getvalue()


def test_normal_format_follows_a_zone_change_between_batches(zone):
    batch = make_batch([make_record(syscalls.lookup("close").nr, {"fd": 3}, ts=T0)])
    zone("UTC0")
    time.tzset()                        # the zone when the run starts
    f = Formatter("normal", 1024)
    first = _line(f, batch)
    assert first.startswith(b"[2025-06-12 18:51:07.666497198]"), first
    zone("XST-1")                       # one hour east of UTC (POSIX TZ: no tzdata needed)
    second = _line(f, batch)            # the same second of event time, the next call
    assert second.startswith(b"[2025-06-12 19:51:07.666497198]"), second
    zone("YST+2")
    assert _line(f, batch).startswith(b"[2025-06-12 16:51:07.666497198]")
    assert first[first.index(b"]"):] == second[second.index(b"]"):]      # only the time moved


def test_json_times_stay_utc(zone):
    batch = make_batch([make_record(syscalls.lookup("close").nr, {"fd": 3}, ts=T0)])
    f = Formatter("json", 1024)
    zone("XST-1")
    a = _line(f, batch)
    zone("UTC0")
    assert _line(f, batch) == a
