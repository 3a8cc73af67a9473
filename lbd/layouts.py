"""The structures behind the struct-kind arguments of the syscall table, and how to decode them.

A ``struct`` / ``out_struct`` argument names its layout in the table (``"layout": "open_how"``);
the probe copies at most the table's ``size`` bytes of it (fewer when its length argument says
so), and :func:`decode` turns those bytes into a :class:`Value`: a dict of the layout's fields.
Layouts are x86_64 (little endian, LP64) and follow the kernel's uapi headers (named beside each).

A layout has one or more variants; a union (``bpf_attr``) picks its variant by the value of
another argument of the call (``select``: bpf's ``cmd``).  Every decoded value of a layout has
the same keys, in the same order (the union of the variants' fields): a field the variant does
not have, or that the bytes read do not reach, is None (JSON null; left out of the text forms).

The variable kinds have fixed shapes too:

* ``iovec``: ``{"base": [addresses], "len": [lengths]}`` (the iovecs the probe read, at most
  ``size / 16``; more are flagged truncated);
* ``array32``: a list of integers (setgroups' group list);
* ``msghdr`` / ``out_msghdr``: ``{"name", "namelen", "iov_len", "iovlen", "controllen",
  "cmsg_level", "cmsg_type", "scm_rights", "flags"}``: the peer address (an lbd.args.SockAddr,
  or None), the iovec lengths read and the iovec count, the control messages' levels and types
  and the descriptors of their SCM_RIGHTS messages.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["Field", "Layout", "LAYOUTS", "Value", "decode_struct", "decode_iovec", "decode_array32",
           "decode_msghdr", "MSG_HEADER"]


@dataclass(frozen=True, slots=True)
class Field:
    """One field: name, byte offset, size (1, 2, 4, 8), and how to read it.

    kind: "u" unsigned, "s" signed, "x" unsigned shown in hex by the terminal format (masks,
    cookies), "p" a user pointer (hex; NULL when 0), "o" a mode (octal), "c" a char array (text
    up to its NUL), "b" bytes (hex text, ``size`` is the most; ``count`` names the field that
    says how many are valid), "cap" a 64-bit capability mask made of two 32-bit words (``off``
    and ``off2``).  flags: the lbd.flags set (or Switch, reading another field) that names it."""

    name: str
    off: int
    size: int
    kind: str = "u"
    flags: str | None = None
    off2: int = 0
    count: str | None = None


@dataclass(frozen=True, slots=True)
class Layout:
    name: str
    variants: tuple[tuple[frozenset[int] | None, tuple[Field, ...]], ...]
    select: str | None = None   # the argument whose value picks the variant (None: one variant)
    doc: str = ""

    @property
    def keys(self) -> tuple[str, ...]:
        """Every field name over the variants, first-seen order (the JSON object's keys)."""
        out: list[str] = []
        for _, fields in self.variants:
            for f in fields:
                if f.name not in out:
                    out.append(f.name)
        return tuple(out)

    def fields_for(self, sel: int | None) -> tuple[Field, ...]:
        default: tuple[Field, ...] = ()
        for values, fields in self.variants:
            if values is None:
                default = fields
            elif sel is not None and sel in values:
                return fields
        return default

    def all_fields(self) -> dict[str, Field]:
        """name -> the first Field of that name (for the field's flag set and kind)."""
        out: dict[str, Field] = {}
        for _, fields in self.variants:
            for f in fields:
                out.setdefault(f.name, f)
        return out


def _f(name, off, size=4, kind="u", flags=None, **kw) -> Field:
    return Field(name, off, size, kind, flags, **kw)


# bpf(2) union bpf_attr (linux/bpf.h), by command (lbd.flags bpf_cmd numbers)
_ELEM = (_f("map_fd", 0), _f("key", 8, 8, "p"), _f("value", 16, 8, "p"), _f("flags", 24, 8, "x"))
_BPF = (
    (frozenset({0}), (  # BPF_MAP_CREATE
        _f("map_type", 0, flags="bpf_map_type"), _f("key_size", 4), _f("value_size", 8),
        _f("max_entries", 12), _f("map_flags", 16, kind="x"), _f("inner_map_fd", 20, kind="s"),
        _f("map_name", 28, 16, "c"), _f("map_ifindex", 44), _f("btf_fd", 48, kind="s"))),
    (frozenset({1, 2, 3, 4, 21}), _ELEM),  # map element operations
    (frozenset({5}), (  # BPF_PROG_LOAD
        _f("prog_type", 0, flags="bpf_prog_type"), _f("insn_cnt", 4), _f("insns", 8, 8, "p"),
        _f("license", 16, 8, "p"), _f("log_level", 24), _f("log_size", 28), _f("log_buf", 32, 8, "p"),
        _f("kern_version", 40), _f("prog_flags", 44, kind="x"), _f("prog_name", 48, 16, "c"),
        _f("prog_ifindex", 64), _f("expected_attach_type", 68, flags="bpf_attach_type"))),
    (frozenset({6, 7}), (_f("pathname", 0, 8, "p"), _f("bpf_fd", 8, kind="s"), _f("file_flags", 12, kind="x"))),
    (frozenset({8, 9}), (_f("target_fd", 0, kind="s"), _f("attach_bpf_fd", 4, kind="s"),
                         _f("attach_type", 8, flags="bpf_attach_type"), _f("attach_flags", 12, kind="x"))),
    (frozenset({11, 12, 23, 31}), (_f("start_id", 0), _f("next_id", 4))),
    (frozenset({13, 14, 19, 30}), (_f("id", 0), _f("next_id", 4), _f("open_flags", 8, kind="x"))),
    (frozenset({15}), (_f("bpf_fd", 0, kind="s"), _f("info_len", 4), _f("info", 8, 8, "p"))),
    (frozenset({16}), (_f("target_fd", 0, kind="s"), _f("attach_type", 4, flags="bpf_attach_type"),
                       _f("query_flags", 8, kind="x"))),
    (frozenset({17}), (_f("name", 0, 8, "p"), _f("prog_fd", 8, kind="s"))),
    (frozenset({18}), (_f("btf", 0, 8, "p"), _f("btf_log_buf", 8, 8, "p"), _f("btf_size", 16),
                       _f("btf_log_size", 20), _f("btf_log_level", 24))),
    (frozenset({22}), (_f("map_fd", 0),)),
    (frozenset({28}), (_f("prog_fd", 0, kind="s"), _f("target_fd", 4, kind="s"),
                       _f("attach_type", 8, flags="bpf_attach_type"), _f("flags", 12, kind="x"))),
    (frozenset({32}), (_f("type", 0),)),
    (frozenset({33, 34}), (_f("link_fd", 0, kind="s"),)),
    (frozenset({35}), (_f("prog_fd", 0, kind="s"), _f("map_fd", 4), _f("flags", 8, kind="x"))),
)

LAYOUTS: dict[str, Layout] = {
    lay.name: lay
    for lay in (
        Layout("bpf_attr", _BPF, select="cmd", doc="bpf(2) union bpf_attr, by command"),
        Layout("cap_header", ((None, (_f("version", 0, flags="cap_version", kind="x"), _f("pid", 4, kind="s"))),),
               doc="capget/capset struct __user_cap_header_struct"),
        Layout("cap_data", ((None, (_f("effective", 0, 4, "cap", "cap_mask", off2=12),
                                    _f("permitted", 4, 4, "cap", "cap_mask", off2=16),
                                    _f("inheritable", 8, 4, "cap", "cap_mask", off2=20))),),
               doc="capget/capset struct __user_cap_data_struct[2] (version 2 and 3), as 64-bit masks"),
        Layout("seccomp_args", ((frozenset({1}), (_f("len", 0, 2), _f("filter", 8, 8, "p"))),
                                (frozenset({2}), (_f("action", 0, kind="x"),))), select="op",
               doc="seccomp(2) SECCOMP_SET_MODE_FILTER struct sock_fprog, SECCOMP_GET_ACTION_AVAIL u32"),
        Layout("clone_args", ((None, (
            _f("flags", 0, 8, "x", "clone3_flags"), _f("pidfd", 8, 8, "p"), _f("child_tid", 16, 8, "p"),
            _f("parent_tid", 24, 8, "p"), _f("exit_signal", 32, 8, "u", "signal"), _f("stack", 40, 8, "p"),
            _f("stack_size", 48, 8), _f("tls", 56, 8, "p"), _f("set_tid", 64, 8, "p"),
            _f("set_tid_size", 72, 8), _f("cgroup", 80, 8, "s"))),),
               doc="clone3(2) struct clone_args (linux/sched.h)"),
        Layout("open_how", ((None, (_f("flags", 0, 8, "x", "open_flags"), _f("mode", 8, 8, "o"),
                                    _f("resolve", 16, 8, "x", "resolve_flags"))),),
               doc="openat2(2) struct open_how (linux/openat2.h)"),
        Layout("file_handle", ((None, (_f("handle_bytes", 0), _f("handle_type", 4, kind="s"),
                                       _f("f_handle", 8, 32, "b", count="handle_bytes"))),),
               doc="name_to_handle_at/open_by_handle_at struct file_handle (first 32 handle bytes)"),
        Layout("perf_event_attr", ((None, (
            _f("type", 0, flags="perf_type"), _f("size", 4), _f("config", 8, 8, "x", "perf_config"),
            _f("sample_period", 16, 8), _f("sample_type", 24, 8, "x"), _f("read_format", 32, 8, "x"),
            _f("flags", 40, 8, "x"))),),
               doc="perf_event_open(2) struct perf_event_attr (its first 48 bytes; flags: the bit fields)"),
        Layout("io_uring_params", ((None, (
            _f("sq_entries", 0), _f("cq_entries", 4), _f("flags", 8, kind="x", flags="io_uring_setup_flags"),
            _f("sq_thread_cpu", 12), _f("sq_thread_idle", 16), _f("features", 20, kind="x"),
            _f("wq_fd", 24, kind="s"))),),
               doc="io_uring_setup(2) struct io_uring_params (the input part)"),
        Layout("siginfo", ((None, (
            _f("si_signo", 0, kind="s", flags="signal"), _f("si_errno", 4, kind="s"),
            _f("si_code", 8, kind="s", flags="si_code"), _f("si_pid", 16, kind="s"), _f("si_uid", 20),
            _f("si_value", 24, 8, "x"))),),
               doc="rt_sigqueueinfo(2) siginfo_t (the kill / queue part)"),
    )
}


class Value(dict):
    """A decoded structure: a dict of its fields (fixed keys per layout), with the layout's name."""

    __slots__ = ("layout",)

    def __init__(self, layout: str, items):
        super().__init__(items)
        self.layout = layout

    def __str__(self) -> str:
        """The normal format's text: ``{key=value, ...}`` over the fields that have a value
        (integers in decimal, text as is, lists ``[a, b]``, socket addresses as their str())."""
        return "{" + ", ".join(f"{k}={_item_text(x)}" for k, x in self.items() if x is not None) + "}"


def _item_text(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_item_text(x) for x in v) + "]"
    return str(v)


def _read(f: Field, b: bytes, errors: str = "backslashreplace"):
    if f.kind == "c":
        if len(b) <= f.off:
            return None
        return bytes(b[f.off: f.off + f.size]).split(b"\0", 1)[0].decode("utf-8", errors)
    if f.kind == "b":
        return None          # read by decode_struct (it needs its count field)
    if len(b) < f.off + f.size:
        return None
    if f.kind == "cap":
        lo = struct.unpack_from("<I", b, f.off)[0]
        hi = struct.unpack_from("<I", b, f.off2)[0] if len(b) >= f.off2 + 4 else 0
        return lo | hi << 32
    fmt = {1: "b", 2: "h", 4: "i", 8: "q"}[f.size]
    if f.kind != "s":
        fmt = fmt.upper()
    return struct.unpack_from("<" + fmt, b, f.off)[0]


def decode_struct(layout: str, b: bytes, sel: int | None, errors: str = "backslashreplace") -> Value:
    """The fields of ``layout`` in ``b`` (the variant of ``sel``), every key of the layout; text
    fields decoded with ``errors`` (the outputs: surrogateescape, as lbd.args.decode)."""
    lay = LAYOUTS[layout]
    vals = dict.fromkeys(lay.keys)
    for f in lay.fields_for(sel):
        if f.kind == "b":
            n = vals.get(f.count) if f.count else f.size
            if n is None or len(b) <= f.off:
                continue
            vals[f.name] = bytes(b[f.off: f.off + min(int(n), f.size)]).hex()
        else:
            vals[f.name] = _read(f, b, errors)
    return Value(layout, vals)


def decode_iovec(b: bytes) -> Value:
    n = len(b) // 16
    base, ln = [], []
    for k in range(n):
        p, size = struct.unpack_from("<QQ", b, 16 * k)
        base.append(p)
        ln.append(size)
    return Value("iovec", {"base": base, "len": ln})


def decode_array32(b: bytes) -> list[int]:
    return list(struct.unpack_from(f"<{len(b) // 4}I", b)) if len(b) >= 4 else []


#: struct lbd_msg (bpf/lbd_record.h): name_len, iov_n, control_len, pad, then the user's msghdr
MSG_HEADER = struct.Struct("<HHHH8xIxxxx8xQ8xQI4x")
MSG_KEYS = ("name", "namelen", "iov_len", "iovlen", "controllen", "cmsg_level", "cmsg_type", "scm_rights", "flags")


def decode_msghdr(b: bytes, decode_sockaddr, errors: str = "backslashreplace") -> Value | None:
    """A LBD_K_MSGHDR / LBD_K_OUT_MSGHDR payload (see the module docstring); None when shorter
    than its header."""
    if len(b) < MSG_HEADER.size:
        return None
    name_n, iov_n, ctl_n, _, namelen, iovlen, ctllen, flags = MSG_HEADER.unpack_from(b)
    at = MSG_HEADER.size
    name = decode_sockaddr(bytes(b[at: at + name_n]), errors) if name_n else None
    at += name_n
    iov_len = [struct.unpack_from("<Q", b, at + 16 * k + 8)[0] for k in range(iov_n)
               if at + 16 * k + 16 <= len(b)]
    at += 16 * iov_n
    ctl = bytes(b[at: at + ctl_n])
    levels, types, fds = [], [], []
    k = 0
    while k + 16 <= len(ctl):                     # struct cmsghdr: u64 len, int level, int type
        clen, level, typ = struct.unpack_from("<Qii", ctl, k)
        if clen < 16:
            break
        levels.append(level)
        types.append(typ)
        if level == 1 and typ == 1:              # SOL_SOCKET, SCM_RIGHTS: the fds
            end = min(k + clen, len(ctl))
            fds.extend(struct.unpack_from(f"<{(end - k - 16) // 4}i", ctl, k + 16))
        k += (clen + 7) & ~7
    return Value("msghdr", {"name": name, "namelen": namelen, "iov_len": iov_len, "iovlen": iovlen,
                            "controllen": ctllen, "cmsg_level": levels, "cmsg_type": types, "scm_rights": fds,
                            "flags": flags})
