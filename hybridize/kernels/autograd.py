"""The public entry point: an autograd.Function over the chunk kernels, and the switch to the
decoding kernel for a few new tokens when no gradient is needed.

Forward:  [l2norm] -> chunk_prep -> chunk_scan (states per chunk) -> chunk_output; with bf16 inputs and the
          default intermediates the prep stops at T and the scan does the solve (chunk_prep.solve_in_scan:
          both gate kinds at every size since round 22), and without a backward the output kernel forms
          GDN's Aqk itself (chunk_output's QK); the output kernel reads vn in fp16 (chunk_output's VN16,
          16-bit inputs with fp32 vn). Saved: the
          inputs and the prep's G, T, Aqk (RECOMPUTE "solve", default), the inputs only ("all"), or
          everything the backward reads ("none"); with the fused L2 norm, the output too.
Backward: [l2norm] -> chunk_prep (again, keeping T; or only its solve, from the kept G and T) ->
          chunk_scan (keeping h, vn) -> chunk_bwd -> [l2norm backward]. Recomputing saves the
          [chunks, H, K, V] states between the two passes (fla's choice too; fla keeps its A).
"""
from __future__ import annotations

import os

import torch

from ._common import make_layout
from .chunk_bwd import bf16_states, chunk_bwd, recompute_kg_dtype
from .chunk_output import OUTPUT_CONFIG, chunk_output
from .chunk_prep import chunk_prep, inter_dtypes, solve_in_scan
from .chunk_prep_split import chunk_solve, pairs_decayed
from .chunk_scan import SCAN_CONFIG, chunk_scan
from .decode import recurrent_update
from .l2norm import keys_bwd, keys_fwd, out_grad, unit_bwd, unit_fwd

# Up to this many new tokens per sequence (and no gradient), the token-by-token kernel is used.
DECODE_MAX_T = 16
_FLOAT = (torch.float16, torch.bfloat16, torch.float32)
# What the backward recomputes of the forward. "solve" (default): the forward keeps the prep's G (fp32,
# g's shape), T (fp32 [L, H, 64]) and Aqk ([L, H, 64]), and the backward re-runs only the split
# design's solve kernel (w, u, kg) before the scan: the pairs and inverse run once (fla keeps its A
# the same way). Every prep design keeps them (round 8 kept them for the split design only, and the v3
# prep of GDN at head dim <= 64 ran twice). That memory is held per layer until the backward: at
# 4096 tokens x 32 heads, 67 MB (scalar gates) or 134 MB (per-channel). "all"
# (HYBRIDIZE_GDR_RECOMPUTE=all): only the inputs are saved and the whole prep runs again. H100, round 8,
# (1,8192,16,128) fwd+bwd: pairs + inverse 0.307 ms (KDA) and 0.153 (GDN) not run a second time.
# "none" (opt-in, HYBRIDIZE_GDR_RECOMPUTE=none): the forward runs as the backward needs it (states and
# vn in the intermediates' dtype; the output kernel then reads fp32 states) and keeps everything the
# backward reads, so the backward runs no forward kernel at all. H100, round 9, fwd+bwd against "solve"
# in the same run: KDA (1,8192,16,128) 4.672 -> 3.955 ms, GDN 2.951 -> 2.544. The cost is memory:
# about 400 MB per layer at 4096 tokens x 32 heads (the per-chunk states alone are [chunks, H, K, V]
# fp32, which is why fla recomputes them), held from forward to backward. Under activation
# checkpointing that memory lives only while one layer's backward runs.
RECOMPUTE = os.environ.get("HYBRIDIZE_GDR_RECOMPUTE", "solve")
# With the fused L2 norm, the backward takes the forward's normalised q', k', v', beta' and rho_q instead of running
# the norm's kernels again (except under RECOMPUTE "all", which keeps the least memory): two [L, H, K] tensors and
# one [L, H, V] in the inputs' dtype more per layer until the backward (96 MB at 8192 tokens x 16 heads x 128, bf16),
# as fla keeps its normalised q and k. H100, round 19 (call 10), KDA fwd+bwd at (1,8192,16,128) with the fused norm:
# the norm's kernels took 0.285 ms (fla's: 0.140), 0.139 of it in four _unit_fwd_kernel launches, two of them this
# recompute. HYBRIDIZE_GDR_KEEP_L2=0 recomputes.
KEEP_NORMALISED = os.environ.get("HYBRIDIZE_GDR_KEEP_L2", "1") == "1"
# With bf16 inputs and per-channel gates, the recompute scan stores its per-chunk states h in bf16 (fla keeps its h in
# bf16; the scan carries h in fp32): half the bytes the scan writes and the backward's stage 2 reads. Not fp16, whose
# range a state can pass; not scalar gates, whose dg sums h dh over the whole [K, V] state and cancels on aligned keys:
# there dg's error went 3.0e-3 -> 3.8e-3 on the H100 and doubled (3.8e-3 -> 7.8e-3) in the CPU test, where KDA's moved
# 3.3e-3 -> 3.6e-3.
# H100, round 20 (call 9, kernel_profile.py --modes fwd+bwd --no-fla), KDA fwd+bwd kernel sums fp32 -> bf16 h, ms:
# 3.699 -> 3.604 (1,8192,16,128), 6.278 -> 6.067 (4,4096,16,128), 1.605 -> 1.575 (8,2048,9,64); with the dh scan's dh
# stored in bf16 too (chunk_bwd's dh_store16) 3.591 / 5.952 / 1.556 (GDN would gain 1.5-5%: 1.864 -> 1.836, 3.091 ->
# 3.018, 0.841 -> 0.799). Every bf16 correctness case passes with both (aligned keys: KDA dq 8.4e-3 -> 8.7e-3, dk
# 3.8e-3 -> 4.1e-3, dg 3.3e-3 -> 3.8e-3). HYBRIDIZE_GDR_BWD_H16=0 keeps fp32.
STATES16 = os.environ.get("HYBRIDIZE_GDR_BWD_H16", "1") == "1"


