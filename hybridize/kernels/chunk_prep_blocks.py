"""Stage 1 of the chunked forward, v4: the same outputs as chunk_prep.py's kernel (G, w, u, Aqk and
optionally T), computed on 16-row blocks of the chunk instead of whole [64, 64] tiles.

Why blocks. Timed alone on the H100 (benchmarks/kernel_stages.py), v3's prep took 0.38 ms at
(1, 8192, 16, 128) where fla's fused kkt + solve takes 0.12: its inverse is a chain of 21 dependent
[64, 64, 64] tf32 products, and per-channel gates (KDA) cost 8 exp'd [64, 64] tiles per 64 key
columns. Split into 4 blocks of 16 rows:
  * A = strict_tril(beta k k^T decay) and Aqk = tril(scale q k^T decay) are 10 lower blocks each;
  * each diagonal block of I + A is inverted by forward substitution on a [16, 16] register tile
    (15 cheap steps), and the rest by block forward substitution,
        T_ij = -D_i sum_{m=j}^{i-1} A_im T_mj,   D_i = (I + A_ii)^-1,
    16 small products in all;
  * w = T (beta k e^G) and u = T (beta v) are 10 block products per column block.
Per-channel decay factors e^{G_t - G_s} (s before t) are split through a reference row r between
them: for blocks i > j, r = the first row of block i, so both e^{G_t - G_r} and e^{G_r - G_s} are <= 1
(no overflow, no clamp); inside a diagonal block r is its middle row (factors up to e^{8 |g|max},
finite in fp32 for per-step gates down to about -10, as in _common.channel_pairwise).
KDA also gets kg = k e^{G_last - G} here (written in w's dtype), so the sequential scan multiplies no
per-channel exponentials on its critical path. The loops over key and value columns are unrolled
(UNROLL) up to head dim 128 only: rolled, they spill more (GDN D128: 0 -> 400 B), and unrolled at head
dim 256 the kernel took over 15 minutes to compile for sm_90 (benchmarks/kernel_resources.py).

Outcome on the H100 (benchmarks/RESULTS.md, "Kernels, round 6"): correct, but slower than v3. The
GDN prep took 0.740 ms against v3's 0.387 at (1, 8192, 16, 128). The [16, 16] products run as
mma.sync, not wgmma, and the block substitution is a chain of dependent products. Kept opt-in, as a
measured design and a reference.
"""
from __future__ import annotations

import triton
import triton.language as tl

from ._common import EXP_CLAMP, chunk_bounds, pick_row

BC = 16  # rows per block; 4 blocks per 64-token chunk


@triton.jit
def _block_rows(t0, eos, i: tl.constexpr, r, BC: tl.constexpr):
    """Block i of the chunk starting at token t0: which rows are real tokens, and their indices."""
    t = t0 + i * BC + r
    return t < eos, t.to(tl.int64)


@triton.jit
def _tile(ptr, tok, valid, i_h, H, cols, cm, W: tl.constexpr):
    """Rows tok, columns cols of a [tokens, H, W] tensor, zeros outside; as fp32."""
    return tl.load(ptr + (tok[:, None] * H + i_h) * W + cols[None, :], mask=valid[:, None] & cm[None, :],
                   other=0.0).to(tl.float32)


@triton.jit
def _put(ptr, X, tok, valid, i_h, H, cols, cm, W: tl.constexpr):
    tl.store(ptr + (tok[:, None] * H + i_h) * W + cols[None, :], X.to(ptr.dtype.element_ty),
             mask=valid[:, None] & cm[None, :])


