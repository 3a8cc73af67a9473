"""Issue 12 with real capture: lbd runs as root next to attackers.  Signals acted on whatever the
output does (a FIFO whose reader is stopped), no partial line on a full disk (a 64 KiB tmpfs),
SIGHUP reopening a file moved away and size rotation, `lbd run | head`, a Ctrl-C at any moment,
command names of any bytes, the environment kept out of the output, and the plugin's putfile on
/dev/full not stopping the capture."""
from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import require_bpf
from tests.data.normal_parser import parse_line
from tests.kernel.test_cli_run import finish as finish_lbd, start_lbd

COMM = "lbdhardwork"


@pytest.fixture(autouse=True)
def _bpf():
    require_bpf()


def lbd_run(*args, stdout=subprocess.DEVNULL, timeout: float = 60.0) -> subprocess.Popen:
    """`lbd run --quiet` as a subprocess, returned once its probe is attached."""
    return start_lbd("--quiet", *args, stdout=stdout, timeout=timeout)


def finish(p: subprocess.Popen, sig: int | None = None, timeout: float = 30.0) -> str:
    """Stop it (sig) and wait: its stderr, the attach line first."""
    return finish_lbd(p, sig, timeout)[1]


def work(n: int, comm: str = COMM, env: dict | None = None, execs: int = 0) -> None:
    """A child process named comm that opens and closes a file n times (and runs /bin/true execs
    times, with env), then exits."""
    code = (f"import ctypes, os, subprocess\n"
            f"ctypes.CDLL(None).prctl(15, {os.fsencode(comm)!r}, 0, 0, 0)\n"
            f"for _ in range({n}):\n"
            f"    os.close(os.open('/etc/hostname', os.O_RDONLY))\n"
            f"for _ in range({execs}):\n"
            f"    subprocess.run(['/bin/true'], env={env!r})\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def summary_counts(err: str) -> tuple[int, int]:
    """(written, not written) from the summary line."""
    m = re.search(r"lbd: \d+ events in [\d.]+s, (\d+) written to [^;]*?(?:, (\d+) not written \(([^)]*)\))?;", err)
    assert m, err
    return int(m.group(1)), int(m.group(2) or 0)


def whole_lines(data: bytes) -> int:
    assert not data or data.endswith(b"\n"), data[-200:]
    lines = data.decode().split("\n")[:-1]
    for line in lines:
        parse_line(line)
    return len(lines)


# ---- signals whatever the output does ------------------------------------------------------------------

@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_signal_acted_on_with_a_stopped_fifo_reader(tmp_path, sig, code):
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo, 0o600)
    out = open(tmp_path / "read.txt", "wb")
    reader = subprocess.Popen(["cat", str(fifo)], stdout=out)
    try:
        p = lbd_run("-o", str(fifo), "--comm", COMM, "--syscall", "openat", "close")
        os.kill(reader.pid, signal.SIGSTOP)                  # the reader stops reading
        work(3000)                                           # far more than the FIFO holds
        time.sleep(1.0)                                      # lbd writes until the FIFO is full
        err = finish(p, sig, timeout=20)                     # ...and still acts on the signal
        assert p.returncode == code, err
        written, unwritten = summary_counts(err)
        assert unwritten > 0 and "not written (the output was blocked when the run stopped)" in err, err
        assert "Traceback" not in err
    finally:
        os.kill(reader.pid, signal.SIGCONT)
        reader.wait(timeout=30)
        out.close()
    assert whole_lines((tmp_path / "read.txt").read_bytes()) == written > 0


@pytest.fixture
def tiny_disk():
    d = Path(tempfile.mkdtemp(prefix="lbd-tmpfs-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(d)], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=True)
        d.rmdir()


def test_disk_full_ends_with_the_summary_and_no_partial_line(tiny_disk):
    path = tiny_disk / "events.log"
    p = lbd_run("-o", str(path), "--comm", COMM, "--duration", "30")
    work(2000)
    err = finish(p, timeout=60)
    assert p.returncode == 1, err
    lines = err.splitlines()
    assert lines[-1] == f"lbd: error: cannot write events to {path}: No space left on device"
    written, unwritten = summary_counts(err)
    assert unwritten > 0 and "not written (write error)" in err and "top syscalls:" in err
    data = path.read_bytes()
    assert whole_lines(data) == written > 0
    # the next run appends whole lines after the last complete one (or fails the same way)
    p = lbd_run("-o", str(path), "--comm", COMM, "--duration", "30")
    work(200)
    err = finish(p, timeout=60)
    assert whole_lines(path.read_bytes()) >= written


def test_sighup_reopens_a_moved_file_and_rotation_by_size(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"init_config": {"rotate_size": 65536, "rotate_keep": 200}}))
    d = tmp_path / "log"
    d.mkdir(mode=0o755)
    path = d / "events.log"
    p = lbd_run("--config", str(cfg), "-o", str(path), "--comm", COMM)
    work(1500)
    time.sleep(0.5)
    os.rename(path, d / "moved.log")                         # logrotate: move away, then HUP
    p.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    work(1500)
    time.sleep(0.5)
    err = finish(p, signal.SIGTERM)
    assert p.returncode == 0, err
    assert "reopened" in err                                  # the INFO log line of the SIGHUP
    written, unwritten = summary_counts(err)
    assert unwritten == 0
    names = sorted(os.listdir(d))
    assert "events.log" in names and "moved.log" in names and "events.log.1" in names, names
    total = 0
    for n in names:
        data = (d / n).read_bytes()
        assert len(data) <= 65536 or n == "moved.log" and len(data) <= 65536
        total += whole_lines(data)
    assert total == written


