"""Stage 1 of the chunked gated delta rule, one program per (chunk, head), all chunks in parallel.

Within a chunk of C tokens, with G the cumulative log-decay from the chunk start, the recurrence
becomes (UT / WY form, see REFERENCE.md section 3):
    A = strict_tril(beta_t k_t . k_j e^{G_t - G_j})      T = (I + A)^-1
    w = T (beta k e^G)      u = T (beta v)                  (both [C, K] / [C, V])
    Aqk = tril(scale q_t . k_j e^{G_t - G_j})              (the intra-chunk attention)
The scan (chunk_scan.py) then needs only w, u, Aqk and G to carry the state across chunks.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ._common import (CHUNK, SUB, Layout, channel_pairwise, chunk_bounds, chunk_matrix, chunk_tokens, dot_dtype,
                      dot_precision, gate_kind, invert, split16, store_chunk_matrix, unit_lower_inverse_rows)
from .chunk_prep_blocks import BC as BLOCK_ROWS
from .chunk_prep_blocks import _prep_blocks_kernel
from .chunk_prep_split import channel_tiles, chunk_prep_split, scalar_pairs, scan_kg_dtype
from .chunk_scan import SCAN_CONFIG, load_gates, split_update

# Precision of the intermediates between the kernels (w, u, Aqk, kg, and in the backward h, vn, dh)
# and of the products that read them. HYBRIDIZE_GDR_INTER picks the default of gated_delta_rule's
# `intermediates` argument:
#   "mixed" (default since round 10): w in the inputs' dtype, with the scan's w h and the output's
#          (scale q e^G) h as 16-bit products; u, vn, Aqk and kg stay fp32, and the state update
#          k^T vn a tf32 product. For the gate kinds in MIXED_GATES (both by default); the others run
#          as "fp32". The CPU emulation (benchmarks/intermediates_cpu.py, round 10) put it at fp32's
#          error on aligned keys (o 1.6e-3, state 2.1e-3 at D128), where kg in bf16 would take the
#          state to 1.2e-2 and a bf16 product for w in the solve the output to 2.4e-3, so neither is
#          done. H100, round 10 (benchmarks/RESULTS.md, "Kernels, round 10"), against "fp32":
#          - GDN (1,8192,16,128) fwd 0.596 -> 0.514 ms, fwd+bwd 2.870 -> 2.393; (1,32768,16,128)
#            fwd+bwd 11.10 -> 9.17;
#          - KDA (1,8192,16,128) fwd+bwd kernels 4.281 -> 4.015 ms (with the scan's kg through
#            registers; before that, w in bf16 had made KDA's scan slower, 0.56 -> 0.77 ms);
#          - on aligned keys the output and final state as fp32's (2.7e-3 / 1.6e-2 GDN, 2.8e-3 /
#            8.9e-3 KDA), the gradients within 15% of fp32's. Those figures were set by the fused L2
#            norm's rounding of the keys; with it gone (round 11, l2norm.py) w's own rounding shows in
#            one place, dh0 on aligned keys: 4.0e-3 against fp32's 1.3e-3 (GDN), 8.7e-3 against 4.1e-3
#            (KDA); every other output and gradient is as fp32's.
#   "fp32": all fp32, tf32 products. On SmolLM2's real activations (bf16) they keep the output within
#          0.8% of float64, where bf16 intermediates reach 1.2% (bf16 rounding of u is amplified where
#          vn = u - w h cancels).
#   "bf16" / "input": all in the inputs' dtype with 16-bit products (fla's choice; less traffic, and
#          4-5x the output error of fp32 on aligned keys).
# The forward's per-chunk state snapshots are stored in the inputs' dtype either way (chunk_scan's
# state_dtype).
INTERMEDIATES = os.environ.get("HYBRIDIZE_GDR_INTER", "mixed")
MIXED_GATES = os.environ.get("HYBRIDIZE_GDR_MIXED_GATES", "gdn,kda").split(",")
# design: "split" (v5: chunk_prep_split.py, three kernels: pairs, inverse, solve), "full" (v3, this
# file's single kernel on whole [64, 64] tiles), "blocks" (v4, chunk_prep_blocks.py: 16-row blocks),
# or "auto" (the default): v3 for scalar gates up to head dim 64, v5 otherwise. Timed alone on the
# H100, bf16, fp32 intermediates (benchmarks/RESULTS.md, "Kernels, round 5" to "round 7"), the prep
# took, GDN / KDA:
#   (1, 8192, 16, 128)  v3 0.388 / 1.366 ms, v4 0.740 (GDN; compiles for minutes), v5 0.29 / 0.49
#   (8, 2048, 9, 64)    v3 0.173 / 0.310, v5 0.235 / 0.343 (its inverse alone costs ~0.1 at any head dim)
# KDA at head dim 64 still takes v5: its whole forward with v3 and the kg kernel took 0.667 ms there,
# against a v5 stage sum of 0.560 (two calls of round 7; not yet timed side by side).
# HYBRIDIZE_GDR_PREP=split, full or blocks fixes one. inverse (v3 only): "doubling" (default;
# 10 tensor-core products), "blocked" (21; HYBRIDIZE_GDR_INVERSE=blocked, as for v5) or "rows" (row at
# a time). Round 9 (H100, (8,2048,9,64), GDN): the v3 prep 0.174 -> 0.135 ms with doubling. BK, BV:
# key and value columns per step of the loops over the head dims (v3); blocks_BK / blocks_BV /
# blocks_warps: the same for v4, by gate kind. 8 warps and 32 key columns: the settings that compile
# without register spills at head dim 128 (GDN; KDA spills 200 B) where 4 warps spill 1-4 KB
# (benchmarks/kernel_resources.py, triton 3.6, sm_90).
# kg (v3 design, per-channel gates): where k e^{G_last - G} is formed for the scan's state update.
# "kernel" (default): by _decayed_kernel below, all chunks in parallel, so the scan reads kg and
# exponentiates only a [K] vector per serial step. "scan" (HYBRIDIZE_GDR_KG=scan): inside the
# sequential scan, two exp'd [C, K] tiles per serial step. Measured on the H100 at (1, 8192, 16, 128)
# (benchmarks/RESULTS.md, "Kernels, round 7"): the KDA scan went from 0.913 to 0.554 ms (fp32
# intermediates) and 0.703 to 0.254 (bf16); the kg kernel adds 0.07 to the prep.
PREP_CONFIG = {"design": os.environ.get("HYBRIDIZE_GDR_PREP", "auto"),
               "inverse": "blocked" if os.environ.get("HYBRIDIZE_GDR_INVERSE") == "blocked" else "doubling",
               "BK": 64, "BV": 64,
               "blocks_BK": {"scalar": 32, "channel": 32}, "blocks_BV": 32, "blocks_warps": 8,
               "kg": os.environ.get("HYBRIDIZE_GDR_KG", "kernel")}


@triton.jit
def _decayed_kernel(x, G, out, out_start, out_lo, mult, chunks, H, K: tl.constexpr, BK: tl.constexpr,
                    C: tl.constexpr, FROM_START: tl.constexpr, BOTH: tl.constexpr, SPLIT: tl.constexpr = False,
                    keys=None, out_keys=None, KEYS: tl.constexpr = False):
    """x e^{G_last - G} (kg, the scan's state-update operand), or x e^G with FROM_START (q e^G, the
    backward's dh operand), for one (chunk, head, BK key columns) of per-channel gates: the factors
    the sequential kernels would form themselves (load_gates'), in (0, 1] since gates are log-decays.
    BOTH: x e^{G_last - G} into out and x e^G into out_start (the scan that does the solve reads both).
    mult: a factor on the result (the dh scan's scale on q e^G). SPLIT (with FROM_START): the result as a bf16
    hi + lo pair (_common.split16), hi into out and lo into out_lo. KEYS (with FROM_START): also
    keys e^{G_last - G} into out_keys, from the same gate factors."""
    i_c = tl.program_id(0)
    i_h = tl.program_id(1)
    kk = tl.program_id(2) * BK + tl.arange(0, BK)
    bos, eos, i_t = chunk_bounds(chunks, i_c)
    valid, tok, last_tok = chunk_tokens(bos, eos, i_t, tl.arange(0, C), C)
    km = kk < K
    m = valid[:, None] & km[None, :]
    p = (tok[:, None] * H + i_h) * K + kk[None, :]
    eG, eGlG, _ = load_gates(G, tok, valid, last_tok, i_h, H, kk, km, K, True)
    b_x = tl.load(x + p, mask=m, other=0.0).to(tl.float32)
    if SPLIT:
        hi, lo = split16(b_x * eG * mult, tl.bfloat16)
        tl.store(out + p, hi, mask=m)
        tl.store(out_lo + p, lo, mask=m)
    elif FROM_START:
        tl.store(out + p, (b_x * eG * mult).to(out.dtype.element_ty), mask=m)
    else:
        tl.store(out + p, (b_x * eGlG).to(out.dtype.element_ty), mask=m)
    if BOTH:
        tl.store(out_start + p, (b_x * eG).to(out_start.dtype.element_ty), mask=m)
    if KEYS:
        b_k = tl.load(keys + p, mask=m, other=0.0).to(tl.float32)
        tl.store(out_keys + p, (b_k * eGlG).to(out_keys.dtype.element_ty), mask=m)


def decayed(x, G, layout: Layout, dtype: torch.dtype, from_start: bool = False,
            start_dtype: torch.dtype | None = None, split: bool = False, mult: float = 1.0,
            keys: torch.Tensor | None = None, keys_dtype: torch.dtype = torch.bfloat16):
    """x [1, L, H, K] times e^{G_last - G} (or e^G, from_start) per chunk, G [1, L, H, K] fp32: one
    parallel pass that takes per-channel exponentials off the sequential kernels' serial path. With
    start_dtype, returns (x e^{G_last - G}, x e^G in start_dtype) from the one pass. split (with from_start):
    mult x e^G as a bf16 hi + lo pair, [2, 1, L, H, K] (dtype is then ignored). keys (with from_start): returns
    (that, keys e^{G_last - G} in keys_dtype) from the same pass (the dh scan's q e^G and kg)."""
    out = torch.empty((2,) + tuple(x.shape) if split else x.shape, device=x.device,
                      dtype=torch.bfloat16 if split else dtype)
    out_start = torch.empty_like(x, dtype=start_dtype) if start_dtype is not None else out
    out_keys = torch.empty_like(keys, dtype=keys_dtype) if keys is not None else None
    K, H = x.shape[-1], x.shape[2]
    if layout.num_chunks:
        BK = min(64, triton.next_power_of_2(K))
        _decayed_kernel[(layout.num_chunks, H, triton.cdiv(K, BK))](
            x, G, out[0] if split else out, out_start, out[1] if split else out, mult, layout.chunks, H,
            K=K, BK=BK, C=CHUNK, FROM_START=from_start, BOTH=start_dtype is not None, SPLIT=split and from_start,
            keys=keys, out_keys=out_keys, KEYS=keys is not None and from_start, num_warps=4)
    if keys is not None:
        return out, out_keys
    return (out, out_start) if start_dtype is not None else out


@triton.jit
def _prep_kernel(q, k, v, g, beta, G_out, w_out, u_out, Aqk_out, T_out, chunks, scale, H,
                 K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                 C: tl.constexpr, SB: tl.constexpr, BLOCKED: tl.constexpr, DOUBLING: tl.constexpr,
                 CHANNEL: tl.constexpr,
                 STORE_T: tl.constexpr, PREC: tl.constexpr, PAIR_PREC: tl.constexpr, DT: tl.constexpr,
                 STORE_AQK: tl.constexpr = True):
    """STORE_AQK False (scalar gates): no q k^T here; the output kernel forms it (chunk_output's QK)."""
    i_c = tl.program_id(0)
    i_h = tl.program_id(1)
    bos, eos, i_t = chunk_bounds(chunks, i_c)
    rows = tl.arange(0, C)
    valid, tok, _ = chunk_tokens(bos, eos, i_t, rows, C)
    # Rows past the document end load as zeros (k = q = v = beta = g = 0): they neither change the
    # state nor produce output, so a partial last chunk needs no special case below.
    b = tl.load(beta + tok * H + i_h, mask=valid, other=0.0).to(tl.float32)
    if not CHANNEL:
        G = tl.cumsum(tl.load(g + tok * H + i_h, mask=valid, other=0.0).to(tl.float32), 0)
        tl.store(G_out + tok * H + i_h, G, mask=valid)
        # exp of the masked difference: -inf above the diagonal gives exact zeros, no overflow.
        D = tl.exp(tl.where(rows[:, None] >= rows[None, :], G[:, None] - G[None, :], float("-inf")))
    # The pairwise products sum over key columns: accumulate them BK columns at a time, which keeps
    # the tiles (and shared memory) bounded for head dims up to 256.
    if CHANNEL:
        A = tl.zeros([C, C], dtype=tl.float32)
        M = tl.zeros([C, C], dtype=tl.float32)
        for k0 in tl.static_range(0, K, BK):
            Gk, kf, qf = channel_tiles(q, k, g, G_out, tok, valid, i_h, H, k0, K, BK, DT)
            A += channel_pairwise(kf, kf, Gk, rows, C, SB, False, PAIR_PREC)
            M += channel_pairwise(qf * scale, kf, Gk, rows, C, SB, True, PAIR_PREC)
    else:
        A, M = scalar_pairs(q, k, tok, valid, i_h, H, K, BK, C, PREC, DT, STORE_AQK)
    if CHANNEL:
        A = A * b[:, None]
    else:
        A = tl.where(rows[:, None] > rows[None, :], A * D, 0.0) * b[:, None]
        M = M * D * scale
    if BLOCKED or DOUBLING:
        Tm = invert(A, C, SB, DOUBLING, PREC)
    else:
        Tm = unit_lower_inverse_rows(A, C)
    if STORE_T:
        store_chunk_matrix(T_out, Tm, tok, valid, rows, i_h, H, C)
    if STORE_AQK:
        store_chunk_matrix(Aqk_out, M, tok, valid, rows, i_h, H, C)
    for k0 in tl.static_range(0, K, BK):
        kk = k0 + tl.arange(0, BK)
        m_k = valid[:, None] & (kk < K)[None, :]
        p_k = (tok[:, None] * H + i_h) * K + kk[None, :]
        kf = tl.load(k + p_k, mask=m_k, other=0.0).to(DT).to(tl.float32)
        if CHANNEL:  # recomputed rather than re-read: G_out was written by other threads
            kb = kf * tl.exp(tl.cumsum(tl.load(g + p_k, mask=m_k, other=0.0).to(tl.float32), 0)) * b[:, None]
        else:
            kb = kf * (tl.exp(G) * b)[:, None]
        w = tl.dot(Tm, kb, input_precision=PREC)
        tl.store(w_out + p_k, w.to(w_out.dtype.element_ty), mask=m_k)
    for v0 in tl.static_range(0, V, BV):
        vv = v0 + tl.arange(0, BV)
        m_v = valid[:, None] & (vv < V)[None, :]
        p_v = (tok[:, None] * H + i_h) * V + vv[None, :]
        vb = tl.load(v + p_v, mask=m_v, other=0.0).to(tl.float32) * b[:, None]
        u = tl.dot(Tm, vb, input_precision=PREC)
        tl.store(u_out + p_v, u.to(u_out.dtype.element_ty), mask=m_v)


def blocks_unroll(K: int, bk: int) -> int:
    """Unroll factor of the v4 prep's column loops: all of them up to 4 steps, none beyond (see
    chunk_prep_blocks.py: compile time at head dim 256)."""
    steps = triton.cdiv(K, min(bk, triton.next_power_of_2(K)))
    return steps if steps <= 4 else 1


def prep_design(K: int, channel: bool) -> str:
    """The design chunk_prep runs for this head dim and gate kind (PREP_CONFIG["design"], "auto" resolved)."""
    design = PREP_CONFIG["design"]
    if design == "auto":
        design = "full" if K <= 64 and not channel else "split"
    return design


def inter_dtypes(k: torch.Tensor, inter: str | None = None,
                 channel: bool = False) -> tuple[torch.dtype, torch.dtype]:
    """(w's dtype, the other intermediates' dtype) for inputs like k and per-channel (channel) or scalar
    gates under the setting `inter` ("fp32", "mixed", "input" / "bf16"; None: INTERMEDIATES)."""
    inter = inter or INTERMEDIATES
    if inter == "mixed":
        return (k.dtype if gate_kind(channel) in MIXED_GATES else torch.float32), torch.float32
    if inter == "fp32":
        return torch.float32, torch.float32
    if inter in ("input", "bf16"):
        return k.dtype, k.dtype
    raise ValueError(f"intermediates must be 'fp32', 'mixed' or 'input', got {inter!r}")


def solve_in_scan(k: torch.Tensor, inter: str | None, channel: bool, seqs_heads: int | None = None) -> bool:
    """Whether the forward folds the solve into the scan (SCAN_CONFIG["solve"], chunk_scan's SOLVE): either
    gate kind in split_update's case (bf16 inputs, "mixed" intermediates, head dim <= 128; per-channel
    gates with SCAN_CONFIG["solve_channel"]), and at least SCAN_CONFIG["solve_min_seqs_heads"][gate kind]
    documents x heads (seqs_heads; None: not checked)."""
    if not SCAN_CONFIG["solve"] or (channel and not SCAN_CONFIG["solve_channel"]):
        return False
    if seqs_heads is not None and seqs_heads < SCAN_CONFIG["solve_min_seqs_heads"][gate_kind(channel)]:
        return False
    w_dtype, u_dtype = inter_dtypes(k, inter, channel)
    return split_update(k.dtype, u_dtype, w_dtype, k.shape[-1])


def chunk_prep(q, k, v, g, beta, scale: float, layout: Layout, store_t: bool = False, inter: str | None = None,
               aqk: bool = True, solve: bool = True, qg: torch.Tensor | None = None):
    """q, k [1, L, H, K], v [1, L, H, V] (packed, contiguous), g [1, L, H] or [1, L, H, K], beta [1, L, H].

    Returns G (fp32, g's shape), w ([1,L,H,K]), u ([1,L,H,V]), Aqk ([1,L,H,C]) in the intermediates'
    dtypes (inter_dtypes: w's, then the others'), T (fp32 [1,L,H,C], only when store_t: the
    backward needs it) and kg (k e^{G_last - G} in u's dtype, per-channel gates only: v4 and v5
    always, v3 when PREP_CONFIG["kg"] == "kernel"; else None). aqk False lets scalar gates skip Aqk
    (returned None; chunk_output forms it from q and k), except in the v4 design. solve False (for a
    scan that folds the solve in: solve_in_scan): G, Aqk and T by the split design's pairs kernel at
    every head dim, u None, and w None for scalar gates; per-channel gates get w = k e^G (in w's dtype,
    the residual's key operand) and kg, from the pairs kernel (chunk_prep_split's pairs_decayed, the
    default since round 16) or one pass of _decayed_kernel; that pairs kernel also fills qg, if given, with
    scale q e^G (the output kernel's operand, chunk_output's qg)."""
    _, L, H, K = k.shape
    V = v.shape[-1]
    channel = g.dim() == 4
    w_dtype, inter_dtype = inter_dtypes(k, inter, channel)
    design = prep_design(K, channel) if solve else "split"
    aqk = aqk or channel or design == "blocks"
    if design == "split":  # allocates its own outputs (T always: A is formed in its buffer)
        G, w, u, Aqk, T, kg = chunk_prep_split(q, k, v, g, beta, scale, layout, w_dtype, inter_dtype, aqk, solve,
                                               qg)
        if not solve:
            if channel and kg is None:  # (the pairs kernel forms them: chunk_prep_split's pairs_decayed)
                kg, w = decayed(k, G, layout, scan_kg_dtype(k.dtype, inter_dtype, fused=False), start_dtype=w_dtype)
            return G, w, None, Aqk, T, kg
        return G, w, u, Aqk, (T if store_t else None), kg
    G = torch.empty(g.shape, device=g.device, dtype=torch.float32)
    w = torch.empty_like(k, dtype=w_dtype)
    u = torch.empty_like(v, dtype=inter_dtype)
    Aqk = chunk_matrix(L, H, k.device, inter_dtype) if aqk else None
    T = chunk_matrix(L, H, k.device, torch.float32) if store_t else w
    if design == "blocks":
        kg = torch.empty_like(k, dtype=inter_dtype) if channel else None
        if layout.num_chunks:
            bk = PREP_CONFIG["blocks_BK"]["channel" if channel else "scalar"]
            _prep_blocks_kernel[(layout.num_chunks, H)](
                q, k, v, g, beta, G, w, u, Aqk, T, kg if channel else w, layout.chunks, scale, H,
                K=K, V=V, BK=min(bk, triton.next_power_of_2(K)),
                BV=min(PREP_CONFIG["blocks_BV"], triton.next_power_of_2(V)), C=CHUNK, BC=BLOCK_ROWS,
                CHANNEL=channel, STORE_T=store_t, STORE_KG=channel, PREC=dot_precision(k.dtype),
                PAIR_PREC=dot_precision(k.dtype), DT=dot_dtype(k.dtype), UNROLL=blocks_unroll(K, bk),
                num_warps=PREP_CONFIG["blocks_warps"])
        return G, w, u, Aqk, (T if store_t else None), kg
    if layout.num_chunks:
        _prep_kernel[(layout.num_chunks, H)](
            q, k, v, g, beta, G, w, u, Aqk if aqk else w, T, layout.chunks, scale, H,
            K=K, V=V, BK=min(PREP_CONFIG["BK"], triton.next_power_of_2(K)), BV=min(PREP_CONFIG["BV"], triton.next_power_of_2(V)),
            C=CHUNK, SB=SUB, BLOCKED=PREP_CONFIG["inverse"] == "blocked",
            DOUBLING=PREP_CONFIG["inverse"] == "doubling", CHANNEL=channel, STORE_T=store_t,
            PREC=dot_precision(k.dtype), DT=dot_dtype(k.dtype),
            # 3xTF32 on the per-channel products of [C, BK] tiles fits in shared memory (164 KB) now
            # that key columns come BK at a time; plain tf32 there left fp32 KDA at 8e-4 on the H100.
            PAIR_PREC=dot_precision(k.dtype), STORE_AQK=aqk, num_warps=4 if K <= 64 else 8, num_stages=1)
    kg = decayed(k, G, layout, inter_dtype) if channel and PREP_CONFIG["kg"] == "kernel" else None
    return G, w, u, Aqk, (T if store_t else None), kg
