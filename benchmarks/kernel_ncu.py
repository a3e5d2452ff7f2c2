"""Stall reasons of the sequential kernels, ours beside fla's, from Nsight Compute (ncu) on the H100.

The step function of one implementation runs a few times (compiling and autotuning outside the profile), then once
between cudaProfilerStart and cudaProfilerStop (not an NVTX range: the backward's kernels launch from autograd's
own thread, which a range opened here does not cover); ncu is meant to run this script with profiling off at start:

    ncu --clock-control none --profile-from-start off -k regex:"_dh_kernel|_scan_kernel|dhu|fwd_kernel_h" \\
        --set full --import-source yes -o REPORT python3 benchmarks/kernel_ncu.py --impl ours --shape 0 --gate kda

benchmarks/kernels_next_gpu.sh (PART=125) runs it for both implementations and turns the reports into text
(`ncu -i REPORT --page details` and `--page source --csv`); `--summarize FILE.csv` here reads such a source page and
prints, per kernel, the SASS instructions that hold the most stall samples with their stall reasons.
"""
from __future__ import annotations

import argparse
import collections
import csv
import os
import re
import sys

WARM = 3


def run(impl: str, shape: int, gate: str, bwd: bool) -> None:
    import torch

    from benchmarks.bench_kernels import SHAPES, fla, ours
    from benchmarks.kernel_profile import make_step

    fn = ours if impl == "ours" else fla(gate == "kda")
    if fn is None:
        sys.exit("fla is not installed: carry its wheels (.dev/fla)")
    step = make_step(fn, *SHAPES[shape], gate == "kda", bwd)
    for _ in range(WARM):
        step()
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    step()
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()


def source_tables(path: str) -> list[tuple[str, list[dict]]]:
    """The source page (--print-source sass --csv) of one report: (kernel name, its rows as dicts) per profiled launch.
    Each launch's table starts with a "Kernel Name" row, then the header row."""
    tables: list[tuple[str, list[dict]]] = []
    header = None
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if not row:
                continue
            if row[0] == "Kernel Name":
                tables.append((row[1], []))
                header = None
            elif header is None:
                header = row
            elif tables:
                tables[-1][1].append(dict(zip(header, row)))
    return tables


def summarize(path: str, top: int) -> None:
    """Per kernel of a source page, the total of each sampled column and the `top` instructions holding the most
    warp-stall samples, with their three largest stall reasons."""
    kernels = source_tables(path)
    for name, rows in kernels:
        if not rows:
            continue
        cols = [c for c in rows[0] if c.startswith("Warp Stall Sampling") or
                (c.startswith("stall_") and "Not Issued" not in c)]
        total = collections.Counter()
        for r in rows:
            for c in cols:
                total[c] += _num(r.get(c))
        print(f"## {name[:150]}")
        all_col = next((c for c in cols if "All Samples" in c), cols[0] if cols else None)
        print(f"instructions: {len(rows)}, samples: {total[all_col]:.0f}" if all_col else "no sampled columns")
        for c, v in total.most_common(12):
            if v and c != all_col:
                print(f"  {c}: {v:.0f} ({v / max(total[all_col], 1):.0%})")
        if all_col is None:
            continue
        src = next((c for c in rows[0] if c.lower() in ("source", "sass")), None)
        for r in sorted(rows, key=lambda r: -_num(r.get(all_col)))[:top]:
            reasons = sorted(((c, _num(r.get(c))) for c in cols if c.startswith("stall_")),
                             key=lambda cv: -cv[1])[:3]
            why = ", ".join(f"{c.replace('stall_', '')} {v:.0f}" for c, v in reasons if v)
            print(f"  {_num(r.get(all_col)):6.0f}  {r.get('Address', '')[-6:]}  {(r.get(src) or '')[:70]:70s}  {why}")


def sass_lines(path: str) -> list[str]:
    """`nvdisasm -g` output of one kernel: the source location ("file.py:line") of each instruction, in order."""
    where, out = "?", []
    for line in open(path):
        m = re.search(r'//## File "([^"]+)", line (\d+)', line)
        if m:
            where = f"{os.path.basename(m.group(1))}:{m.group(2)}"
        elif re.search(r"/\*[0-9a-f]{4,}\*/", line):
            out.append(where)
    return out


def by_line(path: str, kernel: str, sass: str, top: int) -> None:
    """Stall samples of `kernel` (the source page's CSV) summed per Python line, instructions matched to
    sass_lines(sass) by position (the same cubin: Triton's cache on the machine ncu ran on)."""
    rows = next((rows for name, rows in source_tables(path) if name == kernel), [])
    if not rows:
        sys.exit(f"no table for {kernel} in {path}")
    where = sass_lines(sass)
    if len(where) != len(rows):
        print(f"warning: {len(rows)} sampled instructions, {len(where)} in {sass}")
    cols = [c for c in rows[0] if c.startswith("stall_") and "Not Issued" not in c]
    per = collections.defaultdict(collections.Counter)
    for loc, r in zip(where, rows):
        per[loc]["all"] += _num(r.get("Warp Stall Sampling (All Samples)"))
        for c in cols:
            per[loc][c[6:]] += _num(r.get(c))
    total = sum(c["all"] for c in per.values())
    print(f"## {kernel}: {total:.0f} samples, by source line")
    for loc, c in sorted(per.items(), key=lambda kv: -kv[1]["all"])[:top]:
        why = ", ".join(f"{k} {v:.0f}" for k, v in c.most_common(4) if k != "all" and v)
        print(f"  {c['all']:6.0f} {c['all'] / total:5.1%}  {loc:22s} {why}")


def _num(x) -> float:
    try:
        return float(str(x).replace(",", ""))
    except (TypeError, ValueError):
        return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impl", choices=["ours", "fla"], default="ours")
    ap.add_argument("--shape", type=int, default=0, help="index into bench_kernels.SHAPES")
    ap.add_argument("--gate", choices=["gdn", "kda"], default="kda")
    ap.add_argument("--fwd-only", action="store_true")
    ap.add_argument("--summarize", metavar="CSV", help="read an ncu source page instead of running")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--sass", help="with --summarize and --kernel: `nvdisasm -g` of that kernel's cubin, to sum its "
                                   "samples per source line")
    ap.add_argument("--kernel", help="the kernel (its first table in the CSV) for --sass")
    args = ap.parse_args()
    if args.summarize and args.sass:
        by_line(args.summarize, args.kernel, args.sass, args.top)
    elif args.summarize:
        summarize(args.summarize, args.top)
    else:
        run(args.impl, args.shape, args.gate, not args.fwd_only)


if __name__ == "__main__":
    main()
