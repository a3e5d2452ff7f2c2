"""Round 15: the split prep's solve kernel alone, with u stored fp32 (the backward's) or as a Scaled (fp16 over
powers of two; the forward's, SPLIT_CONFIG["scaled_u"]), at the shapes where the forward runs it (GDN, 16 documents
x heads).

    PYTHONPATH=. python benchmarks/solve_probe.py [--shapes 0,2]   (indices into SHAPES, or BxTxHxD)

Medians of do_bench, ms, at 4 and 8 warps; each row's w and u against the default route's (relative Frobenius
difference), so a fast row that is wrong shows. (Round 15's calls 1-7 ran earlier versions of this script, with fp16
products in the inverse and the solve, at commit 1df7e86; see benchmarks/RESULTS.md.)
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
    w_dtype, inter = prep_mod.inter_dtypes(k)
    G, w_ref, u_ref, _, T_ref, _ = sp.chunk_prep_split(q, k, v, g, beta, D ** -0.5, layout, w_dtype, inter, aqk=False)
    saved = dict(sp.SPLIT_CONFIG)
    rows = []
    for u16, nw in itertools.product((False, True), (4, 8)):
        sp.SPLIT_CONFIG.update(saved, solve_warps=nw, scaled_u_warps=nw)
        w = torch.empty_like(w_ref)
        if u16:
            u = Scaled(torch.empty_like(u_ref, dtype=torch.float16),
                       torch.empty(*u_ref.shape[:-1], triton.cdiv(D, U_BLOCK), device=q.device))
            t = bench(lambda: sp.launch_solve(k, v, G, beta, T_ref, layout, w, u.values, None, u.scale))
            u_full = u.values.float() * u.scale.repeat_interleave(U_BLOCK, -1)[..., :D]
        else:
            u = u_full = torch.empty_like(u_ref)
            t = bench(lambda: sp.launch_solve(k, v, G, beta, T_ref, layout, w, u, None))
        rows.append((f"solve, u {'Scaled' if u16 else 'fp32'}, {nw} warps", t,
                     f"w {rel(w, w_ref):.1e} u {rel(u_full, u_ref):.1e}"))
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
            print(f"| ({B},{T},{H},{D}) | {label} | {t:.4f} | vs u fp32: {err} |", flush=True)


if __name__ == "__main__":
    main()
