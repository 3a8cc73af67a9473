"""Load, configure and detach lbd's eBPF probe (bpf/lbd.bpf.c), with either loader (lbd.loader).

`Probe` owns the loaded programs, their maps and the rings.  Load in named phases (STYLE.md):
open and size the maps (the loader) -> load -> create the rings (one BPF ring buffer per
cpus_per_ring CPUs, stored in the `rings` array of maps at the index of each of its CPUs) -> fill
the maps (settings and filters first, then the syscall descriptors: nothing is captured before the
filters are in place) -> attach.  Each phase undoes its own work on failure; `close()` (or leaving
the `with` block, also on an exception) detaches every program and frees the maps and rings, and is
safe to call twice.

Invariants while open: the five programs are attached; the descriptor, settings and filter maps
hold what the configuration says; `rings[i]` is ring `ring_of_cpu[i]`, whose fd is `ring_fds[...]`.
Map values are written as the numpy dtypes of lbd.record (checked field by field against the C
structs of bpf/lbd_record.h when lbd._decode is imported), through lbd.bpfsys on the maps' fds:
the same code for both loaders.

The rings themselves are read by the decoder (lbd._decode.Ring / Rings), which maps them from
`ring_fds`.
"""
from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from lbd import bpfsys, record, syscalls
from lbd.bpfsys import obj_id
from lbd.config import PREFIX_MAX, Config, ConfigError, coerce
from lbd.loader import Choice, Loader, LoaderError, choose, open_loader


#: Syscalls after which the probe reads the thread's comm and credentials anew instead of using
#: its cached copies (exec is handled by sched_process_exec).
REFRESH_SYSCALLS = frozenset({
    "prctl", "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid",
    "setfsgid", "setgroups", "capset", "setns", "unshare", "execve", "execveat",
})

#: State syscalls: what the process and fd tables need (lbd.enrich applies them), captured while
#: track_state is on whatever the selection (flagged LBD_F_STATE when not selected): process life
#: and names (fork, exec, prctl's PR_SET_NAME, the cwd for relative paths) and every syscall that
#: creates, duplicates, names or closes an fd.
STATE_SYSCALLS = frozenset({
    "clone", "clone3", "fork", "vfork", "execve", "execveat", "prctl", "chdir", "fchdir",
    "open", "openat", "openat2", "creat", "open_by_handle_at", "memfd_create", "socket", "connect", "bind",
    "accept", "accept4", "socketpair", "pipe", "pipe2", "dup", "dup2", "dup3", "fcntl", "close",
    "close_range", "eventfd", "eventfd2", "epoll_create", "epoll_create1", "timerfd_create", "signalfd",
    "signalfd4", "inotify_init", "inotify_init1", "fanotify_init", "userfaultfd", "io_uring_setup",
    "perf_event_open", "bpf", "pidfd_open", "pidfd_getfd", "fsopen", "fspick", "fsmount", "open_tree",
    "landlock_create_ruleset",
})
#: state syscalls whose failures change a table too (a non-blocking connect: EINPROGRESS names the
#: socket's peer; close releases the fd even when it reports EINTR or EIO)
STATE_FAILED_SYSCALLS = frozenset({"connect", "close"})
#: syscalls whose record carries the socket (struct lbd_sock in the extra slot): of the fd argument,
#: or of the fd returned
SOCK_ARG0_SYSCALLS = frozenset({"connect", "bind"})
SOCK_RES_SYSCALLS = frozenset({"accept", "accept4"})
#: argument names that hold an environment (read only when capture_env is on)
ENV_ARGS = frozenset({"envp"})
AUX_ENV = record.CONSTANTS["LBD_AUX_ENV"]

OWN_TIDS_MAX = 64   # the own_tids map's size in bpf/lbd.bpf.c
ONLY_TIDS_MAX = 1024


class ProbeError(RuntimeError):
    """The probe could not be loaded or configured; the message says why."""


def resolve_selection(cfg: Config) -> frozenset[int]:
    """The syscall numbers to capture: `syscalls`, else `interest_syscall_file`, else the defaults."""
    if cfg.open.syscalls:
        nrs = set()
        for name in cfg.open.syscalls:
            try:
                nrs.add(syscalls.lookup(name).nr)
            except KeyError:
                raise ConfigError(f"open_params.syscalls: {name!r} is not a known syscall") from None
        return frozenset(nrs)
    if cfg.open.interest_syscall_file:
        from lbd.interesting import load_interesting_file

        return load_interesting_file(cfg.open.interest_syscall_file)
    return syscalls.default_selection()


