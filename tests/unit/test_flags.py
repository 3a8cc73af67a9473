"""Symbolic names of flag sets (lbd/flags.py)."""
from __future__ import annotations

import fcntl
import mmap
import os
import signal
import socket

import pytest

from lbd import layouts
from lbd import flags, syscalls
from lbd.flags import FLAG_SETS, names

REQUIRED = {
    "open_flags", "at_flags", "rename_flags", "mmap_prot", "mmap_flags", "socket_family",
    "socket_type", "msg_flags", "clone_flags", "signal", "access_mode", "fcntl_cmd",
    "seek_whence", "ptrace_request", "prctl_option",
}


def test_flag_sets():
    assert REQUIRED <= FLAG_SETS
    assert FLAG_SETS == frozenset(flags.SETS) | frozenset(flags.SWITCHES)
    for sw in flags.SWITCHES.values():           # a Switch chooses among flag sets
        assert {s for s in sw.cases.values() if s} | ({sw.default} - {None}) <= set(flags.SETS)


def test_every_set_the_table_names_exists_and_every_set_is_used():
    used = {a.flags for s in syscalls.TABLE for a in s.args if a.flags}
    assert used <= FLAG_SETS
    # sets a Switch chooses, and the sets of structure fields (lbd/layouts.py) are used too
    used |= {f.flags for lay in layouts.LAYOUTS.values() for f in lay.all_fields().values() if f.flags}
    for sw in flags.SWITCHES.values():
        if sw.name in used:
            used |= {s for s in sw.cases.values() if s} | ({sw.default} - {None})
    used |= {"scm_type"}                         # the control messages of a msghdr
    assert FLAG_SETS - used == set(), "flag sets nobody uses"


