"""Synthetic BPF ring-buffer images and lbd records, built from the syscall table.

Used by the decoder tests (tests/unit/test_decode*.py, test_fuzz_decode.py) and by the benchmarks
(bench/).  The API below is stable; extend it, don't change it.

Records (bytes exactly as bpf/lbd.bpf.c writes them: header, then the payloads in slot order)::

    make_record(nr, args, *, pid=..., tid=..., ..., payloads=None, flags=0, ...) -> bytes
    make_case(nr, args, **same) -> Case            # the record and what a decoder must return
    random_records(n, seed, **options) -> list[bytes]
    random_cases(n, seed, **options) -> list[Case] # every argument kind, variable payloads
    patch(record, **fields) -> bytes               # change header fields (malformed records)
    sockaddr_in(addr, port), sockaddr_in6(addr, port), sockaddr_un(path) -> bytes

Ring images (the kernel's layout: consumer position, producer position, data mapped twice, so
the second half of `data` always mirrors the first)::

    img = RingImage(size=1 << 16, start=0, guard=False)
    img.write(record, discard=False) -> int    # commit a record at the producer position
    img.write_busy(record=b"", length=None)    # reserve one without committing (busy bit)
    img.commit(pos, discard=False, rec=None)   # commit a reserved record later
    img.write_raw(word, body=b"", advance=None)# any length word (corrupt ring headers)
    img.extend(records) -> int                 # write until full, return how many fit
    img.cons, img.prod, img.data, img.size     # positions (settable) and the data bytes
    img.free                                   # bytes a new record may take (kernel rule)
    img.poke(pos, b), img.peek(pos, n)         # bytes at a ring position, mirror kept
    img.ring(valid_nrs=None, wall_offset=0, index=0)  # an lbd._decode.Ring over the image
    img.rewind(pos=None)                       # consumer back to `start` (re-drain; benchmarks)
    img.image() -> (cons, prod, data)          # the arguments of lbd.reference.decode_image
    image_of(records, size=None, start=0, guard=False) -> RingImage

Argument values for make_record, by kind (a value given as an int is always the raw register
value, with no payload):

    int, uint, hex, fd, dirfd, pid, uid, gid, mode, flags, ptr : int (negative: two's complement)
    str, path          : str or bytes (None: NULL pointer)
    buf, out_buf       : bytes (None: NULL pointer)
    strarr             : list of str / bytes (None: NULL pointer)
    sockaddr, out_sockaddr : bytes (sockaddr_in() ...) or lbd.args.SockAddr (None: NULL)
    out_fd2            : (int, int)
    out_int            : int inside a tuple: (value,)

Pointer arguments get a made-up user address as their raw value.  `str_max` / `buf_max` cut
strings / buffers and set the truncation flag as the probe does, and a record's payload is capped
at LBD_PAYLOAD_MAX the same way (arg__done in bpf/lbd.bpf.c).  `faults` marks arguments whose
read failed (no payload, fault flag).
"""
from __future__ import annotations

import ctypes
import ipaddress
import mmap
import random
import socket
import struct
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from lbd import record, syscalls
from lbd.args import SockAddr, arg_specs, syscall_name

__all__ = [
    "Case", "RingFull", "RingImage", "image_of", "make_case", "make_record", "patch", "random_cases",
    "random_records", "sockaddr_in", "sockaddr_in6", "sockaddr_un", "BUSY_BIT", "DISCARD_BIT",
    "RB_HDR_SIZE",
]

K = record.KINDS
HDR = record.HDR_DTYPE
HDR_SIZE = record.HDR_SIZE
PAYLOAD_MAX = record.PAYLOAD_MAX

#: ring record header (kernel/bpf/ringbuf.c): u32 length with these two bits, u32 page offset
BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
RB_HDR_SIZE = 8

_USER_PTR = 0x7FFD_1000_0000      # made-up user addresses of pointer arguments
_SIGNED = (K["int"], K["fd"], K["dirfd"], K["pid"])
_INPUT_EMPTY_OK = (K["str"], K["path"], K["buf"], K["strarr"])


def _align8(n: int) -> int:
    return (n + 7) & ~7