def test_a_reader_going_away_ends_quietly_with_the_summary():
    """`lbd run | head`: EPIPE ends the run with the summary on stderr, no error, exit 0."""
    r, w = os.pipe()
    head = subprocess.Popen(["head", "-n", "3"], stdin=r, stdout=subprocess.PIPE)
    os.close(r)
    p = lbd_run("--comm", COMM, "--format", "json", stdout=w)
    os.close(w)
    work(500)
    out, _ = head.communicate(timeout=30)
    for _ in range(50):                                       # more events: the next write meets EPIPE
        if p.poll() is not None:
            break
        work(50)
    err = finish(p, timeout=30)
    assert p.returncode == 0, err
    assert len(out.splitlines()) == 3
    assert "not written (the reader went away)" in err and "error" not in err and "Traceback" not in err


def test_ctrl_c_at_any_moment_exits_130_without_a_traceback():
    """From lbd's first line on, a Ctrl-C exits 130 with no traceback (during the capture: after
    the summary).  Before that line the interpreter itself is starting (site, a few ms) and would
    handle it: started as a launcher should start it, with SIGINT blocked until lbd takes it,
    the Ctrl-C of that moment waits and is handled by lbd too."""
    for delay in (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.5):
        p = subprocess.Popen([sys.executable, "-m", "lbd.cli", "run", "--quiet", "--comm", COMM],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                             preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}))
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        text = err.decode()
        assert p.returncode == 130, (delay, p.returncode, text)
        assert "Traceback" not in text and "KeyboardInterrupt" not in text, (delay, text)
        if "capturing" in text:
            assert "events in" in text, (delay, text)         # the summary


# ---- what goes into the output -------------------------------------------------------------------------

def test_comm_of_any_bytes_is_captured(tmp_path):
    comm = b"\xff\xfelbd"
    p = lbd_run("--comm", os.fsdecode(comm), "--syscall", "openat", "--format", "json", "-o", str(tmp_path / "e"))
    work(5, comm=os.fsdecode(comm))
    time.sleep(0.5)
    err = finish(p, signal.SIGTERM)
    assert p.returncode == 0, err
    objs = [json.loads(x) for x in (tmp_path / "e").read_text().splitlines()]
    assert len(objs) >= 5 and {o["comm"] for o in objs} == {"\\xff\\xfelbd"}


def test_the_environment_stays_out_unless_asked(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "GITHUB_TOKEN": "ghp_secret_value", "MY_PASSWORD": "hunter2"}
    for capture in (False, True):
        cfg = tmp_path / f"c{capture}.json"
        cfg.write_text(json.dumps({"open_params": {"capture_env": capture}}))
        out = tmp_path / f"e{capture}.jsonl"
        p = lbd_run("--config", str(cfg), "--syscall", "execve", "--comm", COMM, "true", "--format", "json",
                    "-o", str(out))
        work(0, env=env, execs=2)
        time.sleep(0.5)
        err = finish(p, signal.SIGTERM)
        assert p.returncode == 0, err
        text = out.read_text()
        assert "ghp_secret_value" not in text and "hunter2" not in text
        objs = [o for o in map(json.loads, text.splitlines()) if o["args"].get("filename") == "/bin/true"]
        assert objs, text[:2000]
        envs = [o["args"].get("envp") for o in objs]
        if capture:
            assert all(set(e) == {"PATH=/usr/bin:/bin", "GITHUB_TOKEN=***", "MY_PASSWORD=***"} for e in envs), envs
        else:
            assert all(e is None for e in envs), envs          # not read, left out


# ---- the plugin ------------------------------------------------------------------------------------------

def test_plugin_putfile_on_a_full_device_keeps_capturing():
    from tests.plugin_host.host import LiveHost

    init = json.dumps({"putfile": True, "path": "/dev/full"})
    params = json.dumps({"syscalls": ["openat"], "only_comms": [COMM]})
    with LiveHost(init, params, fields=("linux.comm",), duration=60) as h:
        h.opened()
        work(20)
        h.wait_for(lambda d: "fields" in d and d["fields"]["linux.comm"] == [COMM])
        first = len(h.events())
        time.sleep(0.5)                              # the writer writes batches 0.2 s apart at least
        work(20)                                     # its write fails; the events still come
        h.wait_for(lambda d: "fields" in d and len(h.events()) >= first + 20)
        time.sleep(0.5)
        work(20)                                     # after the failure: still events
        h.wait_for(lambda d: "fields" in d and len(h.events()) >= first + 40)
        s = h.stop()
    assert not [d for d in h.lines if "next_batch_error" in d]
    assert s["events"] >= 60
    # lbd's log lines go to Falco's logger (the host's log_fn prints them as {"log": ...} lines)
    logs = [d["log"] for d in h.lines if "log" in d]
    assert sum("putfile: cannot write events to /dev/full: No space left on device" in x for x in logs) == 1, logs
