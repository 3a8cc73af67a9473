"""The push-down plan (lbd.filter.plan): what the kernel may drop, for and / or / not mixes, and how
it maps to open_params.  That it never drops an event the expression keeps is checked on random
expressions in test_filter_eval.py; here, that it pushes down what it can."""
from __future__ import annotations

import pytest

import lbd.filter as F
from lbd._testing import filter_reference as R
from lbd.filter.plan import KernelPlan
from tests.data.fakeproc import batch_of, rec


def plan(expr: str) -> KernelPlan:
    return F.compile(expr).plan


def params(expr: str) -> dict:
    return plan(expr).open_params()


@pytest.mark.parametrize("expr, want", [
    ("syscall in (open, openat) and arg.filename startswith /etc/ and not comm in (sshd, login)",
     {"syscalls": ["open", "openat"], "filter_comms": ["login", "sshd"],
      "path_prefixes": ["open:filename:/etc/", "openat:filename:/etc/"]}),
    ("syscall = openat", {"syscalls": ["openat"]}),
    ("syscall = openat or syscall = open", {"syscalls": ["open", "openat"]}),
    ("syscall in (open, openat) and syscall != open", {"syscalls": ["openat"]}),
    ("syscall != read", {"filter_syscalls": ["read"]}),
    ("not syscall in (read, write)", {"filter_syscalls": ["read", "write"]}),
    ("syscall glob 'setres*'", {"syscalls": ["setresgid", "setresuid"]}),
    ("syscall = sched_process_exec", {}),                 # process-tree records: always emitted
    ("pid = 42", {"only_pids": [42]}),
    ("pid in (1, 2) and pid != 2", {"only_pids": [1]}),
    ("pid != 1 and not pid = 2", {"filter_pids": [1, 2]}),
    ("comm = bash", {"only_comms": ["bash"]}),
    ("not (comm = bash or comm = sh)", {"filter_comms": ["bash", "sh"]}),
    ("uid = 0", {"only_uids": [0]}),
    ("uid != 0", {"filter_uids": [0]}),
    ("failed", {"failed_only": True}),
    ("not failed", {"drop_failed": True}),
    ("failed = false", {"drop_failed": True}),
    ("res < 0", {"failed_only": True}),
    ("res >= 0", {"drop_failed": True}),
    ("res > -1", {"drop_failed": True}),
    ("res = -13", {"failed_only": True}),
    ("errno = EACCES", {"failed_only": True}),
    ("errno in (EACCES, EPERM)", {"failed_only": True}),
    ("errno = 0", {"drop_failed": True}),
    ("errno != 0", {"failed_only": True}),
    ("not errno = 0", {"failed_only": True}),
    ("errno > 0", {"failed_only": True}),
    ("syscall = openat and (pid = 1 or pid = 2) and uid = 0 and not failed",
     {"syscalls": ["openat"], "only_pids": [1, 2], "only_uids": [0], "drop_failed": True}),
    # or: only what both sides constrain
    ("syscall = openat or pid = 1", {}),
    ("(syscall = openat and pid = 1) or (syscall = open and pid = 2)", {"syscalls": ["open", "openat"], "only_pids": [1, 2]}),
    ("(syscall = openat and failed) or syscall = open", {"syscalls": ["open", "openat"]}),
    ("pid = 1 or not pid = 2", {"filter_pids": [2]}),
    # not: De Morgan
    ("not (pid = 5 and comm = x)", {}),
    ("not (pid = 5 or comm = x)", {"filter_pids": [5], "filter_comms": ["x"]}),
    ("not not pid = 3", {"only_pids": [3]}),
    # tests on other fields imply nothing
    ("not arg.filename = /etc/passwd", {}),
    ("comm startswith ba", {}),
    ("pid > 5", {}),
    ("ppid = 1", {}),
    ("not arg.fd = 3", {}),
    # what cannot be true drops everything
    ("pid = 1 and pid = 2", {"drop_mode": True}),
    ("failed and not failed", {"drop_mode": True}),
    ("syscall = open and syscall = read", {"drop_mode": True}),
    ("errno = EACCES and res >= 0", {"drop_mode": True}),
    ("pid = 99999999999", {"drop_mode": True}),           # never a pid
])
def test_push_down(expr, want):
    assert params(expr) == want


def test_comm_values_the_kernel_cannot_compare():
    # A keep set must hold every comm the test passes; "\\xff" is the text of a byte, so no keep set.
    assert params('comm = "a\\xff"') == {}
    assert params('comm != "a\\xff"') == {"filter_comms": ["a\\xff"]}    # dropping that text is safe
    assert params("comm in (a, 0123456789abcdefg)") == {"only_comms": ["a"]}   # 17 bytes: never a comm
    assert params("comm = 0123456789abcdef") == {"only_comms": ["0123456789abcdef"]}


def test_limits_leave_a_dimension_out():
    many = ", ".join(str(p) for p in range(1, 70))
    assert "only_pids" not in params(f"pid in ({many})")
    assert plan(f"pid in ({many})").only_pids == frozenset(range(1, 70))
    assert params("pid = 4194304") == {}                  # beyond lbd's pid range: not pushed
    comms = ", ".join(f"c{k}" for k in range(17))
    assert params(f"not comm in ({comms})") == {}


def test_admits_models_the_kernel():
    b = batch_of(
        rec("openat", {"dfd": -100, "filename": "/etc/passwd", "flags": 0}, pid=1, comm="bash", res=3),
        rec("openat", {"dfd": -100, "filename": "/etc/passwd", "flags": 0}, pid=2, comm="sshd", res=-13),
        rec("read", {"fd": 3, "buf": b"", "count": 1}, pid=1, comm="bash", uid=1000, res=0),
        rec("sched_process_exit", {"pid": 2, "group_dead": 1}, pid=2, comm="sshd"),
    )
    cases = {
        "syscall = openat": [True, True, False, True],     # process-tree records pass the syscall test
        "pid = 1": [True, False, True, False],
        "not comm = sshd": [True, False, True, False],
        "uid = 0": [True, True, False, True],
        "failed": [False, True, False, False],
        "not failed": [True, False, True, True],
        "pid = 1 and pid = 2": [False] * 4,
        "arg.filename startswith /etc/pa": [True, True, False, True],
        "syscall = openat and arg.filename startswith /etc/x": [False, False, False, True],
    }
    for expr, want in cases.items():
        p = plan(expr)
        assert p.admits(b).tolist() == want, expr
        assert R.plan_keeps(p, b) == want, expr
        assert not (F.compile(expr)(b) & ~p.admits(b)).any()


def test_describe():
    assert plan("pid = 1").describe() == "only_pids=[1]"
    assert plan("not arg.fd = 1").describe() == "nothing"
    assert plan("syscall = openat and arg.filename startswith /etc/").describe() == \
        "syscalls=['openat'], path_prefixes=['openat:filename:/etc/']"
