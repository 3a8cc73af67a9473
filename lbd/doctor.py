"""`lbd doctor`: can this host capture syscalls, and if not, what exactly is missing.

Each check returns PASS or FAIL with one line of detail and, on failure, one line saying how to
fix it.  Checks marked essential make capture impossible when they fail: the exit code is then 1.
"""
from __future__ import annotations

import os
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39

MIN_KERNEL = (5, 8)  # BPF ring buffer
TRACEPOINTS = (
    "raw_syscalls/sys_enter",
    "raw_syscalls/sys_exit",
    "sched/sched_process_fork",
    "sched/sched_process_exec",
    "sched/sched_process_exit",
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    essential: bool = True


@dataclass(frozen=True)
class Host:
    """Where the checks look; tests point these at fake trees."""

    tracefs: Path = Path(os.environ.get("LBD_TRACEFS", "/sys/kernel/tracing"))
    btf: Path = Path("/sys/kernel/btf/vmlinux")
    modules: Path = Path("/lib/modules")
    proc_status: Path = Path("/proc/self/status")
    release: str = platform.release()


def _effective_caps(status: Path) -> int:
    for line in status.read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def check_privileges(host: Host) -> Check:
    try:
        caps = _effective_caps(host.proc_status)
    except OSError as e:
        return Check("privileges", False, f"cannot read {host.proc_status}: {e.strerror}", "run on Linux with /proc mounted")
    has = lambda cap: bool(caps >> cap & 1)  # noqa: E731
    if os.geteuid() == 0 and has(CAP_SYS_ADMIN):
        return Check("privileges", True, "root with CAP_SYS_ADMIN")
    if has(CAP_BPF) and has(CAP_PERFMON):
        return Check("privileges", True, "CAP_BPF and CAP_PERFMON")
    return Check(
        "privileges", False, f"uid {os.geteuid()} without CAP_BPF+CAP_PERFMON (CapEff={caps:#x})",
        "run as root, or grant the capabilities: setcap cap_bpf,cap_perfmon+ep <python>",
    )


def _kernel_version(release: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def check_kernel(host: Host) -> Check:
    ver = _kernel_version(host.release)
    ok = ver >= MIN_KERNEL
    return Check(
        "kernel", ok, f"{host.release} ({'>=' if ok else '<'} {MIN_KERNEL[0]}.{MIN_KERNEL[1]}, needed for the BPF ring buffer)",
        "" if ok else "boot a kernel >= 5.8",
    )


def check_ringbuf(host: Host) -> Check:
    from lbd.bpfsys import ringbuf_create

    try:
        fd = ringbuf_create(64 * 1024)
    except OSError as e:
        fix = {1: "run as root (EPERM)", 22: "kernel lacks BPF_MAP_TYPE_RINGBUF (needs >= 5.8)",
               38: "kernel built without CONFIG_BPF_SYSCALL"}.get(e.errno, "see dmesg")
        return Check("bpf ring buffer", False, f"creating a 64 KiB ring buffer map failed: {os.strerror(e.errno)}", fix)
    os.close(fd)
    return Check("bpf ring buffer", True, "a 64 KiB BPF_MAP_TYPE_RINGBUF map can be created")


def check_tracefs(host: Host) -> Check:
    events = host.tracefs / "events"
    if not events.is_dir():
        return Check(
            "tracefs", False, f"{host.tracefs} is not mounted (no {events})",
            f"mount -t tracefs nodev {host.tracefs}   (make setup does this)",
        )
    missing = [tp for tp in TRACEPOINTS if not (events / tp / "format").exists()]
    if missing:
        return Check(
            "tracefs", False, f"missing tracepoints: {', '.join(missing)}",
            "use a kernel with CONFIG_FTRACE_SYSCALLS and sched tracepoints",
        )
    return Check("tracefs", True, f"{host.tracefs}: {', '.join(TRACEPOINTS)}")


def check_btf(host: Host) -> Check:
    ok = host.btf.is_file()
    return Check(
        "btf", ok, f"{host.btf} {'present' if ok else 'missing'}",
        "" if ok else "use a kernel built with CONFIG_DEBUG_INFO_BTF (lbd works without; other tools need it)",
        essential=False,
    )


def check_bcc(host: Host) -> Check:
    try:
        import bcc  # noqa: F401
    except Exception as e:  # an ImportError, or libbcc failing to load
        return Check("bcc", False, f"import bcc failed: {e}",
                     "apt-get install python3-bpfcc and use a venv made with --system-site-packages (make setup)")
    return Check("bcc", True, f"bcc {getattr(bcc, '__version__', '?')} from {Path(bcc.__file__).parent}")


def check_headers(host: Host) -> Check:
    build = host.modules / host.release / "build"
    if not (build / "include").is_dir():
        return Check(
            "kernel headers", False, f"{build} missing: bcc cannot compile the probe",
            f"apt-get install linux-headers-{host.release} (or linux-headers-amd64 and link {build}; make setup does this)",
        )
    target = os.path.realpath(build)
    note = "" if host.release in target else f" (headers of another version: {Path(target).name}; tracepoint-only probes are fine)"
    return Check("kernel headers", True, f"{build} -> {target}{note}")


_TRIVIAL_PROBE = rb"""
BPF_RINGBUF_OUTPUT(doctor_ring, 1);
TRACEPOINT_PROBE(raw_syscalls, sys_enter) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (tgid != TARGET_TGID) return 0;
    u64 id = args->id;
    doctor_ring.ringbuf_output(&id, sizeof(id), 0);
    return 0;
}
"""


def check_load(host: Host) -> Check:
    try:
        from bcc import BPF
    except Exception as e:
        return Check("probe load", False, f"bcc unavailable: {e}", "fix the bcc check first")
    seen: list[int] = []
    t0 = time.monotonic()
    try:
        b = BPF(text=_TRIVIAL_PROBE, cflags=[f"-DTARGET_TGID={os.getpid()}"])
        try:
            ring = b[b"doctor_ring"]
            ring.open_ring_buffer(lambda ctx, data, size: seen.append(size))
            os.getppid()
            b.ring_buffer_poll(100)
        finally:
            b.cleanup()
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return Check("probe load", False, f"a trivial ring-buffer program failed to load: {first}",
                     "run `lbd doctor --debug` for the compiler output; check the kernel headers above")
    if not seen:
        return Check("probe load", False, "program loaded but no event arrived through the ring buffer",
                     "check that raw_syscalls tracepoints fire (perf list | grep raw_syscalls)")
    return Check("probe load", True, f"raw_syscalls:sys_enter -> ring buffer -> user space ({time.monotonic() - t0:.1f}s)")


CHECKS: tuple[Callable[[Host], Check], ...] = (
    check_privileges, check_kernel, check_ringbuf, check_tracefs, check_btf, check_bcc, check_headers, check_load,
)


def run_checks(host: Host | None = None) -> list[Check]:
    host = host or Host()
    results: list[Check] = []
    for fn in CHECKS:
        # Loading a program is pointless (and its error misleading) when a prerequisite failed.
        if fn is check_load and any(not c.ok and c.essential for c in results):
            results.append(Check("probe load", False, "skipped: an essential check above failed", "fix that first"))
            continue
        try:
            results.append(fn(host))
        except Exception as e:  # a check must never crash the report
            results.append(Check(fn.__name__.removeprefix("check_"), False, f"check crashed: {e!r}", "report a bug"))
    return results


def report(results: list[Check], out=sys.stdout) -> int:
    """Print one line per check (and its fix when it failed); return the exit code."""
    width = max(len(c.name) for c in results)
    for c in results:
        mark = "PASS" if c.ok else ("FAIL" if c.essential else "WARN")
        print(f"{mark}  {c.name:<{width}}  {c.detail}", file=out)
        if not c.ok and c.fix:
            print(f"      {'':<{width}}  fix: {c.fix}", file=out)
    bad = [c for c in results if not c.ok and c.essential]
    print(f"\n{'capture can work on this host' if not bad else 'capture cannot work: ' + ', '.join(c.name for c in bad)}",
          file=out)
    return 1 if bad else 0
