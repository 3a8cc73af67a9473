"""Parquet output: batches of events as Arrow record batches, written in zstd row groups.

    with ParquetWriter("/var/lib/lbd/events.parquet") as w:   # a new file (never overwritten)
        w.write_batch(batch)                                   # batch.enrich is used when present
    pyarrow.parquet.read_table("/var/lib/lbd/events.parquet")  # or pandas, duckdb, polars, spark

`record_batch(batch)` converts one Batch in bulk: numpy and Arrow kernels over whole columns,
payload strings gathered from the batch's arena in C (`Batch.gather`), and Python code only per
distinct value (a process's strings, a comm, a flag value), never per event.

The schema (SCHEMA, fixed; `lbd.schema_version` in its metadata), one row per event:

    ts          timestamp[ns, UTC]  event time (syscall exit, or enter for dir '>')
    syscall     string              name (sched_process_fork/exec/exit for process-tree records)
    nr          uint16              syscall number
    dir         string              '<' exit, '>' enter
    res         int64               return value (negative errno on failure)
    latency     int64               enter to exit, ns (0 when unknown)
    pid, tid, ppid, uid, gid  uint32
    comm        string              thread command name
    pcomm, user, group, cmdline, exe   string   enrichment (null when the batch has none)
    path, path2 string              first and second path argument (filename, pathname, ...)
    fd, dirfd   int32               first fd and dirfd argument
    sa_family   string              first socket address argument: AF_INET, AF_UNIX, ...
    sa_addr     string              its IP address (AF_INET, AF_INET6)
    sa_port     int32               its port
    sa_path     string              its AF_UNIX path (abstract names start with '@')
    flags       int64               first flags argument (unsigned >= 2**63 as signed, as in JSON)
    flag_names  string              its symbolic form (lbd.flags.names), e.g. O_RDONLY|O_CLOEXEC
    args        map<string, string> every other argument that has a value, by its JSON name
                                    (lbd.args.json_arg_names), as the normal format prints it
                                    (not cut at str_max_size)

Typed argument columns are null when the event has no such argument (or it has no value: a NULL
pointer, an exit whose enter was not seen).  Invalid UTF-8 in text reads as \\xNN escapes, as in
the other formats.

The file is written atomically per row group: before a row group is written, an upper bound of its
size (its Arrow size) plus room for the footer is reserved with posix_fallocate, so that a full
disk (ENOSPC, EDQUOT) stops the writer *between* row groups (when less than that is free); it then writes the footer for the row groups already
complete (the file stays valid), counts the events it could not write (`lost`) and raises
OutputError.  close() (on SIGINT/SIGTERM the CLI closes its writer) writes what is pending and the
footer.
"""
from __future__ import annotations

import errno
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lbd import args as _args, flags as _flags, record
from lbd.enrich.layout import has_enrichment
from lbd.output.writer import OutputError

__all__ = ["SCHEMA", "SCHEMA_VERSION", "ParquetWriter", "record_batch", "open_parquet"]

SCHEMA_VERSION = "1"
NSC = 1024

_DICT = pa.dictionary(pa.int32(), pa.string())

SCHEMA = pa.schema([
    ("ts", pa.timestamp("ns", tz="UTC")),
    ("syscall", _DICT),
    ("nr", pa.uint16()),
    ("dir", _DICT),
    ("res", pa.int64()),
    ("latency", pa.int64()),
    ("pid", pa.uint32()),
    ("tid", pa.uint32()),
    ("ppid", pa.uint32()),
    ("uid", pa.uint32()),
    ("gid", pa.uint32()),
    ("comm", _DICT),
    ("pcomm", _DICT),
    ("user", _DICT),
    ("group", _DICT),
    ("cmdline", _DICT),
    ("exe", _DICT),
    ("path", pa.string()),
    ("path2", pa.string()),
    ("fd", pa.int32()),
    ("dirfd", pa.int32()),
    ("sa_family", _DICT),
    ("sa_addr", pa.string()),
    ("sa_port", pa.int32()),
    ("sa_path", pa.string()),
    ("flags", pa.int64()),
    ("flag_names", _DICT),
    ("args", pa.map_(pa.string(), pa.string())),
], metadata={"lbd.schema_version": SCHEMA_VERSION})

