"""The workload of tests/kernel/test_strace_compare.py: run as `python3 strace_workload.py`, under
strace and lbd at once.  It calls every implemented syscall that is safe to call with empty
arguments (fds -1, pointers NULL, numbers 0: each fails or does nothing), then the syscalls of
issue 16 with real contents.  One line per call on stdout would disturb nothing: it prints none."""
from __future__ import annotations

import ctypes
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from lbd import syscalls  # noqa: E402

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.syscall.restype = ctypes.c_long

#: not called with empty arguments: they end, block, stop or change the machine, or are SysV IPC
#: (id 0 may exist), or are made below with real contents
SKIP = frozenset("""
exit exit_group fork vfork clone clone3 execve execveat pause select pselect6 ppoll rt_sigsuspend
rt_sigreturn msgrcv msgsnd msgget msgctl semop semtimedop semget semctl shmget shmat shmdt shmctl
reboot kexec_load kexec_file_load sethostname setdomainname acct seccomp vhangup swapon swapoff
uretprobe uprobe restart_syscall futex_wait futex_waitv
""".split())


def call(nr, *args):
    LIBC.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])


def empty_calls() -> None:
    for sc in syscalls.TABLE:
        if not sc.implemented or sc.name in SKIP:
            continue
        args = [(-1 if a.kind in ("fd", "dirfd") else 0) for a in sc.args]
        call(sc.nr, *args)


def real_calls() -> None:
    nr = {n: syscalls.lookup(n).nr for n in ("bpf", "capget", "prctl", "openat2", "setgroups", "writev",
                                             "process_vm_readv", "rt_sigqueueinfo", "ioctl")}
    attr = ctypes.create_string_buffer((struct.pack("<IIIII", 2, 4, 8, 1, 0) + bytes(8)
                                        + b"lbd_map".ljust(16, b"\0")).ljust(72, b"\0"), 72)
    call(nr["bpf"], 0, ctypes.addressof(attr), 72)
    hdr = ctypes.create_string_buffer(struct.pack("<Ii", 0x20080522, 0), 8)
    data = ctypes.create_string_buffer(24)
    call(nr["capget"], ctypes.addressof(hdr), ctypes.addressof(data))
    call(nr["prctl"], 23, 21, 0, 0, 0)
    how = ctypes.create_string_buffer(struct.pack("<QQQ", os.O_RDONLY | os.O_CLOEXEC, 0, 4), 24)
    path = ctypes.create_string_buffer(b"/etc/hostname")
    call(nr["openat2"], -100, ctypes.addressof(path), ctypes.addressof(how), 24)
    os.setgroups([7, 8, 9])
    a = ctypes.create_string_buffer(b"hello", 5)
    iov = (ctypes.c_uint64 * 4)(ctypes.addressof(a), 5, ctypes.addressof(a), 3)
    fd = os.open("/dev/null", os.O_WRONLY)
    call(nr["writev"], fd, ctypes.addressof(iov), 2)
    call(nr["ioctl"], 0, 0x5401, 0)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    rx.bind(("127.0.0.1", 0))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.sendmsg([b"abc", b"defgh"], [], 0, rx.getsockname())
    rx.recvmsg(64)
    u1, u2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    u1.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("<i", fd))])
    u2.recvmsg(8, socket.CMSG_SPACE(4))
    mm = LIBC.mmap
    mm.restype = ctypes.c_void_p
    p = mm(None, 4096, 3, 0x22, -1, 0)
    LIBC.mprotect(ctypes.c_void_p(p), 4096, 1)


if __name__ == "__main__":
    empty_calls()
    real_calls()
