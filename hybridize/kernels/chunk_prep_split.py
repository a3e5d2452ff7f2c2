"""Stage 1 of the chunked forward, v5: chunk_prep.py's outputs (G, w, u, Aqk, T, kg) from two or three
kernels instead of one, each all chunks in parallel.

    pairs    G = cumsum(g); A = beta strict_tril(k k^T decay) (fp32, into T's buffer); Aqk; and, by
             default since round 9, T = (I + A)^-1 itself (SPLIT_CONFIG["pairs_inverse"])
    inverse  T = (I + A)^-1 in place (only when the pairs kernel does not invert)
    solve    w = T (beta k e^G) and u = T (beta v), one program per (chunk, head) over every column
             block (or one per column block); for per-channel gates also kg = k e^{G_last - G}, the
             scan's state-update operand

Why split. v3's single kernel holds ~6 [64, 64] fp32 tiles for its inverse, so one program fits on
a multiprocessor at a time and its phases (load, 21 dependent products, store) never overlap: it
took 0.39 ms (GDN) and 1.30 ms (KDA) at (1, 8192, 16, 128) on the H100 where the bytes it moves take
about 0.09 ms, and fla's kkt + solve + w/u take 0.12 / 0.33 ms (benchmarks/RESULTS.md, round 5).
Apart, the two parallel kernels are small enough for several programs per multiprocessor, and the
serial inverse runs on its own, with few registers.

Per-channel gates. The products sum_d a[t,d] b[j,d] e^{G[t,d] - G[j,d]} are formed one 16-column
block j at a time, with the reference row r in that block's middle (as in _common.channel_pairwise,
so every factor stays under e^{8 |g|}): the [64, BK] x [BK, 16] product per block costs a quarter of
channel_pairwise's [64, 64] one, and the exp'd factor of the rows is shared between k k^T and q k^T.

Outcome on the H100 at (1, 8192, 16, 128), bf16 (benchmarks/RESULTS.md, "Kernels, round 7"): the
three kernels at their best settings take 0.29 ms (GDN) and 0.48 ms (KDA) against v3's 0.39 / 1.37.
The KDA forward went from 2.10 to 1.22 ms. At head dim 64 v3 stays faster (0.17 vs 0.24 ms for GDN),
so chunk_prep's "auto" design uses v3 for scalar gates at head dim <= 64 and this one elsewhere.
Round 9 (inverse by block doubling, inside the pairs kernel; one solve program per chunk): 0.23 ms
(GDN) and 0.42 ms (KDA) at the same shape with fp32 intermediates (benchmarks/RESULTS.md, "Kernels,
round 9").
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ._common import (CHUNK, EXP_CLAMP, SUB, Layout, chunk_bounds, chunk_matrix, chunk_tokens, dot_dtype, dot_precision,
                      invert, load_chunk_matrix, lower_sectors, store_chunk_matrix, tril_mask)
from .chunk_prep_blocks import _store_row_block, block_inverse
from .chunk_scan import SCAN_CONFIG, load_gates


def scan_kg_format(k_dtype: torch.dtype, fused: bool = True) -> str:
    """How kg reaches the forward scan that does the solve: SCAN_CONFIG["kg_format"] ("fp32": in the
    intermediates' dtype; "bf16"; "split": a bf16 hi + lo pair), the 16-bit forms for bf16 keys only, and
    "split" only from the pairs kernel (fused; chunk_prep.decayed writes one tensor)."""
    fmt = SCAN_CONFIG["kg_format"] if k_dtype == torch.bfloat16 else "fp32"
    return "fp32" if fmt == "split" and not fused else fmt


def scan_kg_dtype(k_dtype: torch.dtype, inter: torch.dtype, fused: bool = True) -> torch.dtype:
    """kg's element type for scan_kg_format: bf16 for "bf16" and "split", else the intermediates'."""
    return inter if scan_kg_format(k_dtype, fused) == "fp32" else torch.bfloat16


def scan_kg(k: torch.Tensor, inter: torch.dtype) -> torch.Tensor:
    """kg's memory, as the pairs kernel writes it: [2, *k.shape] (hi, lo) for "split", else k's shape."""
    shape = ((2,) if scan_kg_format(k.dtype) == "split" else ()) + tuple(k.shape)
    return torch.empty(shape, device=k.device, dtype=scan_kg_dtype(k.dtype, inter))

# Columns per step (pairs: key columns summed over; solve: key or value columns per program), warps
# of each kernel, and the round-9 choices, each timed on the H100 at (1, 8192, 16, 128), bf16, fp32
# intermediates, kernel alone (benchmarks/RESULTS.md, "Kernels, round 9"):
#   inverse         "doubling" (default, 10 [64, 64] products, _common.unit_lower_inverse_doubling)
#                   0.088 ms; "blocked" (21 products, as v3 had) 0.097; "blocks16" (v4's [16, 16]
#                   forward substitution) 0.114. HYBRIDIZE_GDR_INVERSE picks one.
#   pairs_inverse   the pairs kernel inverts A itself and stores T: A never goes to memory and the
#                   inverse kernel does not run. GDN pairs + inverse 0.160 -> 0.099 ms
#                   (HYBRIDIZE_GDR_PAIRS_INVERSE=0 turns it off).
#   pairs_inverse_channel   the same for per-channel gates, the four column blocks joined into one
#                   tile: KDA 0.294 -> 0.253 ms (HYBRIDIZE_GDR_PAIRS_INVERSE_KDA=0 turns it off).
#   solve_all       one solve program per (chunk, head) over every column block, T read once (as
#                   fla's recompute_w_u): GDN 0.133 -> 0.105 ms, KDA 0.176 -> 0.159 (BK 128 with a
#                   program per block, T read twice: 0.134 / 0.195). HYBRIDIZE_GDR_SOLVE_ALL=0 restores
#                   one program per column block.
# Round 7, each kernel alone at the same shape (benchmarks/RESULTS.md, "Kernels, round 7"), ms, GDN / KDA:
#   pairs   BK 64, 4 warps 0.063 / 0.213 (BK 32, 8 warps: 0.089 / 1.642)
#   inverse blocked, 4 warps 0.097 / 0.096 (8 warps 0.21; blocks16 0.11 at 4 warps, 0.34 at 8)
#   solve   BK 64, 8 warps 0.131 / 0.172 (BK 32: 0.173 / 0.220; BK 16: 0.31 / 0.39)
# 4 warps win for pairs although ptxas reports spills there (up to 1.5 KB for KDA at head dim 128).
SPLIT_CONFIG = {"pairs_BK": 64, "pairs_warps": 4, "inverse": os.environ.get("HYBRIDIZE_GDR_INVERSE", "doubling"),
                "inverse_warps": 4, "solve_BK": 64, "solve_warps": 8,
                "pairs_inverse": os.environ.get("HYBRIDIZE_GDR_PAIRS_INVERSE", "1") == "1",
                "solve_all": os.environ.get("HYBRIDIZE_GDR_SOLVE_ALL", "1") == "1",
                "pairs_inverse_channel": os.environ.get("HYBRIDIZE_GDR_PAIRS_INVERSE_KDA", "1") == "1",
                "pairs_decayed": os.environ.get("HYBRIDIZE_GDR_PAIRS_DECAYED", "1") == "1",
                # launch knobs of the pairs kernel for sweeps (kernel_stages.py --split-sweep): pipeline depth and
                # a register cap per thread (Triton's maxnreg); None leaves Triton's defaults
                "pairs_stages": None, "pairs_maxnreg": None}


def _pairs_launch() -> dict:
    opts = {"num_warps": SPLIT_CONFIG["pairs_warps"]}
    if SPLIT_CONFIG["pairs_stages"]:
        opts["num_stages"] = SPLIT_CONFIG["pairs_stages"]
    if SPLIT_CONFIG["pairs_maxnreg"]:
        opts["maxnreg"] = SPLIT_CONFIG["pairs_maxnreg"]
    return opts


@triton.jit
def _column_block(kf, qf, G, k, G_out, t0, last_tok, i_h, H, kk, km, rows, s: tl.constexpr, SB: tl.constexpr,
                  K: tl.constexpr, PREC: tl.constexpr, DT: tl.constexpr):
    """Columns j of block s (SB of them) of k k^T and q k^T under per-channel decay, for all C rows:
    sum_d x[t,d] k[j,d] e^{G[t,d] - G[j,d]} = (x e^{G - G_r}) (k_s e^{G_r - G_s})^T, r the block's middle row.
    Block s's keys, gates and reference row are loaded from memory (k, and the G this program stored: the
    caller puts a barrier between), not picked out of the register tiles: until round 16 they were, by
    reductions over the tiles' rows, and loading them made the pairs kernel 1-2% faster (H100, round 16,
    call 4). Rows past the document end read its last real token's G, as the cumulative sum carries it
    there, and zero keys. Rows before the block are zeroed (they are above the diagonal); the caller masks
    the diagonal block's upper part."""
    r = t0 + s * SB + tl.arange(0, SB)
    tok_s = tl.minimum(r, last_tok)
    p = (tok_s[:, None] * H + i_h) * K + kk[None, :]
    k_s = tl.load(k + p, mask=(r <= last_tok)[:, None] & km[None, :], other=0.0).to(DT).to(tl.float32)
    G_s = tl.load(G_out + p, mask=km[None, :], other=0.0, cache_modifier=".cg")
    Gr = tl.load(G_out + (tl.minimum(t0 + s * SB + SB // 2, last_tok) * H + i_h) * K + kk, mask=km, other=0.0,
                 cache_modifier=".cg")
    f = tl.where((rows >= s * SB)[:, None], tl.exp(tl.minimum(G - Gr[None, :], EXP_CLAMP)), 0.0)
    b = tl.trans(k_s * tl.exp(tl.minimum(Gr[None, :] - G_s, EXP_CLAMP)))
    return tl.dot(kf * f, b, input_precision=PREC), tl.dot(qf * f, b, input_precision=PREC)


@triton.jit
def channel_tiles(q, k, g, G_out, tok, valid, i_h, H, k0, K: tl.constexpr, BK: tl.constexpr, DT: tl.constexpr):
    """Key columns k0.. of one chunk with per-channel gates: stores G = cumsum(g) and returns it with
    k and q as fp32 (rounded through the products' operand type first)."""
    kk = k0 + tl.arange(0, BK)
    m_k = valid[:, None] & (kk < K)[None, :]
    p_k = (tok[:, None] * H + i_h) * K + kk[None, :]
    G = tl.cumsum(tl.load(g + p_k, mask=m_k, other=0.0).to(tl.float32), 0)
    tl.store(G_out + p_k, G, mask=m_k)
    kf = tl.load(k + p_k, mask=m_k, other=0.0).to(DT).to(tl.float32)
    qf = tl.load(q + p_k, mask=m_k, other=0.0).to(DT).to(tl.float32)
    return G, kf, qf


@triton.jit
def scalar_pairs(q, k, tok, valid, i_h, H, K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr,
                 PREC: tl.constexpr, DT: tl.constexpr, QK: tl.constexpr = True):
    """k k^T and q k^T of one chunk before any decay (scalar gates factor out of the sum over key
    columns), accumulated BK columns at a time: bounded tiles up to head dim 256. Without QK, k k^T
    only (returned twice; q is not read): for the output kernel that forms q k^T itself."""
    A = tl.zeros([C, C], dtype=tl.float32)
    M = tl.zeros([C, C], dtype=tl.float32)
    for k0 in tl.static_range(0, K, BK):
        kk = k0 + tl.arange(0, BK)
        m_k = valid[:, None] & (kk < K)[None, :]
        p_k = (tok[:, None] * H + i_h) * K + kk[None, :]
        k_raw = tl.load(k + p_k, mask=m_k, other=0.0).to(DT)
        A = tl.dot(k_raw, tl.trans(k_raw), A, input_precision=PREC)
        if QK:
            q_raw = tl.load(q + p_k, mask=m_k, other=0.0).to(DT)
            M = tl.dot(q_raw, tl.trans(k_raw), M, input_precision=PREC)
    if not QK:
        M = A
    return A, M


@triton.jit
def _store_columns(A_out, Aqk_out, A_s, M_s, b, tok, valid, rows, i_h, H, scale, s: tl.constexpr,
                   C: tl.constexpr, SB: tl.constexpr, STORE_A: tl.constexpr):
    cols = s * SB + tl.arange(0, SB)
    p = (tok[:, None] * H + i_h) * C + cols[None, :]
    lower = valid[:, None] & lower_sectors(rows, cols)  # tril_mask's part of this column block
    if STORE_A:
        tl.store(A_out + p, tl.where(rows[:, None] > cols[None, :], A_s * b[:, None], 0.0), mask=lower)
    M_s = tl.where(rows[:, None] >= cols[None, :], M_s * scale, 0.0)
    tl.store(Aqk_out + p, M_s.to(Aqk_out.dtype.element_ty), mask=lower)


@triton.jit
def _side_by_side(a, b):
    """[R, N] and [R, N] -> [R, 2N], a's columns first."""
    return tl.reshape(tl.permute(tl.join(a, b), (0, 2, 1)), [a.shape[0], 2 * a.shape[1]])


@triton.jit
def _pairs_kernel(q, k, g, beta, G_out, A_out, Aqk_out, kg_out, kg_lo_out, kG_out, qG_out, chunks, scale, H,
                  K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr, SB: tl.constexpr, CHANNEL: tl.constexpr,
                  INVERT: tl.constexpr, DOUBLING: tl.constexpr, PREC: tl.constexpr, PAIR_PREC: tl.constexpr,
                  DT: tl.constexpr, STORE_AQK: tl.constexpr = True, DECAYED: tl.constexpr = False,
                  KG_SPLIT: tl.constexpr = False, STORE_QG: tl.constexpr = False):
    """G, A (or, with INVERT, T = (I + A)^-1) and Aqk of one (chunk, head); scalar gates without
    STORE_AQK leave Aqk to the output kernel (chunk_output's QK) and read no q here. DECAYED (per-channel
    gates): also k e^{G_last - G} into kg_out (with KG_SPLIT as bf16 hi there and lo into kg_lo_out) and k e^G
    into kG_out, for the scan that does the solve; with STORE_QG also scale q e^G into qG_out, for the output
    kernel (chunk_output's QG: the operand it would form, rounded to qG_out's type the same way)."""
    i_c = tl.program_id(0)
    i_h = tl.program_id(1)
    bos, eos, i_t = chunk_bounds(chunks, i_c)
    rows = tl.arange(0, C)
    valid, tok, last_tok = chunk_tokens(bos, eos, i_t, rows, C)
    # Rows past the document end load as zeros (k = q = beta = g = 0): they add nothing.
    b = tl.load(beta + tok * H + i_h, mask=valid, other=0.0).to(tl.float32)
    if CHANNEL:
        A0 = tl.zeros([C, SB], dtype=tl.float32)
        A1 = tl.zeros([C, SB], dtype=tl.float32)
        A2 = tl.zeros([C, SB], dtype=tl.float32)
        A3 = tl.zeros([C, SB], dtype=tl.float32)
        M0 = tl.zeros([C, SB], dtype=tl.float32)
        M1 = tl.zeros([C, SB], dtype=tl.float32)
        M2 = tl.zeros([C, SB], dtype=tl.float32)
        M3 = tl.zeros([C, SB], dtype=tl.float32)
        t0 = (bos + i_t * C).to(tl.int64)
        for k0 in tl.static_range(0, K, BK):
            G, kf, qf = channel_tiles(q, k, g, G_out, tok, valid, i_h, H, k0, K, BK, DT)
            kk = k0 + tl.arange(0, BK)
            km = kk < K
            tl.debug_barrier()  # this k block's G, stored by every thread, before any thread reads it back
            if DECAYED:  # the scan's operands, as chunk_prep.decayed forms them (its load_gates' factors)
                m_k = valid[:, None] & km[None, :]
                p_k = (tok[:, None] * H + i_h) * K + kk[None, :]
                Gl = tl.load(G_out + (last_tok * H + i_h) * K + kk, mask=km, other=0.0, cache_modifier=".cg")
                kgv = kf * tl.exp(Gl[None, :] - G)
                if KG_SPLIT:
                    kg_hi = kgv.to(tl.bfloat16)
                    tl.store(kg_lo_out + p_k, (kgv - kg_hi.to(tl.float32)).to(tl.bfloat16), mask=m_k)
                    tl.store(kg_out + p_k, kg_hi, mask=m_k)
                else:
                    tl.store(kg_out + p_k, kgv.to(kg_out.dtype.element_ty), mask=m_k)
                tl.store(kG_out + p_k, (kf * tl.exp(G)).to(kG_out.dtype.element_ty), mask=m_k)
                if STORE_QG:
                    tl.store(qG_out + p_k, (qf * scale * tl.exp(G)).to(qG_out.dtype.element_ty), mask=m_k)
            a, m = _column_block(kf, qf, G, k, G_out, t0, last_tok, i_h, H, kk, km, rows, 0, SB, K, PAIR_PREC, DT)
            A0 += a
            M0 += m
            a, m = _column_block(kf, qf, G, k, G_out, t0, last_tok, i_h, H, kk, km, rows, 1, SB, K, PAIR_PREC, DT)
            A1 += a
            M1 += m
            a, m = _column_block(kf, qf, G, k, G_out, t0, last_tok, i_h, H, kk, km, rows, 2, SB, K, PAIR_PREC, DT)
            A2 += a
            M2 += m
            a, m = _column_block(kf, qf, G, k, G_out, t0, last_tok, i_h, H, kk, km, rows, 3, SB, K, PAIR_PREC, DT)
            A3 += a
            M3 += m
        _store_columns(A_out, Aqk_out, A0, M0, b, tok, valid, rows, i_h, H, scale, 0, C, SB, not INVERT)
        _store_columns(A_out, Aqk_out, A1, M1, b, tok, valid, rows, i_h, H, scale, 1, C, SB, not INVERT)
        _store_columns(A_out, Aqk_out, A2, M2, b, tok, valid, rows, i_h, H, scale, 2, C, SB, not INVERT)
        _store_columns(A_out, Aqk_out, A3, M3, b, tok, valid, rows, i_h, H, scale, 3, C, SB, not INVERT)
        if INVERT:  # the four column blocks as one [C, C] tile (C == 4 SB), inverted here
            A = _side_by_side(_side_by_side(A0, A1), _side_by_side(A2, A3))
            A = invert(tl.where(rows[:, None] > rows[None, :], A * b[:, None], 0.0), C, SB, DOUBLING, PREC)
            store_chunk_matrix(A_out, A, tok, valid, rows, i_h, H, C)
    else:
        G = tl.cumsum(tl.load(g + tok * H + i_h, mask=valid, other=0.0).to(tl.float32), 0)
        tl.store(G_out + tok * H + i_h, G, mask=valid)
        A, M = scalar_pairs(q, k, tok, valid, i_h, H, K, BK, C, PREC, DT, STORE_AQK)
        # exp of the masked difference: -inf above the diagonal gives exact zeros, no overflow
        D = tl.exp(tl.where(rows[:, None] >= rows[None, :], G[:, None] - G[None, :], float("-inf")))
        if STORE_AQK:
            store_chunk_matrix(Aqk_out, M * D * scale, tok, valid, rows, i_h, H, C)
        A = tl.where(rows[:, None] > rows[None, :], A * D, 0.0) * b[:, None]
        if INVERT:
            A = invert(A, C, SB, DOUBLING, PREC)
        store_chunk_matrix(A_out, A, tok, valid, rows, i_h, H, C)


@triton.jit
def _inverse_kernel(T_buf, chunks, H, C: tl.constexpr, SB: tl.constexpr, BLOCKS16: tl.constexpr,
                    DOUBLING: tl.constexpr, PREC: tl.constexpr):
    """Replaces A (strictly lower, fp32, as _pairs_kernel wrote it) by T = (I + A)^-1, one chunk."""
    i_c = tl.program_id(0)
    i_h = tl.program_id(1)
    bos, eos, i_t = chunk_bounds(chunks, i_c)
    if BLOCKS16:
        r = tl.arange(0, SB)
        t0 = bos + i_t * C
        m0, t_0 = t0 + r < eos, (t0 + r).to(tl.int64)
        m1, t_1 = t0 + SB + r < eos, (t0 + SB + r).to(tl.int64)
        m2, t_2 = t0 + 2 * SB + r < eos, (t0 + 2 * SB + r).to(tl.int64)
        m3, t_3 = t0 + 3 * SB + r < eos, (t0 + 3 * SB + r).to(tl.int64)
        p0 = T_buf + (t_0[:, None] * H + i_h) * C + r[None, :]
        p1 = T_buf + (t_1[:, None] * H + i_h) * C + r[None, :]
        p2 = T_buf + (t_2[:, None] * H + i_h) * C + r[None, :]
        p3 = T_buf + (t_3[:, None] * H + i_h) * C + r[None, :]
        # the diagonal blocks' upper triangles past tril_mask were never written
        A00 = tl.load(p0, mask=tril_mask(r, m0), other=0.0)
        A10 = tl.load(p1, mask=m1[:, None], other=0.0)
        A11 = tl.load(p1 + SB, mask=tril_mask(r, m1), other=0.0)
        A20 = tl.load(p2, mask=m2[:, None], other=0.0)
        A21 = tl.load(p2 + SB, mask=m2[:, None], other=0.0)
        A22 = tl.load(p2 + 2 * SB, mask=tril_mask(r, m2), other=0.0)
        A30 = tl.load(p3, mask=m3[:, None], other=0.0)
        A31 = tl.load(p3 + SB, mask=m3[:, None], other=0.0)
        A32 = tl.load(p3 + 2 * SB, mask=m3[:, None], other=0.0)
        A33 = tl.load(p3 + 3 * SB, mask=tril_mask(r, m3), other=0.0)
        D0, D1, D2, D3, T10, T20, T21, T30, T31, T32 = block_inverse(A00, A11, A22, A33, A10, A20, A21, A30, A31,
                                                                     A32, r, PREC)
        tl.debug_barrier()  # in place: every thread's loads before any store
        z = tl.zeros([SB, SB], dtype=tl.float32)
        _store_row_block(T_buf, t_0, m0, i_h, H, r, D0, z, z, z, C, SB)
        _store_row_block(T_buf, t_1, m1, i_h, H, r, T10, D1, z, z, C, SB)
        _store_row_block(T_buf, t_2, m2, i_h, H, r, T20, T21, D2, z, C, SB)
        _store_row_block(T_buf, t_3, m3, i_h, H, r, T30, T31, T32, D3, C, SB)
    else:
        rows = tl.arange(0, C)
        valid, tok, _ = chunk_tokens(bos, eos, i_t, rows, C)
        Tm = invert(load_chunk_matrix(T_buf, tok, valid, rows, i_h, H, C), C, SB, DOUBLING, PREC)
        tl.debug_barrier()  # in place: every thread's loads before any store
        store_chunk_matrix(T_buf, Tm, tok, valid, rows, i_h, H, C)


@triton.jit
def _solve_columns(k, v, G, Tm, b, w_out, u_out, kg_out, tok, valid, last_tok, i_h, H, i_j, K: tl.constexpr,
                   V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, CHANNEL: tl.constexpr, STORE_KG: tl.constexpr,
                   PREC: tl.constexpr, DT: tl.constexpr):
    """Column block i_j of one chunk: for i_j < cdiv(K, BK) key columns i_j*BK.. of w (and kg), else
    value columns of u."""
    NK: tl.constexpr = (K + BK - 1) // BK
    if i_j < NK:
        kk = i_j * BK + tl.arange(0, BK)
        km = kk < K
        m_k = valid[:, None] & km[None, :]
        p_k = (tok[:, None] * H + i_h) * K + kk[None, :]
        kf = tl.load(k + p_k, mask=m_k, other=0.0).to(DT).to(tl.float32)
        eG, eGlG, _ = load_gates(G, tok, valid, last_tok, i_h, H, kk, km, K, CHANNEL)
        w = tl.dot(Tm, kf * eG * b[:, None], input_precision=PREC)
        tl.store(w_out + p_k, w.to(w_out.dtype.element_ty), mask=m_k)
        if STORE_KG:
            tl.store(kg_out + p_k, (kf * eGlG).to(kg_out.dtype.element_ty), mask=m_k)
    else:
        vv = (i_j - NK) * BV + tl.arange(0, BV)
        m_v = valid[:, None] & (vv < V)[None, :]
        p_v = (tok[:, None] * H + i_h) * V + vv[None, :]
        vb = tl.load(v + p_v, mask=m_v, other=0.0).to(tl.float32) * b[:, None]
        u = tl.dot(Tm, vb, input_precision=PREC)
        tl.store(u_out + p_v, u.to(u_out.dtype.element_ty), mask=m_v)


@triton.jit
def _solve_kernel(k, v, G, beta, T_buf, w_out, u_out, kg_out, chunks, H, K: tl.constexpr, V: tl.constexpr,
                  BK: tl.constexpr, BV: tl.constexpr, C: tl.constexpr, CHANNEL: tl.constexpr,
                  STORE_KG: tl.constexpr, ALL: tl.constexpr, PREC: tl.constexpr, DT: tl.constexpr):
    """Program (chunk, head, j): column block j (_solve_columns); with ALL, program (chunk, head) does
    every column block, reading T once instead of once per block."""
    i_c = tl.program_id(0)
    i_h = tl.program_id(1)
    bos, eos, i_t = chunk_bounds(chunks, i_c)
    rows = tl.arange(0, C)
    valid, tok, last_tok = chunk_tokens(bos, eos, i_t, rows, C)
    b = tl.load(beta + tok * H + i_h, mask=valid, other=0.0).to(tl.float32)
    Tm = load_chunk_matrix(T_buf, tok, valid, rows, i_h, H, C)
    if ALL:
        for i_j in tl.static_range((K + BK - 1) // BK + (V + BV - 1) // BV):
            _solve_columns(k, v, G, Tm, b, w_out, u_out, kg_out, tok, valid, last_tok, i_h, H, i_j, K, V, BK, BV,
                           CHANNEL, STORE_KG, PREC, DT)
    else:
        _solve_columns(k, v, G, Tm, b, w_out, u_out, kg_out, tok, valid, last_tok, i_h, H, tl.program_id(2), K, V,
                       BK, BV, CHANNEL, STORE_KG, PREC, DT)


def pairs_invert(channel: bool) -> bool:
    """Whether the pairs kernel inverts A itself (SPLIT_CONFIG["pairs_inverse"]; for per-channel gates,
    whose pairs form A one column block at a time, also "pairs_inverse_channel")."""
    return SPLIT_CONFIG["pairs_inverse"] and (not channel or SPLIT_CONFIG["pairs_inverse_channel"])


def pairs_decayed(channel: bool, solve: bool) -> bool:
    """Whether chunk_prep_split's pairs kernel forms the scan's decayed keys (kg, k e^G) and takes a buffer for
    scale q e^G (chunk_prep's qg): per-channel gates, for the scan that does the solve, with
    SPLIT_CONFIG["pairs_decayed"]."""
    return not solve and channel and SPLIT_CONFIG["pairs_decayed"]


def launch_pairs(q, k, g, beta, scale: float, layout: Layout, G, A, Aqk, kg=None, kG=None, qG=None) -> None:
    """Aqk None (scalar gates only): not formed here (the output kernel forms it). kg, kG (per-channel gates,
    both or neither): k e^{G_last - G} and k e^G are written too (_pairs_kernel's DECAYED); kg [2, ...] takes
    the former as a bf16 hi + lo pair (scan_kg). qG (with kg and kG only): scale q e^G too."""
    H, K = k.shape[2], k.shape[3]
    split = kg is not None and kg.dim() == 5
    if layout.num_chunks:
        _pairs_kernel[(layout.num_chunks, H)](
            q, k, g, beta, G, A, Aqk if Aqk is not None else A, (kg[0] if split else kg) if kg is not None else A,
            kg[1] if split else A, kG if kG is not None else A, qG if qG is not None else A, layout.chunks,
            scale, H, K=K,
            BK=min(SPLIT_CONFIG["pairs_BK"], triton.next_power_of_2(K)), C=CHUNK, SB=SUB, CHANNEL=g.dim() == 4,
            INVERT=pairs_invert(g.dim() == 4), DOUBLING=SPLIT_CONFIG["inverse"] == "doubling",
            PREC=dot_precision(k.dtype), PAIR_PREC=dot_precision(k.dtype), DT=dot_dtype(k.dtype),
            STORE_AQK=Aqk is not None, DECAYED=kg is not None, KG_SPLIT=split, STORE_QG=qG is not None,
            **_pairs_launch())


def launch_inverse(T, layout: Layout, dtype: torch.dtype) -> None:
    if layout.num_chunks:
        _inverse_kernel[(layout.num_chunks, T.shape[2])](
            T, layout.chunks, T.shape[2], C=CHUNK, SB=SUB, BLOCKS16=SPLIT_CONFIG["inverse"] == "blocks16",
            DOUBLING=SPLIT_CONFIG["inverse"] == "doubling", PREC=dot_precision(dtype),
            num_warps=SPLIT_CONFIG["inverse_warps"])


def launch_solve(k, v, G, beta, T, layout: Layout, w, u, kg) -> None:
    _, _, H, K = k.shape
    V = v.shape[-1]
    BK = min(SPLIT_CONFIG["solve_BK"], triton.next_power_of_2(K))
    BV = min(SPLIT_CONFIG["solve_BK"], triton.next_power_of_2(V))
    together = SPLIT_CONFIG["solve_all"]
    if layout.num_chunks:
        _solve_kernel[(layout.num_chunks, H, 1 if together else triton.cdiv(K, BK) + triton.cdiv(V, BV))](
            k, v, G, beta, T, w, u, kg if kg is not None else w, layout.chunks, H, K=K, V=V, BK=BK, BV=BV,
            C=CHUNK, CHANNEL=G.dim() == 4, STORE_KG=kg is not None, ALL=together, PREC=dot_precision(k.dtype),
            DT=dot_dtype(k.dtype), num_warps=SPLIT_CONFIG["solve_warps"])


def chunk_prep_split(q, k, v, g, beta, scale: float, layout: Layout, w_dtype: torch.dtype, inter: torch.dtype,
                     aqk: bool = True, solve: bool = True, qg: torch.Tensor | None = None):
    """chunk_prep's outputs (G, w, u, Aqk, T, kg) by the three kernels above; T is always made (it is
    where A is formed), kg for per-channel gates only. w in w_dtype, u, Aqk and kg in inter; Aqk None
    when not aqk (scalar gates); w, u and kg None without solve (the solve kernel does not run), except
    that per-channel gates with SPLIT_CONFIG["pairs_decayed"] then get kg and, in w's place, k e^G (in
    w_dtype) from the pairs kernel: the operands of the scan that does the solve (chunk_prep.decayed's).
    qg: filled with scale q e^G (in its dtype) when pairs_decayed(channel, solve), else left alone."""
    _, L, H, K = k.shape
    G = torch.empty(g.shape, device=g.device, dtype=torch.float32)
    T = chunk_matrix(L, H, k.device, torch.float32)
    Aqk = chunk_matrix(L, H, k.device, inter) if aqk else None
    channel = g.dim() == 4
    decay = pairs_decayed(channel, solve)
    kg = scan_kg(k, inter) if decay else None
    kG = torch.empty_like(k, dtype=w_dtype) if decay else None
    launch_pairs(q, k, g, beta, scale, layout, G, T, Aqk, kg, kG, qg if decay else None)
    if not pairs_invert(channel):
        launch_inverse(T, layout, k.dtype)
    if not solve:
        return G, kG, None, Aqk, T, kg
    w, u, kg = chunk_solve(k, v, G, beta, T, layout, w_dtype, inter)
    return G, w, u, Aqk, T, kg


def chunk_solve(k, v, G, beta, T, layout: Layout, w_dtype: torch.dtype, inter: torch.dtype,
                kg_dtype: torch.dtype | None = None):
    """w (in w_dtype), u (in inter) and kg (per-channel gates; in kg_dtype, default inter) from the prep's G and
    T: the part of the prep that the backward re-runs when the forward kept G, T and Aqk (autograd.RECOMPUTE)."""
    w = torch.empty_like(k, dtype=w_dtype)
    u = torch.empty_like(v, dtype=inter)
    kg = torch.empty_like(k, dtype=kg_dtype or inter) if G.dim() == 4 else None
    launch_solve(k, v, G, beta, T, layout, w, u, kg)
    return w, u, kg