@triton.jit
def _unit_lower_inverse16(L, r):
    """(I + L)^-1 for a strictly lower-triangular [16, 16] fp32 tile, by forward substitution:
    row s of the inverse is e_s - sum_{j<s} L[s, j] X[j, :]; rows j >= s of X are still e_j there
    and L[s, j] = 0 for them, so the update may sum over all rows."""
    X = tl.where(r[:, None] == r[None, :], 1.0, 0.0)
    for s in tl.static_range(1, 16):
        l_s = tl.sum(tl.where(r[:, None] == s, L, 0.0), 0)  # L[s, :]
        x_s = tl.sum(l_s[:, None] * X, 0)  # sum_j L[s, j] X[j, :]
        X = tl.where(r[:, None] == s, X - x_s[None, :], X)
    return X


@triton.jit
def _channel_gates(g, tok, valid, i_h, H, kk, km, carry, K: tl.constexpr):
    """One block's per-channel cumulative log-decay (continuing from carry, the previous block's
    last row) and the new carry."""
    gb = _tile(g, tok, valid, i_h, H, kk, km, K)
    return carry[None, :] + tl.cumsum(gb, 0), carry + tl.sum(gb, 0)


@triton.jit
def _chunk_channel_gates(g, t_0, t_1, t_2, t_3, m0, m1, m2, m3, i_h, H, kk, km, K: tl.constexpr, BK: tl.constexpr):
    """The four blocks' per-channel cumulative log-decay over columns kk, and the chunk's last row
    (rows past the document end add zero gates, so it is the last real token's)."""
    carry = tl.zeros([BK], dtype=tl.float32)
    G_0, carry = _channel_gates(g, t_0, m0, i_h, H, kk, km, carry, K)
    G_1, carry = _channel_gates(g, t_1, m1, i_h, H, kk, km, carry, K)
    G_2, carry = _channel_gates(g, t_2, m2, i_h, H, kk, km, carry, K)
    G_3, carry = _channel_gates(g, t_3, m3, i_h, H, kk, km, carry, K)
    return G_0, G_1, G_2, G_3, carry


@triton.jit
def _offdiag(a, q, G_i, b, G_j, r, PREC: tl.constexpr):
    """Block (i, j), j < i, of k k^T and q k^T under per-channel decay: sum_d a[t,d] b[s,d] e^{G_i[t,d] -
    G_j[s,d]} with the reference row = block i's first row (both factors <= 1). a, q: block i's k, q."""
    Gr = pick_row(G_i, r, 0)
    f = tl.exp(G_i - Gr[None, :])
    bs = tl.trans(b * tl.exp(tl.minimum(Gr[None, :] - G_j, EXP_CLAMP)))
    return (tl.dot(a * f, bs, input_precision=PREC), tl.dot(q * f, bs, input_precision=PREC))


@triton.jit
def _diag(a, q, G_i, r, PREC: tl.constexpr):
    """Diagonal block of k k^T and q k^T under per-channel decay, reference row in the middle (the
    caller masks the upper triangle, where the factors are not bounded)."""
    Gm = pick_row(G_i, r, 8)
    f = tl.exp(tl.minimum(G_i - Gm[None, :], EXP_CLAMP))
    bs = tl.trans(a * tl.exp(tl.minimum(Gm[None, :] - G_i, EXP_CLAMP)))
    return tl.dot(a * f, bs, input_precision=PREC), tl.dot(q * f, bs, input_precision=PREC)


@triton.jit
def _scalar_decay(Gt, Gs, r, DIAG: tl.constexpr, STRICT: tl.constexpr):
    """e^{G_t - G_s} for the rows t of one block and columns s of another (scalar gates); on a
    diagonal block zero above (STRICT: on and above) the diagonal, computed as exp(-inf)."""
    d = Gt[:, None] - Gs[None, :]
    if DIAG:
        if STRICT:
            d = tl.where(r[:, None] > r[None, :], d, float("-inf"))
        else:
            d = tl.where(r[:, None] >= r[None, :], d, float("-inf"))
    return tl.exp(d)


