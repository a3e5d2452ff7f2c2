"""Why the backward's recompute scan takes twice the forward scan's time (round 19): the scan alone, in the
backward's configuration and with one thing changed at a time.

    PYTHONPATH=. python benchmarks/scan_recompute_probe.py [--shapes 0,1] [--gates kda,gdn] [--out DIR]

Rows, each chunk_scan on the same inputs (bf16 q/k/v as bench_kernels.py, "mixed" intermediates):
  forward      the forward's own call (the solve folded in for KDA, states in bf16, vn in fp16 for the output)
  recompute    the backward's: w and u from the solve kernel, states and vn in fp32 (autograd's RECOMPUTE "solve")
  h16          the same with the states stored in bf16
  bv32         recompute with 32 value columns per program
(Round 19's run also timed the scan storing neither states nor vn: 0.004 ms, a kernel with no stores is compiled
away, so that row measured nothing and is gone.)
Medians of triton.testing.do_bench, ms.
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from benchmarks.bench_kernels import bench, inputs
from benchmarks.kernel_stages import SHAPES, packed
from hybridize.kernels import chunk_scan as scan_mod
from hybridize.kernels._common import make_layout
from hybridize.kernels.chunk_prep import chunk_prep, inter_dtypes, solve_in_scan
from hybridize.kernels.chunk_prep_split import chunk_solve


def probe(B, T, H, D, channel):
    q, k, v, g, beta = (packed(x) for x in inputs(B, T, H, D, channel, False))
    scale = D ** -0.5
    layout = make_layout(B, T, None, q.device)
    w_dtype, inter = inter_dtypes(k, None, channel)
    # the forward as autograd._forward runs it without a backward: the prep stops at T where the scan solves
    solve = not solve_in_scan(k, None, channel, layout.num_seqs * H)
    G, w, u, Aqk, Tm, kg = chunk_prep(q, k, v, g, beta, scale, layout, store_t=True, solve=solve)
    fw = (w, u, None) if u is not None else (None, None, (Tm, v, beta, w))
    # the backward's recompute: the solve kernel's w, u (and kg), then the scan keeping fp32 states and vn
    wb, ub, kgb = chunk_solve(k, v, G, beta, Tm, layout, w_dtype, inter)
    saved = dict(scan_mod.SCAN_CONFIG)

    def scan(state_dtype=None):
        return scan_mod.chunk_scan(q, k, wb, ub, G, Aqk, scale, layout, store_h=True, state_dtype=state_dtype, kg=kgb)
    rows = {
        "forward": bench(lambda: scan_mod.chunk_scan(q, k, fw[0], fw[1], G, Aqk, scale, layout, store_h=True,
                                                     state_dtype=q.dtype, kg=kg, solve=fw[2])),
        "recompute": bench(lambda: scan()),
        "h16": bench(lambda: scan(state_dtype=q.dtype)),
    }
    scan_mod.SCAN_CONFIG["BV"] = 32
    rows["bv32"] = bench(lambda: scan())
    scan_mod.SCAN_CONFIG.clear()
    scan_mod.SCAN_CONFIG.update(saved)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="0,1")
    ap.add_argument("--gates", default="kda,gdn")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    lines = []
    for i in (int(s) for s in args.shapes.split(",") if s):
        B, T, H, D = SHAPES[i]
        for gate in args.gates.split(","):
            rows = probe(B, T, H, D, gate == "kda")
            line = f"| scan probe {gate.upper()} ({B},{T},{H},{D}) | " + " | ".join(f"{n} {t:.3f}" for n, t in rows.items())
            print(line, flush=True)
            lines.append(line)
    with open(os.path.join(args.out, "scan_recompute_probe.json"), "w") as fh:
        json.dump(lines, fh, indent=1)


if __name__ == "__main__":
    main()
