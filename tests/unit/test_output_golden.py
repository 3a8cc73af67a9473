"""Golden output: the events of tests/data/golden.py, formatted by the bulk formatter and by the
reference, against the committed tests/data/golden_normal.txt and golden.jsonl, field by field."""
from __future__ import annotations

import json
import os
import re

import jsonschema
import pytest

from lbd._format import Formatter
from lbd.output import load_schema, reference
from tests.data import golden

# The seed's line, SPEC.md: one regex group per field.
NORMAL_RE = re.compile(
    r"^\[(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{9})\]: (?P<syscall>\w+), syscall_id=(?P<nr>\d+), "
    r"dir=(?P<dir>[<>]), res=(?P<res>-?\d+), user=(?P<user>[^,]*), comm=\((?P<comm>.*?)\), "
    r"cmdline=\((?P<cmdline>.*)\), pid=(?P<pid>\d+), tid=(?P<tid>\d+), ppid=(?P<ppid>\d+)\((?P<pcomm>[^)]*)\), "
    r"args=\((?P<args>.*)\), fds=\[(?P<fds>.*)\]$"
)

SEED_EXAMPLE = ("[2025-06-12 13:18:10.347508525]: unlinkat, syscall_id=263, dir=<, res=0, user=root, comm=(sd-rmrf), "
                "cmdline=(sd-rmrf), pid=6295, tid=6295, ppid=1(systemd), args=(dfd=-100, "
                "pathname=/var/tmp/systemd-private-x, flag=512), fds=[0(/dev/null), 1(/dev/null), 2(/dev/null)]")


@pytest.fixture
def batch(tmp_path, seed_tz):
    return golden.enriched_batch(tmp_path)


def outputs(batch):
    out = {}
    for fmt in ("normal", "json"):
        f = Formatter(fmt, golden.STR_MAX)
        f.format(batch)
        out[fmt] = f.getvalue()
        assert out[fmt] == reference.format_batch(batch, fmt, golden.STR_MAX), f"{fmt}: bulk != reference"
    return out


def test_golden_files(batch):
    out = outputs(batch)
    if os.environ.get("LBD_REGEN_GOLDEN") == "1":
        golden.NORMAL.write_bytes(out["normal"])
        golden.JSONL.write_bytes(out["json"])
    assert out["normal"].decode().splitlines() == golden.NORMAL.read_text().splitlines()
    assert out["json"].decode().splitlines() == golden.JSONL.read_text().splitlines()


def test_seed_example_field_by_field(batch):
    lines = outputs(batch)["normal"].decode().splitlines()
    assert lines[1] == SEED_EXAMPLE
    got, want = NORMAL_RE.match(lines[1]).groupdict(), NORMAL_RE.match(SEED_EXAMPLE).groupdict()
    for k in want:
        assert got[k] == want[k], k
    assert want["ppid"] == "1" and want["pcomm"] == "systemd"
    assert want["fds"] == "0(/dev/null), 1(/dev/null), 2(/dev/null)"


