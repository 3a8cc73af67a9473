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


# ---- lbd falco-config and Falco's config.d merging ---------------------------------------------

FALCO_YAML = """
engine: {kind: modern_ebpf}
rule_matching: first
load_plugins: [container, k8smeta]
plugins:
  - name: container
    library_path: libcontainer.so
  - name: k8smeta
    library_path: libk8smeta.so
    init_config: {collectorPort: 45000}
"""


def _falco_include(main: dict, dropin: dict, strategy: str = "append") -> dict:
    """Falco's yaml_helper::include_config_file (0.41-0.44): append extends sequences and
    overrides scalars, override replaces, add-only adds missing keys only."""
    out = dict(main)
    for key, val in dropin.items():
        if strategy == "append" and isinstance(val, list):
            out[key] = list(out.get(key) or []) + val
        elif strategy in ("append", "override"):
            out[key] = val
        elif key not in out:
            out[key] = val
    return out


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lbd.cli", "falco-config", *args], capture_output=True, text=True,
                          cwd=ROOT)


def test_falco_config_dropin_adds_lbd_and_keeps_the_other_plugins():
    out = _cli()
    assert out.returncode == 0, out.stderr
    dropin = yaml.safe_load(out.stdout)
    assert set(dropin) == {"plugins", "load_plugins"}        # no scalar: nothing of the user's overridden
    merged = _falco_include(yaml.safe_load(FALCO_YAML), dropin)
    assert merged["load_plugins"] == ["container", "k8smeta", "lbd"]
    assert [p["name"] for p in merged["plugins"]] == ["container", "k8smeta", "lbd"]
    assert merged["rule_matching"] == "first" and merged["engine"] == {"kind": "modern_ebpf"}
    # where a drop-in replaces lists (strategy: override, Falco < 0.41) it would unload the others:
    replaced = _falco_include(yaml.safe_load(FALCO_YAML), dropin, "override")
    assert replaced["load_plugins"] == ["lbd"]
    assert "--merge-with" in out.stdout                      # ... and the header says what to do there


def test_falco_config_merge_with_keeps_every_plugin_whatever_the_strategy(tmp_path):
    main = tmp_path / "falco.yaml"
    main.write_text(FALCO_YAML + "  - name: lbd\n    library_path: /old/liblbd.so\n")
    out = _cli("--merge-with", str(main))
    assert out.returncode == 0, out.stderr
    frag = yaml.safe_load(out.stdout)
    for strategy in ("append", "override"):
        base = yaml.safe_load(main.read_text())
        base["load_plugins"] = [] if strategy == "append" else base["load_plugins"]
        base["plugins"] = [] if strategy == "append" else base["plugins"]
        merged = _falco_include(base, frag, strategy)
        assert merged["load_plugins"] == ["container", "k8smeta", "lbd"], strategy
        names = [p["name"] for p in merged["plugins"]]
        assert names == ["container", "k8smeta", "lbd"], strategy           # the old lbd entry replaced
    lbd_entry = frag["plugins"][-1]
    assert lbd_entry["library_path"] == str(ROOT / "build" / "liblbd.so")
    assert frag["plugins"][1]["init_config"] == {"collectorPort": 45000}


def test_falco_config_merge_with_a_bad_file_is_one_line(tmp_path):
    bad = tmp_path / "falco.yaml"
    bad.write_text("plugins: [unclosed\n")
    for path in (bad, tmp_path / "missing.yaml"):
        out = _cli("--merge-with", str(path))
        assert out.returncode != 0 and out.stdout == ""
        assert len(out.stderr.strip().splitlines()) == 1 and str(path) in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
