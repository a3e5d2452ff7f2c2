"""CPU experiment (torch, float64 with explicit rounding): what the fused q/k L2 norm's storage costs on
nearly parallel keys, the case where the H100 correctness script failed in rounds 1-10.

Everything runs in float64 on the same bf16 inputs; only the roundings the kernels make at their
inputs and outputs are applied (to nearest, as the GPU rounds), so the error of each setting is what
those roundings alone cost against the exact rule:

    normalised-bf16   q / ||q|| and k / ||k|| stored in bf16 (the kernels before round 11)
    pow2              round 11: q 2^e and k 2^e (exact), v' = v / rho_k and beta' = beta rho_k^2 rounded
                      to bf16, o = rho_q o' rounded, do' = rho_q do rounded, and the kernels' dq, dk, dv
                      rounded to bf16 (hybridize/kernels/l2norm.py)
    pow2-exact-v      pow2 without the v' rounding (what is left comes from q, o and do)

    python benchmarks/key_scaling_cpu.py [--T 1024] [--H 3]

Round 11 (this machine, 2 cores): normalised-bf16 reproduced the H100's failures (gdn D64: state
1.5e-2, dq 1.7e-2, dg 3.5e-2; kda D128: dq 1.6e-2, dh0 1.3e-2); pow2 put every output and gradient
at or under 5.9e-3.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from hybridize.modeling.gated_delta import chunk_gated_delta_rule

NAMES = ("o", "state", "dq", "dk", "dv", "dg", "dbeta", "dh0")


def bf(x: torch.Tensor) -> torch.Tensor:
    return x.bfloat16().double()


def rounded(x: torch.Tensor) -> torch.Tensor:
    """x rounded to bf16 in the forward, the gradient passing straight through."""
    return x + (bf(x) - x).detach()


class RoundGrad(torch.autograd.Function):
    """Identity forward; the gradient rounded to bf16 (a kernel's bf16 gradient output)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return bf(g)


def split(x: torch.Tensor):
    """(x 2^e, rho) with 2^e rho = ||x||^-1 per row (e constant for the gradient)."""
    r = (x.pow(2).sum(-1, keepdim=True) + 1e-6).rsqrt()
    e = torch.round(torch.log2(r)).detach()
    return x * torch.exp2(e), r * torch.exp2(-e)


def inputs(T: int, H: int, K: int, channel: bool, seed: int = 0):
    """The GPU script's aligned-key inputs (benchmarks/kernels_correctness.py), on the CPU."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)
    q, k, v = r(1, T, H, K), r(1, T, H, K), r(1, T, H, K)
    common = r(1, 1, H, K)
    q, k = 4 * common + 0.3 * q, 4 * common + 0.3 * k
    g = -5 * torch.sigmoid(r(1, T, H, K) - 2) if channel else -torch.exp(r(1, 1, H) * 0.5) * F.softplus(r(1, T, H) - 3)
    beta = torch.sigmoid(r(1, T, H))
    g, beta = 0.02 * g, 0.5 + 0.1 * (beta - 0.5)
    h0 = r(1, H, K, K) * 0.1
    do, dht = bf(r(1, T, H, K)), r(1, H, K, K)
    return [bf(q), bf(k), bf(v), g, bf(beta), h0], do, dht


def run(ins, do, dht, setting: str):
    xs = [t.clone().requires_grad_() for t in ins]
    q, k, v, g, beta, h0 = xs
    if setting == "exact":
        o, ht = chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                       use_qk_l2norm=True)
    elif setting == "normalised-bf16":
        qn, kn = (rounded(F.normalize(x, dim=-1)) for x in (q, k))
        o, ht = chunk_gated_delta_rule(RoundGrad.apply(qn), RoundGrad.apply(kn), RoundGrad.apply(v), g, beta,
                                       initial_state=h0, output_final_state=True)
        o = rounded(o)
    else:
        q2, rho_q = split(q)
        k2, rho_k = split(k)
        v2 = v / rho_k
        if setting != "pow2-exact-v":
            v2 = rounded(v2)
        beta2 = rounded(beta * rho_k[..., 0] ** 2)
        o, ht = chunk_gated_delta_rule(RoundGrad.apply(q2), RoundGrad.apply(k2), RoundGrad.apply(v2), g, beta2,
                                       initial_state=h0, output_final_state=True)
        o = rounded(rho_q * RoundGrad.apply(rounded(o)))  # o' rounded, do' = rho_q do rounded, o rounded
    ((o * do).sum() + (ht * dht).sum()).backward()
    return [o.detach(), ht.detach()] + [x.grad for x in xs]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, default=1024)
    ap.add_argument("--H", type=int, default=3)
    args = ap.parse_args()
    print("| case | setting | " + " | ".join(NAMES) + " |")
    print("|---|---|" + "---|" * len(NAMES))
    for channel, K in ((False, 64), (True, 128)):
        ins, do, dht = inputs(args.T, args.H, K, channel)
        ref = run(ins, do, dht, "exact")
        for setting in ("normalised-bf16", "pow2", "pow2-exact-v"):
            got = run(ins, do, dht, setting)
            errs = [((a - b).norm() / b.norm()).item() for a, b in zip(got, ref)]
            print(f"| {'kda' if channel else 'gdn'} D{K} aligned | {setting} | " + " | ".join(f"{e:.1e}" for e in errs) + " |")


if __name__ == "__main__":
    main()
