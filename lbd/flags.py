"""Symbolic names for the integer arguments the syscall table marks ``kind: "flags"``.

The table (lbd/syscall_table.json) names a flag set per argument (``"flags": "open_flags"``);
:func:`names` turns a captured value into text the way strace does::

    >>> names("open_flags", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC)
    'O_WRONLY|O_CREAT|O_CLOEXEC'
    >>> names("signal", 9)
    'SIGKILL'

A flag set has one of three shapes:

* an enumeration (``signal``, ``socket_family``, ``fcntl_cmd``, ...): the one name, or the
  decimal number when the value has no name;
* a bit mask (``at_flags``, ``msg_flags``, ``mmap_prot``, ...): the names of the bits that are
  set, joined by ``|``, then the bits without a name as one hex number; a zero value is the
  set's zero name (``PROT_NONE``, ``F_OK``) or ``0``;
* a bit mask with an enumerated field in its low bits (``open_flags``: the access mode in
  ``O_ACCMODE``; ``socket_type``: the type in the low 4 bits; ``mmap_flags``: ``MAP_TYPE``;
  ``clone_flags``: the exit signal in ``CSIGNAL``): the field's name first, then the bits.

Values are Linux x86_64 values.  They come from Python's own modules (os, socket, signal, mmap,
fcntl) where those define the constant on Linux; the others are typed once in this file (their
C names and the header they come from are beside them).  tests/unit/test_flags.py checks the
typed values against Python's constants where both exist.
"""
from __future__ import annotations

import fcntl
import mmap
import os
import signal
import socket
from dataclasses import dataclass
from types import ModuleType

from lbd.flagdata import GROUPS as _H

__all__ = ["FlagSet", "Switch", "FLAG_SETS", "SETS", "SWITCHES", "CONSTANTS", "names", "arg_names", "name_values"]

_U64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class FlagSet:
    """One set of symbolic names.

    ``field`` maps values of the enumerated field (the bits in ``field_mask``; the whole value
    when ``field_mask`` is -1) to names; ``bits`` lists (mask, name) in printing order; a mask
    may have several bits (composites such as ``O_SYNC`` = ``__O_SYNC|O_DSYNC``), and those are
    matched before the single bits they contain (``match``).
    ``field_zero``: whether a zero field is printed (``O_RDONLY`` is; a zero socket type is not).
    """

    name: str
    field: dict[int, str]
    field_mask: int = 0
    bits: tuple[tuple[int, str], ...] = ()
    zero: str = "0"
    field_zero: bool = False
    field_names: str | None = None  # another set whose names the field uses (clone: signal)
    match: tuple[tuple[int, str], ...] = ()  # ``bits`` in matching order (derived)

    def __post_init__(self) -> None:
        # Match composite masks (more bits) first, so O_SYNC is not printed as O_DSYNC|0x100000;
        # print in declaration order.
        order = sorted(self.bits, key=lambda vn: -bin(vn[0]).count("1"))
        object.__setattr__(self, "match", tuple(order))

    @property
    def is_enum(self) -> bool:
        return self.field_mask == -1


def _py(module: ModuleType, *names: str) -> dict[str, int]:
    """The named constants of a Python module (all of them must exist on Linux), as plain ints
    (socket's are IntFlag/IntEnum members, whose ``~`` keeps only the known bits)."""
    return {n: int(getattr(module, n)) for n in names}


def _merge(py: dict[str, int], typed: dict[str, int]) -> dict[str, int]:
    """Python's constants first, then the typed ones Python lacks (Python wins on a clash)."""
    out = dict(py)
    for n, v in typed.items():
        out.setdefault(n, v)
    return out


def _enum(name: str, values: dict[str, int]) -> FlagSet:
    field: dict[int, str] = {}
    for n, v in values.items():
        field.setdefault(v, n.split("\0")[0])  # first name wins: aliases listed later are not printed
    return FlagSet(name, field, field_mask=-1)


def _bits(name: str, values: dict[str, int], zero: str = "0") -> FlagSet:
    return FlagSet(name, {}, bits=_order(values), zero=zero)


def _signed32(values: dict[str, int]) -> dict[str, int]:
    """An enumeration with negative values, each also under its unsigned 32-bit form (a flags-kind
    argument is read unsigned)."""
    out = dict(values)
    for n, v in values.items():
        if v < 0:
            out[n + "\0u32"] = v & 0xFFFFFFFF
    return out


def _order(values: dict[str, int]) -> tuple[tuple[int, str], ...]:
    """(mask, name) in declaration order, the first name of a value only."""
    seen: set[int] = set()
    items = []
    for n, v in values.items():
        if v and v not in seen:
            seen.add(v)
            items.append((v, n))
    return tuple(items)


# --- open(2) flags ------------------------------------------------------------------------------
# os.O_LARGEFILE is 0 in 64-bit glibc; the kernel's value (asm-generic/fcntl.h) is typed here.
_O_BITS = _merge(
    _py(os, "O_CREAT", "O_EXCL", "O_NOCTTY", "O_TRUNC", "O_APPEND", "O_NONBLOCK", "O_DSYNC",
        "O_ASYNC", "O_DIRECT", "O_DIRECTORY", "O_NOFOLLOW", "O_NOATIME", "O_CLOEXEC", "O_SYNC",
        "O_PATH", "O_TMPFILE"),
    {"O_LARGEFILE": 0o100000},
)
_O_ACC = _py(os, "O_RDONLY", "O_WRONLY", "O_RDWR")