def _sext(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


# ---- socket addresses --------------------------------------------------------------------------

def sockaddr_in(addr: str, port: int) -> bytes:
    """struct sockaddr_in (16 bytes)."""
    return struct.pack("<H", socket.AF_INET) + struct.pack(">H", port) + ipaddress.IPv4Address(addr).packed + bytes(8)


def sockaddr_in6(addr: str, port: int, flowinfo: int = 0, scope_id: int = 0) -> bytes:
    """struct sockaddr_in6 (28 bytes)."""
    return (struct.pack("<H", socket.AF_INET6) + struct.pack(">HI", port, flowinfo)
            + ipaddress.IPv6Address(addr).packed + struct.pack("<I", scope_id))


def sockaddr_un(path: str | bytes) -> bytes:
    """struct sockaddr_un as connect() passes it: family, path, NUL (abstract: "@name" -> no NUL)."""
    p = path.encode() if isinstance(path, str) else path
    if p[:1] == b"@":
        return struct.pack("<H", socket.AF_UNIX) + b"\0" + p[1:]
    return struct.pack("<H", socket.AF_UNIX) + p + b"\0"


def _sockaddr_bytes(v: SockAddr) -> bytes:
    if v.path is not None:
        return sockaddr_un(v.path)
    if v.family == "AF_INET":
        return sockaddr_in(v.addr, v.port)
    if v.family == "AF_INET6":
        return sockaddr_in6(v.addr, v.port)
    fam = {"AF_NETLINK": socket.AF_NETLINK, "AF_PACKET": socket.AF_PACKET, "AF_UNSPEC": 0}.get(v.family)
    return struct.pack("<H", int(v.family) if fam is None else fam) + v.raw


def _sockaddr_value(b: bytes) -> SockAddr | None:
    """What a decoder must make of sockaddr bytes (kept independent of lbd.args.decode_sockaddr)."""
    if len(b) < 2:
        return None
    fam = b[0] | b[1] << 8
    names = {socket.AF_UNIX: "AF_UNIX", socket.AF_INET: "AF_INET", socket.AF_INET6: "AF_INET6",
             socket.AF_NETLINK: "AF_NETLINK", socket.AF_PACKET: "AF_PACKET", 0: "AF_UNSPEC"}
    name = names.get(fam, str(fam))
    if fam == socket.AF_INET and len(b) >= 8:
        return SockAddr(name, socket.inet_ntop(socket.AF_INET, b[4:8]), b[2] << 8 | b[3])
    if fam == socket.AF_INET6 and len(b) >= 24:
        return SockAddr(name, str(ipaddress.IPv6Address(b[8:24])), b[2] << 8 | b[3])
    if fam == socket.AF_UNIX:
        p = b[2:]
        if p[:1] == b"\0":
            return SockAddr(name, path="@" + p[1:].decode("utf-8", "backslashreplace"))
        return SockAddr(name, path=p.split(b"\0", 1)[0].decode("utf-8", "backslashreplace"))
    return SockAddr(name, raw=bytes(b[2:]))


# ---- records -----------------------------------------------------------------------------------

@dataclass
class Case:
    """A record and what every decoder must make of it.

    fields: the header fields as `Batch.events` shows them (ts as written, before wall_offset;
    comm without its NUL padding).  args: what `Batch.args(i)` must return.  payloads: the six
    payloads (None for an empty slot).
    """

    record: bytes
    nr: int
    name: str
    fields: dict
    args: dict
    payloads: tuple = ()
    truncated: tuple = ()
    faulted: tuple = ()


def _text(b: bytes) -> str:
    return b.decode("utf-8", "backslashreplace")


def _as_bytes(v) -> bytes:
    return v.encode() if isinstance(v, str) else bytes(v)


def make_case(nr: int, args: dict | Sequence | None = None, *, pid: int = 4242, tid: int | None = None,
              ppid: int = 1, uid: int = 0, gid: int = 0, ts: int = 1_000_000_000, latency: int = 0,
              res: int = 0, comm: str | bytes = "lbd-test", dir: str = "<", flags: int = 0,
              payloads: dict | None = None, faults: Iterable = (), str_max: int | None = None,
              buf_max: int | None = None, nargs: int | None = None, version: int = record.VERSION,
              ets: int | None = None, cgroup_id: int = 0, pidns: int = 0, mntns: int = 0,
              loginuid: int = 0xFFFFFFFF) -> Case:
    """A record of syscall (or sched pseudo syscall) `nr` and its expected decoding.

    args: {name: value} or values in order (see the module docstring for values by kind); missing
    arguments are 0.  payloads: {slot or name: bytes} payloads to store as given (the raw value
    then comes from args, default a made-up pointer).  dir: "<" exit, ">" enter (output kinds get
    no payload).  flags: extra LBD_F_* bits (LBD_F_NOENTER: the arguments are unknown, as the
    probe writes it: no arguments at all).  ets: the emit time (default ts + latency, as the probe
    writes an exit record).  The other keywords are header fields.
    """
    specs = arg_specs(nr)
    noenter = bool(flags & record.F_NOENTER)
    if specs is None:
        specs = ()
    names = [a.name for a in specs]

    def slot_of(key) -> int:
        if isinstance(key, int):
            return key
        try:
            return names.index(key)
        except ValueError:
            raise KeyError(f"{syscall_name(nr)} has no argument {key!r}") from None

    values: dict[int, object] = {}
    if isinstance(args, dict):
        for key, v in args.items():
            values[slot_of(key)] = v
    elif args is not None:
        values = dict(enumerate(args))
    if any(not 0 <= k < record.MAX_ARGS for k in values):
        raise IndexError("argument slot out of range")
    given = {slot_of(k): _as_bytes(v) for k, v in (payloads or {}).items()}
    fault_slots = {slot_of(k) for k in faults}

    raw = [0] * record.MAX_ARGS
    pay: list[bytes | None] = [None] * record.MAX_ARGS
    expect: dict = {}
    hflags = flags
    used = 0
    slots = [(0, 0)] * record.MAX_ARGS
    exit_rec = dir == "<"

    def store(k: int, b: bytes, trunc: bool) -> None:
        nonlocal used, hflags
        if used + len(b) > PAYLOAD_MAX:          # the record is full: keep what fits (arg__done)
            b = b[: max(0, PAYLOAD_MAX - used)]
            trunc = True
        slots[k] = (HDR_SIZE + used, len(b))
        used += len(b)
        pay[k] = b if b else None
        if trunc:
            hflags |= 1 << (record.F_TRUNC_SHIFT + k)

    for k in range(record.MAX_ARGS):
        spec = specs[k] if k < len(specs) else None
        kind = spec.kind_id if spec else K["uint"]
        bits = spec.bits if spec else 64
        v = values.get(k, 0)
        is_ptr_kind = kind >= K["str"]
        payload: bytes | None = None
        trunc = False
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            raw[k] = int(v) & (2**64 - 1)
        elif v is None:
            raw[k] = 0
        else:
            raw[k] = _USER_PTR + 0x1000 * k
            if kind in (K["str"], K["path"]):
                payload = _as_bytes(v)
                if str_max is not None and len(payload) > str_max:
                    payload, trunc = payload[:str_max], True
            elif kind in (K["buf"], K["out_buf"]):
                payload = bytes(v)
                if buf_max is not None and len(payload) > buf_max:
                    payload, trunc = payload[:buf_max], True
            elif kind == K["strarr"]:
                payload = b"".join(_as_bytes(s) + b"\0" for s in v)
            elif kind in (K["sockaddr"], K["out_sockaddr"]):
                payload = _sockaddr_bytes(v) if isinstance(v, SockAddr) else bytes(v)
            elif kind == K["out_fd2"]:
                payload = struct.pack("<ii", *v)
            elif kind == K["out_int"]:
                payload = struct.pack("<i", v[0])
            else:
                raise TypeError(f"{syscall_name(nr)}.{spec.name if spec else k}: {v!r} for kind "
                                f"{record.KIND_NAMES[kind]}")
            if kind in record.EXIT_KINDS and (not exit_rec or res < 0):
                payload = None                      # the probe reads outputs at exit, on success
        if k in given:
            payload = given[k]
        if k in fault_slots:
            payload = None
            hflags |= 1 << (record.F_FAULT_SHIFT + k)
        if noenter:
            raw[k], payload = 0, None
        if payload is not None:
            store(k, payload, trunc)
        elif trunc:
            hflags |= 1 << (record.F_TRUNC_SHIFT + k)
        if spec is None or noenter:
            continue
        # what a decoder must return for it
        p = pay[k]
        faulted = k in fault_slots
        if kind in _SIGNED:
            ev = _sext(raw[k], bits if kind == K["int"] else 32)
        elif kind in (K["uid"], K["gid"]):
            ev = raw[k] & 0xFFFFFFFF
        elif kind == K["ptr"]:
            ev = raw[k]
        elif not is_ptr_kind:
            ev = raw[k] & ((1 << bits) - 1)
        else:
            if p is None and kind in _INPUT_EMPTY_OK and raw[k] and not faulted:
                p = b""
            if p is None:
                ev = None
            elif kind in (K["str"], K["path"]):
                ev = _text(p)
            elif kind in (K["buf"], K["out_buf"]):
                ev = p
            elif kind == K["strarr"]:
                parts = p.split(b"\0")
                if parts and parts[-1] == b"":
                    parts.pop()
                ev = [_text(x) for x in parts]
            elif kind in (K["sockaddr"], K["out_sockaddr"]):
                ev = _sockaddr_value(p)
            elif kind == K["out_fd2"]:
                ev = list(struct.unpack("<ii", p)) if len(p) == 8 else None
            else:
                ev = struct.unpack("<i", p)[0] if len(p) == 4 else None
        expect[spec.name] = ev

    size = HDR_SIZE + used
    comm_b = _as_bytes(comm)[:record.COMM_LEN]
    if nargs is None:
        nargs = 0 if noenter else len(specs)
    hdr = np.zeros(1, dtype=HDR)
    fields = dict(version=version, size=size, nr=nr, dir=ord(dir), nargs=nargs, flags=hflags, pid=pid,
                  tid=pid if tid is None else tid, ppid=ppid, uid=uid, gid=gid, ts=ts, latency=latency,
                  res=res, comm=comm_b, ets=ts + latency if ets is None else ets, cgroup_id=cgroup_id,
                  pidns=pidns, mntns=mntns, loginuid=loginuid)
    for name, v in fields.items():
        hdr[name][0] = v
    hdr["args"][0] = raw
    hdr["slot"][0] = slots
    body = hdr.tobytes() + b"".join(p for p in pay if p is not None)
    # payloads are stored in slot order, so the concatenation above is the payload area
    assert len(body) == size
    fields["comm"] = comm_b.rstrip(b"\0")
    return Case(record=body, nr=nr, name=syscall_name(nr), fields=fields, args=expect,
                payloads=tuple(pay),
                truncated=tuple(k for k in range(record.MAX_ARGS) if hflags >> (record.F_TRUNC_SHIFT + k) & 1),
                faulted=tuple(sorted(fault_slots)))


def make_record(nr: int, args: dict | Sequence | None = None, **kw) -> bytes:
    """The record bytes of `make_case(nr, args, **kw)` (keywords: pid, tid, ppid, uid, gid, ts,
    latency, res, comm, dir, flags, payloads, faults, str_max, buf_max, nargs, version)."""
    return make_case(nr, args, **kw).record


def patch(rec: bytes, **fields) -> bytes:
    """rec with header fields replaced: any lbd_hdr field name; `args` and `slot` as
    {index: value} (slot values (off, len)).  The payload is kept; `size` is not recomputed."""
    buf = bytearray(rec)
    if len(buf) < HDR_SIZE:
        raise ValueError("record shorter than its header")
    h = np.frombuffer(buf, dtype=HDR, count=1)
    for name, v in fields.items():
        if name not in HDR.names:
            raise KeyError(f"lbd_hdr has no field {name!r}")
        if name in ("args", "slot"):
            for i, x in (v.items() if isinstance(v, dict) else enumerate(v)):
                h[name][0, i] = x
        elif name == "dir" and isinstance(v, str):
            h[name][0] = ord(v)
        else:
            h[name][0] = v
    return bytes(buf)


# ---- random records ----------------------------------------------------------------------------

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789/._-,()=\\[]"     # with the normal format's separators


def _rand_text(rng: random.Random, n: int) -> bytes:
    r = rng.random()
    if r < 0.7:
        return "".join(rng.choice(_ALPHABET) for _ in range(n)).encode()
    if r < 0.85:
        return "".join(rng.choice("aé€𝄞/ ") for _ in range(n)).encode()[:n]   # may cut a character
    return bytes(rng.randrange(1, 256) for _ in range(n))                    # not UTF-8, no NUL


def _rand_len(rng: random.Random, long: int) -> int:
    r = rng.random()
    if r < 0.1 or long <= 0:
        return 0
    if r < 0.8 or long <= 48:
        return rng.randrange(1, min(47, long) + 1)
    return rng.randrange(48, long + 1)


def _rand_sockaddr(rng: random.Random) -> bytes:
    r = rng.randrange(6)
    if r == 0:
        return sockaddr_in(str(ipaddress.IPv4Address(rng.getrandbits(32))), rng.randrange(65536))
    if r == 1:
        return sockaddr_in6(str(ipaddress.IPv6Address(rng.getrandbits(128))), rng.randrange(65536))
    if r == 2:
        return sockaddr_un("/run/" + "".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(1, 40))))
    if r == 3:
        return sockaddr_un("@" + "".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(0, 20))))
    if r == 4:
        return struct.pack("<H", socket.AF_NETLINK) + bytes(rng.randrange(256) for _ in range(10))
    return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 4)))    # short / garbage


