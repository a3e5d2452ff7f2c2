"""Token mixers that take the place of a softmax attention module inside a decoder layer.

- `GatedDeltaMixer`: Gated DeltaNet (one decay per head) or Kimi Delta Attention (one decay per key
  channel), laid out as in Qwen3-Next: q/k/v projections -> short causal depthwise conv + SiLU ->
  L2-normalised q, k -> gated delta rule -> per-head RMSNorm gated by silu(g_proj(x)) -> o_proj.
- Sliding-window attention keeps the original attention module and its weights untouched; only its
  mask and its cache (at most `window` entries) change: see `make_sliding_window`.

Each mixer is called exactly like the attention module it replaces (the same keyword arguments from
the decoder layer) and returns `(output, None)`. This file travels with hybrid checkpoints: it imports
only torch, transformers and its sibling files.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .gated_delta import KDA_GATE_LOWER_BOUND, gated_delta_rule

LINEAR_MIXERS = ("gdn", "kda")  # the plan's mixers that GatedDeltaMixer implements
# silu(x) = 1 at this x: an output-gate bias that makes the gate start neutral (multiply by one).
SILU_ONE = 1.2784645427610738
PADDING_MASK_KWARG = "hybridize_padding_mask"
SLIDING_MASK_KWARG = "hybridize_sliding_mask"
# Packed sequences: document index of every token [B, T] (from position_ids that restart at 0).
DOCUMENT_IDS_KWARG = "hybridize_document_ids"


def packed_cu_seqlens(document_ids: torch.Tensor) -> torch.Tensor:
    """Start offsets of every document in the flattened [B*T] batch, FlashAttention-style."""
    flat = document_ids.reshape(-1)
    new_doc = torch.ones_like(flat, dtype=torch.bool)
    new_doc[1:] = flat[1:] != flat[:-1]
    starts = new_doc.nonzero().flatten()
    end = torch.tensor([flat.numel()], device=flat.device, dtype=starts.dtype)
    return torch.cat([starts, end]).to(torch.int64)


class GatedRMSNorm(nn.Module):
    """RMSNorm over each head's output, then multiplied by silu(gate)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()
        return (xf * F.silu(gate.float())).to(x.dtype)


