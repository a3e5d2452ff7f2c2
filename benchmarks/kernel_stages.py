"""Where the forward's time goes: each stage of ours and of fla 0.6.0 timed alone, same inputs.

    PYTHONPATH=. python benchmarks/kernel_stages.py [--shapes 0,2,4] [--sweep 0] [--dh-sweep 0] [--out DIR]

Ours: layout (host-side chunk table), prep (cumsum, A, inverse, w, u, Aqk), scan (states per chunk,
vn), output. fla: cumsum, intra (kkt + inverse + w, u), h (its scan), o. Medians of
triton.testing.do_bench, ms, bf16 q/k/v/beta and fp32 gates as in bench_kernels.py. --sweep times our
scan alone over (BV, num_warps, num_stages), the knobs of the one sequential kernel; --output-sweep
the output kernel over (BK, BV, num_warps); --split-sweep the v5 prep's kernels; --dh-sweep the
backward's dh scan over the same knobs and where its Aqk^T do term is formed (with chunk_bwd's total).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os

import torch

from benchmarks.bench_kernels import bench, inputs
from hybridize.kernels import chunk_prep as prep_mod
from hybridize.kernels import chunk_scan as scan_mod
from hybridize.kernels._common import make_layout
from hybridize.kernels.chunk_output import chunk_output

SHAPES = [(1, 8192, 16, 128), (4, 4096, 16, 128), (1, 32768, 16, 128), (2, 16384, 32, 128), (8, 2048, 9, 64)]


def packed(x):
    return x.reshape(1, x.shape[0] * x.shape[1], *x.shape[2:])


def forward_operands(B, T, H, D, channel):
    """Inputs (packed), scale, layout and every stage's output of one forward, as the forward runs it."""
    q, k, v, g, beta = (packed(x) for x in inputs(B, T, H, D, channel, False))
    scale = D ** -0.5
    layout = make_layout(B, T, None, q.device)
    G, w, u, Aqk, _, kg = prep_mod.chunk_prep(q, k, v, g, beta, scale, layout)
    _, _, h, vn = scan_mod.chunk_scan(q, k, w, u, G, Aqk, scale, layout, store_h=True, state_dtype=q.dtype, kg=kg)
    return (q, k, v, g, beta), scale, layout, (G, w, u, Aqk, kg, h, vn)


def ours_stages(B, T, H, D, channel):
    (q, k, v, g, beta), scale, layout, (G, w, u, Aqk, kg, h, vn) = forward_operands(B, T, H, D, channel)
    return {
        "layout": bench(lambda: make_layout(B, T, None, q.device)),
        "prep": bench(lambda: prep_mod.chunk_prep(q, k, v, g, beta, scale, layout)),
        "scan": bench(lambda: scan_mod.chunk_scan(q, k, w, u, G, Aqk, scale, layout, store_h=True,
                                                  state_dtype=q.dtype, kg=kg)),
        "output": bench(lambda: chunk_output(q, G, Aqk, h, vn, scale, layout, qh_dtype=w.dtype)),
    }


def prep_sweep(B, T, H, D, channel):
    """The v4 prep alone over (key columns per step, warps)."""
    q, k, v, g, beta = (packed(x) for x in inputs(B, T, H, D, channel, False))
    layout = make_layout(B, T, None, q.device)
    saved = {k2: (dict(v2) if isinstance(v2, dict) else v2) for k2, v2 in prep_mod.PREP_CONFIG.items()}
    rows = []
    for bk, nw in itertools.product((32, 64), (2, 4, 8)):
        prep_mod.PREP_CONFIG["blocks_BK"]["channel" if channel else "scalar"] = bk
        prep_mod.PREP_CONFIG["blocks_warps"] = nw
        try:
            t = bench(lambda: prep_mod.chunk_prep(q, k, v, g, beta, D ** -0.5, layout))
        except Exception as err:  # noqa: BLE001 - recorded, not fatal
            t = f"{type(err).__name__}"
        rows.append((bk, nw, t))
    prep_mod.PREP_CONFIG.update(saved)
    return rows


