"""The compiled filter against its definition: for random expressions over realistic batches, the
vectorised evaluator (compiled span loop and numpy path) selects exactly what the plain per-event
reference (lbd._testing.filter_reference) selects, and the kernel push-down never drops an event
the expression keeps.  Then the meaning of each field on hand-made events, and the span matcher."""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import lbd.filter as F
from lbd._testing import filter_reference as R
from lbd.enrich.layout import empty_enrichment
from lbd.filter import spans
from lbd.ringimage import random_cases, sockaddr_in, sockaddr_in6, sockaddr_un
from tests.data.enrichmix import mix_batches, mix_host
from tests.data.fakeproc import FakeHost, batch_of, rec
from tests.data.filterexprs import Pools, expressions

PATHS = ["compiled", "numpy"]


@pytest.fixture(params=PATHS)
def path(request):
    if request.param == "compiled" and not spans.compiled() and spans._c is None:
        pytest.skip("lbd._filter is not built (setup.py's EXTENSIONS lacks it): only the numpy path runs")
    old = spans.use_compiled(request.param == "compiled")
    yield request.param
    spans.use_compiled(old)


# ---- batches -----------------------------------------------------------------------------------

class Case:
    """A batch, the reference's view of its events, and literal pools drawn from it."""

    def __init__(self, batch):
        self.batch = batch
        self.events = R.events_of(batch)
        self.pools = Pools.of(batch)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """Four batches: random records of every kind (payloads not UTF-8, NULL pointers, faults,
    enter records, exits without enter, process-tree records), the same with the kernel-only
    enrichment, and two enriched streams of a fake host (fd churn; fork / exec / exit)."""
    out = {}
    rnd = batch_of(*[c.record for c in random_cases(700, seed=11)])
    out["random"] = Case(rnd)
    rnd2 = batch_of(*[c.record for c in random_cases(500, seed=12)])
    empty_enrichment(rnd2)
    out["random+kernel-enrichment"] = Case(rnd2)
    for mix, seed in (("openclose", 3), ("forkexec", 4)):
        en = mix_host(tmp_path_factory.mktemp(mix)).enricher()   # one each: an enricher reuses its arrays
        batches = mix_batches(mix, 1024, 512, seed=seed)
        for b in batches:
            en.enrich(b)
        out[mix] = Case(batches[-1])
    return out


def check(case: Case, expr: str) -> None:
    """The compiled filter selects what the reference selects; the plan keeps all of it."""
    try:
        f = F.compile(expr)
    except F.FilterError:
        return                                         # the generator made an invalid test: no claim
    got = f(case.batch)
    want = np.array(R.evaluate(expr, case.batch, case.events), dtype=bool)
    assert got.dtype == bool and got.shape == (len(case.batch),)
    diff = np.flatnonzero(got != want)
    assert not len(diff), f"{expr!r}: events {diff[:10].tolist()} differ (compiled {got[diff[:10]].tolist()})"
    kept_by_kernel = np.array(R.plan_keeps(f.plan, case.batch), dtype=bool)
    assert not (want & ~kept_by_kernel).any(), f"{expr!r}: the plan {f.plan} drops events the filter keeps"
    assert (f.plan.admits(case.batch) == kept_by_kernel).all(), f"{expr!r}: admits() differs from the model"


