"""Enrichment: who made each syscall (parent, command line, executable, user, group) and which
files its process had open, as per-batch numpy arrays a C reader can use directly.

    from lbd.enrich import Enricher
    en = Enricher.from_config(cfg)
    en.enrich(batch)                  # sets batch.enrich, batch.strtab, batch.fdtab
    info = event_info(batch, i)       # one event's enrichment as Python values
    en.stats()                        # cache sizes, hits, misses, evictions; procfs reads

The array layout (ENRICH_DTYPE, FD_DTYPE) is the Falco plugin's contract: see lbd.enrich.layout.
The process table (lbd.enrich.enricher), fd tables (lbd.enrich.fdtable), procfs reader
(lbd.enrich.procfs) and user/group names (lbd.enrich.users) all take a root directory, so tests
run them on fake trees.

These modules are the readable reference.  By default an Enricher runs its batches through
lbd._enrich (lbd/_enrich.pyx): the fd tables, the string arena and the per-event loop in C, with
the slow paths (procfs, the process table, names, the process-tree syscalls) called back here;
`Enricher(engine="python")` runs the reference, and tests/unit/test_enrich_engines.py holds the
two to the same arrays, bit for bit.
"""
from __future__ import annotations

from lbd.enrich.cache import BoundedCache
from lbd.enrich.enricher import FD_SYSCALLS, Enricher, Info, Proc
from lbd.enrich.fdtable import FdTable
from lbd.enrich.layout import (ENRICH_DTYPE, ENRICH_FIELDS, FD_DTYPE, empty_enrichment, event_info, has_enrichment,
                               string_at)
from lbd.enrich.procfs import ProcFS, ProcInfo
from lbd.enrich.strtab import StringArena
from lbd.enrich.users import Accounts

__all__ = [
    "ENRICH_DTYPE", "ENRICH_FIELDS", "FD_DTYPE", "FD_SYSCALLS",
    "Accounts", "BoundedCache", "Enricher", "FdTable", "Info", "Proc", "ProcFS", "ProcInfo", "StringArena",
    "empty_enrichment", "event_info", "has_enrichment", "string_at",
]
