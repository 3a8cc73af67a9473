"""The lbd command line: table output, one-line errors, exit codes."""
from __future__ import annotations

import json
import subprocess
import sys

from lbd import syscalls


def lbd(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "lbd.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_syscalls_json_lists_every_syscall_with_selection():
    p = lbd("syscalls", "--json")
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    assert [r["nr"] for r in rows] == [sc.nr for sc in syscalls.TABLE]
    by = {r["name"]: r for r in rows}
    assert by["openat"]["args"][1] == {"name": "filename", "kind": "path"}
    assert by["openat"]["selected"] is True and by["read"]["selected"] is False
    assert by["uname"]["implemented"] is True and by["tuxcall"]["implemented"] is False
    assert {r["nr"] for r in rows if r["selected"]} == set(syscalls.default_selection())


def test_syscalls_selection_follows_config(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"open_params": {"syscalls": ["read", "write"]}}))
    rows = json.loads(lbd("syscalls", "--json", "--config", str(cfg)).stdout)
    assert {r["name"] for r in rows if r["selected"]} == {"read", "write"}


def test_bad_config_is_one_line_error(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"open_params": {"filter_pids": list(range(65))}}))
    p = lbd("syscalls", "--config", str(cfg))
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert "filter_pids" in p.stderr and "65" in p.stderr and "64" in p.stderr


def test_unknown_syscall_in_config(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"open_params": {"syscalls": ["openat", "frobnicate"]}}))
    p = lbd("syscalls", "--config", str(cfg))
    assert p.returncode == 1 and "frobnicate" in p.stderr and "Traceback" not in p.stderr


def test_debug_shows_traceback(tmp_path):
    p = lbd("--debug", "syscalls", "--config", str(tmp_path / "missing.json"))
    assert p.returncode != 0 and "Traceback" in p.stderr


def test_no_command_is_usage_error():
    assert lbd().returncode == 2
