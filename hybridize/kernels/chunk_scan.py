"""Stage 2 of the chunked forward: the sequential scan over chunks that carries the state.

One program per (document, head, block of BV value columns) walks its document's chunks in order:
    vn  = u - w h                       (the chunk's values after the delta-rule correction)
    h  <- e^{G_last} h + (k e^{G_last - G})^T vn
and stores each chunk's starting state h and vn (STORE_H); chunk_output.py then computes every
chunk's output o = (scale q e^G) h + Aqk vn in parallel. The columns of the state are independent,
so splitting V over programs is free parallelism; the chunks of a document are not, which makes this
kernel latency-bound for few long documents: the serial step is kept to w h and the state update (the
latter as two bf16 products for scalar gates, SCAN_CONFIG["split_update"]).
FUSE_O computes the output inside the scan instead (h never goes to memory, but the serial step
doubles); it was the first version, 1.2-1.75x slower than fla at T >= 8K, and stays for comparison.
SOLVE (round 13) takes T = (I + A)^-1, v and beta in place of w and u (both gate kinds at every size since round
22; chunk_prep.solve_in_scan):
    vn = T diag(beta) (v - (k e^G) h)   (= u - w h, with u = T diag(beta) v, w = T diag(beta) (k e^G))
The backward re-runs the scan with STORE_H to get each chunk's starting state and vn.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ._common import (CHUNK, Layout, chunk_tokens, dot_dtype, dot_precision, load_chunk_matrix, split16, stored,
                      via_registers)

# Value columns per program and warps: the tuning knobs of the latency-bound scan; fuse_o selects
# the output inside the scan (the first version) instead of chunk_output.py.
# Head dims over 128 use wide_warps / wide_stages. Measured on the H100 (triton 3.6) at head dim 256:
# 8 warps with 1 stage compiles to code that faults (illegal memory access), 2 stages overflow shared
# memory (238-271 KB); 4 warps with 1 stage is correct (benchmarks/kernels_correctness.py --wide).
# num_stages (scalar gates) and channel_stages (per-channel gates): the pipeline depth at head dims
# <= 128. Measured on the H100 (1,8192,16,128), bf16, same run: 3 stages took the GDN forward from
# 0.849 to 0.778 ms and fwd+bwd from 3.539 to 3.387 ms, but the KDA forward from 2.387 to 2.495 ms
# (benchmarks/RESULTS.md, "Kernels, round 6"). Since then kg passes through registers and the
# intermediates are "mixed": round 10's sweep (call 14) put the KDA scan alone at 0.363 ms with 2
# stages and 0.319 with 3, so per-channel gates take 3 since round 11 (the backward's dh scan stays at
# 2). HYBRIDIZE_GDR_SCAN_STAGES overrides all three depths below, for A/B runs.
# Those were measured at (1,8192,16,128), where 16 heads split V into blocks of 16. With 64 documents x
# heads ((4,4096,16,128), (2,16384,32,128)), blocks of 32 with 2 stages are the fastest: the scan
# alone, round 11 (call 11, "mixed"), against the 64-column blocks and 3 stages that ran there before:
# GDN 0.242 -> 0.235 and 0.936 -> 0.927 ms, KDA 0.394 -> 0.291 and 1.534 -> 1.127. So at head dim 128
# the scan splits V until there are 256 programs (_pick_bv), and wide_block_stages is the depth for
# blocks of 32 or more. At head dim 64, blocks of 64 with 3 stages beat 32 (GDN 0.071 -> 0.063, KDA
# 0.091 -> 0.080 at (8,2048,9,64)), so there the scan keeps V whole from 64 programs up.
# kg_via_registers: the per-channel state update's kg tile passes through registers on its way from
# memory to the product (_common.via_registers). H100, round 10, (1,8192,16,128), the scan alone:
# 0.553 -> 0.372 ms with fp32 intermediates, 0.759 -> 0.357 with "mixed" (HYBRIDIZE_GDR_KG_REGS=0
# turns it off). GDN's k e^{G_last - G} is formed in registers anyway (round 10 timed GDN with the
# same product on its k: no difference, 0.441 vs 0.442 ms).
# split_update (HYBRIDIZE_GDR_SPLIT=0 turns it off, here and in the dh scan): the scalar-gate state update
# as two bf16 products of k and the halves of e^{G_last - G} vn (split16) instead of one tf32 product with
# an fp32 copy of k transposed each step. H100, round 12, (1,8192,16,128): the scan 0.209 -> 0.157 ms, the
# GDN dh scan 0.500 -> 0.360. split_kg (HYBRIDIZE_GDR_SPLIT_KG=1, opt-in): the per-channel update as three
# products of kg's and vn's halves; more exact (KDA bf16 final state 1.3e-3 -> 3.9e-4) but slower (the
# KDA scan 0.319 -> 0.365 ms).
# solve (HYBRIDIZE_GDR_SCAN_SOLVE=0 turns it off): the forward's scan forms vn = T diag(beta) (v - e^G k h)
# itself (SOLVE) in place of reading u and w, so the prep's solve kernel does not run (split_update's case,
# chunk_prep.solve_in_scan), from solve_min_seqs_heads documents x heads, by gate kind
# (HYBRIDIZE_GDR_SCAN_SOLVE_MIN sets both). One more product on the serial step: H100, round 13
# (benchmarks/RESULTS.md, "Kernels, round 13"), GDN forward kernel sums with / without, ms: 64 documents x
# heads and more (4,4096,16,128) 0.604 / 0.741, (2,16384,32,128) 2.440 / 2.936, (8,2048,9,64) 0.204 / 0.219; 32
# (2,8192,16,128) 0.652 / 0.758, (1,8192,32,128) 0.651 / 0.813; but 16, where the scan is latency-bound,
# (1,8192,16,128) 0.439 / 0.432 (scan 0.158 -> 0.254), (1,32768,16,128) 1.731 / 1.656. So GDN took the solve kernel
# below 32 until round 22: once the scan loaded G_last and beta one chunk ahead (prefetch, round 21), the scan with the
# solve beat the solve kernel there too. H100, round 22 (call 1), GDN forward kernel sums, solve kernel -> in the scan,
# ms: (1,8192,16,128) 0.392 -> 0.344 (fla 0.344-0.348 in the same runs), (1,32768,16,128) 1.491 -> 1.304 (fla 1.365).
# Both gate kinds now fold it in at every size; solve_min_seqs_heads stays as the switch to compare.
# Per-channel gates (round 13, calls 10-11; solve_channel, HYBRIDIZE_GDR_SCAN_SOLVE_KDA=0 turns it off): the
# scan reads k e^G (bf16) and kg from one pass of the prep's _decayed_kernel, and the solve kernel does not
# run. KDA forward kernel sums with / without: (1,8192,16,128) 0.836 / 0.858 ms, (1,32768,16,128) 3.178 /
# 3.273, (2,8192,16,128) 1.636 / 1.689, (8,2048,9,64) 0.389 / 0.405: it pays at every documents x heads
# (threshold 0), given its own launch at 64 (_scan_launch).
# kg_format (HYBRIDIZE_GDR_KG_FORMAT): how kg = k e^{G_last - G} reaches that scan (bf16 keys) for the state update
# kg^T vn, whose per-key-channel gate cannot move onto vn's rows as split_update moves the scalar one.
#   "fp32": fp32 kg through registers, one tf32 product (until round 16);
#   "split" (default): the pairs kernel writes kg as bf16 hi + lo (16 bits of mantissa), and the update is three bf16
#           products kg_hi^T vn_hi + kg_hi^T vn_lo + kg_lo^T vn_hi (SPLIT 4), no fp32 tile on the serial step;
#   "bf16": kg rounded to bf16, as fla rounds its decayed keys, two products (SPLIT 3).
# H100, round 16 (calls 6-8), KDA forward kernel sums at (1,8192,16,128), (4,4096,16,128), (1,32768,16,128),
# (2,16384,32,128), (8,2048,9,64), ms: fp32 0.800 / 1.214 / 3.028 / 4.611 / 0.358; split 0.762 / 1.147 / 2.909 /
# 4.378 / 0.353; bf16 0.706 / 1.056 / 2.676 / 4.052 / 0.351. Final-state error on aligned keys ("kda bf16 D128
# aligned", kernels_correctness.py): fp32 3.1e-3, split 2.7e-3, bf16 9.1e-3 (and over the 1e-2 bound in the CPU
# test's smaller case, tests/kernels/test_forward_paths.py), which is why bf16 is opt-in. o and the gradients do not
# change (the backward recomputes its states with fp32 kg). split_kg_launch: the 64-column blocks of 64 documents x
# heads and more take 2 stages with "split" (3 overflow shared memory); 32-column blocks were slower (the scan at
# (4,4096,16,128): 64x2 0.311 ms, 32x3 0.401, 32x2 0.434).
# prefetch (per-channel gates) / prefetch_gdn (scalar gates): loads that no product takes as loaded get no pipeline
# stage from Triton, so the step waited out their latency (4 warps per multiprocessor hide none of it). Nsight Compute
# on the H100 (round 21, benchmarks/kernel_ncu.py) put 26% of the KDA scan's stall samples on G_last's load and, once
# that was gone, 22% on beta's. 1 loads G_last one chunk ahead, 2 beta too (where the scan does the solve);
# HYBRIDIZE_GDR_PREFETCH / HYBRIDIZE_GDR_PREFETCH_GDN = 0 loads them in the step. H100, KDA forward kernel sums
# 1 -> 2 (call 8), ms: (1,8192,16,128) 0.735 -> 0.667 (the scan 0.304 -> 0.237), (1,32768,16,128) 2.748 -> 2.457
# (1.166 -> 0.882); its two scans in fwd+bwd at (1,8192,16,128) 0 -> 1 (call 3): 0.646 -> 0.576 ms. GDN gains only
# where it does the solve ((4,4096,16,128) 0.498 -> 0.474, (2,16384,32,128) 1.941 -> 1.853, call 9); G_last alone
# did nothing for it. Prefetching u's tile (registers: mixed,
# up to +10% at (8,2048,9,64)) and the dh scan's G_last, Aqk^T do and w (0.539 -> 0.553 / 0.575 / 0.612 ms at
# (1,8192,16,128): that kernel is at 255 registers and spills more) were slower and were not kept.
_STAGES = os.environ.get("HYBRIDIZE_GDR_SCAN_STAGES")
_SOLVE_MIN = os.environ.get("HYBRIDIZE_GDR_SCAN_SOLVE_MIN")
SCAN_CONFIG = {"BV": None, "num_warps": 4, "num_stages": int(_STAGES or 3), "channel_stages": int(_STAGES or 3),
               "wide_block_stages": int(_STAGES or 2),
               "fuse_o": False, "wide_warps": 4, "wide_stages": 1,
               "kg_via_registers": os.environ.get("HYBRIDIZE_GDR_KG_REGS", "1") == "1",
               "split_update": os.environ.get("HYBRIDIZE_GDR_SPLIT", "1") == "1",
               "split_kg": os.environ.get("HYBRIDIZE_GDR_SPLIT_KG", "0") == "1",
               "solve": os.environ.get("HYBRIDIZE_GDR_SCAN_SOLVE", "1") == "1",
               "solve_min_seqs_heads": ({"gdn": int(_SOLVE_MIN), "kda": int(_SOLVE_MIN)} if _SOLVE_MIN
                                        else {"gdn": 0, "kda": 0}),
               "solve_channel": os.environ.get("HYBRIDIZE_GDR_SCAN_SOLVE_KDA", "1") == "1",
               "kg_format": os.environ.get("HYBRIDIZE_GDR_KG_FORMAT", "split"),
               "split_kg_launch": os.environ.get("HYBRIDIZE_GDR_SPLIT_KG_LAUNCH", "64x2"),
               "narrow_solve_bv": int(os.environ.get("HYBRIDIZE_GDR_SCAN_NARROW_SOLVE_BV", "0")),
               "prefetch": int(os.environ.get("HYBRIDIZE_GDR_PREFETCH", "2")),
               "prefetch_gdn": int(os.environ.get("HYBRIDIZE_GDR_PREFETCH_GDN", "2"))}


def prefetch_level(channel: bool) -> int:
    """The scan's PREFETCH for per-channel (SCAN_CONFIG["prefetch"]) or scalar gates (["prefetch_gdn"])."""
    return SCAN_CONFIG["prefetch" if channel else "prefetch_gdn"]


