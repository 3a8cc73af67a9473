"""Differential tests: the compiled state engine (lbd._enrich through lbd.enrich.Enricher) against
the readable oracle (lbd/_testing/state_reference.py) on the same event streams, batch by batch:
every event's context (ppid, parent comm, user, group, command line, executable, fd list) must be
the same.  The streams: random state streams in both kernel flavours (CO-RE records with argv,
executable and sockets; bcc records without), the benchmark's mixes, fully random records; with
small tables (eviction), small rich_value_size (cuts), no grace period, processes that vanish.
"""
from __future__ import annotations

import ast
import posixpath
import random
from pathlib import Path

import pytest

from lbd.enrich import event_info
from lbd.ringimage import random_records, sockaddr_in, sockaddr_in6
from tests.data.enrichmix import MIXES, mix_batches, mix_host, state_records
from tests.data.fakeproc import batch_of

_enrich = pytest.importorskip("lbd._enrich")


def _host(tmp_path):
    h = mix_host(tmp_path)
    # things the slow paths find: a process the stream names but the scan did not see, fds to link
    h.add_fd(2000, 9, "/srv/handle-target")
    h.add_fd(2001, 11, "socket:[4242]")
    return h


def assert_same(batches, en, ref, label=""):
    """Both engines over the batches: the same context for every event."""
    for k, b in enumerate(batches):
        en.enrich(b)
        got = [event_info(b, i) for i in range(len(b))]
        ref.enrich(b)
        want = [event_info(b, i) for i in range(len(b))]
        for i, (g, w) in enumerate(zip(got, want)):
            assert g == w, f"{label} batch {k} event {i} ({b.name(i)} pid {int(b.events['pid'][i])}):\n" \
                           f"  engine {g}\n  oracle {w}"


def _batches(records, size, seed=0):
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(records):
        n = rng.choice([1, size, size, size // 3 or 1])
        out.append(batch_of(*records[i: i + n], capacity=max(n, 1)))
        i += n
    return out


@pytest.mark.parametrize("core", [True, False], ids=["core", "bcc"])
@pytest.mark.parametrize("seed", range(4))
def test_random_state_streams(tmp_path, core, seed):
    h = _host(tmp_path)
    batches = _batches(state_records(3000, seed, core=core), 256, seed)
    assert_same(batches, h.enricher(), h.reference(), f"seed {seed}")


@pytest.mark.parametrize("core", [True, False], ids=["core", "bcc"])
def test_small_tables_and_cuts(tmp_path, core):
    """Eviction (4 processes), 40-byte strings and fd lists, no grace period, 2 users cached."""
    h = _host(tmp_path)
    kw = dict(max_procs=4, rich_value_size=40, grace_s=0, max_users=2, max_fds=6)
    batches = _batches(state_records(3000, 7, core=core), 128, 7)
    assert_same(batches, h.enricher(**kw), h.reference(**kw))


def test_no_text(tmp_path):
    h = _host(tmp_path)
    batches = _batches(state_records(1500, 3), 200, 3)
    assert_same(batches, h.enricher(rich_value_size=0), h.reference(rich_value_size=0))


def test_epochs_keep_the_context(tmp_path):
    """Tiny epochs: strings and fd rows start over every batch, the context does not change."""
    h = _host(tmp_path)
    batches = _batches(state_records(2000, 5), 100, 5)
    assert_same(batches, h.enricher(max_strtab=64, max_fd_rows=4), h.reference())


def test_processes_vanish_from_procfs(tmp_path):
    """Processes gone before they were read: header values, inherited fds, placeholders."""
    h = _host(tmp_path)
    en, ref = h.enricher(), h.reference()
    for pid in (2003, 2004, 100):
        h.remove_process(pid)
    assert_same(_batches(state_records(2000, 11), 200, 11), en, ref)


@pytest.mark.parametrize("mix", MIXES)
def test_benchmark_mixes(tmp_path, mix):
    h = mix_host(tmp_path)
    assert_same(mix_batches(mix, 3000, 512), h.enricher(), h.reference(), mix)


def test_random_records(tmp_path):
    """Records of every kind with random values."""
    h = _host(tmp_path)
    en, ref = h.enricher(), h.reference()
    for seed in range(3):
        assert_same([batch_of(*random_records(400, seed=seed))], en, ref, f"seed {seed}")


def test_normpath_agrees_with_posixpath():
    rng = random.Random(3)
    parts = ["", ".", "..", "a", "bc", "d.e", "..."]
    for _ in range(3000):
        p = "/" * rng.randint(1, 3) + "/".join(rng.choice(parts) for _ in range(rng.randint(0, 6)))
        assert _enrich._normpath(p.encode()) == posixpath.normpath(p).encode(), p


def test_socket_names_agree_with_ipaddress():
    from lbd._testing.state_reference import inet_name

    rng = random.Random(5)
    for _ in range(500):
        if rng.random() < 0.5:
            a = ".".join(str(rng.randrange(256)) for _ in range(4))
            raw, fam = sockaddr_in(a, rng.randrange(65536)), 2
        else:
            hx = [rng.choice([0, 0, 0, rng.randrange(65536)]) for _ in range(8)]
            a = ":".join(f"{x:x}" for x in hx)
            raw, fam = sockaddr_in6(a, rng.randrange(65536)), 10
        port = raw[2] << 8 | raw[3]
        addr = raw[4:8] if fam == 2 else raw[8:24]
        assert _enrich._sock_name(1, raw, 0) == inet_name(1, fam, addr, port, b"", 0, 0)
        assert _enrich._sock_name(2, raw, 3) == inet_name(2, fam, b"", 0, addr, port, 3)


def test_stub_matches_module():
    """lbd/_enrich.pyi names every public name of the module and of its classes, and no other."""
    tree = ast.parse((Path(_enrich.__file__).parent / "_enrich.pyi").read_text())
    stubbed = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    stubbed |= {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign)}
    public = {n for n in dir(_enrich) if not n.startswith("_") and not isinstance(getattr(_enrich, n), type(_enrich))}
    assert public == {n for n in stubbed if not n.startswith("_")}
    assert all(callable(getattr(_enrich, n, None)) for n in stubbed if n.startswith("_"))
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        members = {f.name for f in cls.body if isinstance(f, ast.FunctionDef) and f.name != "__init__"}
        members |= {f.target.id for f in cls.body if isinstance(f, ast.AnnAssign)}
        actual = {m for m in dir(getattr(_enrich, cls.name)) if not m.startswith("_")}
        assert members == actual, cls.name


def test_every_state_syscall_has_a_handler():
    from lbd.probe import STATE_SYSCALLS

    assert STATE_SYSCALLS <= _enrich.STATE_NAMES
