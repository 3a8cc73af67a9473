"""Structures the probe copies (issue 16): each syscall is made for real with known contents, and
every decoded field is asserted, truncation flags included (the struct, out_struct, array32,
iovec, msghdr and out_msghdr kinds of bpf/lbd_record.h, decoded by lbd/layouts.py)."""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import struct

from lbd import args as _args, flags as _flags, record
from lbd.args import SockAddr
from lbd.syscalls import BY_NAME
from tests.kernel.conftest import by_name, one, syscall

NR = {n: BY_NAME[n].nr for n in ("bpf", "capget", "capset", "openat2", "clone3", "seccomp", "writev",
                                 "process_vm_readv", "rt_sigqueueinfo", "perf_event_open", "io_uring_setup",
                                 "open_by_handle_at", "prctl", "getcwd", "read")}


def trunc(e, name) -> bool:
    k = [a.name for a in _args.arg_specs(e.nr)].index(name)
    return bool(e.flags >> (record.F_TRUNC_SHIFT + k) & 1)


def buf(data: bytes):
    b = ctypes.create_string_buffer(data, len(data))
    return b, ctypes.addressof(b)


def test_bpf_map_create_attr(cap):
    def work():
        attr = struct.pack("<IIIII", 2, 4, 8, 1, 0) + struct.pack("<iI", 0, 0) + b"lbd_map".ljust(16, b"\0")
        attr = attr.ljust(72, b"\0")
        keep, p = buf(attr)
        fd = syscall(NR["bpf"], 0, p, len(attr))
        if fd >= 0:
            os.close(fd)
        return fd

    e = one(cap.run(work), "bpf")
    a = e.args["uattr"]
    assert e.res == cap.result and e.args["cmd"] == 0 and e.args["size"] == 72
    assert a["map_type"] == 2 and a["key_size"] == 4 and a["value_size"] == 8 and a["max_entries"] == 1
    assert a["map_flags"] == 0 and a["map_name"] == "lbd_map" and a["prog_type"] is None
    assert _flags.names("bpf_map_type", a["map_type"]) == "BPF_MAP_TYPE_ARRAY"
    assert not trunc(e, "uattr")


def test_bpf_prog_load_attr_is_cut_at_its_size(cap):
    def work():
        insns = struct.pack("<BBhi", 0xB7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)   # r0 = 0; exit
        ins_keep, ins = buf(insns)
        lic_keep, lic = buf(b"GPL\0")
        attr = struct.pack("<IIQQIIQII", 1, 2, ins, lic, 0, 0, 0, 0, 0) + b"lbd_prog".ljust(16, b"\0")
        attr = attr.ljust(200, b"\0")                   # more than the table's 128 bytes
        keep, p = buf(attr)
        fd = syscall(NR["bpf"], 5, p, len(attr))
        if fd >= 0:
            os.close(fd)
        return ins, lic

    e = one(cap.run(work), "bpf")
    ins, lic = cap.result
    a = e.args["uattr"]
    assert a["prog_type"] == 1 and a["insn_cnt"] == 2 and a["insns"] == ins and a["license"] == lic
    assert a["prog_name"] == "lbd_prog" and a["map_type"] is None
    assert trunc(e, "uattr")                            # 200 bytes, 128 read


def test_capget_capset_header_and_masks(cap):
    def work():
        hdr_keep, hdr = buf(struct.pack("<Ii", 0x20080522, 0))
        data_keep = ctypes.create_string_buffer(24)
        r1 = syscall(NR["capget"], hdr, ctypes.addressof(data_keep))
        eff, perm, inh = struct.unpack_from("<III", data_keep.raw)
        # drop CAP_SYS_BOOT (22) from the effective set: still permitted
        new = bytearray(data_keep.raw)
        struct.pack_into("<I", new, 0, eff & ~(1 << 22))
        nd_keep, nd = buf(bytes(new))
        r2 = syscall(NR["capset"], hdr, nd)
        return r1, r2, data_keep.raw

    ev = cap.run(work)
    r1, r2, raw = cap.result
    eff = struct.unpack_from("<I", raw, 0)[0] | struct.unpack_from("<I", raw, 12)[0] << 32
    g = one(ev, "capget")
    assert g.res == r1 == 0
    assert g.args["header"] == {"version": 0x20080522, "pid": 0}
    assert g.args["dataptr"]["effective"] == eff
    assert g.args["dataptr"]["permitted"] == struct.unpack_from("<I", raw, 4)[0] | struct.unpack_from("<I", raw, 16)[0] << 32
    s = one(ev, "capset")
    assert s.res == r2 == 0 and s.args["data"]["effective"] == eff & ~(1 << 22)
    assert "CAP_SYS_BOOT" in _flags.names("cap_mask", eff) and "CAP_SYS_BOOT" not in _flags.names("cap_mask", s.args["data"]["effective"])


