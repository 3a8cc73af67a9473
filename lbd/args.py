"""Decode one argument from its raw register value and payload bytes, by kind.

This is the reference for what each argument kind means in user space (bpf/lbd_record.h says what
the kernel captures).  The per-event accessor `Batch.args(i)`, the reference decoder and the output
formatters use it; bulk paths (`Batch.column`) do the same work vectorised, and tests hold them to
this.

An argument's payload is "absent" (`None` below) when its slot has length 0.  For the input kinds
str, path, buf and strarr a zero length is still a value (``""``, ``b""``, ``[]``) when the pointer
was not NULL and reading it did not fault (`payload_or_empty`): `open("")` has an empty pathname,
not a NULL one.
"""
from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass

from lbd import record
from lbd.syscalls import BY_NR, Arg

K = record.KINDS

#: kinds whose value is the register itself, sign-extended from the argument's bits
SIGNED_KINDS = frozenset(K[k] for k in ("int", "fd", "dirfd", "pid"))
#: kinds whose value is the register itself, unsigned (masked to the argument's bits; uid/gid: 32)
UNSIGNED_KINDS = frozenset(K[k] for k in ("uint", "hex", "mode", "flags", "ptr", "uid", "gid"))
#: input kinds for which an empty payload behind a non-NULL pointer is an empty value
EMPTY_OK_KINDS = frozenset(K[k] for k in ("str", "path", "buf", "strarr"))


def _sched_arg(name: str, kind: str) -> Arg:
    return Arg(name, "char *" if kind == "path" else "u64", kind, K[kind], 64, None, None)


#: argument names and kinds of the process-tree pseudo syscalls (bpf/lbd_record.h LBD_NR_SCHED_*)
SCHED_ARGS: dict[int, tuple[Arg, ...]] = {
    record.NR_SCHED_FORK: tuple(_sched_arg(n, "uint") for n in ("parent_pid", "child_pid", "parent_tid")),
    record.NR_SCHED_EXEC: (_sched_arg("pid", "uint"), _sched_arg("old_pid", "uint"), _sched_arg("filename", "path")),
    record.NR_SCHED_EXIT: (_sched_arg("pid", "uint"), _sched_arg("group_dead", "uint")),
}
SCHED_NAMES: dict[int, str] = {
    record.NR_SCHED_FORK: "sched_process_fork",
    record.NR_SCHED_EXEC: "sched_process_exec",
    record.NR_SCHED_EXIT: "sched_process_exit",
}

AF_UNIX, AF_INET, AF_INET6 = socket.AF_UNIX, socket.AF_INET, socket.AF_INET6
_FAMILY_NAMES = {AF_UNIX: "AF_UNIX", AF_INET: "AF_INET", AF_INET6: "AF_INET6", socket.AF_NETLINK: "AF_NETLINK",
                 socket.AF_PACKET: "AF_PACKET", 0: "AF_UNSPEC"}


@dataclass(frozen=True, slots=True)
class SockAddr:
    """A decoded struct sockaddr: family name, and address/port (inet) or path (unix)."""

    family: str
    addr: str | None = None       # "10.0.0.1", "::1"
    port: int | None = None
    path: str | None = None       # AF_UNIX path; abstract names start with "@"
    raw: bytes = b""              # other families: the bytes after the family field

    def __str__(self) -> str:
        if self.path is not None:
            return self.path
        if self.addr is not None:
            return f"[{self.addr}]:{self.port}" if ":" in self.addr else f"{self.addr}:{self.port}"
        return f"{self.family}:{self.raw.hex()}" if self.raw else self.family

    def as_json(self) -> dict:
        d: dict = {"family": self.family}
        if self.addr is not None:
            d["addr"], d["port"] = self.addr, self.port
        if self.path is not None:
            d["path"] = self.path
        if self.raw:
            d["raw"] = self.raw.hex()
        return d


