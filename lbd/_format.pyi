"""Type stub of lbd/_format.pyx: the bulk formatter of lbd's output formats."""
from __future__ import annotations

import numpy as np

class Formatter:
    """Formats whole batches into one C buffer: `format(batch)` appends, `write_to(fd)` drains.

    What it writes is lbd.output.reference's text, byte for byte.
    """

    format_name: str
    limit: int
    events_formatted: int
    capture_env: bool
    secret_pattern: str

    def __init__(self, format: str = "normal", limit: int = 0, *, capture_env: bool = False,
                 secret_pattern: str = "") -> None:
        """capture_env: write envp (else NULL / null), each NAME=VALUE whose name matches
        secret_pattern (|-separated globs, case-insensitive) as NAME=***."""
    @property
    def buffered(self) -> int:
        """Bytes formatted and not yet written."""
    @property
    def buffered_lines(self) -> int:
        """Lines (events) formatted and not yet written, the one partly written included."""
    def format(self, batch, mask: np.ndarray | None = None) -> int:
        """Append the text of the batch's events (those with a true mask entry); uses the batch's
        enrichment when it has one for its current events.  Returns the number formatted."""
    def format_arrays(self, events: np.ndarray, arena: np.ndarray, enrich: np.ndarray | None = None,
                      strtab: np.ndarray | None = None, fdtab: np.ndarray | None = None,
                      mask: np.ndarray | None = None) -> int: ...
    def getvalue(self) -> bytes:
        """The buffered text; the buffer is emptied."""
    def clear(self) -> None: ...
    def write_to(self, fd: int) -> int:
        """Write the whole buffer to fd (GIL released), then empty it; OSError on failure.  An
        interrupted write runs the signal handlers (raising what they raise) and goes on."""
    def line_end(self) -> int:
        """Bytes up to and including the buffer's first newline (all of it when none)."""
    def write_some(self, fd: int, limit: int = 0, partial: bool = False) -> tuple[int, int, int]:
        """One write(2) of the buffer's start, cut back to a line end unless partial (nothing when
        not one line fits in limit): (bytes written, lines completed, bytes after the last
        newline written).  OSError on failure (EINTR and EAGAIN too: nothing written)."""
    def clear_flag_names(self) -> None: ...
