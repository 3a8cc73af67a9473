"""extract_fields' C core on a batch with enrichment arrays (the contract of lbd/enrich/layout.py),
without a kernel: build/liblbd_extract_test.so (plugin/lbd_extract.c + a ctypes shim) gets a real
decoded Batch and arrays this test fills itself, then each field of each event.

Also: arrays that break the contract are rejected as a whole (the events fall back to their
records' values), and an event that is not in the batch (a copy) never reads them.
"""
from __future__ import annotations

import ctypes as ct

import numpy as np
import pytest

from lbd import syscalls
from lbd.batch import Batch
from lbd.enrich.layout import ENRICH_DTYPE, FD_DTYPE, empty_enrichment, event_info
from lbd.falco import FIELDS
from lbd.ringimage import image_of, make_record, sockaddr_in
from tests.plugin_host.host import ROOT, ensure_built

FTYPES = {"string": 9, "uint64": 8, "bool": 25, "reltime": 20, "ipaddr": 40}
IDS = {f.name: (i, FTYPES[f.type]) for i, f in enumerate(FIELDS)}


class Core:
    def __init__(self, str_max: int = 1024):
        ensure_built()
        self.lib = ct.CDLL(str(ROOT / "build" / "liblbd_extract_test.so"))
        self.lib.shim_new.restype = ct.c_void_p
        self.lib.shim_new.argtypes = [ct.c_uint64]
        self.lib.shim_free.argtypes = [ct.c_void_p]
        self.lib.shim_view.argtypes = [ct.c_void_p, ct.c_void_p, ct.c_uint32, ct.c_void_p, ct.c_void_p, ct.c_uint64,
                                       ct.c_void_p, ct.c_uint64, ct.c_char_p, ct.c_size_t]
        self.lib.shim_extract.argtypes = [ct.c_void_p, ct.c_void_p, ct.c_uint32, ct.c_char_p, ct.c_uint32,
                                          ct.c_char_p, ct.c_size_t]
        self.x = self.lib.shim_new(str_max)
        self.keep = ()

    def view(self, batch, enrich=None, strtab=None, fdtab=None) -> tuple[int, str]:
        n = len(batch)
        self.keep = (batch, enrich, strtab, fdtab)
        addr = lambda a: a.ctypes.data if a is not None and len(a) else None  # noqa: E731
        why = ct.create_string_buffer(256)
        rc = self.lib.shim_view(self.x, batch.ptrs.ctypes.data, n, addr(enrich), addr(strtab),
                                0 if strtab is None else len(strtab), addr(fdtab), 0 if fdtab is None else len(fdtab),
                                why, 256)
        return rc, why.value.decode()

    def field(self, evt_addr: int, label: str):
        name, _, arg = label.partition("[")
        fid, ftype = IDS[name]
        out = ct.create_string_buffer(1 << 16)
        n = self.lib.shim_extract(self.x, evt_addr, fid, arg.rstrip("]").encode() if arg else None, ftype, out, 1 << 16)
        text = out.value.decode()
        assert n >= 0, text
        vals = text.split("\n")[:n]
        return [int(v) for v in vals] if ftype in (8, 20, 25) else vals

    def close(self):
        self.lib.shim_free(self.x)


@pytest.fixture
def core():
    c = Core()
    yield c
    c.close()


def make_batch(records) -> Batch:
    b = Batch(64, 1 << 20)
    ring = image_of(records).ring()
    assert ring.fill(b) == len(records)
    b._ring = ring
    return b


def _records():
    nr = syscalls.lookup
    return [
        make_record(nr("openat").nr, {"dfd": -100, "filename": "/etc/passwd", "flags": 0, "mode": 0},
                    pid=100, tid=101, ppid=0, uid=1000, gid=50, comm="cat", res=3),
        make_record(nr("connect").nr, {"fd": 4, "uservaddr": sockaddr_in("10.1.2.3", 443), "addrlen": 16},
                    pid=200, tid=200, ppid=7, uid=0, gid=0, comm="curl", res=0),
        make_record(nr("close").nr, {"fd": 3}, pid=100, tid=100, ppid=0, uid=1000, gid=50, comm="cat"),
    ]


