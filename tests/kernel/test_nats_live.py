"""`lbd run --output nats://...` from live capture: what the summary says was written is what a
consumer reads from the stream, in both message formats."""
from __future__ import annotations

import os
import re
import signal
import time

import pyarrow as pa
import pytest

from tests.conftest import require_bpf
from tests.kernel.test_cli_run import finish, start_lbd
from tests.unit.test_nats import Server, json_events, read_back


@pytest.mark.parametrize("fmt", ["json", "parquet"])
def test_run_ships_to_nats(tmp_path, fmt):
    require_bpf()
    srv = Server(tmp_path / "store")
    srv.start()
    try:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"init_config: {{spool_dir: {tmp_path / 'spool'}}}\n")
        p = start_lbd("--config", str(cfg), "--format", fmt, "--output", f"{srv.url}/lbd.live", "--syscall",
                      "openat", "--quiet")
        for _ in range(3000):
            os.close(os.open("/etc/hostname", os.O_RDONLY))
        time.sleep(0.5)                                    # read from the ring before the signal
        _, err = finish(p, signal.SIGTERM)
        assert p.returncode == 0, err
        written = int(re.search(r"(\d+) written to nats://", err).group(1))
        assert re.search(rf"{written} events delivered in \d+ messages, 0 lost, 0 waiting in the spool", err), err
        msgs = read_back(srv.url, "lbd.live")
        if fmt == "json":
            events = json_events(msgs)
            mine = [e for e in events if e["pid"] == os.getpid() and e["args"].get("filename") == "/etc/hostname"]
        else:
            t = pa.concat_tables([pa.ipc.open_stream(d).read_all() for _, d in msgs])
            events = t.drop_columns(["ts"]).to_pylist()          # (ns times need pandas in to_pylist)
            mine = [e for e in events if e["pid"] == os.getpid() and e["path"] == "/etc/hostname"]
        assert len(events) == written and len(mine) >= 3000
    finally:
        srv.stop()
