"""Stage 3 of the chunked forward: every chunk's output, all chunks in parallel.

With h the state at the chunk's start and vn its corrected values (both stored by chunk_scan):
    o = (scale q e^G) h + Aqk vn
One program per (chunk, head, block of BV value columns). Taking this out of the sequential scan
halves the scan's serial step; the price is writing and re-reading h once per chunk.

Scalar gates without a stored Aqk (the forward when no gradient is needed, OUTPUT_CONFIG["qk"]): the
kernel forms Aqk = tril(scale q k^T e^{G_t - G_s}) itself, from the q tiles it reads anyway and k,
with the prep's operands and order (bf16 products, fp32 sums), so o is the same. k in bf16 replaces
Aqk in fp32 (the same bytes here), and the prep neither reads q nor writes Aqk.

vn in fp16 (16-bit inputs whose vn would be fp32, OUTPUT_CONFIG["vn16"]; chunk_scan's vn16): Aqk vn becomes
one fp16 product, as exact as the tf32 product on fp32 tiles it replaces (11 significant bits per operand,
for magnitudes from 2^-14 up; smaller elements keep fewer bits, an absolute error under 2^-25) at half vn's
bytes. fp16's range is the catch, kept at almost no cost to the common case: where vn or Aqk
overflowed fp16 (inf: the product is then not finite in some row), the program takes Aqk in fp32 times vn
formed again in fp32 from the scan's operands and the stored state h (vn_check, _vn_again; at head dims up to 64 as
a function call, _output_again_call, so that its registers do not weigh on the common path).
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ._common import CHUNK, Layout, chunk_bounds, chunk_tokens, dot_dtype, dot_precision, load_chunk_matrix
from .chunk_scan import load_gates

# Round 13 (H100, benchmarks/RESULTS.md "Kernels, round 13", calls 1, 3, 4; the kernel alone, ms):
# qk: whether the no-gradient forward of scalar gates leaves Aqk to this kernel (HYBRIDIZE_GDR_QK=0: the
#   prep stores it, as before). At (1,8192,16,128) the pairs kernel (with its inverse) went 0.107 -> 0.069
#   without q and Aqk, and this kernel 0.105 -> 0.126 with them (BV 128); at (4,4096,16,128) 0.190 ->
#   0.119 and 0.193 -> 0.234. Net 0.017 and 0.030 ms faster.
# BV 128 (was 64): one program per (chunk, head) at head dim 128. Stored Aqk, GDN 0.117 -> 0.105 and
#   0.225 -> 0.193 at those shapes, KDA 0.165 -> 0.137 and 0.317 -> 0.256. BK 128 was faster at
#   (1,8192,16,128) (0.100) but raised an illegal memory access at (4,4096,16,128): not used.
# Round 14 (calls 1-3, the kernel alone, ms, at (1,8192,16,128) / (4,4096,16,128)): vn16 (HYBRIDIZE_GDR_VN16=0
#   turns it off): GDN 0.127 -> 0.090 / 0.234 -> 0.166, KDA 0.137 -> 0.111 / 0.257 -> 0.207 (with Aqk's rows
#   scaled into range, since dropped: the fallback covers Aqk too). Measured and not kept: a guard by
#   reductions over both tiles (+0.03-0.05), and the scan storing vn's out-of-range elements in fp32 (a
#   masked store that never fires still cost the scan up to +0.09, at KDA (4,4096)). The key loop pipelined
#   with vn and Aqk loaded after it: 0.088 vs 0.094 unrolled (bf16 vn); with fp32 vn within 4% of the
#   unrolled loop either way, so one loop form serves both. 3 stages (call 5): GDN 0.099 -> 0.096 and
#   0.181 -> 0.174, KDA 0.118 -> 0.117 and 0.217 -> 0.216 with fp16 vn. A single key block (head dim 64)
#   is not pipelined (nothing to overlap; GDN's output at (8,2048,9,64) 0.047 -> 0.046, fla's 0.038).
#   The overflow fallback in the same program (call 9) costs the kernels nothing against a second launch
#   for the flagged chunks (forward sums within 0.015 ms either way) and saves that launch and a memset on
#   the host: GDN forward at (8,2048,9,64), wall time, 0.404 -> 0.211 ms, fwd+bwd 1.568 -> 1.061.
OUTPUT_CONFIG = {"BK": int(os.environ.get("HYBRIDIZE_GDR_OUTPUT_BK", "64")), "BV": 128,
                 "num_warps": int(os.environ.get("HYBRIDIZE_GDR_OUTPUT_WARPS", "4")), "num_stages": 3,
                 "call_max_dim": int(os.environ.get("HYBRIDIZE_GDR_OUTPUT_CALL_MAX_DIM", "64")),
                 "maxnreg": int(os.environ.get("HYBRIDIZE_GDR_OUTPUT_MAXNREG", "0")) or None,
                 "qk": os.environ.get("HYBRIDIZE_GDR_QK", "1") == "1",
                 "vn16": os.environ.get("HYBRIDIZE_GDR_VN16", "1") == "1",
                 "qg": os.environ.get("HYBRIDIZE_GDR_QG", "1") == "1", "qg_max_dim": 64}
# call_max_dim (round 23; HYBRIDIZE_GDR_OUTPUT_CALL_MAX_DIM): up to this head dim the fp16 fallback (_output_again) is
#   a function call, not inlined. Inlined, its tiles counted in the whole kernel's registers: at head dim 64, 183 per
#   thread (kernel_resources.py, sm_90), so 2 programs per multiprocessor, for a path that almost never runs; called,
#   the common path needs ~138 and the kernel compiles to 163 (ncu), 3 programs. H100, round 23 (call 1,
#   kernel_profile.py --shapes 0,4 --modes fwd --gates gdn,kda): GDN's output at (8,2048,9,64) 0.059 -> 0.041 ms (fla
#   0.038), KDA's 0.041 -> 0.039; but at head dim 128 the call was slower (GDN (1,8192,16,128) 0.082 -> 0.106: 128 KB
#   of shared memory instead of 96, one program per multiprocessor), so it stays inlined there. A register cap
#   (maxnreg 128 or 136) gained nothing at 64 and doubled the kernel at 128; 8 warps were slower at 64 (0.051);
#   32-column key blocks (3 stages) too (call 2: 0.052). Knobs for such sweeps: HYBRIDIZE_GDR_OUTPUT_WARPS,
#   HYBRIDIZE_GDR_OUTPUT_MAXNREG, HYBRIDIZE_GDR_OUTPUT_BK.
# qg (round 18; HYBRIDIZE_GDR_QG=0 turns it off): per-channel gates' (scale q e^G), rounded to the 16-bit
#   operand type of its product with h, is written by the pairs kernel beside the scan's decayed keys
#   (chunk_prep_split.pairs_decayed) and read here instead of q (16-bit) and G (fp32): the same operand bit for
#   bit, 2 bytes per element read instead of 6, and no exp here. At head dims up to qg_max_dim only: H100,
#   round 18 (call 5), KDA forward kernel sums, off -> on, ms: (8,2048,9,64) 0.346 -> 0.338 (output 0.057 ->
#   0.042); but at head dim 128 the pairs kernel (255 registers, spilling) paid more for the extra store than
#   this kernel saved: (1,8192,16,128) 0.749 -> 0.780 (pairs 0.330 -> 0.384, output 0.100 -> 0.075),
#   (2,16384,32,128) 4.333 -> 4.473.


@triton.jit
def _vn_again(keys, T_in, vals, beta, G, h, tok, valid, rows, i_c, i_h, H, vv, vm, p_v, m_v,
              K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, C: tl.constexpr,
              CHANNEL: tl.constexpr, PREC: tl.constexpr, HDT: tl.constexpr, SOLVE: tl.constexpr):
    """vn of one chunk in fp32, formed again as the scan formed it, from R = keys h (the stored state h, the
    scan's operand types): SOLVE 1, T diag(beta) (vals - R) with vals = v, T_in = T and keys = k e^G (kG
    per-channel; k, times e^G after the product, scalar gates); SOLVE 0, vals - R (vals = u, keys = w)."""
    R = tl.zeros([C, BV], dtype=tl.float32)
    for k0 in tl.static_range(0, K, BK):
        kk = k0 + tl.arange(0, BK)
        km = kk < K
        p_k = (tok[:, None] * H + i_h) * K + kk[None, :]
        b_h = tl.load(h + ((i_c.to(tl.int64) * H + i_h) * K + kk[:, None]) * V + vv[None, :],
                      mask=km[:, None] & vm[None, :], other=0.0).to(HDT)
        R = tl.dot(tl.load(keys + p_k, mask=valid[:, None] & km[None, :], other=0.0).to(HDT), b_h, R,
                   input_precision=PREC)
    x = tl.load(vals + p_v, mask=m_v, other=0.0).to(tl.float32)
    if SOLVE == 0:  # vn = u - w h
        return x - R
    if not CHANNEL:
        R = R * tl.exp(tl.load(G + tok * H + i_h, mask=valid, other=0.0))[:, None]
    b_b = tl.load(beta + tok * H + i_h, mask=valid, other=0.0).to(tl.float32)
    b_T = load_chunk_matrix(T_in, tok, valid, rows, i_h, H, C)
    return tl.dot(b_T, (x - R) * b_b[:, None], input_precision=PREC)


@triton.jit
def _qh_and_qk(q, k, G, h, tok, valid, last_tok, i_c, i_h, H, vv, vm, scale, K: tl.constexpr, V: tl.constexpr,
               BK: tl.constexpr, BV: tl.constexpr, C: tl.constexpr, CHANNEL: tl.constexpr, PREC: tl.constexpr,
               HDT: tl.constexpr, QK: tl.constexpr, KDT: tl.constexpr, STAGES: tl.constexpr, QG: tl.constexpr):
    """(scale q e^G) h [C, BV] and, with QK, q k^T [C, C] (else zeros)."""
    b_o = tl.zeros([C, BV], dtype=tl.float32)
    M = tl.zeros([C, C], dtype=tl.float32)
    # key columns in blocks (bounded tiles up to head dim 256), pipelined: the next block's tiles load while
    # this block's products run; vn and Aqk are loaded after the loop, so they are not live during it
    for k0 in tl.range(0, K, BK, num_stages=STAGES):
        kk = k0 + tl.arange(0, BK)
        km = kk < K
        p_k = (tok[:, None] * H + i_h) * K + kk[None, :]
        m_k = valid[:, None] & km[None, :]
        b_q = tl.load(q + p_k, mask=m_k, other=0.0)
        b_h = tl.load(h + ((i_c.to(tl.int64) * H + i_h) * K + kk[:, None]) * V + vv[None, :],
                      mask=km[:, None] & vm[None, :], other=0.0).to(HDT)
        if QG:  # q is already scale q e^G in HDT's type
            b_o += tl.dot(b_q.to(HDT), b_h, input_precision=PREC)
        else:
            eG, _, _ = load_gates(G, tok, valid, last_tok, i_h, H, kk, km, K, CHANNEL)
            b_o += tl.dot((b_q.to(tl.float32) * scale * eG).to(HDT), b_h, input_precision=PREC)
        if QK:
            b_k = tl.load(k + p_k, mask=m_k, other=0.0).to(KDT)
            M = tl.dot(b_q.to(KDT), tl.trans(b_k), M, input_precision=PREC)
    return b_o, M


@triton.jit
def _aqk(Aqk, M, G, tok, valid, rows, i_h, H, scale, C: tl.constexpr, QK: tl.constexpr):
    """Aqk (fp32): formed from q k^T (QK) as the prep forms it (the decay of the masked difference: exact zeros
    above the diagonal), or loaded."""
    if QK:
        Gc = tl.load(G + tok * H + i_h, mask=valid, other=0.0)
        return M * tl.exp(tl.where(rows[:, None] >= rows[None, :], Gc[:, None] - Gc[None, :], float("-inf"))) * scale
    else:
        return load_chunk_matrix(Aqk, tok, valid, rows, i_h, H, C).to(tl.float32)


@triton.jit
def _store_o(o, b_o, row_scale, tok, valid, i_h, H, p_v, m_v, ROW_SCALE: tl.constexpr):
    if ROW_SCALE:
        b_o *= tl.load(row_scale + tok * H + i_h, mask=valid, other=0.0)[:, None]
    tl.store(o + p_v, b_o.to(o.dtype.element_ty), mask=m_v)


@triton.jit
def _program_tiles(bos, eos, i_t, i_h, i_v, H, V: tl.constexpr, BV: tl.constexpr, C: tl.constexpr):
    """One program's rows (chunk_tokens': rows, valid, tok, last_tok), its value columns vv and their mask vm, and
    the [C, BV] output tile's mask and offsets."""
    rows = tl.arange(0, C)
    valid, tok, last_tok = chunk_tokens(bos, eos, i_t, rows, C)
    vv = i_v * BV + tl.arange(0, BV)
    vm = vv < V
    return rows, valid, tok, last_tok, vv, vm, valid[:, None] & vm[None, :], (tok[:, None] * H + i_h) * V + vv[None, :]


