"""The forward in segments (hybridize/kernels/segments.py) against the whole forward and fla 0.6.0, wall time.

    PYTHONPATH=. python benchmarks/segments_bench.py [--shapes 0,2] [--segs 0,16,32,64] [--gates gdn,kda]
                                                     [--scan-bv auto,32] [--out DIR]

The segmented forward overlaps kernels on two streams, so kernel sums (kernel_profile.py) no longer add up
to its time: this compares medians of triton.testing.do_bench (CUDA events around the whole call, host
included), ours and fla's in the same process, on the inputs of bench_kernels.py (bf16 q/k/v/beta, fp32
gates, no gradient). Every segmented output and final state is checked bitwise against the whole forward's
with the same scan launch (a segment computes what the whole sequence computes for its chunks).
--segs: chunks per segment, 0 = the whole forward. --scan-bv: the scan's value block (auto: chunk_scan's
choice; fewer programs leave more of the GPU to the kernels beside it).
"""
from __future__ import annotations

import argparse
import collections
import json
import os

import torch

from benchmarks.bench_kernels import SHAPES, bench, fla, inputs
from hybridize.kernels import chunk_scan as scan_mod
from hybridize.kernels import gated_delta_rule
from hybridize.kernels import segments as seg_mod


def shape_of(s: str):
    return SHAPES[int(s)] if s.isdigit() else tuple(int(x) for x in s.split("x"))


def forward(xs):
    return gated_delta_rule(*xs, output_final_state=True)


def trace(gate: str, shape: str, seg: str):
    import time

    from torch.profiler import ProfilerActivity, profile
    xs = inputs(*shape_of(shape), gate == "kda", False)
    seg_mod.SEGMENT_CONFIG["chunks"] = int(seg)
    for _ in range(3):
        forward(xs)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(20):
        forward(xs)
    host = (time.perf_counter() - t) / 20
    torch.cuda.synchronize()
    gpu = bench(lambda: forward(xs))
    print(f"host {host * 1e3:.3f} ms per call (not synchronised), do_bench median {gpu:.3f} ms")
    import cProfile
    import pstats
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(20):
        forward(xs)
    pr.disable()
    torch.cuda.synchronize()
    pstats.Stats(pr).sort_stats("tottime").print_stats(25)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(2):
            forward(xs)
        torch.cuda.synchronize()
    kernels = sorted((e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA),
                     key=lambda e: e.time_range.start)
    half = len(kernels) // 2
    t0 = kernels[half].time_range.start
    for e in kernels[half:]:
        print(f"{(e.time_range.start - t0) / 1e3:8.3f} ms  {e.device_time_total / 1e3:7.3f} ms  stream {e.device_index}"
              f"/{getattr(e, 'stream', '?')}  {e.name[:60]}")
    cpu = collections.Counter()
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CPU:
            cpu[e.name] += e.cpu_time_total / 1e3 / 2
    for name, ms in cpu.most_common(25):
        print(f"cpu {ms:8.3f} ms  {name[:80]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="0,2")
    ap.add_argument("--segs", default="0,16,32,64")
    ap.add_argument("--gates", default="gdn,kda")
    ap.add_argument("--scan-bv", default="auto")
    ap.add_argument("--no-fla", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--trace", default=None, help="GATE,SHAPE,SEG: the host time per call and one call's GPU "
                    "kernels in time order (start, duration, stream) instead of the table")
    args = ap.parse_args()
    if args.trace:
        return trace(*args.trace.split(","))
    rows = []
    for gate in args.gates.split(","):
        channel = gate == "kda"
        for s in args.shapes.split(","):
            B, T, H, D = shape_of(s)
            xs = inputs(B, T, H, D, channel, False)
            f = None if args.no_fla else fla(channel)
            t_fla = bench(lambda: f(*xs)) if f is not None else None
            for bv in args.scan_bv.split(","):
                scan_mod.SCAN_CONFIG["BV"] = None if bv == "auto" else int(bv)
                seg_mod.SEGMENT_CONFIG["chunks"] = 0
                ref_o, ref_ht = forward(xs)
                for n in (int(x) for x in args.segs.split(",")):
                    seg_mod.SEGMENT_CONFIG["chunks"] = n
                    o, ht = forward(xs)
                    equal = bool(torch.equal(o, ref_o) and torch.equal(ht, ref_ht))
                    t = bench(lambda: forward(xs))
                    row = {"gate": gate, "shape": (B, T, H, D), "seg_chunks": n, "scan_bv": bv, "ms": t,
                           "fla_ms": t_fla, "equal": equal}
                    rows.append(row)
                    ratio = f"{t / t_fla:.2f}x" if t_fla else "—"
                    print(f"| {gate} | {(B, T, H, D)} | {n} | {bv} | {t:.3f} | {t_fla or float('nan'):.3f} | {ratio} "
                          f"| {'equal' if equal else 'DIFFERENT'} |", flush=True)
            scan_mod.SCAN_CONFIG["BV"] = None
            seg_mod.SEGMENT_CONFIG["chunks"] = 0
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "segments.json"), "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
