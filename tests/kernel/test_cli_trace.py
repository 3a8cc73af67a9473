"""`lbd run -- CMD`, `lbd run EXPR`, the terminal default on a tty, `lbd record` / `lbd replay`, and
the drain at a stop: the CLI as a subprocess, against the real probe."""
from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import require_bpf

LBD = [sys.executable, "-m", "lbd.cli"]


@pytest.fixture(autouse=True)
def _bpf():
    require_bpf()


@pytest.fixture
def target(tmp_path) -> Path:
    """A file with a name no other process on the host opens."""
    p = tmp_path / f"lbd-trace-{os.getpid()}-{time.monotonic_ns()}.txt"
    p.write_text("x\n")
    return p


def lbd(*args, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*LBD, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          **kw)


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def loop_cats(n: int, target: Path) -> list[str]:
    """A shell that runs cat N times (and no other program: its loop is built in)."""
    return ["sh", "-c", f'i=0; while [ $i -lt {n} ]; do cat "{target}" > /dev/null; i=$((i + 1)); done']


def test_an_expression_on_a_syscall_outside_the_default_selection(tmp_path):
    """`lbd run 'syscall = newfstatat ...'` with no selection given captures newfstatat (not in the
    default selection): the expression's syscalls are the selection.  It captured nothing when the
    pushdown met them with the default selection."""
    missing = f"/lbd-cli-expr-{os.getpid()}-{time.monotonic_ns()}"
    out = tmp_path / "ev.jsonl"
    code = f"import os\nfor _ in range(7):\n    try: os.stat({missing!r})\n    except OSError: pass\n"
    p = lbd("run", "-f", "json", "-o", str(out), f"syscall = newfstatat and arg.filename = {missing}",
            "--", sys.executable, "-c", code)
    assert p.returncode == 0, p.stderr
    ev = events(out)
    assert len(ev) == 7 and all(e["syscall"] == "newfstatat" and e["err"] == "ENOENT" for e in ev), ev[:2]


# ---- -- CMD ------------------------------------------------------------------------------------


def test_command_and_its_descendants_every_event(tmp_path, target):
    """Every open of the file by the N cats the shell starts is there (descendants followed in the
    kernel, the last ones drained after the shell exits), and nothing of any other process."""
    n = 40
    out = tmp_path / "ev.jsonl"
    p = lbd("run", "--format", "json", "-o", str(out), "--process-events", "--", *loop_cats(n, target))
    assert p.returncode == 0, p.stderr
    ev = events(out)
    opens = [e for e in ev if e["syscall"] == "openat" and e["args"]["filename"] == str(target)]
    assert len(opens) == n and {e["comm"] for e in opens} == {"cat"}
    execs = [e for e in ev if e["syscall"] == "execve" and e["res"] == 0]
    assert [e["comm"] for e in execs] == ["sh"] + ["cat"] * n
    sh = execs[0]["pid"]
    first = next(e for e in ev if not e["syscall"].startswith("sched_"))
    assert first["syscall"] == "execve" and first["pid"] == sh        # nothing of lbd's before the exec
    # only the shell and the processes it forked
    family = {sh} | {e["args"]["child_pid"] for e in ev if e["syscall"] == "sched_process_fork"}
    assert {e["pid"] for e in ev} <= family and len(family) == n + 1
    assert "left unread" not in p.stderr
    assert re.search(rf"lbd: \d+ events in [\d.]+s, {len(ev)} written to {re.escape(str(out))}", p.stderr), p.stderr


@pytest.mark.parametrize("script, code", [("exit 7", 7), ("kill -9 $$", 128 + 9), ("true", 0)])
def test_exit_status_is_the_commands(tmp_path, script, code):
    p = lbd("run", "-o", str(tmp_path / "ev.log"), "--", "sh", "-c", script)
    assert p.returncode == code, p.stderr


def test_command_not_found():
    p = lbd("run", "--", "/nonexistent/lbd-no-such-command")
    assert p.returncode == 127
    assert p.stderr == "lbd: error: command not found or not executable: /nonexistent/lbd-no-such-command\n"


def test_probe_that_cannot_load_never_runs_the_command():
    """As user nobody without capabilities the probe cannot load: the command must not run."""
    d = Path(tempfile.mkdtemp(prefix="lbd-trace-"))
    os.chmod(d, 0o777)
    marker = d / "ran"
    try:
        p = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps=-all",
                            *LBD, "run", "--", "touch", str(marker)], capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL, env={**os.environ, "HOME": str(d)})
        assert p.returncode == 1, p.stderr
        # (under bcc its compiler may print warnings of its own before lbd's one line)
        assert p.stderr.splitlines()[-1].startswith("lbd: error: ") and "Traceback" not in p.stderr
        time.sleep(0.2)
        assert not marker.exists()
    finally:
        marker.unlink(missing_ok=True)
        d.rmdir()


