"""Shared pieces of the chunked gated-delta-rule kernels: Triton helpers used inside several
kernels, and the host-side description of how a packed batch splits into chunks.

Every kernel sees the batch as one packed sequence of tokens ([1, B*T, H, ...] is the same memory as
[B, T, H, ...]) cut into documents by ``cu``; a chunk never straddles two documents. That keeps one
code path for fixed-length and variable-length batches.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

CHUNK = 64  # tokens per chunk: the width of every intra-chunk matrix
SUB = 16  # sub-block of a chunk over which per-channel decay factors are split (see channel_pairwise)
# exp() arguments are clamped here where the result is masked away anyway: keeps inf out of
# products whose other factor is zero (inf * 0 = NaN would leak through a dot product).
EXP_CLAMP = tl.constexpr(80.0)


@dataclass
class Layout:
    """How a packed batch of tokens splits into documents and chunks (all int32 on the device)."""

    cu: torch.Tensor  # [N+1] document boundaries in tokens (read by the serial scans and decode)
    # [NC, 4] (document, chunk within document, document start, document end) of every chunk, in order: the
    # bounds stored per chunk make chunk_bounds one round of loads, not a load of the document and then of cu
    chunks: torch.Tensor
    chunk_offsets: torch.Tensor  # [N] index of each document's first chunk
    num_seqs: int
    num_chunks: int
    max_len: int


# Fixed-length layouts by (batch, seqlen, device): building one costs ~6 small launches (35-80 us
# measured on the H100, as much as a tenth of a whole forward at T = 8K), and a model's layers all
# ask for the same few. Bounded so that a sweep over many shapes cannot grow it without limit.
_FIXED_LAYOUTS: dict = {}
_FIXED_LAYOUTS_MAX = 64


def make_layout(batch: int, seqlen: int, cu_seqlens: torch.Tensor | None, device) -> Layout:
    if cu_seqlens is None:
        key = (batch, seqlen, torch.device(device))
        layout = _FIXED_LAYOUTS.get(key)
        if layout is None:
            if len(_FIXED_LAYOUTS) >= _FIXED_LAYOUTS_MAX:
                _FIXED_LAYOUTS.clear()
            layout = _FIXED_LAYOUTS[key] = _fixed_layout(batch, seqlen, device)
        return layout
    return _varlen_layout(cu_seqlens, device)


def _fixed_layout(batch: int, seqlen: int, device, chunk: int = CHUNK) -> Layout:
    # B equal documents: everything follows from arithmetic, no host sync needed. (chunk: only
    # benchmarks/chunk128_probe.py asks for another width.)
    nt = triton.cdiv(seqlen, chunk)
    cu = torch.arange(0, batch + 1, device=device, dtype=torch.int32) * seqlen
    doc = torch.arange(batch, device=device, dtype=torch.int32).repeat_interleave(nt)
    within = torch.arange(nt, device=device, dtype=torch.int32).repeat(batch)
    offsets = torch.arange(batch, device=device, dtype=torch.int32) * nt
    return Layout(cu, torch.stack([doc, within, doc * seqlen, (doc + 1) * seqlen], 1).contiguous(), offsets, batch,
                  batch * nt, seqlen)


def _varlen_layout(cu_seqlens: torch.Tensor, device) -> Layout:
    cu = cu_seqlens.to(device=device, dtype=torch.int32)
    lens = cu[1:] - cu[:-1]
    if bool((lens < 0).any()):
        raise ValueError("cu_seqlens must be non-decreasing")
    nts = (lens + CHUNK - 1) // CHUNK
    offsets = torch.cumsum(nts, 0, dtype=torch.int32) - nts
    total = int(nts.sum().item())
    doc = torch.repeat_interleave(torch.arange(len(lens), device=device, dtype=torch.int32), nts)
    within = torch.arange(total, device=device, dtype=torch.int32) - offsets.long()[doc.long()].int()
    max_len = int(lens.max().item()) if len(lens) else 0
    return Layout(cu, torch.stack([doc, within, cu[doc.long()], cu[doc.long() + 1]], 1).contiguous(), offsets, len(lens),
                  total, max_len)


# Test hook (tests/kernels/conftest.py sets it): chunk matrices start as NaN instead of whatever the
# memory held, so a load that reads past tril_mask, where no kernel writes, fails the float64 checks.
POISON = os.environ.get("HYBRIDIZE_GDR_POISON") == "1"


def chunk_matrix(L: int, H: int, device, dtype: torch.dtype) -> torch.Tensor:
    """[1, L, H, CHUNK]: each token's row of its chunk's [C, C] matrix (T, A, Aqk, dA, dM). Only the
    lower triangle (tril_mask) is ever written or read."""
    if POISON:
        return torch.full((1, L, H, CHUNK), float("nan"), device=device, dtype=dtype)
    return torch.empty(1, L, H, CHUNK, device=device, dtype=dtype)


@triton.jit
def lower_sectors(rows, cols):
    """[rows, cols]: column j at or left of row t's diagonal 8-column group (j // 8 <= t // 8). Whole
    groups of 8, so that a masked load or store stays vectorised (a per-element triangle made the forward
    up to 15% slower, H100, round 18) and still skips whole 32-byte sectors of fp32."""
    return (cols[None, :] // 8) <= (rows[:, None] // 8)


@triton.jit
def tril_mask(rows, valid):
    """Where a chunk matrix is stored and loaded: real rows, the lower_sectors of [C, C]. T = (I + A)^-1 and
    Aqk are lower triangular (A, dA strictly), written with their zeros up to each row's group end, and
    nothing beyond: 288 of 512 32-byte sectors of a [64, 64] fp32 tile move (44% fewer bytes)."""
    return valid[:, None] & lower_sectors(rows, rows)


@triton.jit
def load_chunk_matrix(ptr, tok, valid, rows, i_h, H, C: tl.constexpr):
    """One chunk's [C, C] tile of a chunk matrix (chunk_matrix, rows of tokens tok, head i_h): its tril_mask
    part as stored, zeros elsewhere."""
    return tl.load(ptr + (tok[:, None] * H + i_h) * C + rows[None, :], mask=tril_mask(rows, valid), other=0.0)


@triton.jit
def store_chunk_matrix(ptr, x, tok, valid, rows, i_h, H, C: tl.constexpr):
    """x, lower triangular ([C, C], zeros above the diagonal), into a chunk matrix: its tril_mask part, in the
    matrix's element type."""
    tl.store(ptr + (tok[:, None] * H + i_h) * C + rows[None, :], x.to(ptr.dtype.element_ty),
             mask=tril_mask(rows, valid))


