"""Where lbd's non-Python files are, in a source checkout and in an installed package."""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
_SOURCE_ROOT = PACKAGE_DIR.parent

# A source checkout (editable install) keeps the kernel side in <root>/bpf; a wheel ships a copy
# in lbd/bpf (setup.py copies it).  Prefer the checkout so edits take effect without reinstalling.
BPF_DIR = _SOURCE_ROOT / "bpf" if (_SOURCE_ROOT / "bpf" / "lbd_record.h").is_file() else PACKAGE_DIR / "bpf"
RECORD_HEADER = BPF_DIR / "lbd_record.h"
# The CO-RE object `make build` compiles (build/lbd.bpf.o in a checkout, lbd/bpf/lbd.bpf.o in a wheel).
# LBD_BPF_OBJECT names another one (tests of a foreign build).
import os as _os

BPF_OBJECT = Path(_os.environ.get("LBD_BPF_OBJECT") or (
    _SOURCE_ROOT / "build" / "lbd.bpf.o" if BPF_DIR == _SOURCE_ROOT / "bpf" else PACKAGE_DIR / "bpf" / "lbd.bpf.o"))
JSON_CONFIG_DIR = (
    _SOURCE_ROOT / "json_config" if (_SOURCE_ROOT / "json_config").is_dir() else PACKAGE_DIR / "json_config"
)
