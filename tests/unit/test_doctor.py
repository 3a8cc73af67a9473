"""lbd doctor: each check names the missing piece; the exit code says whether capture can work."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from lbd import doctor


def _fake_tracefs(root: Path, tracepoints=doctor.TRACEPOINTS) -> Path:
    for tp in tracepoints:
        d = root / "events" / tp
        d.mkdir(parents=True)
        (d / "format").write_text("name: x\n")
    return root


def test_tracefs_unmounted_is_named(tmp_path):
    c = doctor.check_tracefs(doctor.Host(tracefs=tmp_path, loader="bcc"))
    assert not c.ok and c.essential
    assert str(tmp_path) in c.detail and "not mounted" in c.detail
    assert c.fix.startswith("mount -t tracefs nodev")


def test_tracefs_missing_tracepoint_is_named(tmp_path):
    _fake_tracefs(tmp_path, doctor.TRACEPOINTS[:-1])
    c = doctor.check_tracefs(doctor.Host(tracefs=tmp_path))
    assert not c.ok
    assert "sched/sched_process_exit" in c.detail


def test_tracefs_complete(tmp_path):
    c = doctor.check_tracefs(doctor.Host(tracefs=_fake_tracefs(tmp_path)))
    assert c.ok, c.detail


def test_headers_missing(tmp_path):
    c = doctor.check_headers(doctor.Host(modules=tmp_path, release="9.9.9-test"))
    assert not c.ok
    assert "9.9.9-test/build" in c.detail and "linux-headers-9.9.9-test" in c.fix


def test_old_kernel():
    c = doctor.check_kernel(doctor.Host(release="5.4.0-100-generic"))
    assert not c.ok and "5.4.0" in c.detail


def test_privileges_from_capabilities(tmp_path, monkeypatch):
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapEff:\t0000000000000000\n")
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 1000)
    c = doctor.check_privileges(doctor.Host(proc_status=status))
    assert not c.ok and "CAP_BPF" in c.detail and "cap_bpf" in c.fix
    status.write_text(f"CapEff:\t{(1 << doctor.CAP_BPF | 1 << doctor.CAP_PERFMON):016x}\n")
    assert doctor.check_privileges(doctor.Host(proc_status=status)).ok


def test_report_exit_code_and_lines():
    out = io.StringIO()
    rc = doctor.report([doctor.Check("a", True, "fine"), doctor.Check("b", False, "broken", "do x"),
                        doctor.Check("c", False, "meh", "do y", essential=False)], out)
    text = out.getvalue()
    assert rc == 1
    assert "PASS  a" in text and "FAIL  b" in text and "WARN  c" in text
    assert "fix: do x" in text and "capture cannot work: b" in text
    assert doctor.report([doctor.Check("a", True, "fine")], io.StringIO()) == 0


def test_tracefs_needed_only_by_bcc(tmp_path):
    c = doctor.check_tracefs(doctor.Host(tracefs=tmp_path, loader="libbpf"))
    assert not c.ok and not c.essential and "only the bcc fallback needs it" in c.detail


def test_loader_line_says_which_and_why(monkeypatch):
    monkeypatch.setenv("LBD_LOADER", "bcc")
    c = doctor.check_loader(doctor.Host())
    assert c.ok and "bcc, as the LBD_LOADER asks" in c.detail and "namespaces" in c.detail
    monkeypatch.setenv("LBD_LOADER", "libbpf")
    c = doctor.check_loader(doctor.Host(btf=Path("/nonexistent/vmlinux")))
    assert not c.ok and "no BTF" in c.detail and "LBD_LOADER=bcc" in c.fix
    monkeypatch.setenv("LBD_LOADER", "nonsense")
    c = doctor.check_loader(doctor.Host())
    assert not c.ok and "LBD_LOADER='nonsense'" in c.detail


def test_rings_memory_is_shown():
    from lbd.config import Config

    cfg = Config.default().replace(ring_size=1 << 20, cpus_per_ring=1)
    c = doctor.check_rings(doctor.Host(config=cfg))
    from lbd.probe import possible_cpus

    n = possible_cpus()
    assert c.ok and f"{n} ring(s) of 1024 KiB" in c.detail and f"{n:.1f} MiB in all" in c.detail


def test_cli_doctor_names_unmounted_tracefs(tmp_path):
    p = subprocess.run([sys.executable, "-m", "lbd.cli", "doctor", "--tracefs", str(tmp_path)],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "LBD_LOADER": "bcc"})
    assert p.returncode == 1, p.stdout + p.stderr
    assert "FAIL  tracefs" in p.stdout and str(tmp_path) in p.stdout
    assert "skipped: an essential check above failed" in p.stdout


def _status(tmp_path, *caps) -> Path:
    status = tmp_path / "status"
    status.write_text(f"Name:\tx\nCapEff:\t{sum(1 << c for c in caps):016x}\n")
    return status


def test_privileges_name_each_capability_and_what_for(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 65534)
    c = doctor.check_privileges(doctor.Host(proc_status=_status(tmp_path, doctor.CAP_BPF)))
    assert not c.ok and c.essential and "uid 65534 without CAP_PERFMON" in c.detail
    assert "--ambient-caps=+bpf,+perfmon,+dac_read_search,+sys_ptrace" in c.fix
    c = doctor.check_privileges(doctor.Host(proc_status=_status(tmp_path, doctor.CAP_BPF, doctor.CAP_PERFMON)))
    assert c.ok and "uid 65534 with CAP_BPF (create the maps and load the probe)" in c.detail
    assert doctor.check_privileges(doctor.Host(proc_status=_status(tmp_path, doctor.CAP_SYS_ADMIN))).ok
    # root without the capabilities (a reduced bounding set) is not enough
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 0)
    c = doctor.check_privileges(doctor.Host(proc_status=_status(tmp_path, doctor.CAP_DAC_READ_SEARCH)))
    assert not c.ok and "uid 0 without CAP_BPF and CAP_PERFMON" in c.detail


def test_process_context_needs_both_proc_capabilities(tmp_path):
    both = doctor.check_proc_access(doctor.Host(proc_status=_status(
        tmp_path, doctor.CAP_DAC_READ_SEARCH, doctor.CAP_SYS_PTRACE)))
    assert both.ok and not both.essential
    one = doctor.check_proc_access(doctor.Host(proc_status=_status(tmp_path, doctor.CAP_DAC_READ_SEARCH)))
    assert not one.ok and not one.essential and "without CAP_SYS_PTRACE" in one.detail
    assert "cap_sys_ptrace" in one.fix and "cap_dac_read_search" not in one.fix.split("(")[0]


def test_unreadable_tracefs_is_a_line_not_a_crash(tmp_path, monkeypatch):
    import errno

    def eio(self):
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(self))

    monkeypatch.setattr(Path, "is_dir", eio)
    c = doctor.check_tracefs(doctor.Host(tracefs=tmp_path, loader="bcc"))
    assert not c.ok and c.essential and "cannot be read: Input/output error" in c.detail

    def eacces(self):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

    monkeypatch.setattr(Path, "is_dir", eacces)
    c = doctor.check_tracefs(doctor.Host(tracefs=tmp_path, loader="bcc"))
    assert not c.ok and "permission denied" in c.detail and "CAP_DAC_READ_SEARCH" in c.fix


def test_unreadable_status_is_a_line_not_a_crash(tmp_path):
    host = doctor.Host(proc_status=tmp_path / "missing")
    for fn in (doctor.check_privileges, doctor.check_proc_access):
        c = fn(host)
        assert not c.ok and "cannot read the capabilities" in c.detail


def test_doctor_help_example_gives_the_capabilities_doctor_asks_for():
    from lbd import cli

    assert doctor.CAPS_ARG in cli.EXAMPLES["doctor"]
