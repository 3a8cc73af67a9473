"""`lbd run` end to end: the CLI as a subprocess captures a workload this test starts (open a file,
connect a unix socket, run a child command, as user nobody) and writes its events, with the
right cmdline, user, parent and fds, in both formats; signals, summaries and output errors."""
from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jsonschema
import pytest

from tests.conftest import require_bpf

WORK_COMM = "lbdtestwork"
CHILD_COMM = "lbdtestchild"
NOBODY = 65534

WORKLOAD = r'''
import ctypes, os, socket, subprocess, sys, time
ctypes.CDLL(None).prctl(15, b"%s", 0, 0, 0)      # PR_SET_NAME: what lbd run --comm selects
time.sleep(0.5)                                   # lbd reads our /proc entry while we live
data, sock, child = sys.argv[1:4]
fd = os.open(data, os.O_RDONLY)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sock)
subprocess.run([child, data], stdout=subprocess.DEVNULL, check=True)
os.close(fd)
time.sleep(0.3)
''' % WORK_COMM.encode().decode()


@pytest.fixture(autouse=True)
def _bpf():
    require_bpf()


@pytest.fixture
def world(tmp_path):
    """A directory user nobody can use: the data file, the unix socket, the child program."""
    d = Path(tempfile.mkdtemp(prefix="lbd-cli-"))
    os.chmod(d, 0o755)
    data = d / "data.txt"
    data.write_text("hello lbd\n")
    os.chmod(data, 0o644)
    script = d / "work.py"
    script.write_text(WORKLOAD)
    os.chmod(script, 0o644)
    child = d / CHILD_COMM
    shutil.copy("/bin/cat", child)
    os.chmod(child, 0o755)
    sock_path = d / "x.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(sock_path))
    os.chmod(sock_path, 0o777)
    srv.listen(8)
    yield {"dir": d, "data": str(data), "script": str(script), "child": str(child), "sock": str(sock_path)}
    srv.close()
    shutil.rmtree(d, ignore_errors=True)


def start_lbd(*args, stdout=subprocess.PIPE, timeout: float = 60.0) -> subprocess.Popen:
    """`lbd run` as a subprocess, returned once its probe is attached (its "capturing" log line)."""
    p = subprocess.Popen([sys.executable, "-m", "lbd.cli", "run", *args], stdout=stdout,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    line = b""
    while time.monotonic() < deadline:
        r, _, _ = select.select([p.stderr], [], [], 0.5)
        if r:
            line = p.stderr.readline()
            if b"capturing" in line or not line:
                break
    if b"capturing" not in line:
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"lbd run did not start: {line!r} {err!r}")
    p.ready_line = line.decode()
    return p


def run_workload(w) -> int:
    def as_nobody():
        os.setgid(NOBODY)
        os.setgroups([])
        os.setuid(NOBODY)

    p = subprocess.Popen(["/usr/bin/python3", w["script"], w["data"], w["sock"], w["child"]],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         preexec_fn=as_nobody, cwd=str(w["dir"]))
    _, err = p.communicate(timeout=30)
    assert p.returncode == 0, err.decode()
    return p.pid


def finish(p: subprocess.Popen, sig: int | None = None, timeout: float = 30.0) -> tuple[bytes, str]:
    if sig is not None:
        p.send_signal(sig)
    out, err = p.communicate(timeout=timeout)
    return out, p.ready_line + err.decode()


def my_comm() -> str:
    return Path("/proc/self/comm").read_text().strip()


NORMAL_RE = re.compile(
    r"^\[(?P<time>[^\]]+)\]: (?P<syscall>\w+), syscall_id=(?P<nr>\d+), dir=(?P<dir>[<>]), res=(?P<res>-?\d+), "
    r"user=(?P<user>[^,]*), comm=\((?P<comm>.*?)\), cmdline=\((?P<cmdline>.*)\), pid=(?P<pid>\d+), "
    r"tid=(?P<tid>\d+), ppid=(?P<ppid>\d+)\((?P<pcomm>[^)]*)\), args=\((?P<args>.*)\), fds=\[(?P<fds>.*)\]$")


def parse_fds(text: str) -> dict[int, str]:
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"(\d+)\(([^)]*)\)(?:, |$)", text)}