# ---- per syscall number and argument slot: where each argument goes --------------------------

_K = record.KINDS
ROLES = ("path", "path2", "fd", "dirfd", "sockaddr", "flags")
_SIGNED = np.array([k in _args.SIGNED_KINDS for k in range(32)])


def _tables():
    """KIND, BITS, MAPPED (in the args map), ENV (an environment: envp), KEY (index into KEYS) per
    (nr, slot); the slot of
    each role per nr (-1: none); the flag set index per nr (of the flags role)."""
    kind = np.zeros((NSC, record.MAX_ARGS), np.int16)
    bits = np.full((NSC, record.MAX_ARGS), 64, np.int16)
    mapped = np.zeros((NSC, record.MAX_ARGS), bool)
    env = np.zeros((NSC, record.MAX_ARGS), bool)
    key = np.zeros((NSC, record.MAX_ARGS), np.int32)
    role = {r: np.full(NSC, -1, np.int8) for r in ROLES}
    flagset = np.full(NSC, -1, np.int32)
    keys: list[str] = []
    key_index: dict[str, int] = {}
    sets: list[str] = []
    for nr in range(NSC):
        specs = _args.arg_specs(nr)
        if not specs:
            continue
        for k, (a, jn) in enumerate(zip(specs, _args.json_arg_names(nr))):
            kind[nr, k], bits[nr, k] = a.kind_id, a.bits
            env[nr, k] = a.name == "envp" and a.kind_id == _K["strarr"]
            key[nr, k] = key_index.setdefault(jn, len(key_index))
            if jn not in keys:
                keys.append(jn)
            r = None
            if a.kind_id == _K["path"]:
                r = "path" if role["path"][nr] < 0 else "path2" if role["path2"][nr] < 0 else None
            elif a.kind_id == _K["fd"]:
                r = "fd"
            elif a.kind_id == _K["dirfd"]:
                r = "dirfd"
            elif a.kind_id in (_K["sockaddr"], _K["out_sockaddr"]):
                r = "sockaddr"
            elif a.kind_id == _K["flags"]:
                r = "flags"
            if r is not None and role[r][nr] < 0:
                role[r][nr] = k
                if r == "flags":
                    if a.flags not in sets:
                        sets.append(a.flags)
                    flagset[nr] = sets.index(a.flags)
            else:
                mapped[nr, k] = True
    return kind, bits, mapped, env, key, role, flagset, keys, sets


KIND, BITS, MAPPED, ENV, KEY, ROLE_SLOT, FLAGSET, _KEYS, _SETS = _tables()
KEYS = pa.array(_KEYS, pa.string())
NAMES = pa.array([_args.syscall_name(nr) for nr in range(NSC)], pa.string())
DIRS = pa.array(["<", ">"], pa.string())
_flag_text: dict[tuple[int, int], str] = {}


# ---- columns -----------------------------------------------------------------------------------

_EMPTY_OK = np.array([k in _args.EMPTY_OK_KINDS for k in range(32)])
_PLAIN = np.array([k in (_K["str"], _K["path"], _K["buf"], _K["out_buf"]) for k in range(32)])
_NARROW32 = np.array([k in (_K["fd"], _K["dirfd"], _K["pid"], _K["uid"], _K["gid"]) for k in range(32)])


def _text(arr: pa.Array) -> pa.Array:
    """A (large) binary array as UTF-8 strings; invalid UTF-8 as \\xNN (Python, only for an array
    that has some)."""
    try:
        return arr.cast(pa.string())
    except pa.ArrowInvalid:
        return pa.array([None if v is None else v.decode("utf-8", "backslashreplace") for v in arr.to_pylist()],
                        pa.string())


def _reorder(parts: list[pa.Array], where: list[np.ndarray], n: int) -> pa.Array:
    """parts[j] holds the entries at positions where[j]: one array of n entries in order."""
    if len(parts) == 1:
        return parts[0]
    pos = np.empty(n, np.int64)
    pos[np.concatenate(where)] = np.arange(n)
    return pa.concat_arrays(parts).take(pa.array(pos))