def fla_stages(B, T, H, D, channel):
    from fla.ops.common.chunk_delta_h import chunk_gated_delta_rule_fwd_h
    from fla.ops.utils import chunk_local_cumsum
    from fla.ops.utils.constant import RCP_LN2
    q, k, v, g, beta = inputs(B, T, H, D, channel, False)
    scale = D ** -0.5
    gc = chunk_local_cumsum(g, chunk_size=64, scale=RCP_LN2)
    out = {"cumsum": bench(lambda: chunk_local_cumsum(g, chunk_size=64, scale=RCP_LN2))}
    if channel:
        from fla.ops.gla.chunk import chunk_gla_fwd_o_gk
        from fla.ops.kda.chunk_intra import chunk_kda_fwd_intra
        w, u, _, kg, Aqk, _ = chunk_kda_fwd_intra(q=q, k=k, v=v, gk=gc, beta=beta, scale=scale)
        out["intra"] = bench(lambda: chunk_kda_fwd_intra(q=q, k=k, v=v, gk=gc, beta=beta, scale=scale))
        h, vn, _ = chunk_gated_delta_rule_fwd_h(k=kg, w=w, u=u, gk=gc)
        out["h"] = bench(lambda: chunk_gated_delta_rule_fwd_h(k=kg, w=w, u=u, gk=gc))
        out["o"] = bench(lambda: chunk_gla_fwd_o_gk(q=q, v=vn, g=gc, A=Aqk, h=h, scale=scale))
    else:
        from fla.ops.common.chunk_o import chunk_fwd_o
        from fla.ops.gated_delta_rule.chunk_fwd import chunk_gated_delta_rule_fwd_intra
        w, u, _ = chunk_gated_delta_rule_fwd_intra(k=k, v=v, g=gc, beta=beta)
        out["intra"] = bench(lambda: chunk_gated_delta_rule_fwd_intra(k=k, v=v, g=gc, beta=beta))
        h, vn, _ = chunk_gated_delta_rule_fwd_h(k=k, w=w, u=u, g=gc)
        out["h"] = bench(lambda: chunk_gated_delta_rule_fwd_h(k=k, w=w, u=u, g=gc))
        out["o"] = bench(lambda: chunk_fwd_o(q=q, k=k, v=vn, h=h, g=gc, scale=scale))
    out["dtypes"] = f"w {w.dtype} u {u.dtype} h {h.dtype} vn {vn.dtype}"
    return out


def timed(fn):
    """bench(fn) in ms, or the exception's name where a setting fails (out of shared memory etc.)."""
    try:
        return bench(fn)
    except Exception as err:  # noqa: BLE001 - recorded, not fatal
        return type(err).__name__


def sweep(B, T, H, D, channel):
    q, k, v, g, beta = (packed(x) for x in inputs(B, T, H, D, channel, False))
    scale = D ** -0.5
    layout = make_layout(B, T, None, q.device)
    G, w, u, Aqk, _, kg = prep_mod.chunk_prep(q, k, v, g, beta, scale, layout)
    rows = []
    saved = dict(scan_mod.SCAN_CONFIG)
    # round 13: also the scan that folds the solve in (rows "solve BV"), on the prep's operands for it
    solves = (False, True) if prep_mod.solve_in_scan(k, None, channel) else (False,)
    if True in solves:
        _, kG, _, _, Tm, kg_s = prep_mod.chunk_prep(q, k, v, g, beta, scale, layout, solve=False)
    for solve, bv, nw, ns in itertools.product(solves, (16, 32, 64), (2, 4), (2, 3)):
        scan_mod.SCAN_CONFIG.update(BV=bv, num_warps=nw, num_stages=ns, channel_stages=ns, wide_block_stages=ns)
        t = timed(lambda: scan_mod.chunk_scan(q, k, None if solve else w, None if solve else u, G, Aqk, scale, layout,
                                              store_h=True, state_dtype=q.dtype, kg=kg_s if solve else kg,
                                              solve=(Tm, v, beta, kG) if solve else None))
        rows.append((f"solve {bv}" if solve else bv, nw, ns, t))
    scan_mod.SCAN_CONFIG.clear()
    scan_mod.SCAN_CONFIG.update(saved)
    return rows