PREFIX_KEY_SIZE = 4 + 2 + PREFIX_MAX       # struct lbd_prefix_key


def resolve_path_prefixes(cfg: Config) -> dict[int, tuple[int, tuple[bytes, ...]]]:
    """path_prefixes as {syscall number: (argument slot, prefixes as bytes)}; ConfigError naming
    the entry when a syscall or argument does not exist or cannot be checked in the kernel."""
    out: dict[int, tuple[int, list[bytes]]] = {}
    for entry in cfg.open.path_prefixes:
        name, arg, prefix = entry.split(":", 2)
        where = f"open_params.path_prefixes: {entry!r}"
        sc = syscalls.BY_NAME.get(name)
        if sc is None or sc.nr >= record.MAX_SYSCALLS:
            raise ConfigError(f"{where}: {name!r} is not a known syscall")
        if name in record.NO_PREFIX_SYSCALLS or not sc.implemented:
            raise ConfigError(f"{where}: the kernel cannot check {name}'s arguments against prefixes")
        slots = [i for i, a in enumerate(sc.args[: record.MAX_ARGS]) if a.name == arg]
        paths = [a.name for a in sc.args[: record.MAX_ARGS] if a.kind_id in record.PREFIX_KINDS]
        if not slots or sc.args[slots[0]].kind_id not in record.PREFIX_KINDS:
            have = ", ".join(paths) or "none"
            raise ConfigError(f"{where}: {name} has no path or string argument {arg!r} (it has: {have})")
        out.setdefault(sc.nr, (slots[0], []))[1].append(prefix.encode("utf-8"))
    return {nr: (slot, tuple(dict.fromkeys(ps))) for nr, (slot, ps) in out.items()}


def prefix_key(nr: int, prefix: bytes) -> bytes:
    """A key of the prefixes map (struct lbd_prefix_key): prefixlen in bits, the syscall number
    big-endian, the prefix bytes, zero padded."""
    data = struct.pack(">H", nr) + prefix
    return struct.pack("<I", 8 * len(data)) + data.ljust(2 + PREFIX_MAX, b"\0")


def _nrs(names: Iterable[str]) -> frozenset[int]:
    return frozenset(syscalls.BY_NAME[n].nr for n in names)


STATE_NRS = _nrs(STATE_SYSCALLS)


def possible_cpus() -> int:
    """CPUs the kernel may bring online (per-CPU maps and the rings array have this many)."""
    text = open("/sys/devices/system/cpu/possible").read().strip()
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n = max(n, int(hi or lo) + 1)
    return n


