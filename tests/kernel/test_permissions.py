"""Credential and permission syscalls: set*id (and the uid/gid of the records that follow),
chmod and chown in all their forms."""
from __future__ import annotations

import ctypes
import os

from tests.kernel.conftest import AT_FDCWD, one, syscall

NOBODY = 65534
AT_SYMLINK_NOFOLLOW = 0x100


def b(path) -> bytes:
    return str(path).encode()


def test_setuid_setgid_then_records_carry_new_ids(cap):
    def work():
        groups = (ctypes.c_uint * 1)(NOBODY)
        out = {
            "setgroups": syscall(116, 1, groups), "groups": ctypes.addressof(groups),
            "setresgid": syscall(119, NOBODY, NOBODY, NOBODY),
            "setgid": syscall(106, NOBODY),
            "setuid": syscall(105, NOBODY),
            "getuid": syscall(102),
            "denied": syscall(105, 0),                  # nobody may not become root again
        }
        return out

    ev = cap.run(work)
    o = cap.result
    assert o["setuid"] == 0 and o["getuid"] == NOBODY and o["denied"] == -1
    cap.expect(one(ev, "setgroups"), {"gidsetsize": 1, "grouplist": [NOBODY]}, 0)   # the list read
    # the records of the id-changing calls show the ids after the call (as Falco's do)
    cap.expect(one(ev, "setresgid"), {"rgid": NOBODY, "egid": NOBODY, "sgid": NOBODY}, 0, gid=NOBODY)
    cap.expect(one(ev, "setgid"), {"gid": NOBODY}, 0, gid=NOBODY)
    cap.expect(one(ev, "setuid", lambda e: e.args["uid"] == NOBODY), {"uid": NOBODY}, 0, uid=NOBODY, gid=NOBODY)
    cap.expect(one(ev, "getuid"), {}, NOBODY, uid=NOBODY, gid=NOBODY)
    cap.expect(one(ev, "setuid", lambda e: e.args["uid"] == 0), {"uid": 0}, -1, uid=NOBODY, gid=NOBODY)


def test_setresuid(cap):
    def work():
        return syscall(117, 1000, 1001, 0)

    ev = cap.run(work)
    assert cap.result == 0
    cap.expect(one(ev, "setresuid"), {"ruid": 1000, "euid": 1001, "suid": 0}, 0, uid=1000)   # the ids after


def test_chmod_fchmod_fchmodat(cap, tmp_path):
    f = tmp_path / "f"
    f.write_text("x")

    def work():
        syscall(90, b(f), 0o600)                              # chmod
        fd = os.open(f, os.O_RDONLY)
        syscall(91, fd, 0o640)                                # fchmod
        dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        syscall(268, dfd, b"f", 0o4755)                       # fchmodat (setuid bit)
        bad = syscall(90, b(tmp_path / "nope"), 0o777)
        return fd, dfd, bad

    ev = cap.run(work)
    fd, dfd, bad = cap.result
    cap.expect(one(ev, "chmod", lambda e: e.res == 0), {"filename": str(f), "mode": 0o600}, 0)
    cap.expect(one(ev, "chmod", lambda e: e.res < 0), {"filename": str(tmp_path / "nope"), "mode": 0o777}, -2)
    cap.expect(one(ev, "fchmod"), {"fd": fd, "mode": 0o640}, 0)
    cap.expect(one(ev, "fchmodat"), {"dfd": dfd, "filename": "f", "mode": 0o4755}, 0)
    assert f.stat().st_mode & 0o7777 == 0o4755 and bad == -2


def test_chown_fchown_lchown_fchownat(cap, tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    link = tmp_path / "l"
    os.symlink("f", link)

    def work():
        syscall(92, b(f), 1000, 1001)                         # chown
        fd = os.open(f, os.O_RDONLY)
        syscall(93, fd, 1002, 0xFFFFFFFF)                     # fchown, group -1: unchanged
        syscall(94, b(link), 7, 8)                            # lchown
        dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        syscall(260, dfd, b"l", 9, 10, AT_SYMLINK_NOFOLLOW)   # fchownat
        return fd, dfd

    ev = cap.run(work)
    fd, dfd = cap.result
    cap.expect(one(ev, "chown"), {"filename": str(f), "user": 1000, "group": 1001}, 0)
    cap.expect(one(ev, "fchown"), {"fd": fd, "user": 1002, "group": 0xFFFFFFFF}, 0)
    cap.expect(one(ev, "lchown"), {"filename": str(link), "user": 7, "group": 8}, 0)
    cap.expect(one(ev, "fchownat"), {"dfd": dfd, "filename": "l", "user": 9, "group": 10,
                                     "flag": AT_SYMLINK_NOFOLLOW}, 0)
    st = f.stat()
    assert (st.st_uid, st.st_gid) == (1002, 1001)
    assert AT_FDCWD == -100
