"""The golden capture: a small set of events (the seed's example among them) on a fake host, whose
`normal` and `json` output is committed in tests/data/golden_normal.txt and golden.jsonl.

Times print in the seed's time zone (UTC+8: TZ=CST-8), so the seed's example line comes out
exactly as SPEC.md shows it.  Regenerate the files after an intended format change with
    LBD_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_output_golden.py
and review the diff line by line.
"""
from __future__ import annotations

import calendar
from pathlib import Path

from lbd.ringimage import sockaddr_in, sockaddr_in6, sockaddr_un
from tests.data.fakeproc import O_CLOEXEC, FakeHost, batch_of, rec, sock_bytes

DATA = Path(__file__).resolve().parent
NORMAL = DATA / "golden_normal.txt"
JSONL = DATA / "golden.jsonl"
TZ = "CST-8"
STR_MAX = 1024

# 2025-06-12 13:18:10.347507525 in UTC+8
T0 = (calendar.timegm((2025, 6, 12, 13 - 8, 18, 10, 0, 0, 0)) * 1_000_000_000) + 347_507_525
LONG = "/var/tmp/systemd-private-4f3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d-" + "x" * 1100


def host(root: Path) -> FakeHost:
    h = FakeHost(root)
    h.add_process(1, "systemd", 0, ["/sbin/init", "splash"], exe="/usr/lib/systemd/systemd")
    h.add_process(6295, "sd-rmrf", 1, ["sd-rmrf"], exe="/usr/lib/systemd/systemd",
                  fds={0: "/dev/null", 1: "/dev/null", 2: "/dev/null"})
    h.add_process(3999, "bash", 1, ["-bash"], exe="/usr/bin/bash", cwd="/home/alice",
                  fds={0: "/dev/pts/1", 1: "/dev/pts/1", 2: "/dev/pts/1", 255: "/dev/pts/1"}, cloexec={255})
    h.add_process(4000, "curl", 3999, ["curl", "-s", "http://127.0.0.1/"], exe="/usr/bin/curl", cwd="/home/alice",
                  fds={0: "/dev/pts/1", 1: "pipe:[4711]", 2: "/dev/pts/1"})
    return h


def records() -> list[bytes]:
    us = 1000
    rm = dict(pid=6295, tid=6295, ppid=0, comm="sd-rmrf")
    curl = dict(pid=4000, tid=4000, ppid=0, uid=1000, gid=1000, comm="curl")
    sh = dict(pid=3999, tid=3999, ppid=0, uid=1000, gid=1000, comm="bash")
    return [
        # the seed's example (SPEC.md), with a path over str_max_size
        rec("unlinkat", {"dfd": -100, "pathname": LONG, "flag": 512}, res=0, ts=T0, **rm),
        rec("unlinkat", {"dfd": -100, "pathname": "/var/tmp/systemd-private-x", "flag": 512}, res=0,
            ts=T0 + us, **rm),
        rec("socket", {"family": 2, "type": 1 | 0o2000000, "protocol": 6}, res=3, ts=T0 + 2 * us, **curl),
        rec("connect", {"fd": 3, "uservaddr": sockaddr_in("127.0.0.1", 80), "addrlen": 16}, res=0,
            ts=T0 + 3 * us, latency=41_000, **curl,
            sock=sock_bytes(2, 1, laddr="127.0.0.1", lport=52414, raddr="127.0.0.1", rport=80)),
        rec("socket", {"family": 10, "type": 1, "protocol": 0}, res=4, ts=T0 + 4 * us, **curl),
        rec("connect", {"fd": 4, "uservaddr": sockaddr_in6("::1", 443), "addrlen": 28}, res=-111,
            ts=T0 + 5 * us, **curl),
        rec("socket", {"family": 1, "type": 1, "protocol": 0}, res=5, ts=T0 + 6 * us, **curl),
        rec("connect", {"fd": 5, "uservaddr": sockaddr_un("/run/x.sock"), "addrlen": 14}, res=0,
            ts=T0 + 7 * us, **curl, sock=sock_bytes(1, 1, path=b"/run/x.sock\0")),
        rec("sendto", {"fd": 3, "buff": b"GET / HTTP/1.1\r\nHost: x\r\n", "len": 25, "flags": 0x4000,
                       "addr": None, "addr_len": 0}, res=25, ts=T0 + 8 * us, **curl),
        rec("openat", {"dfd": -100, "filename": "/etc/nonexistent", "flags": O_CLOEXEC}, res=-2,
            ts=T0 + 9 * us, **curl),
        rec("close", {"fd": 4}, res=0, ts=T0 + 10 * us, **curl),
        rec("sched_process_fork", {"parent_pid": 3999, "child_pid": 4001, "parent_tid": 3999, "child_tgid": 4001, "child_start": 91000000},
            ts=T0 + 11 * us, **sh),
        rec("sched_process_exec", {"pid": 4001, "old_pid": 4001, "filename": "/usr/bin/grep", "argv": ["grep", "-r", "needle", "."], "exe": "/usr/bin/grep"},
            ts=T0 + 12 * us, pid=4001, tid=4001, ppid=3999, uid=1000, gid=1000, comm="grep"),
        rec("execve", {"filename": "/usr/bin/grep", "argv": ["grep", "-r", "needle", "."],
                       "envp": ["HOME=/home/alice", "LANG=C.UTF-8"]}, res=0, ts=T0 + 13 * us,
            latency=250_000, pid=4001, tid=4001, ppid=3999, uid=1000, gid=1000, comm="grep"),
        rec("openat", {"dfd": -100, "filename": "src/a\nb.txt", "flags": 0}, res=3, ts=T0 + 14 * us,
            pid=4001, tid=4001, ppid=3999, uid=1000, gid=1000, comm="grep"),
        rec("sched_process_exit", {"pid": 4001, "group_dead": 1, "exit_code": 256}, ts=T0 + 15 * us, pid=4001, tid=4001,
            ppid=3999, uid=1000, gid=1000, comm="grep"),
    ]


def enriched_batch(root: Path):
    """The golden batch, enriched from the fake host under root."""
    b = batch_of(*records())
    host(root).enricher().enrich(b)
    return b