def ring_layout(ncpus: int, cpus_per_ring: int) -> list[int]:
    """The ring of each CPU: CPUs [0, cpus_per_ring) share ring 0, and so on."""
    return [cpu // cpus_per_ring for cpu in range(ncpus)]


@dataclass(frozen=True)
class Stats:
    """Counter totals over all CPUs (see LBD_C_* in bpf/lbd_record.h); `per_ring`: the same per
    ring (the sum of the CPUs that write to it)."""

    counts: dict[str, int]
    per_ring: tuple[dict[str, int], ...] = ()

    def __getitem__(self, name: str) -> int:
        return self.counts[name]

    @property
    def filtered(self) -> int:
        return sum(v for k, v in self.counts.items() if k.startswith("f_"))

    @property
    def dropped(self) -> int:
        return self.counts["drop_ringfull"]

    def as_dict(self) -> dict[str, int]:
        d = dict(self.counts)
        d["filtered"] = self.filtered
        d["dropped"] = self.dropped
        return d


class Probe:
    """The loaded eBPF probe.  Use as a context manager, or call close()."""

    def __init__(self, config: Config | dict | None = None, *, own_pid: int | None = None,
                 host_pid: int | None = None, own_tids: Iterable[int] | None = None):
        """own_pid: the process filter_own drops (default: this one); own_tids instead: the threads
        it drops (the Falco plugin: lbd's code runs on some of Falco's threads; add more with
        add_own_tid()).  host_pid: the process filter_falco drops (default: this one)."""
        cfg = coerce(config)
        self.config = cfg
        self.selection = resolve_selection(cfg)
        self._prefixes = resolve_path_prefixes(cfg)
        self.own_tids: set[int] | None = None if own_tids is None else set(own_tids)
        self.own_pid = own_pid if own_pid is not None else os.getpid()
        self.host_pid = host_pid if host_pid is not None else os.getpid()
        self.ring_size = cfg.open.ring_size
        self.cpus_per_ring = cfg.open.cpus_per_ring
        self.ncpus = possible_cpus()
        self.ring_of_cpu = ring_layout(self.ncpus, self.cpus_per_ring)
        self.nrings = max(self.ring_of_cpu) + 1
        self.ring_fds: list[int] = []
        self._lock = threading.Lock()
        self._descs_written: dict[int, bytes] = {}   # nr -> the lbd_desc last written to the map
        self._selection_gen = 0                      # the `enabled` value of syscalls selected anew
        self._generation = 1                         # settings.generation
        self._filter_generation = 0                  # settings.filter_generation
        self._fds: dict[str, int] = {}
        self._filled = None                          # the open_params the filter maps hold
        self._extra_tids: set[int] = set()          # set_only_tids()
        self.loader: Loader | None = None
        try:
            self.choice: Choice = choose(cfg.open.loader)
            self.loader = open_loader(self.choice.kind, ncpus=self.ncpus)
        except LoaderError as e:
            raise ProbeError(str(e)) from None
        try:
            self._fds = {name: self.loader.map_fd(name) for name in self.loader.map_names()}
            self._make_rings()
            # Settings and filters first: the descriptors start all disabled, so nothing is
            # captured before the filters (filter_own, drop_mode, ...) are in place.
            self._apply_settings(cfg)
            self._fill_filters(cfg)
            self._fill_descs(self.selection)
            self.loader.attach()
        except LoaderError as e:
            self.close()
            raise ProbeError(str(e)) from None
        except BaseException:
            self.close()
            raise

    @property
    def kind(self) -> str:
        """The loader in use: "libbpf" or "bcc"."""
        return self.choice.kind

    @property
    def core(self) -> bool:
        """True when the probe reads process context from kernel structures (CO-RE)."""
        return bool(self.loader and self.loader.core)

    @property
    def ring_bytes(self) -> int:
        """Memory of all the rings (ring_size per ring)."""
        return self.nrings * self.ring_size

    # -- rings ----------------------------------------------------------------------------------

    def _make_rings(self) -> None:
        """One ring buffer map per ring, stored at the index of each of its CPUs."""
        fd_rings = self._fds["rings"]
        for i in range(self.nrings):
            try:
                fd = bpfsys.ringbuf_create(self.ring_size, f"lbd_ring{i}")
            except OSError as e:
                raise ProbeError(
                    f"cannot create ring {i} of {self.ring_size} bytes ({self.nrings} rings, "
                    f"{self.ring_bytes >> 20} MiB in all): {os.strerror(e.errno)}; try a smaller ring_size "
                    "or a larger cpus_per_ring") from None
            self.ring_fds.append(fd)
        for cpu, ring in enumerate(self.ring_of_cpu):
            bpfsys.map_update(fd_rings, struct.pack("<I", cpu), struct.pack("<I", self.ring_fds[ring]))

    # -- configuration -------------------------------------------------------------------------

    def _fd(self, name: str) -> int:
        return self._fds[name]

    def _fill_descs(self, selected: frozenset[int]) -> None:
        """Write the descriptor of every syscall whose entry changed (all of them the first time).

        `enabled` is the syscall's selection generation: a syscall selected anew gets a new non-zero
        value, so a record armed under its previous selection (whose exit the probe then skipped
        without looking) is not completed by a later exit (see sys_exit in bpf/lbd.bpf.c).
        """
        o = self.config.open
        fd = self._fd("descs")
        written = self._descs_written
        self._selection_gen = self._selection_gen % 255 + 1
        d = np.zeros(1, dtype=record.DESC_DTYPE)
        for sc in syscalls.TABLE:
            if sc.nr >= record.MAX_SYSCALLS:
                continue
            old = written.get(sc.nr)
            d[...] = 0
            if sc.nr in selected and sc.implemented:
                d["enabled"] = old[0] if old and old[0] else self._selection_gen
            d["nargs"] = len(sc.args)
            for i, a in enumerate(sc.args[: record.MAX_ARGS]):
                d["kind"][0, i] = a.kind_id
                if a.size:
                    d["size"][0, i] = a.size // 8
                if a.len_arg is not None:
                    d["aux"][0, i] = a.len_arg
                elif a.name in ENV_ARGS and a.kind == "strarr":
                    d["aux"][0, i] = AUX_ENV
                else:
                    d["aux"][0, i] = 0xFF
            name = sc.name
            flags = (
                (record.D_EXIT_KINDS if any(a.kind_id in record.EXIT_KINDS for a in sc.args) else 0)
                | (record.D_NORETURN if sc.noreturn else 0)
                | (record.D_REFRESH if name in REFRESH_SYSCALLS else 0)
                | (record.D_STATE if o.track_state and sc.nr in STATE_NRS and sc.implemented else 0)
                | (record.D_STATE_FAILED if name in STATE_FAILED_SYSCALLS else 0)
                | (record.D_SOCK_ARG0 if name in SOCK_ARG0_SYSCALLS else 0)
                | (record.D_SOCK_RES if name in SOCK_RES_SYSCALLS else 0)
                | (record.D_STATS if o.syscall_stats else 0)
            )
            d["flags"] = flags
            if sc.nr in self._prefixes:
                d["path_arg"] = self._prefixes[sc.nr][0] + 1
            raw = d.tobytes()
            if old != raw:
                bpfsys.map_update(fd, struct.pack("<I", sc.nr), raw)
                written[sc.nr] = raw

    def _apply_settings(self, cfg: Config) -> None:
        o = cfg.open
        s = np.zeros(1, dtype=record.SETTINGS_DTYPE)
        s["drop_mode"] = int(o.drop_mode)
        s["drop_failed"] = int(o.drop_failed)
        s["filter_own_tgid"] = self.own_pid if o.filter_own and self.own_tids is None else 0
        s["own_tids_on"] = int(o.filter_own and bool(self.own_tids))
        s["filter_falco_tgid"] = self.host_pid if o.filter_falco else 0
        s["str_max"] = o.str_max
        s["buf_max"] = o.buf_max
        s["argv_max"] = o.argv_max
        s["emit_enter"] = int(o.emit_enter)
        s["filter_pids_on"] = int(bool(o.filter_pids))
        s["filter_comms_on"] = int(bool(o.filter_comms))
        tids = bool(o.only_tids) or bool(self._extra_tids)
        s["only_pids_on"] = int(bool(o.only_pids) or tids)
        s["only_tids_on"] = int(tids)
        s["only_comms_on"] = int(bool(o.only_comms))
        s["filter_uids_on"] = int(bool(o.filter_uids))
        s["only_uids_on"] = int(bool(o.only_uids))
        s["follow"] = int(o.follow)
        s["state_on"] = int(o.track_state)
        s["failed_only"] = int(o.failed_only)
        s["capture_env"] = int(o.capture_env)
        s["syscall_stats"] = int(o.syscall_stats)
        s["path_on"] = int(bool(o.path_prefixes))
        # each CPU wakes the consumer after writing this much: a ring's share of its threshold
        s["wake_bytes"] = max(1, o.wake_threshold // self.cpus_per_ring)
        s["generation"] = self._generation
        self._filter_generation += 1           # every write may change a filter: cached verdicts go
        s["filter_generation"] = self._filter_generation
        bpfsys.map_update(self._fd("settings"), struct.pack("<I", 0), s.tobytes())

    def _set_members(self, name: str, keys: Iterable[bytes], key_size: int | None = None) -> None:
        """Make the set map hold exactly `keys`: delete the keys that go, then add the new ones
        (a key that stays is never missing, as it would be with clear-then-fill; deleting first
        keeps a full map within its size)."""
        fd = self._fd(name)
        want = list(dict.fromkeys(keys))
        wanted = set(want)
        if key_size is None:
            key_size = len(want[0]) if want else (record.COMM_LEN if "comms" in name else 4)
        for k in bpfsys.map_keys(fd, key_size):
            if k not in wanted:
                bpfsys.map_delete(fd, k)
        for k in want:
            bpfsys.map_update(fd, k, b"\x01")

    def _fill_filters(self, cfg: Config) -> None:
        o = cfg.open

        def u32(v: int) -> bytes:
            return struct.pack("<I", v)

        def comm_key(comm: str) -> bytes:
            raw = comm.encode("utf-8", "surrogateescape")[: record.COMM_LEN - 1]
            return raw.ljust(record.COMM_LEN, b"\0")

        self._set_members("own_tids", (u32(t) for t in sorted(self.own_tids or ())))
        self._set_members("filter_pids", (u32(p) for p in o.filter_pids))
        old = self._filled
        if old is None or not (o.follow and old.follow and set(o.only_pids) == set(old.only_pids)):
            # (while following, the map also holds the followed descendants: they stay as long
            # as following does and the user's pids do not change)
            self._set_members("only_pids", (u32(p) for p in o.only_pids))
        self._set_members("only_tids", (u32(t) for t in sorted(set(o.only_tids) | self._extra_tids)))
        self._set_members("filter_comms", (comm_key(c) for c in o.filter_comms))
        self._set_members("only_comms", (comm_key(c) for c in o.only_comms))
        self._set_members("filter_uids", (u32(u) for u in o.filter_uids))
        self._set_members("only_uids", (u32(u) for u in o.only_uids))
        self._set_members("prefixes", (prefix_key(nr, p) for nr, (_, ps) in sorted(self._prefixes.items())
                                       for p in ps), key_size=PREFIX_KEY_SIZE)
        self._filled = o

    def update(self, config: Config | dict, *, own_pid: int | None = None, host_pid: int | None = None,
               own_tids: Iterable[int] | None = None) -> None:
        """Apply new open_params at run time, without reloading the programs.

        The new configuration is validated completely first; ring_size, cpus_per_ring and loader
        cannot change while loaded.  own_pid / host_pid, when given, replace the processes
        filter_own / filter_falco drop; own_tids, when given, makes filter_own drop those threads
        instead of own_pid's process.  The maps are written filters first and settings last, so a
        filter switched on applies to its complete set.  Records armed before capture resumes
        (leaving drop_mode) or before a syscall is selected anew are never completed by a later
        exit (generations: see _fill_descs()); a syscall in flight then ends as an exit without
        enter (LBD_F_NOENTER).
        """
        cfg = coerce(config)
        for key in ("ring_size", "cpus_per_ring", "loader"):
            if getattr(cfg.open, key) != getattr(self.config.open, key):
                raise ConfigError(
                    f"open_params.{key}: {getattr(cfg.open, key)!r} differs from the loaded "
                    f"{getattr(self.config.open, key)!r}; it cannot change without reloading the probe")
        selection = resolve_selection(cfg)
        prefixes = resolve_path_prefixes(cfg)
        with self._lock:
            if own_tids is not None and len(set(own_tids)) > OWN_TIDS_MAX:
                raise ValueError(f"own threads: {len(set(own_tids))}, at most {OWN_TIDS_MAX}")
            if own_pid is not None:
                self.own_pid = own_pid
                self.own_tids = None
            if own_tids is not None:
                self.own_tids = set(own_tids)
            if host_pid is not None:
                self.host_pid = host_pid
            if self.config.open.drop_mode and not cfg.open.drop_mode:
                # Capture resumes: records armed before drop_mode, whose exits were skipped
                # without looking, are stale; a syscall still in flight ends as NOENTER instead.
                self._generation += 1
            self._prefixes = prefixes
            self._fill_filters(cfg)
            old, self.config = self.config, cfg
            try:
                self._fill_descs(selection)
            except BaseException:
                self.config = old
                raise
            self._apply_settings(cfg)
            self.selection = selection

    def add_own_tid(self, tid: int) -> None:
        """Count one more thread as lbd's own (filter_own by thread; see __init__)."""
        with self._lock:
            if self.own_tids is None:
                raise ValueError("this probe filters its own process, not threads (own_tids not given)")
            if tid in self.own_tids:
                return
            if len(self.own_tids) >= OWN_TIDS_MAX:
                raise ValueError(f"own threads: {len(self.own_tids) + 1}, at most {OWN_TIDS_MAX}")
            self.own_tids.add(tid)
            bpfsys.map_update(self._fd("own_tids"), struct.pack("<I", tid), b"\x01")
            self._apply_settings(self.config)

    def set_only_tids(self, tids: Iterable[int]) -> None:
        """Keep these threads (and, while following, the processes they start) besides the
        configuration's only_pids / only_tids, without a new configuration: the pytest plugin
        switches it per test.  An empty set removes them."""
        tids = set(tids)
        if len(tids | set(self.config.open.only_tids)) > ONLY_TIDS_MAX:
            raise ValueError(f"only_tids: {len(tids)} threads, at most {ONLY_TIDS_MAX}")
        with self._lock:
            self._extra_tids = tids
            fd = self._fd("only_tids")
            want = {struct.pack("<I", t) for t in tids | set(self.config.open.only_tids)}
            for k in bpfsys.map_keys(fd, 4):
                if k not in want:
                    bpfsys.map_delete(fd, k)
            for k in want:
                bpfsys.map_update(fd, k, b"\x01")
            self._apply_settings(self.config)

    # -- state ----------------------------------------------------------------------------------

    def _percpu(self, name: str, key: int, dtype: np.dtype) -> np.ndarray:
        """The per-CPU values of one element: an array of ncpus `dtype` rows."""
        step = (dtype.itemsize + 7) & ~7
        raw = bpfsys.map_lookup(self._fd(name), struct.pack("<I", key), step * self.ncpus)
        if raw is None:
            return np.zeros(self.ncpus, dtype=dtype)
        buf = np.frombuffer(raw, dtype=np.uint8).reshape(self.ncpus, step)[:, : dtype.itemsize]
        return np.ascontiguousarray(buf).view(dtype).reshape(self.ncpus)

    def stats(self) -> Stats:
        per_cpu = {name: self._percpu("counters", idx, np.dtype("<u8")) for name, idx in record.COUNTERS.items()}
        counts = {name: int(v.sum()) for name, v in per_cpu.items()}
        rings = np.asarray(self.ring_of_cpu)
        per_ring = tuple({name: int(v[rings == r].sum()) for name, v in per_cpu.items()}
                         for r in range(self.nrings))
        return Stats(counts, per_ring)

    def syscall_stats(self) -> dict[int, dict]:
        """Per syscall number (settings.syscall_stats): count, errors, total latency (ns) and the
        latency histogram (log2 ns buckets), summed over the CPUs; only syscalls seen."""
        out = {}
        for sc in syscalls.TABLE:
            if sc.nr >= record.MAX_SYSCALLS:
                continue
            v = self._percpu("sc_stats", sc.nr, record.SC_STAT_DTYPE)
            count = int(v["count"].sum())
            if count:
                out[sc.nr] = {"count": count, "errors": int(v["errors"].sum()),
                              "lat_sum": int(v["lat_sum"].sum()), "hist": v["hist"].sum(axis=0).tolist()}
        return out

    def reset_syscall_stats(self) -> None:
        zero = bytes(((record.SC_STAT_DTYPE.itemsize + 7) & ~7) * self.ncpus)
        fd = self._fd("sc_stats")
        for nr in range(record.MAX_SYSCALLS):
            bpfsys.map_update(fd, struct.pack("<I", nr), zero)

    @property
    def bpf(self):
        """The bcc BPF object under the bcc loader (tests); None under libbpf."""
        return getattr(self.loader, "bpf", None)

    def map_fd(self, name: str) -> int:
        """The fd of one of the probe's maps (valid until close())."""
        return self._fd(name)

    def program_ids(self) -> list[int]:
        """Kernel ids of the attached programs (to check that close() removed them)."""
        ids = []
        for fd in (self.loader.program_fds().values() if self.loader else ()):
            info = obj_id(fd)
            if info is not None:
                ids.append(info)
        return ids

    def map_ids(self) -> dict[str, int]:
        """Kernel ids of the probe's maps and rings, by name (to check that close() freed them)."""
        ids = {}
        for name, fd in self._fds.items():
            obj = obj_id(fd)
            if obj is not None:
                ids[name] = obj
        for i, fd in enumerate(self.ring_fds):
            obj = obj_id(fd)
            if obj is not None:
                ids[f"ring{i}"] = obj
        return ids

    def close(self) -> None:
        loader, self.loader = getattr(self, "loader", None), None
        if loader is not None:
            loader.close()
        fds, self.ring_fds = getattr(self, "ring_fds", []), []
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = {}

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        self.close()


def map_names(kind: str = "libbpf") -> list[str]:
    """The maps the probe has under a loader ("libbpf" or "bcc")."""
    from lbd.loader import COMMON_MAPS

    if kind == "bcc":
        return list(COMMON_MAPS) + ["rings_tmpl", "ppids"]
    return list(COMMON_MAPS) + ["path_scratch"]