HANDLER = r'''
import os, signal, sys, time
def on_term(signum, frame):
    for _ in range(5):
        os.close(os.open(sys.argv[1], os.O_RDONLY))     # after lbd's SIGTERM: captured still
    sys.exit(3)
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
while True:
    time.sleep(0.05)
'''


def test_sigterm_is_passed_to_the_command_and_its_end_captured(tmp_path, target):
    out = tmp_path / "ev.jsonl"
    p = subprocess.Popen([*LBD, "run", "--format", "json", "-o", str(out), "--quiet", "--", sys.executable, "-c",
                          HANDLER, str(target)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL)
    try:
        r, _, _ = select.select([p.stdout], [], [], 60)
        assert r and p.stdout.readline() == b"ready\n"
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 3, err
    opens = [e for e in events(out) if e["syscall"] == "openat" and e["args"].get("filename") == str(target)]
    assert len(opens) == 5


def test_duration_ends_the_command(tmp_path):
    t0 = time.monotonic()
    p = lbd("run", "-o", str(tmp_path / "ev.log"), "--duration", "1", "--", "sleep", "100")
    assert p.returncode == 128 + signal.SIGTERM, p.stderr
    assert time.monotonic() - t0 < 60


# ---- EXPR ---------------------------------------------------------------------------------------


def test_positional_expression_selects(tmp_path, target):
    out = tmp_path / "ev.jsonl"
    p = lbd("run", "--format", "json", "-o", str(out), f"syscall in (open, openat) and arg.filename = {target}",
            "--", *loop_cats(3, target))
    assert p.returncode == 0, p.stderr
    ev = events(out)
    assert len(ev) == 3 and all(e["args"]["filename"] == str(target) for e in ev)


def test_bad_expression_shows_the_caret_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    p = lbd("run", "syscall in (open, openat) and arg.filename startswit /etc/", "--", "touch", str(marker))
    assert p.returncode == 2
    assert p.stderr.splitlines() == [
        "lbd: error: filter, column 44: unexpected 'startswit': expected an operator "
        "(= != < <= > >= in contains startswith endswith glob)",
        "  syscall in (open, openat) and arg.filename startswit /etc/",
        "  " + " " * 43 + "^"]
    assert not marker.exists()


# ---- the terminal ------------------------------------------------------------------------------


def _on_pty(argv, stdout_to_pty: bool = True, timeout: float = 120) -> tuple[int, str]:
    """Run argv with stderr (and stdout) on a new pty; what the terminal showed."""
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave if stdout_to_pty else subprocess.DEVNULL,
                             stderr=slave, env={**{k: v for k, v in os.environ.items() if k != "NO_COLOR"},
                                                "TERM": "xterm"})
        os.close(slave)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 1)
            if not r:
                if p.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:              # EIO: the last writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        p.wait(timeout=60)
        return p.returncode, b"".join(chunks).decode(errors="replace")
    finally:
        os.close(master)


TERMINAL_LINE = re.compile(r"^(\x1b\[[0-9;]*m)*\d\d:\d\d:\d\d\.\d{6}(\x1b\[[0-9;]*m)* ")


def test_terminal_default_and_no_status_line_among_events(target):
    """stdout and stderr the same terminal: events in the terminal format, no status line (that
    would mix with them), every line either an event or lbd's own."""
    script = f'for i in $(seq 25); do cat "{target}" > /dev/null; sleep 0.1; done'
    rc, shown = _on_pty([*LBD, "run", "--", "sh", "-c", script])
    assert rc == 0, shown
    assert "events/s" not in shown
    lines = [ln for ln in re.split(r"[\r\n]+", shown) if ln]
    evl = [ln for ln in lines if TERMINAL_LINE.match(ln)]
    assert sum("openat" in ln and str(target) in ln for ln in evl) == 25
    assert "\x1b[" in evl[0]                                   # colours on a terminal
    for ln in lines:
        assert bool(TERMINAL_LINE.match(ln)) != ln.startswith("lbd: "), ln
    assert any(re.match(r"lbd: \d+ events in ", ln) for ln in lines)


