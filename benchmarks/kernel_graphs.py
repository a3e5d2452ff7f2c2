"""The GPU's time for one whole forward, from CUDA-graph replays: ours and fla 0.6.0 side by side.

    PYTHONPATH=. python benchmarks/kernel_graphs.py [--shapes 0,1,2,3,4] [--gates gdn,kda] [--reps 50]
                                                    [--no-fla] [--out DIR]

Why graphs. On this host a Triton launch costs ~60 us of Python, so eager forwards at these shapes are
host-bound for us and for fla alike, and their wall time says little about the GPU. The sum of kernel times
(kernel_profile.py) leaves out the GPU's idle time between dependent kernels (a kernel's last wave draining, the
next one's first filling), which a forward of more kernels pays more often. A CUDA graph of the forward replays its
kernels with no host in between: the replay's event-timed median is the GPU's time for the forward, start to end.
Each implementation is warmed (compiled, autotuned) eagerly, captured once, replayed --warm times, then timed
over --reps single replays. Both compute the output and the final state; bf16 q, k, v, beta, fp32 gates, as
bench_kernels.py.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics

import torch

from benchmarks.bench_kernels import SHAPES, fla_gdn, fla_kda, inputs
from hybridize.kernels import gated_delta_rule


def ours(q, k, v, g, beta):
    return gated_delta_rule(q, k, v, g, beta, output_final_state=True)


def captured(fn, xs) -> torch.cuda.CUDAGraph:
    """A CUDA graph of fn(*xs), after three eager calls (compile, autotune)."""
    for _ in range(3):
        fn(*xs)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn(*xs)
    return graph


def graph_ms(fn, xs, warm: int, reps: int) -> float:
    graph = captured(fn, xs)
    for _ in range(warm):
        graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    del graph
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="0,1,2,3,4")
    ap.add_argument("--gates", default="gdn,kda")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--warm", type=int, default=10)
    ap.add_argument("--no-fla", action="store_true")
    ap.add_argument("--out", default=None, help="a folder for rows.json")
    args = ap.parse_args()
    rows = []
    for i in args.shapes.split(","):
        B, T, H, D = SHAPES[int(i)] if i.isdigit() else tuple(int(x) for x in i.split("x"))
        for gate in args.gates.split(","):
            channel = gate == "kda"
            xs = [x.detach() for x in inputs(B, T, H, D, channel, False)]
            name = f"{gate.upper()} fwd ({B},{T},{H},{D})"
            with torch.no_grad():
                t_ours = graph_ms(ours, xs, args.warm, args.reps)
                t_fla = None
                f = None if args.no_fla else (fla_kda if channel else fla_gdn)
                if f is not None:
                    try:
                        t_fla = graph_ms(lambda *a: f(*a, output_final_state=True), xs, args.warm, args.reps)
                    except Exception as e:  # noqa: BLE001  (reported, not fatal: the other rows still count)
                        print(f"{name}: fla did not capture ({type(e).__name__}: {str(e)[:120]})")
            rows.append((name, t_ours, t_fla))
            print(f"{name}: ours {t_ours:.3f} ms, fla {'-' if t_fla is None else f'{t_fla:.3f}'}", flush=True)
    print("\n| case | ours (ms) | fla (ms) | ours / fla |")
    print("|---|---|---|---|")
    for name, t_ours, t_fla in rows:
        ratio = f"{t_ours / t_fla:.2f}x" if t_fla else "-"
        print(f"| {name} | {t_ours:.3f} | {'-' if t_fla is None else f'{t_fla:.3f}'} | {ratio} |")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "rows.json"), "w") as f:
            json.dump([dict(zip(("case", "ours_ms", "fla_ms"), row)) for row in rows], f, indent=1)


if __name__ == "__main__":
    main()