def launch_options(K: int, BV: int, dtype: torch.dtype, channel: bool = False) -> dict:
    """num_warps / num_stages of the sequential kernels (this scan and the backward's dh scan);
    fp32 tiles need a single stage to fit in shared memory."""
    if K <= 128:
        nw, ns = SCAN_CONFIG["num_warps"], SCAN_CONFIG["channel_stages" if channel else "num_stages"]
    else:
        nw, ns = SCAN_CONFIG["wide_warps"], SCAN_CONFIG["wide_stages"]
    return {"num_warps": nw, "num_stages": 1 if dtype == torch.float32 else ns}


@triton.jit
def load_gates(G, tok, valid, last_tok, i_h, H, kk, km, K: tl.constexpr, CHANNEL: tl.constexpr):
    """G of one chunk and its value at the chunk's last real token: returns (e^G, e^{G_last - G},
    e^{G_last}) shaped to multiply [C, BK] tiles, [C, BK] tiles and the [BK, BV] state."""
    return gates_with_last(G, tok, valid, last_gate(G, last_tok, i_h, H, kk, km, K, CHANNEL), i_h, H, kk, km, K,
                           CHANNEL)


@triton.jit
def last_gate(G, last_tok, i_h, H, kk, km, K: tl.constexpr, CHANNEL: tl.constexpr):
    """G at token last_tok: [BK] for per-channel gates, a scalar else. The scan loads it one chunk ahead (PREFETCH):
    loaded in the step that uses it, its latency was a quarter of the KDA scan's time."""
    if CHANNEL:  # (an else, not a second return: triton would type both returns)
        return tl.load(G + (last_tok * H + i_h) * K + kk, mask=km, other=0.0)
    else:
        return tl.load(G + last_tok * H + i_h)


