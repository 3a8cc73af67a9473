"""Event output: the seed's `normal` text lines, JSON Lines, terminal lines and Parquet, a batch at
a time, to a file, stdout or NATS JetStream.

* lbd.output.writer: `open_writer(cfg, path)` -> Writer (`write_batch`, `flush`, `reopen`, `close`);
  files are opened by lbd.files' rules (no link followed, mode 0600), appended to, written in
  whole lines, rotated (rotate_size); errors are `OutputError` with a one-line message; for
  the parquet format a lbd.output.parquet.ParquetWriter, for nats://HOST:PORT/SUBJECT a
  lbd.output.nats.NatsExporter (lbd.output.exporter: the spool, delivery, the counts), all with
  the Writer's methods.
* lbd._format: the compiled bulk formatter the Writer uses (`Formatter.format(batch)`).
* lbd.output.terminal: the terminal format, strace-like lines with colours (`TerminalFormatter`,
  which the Writer uses for fmt="terminal").
* lbd.output.reference: the per-event definition of both formats (what the bulk formatter must
  produce, byte for byte) and the baseline it is benchmarked against.
* event.schema.json: the JSON Schema of one JSON Lines object (SCHEMA_PATH).
"""
from __future__ import annotations

from pathlib import Path

SCHEMA_PATH = Path(__file__).resolve().parent / "event.schema.json"

__all__ = ["SCHEMA_PATH", "FORMATS", "OutputError", "OutputClosed", "Writer", "open_writer", "load_schema"]

FORMATS = ("normal", "json", "terminal", "parquet")


def load_schema() -> dict:
    """The JSON Schema of one event of the json format."""
    import json

    return json.loads(SCHEMA_PATH.read_text())


def __getattr__(name: str):
    # lazy: importing lbd.output must not need the compiled formatter
    if name in ("OutputError", "OutputClosed", "Writer", "open_writer"):
        from lbd.output import writer

        return getattr(writer, name)
    raise AttributeError(f"module 'lbd.output' has no attribute {name!r}")