def _payloads(batch, idx: np.ndarray, slots: np.ndarray) -> pa.Array:
    """The payload bytes of argument slots[j] of event idx[j], as a large binary array in that
    order (one C gather per distinct slot)."""
    parts, where = [], []
    present = np.flatnonzero(np.bincount(slots, minlength=record.MAX_ARGS))
    for k in present:
        sel = np.flatnonzero(slots == k) if len(present) > 1 else np.arange(len(idx))
        data, offs = batch.gather(int(k), idx[sel])
        parts.append(pa.Array.from_buffers(pa.large_binary(), len(sel),
                                           [None, pa.py_buffer(offs), pa.py_buffer(data)]))
        where.append(sel)
    if not parts:
        return pa.array([], pa.large_binary())
    return _reorder(parts, where, len(idx))


def _scatter(n: int, sel: np.ndarray, values: pa.Array) -> pa.Array:
    """An array of n entries: values at positions sel, null elsewhere."""
    if len(sel) == n:
        return values
    if isinstance(values, pa.DictionaryArray):
        ind = np.zeros(n, np.int32)
        ind[sel] = np.asarray(values.indices.fill_null(0))
        valid = np.zeros(n, bool)
        valid[sel] = np.asarray(values.indices.is_valid())
        return pa.DictionaryArray.from_arrays(pa.array(ind, mask=~valid), values.dictionary)
    pos = np.full(n, -1, np.int64)
    pos[sel] = np.arange(len(sel))
    return values.take(pa.array(pos, mask=pos < 0))


def _scatter_np(n: int, sel: np.ndarray, values: np.ndarray, typ: pa.DataType) -> pa.Array:
    """_scatter of numbers: a numpy array and a validity mask, no take."""
    full = np.zeros(n, values.dtype)
    full[sel] = values
    valid = np.zeros(n, bool)
    valid[sel] = True
    return pa.array(full, typ, mask=~valid)


def _int_values(raw: np.ndarray, kind: np.ndarray, bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """lbd.args.decode of integer kinds, vectorised: (value as uint64 bits, is signed kind).
    Signed kinds are sign-extended (fd, dirfd, pid from 32 bits), others masked to their bits."""
    b = np.where(_NARROW32[kind], 32, bits)
    b = np.where(kind == _K["ptr"], 64, b).astype(np.uint64)
    full = b >= 64
    if full.all():
        return raw, _SIGNED[kind]
    mask = np.where(full, np.uint64(0xFFFFFFFFFFFFFFFF), (np.uint64(1) << np.where(full, 0, b).astype(np.uint64))
                    - np.uint64(1))
    v = raw & mask
    signed = _SIGNED[kind]
    neg = signed & ~full & ((v >> (b - np.uint64(1))) & np.uint64(1)).astype(bool)
    return np.where(neg, v | ~mask, v), signed


def _int_text(v: np.ndarray, signed: np.ndarray) -> pa.Array:
    """Decimal text: signed kinds as int64, the others as uint64 (as the normal format prints)."""
    if not signed.any():
        return pa.array(v).cast(pa.string())
    s = pa.array(v.view(np.int64)).cast(pa.string())
    if signed.all():
        return s
    return pa.compute.if_else(pa.array(signed), s, pa.array(v).cast(pa.string()))


def _spread(has: np.ndarray, where: np.ndarray) -> np.ndarray:
    """has (one entry per true `where`) spread over where's positions (True elsewhere)."""
    out = np.ones(len(where), bool)
    out[np.flatnonzero(where)] = has
    return out


def _present(lens: np.ndarray, raw: np.ndarray, flags: np.ndarray, slots, kinds: np.ndarray,
             offs: np.ndarray | None = None) -> np.ndarray:
    """Whether a payload argument has a value (lbd.args rules): a payload, or an empty value (the
    probe read it and found nothing: its slot has an offset; or an input kind's non-NULL pointer)
    that did not fault."""
    fault = (flags >> (record.F_FAULT_SHIFT + np.asarray(slots)).astype(np.uint32)) & np.uint32(1)
    read = (raw != 0) if offs is None else ((offs != 0) | (_EMPTY_OK[kinds] & (raw != 0)))
    if offs is None:
        read = _EMPTY_OK[kinds] & read
    return (lens > 0) | (read & (fault == 0))


def _distinct(values: pa.Array) -> tuple[list, pa.Array]:
    """(distinct values as Python objects, index of each entry's value): a hash pass in C."""
    d = values.dictionary_encode()
    return d.dictionary.to_pylist(), d.indices


def _dict(indices: pa.Array, texts: list) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(indices, pa.array(texts, pa.string()))


def _sockaddrs(payloads: pa.Array) -> tuple[pa.Array, ...]:
    """family, addr, port, path of each payload, decoded once per distinct value."""
    keys, idx = _distinct(payloads)
    fam, addr, port, path = [], [], [], []
    for p in keys:
        sa = _args.decode_sockaddr(p) if p else None
        fam.append(None if sa is None else sa.family)
        addr.append(None if sa is None else sa.addr)
        port.append(None if sa is None else sa.port)
        path.append(None if sa is None else sa.path)
    return (_dict(idx, fam), pa.array(addr, pa.string()).take(idx),
            pa.array(port, pa.int32()).take(idx), pa.array(path, pa.string()).take(idx))


def _strtab_column(strtab: np.ndarray, off: np.ndarray, length: np.ndarray) -> pa.Array:
    """Enrichment strings: decoded once per distinct string, then taken per event."""
    keys, idx = _distinct(pa.array((off.astype(np.uint64) << np.uint64(32)) | length.astype(np.uint64)))
    st = strtab
    texts = []
    for key in keys:
        o, n = key >> 32, key & 0xFFFFFFFF
        texts.append(st[o: o + n].tobytes().decode("utf-8", "backslashreplace") if n and o + n <= len(st) else "")
    return _dict(idx, texts)


def _comm_column(comm: np.ndarray) -> pa.Array:
    raw = np.ascontiguousarray(comm).view(np.uint8)
    keys, idx = _distinct(pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(comm), [None, pa.py_buffer(raw)]))
    texts = [c.split(b"\0", 1)[0].decode("utf-8", "backslashreplace") for c in keys]
    return _dict(idx, texts)