def test_status_line_when_events_go_elsewhere(tmp_path, target):
    """stdout elsewhere: the status line is on stderr's terminal as before."""
    script = f'for i in $(seq 25); do cat "{target}" > /dev/null; sleep 0.1; done'
    rc, shown = _on_pty([*LBD, "run", "--", "sh", "-c", script], stdout_to_pty=False)
    assert rc == 0, shown
    assert re.search(r"\r\x1b\[K +\d+ events/s", shown), shown


def test_terminal_format_to_a_file_with_extras(tmp_path, target):
    out = tmp_path / "ev.txt"
    p = lbd("run", "--format", "terminal", "--latency", "--fds", "-o", str(out), f"arg.filename = {target}",
            "--", "cat", str(target))
    assert p.returncode == 0, p.stderr
    (line,) = out.read_text().splitlines()
    assert re.match(rf'^\d\d:\d\d:\d\d\.\d{{6}} cat\(\d+\) openat\(AT_FDCWD, "{re.escape(str(target))}", '
                    rf'O_RDONLY\) = 3 <\d+\.\d{{6}}>  fds=\[.*3:{re.escape(str(target))}.*\]$', line), line
    assert "\x1b[" not in line                                  # no colours in a file


# ---- record and replay -------------------------------------------------------------------------


def test_run_record_then_replay_gives_the_same_bytes(tmp_path, target):
    live, cap, again = tmp_path / "live.jsonl", tmp_path / "c.lbdcap", tmp_path / "again.jsonl"
    p = lbd("run", "--format", "json", "-o", str(live), "--record", str(cap), "--", *loop_cats(5, target))
    assert p.returncode == 0, p.stderr
    assert re.search(rf"lbd: recorded \d+ events in \d+ batches to {re.escape(str(cap))}", p.stderr), p.stderr
    r = lbd("replay", str(cap), "--format", "json", "-o", str(again))
    assert r.returncode == 0, r.stderr
    assert live.read_bytes() == again.read_bytes() and len(events(live)) > 5
    # a filter on replay: its subset
    sub = tmp_path / "sub.jsonl"
    r = lbd("replay", str(cap), "--format", "json", "-o", str(sub), f"arg.filename = {target}")
    assert r.returncode == 0, r.stderr
    assert len(events(sub)) == 5
    # the normal format of the same recording (stdout a pipe: not the terminal default)
    r = lbd("replay", str(cap), "--format", "normal")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == len(events(live))


def test_record_command_then_replay(tmp_path, target):
    cap = tmp_path / "c.lbdcap"
    p = lbd("record", "-o", str(cap), "syscall = openat", "--", *loop_cats(4, target))
    assert p.returncode == 0, p.stderr
    assert p.stdout == ""
    assert re.search(r"lbd: \d+ events in [\d.]+s;", p.stderr) and "recorded" in p.stderr
    r = lbd("replay", str(cap), "--format", "json")
    assert r.returncode == 0, r.stderr
    ev = [json.loads(line) for line in r.stdout.splitlines()]
    assert ev and {e["syscall"] for e in ev} == {"openat"}      # the recording's filter applies
    assert sum(e["args"]["filename"] == str(target) for e in ev) == 4
    # a capture is never overwritten
    again = lbd("record", "-o", str(cap), "--", "true")
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "exists" in again.stderr


def test_replay_bad_files(tmp_path, target):
    missing = tmp_path / "missing.lbdcap"
    p = lbd("replay", str(missing))
    assert p.returncode == 1
    assert p.stderr == f"lbd: error: cannot open capture file {missing}: No such file or directory\n"
    junk = tmp_path / "junk.lbdcap"
    junk.write_bytes(b"not a capture\n" * 10)
    p = lbd("replay", str(junk))
    assert p.returncode == 1 and p.stderr == f"lbd: error: {junk}: not an lbd capture file (no LBDCAP header)\n"
    cap = tmp_path / "c.lbdcap"
    assert lbd("record", "-o", str(cap), "--", *loop_cats(2, target)).returncode == 0
    data = bytearray(cap.read_bytes())
    k = data.find(b"LBDC", 16)
    while k >= 0 and data[k + 4] != 1:                         # the first batch chunk
        k = data.find(b"LBDC", k + 4)
    assert k > 0
    for i in range(k + 32, min(len(data), k + 96)):
        data[i] ^= 0x5A
    bad = tmp_path / "bad.lbdcap"
    bad.write_bytes(bytes(data))
    p = lbd("replay", str(bad), "--format", "json")
    assert p.returncode == 1, p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith(f"lbd: error: {bad}: ") and "Traceback" not in p.stderr


# ---- the drain at a stop -----------------------------------------------------------------------