# --- *at(2) flags (linux/fcntl.h) ---------------------------------------------------------------
_AT = {
    "AT_SYMLINK_NOFOLLOW": 0x100,
    "AT_REMOVEDIR": 0x200,  # 0x200 is also AT_EACCESS (faccessat_flags) and AT_HANDLE_FID
    "AT_SYMLINK_FOLLOW": 0x400,
    "AT_NO_AUTOMOUNT": 0x800,
    "AT_EMPTY_PATH": 0x1000,
    "AT_STATX_FORCE_SYNC": 0x2000,
    "AT_STATX_DONT_SYNC": 0x4000,
    "AT_RECURSIVE": 0x8000,
}
_FACCESSAT = {"AT_SYMLINK_NOFOLLOW": 0x100, "AT_EACCESS": 0x200, "AT_EMPTY_PATH": 0x1000}

# linux/fs.h
_RENAME = {"RENAME_NOREPLACE": 1, "RENAME_EXCHANGE": 2, "RENAME_WHITEOUT": 4}

# --- mmap(2) (asm-generic/mman-common.h, asm/mman.h) --------------------------------------------
_PROT = _merge(
    _py(mmap, "PROT_READ", "PROT_WRITE", "PROT_EXEC"),
    {"PROT_SEM": 0x8, "PROT_GROWSDOWN": 0x01000000, "PROT_GROWSUP": 0x02000000},
)
_MAP_TYPE = _merge(_py(mmap, "MAP_SHARED", "MAP_PRIVATE"), {"MAP_SHARED_VALIDATE": 0x03})
_MAP_BITS = _merge(
    _py(mmap, "MAP_ANONYMOUS", "MAP_DENYWRITE", "MAP_EXECUTABLE", "MAP_POPULATE", "MAP_STACK"),
    {
        "MAP_FIXED": 0x10,
        "MAP_32BIT": 0x40,
        "MAP_GROWSDOWN": 0x100,
        "MAP_LOCKED": 0x2000,
        "MAP_NORESERVE": 0x4000,
        "MAP_NONBLOCK": 0x10000,
        "MAP_HUGETLB": 0x40000,
        "MAP_SYNC": 0x80000,
        "MAP_FIXED_NOREPLACE": 0x100000,
        "MAP_UNINITIALIZED": 0x4000000,
    },
)

# --- sockets (linux/socket.h, linux/net.h) ------------------------------------------------------
_AF = _merge(
    _py(socket, "AF_UNSPEC", "AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET"),
    {
        "AF_AX25": 3, "AF_IPX": 4, "AF_APPLETALK": 5, "AF_NETROM": 6, "AF_BRIDGE": 7,
        "AF_ATMPVC": 8, "AF_X25": 9, "AF_ROSE": 11, "AF_DECnet": 12, "AF_NETBEUI": 13,
        "AF_SECURITY": 14, "AF_KEY": 15, "AF_ASH": 18, "AF_ECONET": 19, "AF_ATMSVC": 20,
        "AF_RDS": 21, "AF_SNA": 22, "AF_IRDA": 23, "AF_PPPOX": 24, "AF_WANPIPE": 25,
        "AF_LLC": 26, "AF_IB": 27, "AF_MPLS": 28, "AF_CAN": 29, "AF_TIPC": 30,
        "AF_BLUETOOTH": 31, "AF_IUCV": 32, "AF_RXRPC": 33, "AF_ISDN": 34, "AF_PHONET": 35,
        "AF_IEEE802154": 36, "AF_CAIF": 37, "AF_ALG": 38, "AF_NFC": 39, "AF_VSOCK": 40,
        "AF_KCM": 41, "AF_QIPCRTR": 42, "AF_SMC": 43, "AF_XDP": 44, "AF_MCTP": 45,
    },
)
_SOCK_TYPE = _merge(
    _py(socket, "SOCK_STREAM", "SOCK_DGRAM", "SOCK_RAW", "SOCK_RDM", "SOCK_SEQPACKET"),
    {"SOCK_DCCP": 6, "SOCK_PACKET": 10},
)
_SOCK_BITS = _py(socket, "SOCK_NONBLOCK", "SOCK_CLOEXEC")
_MSG = _merge(
    _py(socket, "MSG_OOB", "MSG_PEEK", "MSG_DONTROUTE", "MSG_CTRUNC", "MSG_TRUNC",
        "MSG_DONTWAIT", "MSG_EOR", "MSG_WAITALL", "MSG_CONFIRM", "MSG_ERRQUEUE", "MSG_NOSIGNAL",
        "MSG_MORE", "MSG_CMSG_CLOEXEC", "MSG_FASTOPEN"),
    {
        "MSG_PROXY": 0x10, "MSG_FIN": 0x200, "MSG_SYN": 0x400, "MSG_RST": 0x1000,
        "MSG_WAITFORONE": 0x10000, "MSG_BATCH": 0x40000, "MSG_SOCK_DEVMEM": 0x2000000,
        "MSG_ZEROCOPY": 0x4000000,
    },
)
_SHUT = _py(socket, "SHUT_RD", "SHUT_WR", "SHUT_RDWR")