class Arena:
    def __init__(self):
        self.b = bytearray(b"\0")          # offset 0: the empty string

    def add(self, s: str) -> tuple[int, int]:
        off = len(self.b)
        raw = s.encode()
        self.b += raw + b"\0"
        return off, len(raw)

    def array(self) -> np.ndarray:
        return np.frombuffer(bytes(self.b), dtype=np.uint8)


def enrichment(batch):
    """Arrays for _records(): cat run by alice under bash with three files open; curl by root."""
    a = Arena()
    enrich = np.zeros(len(batch), dtype=ENRICH_DTYPE)
    people = {100: dict(ppid=42, pcomm="bash", user="alice", group="staff", cmdline="cat /etc/passwd",
                        fullpath="/usr/bin/cat"),
              200: dict(ppid=7, pcomm="systemd", user="root", group="root", cmdline="curl https://10.1.2.3/",
                        fullpath="/usr/bin/curl")}
    fds = {100: [(0, "/dev/pts/0"), (1, "/dev/pts/0"), (3, "/etc/passwd")], 200: []}
    fdrows = []
    for i, pid in enumerate(batch.events["pid"]):
        p = people[int(pid)]
        enrich[i]["ppid"] = p["ppid"]
        for col in ("pcomm", "user", "group", "cmdline", "fullpath"):
            enrich[i][col + "_off"], enrich[i][col + "_len"] = a.add(p[col])
        enrich[i]["fds_off"] = len(fdrows)
        enrich[i]["fds_n"] = len(fds[int(pid)])
        for fd, path in fds[int(pid)]:
            off, ln = a.add(path)
            fdrows.append((fd, off, ln))
    return enrich, a.array(), np.array(fdrows, dtype=FD_DTYPE)


def test_fields_come_from_the_batch_enrichment(core):
    batch = make_batch(_records())
    enrich, strtab, fdtab = enrichment(batch)
    assert core.view(batch, enrich, strtab, fdtab) == (0, "")
    cat, curl, close = (int(p) for p in batch.ptrs[:3])
    assert core.field(cat, "linux.user") == ["1000(alice)"]
    assert core.field(cat, "linux.user[key]") == ["1000"] and core.field(cat, "linux.user[value]") == ["alice"]
    assert core.field(cat, "linux.group") == ["50(staff)"] and core.field(cat, "linux.group[value]") == ["staff"]
    assert core.field(cat, "linux.cmdline") == ["cat /etc/passwd"]
    assert core.field(cat, "linux.fullpath") == ["/usr/bin/cat"]
    assert core.field(cat, "linux.pcomm") == ["bash"]
    assert core.field(cat, "linux.ppid") == ["42"] and core.field(cat, "linux.ppid.num") == [42]
    assert core.field(cat, "linux.fds") == ["0(/dev/pts/0)", "1(/dev/pts/0)", "3(/etc/passwd)"]
    assert core.field(cat, "linux.fds[key]") == ["0", "1", "3"]
    assert core.field(cat, "linux.fds[value]") == ["/dev/pts/0", "/dev/pts/0", "/etc/passwd"]
    assert core.field(cat, "linux.pid") == ["100"] and core.field(cat, "linux.tid") == ["101"]
    # linux.fd[N]: one fd's name; none for an fd not open, a key that is not a number
    assert core.field(cat, "linux.fd[0]") == ["/dev/pts/0"] and core.field(cat, "linux.fd[3]") == ["/etc/passwd"]
    assert core.field(cat, "linux.fd[2]") == [] and core.field(cat, "linux.fd[x]") == []
    assert core.field(curl, "linux.fd[0]") == []
    assert core.field(curl, "linux.user") == ["0(root)"] and core.field(curl, "linux.fds") == []
    assert core.field(curl, "linux.sockaddr.port") == [443] and core.field(curl, "linux.sockaddr.ip") == ["ip4"]
    assert core.field(curl, "linux.arg[uservaddr]") == ["10.1.2.3:443"]
    # events in any order (the index hint is only a hint)
    assert core.field(close, "linux.args") == ["fd=3"] and core.field(cat, "linux.args")[0].startswith("dfd=-100")
    assert core.field(close, "linux.cmdline") == ["cat /etc/passwd"]