def test_run_normal_format_finds_the_workload(world):
    p = start_lbd("--comm", WORK_COMM, CHILD_COMM, "--quiet", "--process-events")
    work_pid = run_workload(world)
    time.sleep(0.5)
    out, err = finish(p, signal.SIGTERM)
    assert p.returncode == 0, err
    lines = out.decode().splitlines()
    ev = [NORMAL_RE.match(line).groupdict() for line in lines]      # every line has the seed's fields
    mine = [e for e in ev if e["pid"] == str(work_pid)]
    assert mine, f"no events of the workload {work_pid} in {len(ev)} lines: {lines[:5]}"
    cmdline = f"/usr/bin/python3 {world['script']} {world['data']} {world['sock']} {world['child']}"

    # the workload opens the data file
    opened = [e for e in mine if e["syscall"] == "openat" and f"filename={world['data']}," in e["args"]]
    assert len(opened) == 1, mine
    o = opened[0]
    assert (o["user"], o["comm"], o["cmdline"]) == ("nobody", WORK_COMM, cmdline)
    assert (o["ppid"], o["pcomm"]) == (str(os.getpid()), my_comm())
    fd = int(o["res"])
    fds = parse_fds(o["fds"])
    assert fds[fd] == world["data"] and fds[0] == fds[1] == "/dev/null" and fds[2] == "pipe"

    # ... connects the unix socket, which then shows in its fds
    conn = [e for e in mine if e["syscall"] == "connect" and f"uservaddr={world['sock']}," in e["args"]]
    assert len(conn) == 1 and conn[0]["res"] == "0"
    sfd = int(re.match(r"fd=(\d+)", conn[0]["args"]).group(1))
    assert parse_fds(conn[0]["fds"])[sfd] == f"unix {world['sock']}"
    assert parse_fds(conn[0]["fds"])[fd] == world["data"]

    # ... and runs the child, whose events carry its own command line, parent and fds
    child = [e for e in ev if e["comm"] == CHILD_COMM]
    assert child, "no events of the child"
    cpid = child[0]["pid"]
    execs = [e for e in ev if e["syscall"] == "execve" and e["pid"] == cpid and e["res"] == "0"]
    assert len(execs) == 1
    assert f"argv={world['child']} {world['data']}" in execs[0]["args"]
    copen = [e for e in child if e["syscall"] == "openat" and f"filename={world['data']}," in e["args"]]
    assert len(copen) == 1
    c = copen[0]
    assert c["cmdline"] == f"{world['child']} {world['data']}"
    assert (c["user"], c["ppid"], c["pcomm"]) == ("nobody", str(work_pid), WORK_COMM)
    cfds = parse_fds(c["fds"])
    assert cfds == {0: "/dev/null", 1: "/dev/null", 2: fds[2], int(c["res"]): world["data"]}, c["fds"]
    # --process-events: the fork and exec of the child are there too
    assert any(e["syscall"] == "sched_process_fork" and f"child_pid={cpid}," in e["args"] for e in ev)
    assert any(e["syscall"] == "sched_process_exec" and e["pid"] == cpid for e in ev)

    # SIGTERM: the probe is detached, the output flushed, a summary printed
    assert re.search(r"lbd: \d+ events in [\d.]+s, \d+ written to ", err), err
    assert "top syscalls:" in err and "dropped: ring full 0" in err


def test_run_json_format_finds_the_workload(world, tmp_path):
    from lbd.output import load_schema

    out_path = tmp_path / "events.jsonl"
    p = start_lbd("--comm", WORK_COMM, CHILD_COMM, "--format", "json", "--output", str(out_path),
                  "--duration", "6", "--quiet")
    work_pid = run_workload(world)
    out, err = finish(p)
    assert p.returncode == 0, err
    assert out == b""                                      # events went to the file
    assert (os.stat(out_path).st_mode & 0o777) == 0o600
    validator = jsonschema.Draft202012Validator(load_schema(), format_checker=jsonschema.FormatChecker())
    objs = [json.loads(line) for line in out_path.read_text().splitlines()]
    for o in objs:
        validator.validate(o)
    assert not any(o["syscall"].startswith("sched_") for o in objs)      # not without --process-events
    o = next(o for o in objs if o["pid"] == work_pid and o["syscall"] == "openat"
             and o["args"]["filename"] == world["data"])
    assert (o["user"], o["group"], o["uid"], o["ppid"]) == ("nobody", "nogroup", NOBODY, os.getpid())
    assert o["cmdline"].startswith(f"/usr/bin/python3 {world['script']}")
    assert o["fullpath"].startswith("/usr/bin/python3")          # /proc/<pid>/exe: first seen from procfs
    assert (o["res"], world["data"]) in zip(o["fds"]["fd"], o["fds"]["path"])
    c = next(o for o in objs if o["comm"] == CHILD_COMM and o["syscall"] == "openat"
             and o["args"]["filename"] == world["data"])
    assert c["cmdline"] == f"{world['child']} {world['data']}" and c["fullpath"] == world["child"]
    assert (c["ppid"], c["pcomm"]) == (work_pid, WORK_COMM)
    assert c["fds"]["fd"] == [0, 1, 2, c["res"]]
    conn = next(o for o in objs if o["syscall"] == "connect" and o["pid"] == work_pid)
    assert conn["args"]["uservaddr"] == {"family": "AF_UNIX", "addr": None, "port": None, "path": world["sock"],
                                         "raw": None}