def _packed(x):
    """[B, T, ...] -> [1, B*T, ...] (the same memory when contiguous)."""
    return x.contiguous().reshape(1, x.shape[0] * x.shape[1], *x.shape[2:])


def _forward(q, k, v, g, beta, scale, h0, want_final, layout, store_for_bwd=False, inter=None, keep_t=False,
             want_o=False, row_scale=None):
    """o (None when store_for_bwd and not want_o), the final state, and (G, w, Aqk, T, h, vn, kg).
    row_scale: o's rows times this (fp32 [L*H]; the fused L2 norm's rho for q)."""
    channel = g.dim() == 4
    fuse_o = SCAN_CONFIG["fuse_o"]  # the first version's output inside the scan, kept for comparison
    # Without a backward to keep it for, scalar gates' Aqk is formed by the output kernel (OUTPUT_CONFIG["qk"]);
    # the scan does the solve where solve_in_scan says so, unless the backward needs this pass's w.
    aqk = store_for_bwd or keep_t or fuse_o or not OUTPUT_CONFIG["qk"]
    solve = store_for_bwd or fuse_o or not solve_in_scan(k, inter, channel, layout.num_seqs * k.shape[2])
    qh_dtype = inter_dtypes(k, inter, channel)[0]
    # per-channel gates: scale q e^G for the output kernel, from the pairs kernel (OUTPUT_CONFIG["qg"]). Only
    # without the solve (so not for a backward or the fused output), where w and so qh_dtype are 16-bit.
    qg = (torch.empty_like(q, dtype=qh_dtype) if OUTPUT_CONFIG["qg"] and k.shape[-1] <= OUTPUT_CONFIG["qg_max_dim"]
          and pairs_decayed(channel, solve) else None)
    G, w, u, Aqk, T, kg = chunk_prep(q, k, v, g, beta, scale, layout, store_t=store_for_bwd or keep_t,
                                     inter=inter, aqk=aqk, solve=solve, qg=qg)
    T_kept = T if store_for_bwd or keep_t else None
    if store_for_bwd:  # the backward's states and vn keep the intermediates' precision
        o, ht, h, vn = chunk_scan(q, k, w, u, G, Aqk, scale, layout, initial_state=h0,
                                  output_final_state=want_final, store_h=True, kg=kg)
        if want_o:
            o = chunk_output(q, G, Aqk, h, vn, scale, layout, qh_dtype=w.dtype, row_scale=row_scale)
    elif fuse_o:
        o, ht, h, vn = chunk_scan(q, k, w, u, G, Aqk, scale, layout, initial_state=h0,
                                  output_final_state=want_final, fuse_o=True, kg=kg)
        if row_scale is not None:  # an experimental path: the row scale as a second rounding of o
            o = (o.float() * row_scale.view(o.shape[:-1] + (1,))).to(o.dtype)
    else:
        # The output's copy of vn in fp16 where it would be fp32 (OUTPUT_CONFIG["vn16"]; the backward recomputes
        # its own), with the operands it is formed from for the chunks where it overflows (chunk_output)
        vn16 = OUTPUT_CONFIG["vn16"] and q.dtype != torch.float32 and (not solve or u.dtype == torch.float32)
        _, ht, h, vn = chunk_scan(q, k, w, u, G, Aqk, scale, layout, initial_state=h0,
                                  output_final_state=want_final, store_h=True, state_dtype=q.dtype, kg=kg,
                                  solve=None if solve else (T, v, beta, w), vn16=vn16)
        check = ((w, u) if solve else (T, v, beta, w)) if vn16 else None
        o = chunk_output(q, G, Aqk, h, vn, scale, layout, qh_dtype=qh_dtype, row_scale=row_scale, k=k,
                         vn_check=check, qg=qg)
    return o, ht, (G, w, Aqk, T_kept, h, vn, kg)


