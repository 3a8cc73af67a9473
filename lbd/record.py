"""The ring record layout, read from bpf/lbd_record.h (its one definition).

The numeric constants (argument kinds, flags, counters) are parsed from the header so nothing is
typed twice; the numpy dtype of the fixed header is written here once and checked against the C
struct's size and offsets when the compiled decoder is imported (lbd/_decode.pyx).
"""
from __future__ import annotations

import re

import numpy as np

from lbd._paths import RECORD_HEADER

_DEFINE = re.compile(r"^#define\s+(LBD_\w+)\s+(.+?)\s*(?:/\*.*)?$")


def _parse_header(text: str) -> dict[str, int]:
    """Integer #defines of the header (plain numbers, char literals and 1u << n shifts)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = _DEFINE.match(line.strip())
        if not m:
            continue
        name, value = m.group(1), m.group(2).strip()
        value = value.split("/*")[0].strip()
        sm = re.fullmatch(r"\(\s*(\d+)u?\s*<<\s*(\d+)\s*\)", value)
        if sm:
            out[name] = int(sm.group(1)) << int(sm.group(2))
        elif re.fullmatch(r"-?\d+", value):
            out[name] = int(value)
        elif re.fullmatch(r"0x[0-9a-fA-F]+", value):
            out[name] = int(value, 16)
        elif re.fullmatch(r"'.'", value):
            out[name] = ord(value[1])
    return out


CONSTANTS: dict[str, int] = _parse_header(RECORD_HEADER.read_text())

VERSION = CONSTANTS["LBD_RECORD_VERSION"]
MAX_ARGS = CONSTANTS["LBD_MAX_ARGS"]
MAX_SYSCALLS = CONSTANTS["LBD_MAX_SYSCALLS"]
PAYLOAD_MAX = CONSTANTS["LBD_PAYLOAD_MAX"]
COMM_LEN = CONSTANTS["LBD_COMM_LEN"]
DIR_ENTER = CONSTANTS["LBD_DIR_ENTER"]
DIR_EXIT = CONSTANTS["LBD_DIR_EXIT"]
NR_SCHED_FORK = CONSTANTS["LBD_NR_SCHED_FORK"]
NR_SCHED_EXEC = CONSTANTS["LBD_NR_SCHED_EXEC"]
NR_SCHED_EXIT = CONSTANTS["LBD_NR_SCHED_EXIT"]

#: argument kind name (as the syscall table spells it) -> number
KINDS: dict[str, int] = {
    name[len("LBD_K_"):].lower(): value
    for name, value in CONSTANTS.items()
    if name.startswith("LBD_K_") and name != "LBD_K_COUNT"
}
KIND_NAMES: dict[int, str] = {v: k for k, v in KINDS.items()}

#: kinds whose payload is read when the syscall returns
EXIT_KINDS = frozenset(KINDS[k] for k in ("out_buf", "out_sockaddr", "out_fd2", "out_int", "out_struct",
                                          "out_msghdr"))
#: kinds whose aux byte is the index of a length argument
LEN_KINDS = frozenset(KINDS[k] for k in ("sockaddr", "buf", "out_buf", "out_sockaddr"))
#: kinds that have a size (lbd_desc.size: the most bytes read) and may have a length or count
#: argument (aux; 0xFF: none)
SIZED_KINDS = frozenset(KINDS[k] for k in ("struct", "out_struct", "array32", "iovec"))
#: kinds whose bytes the probe compares with path_prefixes (lbd_desc.path_arg), and the syscalls
#: whose path argument it cannot check (execve's is the kernel's, taken at exec after the check)
PREFIX_KINDS = frozenset(KINDS[k] for k in ("path", "str"))
NO_PREFIX_SYSCALLS = frozenset({"execve", "execveat"})

D_EXIT_KINDS = CONSTANTS["LBD_D_EXIT_KINDS"]
D_NORETURN = CONSTANTS["LBD_D_NORETURN"]
D_REFRESH = CONSTANTS["LBD_D_REFRESH"]
D_STATE = CONSTANTS["LBD_D_STATE"]
D_STATE_FAILED = CONSTANTS["LBD_D_STATE_FAILED"]
D_SOCK_ARG0 = CONSTANTS["LBD_D_SOCK_ARG0"]
D_SOCK_RES = CONSTANTS["LBD_D_SOCK_RES"]
D_STATS = CONSTANTS["LBD_D_STATS"]
LAT_BUCKETS = CONSTANTS["LBD_LAT_BUCKETS"]

F_TRUNC_SHIFT = CONSTANTS["LBD_F_TRUNC_SHIFT"]
F_FAULT_SHIFT = CONSTANTS["LBD_F_FAULT_SHIFT"]
F_NOENTER = CONSTANTS["LBD_F_NOENTER"]
F_NORETURN = CONSTANTS["LBD_F_NORETURN"]
F_NEWIMAGE = CONSTANTS["LBD_F_NEWIMAGE"]
F_STATE = CONSTANTS["LBD_F_STATE"]
F_REREAD = CONSTANTS["LBD_F_REREAD"]

#: counter name (lower case, without the LBD_C_ prefix) -> index in the per-CPU counter array
COUNTERS: dict[str, int] = {
    name[len("LBD_C_"):].lower(): value
    for name, value in CONSTANTS.items()
    if name.startswith("LBD_C_") and name != "LBD_C_COUNT"
}
COUNTER_SLOTS = CONSTANTS["LBD_C_COUNT"]

#: struct lbd_slot: where one argument's payload is in the record.
SLOT_DTYPE = np.dtype([("off", "<u2"), ("len", "<u2")])

#: numpy view of struct lbd_hdr, field for field (packed; checked against the C struct when
#: lbd._decode is imported).
HDR_DTYPE = np.dtype(
    [
        ("version", "<u2"),
        ("size", "<u2"),
        ("nr", "<u2"),
        ("dir", "u1"),
        ("nargs", "u1"),
        ("flags", "<u4"),
        ("pid", "<u4"),
        ("tid", "<u4"),
        ("ppid", "<u4"),
        ("uid", "<u4"),
        ("gid", "<u4"),
        ("ts", "<u8"),
        ("latency", "<u8"),
        ("res", "<i8"),
        ("comm", "S16"),
        ("args", "<u8", (MAX_ARGS,)),
        ("slot", SLOT_DTYPE, (MAX_ARGS,)),
        ("ets", "<u8"),
        ("cgroup_id", "<u8"),
        ("pidns", "<u4"),
        ("mntns", "<u4"),
        ("loginuid", "<u4"),
        ("xslot", SLOT_DTYPE),
    ]
)
HDR_SIZE = HDR_DTYPE.itemsize

#: struct lbd_sock: the socket behind an fd (the xslot of connect, bind, accept, accept4)
SOCK_DTYPE = np.dtype([("family", "<u2"), ("type", "<u2"), ("lport", "<u2"), ("rport", "<u2"),
                       ("laddr", "u1", (16,)), ("raddr", "u1", (16,))])

#: struct lbd_desc: one syscall's entry in the probe's descriptor map
DESC_DTYPE = np.dtype([("enabled", "u1"), ("nargs", "u1"), ("kind", "u1", (MAX_ARGS,)),
                       ("aux", "u1", (MAX_ARGS,)), ("flags", "u1"), ("path_arg", "u1"), ("size", "u1", (MAX_ARGS,)),
                       ("pad2", "u1", (2,))])

#: struct lbd_msg: the start of a msghdr / out_msghdr payload
MSG_DTYPE = np.dtype([("name_len", "<u2"), ("iov_n", "<u2"), ("control_len", "<u2"), ("pad", "<u2"),
                      ("msghdr", "u1", (56,))])

#: struct lbd_settings: the probe's run-time settings (one-element array map)
SETTINGS_DTYPE = np.dtype([(name, "<u4") for name in (
    "drop_mode", "drop_failed", "filter_own_tgid", "filter_falco_tgid", "str_max", "buf_max", "argv_max",
    "emit_enter", "filter_pids_on", "filter_comms_on", "only_pids_on", "only_comms_on", "generation",
    "own_tids_on", "filter_generation", "state_on")] + [("wake_bytes", "<u8")] + [(name, "<u4") for name in (
    "only_tids_on", "follow", "capture_env", "failed_only", "filter_uids_on", "only_uids_on",
    "syscall_stats", "path_on")])

#: struct lbd_sc_stat: per-syscall statistics (settings.syscall_stats), one per CPU and syscall
SC_STAT_DTYPE = np.dtype([("count", "<u8"), ("errors", "<u8"), ("lat_sum", "<u8"),
                          ("hist", "<u4", (LAT_BUCKETS,))])

#: One row of a Batch's event table (lbd._decode.lbd_event): the header fields, with `ts` as
#: wall-clock ns, then `rec`, the record's offset in the batch arena.  `size` is its length.
EVENT_DTYPE = np.dtype(
    [(name, HDR_DTYPE.fields[name][0]) for name in HDR_DTYPE.names] + [("rec", "<u4"), ("cpu_ring", "<u4")]
)
