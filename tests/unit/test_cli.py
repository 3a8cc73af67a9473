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


# ---- lbd run: what works without the kernel -----------------------------------------------------

def test_run_help_documents_the_options():
    p = lbd("run", "--help")
    assert p.returncode == 0
    text = " ".join(p.stdout.split())
    for opt in ("--failed-only", "--drop-failed", "--format", "--output", "--syscalls", "--syscall", "--pid",
                "--comm", "--exclude-pid", "--exclude-comm", "--duration", "--quiet", "--process-events"):
        assert opt in text
    assert "user space" in text


def test_failed_only_and_drop_failed_exclude_each_other():
    p = lbd("run", "--failed-only", "--drop-failed", "--duration", "1")
    assert p.returncode == 2 and "not allowed with" in p.stderr


def test_run_with_unopenable_output_is_one_line(tmp_path):
    target = tmp_path / "missing" / "events.log"
    p = lbd("run", "--output", str(target), "--duration", "1")
    assert p.returncode == 1
    assert p.stderr == f"lbd: error: cannot open output file {target}: No such file or directory\n"
    assert not target.parent.exists()


def test_run_with_unopenable_log_file(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"init_config": {"log_file": str(tmp_path / "no" / "lbd.log")}}))
    p = lbd("run", "--config", str(cfg), "--output", str(tmp_path / "ev.log"), "--duration", "1")
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "cannot open log file" in p.stderr


def test_stats_help():
    p = lbd("stats", "--help")
    assert p.returncode == 0 and "--duration" in p.stdout and "--json" in p.stdout


def test_user_filter_masks():
    import numpy as np

    from lbd.cli import _UserFilter
    from lbd.config import Config
    from tests.data.fakeproc import batch_of, rec

    b = batch_of(rec("openat", {"dfd": -100, "filename": "/x", "flags": 0}, pid=10, comm="a", res=-2),
                 rec("close", {"fd": 3}, pid=10, comm="a", res=0),
                 rec("sched_process_exec", {"pid": 10, "old_pid": 10, "filename": "/bin/a"}, pid=10, comm="a"),
                 rec("sched_process_exit", {"pid": 11, "group_dead": 1}, pid=11, comm="b"))
    cfg = Config.default()
    assert _UserFilter(cfg, False, False).mask(b).tolist() == [True, True, False, False]
    assert _UserFilter(cfg, False, True).mask(b) is None or _UserFilter(cfg, False, True).mask(b).all()
    assert _UserFilter(cfg, True, False).mask(b).tolist() == [True, False, False, False]
    only = cfg.replace(only_comms=["a"])
    assert _UserFilter(only, False, True).mask(b).tolist() == [True, True, True, False]
    drop = cfg.replace(filter_pids=[11])
    assert _UserFilter(drop, False, True).mask(b).tolist() == [True, True, True, False]
    no_sched = batch_of(rec("getpid"))
    assert _UserFilter(cfg, False, False).mask(no_sched) is None
    assert isinstance(_UserFilter(cfg, True, False).mask(no_sched), np.ndarray)