def backward_operands(B, T, H, D, channel):
    """Packed inputs, a random do, the scale, the layout and the forward's own intermediates (autograd._forward
    with store_for_bwd): what chunk_bwd takes."""
    from hybridize.kernels import autograd
    q, k, v, g, beta = (packed(x) for x in inputs(B, T, H, D, channel, False))
    scale = D ** -0.5
    layout = make_layout(B, T, None, q.device)
    _, _, inter = autograd._forward(q, k, v, g, beta, scale, None, False, layout, store_for_bwd=True)
    return (q, k, v, g, beta), torch.randn_like(v), scale, layout, inter


# dec: the decayed operands' (q e^G, kg; per-channel gates) bits, 32 or 16 (fp16: chunk_bwd.decayed_dtype's; the
# inputs here are unit vectors, as the fused L2 norm makes them)
DH_GRID = {"bv": (16, 32, 64), "warps": (2, 4), "stages": (1, 2), "dvn": ("scan", "kernel"), "split": (0,), "dec": (32,)}


def parse_grid(spec: str, base: dict) -> dict:
    """--dh-grid / --bwd-grid, e.g. "bv=16,32;stages=2,3;dvn=kernel": `base` with the named knobs replaced (numbers
    as ints, words such as dvn's as they are)."""
    grid = dict(base)
    for part in (p for p in spec.split(";") if p):
        name, values = part.split("=")
        grid[name] = tuple(int(v) if v.lstrip("-").isdigit() else v for v in values.split(","))
    return grid


def dh_sweep(B, T, H, D, channel, grid=None):
    """The backward's dh scan (chunk_bwd.launch_dh) alone over (BV, warps, stages, where Aqk^T do is
    formed: "scan" in the serial loop or "kernel" in parallel before it, and for per-channel gates
    BWD_CONFIG["dh_split_channel"]), and the whole chunk_bwd at each setting. grid: DH_GRID's knobs.
    Inputs: backward_operands."""
    from hybridize.kernels import chunk_bwd as bwd_mod
    (q, k, v, g, beta), do, scale, layout, (G, w, Aqk, Tm, h, vn, kg) = backward_operands(B, T, H, D, channel)
    grid = grid or DH_GRID
    # as chunk_bwd: vn's dtype, not w's ("mixed"), or fp16 (dec 16); only the bit widths the grid asks for
    # (q e^G as the bf16 pair where chunk_bwd takes it so: BWD_CONFIG["dh_qsplit"], round 22)
    qsplit = bwd_mod.dh_qsplit(w.dtype, do.dtype, vn.dtype, D, channel)
    operands = {bits: bwd_mod.dh_operands(q, k, G, layout, vn.dtype if bits == 32 else torch.float16,
                                          kg if bits == 32 or kg is None else kg.to(torch.float16), qsplit, scale)
                for bits in grid["dec"]}
    # as chunk_bwd stores it (BWD_CONFIG["dh_store16"])
    dh16 = bwd_mod.BWD_CONFIG["dh_store16"] and bwd_mod.bf16_states(q.dtype, channel)
    dh_all = torch.empty(layout.num_chunks, H, D, D, device=q.device, dtype=torch.bfloat16 if dh16 else vn.dtype)
    dvn = torch.empty_like(vn)
    saved = dict(bwd_mod.BWD_CONFIG)
    rows = []
    # 8 warps are left out: at BV 16 they ended round 8's sweep with an illegal memory access (the
    # shipped launch uses 4; the crash was not investigated further)
    names = ("bv", "warps", "stages", "dvn", "split", "dec")
    for bv, nw, ns, local, split, bits in itertools.product(*(grid[n] for n in names)):
        bwd_mod.BWD_CONFIG.update(dh_BV=bv, dh_warps=nw, dh_stages=ns, dvn_local=local, dh_split_channel=bool(split))
        if (split or bits != 32) and not channel:
            continue
        if split and qsplit:  # SPLIT 2 takes q e^G whole; these operands are the pair (set HYBRIDIZE_GDR_DH_QSPLIT=0)
            continue
        ops = operands[bits]
        try:
            t = bench(lambda: bwd_mod.launch_dh(*ops, w, G, Aqk, do, None, dh_all, dvn, None, layout, scale))
            t_all = bench(lambda: bwd_mod.chunk_bwd(q, k, v, g, beta, scale, layout, G, w, Aqk, Tm, h, vn, do, None,
                                                    False, kg=ops[1] if channel else kg, unit_keys=bits == 16))
        except Exception as err:  # noqa: BLE001 - out of shared memory etc.: recorded, not fatal
            t, t_all = f"{type(err).__name__}", None
        rows.append((bv, nw, ns, f"{local}{' split' if split else ''}{' fp16' if bits == 16 else ''}", t, t_all))
    bwd_mod.BWD_CONFIG.clear()
    bwd_mod.BWD_CONFIG.update(saved)
    return rows


