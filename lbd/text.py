"""Text as lbd's outputs write it: the cut (str_max_size) and the escapes that keep every event one
line whose fields a parser can split and undo (lbd/lbd_text.h is the same in C, for the bulk
formatter and the Falco plugin; lbd.output.reference, the per-event definition of the formats,
and the bulk formatter's rare Python path use these)."""
from __future__ import annotations

import re

__all__ = ["truncate", "escape_text", "unescape_text"]


def truncate(s: str, limit: int) -> str:
    """str_max_size: longer strings end in `...` (0 = no limit)."""
    if limit and len(s) > limit:
        return s[:limit] + "..."
    return s


_ESCAPE = {
    "normal": re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\\\\,()=\udc80-\udcff]"),   # a normal line's field
    "plain": re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\\\\\udc80-\udcff]"),        # a value alone (plugin)
    "json": re.compile("[\\\\\udc80-\udcff]"),                       # before JSON's own escaping
}


def _escape_one(m: re.Match) -> str:
    c = m.group()
    o = ord(c)
    if o >= 0xDC80:                       # surrogateescape: an undecodable byte
        return f"\\x{o - 0xDC00:02x}"
    if o < 0x20 or o == 0x7F:
        return f"\\x{o:02x}"
    if o >= 0x80:                         # C1 controls, U+2028, U+2029: line breaks to some readers
        return "".join(f"\\x{b:02x}" for b in c.encode())
    return "\\" + c                      # backslash, and , ( ) = in a normal field


def escape_text(s: str, mode: str = "normal") -> str:
    """A text value as the output writes it (lbd/lbd_text.h): s decoded with surrogateescape and
    already cut; undecodable bytes and (normal, plain) control characters as \\xNN (C1 controls
    U+0080..U+009F and the line separators U+2028, U+2029: their UTF-8 bytes, \\xc2\\x85), a
    backslash as \\\\, and (normal) , ( ) = with a backslash before them."""
    return _ESCAPE[mode].sub(_escape_one, s)


_UNESCAPE = re.compile(r"\\(x[0-9a-f]{2}|.)", re.S)


def unescape_text(s: str) -> bytes:
    """The bytes escape_text's text stands for: the inverse of escape_text for every mode."""
    out = bytearray()
    pos = 0
    for m in _UNESCAPE.finditer(s):
        out += s[pos:m.start()].encode("utf-8", "surrogateescape")
        g = m.group(1)
        out += bytes([int(g[1:], 16)]) if len(g) == 3 else g.encode("utf-8", "surrogateescape")
        pos = m.end()
    out += s[pos:].encode("utf-8", "surrogateescape")
    return bytes(out)
