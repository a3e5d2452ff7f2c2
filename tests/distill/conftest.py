"""Fixtures live in distill_helpers.py (importable by the test modules too)."""
import pytest
import torch

from .distill_helpers import corpus, hybrid_dir, teacher_dir  # noqa: F401


@pytest.fixture(scope="session", autouse=True)
def one_cpu_thread():
    """Tiny models run fastest on one thread; and after a few training steps the chunked delta rule
    produces denormal floats that distill() flushes to zero on its own thread only: with OpenMP
    workers the stage-1 steps here were measured 60x slower (44 vs 4,700 tokens/s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
