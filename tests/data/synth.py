"""A whole-system-like synthetic capture: random records of every syscall in the table (and the
process-tree records), decoded from ring images into batches and enriched against a fake host,
for the data-output tests (JSON readers, Parquet, NATS) and benchmarks.

Every 7th event belongs to a process the fake host knows (so it has a cmdline, a parent and
open files); the others are unknown processes (kernel view).  `prefix` events of one syscall
(`prefix_name`) come first: readers that infer types from the first lines meet everything else
late.
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

from lbd import syscalls
from lbd.ringimage import make_record, patch, random_records
from tests.data.fakeproc import FakeHost, batch_of

KNOWN_PID = 4242


def fake_host(root: Path) -> FakeHost:
    h = FakeHost(root)
    h.add_process(1, "systemd", 0, ["/sbin/init", "splash"], exe="/usr/lib/systemd/systemd", fds={0: "/dev/null"})
    h.add_process(KNOWN_PID, "sshd", 1, ["sshd:", "alice", "[priv]"], exe="/usr/sbin/sshd",
                  fds={0: "/dev/null", 1: "/dev/null", 2: "/dev/null", 3: "socket:[inet 10.0.0.1:22]"})
    return h


def records(n: int, seed: int = 0, *, prefix: int = 0, prefix_name: str = "getpid") -> list[bytes]:
    sc = syscalls.lookup(prefix_name)
    first = make_record(sc.nr, [3, b"x" * 8, 8][: len(sc.args)], pid=KNOWN_PID, comm="sshd")
    out = [first] * prefix
    for k, r in enumerate(random_records(n, seed=seed)):
        out.append(patch(r, pid=KNOWN_PID) if k % 7 == 0 else r)
    return out


def batches(n: int, seed: int = 0, *, batch_size: int = 4096, enrich: bool = True, root: Path | None = None,
            **kw) -> Iterator:
    """The capture as enriched Batches of batch_size events (each a new Batch)."""
    recs = records(n, seed, **kw)
    tmp = None
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="lbd-synth-")
        root = Path(tmp.name)
    try:
        en = fake_host(root).enricher() if enrich else None
        for i in range(0, len(recs), batch_size):
            b = batch_of(*recs[i: i + batch_size])
            if en is not None:
                en.enrich(b)
            yield b
    finally:
        if tmp is not None:
            tmp.cleanup()


# ---- a host-like capture: few processes, the common syscalls, realistic values ------------------

def host_like_records(n: int, seed: int = 0) -> list[bytes]:
    """n records as a busy host makes them: a dozen processes (most unknown to the fake host, one
    known), file opens/stats/reads/closes over a few hundred paths, sockets and connects to a few
    peers, execs and process-tree records now and then.  For benchmarks and the NATS tests."""
    import random

    from lbd.ringimage import sockaddr_in, sockaddr_in6, sockaddr_un
    from tests.data.fakeproc import rec

    rng = random.Random(seed)
    procs = [(KNOWN_PID, "sshd")] + [(1000 + k, c) for k, c in enumerate(
        ["systemd-journal", "nginx", "postgres", "python3", "bash", "cron", "containerd", "node", "java", "sh"])]
    paths = [f"/usr/lib/x86_64-linux-gnu/lib{k}.so.{k % 7}" for k in range(120)] + \
            [f"/var/log/app/{k}.log" for k in range(60)] + [f"/proc/{k}/stat" for k in range(100, 180)] + \
            ["/etc/passwd", "/etc/hosts", "/etc/ld.so.cache", "/dev/null", "/tmp/x"]
    peers = [sockaddr_in(f"10.0.{k}.{k * 7 % 250}", 443 if k % 3 else 5432) for k in range(12)] + \
            [sockaddr_in6("2001:db8::1", 443), sockaddr_un("/run/systemd/journal/socket")]
    kinds = (["openat"] * 30 + ["close"] * 25 + ["read"] * 20 + ["newfstatat"] * 10 + ["connect"] * 4 +
             ["socket"] * 3 + ["sendto"] * 3 + ["execve"] + ["unlinkat"] * 2 + ["renameat2"] + ["mmap"] * 5 +
             ["sched_process_fork", "sched_process_exit"])
    ts = 1_750_000_000_000_000_000
    out = []
    for _ in range(n):
        pid, comm = rng.choice(procs)
        name = rng.choice(kinds)
        ts += rng.randrange(200, 20_000)
        kw = dict(pid=pid, tid=pid, comm=comm, ts=ts, latency=rng.randrange(300, 30_000))
        p = rng.choice(paths)
        if name == "openat":
            fl = rng.choice([0o2000000, 0o2000000 | 0o100 | 0o1, 0, 0o200000 | 0o4000])
            out.append(rec(name, {"dfd": -100, "filename": p, "flags": fl, "mode": 0o644},
                           res=rng.choice([3, 4, 5, 7, -2]), **kw))
        elif name == "close":
            out.append(rec(name, {"fd": rng.randrange(3, 40)}, **kw))
        elif name == "read":
            out.append(rec(name, {"fd": rng.randrange(3, 40), "buf": b"x" * rng.choice([0, 16, 64]), "count": 4096},
                           res=64, buf_max=64, **kw))
        elif name == "newfstatat":
            out.append(rec(name, {"dfd": -100, "filename": p, "statbuf": 0x7FFD0000, "flag": 0x100}, **kw))
        elif name == "connect":
            sa = rng.choice(peers)
            out.append(rec(name, {"fd": 5, "uservaddr": sa, "addrlen": len(sa)}, res=rng.choice([0, -115]), **kw))
        elif name == "socket":
            out.append(rec(name, {"family": 2, "type": 1 | 0o2000000, "protocol": 6}, res=5, **kw))
        elif name == "sendto":
            out.append(rec(name, {"fd": 5, "buff": b"GET / HTTP/1.1\r\n", "len": 16, "flags": 0x4000,
                                  "addr": None, "addr_len": 0}, res=16, buf_max=64, **kw))
        elif name == "execve":
            out.append(rec(name, {"filename": "/usr/bin/ls", "argv": ["ls", "-la", "/tmp"],
                                  "envp": ["PATH=/usr/bin", "LANG=C.UTF-8"]}, **kw))
        elif name == "unlinkat":
            out.append(rec(name, {"dfd": -100, "pathname": "/tmp/x", "flag": 0}, **kw))
        elif name == "renameat2":
            out.append(rec(name, {"olddfd": -100, "oldname": p, "newdfd": -100, "newname": p + ".1", "flags": 0},
                           **kw))
        elif name == "mmap":
            out.append(rec(name, {"addr": 0, "len": 8192, "prot": 3, "flags": 0x22, "fd": -1, "off": 0},
                           res=0x7F0000000000, **kw))
        elif name == "sched_process_fork":
            out.append(rec(name, {"parent_pid": pid, "child_pid": pid + 1, "parent_tid": pid}, **kw))
        else:
            out.append(rec(name, {"pid": pid, "group_dead": 1}, **kw))
    return out


def host_like_batches(n: int, seed: int = 0, *, batch_size: int = 8192, root: Path | None = None) -> list:
    """host_like_records as enriched Batches (a list: each Batch is its own)."""
    recs = host_like_records(n, seed)
    tmp = tempfile.TemporaryDirectory(prefix="lbd-synth-") if root is None else None
    try:
        en = fake_host(Path(tmp.name) if tmp else root).enricher()
        out = []
        for i in range(0, len(recs), batch_size):
            b = batch_of(*recs[i: i + batch_size])
            en.enrich(b)
            out.append(b)
        return out
    finally:
        if tmp is not None:
            tmp.cleanup()
