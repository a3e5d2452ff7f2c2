"""Round 15: how exact the pairs kernel's T = (I + A)^-1 is with the inverse's products on fp16 operands
(SPLIT_CONFIG["inverse_f16"]) or tf32, against float64 from the same rounded inputs, on the GPU.

    PYTHONPATH=. python benchmarks/inverse_precision.py

Inputs as benchmarks/kernels_correctness.py draws them: random unit keys, and "aligned" keys (a shared direction,
little decay, beta ~ 0.5), bf16, one [2048 tokens, 4 heads] batch per kind and gate kind. Prints the relative
Frobenius error of T and its largest element.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from hybridize.kernels import chunk_prep_split as sp
from hybridize.kernels._common import CHUNK, make_layout


def draw(aligned: bool, channel: bool, T: int = 2048, H: int = 4, K: int = 128, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    k = r(1, T, H, K)
    if aligned:
        k = 4 * r(1, 1, H, K) + 0.3 * k
    k = F.normalize(k, dim=-1)
    g = -5.0 * torch.sigmoid(r(1, T, H, K) - 1.0) if channel else -F.softplus(r(1, T, H) - 1.0)
    beta = torch.sigmoid(r(1, T, H))
    if aligned:
        g, beta = 0.02 * g, 0.5 + 0.1 * (beta - 0.5)
    return k.bfloat16(), g, beta.bfloat16()


def reference(k, g, beta):
    """Each chunk's (I + A)^-1 in float64, A[i, j] = beta_i sum_d k_id k_jd e^{G_id - G_jd} (i > j)."""
    _, T, H, K = k.shape
    out = torch.zeros(1, T, H, CHUNK, dtype=torch.float64)
    for c0 in range(0, T, CHUNK):
        kk = k[0, c0:c0 + CHUNK].double().permute(1, 0, 2)  # [H, n, K]
        G = g[0, c0:c0 + CHUNK].double().cumsum(0)
        G = G.permute(1, 0, 2) if g.dim() == 4 else G.T[:, :, None].expand(-1, -1, K)
        kd = kk * torch.exp(G)
        ku = kk * torch.exp(-G)
        A = torch.tril(beta[0, c0:c0 + CHUNK].double().T[:, :, None] * (kd @ ku.transpose(1, 2)), -1)
        n = kk.shape[1]
        out[0, c0:c0 + n] = torch.linalg.inv(torch.eye(n, dtype=torch.float64) + A).permute(1, 0, 2)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None, help="unused (kernels_next_gpu.sh passes it to every script)")
    ap.parse_args()
    saved = dict(sp.SPLIT_CONFIG)
    for channel in (False, True):
        for aligned in (False, True):
            k, g, beta = draw(aligned, channel)
            ref = reference(k, g, beta)
            row = []
            for f16 in (False, True):
                sp.SPLIT_CONFIG.update(saved, inverse_f16=f16)
                kc, gc, bc = (x.cuda() for x in (k, g, beta))
                G = torch.empty(gc.shape, device="cuda")
                Tm = torch.empty(ref.shape, device="cuda")
                sp.launch_pairs(kc, kc, gc, bc, 1.0, make_layout(1, k.shape[1], None, "cuda"), G, Tm, None)
                err = ((Tm.double().cpu() - ref).norm() / ref.norm()).item()
                row.append(f"{'fp16' if f16 else 'tf32'} {err:.2e}")
            print(f"| T {'kda' if channel else 'gdn'} {'aligned' if aligned else 'random'} | max|T| "
                  f"{ref.abs().max().item():.2f} | {' | '.join(row)} |", flush=True)
    sp.SPLIT_CONFIG.update(saved)


if __name__ == "__main__":
    main()
