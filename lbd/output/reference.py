"""Straightforward per-event formatter of the seed's `normal` line.

It is the readable definition of the format (and the baseline the bulk formatter is measured and
tested against), not the fast path.

    [<time>]: <syscall>, syscall_id=<n>, dir=<dir>, res=<ret>, user=<name>, comm=(<comm>),
    cmdline=(<cmdline>), pid=<pid>, tid=<tid>, ppid=<ppid>(<parent comm>),
    args=(<name>=<value>, ...), fds=[<fd>(<path>), ...]
"""
from __future__ import annotations

import time

from lbd.args import SockAddr


def format_time(ns: int) -> str:
    """`2025-06-12 13:18:10.347507525` in local time."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(secs)) + f".{frac:09d}"


def truncate(s: str, limit: int) -> str:
    """str_max_size: longer strings end in `...` (0 = no limit)."""
    if limit and len(s) > limit:
        return s[:limit] + "..."
    return s


def format_value(v, limit: int) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bytes):
        return truncate(v.decode("utf-8", "backslashreplace"), limit)
    if isinstance(v, list):
        return truncate(" ".join(str(x) for x in v), limit)
    if isinstance(v, SockAddr):
        return truncate(str(v), limit)
    return truncate(str(v), limit)


def format_args(args: dict, limit: int) -> str:
    return ", ".join(f"{k}={format_value(v, limit)}" for k, v in args.items())


def format_fds(fds) -> str:
    return ", ".join(f"{fd}({path})" for fd, path in fds)


def normal_line(*, ts: int, name: str, nr: int, dir: str, res: int, user: str, comm: str, cmdline: str,
                pid: int, tid: int, ppid: int, pcomm: str, args: dict, fds, limit: int) -> str:
    return (
        f"[{format_time(ts)}]: {name}, syscall_id={nr}, dir={dir}, res={res}, user={user}, "
        f"comm=({comm}), cmdline=({truncate(cmdline, limit)}), pid={pid}, tid={tid}, ppid={ppid}({pcomm}), "
        f"args=({format_args(args, limit)}), fds=[{format_fds(fds)}]"
    )
