"""The fused L2 normalisation of q and k, done without rounding the normalised vectors.

Storing q / ||q|| and k / ||k|| in bf16 costs one rounding of every element, and on nearly parallel
keys (trained models' keys share a large common direction) that one rounding dominated the whole
error: the information sits in the keys' small differences, which bf16 keeps to a few bits. Rounding
the normalised keys alone reproduced the H100's aligned-key errors in float64 (final state 1.5e-2,
dq 1.7e-2; benchmarks/key_scaling_cpu.py).

So each row's factor r = (sum x^2 + eps)^-1/2 is split as r = rho * 2^e, e an integer: x 2^e is
exact in every float format and rho lies in [2^-1/2, 2^1/2]. The kernels run on the exact x 2^e and
the rest of the factor goes where it costs no key precision. The delta rule

    S <- S (I - beta k_n k_n^T) + beta v k_n^T,    o = scale S^T q_n,    k_n = rho_k 2^e k

is the same rule on k' = 2^e k with beta' = beta rho_k^2 and v' = v / rho_k (one rounding each, in
their own dtype: both enter without the keys' cancellation), and o = rho_q o' for q' = 2^e q. The
backward follows the chain rule through these factors with e held constant (it is piecewise constant
in x). beta' is rounded to beta's dtype because an fp32 beta made the KDA backward's chunk kernel
0.51 ms slower at (1,8192,16,128) (2.182 vs 1.671 ms; H100, round 11), for no accuracy that shows: the
aligned-key errors moved by under 1e-3 (benchmarks/RESULTS.md, "Kernels, round 11").
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

EPS = 1e-6


@triton.jit
def _unit_split(b_x, eps):
    """Per row of b_x (fp32): r = (sum x^2 + eps)^-1/2, 2^e (e = round(log2 r), made from its bits so it
    is exact) and rho = r / 2^e."""
    r = tl.rsqrt(tl.sum(b_x * b_x, 1) + eps)
    e = tl.minimum(tl.maximum(tl.floor(tl.log2(r) + 0.5), -126.0), 127.0)
    p = ((e.to(tl.int32) + 127) << 23).to(tl.float32, bitcast=True)
    return r, p, r / p


@triton.jit
def _rows(R, D: tl.constexpr, BD: tl.constexpr, BR: tl.constexpr):
    rows = tl.program_id(0) * BR + tl.arange(0, BR)
    cols = tl.arange(0, BD)
    return rows, rows.to(tl.int64)[:, None] * D + cols[None, :], (rows < R)[:, None] & (cols < D)[None, :]


@triton.jit
def _unit_fwd_kernel(x, y, rho, v, v_out, beta, beta_out, R, eps, D: tl.constexpr, BD: tl.constexpr,
                     V: tl.constexpr, BV: tl.constexpr, BR: tl.constexpr, KEYS: tl.constexpr):
    """y = x 2^e and rho; for keys (KEYS) also v' = v / rho and beta' = beta rho^2."""
    rows, p, m = _rows(R, D, BD, BR)
    b_x = tl.load(x + p, mask=m, other=0.0).to(tl.float32)
    _, b_p, b_rho = _unit_split(b_x, eps)
    tl.store(y + p, (b_x * b_p[:, None]).to(y.dtype.element_ty), mask=m)
    tl.store(rho + rows, b_rho, mask=rows < R)
    if KEYS:
        _, pv, mv = _rows(R, V, BV, BR)
        b_v = tl.load(v + pv, mask=mv, other=0.0).to(tl.float32)
        tl.store(v_out + pv, (b_v / b_rho[:, None]).to(v_out.dtype.element_ty), mask=mv)
        b_b = tl.load(beta + rows, mask=rows < R, other=0.0).to(tl.float32)
        tl.store(beta_out + rows, b_b * b_rho * b_rho, mask=rows < R)


@triton.jit
def _out_grad_kernel(do, o, rho, do_out, drho, R, V: tl.constexpr, BV: tl.constexpr, BR: tl.constexpr):
    """o = rho o': the kernels take do' = rho do, and drho = sum(do o') = sum(do o) / rho."""
    rows, p, m = _rows(R, V, BV, BR)
    b_do = tl.load(do + p, mask=m, other=0.0).to(tl.float32)
    b_o = tl.load(o + p, mask=m, other=0.0).to(tl.float32)
    b_rho = tl.load(rho + rows, mask=rows < R, other=1.0)
    tl.store(do_out + p, (b_do * b_rho[:, None]).to(do_out.dtype.element_ty), mask=m)
    tl.store(drho + rows, tl.sum(b_do * b_o, 1) / b_rho, mask=rows < R)


@triton.jit
def _unit_bwd_kernel(x, dy, drho, dx, v, dv_in, dv, beta, dbeta_in, dbeta, R, eps, D: tl.constexpr,
                     BD: tl.constexpr, V: tl.constexpr, BV: tl.constexpr, BR: tl.constexpr, KEYS: tl.constexpr):
    """dx = 2^e dy - drho rho r^2 x  (y = x 2^e, rho = r 2^-e). For keys, drho comes from v' = v / rho
    and beta' = beta rho^2, whose own gradients are dv = dv' / rho and dbeta = dbeta' rho^2."""
    rows, p, m = _rows(R, D, BD, BR)
    b_x = tl.load(x + p, mask=m, other=0.0).to(tl.float32)
    r, b_p, b_rho = _unit_split(b_x, eps)
    if KEYS:
        _, pv, mv = _rows(R, V, BV, BR)
        b_v = tl.load(v + pv, mask=mv, other=0.0).to(tl.float32)
        b_dv = tl.load(dv_in + pv, mask=mv, other=0.0).to(tl.float32)
        tl.store(dv + pv, (b_dv / b_rho[:, None]).to(dv.dtype.element_ty), mask=mv)
        b_b = tl.load(beta + rows, mask=rows < R, other=0.0).to(tl.float32)
        b_db = tl.load(dbeta_in + rows, mask=rows < R, other=0.0)
        tl.store(dbeta + rows, b_db * b_rho * b_rho, mask=rows < R)
        b_dr = 2.0 * b_db * b_b * b_rho - tl.sum(b_dv * b_v, 1) / (b_rho * b_rho)
    else:
        b_dr = tl.load(drho + rows, mask=rows < R, other=0.0)
    b_dy = tl.load(dy + p, mask=m, other=0.0).to(tl.float32)
    b_dx = b_dy * b_p[:, None] - (b_dr * b_rho * r * r)[:, None] * b_x
    tl.store(dx + p, b_dx.to(dx.dtype.element_ty), mask=m)


def _launch(R: int, D: int, V: int):
    """Grid and block sizes: rows per program so that a tile holds about 4096 elements."""
    BD, BV = triton.next_power_of_2(D), triton.next_power_of_2(max(V, 1))
    BR = max(1, 4096 // max(BD, BV))
    return (triton.cdiv(R, BR),), dict(D=D, BD=BD, V=V, BV=BV, BR=BR)


def _per_row(x: torch.Tensor):
    """x made contiguous, its row length D, its number of rows R, an empty tensor like x and an fp32 [R]."""
    x = x.contiguous()
    D = x.shape[-1]
    R = x.numel() // D
    return x, D, R, torch.empty_like(x), torch.empty(R, device=x.device, dtype=torch.float32)


def unit_fwd(x: torch.Tensor):
    """x [..., D] -> (x 2^e in x's dtype, exact; rho fp32 [rows]) with 2^e rho = ||x||^-1 per row."""
    x, D, R, y, rho = _per_row(x)
    if R:
        grid, meta = _launch(R, D, 1)
        _unit_fwd_kernel[grid](x, y, rho, x, y, rho, rho, R, EPS, **meta, KEYS=False)
    return y, rho


def keys_fwd(k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor):
    """(k', rho, v', beta'): k' = k 2^e exact, v' = v / rho and beta' = beta rho^2 (each in its own dtype)."""
    k, D, R, k2, rho = _per_row(k)
    v, beta = v.contiguous(), beta.contiguous()
    V = v.shape[-1]
    v2, beta2 = torch.empty_like(v), torch.empty_like(beta)
    if R:
        grid, meta = _launch(R, D, V)
        _unit_fwd_kernel[grid](k, k2, rho, v, v2, beta, beta2, R, EPS, **meta, KEYS=True)
    return k2, rho, v2, beta2


def out_grad(do: torch.Tensor, o: torch.Tensor, rho: torch.Tensor):
    """For o = rho o' (per row): (do' = rho do in do's dtype, drho fp32 [rows])."""
    do, V, R, do2, drho = _per_row(do)
    o = o.contiguous()
    if R:
        grid, meta = _launch(R, V, 1)
        _out_grad_kernel[grid](do, o, rho, do2, drho, R, V=V, BV=meta["BD"], BR=meta["BR"])
    return do2, drho


def unit_bwd(x: torch.Tensor, dy: torch.Tensor, drho: torch.Tensor) -> torch.Tensor:
    """The gradient for x of (x 2^e, rho), given dy and drho."""
    D = x.shape[-1]
    R = x.numel() // D
    dx = torch.empty_like(x)
    if R:
        grid, meta = _launch(R, D, 1)
        _unit_bwd_kernel[grid](x, dy.contiguous(), drho, dx, x, x, x, drho, drho, drho, R, EPS, **meta, KEYS=False)
    return dx


def keys_bwd(k, v, beta, dk2, dv2, dbeta2):
    """The gradients for (k, v, beta) of keys_fwd's (k', v', beta'), given theirs."""
    D, V = k.shape[-1], v.shape[-1]
    R = k.numel() // D
    dk, dv = torch.empty_like(k), torch.empty_like(v)
    dbeta = torch.empty(beta.shape, device=k.device, dtype=torch.float32)
    if R:
        grid, meta = _launch(R, D, V)
        _unit_bwd_kernel[grid](k, dk2.contiguous(), dbeta, dk, v, dv2.contiguous(), dv, beta,
                               dbeta2.contiguous().float(), dbeta, R, EPS, **meta, KEYS=True)
    return dk, dv, dbeta
