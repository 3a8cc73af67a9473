"""Load, configure and detach lbd's eBPF probe (bpf/lbd.bpf.c) with bcc.

`Probe` owns the loaded programs and their maps.  Invariants: while it is open, the five
tracepoint programs are attached and the descriptor, settings and filter maps hold what the
configuration says; `close()` (or leaving the `with` block, also on an exception) detaches every
program and frees the maps, and is safe to call twice.

The ring buffer itself is read by the decoder (lbd._decode), which maps it from `ring_fd`.
"""
from __future__ import annotations

import ctypes as ct
import mmap
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from lbd import record, syscalls
from lbd.bpfsys import obj_id
from lbd._paths import BPF_DIR
from lbd.config import Config, ConfigError, coerce

PAGE_SIZE = mmap.PAGESIZE
PROBE_SOURCE = BPF_DIR / "lbd.bpf.c"
TRACEFS = Path(os.environ.get("LBD_TRACEFS", "/sys/kernel/tracing"))


#: Syscalls after which the probe reads the thread's comm and credentials anew instead of using
#: its cached copies (exec is handled by sched_process_exec).
REFRESH_SYSCALLS = frozenset({
    "prctl", "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid",
    "setfsgid", "setgroups", "capset", "setns", "unshare", "execve", "execveat",
})


OWN_TIDS_MAX = 64   # the own_tids map's size in bpf/lbd.bpf.c


class ProbeError(RuntimeError):
    """The probe could not be loaded or configured; the message says why."""


def _bcc():
    try:
        import bcc
    except Exception as e:  # ImportError, or libbcc failing to load
        raise ProbeError(f"cannot import bcc ({e}); run `lbd doctor`") from e
    return bcc


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


def _has_group_dead() -> bool:
    fmt = TRACEFS / "events" / "sched" / "sched_process_exit" / "format"
    try:
        return "group_dead" in fmt.read_text()
    except OSError:
        return False