def test_run_failed_only(world):
    p = start_lbd("--comm", WORK_COMM, CHILD_COMM, "--failed-only", "--quiet")
    run_workload(world)
    time.sleep(0.3)
    out, err = finish(p, signal.SIGINT)
    assert p.returncode == 130, err                  # Ctrl-C: the summary, then the exit status of SIGINT
    assert "events in" in err
    lines = out.decode().splitlines()
    assert lines, "a python start-up has failed syscalls (ENOENT probes)"
    assert all(int(NORMAL_RE.match(line)["res"]) < 0 for line in lines)


def test_run_disk_full_stops_with_one_line_error(tmp_path):
    p = start_lbd("--output", "/dev/full", "--duration", "20", "--quiet")
    t0 = time.monotonic()
    while p.poll() is None and time.monotonic() - t0 < 15:
        for _ in range(20):                      # events: this (unfiltered) process opens files
            os.close(os.open("/etc/hostname", os.O_RDONLY))
        time.sleep(0.05)
    out, err = finish(p)
    assert p.returncode == 1, err
    assert time.monotonic() - t0 < 15, "the run did not stop on the write error"
    lines = err.splitlines()
    assert lines[-1] == "lbd: error: cannot write events to /dev/full: No space left on device"
    assert "Traceback" not in err


def test_run_syscall_selection_and_exclusions(world):
    p = start_lbd("--comm", WORK_COMM, CHILD_COMM, "--syscall", "connect", "--quiet")
    work_pid = run_workload(world)
    time.sleep(0.3)
    out, err = finish(p, signal.SIGTERM)
    assert p.returncode == 0, err
    ev = [NORMAL_RE.match(line).groupdict() for line in out.decode().splitlines()]
    assert ev and {e["syscall"] for e in ev} == {"connect"}
    c = next(e for e in ev if e["pid"] == str(work_pid))
    # without the fd syscalls, the fds come from procfs (the workload is still alive then)
    assert parse_fds(c["fds"])[0] == "/dev/null"


def test_status_line_only_on_a_terminal(tmp_path):
    import pty

    def run(*extra) -> str:
        master, slave = pty.openpty()
        try:
            p = subprocess.Popen([sys.executable, "-m", "lbd.cli", "run", "--output", str(tmp_path / "ev.log"),
                                  "--duration", "3.5", *extra], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=slave)
            os.close(slave)
            chunks = []
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:              # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            p.wait(timeout=60)
            assert p.returncode == 0
            return b"".join(chunks).decode(errors="replace")
        finally:
            os.close(master)

    shown = run()
    assert re.search(r"\r\x1b\[K +\d+ events/s +\d+ events +\d+ written +\d+ dropped +ring +[\d.]+%", shown), shown
    assert "lbd: " in shown and "events in" in shown
    quiet = run("--quiet")
    assert "events/s" not in quiet and "events in" in quiet


def test_log_file_takes_the_log(tmp_path):
    log = tmp_path / "lbd.log"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"init_config: {{log_file: {log}, log_level: DEBUG}}\n")
    p = subprocess.run([sys.executable, "-m", "lbd.cli", "run", "--config", str(cfg), "--output",
                        str(tmp_path / "ev.log"), "--duration", "1", "--quiet"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    text = log.read_text()
    assert "lbd.cli INFO: capturing" in text and "enrichment:" in text      # DEBUG: the enricher's counters
    assert "capturing" not in p.stderr and "events in" in p.stderr          # the summary stays on stderr


def test_stats_counts_per_syscall_and_process():
    p = subprocess.Popen([sys.executable, "-m", "lbd.cli", "stats", "--duration", "2", "--json", "-P"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = p.stderr.readline()
    assert b"counting" in line, line
    for _ in range(50):
        os.close(os.open("/etc/hostname", os.O_RDONLY))
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err.decode()
    doc = json.loads(out)
    assert doc["mode"] == "events" and doc["events"] == sum(x["count"] for x in doc["processes"])
    mine = [x for x in doc["processes"] if x["pid"] == os.getpid()]
    assert mine and mine[0]["count"] >= 100          # 50 openat and 50 close