@triton.jit
def _output_again(q, k, G, Aqk, h, o, row_scale, keys, T_in, vals, beta, bos, eos, i_t, i_c, i_h, i_v, scale, H,
                  K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, C: tl.constexpr,
                  CHANNEL: tl.constexpr, PREC: tl.constexpr, HDT: tl.constexpr, ROW_SCALE: tl.constexpr,
                  QK: tl.constexpr, KDT: tl.constexpr, STAGES: tl.constexpr, SOLVE: tl.constexpr, QG: tl.constexpr):
    """VN16's fallback for one program whose fp16 Aqk vn was not finite: its output again from the start, with the
    same (scale q e^G) h and Aqk, times vn formed again in fp32 (_vn_again). It takes only scalars, so called as a
    function (_output_again_call) the registers it needs are not held by the common path."""
    rows, valid, tok, last_tok, vv, vm, m_v, p_v = _program_tiles(bos, eos, i_t, i_h, i_v, H, V, BV, C)
    # vn first: fewer [C, C] and [C, BV] tiles live at once (188 registers against 205 at head dim 64)
    vn32 = _vn_again(keys, T_in, vals, beta, G, h, tok, valid, rows, i_c, i_h, H, vv, vm, p_v, m_v,
                     K, V, BK, BV, C, CHANNEL, PREC, HDT, SOLVE)
    b_o, M = _qh_and_qk(q, k, G, h, tok, valid, last_tok, i_c, i_h, H, vv, vm, scale, K, V, BK, BV, C, CHANNEL, PREC,
                        HDT, QK, KDT, STAGES, QG)
    A = _aqk(Aqk, M, G, tok, valid, rows, i_h, H, scale, C, QK)
    _store_o(o, tl.dot(A, vn32, b_o, input_precision=PREC), row_scale, tok, valid, i_h, H, p_v, m_v, ROW_SCALE)