def test_setgroups_list_and_truncation(cap):
    def work():
        os.setgroups([7, 8, 9])
        os.setgroups(list(range(100, 200)))             # 400 bytes: the table reads 256

    ev = by_name(cap.run(work), "setgroups")
    assert [e.args["grouplist"] for e in ev] == [[7, 8, 9], list(range(100, 164))]
    assert [trunc(e, "grouplist") for e in ev] == [False, True]
    assert [e.res for e in ev] == [0, 0]


def test_writev_and_process_vm_readv_iovecs(cap):
    def work():
        a, b = ctypes.create_string_buffer(b"hello", 5), ctypes.create_string_buffer(b"world!", 6)
        iov = (ctypes.c_uint64 * 4)(ctypes.addressof(a), 5, ctypes.addressof(b), 6)
        fd = os.open("/dev/null", os.O_WRONLY)
        n = syscall(NR["writev"], fd, ctypes.addressof(iov), 2)
        many = (ctypes.c_uint64 * 20)(*[x for k in range(10) for x in (ctypes.addressof(a), k)])
        syscall(NR["writev"], fd, ctypes.addressof(many), 10)
        os.close(fd)
        dst = ctypes.create_string_buffer(5)
        liov = (ctypes.c_uint64 * 2)(ctypes.addressof(dst), 5)
        riov = (ctypes.c_uint64 * 2)(ctypes.addressof(a), 5)
        r = syscall(NR["process_vm_readv"], os.getpid(), ctypes.addressof(liov), 1, ctypes.addressof(riov), 1, 0)
        return n, r, ctypes.addressof(a), ctypes.addressof(b), ctypes.addressof(dst), dst.raw

    ev = cap.run(work)
    n, r, pa, pb, pd, got = cap.result
    w = [e for e in by_name(ev, "writev")]
    assert w[0].res == n == 11 and w[0].args["vec"] == {"base": [pa, pb], "len": [5, 6]} and not trunc(w[0], "vec")
    assert w[1].args["vec"]["len"] == list(range(8)) and trunc(w[1], "vec")          # 10 iovecs, 8 read
    p = one(ev, "process_vm_readv")
    assert p.res == r == 5 and got == b"hello" and p.args["pid"] == cap.child_pid
    assert p.args["lvec"] == {"base": [pd], "len": [5]} and p.args["rvec"] == {"base": [pa], "len": [5]}


def test_sendmsg_recvmsg_peer_iovecs_and_scm_rights(cap):
    def work():
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", 0))
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.bind(("127.0.0.1", 0))
        tx.sendmsg([b"abc", b"defgh"], [], 0, rx.getsockname())
        rx.recvmsg(64)
        u1, u2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        fd = os.open("/dev/null", os.O_RDONLY)
        u1.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("<ii", fd, 0))])
        _, anc, _, _ = u2.recvmsg(8, socket.CMSG_SPACE(8))
        got = list(struct.unpack("<ii", anc[0][2]))
        return rx.getsockname()[1], tx.getsockname()[1], fd, got

    ev = cap.run(work)
    rport, tport, fd, got = cap.result
    s = by_name(ev, "sendmsg")
    m = s[0].args["msg"]
    assert str(m["name"]) == f"127.0.0.1:{rport}" and m["namelen"] == 16
    assert m["iov_len"] == [3, 5] and m["iovlen"] == 2 and m["cmsg_type"] == [] and s[0].res == 8
    m = s[1].args["msg"]
    assert m["name"] is None and m["iov_len"] == [1] and m["cmsg_level"] == [1] and m["cmsg_type"] == [1]
    assert m["scm_rights"] == [fd, 0] and m["controllen"] == socket.CMSG_SPACE(8)
    r = by_name(ev, "recvmsg")
    m = r[0].args["msg"]
    assert r[0].res == 8 and m["name"] == SockAddr("AF_INET", "127.0.0.1", tport) and m["namelen"] == 16
    assert m["iov_len"] == [64]
    m = r[1].args["msg"]
    assert m["cmsg_type"] == [1] and m["scm_rights"] == got and got[0] > 2


def test_openat2_how_and_clone3_args(cap):
    def work():
        path = b"/etc/hostname\0"
        how_keep, how = buf(struct.pack("<QQQ", os.O_RDONLY | os.O_CLOEXEC, 0, 0x04))     # RESOLVE_NO_SYMLINKS
        fd = syscall(NR["openat2"], -100, ctypes.c_char_p(path), how, 24)
        if fd >= 0:
            os.close(fd)
        # CLONE_SIGHAND without CLONE_VM: EINVAL, after the kernel copied the args
        ca_keep, ca = buf(struct.pack("<11Q", 0x800, 0, 0, 0, signal.SIGCHLD, 0, 0, 0, 0, 0, 0))
        r = syscall(NR["clone3"], ca, 88)
        return fd, r

    ev = cap.run(work)
    fd, r = cap.result
    o = one(ev, "openat2")
    assert o.res == fd and o.args["how"] == {"flags": os.O_RDONLY | os.O_CLOEXEC, "mode": 0, "resolve": 4}
    assert _flags.names("resolve_flags", 4) == "RESOLVE_NO_SYMLINKS"
    c = one(ev, "clone3")
    assert c.res == r < 0
    assert c.args["uargs"]["flags"] == 0x800 and c.args["uargs"]["exit_signal"] == signal.SIGCHLD
    assert c.args["uargs"]["cgroup"] == 0 and c.args["size"] == 88