# --- processes (linux/sched.h) ------------------------------------------------------------------
_CLONE = {
    "CLONE_VM": 0x100, "CLONE_FS": 0x200, "CLONE_FILES": 0x400, "CLONE_SIGHAND": 0x800,
    "CLONE_PIDFD": 0x1000, "CLONE_PTRACE": 0x2000, "CLONE_VFORK": 0x4000,
    "CLONE_PARENT": 0x8000, "CLONE_THREAD": 0x10000, "CLONE_NEWNS": 0x20000,
    "CLONE_SYSVSEM": 0x40000, "CLONE_SETTLS": 0x80000, "CLONE_PARENT_SETTID": 0x100000,
    "CLONE_CHILD_CLEARTID": 0x200000, "CLONE_DETACHED": 0x400000, "CLONE_UNTRACED": 0x800000,
    "CLONE_CHILD_SETTID": 0x1000000, "CLONE_NEWCGROUP": 0x2000000, "CLONE_NEWUTS": 0x4000000,
    "CLONE_NEWIPC": 0x8000000, "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000, "CLONE_IO": 0x80000000,
}
_CSIGNAL = 0xFF
# unshare(2)/setns(2): no exit signal in the low byte; CLONE_NEWTIME (0x80) lives there instead.
_UNSHARE = {**_CLONE, "CLONE_NEWTIME": 0x80}

# Kernel numbering of the real-time signals: 32 is the kernel's SIGRTMIN (glibc reserves 32 and
# 33 for itself, so glibc's SIGRTMIN, Python's signal.SIGRTMIN, is 34 = SIGRTMIN+2 here).
_SIGRTMIN, _SIGRTMAX = 32, 64
_SIGNAL = {s.name: int(s.value) for s in signal.Signals if s.value < _SIGRTMIN}
_SIGNAL["SIGRTMIN"] = _SIGRTMIN
for _i in range(1, _SIGRTMAX - _SIGRTMIN):
    _SIGNAL[f"SIGRTMIN+{_i}"] = _SIGRTMIN + _i
_SIGNAL["SIGRTMAX"] = _SIGRTMAX

# access(2)
_ACCESS = _py(os, "R_OK", "W_OK", "X_OK")

# wait4(2), waitid(2) (linux/wait.h)
_WAIT = _merge(
    _py(os, "WNOHANG", "WUNTRACED", "WEXITED", "WCONTINUED", "WNOWAIT"),
    {"__WNOTHREAD": 0x20000000, "__WALL": 0x40000000, "__WCLONE": 0x80000000},
)

# --- fcntl(2), lseek(2) (asm-generic/fcntl.h, linux/fcntl.h) ------------------------------------
_FCNTL = _merge(
    _py(fcntl, "F_DUPFD", "F_GETFD", "F_SETFD", "F_GETFL", "F_SETFL", "F_GETLK", "F_SETLK",
        "F_SETLKW", "F_SETOWN", "F_GETOWN", "F_SETSIG", "F_GETSIG", "F_OFD_GETLK", "F_OFD_SETLK",
        "F_OFD_SETLKW", "F_SETLEASE", "F_GETLEASE", "F_NOTIFY", "F_DUPFD_CLOEXEC",
        "F_SETPIPE_SZ", "F_GETPIPE_SZ", "F_ADD_SEALS", "F_GET_SEALS"),
    {
        "F_SETOWN_EX": 15, "F_GETOWN_EX": 16, "F_GETOWNER_UIDS": 17,
        "F_DUPFD_QUERY": 1027, "F_CREATED_QUERY": 1028, "F_CANCELLK": 1029,
        "F_GET_RW_HINT": 1035, "F_SET_RW_HINT": 1036, "F_GET_FILE_RW_HINT": 1037,
        "F_SET_FILE_RW_HINT": 1038,
    },
)
_SEEK = _py(os, "SEEK_SET", "SEEK_CUR", "SEEK_END", "SEEK_DATA", "SEEK_HOLE")

