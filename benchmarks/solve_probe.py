"""Round 15: the split prep's pairs kernel (with its inverse) and solve kernel alone, by the precision of their
products, at the shapes where the forward runs the solve kernel (GDN, 16 documents x heads).

    PYTHONPATH=. python benchmarks/solve_probe.py [--shapes 0,2]   (indices into SHAPES, or BxTxHxD)

Rows: the pairs kernel with the inverse's products on fp16 operands and its overflow flags (the forward's, scalar
gates) or tf32, at 4 and 8 warps; the solve kernel as the backward runs it (tf32 products, fp32 u), with u as a
Scaled (fp16 over powers of two), and as the forward runs it (fp16 products too, with its range check), at 4 and 8
warps and key blocks of 64 and 128; the fix kernel with nothing flagged (what every forward pays for the fallback). Medians of do_bench, ms; each row's T, or w and u, against the tf32 route's (relative Frobenius difference),
so a fast row that is wrong shows.
"""
from __future__ import annotations

import argparse
import itertools

import torch
import triton

from benchmarks.bench_kernels import bench, inputs
from benchmarks.kernel_stages import SHAPES, packed
from hybridize.kernels import chunk_prep as prep_mod
from hybridize.kernels import chunk_prep_split as sp
from hybridize.kernels._common import U_BLOCK, Scaled, make_layout


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def probe(B, T, H, D):
    q, k, v, g, beta = (packed(x) for x in inputs(B, T, H, D, False, False))
    layout = make_layout(B, T, None, q.device)
    scale = D ** -0.5
    w_dtype, inter = prep_mod.inter_dtypes(k)
    saved = dict(sp.SPLIT_CONFIG)
    sp.SPLIT_CONFIG.update(inverse_f16=False)  # the reference route: tf32 inverse and solve, fp32 u
    G, w_ref, u_ref, _, T_ref, _ = sp.chunk_prep_split(q, k, v, g, beta, scale, layout, w_dtype, inter, aqk=False)
    rows = []
    flags = torch.zeros(layout.num_chunks, H, device=q.device, dtype=torch.int32)
    for f16, nw in itertools.product((False, True), (4, 8)):
        sp.SPLIT_CONFIG.update(saved, pairs_warps=nw)
        Tm = torch.empty_like(T_ref)
        t = bench(lambda: sp.launch_pairs(q, k, g, beta, scale, layout, G, Tm, None, flags if f16 else None))
        rows.append((f"pairs + inverse {'fp16' if f16 else 'tf32'} w{nw}", t,
                     f"T {rel(Tm, T_ref):.1e}, flagged {int(flags.sum()) if f16 else '-'}"))
    flags.zero_()
    fix = lambda: sp.launch_fix(k, v, g, beta, G, T_ref, layout, flags, w, u)  # noqa: E731
    for (u16, f16), nw, bk in itertools.product([(False, False), (True, False), (True, True)], (4, 8), (64, 128)):
        sp.SPLIT_CONFIG.update(saved, solve_warps=nw, solve_BK=bk)
        w = torch.empty_like(w_ref)
        u = Scaled(torch.empty_like(u_ref, dtype=torch.float16),
                   torch.empty(*u_ref.shape[:-1], triton.cdiv(D, U_BLOCK), device=q.device)) if u16 else \
            torch.empty_like(u_ref)
        run = (lambda: sp.launch_solve(k, v, G, beta, T_ref, layout, w, u.values, None, u.scale,
                                       flags if f16 else None)) if u16 else \
            (lambda: sp.launch_solve(k, v, G, beta, T_ref, layout, w, u, None))
        t = bench(run)
        u_full = u.values.float() * u.scale.repeat_interleave(U_BLOCK, -1)[..., :D] if u16 else u
        label = f"{'fp16' if f16 else 'tf32'} products, u {'Scaled' if u16 else 'fp32'}"
        rows.append((f"solve {label} w{nw} BK{bk}", t, f"w {rel(w, w_ref):.1e} u {rel(u_full, u_ref):.1e}"
                     + (f", flagged {int(flags.sum())}" if f16 else "")))
    flags.zero_()
    rows.append(("fix kernel, nothing flagged", bench(fix), "-"))
    sp.SPLIT_CONFIG.clear()
    sp.SPLIT_CONFIG.update(saved)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="0,2")
    ap.add_argument("--out", default=None, help="unused (kernels_next_gpu.sh passes it to every script)")
    args = ap.parse_args()
    for spec in (s for s in args.shapes.split(",") if s):
        B, T, H, D = SHAPES[int(spec)] if "x" not in spec else tuple(int(n) for n in spec.split("x"))
        for label, t, err in probe(B, T, H, D):
            print(f"| ({B},{T},{H},{D}) | {label} | {t:.4f} | vs tf32: {err} |", flush=True)


if __name__ == "__main__":
    main()
