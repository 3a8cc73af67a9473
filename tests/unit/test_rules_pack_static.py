"""rules/lbd_rules.yaml without a kernel: every rule compiles under Falco's rules for lbd's fields
(tests/plugin_host/falco_rules.py), names the linux_ebpf source, reads only real fields in the
forms they take; and the oracle itself follows libsinsp on the points the pack relies on."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.plugin_host.falco_rules import FIELDS, CompileError, RuleSet

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "rules" / "lbd_rules.yaml"


def test_pack_compiles_and_reads_real_fields():
    docs = yaml.safe_load(PACK.read_text())
    rules = RuleSet(docs)
    assert len(rules.rules) >= 20
    for name, r in rules.rules.items():
        assert r["source"] == "linux_ebpf" and r["priority"] and r["desc"].strip() and r["output"].strip(), name
        for label in rules.labels(name):
            field = label.split("[", 1)[0]
            assert field in FIELDS, f"{name}: {label}"
    plugins = next(d["required_plugin_versions"] for d in docs if "required_plugin_versions" in d)
    assert plugins == [{"name": "lbd", "version": "0.1.0"}]


def _one(cond: str) -> RuleSet:
    return RuleSet([{"rule": "r", "condition": cond, "output": "x", "priority": "INFO", "source": "linux_ebpf"}])


def test_list_fields_take_only_in_intersects_exists():
    for bad in ("linux.type = openat", "linux.fds[value] contains /etc", "linux.flags[flags] = O_CREAT"):
        with pytest.raises(CompileError, match="only supports"):
            _one(bad)
    _one("linux.type[value] in (openat) and linux.flags[flags] intersects (O_CREAT) and linux.fds exists")


def test_semantics_follow_libsinsp():
    r = _one("linux.flags[flags] in (O_WRONLY, O_CREAT)")
    assert r.matches("r", {"linux.flags[flags]": ["O_WRONLY", "O_CREAT"]})
    assert not r.matches("r", {"linux.flags[flags]": ["O_WRONLY", "O_TRUNC"]})      # in: every value
    r = _one("linux.flags[flags] intersects (O_TRUNC)")
    assert r.matches("r", {"linux.flags[flags]": ["O_WRONLY", "O_TRUNC"]})           # intersects: some
    r = _one("linux.arg[filename] != /etc/passwd")
    assert not r.matches("r", {"linux.arg[filename]": []})                           # no value: false
    r = _one("not linux.arg[filename] = /etc/passwd")
    assert r.matches("r", {"linux.arg[filename]": []})
    r = _one("linux.user.num != 0 and linux.failed = false")
    assert r.matches("r", {"linux.user.num": [1000], "linux.failed": [False]})
    assert not r.matches("r", {"linux.user.num": [0], "linux.failed": [False]})