def _normalised(q, k, v, beta, l2: bool):
    """(q', k', v', beta', rho_q) as the kernels take them: with the fused L2 norm, q and k scaled
    exactly by powers of two and the rest of their norms moved into v, beta and o's row scale rho_q
    (l2norm.py says why); without it, the inputs and no row scale."""
    if not l2:
        return q, k, v, beta, None
    qn, rho_q = unit_fwd(q)
    kn, _, v_in, b_in = keys_fwd(k, v, beta)
    return qn, kn, v_in, b_in, rho_q


class ChunkGatedDeltaRule(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, g, beta, scale, initial_state, output_final_state, cu_seqlens, use_qk_l2norm,
                inter, recompute):
        B, T = q.shape[:2]
        layout = make_layout(B, T, cu_seqlens, q.device)
        qp, kp, vp, gp, bp = (_packed(x) for x in (q, k, v, g, beta))
        qn, kn, v_in, b_in, rho_q = _normalised(qp, kp, vp, bp, use_qk_l2norm)
        h0 = initial_state.contiguous().float() if initial_state is not None else None
        grad = any(ctx.needs_input_grad[:5])
        keep_all = grad and recompute == "none"
        keep = grad and recompute == "solve"
        o, ht, inter_out = _forward(qn, kn, v_in, gp, b_in, scale, h0, output_final_state, layout, inter=inter,
                                    keep_t=keep, store_for_bwd=keep_all, want_o=True, row_scale=rho_q)
        G, w, Aqk, Tm, h, vn, kg = inter_out
        if keep_all:
            kept = inter_out
        elif keep:
            kept = (G, None, Aqk, Tm, None, None, None)
        else:
            kept = (None,) * 7
        normed = ((qn, kn, v_in, b_in, rho_q) if grad and use_qk_l2norm and KEEP_NORMALISED and recompute != "all"
                  else (None,) * 5)
        ctx.save_for_backward(qp, kp, vp, gp, bp, h0, o if use_qk_l2norm else None, *kept, *normed)
        ctx.layout, ctx.scale, ctx.l2, ctx.inter = layout, scale, use_qk_l2norm, inter
        ctx.shapes = (q.shape, g.shape, beta.shape)
        ctx.dtypes = (q.dtype, k.dtype, v.dtype, g.dtype, beta.dtype)
        ctx.h0_dtype = initial_state.dtype if initial_state is not None else None
        return o.reshape(v.shape), ht

    @staticmethod
    def backward(ctx, do, dht):
        qp, kp, vp, gp, bp, h0, o, G, w, Aqk, T, h, vn, kg, *normed = ctx.saved_tensors
        layout, scale = ctx.layout, ctx.scale
        if normed[0] is not None:  # the fused L2 norm's scaled q, k, v, beta, kept (KEEP_NORMALISED)
            qn, kn, v_in, b_in, rho_q = normed
        else:  # computed again (the same kernel: the same values)
            qn, kn, v_in, b_in, rho_q = _normalised(qp, kp, vp, bp, ctx.l2)
        if G is None:  # RECOMPUTE "all"
            _, _, (G, w, Aqk, T, h, vn, kg) = _forward(qn, kn, v_in, gp, b_in, scale, h0, False, layout,
                                                       store_for_bwd=True, inter=ctx.inter)
        elif h is None:  # RECOMPUTE "solve": the prep's pairs and inverse are not run again
            channel = G.dim() == 4
            w_dtype, inter = inter_dtypes(kn, ctx.inter, channel)
            w, u, kg = chunk_solve(kn, v_in, G, b_in, T, layout, w_dtype, inter,
                                   recompute_kg_dtype(kn.dtype, inter, w_dtype, kn.shape[-1], channel, ctx.l2))
            h_dtype = torch.bfloat16 if STATES16 and bf16_states(qn.dtype, channel) else None
            _, _, h, vn = chunk_scan(qn, kn, w, u, G, Aqk, scale, layout, initial_state=h0, store_h=True, kg=kg,
                                     state_dtype=h_dtype)
        # RECOMPUTE "none": the forward kept everything
        do = _packed(do.to(vp.dtype))
        if ctx.l2:
            do, drho_q = out_grad(do, o, rho_q)
        dht = dht.contiguous().float() if dht is not None else None
        dq, dk, dv, dg, db, dh0 = chunk_bwd(qn, kn, v_in, gp, b_in, scale, layout, G, w, Aqk, T, h, vn, do, dht,
                                            need_dh0=h0 is not None and ctx.needs_input_grad[6], kg=kg,
                                            unit_keys=ctx.l2)
        if ctx.l2:
            dq = unit_bwd(qp, dq, drho_q)
            dk, dv, db = keys_bwd(kp, vp, bp, dk, dv, db)
        qs, gs, bs = ctx.shapes
        qd, kd, vd, gd, bd = ctx.dtypes
        dh0 = dh0.to(ctx.h0_dtype) if dh0 is not None else None
        return (dq.reshape(qs).to(qd), dk.reshape(qs).to(kd), dv.reshape(qs[:3] + vp.shape[-1:]).to(vd),
                dg.reshape(gs).to(gd), db.reshape(bs).to(bd), None, dh0, None, None, None, None, None)