def decode_sockaddr(b: bytes, errors: str = "backslashreplace") -> SockAddr | None:
    if len(b) < 2:
        return None
    fam = struct.unpack_from("<H", b)[0]
    name = _FAMILY_NAMES.get(fam, str(fam))
    if fam == AF_INET and len(b) >= 8:
        port = struct.unpack_from(">H", b, 2)[0]
        return SockAddr(name, str(ipaddress.IPv4Address(b[4:8])), port)
    if fam == AF_INET6 and len(b) >= 24:
        port = struct.unpack_from(">H", b, 2)[0]
        return SockAddr(name, str(ipaddress.IPv6Address(b[8:24])), port)
    if fam == AF_UNIX:
        p = b[2:]
        if p[:1] == b"\0":  # abstract socket: no terminator, shown with a leading "@"
            return SockAddr(name, path="@" + p[1:].decode("utf-8", errors))
        return SockAddr(name, path=p.split(b"\0", 1)[0].decode("utf-8", errors))
    return SockAddr(name, raw=bytes(b[2:]))


def text(b: bytes, errors: str = "backslashreplace") -> str:
    """User bytes as text: UTF-8, undecodable bytes as \\xNN escapes (errors="surrogateescape":
    as U+DC80..U+DCFF, which the output formats need to tell them from a backslash)."""
    return bytes(b).decode("utf-8", errors)


def signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def decode(kind: int, bits: int, raw: int, payload: bytes | None, errors: str = "backslashreplace"):
    """The value of one argument: int, str, bytes, list or SockAddr (None: pointer with no data).
    ``errors``: how text decodes undecodable bytes (``text``)."""
    if kind in (K["int"], K["fd"], K["dirfd"], K["pid"]):
        return signed(raw, bits if kind == K["int"] else 32)
    if kind in (K["uint"], K["hex"], K["mode"], K["flags"], K["ptr"]):
        return raw & ((1 << bits) - 1) if kind != K["ptr"] else raw
    if kind in (K["uid"], K["gid"]):
        return raw & 0xFFFFFFFF
    if kind in (K["str"], K["path"]):
        return None if payload is None else text(payload, errors)
    if kind in (K["sockaddr"], K["out_sockaddr"]):
        return None if not payload else decode_sockaddr(payload, errors)
    if kind in (K["buf"], K["out_buf"]):
        return None if payload is None else bytes(payload)
    if kind == K["strarr"]:
        if payload is None:
            return None
        parts = bytes(payload).split(b"\0")
        if parts and parts[-1] == b"":
            parts.pop()
        return [text(p, errors) for p in parts]
    if kind == K["out_fd2"]:
        return list(struct.unpack("<ii", payload)) if payload is not None and len(payload) == 8 else None
    if kind == K["out_int"]:
        return struct.unpack("<i", payload)[0] if payload is not None and len(payload) == 4 else None
    return raw


def syscall_name(nr: int) -> str:
    """The name of syscall (or sched pseudo syscall) number nr; ``syscall_<nr>`` if unknown."""
    sc = BY_NR.get(nr)
    if sc is not None:
        return sc.name
    return SCHED_NAMES.get(nr, f"syscall_{nr}")


def arg_specs(nr: int) -> tuple[Arg, ...] | None:
    """The arguments (name, kind, bits) events of number nr carry; None for an unknown number."""
    sc = BY_NR.get(nr)
    if sc is not None:
        return sc.args[: record.MAX_ARGS]
    return SCHED_ARGS.get(nr)


def payload_or_empty(kind: int, raw: int, payload: bytes | None, faulted: bool) -> bytes | None:
    """The payload, or b"" for an empty value of an input kind (see the module docstring)."""
    if payload is None and kind in EMPTY_OK_KINDS and raw and not faulted:
        return b""
    return payload


def decode_args(nr: int, flags: int, raw, payloads, errors: str = "backslashreplace") -> dict:
    """One event's arguments as {name: value}: raw is its six register values, payloads its six
    payloads (bytes, or None for a zero-length slot).  Empty for an event without its enter
    (LBD_F_NOENTER: the arguments are unknown) or of an unknown number."""
    specs = arg_specs(nr)
    if specs is None or flags & record.F_NOENTER:
        return {}
    out = {}
    for k, a in enumerate(specs):
        r = int(raw[k])
        p = payload_or_empty(a.kind_id, r, payloads[k], bool(flags >> (record.F_FAULT_SHIFT + k) & 1))
        out[a.name] = decode(a.kind_id, a.bits, r, p, errors)
    return out
