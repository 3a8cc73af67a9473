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


# ---- lbd run EXPR / -- CMD, record, replay: what is decided before the kernel ---------------------


def test_expression_given_twice_is_a_usage_error(tmp_path):
    marker = tmp_path / "ran"
    p = lbd("run", "--filter", "failed", "failed", "--", "touch", str(marker))
    assert p.returncode == 2
    assert p.stderr == "lbd: error: a filter expression was given twice (EXPR and --filter): give one\n"
    assert not marker.exists()


def test_bad_expression_prints_it_with_a_caret(tmp_path):
    marker = tmp_path / "ran"
    for cmd in (["run"], ["record", "-o", str(tmp_path / "c.lbdcap")], ["replay", str(tmp_path / "c.lbdcap")]):
        p = lbd(*cmd, "pid = 1 and comm startswith", "--", "touch", str(marker)) if cmd[0] != "replay" else \
            lbd(*cmd, "pid = 1 and comm startswith")
        assert p.returncode == 2, (cmd, p.stderr)
        lines = p.stderr.splitlines()
        assert lines[0].startswith("lbd: error: filter, column 28: ") and "Traceback" not in p.stderr
        assert lines[1:] == ["  pid = 1 and comm startswith", "  " + " " * 27 + "^"]
    assert not marker.exists() and not (tmp_path / "c.lbdcap").exists()


def test_terminal_extras_need_the_terminal_format(tmp_path):
    out = tmp_path / "ev.jsonl"
    p = lbd("run", "--format", "json", "--cmdline", "--latency", "-o", str(out), "--duration", "1")
    assert p.returncode == 2
    assert p.stderr == ("lbd: error: --cmdline --latency: only the terminal format shows these (the format is "
                        "json: --format terminal)\n")
    assert not out.exists()


def test_record_never_overwrites(tmp_path):
    cap = tmp_path / "c.lbdcap"
    cap.write_bytes(b"keep")
    p = lbd("record", "-o", str(cap), "--duration", "1")
    assert p.returncode == 1
    assert p.stderr == f"lbd: error: cannot create capture file {cap}: it exists (a capture is never overwritten)\n"
    assert cap.read_bytes() == b"keep"
    p = lbd("record", "--duration", "1")
    assert p.returncode == 2 and "-o" in p.stderr


def test_command_not_found_exits_127(tmp_path):
    p = lbd("run", "-o", str(tmp_path / "ev.log"), "--", "lbd-no-such-command-anywhere")
    assert p.returncode == 127
    assert p.stderr == "lbd: error: command not found or not executable: lbd-no-such-command-anywhere\n"


def test_positionals_and_the_command_parse():
    from lbd.cli import _parser

    p = _parser()
    a = p.parse_args(["run", "syscall = openat", "--duration", "2", "--", "sh", "-c", "echo --x", "--"])
    assert (a.expression, a.duration, a.trace_argv) == ("syscall = openat", 2.0, ["sh", "-c", "echo --x", "--"])
    a = p.parse_args(["run", "--quiet", "failed"])
    assert (a.expression, a.trace_argv, a.quiet) == ("failed", None, True)
    a = p.parse_args(["replay", "c.lbdcap", "--format", "json", "failed", "-o", "x"])
    assert (a.file, a.expression, a.format, a.output) == ("c.lbdcap", "failed", "json", "x")
    a = p.parse_args(["record", "-o", "c", "--", "true"])
    assert (a.output, a.expression, a.trace_argv) == ("c", None, ["true"])


@pytest.mark.parametrize("text, chose", [
    ("init_config: {format: normal}\n", True),
    ("format: json\n", True),
    ('{"init_config": {"format": "json"}}', True),
    ("init_config: {log_level: INFO}\n", False),
    ("", False),
])
def test_config_file_choosing_the_format(tmp_path, text, chose):
    from lbd.cli import _config_chose_format

    ext = ".json" if text.startswith("{") else ".yaml"
    path = tmp_path / f"c{ext}"
    path.write_text(text)
    assert _config_chose_format(str(path)) is chose