def _check(q, k, v, g, beta, initial_state, cu_seqlens):
    # The same contract as hybridize.modeling.gated_delta._check_shapes, checked here again on purpose:
    # this package imports nothing of the rest of hybridize (it must load alone), the checkpoint-side
    # modeling code must not need it, and a kernel fed wrong shapes reads out of bounds instead of failing.
    B, T, H, K = k.shape
    if q.shape != k.shape or v.shape[:3] != (B, T, H) or beta.shape != (B, T, H):
        raise ValueError(f"shape mismatch: q {tuple(q.shape)} k {tuple(k.shape)} v {tuple(v.shape)} beta {tuple(beta.shape)}")
    if g.shape not in ((B, T, H), (B, T, H, K)):
        raise ValueError(f"g must be [B,T,H] or [B,T,H,K], got {tuple(g.shape)}")
    if q.dtype not in _FLOAT or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"q, k, v must share one of {_FLOAT}, got {q.dtype} {k.dtype} {v.dtype}")
    if cu_seqlens is not None and B != 1:
        raise ValueError("cu_seqlens packs sequences into a batch of one: B must be 1")
    n = B if cu_seqlens is None else len(cu_seqlens) - 1
    if initial_state is not None and initial_state.shape != (n, H, K, v.shape[-1]):
        raise ValueError(f"initial_state must be {(n, H, K, v.shape[-1])}, got {tuple(initial_state.shape)}")


def gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
                     cu_seqlens=None, use_qk_l2norm=False, intermediates: str | None = None,
                     recompute: str | None = None):
    """The gated delta rule on hybridize's Triton kernels (contract: hybridize.modeling.gated_delta).

    q, k [B,T,H,K]; v [B,T,H,V]; g [B,T,H] (GDN) or [B,T,H,K] (KDA, per-step gates >= about -10);
    beta [B,T,H]; initial_state [N,H,K,V]; cu_seqlens [N+1] with B == 1 for packed documents.
    Returns (o [B,T,H,V] in v's dtype, final state [N,H,K,V] fp32 or None). Differentiable in
    q, k, v, g, beta and initial_state; a few new tokens without gradients take the decoding kernel.

    intermediates: the precision of the chunk intermediates (w, u, Aqk, vn) between the kernels
    (chunk_prep.INTERMEDIATES). "mixed" (the default, unless HYBRIDIZE_GDR_INTER says otherwise): w
    in the inputs' dtype with 16-bit w h and q h products, the rest fp32; on the H100 it made GDN
    fwd+bwd at (1, 32768, 16, 128) 1.21x faster than "fp32" (11.10 -> 9.17 ms) with fp32's output error
    on aligned keys. "fp32": everything fp32.
    "input": all in the inputs' own dtype, as fla keeps them; against "fp32", fwd+bwd at
    (1, 32768, 16, 128) 1.7x faster for GDN (12.41 -> 7.28 ms) and 1.6x for KDA (24.40 -> 15.35), but
    on nearly parallel keys the output error rises from 2.7e-3 to 1.5e-2 (fla: 1.6e-2; round 7, before
    round 11 made the fused L2 norm exact). benchmarks/RESULTS.md, "Kernels, round 7", "10" and "11".

    recompute: what the backward recomputes of the forward (see RECOMPUTE): "solve" (the default,
    unless HYBRIDIZE_GDR_RECOMPUTE says otherwise), "all", or "none" (fastest: the forward keeps
    the per-chunk states, about 400 MB per layer at 4096 tokens x 32 heads with fp32 intermediates,
    until the backward)."""
    _check(q, k, v, g, beta, initial_state, cu_seqlens)
    inter_dtypes(q, intermediates)  # a wrong setting: the one-line ValueError, before any kernel runs
    recompute = RECOMPUTE if recompute is None else recompute
    if recompute not in ("solve", "all", "none"):
        raise ValueError(f"recompute must be 'solve', 'all' or 'none', got {recompute!r}")
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    grad = torch.is_grad_enabled() and any(
        x is not None and x.requires_grad for x in (q, k, v, g, beta, initial_state))
    T = q.shape[1] if cu_seqlens is None else q.shape[1] / max(1, len(cu_seqlens) - 1)
    if not grad and T <= DECODE_MAX_T:
        h0 = initial_state.float() if initial_state is not None else None
        return recurrent_update(q, k, v, g, beta, state=h0, scale=scale, cu_seqlens=cu_seqlens,
                                use_qk_l2norm=use_qk_l2norm, output_final_state=output_final_state)
    return ChunkGatedDeltaRule.apply(q, k, v, g, beta, scale, initial_state, output_final_state,
                                     cu_seqlens, use_qk_l2norm, intermediates, recompute)
