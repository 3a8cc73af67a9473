"""A strict parser of lbd's `normal` lines (the test oracle of the format's escaping).

    ev = parse_line(line)       # -> dict, or ValueError naming the column

The grammar (README, "Output formats"; lbd/output/reference.py)::

    [TIME]: NAME, syscall_id=N, dir=D, res=N, user=V, comm=(V), cmdline=(V), pid=N, tid=N,
    ppid=N(V), args=(K=V, K=V, ...), fds=[N(V), N(V), ...]

A value V is any text in which a backslash starts an escape (\\xNN: that byte; \\c: the character
c) and none of , ( ) = appears unescaped.  Text values come back as the bytes they stand for; the
parser never guesses: a field separator inside a value, an unknown escape or a missing field is a
ValueError.  Being strict is the point: a value that could end its field, or put a second
`pid=` on the line, fails here.
"""
from __future__ import annotations

import re

SPECIAL = ",()="
_INT = re.compile(r"-?\d+")
_NAME = re.compile(r"[a-z_][a-z0-9_]*")


class _Cursor:
    def __init__(self, line: str):
        self.s = line
        self.i = 0

    def fail(self, what: str):
        raise ValueError(f"column {self.i}: {what}: {self.s[self.i:self.i + 40]!r}")

    def expect(self, lit: str) -> None:
        if not self.s.startswith(lit, self.i):
            self.fail(f"expected {lit!r}")
        self.i += len(lit)

    def peek(self, lit: str) -> bool:
        return self.s.startswith(lit, self.i)

    def match(self, rx: re.Pattern, what: str) -> str:
        m = rx.match(self.s, self.i)
        if not m:
            self.fail(f"expected {what}")
        self.i = m.end()
        return m.group()

    def integer(self) -> int:
        return int(self.match(_INT, "a number"))

    def value(self, stops: str) -> bytes:
        """A value up to (not including) the first unescaped character of `stops`."""
        out = bytearray()
        s = self.s
        while True:
            if self.i >= len(s):
                self.fail("the line ends inside a value")
            c = s[self.i]
            if c in stops:
                return bytes(out)
            if c == "\\":
                nxt = s[self.i + 1: self.i + 2]
                if nxt == "x":
                    h = s[self.i + 2: self.i + 4]
                    if not re.fullmatch(r"[0-9a-f]{2}", h):
                        self.fail("a \\x escape without two hex digits")
                    out.append(int(h, 16))
                    self.i += 4
                    continue
                if nxt not in ("\\",) and nxt not in SPECIAL:
                    self.fail(f"an unknown escape \\{nxt}")
                out += nxt.encode()
                self.i += 2
                continue
            if c in SPECIAL:
                self.fail(f"an unescaped {c!r} inside a value")
            if ord(c) < 0x20 or c == "\x7f":
                self.fail("a control character inside a value")
            out += c.encode("utf-8", "surrogateescape")
            self.i += 1


def parse_line(line: str) -> dict:
    """The fields of one normal line: text fields as bytes, numbers as int, args and fds as
    lists of (name, bytes) and (fd, bytes)."""
    c = _Cursor(line)
    c.expect("[")
    end = line.find("]: ", c.i)
    if end < 0:
        c.fail("no end of the time")
    ev: dict = {"time": line[c.i:end]}
    c.i = end + 3
    ev["syscall"] = c.value(",").decode()
    c.expect(", syscall_id=")
    ev["nr"] = c.integer()
    c.expect(", dir=")
    ev["dir"] = c.s[c.i: c.i + 1]
    c.i += 1
    c.expect(", res=")
    ev["res"] = c.integer()
    c.expect(", user=")
    ev["user"] = c.value(",")
    c.expect(", comm=(")
    ev["comm"] = c.value(")")
    c.expect("), cmdline=(")
    ev["cmdline"] = c.value(")")
    c.expect("), pid=")
    ev["pid"] = c.integer()
    c.expect(", tid=")
    ev["tid"] = c.integer()
    c.expect(", ppid=")
    ev["ppid"] = c.integer()
    c.expect("(")
    ev["pcomm"] = c.value(")")
    c.expect("), args=(")
    args: list[tuple[str, bytes]] = []
    if not c.peek(")"):
        while True:
            name = c.match(_NAME, "an argument name")
            c.expect("=")
            args.append((name, c.value(",)")))
            if c.peek(")"):
                break
            c.expect(", ")
    c.expect("), fds=[")
    fds: list[tuple[int, bytes]] = []
    if not c.peek("]"):
        while True:
            fd = c.integer()
            c.expect("(")
            fds.append((fd, c.value(")")))
            c.expect(")")
            if c.peek("]"):
                break
            c.expect(", ")
    c.expect("]")
    if c.i != len(line):
        c.fail("text after the fds list")
    ev["args"] = args
    ev["fds"] = fds
    return ev