BWD_GRID = {"bk": (32, 64), "bv": (32, 64), "warps": (4, 8), "stages": (None,)}


def bwd_sweep(B, T, H, D, channel, grid=None):
    """The whole chunk_bwd over its stage-2 launch (key columns BK, value columns BV, warps, the key-side kernel's
    stages (None: BWD_CONFIG's); the same for every design and gate kind) at the design "auto" picks. Inputs:
    backward_operands."""
    from hybridize.kernels import chunk_bwd as bwd_mod
    (q, k, v, g, beta), do, scale, layout, (G, w, Aqk, Tm, h, vn, kg) = backward_operands(B, T, H, D, channel)
    saved = dict(bwd_mod.BWD_CONFIG)
    rows = []
    grid = grid or BWD_GRID
    for bk, bv, nw, ns in itertools.product(*(grid[n] for n in ("bk", "bv", "warps", "stages"))):
        every = {"fused": {"gdn": None, "kda": None}, "split": {"gdn": None, "kda": None}}
        bwd_mod.BWD_CONFIG.update(BK={d: dict.fromkeys(g, bk) for d, g in every.items()},
                                  BV={d: dict.fromkeys(g, bv) for d, g in every.items()}, num_warps=nw,
                                  stages=ns or saved["stages"])
        t = timed(lambda: bwd_mod.chunk_bwd(q, k, v, g, beta, scale, layout, G, w, Aqk, Tm, h, vn, do, None, False,
                                            kg=kg))
        rows.append((bk, bv, nw, ns or "default", t))
    bwd_mod.BWD_CONFIG.clear()
    bwd_mod.BWD_CONFIG.update(saved)
    return rows


