"""Conversion across architectures and head layouts; what it refuses; what it keeps."""
from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from hybridize.modeling import GatedDeltaMixer, HybridizeForCausalLM, UnsupportedModelError, decoder_layers
from hybridize.plans import Plan, PlanError
from hybridize.surgery import attention_layout, convert
from tests.conftest import VOCAB, tiny_model


def test_every_architecture_converts_and_runs(arch):
    model = tiny_model(arch)
    hybrid = convert(model, Plan(["gdn", "kda", "swa", "full"], window=4))
    assert isinstance(hybrid, HybridizeForCausalLM)
    kinds = [type(layer.self_attn).__name__ for layer in decoder_layers(hybrid)]
    assert kinds[:2] == ["GatedDeltaMixer", "GatedDeltaMixer"] and "Attention" in kinds[2] and "Attention" in kinds[3]
    logits = hybrid(torch.randint(3, VOCAB, (2, 12))).logits
    assert logits.shape == (2, 12, VOCAB) and torch.isfinite(logits).all()


def test_layout_is_read_from_the_modules():
    assert attention_layout(tiny_model("qwen2")).qkv_bias  # Qwen2 has q/k/v biases
    assert not attention_layout(tiny_model("llama-gqa")).qkv_bias
    assert attention_layout(tiny_model("qwen3")).qk_norm
    layout = attention_layout(tiny_model("llama-mqa"))
    assert (layout.num_heads, layout.num_kv_heads, layout.head_dim) == (4, 1, 16)


def test_qwen2_biases_are_carried():
    model = tiny_model("qwen2")
    attn = decoder_layers(model)[0].self_attn
    with torch.no_grad():
        attn.k_proj.bias.normal_()
    kb = attn.k_proj.bias.detach().clone()
    mixer = decoder_layers(convert(model, Plan(["gdn", "full", "full", "full"])))[0].self_attn
    torch.testing.assert_close(mixer.k_proj.bias, kb.view(2, 16).repeat_interleave(2, 0).flatten())


def test_conversion_shares_kept_weights_and_keeps_dtype():
    model = tiny_model("llama-gqa").to(torch.bfloat16)
    kept = {name: p.data_ptr() for name, p in model.named_parameters() if ".self_attn." not in name}
    swa_q = decoder_layers(model)[3].self_attn.q_proj.weight.data_ptr()
    hybrid = convert(model, Plan(["gdn", "gdn", "gdn", "swa"], window=8))
    after = {name: p.data_ptr() for name, p in hybrid.named_parameters()}
    assert all(after[name] == ptr for name, ptr in kept.items())  # the same storage: no second copy
    assert decoder_layers(hybrid)[3].self_attn.q_proj.weight.data_ptr() == swa_q
    assert {p.dtype for p in hybrid.parameters()} == {torch.bfloat16}


def test_unsupported_architecture_names_itself():
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2))
    with pytest.raises(UnsupportedModelError, match="GPT2LMHeadModel"):
        convert(gpt2, Plan(["gdn", "full"]))


def test_plan_must_match_the_model():
    with pytest.raises(PlanError, match="the plan has 3 layers but the model has 4"):
        convert(tiny_model(), Plan(["gdn", "gdn", "full"]))


def test_base_sliding_window_must_match():
    model = tiny_model("mistral", sliding_window=16)
    with pytest.raises(PlanError, match="--window 16"):
        convert(model, Plan(["swa", "gdn", "full", "full"], window=8))


def test_mixer_count_of_new_parameters_matches_formula():
    from hybridize.modeling.mixers import new_parameter_count
    for gate in ("scalar", "channel"):
        mixer = GatedDeltaMixer(64, 4, 16, layer_idx=0, gate=gate, qkv_bias=True, qk_scale=True)
        assert sum(p.numel() for p in mixer.parameters()) == new_parameter_count(64, 4, 16, gate, qkv_bias=True,
                                                                                qk_scale=True)