# --- ptrace(2) (linux/ptrace.h, asm/ptrace-abi.h) -----------------------------------------------
_PTRACE = {
    "PTRACE_TRACEME": 0, "PTRACE_PEEKTEXT": 1, "PTRACE_PEEKDATA": 2, "PTRACE_PEEKUSER": 3,
    "PTRACE_POKETEXT": 4, "PTRACE_POKEDATA": 5, "PTRACE_POKEUSER": 6, "PTRACE_CONT": 7,
    "PTRACE_KILL": 8, "PTRACE_SINGLESTEP": 9, "PTRACE_GETREGS": 12, "PTRACE_SETREGS": 13,
    "PTRACE_GETFPREGS": 14, "PTRACE_SETFPREGS": 15, "PTRACE_ATTACH": 16, "PTRACE_DETACH": 17,
    "PTRACE_GETFPXREGS": 18, "PTRACE_SETFPXREGS": 19, "PTRACE_SYSCALL": 24,
    "PTRACE_GET_THREAD_AREA": 25, "PTRACE_SET_THREAD_AREA": 26, "PTRACE_ARCH_PRCTL": 30,
    "PTRACE_SYSEMU": 31, "PTRACE_SYSEMU_SINGLESTEP": 32, "PTRACE_SINGLEBLOCK": 33,
    "PTRACE_SETOPTIONS": 0x4200, "PTRACE_GETEVENTMSG": 0x4201, "PTRACE_GETSIGINFO": 0x4202,
    "PTRACE_SETSIGINFO": 0x4203, "PTRACE_GETREGSET": 0x4204, "PTRACE_SETREGSET": 0x4205,
    "PTRACE_SEIZE": 0x4206, "PTRACE_INTERRUPT": 0x4207, "PTRACE_LISTEN": 0x4208,
    "PTRACE_PEEKSIGINFO": 0x4209, "PTRACE_GETSIGMASK": 0x420A, "PTRACE_SETSIGMASK": 0x420B,
    "PTRACE_SECCOMP_GET_FILTER": 0x420C, "PTRACE_SECCOMP_GET_METADATA": 0x420D,
    "PTRACE_GET_SYSCALL_INFO": 0x420E, "PTRACE_GET_RSEQ_CONFIGURATION": 0x420F,
    "PTRACE_SET_SYSCALL_USER_DISPATCH_CONFIG": 0x4210,
    "PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG": 0x4211, "PTRACE_SET_SYSCALL_INFO": 0x4212,
}

# --- prctl(2) (linux/prctl.h) -------------------------------------------------------------------
_PRCTL = {
    "PR_SET_PDEATHSIG": 1, "PR_GET_PDEATHSIG": 2, "PR_GET_DUMPABLE": 3, "PR_SET_DUMPABLE": 4,
    "PR_GET_UNALIGN": 5, "PR_SET_UNALIGN": 6, "PR_GET_KEEPCAPS": 7, "PR_SET_KEEPCAPS": 8,
    "PR_GET_FPEMU": 9, "PR_SET_FPEMU": 10, "PR_GET_FPEXC": 11, "PR_SET_FPEXC": 12,
    "PR_GET_TIMING": 13, "PR_SET_TIMING": 14, "PR_SET_NAME": 15, "PR_GET_NAME": 16,
    "PR_GET_ENDIAN": 19, "PR_SET_ENDIAN": 20, "PR_GET_SECCOMP": 21, "PR_SET_SECCOMP": 22,
    "PR_CAPBSET_READ": 23, "PR_CAPBSET_DROP": 24, "PR_GET_TSC": 25, "PR_SET_TSC": 26,
    "PR_GET_SECUREBITS": 27, "PR_SET_SECUREBITS": 28, "PR_SET_TIMERSLACK": 29,
    "PR_GET_TIMERSLACK": 30, "PR_TASK_PERF_EVENTS_DISABLE": 31,
    "PR_TASK_PERF_EVENTS_ENABLE": 32, "PR_MCE_KILL": 33, "PR_MCE_KILL_GET": 34,
    "PR_SET_MM": 35, "PR_SET_CHILD_SUBREAPER": 36, "PR_GET_CHILD_SUBREAPER": 37,
    "PR_SET_NO_NEW_PRIVS": 38, "PR_GET_NO_NEW_PRIVS": 39, "PR_GET_TID_ADDRESS": 40,
    "PR_SET_THP_DISABLE": 41, "PR_GET_THP_DISABLE": 42, "PR_MPX_ENABLE_MANAGEMENT": 43,
    "PR_MPX_DISABLE_MANAGEMENT": 44, "PR_SET_FP_MODE": 45, "PR_GET_FP_MODE": 46,
    "PR_CAP_AMBIENT": 47, "PR_SVE_SET_VL": 50, "PR_SVE_GET_VL": 51,
    "PR_GET_SPECULATION_CTRL": 52, "PR_SET_SPECULATION_CTRL": 53, "PR_PAC_RESET_KEYS": 54,
    "PR_SET_TAGGED_ADDR_CTRL": 55, "PR_GET_TAGGED_ADDR_CTRL": 56, "PR_SET_IO_FLUSHER": 57,
    "PR_GET_IO_FLUSHER": 58, "PR_SET_SYSCALL_USER_DISPATCH": 59, "PR_PAC_SET_ENABLED_KEYS": 60,
    "PR_PAC_GET_ENABLED_KEYS": 61, "PR_SCHED_CORE": 62, "PR_SME_SET_VL": 63,
    "PR_SME_GET_VL": 64, "PR_SET_MDWE": 65, "PR_GET_MDWE": 66, "PR_SET_MEMORY_MERGE": 67,
    "PR_GET_MEMORY_MERGE": 68, "PR_RISCV_V_SET_CONTROL": 69, "PR_RISCV_V_GET_CONTROL": 70,
    "PR_RISCV_SET_ICACHE_FLUSH_CTX": 71, "PR_PPC_GET_DEXCR": 72, "PR_PPC_SET_DEXCR": 73,
    "PR_GET_SHADOW_STACK_STATUS": 74, "PR_SET_SHADOW_STACK_STATUS": 75,
    "PR_LOCK_SHADOW_STACK_STATUS": 76, "PR_TIMER_CREATE_RESTORE_IDS": 77, "PR_FUTEX_HASH": 78,
    "PR_GET_AUXV": 0x41555856, "PR_SET_VMA": 0x53564D41, "PR_SET_PTRACER": 0x59616D61,
}

