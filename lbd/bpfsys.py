"""The bpf(2) system call, for what lbd does on maps and objects outside the loaders: creating the
ring buffer maps (the probe's per-CPU rings, `lbd doctor`), reading and writing map elements by fd
(settings, filters, counters: the same code for the libbpf and the bcc loader), asking a program
or map for its kernel id (detach checks), and turning on run-time statistics (benchmarks)."""
from __future__ import annotations

import ctypes as ct
import platform

SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(platform.machine(), 321)

BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_ENABLE_STATS = 32
BPF_MAP_TYPE_RINGBUF = 27

_libc = ct.CDLL(None, use_errno=True)
_libc.syscall.restype = ct.c_long


def bpf(cmd: int, attr: ct.Structure | ct.Array) -> int:
    """bpf(cmd, &attr, sizeof(attr)); the result, or OSError with the kernel's errno."""
    r = _libc.syscall(SYS_BPF, cmd, ct.byref(attr), ct.sizeof(attr))
    if r < 0:
        err = ct.get_errno()
        raise OSError(err, f"bpf(cmd {cmd})")
    return r


def ringbuf_create(size: int, name: str = "") -> int:
    """A BPF_MAP_TYPE_RINGBUF map of `size` data bytes (a power-of-two number of pages): its fd.
    name: the map's name as bpftool shows it (at most 15 bytes)."""
    attr = (ct.c_uint32 * 30)(BPF_MAP_TYPE_RINGBUF, 0, 0, size)   # map_type, key/value size, max_entries
    if name:
        raw = name.encode()[:15]
        # union bpf_attr, map create: map_type, key_size, value_size, max_entries, map_flags,
        # inner_map_fd, numa_node (u32 each), then map_name[16] at byte 28
        ct.memmove(ct.addressof(attr) + 28, raw, len(raw))
    return bpf(BPF_MAP_CREATE, attr)


class _ElemAttr(ct.Structure):
    """union bpf_attr for BPF_MAP_*_ELEM and BPF_MAP_GET_NEXT_KEY."""
    _fields_ = [("map_fd", ct.c_uint32), ("pad", ct.c_uint32), ("key", ct.c_uint64),
                ("value", ct.c_uint64), ("flags", ct.c_uint64)]


BPF_ANY = 0


def map_update(fd: int, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
    """Write one element (key and value as their raw bytes)."""
    k = ct.create_string_buffer(bytes(key), len(key))
    v = ct.create_string_buffer(bytes(value), len(value))
    bpf(BPF_MAP_UPDATE_ELEM, _ElemAttr(fd, 0, ct.addressof(k), ct.addressof(v), flags))


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    """One element's value bytes (value_size: the map's value size, times the possible CPUs,
    each rounded up to 8, for a per-CPU map), or None when the key is absent."""
    k = ct.create_string_buffer(bytes(key), len(key))
    v = ct.create_string_buffer(value_size)
    try:
        bpf(BPF_MAP_LOOKUP_ELEM, _ElemAttr(fd, 0, ct.addressof(k), ct.addressof(v), 0))
    except OSError as e:
        if e.errno == 2:                    # ENOENT
            return None
        raise
    return v.raw


def map_delete(fd: int, key: bytes) -> bool:
    """Delete one element; False when it was not there."""
    k = ct.create_string_buffer(bytes(key), len(key))
    try:
        bpf(BPF_MAP_DELETE_ELEM, _ElemAttr(fd, 0, ct.addressof(k), 0, 0))
    except OSError as e:
        if e.errno == 2:
            return False
        raise
    return True


def map_keys(fd: int, key_size: int) -> list[bytes]:
    """Every key of a hash map (iterated with BPF_MAP_GET_NEXT_KEY)."""
    out: list[bytes] = []
    cur = None
    nxt = ct.create_string_buffer(key_size)
    while True:
        k = ct.create_string_buffer(cur, key_size) if cur is not None else None
        attr = _ElemAttr(fd, 0, ct.addressof(k) if k is not None else 0, ct.addressof(nxt), 0)
        try:
            bpf(BPF_MAP_GET_NEXT_KEY, attr)
        except OSError as e:
            if e.errno == 2:
                return out
            raise
        cur = nxt.raw
        out.append(cur)
        if len(out) > 1 << 24:
            raise RuntimeError("map_keys: the map keeps changing")


class _InfoAttr(ct.Structure):
    _fields_ = [("bpf_fd", ct.c_uint32), ("info_len", ct.c_uint32), ("info", ct.c_uint64)]


def obj_info(fd: int, info: ct.Structure) -> bool:
    """Fill `info` (a prefix of struct bpf_prog_info or bpf_map_info) for the object behind fd."""
    attr = _InfoAttr(fd, ct.sizeof(info), ct.addressof(info))
    try:
        bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    except OSError:
        return False
    return True


class _ObjInfo(ct.Structure):
    """The start of struct bpf_prog_info and of struct bpf_map_info: type, id."""
    _fields_ = [("type", ct.c_uint32), ("id", ct.c_uint32), ("pad", ct.c_uint8 * 208)]


def obj_id(fd: int) -> int | None:
    """The kernel id of the BPF program or map behind fd, or None."""
    info = _ObjInfo()
    return info.id if obj_info(fd, info) else None
