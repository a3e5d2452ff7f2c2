"""CPU experiment (torch, float64 with explicit rounding): how the precision of the chunk
intermediates sets the forward's error, to choose what a "mixed" setting should keep in fp32 before
building it. It emulates the GDN forward the kernels run (prep -> scan -> output, chunks of 64) with
each intermediate rounded where the kernels store it, and each product's operands rounded as the
tensor cores take them (tf32: 10 mantissa bits, round to nearest; bf16: 7), accumulating in float64.
The inverse is the kernels' block doubling. Error: ||o - ref|| / ||ref|| and the same for the final
state, against the float64 token-by-token recurrence on the very same (bf16) inputs.

    python benchmarks/intermediates_cpu.py [--T 1024] [--D 64,128] [--draws 3]

Settings, as (w, u, Aqk, vn) storage and the scan's product operands:
    fp32      the default: all four fp32, tf32 products (h rounded to tf32 in w h)
    input     all four bf16 and bf16 products (fla's precision, intermediates="input")
    w-bf16    w in bf16, the rest fp32, tf32 products (halves w's bytes; the same products)
    w-bf16x   w in bf16 and bf16 products in the scan (h and vn rounded to bf16), the rest fp32
    wh-bf16   w in bf16 and a bf16 product for w h only; the state update k^T vn stays tf32
    u-bf16, Aqk-bf16, vn-bf16   only that one stored in bf16, tf32 products
    mixed     wh-bf16, and the output's (scale q e^G) h as a bf16 product (h is stored in bf16
              already): what intermediates="mixed" runs
    mixed-kg  mixed, and kg = k e^{G_last - G} in bf16 (the state update's operand; the product stays
              tf32), as per-channel gates would store it
    mixed-solve-w   mixed, and w = T (beta k e^G) as a bf16 product in the solve (T rounded to bf16)
    mixed-solve-u   mixed-solve-w, and u = T (beta v) as a bf16 product too (u still stored in fp32)
Round 10 added the last four (chosen from them: mixed).
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from hybridize.modeling.gated_delta import recurrent_gated_delta_rule

C = 64
SETTINGS = {  # name: (w, u, Aqk, vn) storage, scan product operands for (w h, k^T vn)
    "fp32": (("fp32",) * 4, ("tf32", "tf32")),
    "input": (("bf16",) * 4, ("bf16", "bf16")),
    "w-bf16": (("bf16", "fp32", "fp32", "fp32"), ("tf32", "tf32")),
    "w-bf16x": (("bf16", "fp32", "fp32", "fp32"), ("bf16", "bf16")),
    "wh-bf16": (("bf16", "fp32", "fp32", "fp32"), ("bf16", "tf32")),
    "u-bf16": (("fp32", "bf16", "fp32", "fp32"), ("tf32", "tf32")),
    "Aqk-bf16": (("fp32", "fp32", "bf16", "fp32"), ("tf32", "tf32")),
    "vn-bf16": (("fp32", "fp32", "fp32", "bf16"), ("tf32", "tf32")),
    "mixed": (("bf16", "fp32", "fp32", "fp32"), ("bf16", "tf32"), {"qh"}),
    "mixed-kg": (("bf16", "fp32", "fp32", "fp32"), ("bf16", "tf32"), {"qh", "kg"}),
    "mixed-solve-w": (("bf16", "fp32", "fp32", "fp32"), ("bf16", "tf32"), {"qh", "solve_w"}),
    "mixed-solve-u": (("bf16", "fp32", "fp32", "fp32"), ("bf16", "tf32"), {"qh", "solve_w", "solve_u"}),
}


def rnd(x: torch.Tensor, kind: str) -> torch.Tensor:
    """x (float64) rounded to fp32, bf16 or tf32 (round to nearest even on the dropped 13 bits)."""
    if kind == "bf16":
        return x.bfloat16().double()
    x32 = x.float()
    if kind == "tf32":
        i = x32.view(torch.int32)
        lsb = (i >> 13) & 1
        x32 = ((i + 0x0FFF + lsb) & ~0x1FFF).view(torch.float32)
    return x32.double()


def dot(a: torch.Tensor, b: torch.Tensor, prec: str) -> torch.Tensor:
    """A tensor-core product: operands rounded to prec, sum in float64, result to fp32."""
    return rnd(rnd(a, prec) @ rnd(b, prec), "fp32")


def inverse_doubling(A: torch.Tensor, prec: str) -> torch.Tensor:
    """(I + A)^-1 as _common.unit_lower_inverse_doubling forms it."""
    r = torch.arange(A.shape[-1])
    R, Cc = r[:, None], r[None, :]
    X = torch.eye(A.shape[-1], dtype=A.dtype) - torch.where(R // 2 == Cc // 2, A, 0.0)
    n = 4
    while n <= A.shape[-1]:
        A_n = torch.where((R // n == Cc // n) & ((R // (n // 2)) % 2 == 1) & ((Cc // (n // 2)) % 2 == 0), A, 0.0)
        X = rnd(X - dot(X, dot(A_n, X, prec), prec), "fp32")
        n *= 2
    return X


def chunked_forward(q, k, v, g, beta, scale: float, setting: str):
    """One head: q, k [T, K], v [T, V], g, beta [T] (float64 holding bf16 values). Returns o, final state."""
    (s_w, s_u, s_A, s_vn), (p_wh, p_kv), *rest = SETTINGS[setting]
    extra = rest[0] if rest else set()
    T_len, K = k.shape
    h = torch.zeros(K, v.shape[1], dtype=torch.float64)
    o = torch.empty_like(v)
    for c0 in range(0, T_len, C):
        qc, kc, vc, bc = q[c0:c0 + C], k[c0:c0 + C], v[c0:c0 + C], beta[c0:c0 + C]
        G = rnd(torch.cumsum(g[c0:c0 + C], 0), "fp32")
        n = len(G)
        D = torch.exp(G[:, None] - G[None, :])
        low = torch.tril(torch.ones(n, n, dtype=torch.bool), -1)
        A = rnd(torch.where(low, dot(kc, kc.T, "tf32") * D, 0.0) * bc[:, None], "fp32")
        Tm = inverse_doubling(A, "tf32")
        w = rnd(dot(Tm, rnd(kc * (torch.exp(G) * bc)[:, None], "fp32"), "bf16" if "solve_w" in extra else "tf32"), s_w)
        u = rnd(dot(Tm, rnd(vc * bc[:, None], "fp32"), "bf16" if "solve_u" in extra else "tf32"), s_u)
        Aqk = rnd(torch.where(low | torch.eye(n, dtype=torch.bool), dot(qc, kc.T, "tf32") * D * scale, 0.0), s_A)
        h_snap = rnd(h, "bf16")  # the forward stores each chunk's starting state in the inputs' dtype
        vn = rnd(u - dot(w, h, p_wh), "fp32")
        vn_st = rnd(vn, s_vn)
        p_out = "tf32" if s_A == "fp32" else "bf16"  # the output kernel's products follow Aqk's dtype
        p_qh = "bf16" if "qh" in extra else p_out
        o[c0:c0 + C] = dot(rnd(qc * (scale * torch.exp(G))[:, None], "fp32"), h_snap, p_qh) + dot(Aqk, vn_st, p_out)
        kg = rnd(kc * torch.exp(G[-1] - G)[:, None], "bf16" if "kg" in extra else "fp32")
        h = rnd(h * torch.exp(G[-1]) + dot(kg.T, vn, p_kv), "fp32")
    return o, h


def inputs(seed: int, T_len: int, D: int, aligned: bool):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    q, k, v = r(T_len, D), r(T_len, D), r(T_len, D)
    g, beta = -F.softplus(r(T_len) - 1.0), torch.sigmoid(r(T_len))
    if aligned:  # the regime of converted layers: a shared key direction, slow decay, beta ~ 0.5
        common = r(1, D)
        q, k = 4 * common + 0.3 * q, 4 * common + 0.3 * k
        g, beta = 0.02 * g, 0.5 + 0.1 * (beta - 0.5)
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    return [rnd(x, "bf16") for x in (q, k, v)] + [g, rnd(beta, "bf16")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, default=1024)
    ap.add_argument("--D", default="64,128")
    ap.add_argument("--draws", type=int, default=3)
    args = ap.parse_args()
    cases = [(aligned, int(d)) for aligned in (False, True) for d in args.D.split(",")]
    worst = {(s, c): [0.0, 0.0] for s in SETTINGS for c in cases}
    for aligned, D in cases:
        for seed in range(args.draws):
            q, k, v, g, beta = inputs(seed, args.T, D, aligned)
            ro, rh = recurrent_gated_delta_rule(*(x[None, :, None] for x in (q, k, v, g, beta)),
                                                output_final_state=True)
            ro, rh = ro[0, :, 0], rh[0, 0]
            for s in SETTINGS:
                o, h = chunked_forward(q, k, v, g, beta, D ** -0.5, s)
                e = worst[(s, (aligned, D))]
                e[0] = max(e[0], ((o - ro).norm() / ro.norm()).item())
                e[1] = max(e[1], ((h - rh).norm() / rh.norm()).item())
    print("| setting | " + " | ".join(f"{'aligned' if a else 'random'} D{d}: o / state" for a, d in cases) + " |")
    print("|---|" + "---|" * len(cases))
    for s in SETTINGS:
        print(f"| {s} | " + " | ".join(f"{worst[(s, c)][0]:.1e} / {worst[(s, c)][1]:.1e}" for c in cases) + " |")


if __name__ == "__main__":
    main()