def split_sweep(B, T, H, D, channel, only: str = ""):
    """The v5 prep's three kernels (chunk_prep_split.py) timed one at a time over their knobs. The
    inverse runs in place, so repeats invert their own output: the values drift (even to inf), the
    work per call does not."""
    from hybridize.kernels import chunk_prep_split as sp
    q, k, v, g, beta = (packed(x) for x in inputs(B, T, H, D, channel, False))
    layout = make_layout(B, T, None, q.device)
    scale = D ** -0.5
    dtypes = prep_mod.inter_dtypes(k, channel=channel)
    G, w, u, Aqk, Tm, kg = sp.chunk_prep_split(q, k, v, g, beta, scale, layout, *dtypes)
    pairs = lambda: sp.launch_pairs(q, k, g, beta, scale, layout, G, Tm, Aqk)  # noqa: E731
    inverse = lambda: sp.launch_inverse(Tm, layout, q.dtype)  # noqa: E731
    solve = lambda: sp.launch_solve(k, v, G, beta, Tm, layout, w, u, kg)  # noqa: E731
    runs = [(f"pairs BK{bk} w{nw}", dict(pairs_BK=bk, pairs_warps=nw, pairs_inverse=False), pairs)
            for bk, nw in itertools.product((32, 64), (4, 8))]
    # the pairs kernel inverting A itself: pairs + inverse in one
    runs += [(f"pairs + inverse {inv} BK64 w{nw}", dict(pairs_BK=64, pairs_warps=nw, pairs_inverse=True, inverse=inv,
                                                         pairs_inverse_channel=True), pairs)
             for inv, nw in itertools.product(("blocked", "doubling"), (4, 8))]
    if not channel:  # round 13: the pairs kernel without Aqk (the output kernel forms it, no-grad forward)
        pairs_no_aqk = lambda: sp.launch_pairs(q, k, g, beta, scale, layout, G, Tm, None)  # noqa: E731
        runs += [(f"pairs + inverse doubling no-Aqk BK64 w{nw}", dict(pairs_BK=64, pairs_warps=nw, pairs_inverse=True,
                                                                      inverse="doubling"), pairs_no_aqk)
                 for nw in (4, 8)]
    if channel:  # round 17: the forward's own variant (decayed keys, kg as a hi + lo pair) over warps, stages, maxnreg
        kg2, kG = sp.scan_kg(k, dtypes[1]), torch.empty_like(k, dtype=dtypes[0])
        decayed = lambda: sp.launch_pairs(q, k, g, beta, scale, layout, G, Tm, Aqk, kg2, kG)  # noqa: E731
        runs += [(f"pairs decayed w{nw} stages {ns} maxnreg {mr}",
                  dict(pairs_warps=nw, pairs_stages=ns, pairs_maxnreg=mr), decayed)
                 for nw, ns, mr in itertools.product((4, 8), (None, 1, 2), (None, 128, 168, 200))]
        # round 18: over the key columns summed per step, with and without scale q e^G for the output (qg)
        qG = torch.empty_like(q, dtype=dtypes[0])
        with_qg = lambda: sp.launch_pairs(q, k, g, beta, scale, layout, G, Tm, Aqk, kg2, kG, qG)  # noqa: E731
        runs += [(f"pairs decayed BK{bk} w{nw}{' qg' if qg else ''}", dict(pairs_BK=bk, pairs_warps=nw),
                  with_qg if qg else decayed) for qg, bk, nw in itertools.product((False, True), (16, 32, 64), (4, 8))]
    else:  # and the no-grad forward's scalar variant (no Aqk) over stages and maxnreg
        no_aqk = lambda: sp.launch_pairs(q, k, g, beta, scale, layout, G, Tm, None)  # noqa: E731
        runs += [(f"pairs decayed-free no-Aqk w4 stages {ns} maxnreg {mr}",
                  dict(pairs_warps=4, pairs_stages=ns, pairs_maxnreg=mr), no_aqk)
                 for ns, mr in itertools.product((None, 1, 2), (None, 96, 128))]
    runs += [(f"inverse {inv} w{nw}", dict(inverse=inv, inverse_warps=nw), inverse)
             for inv, nw in itertools.product(("blocked", "doubling", "blocks16"), (4, 8))]
    runs += [(f"solve BK{bk} w{nw}{' all' if together else ''}", dict(solve_BK=bk, solve_warps=nw, solve_all=together),
              solve) for together, bk, nw in itertools.product((False, True), (32, 64, 128), (4, 8))]
    saved = dict(sp.SPLIT_CONFIG)
    out = []
    for label, knobs, fn in (r for r in runs if only in r[0]):
        sp.SPLIT_CONFIG.update(saved, **knobs)
        try:
            t = bench(fn)
        except Exception as err:  # noqa: BLE001 - recorded, not fatal
            t = f"{type(err).__name__}"
        out.append((label, t))
    sp.SPLIT_CONFIG.update(saved)
    return out


