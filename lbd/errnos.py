"""Error numbers by name and back: what a failed syscall's result means.

A syscall fails with a result in -4095 .. -1 (the kernel's error range, MAX_ERRNO); its errno is
the negated result.  Names come from Python's errno module, with the kernel's own name where
Python's table prefers a C library alias (95 is EOPNOTSUPP and 35 EDEADLK, as in
<asm-generic/errno.h> and strace; ENOTSUP and EDEADLOCK are accepted as input).  The kernel's
restart codes (512 ERESTARTSYS ... 516), which a syscall-exit probe sees when a signal interrupts
a call, are not in Python's module: they are typed below from <linux/errno.h>.

    >>> name(13), message(13), number("EACCES"), error_of(-13)
    ('EACCES', 'Permission denied', 13, 13)
"""
from __future__ import annotations

import errno as _errno
import os

__all__ = ["MAX_ERRNO", "NAMES", "NUMBERS", "name", "message", "number", "error_of"]

#: the largest errno a syscall returns (results -MAX_ERRNO .. -1 are errors)
MAX_ERRNO = 4095

# <linux/errno.h>: never seen by programs, seen by a probe at syscall exit (with strace's texts)
_KERNEL = {
    512: ("ERESTARTSYS", "To be restarted if SA_RESTART is set"),
    513: ("ERESTARTNOINTR", "To be restarted"),
    514: ("ERESTARTNOHAND", "To be restarted if no handler"),
    515: ("ENOIOCTLCMD", "No ioctl command"),
    516: ("ERESTART_RESTARTBLOCK", "Interrupted by signal"),
}

#: errno -> name
NAMES: dict[int, str] = dict(_errno.errorcode)
NAMES[_errno.EOPNOTSUPP] = "EOPNOTSUPP"
NAMES[_errno.EDEADLK] = "EDEADLK"
NAMES.update({n: v[0] for n, v in _KERNEL.items()})

#: name -> errno, aliases included (EWOULDBLOCK, ENOTSUP, EDEADLOCK)
NUMBERS: dict[str, int] = {n: getattr(_errno, n) for n in dir(_errno)
                           if n.startswith("E") and isinstance(getattr(_errno, n), int)}
NUMBERS.update({v: n for n, v in NAMES.items()})


def name(err: int) -> str | None:
    """The name of errno `err` (EACCES), or None when it has none."""
    return NAMES.get(err)


def message(err: int) -> str:
    """The text of errno `err` (strerror: "Permission denied")."""
    k = _KERNEL.get(err)
    return k[1] if k else os.strerror(err)


def number(text: str) -> int | None:
    """The errno a name stands for (EACCES -> 13; aliases too), or None."""
    return NUMBERS.get(text)


def error_of(res: int) -> int | None:
    """The errno of a syscall result: -res when res is in -MAX_ERRNO .. -1, else None."""
    return -res if -MAX_ERRNO <= res < 0 else None
