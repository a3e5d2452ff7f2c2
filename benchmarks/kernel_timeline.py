"""When each kernel of one forward runs on the GPU, and what each compiled Triton kernel holds per program
(registers, shared memory, warps): what decides whether two kernels can share a multiprocessor.

    PYTHONPATH=. python benchmarks/kernel_timeline.py [--shapes 0] [--gates gdn,kda] [--graph | --bwd]

For each case the forward is warmed, then run --iters times under torch.profiler; the last run's kernels are
printed with their start relative to its first kernel and their duration (us, from the profiler's GPU
timeline). With --graph the runs are replays of a CUDA graph of the forward (its kernels back to back, as the
GPU can run them). Round 17 ran it on the overlapped forward of commit fdf0edd (benchmarks/RESULTS.md).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile

import torch
import triton

from benchmarks.bench_kernels import SHAPES, inputs
from benchmarks.kernel_graphs import captured
from benchmarks.kernel_profile import profiled
from hybridize.kernels import gated_delta_rule

_COMPILED: dict = {}
_run = triton.runtime.jit.JITFunction.run


def _recording_run(self, *args, **kwargs):
    kernel = _run(self, *args, **kwargs)
    if kernel is not None and hasattr(kernel, "n_regs"):
        meta = kernel.metadata
        _COMPILED[self.fn.__name__] = (kernel.n_regs, getattr(kernel, "n_spills", -1), meta.shared, meta.num_warps,
                                       getattr(meta, "num_stages", -1))
    return kernel


triton.runtime.jit.JITFunction.run = _recording_run


def timeline(xs, iters: int, graph: bool = False, do=None):
    def step():
        if do is None:
            return gated_delta_rule(*xs, output_final_state=True)
        for x in xs:
            x.grad = None
        gated_delta_rule(*xs, output_final_state=True)[0].backward(do)

    # with graph, the forward's kernels replayed from a CUDA graph: no host between them
    prof = profiled(captured(step, ()).replay if graph else step, iters)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    kernels = sorted((e for e in events if e.get("cat") == "kernel"), key=lambda e: e["ts"])
    per_run = len(kernels) // iters
    last = kernels[-per_run:]
    t0 = last[0]["ts"]
    return [(f'{e["name"][:34]} s{e.get("args", {}).get("stream", "?")}', e["ts"] - t0, e["dur"]) for e in last]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="0")
    ap.add_argument("--gates", default="gdn,kda")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--graph", action="store_true", help="replay a CUDA graph of the forward")
    ap.add_argument("--bwd", action="store_true",
                    help="forward and backward (eager; with the stream each kernel ran on)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    props = torch.cuda.get_device_properties(0)
    print(f"{props.name}: {props.multi_processor_count} multiprocessors")
    for i in args.shapes.split(","):
        B, T, H, D = SHAPES[int(i)] if i.isdigit() else tuple(int(x) for x in i.split("x"))
        for gate in args.gates.split(","):
            xs = [x.detach().requires_grad_(args.bwd) for x in inputs(B, T, H, D, gate == "kda", False)]
            _COMPILED.clear()
            if args.bwd:
                rows = timeline(xs, args.iters, do=torch.randn(B, T, H, D, device="cuda").bfloat16())
            else:
                with torch.no_grad():
                    rows = timeline(xs, args.iters, args.graph)
            mode = "fwd+bwd" if args.bwd else "fwd"
            print(f"\n{gate.upper()} {mode} ({B},{T},{H},{D}): kernel, start us, duration us")
            for name, start, dur in rows:
                print(f"  {name:40s} {start:9.1f} {dur:9.1f}")
            print("  span", f"{rows[-1][1] + rows[-1][2]:.1f} us")
            for name, (regs, spills, smem, warps, stages) in _COMPILED.items():
                print(f"  {name}: {regs} registers/thread, {spills} spills, {smem} B shared, {warps} warps, "
                      f"{stages} stages")


if __name__ == "__main__":
    main()