LOAD = r'''
import os, sys, time
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    for _ in range(200):
        os.close(os.open(sys.argv[1], os.O_RDONLY))
    time.sleep(0.001)
'''


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT", "duration"])
def test_stop_drains_the_rings(tmp_path, target, stop):
    """Whatever stops the run, the records the rings hold then are read and written: nothing is
    left unread, and without a filter (no state records either) every event read is written."""
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"open_params": {"track_state": False}}))
    out = tmp_path / "ev.jsonl"
    load = subprocess.Popen([sys.executable, "-c", LOAD, str(target), "30"])
    try:
        args = [*LBD, "run", "--config", str(cfg), "--process-events", "--format", "json", "-o", str(out), "--quiet"]
        if stop == "duration":
            args += ["--duration", "1.5"]
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                             text=True)
        line = p.stderr.readline()
        assert "capturing" in line, line
        if stop != "duration":
            time.sleep(1.5)
            p.send_signal(getattr(signal, stop))
        _, err = p.communicate(timeout=120)
    finally:
        load.kill()
        load.wait()
    assert p.returncode == (130 if stop == "SIGINT" else 0), err
    m = re.search(r"lbd: (\d+) events in [\d.]+s, (\d+) written to ", err)
    assert m, err
    n = sum(1 for _ in out.open())
    assert int(m.group(1)) == int(m.group(2)) == n and n > 1000
    assert "left unread" not in err


def test_record_write_error_is_one_line(tmp_path):
    """The capture file cannot grow (RLIMIT_FSIZE: EFBIG): the run stops with the summary and one
    error line, exit 1."""
    import resource

    cap = tmp_path / "c.lbdcap"
    load = "import os\nfor i in range(200000): os.close(os.open('/etc/hostname', os.O_RDONLY))"

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    p = subprocess.run([*LBD, "record", "-o", str(cap), "--duration", "30", "--", sys.executable, "-c", load],
                       capture_output=True, text=True, timeout=120, preexec_fn=small_files, stdin=subprocess.DEVNULL)
    assert p.returncode == 1, p.stderr
    assert p.stderr.splitlines()[-1] == f"lbd: error: cannot write capture file {cap}: File too large"
    assert "Traceback" not in p.stderr and " -c 'import os\\nfor i" in p.stderr


CTRL_C = r'''
import os, signal, sys, time
def on_int(signum, frame):
    os.close(os.open(sys.argv[1], os.O_RDONLY))         # once per SIGINT received
    time.sleep(0.5)
    sys.exit(5)
signal.signal(signal.SIGINT, on_int)
print("ready", flush=True)
while True:
    time.sleep(0.05)
'''


def test_ctrl_c_at_the_terminal_reaches_the_command_once(tmp_path, target):
    """A Ctrl-C typed at lbd's controlling terminal: the command (in lbd's process group) gets one
    SIGINT, lbd captures its handler to the end and exits with its status."""
    import fcntl
    import termios

    out = tmp_path / "ev.jsonl"
    master, slave = pty.openpty()

    def controlling_terminal():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)         # a new session (start_new_session): the pty is its tty

    p = subprocess.Popen([*LBD, "run", "--format", "json", "-o", str(out), "--quiet", "--", sys.executable, "-c",
                          CTRL_C, str(target)], stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                         preexec_fn=controlling_terminal)
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        while b"\nready\r\n" not in seen and time.monotonic() < deadline:     # the line, not the command shown
            r, _, _ = select.select([master], [], [], 1)
            if r:
                seen += os.read(master, 4096)
        assert b"\nready\r\n" in seen, seen
        os.write(master, b"\x03")                      # Ctrl-C: SIGINT to the foreground process group
        p.wait(timeout=60)
        while True:
            r, _, _ = select.select([master], [], [], 0.2)
            if not r:
                break
            try:
                seen += os.read(master, 4096)
            except OSError:
                break
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
    assert p.returncode == 5, seen
    opens = [e for e in events(out) if e["syscall"] == "openat" and e["args"].get("filename") == str(target)]
    assert len(opens) == 1


def test_the_command_inherits_no_ignored_signal(tmp_path):
    """Python ignores SIGPIPE and SIGXFSZ; the command must get them at their defaults (as
    subprocess's restore_signals gives), or `lbd run -- sh -c 'yes | head'` would behave otherwise."""
    p = lbd("run", "-o", str(tmp_path / "ev.log"), "--", "grep", "SigIgn", "/proc/self/status")
    assert p.returncode == 0, p.stderr
    ignored = int(p.stdout.split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1)) and not ignored & (1 << (signal.SIGXFSZ - 1)), p.stdout
