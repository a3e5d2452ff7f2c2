"""Plans: placement by ratio, explicit lists, YAML files, validation and cache arithmetic."""
from __future__ import annotations

import pytest

from hybridize.plans import Plan, PlanError, Shapes, cache_bytes, load_plan, make_plan, parse_tokens


@pytest.mark.parametrize("n, ratio, expected", [
    (4, "3:1", [3]),
    (8, "3:1", [3, 7]),
    (30, "3:1", [3, 7, 11, 14, 18, 22, 26, 29]),
    (32, "7:1", [7, 15, 23, 31]),
    (6, "1:1", [1, 3, 5]),
    (5, "1:0", []),
    (3, "100:1", [2]),  # at least one full layer when F > 0
])
def test_ratio_placement(n, ratio, expected):
    plan = make_plan(n, ratio=ratio)
    assert plan.full_layers == expected
    assert plan.num_layers == n and all(m == "gdn" for m in plan.mixers if m != "full")


def test_explicit_full_layers_and_mixer():
    plan = make_plan(6, full_layers=[0, 5], mixer="swa", window=128)
    assert plan.mixers == ["full", "swa", "swa", "swa", "swa", "full"] and plan.window == 128


@pytest.mark.parametrize("kwargs, message", [
    (dict(ratio="3-1"), "bad ratio"),
    (dict(ratio="0:1"), "replaces no layer"),
    (dict(full_layers=[0, 9]), "layer index 9 is out of range"),
    (dict(ratio="3:1", mixer="mamba"), "unknown mixer"),
    (dict(ratio="3:1", mixer="swa"), "need a window"),
    (dict(ratio="3:1", mixer="swa", window=0), "positive"),
    (dict(full_layers=[0, 1, 2, 3]), "replaces no layer"),
    (dict(), "exactly one of"),
])
def test_invalid_plans_explain_themselves(kwargs, message):
    with pytest.raises(PlanError, match=message):
        make_plan(4, **kwargs)


def test_yaml_round_trip_and_mixed_files(tmp_path):
    plan = make_plan(8, ratio="3:1", mixer="kda")
    path = tmp_path / "p.yaml"
    path.write_text(plan.to_yaml())
    assert load_plan(path).mixers == plan.mixers
    path.write_text("num_layers: 4\nwindow: 64\nmixers: {0: gdn, 1: kda, 2: swa}\n")
    assert load_plan(path).mixers == ["gdn", "kda", "swa", "full"]
    path.write_text("mixers: [gdn, attention]\n")
    with pytest.raises(PlanError, match="unknown mixer attention"):
        load_plan(path)
    path.write_text("mixers: [gdn, full\n")
    with pytest.raises(PlanError, match="not valid YAML"):
        load_plan(path)
    with pytest.raises(PlanError, match="does not exist"):
        load_plan(tmp_path / "missing.yaml")


def test_cache_arithmetic():
    shapes = Shapes(num_layers=4, hidden_size=64, num_heads=4, num_kv_heads=2, head_dim=16, dtype_bytes=2)
    ctx = 1000
    kv_layer = ctx * 2 * 2 * 16 * 2  # tokens x (k and v) x kv heads x head dim x bytes
    assert cache_bytes(shapes, None, ctx) == 4 * kv_layer
    state = 4 * 16 * 16 * 4 + 3 * 4 * 16 * 4 * 2  # fp32 state + conv inputs (3 streams, 4 taps)
    plan = Plan(["gdn", "swa", "kda", "full"], window=100)
    swa = 99 * kv_layer // ctx  # the cache keeps window - 1 = 99 positions
    assert cache_bytes(shapes, plan, ctx, batch=3) == 3 * (2 * state + swa + kv_layer)


def test_parse_tokens():
    assert [parse_tokens(t) for t in ("8K", "128k", "1M", "2048", "1.5K")] == [8192, 131072, 1 << 20, 2048, 1536]
    with pytest.raises(ValueError, match="bad token count"):
        parse_tokens("lots")
