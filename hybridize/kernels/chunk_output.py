"""Stage 3 of the chunked forward: every chunk's output, all chunks in parallel.

With h the state at the chunk's start and vn its corrected values (both stored by chunk_scan):
    o = (scale q e^G) h + Aqk vn
One program per (chunk, head, block of BV value columns). Taking this out of the sequential scan
halves the scan's serial step; the price is writing and re-reading h once per chunk.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import CHUNK, Layout, chunk_bounds, chunk_tokens, dot_dtype, dot_precision
from .chunk_scan import load_gates

OUTPUT_CONFIG = {"BK": 64, "BV": 64, "num_warps": 4}


@triton.jit
def _output_kernel(q, G, Aqk, h, vn, o, row_scale, cu, chunks, scale, H,
                   K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, C: tl.constexpr,
                   CHANNEL: tl.constexpr, PREC: tl.constexpr, DT: tl.constexpr, HDT: tl.constexpr,
                   ROW_SCALE: tl.constexpr):
    """DT: operand type of Aqk vn; HDT: of (scale q e^G) h. ROW_SCALE: o's rows times row_scale."""
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
    b_A = tl.load(Aqk + (tok[:, None] * H + i_h) * C + rows[None, :], mask=valid[:, None], other=0.0).to(DT)
    b_vn = tl.load(vn + p_v, mask=m_v, other=0.0).to(DT)
    b_o = tl.dot(b_A, b_vn, input_precision=PREC)
    for k0 in tl.static_range(0, K, BK):  # key columns in blocks: bounded tiles up to head dim 256
        kk = k0 + tl.arange(0, BK)
        km = kk < K
        eG, _, _ = load_gates(G, tok, valid, last_tok, i_h, H, kk, km, K, CHANNEL)
        b_q = tl.load(q + (tok[:, None] * H + i_h) * K + kk[None, :], mask=valid[:, None] & km[None, :], other=0.0)
        b_h = tl.load(h + ((i_c.to(tl.int64) * H + i_h) * K + kk[:, None]) * V + vv[None, :],
                      mask=km[:, None] & vm[None, :], other=0.0).to(HDT)
        b_o += tl.dot((b_q.to(tl.float32) * scale * eG).to(HDT), b_h, input_precision=PREC)
    if ROW_SCALE:
        b_o *= tl.load(row_scale + tok * H + i_h, mask=valid, other=0.0)[:, None]
    tl.store(o + p_v, b_o.to(o.dtype.element_ty), mask=m_v)


def chunk_output(q, G, Aqk, h, vn, scale: float, layout: Layout, qh_dtype: torch.dtype | None = None,
                 row_scale: torch.Tensor | None = None):
    """q [1,L,H,K]; G fp32 (g's shape); Aqk [1,L,H,C]; h [NC,H,K,V]; vn [1,L,H,V] -> o [1,L,H,V] (q's dtype).
    qh_dtype: the precision of the (scale q e^G) h product (w's dtype: a 16-bit product with the
    "mixed" intermediates, whose Aqk vn stays tf32); default: as Aqk vn. row_scale: fp32 [L*H], a
    factor per (token, head) applied before o is rounded (the fused L2 norm's rho for q)."""
    _, L, H, K = q.shape
    V = vn.shape[-1]
    o = torch.empty(1, L, H, V, device=q.device, dtype=q.dtype)
    BV = min(OUTPUT_CONFIG["BV"], triton.next_power_of_2(V))
    if layout.num_chunks:
        # Products in the stored tiles' precision: fp32 Aqk (the default intermediates) gets tf32.
        dt = Aqk.dtype if Aqk.dtype == torch.float32 else q.dtype
        _output_kernel[(layout.num_chunks, H, triton.cdiv(V, BV))](
            q, G, Aqk, h, vn, o, row_scale if row_scale is not None else G, layout.cu, layout.chunks, scale, H,
            K=K, V=V, BK=min(OUTPUT_CONFIG["BK"], triton.next_power_of_2(K)), BV=BV, C=CHUNK, CHANNEL=G.dim() == 4,
            PREC=dot_precision(q.dtype), DT=dot_dtype(dt), HDT=dot_dtype(dt if qh_dtype is None else qh_dtype),
            ROW_SCALE=row_scale is not None, num_warps=OUTPUT_CONFIG["num_warps"])
    return o
