"""Cache memory measured from the cache's tensors equals the prediction from the shapes; decode runs
on real and synthetic (extended) caches."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from hybridize.evals import bench
from hybridize.plans import Plan, cache_bytes
from hybridize.surgery import convert, shapes_of
from tests.conftest import tiny_model

PLANS = {
    "gdn+full": Plan(["gdn", "full", "gdn", "full"]),
    "kda+gdn": Plan(["kda", "gdn", "gdn", "full"], conv_size=3),
    "all-linear": Plan(["gdn"] * 4),
}


def fp32_shapes(model):
    return dataclasses.replace(shapes_of(model), dtype_bytes=4)


@pytest.fixture(scope="module")
def teacher():
    return tiny_model("llama-gqa", max_position_embeddings=64)


@pytest.mark.parametrize("name", list(PLANS))
def test_measured_cache_equals_prediction(teacher, name):
    plan = PLANS[name]
    hybrid = convert(copy.deepcopy(teacher), plan)
    # prefill 20 real tokens, then synthetic keys/values up to 100 (past the model's 64: RoPE extended)
    bench.extend_positions(hybrid, 128)
    cache, prefill = bench.build_cache(hybrid, 3, 100, max_prefill=20, generator=torch.Generator().manual_seed(0))
    assert prefill is None  # part of the context is synthetic: no prefill figure
    assert cache.get_seq_length() == 100
    # independent prediction: shapes of the original attention model, in its live dtype (fp32: a
    # randomly initialised config records no dtype, so Shapes would assume bf16)
    shapes = fp32_shapes(teacher)
    assert bench.cache_tensor_bytes(cache) == cache_bytes(shapes, plan, 100, batch=3)
    assert bench.predicted_cache_bytes(hybrid, 100, 3) == cache_bytes(shapes, plan, 100, batch=3)
    # one more token through the model grows full layers by one entry per sequence, linear ones by nothing
    with torch.no_grad():
        hybrid(input_ids=torch.zeros(3, 1, dtype=torch.long), past_key_values=cache, use_cache=True)
    assert bench.cache_tensor_bytes(cache) == cache_bytes(shapes, plan, 101, batch=3)


def test_teacher_cache_and_real_prefill(teacher):
    cache, prefill = bench.build_cache(teacher, 2, 30, max_prefill=64, generator=torch.Generator().manual_seed(0))
    assert prefill is not None and prefill > 0
    assert bench.cache_tensor_bytes(cache) == cache_bytes(fp32_shapes(teacher), None, 30, batch=2)


def test_sliding_window_cache_equals_prediction(teacher):
    plan = Plan(["swa", "full", "gdn", "full"], window=8)
    hybrid = convert(copy.deepcopy(teacher), plan)
    cache, _ = bench.build_cache(hybrid, 1, 40, max_prefill=40, generator=torch.Generator().manual_seed(0))
    assert bench.cache_tensor_bytes(cache) == cache_bytes(fp32_shapes(teacher), plan, 40)


def test_run_bench_rows_table_and_plot(teacher, tmp_path):
    hybrid = convert(copy.deepcopy(teacher), PLANS["gdn+full"])
    rows = bench.run_bench({"teacher": teacher, "hybrid": hybrid}, [16, 96], [1, 2], steps=1, max_prefill=32)
    assert [(r.model, r.context, r.batch) for r in rows] == [
        (m, c, b) for m in ("teacher", "hybrid") for b in (1, 2) for c in (16, 96)]
    for r in rows:
        assert r.status == "ok" and r.decode_tok_s > 0
        assert r.cache_bytes == r.cache_predicted
        assert (r.prefill_ms is None) == (r.context > 32)
    table = bench.markdown_table(rows)
    ratio = cache_bytes(fp32_shapes(teacher), PLANS["gdn+full"], 96) / cache_bytes(fp32_shapes(teacher), None, 96)
    assert f"| 96 | 2 | — |" in table and f"{ratio:.1%}" in table
    bench.plot_bench(rows, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"
