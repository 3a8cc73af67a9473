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

    def __init__(self, format: str = "normal", limit: int = 0) -> None: ...
    @property
    def buffered(self) -> int:
        """Bytes formatted and not yet written."""
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
        """Write the whole buffer to fd (GIL released), then empty it; OSError on failure."""
    def clear_flag_names(self) -> None: ...