@triton.jit(noinline=True)
def _output_again_call(q, k, G, Aqk, h, o, row_scale, keys, T_in, vals, beta, bos, eos, i_t, i_c, i_h, i_v, scale, H,
                       K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, C: tl.constexpr,
                       CHANNEL: tl.constexpr, PREC: tl.constexpr, HDT: tl.constexpr, ROW_SCALE: tl.constexpr,
                       QK: tl.constexpr, KDT: tl.constexpr, STAGES: tl.constexpr, SOLVE: tl.constexpr,
                       QG: tl.constexpr):
    """_output_again, not inlined (OUTPUT_CONFIG["call_max_dim"])."""
    _output_again(q, k, G, Aqk, h, o, row_scale, keys, T_in, vals, beta, bos, eos, i_t, i_c, i_h, i_v, scale, H, K, V,
                  BK, BV, C, CHANNEL, PREC, HDT, ROW_SCALE, QK, KDT, STAGES, SOLVE, QG)


@triton.jit
def _output_kernel(q, k, G, Aqk, h, vn, o, row_scale, keys, T_in, vals, beta, chunks, scale, H,
                   K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, C: tl.constexpr,
                   CHANNEL: tl.constexpr, PREC: tl.constexpr, DT: tl.constexpr, HDT: tl.constexpr,
                   ROW_SCALE: tl.constexpr, QK: tl.constexpr, KDT: tl.constexpr, STAGES: tl.constexpr,
                   VN16: tl.constexpr, HALF: tl.constexpr, SOLVE: tl.constexpr, QG: tl.constexpr = False,
                   CALL: tl.constexpr = False):
    """DT: operand type of Aqk vn; HDT: of (scale q e^G) h. ROW_SCALE: o's rows times row_scale.
    QK (scalar gates): Aqk formed here from q and k (KDT: their products' operand type).
    VN16: vn is fp16 (HALF: fp16's operand type); where Aqk vn is not finite, the program's output again with vn
    formed in fp32 (_output_again, from keys, T_in, vals, beta; CALL: as a function call, not inlined). QG
    (per-channel gates): q holds scale q e^G (OUTPUT_CONFIG["qg"])."""
    i_c = tl.program_id(0)
    i_h = tl.program_id(1)
    i_v = tl.program_id(2)
    bos, eos, i_t = chunk_bounds(chunks, i_c)
    rows, valid, tok, last_tok, vv, vm, m_v, p_v = _program_tiles(bos, eos, i_t, i_h, i_v, H, V, BV, C)
    b_o, M = _qh_and_qk(q, k, G, h, tok, valid, last_tok, i_c, i_h, H, vv, vm, scale, K, V, BK, BV, C, CHANNEL, PREC,
                        HDT, QK, KDT, STAGES, QG)
    A = _aqk(Aqk, M, G, tok, valid, rows, i_h, H, scale, C, QK)
    if VN16:
        part = tl.dot(A.to(tl.float16).to(HALF), tl.load(vn + p_v, mask=m_v, other=0.0).to(HALF))
        # An inf in vn makes its column non-finite in every row (inf x 0 is NaN), an inf in A its row: a row sum
        # (within warps) is then not finite either (NaN and inf propagate through sums); one more reduction, over
        # the rows, decides for the program
        rs = tl.sum(part, axis=1)
        bad = tl.max(((rs != rs) | (tl.abs(rs) == float("inf"))).to(tl.int32), axis=0) > 0
        if CALL:
            if bad:
                _output_again_call(q, k, G, Aqk, h, o, row_scale, keys, T_in, vals, beta, bos, eos, i_t, i_c, i_h, i_v,
                                   scale, H, K, V, BK, BV, C, CHANNEL, PREC, HDT, ROW_SCALE, QK, KDT, STAGES, SOLVE, QG)
            else:
                _store_o(o, b_o + part, row_scale, tok, valid, i_h, H, p_v, m_v, ROW_SCALE)
        else:
            if bad:
                vn32 = _vn_again(keys, T_in, vals, beta, G, h, tok, valid, rows, i_c, i_h, H, vv, vm, p_v, m_v,
                                 K, V, BK, BV, C, CHANNEL, PREC, HDT, SOLVE)
                b_o = tl.dot(A, vn32, b_o, input_precision=PREC)
            else:
                b_o += part
            _store_o(o, b_o, row_scale, tok, valid, i_h, H, p_v, m_v, ROW_SCALE)
    else:
        b_o = tl.dot(A.to(DT), tl.load(vn + p_v, mask=m_v, other=0.0).to(DT), b_o, input_precision=PREC)
        _store_o(o, b_o, row_scale, tok, valid, i_h, H, p_v, m_v, ROW_SCALE)


