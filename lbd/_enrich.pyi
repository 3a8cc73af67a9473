"""Type stub of lbd/_enrich.pyx: the state engine (process and fd tables kept from the event
stream in its order) and the writer of each batch's enrichment arrays (lbd/enrich/layout.py)."""
from __future__ import annotations

from typing import Any

#: the syscalls whose records change the tables
STATE_NAMES: frozenset[str]

class Engine:
    """The process and fd tables and the per-batch writer (lbd.enrich.Enricher owns one).

    The arrays it gives a batch are views of buffers it reuses: valid until the next enrich()."""

    epoch: int
    batches: int
    events: int
    applied: int
    hits: int
    misses: int
    evictions: int
    reaped: int
    loads: int
    fd_rows: int
    fd_overflow: int
    epochs: int
    slow_calls: int

    def __init__(self, host: Any, *, rich_value_size: int = 65536, max_procs: int = 16384, max_fds: int = 65536,
                 max_users: int = 4096, grace_s: float = 5.0, max_strtab: int = 1 << 20,
                 max_fd_rows: int = 1 << 16) -> None: ...
    def seed(self, pid: int, info: tuple) -> None:
        """Put a process read from procfs in the table: (ppid, comm, cmdline, exe, cwd, fds)."""
    def enrich(self, batch: Any) -> None:
        """Set batch.enrich, batch.strtab and batch.fdtab (batch: an lbd._decode.Batch)."""
    def plugin_view(self, batch: Any, attach: bool = False) -> tuple[int, int, int, int, int, int, int]:
        """enrich(batch) for the Falco plugin: (n, ptrs, enrich, strtab, strtab_len, fdtab,
        fdtab_len) addresses and sizes; attach: also set batch.enrich, strtab, fdtab."""
    def counters(self) -> dict:
        """The cheap counters (no walk of the tables): batches, events, hits, misses, ..."""
    def process(self, pid: int) -> dict | None: ...
    def stats(self) -> dict: ...

def _normpath(path: bytes) -> bytes:
    """posixpath.normpath of an absolute path, as the engine computes it (tests)."""
def _sock_name(kind: int, sockaddr: bytes, form: int = 1) -> str | None:
    """The name an fd of `kind` gets from a sockaddr, as the engine computes it (tests)."""
