"""Type stub of lbd/_filter.pyx: text tests over many byte spans in one C loop (lbd.filter.spans)."""
from __future__ import annotations

import numpy as np

OP_EQ: int
OP_PREFIX: int
OP_SUFFIX: int
OP_CONTAINS: int
OP_GLOB: int

def match_spans(buf: np.ndarray, start: np.ndarray, length: np.ndarray, op: int, needles: list[bytes],
                raw: bool) -> np.ndarray:
    """int8 per span: 1 a needle matches, 0 none does, 2 undecided (not well-formed UTF-8 under
    endswith / contains / glob with raw=True)."""
