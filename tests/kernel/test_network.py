"""Network syscalls: decoded socket addresses (IPv4, IPv6, unix paths), not zeros (the seed's demo
line), input addresses read at enter and output addresses (accept, recvfrom, getsockname) at exit."""
from __future__ import annotations

import ctypes
import os
import socket

from lbd.args import SockAddr
from tests.kernel.conftest import by_name, one, syscall

CLOEXEC = socket.SOCK_CLOEXEC


def inet(host: str, port: int) -> SockAddr:
    return SockAddr("AF_INET6" if ":" in host else "AF_INET", host, port)


def unix(path: str) -> SockAddr:
    return SockAddr("AF_UNIX", path=path)


def test_connect_shows_fd_address_and_length(cap):
    """The seed printed `connect(fd=0, servaddr=0, addrlen=0)`: lbd shows the real values."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def work():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.connect(("127.0.0.1", port))
        fd = s.fileno()
        s.close()
        return fd

    ev = cap.run(work)
    srv.close()
    fd = cap.result
    cap.expect(one(ev, "socket"), {"family": socket.AF_INET, "type": socket.SOCK_STREAM | CLOEXEC, "protocol": 0}, fd)
    c = one(ev, "connect")
    cap.expect(c, {"fd": fd, "uservaddr": inet("127.0.0.1", port), "addrlen": 16}, 0)
    assert fd > 2 and str(c.args["uservaddr"]) == f"127.0.0.1:{port}"


def test_connect_ipv6_and_unix(cap, tmp_path):
    srv6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    srv6.bind(("::1", 0))
    srv6.listen(1)
    port6 = srv6.getsockname()[1]
    path = str(tmp_path / "srv.sock")
    srvu = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srvu.bind(path)
    srvu.listen(1)

    def work():
        s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s6.connect(("::1", port6))
        su = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        su.connect(path)
        bad = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            bad.connect(path + ".missing")
        except FileNotFoundError:
            pass
        return s6.fileno(), su.fileno(), bad.fileno()

    ev = cap.run(work)
    srv6.close()
    srvu.close()
    f6, fu, fbad = cap.result
    cap.expect(one(ev, "socket", lambda e: e.res == f6),
               {"family": socket.AF_INET6, "type": socket.SOCK_STREAM | CLOEXEC, "protocol": 0}, f6)
    cap.expect(one(ev, "connect", lambda e: e.args["fd"] == f6),
               {"fd": f6, "uservaddr": inet("::1", port6), "addrlen": 28}, 0)
    # CPython passes the path with its NUL: offsetof(sun_path) + len + 1
    cap.expect(one(ev, "connect", lambda e: e.args["fd"] == fu),
               {"fd": fu, "uservaddr": unix(path), "addrlen": 2 + len(path) + 1}, 0)
    cap.expect(one(ev, "connect", lambda e: e.args["fd"] == fbad),
               {"fd": fbad, "uservaddr": unix(path + ".missing"), "addrlen": 2 + len(path) + 9}, -2)


def test_bind_listen_ipv4_ipv6_unix_abstract(cap, tmp_path):
    path = str(tmp_path / "b.sock")

    def work():
        s4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s4.bind(("127.0.0.1", 0))
        s4.listen(7)
        s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s6.bind(("::1", 0))
        su = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        su.bind(path)
        sa = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sa.bind(b"\0lbd-abstract")
        return s4.fileno(), s6.fileno(), su.fileno(), sa.fileno()

    ev = cap.run(work)
    f4, f6, fu, fa = cap.result
    cap.expect(one(ev, "socket", lambda e: e.res == f6),
               {"family": socket.AF_INET6, "type": socket.SOCK_DGRAM | CLOEXEC, "protocol": 0}, f6)
    cap.expect(one(ev, "bind", lambda e: e.args["fd"] == f4),
               {"fd": f4, "umyaddr": inet("127.0.0.1", 0), "addrlen": 16}, 0)
    cap.expect(one(ev, "listen"), {"fd": f4, "backlog": 7}, 0)
    cap.expect(one(ev, "bind", lambda e: e.args["fd"] == f6), {"fd": f6, "umyaddr": inet("::1", 0), "addrlen": 28}, 0)
    cap.expect(one(ev, "bind", lambda e: e.args["fd"] == fu),
               {"fd": fu, "umyaddr": unix(path), "addrlen": 2 + len(path) + 1}, 0)
    # abstract names have no NUL terminator; the decoder shows them with a leading '@'
    cap.expect(one(ev, "bind", lambda e: e.args["fd"] == fa),
               {"fd": fa, "umyaddr": unix("@lbd-abstract"), "addrlen": 2 + 1 + len("lbd-abstract")}, 0)


def test_accept4_accept_output_address(cap):
    """accept4's peer address and length are written by the kernel: read at exit."""

    def work():
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("127.0.0.1", 0))
        srv.listen(2)
        c1 = socket.create_connection(srv.getsockname())
        c2 = socket.create_connection(srv.getsockname())
        addr = ctypes.create_string_buffer(128)
        alen = ctypes.c_int(128)
        a1 = syscall(288, srv.fileno(), addr, ctypes.byref(alen), socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        a2 = syscall(43, srv.fileno(), 0, 0)              # accept(fd, NULL, NULL)
        return (srv.fileno(), a1, a2, c1.getsockname()[1], ctypes.addressof(addr), ctypes.addressof(alen),
                alen.value)

    ev = cap.run(work)
    srv, a1, a2, cport, _, _, alen = cap.result
    assert a1 > 2 and a2 > 2 and alen == 16
    cap.expect(one(ev, "accept4"),
               {"fd": srv, "upeer_sockaddr": inet("127.0.0.1", cport), "upeer_addrlen": 16,
                "flags": socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK}, a1)
    cap.expect(one(ev, "accept"), {"fd": srv, "upeer_sockaddr": None, "upeer_addrlen": None}, a2)


def test_sendto_recvfrom_udp(cap):
    def work():
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", 0))
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.bind(("127.0.0.1", 0))
        tx.sendto(b"ping lbd", rx.getsockname())
        data, _ = rx.recvfrom(100)
        assert data == b"ping lbd"
        tx.connect(rx.getsockname())
        tx.send(b"two", socket.MSG_DONTWAIT)                 # sendto(fd, buf, 3, flags, NULL, 0)
        return rx.fileno(), tx.fileno(), rx.getsockname()[1], tx.getsockname()[1]

    ev = cap.run(work)
    frx, ftx, prx, ptx = cap.result
    cap.expect(one(ev, "sendto", lambda e: e.args["len"] == 8),
               {"fd": ftx, "buff": b"ping lbd", "len": 8, "flags": 0, "addr": inet("127.0.0.1", prx),
                "addr_len": 16}, 8)
    cap.expect(one(ev, "sendto", lambda e: e.args["len"] == 3),
               {"fd": ftx, "buff": b"two", "len": 3, "flags": socket.MSG_DONTWAIT, "addr": None, "addr_len": 0}, 3)
    cap.expect(one(ev, "recvfrom"),
               {"fd": frx, "ubuf": b"ping lbd", "size": 100, "flags": 0, "addr": inet("127.0.0.1", ptx),
                "addr_len": 16}, 8)


def test_socketpair_getsockname_getpeername_shutdown_setsockopt(cap):
    def work():
        a, b = socket.socketpair()
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::1", 0))
        s.listen(1)
        c = socket.create_connection(s.getsockname()[:2])
        c.getpeername()
        c.shutdown(socket.SHUT_WR)
        return a.fileno(), b.fileno(), s.fileno(), s.getsockname()[1], c.fileno(), c.getsockname()[1]

    ev = cap.run(work)
    fa, fb, fs, port, fc, cport = cap.result
    cap.expect(one(ev, "socketpair"), {"family": socket.AF_UNIX, "type": socket.SOCK_STREAM | CLOEXEC,
                                       "protocol": 0, "usockvec": [fa, fb]}, 0)
    cap.expect(one(ev, "setsockopt"), {"fd": fs, "level": socket.SOL_SOCKET, "optname": socket.SO_REUSEADDR,
                                       "optval": (1).to_bytes(4, "little"), "optlen": 4}, 0)
    names = [e for e in by_name(ev, "getsockname") if e.args["fd"] == fs]
    assert names
    for g in names:
        cap.expect(g, {"fd": fs, "usockaddr": inet("::1", port), "usockaddr_len": 28}, 0)
    cap.expect(one(ev, "getpeername", lambda e: e.args["fd"] == fc and e.res == 0), {"fd": fc, "usockaddr": inet("::1", port), "usockaddr_len": 28}, 0)
    cap.expect(one(ev, "shutdown"), {"fd": fc, "how": socket.SHUT_WR}, 0)
    assert cport > 0
