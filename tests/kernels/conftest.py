"""The kernel tests run hybridize's Triton kernels on the CPU through Triton's interpreter.

TRITON_INTERPRET is read when a kernel is decorated with @triton.jit, i.e. when hybridize.kernels is
imported, so it is set here (with the NaN poison below), before any test module of this folder imports
the kernels. If another test folder imported them first (compiled mode), they are dropped from sys.modules
and re-imported.
"""
from __future__ import annotations

import os
import sys

import pytest

os.environ["TRITON_INTERPRET"] = "1"
# Chunk matrices (T, Aqk, dA, dM) start as NaN: a kernel that reads the upper triangle no kernel writes
# (_common.tril_mask) fails the float64 comparisons instead of reading whatever the memory held.
os.environ["HYBRIDIZE_GDR_POISON"] = "1"

for name in [m for m in sys.modules if m == "hybridize.kernels" or m.startswith("hybridize.kernels.")]:
    del sys.modules[name]


_SUBPROCESS_TEST = "test_in_subprocess"


def pytest_collection_modifyitems(config, items):
    """test_gated_delta_kernels.test_in_subprocess (CI's way to run this folder) goes last: its run starts in the
    background when collection is done (below), and the rest of the suite runs beside it on CI's 2 cores."""
    items.sort(key=lambda item: item.name == _SUBPROCESS_TEST)  # stable: every other test keeps its place


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    if session.config.getoption("collectonly", False):
        return
    for item in session.items:
        if item.name == _SUBPROCESS_TEST:
            item.module.start_subprocess_run()


def pytest_sessionfinish(session):
    """A run still going (the session stopped before its test: -x, Ctrl-C) is stopped with it."""
    for item in session.items:
        if item.name == _SUBPROCESS_TEST:
            for proc in item.module.BACKGROUND:
                if proc.poll() is None:
                    proc.kill()