class _Cols:
    """The event fields record_batch reads, each extracted once (plain numpy arrays)."""

    def __init__(self, ev: np.ndarray, base: np.ndarray):
        self.n = len(ev)
        self.base = base
        self.nr = ev["nr"].astype(np.intp)
        self.flags = ev["flags"]
        self.args = ev["args"]
        self.lens = ev["slot"]["len"]
        self.offs = ev["slot"]["off"]
        self.has_args = (self.flags & np.uint32(record.F_NOENTER)) == 0


def record_batch(batch, mask=None, *, env: tuple[bool, str] | None = None) -> pa.RecordBatch:
    """The events of batch (those with a true mask entry) as an Arrow record batch of SCHEMA.
    env: (capture_env, secret_pattern) as the outputs apply them: without capture_env no envp
    value, with it NAME=*** for the secret names (lbd.output.reference.env_value); None: the
    environment as recorded (the Python API's own data)."""
    ev_all = batch.events
    base = np.arange(len(ev_all)) if mask is None else np.flatnonzero(np.asarray(mask, dtype=bool))
    ev = ev_all if mask is None else ev_all[base]
    c = _Cols(ev, base)
    n, nr = c.n, c.nr
    cols: dict[str, pa.Array] = {}
    cols["ts"] = pa.array(ev["ts"].astype(np.int64), pa.timestamp("ns", tz="UTC"))
    cols["syscall"] = pa.DictionaryArray.from_arrays(pa.array(nr.astype(np.int32)), NAMES)
    cols["nr"] = pa.array(ev["nr"].astype(np.uint16))
    cols["dir"] = pa.DictionaryArray.from_arrays(pa.array((ev["dir"] == ord(">")).astype(np.int32)), DIRS)
    cols["res"] = pa.array(ev["res"].astype(np.int64))
    cols["latency"] = pa.array(ev["latency"].astype(np.int64))
    for f in ("pid", "tid", "uid", "gid"):
        cols[f] = pa.array(ev[f].astype(np.uint32))
    cols["comm"] = _comm_column(ev["comm"])
    if has_enrichment(batch):
        en = batch.enrich if mask is None else batch.enrich[base]
        st = batch.strtab
        cols["ppid"] = pa.array(en["ppid"].astype(np.uint32))
        for f, src in (("pcomm", "pcomm"), ("user", "user"), ("group", "group"), ("cmdline", "cmdline"),
                       ("exe", "fullpath")):
            cols[f] = _strtab_column(st, en[src + "_off"], en[src + "_len"])
    else:
        cols["ppid"] = pa.array(ev["ppid"].astype(np.uint32))
        for f in ("pcomm", "user", "group", "cmdline", "exe"):
            cols[f] = pa.nulls(n, _DICT)

    # typed argument columns: the event's first argument of the kind
    for r in ("path", "path2"):
        slot = ROLE_SLOT[r][nr]
        sel = np.flatnonzero((slot >= 0) & c.has_args)
        sl = slot[sel].astype(np.intp)
        ok = _present(c.lens[sel, sl], c.args[sel, sl], c.flags[sel], sl, KIND[nr[sel], sl])
        sel, sl = sel[ok], sl[ok]
        cols[r] = _scatter(n, sel, _text(_payloads(batch, base[sel], sl)) if len(sel) else pa.array([], pa.string()))
    for r in ("fd", "dirfd", "flags"):
        slot = ROLE_SLOT[r][nr]
        sel = np.flatnonzero((slot >= 0) & c.has_args)
        sl = slot[sel].astype(np.intp)
        v, _ = _int_values(c.args[sel, sl], KIND[nr[sel], sl], BITS[nr[sel], sl])
        if r == "flags":
            cols["flags"] = _scatter_np(n, sel, v.view(np.int64), pa.int64())
            cols["flag_names"] = _scatter(n, sel, _flag_names(FLAGSET[nr[sel]], v))
        else:
            cols[r] = _scatter_np(n, sel, v.view(np.int64).astype(np.int32), pa.int32())
    slot = ROLE_SLOT["sockaddr"][nr]
    sel = np.flatnonzero((slot >= 0) & c.has_args & (c.lens[np.arange(n), np.maximum(slot, 0)] >= 2))
    if len(sel):
        sa = _sockaddrs(_payloads(batch, base[sel], slot[sel].astype(np.intp)))
    else:
        sa = (pa.array([], _DICT), pa.array([], pa.string()), pa.array([], pa.int32()), pa.array([], pa.string()))
    for name, arr in zip(("sa_family", "sa_addr", "sa_port", "sa_path"), sa):
        cols[name] = _scatter(n, sel, arr)
    cols["args"] = _args_map(batch, c, env)
    return pa.RecordBatch.from_arrays([cols[f.name] for f in SCHEMA], schema=SCHEMA)