def test_format_default(tmp_path, monkeypatch):
    import argparse

    import lbd.cli as cli
    from lbd.config import Config

    cfg = Config.default()
    yaml_cfg = tmp_path / "c.yaml"
    yaml_cfg.write_text("init_config: {format: normal}\n")
    monkeypatch.setattr(cli, "_config_chose_format", lambda path: path is not None)

    def fmt(tty, format=None, output=None, config=None, c=cfg):
        monkeypatch.setattr(cli, "_stdout_terminal", lambda: tty)
        return cli._choose_format(argparse.Namespace(format=format), c, output, config)

    assert fmt(True) == "terminal" and fmt(False) == "normal"
    assert fmt(True, output="-") == "terminal" and fmt(True, output="ev.log") == "normal"
    assert fmt(True, format="json") == "json" and fmt(False, format="terminal") == "terminal"
    assert fmt(True, config=str(yaml_cfg)) == "normal"                    # the file chose
    assert fmt(True, c=cfg.replace(putfile=True, path=str(tmp_path / "x"))) == "normal"   # events to a file


def _synthetic_capture(path):
    """A capture of random records (no kernel), and the events replay writes by default."""
    import numpy as np

    from lbd import record
    from lbd.batch import Batch
    from lbd.capture import CaptureWriter
    from lbd.config import Config
    from lbd.ringimage import image_of, random_cases

    cases = random_cases(300, seed=11)
    ring = image_of([c.record for c in cases], size=1 << 22).ring(index=0)
    w = CaptureWriter(path, {"wall_offset_ns": 0, "config": Config.default().to_dict()})
    kept = failed = 0
    while True:
        b = Batch(100, 100 * 2048)
        if not ring.fill(b):
            break
        w.write_batch(b)
        ev = b.events
        out = (ev["nr"] < record.NR_SCHED_FORK) & ((ev["flags"] & np.uint32(record.F_STATE)) == 0)
        kept += int(out.sum())
        failed += int((out & (ev["res"] < 0)).sum())
    w.close({})
    return kept, failed


def test_replay_of_a_capture_without_a_kernel(tmp_path):
    cap = tmp_path / "c.lbdcap"
    kept, failed = _synthetic_capture(cap)
    assert kept and failed
    p = lbd("replay", str(cap), "--format", "json")
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) == kept
    assert all(json.loads(line)["syscall"] for line in p.stdout.splitlines())
    assert p.stderr == f"lbd: 300 events replayed from {cap}, {kept} written to stdout\n"
    p = lbd("replay", str(cap), "failed", "--format", "json")
    assert p.returncode == 0 and len(p.stdout.splitlines()) == failed
    assert all(json.loads(line)["res"] < 0 for line in p.stdout.splitlines())
    p = lbd("replay", str(cap))                   # stdout a pipe: the recording's format (normal)
    assert p.returncode == 0 and p.stdout.startswith("[") and len(p.stdout.splitlines()) == kept
    p = lbd("replay", str(cap), "--format", "terminal", "--latency")
    assert p.returncode == 0 and len(p.stdout.splitlines()) == kept and "\x1b[" not in p.stdout


def test_replay_of_bad_files_is_one_line(tmp_path):
    missing = tmp_path / "none.lbdcap"
    p = lbd("replay", str(missing))
    assert (p.returncode, p.stderr) == (1, f"lbd: error: cannot open capture file {missing}: No such file or directory\n")
    junk = tmp_path / "junk.lbdcap"
    junk.write_bytes(b"\x00" * 64)
    p = lbd("replay", str(junk))
    assert (p.returncode, p.stderr) == (1, f"lbd: error: {junk}: not an lbd capture file (no LBDCAP header)\n")
    cap = tmp_path / "c.lbdcap"
    _synthetic_capture(cap)
    data = bytearray(cap.read_bytes())
    k = data.find(b"LBDC", 16)
    for i in range(k + 40, k + 120):
        data[i] ^= 0xA5
    bad = tmp_path / "bad.lbdcap"
    bad.write_bytes(bytes(data))
    p = lbd("replay", str(bad), "--format", "json")
    assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith(f"lbd: error: {bad}: chunk 0 ") and "Traceback" not in p.stderr


