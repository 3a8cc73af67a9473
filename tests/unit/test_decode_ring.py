"""Ring over a real BPF ring buffer map, created with the bpf() syscall (no program, no bcc):
the kernel's mmap layout, epoll waits with a timeout, and close() from another thread while a
wait runs without the GIL.  Skips where BPF maps cannot be created (not root, no BPF)."""
from __future__ import annotations

import os
import threading
import time

import pytest

from lbd._decode import STOP_EMPTY, Ring, Rings
from lbd.batch import Batch
from lbd.bpfsys import ringbuf_create

SIZE = 1 << 16


@pytest.fixture
def ring_fd():
    try:
        fd = ringbuf_create(SIZE)
    except OSError as e:
        pytest.skip(f"cannot create a BPF ring buffer map: {os.strerror(e.errno)}")
    yield fd
    os.close(fd)


def test_maps_the_kernel_layout(ring_fd):
    with Ring(ring_fd, SIZE) as r:
        assert r.ring_size == SIZE
        assert r.consumer_pos == r.producer_pos == r.pending_bytes() == 0
        b = Batch(8)
        assert r.fill(b) == 0 and r.last_stop == STOP_EMPTY
        assert r.stats()["bytes"] == 0
    assert r.closed


def test_wait_times_out_without_the_gil(ring_fd):
    r = Ring(ring_fd, SIZE)
    ticks = []
    stop = threading.Event()

    def ticker():                      # runs only if wait() released the GIL
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.005)

    th = threading.Thread(target=ticker)
    th.start()
    t = time.monotonic()
    assert r.wait(100) is False
    took = time.monotonic() - t
    stop.set()
    th.join()
    assert 0.09 <= took < 1.0
    assert len(ticks) >= 5
    r.close()


def test_close_from_another_thread_waits_for_the_wait(ring_fd):
    r = Ring(ring_fd, SIZE)
    done = []

    def closer():
        time.sleep(0.05)
        r.close()                      # deferred: the wait still uses the maps and the epoll fd
        done.append(r.closed)

    th = threading.Thread(target=closer)
    th.start()
    assert r.wait(300) is False
    th.join()
    assert done == [True] and r.closed
    with pytest.raises(ValueError):
        r.fill(Batch(4))
    r.close()                          # idempotent


def test_wrong_size_fails_cleanly(ring_fd):
    with pytest.raises(OSError):
        Ring(ring_fd, SIZE * 2)        # the kernel refuses a mapping longer than the map
    with pytest.raises(ValueError):
        Ring(ring_fd, SIZE + 8)


def test_wait_pending_runs_without_the_gil_until_halted(ring_fd):
    """Rings.wait_pending: nothing pending (no producer) keeps it waiting, polling without the
    GIL, until halt_wait() from another thread; later waits return at once."""
    rs = Rings([Ring(ring_fd, SIZE)])
    rs.wait_at = 1
    ticks = []

    def halter():                      # runs only if wait_pending() released the GIL
        for _ in range(10):
            ticks.append(1)
            time.sleep(0.005)
        rs.halt_wait()

    th = threading.Thread(target=halter)
    th.start()
    t = time.monotonic()
    assert rs.wait_pending(5) is False
    took = time.monotonic() - t
    th.join()
    assert len(ticks) == 10 and 0.04 <= took < 2.0
    assert rs.wait_pending(5) is False
    rs.close()