def _flag_names(sets: np.ndarray, values: np.ndarray) -> pa.Array:
    """lbd.flags.names of each (flag set, value), computed once per distinct pair."""
    if not len(values):
        return pa.array([], _DICT)
    parts, where = [], []
    for s in np.flatnonzero(np.bincount(sets, minlength=len(_SETS))):
        sel = np.flatnonzero(sets == s)
        keys, idx = _distinct(pa.array(values[sel]))
        names = []
        for v in keys:
            t = _flag_text.get((s, v))
            if t is None:
                if len(_flag_text) > 65536:
                    _flag_text.clear()
                t = _flag_text[(s, v)] = _flags.names(_SETS[s], v)
            names.append(t)
        parts.append((idx, names))
        where.append(sel)
    if len(parts) == 1:
        return _dict(*parts[0])
    ind = np.empty(len(values), np.int32)
    texts: list = []
    for (idx, names), sel in zip(parts, where):
        ind[sel] = np.asarray(idx) + len(texts)
        texts += names
    return _dict(pa.array(ind), texts)


def _args_map(batch, c: _Cols, env: tuple[bool, str] | None = None) -> pa.Array:
    """map<string, string>: the arguments not in a typed column that have a value, in order.

    The (event, slot) pairs come out of np.nonzero in event order, slots in order: integers are
    converted together, payloads together, and one take merges the two."""
    n, nr = c.n, c.nr
    offsets = np.zeros(n + 1, np.int32)
    ev_i, slot_k = np.nonzero(MAPPED[nr] & c.has_args[:, None])
    if not len(ev_i):
        return pa.MapArray.from_arrays(pa.array(offsets), pa.array([], pa.string()), pa.array([], pa.string()))
    kinds = KIND[nr[ev_i], slot_k]
    is_int = kinds < _K["str"]
    ii = np.flatnonzero(is_int)
    pp = np.flatnonzero(~is_int)
    parts = []
    keep = np.ones(len(ev_i), bool)
    if len(ii):
        e, k = ev_i[ii], slot_k[ii]
        v, signed = _int_values(c.args[e, k], kinds[ii], BITS[nr[e], k])
        parts.append(_int_text(v, signed))
    if len(pp):
        e, k = ev_i[pp], slot_k[pp]
        ok = _present(c.lens[e, k], c.args[e, k], c.flags[e], k, kinds[pp], c.offs[e, k])
        keep[pp[~ok]] = False
        pp = pp[ok]
        if len(pp):
            spec_kind = np.isin(kinds[pp], list(_args.SPEC_KINDS)) | np.array(
                [_args.strips_nul(int(nr[i]), int(k)) for i, k in zip(ev_i[pp], slot_k[pp])], bool)
            if spec_kind.any():
                # structures need their layout and the other arguments: lbd.args per event
                # (rare syscalls: bpf, capset, sendmsg, ...); text as the normal format prints it
                texts = [None] * len(pp)
                for j in np.flatnonzero(spec_kind):
                    i, k = int(ev_i[pp[j]]), int(slot_k[pp[j]])
                    v = batch.args(int(c.base[i])).get(_args.arg_specs(int(nr[i]))[k].name)
                    texts[j] = None if v is None or v is _args.UNREADABLE else \
                        v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else \
                        " ".join(str(x) for x in v) if isinstance(v, list) else str(v)
                got = np.array([t is not None for t in texts]) | ~spec_kind
                rest = pp[~spec_kind]
                if len(rest):
                    plain_text, has = _payload_text(_payloads(batch, c.base[ev_i[rest]], slot_k[rest]), kinds[rest])
                    hk = has
                    pl = iter(plain_text.to_pylist())
                    for pos_, j in enumerate(np.flatnonzero(~spec_kind)):
                        if hk is None or hk[pos_]:
                            texts[j] = next(pl)
                        else:
                            got[j] = False
                keep[pp[~got]] = False
                pp = pp[got]
                text = pa.array([t for t, g in zip(texts, got) if g], pa.string())
            else:
                text, has = _payload_text(_payloads(batch, c.base[ev_i[pp]], slot_k[pp]), kinds[pp])
                if has is not None:
                    keep[pp[~has]] = False
                    pp = pp[has]
            if env is not None and len(pp):
                text = _env_text(batch, c, ev_i[pp], slot_k[pp], text, *env)
            parts.append(text)
    pos = np.empty(len(ev_i), np.int64)
    pos[ii] = np.arange(len(ii))
    pos[pp] = len(ii) + np.arange(len(pp))
    kept = np.flatnonzero(keep)
    vals = pa.concat_arrays(parts) if len(parts) > 1 else parts[0]
    if len(pp) and len(ii):
        vals = vals.take(pa.array(pos[kept]))
    np.cumsum(np.bincount(ev_i[kept], minlength=n), out=offsets[1:])
    keys = KEYS.take(pa.array(KEY[nr[ev_i[kept]], slot_k[kept]]))
    return pa.MapArray.from_arrays(pa.array(offsets), keys, vals)