# --- mount(2), umount2(2) (linux/mount.h) -------------------------------------------------------
_MS = {
    "MS_MGC_VAL": 0xC0ED0000,  # obsolete magic in the upper 16 bits, still accepted
    "MS_RDONLY": 1, "MS_NOSUID": 2, "MS_NODEV": 4, "MS_NOEXEC": 8, "MS_SYNCHRONOUS": 16,
    "MS_REMOUNT": 32, "MS_MANDLOCK": 64, "MS_DIRSYNC": 128, "MS_NOSYMFOLLOW": 256,
    "MS_NOATIME": 1024, "MS_NODIRATIME": 2048, "MS_BIND": 4096, "MS_MOVE": 8192,
    "MS_REC": 16384, "MS_SILENT": 32768, "MS_POSIXACL": 1 << 16, "MS_UNBINDABLE": 1 << 17,
    "MS_PRIVATE": 1 << 18, "MS_SLAVE": 1 << 19, "MS_SHARED": 1 << 20, "MS_RELATIME": 1 << 21,
    "MS_KERNMOUNT": 1 << 22, "MS_I_VERSION": 1 << 23, "MS_STRICTATIME": 1 << 24,
    "MS_LAZYTIME": 1 << 25,
}
_UMOUNT = {"MNT_FORCE": 1, "MNT_DETACH": 2, "MNT_EXPIRE": 4, "UMOUNT_NOFOLLOW": 8}

# --- memfd_create(2) (linux/memfd.h), close_range(2) (linux/close_range.h) ----------------------
_MFD = {"MFD_CLOEXEC": 1, "MFD_ALLOW_SEALING": 2, "MFD_HUGETLB": 4, "MFD_NOEXEC_SEAL": 8,
        "MFD_EXEC": 0x10}
_CLOSE_RANGE = {"CLOSE_RANGE_UNSHARE": 2, "CLOSE_RANGE_CLOEXEC": 4}

# finit_module(2) (linux/module.h)
_MODULE_INIT = {"MODULE_INIT_IGNORE_MODVERSIONS": 1, "MODULE_INIT_IGNORE_VERMAGIC": 2,
                "MODULE_INIT_COMPRESSED_FILE": 4}

# --- bpf(2) commands (linux/bpf.h enum bpf_cmd) -------------------------------------------------
_BPF_CMD = {
    n: i for i, n in enumerate((
        "BPF_MAP_CREATE", "BPF_MAP_LOOKUP_ELEM", "BPF_MAP_UPDATE_ELEM", "BPF_MAP_DELETE_ELEM",
        "BPF_MAP_GET_NEXT_KEY", "BPF_PROG_LOAD", "BPF_OBJ_PIN", "BPF_OBJ_GET",
        "BPF_PROG_ATTACH", "BPF_PROG_DETACH", "BPF_PROG_TEST_RUN", "BPF_PROG_GET_NEXT_ID",
        "BPF_MAP_GET_NEXT_ID", "BPF_PROG_GET_FD_BY_ID", "BPF_MAP_GET_FD_BY_ID",
        "BPF_OBJ_GET_INFO_BY_FD", "BPF_PROG_QUERY", "BPF_RAW_TRACEPOINT_OPEN", "BPF_BTF_LOAD",
        "BPF_BTF_GET_FD_BY_ID", "BPF_TASK_FD_QUERY", "BPF_MAP_LOOKUP_AND_DELETE_ELEM",
        "BPF_MAP_FREEZE", "BPF_BTF_GET_NEXT_ID", "BPF_MAP_LOOKUP_BATCH",
        "BPF_MAP_LOOKUP_AND_DELETE_BATCH", "BPF_MAP_UPDATE_BATCH", "BPF_MAP_DELETE_BATCH",
        "BPF_LINK_CREATE", "BPF_LINK_UPDATE", "BPF_LINK_GET_FD_BY_ID", "BPF_LINK_GET_NEXT_ID",
        "BPF_ENABLE_STATS", "BPF_ITER_CREATE", "BPF_LINK_DETACH", "BPF_PROG_BIND_MAP",
        "BPF_TOKEN_CREATE", "BPF_PROG_STREAM_READ_BY_FD",
    ))
}


# --- flags of the calls that take only a few open(2) flags ---------------------------------------
_DUP3 = _py(os, "O_CLOEXEC")
_PIPE2 = _merge(_py(os, "O_CLOEXEC", "O_DIRECT", "O_NONBLOCK"), {"O_NOTIFICATION_PIPE": os.O_EXCL})
_EPOLL_CREATE = {"EPOLL_CLOEXEC": os.O_CLOEXEC}                  # sys/epoll.h
_INOTIFY_INIT = {"IN_NONBLOCK": os.O_NONBLOCK, "IN_CLOEXEC": os.O_CLOEXEC}    # linux/inotify.h

# --- capabilities (linux/capability.h): numbers, and 64-bit masks of 1 << number ------------------
_CAP = _H["capability"]
_CAP_MASK = {n: 1 << v for n, v in _CAP.items()}
# prctl(PR_CAP_AMBIENT, op) (linux/prctl.h)
_CAP_AMBIENT = {"PR_CAP_AMBIENT_IS_SET": 1, "PR_CAP_AMBIENT_RAISE": 2, "PR_CAP_AMBIENT_LOWER": 3,
                "PR_CAP_AMBIENT_CLEAR_ALL": 4}
