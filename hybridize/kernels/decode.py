"""Decoding: the recurrence token by token for a few new tokens per sequence, on fp32 states.

One program per (sequence, head, block of value columns) keeps its [K, BV] slice of the state in
registers across the new tokens and writes it back once, so the state is read and written exactly
once per call: the kernel is bound by that traffic (state bytes x 2 / bandwidth).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

DECODE_CONFIG = {"BV": None, "num_warps": 4}


@triton.jit
def _decode_kernel(q, k, v, g, beta, o, h0, ht, cu, scale, T, H,
                   K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                   CHANNEL: tl.constexpr, HAS_H0: tl.constexpr, STORE_FINAL: tl.constexpr,
                   VARLEN: tl.constexpr, L2NORM: tl.constexpr):
    i_v = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    if VARLEN:
        bos = tl.load(cu + i_n).to(tl.int64)
        eos = tl.load(cu + i_n + 1).to(tl.int64)
    else:
        bos = i_n.to(tl.int64) * T
        eos = bos + T
    kk = tl.arange(0, BK)
    vv = i_v * BV + tl.arange(0, BV)
    km = kk < K
    vm = vv < V
    m_s = km[:, None] & vm[None, :]
    p_s = (i_n * H + i_h).to(tl.int64) * K * V + kk[:, None] * V + vv[None, :]
    if HAS_H0:
        h = tl.load(h0 + p_s, mask=m_s, other=0.0).to(tl.float32)
    else:
        h = tl.zeros([BK, BV], dtype=tl.float32)
    for t in range(bos, eos):
        b_k = tl.load(k + (t * H + i_h) * K + kk, mask=km, other=0.0).to(tl.float32)
        b_q = tl.load(q + (t * H + i_h) * K + kk, mask=km, other=0.0).to(tl.float32)
        b_v = tl.load(v + (t * H + i_h) * V + vv, mask=vm, other=0.0).to(tl.float32)
        b_b = tl.load(beta + t * H + i_h).to(tl.float32)
        if L2NORM:
            b_k = b_k * tl.rsqrt(tl.sum(b_k * b_k, 0) + 1e-6)
            b_q = b_q * tl.rsqrt(tl.sum(b_q * b_q, 0) + 1e-6)
        if CHANNEL:
            b_g = tl.load(g + (t * H + i_h) * K + kk, mask=km, other=0.0).to(tl.float32)
            h = h * tl.exp(b_g)[:, None]
        else:
            h = h * tl.exp(tl.load(g + t * H + i_h).to(tl.float32))
        u = b_b * (b_v - tl.sum(h * b_k[:, None], 0))
        h += b_k[:, None] * u[None, :]
        b_o = tl.sum(h * (b_q * scale)[:, None], 0)
        tl.store(o + (t * H + i_h) * V + vv, b_o.to(o.dtype.element_ty), mask=vm)
    if STORE_FINAL:
        tl.store(ht + p_s, h, mask=m_s)


def recurrent_update(q, k, v, g, beta, state=None, scale=None, cu_seqlens=None, use_qk_l2norm=False,
                     output_final_state=True, in_place=False):
    """The recurrence for a few tokens. q, k [B,T,H,K], v [B,T,H,V], g [B,T,H] or [B,T,H,K],
    beta [B,T,H]; state [N,H,K,V] fp32 (N = B, or len(cu_seqlens) - 1 with B = 1).

    Returns (o, new state). With in_place=True the new state is written into `state` itself (the
    decoding cache) and that same tensor is returned. No autograd."""
    B, T, H, K = k.shape
    V = v.shape[-1]
    N = B if cu_seqlens is None else len(cu_seqlens) - 1
    scale = K ** -0.5 if scale is None else scale
    q, k, v, g, beta = (x.contiguous() for x in (q, k, v, g, beta))
    o = torch.empty_like(v)
    if state is not None and in_place:
        if state.dtype != torch.float32 or not state.is_contiguous():
            raise ValueError("in-place decoding needs a contiguous float32 state")
        ht = state
    elif output_final_state or in_place:
        ht = torch.empty(N, H, K, V, device=v.device, dtype=torch.float32)
    else:
        ht = None
    bv = DECODE_CONFIG["BV"] or min(triton.next_power_of_2(V), 32 if K <= 128 else 16)
    cu = cu_seqlens.to(device=v.device, dtype=torch.int32) if cu_seqlens is not None else o
    if N:
        _decode_kernel[(triton.cdiv(V, bv), N * H)](
            q, k, v, g, beta, o, state.contiguous() if state is not None else o,
            ht if ht is not None else o, cu, scale, T, H,
            K=K, V=V, BK=triton.next_power_of_2(K), BV=bv, CHANNEL=g.dim() == 4,
            HAS_H0=state is not None, STORE_FINAL=ht is not None, VARLEN=cu_seqlens is not None,
            L2NORM=use_qk_l2norm, num_warps=DECODE_CONFIG["num_warps"])
    return o, ht