def chunk_output(q, G, Aqk, h, vn, scale: float, layout: Layout, qh_dtype: torch.dtype | None = None,
                 row_scale: torch.Tensor | None = None, k: torch.Tensor | None = None,
                 vn_check: tuple | None = None, qg: torch.Tensor | None = None):
    """q [1,L,H,K]; G fp32 (g's shape); Aqk [1,L,H,C], or None with k [1,L,H,K] (scalar gates: Aqk is
    formed here); h [NC,H,K,V]; vn [1,L,H,V] -> o [1,L,H,V] (q's dtype).
    qh_dtype: the precision of the (scale q e^G) h product (w's dtype: a 16-bit product with the
    "mixed" intermediates, whose Aqk vn stays tf32); default: as Aqk vn. row_scale: fp32 [L*H], a
    factor per (token, head) applied before o is rounded (the fused L2 norm's rho for q).
    vn_check: vn is fp16 (chunk_scan's vn16), and these are the operands the scan formed it from, for the
    chunks where it overflowed: (T, v, beta, kG) as chunk_scan's solve (kG None for scalar gates), or (w, u).
    qg: scale q e^G in qh_dtype (per-channel gates; the pairs kernel's, OUTPUT_CONFIG["qg"]), read in place of q
    and G for that product."""
    _, L, H, K = q.shape
    V = vn.shape[-1]
    o = torch.empty(1, L, H, V, device=q.device, dtype=q.dtype)
    BV = min(OUTPUT_CONFIG["BV"], triton.next_power_of_2(V))
    BK = min(OUTPUT_CONFIG["BK"], triton.next_power_of_2(K))
    if not layout.num_chunks:
        return o
    # Products in the stored tiles' precision: fp32 Aqk (the default intermediates) gets tf32.
    # (Aqk formed here is in vn's dtype, as the prep would have stored it.)
    qk = Aqk is None
    if qk and (k is None or G.dim() == 4):
        raise ValueError("chunk_output forms Aqk for scalar gates only, and needs k for it")
    vn16 = vn_check is not None
    dt = torch.float32 if vn16 else (vn if qk else Aqk).dtype
    dt = dt if dt == torch.float32 else q.dtype
    solve = vn16 and len(vn_check) == 4  # (T, v, beta, kG) or (w, u)
    if solve:
        T_in, vals, beta, keys = vn_check
        keys = keys if keys is not None else k
    else:
        keys, vals = vn_check if vn16 else (G, G)
        T_in = beta = G
    launch = {"num_warps": OUTPUT_CONFIG["num_warps"]}
    if OUTPUT_CONFIG["maxnreg"]:
        launch["maxnreg"] = OUTPUT_CONFIG["maxnreg"]
    _output_kernel[(layout.num_chunks, H, triton.cdiv(V, BV))](
        q if qg is None else qg, k if k is not None else q, G, Aqk if not qk else G, h, vn, o,
        row_scale if row_scale is not None else G,
        keys, T_in, vals, beta, layout.chunks, scale, H,
        K=K, V=V, BK=BK, BV=BV, C=CHUNK, CHANNEL=G.dim() == 4,
        PREC=dot_precision(q.dtype), DT=dot_dtype(dt), HDT=dot_dtype(dt if qh_dtype is None else qh_dtype),
        ROW_SCALE=row_scale is not None, QK=qk, KDT=dot_dtype(q.dtype),
        STAGES=OUTPUT_CONFIG["num_stages"] if K > BK else 1,
        VN16=vn16, HALF=dot_dtype(torch.float16), SOLVE=int(solve), QG=qg is not None,
        CALL=K <= OUTPUT_CONFIG["call_max_dim"], **launch)
    return o