def test_prctl_seccomp_sigqueueinfo_perf_io_uring_handle(cap):
    def work():
        r_cap = syscall(NR["prctl"], 23, 21, 0, 0, 0)          # PR_CAPBSET_READ CAP_SYS_ADMIN
        r_name = syscall(NR["prctl"], 15, ctypes.c_char_p(b"lbd-newname"), 0, 0, 0)
        act_keep, act = buf(struct.pack("<I", 0x7FFF0000))     # SECCOMP_RET_ALLOW
        r_sec = syscall(NR["seccomp"], 2, 0, act)             # SECCOMP_GET_ACTION_AVAIL
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        si_keep, si = buf(struct.pack("<iii4xiIQ", signal.SIGUSR1, 0, -1, os.getpid(), os.getuid(), 77).ljust(128, b"\0"))
        r_sig = syscall(NR["rt_sigqueueinfo"], os.getpid(), signal.SIGUSR1, si)
        pe_keep, pe = buf(struct.pack("<IIQQQQQ", 1, 112, 0, 0, 0, 0, 1).ljust(112, b"\0"))   # SW CPU_CLOCK
        r_pe = syscall(NR["perf_event_open"], pe, 0, -1, -1, 8)
        if r_pe >= 0:
            os.close(r_pe)
        io_keep, io = buf(bytes(120))
        r_io = syscall(NR["io_uring_setup"], 4, io)
        if r_io >= 0:
            os.close(r_io)
        fh_keep, fh = buf(struct.pack("<Ii", 8, 1) + bytes(range(8)))
        r_fh = syscall(NR["open_by_handle_at"], -100, fh, os.O_RDONLY)
        return r_cap, r_name, r_sec, r_sig, r_pe, r_io, r_fh

    ev = cap.run(work)
    r_cap, r_name, r_sec, r_sig, r_pe, r_io, r_fh = cap.result
    p = [e for e in by_name(ev, "prctl") if e.args["option"] in (23, 15)]
    assert p[0].res == r_cap == 1 and p[0].args["arg2"] == 21
    assert _flags.arg_names("prctl_arg2", 21, {"option": 23}) == "CAP_SYS_ADMIN"
    assert p[1].res == r_name == 0 and p[1].comm == "lbd-newname"            # PR_SET_NAME's name
    s = one(ev, "seccomp")
    assert s.res == r_sec == 0 and s.args["op"] == 2 and s.args["uargs"] == {"len": None, "filter": None,
                                                                              "action": 0x7FFF0000}
    q = one(ev, "rt_sigqueueinfo")
    assert q.res == r_sig == 0
    assert q.args["uinfo"] == {"si_signo": signal.SIGUSR1, "si_errno": 0, "si_code": -1, "si_pid": cap.child_pid,
                               "si_uid": os.getuid(), "si_value": 77}
    f = one(ev, "perf_event_open")
    assert f.res == r_pe and f.args["attr_uptr"]["type"] == 1 and f.args["attr_uptr"]["size"] == 112
    assert f.args["attr_uptr"]["config"] == 0 and f.args["attr_uptr"]["flags"] == 1
    assert _flags.arg_names("perf_config", 0, {"type": 1}) == "PERF_COUNT_SW_CPU_CLOCK"
    i = one(ev, "io_uring_setup")
    assert i.res == r_io and i.args["params"]["flags"] == 0 and i.args["params"]["sq_entries"] == 0
    h = one(ev, "open_by_handle_at")
    assert h.res == r_fh < 0
    assert h.args["handle"] == {"handle_bytes": 8, "handle_type": 1, "f_handle": bytes(range(8)).hex()}


def test_empty_read_getcwd_and_unreadable(cap, tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")

    def work():
        fd = os.open(str(empty), os.O_RDONLY)
        os.read(fd, 1)                                         # 0 bytes into a valid buffer
        os.close(fd)
        os.getcwd()
        syscall(NR["read"], 0, 1, 0)                           # a zero length: nothing to read
        return os.getcwd()

    ev = cap.run(work)
    r = [e for e in by_name(ev, "read") if e.res == 0 and e.args["count"] == 1]
    assert r and r[0].args["buf"] == b""                       # "" not NULL
    g = by_name(ev, "getcwd")
    assert g and g[0].args["buf"] == cap.result.encode() and g[0].res == len(cap.result) + 1

    def fault():
        syscall(BY_NAME["openat"].nr, -100, 0x10, 0, 0)        # an address nothing maps

    o = one(cap.run(fault), "openat")
    assert o.args["filename"] is _args.UNREADABLE and o.res == -14
