"""`lbd doctor`: can this host capture syscalls, and if not, what exactly is missing.

Each check returns PASS or FAIL with one line of detail and, on failure, one line saying how to
fix it.  Checks marked essential make capture impossible when they fail: the exit code is then 1.
Which checks are essential depends on the loader lbd will use (lbd.loader.choose): libbpf with the
CO-RE object needs kernel BTF and the object, no compiler, headers or tracefs; the bcc fallback
needs bcc, kernel headers and tracefs, and reads less process context (the loader line says what).
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

CAP_DAC_READ_SEARCH = 2
CAP_SYS_PTRACE = 19
CAP_SYS_ADMIN = 21
CAP_SYS_RESOURCE = 24
CAP_PERFMON = 38
CAP_BPF = 39

CAP_NAMES = {CAP_DAC_READ_SEARCH: "CAP_DAC_READ_SEARCH", CAP_SYS_PTRACE: "CAP_SYS_PTRACE",
             CAP_SYS_ADMIN: "CAP_SYS_ADMIN", CAP_SYS_RESOURCE: "CAP_SYS_RESOURCE", CAP_PERFMON: "CAP_PERFMON",
             CAP_BPF: "CAP_BPF"}
#: What lbd needs each capability for, found by running it without each one (tests/kernel/
#: test_unprivileged.py as uid 65534, test_service_caps.py as uid 0 with a reduced bounding set).
#: CAP_SYS_RESOURCE is not needed: kernels >= 5.11 (lbd's minimum) charge BPF memory to the
#: cgroup, not to RLIMIT_MEMLOCK (libbpf's "Failed to bump RLIMIT_MEMLOCK" is then harmless).
CAP_USES = {
    CAP_BPF: "create the maps and load the probe",
    CAP_PERFMON: "attach it to the tracepoints and read kernel memory",
    CAP_DAC_READ_SEARCH: "read /proc/PID/fd of other users' processes (with CAP_SYS_PTRACE), and tracefs "
                         "for the bcc fallback",
    CAP_SYS_PTRACE: "read /proc/PID/exe and /proc/PID/fd of other users' processes",
}
#: the capabilities to give lbd to run without root, as setpriv and capsh spell them
CAPS_ARG = "+bpf,+perfmon,+dac_read_search,+sys_ptrace"
CAPS_HOWTO = (f"run as root, or with the capabilities: sudo setpriv --reuid=USER --init-groups "
              f"--inh-caps={CAPS_ARG} --ambient-caps={CAPS_ARG} lbd ... (systemd: User=USER with AmbientCapabilities=CAP_BPF "
              f"CAP_PERFMON CAP_DAC_READ_SEARCH CAP_SYS_PTRACE; or setcap "
              f"cap_bpf,cap_perfmon,cap_dac_read_search,cap_sys_ptrace+ep on a copy of the interpreter)")

MIN_KERNEL = (5, 11)  # BPF ring buffer (5.8), task-local storage in tracing programs (5.11)
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
    loader: str = "auto"            # the configuration's loader (LBD_LOADER overrides)
    config: object = None           # the lbd Config whose rings `rings` sizes (None: defaults)


def _effective_caps(status: Path) -> int:
    for line in status.read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def _caps_text(caps: int, which) -> str:
    return ", ".join(f"{CAP_NAMES[c]} ({CAP_USES[c]})" for c in which if caps >> c & 1)


def check_privileges(host: Host) -> Check:
    """The capabilities the probe needs: CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN), effective
    now; root is not needed, and root without them (a reduced bounding set) is not enough."""
    try:
        caps = _effective_caps(host.proc_status)
    except (OSError, ValueError) as e:
        return Check("privileges", False, f"cannot read the capabilities in {host.proc_status}: {e}",
                     "run on Linux with /proc mounted")
    has = lambda cap: bool(caps >> cap & 1)  # noqa: E731
    uid = os.geteuid()
    if has(CAP_BPF) and has(CAP_PERFMON):
        return Check("privileges", True, f"uid {uid} with {_caps_text(caps, (CAP_BPF, CAP_PERFMON))}")
    if has(CAP_SYS_ADMIN):
        return Check("privileges", True, f"uid {uid} with CAP_SYS_ADMIN (covers CAP_BPF and CAP_PERFMON)")
    missing = [CAP_NAMES[c] for c in (CAP_BPF, CAP_PERFMON) if not has(c)]
    return Check(
        "privileges", False, f"uid {uid} without {' and '.join(missing)} (CapEff={caps:#x}): CAP_BPF is needed to "
        f"{CAP_USES[CAP_BPF]}, CAP_PERFMON to {CAP_USES[CAP_PERFMON]}", CAPS_HOWTO,
    )


def check_proc_access(host: Host) -> Check:
    """CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE: the enrichment reads /proc/PID/exe and /proc/PID/fd
    of processes that were running before the capture; other users' need both capabilities."""
    try:
        caps = _effective_caps(host.proc_status)
    except (OSError, ValueError) as e:
        return Check("process context", False, f"cannot read the capabilities in {host.proc_status}: {e}",
                     "run on Linux with /proc mounted", essential=False)
    need = (CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE)
    missing = [CAP_NAMES[c] for c in need if not caps >> c & 1]
    if not missing:
        return Check("process context", True, "CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE: /proc/PID/exe and "
                     "/proc/PID/fd of every process can be read (for processes that started before lbd)",
                     essential=False)
    return Check("process context", False,
                 f"without {' and '.join(missing)}: the executable and open files of other users' processes that "
                 "started before lbd are unknown (their syscalls are still captured; what they open from now on is "
                 "known)", f"add {', '.join(c.lower() for c in missing)} to lbd's capabilities ({CAPS_ARG})",
                 essential=False)