@triton.jit
def block_inverse(A00, A11, A22, A33, A10, A20, A21, A30, A31, A32, r, PREC: tl.constexpr):
    """T = (I + A)^-1 from the 10 lower [16, 16] blocks of a strictly lower-triangular A: diagonal
    blocks D_i = (I + A_ii)^-1 by forward substitution, the rest by block forward substitution
    T_ij = -D_i sum_{m=j}^{i-1} A_im T_mj (16 small products). Returns D0..D3, T10, T20, T21, T30, T31, T32."""
    D0 = _unit_lower_inverse16(A00, r)
    D1 = _unit_lower_inverse16(A11, r)
    D2 = _unit_lower_inverse16(A22, r)
    D3 = _unit_lower_inverse16(A33, r)
    T10 = -tl.dot(D1, tl.dot(A10, D0, input_precision=PREC), input_precision=PREC)
    T21 = -tl.dot(D2, tl.dot(A21, D1, input_precision=PREC), input_precision=PREC)
    T32 = -tl.dot(D3, tl.dot(A32, D2, input_precision=PREC), input_precision=PREC)
    T20 = -tl.dot(D2, tl.dot(A20, D0, input_precision=PREC) + tl.dot(A21, T10, input_precision=PREC),
                  input_precision=PREC)
    T31 = -tl.dot(D3, tl.dot(A31, D1, input_precision=PREC) + tl.dot(A32, T21, input_precision=PREC),
                  input_precision=PREC)
    T30 = -tl.dot(D3, tl.dot(A30, D0, input_precision=PREC) + tl.dot(A31, T10, input_precision=PREC)
                  + tl.dot(A32, T20, input_precision=PREC), input_precision=PREC)
    return D0, D1, D2, D3, T10, T20, T21, T30, T31, T32


@triton.jit
def _store_row_block(ptr, tok, valid, i_h, H, r, X0, X1, X2, X3, C: tl.constexpr, BC: tl.constexpr):
    """One 16-row block of a [tokens, H, 64] matrix, from its four [16, 16] column blocks."""
    base = ptr + (tok[:, None] * H + i_h) * C + r[None, :]
    m = valid[:, None]
    tl.store(base, X0.to(ptr.dtype.element_ty), mask=m)
    tl.store(base + BC, X1.to(ptr.dtype.element_ty), mask=m)
    tl.store(base + 2 * BC, X2.to(ptr.dtype.element_ty), mask=m)
    tl.store(base + 3 * BC, X3.to(ptr.dtype.element_ty), mask=m)


