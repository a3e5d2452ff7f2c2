"""What the compiler makes of our forward kernels on the H100, without a GPU: each kernel is compiled
for sm_90 (triton.compile with GPUTarget("cuda", 90, 32)) and its PTX assembled again by the ptxas
that ships with Triton, whose -v report gives registers per thread, spilled bytes and shared memory.
The PTX also says which matrix instructions were used (wgmma: Hopper's warpgroup products; mma: the
older warp-level ones). Run with the GPU stack's Triton (3.6 here):

    PYTHONPATH=. python benchmarks/kernel_resources.py [--dims 64,128,256]

Spills (local-memory traffic) and shared memory over 227 KB are what this can catch before device
time is spent; it says nothing about speed.
"""
from __future__ import annotations

import argparse
import inspect
import itertools
import os
import re
import subprocess
import tempfile

import torch
import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from hybridize.kernels import chunk_bwd, chunk_output, chunk_prep, chunk_prep_blocks, chunk_prep_split, chunk_scan

TARGET = GPUTarget("cuda", 90, 32)
# HYBRIDIZE_PTXAS: another ptxas, e.g. Triton 3.9's ptxas-blackwell (CUDA 13), whose PTX its ptxas (12.9) rejects
PTXAS = os.environ.get("HYBRIDIZE_PTXAS",
                       os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas"))


def compile_report(fn, sig: dict, consts: dict, num_warps: int, num_stages: int = 1) -> dict:
    # constexprs the row leaves out take their defaults in the kernel's signature
    defaults = {n: p.default for n, p in inspect.signature(fn.fn).parameters.items() if p.default is not p.empty}
    consts = {**{n: d for n, d in defaults.items() if n not in sig}, **consts}
    signature = {name: ("constexpr" if name in consts else sig[name]) for name in fn.arg_names}
    # Pointers 16-byte aligned, as Triton specializes them at launch for torch's allocations. Without this (until
    # round 22) no 16-bit tile could load asynchronously (cp.async moves 4 bytes at least), so the software pipeline
    # left every bf16 load in registers and the register and shared-memory figures were not the launched kernel's.
    attrs = {(i,): [["tt.divisibility", 16]] for i, name in enumerate(fn.arg_names)
             if name not in consts and sig[name].startswith("*")}
    src = ASTSource(fn, signature, constexprs=consts, attrs=attrs)
    kernel = triton.compile(src, target=TARGET, options={"num_warps": num_warps, "num_stages": num_stages})
    ptx = kernel.asm["ptx"]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.ptx")
        with open(path, "w") as fh:
            fh.write(ptx)
        out = subprocess.run([PTXAS, "-v", "--gpu-name", "sm_90a", path, "-o", os.path.join(tmp, "k.o")],
                             capture_output=True, text=True).stderr
    regs = re.search(r"Used (\d+) registers", out)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", out)
    return {"regs": int(regs.group(1)) if regs else None,
            "spill_st": int(spill.group(1)) if spill else None, "spill_ld": int(spill.group(2)) if spill else None,
            "shared_kb": kernel.metadata.shared / 1024,
            "wgmma": len(re.findall(r"wgmma\.mma_async", ptx)), "mma": len(re.findall(r"\bmma\.sync", ptx))}


def ptrs(names, dtype):
    return {n: dtype for n in names}


def prep_sig(inter: str) -> dict:
    s = ptrs(["q", "k", "v", "beta"], "*bf16")
    s.update(ptrs(["g", "G_out", "T_out"], "*fp32"))
    s.update(ptrs(["w_out", "u_out", "Aqk_out", "kg_out"], f"*{inter}"))
    s.update(chunks="*i32", scale="fp32", H="i32")
    return s


def rows(dims):
    out = []
    for D in dims:
        for channel in (False, True):
            gate = "KDA" if channel else "GDN"
            base = dict(K=D, V=D, C=64, CHANNEL=channel, PREC="tf32", PAIR_PREC="tf32", DT=tl.bfloat16)
            cfg = chunk_prep.PREP_CONFIG
            bk = min(cfg["blocks_BK"]["channel" if channel else "scalar"], D)
            consts = dict(base, BK=bk, BV=min(cfg["blocks_BV"], D), BC=16, STORE_T=False, STORE_KG=channel,
                          UNROLL=chunk_prep.blocks_unroll(D, bk))
            out.append((f"prep v4 blocks {gate} D{D} BK{bk}", chunk_prep_blocks._prep_blocks_kernel, prep_sig("fp32"),
                        consts, cfg["blocks_warps"], 1))
            sig = prep_sig("fp32")
            sig.pop("kg_out")
            for inverse in ("doubling", "blocked"):
                consts = dict(base, BK=min(64, D), BV=min(64, D), SB=16, BLOCKED=inverse == "blocked",
                              DOUBLING=inverse == "doubling", STORE_T=False)
                out.append((f"prep v3 full {gate} D{D} {inverse}", chunk_prep._prep_kernel, sig, consts,
                            4 if D <= 64 else 8, 1))
            for inter, kg in itertools.product(("fp32", "mixed", "bf16"), (False, True) if channel else (False,)):
                bv = 16 if D <= 128 else 32
                lo = "fp32" if inter == "fp32" else "bf16"  # w's dtype
                hi = "bf16" if inter == "bf16" else "fp32"  # u's, vn's and Aqk's
                sig = ptrs(["q", "k", "o"], "*bf16")
                if kg:  # k arrives as kg, stored like u
                    sig["k"] = f"*{hi}"
                sig.update(ptrs(["w"], f"*{lo}"))
                sig.update(ptrs(["u", "Aqk", "vn_out"], f"*{hi}"))
                sig.update(ptrs(["G", "h0", "ht", "kg_lo", "kG"], "*fp32"))
                sig.update(beta="*bf16", h_out="*bf16", cu="*i32", chunk_offsets="*i32", scale="fp32", H="i32")
                consts = dict(K=D, V=D, BK=D, BV=bv, C=64, CHANNEL=channel, KG=kg, HAS_H0=False,
                              STORE_FINAL=False, STORE_H=True, STORE_VN=True, FUSE_O=False, PREC="tf32",
                              DT=tl.float32 if hi == "fp32" else tl.bfloat16,
                              WDT=tl.float32 if lo == "fp32" else tl.bfloat16,
                              KG_REGS=chunk_scan.SCAN_CONFIG["kg_via_registers"], SPLIT=0, KDT=tl.bfloat16,
                              SOLVE=False, PREFETCH=chunk_scan.prefetch_level(channel))
                opts = chunk_scan.launch_options(D, bv, None, channel)
                out.append((f"scan {gate} D{D} BV{bv} {inter}{' kg' if kg else ''}", chunk_scan._scan_kernel, sig, consts,
                            opts["num_warps"], opts["num_stages"]))
            # the no-gradient forward's launch: scalar gates form Aqk here (QK), vn in fp16 with the fallback (VN16)
            sig = ptrs(["q", "k", "h", "o", "vals", "beta"], "*bf16")
            sig.update(ptrs(["G", "Aqk", "row_scale", "keys", "T_in"], "*fp32"))
            sig.update(vn="*fp16", chunks="*i32", scale="fp32", H="i32")
            bk = min(chunk_output.OUTPUT_CONFIG["BK"], D)
            consts = dict(K=D, V=D, BK=bk, BV=min(chunk_output.OUTPUT_CONFIG["BV"], D), C=64, CHANNEL=channel,
                          PREC="tf32", DT=tl.float32, HDT=tl.bfloat16, ROW_SCALE=False, QK=not channel,
                          KDT=tl.bfloat16, STAGES=chunk_output.OUTPUT_CONFIG["num_stages"] if D > bk else 1,
                          VN16=True, HALF=tl.float16, SOLVE=1, QG=channel and D <= 64)
            if channel:
                sig["keys"] = "*bf16"
            for call in (False, True):  # the fallback inlined or called (OUTPUT_CONFIG["call_max_dim"])
                out.append((f"output {gate} D{D} vn16{' call' if call else ''}", chunk_output._output_kernel, sig,
                            dict(consts, CALL=call), chunk_output.OUTPUT_CONFIG["num_warps"], 1))
        sig = dict(x="*bf16", G="*fp32", out="*fp32", out_start="*fp32", out_lo="*fp32", mult="fp32",
                   chunks="*i32", H="i32", keys="*bf16", out_keys="*bf16")
        out.append((f"kg KDA D{D}", chunk_prep._decayed_kernel, sig,
                    dict(K=D, BK=min(64, D), C=64, FROM_START=False, BOTH=False, KEYS=False), 4, 1))
        # the dh scan's operands (chunk_bwd.dh_operands): scale q e^G as a bf16 pair and kg in bf16, one pass
        out.append((f"q e^G pair + kg16 KDA D{D}", chunk_prep._decayed_kernel,
                    dict(sig, out="*bf16", out_start="*bf16", out_lo="*bf16"),
                    dict(K=D, BK=min(64, D), C=64, FROM_START=True, BOTH=False, SPLIT=True, KEYS=True), 4, 1))
        out.extend(split_rows(D))
        out.extend(bwd_rows(D))
    return out


def bwd_rows(D: int) -> list:
    """The backward's kernels for KDA at fp32 intermediates: the dh scan (DECAYED: fed q e^G and kg;
    LOCAL: adding to Aqk^T do formed before it) and stage 2 (SHARED_FACTORS; SPLIT: its value side in
    _bwd_values_kernel)."""
    out = []
    bv = 16 if D <= 128 else 32
    for dec, local, mixed in ((False, False, False), (True, False, False), (True, True, False), (True, True, True)):
        sig = ptrs(["q", "q_lo", "k", "do"], "*bf16")
        sig.update(ptrs(["w", "Aqk", "dh_out", "dvn_out", "G", "dht", "dh0", "dvl"], "*fp32"))
        if mixed:  # intermediates "mixed": w in bf16, (k e^{G_last - G}) dh' a bf16 product
            sig["w"] = "*bf16"
        sig.update(cu="*i32", chunk_offsets="*i32", scale="fp32", H="i32")
        consts = dict(K=D, V=D, BK=D, BV=bv, C=64, CHANNEL=True, DECAYED=dec, LOCAL=local, HAS_DHT=False,
                      STORE_DH0=False, PREC="tf32", DT=tl.float32, WDT=tl.bfloat16 if mixed else tl.float32,
                      SPLIT=0, KDT=tl.bfloat16)
        opts = chunk_scan.launch_options(D, bv, None, True)
        stages = 2 if local and D <= 128 else 1  # as chunk_bwd.launch_dh
        out.append((f"bwd dh KDA D{D} BV{bv}{' decayed' if dec else ''}{' local dvn' if local else ''}"
                    f"{' mixed' if mixed else ''}", chunk_bwd._dh_kernel, sig, consts, opts["num_warps"], stages))
        if mixed and D <= 128:  # BWD_CONFIG["dh_split_channel"]: every product as bf16 pairs
            out.append((f"bwd dh KDA D{D} BV{bv} decayed local dvn mixed split", chunk_bwd._dh_kernel, sig,
                        dict(consts, SPLIT=2), opts["num_warps"], stages))
            # BWD_CONFIG["dh_qsplit"] (SPLIT 3): q e^G as a bf16 pair, fp32 kg, bf16 w; at 2 stages (launch_dh's floor
            # for the split kernels) for every value block, 64 included (64 documents x heads and more)
            sig3 = dict(sig, k="*fp32", w="*bf16")
            out.append((f"bwd dh KDA D{D} BV16 decayed local dvn mixed, tf32 (shipped until round 22)",
                        chunk_bwd._dh_kernel, dict(sig3, q="*fp32"), dict(consts, BV=16, WDT=tl.float32),
                        opts["num_warps"], 2))
            for bv3 in (16, 32, 64):  # at the shipped prefetch level (chunk_bwd.dh_prefetch_level)
                pre = chunk_bwd.dh_prefetch_level(bv3, True)
                out.append((f"bwd dh KDA D{D} BV{bv3} decayed local dvn qsplit prefetch {pre} (kg fp32)",
                            chunk_bwd._dh_kernel, sig3, dict(consts, BV=bv3, WDT=tl.float32, SPLIT=3, PREFETCH=pre),
                            opts["num_warps"], 2))
                # BWD_CONFIG["dh_kg16"]: kg in bf16, and a third stage up to 32 value columns (launch_dh); kg dh as a
                # bf16 pair of dh from head dim 128 (dh_kg_pair)
                pair = chunk_bwd.dh_kg_pair(torch.bfloat16, D, bv3)
                out.append((f"bwd dh KDA D{D} BV{bv3} decayed local dvn qsplit prefetch {pre} kg16"
                            f"{' pair' if pair else ''}", chunk_bwd._dh_kernel, dict(sig3, k="*bf16"),
                            dict(consts, BV=bv3, WDT=tl.float32, SPLIT=3, PREFETCH=pre, KG_PAIR=pair),
                            opts["num_warps"], chunk_bwd.BWD_CONFIG["dh_kg16_stages"]
                            if bv3 <= chunk_bwd.BWD_CONFIG["dh_kg16_max_bv"] else 2))
    cfg = chunk_bwd.BWD_CONFIG
    for shared, split in ((False, False), (True, False), (True, True)):
        sig = ptrs(["q", "k", "v", "beta", "do", "dq", "dk", "dv"], "*bf16")
        sig.update(ptrs(["G", "T", "h", "dh", "vn", "dvn", "dg_part", "dbeta_part", "dvb_buf", "dA_buf", "dM_buf"],
                        "*fp32"))
        sig.update(chunks="*i32", scale="fp32", H="i32", L="i32")
        kind = "split" if split else "fused"
        consts = dict(K=D, V=D, BK=min(cfg["BK"][kind]["kda"], D), BV=min(cfg["BV"][kind]["kda"], D), C=64, SB=16,
                      CHANNEL=True, SHARED_FACTORS=shared, SPLIT=split, PREC="tf32", DT=tl.float32)
        out.append((f"bwd chunks KDA D{D}{' shared factors' if shared else ''}{' split' if split else ''}",
                    chunk_bwd._bwd_kernel, sig, consts, cfg["num_warps"], 1))
    sig = ptrs(["v", "beta", "do", "dv"], "*bf16")
    sig.update(ptrs(["T", "vn", "dvn", "dvb_out", "dA_out", "dM_out", "dbeta_v"], "*fp32"))
    sig.update(chunks="*i32", H="i32")
    out.append((f"bwd values D{D}", chunk_bwd._bwd_values_kernel, sig,
                dict(V=D, BV=min(cfg["values_BV"], D), C=64, PREC="tf32", DT=tl.float32), cfg["values_warps"], 1))
    return out


def split_rows(D: int) -> list:
    """The v5 prep's three kernels (chunk_prep_split.py) at their configured warps."""
    cfg = chunk_prep_split.SPLIT_CONFIG
    out = []
    for channel in (False, True):
        gate = "KDA" if channel else "GDN"
        sig = ptrs(["q", "k", "beta"], "*bf16")
        sig.update(ptrs(["g", "G_out", "A_out", "Aqk_out", "kg_out", "kg_lo_out", "kG_out", "qG_out"], "*fp32"))
        sig.update(chunks="*i32", scale="fp32", H="i32")
        for invert, doubling in ((False, False), (True, True)) if channel else ((False, False), (True, False), (True, True)):
            consts = dict(K=D, BK=min(cfg["pairs_BK"], D), C=64, SB=16, CHANNEL=channel, INVERT=invert,
                          DOUBLING=doubling, PREC="tf32", PAIR_PREC="tf32", DT=tl.bfloat16)
            what = f" + inverse {'doubling' if doubling else 'blocked'}" if invert else ""
            for nw in (4, 8) if invert else (cfg["pairs_warps"],):
                out.append((f"split pairs{what} {gate} D{D}", chunk_prep_split._pairs_kernel, sig, consts, nw, 1))
        sig = ptrs(["k", "v", "beta"], "*bf16")
        sig.update(ptrs(["G", "T_buf", "w_out", "u_out", "kg_out"], "*fp32"))
        sig.update(chunks="*i32", H="i32")
        for together in (False, True):
            consts = dict(K=D, V=D, BK=min(cfg["solve_BK"], D), BV=min(cfg["solve_BK"], D), C=64, CHANNEL=channel,
                          STORE_KG=channel, ALL=together, PREC="tf32", DT=tl.bfloat16)
            out.append((f"split solve {gate} D{D}{' all' if together else ''}", chunk_prep_split._solve_kernel, sig,
                        consts, cfg["solve_warps"], 1))
    for method in ("blocked", "doubling", "blocks16"):
        sig = dict(T_buf="*fp32", chunks="*i32", H="i32")
        out.append((f"split inverse {method} D{D}", chunk_prep_split._inverse_kernel, sig,
                    dict(C=64, SB=16, BLOCKS16=method == "blocks16", DOUBLING=method == "doubling", PREC="tf32"),
                    cfg["inverse_warps"], 1))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", default="64,128,256")
    ap.add_argument("--only", default="", help="only the kernels whose name contains this")
    args = ap.parse_args()
    print(f"triton {triton.__version__}, target sm_90; ptxas {PTXAS}")
    print("| kernel | warps | stages | registers | spill st/ld B | shared KB | wgmma | mma.sync |")
    print("|---|---|---|---|---|---|---|---|")
    for name, fn, sig, consts, nw, ns in rows([int(d) for d in args.dims.split(",")]):
        if args.only not in name:
            continue
        try:
            r = compile_report(fn, sig, consts, nw, ns)
            print(f"| {name} | {nw} | {ns} | {r['regs']} | {r['spill_st']}/{r['spill_ld']} | {r['shared_kb']:.0f} | "
                  f"{r['wgmma']} | {r['mma']} |", flush=True)
        except Exception as err:  # noqa: BLE001 - a compile failure is itself the finding
            print(f"| {name} | {nw} | {ns} | failed: {type(err).__name__}: {str(err)[:120]} |", flush=True)


if __name__ == "__main__":
    main()