@triton.jit
def chunk_last(bos, eos, i_t, C: tl.constexpr):
    """chunk_tokens' last_tok, clamped to token 0 (a prefetch past an empty first document reads a real token)."""
    return tl.maximum(tl.minimum(bos + (i_t + 1) * C, eos) - 1, 0).to(tl.int64)


@triton.jit
def gates_with_last(G, tok, valid, Gl, i_h, H, kk, km, K: tl.constexpr, CHANNEL: tl.constexpr):
    """load_gates with G_last given (last_gate's, loaded earlier)."""
    if CHANNEL:
        Gc = tl.load(G + (tok[:, None] * H + i_h) * K + kk[None, :], mask=valid[:, None] & km[None, :], other=0.0)
        return tl.exp(Gc), tl.exp(Gl[None, :] - Gc), tl.exp(Gl)[:, None]
    else:
        Gc = tl.load(G + tok * H + i_h, mask=valid, other=0.0)
        return tl.exp(Gc)[:, None], tl.exp(Gl - Gc)[:, None], tl.exp(Gl)


@triton.jit
def _scan_kernel(q, k, kg_lo, w, u, G, Aqk, beta, kG, h0, o, ht, h_out, vn_out, cu, chunk_offsets, scale, H,
                 K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, C: tl.constexpr,
                 CHANNEL: tl.constexpr, KG: tl.constexpr, HAS_H0: tl.constexpr, STORE_FINAL: tl.constexpr,
                 STORE_H: tl.constexpr, STORE_VN: tl.constexpr, FUSE_O: tl.constexpr, PREC: tl.constexpr,
                 DT: tl.constexpr, WDT: tl.constexpr, KG_REGS: tl.constexpr, SPLIT: tl.constexpr,
                 KDT: tl.constexpr, SOLVE: tl.constexpr, PREFETCH: tl.constexpr):
    """DT: operand type of the products on u's side (the state update, the fused output); WDT: of w h,
    which can be a 16-bit product where u is fp32 (intermediates "mixed": see chunk_prep.INTERMEDIATES).
    SPLIT 1 (scalar gates, bf16 k, fp32 vn): the state update as two bf16 products, k^T hi + k^T lo,
    with hi + lo = e^{G_last - G} vn to 16 bits of mantissa (KDT: their operand type). SPLIT 2 (fp32 kg):
    kg and vn both split, three products (the lo^T lo term is under 2^-16 of the rest).
    SOLVE (split_update's case): w holds T = (I + A)^-1 (fp32 [L, H, C]) and u the values v; the prep's
    solve is folded in, vn = T diag(beta) (v - e^G (k h)), so w and u never go to memory. Per-channel
    gates take (k e^G) from kG (bf16, the prep's _decayed_kernel), and k is kg as without SOLVE."""
    i_v = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    bos = tl.load(cu + i_n)
    eos = tl.load(cu + i_n + 1)
    c0 = tl.load(chunk_offsets + i_n).to(tl.int64)
    rows = tl.arange(0, C)
    kk = tl.arange(0, BK)
    vv = i_v * BV + tl.arange(0, BV)
    km = kk < K
    vm = vv < V
    m_s = km[:, None] & vm[None, :]
    p_s = kk[:, None] * V + vv[None, :]
    state_base = (i_n * H + i_h).to(tl.int64) * K * V
    if HAS_H0:
        h = tl.load(h0 + state_base + p_s, mask=m_s, other=0.0).to(tl.float32)
    else:
        h = tl.zeros([BK, BV], dtype=tl.float32)
    nt = tl.cdiv(eos - bos, C)
    if PREFETCH:
        Gl_next = last_gate(G, chunk_last(bos, eos, 0, C), i_h, H, kk, km, K, CHANNEL)
        if PREFETCH >= 2 and SOLVE:
            valid_n, tok_n, _ = chunk_tokens(bos, eos, 0, rows, C)
            b_next = tl.load(beta + tok_n * H + i_h, mask=valid_n, other=0.0)
    for i_t in range(0, nt):
        valid, tok, last_tok = chunk_tokens(bos, eos, i_t, rows, C)
        if PREFETCH:  # this chunk's G_last came with the last step; fetch the next one's (the last chunk's again)
            Gl = Gl_next
            Gl_next = last_gate(G, chunk_last(bos, eos, i_t + 1, C), i_h, H, kk, km, K, CHANNEL)
            if PREFETCH >= 2 and SOLVE:  # and beta, the next stall once G_last's was gone (ncu, round 21)
                b_b = b_next.to(tl.float32)
                valid_n, tok_n, _ = chunk_tokens(bos, eos, i_t + 1, rows, C)  # past the last chunk: all masked
                b_next = tl.load(beta + tok_n * H + i_h, mask=valid_n, other=0.0)
        m_k = valid[:, None] & km[None, :]
        m_v = valid[:, None] & vm[None, :]
        p_k = (tok[:, None] * H + i_h) * K + kk[None, :]
        p_v = (tok[:, None] * H + i_h) * V + vv[None, :]
        if STORE_H:
            tl.store(h_out + ((c0 + i_t) * H + i_h) * K * V + p_s, stored(h, h_out.dtype.element_ty), mask=m_s)
        if SOLVE:
            b_T = load_chunk_matrix(w, tok, valid, rows, i_h, H, C)
            if PREFETCH < 2:
                b_b = tl.load(beta + tok * H + i_h, mask=valid, other=0.0).to(tl.float32)
        else:
            b_w = tl.load(w + p_k, mask=m_k, other=0.0).to(WDT)
        b_u = tl.load(u + p_v, mask=m_v, other=0.0).to(tl.float32)
        b_k = tl.load(k + p_k, mask=m_k, other=0.0)
        if SPLIT == 4:
            b_klo = tl.load(kg_lo + p_k, mask=m_k, other=0.0)
        if SPLIT != 1 and SPLIT < 3:
            b_k = b_k.to(tl.float32)
        if KG and KG_REGS and SPLIT < 3:
            b_k = via_registers(b_k, scale / scale)
        if PREFETCH:
            eG, eGlG, eGl = gates_with_last(G, tok, valid, Gl, i_h, H, kk, km, K, CHANNEL)
        else:
            eG, eGlG, eGl = load_gates(G, tok, valid, last_tok, i_h, H, kk, km, K, CHANNEL)
        if SOLVE:  # u - w h = T diag(beta) (v - e^G k h): T's product on the residual, in tf32
            if CHANNEL:
                b_kG = tl.load(kG + p_k, mask=m_k, other=0.0).to(WDT)
                x = (b_u - tl.dot(b_kG, h.to(WDT))) * b_b[:, None]
            else:
                x = (b_u - tl.dot(b_k.to(WDT), h.to(WDT)) * eG) * b_b[:, None]
            vn = tl.dot(b_T, x, input_precision=PREC)
        else:
            vn = b_u - tl.dot(b_w, h.to(WDT), input_precision=PREC)
        vn_dt = vn.to(DT)
        if STORE_VN:
            tl.store(vn_out + p_v, vn.to(vn_out.dtype.element_ty), mask=m_v)
        if FUSE_O:
            b_q = tl.load(q + p_k, mask=m_k, other=0.0).to(tl.float32) * scale
            b_A = load_chunk_matrix(Aqk, tok, valid, rows, i_h, H, C).to(DT)
            b_o = tl.dot((b_q * eG).to(DT), h.to(DT), input_precision=PREC)
            b_o += tl.dot(b_A, vn_dt, input_precision=PREC)
            tl.store(o + p_v, b_o.to(o.dtype.element_ty), mask=m_v)
        if SPLIT == 1 or SPLIT == 3:
            # Two bf16 products of the keys as loaded (exact) and vn's halves. SPLIT 1: the scalar gate goes on vn's
            # rows, so there is no fp32 copy of the [C, K] tile to transpose through shared memory each step, as tf32
            # operands need. SPLIT 3 (kg in bf16, kg_format "bf16"): the gate is already in the keys.
            hi, lo = split16(vn * eGlG if SPLIT == 1 else vn, KDT)
            kt = tl.trans(b_k.to(KDT))
            h = tl.dot(kt, lo, tl.dot(kt, hi, h * eGl))
        elif SPLIT == 2 or SPLIT == 4:
            # Three bf16 products of kg's and vn's halves (the lo^T lo term is under 2^-16 of the rest). SPLIT 2:
            # fp32 kg split here; SPLIT 4 (kg_format "split"): its halves as the prep wrote them.
            hi, lo = split16(vn, KDT)
            if SPLIT == 2:
                k_hi, k_lo = split16(b_k, KDT)
            else:
                k_hi, k_lo = b_k.to(KDT), b_klo.to(KDT)
            k_hi, k_lo = tl.trans(k_hi), tl.trans(k_lo)
            h = tl.dot(k_lo, hi, tl.dot(k_hi, lo, tl.dot(k_hi, hi, h * eGl)))
        elif KG:  # k arrives as kg = k e^{G_last - G}, from the prep (no exp on this serial path)
            h = h * eGl + tl.dot(tl.trans(b_k.to(DT)), vn_dt, input_precision=PREC)
        else:
            h = h * eGl + tl.dot(tl.trans((b_k * eGlG).to(DT)), vn_dt, input_precision=PREC)
    if STORE_FINAL:
        tl.store(ht + state_base + p_s, h, mask=m_s)