@pytest.mark.parametrize("flagset,value,text", [
    ("open_flags", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, "O_WRONLY|O_CREAT|O_CLOEXEC"),
    ("open_flags", os.O_RDONLY, "O_RDONLY"),
    ("open_flags", os.O_RDWR | os.O_TRUNC | os.O_APPEND, "O_RDWR|O_TRUNC|O_APPEND"),
    ("open_flags", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, "O_RDONLY|O_DIRECTORY|O_NOFOLLOW"),
    ("open_flags", os.O_WRONLY | os.O_TMPFILE, "O_WRONLY|O_TMPFILE"),      # not O_DIRECTORY|...
    ("open_flags", os.O_WRONLY | os.O_SYNC, "O_WRONLY|O_SYNC"),            # not O_DSYNC|...
    ("open_flags", os.O_WRONLY | os.O_DSYNC, "O_WRONLY|O_DSYNC"),
    ("open_flags", os.O_RDONLY | 0o100000, "O_RDONLY|O_LARGEFILE"),
    ("open_flags", os.O_RDWR | os.O_PATH | 0x4000000000, "O_RDWR|O_PATH|0x4000000000"),
    ("at_flags", 0x200, "AT_REMOVEDIR"),
    ("at_flags", 0x100 | 0x1000, "AT_SYMLINK_NOFOLLOW|AT_EMPTY_PATH"),
    ("at_flags", 0, "0"),
    ("at_flags", 0x1, "0x1"),
    ("faccessat_flags", 0x200, "AT_EACCESS"),
    ("rename_flags", 1, "RENAME_NOREPLACE"),
    ("rename_flags", 2 | 4, "RENAME_EXCHANGE|RENAME_WHITEOUT"),
    ("socket_family", socket.AF_INET6, "AF_INET6"),
    ("socket_family", socket.AF_UNIX, "AF_UNIX"),
    ("socket_family", socket.AF_NETLINK, "AF_NETLINK"),
    ("socket_family", 45, "AF_MCTP"),
    ("socket_family", 99, "99"),
    ("socket_type", socket.SOCK_STREAM | socket.SOCK_CLOEXEC, "SOCK_STREAM|SOCK_CLOEXEC"),
    ("socket_type", socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
     "SOCK_DGRAM|SOCK_NONBLOCK|SOCK_CLOEXEC"),
    ("socket_type", socket.SOCK_CLOEXEC, "SOCK_CLOEXEC"),     # accept4's flags
    ("socket_type", 0, "0"),
    ("socket_type", 524290, "SOCK_DGRAM|SOCK_CLOEXEC"),       # the seed's example
    ("mmap_prot", mmap.PROT_READ | mmap.PROT_EXEC, "PROT_READ|PROT_EXEC"),
    ("mmap_prot", 0, "PROT_NONE"),
    ("mmap_flags", mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, "MAP_PRIVATE|MAP_ANONYMOUS"),
    ("mmap_flags", mmap.MAP_SHARED | 0x10, "MAP_SHARED|MAP_FIXED"),
    ("msg_flags", socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL, "MSG_DONTWAIT|MSG_NOSIGNAL"),
    ("msg_flags", 0, "0"),
    ("signal", signal.SIGKILL, "SIGKILL"),
    ("signal", signal.SIGTERM, "SIGTERM"),
    ("signal", 0, "0"),
    ("signal", 32, "SIGRTMIN"),
    ("signal", 34, "SIGRTMIN+2"),
    ("signal", 64, "SIGRTMAX"),
    ("signal", 65, "65"),
    ("signal", -1, "-1"),
    ("clone_flags", 0x01200000 | signal.SIGCHLD,
     "SIGCHLD|CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID"),       # glibc fork()
    ("clone_flags", 0x3D0F00,                                  # pthread_create()
     "CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM|CLONE_SETTLS|"
     "CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID"),
    ("unshare_flags", 0x20000 | 0x10000000 | 0x80, "CLONE_NEWNS|CLONE_NEWUSER|CLONE_NEWTIME"),
    ("access_mode", os.F_OK, "F_OK"),
    ("access_mode", os.R_OK | os.W_OK, "R_OK|W_OK"),
    ("fcntl_cmd", fcntl.F_SETFD, "F_SETFD"),
    ("fcntl_cmd", fcntl.F_DUPFD_CLOEXEC, "F_DUPFD_CLOEXEC"),
    ("seek_whence", os.SEEK_END, "SEEK_END"),
    ("ptrace_request", 16, "PTRACE_ATTACH"),
    ("ptrace_request", 0x4206, "PTRACE_SEIZE"),
    ("prctl_option", 15, "PR_SET_NAME"),
    ("prctl_option", 38, "PR_SET_NO_NEW_PRIVS"),
    ("mount_flags", 4096 | 16384, "MS_BIND|MS_REC"),
    ("mount_flags", 0xC0ED0000 | 1, "MS_MGC_VAL|MS_RDONLY"),
    ("umount_flags", 2, "MNT_DETACH"),
    ("wait_options", os.WNOHANG | 0x40000000, "WNOHANG|__WALL"),
    ("memfd_flags", 1 | 2, "MFD_CLOEXEC|MFD_ALLOW_SEALING"),
    ("close_range_flags", 4, "CLOSE_RANGE_CLOEXEC"),
    ("bpf_cmd", 5, "BPF_PROG_LOAD"),
    ("shutdown_how", socket.SHUT_RDWR, "SHUT_RDWR"),
])
def test_names(flagset, value, text):
    assert names(flagset, value) == text


def test_sign_extended_values_are_masks():
    # a 32-bit flags word sign-extended by the decoder keeps its bits
    assert names("msg_flags", -0x80000000 | 0x2) == "MSG_PEEK|0xffffffff80000000"


def test_unknown_set():
    with pytest.raises(KeyError, match="unknown flag set 'nope'"):
        names("nope", 1)


# Constants lbd.flags types itself whose Python value (glibc's) differs on purpose.
PYTHON_DIFFERS = {
    "O_LARGEFILE",  # 0 in 64-bit glibc; the kernel's value is 0o100000
    "SIGRTMIN",     # glibc's SIGRTMIN is 34; the kernel numbers from 32
}


def test_typed_constants_agree_with_python():
    checked = 0
    for set_name, consts in flags.CONSTANTS.items():
        for name, value in consts.items():
            for module in (os, socket, signal, mmap, fcntl):
                if hasattr(module, name) and name not in PYTHON_DIFFERS:
                    assert int(getattr(module, name)) == value, (set_name, name)
                    checked += 1
    assert checked > 60