def _env_text(batch, c: _Cols, ev: np.ndarray, slots: np.ndarray, text: pa.Array, capture: bool,
              pattern: str) -> pa.Array:
    """text with its environment values (envp) as written: null without capture_env, else each
    string through mask_env, masked before the strings are joined (a secret value holding a
    space must not leave its second half)."""
    is_env = ENV[c.nr[ev], slots]
    if not is_env.any():
        return text
    import pyarrow.compute as pc

    from lbd.output.reference import mask_env

    where = np.flatnonzero(is_env)
    new = []
    if capture:
        for j in where:
            v = _args.decode(_K["strarr"], 64, 1, _payloads(batch, c.base[ev[j:j + 1]], slots[j:j + 1])[0].as_py())
            new.append(None if v is None else " ".join(mask_env(str(x), pattern) for x in v))
    else:
        new = [None] * len(where)
    mask = np.zeros(len(text), bool)
    mask[where] = True
    return pc.replace_with_mask(text, pa.array(mask), pa.array(new, pa.string()))


def _payload_text(raw: pa.Array, kinds: np.ndarray) -> tuple[pa.Array, np.ndarray | None]:
    """Text of payload arguments as the normal format prints them (lbd.output.reference
    format_value, not cut); keep: which have a value (None: all of them; a sockaddr of < 2
    bytes, an fd pair that is not 8 bytes have none).  The other kinds than text (argv, socket
    addresses, fd pairs) are decoded once per distinct value."""
    plain = _PLAIN[kinds]
    if plain.all():
        return _text(raw), None
    n = len(raw)
    parts, where = [], []
    if plain.any():
        parts.append(_text(raw.filter(pa.array(plain))))
        where.append(np.flatnonzero(plain))
    keep = np.ones(n, bool)
    for kind in np.unique(kinds[~plain]):
        sel = np.flatnonzero(kinds == kind)
        keys, idx = _distinct(raw.take(pa.array(sel)))
        texts = []
        for p in keys:
            v = _args.decode(int(kind), 64, 1, p)
            texts.append(None if v is None else " ".join(str(x) for x in v) if isinstance(v, list) else str(v))
        t = pa.array(texts, pa.string()).take(idx)
        valid = np.asarray(t.is_valid())
        keep[sel[~valid]] = False
        parts.append(t.filter(pa.array(valid)))
        where.append(sel[valid])
    return _reorder(parts, where, int(keep.sum())) if keep.all() else _reorder_kept(parts, where, keep), keep


