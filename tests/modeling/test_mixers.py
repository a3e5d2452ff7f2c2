"""Mixers initialised from attention, and sliding windows that must reproduce full attention."""
from __future__ import annotations

import pytest
import torch

from hybridize.modeling import decoder_layers
from hybridize.plans import Plan
from hybridize.surgery import convert, fit_output_scales
from tests.conftest import VOCAB, tiny_model


def attention_io(model, tokens, layer):
    """(input hidden states, attention output, rotary embeddings) of one layer's attention."""
    seen = {}
    attn = decoder_layers(model)[layer].self_attn

    def grab(module, args, kwargs, output):
        seen["x"], seen["pe"], seen["y"] = kwargs["hidden_states"], kwargs["position_embeddings"], output[0]

    handle = attn.register_forward_hook(grab, with_kwargs=True)
    with torch.no_grad():
        model(tokens, use_cache=False)
    handle.remove()
    return seen["x"], seen["y"], seen["pe"]


def sharpen_attention(model, factor: float = 8.0):
    """Trained models attend sharply; a random tiny one averages. Scaling W_q and W_k sharpens it."""
    with torch.no_grad():
        for layer in decoder_layers(model):
            layer.self_attn.q_proj.weight.mul_(factor)
            layer.self_attn.k_proj.weight.mul_(factor)
    return model


def compare_init_with_random(model, tokens, layer):
    """(mse, cosine) against the attention output of the layer initialised from Q/K/V/O and of the
    same layer with random projections. Both get their output scale fitted the same way (on the
    first half of the rows); the comparison is on the other half."""
    x, y, _ = attention_io(model, tokens, layer)
    fit, held = slice(0, len(tokens) // 2), slice(len(tokens) // 2, None)
    mixers = ["full"] * model.config.num_hidden_layers
    mixers[layer] = "gdn"
    mixer = decoder_layers(convert(model, Plan(mixers)))[layer].self_attn
    cos = torch.nn.functional.cosine_similarity
    results = []
    with torch.no_grad():
        for reset in (False, True):
            if reset:
                mixer.reset_parameters()
            fit_output_scales(mixer, x[fit], y[fit])
            a, b = mixer(x[held])[0], y[held]
            results.append(((a - b).pow(2).mean(), cos(a.flatten(), b.flatten(), 0)))
    return results


def test_init_from_attention_beats_random_init(arch):
    """On a model's own hidden states, a layer initialised from Q/K/V/O is closer to the attention it
    replaces than the same layer with random projections."""
    model = sharpen_attention(tiny_model(arch))
    tokens = torch.randint(3, VOCAB, (4, 48), generator=torch.Generator().manual_seed(0))
    (mse_init, cos_init), (mse_random, cos_random) = compare_init_with_random(model, tokens, layer=1)
    assert mse_init < mse_random, (mse_init, mse_random)
    assert cos_init > 0.2 and cos_init > cos_random + 0.15, (cos_init, cos_random)


def test_calibrated_conversion_matches_attention_scale():
    """With calibration tokens, conversion fits each head's output scale: the converted layer's
    output is then no larger than the attention's (a least-squares fit shrinks, never inflates)."""
    model = sharpen_attention(tiny_model("llama-gqa"))
    tokens = torch.randint(3, VOCAB, (4, 48), generator=torch.Generator().manual_seed(0))
    x, y, _ = attention_io(model, tokens, layer=1)
    hybrid = convert(model, Plan(["full", "gdn", "full", "full"]), calibration_ids=tokens)
    with torch.no_grad():
        out = decoder_layers(hybrid)[1].self_attn(x)[0]
    assert 0.05 < out.norm() / y.norm() <= 1.0 + 1e-4
    assert (out - y).norm() < y.norm()  # better than outputting nothing


def test_mixer_weights_follow_the_documented_mapping():
    model = tiny_model("llama-gqa")  # 4 query heads, 2 key/value heads, head_dim 16
    attn = decoder_layers(model)[0].self_attn
    wq, wk, wv, wo = (p.weight.detach().clone() for p in (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj))
    mixer = decoder_layers(convert(model, Plan(["gdn", "full", "full", "full"])))[0].self_attn
    torch.testing.assert_close(mixer.q_proj.weight, wq, rtol=0, atol=0)
    torch.testing.assert_close(mixer.o_proj.weight, wo, rtol=0, atol=0)
    for head in range(4):  # query head h reads key/value head h // 2, as in Llama's repeat_kv
        kv = head // 2
        torch.testing.assert_close(mixer.k_proj.weight[head * 16:(head + 1) * 16], wk[kv * 16:(kv + 1) * 16])
        torch.testing.assert_close(mixer.v_proj.weight[head * 16:(head + 1) * 16], wv[kv * 16:(kv + 1) * 16])


def test_new_gates_start_neutral():
    hybrid = convert(tiny_model(), Plan(["gdn", "kda", "full", "full"]))
    x = torch.randn(2, 9, 64)
    for layer in decoder_layers(hybrid)[:2]:
        mixer = layer.self_attn
        torch.testing.assert_close(torch.nn.functional.silu(mixer.g_proj(x)), torch.ones(2, 9, 64))
        g = mixer.log_decay(x)
        assert (g < 0).all() and (g > -0.11).all()  # long memory: at most ~10% forgotten per step
        decay_per_head = g.reshape(2, 9, 4, -1)[0, 0, :, 0]
        assert len(set(decay_per_head.tolist())) == 4  # spread over heads
        torch.testing.assert_close(torch.sigmoid(mixer.b_proj(x)), torch.full((2, 9, 4), 0.5))


@pytest.mark.parametrize("window", [40, 64])
def test_sliding_window_wider_than_input_equals_full_attention(arch, window):
    model = tiny_model(arch)
    tokens = torch.randint(3, VOCAB, (2, 40), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(tokens)
    mask[1, :7] = 0  # left padding on one row
    with torch.no_grad():
        expected = model(tokens, attention_mask=mask).logits
        hybrid = convert(model, Plan(["swa", "swa", "full", "swa"], window=window))
        got = hybrid(tokens, attention_mask=mask).logits
    keep = mask.bool()
    torch.testing.assert_close(got[keep], expected[keep], rtol=1e-5, atol=1e-5)


def test_narrow_sliding_window_sees_only_the_window():
    """Changing a token more than `window` positions back must not change a sliding layer's output."""
    hybrid = convert(tiny_model(), Plan(["swa", "swa", "swa", "swa"], window=8))
    a = torch.randint(3, VOCAB, (1, 30), generator=torch.Generator().manual_seed(2))
    b = a.clone()
    b[0, 5] = (a[0, 5] + 1 - 3) % (VOCAB - 3) + 3
    with torch.no_grad():
        la, lb = hybrid(a).logits, hybrid(b).logits
    # 4 layers of window 8: position t sees back to t - 4*7 at most; 5 + 28 = 33 > 29, so use one layer
    one = convert(tiny_model(num_hidden_layers=1), Plan(["swa"], window=8))
    with torch.no_grad():
        oa, ob = one(a).logits, one(b).logits
    torch.testing.assert_close(oa[0, 13:], ob[0, 13:])  # positions >= 5 + 8 no longer see token 5
    assert not torch.allclose(oa[0, 5:13], ob[0, 5:13])
    assert not torch.allclose(la[0, 5:], lb[0, 5:])
