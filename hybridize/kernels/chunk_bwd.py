"""Backward of the chunked gated delta rule.

Per chunk, forward (see chunk_prep.py / chunk_scan.py), with h the state at the chunk start:
    vn = T (beta v) - T (beta k e^G) h       o = (q' e^G) h + Aqk vn      (q' = scale q)
    h' = e^{G_last} h + (k e^{G_last - G})^T vn
Stage 1 (_dh_kernel), sequential over chunks in reverse, per (document, head, value block):
    dvn = Aqk^T do + (k e^{G_last - G}) dh'
    dh  = e^{G_last} dh' + (q' e^G)^T do - w^T dvn
Stage 2 (_bwd_kernel), all chunks in parallel, per (chunk, head, block of key columns). With
dvb = T^T dvn, the triangular solve's gradient collapses (T (I + A) = I) to
    d(beta v) = dvb,   d(beta k e^G) = -dvb h^T,   dA = -strict_tril(dvb vn^T),   dAqk = tril(do vn^T)
and the rest is the product rule through the decay factors. dg is the reverse cumulative sum of dG
inside the chunk plus dG_last on every row. Everything that sums over key columns (dbeta, and dg for
scalar gates) is written per key block and summed on the host.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ._common import (CHUNK, SUB, Layout, channel_colside, channel_grads, channel_rowside, chunk_bounds, chunk_matrix,
                      chunk_tokens, dot_dtype, dot_precision, gate_kind, load_chunk_matrix, split16, stored,
                      store_chunk_matrix)
from .chunk_prep import decayed
from .chunk_scan import SCAN_CONFIG, _pick_bv, chunk_last, last_gate, launch_options, load_gates, split_update

# decayed (per-channel gates): "kernel" (default) hands the dh scan q e^G and k e^{G_last - G} formed
# in parallel (chunk_prep.decayed; kg is the forward's own), as the forward's scan gets kg; "scan"
# exponentiates them inside the serial loop (HYBRIDIZE_GDR_DH=scan).
# factors (per-channel gates): "shared" (default) forms the split decay factors of the four
# pairwise-gradient products once per column block (_common.channel_grads: 8 exp'd [C, BK] tiles per
# program instead of 32); "per_product" forms them per product (HYBRIDIZE_GDR_BWD_FACTORS=per_product).
# Timed on the H100 (round 8, KDA fwd+bwd at (1,8192,16,128)): 6.210 ms with neither, 5.766 with
# decayed, 6.001 with shared, 5.543 with both.
# dvn_local: where the dh scan's dvn = Aqk^T do + kg dh' gets its first term, which does not depend on
# the state. "kernel" (default): by _local_dvn_kernel, all chunks in parallel, into an fp32 buffer the
# scan adds to (fla 0.6.0 does the same, chunk_kda_bwd_kernel_dAv); "scan" (HYBRIDIZE_GDR_DVN=scan):
# inside the serial loop, one [C, C] x [C, BV] product and the Aqk tile per step. H100, round 8, at
# (1,8192,16,128) under torch.profiler: the dh scan 0.901 -> 0.813 ms (GDN), 1.172 -> 0.833 (KDA),
# plus 0.07 for the parallel kernel.
# design: "fused": one stage-2 program per (chunk, head, key block) forms everything, so the value-side
# products (dvb = T^T dvn, dA, dM, dv) are repeated in every key block and their [C, C] accumulators
# share registers with the key side's. "split": _bwd_values_kernel forms them once per (chunk, head)
# into fp32 buffers (values_BV columns at a time, values_warps warps), and the key-block kernel loads
# them; with the value side gone, narrower key blocks cost no repeated work: split_BK 32 at 8 warps
# spills 1.2 KB per program for KDA at head dim 128 where the fused kernel (BK 64) spills 3.5 KB
# (kernel_resources.py, triton 3.6, sm_90). "auto" (default): split for per-channel gates at head dim
# >= 128, fused otherwise, from the H100 (round 8, PART=3 of kernels_next_gpu.sh), fwd+bwd ms fused ->
# split: KDA (1,8192,16,128) 4.858 -> 4.644; KDA (8,2048,9,64) 2.127 -> 2.322; GDN (1,8192,16,128)
# 2.987 -> 3.387; GDN (8,2048,9,64) 1.914 -> 2.205. HYBRIDIZE_GDR_BWD=fused or split fixes one.
# dh16: the gate kinds ("gdn", "kda") whose dh scan takes (k e^{G_last - G}) dh' as a 16-bit product
# when w is stored in 16 bits but vn is not (intermediates "mixed"). None by default: on the H100
# (round 10, GDN (1,8192,16,128)) it took the dh scan from 0.499 to 0.461 ms (0.8% of fwd+bwd) but
# the aligned-key gradients up by a third (dv 5.5e-3 -> 7.3e-3, dbeta 5.6e-3 -> 7.4e-3; both read
# 5.5-5.7e-3 in six calls without it, while dg moves between 1.8e-2 and 2.9e-2 from call to call).
# HYBRIDIZE_GDR_DH16=gdn turns it on.
# dh_split_channel: per-channel gates' dh scan with every product as bf16 pairs (_dh_kernel's SPLIT 2). Off by
# default (HYBRIDIZE_GDR_DH_SPLIT_KDA=1 turns it on): H100, round 18 (call 1, kernel_stages.py --dh-sweep), the
# dh scan at (1,8192,16,128) 0.544 -> 0.563 ms in the fwd+bwd profile and (4,4096,16,128) 0.752 -> 0.881 at
# their best launches; only at head dim 64 was it faster, (8,2048,9,64) 0.199 -> 0.173, 2% of that fwd+bwd.
# split_stages: pipeline stages of scalar gates' dh scan with its products as bf16 pairs (SPLIT 1; at least 2, see
# launch_dh). 3 (HYBRIDIZE_GDR_DH_SPLIT_STAGES=2 restores round 12's 2): H100, round 18 (call 9, kernel_stages.py
# --dh-sweep with the Aqk^T do kernel), the dh scan at (1,8192,16,128) 0.439 -> 0.342 ms (BV 16), at (8,2048,9,64)
# 0.153 -> 0.133 (BV 32); call 10: (4,4096,16,128) 0.497 -> 0.447, (2,16384,32,128) 1.946 -> 1.699 (BV 64), and GDN
# fwd+bwd kernel sums 2.009 -> 1.914 ms at (1,8192,16,128), 3.250 -> 3.227 at (4,4096,16,128), 0.854 -> 0.832 at
# (8,2048,9,64); every correctness case passes.
# stages: pipeline stages of stage 2's key-side kernel (_bwd_kernel; 1 until round 18), by design and gate kind
# (HYBRIDIZE_GDR_BWD_STAGES=N sets all). 2, and 3 for per-channel gates' split design (round 19, below). H100, round 18
# (call 12), fwd+bwd kernel sums 1 -> 2 stages, ms: GDN 1.925 -> 1.846 at (1,8192,16,128)
# (the kernel 0.911 -> 0.840), 3.220 -> 3.043 at (4,4096,16,128); KDA 3.807 -> 3.786 and 6.446 -> 6.385; head dim 64
# within 0.01 (GDN 0.831 -> 0.827, KDA 1.614 -> 1.622); every correctness case passes.
# decayed16: the backward's decayed operands (kg = k e^{G_last - G} from the solve kernel, q e^G from _decayed_kernel;
# per-channel gates) in fp16 instead of fp32, when the fused L2 norm bounds them (|q' e^G|, |k' e^{G_last - G}| <=
# 2^1/2: l2norm.py's x 2^e has norm 1/rho <= 2^1/2, and every gate factor is <= 1) and the inputs are 16-bit with fp32
# intermediates. Their products in the recompute scan and the dh scan stay tf32 on fp32 tiles, and fp16 keeps tf32's
# 10 explicit mantissa bits (rounded, where tf32 truncates), so only values under fp16's normal range (6.1e-5) lose
# relative precision, by at most 3e-8 absolute. HYBRIDIZE_GDR_DECAYED16=0 keeps fp32. H100, round 19 (calls 1-2), KDA
# fwd+bwd kernel sums with the fused L2 norm, fp32 -> fp16, two runs each, ms: (1,8192,16,128) 4.078 / 4.092 ->
# 4.071 / 4.071, (4,4096,16,128) 7.054 / 6.971 -> 6.908 / 6.839, (8,2048,9,64) 1.768 / 1.743 -> 1.741 / 1.709. The
# recompute scan 0.657 -> 0.618, the solve 0.142 -> 0.128 and _decayed_kernel 0.061 -> 0.050 at (1,8192,16,128), but
# the dh scan 0.548 -> 0.606 there (0.736 -> 0.679 at (4,4096,16,128)): it was not bound by these loads as round 18
# guessed; fp16 tiles are converted in registers and staged again for the tf32 products. kg alone in fp16 (q e^G in
# fp32) was worse: the dh scan 0.762 ms.
# dh_store16: with bf16 inputs and per-channel gates, the dh scan stores each chunk's dh for stage 2 in bf16 instead
# of fp32 (it carries dh in fp32; dh0 stays fp32), as autograd.STATES16 stores h; round 20's figures are there.
# HYBRIDIZE_GDR_DH_STORE16=0 keeps fp32.
# BK / BV: stage 2's key columns per program and value columns per step, by design and gate kind
# ("gdn" scalar, "kda" per-channel). H100, round 10, the whole chunk_bwd swept over BK {32, 64} x
# BV {32, 64} x warps {4, 8} (kernel_stages.py --bwd-sweep; 8 warps won everywhere), ms, the old
# setting (BK 64, BV 64 fused; BK 32, BV 64 split) -> the chosen one:
#   GDN (1,8192,16,128), fused   1.907 -> 1.823 (BV 32)
#   GDN (8,2048,9,64), fused     0.835 -> 0.627 (BV 32)
#   KDA (8,2048,9,64), fused     1.281 -> 1.189 (BK 32)
#   KDA (1,8192,16,128), split   2.748, already the best
# Round 19 (H100, calls 7-8, kernel_stages.py --bwd-sweep, the whole chunk_bwd, 8 warps): KDA's split design (head dim
# 128) from BV 64 at 2 stages to BV 32 at 3: (1,8192,16,128) 2.558 -> 2.466 ms (4 stages: 2.454), (4,4096,16,128) 4.657
# -> 4.441; BK 16 was slower everywhere (3.352 and 6.210 at its best), BK 64 too (2.512, 4.554). KDA's fused design
# (head dim 64) stays (BK 32, BV 64: 1.083 / 1.089 / 1.088 ms at 1 / 2 / 3 stages), and GDN keeps 2 stages (3: 1.191 ->
# 1.221 at (1,8192,16,128), 2.103 -> 2.165 at (4,4096,16,128), 0.516 -> 0.510 at (8,2048,9,64)).
# dh_BV / dh_warps / dh_stages: the dh scan's launch, None = as the forward scan's (_pick_bv,
# launch_options). Set by benchmarks/kernel_stages.py --dh-sweep, or by HYBRIDIZE_GDR_DH_BV / _WARPS / _STAGES. Round
# 20 (call 14): 32 value columns in place of _pick_bv's 64 at 64 documents x heads made no difference in fwd+bwd (KDA
# dh scan 0.721 -> 0.725 ms at (4,4096,16,128), 2.805 -> 2.829 at (2,16384,32,128); GDN slower), although the
# isolated sweep (call 12) had put it 13% ahead: the sweep times the kernel alone, outside the backward.
# dh_qsplit (round 22; HYBRIDIZE_GDR_DH_QSPLIT=0 turns it off): per-channel gates' dh scan as _dh_kernel's SPLIT 3 under
# "mixed" (bf16 w and do, fp32 dvn), head dim <= 128. Nsight Compute (round 21) had the dh scan waiting on loads that
# no product takes as loaded (so Triton gives them no pipeline stage) and on the fp32 tiles of its tf32 products
# transposed through registers. Here scale q e^G comes as a bf16 hi + lo pair from chunk_prep.decayed (the product
# with do is two bf16 products, 16 bits of q e^G's mantissa where tf32 kept 10), and the [K, C] operands are addressed
# transposed at their load instead of tl.trans'd. H100, round 22, KDA fwd+bwd, the dh scan / the kernel sum, off ->
# on (call 5, same run), ms: (1,8192,16,128) 0.540 / 3.481 -> 0.409 / 3.341, (4,4096,16,128) 0.721 / 5.980 -> 0.389 /
# 5.642, (8,2048,9,64) 0.143 / 1.536 -> 0.119 / 1.511. w^T dvn as two bf16 products of dvn's halves too (0.437 /
# 0.394 / 0.122 ms with tl.trans, call 2) gave inf or wrong gradients on the H100 in 3 of the 5 16-bit KDA cases at
# every pipeline depth and product order tried (calls 3-4; right under the interpreter, and the q pair alone is
# right): triton 3.6 again, as round 12's KDA dh split and round 20's w^T dvn pairs had been.
# dh_prefetch (SPLIT 3 only; HYBRIDIZE_GDR_DH_PREFETCH=0/1/2 fixes it, default "auto": dh_prefetch_level): G_last (1)
# and Aqk^T do (2) loaded one chunk ahead, as the forward scan's prefetch. Round 21 had found this slower (the kernel
# at 255 registers then, spilling); SPLIT 3 holds 186 at 16 value columns. H100, round 22 (call 8), the dh scan / KDA
# fwd+bwd kernel sums at levels 0 / 1 / 2, ms: (1,8192,16,128) 0.408 / 0.402 / 0.335 and 3.336 / 3.334 / 3.269;
# (8,2048,9,64) 0.120 / 0.119 / 0.107 and 1.519 / 1.514 / 1.502; but (4,4096,16,128), 64 value columns, 0.389 / 0.383 /
# 0.461 and 5.652 / 5.630 / 5.712.
# dh_kg16 (round 25; HYBRIDIZE_GDR_DH_KG16=0 turns it off): SPLIT 3's kg in bf16 (formed beside q e^G's pair by
# chunk_prep.decayed, unless the solve gave it in fp16 already: decayed16), still a tf32 product after its conversion
# in registers, so that dh_kg16_stages (3) pipeline stages fit in shared memory up to dh_kg16_max_bv (32) value
# columns (182 KB at 16; 246 KB with fp32 kg). Only there: at 64 columns (2 stages) the conversion's registers spill
# (kernel_resources.py).
# At 2 stages Triton issues each step's tile loads after the step's last product and waits for them at the next
# step's top, so the loads' whole latency was on the serial chain; at 3 they are issued two steps ahead. H100, round
# 25 (call 1, PART=154, kg cast by torch there), the dh scan at (1,8192,16,128): 0.334 -> 0.327 ms at 2 stages, 0.271
# at 3; bf16 errors of every KDA case the same to two digits. With the decayed pass forming kg
# (call 2, PART=155, two runs each, same process): the dh scan 0.335 -> 0.269, the decayed pass 0.059 -> 0.084, KDA
# fwd+bwd kernel sums 3.237 -> 3.195 ms; (1,32768,16,128) 12.546 -> 12.443 (the pass 0.244 -> 0.346: bytes);
# (8,2048,9,64) 1.477 -> 1.489; 32 value columns at 64 documents x heads (3 stages) were slower than 64 (2 stages).
# recompute_kg16 (round 25; HYBRIDIZE_GDR_RECOMPUTE_KG16=0 turns it off; recompute_kg_dtype): where the fused L2 norm
# does not bound the keys (so decayed16's fp16 does not apply), the recompute's solve writes kg in bf16, so the
# recompute scan takes its SPLIT 3 (two bf16 products, as fla rounds its decayed keys) and the dh scan its 16-bit kg
# without the decayed pass forming one. The forward keeps fp32/split kg (round 16: bf16 kg raised the forward's final
# state error on aligned keys to 9.1e-3); here o is the forward's, and the gradients' errors did not move (call 3,
# PART=156, every KDA case to two digits). KDA fwd+bwd kernel sums, off -> on, two runs each: (1,8192,16,128) 3.216 /
# 3.216 -> 3.054 / 3.062 ms (the two scans 0.518 -> 0.388, the solve 0.138 -> 0.125, the decayed pass 0.084 ->
# 0.060), (1,32768,16,128) 12.335 / 12.344 -> 11.721 / 11.706. At 64 value columns (2 stages) the dh scan then converts
# bf16 kg in registers (40 bytes spilled, compiled) and timed the same as with fp32 kg (call 4 against round 24):
# (4,4096,16,128) 0.383 -> 0.382 ms, (2,16384,32,128) 1.495 -> 1.484.
# dh_kg_pair (round 25; HYBRIDIZE_GDR_DH_KG_PAIR=0 turns it off; dh_kg_pair): where kg is bf16 (recompute_kg16's, or
# dh_kg16's from the decayed pass; not decayed16's fp16), kg dh is two bf16 products of dh's hi + lo (16 bits of dh,
# where the tf32 product kept 10, and kg from shared memory instead of through registers). H100, round 25 (call 6,
# PART=159, two runs each, alternating), the dh scan / KDA fwd+bwd kernel sum, off -> on, ms: (1,8192,16,128) 0.270 /
# 3.055, 0.268 / 3.037 -> 0.259 / 3.015, 0.258 / 3.014; (1,32768,16,128) 1.030 / 11.696, 1.030 / 11.683 -> 0.939 /
# 11.574, 0.936 / 11.548; but head dim 64, (8,2048,9,64), 0.107 / 1.471, 0.104 / 1.445 -> 0.121 / 1.489, 0.118 / 1.460,
# hence dh_kg_pair_min_dim 128. Every KDA case passes with it, errors within 1e-4 of the tf32 product's. Measured at 16
# value columns only; at 32 and 64 the compiled kernel spills (40 and 160 bytes, kernel_resources.py), so
# dh_kg_pair_max_bv is 16.
BWD_CONFIG = {"BK": {"fused": {"gdn": 64, "kda": 32}, "split": {"gdn": 32, "kda": 32}},
              "BV": {"fused": {"gdn": 32, "kda": 64}, "split": {"gdn": 64, "kda": 32}}, "num_warps": 8,
              "decayed": os.environ.get("HYBRIDIZE_GDR_DH", "kernel"),
              "factors": os.environ.get("HYBRIDIZE_GDR_BWD_FACTORS", "shared"),
              "dvn_local": os.environ.get("HYBRIDIZE_GDR_DVN", "kernel"),
              "dh_BV": int(os.environ.get("HYBRIDIZE_GDR_DH_BV", "0")) or None,
              "dh_warps": int(os.environ.get("HYBRIDIZE_GDR_DH_WARPS", "0")) or None,
              "dh_stages": int(os.environ.get("HYBRIDIZE_GDR_DH_STAGES", "0")) or None,
              "design": os.environ.get("HYBRIDIZE_GDR_BWD", "auto"), "values_BV": 32, "values_warps": 8,
              "dh16": os.environ.get("HYBRIDIZE_GDR_DH16", "").split(","),
              "dh_split_channel": os.environ.get("HYBRIDIZE_GDR_DH_SPLIT_KDA", "0") == "1",
              "split_stages": int(os.environ.get("HYBRIDIZE_GDR_DH_SPLIT_STAGES", "3")),
              "stages": (int(os.environ["HYBRIDIZE_GDR_BWD_STAGES"]) if os.environ.get("HYBRIDIZE_GDR_BWD_STAGES")
                         else {"fused": {"gdn": 2, "kda": 2}, "split": {"gdn": 2, "kda": 3}}),
              "decayed16": os.environ.get("HYBRIDIZE_GDR_DECAYED16", "1") == "1",
              "dh_store16": os.environ.get("HYBRIDIZE_GDR_DH_STORE16", "1") == "1",
              "dh_qsplit": os.environ.get("HYBRIDIZE_GDR_DH_QSPLIT", "1") == "1",
              "dh_prefetch": os.environ.get("HYBRIDIZE_GDR_DH_PREFETCH", "auto"),
              "dh_kg16": os.environ.get("HYBRIDIZE_GDR_DH_KG16", "1") == "1", "dh_kg16_stages": 3, "dh_kg16_max_bv": 32,
              "recompute_kg16": os.environ.get("HYBRIDIZE_GDR_RECOMPUTE_KG16", "1") == "1",
              "dh_kg_pair": os.environ.get("HYBRIDIZE_GDR_DH_KG_PAIR", "1") == "1", "dh_kg_pair_min_dim": 128,
              "dh_kg_pair_max_bv": 16}


@triton.jit
def _local_dvn_kernel(Aqk, do, out, chunks, H, V: tl.constexpr, BV: tl.constexpr, C: tl.constexpr,
                      PREC: tl.constexpr, DT: tl.constexpr):
    """Aqk^T do of one (chunk, head, BV value columns): the part of dvn that needs no state."""
    i_c = tl.program_id(0)
    i_h = tl.program_id(1)
    vv = tl.program_id(2) * BV + tl.arange(0, BV)
    bos, eos, i_t = chunk_bounds(chunks, i_c)
    rows = tl.arange(0, C)
    valid, tok, _ = chunk_tokens(bos, eos, i_t, rows, C)
    m_v = valid[:, None] & (vv < V)[None, :]
    p_v = (tok[:, None] * H + i_h) * V + vv[None, :]
    b_A = load_chunk_matrix(Aqk, tok, valid, rows, i_h, H, C).to(DT)
    b_do = tl.load(do + p_v, mask=m_v, other=0.0).to(DT)
    tl.store(out + p_v, tl.dot(tl.trans(b_A), b_do, input_precision=PREC), mask=m_v)


@triton.jit
def _chunk_dvl(dvl, bos, eos, i_t, rows, i_h, H, V: tl.constexpr, vv, vm, C: tl.constexpr):
    """Aqk^T do's tile of chunk i_t (the dh scan's prefetch): rows outside [bos, eos) read as 0, chunk -1 included
    (chunk_tokens bounds a chunk by the document's end only; an empty document's chunk -1 is before its start)."""
    valid, tok, _ = chunk_tokens(bos, eos, i_t, rows, C)
    return tl.load(dvl + (tok[:, None] * H + i_h) * V + vv[None, :], mask=(valid & (tok >= bos))[:, None] & vm[None, :],
                   other=0.0)


@triton.jit
def _dh_kernel(q, q_lo, k, w, G, Aqk, do, dht, dh_out, dvn_out, dh0, dvl, cu, chunk_offsets, scale, H,
               K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, C: tl.constexpr,
               CHANNEL: tl.constexpr, DECAYED: tl.constexpr, LOCAL: tl.constexpr, HAS_DHT: tl.constexpr,
               STORE_DH0: tl.constexpr, PREC: tl.constexpr, DT: tl.constexpr, WDT: tl.constexpr,
               SPLIT: tl.constexpr, KDT: tl.constexpr, PREFETCH: tl.constexpr = 0, KG_PAIR: tl.constexpr = False):
    """DECAYED: q arrives as q e^G and k as k e^{G_last - G} (chunk_prep.decayed), so the serial step
    exponentiates only the [K] vector e^{G_last}. LOCAL: dvl holds Aqk^T do (fp32, _local_dvn_kernel).
    WDT: operand type of (k e^{G_last - G}) dh', the mirror of the forward's w h (16-bit with the
    "mixed" intermediates); the two state-side products, (q e^G)^T do and w^T dvn, mirror the forward's
    state update and stay in DT. SPLIT (scalar gates, bf16 q, k and w, fp32 dvn; chunk_scan.split_update):
    the three products take q, k and w as loaded (16-bit, exact) and the fp32 side as hi + lo, two bf16
    halves carrying 16 bits, the gates moved onto that side's rows; KDT is their operand type. SPLIT 2
    (per-channel gates, DECAYED fp32 q e^G and kg, bf16 w and do, fp32 dvn; dh_split_kind): the gates
    cannot move off the key side, so q e^G and kg are split too; kg dh as three bf16 products, the other
    two as two each, every operand 16-bit (tf32 would need fp32 tiles transposed through shared memory).
    SPLIT 3 (per-channel gates, BWD_CONFIG["dh_qsplit"]): q holds scale q e^G as bf16 hi and q_lo its lo
    (chunk_prep.decayed's split, formed in parallel), so (q e^G)^T do is two bf16 products of 16-bit tiles as
    loaded; kg dh and w^T dvn stay tf32. The [K, C] left operands (q e^G's halves, w) are loaded as [K, C] tiles,
    addressed transposed, not loaded [C, K] and put through tl.trans. w^T dvn as bf16 pairs (dvn split) was
    faster still but wrong on the H100: see BWD_CONFIG's dh_qsplit comment.
    PREFETCH (SPLIT 3 only; BWD_CONFIG["dh_prefetch"]): 1 loads G_last one chunk ahead, 2 Aqk^T do (dvl) too.
    KG_PAIR (SPLIT 3, bf16 kg; dh_kg_pair): kg dh as two bf16 products of dh's hi + lo, kg as loaded."""
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
    if HAS_DHT:
        dh = tl.load(dht + state_base + p_s, mask=m_s, other=0.0).to(tl.float32)
    else:
        dh = tl.zeros([BK, BV], dtype=tl.float32)
    nt = tl.cdiv(eos - bos, C)
    if PREFETCH:  # the last chunk's (the scan runs in reverse)
        Gl_next = last_gate(G, chunk_last(bos, eos, nt - 1, C), i_h, H, kk, km, K, CHANNEL)
        if PREFETCH >= 2:
            dvl_next = _chunk_dvl(dvl, bos, eos, nt - 1, rows, i_h, H, V, vv, vm, C)
    for i in range(0, nt):
        i_t = nt - 1 - i
        valid, tok, last_tok = chunk_tokens(bos, eos, i_t, rows, C)
        m_k = valid[:, None] & km[None, :]
        m_v = valid[:, None] & vm[None, :]
        p_k = (tok[:, None] * H + i_h) * K + kk[None, :]
        p_v = (tok[:, None] * H + i_h) * V + vv[None, :]
        tl.store(dh_out + ((c0 + i_t) * H + i_h) * K * V + p_s, stored(dh, dh_out.dtype.element_ty), mask=m_s)
        if PREFETCH:  # this chunk's G_last came with the last step; fetch the one before's (chunk_last clamps)
            eGl = tl.exp(Gl_next)[:, None]
            Gl_next = last_gate(G, chunk_last(bos, eos, i_t - 1, C), i_h, H, kk, km, K, CHANNEL)
        else:
            eG, eGlG, eGl = load_gates(G, tok, valid, last_tok, i_h, H, kk, km, K, CHANNEL)
        if DECAYED:  # the unused factors above are dead code: only e^{G_last} is computed
            eG = 1.0
            eGlG = 1.0
        if SPLIT == 1:
            b_q = tl.load(q + p_k, mask=m_k, other=0.0).to(KDT)
            b_k = tl.load(k + p_k, mask=m_k, other=0.0).to(KDT)
            b_w = tl.load(w + p_k, mask=m_k, other=0.0).to(KDT)
        elif SPLIT == 3:  # the [K, C] tiles of the two state-side products loaded as such (no tl.trans)
            b_k = tl.load(k + p_k, mask=m_k, other=0.0).to(KDT if KG_PAIR else tl.float32)
            p_kt = (tok[None, :] * H + i_h) * K + kk[:, None]
            m_kt = valid[None, :] & km[:, None]
            qht = tl.load(q + p_kt, mask=m_kt, other=0.0).to(KDT)
            qlt = tl.load(q_lo + p_kt, mask=m_kt, other=0.0).to(KDT)
            wt = tl.load(w + p_kt, mask=m_kt, other=0.0).to(tl.float32)
        elif SPLIT == 2:  # fp32 q e^G and kg, split off the serial chain (neither depends on dh)
            qh, ql = split16(tl.load(q + p_k, mask=m_k, other=0.0) * scale, KDT)
            kh, kl = split16(tl.load(k + p_k, mask=m_k, other=0.0), KDT)
            b_w = tl.load(w + p_k, mask=m_k, other=0.0).to(KDT)
        else:
            b_q = tl.load(q + p_k, mask=m_k, other=0.0).to(tl.float32) * scale
            b_k = tl.load(k + p_k, mask=m_k, other=0.0).to(tl.float32)
            b_w = tl.load(w + p_k, mask=m_k, other=0.0).to(DT)
        b_do = tl.load(do + p_v, mask=m_v, other=0.0).to(KDT if SPLIT >= 2 else DT)
        if LOCAL and PREFETCH >= 2:
            dvn = dvl_next
            dvl_next = _chunk_dvl(dvl, bos, eos, i_t - 1, rows, i_h, H, V, vv, vm, C)
        elif LOCAL:
            dvn = tl.load(dvl + p_v, mask=m_v, other=0.0)
        else:
            b_A = load_chunk_matrix(Aqk, tok, valid, rows, i_h, H, C).to(DT)
            dvn = tl.dot(tl.trans(b_A), b_do, input_precision=PREC)
        if SPLIT == 2:
            hi, lo = split16(dh, KDT)
            dvn += tl.dot(kh, lo, tl.dot(kl, hi, tl.dot(kh, hi)))  # kl lo (2^-16 of the product) dropped
            tl.store(dvn_out + p_v, dvn, mask=m_v)
            dh = tl.dot(tl.trans(ql), b_do, tl.dot(tl.trans(qh), b_do, dh * eGl))
            hi, lo = split16(dvn, KDT)
            dh -= tl.dot(tl.trans(b_w), lo, tl.dot(tl.trans(b_w), hi))
        elif SPLIT == 3:
            if KG_PAIR:
                hi, lo = split16(dh, KDT)
                dvn += tl.dot(b_k, lo, tl.dot(b_k, hi))
            else:
                dvn += tl.dot(b_k, dh, input_precision=PREC)
            tl.store(dvn_out + p_v, dvn, mask=m_v)
            dh = tl.dot(qlt, b_do, tl.dot(qht, b_do, dh * eGl))
            dh -= tl.dot(wt, dvn, input_precision=PREC)
        elif SPLIT == 1:
            hi, lo = split16(dh, KDT)
            dvn += eGlG * tl.dot(b_k, lo, tl.dot(b_k, hi))
            tl.store(dvn_out + p_v, dvn, mask=m_v)
            hi, lo = split16(b_do.to(tl.float32) * (scale * eG), KDT)
            dh = tl.dot(tl.trans(b_q), lo, tl.dot(tl.trans(b_q), hi, dh * eGl))
            hi, lo = split16(dvn, KDT)
            dh -= tl.dot(tl.trans(b_w), lo, tl.dot(tl.trans(b_w), hi))
        else:
            dvn += tl.dot((b_k * eGlG).to(WDT), dh.to(WDT), input_precision=PREC)
            dvn_dt = dvn.to(DT)
            tl.store(dvn_out + p_v, dvn_dt, mask=m_v)
            dh = dh * eGl + tl.dot(tl.trans((b_q * eG).to(DT)), b_do, input_precision=PREC)
            dh -= tl.dot(tl.trans(b_w), dvn_dt, input_precision=PREC)
    if STORE_DH0:
        tl.store(dh0 + state_base + p_s, dh, mask=m_s)


@triton.jit
def _bwd_values_kernel(v, beta, T, vn, dvn, do, dv, dvb_out, dA_out, dM_out, dbeta_v, chunks, H,
                       V: tl.constexpr, BV: tl.constexpr, C: tl.constexpr, PREC: tl.constexpr, DT: tl.constexpr):
    """The value side of stage 2, once per (chunk, head): dvb = T^T dvn (kept for the key side's
    dvb h^T), dv = beta dvb, beta's v-part, dA = -strict_tril(dvb vn^T) and dM = tril(do vn^T)."""
    i_c = tl.program_id(0)
    i_h = tl.program_id(1)
    bos, eos, i_t = chunk_bounds(chunks, i_c)
    rows = tl.arange(0, C)
    valid, tok, _ = chunk_tokens(bos, eos, i_t, rows, C)
    b_b = tl.load(beta + tok * H + i_h, mask=valid, other=0.0).to(tl.float32)
    b_T = load_chunk_matrix(T, tok, valid, rows, i_h, H, C)
    dA = tl.zeros([C, C], dtype=tl.float32)
    dM = tl.zeros([C, C], dtype=tl.float32)
    db = tl.zeros([C], dtype=tl.float32)
    for v0 in range(0, V, BV):
        vv = v0 + tl.arange(0, BV)
        m_v = valid[:, None] & (vv < V)[None, :]
        p_v = (tok[:, None] * H + i_h) * V + vv[None, :]
        b_vn = tl.load(vn + p_v, mask=m_v, other=0.0).to(DT)
        b_dvn = tl.load(dvn + p_v, mask=m_v, other=0.0).to(tl.float32)
        b_do = tl.load(do + p_v, mask=m_v, other=0.0).to(DT)
        b_v = tl.load(v + p_v, mask=m_v, other=0.0).to(tl.float32)
        dvb = tl.dot(tl.trans(b_T), b_dvn, input_precision=PREC)
        tl.store(dv + p_v, (dvb * b_b[:, None]).to(dv.dtype.element_ty), mask=m_v)
        tl.store(dvb_out + p_v, dvb, mask=m_v)
        db += tl.sum(dvb * b_v, 1)
        dvb_dt = dvb.to(DT)
        dA += tl.dot(dvb_dt, tl.trans(b_vn), input_precision=PREC)
        dM += tl.dot(b_do, tl.trans(b_vn), input_precision=PREC)
    store_chunk_matrix(dA_out, tl.where(rows[:, None] > rows[None, :], -dA, 0.0), tok, valid, rows, i_h, H, C)
    store_chunk_matrix(dM_out, tl.where(rows[:, None] >= rows[None, :], dM, 0.0), tok, valid, rows, i_h, H, C)
    tl.store(dbeta_v + tok * H + i_h, db, mask=valid)


@triton.jit
def _bwd_kernel(q, k, v, beta, G, T, h, dh, vn, dvn, do, dq, dk, dv, dg_part, dbeta_part, dvb_buf, dA_buf, dM_buf,
                chunks, scale, H, L,
                K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, C: tl.constexpr,
                SB: tl.constexpr, CHANNEL: tl.constexpr, SHARED_FACTORS: tl.constexpr, SPLIT: tl.constexpr,
                PREC: tl.constexpr, DT: tl.constexpr):
    """SPLIT: _bwd_values_kernel has already formed dvb, dv, beta's v-part, dA and dM (once per chunk
    and head instead of once per key block); this kernel loads dvb, dA and dM."""
    i_c = tl.program_id(0)
    i_h = tl.program_id(1)
    i_k = tl.program_id(2)
    bos, eos, i_t = chunk_bounds(chunks, i_c)
    rows = tl.arange(0, C)
    valid, tok, last_tok = chunk_tokens(bos, eos, i_t, rows, C)
    kk = i_k * BK + tl.arange(0, BK)
    km = kk < K
    m_k = valid[:, None] & km[None, :]
    p_k = (tok[:, None] * H + i_h) * K + kk[None, :]
    b_k = tl.load(k + p_k, mask=m_k, other=0.0).to(tl.float32)
    b_q = tl.load(q + p_k, mask=m_k, other=0.0).to(tl.float32) * scale
    b_b = tl.load(beta + tok * H + i_h, mask=valid, other=0.0).to(tl.float32)
    if not SPLIT:
        b_T = load_chunk_matrix(T, tok, valid, rows, i_h, H, C)
    # G is the forward's own (loaded, not recomputed: the prep's block-wise cumulative sum rounds
    # differently from a 64-row one, and with |G| ~ 100 that difference alone put dk at 1e-5).
    # Past the document end it must stay at its last value (not 0), or the split decay factors
    # below would overflow.
    if CHANNEL:
        Gl = tl.load(G + (last_tok * H + i_h) * K + kk, mask=km, other=0.0)
        Gc = tl.where(valid[:, None], tl.load(G + p_k, mask=m_k, other=0.0), Gl[None, :])
        eG = tl.exp(Gc)
        eGlG = tl.exp(Gl[None, :] - Gc)
        eGl = tl.exp(Gl)
    else:
        Gl = tl.load(G + last_tok * H + i_h)
        Gc = tl.where(valid, tl.load(G + tok * H + i_h, mask=valid, other=0.0), Gl)
        eG = tl.exp(Gc)[:, None]
        eGlG = tl.exp(Gl - Gc)[:, None]
        eGl = tl.exp(Gl)

    # Accumulate over value blocks every product that sums over the value dimension.
    if not SPLIT:
        dA = tl.zeros([C, C], dtype=tl.float32)  # dvb vn^T (sign and mask applied after)
        dM = tl.zeros([C, C], dtype=tl.float32)  # do vn^T
    dkb = tl.zeros([C, BK], dtype=tl.float32)  # dvb h^T
    dqg = tl.zeros([C, BK], dtype=tl.float32)  # do h^T
    dkd = tl.zeros([C, BK], dtype=tl.float32)  # vn dh'^T
    dGl_h = tl.zeros([BK], dtype=tl.float32)  # sum_v h dh'
    db = tl.zeros([C], dtype=tl.float32)
    state = ((i_c.to(tl.int64) * H + i_h) * K + kk[:, None]) * V
    for v0 in range(0, V, BV):
        vv = v0 + tl.arange(0, BV)
        vm = vv < V
        m_v = valid[:, None] & vm[None, :]
        p_v = (tok[:, None] * H + i_h) * V + vv[None, :]
        m_s = km[:, None] & vm[None, :]
        b_h = tl.load(h + state + vv[None, :], mask=m_s, other=0.0).to(DT)
        b_dh = tl.load(dh + state + vv[None, :], mask=m_s, other=0.0).to(DT)
        b_vn = tl.load(vn + p_v, mask=m_v, other=0.0).to(DT)
        b_do = tl.load(do + p_v, mask=m_v, other=0.0).to(DT)
        if SPLIT:
            dvb_dt = tl.load(dvb_buf + p_v, mask=m_v, other=0.0).to(DT)
        else:
            b_dvn = tl.load(dvn + p_v, mask=m_v, other=0.0).to(tl.float32)
            b_v = tl.load(v + p_v, mask=m_v, other=0.0).to(tl.float32)
            dvb = tl.dot(tl.trans(b_T), b_dvn, input_precision=PREC)
            # dv and the v-part of dbeta do not depend on the key block: only block 0 writes them.
            if i_k == 0:
                tl.store(dv + p_v, (dvb * b_b[:, None]).to(dv.dtype.element_ty), mask=m_v)
                db += tl.sum(dvb * b_v, 1)
            dvb_dt = dvb.to(DT)
            dA += tl.dot(dvb_dt, tl.trans(b_vn), input_precision=PREC)
            dM += tl.dot(b_do, tl.trans(b_vn), input_precision=PREC)
        dkb += tl.dot(dvb_dt, tl.trans(b_h), input_precision=PREC)
        dqg += tl.dot(b_do, tl.trans(b_h), input_precision=PREC)
        dkd += tl.dot(b_vn, tl.trans(b_dh), input_precision=PREC)
        dGl_h += tl.sum(b_h.to(tl.float32) * b_dh.to(tl.float32), 1)

    if SPLIT:
        dA = load_chunk_matrix(dA_buf, tok, valid, rows, i_h, H, C)
        dM = load_chunk_matrix(dM_buf, tok, valid, rows, i_h, H, C)
    else:
        dA = tl.where(rows[:, None] > rows[None, :], -dA, 0.0)
        dM = tl.where(rows[:, None] >= rows[None, :], dM, 0.0)
    # Through w's input kb = beta k e^G (dkb carries the minus sign of vn = u - w h):
    t_kb = -dkb * eG  # d(k)/beta from this path
    dk_acc = t_kb * b_b[:, None]
    db -= tl.sum(dkb * b_k * eG, 1)
    dG = -dkb * b_k * eG * b_b[:, None]
    # Through the output's q' e^G:
    dq_acc = dqg * eG
    dG += dqg * b_q * eG
    # Through the state update's k e^{G_last - G}:
    dk_acc += dkd * eGlG
    kd_grad = dkd * b_k * eGlG
    dG -= kd_grad
    dGl = tl.sum(kd_grad, 0) + dGl_h * eGl
    # Through the pairwise matrices A = beta_t (k_t . k_j decayed) and Aqk = q'_t . k_j decayed.
    P = dA * b_b[:, None]
    if CHANNEL:
        if SHARED_FACTORS:
            Xa0, Ya, Xm, Ym = channel_grads(dA, P, dM, b_k, b_q, Gc, rows, C, SB, PREC)
        else:
            Xa0 = channel_rowside(dA, b_k, Gc, rows, C, SB, PREC)  # rows not yet scaled by beta
            Ya = channel_colside(P, b_k, Gc, rows, C, SB, PREC)
            Xm = channel_rowside(dM, b_k, Gc, rows, C, SB, PREC)
            Ym = channel_colside(dM, b_q, Gc, rows, C, SB, PREC)
        Xa = Xa0 * b_b[:, None]
        dk_acc += Xa + Ya + Ym
        dq_acc += Xm
        dG += b_k * (Xa - Ya) + b_q * Xm - b_k * Ym
        # dbeta_t = sum_j dA[t,j] (k_t . k_j decayed) = sum_d k[t,d] Xa0[t,d]
        db += tl.sum(b_k * Xa0, 1)
        dg = tl.cumsum(dG, 0, reverse=True) + dGl[None, :]
        tl.store(dg_part + p_k, dg, mask=m_k)  # key blocks own disjoint columns
    else:
        lower = rows[:, None] >= rows[None, :]
        D = tl.exp(tl.where(lower, Gc[:, None] - Gc[None, :], float("-inf")))
        S = tl.dot(b_k, tl.trans(b_k), input_precision=PREC) * D  # this key block's share
        Mq = tl.dot(b_q, tl.trans(b_k), input_precision=PREC) * D
        PD = P * D
        dMD = dM * D
        dk_acc += tl.dot(PD, b_k, input_precision=PREC) + tl.dot(tl.trans(PD), b_k, input_precision=PREC)
        dk_acc += tl.dot(tl.trans(dMD), b_q, input_precision=PREC)
        dq_acc += tl.dot(dMD, b_k, input_precision=PREC)
        db += tl.sum(dA * S, 1)
        PS = P * S
        dMM = dM * Mq
        dGs = tl.sum(dG, 1) + tl.sum(PS, 1) - tl.sum(PS, 0) + tl.sum(dMM, 1) - tl.sum(dMM, 0)
        dg = tl.cumsum(dGs, 0, reverse=True) + tl.sum(dGl, 0)
        tl.store(dg_part + i_k * L * H + tok * H + i_h, dg, mask=valid)
    tl.store(dq + p_k, (dq_acc * scale).to(dq.dtype.element_ty), mask=m_k)
    tl.store(dk + p_k, dk_acc.to(dk.dtype.element_ty), mask=m_k)
    tl.store(dbeta_part + i_k * L * H + tok * H + i_h, db, mask=valid)


def decayed_dtype(in_dtype: torch.dtype, inter: torch.dtype, channel: bool, unit_keys: bool) -> torch.dtype:
    """The element type of the backward's decayed operands (kg from the recompute's solve, for that scan and the dh
    scan; q e^G for the dh scan, unless dh_qsplit makes it a bf16 pair): fp16 where BWD_CONFIG["decayed16"] applies
    (per-channel gates, unit_keys from the fused L2 norm, 16-bit inputs, fp32 intermediates), else the intermediates'
    own."""
    if (BWD_CONFIG["decayed16"] and channel and unit_keys and BWD_CONFIG["decayed"] == "kernel"
            and in_dtype in (torch.bfloat16, torch.float16) and inter == torch.float32):
        return torch.float16
    return inter


def recompute_kg_dtype(in_dtype: torch.dtype, inter: torch.dtype, w_dtype: torch.dtype, K: int, channel: bool,
                       unit_keys: bool) -> torch.dtype:
    """kg's element type in the backward's recompute (the solve writes it; the recompute scan and the dh scan read
    it): decayed_dtype's, except bf16 where BWD_CONFIG["recompute_kg16"] applies (bf16 keys and w, fp32
    intermediates, per-channel gates, head dim <= 128, keys not from the fused norm): see its comment."""
    dtype = decayed_dtype(in_dtype, inter, channel, unit_keys)
    if (BWD_CONFIG["recompute_kg16"] and channel and not unit_keys and dtype == torch.float32
            and BWD_CONFIG["decayed"] == "kernel" and in_dtype == w_dtype == torch.bfloat16 and K <= 128):
        return torch.bfloat16
    return dtype


def bf16_states(in_dtype: torch.dtype, channel: bool) -> bool:
    """Where the backward may store its per-chunk states (the recompute's h: autograd.STATES16; dh:
    BWD_CONFIG["dh_store16"]) in bf16: bf16 inputs and per-channel gates (autograd's comment says why not elsewhere)."""
    return in_dtype == torch.bfloat16 and channel


def dh_operands(q, k, G, layout: Layout, dtype: torch.dtype, kg=None, split_q: bool = False, scale: float = 1.0,
                value_dim: int | None = None):
    """(q, k, decayed_in) as the dh scan takes them: q e^G and kg = k e^{G_last - G} (kg: the recompute's own when
    given) in `dtype` (the intermediates' or decayed_dtype's) when BWD_CONFIG["decayed"] is "kernel" and the gates
    are per-channel, else q and k themselves. split_q (dh_qsplit's case): q e^G times scale as a bf16 hi + lo
    pair, [2, 1, L, H, K] (the dh scan's SPLIT 3), and kg then in bf16 from the same pass where BWD_CONFIG["dh_kg16"]
    applies (up to 32 value columns per dh-scan program; value_dim: V, default K)."""
    if G.dim() != 4 or BWD_CONFIG["decayed"] != "kernel":
        return q, k, False
    if (split_q and BWD_CONFIG["dh_kg16"] and (kg is None or kg.element_size() > 2)
            and dh_block(value_dim or k.shape[-1], layout.num_seqs * k.shape[2], k.shape[-1])
            <= BWD_CONFIG["dh_kg16_max_bv"]):
        # kg in bf16 from the same pass as q e^G's pair (BWD_CONFIG's dh_kg16 comment)
        return (*decayed(q, G, layout, dtype, from_start=True, split=True, mult=scale, keys=k), True)
    kd = kg if kg is not None else decayed(k, G, layout, dtype)
    return decayed(q, G, layout, dtype, from_start=True, split=split_q, mult=scale if split_q else 1.0), kd, True


def dh_qsplit(w_dtype: torch.dtype, do_dtype: torch.dtype, dvn_dtype: torch.dtype, K: int, channel: bool) -> bool:
    """Whether per-channel gates' dh scan runs as SPLIT 3 (BWD_CONFIG["dh_qsplit"], q e^G as a bf16 pair): bf16 w
    and do with fp32 dvn (the "mixed" intermediates), head dim <= 128, decayed operands from the kernel, and not
    SPLIT 2 (BWD_CONFIG["dh_split_channel"], which splits q e^G itself)."""
    return (channel and BWD_CONFIG["dh_qsplit"] and BWD_CONFIG["decayed"] == "kernel"
            and not BWD_CONFIG["dh_split_channel"] and SCAN_CONFIG["split_update"] and K <= 128
            and w_dtype == do_dtype == torch.bfloat16 and dvn_dtype == torch.float32)


def dh_split_kind(q_dtype: torch.dtype, k_dtype: torch.dtype, w_dtype: torch.dtype, do_dtype: torch.dtype,
                  dvn_dtype: torch.dtype, K: int, channel: bool, decayed_in: bool) -> int:
    """The dh scan's SPLIT: 1 for scalar gates in chunk_scan.split_update's case; 2 for per-channel gates
    with fp32 decayed operands (q e^G, kg), bf16 w and do and fp32 dvn at head dim <= 128, when
    BWD_CONFIG["dh_split_channel"] is on; else 0 (tf32 products)."""
    if not channel and not decayed_in:
        return int(split_update(k_dtype, dvn_dtype, w_dtype, K))
    if (channel and decayed_in and BWD_CONFIG["dh_split_channel"] and SCAN_CONFIG["split_update"] and K <= 128
            and q_dtype == k_dtype == dvn_dtype == torch.float32 and w_dtype == do_dtype == torch.bfloat16):
        return 2
    return 0


def dh_block(V: int, programs: int, K: int) -> int:
    """The dh scan's value columns per program: BWD_CONFIG["dh_BV"], else as the forward scan's (_pick_bv)."""
    return BWD_CONFIG["dh_BV"] or _pick_bv(V, programs, K)


def dh_kg_pair(kg_dtype: torch.dtype, K: int, BV: int) -> bool:
    """Whether SPLIT 3 takes kg dh as two bf16 products of dh's hi + lo (BWD_CONFIG["dh_kg_pair"]): bf16 kg, head
    dim >= dh_kg_pair_min_dim, at most dh_kg_pair_max_bv value columns (wider blocks spill: kernel_resources.py)."""
    return (BWD_CONFIG["dh_kg_pair"] and kg_dtype == torch.bfloat16 and K >= BWD_CONFIG["dh_kg_pair_min_dim"]
            and BV <= BWD_CONFIG["dh_kg_pair_max_bv"])


def dh_prefetch_level(BV: int, local: bool) -> int:
    """The dh scan's PREFETCH (SPLIT 3): BWD_CONFIG["dh_prefetch"], whose "auto" is 2 up to 32 value columns and 1 above
    (64 columns hold 255 registers already); level 2 prefetches Aqk^T do, so it needs that formed before the scan
    (local)."""
    level = BWD_CONFIG["dh_prefetch"]
    level = (2 if BV <= 32 else 1) if level == "auto" else int(level)
    return min(level, 2 if local else 1)


def launch_dh(q, k, decayed_in: bool, w, G, Aqk, do, dht, dh_all, dvn, dh0, layout: Layout, scale: float) -> None:
    """The dh scan (stage 1) over all documents; with BWD_CONFIG["dvn_local"] == "kernel", preceded by
    the parallel Aqk^T do. q, k, decayed_in: as dh_operands returns them (q [2, ...]: its split pair, SPLIT 3)."""
    _, L, H, K = k.shape
    V = do.shape[-1]
    N = layout.num_seqs
    channel = G.dim() == 4
    # do is in the inputs' dtype; the products follow vn's (w may be 16-bit where vn is fp32: "mixed")
    prec, dt = dot_precision(do.dtype), dot_dtype(dvn.dtype)
    local = BWD_CONFIG["dvn_local"] == "kernel"
    dvl = None
    if local and layout.num_chunks:
        dvl = torch.empty(1, L, H, V, device=do.device, dtype=torch.float32)
        BVl = min(64, triton.next_power_of_2(V))
        _local_dvn_kernel[(layout.num_chunks, H, triton.cdiv(V, BVl))](
            Aqk, do, dvl, layout.chunks, H, V=V, BV=BVl, C=CHUNK, PREC=prec, DT=dt, num_warps=4)
    BV = dh_block(V, N * H, K)
    # by the tiles' dtype: fp32 intermediates at BV=64 need 238 KB with 2 stages (KDA, H100)
    opts = launch_options(K, BV, dvn.dtype, channel)
    if channel and K <= 128:
        if dvn.dtype == torch.float32:
            # without the Aqk tile, 2 stages fit for per-channel gates: KDA dh scan 0.907 -> 0.795 ms at
            # (1,8192,16,128), BV 16 (H100, round 8, kernel_stages.py --dh-sweep 0); at BV 64 they do not
            opts["num_stages"] = 2 if dvl is not None and BV <= 32 else 1
        else:
            # 16-bit tiles: at most 2 stages, since the forward scan's 3 (SCAN_CONFIG["channel_stages"])
            # were measured for that scan only (H100, round 10, call 14)
            opts["num_stages"] = min(opts["num_stages"], 2)
    q_lo = None
    if q.dim() == 5:  # dh_operands' split_q: (hi, lo)
        q, q_lo = q[0], q[1]
    split = 3 if q_lo is not None else dh_split_kind(q.dtype, k.dtype, w.dtype, do.dtype, dvn.dtype, K, channel,
                                                     decayed_in)
    if split:
        # With one stage the split kernel computed wrong gradients (D64) or faulted (D128) on the H100
        # (triton 3.6; benchmarks/RESULTS.md, round 12, call 4); with 2 it is correct (and so it was with the
        # products summed instead of chained through the accumulator). Scalar gates' split (16-bit q, k, w
        # tiles) takes BWD_CONFIG["split_stages"].
        opts["num_stages"] = max(opts["num_stages"], BWD_CONFIG["split_stages"] if split == 1 else 2)
    if split == 3 and k.element_size() == 2 and BV <= BWD_CONFIG["dh_kg16_max_bv"]:
        opts["num_stages"] = BWD_CONFIG["dh_kg16_stages"]  # 16-bit kg: a third stage fits (dh_kg16's comment)
    if BWD_CONFIG["dh_warps"]:
        opts["num_warps"] = BWD_CONFIG["dh_warps"]
    if BWD_CONFIG["dh_stages"]:
        opts["num_stages"] = BWD_CONFIG["dh_stages"]
    prefetch = dh_prefetch_level(BV, dvl is not None) if split == 3 else 0
    _dh_kernel[(triton.cdiv(V, BV), N * H)](
        q, q_lo if q_lo is not None else q, k, w, G, Aqk, do, dht if dht is not None else do, dh_all, dvn,
        dh0 if dh0 is not None else do, dvl if dvl is not None else do, layout.cu, layout.chunk_offsets, scale, H,
        K=K, V=V, BK=triton.next_power_of_2(K), BV=BV, C=CHUNK, CHANNEL=channel, DECAYED=decayed_in,
        LOCAL=dvl is not None, HAS_DHT=dht is not None, STORE_DH0=dh0 is not None, PREC=prec, DT=dt,
        WDT=dot_dtype(w.dtype if gate_kind(channel) in BWD_CONFIG["dh16"] else dvn.dtype),
        SPLIT=split, KDT=dot_dtype(torch.bfloat16), PREFETCH=prefetch,
        KG_PAIR=split == 3 and dh_kg_pair(k.dtype, K, BV), **opts)


def chunk_bwd(q, k, v, g, beta, scale, layout: Layout, G, w, Aqk, T, h, vn, do, dht, need_dh0: bool, kg=None,
              unit_keys: bool = False):
    """Gradients of the chunked rule (inputs packed [1, L, H, ...], q and k already normalised).
    kg: the recomputed k e^{G_last - G} (per-channel gates), used by the dh scan when
    BWD_CONFIG["decayed"] is "kernel". unit_keys: q and k come from the fused L2 norm (decayed_dtype).
    Returns dq, dk, dv (input dtypes), dg (fp32, g's shape), dbeta (fp32), dh0 (fp32 or None)."""
    _, L, H, K = k.shape
    V = v.shape[-1]
    N = layout.num_seqs
    dev = k.device
    prec = dot_precision(k.dtype)
    channel = g.dim() == 4
    BKf = triton.next_power_of_2(K)
    # the per-chunk dh in 16 bits for stage 2 (BWD_CONFIG["dh_store16"]; the scan carries it in fp32)
    dh_dtype = torch.bfloat16 if BWD_CONFIG["dh_store16"] and bf16_states(q.dtype, channel) else vn.dtype
    dh_all = torch.empty(layout.num_chunks, H, K, V, device=dev, dtype=dh_dtype)
    dvn = torch.empty_like(vn)
    dh0 = torch.empty(N, H, K, V, device=dev, dtype=torch.float32) if need_dh0 else None
    if N:
        dec = decayed_dtype(q.dtype, vn.dtype, channel, unit_keys)
        qsplit = dh_qsplit(w.dtype, do.dtype, dvn.dtype, K, channel)
        launch_dh(*dh_operands(q, k, G, layout, dec, kg, qsplit, scale, V), w, G, Aqk, do, dht, dh_all, dvn, dh0,
                  layout, scale)
    design = BWD_CONFIG["design"]
    split = design == "split" or (design == "auto" and channel and K >= 128)
    kind, gates = ("split" if split else "fused"), gate_kind(channel)
    BK = min(BWD_CONFIG["BK"][kind][gates], BKf)
    BV = min(BWD_CONFIG["BV"][kind][gates], triton.next_power_of_2(V))
    NK = triton.cdiv(K, BK)
    stages = BWD_CONFIG["stages"]
    stages = stages[kind][gates] if isinstance(stages, dict) else stages
    dq = torch.empty_like(q)
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    dg_part = torch.empty((1 if channel else NK,) + tuple(g.shape), device=dev, dtype=torch.float32)
    # with the split design, slot NK holds beta's v-part (from _bwd_values_kernel)
    db_part = torch.empty((NK + split,) + tuple(beta.shape), device=dev, dtype=torch.float32)
    if layout.num_chunks:
        dvb = dA = dM = do  # unused pointers unless split
        if split:
            dvb = torch.empty(1, L, H, V, device=dev, dtype=torch.float32)
            dA = chunk_matrix(L, H, dev, torch.float32)
            dM = chunk_matrix(L, H, dev, torch.float32)
            _bwd_values_kernel[(layout.num_chunks, H)](
                v, beta, T, vn, dvn, do, dv, dvb, dA, dM, db_part[NK], layout.chunks, H,
                V=V, BV=min(BWD_CONFIG["values_BV"], triton.next_power_of_2(V)), C=CHUNK, PREC=prec,
                DT=dot_dtype(vn.dtype), num_warps=BWD_CONFIG["values_warps"])
        _bwd_kernel[(layout.num_chunks, H, NK)](
            q, k, v, beta, G, T, h, dh_all, vn, dvn, do, dq, dk, dv, dg_part, db_part, dvb, dA, dM,
            layout.chunks, scale, H, L,
            K=K, V=V, BK=BK, BV=BV, C=CHUNK, SB=SUB, CHANNEL=channel,
            SHARED_FACTORS=BWD_CONFIG["factors"] == "shared", SPLIT=split, PREC=prec, DT=dot_dtype(vn.dtype),
            num_warps=BWD_CONFIG["num_warps"], num_stages=stages)
    dg = dg_part[0] if channel else dg_part.sum(0)
    return dq, dk, dv, dg, db_part.sum(0), dh0