_DUMPABLE = {"SUID_DUMP_DISABLE": 0, "SUID_DUMP_USER": 1}
_PR_SET_MM = {
    "PR_SET_MM_START_CODE": 1, "PR_SET_MM_END_CODE": 2, "PR_SET_MM_START_DATA": 3,
    "PR_SET_MM_END_DATA": 4, "PR_SET_MM_START_STACK": 5, "PR_SET_MM_START_BRK": 6, "PR_SET_MM_BRK": 7,
    "PR_SET_MM_ARG_START": 8, "PR_SET_MM_ARG_END": 9, "PR_SET_MM_ENV_START": 10,
    "PR_SET_MM_ENV_END": 11, "PR_SET_MM_AUXV": 12, "PR_SET_MM_EXE_FILE": 13, "PR_SET_MM_MAP": 14,
    "PR_SET_MM_MAP_SIZE": 15,
}

# --- seccomp(2), siginfo (asm-generic/siginfo.h) ---------------------------------------------------
_SI_CODE = {"SI_USER": 0, "SI_KERNEL": 0x80, "SI_QUEUE": -1, "SI_TIMER": -2, "SI_MESGQ": -3,
            "SI_ASYNCIO": -4, "SI_SIGIO": -5, "SI_TKILL": -6, "SI_DETHREAD": -7, "SI_ASYNCNL": -60}

# --- sockets: protocols, option levels and names, control messages ---------------------------------
_SOL = {"SOL_IP": 0, "SOL_SOCKET": 1, "SOL_TCP": 6, "SOL_UDP": 17, "SOL_IPV6": 41, "SOL_ICMPV6": 58,
        "SOL_RAW": 255, "SOL_PACKET": 263, "SOL_NETLINK": 270, "SOL_ALG": 279, "SOL_TLS": 282}
_IPV6_OPT = _py(socket, "IPV6_CHECKSUM", "IPV6_DONTFRAG", "IPV6_DSTOPTS", "IPV6_HOPLIMIT",
                "IPV6_HOPOPTS", "IPV6_JOIN_GROUP", "IPV6_LEAVE_GROUP", "IPV6_MULTICAST_HOPS",
                "IPV6_MULTICAST_IF", "IPV6_MULTICAST_LOOP", "IPV6_NEXTHOP", "IPV6_PATHMTU",
                "IPV6_PKTINFO", "IPV6_RECVDSTOPTS", "IPV6_RECVHOPLIMIT", "IPV6_RECVHOPOPTS",
                "IPV6_RECVPATHMTU", "IPV6_RECVPKTINFO", "IPV6_RECVRTHDR", "IPV6_RECVTCLASS",
                "IPV6_RTHDR", "IPV6_RTHDRDSTOPTS", "IPV6_TCLASS", "IPV6_UNICAST_HOPS", "IPV6_V6ONLY")
_SCM = {"SCM_RIGHTS": 1, "SCM_CREDENTIALS": 2, "SCM_SECURITY": 3, "SCM_PIDFD": 4}
# SO_TIMESTAMP* and SO_RCVTIMEO / SO_SNDTIMEO are the 64-bit time_t variants on x86_64
_SO_OPT = _merge(_H["so_opt"], {"SO_TIMESTAMP": 29, "SO_TIMESTAMPNS": 35, "SO_TIMESTAMPING": 37,
                                "SO_RCVTIMEO": 20, "SO_SNDTIMEO": 21})

# --- ioctl(2): the common requests (asm-generic/ioctls.h, linux/sockios.h; the _IOC ones typed) ---
_IOCTL = _merge(_merge(_H["ioctl_tty"], _H["ioctl_sock"]), {
    "FICLONE": 0x40049409, "FICLONERANGE": 0x4020940D, "FIDEDUPERANGE": 0xC0189436,
    "FS_IOC_GETFLAGS": 0x80086601, "FS_IOC_SETFLAGS": 0x40086602,
    "TIOCGPTN": 0x80045430, "TIOCSPTLCK": 0x40045431, "TIOCGPTPEER": 0x5441,
    "PERF_EVENT_IOC_ENABLE": 0x2400, "PERF_EVENT_IOC_DISABLE": 0x2401,
    "PERF_EVENT_IOC_REFRESH": 0x2402, "PERF_EVENT_IOC_RESET": 0x2403,
    "PERF_EVENT_IOC_SET_BPF": 0x40042408, "PERF_EVENT_IOC_ID": 0x80082407,
    "NS_GET_USERNS": 0xB701, "NS_GET_PARENT": 0xB702, "NS_GET_NSTYPE": 0xB703,
    "NS_GET_OWNER_UID": 0xB704, "SECCOMP_IOCTL_NOTIF_RECV": 0xC0502100,
    "SECCOMP_IOCTL_NOTIF_SEND": 0xC0182101, "LOOP_SET_FD": 0x4C00, "LOOP_CLR_FD": 0x4C01,
    "LOOP_CTL_GET_FREE": 0x4C82, "RNDGETENTCNT": 0x80045200, "RNDADDENTROPY": 0x40085203,
    "KDGKBTYPE": 0x4B33, "VT_GETSTATE": 0x5603, "BLKGETSIZE64": 0x80081272, "BLKSSZGET": 0x1268,
})