def test_every_line_has_the_seed_fields(batch):
    lines = outputs(batch)["normal"].decode().splitlines()
    assert len(lines) == len(batch)
    fields = [NORMAL_RE.match(line) for line in lines]
    assert all(fields), [line for line, m in zip(lines, fields) if not m]
    f = [m.groupdict() for m in fields]
    path = f[0]["args"].split("pathname=", 1)[1].rsplit(", flag=", 1)[0]         # cut at str_max_size
    assert path.endswith("...") and len(path) == golden.STR_MAX + 3 and golden.LONG.startswith(path[:-3])
    assert f[3]["args"] == "fd=3, uservaddr=127.0.0.1:80, addrlen=16"
    assert f[3]["fds"].endswith("3(tcp 127.0.0.1:52414->127.0.0.1:80)")
    assert f[5]["args"] == "fd=4, uservaddr=[::1]:443, addrlen=28" and f[5]["res"] == "-111"
    assert f[7]["args"] == "fd=5, uservaddr=/run/x.sock, addrlen=14" and "5(unix /run/x.sock)" in f[7]["fds"]
    assert f[8]["args"].startswith("fd=3, buff=GET / HTTP/1.1\\x0d\\x0aHost") and "flags=16384" in f[8]["args"]
    assert f[9]["args"] == "dfd=-100, filename=/etc/nonexistent, flags=524288, mode=0"
    assert "4(" not in f[10]["fds"]                                              # closed
    assert (f[13]["syscall"], f[13]["cmdline"], f[13]["ppid"], f[13]["pcomm"], f[13]["user"]) == \
        ("execve", "grep -r needle .", "3999", "bash", "alice")
    assert f[13]["fds"] == "0(/dev/pts/1), 1(/dev/pts/1), 2(/dev/pts/1)"           # 255 was close-on-exec
    assert "\n" not in lines[14] and "a\\x0ab.txt" in lines[14]                    # one event, one line
    assert f[14]["fds"].endswith("3(/home/alice/src/a\\x0ab.txt)")


def test_json_lines_validate_and_agree(batch):
    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    jsonschema.Draft202012Validator.check_schema(schema)
    out = outputs(batch)
    objs = [json.loads(line) for line in out["json"].decode().splitlines()]
    for o in objs:
        validator.validate(o)
    normal = [NORMAL_RE.match(line).groupdict() for line in out["normal"].decode().splitlines()]
    for o, n in zip(objs, normal):
        assert (o["syscall"], str(o["nr"]), o["dir"], str(o["res"]), o["user"], o["comm"], str(o["pid"]),
                str(o["tid"]), str(o["ppid"]), o["pcomm"]) == \
            (n["syscall"], n["nr"], n["dir"], n["res"], n["user"], n["comm"], n["pid"], n["tid"], n["ppid"], n["pcomm"])
    assert objs[1]["time"] == "2025-06-12T05:18:10.347508525Z" and objs[1]["ts"] == golden.T0 + 1000
    assert objs[1]["flag_names"] == {"arg": ["flag"], "names": ["AT_REMOVEDIR"]}
    assert objs[2]["flag_names"] == {"arg": ["family", "type", "protocol"],
                                     "names": ["AF_INET", "SOCK_STREAM|SOCK_CLOEXEC", "IPPROTO_TCP"]}
    assert objs[3]["args"]["uservaddr"] == {"family": "AF_INET", "addr": "127.0.0.1", "port": 80, "path": None,
                                            "raw": None}
    assert objs[3]["latency"] == 41000 and objs[3]["flag_names"] == {"arg": [], "names": []}
    assert objs[5]["args"]["uservaddr"] == {"family": "AF_INET6", "addr": "::1", "port": 443, "path": None,
                                            "raw": None}
    assert objs[7]["args"]["uservaddr"] == {"family": "AF_UNIX", "addr": None, "port": None,
                                            "path": "/run/x.sock", "raw": None}
    # sendto's addr is dest_addr in JSON (addr is a number in mmap); a NULL one is left out
    assert objs[8]["args"]["buff"] == "GET / HTTP/1.1\r\nHost: x\r\n" and "dest_addr" not in objs[8]["args"]
    assert objs[8]["args"]["addr_len"] == 0
    assert objs[13]["args"]["argv"] == ["grep", "-r", "needle", "."]
    assert objs[13]["fullpath"] == "/usr/bin/grep" and objs[13]["group"] == "alice"
    assert objs[14]["args"]["filename"] == "src/a\nb.txt"
    assert (objs[14]["fds"]["fd"][-1], objs[14]["fds"]["path"][-1]) == (3, "/home/alice/src/a\nb.txt")
    assert objs[0]["fds"] == {"fd": [0, 1, 2], "path": ["/dev/null"] * 3}
    assert objs[0]["truncated"] == [] and objs[1]["truncated"] == []
    assert objs[11]["syscall"] == "sched_process_fork" and objs[11]["args"]["child_pid"] == 4001