def _kernel_version(release: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def check_kernel(host: Host) -> Check:
    ver = _kernel_version(host.release)
    ok = ver >= MIN_KERNEL
    return Check(
        "kernel", ok, f"{host.release} ({'>=' if ok else '<'} {MIN_KERNEL[0]}.{MIN_KERNEL[1]}, needed for the BPF ring "
        "buffer and task-local storage)",
        "" if ok else f"boot a kernel >= {MIN_KERNEL[0]}.{MIN_KERNEL[1]}",
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


def _choice(host: Host):
    from lbd.loader import LoaderError, choose

    try:
        return choose(host.loader)
    except LoaderError:
        return None


def _bcc_needed(host: Host) -> bool:
    c = _choice(host)
    return c is None or c.kind == "bcc"


def check_tracefs(host: Host) -> Check:
    need = _bcc_needed(host)
    why = "" if need else " (only the bcc fallback needs it)"
    events = host.tracefs / "events"
    try:
        mounted = events.is_dir()
        missing = [tp for tp in TRACEPOINTS if not (events / tp / "format").exists()] if mounted else []
    except PermissionError:
        return Check("tracefs", False, f"{host.tracefs}: permission denied" + why,
                     "run as root, or add CAP_DAC_READ_SEARCH (tracefs is root-only)", essential=need)
    except OSError as e:                     # EIO, ELOOP...: say what, never crash the report
        return Check("tracefs", False, f"{host.tracefs}: cannot be read: {e.strerror or e}" + why,
                     f"check the mount of {host.tracefs} (mount -t tracefs nodev {host.tracefs})", essential=need)
    if not mounted:
        return Check(
            "tracefs", False, f"{host.tracefs} is not mounted (no {events})" + why,
            f"mount -t tracefs nodev {host.tracefs}   (make setup does this)", essential=need,
        )
    if missing:
        return Check(
            "tracefs", False, f"missing tracepoints: {', '.join(missing)}",
            "use a kernel with CONFIG_FTRACE_SYSCALLS and sched tracepoints", essential=need,
        )
    return Check("tracefs", True, f"{host.tracefs}: {', '.join(TRACEPOINTS)}")


def check_btf(host: Host) -> Check:
    ok = host.btf.is_file()
    return Check(
        "btf", ok, f"{host.btf} {'present: the CO-RE probe can be relocated for this kernel' if ok else 'missing'}",
        "" if ok else ("use a kernel built with CONFIG_DEBUG_INFO_BTF; without it lbd falls back to bcc (kernel "
                       "headers, a compiler at every start, less process context)"),
        essential=False,
    )


CORE_LOST = ("argv and executable at exec, namespaces, login uid, sockets behind fds and execve "
             "arguments in untouched pages are not read; the parent is the one at fork time")


def check_loader(host: Host) -> Check:
    """Which loader lbd will use, why, and whether it can: the one line an operator needs."""
    from lbd.loader import LoaderError, choose
    from lbd._paths import BPF_OBJECT

    try:
        c = choose(host.loader)
    except LoaderError as e:
        return Check("loader", False, str(e), "set LBD_LOADER (or the configuration's loader) to auto, libbpf or bcc")
    if c.kind == "libbpf":
        if not host.btf.is_file():
            return Check("loader", False, f"{c.why}, but the kernel has no BTF ({host.btf})",
                         "use loader: bcc (LBD_LOADER=bcc), or a kernel with CONFIG_DEBUG_INFO_BTF")
        if not BPF_OBJECT.is_file():
            return Check("loader", False, f"{c.why}, but {BPF_OBJECT} is missing", "run `make build`")
        try:
            import lbd._libbpf  # noqa: F401
        except ImportError as e:
            return Check("loader", False, f"{c.why}, but the loader module does not import: {e}", "run `make build`")
        return Check("loader", True, c.why)
    return Check("loader", True, f"{c.why} (fallback: {CORE_LOST})")


def check_bcc(host: Host) -> Check:
    need = _bcc_needed(host)
    try:
        import bcc  # noqa: F401
    except Exception as e:  # an ImportError, or libbcc failing to load
        return Check("bcc", False, f"import bcc failed: {e}" + ("" if need else " (the fallback loader only)"),
                     "apt-get install python3-bpfcc and use a venv made with --system-site-packages (make setup)",
                     essential=need)
    return Check("bcc", True, f"bcc {getattr(bcc, '__version__', '?')} from {Path(bcc.__file__).parent}"
                 + ("" if need else " (the fallback loader)"))


def check_headers(host: Host) -> Check:
    need = _bcc_needed(host)
    build = host.modules / host.release / "build"
    if not (build / "include").is_dir():
        return Check(
            "kernel headers", False, f"{build} missing: bcc cannot compile the probe"
            + ("" if need else " (only the bcc fallback needs them)"),
            f"apt-get install linux-headers-{host.release} (or linux-headers-amd64 and link {build}; make setup does this)",
            essential=need,
        )
    target = os.path.realpath(build)
    note = "" if host.release in target else f" (headers of another version: {Path(target).name}; tracepoint-only probes are fine)"
    return Check("kernel headers", True, f"{build} -> {target}{note}")


def check_rings(host: Host) -> Check:
    """The rings' memory: one ring of ring_size per cpus_per_ring CPUs."""
    from lbd.config import Config
    from lbd.probe import possible_cpus, ring_layout

    cfg = host.config or Config.default()
    o = cfg.open
    ncpus = possible_cpus()
    nrings = max(ring_layout(ncpus, o.cpus_per_ring)) + 1
    total = nrings * o.ring_size
    return Check("rings", True, f"{nrings} ring(s) of {o.ring_size >> 10} KiB for {ncpus} CPUs "
                 f"(cpus_per_ring={o.cpus_per_ring}): {total / (1 << 20):.1f} MiB in all")


def check_load(host: Host) -> Check:
    """Load lbd's probe with the chosen loader and see one of our own syscalls come back."""
    from lbd.collector import Collector
    from lbd.config import Config

    cfg = (host.config or Config.default()).replace(
        syscalls=["getppid"], only_pids=[os.getpid()], filter_own=False, filter_falco=False, drop_mode=False,
        ring_size=64 * 1024, track_state=False, loader=host.loader)
    t0 = time.monotonic()
    try:
        with Collector(cfg, batch_size=64) as col:
            loaded = time.monotonic() - t0
            kind = col.probe.kind
            for _ in range(3):
                os.getppid()
            seen = 0
            for _ in range(10):
                b = col.next_batch(20, flush=True)
                seen += int(((b.events["nr"] == 110) & (b.events["pid"] == os.getpid())).sum())
                if seen:
                    break
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return Check("probe load", False, f"lbd's probe failed to load: {first}",
                     "fix the checks above; `lbd --debug doctor` shows the traceback")
    if not seen:
        return Check("probe load", False, "the probe loaded but none of our syscalls came through the rings",
                     "check that the syscall tracepoints fire (perf list | grep raw_syscalls)")
    return Check("probe load", True, f"{kind}: loaded and attached in {loaded:.2f}s; syscalls -> rings -> user space")


def check_pytest_plugin(host: Host, earlier: list[Check]) -> Check:
    """lbd's pytest plugin records exactly when capture works (its `syscalls` fixture skips
    otherwise): a summary line for test suites."""
    bad = [c.name for c in earlier if not c.ok and c.essential]
    if not bad:
        return Check("pytest plugin", True, "the `syscalls` fixture records here (one probe per pytest session)",
                     essential=False)
    return Check("pytest plugin", False, "tests using the `syscalls` fixture will skip: they need what capture "
                 f"needs (failed: {', '.join(bad)})",
                 "run pytest as root, or with CAP_BPF and CAP_PERFMON (lbd doctor's privileges line says how)",
                 essential=False)


CHECKS: tuple[Callable[[Host], Check], ...] = (
    check_privileges, check_proc_access, check_kernel, check_ringbuf, check_btf, check_loader, check_tracefs, check_bcc, check_headers,
    check_rings, check_load,
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
    results.append(check_pytest_plugin(host, results))
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
