"""Running as a service: packaging/lbd.service passes `systemd-analyze verify` as shipped, the
default configuration is /etc/lbd/lbd.yaml when present, and logs suit journald."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lbd import config as config_mod
from lbd.config import Config

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "packaging" / "lbd.service"
NEEDED_CAPS = {"CAP_BPF", "CAP_PERFMON", "CAP_SYS_RESOURCE", "CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE"}


def unit_values(key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in UNIT.read_text().splitlines() if line.startswith(key + "=")]


def verify(tmp_path: Path, unit_text: str, name: str = "lbd.service") -> subprocess.CompletedProcess:
    """systemd-analyze verify on the unit as installed in a root of its own: the system's units
    (targets), the unit in /etc/systemd/system and a stand-in for the ExecStart program."""
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd")
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system" / name).write_text(unit_text)
    prog = unit_values("ExecStart")[0].split()[0]
    stand_in = root / prog.lstrip("/")
    stand_in.parent.mkdir(parents=True, exist_ok=True)
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    return subprocess.run([exe, "verify", f"--root={root}", name], capture_output=True, text=True, timeout=120)


def test_unit_passes_systemd_analyze_verify(tmp_path):
    r = verify(tmp_path, UNIT.read_text())
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr


def test_verify_catches_a_broken_unit(tmp_path):
    """The check above can fail: a misspelt value is reported."""
    r = verify(tmp_path, UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=stricter"))
    assert "stricter" in r.stdout + r.stderr


def test_unit_hardening():
    assert set(unit_values("CapabilityBoundingSet")[0].split()) == NEEDED_CAPS
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "read-only"),
                       ("PrivateTmp", "yes"), ("StandardOutput", "null"), ("StandardError", "journal"),
                       ("KillSignal", "SIGTERM"), ("Restart", "on-failure")):
        assert unit_values(key) == [value], key
    assert "--daemon" not in unit_values("ExecStart")[0]             # systemd supervises


def test_default_configuration_is_etc_lbd_when_present(tmp_path, monkeypatch):
    path = tmp_path / "lbd.yaml"
    monkeypatch.setattr(config_mod, "SYSTEM_PATH", str(path))
    assert Config.load() == Config.default()                       # absent: the embedded default
    path.write_text("init_config: {format: json}\nopen_params: {drop_failed: true}\n")
    c = Config.load()
    assert (c.format, c.drop_failed) == ("json", True)
    other = tmp_path / "other.yaml"
    other.write_text("init_config: {format: normal}\n")
    assert Config.load(other).format == "normal"                   # --config wins


def test_system_path_is_etc_lbd():
    assert config_mod.SYSTEM_PATH == "/etc/lbd/lbd.yaml"


def log_lines(tmp_path, journal: str | None) -> str:
    """What `lbd` logs on stderr (a file here), with JOURNAL_STREAM as given ("match": that file)."""
    err = tmp_path / "stderr"
    code = ("import logging, lbd.cli as c; from lbd.config import Config; c.setup_logging(Config.default()); "
            "log = logging.getLogger('lbd.x'); log.info('capturing'); log.warning('two\\nlines')")
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    with open(err, "w") as f:
        if journal == "match":
            st = os.fstat(f.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        elif journal:
            env["JOURNAL_STREAM"] = journal
        subprocess.run([sys.executable, "-c", code], stderr=f, env=env, check=True, cwd=ROOT)
    return err.read_text()


def test_logs_for_the_journal(tmp_path):
    assert log_lines(tmp_path, "match") == "<6>capturing\n<4>two\n<4>lines\n"
    assert log_lines(tmp_path, None) == "lbd: capturing\nlbd: two\nlines\n"
    assert log_lines(tmp_path, "1:2") == "lbd: capturing\nlbd: two\nlines\n"    # another stream's
