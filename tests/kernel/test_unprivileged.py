"""Without root (issue 13, item 5): as uid 65534 with exactly the capabilities `lbd doctor` names,
`lbd run` captures (and reads other users' /proc), `lbd doctor` passes and says why each is
there; with fewer it says which one is missing.  setpriv gives the capabilities as ambient ones,
as systemd's AmbientCapabilities= would."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_bpf

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534
CAPS = "+bpf,+perfmon,+dac_read_search,+sys_ptrace"
#: the bcc fallback (make test runs the kernel tier under it too) reads tracefs: CAP_DAC_READ_SEARCH
BCC = os.environ.get("LBD_LOADER") == "bcc"


def as_nobody(args: list[str], caps: str | None = CAPS) -> list[str]:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv is missing: apt-get install util-linux")
    ids = [f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    capargs = [f"--inh-caps={caps}", f"--ambient-caps={caps}"] if caps else ["--inh-caps=-all"]
    return [setpriv, *ids, *capargs, "--", sys.executable, *args]


def _readable_by_nobody() -> None:
    """The interpreter, the checkout and its compiled parts must be readable by uid 65534."""
    p = subprocess.run(as_nobody(["-c", "import lbd._decode, lbd._libbpf, lbd.cli; "
                                        "from lbd._paths import BPF_OBJECT; open(BPF_OBJECT, 'rb').close()"]),
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    if p.returncode != 0:
        pytest.fail(f"uid {NOBODY} cannot read this checkout or its venv (chmod o+rX them to run this test): "
                    f"{p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}")


@pytest.mark.parametrize("caps", [CAPS, "+bpf,+perfmon"])
def test_run_as_an_unprivileged_user_with_the_capabilities(caps):
    """All four: everything known.  CAP_BPF and CAP_PERFMON alone: capture works, but a process of
    another user that started before lbd has no executable or fds from /proc (doctor's WARN)."""
    require_bpf()
    _readable_by_nobody()
    p = subprocess.Popen(as_nobody(["-m", "lbd.cli", "run", "-e", "openat", "-f", "json", "-d", "120"], caps),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    if BCC and caps != CAPS:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 1 and err.count("\n") == 1, err
        assert "is not readable (permission denied)" in err and "CAP_DAC_READ_SEARCH" in err
        return
    try:
        line = p.stderr.readline()
        assert "capturing" in line, line + p.stderr.read()
        for _ in range(20):                     # a root process (this one), started before lbd
            os.close(os.open("/etc/hostname", os.O_RDONLY))
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert "events in" in err                   # the summary
    objs = [json.loads(x) for x in out.splitlines()]
    mine = [o for o in objs if o["pid"] == os.getpid() and o["args"].get("filename") == "/etc/hostname"]
    assert len(mine) == 20 and all(o["res"] >= 0 for o in mine)
    assert mine[-1]["user"] == "root"
    if caps == CAPS:
        # another user's process that started before lbd: its executable and fds came from /proc
        assert mine[-1]["fullpath"] == os.path.realpath(sys.executable)
        assert {0, 1, 2} <= set(mine[-1]["fds"]["fd"])
    else:
        assert mine[-1]["fullpath"] == "" and 0 not in mine[-1]["fds"]["fd"]


def _doctor(caps, env=None):
    return subprocess.run(as_nobody(["-m", "lbd.cli", "doctor"], caps), capture_output=True, text=True, cwd=ROOT,
                          timeout=300, env={**os.environ, **(env or {})})


def _line(text: str, name: str) -> str:
    return next(x for x in text.splitlines() if x[6:].startswith(name))


def test_doctor_with_the_capabilities_passes_and_names_them():
    require_bpf()
    _readable_by_nobody()
    p = _doctor(CAPS)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "crashed" not in p.stdout and "report a bug" not in p.stdout
    priv = _line(p.stdout, "privileges")
    assert priv.startswith("PASS") and f"uid {NOBODY} with CAP_BPF" in priv and "CAP_PERFMON" in priv
    ctx = _line(p.stdout, "process context")
    assert ctx.startswith("PASS") and "CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE" in ctx
    assert _line(p.stdout, "tracefs").startswith("PASS")                 # CAP_DAC_READ_SEARCH opens it
    assert _line(p.stdout, "probe load").startswith("PASS")
    assert p.stdout.rstrip().endswith("capture can work on this host")


def test_doctor_with_the_bcc_loader_reads_tracefs_with_the_capabilities():
    """The loader that needs tracefs: CAP_DAC_READ_SEARCH is enough for it, and the check passes."""
    require_bpf()
    _readable_by_nobody()
    p = _doctor(CAPS, {"LBD_LOADER": "bcc"})
    assert p.returncode == 0, p.stdout + p.stderr
    assert _line(p.stdout, "tracefs").startswith("PASS") and _line(p.stdout, "probe load").startswith("PASS")
    p = _doctor("+bpf,+perfmon", {"LBD_LOADER": "bcc"})
    tracefs = _line(p.stdout, "tracefs")
    assert p.returncode == 1 and tracefs.startswith("FAIL") and "permission denied" in tracefs
    assert "CAP_DAC_READ_SEARCH" in p.stdout.split(tracefs, 1)[1].splitlines()[1]       # its fix line


def test_doctor_names_what_is_missing():
    require_bpf()
    _readable_by_nobody()
    p = _doctor("+bpf,+perfmon")                       # enough to capture (libbpf), not for other users' /proc
    assert p.returncode == (1 if BCC else 0), p.stdout + p.stderr
    assert _line(p.stdout, "tracefs").startswith("FAIL" if BCC else "WARN")
    ctx = _line(p.stdout, "process context")
    assert ctx.startswith("WARN") and "CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE" in ctx
    assert "crashed" not in p.stdout
    p = _doctor("+bpf")
    priv = _line(p.stdout, "privileges")
    assert p.returncode == 1 and priv.startswith("FAIL") and "without CAP_PERFMON" in priv
    p = _doctor(None)
    priv = _line(p.stdout, "privileges")
    assert p.returncode == 1 and "without CAP_BPF and CAP_PERFMON" in priv
    assert "--ambient-caps=" + CAPS in p.stdout