@triton.jit
def _prep_blocks_kernel(q, k, v, g, beta, G_out, w_out, u_out, Aqk_out, T_out, kg_out, chunks, scale, H,
                        K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, C: tl.constexpr,
                        BC: tl.constexpr, CHANNEL: tl.constexpr, STORE_T: tl.constexpr, STORE_KG: tl.constexpr,
                        PREC: tl.constexpr, PAIR_PREC: tl.constexpr, DT: tl.constexpr, UNROLL: tl.constexpr):
    i_c = tl.program_id(0)
    i_h = tl.program_id(1)
    bos, eos, i_t = chunk_bounds(chunks, i_c)
    t0 = bos + i_t * C
    r = tl.arange(0, BC)
    m0, t_0 = _block_rows(t0, eos, 0, r, BC)
    m1, t_1 = _block_rows(t0, eos, 1, r, BC)
    m2, t_2 = _block_rows(t0, eos, 2, r, BC)
    m3, t_3 = _block_rows(t0, eos, 3, r, BC)
    # Rows past the document end load as zeros (k = q = v = beta = g = 0): they change nothing and
    # their outputs are masked, so a partial last chunk needs no special case.
    b0 = tl.load(beta + t_0 * H + i_h, mask=m0, other=0.0).to(tl.float32)
    b1 = tl.load(beta + t_1 * H + i_h, mask=m1, other=0.0).to(tl.float32)
    b2 = tl.load(beta + t_2 * H + i_h, mask=m2, other=0.0).to(tl.float32)
    b3 = tl.load(beta + t_3 * H + i_h, mask=m3, other=0.0).to(tl.float32)
    if not CHANNEL:
        g0 = tl.load(g + t_0 * H + i_h, mask=m0, other=0.0).to(tl.float32)
        g1 = tl.load(g + t_1 * H + i_h, mask=m1, other=0.0).to(tl.float32)
        g2 = tl.load(g + t_2 * H + i_h, mask=m2, other=0.0).to(tl.float32)
        g3 = tl.load(g + t_3 * H + i_h, mask=m3, other=0.0).to(tl.float32)
        c1 = tl.sum(g0, 0)  # the cumulative sum carried into each block
        c2 = c1 + tl.sum(g1, 0)
        c3 = c2 + tl.sum(g2, 0)
        G0 = tl.cumsum(g0, 0)
        G1 = c1 + tl.cumsum(g1, 0)
        G2 = c2 + tl.cumsum(g2, 0)
        G3 = c3 + tl.cumsum(g3, 0)
        tl.store(G_out + t_0 * H + i_h, G0, mask=m0)
        tl.store(G_out + t_1 * H + i_h, G1, mask=m1)
        tl.store(G_out + t_2 * H + i_h, G2, mask=m2)
        tl.store(G_out + t_3 * H + i_h, G3, mask=m3)

    # --- the 10 lower blocks of A (k k^T) and M (q k^T), accumulated over key columns ---
    A00 = tl.zeros([BC, BC], dtype=tl.float32)
    A11 = tl.zeros([BC, BC], dtype=tl.float32)
    A22 = tl.zeros([BC, BC], dtype=tl.float32)
    A33 = tl.zeros([BC, BC], dtype=tl.float32)
    A10 = tl.zeros([BC, BC], dtype=tl.float32)
    A20 = tl.zeros([BC, BC], dtype=tl.float32)
    A21 = tl.zeros([BC, BC], dtype=tl.float32)
    A30 = tl.zeros([BC, BC], dtype=tl.float32)
    A31 = tl.zeros([BC, BC], dtype=tl.float32)
    A32 = tl.zeros([BC, BC], dtype=tl.float32)
    M00 = tl.zeros([BC, BC], dtype=tl.float32)
    M11 = tl.zeros([BC, BC], dtype=tl.float32)
    M22 = tl.zeros([BC, BC], dtype=tl.float32)
    M33 = tl.zeros([BC, BC], dtype=tl.float32)
    M10 = tl.zeros([BC, BC], dtype=tl.float32)
    M20 = tl.zeros([BC, BC], dtype=tl.float32)
    M21 = tl.zeros([BC, BC], dtype=tl.float32)
    M30 = tl.zeros([BC, BC], dtype=tl.float32)
    M31 = tl.zeros([BC, BC], dtype=tl.float32)
    M32 = tl.zeros([BC, BC], dtype=tl.float32)
    for k0 in tl.range(0, K, BK, loop_unroll_factor=UNROLL):
        kk = k0 + tl.arange(0, BK)
        km = kk < K
        k_0 = _tile(k, t_0, m0, i_h, H, kk, km, K)
        k_1 = _tile(k, t_1, m1, i_h, H, kk, km, K)
        k_2 = _tile(k, t_2, m2, i_h, H, kk, km, K)
        k_3 = _tile(k, t_3, m3, i_h, H, kk, km, K)
        q_0 = _tile(q, t_0, m0, i_h, H, kk, km, K)
        q_1 = _tile(q, t_1, m1, i_h, H, kk, km, K)
        q_2 = _tile(q, t_2, m2, i_h, H, kk, km, K)
        q_3 = _tile(q, t_3, m3, i_h, H, kk, km, K)
        if CHANNEL:
            G_0, G_1, G_2, G_3, _ = _chunk_channel_gates(g, t_0, t_1, t_2, t_3, m0, m1, m2, m3, i_h, H, kk, km, K, BK)
            _put(G_out, G_0, t_0, m0, i_h, H, kk, km, K)
            _put(G_out, G_1, t_1, m1, i_h, H, kk, km, K)
            _put(G_out, G_2, t_2, m2, i_h, H, kk, km, K)
            _put(G_out, G_3, t_3, m3, i_h, H, kk, km, K)
            a, m = _diag(k_0, q_0, G_0, r, PAIR_PREC)
            A00 += a
            M00 += m
            a, m = _diag(k_1, q_1, G_1, r, PAIR_PREC)
            A11 += a
            M11 += m
            a, m = _diag(k_2, q_2, G_2, r, PAIR_PREC)
            A22 += a
            M22 += m
            a, m = _diag(k_3, q_3, G_3, r, PAIR_PREC)
            A33 += a
            M33 += m
            a, m = _offdiag(k_1, q_1, G_1, k_0, G_0, r, PAIR_PREC)
            A10 += a
            M10 += m
            a, m = _offdiag(k_2, q_2, G_2, k_0, G_0, r, PAIR_PREC)
            A20 += a
            M20 += m
            a, m = _offdiag(k_2, q_2, G_2, k_1, G_1, r, PAIR_PREC)
            A21 += a
            M21 += m
            a, m = _offdiag(k_3, q_3, G_3, k_0, G_0, r, PAIR_PREC)
            A30 += a
            M30 += m
            a, m = _offdiag(k_3, q_3, G_3, k_1, G_1, r, PAIR_PREC)
            A31 += a
            M31 += m
            a, m = _offdiag(k_3, q_3, G_3, k_2, G_2, r, PAIR_PREC)
            A32 += a
            M32 += m
        else:
            # scalar gates factor out of the sum over columns: raw products on the input dtype
            d0, d1, d2, d3 = k_0.to(DT), k_1.to(DT), k_2.to(DT), k_3.to(DT)
            e0, e1, e2, e3 = q_0.to(DT), q_1.to(DT), q_2.to(DT), q_3.to(DT)
            A00 = tl.dot(d0, tl.trans(d0), A00, input_precision=PREC)
            A11 = tl.dot(d1, tl.trans(d1), A11, input_precision=PREC)
            A22 = tl.dot(d2, tl.trans(d2), A22, input_precision=PREC)
            A33 = tl.dot(d3, tl.trans(d3), A33, input_precision=PREC)
            A10 = tl.dot(d1, tl.trans(d0), A10, input_precision=PREC)
            A20 = tl.dot(d2, tl.trans(d0), A20, input_precision=PREC)
            A21 = tl.dot(d2, tl.trans(d1), A21, input_precision=PREC)
            A30 = tl.dot(d3, tl.trans(d0), A30, input_precision=PREC)
            A31 = tl.dot(d3, tl.trans(d1), A31, input_precision=PREC)
            A32 = tl.dot(d3, tl.trans(d2), A32, input_precision=PREC)
            M00 = tl.dot(e0, tl.trans(d0), M00, input_precision=PREC)
            M11 = tl.dot(e1, tl.trans(d1), M11, input_precision=PREC)
            M22 = tl.dot(e2, tl.trans(d2), M22, input_precision=PREC)
            M33 = tl.dot(e3, tl.trans(d3), M33, input_precision=PREC)
            M10 = tl.dot(e1, tl.trans(d0), M10, input_precision=PREC)
            M20 = tl.dot(e2, tl.trans(d0), M20, input_precision=PREC)
            M21 = tl.dot(e2, tl.trans(d1), M21, input_precision=PREC)
            M30 = tl.dot(e3, tl.trans(d0), M30, input_precision=PREC)
            M31 = tl.dot(e3, tl.trans(d1), M31, input_precision=PREC)
            M32 = tl.dot(e3, tl.trans(d2), M32, input_precision=PREC)
    if CHANNEL:
        strict = r[:, None] > r[None, :]
        incl = r[:, None] >= r[None, :]
        A00 = tl.where(strict, A00, 0.0)
        A11 = tl.where(strict, A11, 0.0)
        A22 = tl.where(strict, A22, 0.0)
        A33 = tl.where(strict, A33, 0.0)
        M00 = tl.where(incl, M00, 0.0)
        M11 = tl.where(incl, M11, 0.0)
        M22 = tl.where(incl, M22, 0.0)
        M33 = tl.where(incl, M33, 0.0)
    else:
        A00 *= _scalar_decay(G0, G0, r, True, True)
        A11 *= _scalar_decay(G1, G1, r, True, True)
        A22 *= _scalar_decay(G2, G2, r, True, True)
        A33 *= _scalar_decay(G3, G3, r, True, True)
        M00 *= _scalar_decay(G0, G0, r, True, False)
        M11 *= _scalar_decay(G1, G1, r, True, False)
        M22 *= _scalar_decay(G2, G2, r, True, False)
        M33 *= _scalar_decay(G3, G3, r, True, False)
        e10 = _scalar_decay(G1, G0, r, False, False)
        e20 = _scalar_decay(G2, G0, r, False, False)
        e21 = _scalar_decay(G2, G1, r, False, False)
        e30 = _scalar_decay(G3, G0, r, False, False)
        e31 = _scalar_decay(G3, G1, r, False, False)
        e32 = _scalar_decay(G3, G2, r, False, False)
        A10 *= e10
        A20 *= e20
        A21 *= e21
        A30 *= e30
        A31 *= e31
        A32 *= e32
        M10 *= e10
        M20 *= e20
        M21 *= e21
        M30 *= e30
        M31 *= e31
        M32 *= e32
    # beta scales the rows of A; scale those of M
    A00 *= b0[:, None]
    A11 *= b1[:, None]
    A22 *= b2[:, None]
    A33 *= b3[:, None]
    A10 *= b1[:, None]
    A20 *= b2[:, None]
    A21 *= b2[:, None]
    A30 *= b3[:, None]
    A31 *= b3[:, None]
    A32 *= b3[:, None]
    z = tl.zeros([BC, BC], dtype=tl.float32)
    _store_row_block(Aqk_out, t_0, m0, i_h, H, r, M00 * scale, z, z, z, C, BC)
    _store_row_block(Aqk_out, t_1, m1, i_h, H, r, M10 * scale, M11 * scale, z, z, C, BC)
    _store_row_block(Aqk_out, t_2, m2, i_h, H, r, M20 * scale, M21 * scale, M22 * scale, z, C, BC)
    _store_row_block(Aqk_out, t_3, m3, i_h, H, r, M30 * scale, M31 * scale, M32 * scale, M33 * scale, C, BC)

    # --- T = (I + A)^-1: diagonal blocks by forward substitution, the rest by block substitution ---
    D0, D1, D2, D3, T10, T20, T21, T30, T31, T32 = block_inverse(A00, A11, A22, A33, A10, A20, A21, A30, A31, A32,
                                                                 r, PREC)
    if STORE_T:
        _store_row_block(T_out, t_0, m0, i_h, H, r, D0, z, z, z, C, BC)
        _store_row_block(T_out, t_1, m1, i_h, H, r, T10, D1, z, z, C, BC)
        _store_row_block(T_out, t_2, m2, i_h, H, r, T20, T21, D2, z, C, BC)
        _store_row_block(T_out, t_3, m3, i_h, H, r, T30, T31, T32, D3, C, BC)

    # --- w = T (beta k e^G) [and kg = k e^{G_last - G}], BK key columns at a time ---
    for k0 in tl.range(0, K, BK, loop_unroll_factor=UNROLL):
        kk = k0 + tl.arange(0, BK)
        km = kk < K
        k_0 = _tile(k, t_0, m0, i_h, H, kk, km, K)
        k_1 = _tile(k, t_1, m1, i_h, H, kk, km, K)
        k_2 = _tile(k, t_2, m2, i_h, H, kk, km, K)
        k_3 = _tile(k, t_3, m3, i_h, H, kk, km, K)
        if CHANNEL:  # recomputed rather than re-read: G_out was written by other threads
            G_0, G_1, G_2, G_3, G_l = _chunk_channel_gates(g, t_0, t_1, t_2, t_3, m0, m1, m2, m3, i_h, H, kk, km, K, BK)
            x0 = k_0 * tl.exp(G_0) * b0[:, None]
            x1 = k_1 * tl.exp(G_1) * b1[:, None]
            x2 = k_2 * tl.exp(G_2) * b2[:, None]
            x3 = k_3 * tl.exp(G_3) * b3[:, None]
            if STORE_KG:
                _put(kg_out, k_0 * tl.exp(G_l[None, :] - G_0), t_0, m0, i_h, H, kk, km, K)
                _put(kg_out, k_1 * tl.exp(G_l[None, :] - G_1), t_1, m1, i_h, H, kk, km, K)
                _put(kg_out, k_2 * tl.exp(G_l[None, :] - G_2), t_2, m2, i_h, H, kk, km, K)
                _put(kg_out, k_3 * tl.exp(G_l[None, :] - G_3), t_3, m3, i_h, H, kk, km, K)
        else:
            x0 = k_0 * (tl.exp(G0) * b0)[:, None]
            x1 = k_1 * (tl.exp(G1) * b1)[:, None]
            x2 = k_2 * (tl.exp(G2) * b2)[:, None]
            x3 = k_3 * (tl.exp(G3) * b3)[:, None]
        _put(w_out, tl.dot(D0, x0, input_precision=PREC), t_0, m0, i_h, H, kk, km, K)
        _put(w_out, tl.dot(T10, x0, input_precision=PREC) + tl.dot(D1, x1, input_precision=PREC),
             t_1, m1, i_h, H, kk, km, K)
        _put(w_out, tl.dot(T20, x0, input_precision=PREC) + tl.dot(T21, x1, input_precision=PREC)
             + tl.dot(D2, x2, input_precision=PREC), t_2, m2, i_h, H, kk, km, K)
        _put(w_out, tl.dot(T30, x0, input_precision=PREC) + tl.dot(T31, x1, input_precision=PREC)
             + tl.dot(T32, x2, input_precision=PREC) + tl.dot(D3, x3, input_precision=PREC),
             t_3, m3, i_h, H, kk, km, K)

    # --- u = T (beta v), BV value columns at a time ---
    for v0 in tl.range(0, V, BV, loop_unroll_factor=UNROLL):
        vv = v0 + tl.arange(0, BV)
        vm = vv < V
        y0 = _tile(v, t_0, m0, i_h, H, vv, vm, V) * b0[:, None]
        y1 = _tile(v, t_1, m1, i_h, H, vv, vm, V) * b1[:, None]
        y2 = _tile(v, t_2, m2, i_h, H, vv, vm, V) * b2[:, None]
        y3 = _tile(v, t_3, m3, i_h, H, vv, vm, V) * b3[:, None]
        _put(u_out, tl.dot(D0, y0, input_precision=PREC), t_0, m0, i_h, H, vv, vm, V)
        _put(u_out, tl.dot(T10, y0, input_precision=PREC) + tl.dot(D1, y1, input_precision=PREC),
             t_1, m1, i_h, H, vv, vm, V)
        _put(u_out, tl.dot(T20, y0, input_precision=PREC) + tl.dot(T21, y1, input_precision=PREC)
             + tl.dot(D2, y2, input_precision=PREC), t_2, m2, i_h, H, vv, vm, V)
        _put(u_out, tl.dot(T30, y0, input_precision=PREC) + tl.dot(T31, y1, input_precision=PREC)
             + tl.dot(T32, y2, input_precision=PREC) + tl.dot(D3, y3, input_precision=PREC),
             t_3, m3, i_h, H, vv, vm, V)
