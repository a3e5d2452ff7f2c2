"""Fused L2 normalisation of q and k over the head dimension, forward and backward, as one autograd
function so the chunk kernels see already-normalised keys:
    y = x * r,  r = (sum x^2 + eps)^-1/2      dx = r (dy - y (dy . y))
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

EPS = 1e-6


@triton.jit
def _l2norm_fwd_kernel(x, y, rstd, R, D: tl.constexpr, BD: tl.constexpr, BR: tl.constexpr, eps):
    rows = tl.program_id(0) * BR + tl.arange(0, BR)
    cols = tl.arange(0, BD)
    m = (rows < R)[:, None] & (cols < D)[None, :]
    p = rows.to(tl.int64)[:, None] * D + cols[None, :]
    b_x = tl.load(x + p, mask=m, other=0.0).to(tl.float32)
    r = tl.rsqrt(tl.sum(b_x * b_x, 1) + eps)
    tl.store(y + p, (b_x * r[:, None]).to(y.dtype.element_ty), mask=m)
    tl.store(rstd + rows, r, mask=rows < R)


@triton.jit
def _l2norm_bwd_kernel(x, rstd, dy, dx, R, D: tl.constexpr, BD: tl.constexpr, BR: tl.constexpr):
    rows = tl.program_id(0) * BR + tl.arange(0, BR)
    cols = tl.arange(0, BD)
    m = (rows < R)[:, None] & (cols < D)[None, :]
    p = rows.to(tl.int64)[:, None] * D + cols[None, :]
    r = tl.load(rstd + rows, mask=rows < R, other=0.0)
    b_y = tl.load(x + p, mask=m, other=0.0).to(tl.float32) * r[:, None]
    b_dy = tl.load(dy + p, mask=m, other=0.0).to(tl.float32)
    b_dx = r[:, None] * (b_dy - b_y * tl.sum(b_dy * b_y, 1)[:, None])
    tl.store(dx + p, b_dx.to(dx.dtype.element_ty), mask=m)


def _block_rows(D: int) -> int:
    return max(1, 4096 // triton.next_power_of_2(D))


def l2norm_fwd(x: torch.Tensor):
    x = x.contiguous()
    D = x.shape[-1]
    R = x.numel() // D
    y = torch.empty_like(x)
    rstd = torch.empty(R, device=x.device, dtype=torch.float32)
    BR = _block_rows(D)
    if R:
        _l2norm_fwd_kernel[(triton.cdiv(R, BR),)](x, y, rstd, R, D=D, BD=triton.next_power_of_2(D), BR=BR, eps=EPS)
    return y, rstd


def l2norm_bwd(x: torch.Tensor, rstd: torch.Tensor, dy: torch.Tensor):
    D = x.shape[-1]
    R = x.numel() // D
    dx = torch.empty_like(x)
    BR = _block_rows(D)
    if R:
        _l2norm_bwd_kernel[(triton.cdiv(R, BR),)](x, rstd, dy.contiguous(), dx, R, D=D,
                                                  BD=triton.next_power_of_2(D), BR=BR)
    return dx