def test_matches_lbd_enrich_event_info(core):
    """What the plugin shows of the enrichment is what lbd.enrich.layout.event_info reads."""
    batch = make_batch(_records())
    for arrays in (enrichment(batch), None):
        if arrays is None:
            empty_enrichment(batch)
            arrays = (batch.enrich, batch.strtab, batch.fdtab)
        batch.enrich, batch.strtab, batch.fdtab = arrays
        assert core.view(batch, *arrays)[0] == 0
        for i in range(len(batch)):
            e = int(batch.ptrs[i])
            info = event_info(batch, i)
            h = batch.events[i]
            assert core.field(e, "linux.user") == [f"{int(h['uid'])}({info['user']})"]
            assert core.field(e, "linux.group") == [f"{int(h['gid'])}({info['group']})"]
            assert core.field(e, "linux.cmdline") == ([info["cmdline"]] if info["cmdline"] else [])
            assert core.field(e, "linux.fullpath") == ([info["fullpath"]] if info["fullpath"] else [])
            assert core.field(e, "linux.pcomm") == ([info["pcomm"]] if info["pcomm"] else [])
            assert core.field(e, "linux.ppid.num") == [info["ppid"]]
            assert core.field(e, "linux.fds") == [f"{fd}({p})" for fd, p in info["fds"]]


def test_events_outside_the_batch_use_their_record(core):
    batch = make_batch(_records())
    assert core.view(batch, *enrichment(batch))[0] == 0
    copy = ct.create_string_buffer(bytes(batch.falco_event(0)))     # same bytes, another address
    addr = ct.addressof(copy)
    assert core.field(addr, "linux.user") == ["1000(1000)"]
    assert core.field(addr, "linux.cmdline") == ["cat"] and core.field(addr, "linux.fds") == []
    assert core.field(addr, "linux.ppid.num") == [0] and core.field(addr, "linux.pcomm") == []
    assert core.field(addr, "linux.args") == core.field(int(batch.ptrs[0]), "linux.args")


def test_fd_rows_no_event_uses_are_not_checked(core):
    """fdtab keeps rows of earlier batches of its epoch: the plugin checks (and reads) only the rows
    this batch's events point at, so a bad unused row costs nothing and rejects nothing."""
    batch = make_batch(_records())
    enrich, strtab, fdtab = enrichment(batch)
    bad = np.zeros(1, dtype=fdtab.dtype)
    bad[0]["path_off"] = len(strtab) + 100
    fdtab = np.concatenate([fdtab, bad])
    assert core.view(batch, enrich, strtab, fdtab)[0] == 0
    batch.enrich, batch.strtab, batch.fdtab = enrich, strtab, fdtab
    info = event_info(batch, 0)
    assert info["fds"]
    assert core.field(int(batch.ptrs[0]), "linux.fds") == [f"{fd}({p})" for fd, p in info["fds"]]


@pytest.mark.parametrize("breakage,reason", [
    ("user_off", "row 0: user at"),
    ("nul", "row 0: cmdline at"),
    ("fds", "row 0: fds"),
    ("fdpath", "fdtab row 1"),
    ("empty", None),              # no strtab at all: treated as no enrichment
])
def test_arrays_that_break_the_contract_are_not_used(core, breakage, reason):
    batch = make_batch(_records())
    enrich, strtab, fdtab = enrichment(batch)
    strtab = strtab.copy()
    if breakage == "user_off":
        enrich[0]["user_off"] = len(strtab) + 10
    elif breakage == "nul":
        strtab[enrich[0]["cmdline_off"] + enrich[0]["cmdline_len"]] = ord("x")
    elif breakage == "fds":
        enrich[0]["fds_n"] = len(fdtab) + 1
    elif breakage == "fdpath":
        fdtab[1]["path_len"] = len(strtab)
    elif breakage == "empty":
        strtab = np.zeros(0, dtype=np.uint8)
    rc, why = core.view(batch, enrich, strtab, fdtab)
    if reason is None:
        assert rc == 0
    else:
        assert rc == -1 and reason in why, why
    cat = int(batch.ptrs[0])
    assert core.field(cat, "linux.user") == ["1000(1000)"]        # the record's values, safely
    assert core.field(cat, "linux.fds") == []
