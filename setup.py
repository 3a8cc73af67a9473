"""Build the Cython extension.  LBD_DEBUG=1 turns on bounds checks and line tracing."""
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("LBD_DEBUG") == "1"
directives = {"language_level": 3, "embedsignature": True}
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
cflags = ["-O2", "-Wall"]
if debug:
    directives.update(boundscheck=True, wraparound=True, linetrace=True, initializedcheck=True)
    macros.append(("CYTHON_TRACE_NOGIL", "1"))
    cflags = ["-O0", "-g", "-Wall"]
else:
    directives.update(boundscheck=False, wraparound=False, initializedcheck=False)

ext = Extension(
    "lbd._decode",
    ["lbd/_decode.pyx"],
    include_dirs=[numpy.get_include(), "bpf"],
    define_macros=macros,
    extra_compile_args=cflags,
)

setup(ext_modules=cythonize([ext], compiler_directives=directives))
