"""Surgery: swap a model's attention modules for the plan's mixers, initialised from Q/K/V/O.

Weight mapping for a Gated DeltaNet / KDA layer (H query heads, G key/value heads, head size D):
    q_proj <- W_q                                 (H heads, as they are)
    k_proj <- W_k, each key head repeated H/G times  (Llama's GQA: query head h reads kv head h // (H/G))
    v_proj <- W_v, likewise
    o_proj <- W_o
    biases of q/k/v/o are carried; q/k RMSNorm weights (Qwen3) become per-channel scales on q and k
    before their L2 norm (the norm itself is redundant with it). RoPE has no counterpart: linear
    layers are position-free, the convolution and the decay carry order.
    Output scale: the mixer's per-head RMSNorm (softmax attention has none) would make its output far
    larger than attention's (trained models park most attention on a few "sink" tokens whose values
    are small). With calibration tokens, each head's o_proj columns are scaled by the least-squares
    factor that best maps the mixer's output onto the attention's, fitted on one teacher forward
    (`fit_output_scales`). Without them the norm is set to the size of one value vector.
The new parts start neutral: identity convolution, beta = 0.5, decay 0.001..0.1 per step across heads,
output gate silu(.) = 1 (see GatedDeltaMixer.reset_parameters).
Sliding-window layers keep the attention module and its weights; only the mask and cache change.

Conversion works in place, one layer at a time: the model is never held twice.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import __version__
from .modeling import HybridizeConfig, HybridizeForCausalLM, UnsupportedModelError, decoder_layers
from .modeling.mixers import GatedDeltaMixer, make_sliding_window
from .modeling.modeling_hybridize import ATTENTION_ATTR, build_mixer
from .plans import LINEAR, Plan, PlanError, Shapes

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class AttentionLayout:
    num_heads: int
    num_kv_heads: int
    head_dim: int
    qkv_bias: bool
    o_bias: bool
    qk_norm: bool


def attention_layout(model: nn.Module) -> AttentionLayout:
    """Check that every attention module has the standard interface and read its layout."""
    arch = type(model).__name__
    layers = decoder_layers(model)
    attn = getattr(layers[0], ATTENTION_ATTR)
    missing = [p for p in PROJECTIONS if not isinstance(getattr(attn, p, None), nn.Linear)]
    if missing:
        raise UnsupportedModelError(
            f"{arch}: its attention ({type(attn).__name__}) has no {', '.join(missing)} linear projection(s); "
            "hybridize initialises mixers from separate q/k/v/o projections")
    cfg = model.config
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    if attn.q_proj.out_features != heads * head_dim or attn.k_proj.out_features != kv_heads * head_dim:
        raise UnsupportedModelError(
            f"{arch}: q/k projection sizes ({attn.q_proj.out_features}, {attn.k_proj.out_features}) do not match "
            f"{heads} x {head_dim} query and {kv_heads} x {head_dim} key heads")
    if heads % kv_heads:
        raise UnsupportedModelError(f"{arch}: {heads} query heads do not divide into {kv_heads} key/value heads")
    q_norm = getattr(attn, "q_norm", None)
    return AttentionLayout(
        num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim,
        qkv_bias=attn.q_proj.bias is not None, o_bias=attn.o_proj.bias is not None,
        qk_norm=isinstance(getattr(q_norm, "weight", None), torch.Tensor) and q_norm.weight.shape == (head_dim,),
    )


def shapes_of(model: nn.Module) -> Shapes:
    layout = attention_layout(model)
    return Shapes.from_config(model.config, qkv_bias=layout.qkv_bias, qk_norm=layout.qk_norm)


def hybrid_config(model: nn.Module, plan: Plan, source: str | None = None) -> HybridizeConfig:
    layout = attention_layout(model)
    plan.check_layers(model.config.num_hidden_layers)
    base_window = getattr(model.config, "sliding_window", None)
    base_types = getattr(model.config, "layer_types", None) or []
    base_slides = base_window is not None and (not base_types or "sliding_attention" in base_types)
    if "swa" in plan.mixers and base_slides and base_window != plan.window:
        raise PlanError(f"{type(model).__name__} already uses a {base_window}-token sliding window; "
                        f"use --window {base_window} (one window per model)")
    hybrid = {
        "mixers": plan.mixers,
        "window": plan.window,
        "mixer_options": {
            "num_heads": layout.num_heads, "head_dim": layout.head_dim, "conv_size": plan.conv_size,
            "qkv_bias": layout.qkv_bias, "o_bias": layout.o_bias, "qk_scale": layout.qk_norm,
            "norm_eps": float(getattr(model.config, "rms_norm_eps", 1e-6)),
        },
        "plan_notes": plan.notes,
        "source": source,
        "version": __version__,
    }
    return HybridizeConfig.from_base(model.config, hybrid)


@torch.no_grad()
def init_from_attention(mixer: GatedDeltaMixer, attn: nn.Module, num_kv_heads: int,
                        input_rms: float = 1.0) -> None:
    """Copy Q/K/V/O (and biases, q/k norm scales) into a fresh mixer; see the module docstring.
    `input_rms`: typical RMS of the attention's input (that of the preceding norm's weight)."""
    H, D = mixer.num_heads, mixer.head_dim
    repeat = H // num_kv_heads

    def per_query_head(w: torch.Tensor) -> torch.Tensor:  # [G*D, ...] -> [H*D, ...]
        return w.reshape(num_kv_heads, D, *w.shape[1:]).repeat_interleave(repeat, 0).reshape(H * D, *w.shape[1:])

    mixer.q_proj.weight.copy_(attn.q_proj.weight)
    mixer.k_proj.weight.copy_(per_query_head(attn.k_proj.weight))
    mixer.v_proj.weight.copy_(per_query_head(attn.v_proj.weight))
    mixer.o_proj.weight.copy_(attn.o_proj.weight)
    if mixer.q_proj.bias is not None:
        mixer.q_proj.bias.copy_(attn.q_proj.bias)
        mixer.k_proj.bias.copy_(per_query_head(attn.k_proj.bias))
        mixer.v_proj.bias.copy_(per_query_head(attn.v_proj.bias))
    if mixer.o_proj.bias is not None:
        mixer.o_proj.bias.copy_(attn.o_proj.bias)
    if mixer.q_scale is not None:
        mixer.q_scale.copy_(attn.q_norm.weight)
        mixer.k_scale.copy_(attn.k_norm.weight)
    value_rms = attn.v_proj.weight.float().norm() / (num_kv_heads * D) ** 0.5
    mixer.norm.weight.fill_(float(value_rms) * input_rms)


def input_norm_rms(layer: nn.Module) -> float:
    """RMS of the weight of the norm that feeds the attention (1.0 when there is none)."""
    norm = getattr(layer, "input_layernorm", None)
    weight = getattr(norm, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.device.type == "meta":
        return 1.0
    return float(weight.detach().float().pow(2).mean().sqrt())


@torch.no_grad()
def attention_samples(model: nn.Module, layer_ids: list[int], input_ids: torch.Tensor) -> dict[int, tuple]:
    """(input hidden states, attention output) of the given layers, from one forward of `model`."""
    layers, seen, hooks = decoder_layers(model), {}, []
    for i in layer_ids:
        def grab(module, args, kwargs, output, i=i):
            seen[i] = (kwargs["hidden_states"].detach(), output[0].detach())
        hooks.append(getattr(layers[i], ATTENTION_ATTR).register_forward_hook(grab, with_kwargs=True))
    try:
        model(input_ids.to(model.device), use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    return seen


@torch.no_grad()
def fit_output_scales(mixer: GatedDeltaMixer, x: torch.Tensor, y: torch.Tensor, floor: float = 1e-2) -> torch.Tensor:
    """Scale each head's o_proj columns by the least-squares factor s_h minimising
    || sum_h s_h o_proj_h(n_h) - y ||^2 over the samples; returns s (clamped to >= floor).
    The output norm is reset to one first: the scales take its place."""
    H, D = mixer.num_heads, mixer.head_dim
    mixer.norm.weight.fill_(1.0)
    captured = {}
    hook = mixer.o_proj.register_forward_hook(lambda mod, args, out: captured.__setitem__("n", args[0]))
    mixer(x)
    hook.remove()
    n = captured["n"].reshape(-1, H, D).float()
    w = mixer.o_proj.weight.float().reshape(-1, H, D)
    per_head = torch.einsum("nhd,ohd->nho", n, w)  # each head's contribution to the output
    target = y.reshape(-1, y.shape[-1]).float()
    if mixer.o_proj.bias is not None:
        target = target - mixer.o_proj.bias.float()
    gram = torch.einsum("nho,ngo->hg", per_head, per_head)
    rhs = torch.einsum("nho,no->h", per_head, target)
    ridge = 1e-6 * gram.diagonal().mean() * torch.eye(H, device=gram.device)
    scales = torch.linalg.solve(gram + ridge, rhs).clamp_min(floor)
    mixer.o_proj.weight.mul_(scales.repeat_interleave(D).to(mixer.o_proj.weight.dtype))
    return scales


def convert(model: nn.Module, plan: Plan, source: str | None = None, progress=None,
            calibration_ids: torch.Tensor | None = None) -> HybridizeForCausalLM:
    """Apply `plan` to `model` in place and return the hybrid (which shares every kept weight).

    `calibration_ids` [B, T]: tokens for one teacher forward that sets each new layer's output scale
    (see the module docstring). `progress(layer_index)` is called after each layer."""
    config = hybrid_config(model, plan, source)
    kv_heads = attention_layout(model).num_kv_heads
    layers = decoder_layers(model)
    samples = {}
    if calibration_ids is not None:
        linear = [i for i, m in enumerate(plan.mixers) if m in LINEAR]
        samples = attention_samples(model, linear, calibration_ids)
    for i, mixer_name in enumerate(plan.mixers):
        attn = getattr(layers[i], ATTENTION_ATTR)
        if mixer_name in LINEAR:
            weight = attn.q_proj.weight
            mixer = build_mixer(config, i).to(device=weight.device, dtype=weight.dtype)
            if weight.device.type != "meta":
                init_from_attention(mixer, attn, kv_heads, input_norm_rms(layers[i]))
                if i in samples:
                    fit_output_scales(mixer, *samples.pop(i))
            setattr(layers[i], ATTENTION_ATTR, mixer)
            del attn  # the attention's own tensors go with it
        elif mixer_name == "swa":
            make_sliding_window(attn, plan.window)
        if progress is not None:
            progress(i)
    return HybridizeForCausalLM(config, base_model=model)