def gate_kind(channel: bool) -> str:
    """The configuration key of a gate kind: "kda" for per-channel gates, "gdn" for scalar ones."""
    return "kda" if channel else "gdn"


def dot_dtype(dtype: torch.dtype):
    """Operand type of the products on 16-bit tiles: the input's own type on the GPU; fp32 under
    TRITON_INTERPRET, whose numpy matmul mishandles bfloat16 operands."""
    if triton.knobs.runtime.interpret:
        return tl.float32
    return {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}.get(dtype, tl.float32)


# Products on fp32 tiles when the inputs are 16-bit: "tf32" (default) or "tf32x3" (3 tensor-core
# products each; benchmarks/kernels_correctness.py measures both on aligned keys).
PRECISION_16BIT = os.environ.get("HYBRIDIZE_GDR_PREC", "tf32")


def dot_precision(dtype: torch.dtype) -> str:
    """fp32 inputs get 3xTF32 products (fp32-grade error, on the tensor cores; plain IEEE dots compile to
    minutes of FMA code); 16-bit inputs get tf32 for the fp32 intermediates by default, which is
    inside their own rounding error on random inputs (PRECISION_16BIT)."""
    return "tf32x3" if dtype == torch.float32 else PRECISION_16BIT


@triton.jit
def split16(x, KDT: tl.constexpr):
    """An fp32 tile as hi + lo, both bf16, hi + lo equal to x within 16 bits of mantissa (bf16 keeps 8):
    a product with a bf16 operand taken as two bf16 products is then as exact as tf32's one or better,
    and the bf16 operand needs no fp32 copy. KDT: the operand type the products take."""
    hi = x.to(tl.bfloat16)
    lo = (x - hi.to(tl.float32)).to(tl.bfloat16)
    return hi.to(KDT), lo.to(KDT)


@triton.jit
def stored(x, DTYPE: tl.constexpr):
    """An fp32 tile in DTYPE for a store, bf16 rounded to nearest even by its bits. The GPU's conversion rounds so
    already (the same result); Triton's interpreter truncates (and ignores fp_downcast_rounding), which in a stored
    state biases every element one way: the CPU tests would see twice the GPU's error in what reads it."""
    if DTYPE == tl.bfloat16:
        bits = x.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.to(tl.float32, bitcast=True).to(tl.bfloat16)
    return x.to(DTYPE)


