"""The gated delta rule in plain PyTorch: a naive recurrence, a chunked form, and the dispatch to
faster kernels.

This file travels inside every hybrid checkpoint (``trust_remote_code``), so it imports only torch.
When hybridize's Triton kernels (or flash-linear-attention) are importable they are used on CUDA;
otherwise everything here runs anywhere.

Conventions (those of flash-linear-attention):
    q, k  [B, T, H, K]      v  [B, T, H, V]      beta  [B, T, H]
    g     [B, T, H]  (one log-decay per head: Gated DeltaNet)
          [B, T, H, K] (one log-decay per key channel: Kimi Delta Attention)
    state [N, H, K, V] float32 (float64 when the inputs are), N = B, or the number of sequences
          when ``cu_seqlens`` packs several into a batch of one.

Per head, with S the K x V state:
    S   <- diag(exp(g_t)) S
    u_t  = beta_t * (v_t - S^T k_t)
    S   <- S + k_t u_t^T
    o_t  = S^T (scale * q_t)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Per-channel gates must be bounded below for the chunked form to stay finite in float32: inside a
# chunk of CHANNEL_CHUNK steps the exponent reaches at most CHANNEL_CHUNK / 2 * |lower bound|.
# The KDA mixer bounds its gate at KDA_GATE_LOWER_BOUND, so 8 * 5 = 40 < log(float32 max) = 88.
CHANNEL_CHUNK = 16
SCALAR_CHUNK = 64
KDA_GATE_LOWER_BOUND = -5.0


# Decay factors below exp(-80) ~ 2e-35 are zero for every purpose, but as float32 denormals (below
# exp(-87)) they make CPU matrix products 20-80x slower; exponents are clamped here first.
MIN_LOG_DECAY = -80.0


def _decay(log_decay: torch.Tensor) -> torch.Tensor:
    return log_decay.clamp_min(MIN_LOG_DECAY).exp()


def l2norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x / sqrt(sum(x^2) + eps) over the last dimension, computed in float32 or better."""
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    return (xf * torch.rsqrt((xf * xf).sum(-1, keepdim=True) + eps)).to(x.dtype)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _split_sequences(cu_seqlens: torch.Tensor | None, total: int) -> list[tuple[int, int]]:
    if cu_seqlens is None:
        return [(0, total)]
    bounds = cu_seqlens.tolist()
    if bounds[0] != 0 or bounds[-1] != total or any(b > a for a, b in zip(bounds[1:], bounds[:-1])):
        raise ValueError(f"cu_seqlens must rise from 0 to the packed length {total}, got {bounds}")
    return list(zip(bounds[:-1], bounds[1:]))


def _check_shapes(q, k, v, g, beta, initial_state, cu_seqlens) -> None:
    B, T, H, K = k.shape
    if q.shape != k.shape or v.shape[:3] != (B, T, H) or beta.shape != (B, T, H):
        raise ValueError(f"shape mismatch: q {tuple(q.shape)} k {tuple(k.shape)} v {tuple(v.shape)} beta {tuple(beta.shape)}")
    if g.shape not in ((B, T, H), (B, T, H, K)):
        raise ValueError(f"g must be [B,T,H] or [B,T,H,K], got {tuple(g.shape)}")
    if cu_seqlens is not None and B != 1:
        raise ValueError("cu_seqlens packs sequences into a batch of one: B must be 1")
    n = B if cu_seqlens is None else len(cu_seqlens) - 1
    if initial_state is not None and initial_state.shape != (n, H, K, v.shape[-1]):
        raise ValueError(f"initial_state must be {(n, H, K, v.shape[-1])}, got {tuple(initial_state.shape)}")


def _prepare(q, k, scale, use_qk_l2norm):
    if use_qk_l2norm:
        q, k = l2norm(q), l2norm(k)
    return q, k, (k.shape[-1] ** -0.5 if scale is None else scale)