class GatedDeltaMixer(nn.Module):
    """Gated DeltaNet (`gate="scalar"`) or KDA (`gate="channel"`) in place of `self_attn`.

    Shapes: H heads of size D for q, k and v alike (GQA key/value heads are repeated up to H when a
    layer is converted: see hybridize.surgery). State per sequence: H x D x D float32, plus the last
    `conv_size` inputs of the convolution.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        head_dim: int,
        layer_idx: int,
        gate: str = "scalar",
        conv_size: int = 4,
        qkv_bias: bool = False,
        o_bias: bool = False,
        qk_scale: bool = False,
        norm_eps: float = 1e-6,
        backend: str = "auto",
    ):
        super().__init__()
        if gate not in ("scalar", "channel"):
            raise ValueError(f"gate must be 'scalar' (GDN) or 'channel' (KDA), got {gate!r}")
        H, D = num_heads, head_dim
        self.hidden_size, self.num_heads, self.head_dim = hidden_size, H, D
        self.layer_idx, self.gate, self.conv_size, self.backend = layer_idx, gate, conv_size, backend
        self.q_proj = nn.Linear(hidden_size, H * D, bias=qkv_bias)
        self.k_proj = nn.Linear(hidden_size, H * D, bias=qkv_bias)
        self.v_proj = nn.Linear(hidden_size, H * D, bias=qkv_bias)
        self.conv1d = nn.Conv1d(3 * H * D, 3 * H * D, conv_size, groups=3 * H * D, bias=False)
        # Per-channel scales carried over from q/k RMSNorms (Qwen3-style); the L2 norm does the rest.
        self.q_scale = nn.Parameter(torch.ones(D)) if qk_scale else None
        self.k_scale = nn.Parameter(torch.ones(D)) if qk_scale else None
        self.b_proj = nn.Linear(hidden_size, H, bias=False)  # write strength beta
        if gate == "scalar":
            self.a_proj = nn.Linear(hidden_size, H, bias=False)
            self.A_log = nn.Parameter(torch.zeros(H))
            self.dt_bias = nn.Parameter(torch.zeros(H))
        else:  # low-rank per-channel decay, as in Kimi Linear
            self.f_a_proj = nn.Linear(hidden_size, D, bias=False)
            self.f_b_proj = nn.Linear(D, H * D, bias=False)
            self.dt_bias = nn.Parameter(torch.zeros(H * D))
        self.g_proj = nn.Linear(hidden_size, H * D, bias=True)  # output gate
        self.norm = GatedRMSNorm(D, eps=norm_eps)
        self.o_proj = nn.Linear(H * D, hidden_size, bias=o_bias)
        for module in self.modules():  # tells the model's weight init to leave these to reset_parameters
            module._hybridize_mixer_part = True
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, std: float = 0.02) -> None:
        """Random projections; gates that start with long memory, moderate writes and a neutral
        output gate. Conversion then overwrites q/k/v/o with the attention's weights."""
        H, D = self.num_heads, self.head_dim
        for proj in (self.q_proj, self.k_proj, self.v_proj, self.o_proj):
            nn.init.normal_(proj.weight, std=std)
            if proj.bias is not None:
                nn.init.zeros_(proj.bias)
        # Identity convolution (all weight on the current token): the layer starts as a pure projection.
        self.conv1d.weight.zero_()
        self.conv1d.weight[:, 0, -1] = 1.0
        for scale in (self.q_scale, self.k_scale):
            if scale is not None:
                scale.fill_(1.0)
        # Input-independent gates at first (zero weights): beta = 0.5, decay spread over heads.
        nn.init.zeros_(self.b_proj.weight)
        decay = torch.logspace(-3, -1, H)  # per-step forgetting 0.001 .. 0.1: memories of ~1000 .. 10 tokens
        if self.gate == "scalar":
            nn.init.zeros_(self.a_proj.weight)
            self.A_log.zero_()
            self.dt_bias.copy_(decay.expm1().log())  # softplus^-1(decay): g = -exp(A_log) * softplus(dt_bias)
        else:
            nn.init.normal_(self.f_a_proj.weight, std=std)
            nn.init.zeros_(self.f_b_proj.weight)
            frac = (decay / -KDA_GATE_LOWER_BOUND).repeat_interleave(D)
            self.dt_bias.copy_(torch.log(frac / (1 - frac)))  # g = lower_bound * sigmoid(dt_bias)
        nn.init.zeros_(self.g_proj.weight)
        self.g_proj.bias.fill_(SILU_ONE)
        self.norm.weight.fill_(1.0)

    def log_decay(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step log-decay g <= 0: [B,T,H] (GDN) or [B,T,H,D] (KDA, bounded below)."""
        B, T, _ = x.shape
        if self.gate == "scalar":
            return -self.A_log.float().exp() * F.softplus(self.a_proj(x).float() + self.dt_bias.float())
        logits = self.f_b_proj(self.f_a_proj(x)).float() + self.dt_bias.float()
        return (KDA_GATE_LOWER_BOUND * torch.sigmoid(logits)).view(B, T, self.num_heads, self.head_dim)

    def _conv(self, qkv: torch.Tensor, cache_layer, has_state: bool, document_ids=None) -> torch.Tensor:
        """Causal depthwise conv over [B, C, T]; the cache keeps the last `conv_size` inputs.
        With `document_ids` [B, T] no tap reaches back into a previous document."""
        T = qkv.shape[-1]
        if document_ids is not None:
            out = qkv * self.conv1d.weight[:, 0, -1, None]
            for lag in range(1, min(self.conv_size, T)):
                same = (document_ids[:, lag:] == document_ids[:, :-lag]).to(qkv.dtype)[:, None, :]
                tap = self.conv1d.weight[:, 0, -1 - lag, None]
                out = out + F.pad(qkv[..., :-lag] * tap * same, (lag, 0))
            return out
        if cache_layer is not None:
            full = cache_layer.update_conv_state(qkv, conv_kernel_size=self.conv_size)
        else:
            full = qkv
        if not has_state:
            full = F.pad(full, (self.conv_size - 1, 0))
        return F.conv1d(full, self.conv1d.weight, groups=full.shape[1])[..., -T:]

    def forward(self, hidden_states: torch.Tensor, past_key_values=None, **kwargs):
        B, T, _ = hidden_states.shape
        H, D = self.num_heads, self.head_dim
        cache_layer = past_key_values.layers[self.layer_idx] if past_key_values is not None else None
        has_state = cache_layer is not None and bool(cache_layer.has_previous_state[0])
        x = hidden_states
        qkv = torch.cat([self.q_proj(x), self.k_proj(x), self.v_proj(x)], dim=-1)
        padding = kwargs.get(PADDING_MASK_KWARG)
        if padding is not None:  # padded positions write nothing into the state (exact for left padding)
            qkv = qkv * padding[:, -T:, None].to(qkv.dtype)
        documents = kwargs.get(DOCUMENT_IDS_KWARG)
        qkv = F.silu(self._conv(qkv.transpose(1, 2), cache_layer, has_state, documents)).transpose(1, 2)
        q, k, v = qkv.view(B, T, 3, H, D).unbind(2)
        if self.q_scale is not None:
            q, k = q * self.q_scale, k * self.k_scale
        beta = torch.sigmoid(self.b_proj(x).float())
        g = self.log_decay(x)
        initial = cache_layer.recurrent_states[0] if has_state else None
        if documents is not None:  # one packed row; the state resets at every document start
            q, k, v, g, beta = (t.reshape(1, B * T, *t.shape[2:]) for t in (q, k, v, g, beta))
        o, state = gated_delta_rule(
            q, k, v, g, beta,
            initial_state=initial, output_final_state=cache_layer is not None,
            cu_seqlens=packed_cu_seqlens(documents) if documents is not None else None,
            use_qk_l2norm=True, backend=self.backend,
        )
        o = o.reshape(B, T, H, D)
        if cache_layer is not None:
            cache_layer.update_recurrent_state(state)
        o = self.norm(o, self.g_proj(x).view(B, T, H, D))
        return self.o_proj(o.reshape(B, T, H * D)), None


def make_sliding_window(attention: nn.Module, window: int) -> nn.Module:
    """Turn a softmax attention module into sliding-window attention of `window` tokens, in place.

    Its weights (and so its state-dict keys) stay as they are. The model computes the sliding-window
    mask once per forward and passes it as a keyword argument; this pre-hook swaps it in for the
    model's full causal mask. The cache side is `DynamicSlidingWindowLayer` (config.layer_types)."""
    if window <= 0:
        raise ValueError(f"sliding window must be positive, got {window}")
    attention.sliding_window = window
    attention.is_sliding = True

    def use_sliding_mask(module, args, kwargs):
        if SLIDING_MASK_KWARG in kwargs:
            kwargs["attention_mask"] = kwargs.pop(SLIDING_MASK_KWARG)
        return args, kwargs

    attention.register_forward_pre_hook(use_sliding_mask, with_kwargs=True)
    return attention


def new_parameter_count(hidden_size: int, num_heads: int, head_dim: int, gate: str, conv_size: int = 4,
                        qkv_bias: bool = False, o_bias: bool = False, qk_scale: bool = False) -> int:
    """Parameters of one GatedDeltaMixer, from its shapes (for plans and model cards)."""
    HD = num_heads * head_dim
    n = 3 * hidden_size * HD + (3 * HD if qkv_bias else 0)  # q, k, v
    n += 3 * HD * conv_size + (2 * head_dim if qk_scale else 0)
    n += hidden_size * num_heads  # beta
    n += hidden_size * num_heads + 2 * num_heads if gate == "scalar" else hidden_size * head_dim + head_dim * HD + HD
    n += hidden_size * HD + HD + head_dim  # output gate + norm
    n += HD * hidden_size + (hidden_size if o_bias else 0)
    return n


def state_bytes(num_heads: int, head_dim: int, conv_size: int, dtype_bytes: int) -> int:
    """Cache bytes of one linear layer for one sequence: fp32 state + conv inputs (independent of length)."""
    return num_heads * head_dim * head_dim * 4 + 3 * num_heads * head_dim * conv_size * dtype_bytes


def gate_kind(mixer: str) -> str:
    return {"gdn": "scalar", "kda": "channel"}[mixer]
