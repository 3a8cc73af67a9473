"""Shipping to NATS JetStream against a real nats-server (Debian's nats-server package) with
JetStream on a free port: hundreds of thousands of events, the server stopped for a few seconds
mid-run and started again, and a nats-py consumer that reads back exactly the events lbd counted
as delivered; the spool's bound (losses counted) and its delivery after a restart."""
from __future__ import annotations

import asyncio
import collections
import json
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pytest

from lbd.output.exporter import Spool
from lbd.output.nats import NatsExporter, parse_url, stream_name
from lbd.output.writer import OutputError
from tests.data import synth

SUBJECT = "lbd.test.events"


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """nats-server -js on 127.0.0.1:port with its store in a directory (kept across restarts)."""

    def __init__(self, store: Path):
        exe = shutil.which("nats-server")
        if exe is None:
            pytest.fail("nats-server is missing: apt-get install nats-server")
        self.exe, self.store, self.port, self.proc = exe, store, free_port(), None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("nats-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)
        self.proc = None


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "store")
    s.start()
    yield s
    s.stop()


def read_back(url: str, subject: str = SUBJECT) -> list[tuple[dict, bytes]]:
    """Every message of the stream that captures subject: (headers, data), in order."""
    import nats

    async def main():
        nc = await nats.connect(url)
        js = nc.jetstream()
        info = await js.stream_info(stream_name(subject))
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            m = await js.get_msg(stream_name(subject), seq)
            out.append((dict(m.headers or {}), m.data))
        await nc.close()
        return out

    return asyncio.run(main())


def json_events(msgs) -> list[dict]:
    out = []
    for h, data in msgs:
        lines = [x for x in data.split(b"\n") if x]
        assert int(h["Lbd-Events"]) == len(lines) and h["Content-Type"] == "application/x-ndjson"
        out += [json.loads(x) for x in lines]
    return out


def test_urls():
    assert parse_url("nats://10.0.0.5:4222/lbd.events.web1") == ("nats://10.0.0.5:4222", "lbd.events.web1")
    assert parse_url("nats://h/x") == ("nats://h:4222", "x")
    assert stream_name("lbd.events.web-1") == "LBD_EVENTS_WEB-1"
    for bad in ("nats://h:4222", "http://h/x", "nats://h/a..b", "nats://h/a b", "nats://h:99999/x"):
        with pytest.raises(OutputError) as e:
            parse_url(bad)
        assert str(e.value).startswith(f"output {bad!r}: ") and "\n" not in str(e.value)


def test_outage_mid_run_delivers_exactly_what_is_counted(server, tmp_path):
    """About 330,000 events; the server is stopped for 3 s after a third of them and started
    again: nothing is lost, the consumer reads each delivered event once."""
    batches = synth.host_like_batches(41_000, seed=4, batch_size=8192)
    passes = 8
    ex = NatsExporter(f"{server.url}/{SUBJECT}", fmt="json", spool_dir=str(tmp_path / "spool"),
                      spool_bytes=1 << 30, ack_timeout=1.0, close_timeout=120)
    try:
        for p in range(passes):
            for k, b in enumerate(batches):
                ex.write_batch(b)
                if p == passes // 3 and k == 0:
                    server.stop()
                    t_end = time.monotonic() + 3
                    while time.monotonic() < t_end:          # keep writing while it is away
                        ex.write_batch(b)
                        time.sleep(0.2)
                    server.start()
    finally:
        ex.close()
    st = ex.stats()
    assert st["events"] > 300_000, st
    assert st["lost"] == 0 and st["queued"] == st["in_flight"] == st["spooled"] == 0, st
    assert st["delivered"] == st["events"] and st["errors"] > 0 and st["spooled_total"] > 0, st
    msgs = read_back(server.url)
    assert len(msgs) == st["delivered_messages"] == st["messages"]
    events = json_events(msgs)
    assert len(events) == st["delivered"]
    sent = collections.Counter(int(x) for b in batches for x in b.events["ts"])
    got = collections.Counter(e["ts"] for e in events)
    extra = st["events"] - passes * sum(len(b) for b in batches)          # written during the outage
    assert all(got[ts] >= passes * n for ts, n in sent.items()) and sum(got.values()) - passes * sum(sent.values()) == extra
    assert len({h["Nats-Msg-Id"] for h, _ in msgs}) == len(msgs)