@pytest.mark.parametrize("name", ["random", "random+kernel-enrichment", "openclose", "forkexec"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data())
def test_differential(cases, path, name, data):
    case = cases[name]
    check(case, data.draw(expressions(case.pools), label="expression"))


def test_generated_expressions_are_mostly_valid_and_selective(cases):
    """The differential test means something: its expressions compile, and select some events,
    none or all, and push something down, in fair proportions."""
    import random

    from tests.data.filterexprs import random_expression

    rng = random.Random(5)
    for name, case in cases.items():
        counts = {"invalid": 0, "none": 0, "some": 0, "all": 0, "pushed": 0}
        for _ in range(200):
            expr = random_expression(case.pools, rng)
            try:
                f = F.compile(expr)
            except F.FilterError:
                counts["invalid"] += 1
                continue
            k = int(f(case.batch).sum())
            counts["none" if k == 0 else "all" if k == len(case.batch) else "some"] += 1
            counts["pushed"] += bool(f.plan.open_params())
        assert counts["invalid"] < 10, (name, counts)
        assert counts["some"] > 40 and counts["none"] > 10 and counts["all"] > 5, (name, counts)
        assert counts["pushed"] > 30, (name, counts)


@pytest.mark.parametrize("expr", [
    "syscall in (open, openat) and arg.filename startswith /etc/ and not comm in (sshd, login)",
    "arg.filename contains xff", 'arg.filename contains "\\xff"', 'comm = "\\xff"', "comm contains é",
    "arg.filename glob '*[0-9]*'", "arg.filename glob '*é?'", "arg.argv contains ' '", "arg.buf endswith a",
    "not arg.filename = x", "arg.filename != x", "sockaddr.ip != 0.0.0.0/1", "sockaddr.port > 1000",
    "arg.flags contains O_CLOEXEC", "arg.type contains SOCK_CLOEXEC", "arg.flags glob '*|*'", "errno > 5",
    "dir = > or syscall startswith sched", "ppid < 100", "latency >= 0x1000", "arg.usockvec contains 3",
    "arg.upeer_addrlen = 16", "res < -4095 or res > 65535", "arg.mode = F_OK",
])
def test_fixed_expressions(cases, path, expr):
    for case in cases.values():
        check(case, expr)


def test_enriched_fields_on_enriched_batches(cases, path):
    for name in ("openclose", "forkexec", "random+kernel-enrichment"):
        case = cases[name]
        for expr in ("cmdline contains worker", "exe endswith sh", "user = root", "group != root",
                     "pcomm = bash", "fd.name startswith /srv", "fd.name contains socket",
                     "fd.name = /dev/null or fd.name glob 'pipe:*'", "not fd.name contains /"):
            check(case, expr)


# ---- the meaning of each field, on hand-made events --------------------------------------------

O_WRONLY, O_CREAT, O_TRUNC, O_CLOEXEC = os.O_WRONLY, os.O_CREAT, os.O_TRUNC, os.O_CLOEXEC


def who_opens_etc():
    return batch_of(
        rec("openat", {"dfd": -100, "filename": "/etc/shadow", "flags": O_CLOEXEC}, pid=10, comm="cat", res=3),
        rec("openat", {"dfd": -100, "filename": "/etc/shadow", "flags": 0}, pid=11, comm="sshd", res=4),
        rec("open", {"filename": "/etc/passwd", "flags": 0, "mode": 0}, pid=12, comm="login", res=5),
        rec("openat", {"dfd": -100, "filename": "/usr/lib/libc.so.6", "flags": O_CLOEXEC}, pid=10, comm="cat",
            res=3),
        rec("openat", {"dfd": -100, "filename": "/etc/shadow", "flags": O_WRONLY | O_CREAT | O_TRUNC,
                       "mode": 0o600}, pid=13, comm="evil", uid=1000, res=-13),
        rec("unlinkat", {"dfd": -100, "pathname": "/etc/shadow", "flag": 0}, pid=13, comm="evil", uid=1000, res=-1),
        rec("sched_process_exec", {"pid": 14, "old_pid": 14, "filename": "/etc/init.d/x"}, pid=14, comm="x"),
    )


@pytest.mark.parametrize("expr, selected", [
    ("syscall in (open, openat) and arg.filename startswith /etc/ and not comm in (sshd, login)", [0, 4]),
    ("arg.filename startswith /etc/", [0, 1, 2, 4, 6]),
    ("arg.pathname = /etc/shadow", [5]),
    ("errno = EACCES", [4]),
    ("errno = 13 or errno = EPERM", [4, 5]),
    ("failed", [4, 5]),
    ("not failed and syscall = openat", [0, 1, 3]),
    ("res >= 3 and res <= 4", [0, 1, 3]),
    ("uid != 0", [4, 5]),
    ("arg.flags contains O_CREAT", [4]),
    ("arg.flags contains O_RDONLY", [0, 1, 2, 3]),  # O_RDONLY|O_CLOEXEC too
    ("arg.flags contains O_WRONLY|O_TRUNC", [4]),
    ("arg.flags = O_WRONLY|O_CREAT|O_TRUNC", [4]),
    ("arg.flags = O_RDONLY", [1, 2]),
    ("arg.flags glob '*CLOEXEC'", [0, 3]),
    ("arg.mode = 0600", [4]),
    ("arg.mode != 0600", [0, 1, 2, 3]),       # absent elsewhere (unlinkat, exec): != fails there too
    ("not arg.mode = 0600", [0, 1, 2, 3, 5, 6]),
    ("syscall glob 'open*'", [0, 1, 2, 3, 4]),
    ("syscall = 257", [0, 1, 3, 4]),
    ("syscall != openat", [2, 5, 6]),
    ("syscall = sched_process_exec", [6]),
    ("comm = cat and pid = 10", [0, 3]),
    ("pid in (11, 0x0c)", [1, 2]),
    ("arg.filename endswith shadow", [0, 1, 4]),
    ("arg.filename contains libc", [3]),
    ("comm startswith ev", [4, 5]),
    ("dir = <", [0, 1, 2, 3, 4, 5, 6]),
])
def test_who_opens_etc(path, expr, selected):
    b = who_opens_etc()
    assert np.flatnonzero(F.compile(expr)(b)).tolist() == selected
    assert R.evaluate(expr, b) == [i in selected for i in range(len(b))]


def test_network_fields(path):
    b = batch_of(
        rec("connect", {"fd": 3, "uservaddr": sockaddr_in("10.1.2.3", 443), "addrlen": 16}, res=0),
        rec("connect", {"fd": 3, "uservaddr": sockaddr_in6("2001:db8::1", 80), "addrlen": 28}, res=-111),
        rec("connect", {"fd": 4, "uservaddr": sockaddr_un("/run/dbus/system_bus_socket"), "addrlen": 30}, res=0),
        rec("bind", {"fd": 5, "umyaddr": sockaddr_in("0.0.0.0", 8080), "addrlen": 16}, res=0),
        rec("sendto", {"fd": 3, "buff": b"GET / HTTP/1.1", "len": 14, "flags": 0, "addr": None, "addr_len": 0},
            res=14),
        rec("accept4", {"fd": 5, "upeer_sockaddr": sockaddr_in("192.168.1.9", 51000), "upeer_addrlen": (16,),
                        "flags": O_CLOEXEC}, res=6),
    )
    sel = lambda e: np.flatnonzero(F.compile(e)(b)).tolist()  # noqa: E731
    assert sel("sockaddr.ip = 10.1.2.3") == [0]
    assert sel("sockaddr.ip in (10.0.0.0/8, 192.168.0.0/16)") == [0, 5]
    assert sel("sockaddr.ip = 2001:db8::/32") == [1]
    assert sel("sockaddr.ip != 10.0.0.0/8") == [1, 3, 5]        # no address on a unix socket: not !=
    assert sel("sockaddr.port = 443 or sockaddr.port >= 50000") == [0, 5]
    assert sel("sockaddr.family = AF_INET6") == [1]
    assert sel("sockaddr.family in (AF_UNIX, AF_INET6)") == [1, 2]
    assert sel("sockaddr.path startswith /run/dbus") == [2]
    assert sel("sockaddr.ip startswith 192.") == [5]
    assert sel("arg.uservaddr = '10.1.2.3:443'") == [0]
    assert sel("arg.buff startswith GET") == [4]
    assert sel("syscall = connect and failed") == [1]
    assert sel("errno = ECONNREFUSED") == [1]
    assert sel("arg.upeer_addrlen = 16") == [5]
    for e in ("sockaddr.ip = 10.1.2.3", "sockaddr.ip != 10.0.0.0/8", "sockaddr.port = 443", "arg.buff contains HTTP"):
        assert R.evaluate(e, b) == F.compile(e)(b).tolist()


def test_fd_name_and_enriched_fields(tmp_path, path):
    host = FakeHost(tmp_path)
    host.add_process(1, "systemd", 0, ["/sbin/init"], exe="/usr/lib/systemd/systemd")
    host.add_process(50, "bash", 1, ["-bash"], exe="/usr/bin/bash", fds={0: "/dev/pts/0"})
    host.add_process(60, "cat", 50, ["cat", "/etc/shadow"], exe="/usr/bin/cat", fds={0: "/dev/pts/0"})
    b = batch_of(
        rec("openat", {"dfd": -100, "filename": "/etc/shadow", "flags": 0}, pid=60, ppid=50, comm="cat", res=3),
        rec("read", {"fd": 3, "buf": b"root:x", "count": 4096}, pid=60, ppid=50, comm="cat", res=6),
        rec("read", {"fd": 0, "buf": b"", "count": 4096}, pid=60, ppid=50, comm="cat", res=0),
        rec("close", {"fd": 3}, pid=60, ppid=50, comm="cat", res=0),
        rec("getpid", {}, pid=60, ppid=50, comm="cat", res=60),
        rec("openat", {"dfd": -100, "filename": "/nope", "flags": 0}, pid=60, ppid=50, comm="cat", res=-2),
    )
    cmd = F.compile("cmdline contains shadow")
    with pytest.raises(F.FilterError) as ei:
        cmd(b)
    assert ei.value.column == 1 and "cmdline needs the enrichment" in ei.value.message
    with pytest.raises(F.FilterError, match="fd.name needs the enrichment"):
        F.compile("pid = 60 and fd.name = x")(b)
    assert F.compile("pid = 60 and fd.name = x").needs_enrichment
    assert not F.compile("pid = 60").needs_enrichment
    host.enricher().enrich(b)
    sel = lambda e: np.flatnonzero(F.compile(e)(b)).tolist()  # noqa: E731
    assert sel("cmdline contains shadow") == [0, 1, 2, 3, 4, 5]
    assert sel("fd.name = /etc/shadow") == [0, 1]               # openat's new fd, read's fd
    assert sel("fd.name startswith /dev/pts") == [2]
    assert sel("not fd.name contains /") == [3, 4, 5]           # closed, none, failed
    assert sel("pcomm = bash and exe = /usr/bin/cat and user = root") == [0, 1, 2, 3, 4, 5]
    assert sel("ppid = 50") == [0, 1, 2, 3, 4, 5]
    for e in ("fd.name = /etc/shadow", "not fd.name contains /", "fd.name startswith /dev"):
        assert R.evaluate(e, b) == F.compile(e)(b).tolist()


def test_container_context_fields():
    """cgroup_id, pidns, mntns and loginuid are header columns (record version 2)."""
    b = batch_of(rec("getppid", {}, cgroup_id=77, pidns=4026531836, mntns=4026531840, loginuid=1000),
                 rec("getppid", {}, cgroup_id=5, pidns=1, mntns=2, loginuid=0xFFFFFFFF))
    assert F.compile("cgroup_id = 77")(b).tolist() == [True, False]
    assert F.compile("pidns = 4026531836 and mntns = 4026531840")(b).tolist() == [True, False]
    assert F.compile("loginuid = 1000")(b).tolist() == [True, False]
    assert F.compile("loginuid != 1000")(b).tolist() == [False, True]


def test_text_is_what_lbd_prints():
    """Undecodable bytes read as \\xNN; comm and paths compare on that text."""
    b = batch_of(
        rec("openat", {"dfd": -100, "filename": b"/tmp/a\xffb", "flags": 0}, comm=b"ab\xff", res=3),
        rec("openat", {"dfd": -100, "filename": "/tmp/a\\xffb", "flags": 0}, comm="ab\\xff", res=3),
        rec("openat", {"dfd": -100, "filename": "/tmp/é", "flags": 0}, comm="0123456789abcdef", res=3),
    )
    sel = lambda e: np.flatnonzero(F.compile(e)(b)).tolist()  # noqa: E731
    for use_c in (True, False):
        spans.use_compiled(use_c)
        assert sel('arg.filename = "/tmp/a\\xffb"') == [0, 1]   # both print as /tmp/a\xffb
        assert sel("arg.filename contains ffb") == [0, 1]
        assert sel("arg.filename endswith b") == [0, 1]
        assert sel("arg.filename glob '/tmp/?'") == [2]          # é is one character
        assert sel("arg.filename glob '/tmp/a????b'") == [0, 1]
        assert sel('comm = "ab\\xff"') == [0, 1]
        assert sel("comm = 0123456789abcdef") == [2]            # a 16-byte comm (no NUL)
        assert sel("comm endswith f") == [0, 1, 2]
    spans.use_compiled(True)


def test_empty_batch_and_untouched_batch():
    b = batch_of()
    assert F.compile("pid = 1")(b).shape == (0,)
    b = who_opens_etc()
    before = b.events.copy()
    F.compile("arg.filename glob '*' and comm contains a")(b)
    assert (b.events == before).all()


# ---- the span matcher: compiled loop, numpy path, definition -----------------------------------

_bytes = st.lists(st.sampled_from([b"a", b"b", b"/", b"x", b"f", b"\\", b"\x00", b"\xc3\xa9", b"\xff", b"\xc3",
                                   b"\xe2\x82", b"\xed\xa0\x80", b"\xf0\x9f\x98\x80", b"*"]), max_size=8).map(b"".join)
_needle = st.lists(st.sampled_from(["a", "b", "/", "x", "f", "\\", "é", "*", "?", "xf", "\\xff", "[a-c]", "😀"]),
                   max_size=4).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.lists(_bytes, min_size=1, max_size=6), st.sampled_from(spans.OPS), st.lists(_needle, min_size=1, max_size=3))
def test_spans_match_their_definition(values, op, needles):
    buf = np.frombuffer(b"".join(values), dtype=np.uint8)
    length = np.array([len(v) for v in values], dtype=np.int64)
    start = np.concatenate(([0], np.cumsum(length)[:-1])).astype(np.int64)
    want = [spans.text_match(spans.decode(v), op, needles) for v in values]
    old = spans.use_compiled(False)
    try:
        assert spans.match(buf, start, length, op, needles, raw=True).tolist() == want
        if spans._c is not None:
            spans.use_compiled(True)
            assert spans.match(buf, start, length, op, needles, raw=True).tolist() == want
    finally:
        spans.use_compiled(old)


def test_compiled_spans_check_their_bounds():
    if spans._c is None:
        pytest.skip("lbd._filter is not built")
    buf = np.zeros(4, dtype=np.uint8)
    with pytest.raises(ValueError, match="outside a buffer of 4 bytes"):
        spans._c.match_spans(buf, np.array([2], dtype=np.int64), np.array([3], dtype=np.int64), 0, [b"x"], True)
    with pytest.raises(ValueError, match="needles"):
        spans._c.match_spans(buf, np.array([0], dtype=np.int64), np.array([1], dtype=np.int64), 0, [], True)
