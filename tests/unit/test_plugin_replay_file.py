"""The Falco plugin on a capture file without a kernel (open_params "replay"): no probe, the
file's events in order less the state records, the filter applied, the end of the file as the end
of the stream (the host stops by itself), and bad values refused in one line."""
from __future__ import annotations

import json

import pytest

from lbd import record
from lbd._testing import filter_reference as R
from lbd.falco import split_replay
from tests.plugin_host.host import run_host
from tests.unit.test_collector_api import capfile  # noqa: F401 - the fixture


def expected(path, expr=None) -> list[tuple[str, int]]:
    from lbd.collector import Collector

    out = []
    with Collector(replay=path, enrich=True) as c:
        for b in c:
            keep = R.evaluate(expr, b) if expr else [True] * len(b)
            state = (b.events["flags"] & record.F_STATE) != 0
            out += [(b.name(i), int(b.events["tid"][i])) for i in range(len(b)) if keep[i] and not state[i]]
    return out


@pytest.mark.parametrize("expr", [None, "syscall in (openat, close)"])
def test_replay_through_the_host(capfile, expr):  # noqa: F811
    params = {"replay": str(capfile), **({"filter": expr} if expr else {})}
    rc, lines, err = run_host("run", "--open", json.dumps(params), "--field", "linux.syscall",
                              "--field", "linux.tid.num", "--duration", "120")
    assert rc == 0, err
    assert next(d for d in lines if "open" in d)["open"] == 0
    got = [(d["fields"]["linux.syscall"][0], d["fields"]["linux.tid.num"][0]) for d in lines if "fields" in d]
    want = expected(capfile, expr)
    assert got == want and 0 < len(want) < 600
    summary = next(d["summary"] for d in lines if "summary" in d)
    assert summary["layout_errors"] == 0 and summary["extract_errors"] == 0


@pytest.mark.parametrize("params, msg", [
    ({"replay": 5}, "open: open_params.replay: 5, the path of a capture file (lbd record -o FILE)"),
    ({"replay": ""}, 'open: open_params.replay: "", the path of a capture file (lbd record -o FILE)'),
    ({"replay": "/nonexistent/x.lbdcap"}, "open: cannot open capture file /nonexistent/x.lbdcap: "
     "No such file or directory"),
    ({"replay": "/etc/hostname"}, "open: /etc/hostname: not an lbd capture file (no LBDCAP header)"),
])
def test_bad_replay_one_line(params, msg):
    rc, lines, err = run_host("run", "--open", json.dumps(params), "--duration", "5")
    assert next(d for d in lines if "open" in d) == {"open": 1, "error": msg}


def test_split_replay():
    assert split_replay('{"replay": "/a b", "filter": "pid = 1"}') == ("/a b", '{"filter": "pid = 1"}')
    assert split_replay(b'{"replay": "/x"}') == ("/x", "{}")
    for same in ("", "{}", '{"syscalls": ["openat"]}', "not json replay", '["replay"]'):
        assert split_replay(same) == (None, same)
