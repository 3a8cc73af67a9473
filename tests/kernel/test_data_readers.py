"""A live whole-system capture as JSON Lines, read by pyarrow.json and duckdb read_json_auto with
their default settings (issue 14: a quiet host's capture failed both)."""
from __future__ import annotations

import json
import os
import socket
import subprocess

import duckdb
import pyarrow.json as pa_json

from tests.conftest import require_bpf
from tests.kernel.test_cli_run import finish, start_lbd


def workload(tmp_path) -> None:
    """Files, processes, pipes, sockets: arguments of every JSON type."""
    for k in range(30):
        p = tmp_path / f"f{k}"
        p.write_text("x")
        os.rename(p, tmp_path / f"g{k}")
        os.unlink(tmp_path / f"g{k}")
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    for fam, addr in ((socket.AF_INET, ("127.0.0.1", 9)), (socket.AF_INET6, ("::1", 9))):
        s = socket.socket(fam, socket.SOCK_STREAM)
        try:
            s.connect(addr)
        except OSError:
            pass
        s.close()
    subprocess.run(["/bin/sh", "-c", "ls / >/dev/null; cat /etc/hostname >/dev/null"], check=True)


def test_live_capture_reads_with_default_settings(tmp_path):
    require_bpf()
    out_path = tmp_path / "events.jsonl"
    p = start_lbd("--format", "json", "--output", str(out_path), "--duration", "4", "--quiet", "--process-events")
    workload(tmp_path)
    _, err = finish(p)
    assert p.returncode == 0, err
    lines = [line for line in out_path.read_bytes().split(b"\n") if line]
    objs = [json.loads(line) for line in lines]
    assert len(objs) > 100 and {"openat", "unlink", "connect", "execve"} <= {o["syscall"] for o in objs}
    t = pa_json.read_json(out_path)
    assert t.num_rows == len(objs)
    assert t.column("ts").to_pylist() == [o["ts"] for o in objs]
    con = duckdb.connect()
    dest = tmp_path / "events.parquet"
    con.execute(f"COPY (SELECT * FROM read_json_auto('{out_path}')) TO '{dest}' (FORMAT parquet)")
    assert con.execute(f"SELECT count(*), sum(pid) FROM '{dest}'").fetchall() == \
        [(len(objs), sum(o["pid"] for o in objs))]
