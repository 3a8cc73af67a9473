"""Write batches of events to stdout or a file in the configured format.

Interim, per-event implementation over lbd.output.reference; procfs look-ups are cached per pid.
"""
from __future__ import annotations

import json
import os
import pwd
import sys
from collections import Counter

from lbd.batch import syscall_name
from lbd.output import reference


def _proc(pid: int, name: str) -> str | None:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read().decode("utf-8", "backslashreplace")
    except OSError:
        return None


class _ProcCache:
    def __init__(self, limit: int = 4096):
        self.limit = limit
        self.info: dict[int, tuple[str, str]] = {}
        self.users: dict[int, str] = {}

    def cmdline(self, pid: int, comm: str) -> str:
        hit = self.info.get(pid)
        if hit is None:
            raw = _proc(pid, "cmdline")
            cmd = raw.rstrip("\0").replace("\0", " ") if raw else comm
            if len(self.info) >= self.limit:
                self.info.clear()
            hit = self.info[pid] = (cmd, (_proc(pid, "comm") or "").strip())
        return hit[0]

    def comm(self, pid: int) -> str:
        if pid == 0:
            return ""
        hit = self.info.get(pid)
        if hit is None:
            self.cmdline(pid, "")
            hit = self.info[pid]
        return hit[1]

    def user(self, uid: int) -> str:
        name = self.users.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = str(uid)
            self.users[uid] = name
        return name


def _fds(pid: int) -> list[tuple[int, str]]:
    out = []
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for n in sorted(names, key=int):
        try:
            out.append((int(n), os.readlink(f"/proc/{pid}/fd/{n}")))
        except OSError:
            pass
    return out


def _ppid(pid: int) -> int:
    st = _proc(pid, "stat")
    if not st:
        return 0
    return int(st.rsplit(")", 1)[1].split()[1])


class Writer:
    def __init__(self, cfg, stream, close_stream: bool):
        self.cfg = cfg
        self.stream = stream
        self.close_stream = close_stream
        self.format = cfg.init.format
        self.limit = cfg.init.str_max_size
        self.cache = _ProcCache()
        self.counts: Counter = Counter()

    def write_batch(self, batch) -> None:
        ev = batch.events
        lines = []
        for i in range(len(ev)):
            e = ev[i]
            pid, nr = int(e["pid"]), int(e["nr"])
            comm = e["comm"].decode("utf-8", "backslashreplace")
            ppid = int(e["ppid"]) or _ppid(pid)
            name = syscall_name(nr)
            self.counts[name] += 1
            args = batch.args(i)
            fields = dict(
                ts=int(e["ts"]), name=name, nr=nr, dir=chr(e["dir"]), res=int(e["res"]),
                user=self.cache.user(int(e["uid"])), comm=comm, cmdline=self.cache.cmdline(pid, comm),
                pid=pid, tid=int(e["tid"]), ppid=ppid, pcomm=self.cache.comm(ppid), args=args, fds=_fds(pid),
            )
            if self.format == "json":
                fields["args"] = {k: (v.hex() if isinstance(v, bytes) else v if not hasattr(v, "as_json") else v.as_json())
                                  for k, v in args.items()}
                fields["fds"] = [{"fd": fd, "path": p} for fd, p in fields["fds"]]
                lines.append(json.dumps(fields))
            else:
                lines.append(reference.normal_line(limit=self.limit, **fields))
        self.stream.write("\n".join(lines) + "\n")

    def top_syscalls(self, n: int):
        return self.counts.most_common(n)

    def flush(self) -> None:
        self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.flush()
        if self.close_stream:
            self.stream.close()


def open_writer(cfg, output: str | None) -> Writer:
    if output is None and cfg.init.putfile:
        output = cfg.init.path
    if output is None or output == "-":
        return Writer(cfg, sys.stdout, False)
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    return Writer(cfg, os.fdopen(fd, "w", buffering=1 << 20), True)
