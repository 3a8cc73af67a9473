"""The files lbd writes as root (event output, log file, putfile) and reads (configuration,
selection): no link followed, no directory others can write, mode 0600, regular input files of
bounded size; every refusal one line that names the file."""
from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import pytest

from lbd.config import Config
from lbd.files import InputFileError, PrivateFile, PrivateFileError, PrivateLogHandler, read_input_file
from lbd.output.writer import OutputError, open_writer
from tests.data.fakeproc import batch_of, rec

NOBODY = 65534
ROOT = os.geteuid() == 0


def as_nobody(fn) -> None:
    """Run fn in a child process as user nobody (as root), or as ourselves otherwise."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            if ROOT:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            fn()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the unprivileged child failed"


@pytest.fixture
def sticky():
    """A /tmp-like directory nobody can reach: world-writable and sticky."""
    d = Path(tempfile.mkdtemp(prefix="lbd-sticky-", dir="/tmp"))
    os.chmod(d, 0o1777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def secret(tmp_path):
    """A root-owned 0600 file an attacker would like lbd to append to."""
    p = tmp_path / "shadow"
    p.write_text("root:secret\n")
    os.chmod(p, 0o600)
    return p


def test_a_link_planted_by_another_user_is_not_followed(sticky, secret):
    link = sticky / "events.log"
    as_nobody(lambda: os.symlink(secret, link))
    assert os.lstat(link).st_uid == (NOBODY if ROOT else os.geteuid())
    before = secret.read_bytes()
    with pytest.raises(OutputError) as e:
        open_writer(Config.default(), str(link))
    assert str(e.value) == (f"cannot open output file {link}: it is a symbolic link, and lbd does not follow "
                            f"links for the files it writes; give the real path")
    assert secret.read_bytes() == before and stat.S_IMODE(os.stat(secret).st_mode) == 0o600


def test_cli_refuses_the_planted_link_before_capturing(sticky, secret):
    link = sticky / "ev.log"
    as_nobody(lambda: os.symlink(secret, link))
    p = subprocess.run([sys.executable, "-m", "lbd.cli", "run", "-o", str(link), "--duration", "1"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert p.stderr == f"lbd: error: cannot open output file {link}: it is a symbolic link, and lbd does not " \
                       f"follow links for the files it writes; give the real path\n"
    assert secret.read_text() == "root:secret\n"


def test_log_file_and_putfile_links_are_refused(sticky, secret, tmp_path):
    link = sticky / "lbd.log"
    as_nobody(lambda: os.symlink(secret, link))
    with pytest.raises(PrivateFileError, match="cannot open log file .*: it is a symbolic link"):
        PrivateLogHandler(str(link))
    cfg = Config.default().replace(putfile=True, path=str(link))
    with pytest.raises(OutputError, match="it is a symbolic link"):
        open_writer(cfg)
    assert secret.read_text() == "root:secret\n"


@pytest.mark.skipif(not ROOT, reason="needs root to create another user's file")
def test_in_a_sticky_directory_only_our_own_file_is_written(sticky):
    theirs = sticky / "events.log"
    as_nobody(lambda: theirs.write_text("planted\n"))
    with pytest.raises(OutputError, match=r"belongs to uid 65534 in a directory every user can write"):
        open_writer(Config.default(), str(theirs))
    fifo = sticky / "f"
    as_nobody(lambda: os.mkfifo(fifo))
    with pytest.raises(OutputError, match=r"belongs to uid 65534"):      # refused before an open that would block
        open_writer(Config.default(), str(fifo))
    ours = sticky / "mine.log"
    with open_writer(Config.default(), str(ours)) as w:
        w.write_batch(batch_of(rec("getpid")))
    st = os.stat(ours)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (os.geteuid(), 0o600)


def test_a_directory_others_can_write_is_refused_unless_sticky(tmp_path):
    d = tmp_path / "open"
    d.mkdir(mode=0o777)
    os.chmod(d, 0o777)
    with pytest.raises(OutputError) as e:
        open_writer(Config.default(), str(d / "events.log"))
    assert str(e.value) == (f"cannot open output file {d / 'events.log'}: its directory {d} can be written by every "
                            f"user (mode 0777) and is not sticky; use a directory only root can write")
    assert not (d / "events.log").exists()
    if ROOT:
        os.chown(d, NOBODY, NOBODY)
        os.chmod(d, 0o755)
        with pytest.raises(OutputError, match=r"can be written by uid 65534 \(mode 0755\)"):
            open_writer(Config.default(), str(d / "events.log"))


def test_an_existing_file_is_forced_to_0600(tmp_path):
    p = tmp_path / "events.log"
    p.write_text("")
    os.chmod(p, 0o644)
    with open_writer(Config.default(), str(p)) as w:
        w.write_batch(batch_of(rec("getpid")))
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600


def test_a_file_with_other_names_is_refused(tmp_path):
    p = tmp_path / "events.log"
    p.write_text("")
    os.link(p, tmp_path / "other")
    with pytest.raises(OutputError, match="it has 2 hard links"):
        open_writer(Config.default(), str(p))


@pytest.mark.skipif(not ROOT, reason="needs root to give a file to another user")
def test_a_file_of_another_user_is_refused(tmp_path):
    p = tmp_path / "events.log"
    p.write_text("")
    os.chown(p, NOBODY, NOBODY)
    with pytest.raises(OutputError, match=r"it belongs to uid 65534, not to lbd's user \(uid 0\)"):
        open_writer(Config.default(), str(p))


def test_devices_and_fifos_are_written_as_they_are(tmp_path):
    with open_writer(Config.default(), "/dev/null") as w:
        w.write_batch(batch_of(rec("getpid")))
    assert stat.S_IMODE(os.stat("/dev/null").st_mode) == 0o666        # never chmod'ed


def test_log_file_is_created_0600(tmp_path):
    p = tmp_path / "lbd.log"
    old = os.umask(0)
    try:
        h = PrivateLogHandler(str(p))
    finally:
        os.umask(old)
    h.setFormatter(logging.Formatter("%(message)s"))
    h.emit(logging.makeLogRecord({"msg": "hello"}))
    os.rename(p, tmp_path / "lbd.log.1")
    h.reopen()                                    # SIGHUP after logrotate moved it
    h.emit(logging.makeLogRecord({"msg": "again"}))
    h.close()
    assert (tmp_path / "lbd.log.1").read_text() == "hello\n" and p.read_text() == "again\n"
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600


def test_private_file_reopen_and_rotate(tmp_path):
    f = PrivateFile.open(tmp_path / "e.log")
    os.write(f.fd, b"1\n")
    f.rotate(2)
    os.write(f.fd, b"2\n")
    f.rotate(2)
    os.write(f.fd, b"3\n")
    f.rotate(2)                                   # the oldest (1) goes: two rotated files are kept
    f.close()
    assert sorted(os.listdir(tmp_path)) == ["e.log", "e.log.1", "e.log.2"]
    assert [(tmp_path / n).read_text() for n in ("e.log", "e.log.1", "e.log.2")] == ["", "3\n", "2\n"]


# ---- reading --------------------------------------------------------------------------------------------

def test_input_files_must_be_regular_and_small(tmp_path):
    fifo = tmp_path / "c.json"
    os.mkfifo(fifo)
    for path, why in ((fifo, "a FIFO"), ("/dev/zero", "a character device"), (tmp_path, "a directory")):
        with pytest.raises(InputFileError) as e:            # at once: no open that waits, no endless read
            read_input_file(path, "configuration file")
        assert str(e.value) == f"{path}: the configuration file is {why}, not a regular file"
    big = tmp_path / "big.json"
    big.write_bytes(b" " * ((1 << 20) + 1))
    with pytest.raises(InputFileError, match=r"is 1048577 bytes, more than the limit of 1048576 bytes \(1 MiB\)"):
        read_input_file(big, "configuration file")
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps({"init_config": {}}))
    assert read_input_file(ok, "x") == ok.read_bytes()
