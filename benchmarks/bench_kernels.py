"""Side-by-side timings of the gated delta rule on one GPU (issue 3): hybridize's Triton kernels,
flash-linear-attention 0.6.0 (if importable), the PyTorch chunked operator, and SDPA (flash, causal).

Run from the repo root:  PYTHONPATH=. python benchmarks/bench_kernels.py [--warm 15] [--shapes 0,1,2] [--out DIR]
(Issue 3 names this file benchmarks/kernels.py. It is not called that: every script run from
benchmarks/ has that folder first on sys.path, where a kernels.py shadows the Hugging Face `kernels`
package that transformers probes for; the H100 run of distill_throughput.py died of exactly that.)
Medians of triton.testing.do_bench (CUDA events). Inputs bf16 (q, k, v, beta), gates fp32.
--warm N first runs each of our timed calls once in N processes at a time: our kernels then compile
in parallel into the shared on-disk cache instead of one after another in the timing process. (fla's
autotuner times its candidates in the timing process whatever the cache holds.) Timing itself is
sequential, in this process. --shapes picks rows of SHAPES (e.g. 0,1,2), to split the run across calls.
The "versions" rows time our forward in its earlier designs, in the same run (see
benchmarks/results/kernels-notes.md): v1 = output fused into the scan, v2 = separate output kernel
with the row-by-row inverse, v3 = v2 with the blocked tensor-core inverse, v4 = v3 with the prep on
16-row blocks (chunk_prep_blocks.py), v5 = the prep as three kernels (chunk_prep_split.py). The
default ("auto") is v3 for scalar gates at head dim <= 64 and v5 otherwise; HYBRIDIZE_GDR_PREP=full,
blocks or split fixes one.

Counts used for TFLOP/s and the floor (per token and head, K = V = D, chunk C = 64):
  FLOP, forward: 2C(3K + 2V) [k k^T, w, u, Aqk, Aqk vn] + 6KV [w h, q h, k^T vn]   (the triangular
        inverse is not counted). Forward+backward: counted as 3x forward (the usual convention).
  bytes, forward: read q, k, v (2 B each), g (4 B per gate value), beta (2 B); write o (2 B).
        forward+backward: the forward's bytes + read q, k, v, g, beta, do, write dq, dk, dv, dg, dbeta.
  decode: state read + write, 2 x B*H*K*V*4 bytes (the tokens' q, k, v, o are added, ~1%).
  floor = max(FLOP / 790 TFLOP/s, bytes / 3.0 TB/s) (REFERENCE.md section 4, measured on this H100).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
import triton

from hybridize.kernels import chunk_prep as prep_mod
from hybridize.kernels import chunk_scan as scan_mod
from hybridize.kernels import gated_delta_rule, recurrent_update
from hybridize.modeling.gated_delta import chunk_gated_delta_rule

PEAK_FLOPS, PEAK_BW = 790e12, 3.0e12
SHAPES = [(1, 8192, 16, 128), (4, 4096, 16, 128), (1, 32768, 16, 128), (2, 16384, 32, 128), (8, 2048, 9, 64)]
VERSION_SHAPES = [SHAPES[0], SHAPES[2], SHAPES[4]]
OUT_DIR = "."
OURS_ONLY = False  # --ours-only: no fla, no PyTorch operator (SDPA stays: it is the long-context yardstick)
C = 64

try:
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule as fla_gdn
    from fla.ops.kda import chunk_kda as fla_kda
except Exception:  # noqa: BLE001 - fla is optional
    fla_gdn = fla_kda = None


def bench(fn, grad_to_none=None):
    return triton.testing.do_bench(fn, warmup=25, rep=100, grad_to_none=grad_to_none, return_mode="median")


def counts(B, T, H, D, channel, bwd):
    flop = B * T * H * (2 * C * (3 * D + 2 * D) + 6 * D * D)
    gate = (D if channel else 1) * 4
    fwd_bytes = B * T * H * (3 * D * 2 + gate + 2 + D * 2)
    if not bwd:
        return flop, fwd_bytes
    return 3 * flop, fwd_bytes + B * T * H * (4 * D * 2 + gate + 2 + 3 * D * 2 + gate + 4)


def inputs(B, T, H, D, channel, grad):
    q = F.normalize(torch.randn(B, T, H, D, device="cuda"), dim=-1).bfloat16()
    k = F.normalize(torch.randn(B, T, H, D, device="cuda"), dim=-1).bfloat16()
    v = torch.randn(B, T, H, D, device="cuda").bfloat16()
    if channel:
        g = -5.0 * torch.sigmoid(torch.randn(B, T, H, D, device="cuda") - 2.0)
    else:
        g = -F.softplus(torch.randn(B, T, H, device="cuda") - 3.0)
    beta = torch.sigmoid(torch.randn(B, T, H, device="cuda")).bfloat16()
    xs = [q, k, v, g, beta]
    return [x.requires_grad_(grad) for x in xs]


def time_impl(fn, B, T, H, D, channel, bwd, slow=False):
    xs = inputs(B, T, H, D, channel, bwd)
    do = torch.randn(B, T, H, D, device="cuda").bfloat16()

    def run():
        o = fn(*xs)
        o = o[0] if isinstance(o, tuple) else o
        if bwd:
            o.backward(do)
    if slow:  # the PyTorch operator: one trial first, skip if it takes more than ~2 s
        torch.cuda.synchronize()
        t = time.perf_counter()
        run()
        torch.cuda.synchronize()
        first = time.perf_counter() - t
        if first > 2.0:
            return None
        for x in xs:
            x.grad = None
        times = [first * 1e3]
        for _ in range(2 if first < 0.5 else 1):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            run()
            e.record()
            torch.cuda.synchronize()
            times.append(s.elapsed_time(e))
            for x in xs:
                x.grad = None
        return min(times)
    return bench(run, grad_to_none=xs if bwd else None)


def sdpa_time(B, T, H, D, bwd):
    q, k, v = (torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16, requires_grad=bwd) for _ in range(3))
    do = torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16)

    def run():
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.FLASH_ATTENTION):
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        if bwd:
            o.backward(do)
    return bench(run, grad_to_none=[q, k, v] if bwd else None)


# --l2: q, k normalised inside (the mixers' call), for ours and fla alike (the environment carries it
# to the --warm processes)
FUSED_L2 = os.environ.get("HYBRIDIZE_BENCH_L2") == "1"


def ours(q, k, v, g, beta):
    return gated_delta_rule(q, k, v, g, beta, use_qk_l2norm=FUSED_L2)


def torch_op(q, k, v, g, beta):
    return chunk_gated_delta_rule(q, k, v, g, beta)


def fla(channel):
    f = fla_kda if channel else fla_gdn
    return (lambda q, k, v, g, beta: f(q, k, v, g, beta, use_qk_l2norm_in_kernel=FUSED_L2)) if f is not None else None


def fmt(x):
    return "—" if x is None else (x if isinstance(x, str) else f"{x:.3f}")


def chunk_rows(results, sweep):
    for (B, T, H, D) in SHAPES:
        for channel in (False, True):
            for bwd in (False, True):
                name = f"{'KDA' if channel else 'GDN'} {'fwd+bwd' if bwd else 'fwd'} ({B},{T},{H},{D})"
                t_ours = time_impl(ours, B, T, H, D, channel, bwd)
                t_fla = None
                if fla(channel) is not None and not OURS_ONLY:
                    try:
                        t_fla = time_impl(fla(channel), B, T, H, D, channel, bwd)
                    except Exception as err:  # noqa: BLE001 - fla refuses its GDN backward on Hopper
                        t_fla = "refused"
                        print(f"fla {name}: {type(err).__name__}: {str(err)[:200]}")
                # the PyTorch operator loops over chunks in Python: only worth timing at the smallest shapes
                t_torch = time_impl(torch_op, B, T, H, D, channel, bwd, slow=True) if B * T <= 16384 and not OURS_ONLY else None
                t_sdpa = sdpa_time(B, T, H, D, bwd) if not channel else None
                flop, nbytes = counts(B, T, H, D, channel, bwd)
                floor = max(flop / PEAK_FLOPS, nbytes / PEAK_BW) * 1e3
                ratio = t_ours / t_fla if isinstance(t_fla, float) else None
                row = dict(case=name, ours=t_ours, fla=t_fla, torch=t_torch, sdpa=t_sdpa, ratio=ratio,
                           tflops=flop / t_ours / 1e9, floor=floor, frac=floor / t_ours)
                results.append(row)
                print(json.dumps(row), flush=True)
                with open(os.path.join(OUT_DIR, "kernels_partial.jsonl"), "a") as fh:
                    fh.write(json.dumps(row) + "\n")
    if sweep:  # scan block sizes: the knob that trades parallelism against per-step work
        for bv in (16, 32, 64):
            for nw in (4,):
                scan_mod.SCAN_CONFIG.update(BV=bv, num_warps=nw)
                for (B, T, H, D) in SHAPES[:3]:
                    for channel in (False, True):
                        t = time_impl(ours, B, T, H, D, channel, False)
                        print(f"sweep BV={bv} warps={nw} {'KDA' if channel else 'GDN'} ({B},{T},{H},{D}) fwd {t:.3f} ms", flush=True)
        scan_mod.SCAN_CONFIG.update(BV=None, num_warps=4)


VERSIONS = {"v1 fused output": dict(fuse_o=True, inverse="rows", design="full"),
            "v2 split output": dict(fuse_o=False, inverse="rows", design="full"),
            "v3 +blocked inverse": dict(fuse_o=False, inverse="blocked", design="full"),
            "v4 16-row-block prep": dict(fuse_o=False, inverse="blocked", design="blocks"),
            "v5 three-kernel prep": dict(fuse_o=False, inverse="blocked", design="split")}
DEFAULT_DESIGN = prep_mod.PREP_CONFIG["design"]


def set_version(fuse_o=False, inverse="blocked", design=None):
    scan_mod.SCAN_CONFIG["fuse_o"] = fuse_o
    prep_mod.PREP_CONFIG["inverse"] = inverse
    prep_mod.PREP_CONFIG["design"] = design or DEFAULT_DESIGN


def version_rows(results):
    for (B, T, H, D) in VERSION_SHAPES:
        for channel in (False, True):
            row = dict(case=f"versions {'KDA' if channel else 'GDN'} fwd ({B},{T},{H},{D})")
            for name, cfg in VERSIONS.items():
                set_version(**cfg)
                row[name] = time_impl(ours, B, T, H, D, channel, False)
            set_version()
            results.append(row)
            print(json.dumps(row), flush=True)
            with open(os.path.join(OUT_DIR, "kernels_partial.jsonl"), "a") as fh:
                fh.write(json.dumps(row) + "\n")


def warm_task(task):
    """One call of a timed function (run in a worker process: compiles into the on-disk cache)."""
    kind, shape, channel, bwd, version = task
    try:
        set_version(**VERSIONS.get(version, {}))  # pool workers are reused: always set it
        if kind == "decode":
            xs = inputs(shape[0], 1, 16, 128, channel, False)
            recurrent_update(*xs, state=torch.randn(shape[0], 16, 128, 128, device="cuda"), in_place=True, use_qk_l2norm=True)
        else:
            fn = ours if kind == "ours" else fla(channel)
            B, T, H, D = shape
            xs = inputs(B, min(T, 4096), H, D, channel, bwd) if kind == "ours" else inputs(B, T, H, D, channel, bwd)
            o = fn(*xs)
            o = o[0] if isinstance(o, tuple) else o
            if bwd:
                o.float().sum().backward()
        torch.cuda.synchronize()
        return None
    except Exception as err:  # noqa: BLE001 - reported, the timing run will meet it again
        return f"{task}: {type(err).__name__}: {str(err)[:160]}"


def warm(procs, versions=True):
    import multiprocessing as mp
    tasks = [("decode", (b,), ch, False, None) for b in (1, 64) for ch in (False, True)]
    for shape in SHAPES:
        for ch in (False, True):
            for bwd in (False, True):
                # (fla is not warmed here: its autotuner times its candidates in the timing process anyway)
                tasks.append(("ours", shape, ch, bwd, None))
    for shape in VERSION_SHAPES if versions else ():
        for ch in (False, True):
            for version in list(VERSIONS)[:2]:
                tasks.append(("ours", shape, ch, False, version))
    t = time.perf_counter()
    with mp.get_context("spawn").Pool(procs, maxtasksperchild=4) as pool:
        errors = [e for e in pool.imap_unordered(warm_task, tasks) if e]
    print(f"warm: {len(tasks)} calls in {time.perf_counter() - t:.0f} s, {len(errors)} raised", flush=True)
    for e in errors:
        print("  warm:", e, flush=True)


def decode_rows(results):
    H, D = 16, 128
    for B in (1, 64, 256):
        for channel in (False, True):
            xs = inputs(B, 1, H, D, channel, False)
            state = torch.randn(B, H, D, D, device="cuda")
            t = bench(lambda: recurrent_update(*xs, state=state, in_place=True, use_qk_l2norm=True))
            nbytes = 2 * B * H * D * D * 4 + B * H * D * 2 * 4
            row = dict(case=f"{'KDA' if channel else 'GDN'} decode B={B}", ours=t, fla=None,
                       gbs=nbytes / t / 1e6, frac=nbytes / (t * 1e-3) / PEAK_BW)
            results.append(row)
            print(json.dumps(row), flush=True)


FLA_DECODE = r"""
import json, torch, triton, torch.nn.functional as F
from fla.ops.gated_delta_rule import fused_recurrent_gated_delta_rule as f
out = {}
for B in (1, 64, 256):
    H, D = 16, 128
    q, k, v = (torch.randn(B, 1, H, D, device='cuda').bfloat16() for _ in range(3))
    g = -F.softplus(torch.randn(B, 1, H, device='cuda')); beta = torch.rand(B, 1, H, device='cuda').bfloat16()
    s = torch.randn(B, H, D, D, device='cuda')
    try:
        t = triton.testing.do_bench(lambda: f(q, k, v, g=g, beta=beta, initial_state=s, output_final_state=True, use_qk_l2norm_in_kernel=True), return_mode='median')
        torch.cuda.synchronize()
        out[B] = t
    except Exception as e:
        out[B] = type(e).__name__ + ': ' + str(e)[:120]
        break