def _rand_value(rng: random.Random, kind: int, bits: int, long: int):
    """A random argument value of `kind` (see the module docstring)."""
    if kind < K["str"]:
        r = rng.random()
        if kind in (K["fd"], K["dirfd"]) and r < 0.2:
            return rng.choice([-100, 0xFFFFFF9C, -1, 0xFFFFFFFF])        # AT_FDCWD, -1: 32 or 64 bit
        if r < 0.3:
            return rng.choice([0, 1, -1, 2**63, 2**64 - 1, 2**31, 2**32 - 1])
        return rng.getrandbits(rng.choice([8, 16, 31, 32, 33, 63, 64]))
    if rng.random() < 0.08:
        return None                                                        # NULL pointer
    if kind in (K["str"], K["path"]):
        return _rand_text(rng, _rand_len(rng, long))
    if kind in (K["buf"], K["out_buf"]):
        return bytes(rng.randrange(256) for _ in range(_rand_len(rng, long)))
    if kind == K["strarr"]:
        return [_rand_text(rng, _rand_len(rng, 64)) for _ in range(rng.randrange(0, 8))]
    if kind in (K["sockaddr"], K["out_sockaddr"]):
        return _rand_sockaddr(rng)
    if kind == K["out_fd2"]:
        return (rng.randrange(-1, 1 << 20), rng.randrange(-1, 1 << 20))
    if kind == K["out_int"]:
        return (rng.randrange(-(1 << 31), 1 << 31),)
    raise ValueError(kind)


