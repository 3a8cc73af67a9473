"""The seed's interesting-syscalls file: which syscalls to capture.

Format (json_config/interesting_syscalls.json, the ``interest_syscall_file`` open parameter)::

    {
      "read":  {"syscall_id": 0, "interesting": 0},
      "write": {"syscall_id": 1, "interesting": 1},
      ...
    }

One entry per syscall, keyed by its name: the user-visible name (``uname``) or the kernel
entry-point name (``newuname``).  ``syscall_id`` must be that syscall's x86_64 number and
``interesting`` must be the JSON number 0 or 1 (1: capture it).  A syscall the file does not
list is not captured, so a file may list only the syscalls it selects.  The top level may also
hold one ``"_comment"`` string (the generated file says where it comes from there); nothing else.

Everything else is rejected with :class:`InterestingError` naming the file and the entry:
malformed JSON (with line and column), a top level that is not an object, an unknown syscall
name, a wrong ``syscall_id`` (the message says the right one), missing or extra keys in an entry,
an ``interesting`` that is not 0 or 1 (``true``/``false`` too: the seed uses 0/1), the same
syscall listed twice (also under its two names), and a file that cannot be read.

Selecting an unimplemented syscall (``afs_syscall``, ``_sysctl``, ...; ``Syscall.implemented``
is False) is accepted: the kernel only answers such a call with ENOSYS, and lbd captures it like
any other when a program makes it, so the selection is meaningful, if rarely useful.
"""
from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterable

__all__ = [
    "InterestingError", "COMMENT_KEY", "parse_interesting", "load_interesting_file",
    "format_interesting",
]

#: the one top-level key that is not a syscall: a free-text comment
COMMENT_KEY = "_comment"
#: the largest selection file read (the packaged one, every syscall listed, is about 20 KiB)
MAX_BYTES = 1 << 20
_ENTRY_KEYS = ("syscall_id", "interesting")


class InterestingError(ValueError):
    """An interesting-syscalls file that cannot be used; the message names the file and entry."""


def _no_duplicates(source: str):
    def hook(pairs: list[tuple[str, object]]) -> dict:
        out: dict = {}
        for k, v in pairs:
            if k in out:
                raise InterestingError(f"{source}: key {k!r} appears twice in one object")
            out[k] = v
        return out

    return hook


def _no_constant(source: str):
    def hook(name: str) -> object:
        raise InterestingError(f"{source}: malformed JSON: {name} is not a JSON value")

    return hook


def _brief(v: object, limit: int = 48) -> str:
    """A value of the file as JSON for a message: one line, cut at limit characters."""
    if isinstance(v, (list, dict)):
        return _json_type(v)
    text = json.dumps(v)
    return text if len(text) <= limit else text[:limit] + "..."


def _json_type(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    return {int: "a number", float: "a number", str: "a string", list: "an array", dict: "an object"}.get(
        type(v), "a value")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_interesting(text: str, source: str = "<string>") -> frozenset[int]:
    """The numbers of the syscalls ``text`` marks interesting (1).

    ``source`` names the text in error messages (a file path).  Raises InterestingError.
    """
    from lbd.syscalls import BY_NAME  # here, so that tools/gen_syscalls.py can import this module

    if len(text) > MAX_BYTES and len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise InterestingError(f"{source}: more than the limit of {MAX_BYTES} bytes (1 MiB)")
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates(source), parse_constant=_no_constant(source))
    except json.JSONDecodeError as e:
        byte = len(text[:e.pos].encode("utf-8", "surrogatepass"))
        raise InterestingError(
            f"{source}: line {e.lineno} column {e.colno} (byte {byte}): malformed JSON: {e.msg}") from None
    except RecursionError:
        raise InterestingError(f"{source}: arrays and objects nested too deep (a selection file has 2 levels)") from None
    if not isinstance(doc, dict):
        raise InterestingError(
            f"{source}: the top level must be a JSON object of syscall entries, not {_json_type(doc)}")

    selected: set[int] = set()
    seen: dict[int, str] = {}
    for name, entry in doc.items():
        if name == COMMENT_KEY:
            if not isinstance(entry, str):
                raise InterestingError(f"{source}: {COMMENT_KEY!r} must be a string")
            continue
        where = f"{source}: entry {name!r}"
        sc = BY_NAME.get(name)
        if sc is None:
            near = difflib.get_close_matches(name, BY_NAME, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise InterestingError(f"{where}: unknown syscall name{hint}")
        if not isinstance(entry, dict):
            raise InterestingError(
                f"{where}: must be an object {{\"syscall_id\": {sc.nr}, \"interesting\": 0 or 1}}")
        missing = [k for k in _ENTRY_KEYS if k not in entry]
        extra = sorted(k for k in entry if k not in _ENTRY_KEYS)
        if missing:
            raise InterestingError(f"{where}: missing key(s) {', '.join(map(repr, missing))}")
        if extra:
            raise InterestingError(
                f"{where}: unexpected key(s) {', '.join(map(repr, extra))}; "
                f"an entry has exactly {_ENTRY_KEYS[0]!r} and {_ENTRY_KEYS[1]!r}")
        sid = entry["syscall_id"]
        if not _is_int(sid) or sid != sc.nr:
            raise InterestingError(
                f"{where}: syscall_id is {_brief(sid)}, but {sc.name} is syscall {sc.nr} "
                f"on x86_64: expected \"syscall_id\": {sc.nr}")
        flag = entry["interesting"]
        if not _is_int(flag) or flag not in (0, 1):
            raise InterestingError(
                f"{where}: interesting is {_brief(flag)}; it must be the number 0 or 1")
        if sc.nr in seen:
            raise InterestingError(
                f"{where}: syscall {sc.nr} ({sc.name}) is already listed as {seen[sc.nr]!r}")
        seen[sc.nr] = name
        if flag == 1:
            selected.add(sc.nr)
    return frozenset(selected)


def load_interesting_file(path: str | os.PathLike[str]) -> frozenset[int]:
    """:func:`parse_interesting` of a file.  Raises InterestingError, also when the file cannot
    be read or is not UTF-8."""
    from lbd.files import InputFileError, read_input_file

    source = os.fspath(path)
    try:
        data = read_input_file(source, "syscall selection file", MAX_BYTES)
    except InputFileError as e:
        raise InterestingError(str(e)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InterestingError(f"{source}: not UTF-8 text at byte {e.start} ({e.reason})") from None
    return parse_interesting(text, source)


def format_interesting(entries: Iterable[tuple[str, int, bool]], comment: str | None = None) -> str:
    """The text of an interesting-syscalls file: one line per (name, nr, interesting) entry,
    in the order given, after an optional ``_comment``."""
    lines = []
    if comment is not None:
        lines.append(f"  {json.dumps(COMMENT_KEY)}: {json.dumps(comment)}")
    for name, nr, flag in entries:
        value = {"syscall_id": int(nr), "interesting": int(bool(flag))}
        lines.append(f"  {json.dumps(name)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"