def test_arrow_messages(server, tmp_path):
    batches = synth.host_like_batches(20_000, seed=5, batch_size=5000)
    with NatsExporter(f"{server.url}/{SUBJECT}", fmt="parquet", spool_dir=str(tmp_path / "spool")) as ex:
        for b in batches:
            ex.write_batch(b)
    assert ex.stats()["delivered"] == 20_000
    rows = 0
    ts = []
    for h, data in read_back(server.url):
        assert h["Content-Type"] == "application/vnd.apache.arrow.stream"
        t = pa.ipc.open_stream(data).read_all()
        assert t.num_rows == int(h["Lbd-Events"])
        rows += t.num_rows
        ts += t.column("ts").cast(pa.int64()).to_pylist()
    assert rows == 20_000 and ts == [int(x) for b in batches for x in b.events["ts"]]


def test_spool_bound_and_delivery_after_a_restart(tmp_path):
    """The server is down from the start: the spool keeps what fits (the rest is counted lost);
    the next run, with the server up, sends what the spool kept."""
    store = tmp_path / "store"
    srv = Server(store)
    url = f"{srv.url}/{SUBJECT}"
    batches = synth.host_like_batches(12_000, seed=6, batch_size=1000)
    spool = tmp_path / "spool"
    ex = NatsExporter(url, fmt="json", spool_dir=str(spool), spool_bytes=3_000_000, queue_bytes=1 << 20,
                      close_timeout=5)
    for b in batches:
        ex.write_batch(b)
    ex.close()
    st = ex.stats()
    assert st["delivered"] == 0 and st["lost"] > 0 and st["spooled"] > 0
    assert st["events"] == st["lost"] + st["spooled"] == 12_000
    assert Spool(spool, 3_000_000).bytes <= 3_000_000
    srv.start()
    try:
        with NatsExporter(url, fmt="json", spool_dir=str(spool), close_timeout=60) as ex2:
            pass                                           # nothing new: only the spool
        assert ex2.stats()["delivered"] == st["spooled"] and ex2.stats()["spooled"] == 0
        events = json_events(read_back(srv.url))
        assert len(events) == st["spooled"]
        assert [e["ts"] for e in events] == [int(x) for b in batches for x in b.events["ts"]][:len(events)]
    finally:
        srv.stop()


def test_spool_keeps_order_bound_and_survives_a_restart(tmp_path):
    from lbd.output.exporter import Message

    sp = Spool(tmp_path / "s", 270)
    msgs = [Message(f"r-{k}", k + 1, bytes([65 + k]) * 60, "application/x-ndjson") for k in range(5)]
    assert [sp.put(m) for m in msgs] == [True, True, True, False, False]       # ~82 bytes a file
    assert (len(sp), sp.events) == (3, 6) and sp.bytes <= 270
    assert oct((tmp_path / "s").stat().st_mode & 0o777) == "0o700"
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in (tmp_path / "s").iterdir())
    again = Spool(tmp_path / "s", 270)                                     # another process, later
    got = again.oldest(10)
    assert [(m.id, m.events, m.payload) for m in got] == [(m.id, m.events, m.payload) for m in msgs[:3]]
    again.remove(got[0].spooled)
    assert again.put(msgs[3]) and [m.id for m in again.oldest(10)] == ["r-1", "r-2", "r-3"]
    assert Spool(tmp_path / "s", 0).bytes == 0                                # 0: no spool at all


def test_environment_masked_in_both_message_formats(server, tmp_path):
    """With capture_env, secret values are NAME=*** in JSON and Arrow messages (Arrow wrote them)."""
    from tests.data.fakeproc import batch_of, rec

    b = batch_of(rec("execve", {"filename": "/bin/x", "argv": ["x"], "envp": ["HOME=/root", "API_TOKEN=s3cr3t"]},
                     res=0))
    for fmt in ("json", "parquet"):
        subject = f"{SUBJECT}.env{fmt}"
        with NatsExporter(f"{server.url}/{subject}", fmt=fmt, spool_dir=str(tmp_path / fmt),
                          capture_env=True, secret_pattern="*TOKEN*") as ex:
            ex.write_batch(b)
        assert ex.stats()["delivered"] == 1
        (_, data), = read_back(server.url, subject)
        if fmt == "parquet":                      # (zstd-compressed Arrow: read it)
            data = str(pa.ipc.open_stream(data).read_all().column("args").to_pylist()).encode()
        assert b"s3cr3t" not in data and b"API_TOKEN=***" in data, data[:400]
