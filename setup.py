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


EXTENSIONS = [
    extension("_decode"),   # the ring consumer: bulk drain into batches
    extension("_format"),   # the output formats (lbd/output/): normal lines and JSON Lines per batch
    extension("_enrich"),   # the compiled core of lbd.enrich: fd tables, string arena, per-event loop
]


class BuildPy(build_py):
    """A wheel carries the kernel side and the default syscall selection inside the package
    (lbd/bpf, lbd/json_config: lbd/_paths.py looks there when there is no source checkout)."""

    def run(self):
        super().run()
        for src, dst in (("bpf", "bpf"), ("json_config", "json_config")):
            target = os.path.join(self.build_lib, "lbd", dst)
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(src, target)


setup(ext_modules=cythonize(EXTENSIONS, compiler_directives=directives), cmdclass={"build_py": BuildPy})