# --- perf_event_open(2) (linux/perf_event.h): flags, and attr.config by attr.type ----------------
_PERF_TYPE = _H["perf_type"]

#: every flag set by name
SETS: dict[str, FlagSet] = {
    s.name: s
    for s in (
        FlagSet("open_flags", {v: n for n, v in _O_ACC.items()}, field_mask=os.O_ACCMODE,
                bits=_order(_O_BITS), field_zero=True),
        _bits("at_flags", _AT),
        _bits("faccessat_flags", _FACCESSAT),
        _bits("rename_flags", _RENAME),
        _bits("mmap_prot", _PROT, zero="PROT_NONE"),
        FlagSet("mmap_flags", {v: n for n, v in _MAP_TYPE.items()}, field_mask=0x0F,
                bits=_order(_MAP_BITS), zero="MAP_FILE"),
        _enum("socket_family", _AF),
        FlagSet("socket_type", {v: n for n, v in _SOCK_TYPE.items()}, field_mask=0x0F,
                bits=_order(_SOCK_BITS)),
        _bits("msg_flags", _MSG),
        _enum("shutdown_how", _SHUT),
        FlagSet("clone_flags", {}, field_mask=_CSIGNAL, bits=_order(_CLONE),
                field_names="signal"),
        _bits("unshare_flags", _UNSHARE),
        _enum("signal", _SIGNAL),
        _bits("access_mode", _ACCESS, zero="F_OK"),
        _bits("wait_options", _WAIT),
        _enum("fcntl_cmd", _FCNTL),
        _enum("seek_whence", _SEEK),
        _enum("ptrace_request", _PTRACE),
        _enum("prctl_option", _PRCTL),
        _bits("mount_flags", _MS),
        _bits("umount_flags", _UMOUNT),
        _bits("memfd_flags", _MFD),
        _bits("close_range_flags", _CLOSE_RANGE),
        _bits("module_init_flags", _MODULE_INIT),
        _enum("bpf_cmd", _BPF_CMD),
        _bits("dup3_flags", _DUP3),
        _bits("pipe2_flags", _PIPE2),
        _bits("epoll_create1_flags", _EPOLL_CREATE),
        _bits("inotify_init1_flags", _INOTIFY_INIT),
        _enum("capability", _CAP),
        _bits("cap_mask", _CAP_MASK),
        _enum("cap_version", _H["cap_version"]),
        _enum("cap_ambient_op", _CAP_AMBIENT),
        _enum("suid_dumpable", _DUMPABLE),
        _enum("pr_set_mm", _PR_SET_MM),
        _enum("bpf_map_type", _H["bpf_map_type"]),
        _enum("bpf_prog_type", _H["bpf_prog_type"]),
        _enum("bpf_attach_type", _H["bpf_attach_type"]),
        _enum("seccomp_op", _H["seccomp_op"]),
        _enum("seccomp_mode", _H["seccomp_mode"]),
        _bits("seccomp_filter_flags", _H["seccomp_filter_flags"]),
        _bits("resolve_flags", _H["resolve"]),
        _bits("clone3_flags", _H["clone"]),
        _enum("perf_type", _PERF_TYPE),
        _enum("perf_hw", _H["perf_hw"]),
        _enum("perf_sw", _H["perf_sw"]),
        _bits("perf_flags", _H["perf_flag"]),
        _bits("io_uring_setup_flags", _H["io_uring_setup"]),
        _enum("keyctl_op", _H["keyctl_op"]),
        _enum("key_spec", _signed32(_H["key_spec"])),
        _bits("fanotify_mark_flags", _H["fan_mark"]),
        _bits("fanotify_mask", _H["fan_event"]),
        FlagSet("fanotify_init_flags", {0: "FAN_CLASS_NOTIF", 4: "FAN_CLASS_CONTENT", 8: "FAN_CLASS_PRE_CONTENT"},
                field_mask=0x0C, bits=_order({n: v for n, v in _H["fan_init"].items() if not n.startswith("FAN_CLASS")}),
                field_zero=True),
        _bits("inotify_mask", _H["inotify"]),
        _bits("statx_mask", _H["statx_mask"]),
        _enum("ipproto", _H["ipproto"]),
        _enum("netlink_proto", _H["netlink_proto"]),
        _enum("sockopt_level", _SOL),
        _enum("so_opt", _SO_OPT),
        _enum("ip_opt", _H["ip_opt"]),
        _enum("ipv6_opt", _IPV6_OPT),
        _enum("tcp_opt", _H["tcp_opt"]),
        _enum("scm_type", _SCM),
        _enum("si_code", _signed32(_SI_CODE)),
        _enum("ioctl_cmd", _IOCTL),
    )
}


@dataclass(frozen=True, slots=True)
class Switch:
    """A name set chosen by another value: the set of ``cases[v]`` where v is the value of the
    argument (or struct field) ``on``; ``default`` for the other values (None: no names)."""

    name: str
    on: str
    cases: dict[int, str | None]
    default: str | None = None

    def set_for(self, other: int) -> str | None:
        return self.cases.get(other, self.default)


