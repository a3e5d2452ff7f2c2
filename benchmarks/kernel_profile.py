"""Where forward and forward+backward time goes, kernel by kernel: ours and fla 0.6.0 under torch.profiler.

    PYTHONPATH=. python benchmarks/kernel_profile.py [--shapes 0,4] [--modes fwd,fwd+bwd] [--iters 20]
                                                     [--no-fla] [--out DIR]

Each case runs its forward (+backward) a few times to compile and autotune, then --iters times under
the profiler; every GPU kernel's total device time is divided by --iters (ms per call of the whole
forward or forward+backward). Inputs as in bench_kernels.py (bf16 q/k/v/beta, fp32 gates). The profiler adds
no time to a kernel, but kernels shorter than a few microseconds are dominated by launch gaps that
this table does not show: the sum of kernel times is a lower bound of bench_kernels' wall time.
HYBRIDIZE_BENCH_L2=1 runs every case with the fused q/k L2 norm (bench_kernels.py --l2).
"""
from __future__ import annotations

import argparse
import collections
import json
import os

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.bench_kernels import SHAPES, fla, inputs, ours


def profiled(step, iters: int, warm: int = 3):
    """torch.profiler (CUDA activity) over `iters` calls of step, after `warm` calls outside it."""
    for _ in range(warm):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            step()
        torch.cuda.synchronize()
    return prof


def make_step(fn, B, T, H, D, channel, bwd=True):
    """One forward (+backward) of fn on bench_kernels' inputs, as a function of no arguments."""
    xs = inputs(B, T, H, D, channel, bwd)
    do = torch.randn(B, T, H, D, device="cuda").bfloat16()

    def step():
        for x in xs:
            x.grad = None
        o = fn(*xs)
        if bwd:
            (o[0] if isinstance(o, tuple) else o).backward(do)
    return step


def kernel_times(fn, B, T, H, D, channel, iters, bwd=True):
    """{kernel name: ms per forward(+backward)}, summed over launches, sorted largest first."""
    prof = profiled(make_step(fn, B, T, H, D, channel, bwd), iters)
    total = collections.Counter()
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA:
            total[ev.name] += ev.device_time_total / 1e3 / iters  # us -> ms
    return dict(sorted(total.items(), key=lambda kv: -kv[1]))


def short(name: str) -> str:
    return name if len(name) < 60 else name[:57] + "..."


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="0,4", help="indices into SHAPES or BxTxHxD, comma-separated")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--modes", default="fwd,fwd+bwd")
    ap.add_argument("--no-fla", action="store_true")
    ap.add_argument("--gates", default="gdn,kda", help="gdn, kda or both (fla's KDA backward autotunes for minutes)")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for spec in args.shapes.split(","):  # an index into SHAPES or BxTxHxD
        B, T, H, D = SHAPES[int(spec)] if spec.isdigit() else (int(x) for x in spec.split("x"))
        for channel in [c for c, n in ((False, "gdn"), (True, "kda")) if n in args.gates.split(",")]:
            impls = [("ours", ours)] + ([] if args.no_fla or fla(channel) is None else [("fla", fla(channel))])
            for mode, name, fn in ((m, n, f) for m in args.modes.split(",") for n, f in impls):
                case = f"{'KDA' if channel else 'GDN'} {mode} ({B},{T},{H},{D}) {name}"
                try:
                    times = kernel_times(fn, B, T, H, D, channel, args.iters, bwd=mode == "fwd+bwd")
                except Exception as err:  # noqa: BLE001 - fla refuses its GDN backward on Hopper
                    print(f"| {case} | {type(err).__name__}: {str(err)[:100]} |", flush=True)
                    continue
                rows.append(dict(case=case, kernels=times))
                with open(os.path.join(args.out, "kernel_profile.json"), "w") as fh:  # kept if a later case times out
                    json.dump(rows, fh, indent=1)
                print(f"\n{case}: sum of kernels {sum(times.values()):.3f} ms", flush=True)
                for k, t in times.items():
                    if t >= 0.005:
                        print(f"| {case} | {short(k)} | {t:.3f} |", flush=True)
    with open(os.path.join(args.out, "kernel_profile.json"), "w") as fh:
        json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
