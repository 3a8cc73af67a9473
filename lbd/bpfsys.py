"""The bpf(2) system call, for the few commands lbd makes without bcc: creating a ring buffer map
(`lbd doctor`, tests), asking a program or map for its kernel id (detach checks), and turning on
run-time statistics (benchmarks)."""
from __future__ import annotations

import ctypes as ct
import platform

SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(platform.machine(), 321)

BPF_MAP_CREATE = 0
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


def ringbuf_create(size: int) -> int:
    """A BPF_MAP_TYPE_RINGBUF map of `size` data bytes (a power-of-two number of pages): its fd."""
    attr = (ct.c_uint32 * 30)(BPF_MAP_TYPE_RINGBUF, 0, 0, size)   # map_type, key/value size, max_entries
    return bpf(BPF_MAP_CREATE, attr)


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
