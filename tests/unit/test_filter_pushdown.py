"""open_params.filter pushed into the kernel's filters (lbd.filter.pushdown): keep-sets meet,
drop-sets join within the maps' sizes, contradictions become drop_mode, and the kernel so
configured never drops an event the filter keeps (checked on synthetic batches through the plan
the merged configuration implies)."""
from __future__ import annotations

import numpy as np
import pytest

from lbd import syscalls
from lbd.config import Config
from lbd.filter import compile as compile_filter
from lbd.filter.plan import KernelPlan
from lbd.filter.pushdown import compiled, kernel_config
from lbd.ringimage import image_of, make_record
from lbd.batch import Batch


def kcfg(**kw):
    return kernel_config(Config.from_dict(kw)).open


def test_no_filter_is_the_same_configuration():
    cfg = Config.from_dict({"syscalls": ["openat"]})
    assert kernel_config(cfg) is cfg and compiled(cfg) is None


def test_syscalls_meet_the_selection():
    assert kcfg(filter="syscall = openat and arg.filename startswith /etc/").syscalls == ("openat",)
    assert kcfg(filter="syscall in (openat, connect)", syscalls=["openat", "close"]).syscalls == ("openat",)
    assert kcfg(filter="syscall = connect", syscalls=["openat"]).drop_mode
    assert kcfg(filter="not syscall = close", syscalls=["openat", "close"]).syscalls == ("openat",)
    # only process-tree names: the probe always writes those; the selection stays
    o = kcfg(filter="syscall = sched_process_exec", syscalls=["openat"])
    assert o.syscalls == ("openat",) and not o.drop_mode


def test_pids_comms_uids():
    assert kcfg(filter="pid in (2, 3)", only_pids=[1, 2]).only_pids == (2,)
    assert kcfg(filter="pid = 3", only_pids=[1, 2]).drop_mode
    assert not kcfg(filter="pid = 3", only_pids=[1, 2], only_tids=[7]).drop_mode     # tids kept besides
    assert kcfg(filter="pid = 9").only_pids == (9,)
    assert kcfg(filter="not comm in (sshd, cron)", filter_comms=["login"]).filter_comms == ("login", "cron", "sshd")
    many = [f"c{i}" for i in range(16)]
    assert kcfg(filter="comm != x", filter_comms=many).filter_comms == tuple(many)    # the map is full
    assert kcfg(filter="uid != 0").filter_uids == (0,)
    assert kcfg(filter="uid = 1000 or uid = 1001").only_uids == (1000, 1001)


def test_failed():
    assert kcfg(filter="failed").failed_only
    assert kcfg(filter="not failed").drop_failed
    assert kcfg(filter="failed", drop_failed=True).drop_mode
    assert kcfg(filter="syscall = openat and syscall = close").drop_mode


def test_path_prefixes():
    assert kcfg(filter="syscall = openat and arg.filename startswith /etc/").path_prefixes == \
        ("openat:filename:/etc/",)
    # the user's own prefixes for a syscall stay; the plan adds those of the other syscalls
    o = kcfg(filter="syscall in (open, openat) and arg.filename startswith /etc/",
             path_prefixes=["openat:filename:/"])
    assert o.path_prefixes == ("openat:filename:/", "open:filename:/etc/")
    # a prefix longer than the bytes captured could never match: that syscall is not constrained
    long = "/" + "x" * 40
    assert kcfg(filter=f"syscall = openat and arg.filename startswith {long}", str_max=32).path_prefixes == ()
    # more entries than the kernel's map holds: none pushed (capturing more is safe)
    many = ", ".join(f"/d{k}/" for k in range(65))
    assert kcfg(filter=f"syscall = openat and arg.filename in ({many})").path_prefixes == ()
    # negated, or tested where the bytes do not decide the text: nothing
    assert kcfg(filter="syscall = openat and not arg.filename startswith /etc/").path_prefixes == ()
    assert kcfg(filter='syscall = openat and arg.filename startswith "\\x41"').path_prefixes == ()


def _admits(o, batch) -> np.ndarray:
    """What a kernel with these open_params keeps of the batch's syscalls (the plan's model)."""
    plan = KernelPlan(
        syscalls=frozenset(o.syscalls) or None, only_pids=frozenset(o.only_pids) or None,
        filter_pids=frozenset(o.filter_pids), only_comms=frozenset(o.only_comms) or None,
        filter_comms=frozenset(o.filter_comms), only_uids=frozenset(o.only_uids) or None,
        filter_uids=frozenset(o.filter_uids),
        failed=True if o.failed_only else False if o.drop_failed else None, matches_nothing=o.drop_mode,
        path_prefixes=frozenset(tuple(e.split(":", 2)) for e in o.path_prefixes))
    return plan.admits(batch)


@pytest.mark.parametrize("expr,narrows", [
    ("syscall = openat and arg.filename startswith /etc/", True),
    ("arg.filename startswith /tmp/ or syscall = close", True),
    ("syscall = openat and arg.filename = /etc/passwd and not failed", True),
    ("syscall in (openat, connect) and not comm in (cat, sshd)", True),
    ("(pid = 100 or uid = 0) and not failed", True),
    ("syscall = close or (comm = curl and res < 0)", False),       # an or the kernel cannot split
    ("not (syscall = openat or pid = 200)", True),
])
def test_the_kernel_never_drops_what_the_filter_keeps(expr, narrows):
    nr = syscalls.lookup
    recs = []
    for pid, comm, uid in ((100, "cat", 1000), (200, "curl", 0), (300, "sshd", 0)):
        for res in (3, -2):
            recs += [make_record(nr("openat").nr, {"dfd": -100, "filename": "/etc/passwd", "flags": 0, "mode": 0},
                                 pid=pid, tid=pid, uid=uid, comm=comm, res=res),
                     make_record(nr("openat").nr, {"dfd": -100, "filename": "/tmp/x", "flags": 0, "mode": 0},
                                 pid=pid, tid=pid, uid=uid, comm=comm, res=res),
                     make_record(nr("connect").nr, {"fd": 3, "uservaddr": b"", "addrlen": 0}, pid=pid, tid=pid,
                                 uid=uid, comm=comm, res=res),
                     make_record(nr("close").nr, {"fd": 3}, pid=pid, tid=pid, uid=uid, comm=comm, res=res)]
    batch = Batch(64, 1 << 20)
    ring = image_of(recs).ring()
    ring.fill(batch)
    keep = compile_filter(expr)(batch)
    o = kcfg(filter=expr, syscalls=["openat", "connect", "close"])
    admitted = _admits(o, batch)
    assert not (keep & ~admitted).any(), expr
    assert keep.any(), expr
    assert (~admitted).any() == narrows, expr           # what the kernel drops for it