@dataclass(frozen=True)
class Stats:
    """Counter totals over all CPUs (see LBD_C_* in bpf/lbd_record.h)."""

    counts: dict[str, int]

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
        self.own_tids: set[int] | None = None if own_tids is None else set(own_tids)
        self.own_pid = own_pid if own_pid is not None else os.getpid()
        self.host_pid = host_pid if host_pid is not None else os.getpid()
        self.ring_size = cfg.open.ring_size
        self.page_size = PAGE_SIZE
        self._lock = threading.Lock()
        self._descs_written: dict[int, bytes] = {}   # nr -> the lbd_desc last written to the map
        self._selection_gen = 0                      # the `enabled` value of syscalls selected anew
        self._generation = 1                         # settings.generation
        self._filter_generation = 0                  # settings.filter_generation
        bcc = _bcc()
        cflags = [
            f"-I{BPF_DIR}",
            f"-DLBD_RING_PAGES={self.ring_size // PAGE_SIZE}",
            "-Wno-unused-function",
        ]
        if _has_group_dead():
            cflags.append("-DLBD_HAVE_GROUP_DEAD=1")
        try:
            self._bpf = bcc.BPF(src_file=str(PROBE_SOURCE).encode(), cflags=cflags)
        except Exception as e:
            msg = str(e).strip().splitlines()
            raise ProbeError(f"loading {PROBE_SOURCE.name} failed: {msg[-1] if msg else type(e).__name__}") from e
        try:
            # Settings and filters first: the descriptors start all disabled, so nothing is
            # captured before the filters (filter_own, drop_mode, ...) are in place.
            self._apply_settings(cfg)
            self._fill_filters(cfg)
            self._fill_descs(self.selection)
        except BaseException:
            self.close()
            raise
        self.ring_fd = self._bpf[b"events"].map_fd

    # -- configuration -------------------------------------------------------------------------

    def _fill_descs(self, selected: frozenset[int]) -> None:
        """Write the descriptor of every syscall whose entry changed (all of them the first time).

        `enabled` is the syscall's selection generation: a syscall selected anew gets a new non-zero
        value, so a record armed under its previous selection (whose exit the probe then skipped
        without looking) is not completed by a later exit (see sys_exit in bpf/lbd.bpf.c).
        """
        table = self._bpf[b"descs"]
        written = self._descs_written
        self._selection_gen = self._selection_gen % 255 + 1
        for sc in syscalls.TABLE:
            if sc.nr >= record.MAX_SYSCALLS:
                continue
            old = written.get(sc.nr)
            d = table.Leaf()
            if sc.nr in selected and sc.implemented:
                d.enabled = old[0] if old and old[0] else self._selection_gen
            else:
                d.enabled = 0
            d.nargs = len(sc.args)
            for i, a in enumerate(sc.args[: record.MAX_ARGS]):
                d.kind[i] = a.kind_id
                d.aux[i] = a.len_arg if a.len_arg is not None else 0xFF
            d.flags = (
                (record.D_EXIT_KINDS if any(a.kind_id in record.EXIT_KINDS for a in sc.args) else 0)
                | (record.D_NORETURN if sc.noreturn else 0)
                | (record.D_REFRESH if sc.name in REFRESH_SYSCALLS else 0)
            )
            if old != bytes(d):
                table[table.Key(sc.nr)] = d
                written[sc.nr] = bytes(d)

    def _apply_settings(self, cfg: Config) -> None:
        o = cfg.open
        s = self._bpf[b"settings"].Leaf()
        s.drop_mode = int(o.drop_mode)
        s.drop_failed = int(o.drop_failed)
        s.filter_own_tgid = self.own_pid if o.filter_own and self.own_tids is None else 0
        s.own_tids_on = int(o.filter_own and bool(self.own_tids))
        s.filter_falco_tgid = self.host_pid if o.filter_falco else 0
        s.str_max = o.str_max
        s.buf_max = o.buf_max
        s.argv_max = o.argv_max
        s.emit_enter = int(o.emit_enter)
        s.filter_pids_on = int(bool(o.filter_pids))
        s.filter_comms_on = int(bool(o.filter_comms))
        s.only_pids_on = int(bool(o.only_pids))
        s.only_comms_on = int(bool(o.only_comms))
        s.wake_bytes = o.wake_bytes or self.ring_size // 4
        s.generation = self._generation
        self._filter_generation += 1           # every write may change a filter: cached verdicts go
        s.filter_generation = self._filter_generation
        table = self._bpf[b"settings"]
        table[table.Key(0)] = s

    def _set_members(self, name: str, values: Iterable, key_of) -> None:
        """Make the set map hold exactly `values`: delete the keys that go, then add the new ones
        (a key that stays is never missing, as it would be with clear-then-fill; deleting first
        keeps a full map, 64 pids, within its size)."""
        table = self._bpf[name.encode()]
        want = [key_of(table, v) for v in values]
        wanted = {bytes(k) for k in want}
        for k in list(table.keys()):
            if bytes(k) not in wanted:
                del table[k]
        for k in want:
            table[k] = ct.c_uint8(1)

    def _fill_filters(self, cfg: Config) -> None:
        o = cfg.open

        def pid_key(t, pid):
            return t.Key(pid)

        def comm_key(t, comm):
            k = t.Key()
            k.comm = comm.encode()[: record.COMM_LEN - 1]
            return k

        self._set_members("own_tids", sorted(self.own_tids or ()), pid_key)
        self._set_members("filter_pids", o.filter_pids, pid_key)
        self._set_members("only_pids", o.only_pids, pid_key)
        self._set_members("filter_comms", o.filter_comms, comm_key)
        self._set_members("only_comms", o.only_comms, comm_key)

    def update(self, config: Config | dict, *, own_pid: int | None = None, host_pid: int | None = None,
               own_tids: Iterable[int] | None = None) -> None:
        """Apply new open_params at run time, without reloading the programs.

        The new configuration is validated completely first; ring_size cannot change while loaded.
        own_pid / host_pid, when given, replace the processes filter_own / filter_falco drop;
        own_tids, when given, makes filter_own drop those threads instead of own_pid's process.
        The maps are written filters first and settings last, so a filter switched on applies to
        its complete set.  Records armed before capture resumes (leaving drop_mode) or before a
        syscall is selected anew are never completed by a later exit (generations: see
        _fill_descs()); a syscall in flight then ends as an exit without enter (LBD_F_NOENTER).
        """
        cfg = coerce(config)
        if cfg.open.ring_size != self.ring_size:
            raise ConfigError(
                f"open_params.ring_size: {cfg.open.ring_size} differs from the loaded {self.ring_size}; "
                "the ring buffer size cannot change without reloading"
            )
        selection = resolve_selection(cfg)
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
            self._fill_filters(cfg)
            self._fill_descs(selection)
            self._apply_settings(cfg)
            self.config, self.selection = cfg, selection

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
            table = self._bpf[b"own_tids"]
            table[table.Key(tid)] = ct.c_uint8(1)
            self._apply_settings(self.config)

    # -- state ----------------------------------------------------------------------------------

    def stats(self) -> Stats:
        table = self._bpf[b"counters"]
        counts = {}
        for name, idx in record.COUNTERS.items():
            counts[name] = int(sum(table[table.Key(idx)]))
        return Stats(counts)

    @property
    def bpf(self):
        """The bcc BPF object (for tests and benchmarks that attach their own consumers)."""
        return self._bpf

    def program_ids(self) -> list[int]:
        """Kernel ids of the attached programs (to check that close() removed them)."""
        ids = []
        for fn in self._bpf.funcs.values():
            info = obj_id(fn.fd)
            if info is not None:
                ids.append(info)
        return ids

    def map_ids(self) -> dict[str, int]:
        """Kernel ids of the probe's maps, by name (to check that close() freed them)."""
        from bcc.libbcc import lib

        ids = {}
        for name in map_names():
            # By fd, not through bcc's table wrappers: bcc 0.26 has none for task storage maps.
            obj = obj_id(lib.bpf_table_fd(self._bpf.module, name.encode()))
            if obj is not None:
                ids[name] = obj
        return ids

    def close(self) -> None:
        bpf, self._bpf = getattr(self, "_bpf", None), None
        if bpf is not None:
            bpf.cleanup()

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        self.close()


_MAP_DECL = re.compile(r"^BPF_(?:F_TABLE\(\"\w+\",\s*[^,]+,\s*[^,]+,|\w+\()\s*(\w+)\s*,", re.M)


def map_names() -> list[str]:
    """The maps bpf/lbd.bpf.c declares (BPF_ARRAY(name, ...), BPF_F_TABLE("hash", k, v, name, ...))."""
    return _MAP_DECL.findall(PROBE_SOURCE.read_text())
