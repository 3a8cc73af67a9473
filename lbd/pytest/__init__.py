"""lbd's pytest plugin: what the code under test asks of the kernel, per test.

    def test_config_is_cached(syscalls):
        load_config()                      # the whole test is recorded when `syscalls` is used bare
        assert syscalls.count("openat") <= 1

    def test_parse(syscalls, tmp_path):
        with syscalls.record() as rec:     # or only what runs inside the block
            parse(tmp_path / "in.csv")
        rec.assert_no_network()
        rec.assert_no_writes_outside(tmp_path)

The plugin (`lbd.pytest.plugin`, entry point `pytest11` named `lbd`) is enabled when lbd is
installed, or with `-p lbd`; `-p no:lbd` removes it and `--no-syscalls` (ini `syscalls_enabled =
false`) makes the tests that use the fixture skip.  One probe is loaded for the whole session, on
first use, and switched per test by thread ids in the kernel (`Probe.set_only_tids`); processes
the test starts are followed in the kernel as they fork.  Without root or CAP_BPF+CAP_PERFMON the
fixture skips with the reason.

Modules: `report` (what a test gets: counts, failures, latency, files, connections, executions,
bytes, tables, assertions; no kernel), `capture` (the session's probe, the per-test capture, the
`with` blocks), `budget` (tolerances and the comparison with a saved pytest-benchmark run),
`plugin` (the pytest hooks, options and the fixture).
"""
from __future__ import annotations

__all__ = ["Report", "Recording", "Syscalls"]


def __getattr__(name: str):
    # Lazy: the plugin module is imported by every pytest run where lbd is installed; the
    # numpy-heavy modules load only when a test uses the fixture.
    if name == "Report":
        from lbd.pytest.report import Report

        return Report
    if name in ("Recording", "Syscalls"):
        from lbd.pytest import capture

        return getattr(capture, name)
    raise AttributeError(f"module 'lbd.pytest' has no attribute {name!r}")
