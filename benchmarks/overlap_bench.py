"""The backward's two scans side by side (autograd.OVERLAP): are the gradients the same, and what does it save?

    PYTHONPATH=. python benchmarks/overlap_bench.py [--shapes 0,1,4] [--gates gdn,kda] [--fla] [--out DIR]

For each case (bf16 inputs as bench_kernels.py, fwd+bwd with dq, dk, dv, dg, dbeta):
  same     the gradients with the recompute scan on a side stream, three times, and once on one stream: all
           bitwise equal (a missing wait would read h or vn half-written, and differ from run to run);
  wall     fwd+bwd medians (triton.testing.do_bench, CUDA events): one stream, then the side stream with its scan at
           each of --stages pipeline stages (autograd.OVERLAP_SCAN_STAGES; 0: the scan's own), then one stream again
           in the same process, so a drift of the GPU's clock shows as a difference between the two one-stream rows;
  graph    the same from CUDA-graph replays of fwd+bwd (the GPU's time, no host between kernels);
  fla      with --fla, fla 0.6.0's fwd+bwd wall median (KDA only: its GDN backward refuses on Hopper).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics

import torch

from benchmarks.bench_kernels import SHAPES, fla, inputs, ours, time_impl
from hybridize.kernels import autograd


def grads(B, T, H, D, channel):
    torch.manual_seed(0)
    xs = inputs(B, T, H, D, channel, True)
    do = torch.randn(B, T, H, D, device="cuda", generator=torch.Generator("cuda").manual_seed(0)).bfloat16()
    ours(*xs)[0].backward(do)
    return [x.grad.clone() for x in xs]


def graph_ms(B, T, H, D, channel, reps: int = 30) -> float:
    """The median of `reps` replays of a CUDA graph of one fwd+bwd (warmed eagerly on a side stream first)."""
    xs = inputs(B, T, H, D, channel, True)
    do = torch.randn(B, T, H, D, device="cuda").bfloat16()
    warm = torch.cuda.Stream()
    warm.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(warm):
        for _ in range(3):
            ours(*xs)[0].backward(do)
    torch.cuda.current_stream().wait_stream(warm)
    for x in xs:
        x.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        ours(*xs)[0].backward(do)
    for _ in range(5):
        graph.replay()
    times = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        graph.replay()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    del graph
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="0,1,4")
    ap.add_argument("--gates", default="gdn,kda")
    ap.add_argument("--fla", action="store_true")
    ap.add_argument("--no-graph", action="store_true")
    ap.add_argument("--stages", default="1,0", help="the side stream's scan stages to time (0: the scan's own)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    stages = [int(x) for x in args.stages.split(",")]
    rows = []
    for i in args.shapes.split(","):
        B, T, H, D = SHAPES[int(i)]
        for gate in args.gates.split(","):
            channel = gate == "kda"
            name = f"{gate.upper()} fwd+bwd ({B},{T},{H},{D})"
            row = {"case": name}
            runs = {}
            for overlap in (True, True, True, False):
                autograd.OVERLAP = overlap
                runs.setdefault(overlap, []).append(grads(B, T, H, D, channel))
            ref = runs[False][0]
            row["same"] = all(torch.equal(a, b) for run in runs[True] for a, b in zip(run, ref))
            # where not: how far apart, relative to the gradient's norm (largest over the five gradients and runs)
            row["diff"] = max(((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30)).item()
                              for run in runs[True] for a, b in zip(run, ref))
            labels = [("one", False, 0)] + [(f"side{n}", True, n) for n in stages] + [("one_again", False, 0)]
            for label, overlap, n in labels:
                autograd.OVERLAP, autograd.OVERLAP_SCAN_STAGES = overlap, n
                row[f"wall_{label}"] = time_impl(ours, B, T, H, D, channel, True)
                if not args.no_graph and label != "one_again":
                    row[f"graph_{label}"] = graph_ms(B, T, H, D, channel)
            autograd.OVERLAP, autograd.OVERLAP_SCAN_STAGES = True, stages[0]
            if args.fla and channel and fla(channel) is not None:
                row["fla_wall"] = time_impl(fla(channel), B, T, H, D, channel, True)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| case | same grads | time | one stream | " + " | ".join(f"side, scan stages {n}" for n in stages)
          + " | one stream again | fla | first side / fla |")
    print("|---|---|---|---|" + "---|" * len(stages) + "---|---|---|")
    f = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    for r in rows:
        ratio = f"{r[f'wall_side{stages[0]}'] / r['fla_wall']:.2f}x" if r.get("fla_wall") else "-"
        sides = " | ".join(f(r.get(f"wall_side{n}")) for n in stages)
        print(f"| {r['case']} | {r['same']} ({r['diff']:.1e}) | wall | {f(r['wall_one'])} | {sides} | {f(r['wall_one_again'])} | "
              f"{f(r.get('fla_wall'))} | {ratio} |")
        if not args.no_graph:
            sides = " | ".join(f(r.get(f"graph_side{n}")) for n in stages)
            print(f"| {r['case']} | {r['same']} | graph | {f(r['graph_one'])} | {sides} | - | - | - |")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "rows.json"), "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