def _kind_cover() -> list[int]:
    """Syscall numbers that together have every argument kind (the first with each kind)."""
    out: list[int] = []
    seen: set[int] = set()
    for sc in syscalls.TABLE:
        new = {a.kind_id for a in sc.args} - seen
        if new:
            out.append(sc.nr)
            seen |= new
    return out


_COVER = _kind_cover()


def random_cases(n: int, seed: int = 0, *, nrs: Sequence[int] | None = None, str_max: int | None = 256,
                 long: int = 300, enter: float = 0.1, noenter: float = 0.03, sched: float = 0.05,
                 failed: float = 0.1, faults: float = 0.03) -> list[Case]:
    """n random records (with their expected decoding), reproducible from seed.

    The first records cycle through syscalls that together have every argument kind; then the
    syscall is random (from `nrs`, default the whole table and the sched pseudo syscalls).  Payloads vary in length (0 to
    `long` bytes, cut at str_max with the truncation flag), text is ASCII, multi-byte UTF-8 or not
    UTF-8; NULL pointers, read faults, failed calls (no output payloads), enter records,
    exits without enter and sched records are mixed in at the given rates.
    """
    rng = random.Random(seed)
    pool = list(nrs) if nrs is not None else [sc.nr for sc in syscalls.TABLE]
    sched_nrs = [record.NR_SCHED_FORK, record.NR_SCHED_EXEC, record.NR_SCHED_EXIT]
    out = []
    for i in range(n):
        if nrs is None and i < len(_COVER) * 2:
            nr = _COVER[i % len(_COVER)]
        elif nrs is None and rng.random() < sched:
            nr = rng.choice(sched_nrs)
        else:
            nr = rng.choice(pool)
        specs = arg_specs(nr) or ()
        is_sched = nr in sched_nrs
        d = ">" if not is_sched and rng.random() < enter else "<"
        fl = record.F_NOENTER if not is_sched and d == "<" and rng.random() < noenter else 0
        res = -rng.randrange(1, 134) if d == "<" and rng.random() < failed else rng.randrange(0, 1 << 16)
        if d == ">":
            res = 0
        vals = []
        for a in specs:
            if is_sched and a.kind_id == K["path"]:
                vals.append(_rand_text(rng, _rand_len(rng, long)) or b"x")
            else:
                vals.append(_rand_value(rng, a.kind_id, a.bits, long))
        flt = [k for k, a in enumerate(specs) if a.kind_id >= K["str"] and vals[k] is not None
               and rng.random() < faults]
        pays = None
        if is_sched and nr == record.NR_SCHED_EXEC:      # the probe reads it from the kernel
            pays = {2: vals[2]}
            vals[2] = 0
        out.append(make_case(
            nr, vals, pid=rng.randrange(1, 1 << 22), tid=rng.randrange(1, 1 << 22), ppid=rng.randrange(0, 1 << 22),
            uid=rng.choice([0, 1000, 65534, 2**32 - 1]), gid=rng.choice([0, 1000, 65534]),
            ts=rng.randrange(1, 1 << 62), latency=rng.randrange(0, 1 << 32) if d == "<" else 0, res=res,
            comm=_rand_text(rng, rng.randrange(0, 17)).replace(b"\0", b"")[:16], dir=d, flags=fl,
            faults=flt, str_max=str_max, payloads=pays))
    return out


