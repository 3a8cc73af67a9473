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
    ctype = {"path": "char *", "strarr": "char **"}.get(kind, "u64")
    return Arg(name, ctype, kind, K[kind], 64, None, None)


#: argument names and kinds of the process-tree pseudo syscalls (bpf/lbd_record.h LBD_NR_SCHED_*)
SCHED_ARGS: dict[int, tuple[Arg, ...]] = {
    record.NR_SCHED_FORK: tuple(_sched_arg(n, "uint") for n in ("parent_pid", "child_pid", "parent_tid",
                                                                "child_tgid", "child_start")),
    record.NR_SCHED_EXEC: (_sched_arg("pid", "uint"), _sched_arg("old_pid", "uint"), _sched_arg("filename", "path"),
                           _sched_arg("argv", "strarr"), _sched_arg("exe", "path")),
    record.NR_SCHED_EXIT: (_sched_arg("pid", "uint"), _sched_arg("group_dead", "uint"), _sched_arg("exit_code", "uint")),
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
        """The JSON object of the data outputs: always the same five keys (null where the
        family has no such part), so that readers inferring types never meet a new key."""
        return {"family": self.family, "addr": self.addr, "port": self.port, "path": self.path,
                "raw": self.raw.hex() if self.raw else None}


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


_SOCK = struct.Struct("<HHHH16s16s")


def decode_sock(payload: bytes | None) -> dict | None:
    """The socket of a record's extra slot (struct lbd_sock, bpf/lbd_record.h): for inet families
    {family, type, laddr, lport, raddr, rport} (addresses as text), for AF_UNIX {family, type,
    path} (the socket's own address, else its peer's; abstract names start with "@"; "" when
    neither has one).  None without a payload."""
    if payload is None or len(payload) < _SOCK.size:
        return None
    fam, typ, lport, rport, la, ra = _SOCK.unpack_from(payload)
    if fam == AF_UNIX:
        raw = bytes(payload[_SOCK.size:])
        if raw[:1] == b"\0":
            path = "@" + text(raw[1:].rstrip(b"\0"))
        else:
            path = text(raw.split(b"\0", 1)[0])
        return {"family": fam, "type": typ, "path": path}
    if fam == AF_INET6:
        laddr, raddr = str(ipaddress.IPv6Address(la)), str(ipaddress.IPv6Address(ra))
    else:
        laddr, raddr = str(ipaddress.IPv4Address(la[:4])), str(ipaddress.IPv4Address(ra[:4]))
    return {"family": fam, "type": typ, "laddr": laddr, "lport": lport, "raddr": raddr, "rport": rport}


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


# ---- names and types in the data outputs (JSON Lines, Parquet) ----------------------------------

#: The JSON type of each kind's value: "integer", "string", "strings" (array of strings),
#: "fdpair" (array of two integers), "sockaddr" (object).
JSON_TYPES: dict[int, str] = {
    **{K[k]: "integer" for k in ("int", "uint", "hex", "fd", "dirfd", "pid", "uid", "gid", "mode", "flags",
                                 "ptr", "out_int")},
    **{K[k]: "string" for k in ("str", "path", "buf", "out_buf")},
    K["strarr"]: "strings",
    K["out_fd2"]: "fdpair",
    K["sockaddr"]: "sockaddr",
    K["out_sockaddr"]: "sockaddr",
}

#: Arguments whose table name another syscall uses for a value of another JSON type get another
#: name in the data outputs, so that every name has one type: the man page's name where it has
#: its own, else the name with ``_ptr`` for a pointer (its value is the address) or ``_str``.
#: Fixed: an entry is never removed or renamed (tests/unit/test_json_types.py checks that
#: every name has one type and that each entry resolves a clash).
JSON_RENAMES: dict[tuple[str, str], str] = {
    ("dup", "fildes"): "oldfd",
    ("sendto", "addr"): "dest_addr",
    ("recvfrom", "addr"): "src_addr",
    ("shmctl", "buf"): "buf_ptr",
    ("msgctl", "buf"): "buf_ptr",
    ("statfs", "buf"): "buf_ptr",
    ("fstatfs", "buf"): "buf_ptr",
    ("query_module", "buf"): "buf_ptr",
    ("statmount", "buf"): "buf_ptr",
    ("statx", "buffer"): "statxbuf",
    ("capset", "data"): "datap",
    ("mount", "data"): "data_str",
    ("mount", "type"): "filesystemtype",
    ("uname", "name"): "name_ptr",
    ("getsockopt", "optval"): "optval_ptr",
    ("ustat", "ubuf"): "ubuf_ptr",
    ("getrandom", "ubuf"): "ubuf_ptr",
    ("getitimer", "value"): "curr_value",
    ("setitimer", "value"): "new_value",
}


def json_arg_names(nr: int) -> tuple[str, ...] | None:
    """The names of the arguments of events of number nr in JSON and Parquet (the table's names
    but for JSON_RENAMES); None for an unknown number."""
    specs = arg_specs(nr)
    if specs is None:
        return None
    sc = syscall_name(nr)
    return tuple(JSON_RENAMES.get((sc, a.name), a.name) for a in specs)


def json_arg_types() -> dict[str, str]:
    """Every argument name of the data outputs and its JSON type (see JSON_TYPES).  Raises
    ValueError when a name would have two types (a clash JSON_RENAMES lacks)."""
    out: dict[str, str] = {}
    where: dict[str, str] = {}
    nrs = sorted(BY_NR) + sorted(SCHED_ARGS)
    for nr in nrs:
        for name, a in zip(json_arg_names(nr), arg_specs(nr)):
            t = JSON_TYPES[a.kind_id]
            if out.setdefault(name, t) != t:
                raise ValueError(f"argument name {name!r}: {t} in {syscall_name(nr)}, "
                                 f"{out[name]} in {where[name]}; add it to lbd.args.JSON_RENAMES")
            where.setdefault(name, syscall_name(nr))
    return out


def json_int(v: int) -> int:
    """An integer argument as the data outputs write it: unsigned 64-bit values at or above 2**63
    as their two's-complement signed value (so that every number fits the signed 64-bit integers
    JSON readers infer; ``(size_t)-1`` reads -1)."""
    return v - (1 << 64) if v >= 1 << 63 else v
