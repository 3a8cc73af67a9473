"""examples/falco and `lbd falco-config`: valid configuration, rules that use only real fields."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from lbd import falco
from lbd.config import Config
from tests.plugin_host.host import info

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "falco"
FIELDS = {f.name: f for f in falco.FIELDS}
FIELD_REF = re.compile(r"linux\.[a-z_.]+[a-z_](?:\[[^\]]*\])?")


def _plugin_block(doc: dict) -> dict:
    (p,) = [p for p in doc["plugins"] if p["name"] == "lbd"]
    assert doc["load_plugins"] == ["lbd"]
    return p


def test_example_config_is_valid_lbd_configuration():
    doc = yaml.safe_load((EXAMPLES / "falco.yaml").read_text())
    p = _plugin_block(doc)
    assert Path(p["library_path"]).is_absolute()
    cfg = Config.from_plugin(json.dumps(p["init_config"]), p["open_params"])
    assert cfg.init.batch_size == 512 and cfg.open.filter_falco


def _refs(text: str):
    for m in FIELD_REF.finditer(text):
        ref = m.group()
        name, _, arg = ref.partition("[")
        yield ref, name, arg.rstrip("]") if arg else None


def test_rules_use_real_fields_the_way_falco_allows():
    rules = yaml.safe_load((EXAMPLES / "rules.yaml").read_text())
    lists = {r["list"] for r in rules if "list" in r}
    named = [r for r in rules if "rule" in r]
    assert {r["rule"] for r in named} >= {"lbd shell spawned by a service", "lbd read of /etc/shadow",
                                           "lbd outbound connect to a suspect port", "lbd seed network calls"}
    for r in named:
        assert r["source"] == "linux_ebpf", r["rule"]
        for text in (r["condition"], r["output"]):
            for ref, name, arg in _refs(text):
                assert name in FIELDS, f"{r['rule']}: unknown field {name}"
                f = FIELDS[name]
                if f.arg == "keyvalue":
                    assert arg in (None, "key", "value"), ref
                elif f.arg == "name":
                    assert arg, f"{ref} needs an argument name"
                else:
                    assert arg is None, f"{ref}: {name} takes no argument"
        # list fields (the seed's) may only be compared with `in`
        for m in re.finditer(r"(linux\.[a-z_.]+(?:\[[^\]]*\])?)\s*(=|!=|<|>|contains|startswith|in)\s", r["condition"]):
            f = FIELDS[m.group(1).split("[")[0]]
            if f.is_list:
                assert m.group(2) == "in", f"{r['rule']}: {m.group(0)}"
        for word in re.findall(r"\((lbd_[a-z_]+)\)", r["condition"]):
            assert word in lists, word


def test_falco_config_command_prints_a_loadable_fragment():
    out = subprocess.run([sys.executable, "-m", "lbd.cli", "falco-config"], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    doc = yaml.safe_load(out)
    p = _plugin_block(doc)
    assert p["library_path"] == str(ROOT / "build" / "liblbd.so")
    Config.from_plugin(json.dumps(p["init_config"]), p["open_params"])
    assert "27182" in out and "linux_ebpf" in out


def _init_text(p: dict) -> str:
    c = p.get("init_config", "")
    return c if isinstance(c, str) else json.dumps(c)      # Falco turns a YAML map into JSON


def test_example_and_generated_init_configs_match_the_plugins_schema():
    # Falco validates init_config against the plugin's get_init_schema before init
    example = _plugin_block(yaml.safe_load((EXAMPLES / "falco.yaml").read_text()))
    out = subprocess.run([sys.executable, "-m", "lbd.cli", "falco-config"], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    generated = _plugin_block(yaml.safe_load(out))
    rc, lines = info(_init_text(example), _init_text(generated), '{"format": "xml"}')
    assert rc == 0, lines
    results = [d for d in lines if d.get("check") == "init_schema_config"]
    assert [d["ok"] for d in results] == [True, True, False], results
    assert "xml" in results[2]["detail"], results[2]