def output_sweep(B, T, H, D, channel):
    """The output kernel (chunk_output.py) alone over (vn's dtype, BV, warps, stages of the key loop). "vn16":
    vn in fp16 as the no-grad forward runs it (with the operands of its fallback; no chunk overflows here)."""
    from hybridize.kernels import chunk_output as out_mod
    (q, k, v, g, beta), scale, layout, (G, w, u, Aqk, _, h, vn) = forward_operands(B, T, H, D, channel)
    saved = dict(out_mod.OUTPUT_CONFIG)
    rows = []
    qk = not channel  # scalar gates: Aqk formed in the kernel, as the no-grad forward runs it
    # BK 128 is left out since round 13: at (4,4096,16,128) its first launch (BV 32) raised an illegal
    # memory access on the H100 (triton 3.6), which poisons the process for every later launch
    vn16 = vn.to(torch.float16)
    # (round 22: also 32 value columns and 2 warps, for head dim 64)
    for half, bv, nw, ns in itertools.product((False, True), (32, 64, 128), (2, 4, 8), (2, 3)):
        out_mod.OUTPUT_CONFIG.update(BV=bv, num_warps=nw, num_stages=ns)
        t = timed(lambda: chunk_output(q, G, None if qk else Aqk, h, vn16 if half else vn, scale, layout,
                                       qh_dtype=w.dtype, k=k, vn_check=(w, u) if half else None))
        rows.append(("vn16" if half else "vn32", bv, nw, ns, t))
    out_mod.OUTPUT_CONFIG.update(saved)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="0,2,4")
    ap.add_argument("--sweep", default="", help="shape indices whose scan to sweep, e.g. 0,2")
    ap.add_argument("--inter", default="fp32,bf16", help="our intermediates' settings to time (fp32, mixed, bf16)")
    ap.add_argument("--designs", default="full", help="prep designs to time: full (v3), blocks (v4), split (v5)")
    ap.add_argument("--prep-sweep", default="", help="shape indices whose v4 prep to sweep")
    ap.add_argument("--split-sweep", default="", help="shape indices whose v5 (split) prep kernels to sweep")
    ap.add_argument("--split-only", default="", help="only the split sweep's runs whose label holds this text")
    ap.add_argument("--dh-sweep", default="", help="shape indices whose backward dh scan to sweep")
    ap.add_argument("--dh-grid", default="", help='the dh sweep\'s knobs, e.g. "bv=16,32;stages=2;split=0,1"')
    ap.add_argument("--dh-gates", default="gdn,kda", help="gates of the dh sweep")
    ap.add_argument("--output-sweep", default="", help="shape indices whose output kernel to sweep")
    ap.add_argument("--bwd-sweep", default="", help="shape indices whose backward (stage-2 launch) to sweep")
    ap.add_argument("--bwd-grid", default="", help='the bwd sweep\'s knobs, e.g. "bk=16,32;stages=1,2"')
    ap.add_argument("--bwd-gates", default="gdn,kda", help="gates of the bwd sweep")
    ap.add_argument("--sweep-gates", default="gdn", help="gates of the scan, split and output sweeps: gdn, kda or gdn,kda")
    ap.add_argument("--sweep-inter", default="fp32",
                    help="intermediates' setting during the sweeps (fp32, mixed, bf16)")
    ap.add_argument("--no-fla", action="store_true")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    lines = []
    default_design = prep_mod.PREP_CONFIG["design"]
    for i in (int(s) for s in args.shapes.split(",") if s):
        B, T, H, D = SHAPES[i]
        for channel in (False, True):
            name = f"{'KDA' if channel else 'GDN'} ({B},{T},{H},{D})"
            for design, inter in itertools.product(args.designs.split(","), args.inter.split(",")):
                prep_mod.INTERMEDIATES = inter
                prep_mod.PREP_CONFIG["design"] = design
                r = ours_stages(B, T, H, D, channel)
                total = sum(r.values())
                line = (f"| {name} | ours {design}, {inter} | " + " | ".join(f"{k} {t:.3f}" for k, t in r.items())
                        + f" | sum {total:.3f} |")
                print(line, flush=True)
                lines.append(line)
            prep_mod.INTERMEDIATES = "fp32"
            prep_mod.PREP_CONFIG["design"] = default_design
            if not args.no_fla:
                try:
                    r = fla_stages(B, T, H, D, channel)
                    dt = r.pop("dtypes")
                    line = f"| {name} | fla | " + " | ".join(f"{k} {t:.3f}" for k, t in r.items()) + f" | sum {sum(r.values()):.3f} ({dt}) |"
                except Exception as err:  # noqa: BLE001 - recorded
                    line = f"| {name} | fla | {type(err).__name__}: {str(err)[:150]} |"
                print(line, flush=True)
                lines.append(line)
    prep_mod.INTERMEDIATES = args.sweep_inter
    sweep_gates = tuple(g == "kda" for g in args.sweep_gates.split(","))
    sweeps = (("prep sweep", args.prep_sweep, prep_sweep, ("BK", "warps"), (False, True)),
              ("scan sweep", args.sweep, sweep, ("BV", "warps", "stages"), sweep_gates),
              ("output sweep", args.output_sweep, output_sweep, ("vn", "BV", "warps", "stages"), sweep_gates),
              ("bwd sweep", args.bwd_sweep, lambda *a: bwd_sweep(*a, parse_grid(args.bwd_grid, BWD_GRID)),
               ("BK", "BV", "warps", "stages"), tuple(g == "kda" for g in args.bwd_gates.split(","))))
    for label, which, fn, knobs, gates in sweeps:
        for i in (int(s) for s in which.split(",") if s):
            B, T, H, D = SHAPES[i]
            for channel in gates:
                rows = fn(B, T, H, D, channel)  # (knob values..., ms or the exception's name)
                timed = [r for r in rows if isinstance(r[-1], float)]
                best = min(timed, key=lambda r: r[-1]) if timed else None
                desc = (" ".join(f"{n} {x}" for n, x in zip(knobs, best)) + f": {best[-1]:.3f}") if best else "none ran"
                line = f"| {label} {'KDA' if channel else 'GDN'} ({B},{T},{H},{D}) | best {desc} | " + json.dumps(rows)
                print(line, flush=True)
                lines.append(line)
    for i in (int(s) for s in args.dh_sweep.split(",") if s):
        B, T, H, D = SHAPES[i]
        for channel in (g == "kda" for g in args.dh_gates.split(",")):
            # (BV, warps, stages, dvn_local, dh ms, chunk_bwd ms)
            rows = dh_sweep(B, T, H, D, channel, parse_grid(args.dh_grid, DH_GRID))
            timed = [r for r in rows if isinstance(r[4], float)]
            # the best three of each variant (dvn / split / fp16 label), then up to two that failed
            best = [r for label in dict.fromkeys(r[3] for r in timed)
                    for r in sorted((r for r in timed if r[3] == label), key=lambda r: r[4])[:3]]
            for r in best + [r for r in rows if not isinstance(r[4], float)][:2]:
                line = (f"| dh sweep {'KDA' if channel else 'GDN'} ({B},{T},{H},{D}) | BV {r[0]} warps {r[1]} "
                        f"stages {r[2]} dvn {r[3]} | dh {r[4] if isinstance(r[4], str) else f'{r[4]:.3f}'} | "
                        f"chunk_bwd {'—' if r[5] is None else f'{r[5]:.3f}'} |")
                print(line, flush=True)
                lines.append(line)
            lines.append(f"dh sweep {'KDA' if channel else 'GDN'} ({B},{T},{H},{D}) all: " + json.dumps(rows))
    for i in (int(s) for s in args.split_sweep.split(",") if s):
        B, T, H, D = SHAPES[i]
        for channel in sweep_gates:
            for label, t in split_sweep(B, T, H, D, channel, args.split_only):
                line = f"| split {'KDA' if channel else 'GDN'} ({B},{T},{H},{D}) | {label} | " + (
                    f"{t:.3f} |" if isinstance(t, float) else f"{t} |")
                print(line, flush=True)
                lines.append(line)
    with open(os.path.join(args.out, "kernel_stages.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