_PR = _PRCTL
#: name sets that depend on another argument (prctl's arg2 on its option, ...)
SWITCHES: dict[str, Switch] = {
    s.name: s
    for s in (
        Switch("prctl_arg2", "option", {
            _PR["PR_SET_PDEATHSIG"]: "signal", _PR["PR_CAPBSET_READ"]: "capability",
            _PR["PR_CAPBSET_DROP"]: "capability", _PR["PR_SET_SECCOMP"]: "seccomp_mode",
            _PR["PR_CAP_AMBIENT"]: "cap_ambient_op", _PR["PR_SET_DUMPABLE"]: "suid_dumpable",
            _PR["PR_SET_MM"]: "pr_set_mm"}),
        Switch("prctl_arg3", "option", {_PR["PR_CAP_AMBIENT"]: "capability"}),
        Switch("socket_protocol", "family", {
            socket.AF_INET: "ipproto", socket.AF_INET6: "ipproto", socket.AF_NETLINK: "netlink_proto"}),
        Switch("sockopt_name", "level", {
            _SOL["SOL_SOCKET"]: "so_opt", _SOL["SOL_IP"]: "ip_opt", _SOL["SOL_IPV6"]: "ipv6_opt",
            _SOL["SOL_TCP"]: "tcp_opt"}),
        # keyctl's arg2 is a key serial (or a KEY_SPEC_*) for nearly every operation
        Switch("keyctl_arg2", "option", {_H["keyctl_op"]["KEYCTL_JOIN_SESSION_KEYRING"]: None,
                                         _H["keyctl_op"]["KEYCTL_SET_REQKEY_KEYRING"]: None,
                                         _H["keyctl_op"]["KEYCTL_GET_PERSISTENT"]: None,
                                         _H["keyctl_op"]["KEYCTL_CAPABILITIES"]: None}, default="key_spec"),
        Switch("perf_config", "type", {_PERF_TYPE["PERF_TYPE_HARDWARE"]: "perf_hw",
                                       _PERF_TYPE["PERF_TYPE_SOFTWARE"]: "perf_sw"}),
    )
}

#: the names of all flag sets (what the syscall table may name)
FLAG_SETS: frozenset[str] = frozenset(SETS) | frozenset(SWITCHES)

#: every constant this module knows, set by set: {set: {name: value}} (for tests and docs)
CONSTANTS: dict[str, dict[str, int]] = {}
for _s in SETS.values():
    _c = {n: v for v, n in _s.field.items()}
    _c.update({n: v for v, n in _s.bits})
    CONSTANTS[_s.name] = _c


def name_values(flagset: str) -> dict[str, int]:
    """Every name a filter may give for a value of ``flagset``: its constants, the name it prints
    for 0 and its field's names; for a :class:`Switch`, the names of all its sets that mean one
    value in all of them (the filter compares numbers, with no other argument to choose a set)."""
    sw = SWITCHES.get(flagset)
    if sw is not None:
        out: dict[str, int] = {}
        clash: set[str] = set()
        for sub in {*sw.cases.values(), sw.default} - {None}:
            for n, v in name_values(sub).items():
                if out.setdefault(n, v) != v:
                    clash.add(n)
        return {n: v for n, v in out.items() if n not in clash}
    fs = SETS[flagset]
    out = dict(CONSTANTS[flagset])
    if fs.zero != "0":
        out.setdefault(fs.zero, 0)            # what names() prints for 0 (F_OK, PROT_NONE)
    if fs.field_names:
        out.update({n: v for v, n in SETS[fs.field_names].field.items()})
    return out


def names(flagset: str, value: int) -> str:
    """The symbolic form of ``value`` in ``flagset`` (see the module docstring).

    Raises KeyError for an unknown flag set.
    """
    if flagset in SWITCHES:
        return str(int(value))      # a Switch needs the other argument: arg_names(); alone, the number
    try:
        fs = SETS[flagset]
    except KeyError:
        raise KeyError(f"unknown flag set {flagset!r}; known: {', '.join(sorted(SETS))}") from None
    value = int(value)
    if fs.is_enum:
        return fs.field.get(value, str(value))
    value &= _U64
    parts: list[str] = []
    if fs.field_mask:
        fv = value & fs.field_mask
        value &= ~fs.field_mask
        field = SETS[fs.field_names].field if fs.field_names else fs.field
        if fv or fs.field_zero:
            parts.append(field.get(fv, hex(fv)))
    matched = set()
    for mask, name in fs.match:
        if value & mask == mask:
            matched.add(name)
            value &= ~mask
    parts.extend(name for _, name in fs.bits if name in matched)
    if value:
        parts.append(hex(value))
    return "|".join(parts) if parts else fs.zero


def arg_names(flagset: str, value: int, others) -> str | None:
    """The symbolic form of an argument (or struct field) in ``flagset``, a flag set or a
    :class:`Switch`; ``others`` maps the names of the other arguments (fields) to their values
    (a Switch reads its ``on`` there).  None when a Switch has no set for that value."""
    sw = SWITCHES.get(flagset)
    if sw is None:
        return names(flagset, value)
    other = others.get(sw.on) if others is not None else None
    if other is None:
        return None
    fs = sw.set_for(int(other))
    return None if fs is None else names(fs, value)
