"""Stage 3 of the chunked forward: every chunk's output, all chunks in parallel.

With h the state at the chunk's start and vn its corrected values (both stored by chunk_scan):
    o = (scale q e^G) h + Aqk vn
One program per (chunk, head, block of BV value columns). Taking this out of the sequential scan
halves the scan's serial step; the price is writing and re-reading h once per chunk.

Scalar gates without a stored Aqk (the forward when no gradient is needed, OUTPUT_CONFIG["qk"]): the
kernel forms Aqk = tril(scale q k^T e^{G_t - G_s}) itself, from the q tiles it reads anyway and k,
with the prep's operands and order (bf16 products, fp32 sums), so o is the same. k in bf16 replaces
Aqk in fp32 (the same bytes here), and the prep neither reads q nor writes Aqk.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ._common import CHUNK, Layout, chunk_bounds, chunk_tokens, dot_dtype, dot_precision
from .chunk_scan import load_gates

# Round 13 (H100, benchmarks/RESULTS.md "Kernels, round 13", calls 1, 3, 4; the kernel alone, ms):
# qk: whether the no-gradient forward of scalar gates leaves Aqk to this kernel (HYBRIDIZE_GDR_QK=0: the
#   prep stores it, as before). At (1,8192,16,128) the pairs kernel (with its inverse) went 0.107 -> 0.069
#   without q and Aqk, and this kernel 0.105 -> 0.126 with them (BV 128); at (4,4096,16,128) 0.190 ->
#   0.119 and 0.193 -> 0.234. Net 0.017 and 0.030 ms faster.
# BV 128 (was 64): one program per (chunk, head) at head dim 128. Stored Aqk, GDN 0.117 -> 0.105 and
#   0.225 -> 0.193 at those shapes, KDA 0.165 -> 0.137 and 0.317 -> 0.256. BK 128 was faster at
#   (1,8192,16,128) (0.100) but raised an illegal memory access at (4,4096,16,128): not used.
# Round 14 knobs (being measured): pipe, the key loop as a pipelined loop (tl.range, num_stages deep) rather
#   than unrolled; late, vn (and a stored Aqk) loaded after the key loop, so that they are not live during it.
OUTPUT_CONFIG = {"BK": 64, "BV": 128, "num_warps": 4, "qk": os.environ.get("HYBRIDIZE_GDR_QK", "1") == "1",
                 "pipe": os.environ.get("HYBRIDIZE_GDR_OUT_PIPE", "1") == "1",
                 "num_stages": int(os.environ.get("HYBRIDIZE_GDR_OUT_STAGES", "2")),
                 "late": os.environ.get("HYBRIDIZE_GDR_OUT_LATE", "1") == "1",
                 "vn16": os.environ.get("HYBRIDIZE_GDR_VN16", "1") == "1",
                 "guard": int(os.environ.get("HYBRIDIZE_GDR_VN16_GUARD", "2"))}


@triton.jit
def _intra_fp16(b_o, A, vn, vn_big, vn_flag, flag_idx, p_v, m_v, PREC: tl.constexpr, HALF: tl.constexpr,
                GUARD: tl.constexpr):
    """b_o + A vn with vn stored in fp16 (chunk_scan's VN16): one fp16 product, as exact as tf32's on fp32
    tiles (11 significant bits each) at half the bytes. A: fp32 [C, C]. HALF: the fp16 operand type.
    GUARD (round 14, being measured), how elements past fp16's range are kept: 1, a tile with a vn element
    stored as inf (its fp32 value in vn_big) or an A entry past 65504 takes fp32 tiles (tf32, PREC), found by
    reductions over both tiles; 2, A's rows scaled by powers of two into range, and vn's tile from vn_big
    where the scan flagged this chunk (vn_flag[flag_idx]); 3, A's rows scaled only; 0, neither."""
    b_v = tl.load(vn + p_v, mask=m_v, other=0.0)
    if GUARD == 1:
        big = b_v == float("inf")
        far = tl.max(tl.max(tl.abs(A), axis=1), axis=0) >= 65504.0
        if far | (tl.max(tl.max(big.to(tl.int32), axis=1), axis=0) > 0):
            v32 = tl.where(big, tl.load(vn_big + p_v, mask=m_v & big, other=0.0), b_v.to(tl.float32))
            b_o = tl.dot(A, v32, b_o, input_precision=PREC)
        else:
            b_o = tl.dot(A.to(tl.float16).to(HALF), b_v.to(HALF), b_o)
    elif GUARD == 0:
        b_o = tl.dot(A.to(tl.float16).to(HALF), b_v.to(HALF), b_o)
    else:
        # rows of A past 2^15 scaled by 2^-e (exact); e = 0, and nothing changes, for every other row
        e = tl.maximum(tl.ceil(tl.log2(tl.max(tl.abs(A), axis=1))) - 15.0, 0.0)
        if GUARD == 2:
            if tl.load(vn_flag + flag_idx) != 0:
                big = b_v == float("inf")
                v32 = tl.where(big, tl.load(vn_big + p_v, mask=m_v & big, other=0.0), b_v.to(tl.float32))
                b_o = tl.dot(A, v32, b_o, input_precision=PREC)
            else:
                part = tl.dot((A * tl.exp2(-e)[:, None]).to(tl.float16).to(HALF), b_v.to(HALF))
                b_o += part * tl.exp2(e)[:, None]
        else:
            part = tl.dot((A * tl.exp2(-e)[:, None]).to(tl.float16).to(HALF), b_v.to(HALF))
            b_o += part * tl.exp2(e)[:, None]
    return b_o


@triton.jit
def _key_loop_pipelined(q, k, G, h, b_o, M, tok, valid, last_tok, i_c, i_h, H, vv, vm, scale,
                        K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, CHANNEL: tl.constexpr,
                        PREC: tl.constexpr, HDT: tl.constexpr, QK: tl.constexpr, KDT: tl.constexpr,
                        STAGES: tl.constexpr):
    """The output kernel's loop over key blocks as a loop the compiler pipelines (STAGES deep): the next
    block's q, k and h tiles load while this block's products run."""
    for k0 in tl.range(0, K, BK, num_stages=STAGES):
        kk = k0 + tl.arange(0, BK)
        km = kk < K
        p_k = (tok[:, None] * H + i_h) * K + kk[None, :]
        eG, _, _ = load_gates(G, tok, valid, last_tok, i_h, H, kk, km, K, CHANNEL)
        b_q = tl.load(q + p_k, mask=valid[:, None] & km[None, :], other=0.0)
        b_h = tl.load(h + ((i_c.to(tl.int64) * H + i_h) * K + kk[:, None]) * V + vv[None, :],
                      mask=km[:, None] & vm[None, :], other=0.0).to(HDT)
        b_o += tl.dot((b_q.to(tl.float32) * scale * eG).to(HDT), b_h, input_precision=PREC)
        if QK:
            b_k = tl.load(k + p_k, mask=valid[:, None] & km[None, :], other=0.0).to(KDT)
            M = tl.dot(b_q.to(KDT), tl.trans(b_k), M, input_precision=PREC)
    return b_o, M


@triton.jit
def _output_kernel(q, k, G, Aqk, h, vn, vn_big, vn_flag, o, row_scale, cu, chunks, scale, H,
                   K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, C: tl.constexpr,
                   CHANNEL: tl.constexpr, PREC: tl.constexpr, DT: tl.constexpr, HDT: tl.constexpr,
                   ROW_SCALE: tl.constexpr, QK: tl.constexpr, KDT: tl.constexpr, PIPE: tl.constexpr,
                   STAGES: tl.constexpr, LATE: tl.constexpr, VN16: tl.constexpr, HALF: tl.constexpr,
                   GUARD: tl.constexpr):
    """DT: operand type of Aqk vn; HDT: of (scale q e^G) h. ROW_SCALE: o's rows times row_scale.
    QK (scalar gates): Aqk formed here from q and k (KDT: their products' operand type).
    VN16: vn in fp16 with its out-of-range elements in vn_big (_intra_fp16; HALF: the fp16 operand type)."""
    i_c = tl.program_id(0)
    i_h = tl.program_id(1)
    i_v = tl.program_id(2)
    bos, eos, i_t = chunk_bounds(chunks, cu, i_c)
    rows = tl.arange(0, C)
    valid, tok, last_tok = chunk_tokens(bos, eos, i_t, rows, C)
    vv = i_v * BV + tl.arange(0, BV)
    vm = vv < V
    m_v = valid[:, None] & vm[None, :]
    p_v = (tok[:, None] * H + i_h) * V + vv[None, :]
    if QK or LATE or VN16:
        b_o = tl.zeros([C, BV], dtype=tl.float32)
    else:
        b_vn = tl.load(vn + p_v, mask=m_v, other=0.0).to(DT)
        b_A = tl.load(Aqk + (tok[:, None] * H + i_h) * C + rows[None, :], mask=valid[:, None], other=0.0).to(DT)
        b_o = tl.dot(b_A, b_vn, input_precision=PREC)
    if QK:
        M = tl.zeros([C, C], dtype=tl.float32)
        if not (LATE or VN16):
            b_vn = tl.load(vn + p_v, mask=m_v, other=0.0).to(DT)
    if PIPE:
        b_o, M = _key_loop_pipelined(q, k, G, h, b_o, M if QK else b_o, tok, valid, last_tok, i_c, i_h, H, vv, vm,
                                     scale, K, V, BK, CHANNEL, PREC, HDT, QK, KDT, STAGES)
    else:
        for k0 in tl.static_range(0, K, BK):  # key columns in blocks: bounded tiles up to head dim 256
            kk = k0 + tl.arange(0, BK)
            km = kk < K
            p_k = (tok[:, None] * H + i_h) * K + kk[None, :]
            eG, _, _ = load_gates(G, tok, valid, last_tok, i_h, H, kk, km, K, CHANNEL)
            b_q = tl.load(q + p_k, mask=valid[:, None] & km[None, :], other=0.0)
            b_h = tl.load(h + ((i_c.to(tl.int64) * H + i_h) * K + kk[:, None]) * V + vv[None, :],
                          mask=km[:, None] & vm[None, :], other=0.0).to(HDT)
            b_o += tl.dot((b_q.to(tl.float32) * scale * eG).to(HDT), b_h, input_precision=PREC)
            if QK:
                b_k = tl.load(k + p_k, mask=valid[:, None] & km[None, :], other=0.0).to(KDT)
                M = tl.dot(b_q.to(KDT), tl.trans(b_k), M, input_precision=PREC)
    if QK:  # as the prep forms it: the decay of the masked difference (exact zeros above the diagonal)
        if LATE:
            b_vn = tl.load(vn + p_v, mask=m_v, other=0.0).to(DT)
        Gc = tl.load(G + tok * H + i_h, mask=valid, other=0.0)
        D = tl.exp(tl.where(rows[:, None] >= rows[None, :], Gc[:, None] - Gc[None, :], float("-inf")))
        if VN16:
            b_o = _intra_fp16(b_o, M * D * scale, vn, vn_big, vn_flag, i_c * H + i_h, p_v, m_v, PREC, HALF, GUARD)
        else:
            b_o += tl.dot((M * D * scale).to(DT), b_vn, input_precision=PREC)
    elif VN16:
        b_A = tl.load(Aqk + (tok[:, None] * H + i_h) * C + rows[None, :], mask=valid[:, None], other=0.0)
        b_o = _intra_fp16(b_o, b_A.to(tl.float32), vn, vn_big, vn_flag, i_c * H + i_h, p_v, m_v, PREC, HALF,
                              GUARD)
    elif LATE:
        b_vn = tl.load(vn + p_v, mask=m_v, other=0.0).to(DT)
        b_A = tl.load(Aqk + (tok[:, None] * H + i_h) * C + rows[None, :], mask=valid[:, None], other=0.0).to(DT)
        b_o = tl.dot(b_A, b_vn, b_o, input_precision=PREC)
    if ROW_SCALE:
        b_o *= tl.load(row_scale + tok * H + i_h, mask=valid, other=0.0)[:, None]
    tl.store(o + p_v, b_o.to(o.dtype.element_ty), mask=m_v)


def chunk_output(q, G, Aqk, h, vn, scale: float, layout: Layout, qh_dtype: torch.dtype | None = None,
                 row_scale: torch.Tensor | None = None, k: torch.Tensor | None = None,
                 vn_big: torch.Tensor | None = None, vn_flag: torch.Tensor | None = None):
    """q [1,L,H,K]; G fp32 (g's shape); Aqk [1,L,H,C], or None with k [1,L,H,K] (scalar gates: Aqk is
    formed here); h [NC,H,K,V]; vn [1,L,H,V] -> o [1,L,H,V] (q's dtype).
    qh_dtype: the precision of the (scale q e^G) h product (w's dtype: a 16-bit product with the
    "mixed" intermediates, whose Aqk vn stays tf32); default: as Aqk vn. row_scale: fp32 [L*H], a
    factor per (token, head) applied before o is rounded (the fused L2 norm's rho for q). vn_big: vn is
    fp16 as chunk_scan stores it with vn_big (its out-of-range elements inf, their values in vn_big)."""
    _, L, H, K = q.shape
    V = vn.shape[-1]
    o = torch.empty(1, L, H, V, device=q.device, dtype=q.dtype)
    BV = min(OUTPUT_CONFIG["BV"], triton.next_power_of_2(V))
    if layout.num_chunks:
        # Products in the stored tiles' precision: fp32 Aqk (the default intermediates) gets tf32.
        # (Aqk formed here is in vn's dtype, as the prep would have stored it.)
        qk = Aqk is None
        if qk and (k is None or G.dim() == 4):
            raise ValueError("chunk_output forms Aqk for scalar gates only, and needs k for it")
        dt = (vn if qk or vn_big is not None else Aqk).dtype
        dt = dt if dt == torch.float32 else q.dtype
        _output_kernel[(layout.num_chunks, H, triton.cdiv(V, BV))](
            q, k if qk else q, G, vn if qk else Aqk, h, vn, vn_big if vn_big is not None else vn,
            vn_flag if vn_flag is not None else vn, o, row_scale if row_scale is not None else G, layout.cu,
            layout.chunks, scale, H,
            K=K, V=V, BK=min(OUTPUT_CONFIG["BK"], triton.next_power_of_2(K)), BV=BV, C=CHUNK, CHANNEL=G.dim() == 4,
            PREC=dot_precision(q.dtype), DT=dot_dtype(dt), HDT=dot_dtype(dt if qh_dtype is None else qh_dtype),
            ROW_SCALE=row_scale is not None, QK=qk, KDT=dot_dtype(q.dtype), PIPE=OUTPUT_CONFIG["pipe"],
            STAGES=OUTPUT_CONFIG["num_stages"], LATE=OUTPUT_CONFIG["late"], VN16=vn_big is not None,
            HALF=dot_dtype(torch.float16), GUARD=OUTPUT_CONFIG["guard"], num_warps=OUTPUT_CONFIG["num_warps"])
    return o
