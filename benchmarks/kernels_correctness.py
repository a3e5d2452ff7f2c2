"""GPU correctness of hybridize.kernels against a float64 reference, gradients included (issue 3).

Run on a CUDA machine from the repo root:  PYTHONPATH=. python benchmarks/kernels_correctness.py
The reference is hybridize.modeling.gated_delta.chunk_gated_delta_rule in float64 on the GPU (itself
checked against the token-by-token recurrence in the first row). Every tensor our kernels return is
allocated into memory poisoned with NaN first, and NaN/inf fails a case. Bounds on the relative
error ||x - ref|| / ||ref||: fp32 2e-5 (far under 1e-3), fp16 5e-3, bf16 1e-2. Prints a table last;
exits non-zero on any failure. With fla installed, fla 0.6.0 is put through the same comparison.
--jobs N runs the cases in N processes at once (each compiles its own kernels: compiling, not
computing, is what takes the time on a cold machine).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys

import torch
import torch.nn.functional as F

from hybridize.kernels import gated_delta_rule, recurrent_update
from hybridize.modeling.gated_delta import chunk_gated_delta_rule, recurrent_gated_delta_rule

BOUND = {torch.float32: 2e-5, torch.float16: 5e-3, torch.bfloat16: 1e-2}
NAMES = ("o", "ht", "dq", "dk", "dv", "dg", "dbeta", "dh0", "o no-grad", "ht no-grad")


POISON_CAP = None  # bytes; set when several processes share the GPU


def poison():
    """Fill the caching allocator's free memory with NaN so unwritten outputs show up."""
    free = torch.cuda.mem_get_info()[0]
    size = int(free * 0.5) if POISON_CAP is None else min(int(free * 0.5), POISON_CAP)
    x = torch.empty(size // 4, dtype=torch.float32, device="cuda")
    x.fill_(float("nan"))
    del x


def rel(a, b):
    if a is None or b is None:
        return float("nan")
    a, b = a.double(), b.double()
    if not torch.isfinite(a).all():
        return float("inf")
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def make_inputs(B, T, H, K, V, channel, dtype, seed, n_seq, l2, aligned=False, big=False):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *s: torch.randn(*s, device="cuda", generator=gen)
    q, k, v = r(B, T, H, K), r(B, T, H, K), r(B, T, H, V)
    if aligned:  # trained models' keys share a large common direction (the case that broke v1's inverse)
        common = r(1, 1, H, K)
        q, k = 4 * common + 0.3 * q, 4 * common + 0.3 * k
    if not l2:  # the mixers normalise q, k; without the fused norm, feed normalised ones
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    if channel:  # the KDA mixer's bounded gate: -5 * sigmoid(.)
        g = -5.0 * torch.sigmoid(r(B, T, H, K) - 2.0)
    else:  # GDN: -exp(A_log) * softplus(a + dt_bias), a wide spread of decays
        g = -torch.exp(r(1, 1, H) * 0.5) * F.softplus(r(B, T, H) - 3.0)
    beta = torch.sigmoid(r(B, T, H))
    if aligned:  # and, as in a freshly converted layer, long memory and beta ~ 0.5
        g, beta = 0.02 * g, 0.5 + 0.1 * (beta - 0.5)
    h0 = r(n_seq, H, K, V) * 0.1
    if big:  # past fp16's range: v (so vn) times 2^17, q (so Aqk) times 2^22 (round 14: the output's fp16 vn)
        v, q, h0 = v * 2.0 ** 17, q * 2.0 ** 22, h0 * 2.0 ** 17
    return [x.to(dtype) for x in (q, k, v)] + [g.float(), beta.to(dtype), h0]


def run_case(fn, inputs, do, dht, cu, l2):
    xs = [x.detach().clone().requires_grad_() for x in inputs]
    o, ht = fn(*xs[:5], initial_state=xs[5], output_final_state=True, cu_seqlens=cu, use_qk_l2norm=l2)
    ((o.double() * do.double()).sum() + (ht.double() * dht.double()).sum()).backward()
    return [o, ht] + [x.grad for x in xs]


def reference(inputs, do, dht, cu, l2, channel):
    xs = [x.detach().double().requires_grad_() for x in inputs]
    o, ht = chunk_gated_delta_rule(*xs[:5], initial_state=xs[5], output_final_state=True, cu_seqlens=cu,
                                   use_qk_l2norm=l2)
    ((o * do.double()).sum() + (ht * dht.double()).sum()).backward()
    return [o, ht] + [x.grad for x in xs]


def fla_fn(channel):
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule as gdn
    from fla.ops.kda import chunk_kda

    def f(q, k, v, g, beta, initial_state, output_final_state, cu_seqlens, use_qk_l2norm):
        fn = chunk_kda if channel else gdn
        return fn(q, k, v, g, beta, initial_state=initial_state, output_final_state=output_final_state,
                  cu_seqlens=None if cu_seqlens is None else cu_seqlens.long(), use_qk_l2norm_in_kernel=use_qk_l2norm)
    return f


CASES = [
    # name, B, T, H, K, V, channel, dtype, cu (None or boundaries), l2
    ("gdn bf16 D128", 2, 2048, 4, 128, 128, False, torch.bfloat16, None, False),
    ("gdn fp16 D128", 2, 1024, 4, 128, 128, False, torch.float16, None, False),
    ("gdn fp32 D128", 2, 2048, 4, 128, 128, False, torch.float32, None, False),
    ("gdn bf16 D64 T=1000", 3, 1000, 9, 64, 64, False, torch.bfloat16, None, True),
    ("gdn bf16 D256", 1, 1024, 2, 256, 256, False, torch.bfloat16, None, False),
    ("gdn fp32 varlen+l2", 1, 2048, 4, 128, 128, False, torch.float32, [0, 300, 301, 1100, 2048], True),
    ("gdn bf16 varlen", 1, 2048, 4, 128, 128, False, torch.bfloat16, [0, 77, 1100, 1900, 2048], False),
    ("kda bf16 D128", 2, 2048, 4, 128, 128, True, torch.bfloat16, None, False),
    ("kda fp32 D128", 2, 2048, 4, 128, 128, True, torch.float32, None, False),
    ("kda bf16 D64 T=1000", 3, 1000, 9, 64, 64, True, torch.bfloat16, None, True),
    ("kda bf16 D256", 1, 1024, 2, 256, 256, True, torch.bfloat16, None, False),
    ("kda fp32 varlen+l2", 1, 2048, 4, 128, 128, True, torch.float32, [0, 300, 301, 1100, 2048], True),
    ("kda fp32 D256", 1, 512, 2, 256, 256, True, torch.float32, None, False),
    ("gdn bf16 D64 aligned", 2, 2048, 9, 64, 64, False, torch.bfloat16, None, True),
    ("gdn fp32 D64 aligned", 2, 2048, 9, 64, 64, False, torch.float32, None, True),
    ("kda bf16 D128 aligned", 2, 2048, 4, 128, 128, True, torch.bfloat16, None, True),
    # the same keys normalised before the call: the backward's recompute takes kg in bf16 (recompute_kg16, round 25)
    ("kda bf16 D128 aligned prenorm", 2, 2048, 4, 128, 128, True, torch.bfloat16, None, False),
    ("gdn bf16 D128 big", 2, 1024, 4, 128, 128, False, torch.bfloat16, None, False),
    ("gdn bf16 varlen big", 1, 2048, 16, 128, 128, False, torch.bfloat16, [0, 77, 1100, 1900, 2048], False),
    ("kda bf16 D64 big", 2, 1024, 4, 64, 64, True, torch.bfloat16, None, False),
    # head dim 64: the output kernel's fp16 fallback as a function call (OUTPUT_CONFIG["call_max_dim"], round 23)
    ("gdn bf16 D64 big", 2, 1024, 9, 64, 64, False, torch.bfloat16, None, False),
]


def check_case(task):
    """One case of CASES, ours (and fla): a list of (name, impl, errors, ok)."""
    seed, with_fla, shared, variant = task
    global POISON_CAP
    POISON_CAP = 2 << 30 if shared else None
    name, B, T, H, K, V, channel, dtype, cu, l2 = CASES[seed]
    if variant:  # an experiment: "precision" (16-bit inputs' products), "inter" (intermediates:
        # fp32, mixed or input), "design" (the prep's) or SCAN_CONFIG keys
        from hybridize.kernels import _common, chunk_prep
        from hybridize.kernels.chunk_scan import SCAN_CONFIG
        for key, value in variant.items():
            if key == "precision":
                _common.PRECISION_16BIT = value
            elif key == "inter":
                chunk_prep.INTERMEDIATES = value
            elif key == "design":
                chunk_prep.PREP_CONFIG["design"] = value
            else:
                SCAN_CONFIG[key] = value
        name += " " + " ".join(f"{k}={v}" for k, v in variant.items())
        with_fla = False
    torch.backends.cuda.matmul.allow_tf32 = False
    n_seq = B if cu is None else len(cu) - 1
    ins = make_inputs(B, T, H, K, V, channel, dtype, 100 + seed, n_seq, l2, aligned="aligned" in name,
                      big="big" in name)
    cu_t = None if cu is None else torch.tensor(cu, device="cuda", dtype=torch.int32)
    # seeded like the inputs (before round 11 they came from the unseeded global generator, so the
    # gradient errors moved from call to call), and do rounded to the dtype the kernels receive it in
    gen = torch.Generator(device="cuda").manual_seed(200 + seed)
    do = torch.randn(B, T, H, V, device="cuda", generator=gen).to(dtype).float()
    dht = torch.randn(n_seq, H, K, V, device="cuda", generator=gen)
    ref = reference(ins, do, dht, cu_t, l2, channel)
    out = []
    for impl, fn in [("ours", gated_delta_rule)] + ([("fla", fla_fn(channel))] if with_fla else []):
        try:
            poison()
            got = run_case(fn, ins, do.to(dtype), dht, cu_t, l2)
            if impl == "ours":  # the forward without gradients runs its own path (the output kernel forms Aqk)
                with torch.no_grad():
                    got += list(fn(*ins[:5], initial_state=ins[5], output_final_state=True, cu_seqlens=cu_t,
                                   use_qk_l2norm=l2))
            torch.cuda.synchronize()
            errs = [rel(x, y) for x, y in zip(got, ref + ref[:2])]
            ok = all(e <= BOUND[dtype] for e in errs)
            errs += [float("nan")] * (len(NAMES) - len(errs))  # fla: no no-grad columns
        except Exception as err:  # noqa: BLE001 - fla refuses some backward passes: record, do not crash
            errs, ok = [float("nan")] * len(NAMES), False
            print(f"{name} [{impl}] raised {type(err).__name__}: {str(err)[:160]}", flush=True)
            if impl == "fla":  # its forward alone, to compare outputs where it refuses the backward
                try:
                    with torch.no_grad():
                        o, ht = fn(*ins[:5], initial_state=ins[5], output_final_state=True, cu_seqlens=cu_t,
                                   use_qk_l2norm=l2)
                    errs[:2] = [rel(o, ref[0]), rel(ht, ref[1])]
                    impl = "fla (forward only)"
                except Exception as err2:  # noqa: BLE001
                    print(f"{name} [fla forward] raised {type(err2).__name__}: {str(err2)[:160]}", flush=True)
        out.append((name, impl, errs, ok))
        print(f"{name} [{impl}] {'ok' if ok else 'FAIL'} " + " ".join(f"{e:.1e}" for e in errs), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fla", action="store_true", help="also check fla 0.6.0 on the same inputs")
    ap.add_argument("--only", default="", help="run only the cases whose name contains this")
    ap.add_argument("--no-ref-check", action="store_true")
    ap.add_argument("--jobs", type=int, default=1, help="cases run in this many processes at once")
    ap.add_argument("--wide", nargs="*", default=[], help="also run head dim > 128 with these WARPS,STAGES")
    ap.add_argument("--prec-variants", action="store_true", help="also run the 16-bit aligned cases with tf32x3")
    ap.add_argument("--design", default="", help="run every case with this prep design (full, blocks)")
    ap.add_argument("--scan-bv", default="", help="also run the 16-bit cases at head dim <= 128 with the scan's "
                    "value block forced to these sizes, e.g. 32,64 (reported, not counted)")
    ap.add_argument("--inter-variants", default="", help="also run the 16-bit cases with these intermediates, "
                    "e.g. fp32,mixed,input (reported, not counted)")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    rows, failed = [], 0
    # 0) the float64 chunked reference against the float64 recurrence (small, slow loop)
    for channel in (() if args.no_ref_check else (False, True)):
        ins = make_inputs(1, 200, 2, 64, 64, channel, torch.float64, 7, 1, False)
        do, dht = torch.randn(1, 200, 2, 64, device="cuda", dtype=torch.float64), torch.randn_like(ins[5])
        a = reference(ins, do, dht, None, False, channel)
        xs = [x.detach().clone().requires_grad_() for x in ins]
        o, ht = recurrent_gated_delta_rule(*xs[:5], initial_state=xs[5], output_final_state=True)
        ((o * do).sum() + (ht * dht).sum()).backward()
        errs = [rel(x, y) for x, y in zip(a, [o, ht] + [x.grad for x in xs])]
        # 1e-6: o, the state and most gradients agree to ~1e-16; dg and dh0 only to ~2.5e-8 (H100,
        # 2026-11-23). Cause not established; the suspect is the chunked form's clamp of log-decay
        # differences at -80, which the recurrence does not have. Far below every kernel bound.
        ok = max(errs) < 1e-6
        failed += not ok
        rows.append((f"ref check {'kda' if channel else 'gdn'} fp64", "chunk-vs-recurrence", errs, ok))
    if args.design:  # counted like the default: this is how a design is checked before it becomes one
        from hybridize.kernels import chunk_prep
        chunk_prep.PREP_CONFIG["design"] = args.design
        os.environ["HYBRIDIZE_GDR_PREP"] = args.design  # for the worker processes
    todo = [(i, args.fla, args.jobs > 1, None) for i, case in enumerate(CASES) if args.only in case[0]]
    # experiments, reported but not counted: the aligned-key cases with 3xTF32 products for 16-bit
    # inputs (HYBRIDIZE_GDR_PREC), and head dims over 128 with other launch options
    todo += [(i, False, args.jobs > 1, {"precision": "tf32x3"}) for i, case in enumerate(CASES)
             if args.only in case[0] and "aligned" in case[0] and case[7] != torch.float32 and args.prec_variants]
    for inter in (x for x in args.inter_variants.split(",") if x):
        todo += [(i, False, args.jobs > 1, {"inter": inter}) for i, case in enumerate(CASES)
                 if args.only in case[0] and case[7] != torch.float32]
    for bv in (int(x) for x in args.scan_bv.split(",") if x):
        todo += [(i, False, args.jobs > 1, {"BV": bv}) for i, case in enumerate(CASES)
                 if args.only in case[0] and case[7] != torch.float32 and case[4] <= 128]
    for w in args.wide:
        warps, stages = (int(x) for x in w.split(","))
        todo += [(i, False, args.jobs > 1, {"wide_warps": warps, "wide_stages": stages})
                 for i, case in enumerate(CASES) if args.only in case[0] and case[4] > 128]
    if args.jobs > 1:
        # one fresh process per case: a kernel fault poisons its CUDA context for good
        with mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
            results = list(pool.imap(check_case, todo))
    else:
        results = [check_case(t) for t in todo]
    for task, case_rows in zip(todo, results):
        for name, impl, errs, ok in case_rows:
            failed += impl == "ours" and not ok and task[3] is None
            rows.append((name, impl, errs, ok))
    # Decoding kernel: a few tokens from a random state, in place, against the recurrence.
    for channel in (False, True):
        for B in (1, 64):
            ins = make_inputs(B, 3, 16, 128, 128, channel, torch.bfloat16, 900 + B, B, True)
            state = ins[5].float().clone()
            poison()
            o, _ = recurrent_update(*ins[:5], state=state, cu_seqlens=None, use_qk_l2norm=True, in_place=True)
            ro, rht = recurrent_gated_delta_rule(*[x.double() for x in ins[:5]], initial_state=ins[5].double(),
                                                 output_final_state=True, use_qk_l2norm=True)
            errs = [rel(o, ro), rel(state, rht)] + [float("nan")] * (len(NAMES) - 2)
            ok = errs[0] < 1e-2 and errs[1] < 1e-4
            failed += not ok
            rows.append((f"decode {'kda' if channel else 'gdn'} B={B} T=3 bf16", "ours", errs, ok))
    print()
    print("| case | impl | " + " | ".join(NAMES) + " | pass |")
    print("|---|---|" + "---|" * len(NAMES) + "---|")
    for name, impl, errs, ok in rows:
        print(f"| {name} | {impl} | " + " | ".join(f"{e:.1e}" for e in errs) + f" | {'yes' if ok else 'NO'} |")
    print(f"\n{'ALL PASS' if not failed else f'{failed} FAILED'} (bounds: fp32 2e-5, fp16 5e-3, bf16 1e-2)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
