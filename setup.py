"""Build the Cython extension.

LBD_DEBUG=1: a debug build (-O0 -g): Cython bounds / wraparound / initialisation checks, line
tracing, and LBD_DEBUG_CHECKS, which makes lbd._decode assert every pointer its unchecked loops
follow (abort with a message on failure; lbd._decode.DEBUG is True).  Rebuild with --force when
switching between the two builds (the sources do not change, so setuptools would skip it).
"""
import os
import shutil

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

debug = os.environ.get("LBD_DEBUG") == "1"
directives = {"language_level": 3, "embedsignature": True}
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
cflags = ["-O2", "-Wall"]
if debug:
    directives.update(boundscheck=True, wraparound=True, linetrace=True, initializedcheck=True)
    macros += [("CYTHON_TRACE_NOGIL", "1"), ("LBD_DEBUG_CHECKS", "1")]
    cflags = ["-O0", "-g", "-Wall"]
else:
    directives.update(boundscheck=False, wraparound=False, initializedcheck=False)

def extension(name: str) -> Extension:
    """lbd/<name>.pyx, built with the record header (bpf/) and the enrichment layout (lbd/enrich/)."""
    return Extension(
        f"lbd.{name}",
        [f"lbd/{name}.pyx"],
        include_dirs=[numpy.get_include(), "bpf", "lbd/enrich"],
        define_macros=macros,
        extra_compile_args=cflags,
    )


LIBBPF = "build/libbpf"      # scripts/build_libbpf.sh: libbpf.a (static, -fPIC) and its headers


def libbpf_extension() -> Extension:
    """lbd/_libbpf.pyx, the loader, with libbpf linked in statically (an installed lbd needs no
    libbpf package; libelf and zlib, which every distribution has, stay shared)."""
    if not os.path.exists(f"{LIBBPF}/libbpf.a"):
        raise SystemExit(f"{LIBBPF}/libbpf.a is missing: run scripts/build_libbpf.sh (make setup does)")
    ext = extension("_libbpf")
    ext.include_dirs.insert(0, f"{LIBBPF}/include")
    ext.extra_objects = [f"{LIBBPF}/libbpf.a"]
    ext.libraries = ["elf", "z"]
    return ext


EXTENSIONS = [
    extension("_decode"),   # the ring consumer: bulk drain into batches
    extension("_format"),   # the output formats (lbd/output/): normal lines and JSON Lines per batch
    extension("_enrich"),   # the compiled core of lbd.enrich: fd tables, string arena, per-event loop
    extension("_filter"),   # lbd.filter's text tests over byte spans
    libbpf_extension(),     # the loader: libbpf's open / load / attach (lbd/loader.py)
]


class BuildPy(build_py):
    """A wheel carries the kernel side (the probe's source for bcc and its CO-RE object,
    build/lbd.bpf.o, made by `make build`) and the default syscall selection inside the package
    (lbd/bpf, lbd/json_config: lbd/_paths.py looks there when there is no source checkout)."""

    def run(self):
        super().run()
        for src, dst in (("bpf", "bpf"), ("json_config", "json_config")):
            target = os.path.join(self.build_lib, "lbd", dst)
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(src, target)
        if os.path.exists("build/lbd.bpf.o"):
            shutil.copy2("build/lbd.bpf.o", os.path.join(self.build_lib, "lbd", "bpf", "lbd.bpf.o"))


setup(ext_modules=cythonize(EXTENSIONS, compiler_directives=directives), cmdclass={"build_py": BuildPy})
