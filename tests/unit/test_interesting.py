"""The interesting-syscalls loader (lbd/interesting.py) and the generated default file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lbd import syscalls
from lbd.interesting import (
    InterestingError,
    format_interesting,
    load_interesting_file,
    parse_interesting,
)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FILE = ROOT / "json_config" / "interesting_syscalls.json"


def entry(name, nr, flag=1):
    return f'"{name}": {{"syscall_id": {nr}, "interesting": {flag}}}'


def doc(*entries):
    return "{" + ", ".join(entries) + "}"


# --- accepted ------------------------------------------------------------------------------------
def test_generated_file_round_trips_to_the_default_selection():
    assert load_interesting_file(DEFAULT_FILE) == syscalls.default_selection()


def test_generated_file_lists_every_syscall_with_its_number():
    d = json.loads(DEFAULT_FILE.read_text())
    d.pop("_comment")
    assert list(d) == [s.name for s in syscalls.TABLE]
    for s in syscalls.TABLE:
        assert d[s.name] == {"syscall_id": s.nr, "interesting": int(s.default)}


def test_the_seeds_example():
    text = """{ "read": {"syscall_id": 0, "interesting": 0},
                "write": {"syscall_id": 1, "interesting": 1},
                "open": {"syscall_id": 2, "interesting": 0} }"""
    assert parse_interesting(text) == frozenset({1})


def test_a_subset_is_enough_and_unlisted_is_not_interesting():
    assert parse_interesting(doc(entry("openat", 257), entry("connect", 42, 0))) == {257}
    assert parse_interesting("{}") == frozenset()


def test_entry_point_names_are_accepted():
    assert parse_interesting(doc(entry("newuname", 63))) == {63}
    assert parse_interesting(doc(entry("uname", 63))) == {63}
    assert parse_interesting(doc(entry("sendfile64", 40), entry("newstat", 4))) == {40, 4}


def test_unimplemented_syscalls_are_accepted():
    # documented: accepted, the selection only ever sees the ENOSYS calls programs make
    assert parse_interesting(doc(entry("afs_syscall", 183), entry("_sysctl", 156))) == {183, 156}


def test_comment_key():
    assert parse_interesting('{"_comment": "mine", ' + entry("kill", 62) + "}") == {62}


def test_format_interesting_round_trips():
    rows = [(s.name, s.nr, s.nr % 3 == 0) for s in syscalls.TABLE]
    text = format_interesting(rows, comment="x")
    assert parse_interesting(text) == {s.nr for s in syscalls.TABLE if s.nr % 3 == 0}
    assert format_interesting([]) == "{\n\n}\n"
    assert parse_interesting(format_interesting([])) == frozenset()


# --- rejected ------------------------------------------------------------------------------------
def test_error_type():
    assert issubclass(InterestingError, ValueError)


def test_malformed_json_names_line_and_column():
    with pytest.raises(InterestingError) as e:
        parse_interesting('{\n  "read": {"syscall_id": 0, "interesting": 0},\n  oops\n}', "f.json")
    msg = str(e.value)
    assert msg.startswith("f.json: line 3 column 3 (byte 51): malformed JSON")


def test_truncated_json():
    with pytest.raises(InterestingError, match=r"^x\.json: line 1 column \d+ \(byte \d+\): malformed JSON"):
        parse_interesting('{"read": {"syscall_id": 0', "x.json")


@pytest.mark.parametrize("text,what", [("[]", "an array"), ('"read"', "a string"), ("1", "a number"),
                                       ("null", "null")])
def test_top_level_must_be_an_object(text, what):
    with pytest.raises(InterestingError, match=f"f: the top level must be a JSON object.*{what}"):
        parse_interesting(text, "f")


def test_unknown_syscall_name():
    with pytest.raises(InterestingError) as e:
        parse_interesting(doc(entry("opnat", 257)), "sel.json")
    assert str(e.value) == "sel.json: entry 'opnat': unknown syscall name (did you mean 'openat'?)"
    with pytest.raises(InterestingError, match=r"entry 'zzzzzz': unknown syscall name$"):
        parse_interesting(doc(entry("zzzzzz", 1)))


def test_wrong_syscall_id_says_the_right_one():
    with pytest.raises(InterestingError) as e:
        parse_interesting(doc(entry("write", 2)), "sel.json")
    assert str(e.value) == ("sel.json: entry 'write': syscall_id is 2, but write is syscall 1 "
                            'on x86_64: expected "syscall_id": 1')
    with pytest.raises(InterestingError, match='syscall_id is "1".*expected "syscall_id": 1'):
        parse_interesting('{"write": {"syscall_id": "1", "interesting": 1}}')
    with pytest.raises(InterestingError, match="syscall_id is true"):
        parse_interesting('{"write": {"syscall_id": true, "interesting": 1}}')
    with pytest.raises(InterestingError, match="syscall_id is 1.0"):
        parse_interesting('{"write": {"syscall_id": 1.0, "interesting": 1}}')
    with pytest.raises(InterestingError, match=r"entry 'newuname': .*uname is syscall 63"):
        parse_interesting(doc(entry("newuname", 64)))


def test_missing_keys():
    with pytest.raises(InterestingError) as e:
        parse_interesting('{"read": {"syscall_id": 0}}', "sel.json")
    assert str(e.value) == "sel.json: entry 'read': missing key(s) 'interesting'"
    with pytest.raises(InterestingError, match="missing key\\(s\\) 'syscall_id', 'interesting'"):
        parse_interesting('{"read": {}}')


def test_extra_keys():
    with pytest.raises(InterestingError) as e:
        parse_interesting('{"read": {"syscall_id": 0, "interesting": 1, "why": "x"}}', "sel.json")
    assert str(e.value).startswith("sel.json: entry 'read': unexpected key(s) 'why'")


def test_entry_must_be_an_object():
    with pytest.raises(InterestingError, match=r"entry 'read': must be an object"):
        parse_interesting('{"read": 1}')


@pytest.mark.parametrize("value", ["2", "-1", "true", "false", '"1"', "1.0", "null", "[1]"])
def test_interesting_must_be_0_or_1(value):
    with pytest.raises(InterestingError) as e:
        parse_interesting('{"read": {"syscall_id": 0, "interesting": %s}}' % value, "sel.json")
    shown = "an array" if value == "[1]" else json.dumps(json.loads(value))
    assert str(e.value) == (f"sel.json: entry 'read': interesting is {shown}; "
                            "it must be the number 0 or 1")


def test_duplicates():
    with pytest.raises(InterestingError, match="sel.json: key 'read' appears twice"):
        parse_interesting(doc(entry("read", 0), entry("read", 0, 0)), "sel.json")
    with pytest.raises(InterestingError) as e:
        parse_interesting(doc(entry("uname", 63), entry("newuname", 63)), "sel.json")
    assert str(e.value) == ("sel.json: entry 'newuname': syscall 63 (uname) is already listed "
                            "as 'uname'")


def test_comment_must_be_a_string():
    with pytest.raises(InterestingError, match="'_comment' must be a string"):
        parse_interesting('{"_comment": 1}')


def test_file_that_does_not_exist(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(InterestingError) as e:
        load_interesting_file(path)
    assert str(e.value) == f"{path}: cannot read the syscall selection file: No such file or directory"


def test_file_that_is_a_directory(tmp_path):
    with pytest.raises(InterestingError, match=f"^{tmp_path}: the syscall selection file is a directory, not a regular file"):
        load_interesting_file(tmp_path)


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "sel.json"
    path.write_bytes(b'{"read\xff": 1}')
    with pytest.raises(InterestingError, match=r"sel.json: not UTF-8 text at byte 6 \(invalid start byte\)"):
        load_interesting_file(path)


def test_file_errors_name_the_file(tmp_path):
    path = tmp_path / "sel.json"
    path.write_text(doc(entry("write", 7)))
    with pytest.raises(InterestingError, match=f"^{path}: entry 'write': syscall_id is 7"):
        load_interesting_file(str(path))
