"""GPU probe (timing only, no correctness): what the forward's serial scan and output kernel would cost
at chunks of 128 tokens instead of 64, before building a chunk-128 forward.

The scan is latency-bound: at (1,8192,16,128) it takes 1.65 us per chunk step whatever it moves. Chunks
of 128 halve the steps; each step's products double in rows. This runs the very kernels of
chunk_scan.py and chunk_output.py (both take the chunk width as a constexpr) on operands of the right
shapes and dtypes (the state update as one tf32 product, as before SPLIT; "mixed": w bf16, u / vn / Aqk fp32, h bf16), with C = 64 (the forward's operands,
from the real prep) and C = 128 (the same tensors, read as chunks of 128: the values are not a chunk-128
forward's, the bytes and the work are), over a few launches, and prints the best of each.

    python benchmarks/chunk128_probe.py [--shapes 0,1,2,3,4] [--out DIR]
"""
from __future__ import annotations

import argparse
import itertools
import json
import os

import torch
import triton

from benchmarks.bench_kernels import bench
from benchmarks.kernel_stages import SHAPES, forward_operands
from hybridize.kernels import chunk_scan as scan_mod
from hybridize.kernels._common import _fixed_layout, dot_dtype, dot_precision
from hybridize.kernels.chunk_output import _output_kernel


def timed(fn):
    try:
        return bench(fn)
    except Exception as err:  # noqa: BLE001 - recorded (shared memory overflow etc.)
        return type(err).__name__


def scan_times(ops, scale, lay, C, channel):
    (q, k, v, g, beta), (G, w, u, Aqk, kg, h, vn) = ops
    _, L, H, K = k.shape
    V = u.shape[-1]
    N = lay.num_seqs
    h_out = torch.empty(lay.num_chunks, H, K, V, device=k.device, dtype=q.dtype)
    vn_out = torch.empty_like(u)
    rows = []
    for bv, nw, ns in itertools.product((16, 32, 64), (4, 8), (1, 2, 3)):
        if bv > V:
            continue
        def run():
            scan_mod._scan_kernel[(triton.cdiv(V, bv), N * H)](
                q, k if kg is None else kg, w, u, G, Aqk, u, u, u, h_out, vn_out, lay.cu, lay.chunk_offsets,
                scale, H, K=K, V=V, BK=triton.next_power_of_2(K), BV=bv, C=C, CHANNEL=channel,
                KG=kg is not None, HAS_H0=False, STORE_FINAL=False, STORE_H=True, STORE_VN=True, FUSE_O=False,
                PREC=dot_precision(k.dtype), DT=dot_dtype(u.dtype), WDT=dot_dtype(w.dtype),
                KG_REGS=scan_mod.SCAN_CONFIG["kg_via_registers"], SPLIT=0, KDT=dot_dtype(k.dtype),
                num_warps=nw, num_stages=ns)
        rows.append(((bv, nw, ns), timed(run)))
    return rows


def output_times(ops, scale, lay, C, channel):
    (q, k, v, g, beta), (G, w, u, Aqk, kg, h, vn) = ops
    _, L, H, K = q.shape
    V = vn.shape[-1]
    A = torch.randn(1, L, H, C, device=q.device, dtype=Aqk.dtype) * 0.01
    hh = torch.randn(lay.num_chunks, H, K, V, device=q.device, dtype=h.dtype)
    o = torch.empty(1, L, H, V, device=q.device, dtype=q.dtype)
    rows = []
    for bv, bk, nw in itertools.product((32, 64), (32, 64), (4, 8)):
        def run():
            _output_kernel[(lay.num_chunks, H, triton.cdiv(V, bv))](
                q, G, A, hh, vn, o, G, lay.chunks, scale, H, K=K, V=V, BK=min(bk, K), BV=min(bv, V), C=C,
                CHANNEL=channel, PREC=dot_precision(q.dtype), DT=dot_dtype(A.dtype), HDT=dot_dtype(w.dtype),
                ROW_SCALE=False, num_warps=nw)
        rows.append(((bv, bk, nw), timed(run)))
    return rows


def best(rows):
    ok = [(cfg, t) for cfg, t in rows if isinstance(t, float)]
    return min(ok, key=lambda r: r[1]) if ok else (None, "failed")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="0,1,2,3,4")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    table, raw = [], {}
    for i in (int(s) for s in args.shapes.split(",")):
        B, T, H, D = SHAPES[i]
        for channel in (False, True):
            (inp, scale, lay64, outs) = forward_operands(B, T, H, D, channel)
            ops = (inp, outs)
            key = f"{'kda' if channel else 'gdn'} {SHAPES[i]}"
            res = {}
            for C in (64, 128):
                lay = lay64 if C == 64 else _fixed_layout(B, T, inp[0].device, chunk=128)
                res[C] = {"scan": scan_times(ops, scale, lay, C, channel),
                          "output": output_times(ops, scale, lay, C, channel)}
            raw[key] = {str(C): {k2: [(list(c), t) for c, t in v2] for k2, v2 in r.items()} for C, r in res.items()}
            row = [key]
            for part in ("scan", "output"):
                for C in (64, 128):
                    cfg, t = best(res[C][part])
                    row.append(f"{t:.3f} {cfg}" if isinstance(t, float) else t)
            table.append(row)
            print(" | ".join(row), flush=True)
            torch.cuda.empty_cache()
    print("\n| gate, shape | scan C64 (BV,warps,stages) | scan C128 | output C64 (BV,BK,warps) | output C128 |")
    print("|---|---|---|---|---|")
    for row in table:
        print("| " + " | ".join(row) + " |")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "chunk128_probe.json"), "w") as f:
            json.dump(raw, f, indent=1)


if __name__ == "__main__":
    main()