@triton.jit
def via_registers(x, one):
    """x unchanged, `one` being exactly 1.0 at run time (s / s for a nonzero scalar argument s).

    A tile that goes from tl.load straight into tl.dot is pipelined into shared memory in its global
    order, and as an fp32 (tf32) operand that is not always an order Hopper's tensor cores read: the
    KDA scan's state update kg^T vn took 0.553 ms at (1,8192,16,128) with kg fed so, and 0.372 ms once
    kg passed through registers (H100, round 10, benchmarks/RESULTS.md). Elsewhere it did not help: w and
    kg in the backward's dh scan and vn in the output kernel, passed the same way, made KDA fwd+bwd
    slower (4.015 -> 4.085 ms), and h, dh, vn in the backward's stage 2 (whose kernels run one pipeline
    stage) made no difference at head dim 128 and GDN at 64 slower (bwd kernel 0.583 -> 0.667 ms), so
    only the scan uses it. A product with a run-time 1.0 is exact and cannot be folded away at compile
    time, as a literal 1.0 would be."""
    return x * one


@triton.jit
def chunk_bounds(chunks, i_c):
    """(document start, document end, chunk index within the document) of packed chunk i_c: three independent
    loads (Layout.chunks)."""
    return tl.load(chunks + 4 * i_c + 2), tl.load(chunks + 4 * i_c + 3), tl.load(chunks + 4 * i_c + 1)


@triton.jit
def chunk_tokens(bos, eos, i_t, rows, C: tl.constexpr):
    """Chunk i_t of the document [bos, eos): which of its C rows are real tokens, their packed token
    indices (int64), and the index of its last real token."""
    t0 = bos + i_t * C
    return t0 + rows < eos, (t0 + rows).to(tl.int64), (tl.minimum(t0 + C, eos) - 1).to(tl.int64)