def test_terminal_format_is_not_for_nats():
    p = lbd("run", "--format", "terminal", "-o", "nats://127.0.0.1:1/x", "--duration", "1")
    assert p.returncode == 2
    assert p.stderr == ("lbd: error: --format terminal: nats://127.0.0.1:1/x takes normal, json or parquet (the "
                        "terminal format is for a person at a terminal)\n")


# ---- CLI habits (issue 13): version, examples, short options, global options, completion, paths ----

import shlex  # noqa: E402
from pathlib import Path  # noqa: E402


def _subparsers(p):
    import argparse

    action = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_version_long_and_short():
    from importlib import metadata

    want = f"lbd {metadata.version('lbd')}\n"
    for flag in ("--version", "-V"):
        p = lbd(flag)
        assert p.returncode == 0 and p.stdout == want, p.stderr


def test_version_without_package_metadata_is_the_source_trees(monkeypatch):
    from importlib import metadata

    import lbd as pkg
    from lbd import cli

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    assert cli.version() == pkg.__version__


def _examples(help_text: str) -> list[list[str]]:
    """The example command lines at the end of a --help: backslash continuations joined, comments
    and what follows a pipe or a redirection left out, from the word `lbd` on."""
    assert "\nexamples:\n" in help_text, help_text
    body = help_text.split("\nexamples:\n", 1)[1].replace("\\\n", " ")
    out = []
    for line in body.splitlines():
        if not line.strip():
            continue
        assert line.startswith("  "), f"not an indented example line: {line!r}"
        words = shlex.split(line, comments=True)
        for stop in ("|", ">", ">>"):
            if stop in words:
                words = words[:words.index(stop)]
        out.append(words[words.index("lbd") + 1:])
    return out


def test_every_subcommand_help_ends_with_examples_that_parse():
    from lbd import cli, syscalls
    from lbd.filter import compile as compile_filter

    p = cli._parser()
    subs = _subparsers(p)
    assert set(subs) == set(cli.COMMANDS)
    for name, sp in subs.items():
        text = sp.format_help()
        assert text.rstrip().splitlines()[-1].startswith("  "), f"{name}: --help must end with the examples"
        examples = _examples(text)
        assert len(examples) >= 2, name
        for words in examples:
            assert words[0] == name, (name, words)
            try:
                a = p.parse_args(words)
            except SystemExit:
                pytest.fail(f"lbd {shlex.join(words)}: does not parse")
            for expr in (getattr(a, "filter", None), getattr(a, "expr", None)):
                if expr:
                    compile_filter(expr)                   # a real expression
            for sc in getattr(a, "syscall", None) or ():
                syscalls.lookup(sc)                        # real syscall names
    # and the real --help output has them (RawDescriptionHelpFormatter keeps the lines)
    for name in subs:
        out = lbd(name, "--help")
        assert out.returncode == 0 and "\nexamples:\n  lbd " in out.stdout


