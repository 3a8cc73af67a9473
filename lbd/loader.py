"""The two ways to put lbd's probe into the kernel, behind one interface.

* ``libbpf`` (the default): the CO-RE object ``build/lbd.bpf.o``, compiled once by ``make build``
  (clang, ``-target bpf -g -O2``), relocated by libbpf against the running kernel's BTF
  (/sys/kernel/btf/vmlinux) and loaded through lbd._libbpf (libbpf linked in statically).  No
  compiler, no kernel headers on the host; the probe reads process context from kernel structures.
* ``bcc`` (the fallback for kernels without BTF, or on request): bcc compiles the same source,
  bpf/lbd.bpf.c with -DLBD_BCC, at every start (seconds, LLVM in the process, kernel headers
  needed), and the CO-RE-only context (argv and executable at exec, namespaces, login uid, the
  socket behind an fd) stays empty.

Which one: the configuration's ``loader`` (``auto``, ``libbpf``, ``bcc``), overridden by the
environment variable ``LBD_LOADER``; ``auto`` is libbpf when the kernel has BTF and the object
exists, else bcc.  `choose()` says which and why (`lbd doctor` prints it).

A Loader owns the programs and maps: `map_fd(name)` hands out map fds (valid until close()), the
map contents are read and written with lbd.bpfsys on those fds (the same code for both loaders),
`attach()` attaches the programs (libbpf: after the caller filled the maps; bcc attaches while
loading, which is harmless: every syscall descriptor starts disabled), and `close()` detaches and
frees everything, also after a failure half-way (each phase undoes its own work).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lbd._paths import BPF_DIR, BPF_OBJECT

BTF_PATH = Path("/sys/kernel/btf/vmlinux")
PROBE_SOURCE = BPF_DIR / "lbd.bpf.c"
LOADERS = ("auto", "libbpf", "bcc")
#: the probe's maps as the loaders name them (bcc adds its template map of the rings, and the
#: ppids map that stands in for the CO-RE parent read; path_scratch is CO-RE only)
COMMON_MAPS = ("rings", "descs", "settings", "counters", "wake_acc", "sc_stats", "own_tids", "filter_pids",
               "only_pids", "only_tids", "filter_comms", "only_comms", "filter_uids", "only_uids", "threads",
               "pending", "sched_scratch", "prefixes", "prefix_scratch")
PROGRAMS = ("sys_enter", "sys_exit", "sched_process_fork", "sched_process_exec", "sched_process_exit")


class LoaderError(RuntimeError):
    """The probe could not be loaded; the message says why in one line."""


@dataclass(frozen=True)
class Choice:
    kind: str           # "libbpf" or "bcc"
    why: str            # one line: what decided it


def choose(requested: str = "auto") -> Choice:
    """Which loader `requested` (the configuration's `loader`) means on this host.  LBD_LOADER, when
    set, overrides it."""
    env = os.environ.get("LBD_LOADER", "").strip()
    if env:
        if env not in LOADERS:
            raise LoaderError(f"LBD_LOADER={env!r}: one of {', '.join(LOADERS)}")
        requested, source = env, "LBD_LOADER"
    else:
        source = "configuration"
    if requested not in LOADERS:
        raise LoaderError(f"loader {requested!r}: one of {', '.join(LOADERS)}")
    if requested == "libbpf":
        return Choice("libbpf", f"libbpf (CO-RE), as the {source} asks")
    if requested == "bcc":
        return Choice("bcc", f"bcc, as the {source} asks")
    if not BTF_PATH.exists():
        return Choice("bcc", f"bcc: the kernel has no BTF ({BTF_PATH} missing), so no CO-RE")
    if not BPF_OBJECT.exists():
        return Choice("bcc", f"bcc: the CO-RE object {BPF_OBJECT} is missing (run `make build`)")
    return Choice("libbpf", f"libbpf (CO-RE): kernel BTF at {BTF_PATH}, object {BPF_OBJECT}")


class Loader:
    """A loaded probe (see the module docstring).  Subclasses: LibbpfLoader, BccLoader."""

    kind = ""
    #: the probe reads kernel structures (CO-RE): process context, sockets, faulted exec arguments
    core = False

    def map_fd(self, name: str) -> int:
        raise NotImplementedError

    def map_names(self) -> list[str]:
        raise NotImplementedError

    def attach(self) -> None:
        raise NotImplementedError

    def program_fds(self) -> dict[str, int]:
        raise NotImplementedError

    def detach_program(self, name: str) -> None:
        """Detach one of PROGRAMS (it stays loaded): benchmarks time the syscall path without it."""
        raise NotImplementedError

    def attach_program(self, name: str) -> None:
        """Attach a program detach_program() detached."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class LibbpfLoader(Loader):
    """build/lbd.bpf.o through lbd._libbpf: open -> map sizes -> load; attach() later."""

    kind = "libbpf"
    core = True

    def __init__(self, *, ncpus: int, obj_path: Path | str | None = None):
        try:
            from lbd import _libbpf
        except ImportError as e:
            raise LoaderError(f"the libbpf loader is not built ({e}); run `make build`") from None
        path = Path(obj_path or BPF_OBJECT)
        if not path.exists():
            raise LoaderError(f"the CO-RE object {path} is missing; run `make build`")
        self._obj = None
        try:
            obj = _libbpf.BpfObject(path)
            self._obj = obj
            obj.set_max_entries("rings", ncpus)
            obj.load()
        except (OSError, KeyError, ValueError) as e:
            self.close()
            raise LoaderError(f"libbpf: {e}") from None

    def map_fd(self, name: str) -> int:
        return self._obj.map_fd(name)

    def map_names(self) -> list[str]:
        return [n for n in self._obj.map_names() if not n.startswith(".")]

    def attach(self) -> None:
        try:
            self._obj.attach()
        except OSError as e:
            raise LoaderError(f"libbpf: {e}") from None

    def program_fds(self) -> dict[str, int]:
        return self._obj.program_fds() if self._obj is not None else {}

    def detach_program(self, name: str) -> None:
        self._obj.detach_program(name)

    def attach_program(self, name: str) -> None:
        self._obj.attach_program(name)

    def close(self) -> None:
        obj, self._obj = self._obj, None
        if obj is not None:
            obj.close()


def _has_group_dead(tracefs: Path) -> bool:
    try:
        return "group_dead" in (tracefs / "events" / "sched" / "sched_process_exit" / "format").read_text()
    except OSError:
        return False


class BccLoader(Loader):
    """bpf/lbd.bpf.c compiled by bcc (-DLBD_BCC); bcc attaches every program while loading."""

    kind = "bcc"
    core = False

    def __init__(self, *, ncpus: int, tracefs: Path | str = "/sys/kernel/tracing"):
        try:
            import bcc
        except Exception as e:  # ImportError, or libbcc failing to load
            raise LoaderError(f"cannot import bcc ({e}); run `lbd doctor`") from None
        try:                                # bcc reads the tracepoints' formats there while compiling
            (Path(tracefs) / "events" / "sched" / "sched_process_exit" / "format").stat()
        except PermissionError:
            raise LoaderError(f"bcc: {tracefs} is not readable (permission denied) and bcc compiles the probe "
                              f"against its tracepoint formats: run as root or add CAP_DAC_READ_SEARCH "
                              f"(lbd doctor)") from None
        except OSError:
            pass                            # not mounted: bcc says what it misses
        cflags = [f"-I{BPF_DIR}", "-DLBD_BCC", f"-DLBD_MAX_CPUS={ncpus}", "-Wno-unused-function"]
        if _has_group_dead(Path(tracefs)):
            cflags.append("-DLBD_HAVE_GROUP_DEAD=1")
        self._bpf = None
        try:
            self._bpf = bcc.BPF(src_file=str(PROBE_SOURCE).encode(), cflags=cflags)
        except Exception as e:
            msg = str(e).strip().splitlines()
            raise LoaderError(f"bcc: loading {PROBE_SOURCE.name} failed: {msg[-1] if msg else type(e).__name__}") from None

    def map_fd(self, name: str) -> int:
        from bcc.libbcc import lib

        fd = lib.bpf_table_fd(self._bpf.module, name.encode())
        if fd < 0:
            raise KeyError(f"no map {name!r} in the bcc probe")
        return fd

    def map_names(self) -> list[str]:
        names = list(COMMON_MAPS) + ["rings_tmpl", "ppids"]
        return [n for n in names if self._has(n)]

    def _has(self, name: str) -> bool:
        try:
            self.map_fd(name)
        except KeyError:
            return False
        return True

    def attach(self) -> None:
        pass                                # bcc attached the programs when it loaded them

    def program_fds(self) -> dict[str, int]:
        if self._bpf is None:
            return {}
        return {name.decode() if isinstance(name, bytes) else name: fn.fd for name, fn in self._bpf.funcs.items()}

    _RAW = {"sys_enter": b"raw_tracepoint__sys_enter", "sys_exit": b"raw_tracepoint__sys_exit"}
    _TP = {"sched_process_fork": b"sched:sched_process_fork", "sched_process_exec": b"sched:sched_process_exec",
           "sched_process_exit": b"sched:sched_process_exit"}

    def detach_program(self, name: str) -> None:
        if name in self._RAW:
            if name.encode() in self._bpf.raw_tracepoint_fds:
                self._bpf.detach_raw_tracepoint(tp=name.encode())
        elif self._TP[name] in self._bpf.tracepoint_fds:
            self._bpf.detach_tracepoint(tp=self._TP[name])

    def attach_program(self, name: str) -> None:
        if name in self._RAW:
            if name.encode() not in self._bpf.raw_tracepoint_fds:
                self._bpf.attach_raw_tracepoint(tp=name.encode(), fn_name=self._RAW[name])
        elif self._TP[name] not in self._bpf.tracepoint_fds:
            fn = b"tracepoint__sched__" + name.encode()
            self._bpf.attach_tracepoint(tp=self._TP[name], fn_name=fn)

    @property
    def bpf(self):
        """The bcc BPF object (tests and benchmarks)."""
        return self._bpf

    def close(self) -> None:
        bpf, self._bpf = self._bpf, None
        if bpf is not None:
            bpf.cleanup()


def open_loader(kind: str, *, ncpus: int) -> Loader:
    """Load the probe with the loader `kind` ("libbpf" or "bcc": see choose())."""
    if kind == "libbpf":
        return LibbpfLoader(ncpus=ncpus)
    if kind == "bcc":
        return BccLoader(ncpus=ncpus)
    raise LoaderError(f"loader {kind!r}: libbpf or bcc")
