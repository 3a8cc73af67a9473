"""open_params.filter in the plugin, live: the kernel gets the part it can decide (the syscall
set: the other syscalls never leave it; the path prefix: an openat outside it leaves only as a
state record), the plugin applies the whole expression before Falco sees an event, and the
counters say what each side removed."""
from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.conftest import require_bpf
from tests.plugin_host.host import LiveHost

CHILD = """
import os, sys
sys.stdin.readline()
for _ in range(50):
    os.getppid()
    with open("/etc/hostname", "rb"):
        pass
    with open("/proc/self/stat", "rb"):
        pass
"""


def test_filter_is_pushed_down_and_applied():
    require_bpf()
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, text=True)
    try:
        params = json.dumps({"only_pids": [child.pid], "syscalls": ["openat", "getppid", "close"],
                             "filter": "syscall = openat and arg.filename startswith /etc/"})
        with LiveHost("", params, fields=("linux.syscall", "linux.arg[filename]"), extra=("--quiet",)) as h:
            h.opened()
            child.stdin.write("go\n")
            child.stdin.flush()
            child.wait(30)
            time.sleep(0.5)
            summary = h.stop()
        lines = h.lines
    finally:
        if child.poll() is None:
            child.kill()
    opened = next(d["log"] for d in lines if "log" in d and d["log"].startswith("capture open"))
    assert "1 syscalls selected" in opened and "syscalls=['openat']" in opened, opened
    assert "path_prefixes=['openat:filename:/etc/']" in opened, opened
    m = next(d["metrics_after_close"]["values"] for d in lines if "metrics_after_close" in d)
    # in the kernel: getppid was not selected (the filter's syscall set met the user's), and the
    # openat outside /etc failed the path prefix: written only as a state record (its fd matters)
    assert m["filtered_kernel_syscall"] >= 50
    assert m["filtered_kernel_path"] >= 50
    # in the plugin: those openat and the close (a state record) hidden before Falco; nothing
    # left for the plugin's own filter to remove but what the kernel cannot decide
    assert m["events_hidden_state"] >= 150
    assert m["events_filtered_user"] < 50
    assert m["events_handed"] == summary["events"] >= 50


def test_filter_with_quiet_prints_only_matching_events():
    require_bpf()
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, text=True)
    try:
        params = json.dumps({"only_pids": [child.pid], "filter": "syscall = openat and arg.filename = /etc/hostname"})
        with LiveHost("", params, fields=("linux.syscall", "linux.arg[filename]")) as h:
            h.opened()
            child.stdin.write("go\n")
            child.stdin.flush()
            child.wait(30)
            time.sleep(0.5)
            h.stop()
        events = h.events()
    finally:
        if child.poll() is None:
            child.kill()
    assert len(events) >= 50
    assert all(e["linux.syscall"] == ["openat"] and e["linux.arg[filename]"] == ["/etc/hostname"] for e in events)
