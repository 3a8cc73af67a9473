"""The x86_64 syscall table: every syscall number, its arguments and how to capture them.

Loaded once at import from lbd/syscall_table.json, which tools/gen_syscalls.py generates from
committed inputs (tools/data/); the BPF argument map, the decoder, the output formatters, the
Falco plugin's fields and json_config/interesting_syscalls.json all read this one table.

Each :class:`Syscall` has the user-visible ``name`` (as in <asm/unistd_64.h>: ``uname``,
``stat``), the kernel ``entry`` point (``newuname``, ``newstat``), the ``tracepoint``
(``syscalls:sys_enter_<tracepoint>``; None when the snapshot kernel has none), whether the kernel
implements it at all (``implemented``: False for ``afs_syscall``, ``_sysctl``, ... which only
return ENOSYS) and ``noreturn`` (exit, exit_group).  Each :class:`Arg` has its name and C type
(from tracefs, else the kernel prototype, else the man2 SYNOPSIS), its ``kind`` (a ``LBD_K_*``
of bpf/lbd_record.h, number in ``kind_id``), ``bits`` (width of the C type, but 32 for fd, dirfd,
pid, uid and gid arguments, which the kernel narrows to 32 bits even where the prototype says
``unsigned long fd`` (mmap) or ``long pid`` (ptrace): the decoder sign-extends signed kinds from
it, so ``AT_FDCWD`` passed as 0xffffff9c reads -100), ``len_arg``
(index of the length argument of the sockaddr/buf/out_buf/out_sockaddr kinds) and ``flags``
(the lbd.flags set of a ``flags`` kind).

Default selection (``Syscall.default``, :func:`default_selection`): lbd's security-monitoring
set, what a host monitor needs to see behaviour without the high-rate noise:

* files: create, open, delete, rename, link (open, openat, openat2, creat, open_by_handle_at,
  mknod*, mkdir*, rmdir, unlink*, rename*, link*, symlink*), permissions, ownership and size
  (chmod*, chown*, truncate, ftruncate), mounts (mount, umount2, pivot_root, chroot and the new
  mount API: open_tree*, move_mount, fsopen, fsconfig, fsmount, fspick, mount_setattr);
* processes: clone, clone3, fork, vfork, execve, execveat, exit, exit_group, kill, tkill,
  tgkill, ptrace; credentials and isolation (set*id, setgroups, capset, prctl, unshare,
  setns); the kernel (init_module, finit_module, delete_module, kexec_load, kexec_file_load,
  bpf), fileless code (memfd_create) and pidfds (pidfd_open, pidfd_getfd, pidfd_send_signal);
* network: socket, connect, bind, listen, accept, accept4, sendto, socketpair, shutdown;
* fd bookkeeping, from which the enrichment layer keeps a per-process fd table: close,
  close_range, dup, dup2, dup3, pipe, pipe2, fcntl.

Not selected: read, write, futex, poll/epoll/select, clock_*, nanosleep, mmap/munmap/brk/madvise,
get*id and the rest of the high-rate calls.  Unimplemented syscalls are never selected.
The authoritative list is ``DEFAULT_SELECTION`` in tools/gen_syscalls.py.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from lbd._paths import PACKAGE_DIR
from lbd.flags import FLAG_SETS
from lbd.layouts import LAYOUTS
from lbd.record import KINDS, LEN_KINDS, MAX_ARGS, MAX_SYSCALLS, SIZED_KINDS

__all__ = [
    "Arg", "Syscall", "TABLE", "BY_NR", "BY_NAME", "TABLE_PATH",
    "lookup", "default_selection", "to_json_list",
]

TABLE_PATH = PACKAGE_DIR / "syscall_table.json"


@dataclass(frozen=True, slots=True)
class Arg:
    name: str
    type: str
    kind: str
    kind_id: int
    bits: int
    len_arg: int | None
    flags: str | None
    size: int | None = None     # sized kinds (struct, out_struct, array32, iovec): most bytes read
    layout: str | None = None   # struct, out_struct: the structure's layout (lbd/layouts.py)


@dataclass(frozen=True, slots=True)
class Syscall:
    nr: int
    name: str
    entry: str
    tracepoint: str | None
    implemented: bool
    noreturn: bool
    default: bool
    args: tuple[Arg, ...]


def _load(path) -> tuple[Syscall, ...]:
    doc = json.loads(path.read_text())
    out = []
    for s in doc["syscalls"]:
        args = []
        for a in s["args"]:
            kind = a["kind"]
            if kind not in KINDS or kind == "none":
                raise ValueError(f"{path}: {s['name']}.{a['name']}: unknown kind {kind!r}")
            kind_id = KINDS[kind]
            len_arg = a.get("len_arg")
            size = a.get("size")
            if kind_id in SIZED_KINDS:
                if not isinstance(size, int) or not 0 < size <= 2040 or size % 8:
                    raise ValueError(f"{path}: {s['name']}.{a['name']}: kind {kind} needs a size (8..2040, /8)")
            elif size is not None or (kind_id in LEN_KINDS) != (len_arg is not None):
                raise ValueError(f"{path}: {s['name']}.{a['name']}: kind {kind}, len_arg and size")
            layout = a.get("layout")
            if (kind in ("struct", "out_struct")) != (layout is not None) or (layout and layout not in LAYOUTS):
                raise ValueError(f"{path}: {s['name']}.{a['name']}: kind {kind} and layout {layout!r}")
            flags = a.get("flags")
            if (kind == "flags") != (flags is not None) or (flags and flags not in FLAG_SETS):
                raise ValueError(f"{path}: {s['name']}.{a['name']}: flag set {flags!r}")
            args.append(Arg(a["name"], a["type"], kind, kind_id, a["bits"], len_arg, flags, size, layout))
        if len(args) > MAX_ARGS or not 0 <= s["nr"] < MAX_SYSCALLS:
            raise ValueError(f"{path}: {s['name']}: nr or argument count out of range")
        out.append(Syscall(s["nr"], s["name"], s["entry"], s["tracepoint"], s["implemented"],
                           s["noreturn"], s["default"], tuple(args)))
    return tuple(sorted(out, key=lambda sc: sc.nr))


#: every syscall, sorted by number
TABLE: tuple[Syscall, ...] = _load(TABLE_PATH)
#: number -> syscall
BY_NR: dict[int, Syscall] = {s.nr: s for s in TABLE}
#: user-visible name and kernel entry-point name -> syscall (``uname`` and ``newuname``)
BY_NAME: dict[str, Syscall] = {}
for _s in TABLE:
    BY_NAME.setdefault(_s.entry, _s)
for _s in TABLE:
    BY_NAME[_s.name] = _s  # a user-visible name wins over another syscall's entry-point name
del _s

_DEFAULT = frozenset(s.nr for s in TABLE if s.default)


def lookup(name_or_nr: str | int) -> Syscall:
    """The syscall with this number, name or kernel entry-point name (``"uname"``, ``63``,
    ``"newuname"``, also ``"63"``).  Raises KeyError with a message naming what was asked."""
    if isinstance(name_or_nr, bool):
        raise KeyError(f"not a syscall name or number: {name_or_nr!r}")
    if isinstance(name_or_nr, int):
        try:
            return BY_NR[name_or_nr]
        except KeyError:
            raise KeyError(f"no x86_64 syscall number {name_or_nr}") from None
    if isinstance(name_or_nr, str):
        key = name_or_nr.strip()
        if key.isdigit():
            return lookup(int(key))
        try:
            return BY_NAME[key]
        except KeyError:
            raise KeyError(f"unknown syscall name {name_or_nr!r}") from None
    raise KeyError(f"not a syscall name or number: {name_or_nr!r}")


def default_selection() -> frozenset[int]:
    """Numbers of the syscalls selected by default (see the module docstring)."""
    return _DEFAULT


def to_json_list(selected: frozenset[int] | None = None) -> list[dict]:
    """The table as plain objects for ``lbd syscalls --json``: name, nr, args (name, kind, and
    len_arg / flags when set), implemented, selected (``selected`` defaults to
    :func:`default_selection`)."""
    if selected is None:
        selected = _DEFAULT
    out = []
    for s in TABLE:
        args = []
        for a in s.args:
            d: dict = {"name": a.name, "kind": a.kind}
            if a.len_arg is not None:
                d["len_arg"] = a.len_arg
            if a.flags is not None:
                d["flags"] = a.flags
            if a.layout is not None:
                d["layout"] = a.layout
            args.append(d)
        out.append({"name": s.name, "nr": s.nr, "args": args, "implemented": s.implemented,
                    "selected": s.nr in selected})
    return out
