"""The kernel tests run hybridize's Triton kernels on the CPU through Triton's interpreter.

TRITON_INTERPRET is read when a kernel is decorated with @triton.jit, i.e. when hybridize.kernels is
imported, so it is set here (with the NaN poison below), before any test module of this folder imports
the kernels. If another test folder imported them first (compiled mode), they are dropped from sys.modules
and re-imported.
"""
from __future__ import annotations

import os
import sys

os.environ["TRITON_INTERPRET"] = "1"
# Chunk matrices (T, Aqk, dA, dM) start as NaN: a kernel that reads the upper triangle no kernel writes
# (_common.tril_mask) fails the float64 comparisons instead of reading whatever the memory held.
os.environ["HYBRIDIZE_GDR_POISON"] = "1"

for name in [m for m in sys.modules if m == "hybridize.kernels" or m.startswith("hybridize.kernels.")]:
    del sys.modules[name]