def split_kind(in_dtype: torch.dtype, u_dtype: torch.dtype, w_dtype: torch.dtype, K: int, kg: bool,
               excluded: bool = False, kg_dtype: torch.dtype | None = None, kg_split: bool = False) -> int:
    """The scan's SPLIT: 1 for split_update's case, and under the same conditions for per-channel gates' kg:
    4 for kg as a bf16 hi + lo pair (kg_split), 3 for bf16 kg (kg_dtype), 2 for fp32 kg with
    SCAN_CONFIG["split_kg"]; else 0."""
    if not split_update(in_dtype, u_dtype, w_dtype, K, excluded):
        return 0
    if kg:
        if kg_split:
            return 4
        if kg_dtype == torch.bfloat16:
            return 3
        return 2 if SCAN_CONFIG["split_kg"] else 0
    return 1


def split_update(k_dtype: torch.dtype, u_dtype: torch.dtype, w_dtype: torch.dtype, K: int,
                 excluded: bool = False) -> bool:
    """Whether the state-side products run as pairs of bf16 products (SPLIT, here and in the backward's
    dh scan): bf16 keys and w (as "mixed" stores w) with fp32 vn, head dim <= 128, and not `excluded` (the
    callers' other cases: per-channel gates in the dh scan, the fused output). fp16 is left out (the
    low half underflows its range sooner); head dim 256 and fp32 w (intermediates="fp32") are left out
    because the split scan faulted or returned inf there (illegal memory access, H100, triton 3.6,
    round 12, calls 2 and 13), as its 8-warp launch had before."""
    return (SCAN_CONFIG["split_update"] and not excluded and k_dtype == w_dtype == torch.bfloat16
            and u_dtype == torch.float32 and K <= 128)


