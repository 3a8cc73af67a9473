"""Network syscalls: decoded socket addresses, not zeros (the seed's demo line)."""
from __future__ import annotations

import socket

from tests.kernel.conftest import one


def test_connect_shows_fd_address_and_length(cap):
    """The seed printed `connect(fd=0, servaddr=0, addrlen=0)`: lbd shows the real values."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def work():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.connect(("127.0.0.1", port))
        s.close()

    ev = cap.run(work)
    srv.close()
    c = one(ev, "connect")
    sock = one(ev, "socket")
    assert c.res == 0
    assert c.args["fd"] == sock.res and c.args["fd"] > 2
    a = c.args["uservaddr"]
    assert (a.family, a.addr, a.port) == ("AF_INET", "127.0.0.1", port)
    assert c.args["addrlen"] == 16