def test_short_options_are_the_long_ones():
    from lbd import cli

    p = cli._parser()
    a = p.parse_args(["run", "-p", "1,2", "-n", "nginx", "-u", "0", "-x", "-d", "2.5", "-o", "ev.log", "-f", "json",
                      "-e", "trace=openat,read", "-e", "close", "-q"])
    assert (a.pid, a.comm, a.uid, a.failed_only, a.duration, a.output, a.format, a.syscall, a.quiet) == \
        ([1, 2], ["nginx"], [0], True, 2.5, "ev.log", "json", ["openat", "read", "close"], True)
    cfg = cli._run_config(a)
    assert cfg.open.only_uids == (0,) and cfg.open.syscalls == ("openat", "read", "close")
    assert cfg.open.only_pids == (1, 2) and cfg.open.only_comms == ("nginx",)
    s = p.parse_args(["stats", "-p", "7", "-n", "x", "-u", "root", "-x", "-e", "openat", "-d", "1", "-i", "0.5",
                      "-P", "--top", "3", "failed"])
    assert (s.pid, s.comm, s.uid, s.failed_only, s.syscall, s.duration, s.interval, s.per_process, s.top, s.expr) == \
        ([7], ["x"], [0], True, ["openat"], 1.0, 0.5, True, 3, "failed")
    assert p.parse_args(["run", "--syscall", "openat", "read"]).syscall == ["openat", "read"]


def test_short_list_options_leave_the_expression_alone():
    """-p, -n and -u take one value per use (bcc's way; -p and -u a comma list too), so an EXPR
    written right after one stays the EXPR (with several values per use, `-n cat 'failed'` made
    'failed' a command name and captured without the filter); the long forms take several."""
    from lbd import cli

    p = cli._parser()
    a = p.parse_args(["run", "-n", "cat", "syscall = openat", "-p", "7", "-p", "8,9", "-u", "0,root"])
    assert (a.comm, a.expression, a.pid, a.uid) == (["cat"], "syscall = openat", [7, 8, 9], [0, 0])
    r = p.parse_args(["record", "-o", "f", "-n", "cat", "failed"])
    assert (r.comm, r.expression) == (["cat"], "failed")
    s = p.parse_args(["stats", "-p", "3", "errno = ENOENT"])
    assert (s.pid, s.expr) == ([3], "errno = ENOENT")
    b = p.parse_args(["run", "--pid", "1", "2", "--comm", "a", "b,c", "--uid", "0", "1"])
    assert (b.pid, b.comm, b.uid) == ([1, 2], ["a", "b,c"], [0, 1])


@pytest.mark.parametrize("args,needle", [
    (["run", "-e", "openat,,read"], "argument -e: 'openat,,read': expected NAME[,NAME...]"),
    (["run", "-u", "no-such-user-here"], "argument -u: 'no-such-user-here' is neither a uid nor a user name"),
    (["run", "--uid", "no-such-user-here"], "argument --uid: 'no-such-user-here' is neither a uid nor a user name"),
    (["run", "-p", "1,x"], "argument -p: 'x' is not a pid (a number)"),
    (["stats", "-u", "4294967295"], "a uid is at most 4294967294"),
    (["stats", "--top", "0"], "argument -T/--top: '0': expected a whole number >= 1"),
    (["run", "-e", "openat", "--syscalls", "x.json"], "not allowed with argument"),
])
def test_bad_short_option_values_are_one_line(args, needle):
    p = lbd(*args)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert needle in p.stderr.splitlines()[-1], p.stderr


def test_stats_unknown_syscall_is_one_line():
    p = lbd("stats", "-e", "frobnicate", "-d", "1")
    assert p.returncode == 1
    assert p.stderr == "lbd: error: -e frobnicate: not a known syscall (lbd syscalls lists them)\n"


def test_stats_bad_expression_is_one_line():
    p = lbd("stats", "syscall = = openat", "-d", "1")
    assert p.returncode == 1 and "Traceback" not in p.stderr and "open_params.filter" in p.stderr


def test_global_options_after_the_subcommand(tmp_path):
    from lbd import cli

    p = cli._parser()
    assert p.parse_args(["run", "--debug"]).debug is True
    assert p.parse_args(["--debug", "run"]).debug is True
    assert p.parse_args(["run"]).debug is False
    assert p.parse_args(["stats", "--debug", "-d", "1"]).debug is True
    missing = str(tmp_path / "missing.json")
    after = lbd("syscalls", "--config", missing, "--debug")
    assert after.returncode == 1 and "Traceback" in after.stderr
    plain = lbd("syscalls", "--config", missing)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr


