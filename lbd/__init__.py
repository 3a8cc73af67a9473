"""lbd: Linux behavior detection.  Every Linux system call, captured with eBPF, decoded in bulk.

    import lbd
    with lbd.Collector({"syscalls": ["openat", "execve"]}) as c:
        for batch in c:
            print(batch.events[["pid", "nr", "res"]])

See README.md for the CLI, the configuration and the Falco plugin.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Batch", "Collector", "Config", "ConfigError", "__version__"]


def __getattr__(name: str):
    # Lazy: `lbd doctor` and `lbd syscalls` must work without the compiled decoder or bcc.
    if name == "Collector":
        from lbd.collector import Collector

        return Collector
    if name == "Batch":
        from lbd.batch import Batch

        return Batch
    if name in ("Config", "ConfigError"):
        from lbd import config

        return getattr(config, name)
    raise AttributeError(f"module 'lbd' has no attribute {name!r}")