def recurrent_gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    use_qk_l2norm: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The recurrence, one token at a time: the reference every faster form is checked against,
    and the decoding step (T is 1 there). Returns (o [B,T,H,V] in v's dtype, final state or None)."""
    _check_shapes(q, k, v, g, beta, initial_state, cu_seqlens)
    q, k, scale = _prepare(q, k, scale, use_qk_l2norm)
    B, T, H, K = k.shape
    V = v.shape[-1]
    dt, out_dtype = _compute_dtype(v), v.dtype
    q, k, v, g, beta = (x.to(dt) for x in (q, k, v, g, beta))
    channel = g.dim() == 4
    out = torch.empty(B, T, H, V, dtype=dt, device=v.device)
    finals = []
    segments = _split_sequences(cu_seqlens, T)
    for n, (start, end) in enumerate(segments):
        rows = slice(None) if cu_seqlens is None else slice(0, 1)
        if initial_state is None:
            S = v.new_zeros(B if cu_seqlens is None else 1, H, K, V)
        else:
            S = initial_state.to(dt) if cu_seqlens is None else initial_state[n : n + 1].to(dt)
        for t in range(start, end):
            decay = g[rows, t].exp()
            S = S * (decay[..., None] if channel else decay[..., None, None])
            kt = k[rows, t]
            u = beta[rows, t, :, None] * (v[rows, t] - torch.einsum("bhk,bhkv->bhv", kt, S))
            S = S + kt[..., :, None] * u[..., None, :]
            out[rows, t] = torch.einsum("bhk,bhkv->bhv", q[rows, t] * scale, S)
        finals.append(S)
    final = torch.cat(finals, 0) if output_final_state else None
    return out.to(out_dtype), final


def _pairwise_decayed_dot(a: torch.Tensor, b: torch.Tensor, G: torch.Tensor, inclusive: bool) -> torch.Tensor:
    """M[t, j] = sum_d a_t[d] b_j[d] exp(G_t[d] - G_j[d]) for j <= t (j < t unless inclusive), else 0.

    a, b [..., C, K]; G the within-chunk cumulative log-decay, [..., C] or [..., C, K].
    Scalar gates form the C x C decay matrix exactly. Per-channel gates split the exponent around the
    chunk's middle step, exp(G_t - G_m) * exp(G_m - G_j), which stays finite for bounded gates."""
    C = a.shape[-2]
    keep = torch.ones(C, C, dtype=torch.bool, device=a.device).tril(0 if inclusive else -1)
    if G.dim() == a.dim() - 1:
        diff = (G[..., :, None] - G[..., None, :]).clamp_min(MIN_LOG_DECAY).masked_fill(~keep, float("-inf"))
        return (a @ b.transpose(-1, -2)) * diff.exp()
    ref = G[..., C // 2 : C // 2 + 1, :]
    prod = (a * _decay(G - ref)) @ (b * _decay(ref - G)).transpose(-1, -2)
    return prod.masked_fill(~keep, 0.0)


def _chunk_one(q, k, v, g, beta, scale, S, chunk):
    """Chunked gated delta rule for one run of sequences [B, T, ...] from state S [B, H, K, V]."""
    B, T, H, K = k.shape
    V = v.shape[-1]
    channel = g.dim() == 4
    pad = (-T) % chunk
    if pad:  # zero keys/values and zero log-decay past the end leave the state untouched
        q, k, v, beta = (F.pad(x, (0, 0) * (x.dim() - 2) + (0, pad)) for x in (q, k, v, beta))
        g = F.pad(g, (0, 0) * (g.dim() - 2) + (0, pad))
    N = (T + pad) // chunk

    def blocks(x):  # [B, T, H, ...] -> [B, H, N, C, ...]
        x = x.reshape(B, N, chunk, H, *x.shape[3:])
        return x.permute(0, 3, 1, 2, *range(4, x.dim()))

    q, k, v, beta, g = blocks(q * scale), blocks(k), blocks(v), blocks(beta), blocks(g)
    G = g.cumsum(3)  # log-decay from the chunk start, inclusive
    Gk = G if channel else G[..., None]
    eye = torch.eye(chunk, dtype=k.dtype, device=k.device)
    # (I + A) U = beta * (V - (K e^G) S), A[t,j] = beta_t k_t^T diag(e^{G_t - G_j}) k_j for j < t.
    A = _pairwise_decayed_dot(k, k, G, inclusive=False) * beta[..., None]
    L = eye + A
    U0 = torch.linalg.solve_triangular(L, beta[..., None] * v, upper=False, unitriangular=True)
    W = torch.linalg.solve_triangular(L, beta[..., None] * k * _decay(Gk), upper=False, unitriangular=True)
    QK = _pairwise_decayed_dot(q, k, G, inclusive=True)
    Qg = q * _decay(Gk)
    G_last = Gk[..., -1:, :]  # [B, H, N, 1, K or 1]
    Kd = k * _decay(G_last - Gk)
    decay_last = _decay(G_last.squeeze(-2))[..., :, None]  # [B, H, N, K or 1, 1]

    outs = []
    for n in range(N):
        U = U0[:, :, n] - W[:, :, n] @ S
        outs.append(Qg[:, :, n] @ S + QK[:, :, n] @ U)
        S = decay_last[:, :, n] * S + Kd[:, :, n].transpose(-1, -2) @ U
    o = torch.stack(outs, 2)  # [B, H, N, C, V]
    o = o.permute(0, 2, 3, 1, 4).reshape(B, N * chunk, H, V)[:, :T]
    return o, S


def chunk_gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    use_qk_l2norm: bool = False,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The chunked (WY / UT) form: the same function as `recurrent_gated_delta_rule`, with the
    work inside each chunk done as matrix products and a triangular solve. Differentiable."""
    _check_shapes(q, k, v, g, beta, initial_state, cu_seqlens)
    q, k, scale = _prepare(q, k, scale, use_qk_l2norm)
    B, T, H, K = k.shape
    V = v.shape[-1]
    dt, out_dtype = _compute_dtype(v), v.dtype
    chunk = chunk_size or (CHANNEL_CHUNK if g.dim() == 4 else SCALAR_CHUNK)
    q, k, v, g, beta = (x.to(dt) for x in (q, k, v, g, beta))
    outs, finals = [], []
    for n, (start, end) in enumerate(_split_sequences(cu_seqlens, T)):
        rows = B if cu_seqlens is None else 1
        if initial_state is None:
            S = v.new_zeros(rows, H, K, V)
        else:
            S = (initial_state if cu_seqlens is None else initial_state[n : n + 1]).to(dt)
        if end == start:
            finals.append(S)
            continue
        part = slice(start, end)
        o, S = _chunk_one(q[:, part], k[:, part], v[:, part], g[:, part], beta[:, part], scale, S, chunk)
        outs.append(o)
        finals.append(S)
    o = torch.cat(outs, 1) if outs else v.new_zeros(B, 0, H, V)
    return o.to(out_dtype), (torch.cat(finals, 0) if output_final_state else None)


# --- dispatch -------------------------------------------------------------------------------------

BACKENDS = ("auto", "torch", "triton", "fla")
# Below this many new tokens the recurrence is cheaper than setting up chunks (decoding).
RECURRENT_BELOW = 16


def _triton_rule():
    try:
        from hybridize.kernels import gated_delta_rule as rule
    except ImportError:
        return None
    return rule


def _fla_rule(channel: bool):
    try:
        if channel:
            from fla.ops.kda import chunk_kda as rule
        else:
            from fla.ops.gated_delta_rule import chunk_gated_delta_rule as rule
    except ImportError as err:
        raise RuntimeError("backend='fla' needs flash-linear-attention: pip install 'hybridize[fla]'") from err
    return rule


def resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "triton" if device.type == "cuda" and _triton_rule() is not None else "torch"
    if backend == "triton" and _triton_rule() is None:
        raise RuntimeError("backend='triton' needs hybridize's kernels (pip install hybridize) and triton")
    return backend


def gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    use_qk_l2norm: bool = False,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One entry point for the mixers: the fastest available implementation of the same function."""
    backend = resolve_backend(backend, q.device)
    args = dict(scale=scale, initial_state=initial_state, output_final_state=output_final_state,
                cu_seqlens=cu_seqlens, use_qk_l2norm=use_qk_l2norm)
    if backend == "triton":
        return _triton_rule()(q, k, v, g, beta, **args)
    if backend == "fla":
        args["use_qk_l2norm_in_kernel"] = args.pop("use_qk_l2norm")
        return _fla_rule(g.dim() == 4)(q, k, v, g, beta, **args)
    if q.shape[1] < RECURRENT_BELOW:
        return recurrent_gated_delta_rule(q, k, v, g, beta, **args)
    return chunk_gated_delta_rule(q, k, v, g, beta, **args)
