"""Parquet from live capture: `lbd run --format parquet` leaves a valid file on SIGINT and
SIGTERM, and a real full file system (a small tmpfs) stops the writer with the footer written."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from lbd.collector import Collector
from lbd.output.parquet import ParquetWriter
from lbd.output.writer import OutputError
from tests.conftest import require_bpf
from tests.kernel.test_cli_run import finish, start_lbd


@pytest.fixture(autouse=True)
def _bpf():
    require_bpf()


def busy(n: int = 2000) -> None:
    for _ in range(n):
        os.close(os.open("/etc/hostname", os.O_RDONLY))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_run_parquet_file_is_valid_after_a_signal(tmp_path, sig):
    path = tmp_path / "events.parquet"
    p = start_lbd("--format", "parquet", "--output", str(path), "--quiet", "--process-events")
    busy()
    _, err = finish(p, sig)
    assert p.returncode == (130 if sig == signal.SIGINT else 0), err      # Ctrl-C exits 130, after the summary
    written = int(re.search(r"(\d+) written to ", err).group(1))
    t = pq.read_table(path)
    assert written > 2000 and t.num_rows == written
    opens = t.filter(pc.equal(t.column("syscall").cast(pa.string()), "openat")).column("path").to_pylist()
    assert opens.count("/etc/hostname") >= 2000
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_run_parquet_needs_a_file_and_never_overwrites(tmp_path):
    r = subprocess.run([*start_cmd(), "--format", "parquet", "--duration", "1"], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.strip() == "lbd: error: the parquet format writes a file: give --output PATH"
    path = tmp_path / "old.parquet"
    path.write_text("x")
    r = subprocess.run([*start_cmd(), "--format", "parquet", "-o", str(path), "--duration", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "it exists (Parquet files are not appended to" in r.stderr
    assert "Traceback" not in r.stderr and path.read_text() == "x"


def start_cmd() -> list[str]:
    import sys

    return [sys.executable, "-m", "lbd.cli", "run"]


def test_a_full_file_system_keeps_the_complete_row_groups():
    mnt = tempfile.mkdtemp(prefix="lbd-tiny-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt], check=True)
    try:
        path = os.path.join(mnt, "events.parquet")
        w = ParquetWriter(path, row_group_size=1000)
        with pytest.raises(OutputError) as e, Collector({"syscalls": ["openat", "close"]}, enrich=True) as col:
            deadline = time.monotonic() + 120          # bounded: a writer that never fills fails
            for batch in col:
                w.write_batch(batch)
                busy(500)
                if time.monotonic() > deadline:
                    break
        assert str(e.value).startswith(f"cannot write events to {path}: No space left on device (")
        with pytest.raises(OutputError):
            w.close()
        t = pq.read_table(path)
        assert t.num_rows == w.events > 0 and w.lost > 0 and w.row_groups >= 1
        assert os.path.getsize(path) == w.bytes
    finally:
        subprocess.run(["umount", mnt], check=True)
        os.rmdir(mnt)
