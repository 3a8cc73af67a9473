"""Enrichment: who made each syscall (parent, command line, executable, user, group) and which
files its process had open, as per-batch numpy arrays a C reader can use directly.

    from lbd.enrich import Enricher
    en = Enricher.from_config(cfg)    # reads every process from /proc once (the capture's start)
    en.enrich(batch)                  # sets batch.enrich, batch.strtab, batch.fdtab
    info = event_info(batch, i)       # one event's enrichment as Python values
    en.stats()                        # table sizes, hits, misses, evictions; procfs reads

The context is kept from the kernel's events in their order by the compiled state engine
(lbd._enrich); lbd.enrich.enricher says what is read from procfs, and when.  The array layout
(ENRICH_DTYPE, FD_DTYPE) is the Falco plugin's contract: see lbd.enrich.layout.  The procfs reader
(lbd.enrich.procfs) and user/group names (lbd.enrich.users) take a root directory, so tests run
them on fake trees.  The readable per-event oracle the engine is tested against is
lbd/_testing/state_reference.py (not part of the product).
"""
from __future__ import annotations

from lbd.enrich.cache import BoundedCache
from lbd.enrich.enricher import Enricher
from lbd.enrich.layout import (ENRICH_DTYPE, ENRICH_FIELDS, FD_DTYPE, empty_enrichment, event_info, has_enrichment,
                               string_at)
from lbd.enrich.procfs import ProcFS
from lbd.enrich.users import Accounts

__all__ = [
    "ENRICH_DTYPE", "ENRICH_FIELDS", "FD_DTYPE",
    "Accounts", "BoundedCache", "Enricher", "ProcFS",
    "empty_enrichment", "event_info", "has_enrichment", "string_at",
]
