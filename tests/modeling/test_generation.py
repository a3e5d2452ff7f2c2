"""Cached decoding, batched generation with padding, and cache sizes of hybrid models."""
from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import LinearAttentionCacheLayerMixin

from hybridize.plans import Plan
from hybridize.surgery import convert
from tests.conftest import VOCAB, tiny_model

PLANS = {
    "gdn": Plan(["gdn", "gdn", "gdn", "full"]),
    "kda": Plan(["kda", "full", "kda", "kda"]),
    "mixed": Plan(["swa", "kda", "gdn", "full"], window=6),
    "all-linear": Plan(["gdn", "kda", "gdn", "gdn"]),
}


def hybrid_of(arch="llama-gqa", plan="mixed"):
    model = convert(tiny_model(arch), PLANS[plan]).eval()
    model.generation_config.eos_token_id = None  # random weights: never stop early
    return model


def tokens(batch, length, seed=0):
    return torch.randint(3, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("plan", list(PLANS))
def test_token_by_token_decoding_equals_one_forward(arch, plan):
    model = hybrid_of(arch, plan)
    x = tokens(2, 24)
    with torch.no_grad():
        full = model(x, use_cache=False).logits
        cache, steps = None, []
        for t in range(x.shape[1]):
            out = model(x[:, t:t + 1], past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("plan", ["mixed", "kda"])
def test_prefill_then_chunks_equals_one_forward(plan):
    model = hybrid_of("qwen3", plan)
    x = tokens(2, 70, seed=1)  # a 50-token prefill crosses the chunked path; then pieces of 13 and 7
    with torch.no_grad():
        full = model(x, use_cache=False).logits
        first = model(x[:, :50], use_cache=True)
        second = model(x[:, 50:63], past_key_values=first.past_key_values, use_cache=True)
        third = model(x[:, 63:], past_key_values=second.past_key_values, use_cache=True)
    torch.testing.assert_close(torch.cat([first.logits, second.logits, third.logits], 1), full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("plan", ["mixed", "gdn"])
def test_batched_generation_with_left_padding_equals_one_by_one(plan):
    model = hybrid_of("qwen2", plan)
    model.generation_config.pad_token_id = 0
    prompts = [tokens(1, 11, seed=2)[0], tokens(1, 5, seed=3)[0], tokens(1, 8, seed=4)[0]]
    alone = [model.generate(p[None], max_new_tokens=6, do_sample=False)[0, len(p):] for p in prompts]
    width = max(len(p) for p in prompts)
    batch = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros_like(batch)
    for i, p in enumerate(prompts):
        batch[i, width - len(p):], mask[i, width - len(p):] = p, 1
    together = model.generate(batch, attention_mask=mask, max_new_tokens=6, do_sample=False)[:, width:]
    for i in range(len(prompts)):
        assert together[i].tolist() == alone[i].tolist(), i


def test_generate_runs_on_every_plan():
    for plan in PLANS:
        out = hybrid_of("llama-mqa", plan).generate(tokens(1, 4), max_new_tokens=5, do_sample=False)
        assert out.shape == (1, 9)


def cache_sizes(cache):
    sizes = []
    for layer in cache.layers:
        if isinstance(layer, LinearAttentionCacheLayerMixin):
            sizes.append(sum(t.numel() for t in (*layer.conv_states.values(), *layer.recurrent_states.values())))
        else:
            sizes.append(layer.keys.shape[-2])
    return sizes


def test_linear_cache_is_constant_and_window_is_bounded():
    model = hybrid_of("llama-gqa", "mixed")  # swa (window 6), kda, gdn, full
    cache, history = None, []
    with torch.no_grad():
        out = model(tokens(1, 10), use_cache=True)
        cache = out.past_key_values
        history.append(cache_sizes(cache))
        for t in range(20):
            cache = model(tokens(1, 1, seed=t), past_key_values=cache, use_cache=True).past_key_values
            history.append(cache_sizes(cache))
    swa, kda, gdn, full = zip(*history)
    assert len(set(kda)) == 1 and len(set(gdn)) == 1  # linear layers: the same size at 10 and 30 tokens
    assert max(swa) == 5  # the sliding layer keeps the last window - 1 positions (window 6)
    assert full[0] == 10 and full[-1] == 30  # the full layer grows, as it should