def _reorder_kept(parts, where, keep) -> pa.Array:
    """_reorder over the kept entries only (positions renumbered among them)."""
    rank = np.cumsum(keep) - 1
    return _reorder(parts, [rank[w] for w in where], int(keep.sum()))


# ---- the writer ----------------------------------------------------------------------------------

_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)

#: Parquet settings: dictionary pages for the columns with few distinct values (not for the time
#: stamps and latencies, which are delta-encoded), min/max statistics for the columns queries
#: filter on (the others cost write time and help no predicate).
WRITE_OPTIONS = dict(
    use_dictionary=[f.name for f in SCHEMA if f.name not in ("ts", "latency")],
    write_statistics=["ts", "syscall", "nr", "res", "pid", "tid", "ppid", "uid", "gid", "comm", "user", "exe",
                      "fd", "sa_port"],
    column_encoding={"ts": "DELTA_BINARY_PACKED", "latency": "DELTA_BINARY_PACKED"},
)


class ParquetWriter:
    """Writes batches to a new Parquet file (SCHEMA, zstd), one row group per `row_group_size`
    events; a Writer-compatible object (`write_batch`, `flush`, `close`, `top_syscalls`,
    `events`, `bytes`, `name`, `format`).

    Invariants: the file is created (O_EXCL, mode 0600) by the constructor and is a valid Parquet
    file after close() -- also after a full disk, which stops the writer between row groups (see
    the module docstring); pending holds at most row_group_size events not yet written; after an
    error, write_batch/flush raise it again and close() only writes the footer."""

    format = "parquet"

    def __init__(self, path: str, *, row_group_size: int = 1 << 17, compression: str = "zstd",
                 compression_level: int | None = None, env: tuple[bool, str] | None = None):
        self.name = str(path)
        self.env = env      # (capture_env, secret_pattern): as the text formats write it; None: as recorded
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            raise OutputError(errno.EEXIST, f"cannot open output file {path}: it exists (Parquet files are "
                                            "not appended to: remove it or choose another path)") from None
        except OSError as e:
            raise OutputError(e.errno or errno.EIO, f"cannot open output file {path}: {e.strerror}") from None
        self._file = os.fdopen(fd, "wb", buffering=0)
        self.row_group_size = row_group_size
        self._pq = pq.ParquetWriter(self._file, SCHEMA, compression=compression,
                                    compression_level=compression_level, **WRITE_OPTIONS)
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._reserve = 1 << 16
        self.row_groups = 0
        self.events = 0           # events written into complete row groups or pending
        self.lost = 0             # events not written because of an error
        self.bytes = 0
        self.counts = np.zeros(NSC, dtype=np.int64)
        self.error: OutputError | None = None
        self.closed = False
        self._fallocate = hasattr(os, "posix_fallocate")

    def write_batch(self, batch, mask=None) -> int:
        if self.error is not None:
            raise self.error
        rb = record_batch(batch, mask, env=self.env)
        n = rb.num_rows
        if not n:
            return 0
        nr = batch.events["nr"] if mask is None else batch.events["nr"][np.asarray(mask, dtype=bool)]
        self.counts += np.bincount(nr, minlength=NSC)[:NSC]
        self._pending.append(rb)
        self._pending_rows += n
        self.events += n
        if self._pending_rows >= self.row_group_size:
            self._write_pending()
        return n

    def _write_pending(self) -> None:
        if not self._pending_rows:
            return
        table = pa.Table.from_batches(self._pending, schema=SCHEMA).unify_dictionaries()
        rows = self._pending_rows
        self._pending, self._pending_rows = [], 0
        pos = self._file.tell()
        if self._fallocate:
            # room for this row group and the footer after it.  Bound: the table's Arrow size;
            # Parquet's encoding takes at most half of it before compression (measured 0.22 on
            # host-like events, 0.48 on random ones; 0.08 and 0.28 after zstd)
            need = table.nbytes + self._reserve + (1 << 16)
            try:
                os.posix_fallocate(self._file.fileno(), pos, need)
            except OSError as e:
                if e.errno in _FULL:
                    self._fail(e, rows)
                elif e.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENODEV, errno.ESPIPE):
                    self._fallocate = False          # not a regular file / unsupported: write as is
                else:
                    self._fail(e, rows)
        try:
            self._pq.write_table(table, row_group_size=max(rows, 1))
        except OSError as e:
            self._fail(e, rows, footer=False)
        self.row_groups += 1
        self._reserve += 512 * table.num_columns     # the footer grows with each row group (~140 B a column)
        self.bytes = self._file.tell()

    def _fail(self, e: OSError, rows: int, footer: bool = True) -> None:
        self.lost += rows
        self.events -= rows
        self.error = OutputError(e.errno or errno.EIO, f"cannot write events to {self.name}: {e.strerror}"
                                 + (f" ({self.events} events in {self.row_groups} row groups kept)" if footer else ""))
        self._footer_ok = footer
        raise self.error from None

    def flush(self) -> None:
        """Write the pending events as a row group (small row groups compress less: the CLI only
        flushes at the end)."""
        if self.error is not None:
            raise self.error
        self._write_pending()

    def top_syscalls(self, n: int) -> list[tuple[str, int]]:
        order = np.argsort(-self.counts, kind="stable")[:n]
        return [(_args.syscall_name(int(nr)), int(self.counts[nr])) for nr in order if self.counts[nr]]

    def close(self) -> None:
        """Write what is pending, then the footer; trim what was reserved and not used."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.error is None:
                try:
                    self._write_pending()
                except OutputError:
                    pass
            if self.error is None or getattr(self, "_footer_ok", False):
                self._pq.close()
            end = self._file.tell()
            try:
                os.ftruncate(self._file.fileno(), end)
            except OSError:
                pass
            self.bytes = end
        finally:
            self._file.close()
        if self.error is not None:
            raise self.error

    def __enter__(self) -> ParquetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except OSError:
            pass


def open_parquet(cfg, output: str | None, **kw) -> ParquetWriter:
    """A ParquetWriter for the CLI: to `output`, else cfg's path when putfile is true."""
    from lbd.config import coerce

    cfg = coerce(cfg)
    if output is None and cfg.init.putfile:
        output = cfg.init.path
    if output is None or output == "-":
        raise OutputError(errno.EINVAL, "the parquet format writes a file: give --output PATH")
    kw.setdefault("env", (cfg.open.capture_env, cfg.init.secret_pattern))
    return ParquetWriter(output, **kw)