def _pick_bv(V: int, programs: int, K: int, enough: int = 128) -> int:
    """Few documents x heads leave most multiprocessors idle: split V finer (down to 16) until there
    are `enough` programs. Head dim 256 holds [256, BV] states and [C, 256] tiles: BV <= 32 keeps them
    within shared memory."""
    if SCAN_CONFIG["BV"]:
        return min(SCAN_CONFIG["BV"], triton.next_power_of_2(V))
    bv = min(64 if K <= 128 else 32, triton.next_power_of_2(V))
    while bv > 16 and programs * triton.cdiv(V, bv) < enough:
        bv //= 2
    return bv


def _scan_launch(V: int, programs: int, K: int, dtype: torch.dtype, channel: bool,
                 solve: bool = False, kg_split: bool = False) -> tuple[int, dict]:
    """(BV, launch options) of this scan; the round-11 rules in SCAN_CONFIG's comment. Only the
    forward scan's: the backward's dh scan, timed separately, keeps _pick_bv and launch_options as
    they are. Per-channel gates with the solve folded in (solve) take whole 64-column blocks and their
    3 stages where the plain scan takes blocks of 32 with 2: at (4,4096,16,128), H100, round 13 (call
    11), 0.347 ms against 0.492 (the plain scan's best there: 0.290). With kg as a hi + lo pair (kg_split) the
    64-column blocks' third stage does not fit in shared memory (237,568 bytes needed at head dim 128, H100):
    SCAN_CONFIG["split_kg_launch"] (BV x stages) applies there. At head dim <= 64, scalar gates' scan that folds the
    solve in takes at most SCAN_CONFIG["narrow_solve_bv"] value columns (0: no cap). H100, round 17, (8,2048,9,64):
    the scan alone (call 7) 0.099 ms with 64 columns -> 0.089 with 32; in the forward (call 8) 0.085 -> 0.080, the
    forward's kernels 0.206 -> 0.200. That cap (32) was stale by round 23: since the prefetch (round 21) the 64-column
    blocks are faster there again, H100, round 23 (calls 5-6, kernel_profile.py --shapes 4 --modes fwd --gates gdn):
    the scan 0.073 -> 0.068 ms, the forward's kernels 0.178 -> 0.173 (fla 0.175-0.176), so the cap is now 0 (none;
    HYBRIDIZE_GDR_SCAN_NARROW_SOLVE_BV=32 restores it). Per-channel gates keep 64: 32 columns with 2 stages were
    faster alone (0.123 -> 0.114) but not in the forward (scan 0.096 -> 0.102, forward 0.353 -> 0.360)."""
    if K <= 64:
        bv = _pick_bv(V, programs, K, enough=64)
    else:
        bv = _pick_bv(V, programs, K, enough=256 if K <= 128 else 128)
    opts = launch_options(K, bv, dtype, channel)
    if K <= 64 and solve and not channel and SCAN_CONFIG["narrow_solve_bv"] and not SCAN_CONFIG["BV"]:
        bv = min(bv, SCAN_CONFIG["narrow_solve_bv"])
    if 64 < K <= 128 and bv >= 32:
        if channel and solve:
            block, stages = 64, opts["num_stages"]
            if kg_split:
                block, stages = (int(x) for x in SCAN_CONFIG["split_kg_launch"].split("x"))
            if not SCAN_CONFIG["BV"]:
                bv = min(block, triton.next_power_of_2(V))
            opts["num_stages"] = min(opts["num_stages"], stages)
        else:
            opts["num_stages"] = min(opts["num_stages"], SCAN_CONFIG["wide_block_stages"])
    return bv, opts


