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


# ---- hardening (issue 12): arguments, selections and errors ---------------------------------------------

import os  # noqa: E402

import pytest  # noqa: E402


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "-inf", "abc"])
def test_duration_must_be_positive_and_finite(value):
    for cmd in ("run", "stats"):
        p = lbd(cmd, f"--duration={value}")
        assert p.returncode == 2 and "Traceback" not in p.stderr
        assert f"argument -d/--duration: '{value}'" in p.stderr.splitlines()[-1]


def test_empty_selection_is_an_error(tmp_path):
    sel = tmp_path / "none.json"
    sel.write_text(json.dumps({"read": {"syscall_id": 0, "interesting": 0}}))
    p = lbd("run", "--syscalls", str(sel), "--duration", "1")
    assert p.returncode == 1
    assert p.stderr == (f"lbd: error: the syscall selection is empty: {sel} marks no syscall interesting (1); "
                        f"select at least one (--syscall NAME, or a file with an entry set to 1)\n")


@pytest.mark.parametrize("content,needle", [
    ('{"read": {"syscall_id": 1, "interesting": 1}}', "syscall_id is 1, but read is syscall 0"),
    ("[" * 100_000, "nested too deep"),
    (None, "is a FIFO, not a regular file"),
])
def test_selection_errors_are_one_line_without_class_names(tmp_path, content, needle):
    sel = tmp_path / "sel.json"
    if content is None:
        os.mkfifo(sel)                     # it would block forever
    else:
        sel.write_text(content)
    p = lbd("run", "--syscalls", str(sel), "--duration", "1", timeout=30)
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and needle in p.stderr, p.stderr
    assert "Error" not in p.stderr and "Traceback" not in p.stderr


def test_configuration_from_dev_zero_or_a_fifo_does_not_block(tmp_path):
    fifo = tmp_path / "c.yaml"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.json"
    os.symlink("/dev/zero", zero)
    for path in (str(fifo), str(zero)):
        p = lbd("syscalls", "--config", path, timeout=30)
        assert p.returncode == 1 and p.stderr.count("\n") == 1 and "not a regular file" in p.stderr
    big = tmp_path / "big.json"
    big.write_bytes(b"[" + b"0," * (1 << 20) + b"0]")
    p = lbd("syscalls", "--config", str(big))
    assert p.returncode == 1 and "more than the limit of 1048576 bytes (1 MiB)" in p.stderr


def test_comm_takes_any_bytes_and_is_cut_like_the_kernel():
    """--comm $'\\xff\\xfe' (Python hands it over surrogate-escaped) and a 20-byte name (cut to
    the 15 bytes the kernel keeps, with a warning): the configuration and the user-space
    filter get the kernel's bytes."""
    import numpy as np

    from lbd.cli import _parser, _run_config, _UserFilter
    from tests.data.fakeproc import batch_of, rec

    a = _parser().parse_args(["run", "--comm", os.fsdecode(b"\xff\xfe"), "abcdefghijklmnopqrst",
                              "--exclude-comm", os.fsdecode(b"\xe2\x82\xac" * 6)])
    cfg = _run_config(a)
    assert [os.fsencode(c) for c in cfg.only_comms] == [b"\xff\xfe", b"abcdefghijklmno"]
    assert [os.fsencode(c) for c in cfg.filter_comms] == [b"\xe2\x82\xac" * 5]
    b = batch_of(rec("sched_process_exit", {"pid": 5, "group_dead": 1}, pid=5, comm=b"\xff\xfe"),
                 rec("sched_process_exit", {"pid": 6, "group_dead": 1}, pid=6, comm=b"abcdefghijklmno"),
                 rec("sched_process_exit", {"pid": 7, "group_dead": 1}, pid=7, comm=b"other"))
    assert _UserFilter(cfg, False, True).mask(b).tolist() == [True, True, False]
    assert isinstance(_UserFilter(cfg, False, True).mask(b), np.ndarray)


def test_comm_cut_warns_on_the_command_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "lbd.cli", "run", "--comm", "abcdefghijklmnopqrst", "--syscalls",
                        str(tmp_path / "missing.json"), "--duration", "1"], capture_output=True, timeout=60)
    err = p.stderr.decode()
    assert err.splitlines()[0] == ("lbd: warning: --comm abcdefghijklmnopqrst: 20 bytes, but the kernel keeps a "
                                   "command name's first 15: matching abcdefghijklmno")
    p = subprocess.run([sys.executable, "-m", "lbd.cli", "run", "--comm", b"\xff\xfe", "--syscalls",
                        str(tmp_path / "missing.json"), "--duration", "1"], capture_output=True, timeout=60)
    assert p.returncode == 1 and b"Traceback" not in p.stderr and b"Error" not in p.stderr
    assert p.stderr.decode().startswith(f"lbd: error: {tmp_path / 'missing.json'}: cannot read")


def test_unexpected_errors_carry_no_class_name():
    from lbd.cli import CliError, _message
    from lbd.interesting import InterestingError

    assert _message(InterestingError("sel.json: entry 'x': unknown syscall name")) == \
        "sel.json: entry 'x': unknown syscall name"
    assert _message(CliError("a\nb")) == "a b"
    assert _message(KeyError("k")) == "unexpected failure: 'k' (--debug shows where)"
    assert _message(ValueError()) == "unexpected failure: no message (--debug shows where)"
