"""bcc-style short options of `lbd run` against the kernel: -u keeps one user's syscalls (in the
kernel: open_params.only_uids), -e takes strace's syscall list, -f the format, -x failed only."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from tests.conftest import require_bpf

NOBODY = 65534
OPENS = """
import os, sys
sys.stdin.readline()
for _ in range(10):
    os.close(os.open("/etc/hostname", os.O_RDONLY))
    try:
        os.open("/nonexistent/lbd-habits", os.O_RDONLY)
    except OSError:
        pass
"""


def as_nobody():
    os.setgid(NOBODY)
    os.setgroups([])
    os.setuid(NOBODY)


def test_uid_syscalls_format_and_failed_short_options():
    require_bpf()
    child = subprocess.Popen(["/usr/bin/python3", "-c", OPENS], stdin=subprocess.PIPE, text=True,
                             preexec_fn=as_nobody)
    p = subprocess.Popen([sys.executable, "-m", "lbd.cli", "run", "-u", str(NOBODY), "-e", "trace=openat,close",
                          "-f", "json", "-x", "-d", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stderr.readline()
        assert "capturing" in line, line + p.stderr.read()
        for _ in range(10):                                        # root's: not kept
            os.close(os.open("/etc/hostname", os.O_RDONLY))
        child.stdin.write("go\n")
        child.stdin.close()
        assert child.wait(timeout=60) == 0
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    finally:
        for x in (p, child):
            if x.poll() is None:
                x.kill()
                x.wait()
    assert p.returncode == 0, err
    objs = [json.loads(x) for x in out.splitlines()]
    assert objs and all(o["uid"] == NOBODY and o["res"] < 0 for o in objs)
    assert {o["syscall"] for o in objs} <= {"openat", "close"}
    theirs = [o for o in objs if o["pid"] == child.pid]
    assert len(theirs) == 10 and all(o["args"]["filename"] == "/nonexistent/lbd-habits" for o in theirs)
