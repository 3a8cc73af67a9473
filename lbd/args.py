"""Decode one argument from its raw register value and payload bytes, by kind.

This is the reference for what each argument kind means in user space (bpf/lbd_record.h says what
the kernel captures).  The per-event accessor `Batch.args(i)`, the reference decoder and the output
formatters use it; bulk paths may do the same work vectorised, and tests hold them to this.
"""
from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass

from lbd import record

K = record.KINDS

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


def decode_sockaddr(b: bytes) -> SockAddr | None:
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
            return SockAddr(name, path="@" + p[1:].decode("utf-8", "backslashreplace"))
        return SockAddr(name, path=p.split(b"\0", 1)[0].decode("utf-8", "backslashreplace"))
    return SockAddr(name, raw=bytes(b[2:]))


def text(b: bytes) -> str:
    """User bytes as text: UTF-8, undecodable bytes as \\xNN escapes."""
    return bytes(b).decode("utf-8", "backslashreplace")


def signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def decode(kind: int, bits: int, raw: int, payload: bytes | None):
    """The value of one argument: int, str, bytes, list or SockAddr (None: pointer with no data)."""
    if kind in (K["int"], K["fd"], K["dirfd"], K["pid"]):
        return signed(raw, bits if kind == K["int"] else 32)
    if kind in (K["uint"], K["hex"], K["mode"], K["flags"], K["ptr"]):
        return raw & ((1 << bits) - 1) if kind != K["ptr"] else raw
    if kind in (K["uid"], K["gid"]):
        return raw & 0xFFFFFFFF
    if kind in (K["str"], K["path"]):
        return None if payload is None else text(payload)
    if kind in (K["sockaddr"], K["out_sockaddr"]):
        return None if not payload else decode_sockaddr(payload)
    if kind in (K["buf"], K["out_buf"]):
        return None if payload is None else bytes(payload)
    if kind == K["strarr"]:
        if payload is None:
            return None
        parts = bytes(payload).split(b"\0")
        if parts and parts[-1] == b"":
            parts.pop()
        return [text(p) for p in parts]
    if kind == K["out_fd2"]:
        return list(struct.unpack("<ii", payload)) if payload is not None and len(payload) == 8 else None
    if kind == K["out_int"]:
        return struct.unpack("<i", payload)[0] if payload is not None and len(payload) == 4 else None
    return raw