def random_records(n: int, seed: int = 0, **options) -> list[bytes]:
    """The record bytes of `random_cases(n, seed, **options)`: every argument kind, variable
    payloads (see random_cases)."""
    return [c.record for c in random_cases(n, seed, **options)]


# ---- ring images -------------------------------------------------------------------------------

class RingFull(BufferError):
    """The record does not fit in the ring's free space (the kernel would drop it)."""


def _guarded(nbytes: int) -> tuple[np.ndarray, object]:
    """nbytes of zeroed memory that end right before an inaccessible page (and follow one when
    nbytes is a multiple of the page size): an out-of-bounds read faults at once."""
    page = mmap.PAGESIZE
    body = (nbytes + page - 1) // page * page
    m = mmap.mmap(-1, body + 2 * page, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                  prot=mmap.PROT_READ | mmap.PROT_WRITE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))   # keeps an export: m stays mapped
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    for addr in (base, base + page + body):
        if libc.mprotect(addr, page, 0) != 0:
            raise OSError(ctypes.get_errno(), "mprotect of a guard page")
    arr = np.frombuffer(m, dtype=np.uint8, count=nbytes, offset=page + body - nbytes)
    return arr, m


class RingImage:
    """A BPF ring buffer in memory, laid out as the kernel maps it (see the module docstring).

    Invariants: `data` is 2 * size bytes and its second half is a copy of its first (every write
    goes through poke(), which writes both); positions are byte counts like the kernel's (the data
    offset is pos % size); `cons` is stored where a Ring from ring() reads and advances it.
    """

    def __init__(self, size: int = 1 << 16, *, start: int = 0, guard: bool = False):
        if size < 16 or size & (size - 1):
            raise ValueError(f"ring size {size}: a power of two >= 16")
        if start % 8:
            raise ValueError(f"start {start}: a multiple of 8")
        self.size = size
        self.start = start
        self._cons = np.zeros(1, dtype=np.uint64)
        self._prod = np.zeros(1, dtype=np.uint64)
        if guard:
            self.data, self._keep = _guarded(2 * size)
        else:
            self.data, self._keep = np.zeros(2 * size, dtype=np.uint8), None
        self._cons[0] = self._prod[0] = start

    # positions
    @property
    def cons(self) -> int:
        return int(self._cons[0])

    @cons.setter
    def cons(self, v: int) -> None:
        self._cons[0] = v

    @property
    def prod(self) -> int:
        return int(self._prod[0])

    @prod.setter
    def prod(self, v: int) -> None:
        self._prod[0] = v

    @property
    def free(self) -> int:
        """Bytes a new record (with its 8-byte header and padding) may take: the kernel keeps
        prod - cons <= size - 1."""
        return self.size - 1 - (self.prod - self.cons)

    # bytes
    def poke(self, pos: int, b: bytes) -> None:
        """Write b at ring position pos (wrapping), in both halves of data."""
        b = bytes(b)
        if len(b) > self.size:
            raise ValueError("more bytes than the ring holds")
        off = pos % self.size
        first = min(len(b), self.size - off)
        arr = np.frombuffer(b, dtype=np.uint8)
        for base in (0, self.size):
            self.data[base + off: base + off + first] = arr[:first]
        if first < len(b):
            rest = arr[first:]
            self.data[: len(rest)] = rest
            self.data[self.size: self.size + len(rest)] = rest

    def peek(self, pos: int, n: int) -> bytes:
        off = pos % self.size
        return self.data[off: off + n].tobytes() if n <= self.size else b""

    # records
    def write_raw(self, word: int, body: bytes = b"", advance: int | None = None) -> int:
        """Write a ring record header with length word `word` (any bits) and `body` after it at
        the producer position, and advance the producer by `advance` (default: the aligned size
        of header + body).  Returns the record's position.  No free-space check."""
        pos = self.prod
        self.poke(pos, struct.pack("<II", word & 0xFFFFFFFF, (pos % self.size) // 4096) + bytes(body))
        self.prod = pos + (_align8(RB_HDR_SIZE + len(body)) if advance is None else advance)
        return pos

    def _reserve(self, rec: bytes, length: int, bits: int) -> int:
        total = _align8(RB_HDR_SIZE + length)
        if total > self.free:
            raise RingFull(f"record of {length} bytes: {self.free} bytes free")
        pad = bytes(total - RB_HDR_SIZE - len(rec)) if len(rec) < total - RB_HDR_SIZE else b""
        return self.write_raw(length | bits, bytes(rec)[: total - RB_HDR_SIZE] + pad, total)

    def write(self, rec: bytes, discard: bool = False) -> int:
        """Commit rec at the producer position (as bpf_ringbuf_output, or reserve + discard).
        Returns its position; raises RingFull when it does not fit."""
        return self._reserve(rec, len(rec), DISCARD_BIT if discard else 0)

    def write_busy(self, rec: bytes = b"", length: int | None = None) -> int:
        """Reserve a record that is still being written (busy bit set): a consumer must stop
        there.  length: its length word (default len(rec)).  Returns its position for commit()."""
        return self._reserve(rec, len(rec) if length is None else length, BUSY_BIT)

    def commit(self, pos: int, discard: bool = False, rec: bytes | None = None) -> None:
        """Commit the reserved record at pos (clear its busy bit; set discard), writing rec first."""
        word = struct.unpack("<I", self.peek(pos, 4))[0]
        if rec is not None:
            self.poke(pos + RB_HDR_SIZE, rec)
        word &= ~(BUSY_BIT | DISCARD_BIT)
        self.poke(pos, struct.pack("<I", word | (DISCARD_BIT if discard else 0)))

    def extend(self, records: Iterable[bytes]) -> int:
        """Write records until one does not fit; the number written."""
        n = 0
        for rec in records:
            if _align8(RB_HDR_SIZE + len(rec)) > self.free:
                break
            self.write(rec)
            n += 1
        return n

    def rewind(self, pos: int | None = None) -> None:
        """Move the consumer back to pos (default: `start`): the records after it are read again
        (they are still in the data: consuming does not clear it).  For repeated benchmarks."""
        self.cons = self.start if pos is None else pos

    def ring(self, valid_nrs=None, wall_offset: int = 0, index: int = 0):
        """An lbd._decode.Ring over this image (it advances `cons`); index: its ring number."""
        from lbd._decode import Ring

        return Ring.from_image(self._cons, self._prod, self.data, valid_nrs, wall_offset, index)

    def image(self) -> tuple[int, int, np.ndarray]:
        """(cons, prod, data): the arguments of lbd.reference.decode_image."""
        return self.cons, self.prod, self.data


def image_of(records: Iterable[bytes], *, size: int | None = None, start: int = 0,
             guard: bool = False) -> RingImage:
    """A RingImage holding records (committed), big enough for them when size is None."""
    records = list(records)
    need = sum(_align8(RB_HDR_SIZE + len(r)) for r in records) + 8
    if size is None:
        size = 4096
        while size - 1 < need:
            size *= 2
    img = RingImage(size, start=start, guard=guard)
    for r in records:
        img.write(r)
    return img