def chunk_scan(q, k, w, u, G, Aqk, scale: float, layout: Layout, initial_state=None,
               output_final_state: bool = False, store_h: bool = False, fuse_o: bool = False,
               state_dtype: torch.dtype | None = None, kg=None, solve: tuple | None = None,
               vn16: bool = False):
    """Runs the scan. Returns (o or None, final state or None, h [NC,H,K,V] or None, vn or None).
    h is stored in state_dtype (default: u's dtype), vn in u's dtype. kg: k e^{G_last - G} from the
    prep, used in place of k in the state update when given. solve: (T, v, beta, kG) in place of w and u
    (both None then; split_update's case, see solve_in_scan; kG = k e^G for per-channel gates, else
    None): the scan forms vn from them, and vn is fp32. vn16: vn is stored in fp16 instead (for the output
    kernel only: chunk_output's vn_check; the state update keeps fp32 vn; elements past fp16's range
    become inf there)."""
    _, L, H, K = k.shape
    beta = kG = None
    if solve is not None:
        T, v, beta, kG = solve
        w, u = T, v
    V = u.shape[-1]
    N = layout.num_seqs
    dev = k.device
    o = torch.empty(1, L, H, V, device=dev, dtype=q.dtype) if fuse_o else None
    ht = torch.empty(N, H, K, V, device=dev, dtype=torch.float32) if output_final_state else None
    h_out = torch.empty(layout.num_chunks, H, K, V, device=dev, dtype=state_dtype or u.dtype) if store_h else None
    # vn keeps the intermediates' precision: the output kernel's q h + Aqk vn cancels on aligned keys,
    # and vn rounded to bf16 tripled the output error there (1.1e-2 vs 3.9e-3; h in bf16 costs nothing).
    vn_dtype = torch.float32 if solve is not None else u.dtype
    vn = torch.empty(1, L, H, V, device=dev, dtype=torch.float16 if vn16 else vn_dtype) if store_h else None
    kg_lo = None
    if kg is not None and kg.dim() == 5:  # kg_format "split": [2, ...] = (hi, lo)
        kg, kg_lo = kg[0], kg[1]
    BV, opts = _scan_launch(V, N * H, K, k.dtype, G.dim() == 4, solve is not None, kg_lo is not None)
    if fuse_o:  # the output's tiles too: 3 stages needed 261 KB of shared memory (H100, bf16, head dim 128)
        opts["num_stages"] = min(opts["num_stages"], 2)
    dummy = u
    # (with solve: the state update as without it, w's dtype being kG's or k's)
    w_dtype = (kG if kG is not None else k).dtype if solve is not None else w.dtype
    split = split_kind(k.dtype, vn_dtype, w_dtype, K, kg is not None, fuse_o or (G.dim() == 4 and kg is None),
                       kg.dtype if kg is not None else None, kg_lo is not None)
    if split and opts["num_stages"] < 2:
        # triton 3.6 compiles the scalar-gate split scan at one stage into wrong gradients (6 GDN bf16 cases, dq up to
        # 1.0; H100, round 20, call 5), as it did the dh scan's (launch_dh): the split scans take at least 2, whatever
        # HYBRIDIZE_GDR_SCAN_STAGES says
        opts["num_stages"] = 2
    if N:
        _scan_kernel[(triton.cdiv(V, BV), N * H)](
            q, k if kg is None else kg, kg_lo if kg_lo is not None else dummy, w, u, G,
            Aqk if Aqk is not None else dummy,
            beta if beta is not None else dummy, kG if kG is not None else dummy,
            initial_state if initial_state is not None else dummy,
            o if fuse_o else dummy, ht if ht is not None else dummy, h_out if store_h else dummy,
            vn if store_h else dummy, layout.cu, layout.chunk_offsets, scale, H,
            K=K, V=V, BK=triton.next_power_of_2(K), BV=BV, C=CHUNK, CHANNEL=G.dim() == 4, KG=kg is not None,
            HAS_H0=initial_state is not None, STORE_FINAL=output_final_state, STORE_H=store_h,
            STORE_VN=store_h, FUSE_O=fuse_o, PREC=dot_precision(k.dtype), DT=dot_dtype(vn_dtype),
            WDT=dot_dtype(w_dtype), KG_REGS=SCAN_CONFIG["kg_via_registers"], SPLIT=split,
            KDT=dot_dtype(torch.bfloat16), SOLVE=solve is not None,
            PREFETCH=prefetch_level(G.dim() == 4), **opts)
    return o, ht, h_out, vn