print('FLA_DECODE ' + json.dumps(out))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--skip-chunk", action="store_true")
    ap.add_argument("--no-fla-decode", action="store_true")
    ap.add_argument("--warm", type=int, default=0, help="compile in this many processes first")
    ap.add_argument("--skip-versions", action="store_true")
    ap.add_argument("--ours-only", action="store_true", help="time ours and SDPA only (no fla, no torch op)")
    ap.add_argument("--shapes", default=None, help="indices into SHAPES, e.g. 0,1,2 (default: all)")
    ap.add_argument("--l2", action="store_true", help="with the fused q/k L2 norm (as the mixers call it)")
    args = ap.parse_args()
    global OUT_DIR, OURS_ONLY, FUSED_L2
    OUT_DIR, OURS_ONLY = args.out, args.ours_only
    if args.l2:
        FUSED_L2 = True
        os.environ["HYBRIDIZE_BENCH_L2"] = "1"
    os.makedirs(OUT_DIR, exist_ok=True)
    print(torch.cuda.get_device_name(), "torch", torch.__version__, "triton", triton.__version__,
          "fla", "yes" if fla_gdn is not None else "no", flush=True)
    if args.shapes:
        SHAPES[:] = [SHAPES[int(i)] for i in args.shapes.split(",")]
    if args.warm:
        warm(args.warm, not args.skip_versions)
    results = []
    decode_rows(results)
    if fla_gdn is not None and not args.no_fla_decode:  # fla's decode kernel crashed here once: keep it out of this process
        p = subprocess.run([sys.executable, "-c", FLA_DECODE], capture_output=True, text=True, timeout=300)
        line = [x for x in p.stdout.splitlines() if x.startswith("FLA_DECODE ")]
        fla_dec = json.loads(line[0][11:]) if line else {"error": (p.stderr or "no output")[-300:]}
        print("fla decode:", fla_dec, flush=True)
        for r in results:
            B = r["case"].split("B=")[1]
            if "GDN" in r["case"] and B in fla_dec:
                r["fla"] = fla_dec[B]
                if isinstance(fla_dec[B], float):
                    r["ratio"] = r["ours"] / fla_dec[B]
    if not args.skip_versions:  # ours only, quick: before the rows that wait on fla's autotuner
        version_rows(results)
    if not args.skip_chunk:
        chunk_rows(results, args.sweep)
    with open(os.path.join(args.out, "kernels.json"), "w") as fh:
        json.dump(results, fh, indent=1)
    print("\n| case | ours ms | fla ms | ours/fla | torch ms | SDPA ms | TFLOP/s | floor ms | floor/ours |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if r["case"].startswith("versions"):
            continue
        if "decode" in r["case"]:
            print(f"| {r['case']} | {r['ours']:.4f} | {fmt(r['fla'])} | {fmt(r.get('ratio'))} | — | — | "
                  f"{r['gbs']:.0f} GB/s | — | {r['frac']:.2f} of BW |")
        else:
            print(f"| {r['case']} | {r['ours']:.3f} | {fmt(r['fla'])} | {fmt(r['ratio'])} | {fmt(r['torch'])} | "
                  f"{fmt(r['sdpa'])} | {r['tflops']:.0f} | {r['floor']:.3f} | {r['frac']:.2f} |")
    vrows = [r for r in results if r["case"].startswith("versions")]
    if vrows:
        print("\n| forward, ms | " + " | ".join(VERSIONS) + " |")
        print("|---|" + "---|" * len(VERSIONS))
        for r in vrows:
            print(f"| {r['case'][9:]} | " + " | ".join(fmt(r[n]) for n in VERSIONS) + " |")


if __name__ == "__main__":
    main()
