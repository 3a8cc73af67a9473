"""The Falco plugin reading a capture file back (open_params "replay"): a live run recorded with
lbd.Collector(record=...) and opened in the plugin host gives Falco the live run's events, in its
order, with the same fields: the record's (time, syscall, arguments, ids) as the host extracts
them from copies of the live events, the enrichment's as the live run's state engine had them,
and the end of the file as the end of the event stream (EOF)."""
from __future__ import annotations

import json
import os
import socket
import subprocess

from tests.conftest import require_bpf
from tests.kernel.conftest import recorded_batches
from tests.plugin_host.host import LiveHost, extract

COMM = "lbd-replay-wl"
SYSCALLS = ["openat", "close", "connect", "execve", "dup2", "newfstatat", "exit_group"]
#: fields the state engine gives (the host's extract works on copies outside a batch: record values)
ENRICHED = {"linux.cmdline", "linux.fullpath", "linux.ppid", "linux.ppid.num", "linux.pcomm", "linux.fds",
            "linux.fd", "linux.user", "linux.group"}


def workload(tmp: str) -> None:
    from tests.kernel.conftest import set_comm

    set_comm(COMM)
    fd = os.open(os.path.join(tmp, "f"), os.O_CREAT | os.O_WRONLY, 0o600)
    os.dup2(fd, 10)
    os.close(fd)
    os.close(10)
    try:
        os.stat("/lbd-replay-missing")
    except OSError:
        pass
    srv = socket.create_server(("127.0.0.1", 0))
    c = socket.create_connection(srv.getsockname())
    c.close()
    srv.close()
    subprocess.run(["/bin/true", "lbd-replay-arg"], check=True)


def record_live(tmp_path):
    """Record a workload live; the Falco events it gave (copies) and each one's enrichment."""
    from lbd.config import Config
    from lbd.enrich.layout import event_info

    cap = tmp_path / "live.lbdcap"
    cfg = Config.default().replace(only_comms=[COMM, "true"], syscalls=SYSCALLS)
    events, infos = [], []
    for b in recorded_batches(cfg, cap, workload, str(tmp_path)):
        out = b.output_mask()
        for i in range(len(b)):
            if out is None or out[i]:
                events.append(bytes(b.falco_event(i)))
                infos.append(event_info(b, i))
    return cap, events, infos


def replay(cap, **params) -> tuple[list[dict], dict]:
    with LiveHost("", json.dumps({"replay": str(cap), **params}), args=("filename", "fd", "uservaddr")) as h:
        h.opened()
        h.wait_for(lambda d: "summary" in d, timeout=60)     # the host ends at EOF by itself
        summary = h.stop()
        return h.events(), summary


def test_plugin_replays_the_live_events(tmp_path):
    require_bpf()
    cap, live, infos = record_live(tmp_path)
    assert len(live) > 10
    copies, _ = extract(live, args=("filename", "fd", "uservaddr"))
    got, summary = replay(cap)
    assert summary["events"] == len(live) and summary["layout_errors"] == 0 and summary["extract_errors"] == 0
    assert len(got) == len(live)
    seen = set()
    for k, (g, c, info) in enumerate(zip(got, copies, infos)):
        for f in set(g) | set(c):
            if f.split("[")[0] not in ENRICHED:
                assert g.get(f) == c.get(f), (k, f, g.get(f), c.get(f))
        assert g["linux.cmdline"] == [info["cmdline"]], (k, g["linux.cmdline"], info)
        assert g["linux.ppid.num"] == [info["ppid"]]
        if info["fullpath"]:
            assert g["linux.fullpath"] == [info["fullpath"]]
        assert g.get("linux.fds[key]", []) == [str(fd) for fd, _ in info["fds"]], k
        assert g.get("linux.fds[value]", []) == [p for _, p in info["fds"]], k
        seen.add(g["linux.syscall"][0])
    assert {"openat", "close", "connect", "execve", "newfstatat"} <= seen, seen
    assert any(g["linux.cmdline"] == ["/bin/true lbd-replay-arg"] for g in got)


def test_plugin_replay_applies_the_filter_and_refuses_bad_files(tmp_path):
    require_bpf()
    cap, live, _ = record_live(tmp_path)
    everything, _ = replay(cap)
    opens, summary = replay(cap, filter="syscall = openat")
    assert opens == [g for g in everything if g["linux.syscall"] == ["openat"]] and opens
    bad = tmp_path / "not-a-capture"
    bad.write_bytes(b"hello")
    h = LiveHost("", json.dumps({"replay": str(bad)}))
    try:
        d = h.wait_for(lambda d: "open" in d)
    finally:
        h.__exit__(None, None, None)
    assert d["open"] != 0 and d["error"] == f"open: {bad}: not an lbd capture file (no LBDCAP header)"
