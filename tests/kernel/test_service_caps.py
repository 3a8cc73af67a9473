"""The capabilities packaging/lbd.service leaves lbd are enough to capture with enrichment, and
CAP_BPF among them is needed (run under setpriv with the unit's bounding set)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_bpf

UNIT = Path(__file__).resolve().parents[2] / "packaging" / "lbd.service"


def unit_caps() -> list[str]:
    line = next(x for x in UNIT.read_text().splitlines() if x.startswith("CapabilityBoundingSet="))
    return line.split("=", 1)[1].split()


NOBODY_LOOP = """
import os, time
t = time.monotonic()
while time.monotonic() - t < 30:
    os.close(os.open("/etc/hostname", os.O_RDONLY))
    time.sleep(0.01)
"""


def as_nobody():
    os.setgid(65534)
    os.setgroups([])
    os.setuid(65534)


def run_with(caps: list[str], tmp_path) -> subprocess.CompletedProcess:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv is missing: apt-get install util-linux")
    bounding = ",".join(["-all"] + ["+" + c.removeprefix("CAP_").lower() for c in caps])
    out = tmp_path / "events.jsonl"
    p = subprocess.Popen([setpriv, f"--bounding-set={bounding}", "--inh-caps=-all", "--",
                          sys.executable, "-m", "lbd.cli", "run", "--duration", "3", "--syscall", "openat",
                          "--format", "json", "--output", str(out), "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=UNIT.parents[1])
    # openat calls of a process of user nobody: its /proc entries need the capabilities
    child = subprocess.Popen(["/usr/bin/python3", "-c", NOBODY_LOOP], preexec_fn=as_nobody)
    try:
        stdout, stderr = p.communicate(timeout=60)
    finally:
        child.kill()
        child.wait()
    run_with.child_pid = child.pid
    return subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)


def test_the_units_capabilities_are_enough(tmp_path):
    require_bpf()
    caps = unit_caps()
    r = run_with(caps, tmp_path)
    assert r.returncode == 0, r.stderr
    objs = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert objs and all(o["syscall"] == "openat" for o in objs)
    theirs = [o for o in objs if o["pid"] == run_with.child_pid and o["args"].get("filename") == "/etc/hostname"]
    assert theirs and theirs[-1]["user"] == "nobody"
    assert theirs[-1]["fullpath"].startswith("/usr/bin/python3") and "os.open" in theirs[-1]["cmdline"]
    assert theirs[-1]["fds"]["fd"][:3] == [0, 1, 2]                   # its fd directory was read


def test_without_cap_bpf_the_probe_does_not_load(tmp_path):
    require_bpf()
    r = run_with([c for c in unit_caps() if c != "CAP_BPF"], tmp_path)
    assert r.returncode == 1 and "Operation not permitted" in r.stderr


def test_without_the_proc_capabilities_other_users_exe_and_fds_are_unknown(tmp_path):
    """Why CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE are in the set."""
    require_bpf()
    r = run_with([c for c in unit_caps() if c not in ("CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE")], tmp_path)
    assert r.returncode == 0, r.stderr
    objs = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    theirs = [o for o in objs if o["pid"] == run_with.child_pid]
    # procfs told nothing (no executable, not its fd directory: 0, 1, 2 are unknown); the fd each
    # openat returned is known from the event itself
    last = theirs[-1] if theirs else None
    assert last and last["fullpath"] == "" and last["res"] >= 0
    assert last["fds"] == {"fd": [last["res"]], "path": ["/etc/hostname"]}