@triton.jit
def unit_lower_inverse(A, C: tl.constexpr, SB: tl.constexpr, PREC: tl.constexpr):
    """(I + A)^-1 for a strictly lower-triangular A [C, C] (fp32), by blocked forward substitution.

    Forward substitution, X[i, :] = e_i - sum_{j<i} A[i, j] X[j, :], is stable where the nilpotent
    series (I - A)(I + A^2)(I + A^4)... is not: when keys are aligned (as in trained models, where
    keys share a large common direction and A[i, j] ~ beta ~ 0.5) the series' partial products grow
    like binomial coefficients and cancel catastrophically (relative errors of 1 to 5000 on
    SmolLM2's layers). Done a row at a time it costs C-1 dependent steps of tile reductions; here it
    runs as products on the tensor cores instead:
      1. the SB x SB diagonal blocks, all C/SB of them at once: step s settles row s of every block,
         X <- where(row % SB == s, I - A_diag X, X), SB - 1 products;
      2. the blocks below the diagonal, one block row at a time (block forward substitution):
         X_i = D_i^-1 (I - A_off X)_i with D_i^-1 from step 1, 2 products per block row."""
    rows = tl.arange(0, C)
    eye = tl.where(rows[:, None] == rows[None, :], 1.0, 0.0)
    same = (rows[:, None] // SB) == (rows[None, :] // SB)
    A_diag = tl.where(same, A, 0.0)
    X = eye
    for s in tl.static_range(1, SB):
        Y = tl.dot(A_diag, X, input_precision=PREC)
        X = tl.where((rows % SB == s)[:, None], eye - Y, X)
    D_inv = X  # block diagonal: row block i holds D_i^-1; row block 0 is already final
    A_off = tl.where(same, 0.0, A)
    for i in tl.static_range(1, C // SB):
        R = eye - tl.dot(A_off, X, input_precision=PREC)
        X = tl.where((rows // SB == i)[:, None], tl.dot(D_inv, R, input_precision=PREC), X)
    return X


@triton.jit
def unit_lower_inverse_doubling(A, C: tl.constexpr, PREC: tl.constexpr):
    """(I + A)^-1 for a strictly lower-triangular A [C, C] (fp32, C a power of two) by doubling the
    size of the inverted diagonal blocks: with X = diag(X1, X2) the inverses of two neighbouring
    diagonal blocks, the inverse of the block twice as large is [[X1, 0], [-X2 A21 X1, X2]], i.e.
        X <- X - X (A_n X)     A_n: A's blocks A21 inside each diagonal block of size n
    for every such block at once, as two [C, C] products per level. Blocks of 2 need no product
    (X = I - A_2), so C = 64 takes 5 levels, 10 products, where unit_lower_inverse takes 21. It is
    block forward substitution applied recursively, not a series: every step is an exact identity,
    so aligned keys (A[i, j] ~ 0.5) lose no more than substitution does."""
    rows = tl.arange(0, C)
    r = rows[:, None]
    c = rows[None, :]
    X = tl.where(r == c, 1.0, 0.0) - tl.where(r // 2 == c // 2, A, 0.0)
    X = _doubling_level(X, A, r, c, 4, PREC)  # block sizes 4, 8, ..., C (at most 128)
    if C >= 8:
        X = _doubling_level(X, A, r, c, 8, PREC)
    if C >= 16:
        X = _doubling_level(X, A, r, c, 16, PREC)
    if C >= 32:
        X = _doubling_level(X, A, r, c, 32, PREC)
    if C >= 64:
        X = _doubling_level(X, A, r, c, 64, PREC)
    if C >= 128:
        X = _doubling_level(X, A, r, c, 128, PREC)
    return X


@triton.jit
def _doubling_level(X, A, r, c, N: tl.constexpr, PREC: tl.constexpr):
    """One level of unit_lower_inverse_doubling: X holds the inverses of the diagonal blocks of size
    N / 2; returns those of size N."""
    A_n = tl.where((r // N == c // N) & ((r // (N // 2)) % 2 == 1) & ((c // (N // 2)) % 2 == 0), A, 0.0)
    return X - tl.dot(X, tl.dot(A_n, X, input_precision=PREC), input_precision=PREC)


@triton.jit
def invert(A, C: tl.constexpr, SB: tl.constexpr, DOUBLING: tl.constexpr, PREC: tl.constexpr):
    """(I + A)^-1 of one chunk's strictly lower A on the tensor cores: by block doubling (DOUBLING, the
    default) or by blocked substitution."""
    if DOUBLING:
        return unit_lower_inverse_doubling(A, C, PREC)
    else:
        return unit_lower_inverse(A, C, SB, PREC)


@triton.jit
def unit_lower_inverse_rows(A, C: tl.constexpr):
    """The same inverse a row at a time with tile reductions (C - 1 dependent steps, exact fp32):
    the previous version, kept as a reference for benchmarks/kernels.py's comparison."""
    rows = tl.arange(0, C)
    X = tl.where(rows[:, None] == rows[None, :], 1.0, 0.0)
    for i in range(1, C):
        a_i = tl.sum(tl.where(rows[:, None] == i, A, 0.0), 0)  # row i of A, over j
        x_i = tl.sum(a_i[:, None] * X, 0)  # sum_j A[i, j] X[j, :]; A[i, j] = 0 for j >= i
        X = tl.where(rows[:, None] == i, X - x_i[None, :], X)
    return X


@triton.jit
def pick_row(X, rows, r):
    """Row r of the register tile X (rows indexes its first axis)."""
    return tl.sum(tl.where(rows[:, None] == r, X, 0.0), 0)


@triton.jit
def channel_pairwise(a, b, G, rows, C: tl.constexpr, SB: tl.constexpr, INCLUSIVE: tl.constexpr,
                     PREC: tl.constexpr):
    """M[t, j] = sum_d a[t,d] b[j,d] exp(G[t,d] - G[j,d]) for j < t (j <= t if INCLUSIVE), else 0.

    a, b, G: [C, BK] fp32, G the within-chunk cumulative log-decay (non-increasing down the rows).
    exp(G_t - G_j) itself is <= 1, but factoring it as exp(G_t - G_r) * exp(G_r - G_j) for one
    reference row r, as a matrix product needs, overflows over a whole chunk. So the columns j are
    taken SB at a time with r in the middle of their block: every factor then stays under
    exp(SB/2 * |g|), finite in fp32 for gates down to about -10 per step (KDA bounds them at -5)."""
    acc = tl.zeros([C, C], dtype=tl.float32)
    for s in tl.static_range(C // SB):
        Gr = pick_row(G, rows, s * SB + SB // 2)
        inb = (rows >= s * SB) & (rows < s * SB + SB)
        a_s = tl.where((rows >= s * SB)[:, None], a * tl.exp(tl.minimum(G - Gr[None, :], EXP_CLAMP)), 0.0)
        b_s = tl.where(inb[:, None], b * tl.exp(tl.minimum(Gr[None, :] - G, EXP_CLAMP)), 0.0)
        acc += tl.dot(a_s, tl.trans(b_s), input_precision=PREC)
    if INCLUSIVE:
        keep = rows[:, None] >= rows[None, :]
    else:
        keep = rows[:, None] > rows[None, :]
    return tl.where(keep, acc, 0.0)


@triton.jit
def channel_rowside(P, b, G, rows, C: tl.constexpr, SB: tl.constexpr, PREC: tl.constexpr):
    """X[t, d] = sum_j P[t,j] b[j,d] exp(G[t,d] - G[j,d]) for a lower-triangular P [C, C]:
    the gradient of channel_pairwise's output with respect to its `a` (same safe split)."""
    acc = tl.zeros(b.shape, dtype=tl.float32)
    for s in tl.static_range(C // SB):
        Gr = pick_row(G, rows, s * SB + SB // 2)
        inb = (rows >= s * SB) & (rows < s * SB + SB)
        b_s = tl.where(inb[:, None], b * tl.exp(tl.minimum(Gr[None, :] - G, EXP_CLAMP)), 0.0)
        P_s = tl.where(inb[None, :], P, 0.0)
        part = tl.dot(P_s, b_s, input_precision=PREC)
        acc += tl.where((rows >= s * SB)[:, None], part * tl.exp(tl.minimum(G - Gr[None, :], EXP_CLAMP)), 0.0)
    return acc


@triton.jit
def channel_colside(P, a, G, rows, C: tl.constexpr, SB: tl.constexpr, PREC: tl.constexpr):
    """Y[j, d] = sum_t P[t,j] a[t,d] exp(G[t,d] - G[j,d]) for a lower-triangular P [C, C]:
    the gradient of channel_pairwise's output with respect to its `b`."""
    acc = tl.zeros(a.shape, dtype=tl.float32)
    for s in tl.static_range(C // SB):
        Gr = pick_row(G, rows, s * SB + SB // 2)
        inb = (rows >= s * SB) & (rows < s * SB + SB)
        a_s = tl.where((rows >= s * SB)[:, None], a * tl.exp(tl.minimum(G - Gr[None, :], EXP_CLAMP)), 0.0)
        part = tl.dot(tl.trans(P), a_s, input_precision=PREC)
        acc += tl.where(inb[:, None], part * tl.exp(tl.minimum(Gr[None, :] - G, EXP_CLAMP)), 0.0)
    return acc


@triton.jit
def channel_grads(dA, P, dM, k, q, G, rows, C: tl.constexpr, SB: tl.constexpr, PREC: tl.constexpr):
    """The four products of the KDA backward through the per-channel pairwise matrices, with the
    split decay factors formed once per column block instead of once per product:
        Xa0 = channel_rowside(dA, k)   Ya = channel_colside(P, k)
        Xm  = channel_rowside(dM, k)   Ym = channel_colside(dM, q)
    (same factors, same order of operations: 8 exp'd [C, BK] tiles instead of 32)."""
    Xa0 = tl.zeros(k.shape, dtype=tl.float32)
    Ya = tl.zeros(k.shape, dtype=tl.float32)
    Xm = tl.zeros(k.shape, dtype=tl.float32)
    Ym = tl.zeros(k.shape, dtype=tl.float32)
    for s in tl.static_range(C // SB):
        Gr = pick_row(G, rows, s * SB + SB // 2)
        inb = (rows >= s * SB) & (rows < s * SB + SB)
        after = (rows >= s * SB)[:, None]
        f_row = tl.exp(tl.minimum(G - Gr[None, :], EXP_CLAMP))  # e^{G_t - G_r}, rows t at or after the block
        f_col = tl.exp(tl.minimum(Gr[None, :] - G, EXP_CLAMP))  # e^{G_r - G_j}, rows j in the block
        k_s = tl.where(inb[:, None], k * f_col, 0.0)
        Xa0 += tl.where(after, tl.dot(tl.where(inb[None, :], dA, 0.0), k_s, input_precision=PREC) * f_row, 0.0)
        Xm += tl.where(after, tl.dot(tl.where(inb[None, :], dM, 0.0), k_s, input_precision=PREC) * f_row, 0.0)
        Ya += tl.where(inb[:, None], tl.dot(tl.trans(P), tl.where(after, k * f_row, 0.0), input_precision=PREC) * f_col,
                       0.0)
        Ym += tl.where(inb[:, None], tl.dot(tl.trans(dM), tl.where(after, q * f_row, 0.0), input_precision=PREC)
                       * f_col, 0.0)
    return Xa0, Ya, Xm, Ym