def test_no_two_names_for_one_value_in_an_enum():
    for s in flags.SETS.values():
        if s.is_enum:
            # (an enumeration with negative values has each also as unsigned 32 bits: key_spec)
            assert len(set(s.field.values())) == len({v % (1 << 32) for v in s.field}), s.name
        assert len({n for _, n in s.bits}) == len(s.bits), s.name


def test_flagdata_is_generated_from_the_uapi_headers():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, str(root / "tools" / "gen_flags.py"), "--check"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("syscall,arg,value,text", [
    # the calls that take a few open(2) flags name them as strace does (issue 16)
    ("dup3", "flags", os.O_CLOEXEC, "O_CLOEXEC"),
    ("pipe2", "flags", os.O_CLOEXEC | os.O_NONBLOCK, "O_CLOEXEC|O_NONBLOCK"),
    ("epoll_create1", "flags", os.O_CLOEXEC, "EPOLL_CLOEXEC"),
    ("inotify_init1", "flags", os.O_CLOEXEC | os.O_NONBLOCK, "IN_NONBLOCK|IN_CLOEXEC"),
    ("inotify_add_watch", "mask", 0x100 | 0x200, "IN_CREATE|IN_DELETE"),
    ("fanotify_mark", "flags", 1 | 0x10, "FAN_MARK_ADD|FAN_MARK_MOUNT"),
    ("fanotify_init", "flags", 4 | 1, "FAN_CLASS_CONTENT|FAN_CLOEXEC"),
    ("statx", "mask", 0x7FF, "STATX_TYPE|STATX_MODE|STATX_NLINK|STATX_UID|STATX_GID|STATX_ATIME|STATX_MTIME|"
                             "STATX_CTIME|STATX_INO|STATX_SIZE|STATX_BLOCKS"),
    ("ioctl", "cmd", 0x5401, "TCGETS"),
    ("ioctl", "cmd", 0x541B, "FIONREAD"),
    ("keyctl", "option", 0, "KEYCTL_GET_KEYRING_ID"),
    ("add_key", "ringid", (-3) & 0xFFFFFFFF, "KEY_SPEC_SESSION_KEYRING"),
    ("seccomp", "op", 1, "SECCOMP_SET_MODE_FILTER"),
    ("perf_event_open", "flags", 8, "PERF_FLAG_FD_CLOEXEC"),
    ("mmap", "prot", 3, "PROT_READ|PROT_WRITE"),
])
def test_table_arguments_have_their_names(syscall, arg, value, text):
    a = next(a for a in syscalls.lookup(syscall).args if a.name == arg)
    assert flags.names(a.flags, value) == text


@pytest.mark.parametrize("syscall,arg,others,value,text", [
    ("prctl", "arg2", {"option": 24}, 21, "CAP_SYS_ADMIN"),          # PR_CAPBSET_DROP
    ("prctl", "arg2", {"option": 1}, 9, "SIGKILL"),                  # PR_SET_PDEATHSIG
    ("prctl", "arg2", {"option": 15}, 0x7FFD0000, None),             # PR_SET_NAME: a pointer
    ("prctl", "arg3", {"option": 47}, 12, "CAP_NET_ADMIN"),          # PR_CAP_AMBIENT
    ("socket", "protocol", {"family": 2}, 6, "IPPROTO_TCP"),
    ("socket", "protocol", {"family": 16}, 9, "NETLINK_AUDIT"),
    ("socket", "protocol", {"family": 1}, 0, None),
    ("setsockopt", "optname", {"level": 1}, 2, "SO_REUSEADDR"),
    ("setsockopt", "optname", {"level": 6}, 1, "TCP_NODELAY"),
    ("setsockopt", "level", {}, 1, "SOL_SOCKET"),
    ("keyctl", "arg2", {"option": 0}, (-4) & 0xFFFFFFFF, "KEY_SPEC_USER_KEYRING"),
])
def test_names_that_depend_on_another_argument(syscall, arg, others, value, text):
    a = next(a for a in syscalls.lookup(syscall).args if a.name == arg)
    assert flags.arg_names(a.flags, value, others) == text