def _complete(line: str) -> list[str]:
    """What the shell gets for `line<TAB>`: argcomplete's protocol (the words on fd 8)."""
    env = {**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": "\n", "COMP_LINE": line,
           "COMP_POINT": str(len(line)), "COMP_TYPE": "9"}
    cmd = f"{shlex.quote(sys.executable)} -m lbd.cli 8>&1 9>/dev/null"
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    return [w.strip() for w in p.stdout.split("\n") if w.strip()]


def test_shell_completion():
    assert _complete("lbd ru") == ["run"]
    assert sorted(_complete("lbd run --sysc")) == ["--syscall", "--syscalls"]
    assert "--per-process" in _complete("lbd stats --per")
    assert set(_complete("lbd ")) >= {"run", "doctor", "syscalls", "stats", "falco-config"}
    assert set(_complete("lbd run -e openat,fcntl,clos")) == {"openat,fcntl,close", "openat,fcntl,close_range"}
    assert "trace=execve" in _complete("lbd stats -e trace=exec")
    assert "newfstatat" in _complete("lbd run --syscall openat newfs")


def test_cli_has_the_argcomplete_marker():
    from lbd import cli

    head = Path(cli.__file__).read_bytes()[:1024]
    assert b"PYTHON_ARGCOMPLETE_OK" in head        # global completion (activate-global-python-argcomplete)


def test_config_paths_are_relative_to_the_config_file(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "sel.json").write_text(json.dumps({"read": {"syscall_id": 0, "interesting": 1},
                                               "write": {"syscall_id": 1, "interesting": 1}}))
    (conf / "c.yaml").write_text("init_config: {log_file: logs/lbd.log, spool_dir: spool}\n"
                                 "open_params: {interest_syscall_file: sel.json}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    p = subprocess.run([sys.executable, "-m", "lbd.cli", "syscalls", "--json", "--config", "../conf/c.yaml"],
                       capture_output=True, text=True, timeout=60, cwd=elsewhere,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert p.returncode == 0, p.stderr
    assert {r["name"] for r in json.loads(p.stdout) if r["selected"]} == {"read", "write"}


def test_stats_counts_in_the_kernel_unless_a_filter_needs_the_events(tmp_path):
    from lbd import cli, syscalls

    p = cli._parser()
    empty = tmp_path / "empty.json"                        # not /etc/lbd/lbd.yaml, whatever this host has
    empty.write_text("{}")

    def conf(*args):
        args = args if "--config" in args else (*args, "--config", str(empty))
        return cli._stats_config(p.parse_args(["stats", *args]))

    cfg, events = conf()
    assert not events and cfg.open.syscall_stats and cfg.open.drop_mode and not cfg.open.track_state
    cfg, events = conf("-e", "openat,read")                 # -e only narrows the rows
    assert not events and cfg.open.syscall_stats
    every = tuple(sc.name for sc in syscalls.TABLE if sc.implemented)
    cfg, events = conf("-p", "1")
    assert events and not cfg.open.syscall_stats and not cfg.open.drop_mode
    assert cfg.open.only_pids == (1,) and cfg.open.syscalls == every
    cfg, events = conf("-P", "-e", "openat")
    assert events and cfg.open.syscalls == ("openat",)
    cfg, events = conf("-u", "0", "-x", "-n", "sshd")
    assert events and cfg.open.only_uids == (0,) and cfg.open.failed_only and cfg.open.only_comms == ("sshd",)
    cfg, events = conf("failed", "--filter", "pid = 1")
    assert events and cfg.open.filter == "(failed) and (pid = 1)"
    c = tmp_path / "c.json"
    c.write_text(json.dumps({"open_params": {"filter_comms": ["sshd"]}}))
    cfg, events = conf("--config", str(c))                  # the configuration's own filters count
    assert events and cfg.open.filter_comms == ("sshd",)
