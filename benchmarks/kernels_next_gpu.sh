#!/usr/bin/env bash
# The GPU runs of issue 3, one PART per device call (each under 600 s). From the repo root on the
# device, with the fla wheel carried in .dev/fla; logs go to $OUT. Rounds 8 and 9 ran these (the
# call each PART was is in benchmarks/RESULTS.md, "Kernels, round 8" and "round 9"):
#   PART=1   the forward keeping everything the backward reads (HYBRIDIZE_GDR_RECOMPUTE=none) beside
#            the default "solve": correctness, fwd+bwd, kernel profile
#   PART=3   the backward's stage 2 split in two kernels (HYBRIDIZE_GDR_BWD=split) beside the fused one
#   PART=4   the inverse by block doubling and the pairs kernel inverting A: correctness, the v5
#            kernels' sweep, the forward's stages without and with them
#   PART=5   correctness of the GDN cases; every kernel beside fla's (kernel_profile.py), the same with
#            bf16 intermediates + recompute none; wall times with recompute none at 8K and 32K
#   PART=6   every kernel beside fla's with bf16 intermediates + recompute none; the defaults' kernels
#            and wall times
#   PART=7   fla's KDA backward alone beside ours (it autotunes for minutes on a fresh machine)
#   PART=8   the solve in one program per chunk: correctness, the v5 sweep, the output kernel's sweep
#   PART=9   the final defaults' wall times and kernels, and bf16 intermediates + recompute none
#   PART=10  the per-channel pairs kernel inverting A: KDA correctness, stages without and with it, sweep
# Round 10:
#   PART=11  the "mixed" intermediates (HYBRIDIZE_GDR_INTER=mixed: w in bf16 with bf16 w h and q h
#            products): correctness counted under the bounds, fwd+bwd beside fp32 at shapes 0 and 4,
#            its kernel profile
#   PART=12  where "mixed" lost time: GDN at head dim 64 kernel by kernel (fp32, mixed, mixed with a tf32
#            dh product), KDA with a tf32 w h in the scan; the KDA scan's sweep with either w h
#   PART=13  "mixed" for GDN: correctness with a tf32 dh product, the dh scan with either, the forward's
#            kernels beside fla's, wall times at 32K against fp32
#   PART=14  the round-10 defaults ("mixed" for GDN): correctness of every case, wall times at shapes
#            0, 2 and 4, kernel sums
#   PART=15  the KDA scan with kg passed through registers (HYBRIDIZE_GDR_KG_REGS=1), fp32 and mixed
#   PART=16  "mixed" for KDA too, with kg through registers: correctness, fwd+bwd kernels
#   PART=17  the final round-10 defaults: correctness, wall times at shapes 0, 2, 4, forward kernels
#            beside fla's
#   PART=18  the backward's stage-2 kernels with their loaded tiles through registers (HYBRIDIZE_GDR_BWD_REGS=1)
#   PART=19  the committed round-10 code (kg through registers for per-channel gates only): as PART=14
#   PART=20  the backward's stage-2 launch (BK, BV, warps) swept at shape 0, both gate kinds
#   PART=21  the fused backward at BV 32 for head dim >= 128: correctness, wall times, the sweep at shape 4
#   PART=22  the final round-10 code (stage-2 launch per design and gate kind): as PART=14
#   PART=23  the scan's and the dh scan's launch swept again with the "mixed" intermediates (shape 0)
#   PART=24  correctness and wall times at shapes 0 and 2 (and bf16 at 0): written for the KDA scan at 3
#            stages (SCAN_CONFIG["channel_stages"] = 3, the dh scan kept at 2 for 16-bit per-channel
#            tiles); not run in round 10 (no device time left), so that change is not in the code
#   PART=25  round 11: the fused L2 norm by exact power-of-two scaling and the KDA scan at 3 stages:
#            correctness of every case (and the 16-bit ones with fp32 intermediates), wall times at
#            shapes 0 and 2, the KDA scan at 2 stages beside (shape 0), and shape 0 with the fused norm
#   PART=26  the final round-11 code: correctness of every case, wall times at all five shapes with
#            decode, fla's forward kernels beside ours at shapes 0 and 3 (same run)
#   PART=27  fla's KDA fwd+bwd kernels beside ours (shape 0; its autotuner takes minutes), and both
#            forwards with the fused L2 norm (HYBRIDIZE_BENCH_L2=1)
#   PART=28  an experiment since reverted (RESULTS.md, round 11, call 7): the fused norm with a values'
#            beta instead of v' (u = T (beta rho v)): correctness of every case, wall times at shapes
#            0 and 4, and both gate kinds' kernels with the fused norm (shape 0)
#   PART=29  fla beside ours at the other shapes, sums of kernels: shape 4 (head dim 64) forward and
#            forward+backward, shapes 1-3 forward
#   PART=30  head dim 64, KDA, "mixed": the scan, the split prep's kernels and the output kernel swept
#            (shape 4; never swept there since the 3-stage scan and "mixed")
#   PART=31  the scan's launch per shape (2 stages for 32-column blocks at head dim 128, whole 64-column
#            blocks at head dim 64): correctness, wall times at shapes 0, 1, 3, 4, and the forward's
#            kernels beside fla's at shape 4
#   PART=32  the scan's value blocks of 32 at head dim 128 with 64 documents x heads: correctness of the
#            16-bit cases with the scan's block forced to 32 and 64, wall times at shapes 1 and 3
# Round 12:
#   PART=33  the GDN scan's state update as two bf16 products (k^T hi + k^T lo; HYBRIDIZE_GDR_SPLIT=1):
#            correctness of every case, the GDN kernels with and without it (shapes 0 and 4), fla beside
#   PART=34  the dh scan's three products split the same way (GDN): correctness of every case, GDN fwd+bwd
#            kernels with and without the split (shapes 0 and 4)
#   PART=35  the KDA scan's state update as three bf16 products of split kg and vn
#            (HYBRIDIZE_GDR_SPLIT_KG=1): KDA correctness, KDA kernels with and without (shapes 0 and 4)
#   PART=36  the dh scan's split faulted on the H100 (PART=34): the GDN bf16 cases under other launches
#            and with the split products summed instead of chained (HYBRIDIZE_GDR_DH_STAGES / _WARPS / _CHAIN;
#            run at commit cffe485; the _CHAIN switch was removed after it)
#   PART=37  the dh split at 2 stages: correctness of every case, GDN fwd+bwd kernels with and without
#            the split (shapes 0 and 4)
#   PART=38  the prep's solve with T diag(beta e^G) and T diag(beta) split (k, v as loaded): correctness of
#            every case, the forward's kernels beside fla's and fwd+bwd (shape 0), all without the splits
#            (an experiment since reverted: 0.088 -> 0.163 ms; rerun now, it times the defaults)
#   PART=39  the output kernel's Aqk vn as three split products (HYBRIDIZE_GDR_SPLIT_O=1) and the KDA dh
#            scan's two state-side products split (HYBRIDIZE_GDR_SPLIT_KDA_DH=1): correctness of every case
#            with both, fwd+bwd kernels of both gate kinds with and without them (shapes 0 and 4); both
#            reverted (no gain; the KDA dh split gave inf gradients), their switches are gone
#   PART=40  the backward with h in bf16 (HYBRIDIZE_GDR_BWD_H16=1: the recompute scan stores it so; do h^T
#            one bf16 product, dvb h^T two): correctness of every case, fwd+bwd kernels with and without
#            (reverted: the GDN backward kernel went 0.924 -> 1.114 ms; the switch is gone)
#   PART=41  the final round-12 code: wall times at all five shapes with SDPA and decode, and the
#            forward's kernels beside fla's at shapes 0 and 4 (same run)
#   PART=42  the forward's kernels beside fla's at shapes 1, 2 and 3
#   PART=43  after the split: the scan's launch swept again (GDN, "mixed", shapes 4 and 0), and GDN at head
#            dim 64 with the split prep (HYBRIDIZE_GDR_PREP=split) beside the default (v3) prep
#   PART=44  the final round-12 code: correctness of every case, and of the 16-bit cases with fp32 and
#            with bf16 ("input") intermediates (the split scan runs under fp32 intermediates too)
# Round 13:
#   PART=45  the no-grad GDN forward with Aqk formed by the output kernel (HYBRIDIZE_GDR_QK=1, default) beside
#            the stored Aqk (=0) and the v3 prep at head dim 128 (HYBRIDIZE_GDR_PREP=full): forward kernels
#            (shapes 0, 1, 4); the pairs kernel without Aqk and the output kernel's launches swept (shape 0)
#   PART=46  correctness of every case (with the no-grad forward's o and ht as two more columns), and of the GDN
#            cases with the solve in the scan at every size (HYBRIDIZE_GDR_SCAN_SOLVE_MIN=0); the output
#            kernel swept at BK 64 (shapes 0 and 1, GDN and KDA)
#   PART=47  the solve folded into the scan (HYBRIDIZE_GDR_SCAN_SOLVE=1, default) beside the solve kernel (=0):
#            GDN correctness, forward kernels at every shape, fwd+bwd at shape 0
#   PART=48  the scan swept with the solve folded in (shapes 0, 1); the output kernel swept (shapes 1, 3: GDN, KDA);
#            forward kernels with and without the solve in the scan at 32 documents x heads (where to switch)
#   PART=49  the round-13 defaults (output BV 128): correctness of every case, and of the GDN cases with the solve
#            in the scan at every size; then PART=41 and 42 give the table
#   PART=50  vn handed to the output kernel as scaled fp16 (HYBRIDIZE_GDR_VN16=1, then the default) beside fp32 (=0):
#            correctness of every case (and GDN with the solve in the scan at every size), forward kernels
#            at every shape, both gate kinds
#            (reverted: slower at 4 of 5 shapes; the switch is gone)
#   PART=51  the output computed in the scan (fuse_output, with Aqk from q and k there; reverted: illegal memory
#            accesses in the compiled scan and slower where it ran; the switch is gone): correctness of every case
#            and of the GDN cases with the solve and the output in the scan at every size; GDN forward kernels
#            at every shape (and 32 documents x heads) fused everywhere (HYBRIDIZE_GDR_FUSE_O_MIN=0) and nowhere;
#            fwd+bwd at shapes 1 and 3 with the default and fused nowhere
#   PART=52  the solve in the scan for KDA too (k e^G and kg from one pass of _decayed_kernel): correctness of
#            every case with the solve in the scan at every size; KDA forward kernels with it everywhere
#            (HYBRIDIZE_GDR_SCAN_SOLVE_MIN=0) and without (HYBRIDIZE_GDR_SCAN_SOLVE_KDA=0), shapes 0-4 and 32
#            documents x heads; KDA fwd+bwd at shapes 1 and 3 both ways
#   PART=53  the KDA scan swept with and without the solve folded in (shape 1, "mixed")
#   PART=54  the final round-13 code (the solve in the scan for KDA at every size, 64-column blocks with 3 stages
#            there at 64 documents x heads): correctness of every case, and with the solve in the scan at every
#            size and the scan's block forced to 64; wall times at all five shapes; fla beside ours at shapes 0-3
# Round 14 (PARTs 55-58 ran at commits f12c2c9, 0dcd3ed, 150240b, 57db1ee; the options they compared were
# removed after, see RESULTS.md "Kernels, round 14"):
#   PART=55  the output kernel's key loop pipelined and vn / Aqk loaded after it: correctness with both on, the
#            output kernel swept over them (shapes 0, 1, both gates)
#   PART=56  vn in fp16 for the output kernel, out-of-range elements kept by the scan in an fp32 buffer:
#            correctness, the output kernel swept with and without it
#   PART=57  the fp16 vn's range guards (reductions in the output kernel, a flag from the scan, Aqk's rows
#            scaled): correctness, the output sweep over them, the forward's kernels with vn16 on and off
#   PART=58  the scan's fp16 vn stores with and without the fp32 side buffer and flags, timed alone (shapes 0, 1,
#            4); correctness and the forward's kernels with them
#   PART=59  the round-14 output kernel (fp16 vn, overflowed chunks computed again by a second launch):
#            correctness of every case (three new ones past fp16's range) and with the solve in the scan at
#            every size, the output kernel swept (shapes 0, 1), the forward's kernels (shapes 0-4)
#   PART=60  the final round-14 code (fp16 vn's overflow found by row sums, the key loop 3 stages deep and not
#            pipelined for a single key block): correctness of every case, the forward's kernels beside fla's
#            (shapes 0-4, one process)
#   PART=61  the final round-14 code: correctness with the solve in the scan at every size, the issue's table
#            (all five shapes, SDPA, decode)
#   PART=62  (run at commit 3524172, reverted after: slower, and inf outputs at head dim 64 on the H100) u formed in
#            the scan below the full fold's threshold (GDN), the solve kernel writing w alone: correctness of
#            every case, GDN kernels with it and without
#   PART=63  (run at commit 2e8a886; the second launch was removed after) the fp16 vn's fallback inline
#            (HYBRIDIZE_GDR_VN16_FALLBACK=inline, one launch) beside a second launch
#            (=launch; PARTs 59-61): correctness of every case, forward kernels (shapes 0-4) and wall times
#            (shapes 0, 4: host-bound) with each
#   PART=64  the final round-14 code: as PART=60 (the same steps; PART=60 ran the second-launch fallback)
#   PART=65  the final round-14 code: as PART=61
# Round 15 (PARTs 66-68, 70 and 71 ran at working states of the round's experiments, committed as 1df7e86 (fp16
# products) and 9a93a4d (u as a Scaled), both reverted after; their scripts, solve_probe.py and inverse_precision.py,
# are in those commits. See RESULTS.md "Kernels, round 15"):
#   PART=66  the solve kernel with fp16 products and fp16 u, timed alone (solve_probe.py), and the forward's kernels
#            with and without (GDN; KDA with its solve kernel in place of the solve in the scan)
#   PART=67  the pairs kernel's inverse in fp16 products, T stored in fp16, the solve reading fp16 T (timings)
#   PART=68  T's error by the inverse's products on the GPU, both kernels alone, correctness of every case and of the
#            GDN cases with the solve in the scan at every size (calls 3, 4 and 7)
#   PART=70  where the fp16 routes' guards cost: no guard, the check alone, the tf32 route inline, a flag and a fix
#            kernel (call 5 failed to compile one variant; call 6)
#   PART=71  u as a Scaled in the forward's solve kernel: correctness of every case and of the GDN cases with the
#            solve in the scan at every size, the solve kernel alone (solve_probe.py, shapes 0 and 2)
#   PART=69  the forward's kernels beside fla's (shapes 0-4, one process), the issue's table (run at 9a93a4d)
#   PART=72  head dim 64 (shape 4): the forward's and fwd+bwd's kernels with the output kernel's vn in fp16 (the
#            default) and in fp32 (HYBRIDIZE_GDR_VN16=0), alternating, twice each
# Round 16 (see RESULTS.md "Kernels, round 16"). PARTs 74, 77 and 78 ran working states that were not committed as
# such: 74 an option (HYBRIDIZE_GDR_PAIRS_LOADS) between round 14's pairs kernel (41a9ba3) and a4ae389's (which loads
# always; HYBRIDIZE_GDR_PAIRS_DECAYED=0 there reproduces "loaded"); 77 HYBRIDIZE_GDR_KG16, which became
# HYBRIDIZE_GDR_KG_FORMAT=bf16 in 591989a; 78 591989a's code with 3 stages for the pair's 64-column blocks (the
# OutOfResources it found). 75 ran a4ae389, 79-81 591989a:
#   PART=73  (ran at commit 3bd9e6a, reverted after; segments.py and segments_bench.py are in that commit) the
#            forward in segments on two streams: wall times against the whole forward and fla at shapes 0 and 2,
#            both gate kinds, segments of 8-64 chunks, the scan's value block auto or 32
#   PART=74  the per-channel pairs kernel with block s's keys and gates loaded back (HYBRIDIZE_GDR_PAIRS_LOADS=1)
#            instead of picked out of the register tiles: correctness of every case with it, the pairs kernel
#            alone both ways at shapes 0 and 1 (4 and 8 warps), and the KDA forward's kernels both ways
#   PART=75  the per-channel pairs kernel writing the scan's kg and k e^G itself (HYBRIDIZE_GDR_PAIRS_DECAYED=1, in
#            place of _decayed_kernel) with block s's keys and gates always loaded back: correctness of every case,
#            the forward's kernels with it on and off (shapes 0-4), then beside fla's (one process)
#   PART=77  (HYBRIDIZE_GDR_KG16 became HYBRIDIZE_GDR_KG_FORMAT=bf16 after) kg in bf16 for the forward scan that does the solve (HYBRIDIZE_GDR_KG16=1: the state update as two bf16
#            products, chunk_scan's SPLIT 3): correctness of every case with it, the forward's kernels with it off
#            and on (shapes 0-4), the KDA scan's launch swept with it at shapes 0 and 2
#   PART=78  kg for that scan as a bf16 hi + lo pair written by the pairs kernel (HYBRIDIZE_GDR_KG_FORMAT=split, three
#            bf16 products, SPLIT 4; the default), beside fp32 and bf16: correctness of every case with the default,
#            the forward's kernels with each format (shapes 0-4)
#   PART=79  PART=78's split kg at 64 documents x heads, where 64-column blocks with 3 stages overflowed shared memory:
#            64-column blocks with 2 stages or 32-column blocks with 3 (HYBRIDIZE_GDR_SPLIT_KG_LAUNCH=64x2 / 32x3), the
#            forward's kernels at shapes 1 and 3 with each; correctness of every case with the scan's block forced to 64
#   PART=80  the final round-16 code: correctness of every case, the forward's kernels beside fla's at shapes 0-2 (one
#            process), and KDA fwd+bwd kernels at shape 0
#   PART=81  wall times at the host-bound shapes 0 and 4 (ours only), round 14's code (hybridize/ of 41a9ba3 unpacked
#            into .r14 and put first on PYTHONPATH) and this round's, alternating, in one call (CODES sets the order)
#   PART=82  after the review (kg dtype helper, the scan's launch rule restated, kg_lo renamed): correctness of every
#            case and the forward's kernels at shapes 1 and 3 (the pair's 64-column, 2-stage launch)
#   PART=76  the final round-16 code: the issue's table (ours, SDPA, decode) and fla's forward kernels beside ours at
#            shapes 3 and 4
# Round 17. PARTs 83, 86 and 87 measured the prep's last kernel and the scan side by side (overlap.py, commits
# 957f377 and fdf0edd, reverted; benchmarks/RESULTS.md, "Kernels, round 17"): to rerun them, check out fdf0edd.
#   PART=83  the GPU's time per forward from CUDA-graph replays, overlap on and off, ours only, with the
#            bit-for-bit check of the two paths (that commit's kernel_graphs.py --no-fla), all five shapes; correctness
#   PART=86  where the overlapped forward's time goes: kernel_timeline.py at shape 0 (both gates, overlap on and off:
#            each kernel's start and duration, and each Triton kernel's registers, shared memory and warps), again
#            with the scans at 2 and 1 stages (HYBRIDIZE_GDR_SCAN_STAGES)
#   PART=87  GDN only, the overlap's segment size (HYBRIDIZE_GDR_OVERLAP_SEG 8, 32, 128): kernel_graphs.py at shapes 0
#            and 2, and kernel_timeline.py --graph at shape 0 (the kernels as replayed from a graph)
#   PART=84  the final code: kernel_graphs.py (the GPU's time per forward from CUDA-graph replays) with fla beside,
#            shapes 0-2 (SHAPES overrides), and kernel_timeline.py --graph at shape 0 (ours)
#   PART=85  kernel_graphs.py with fla beside at shapes 3 and 4
#   PART=88  the pairs kernel's launch swept (warps, stages, Triton's maxnreg): the forward's per-channel variant
#            (decayed keys, kg pair) and the scalar one without Aqk, alone, at shapes 0 and 1
#   PART=89  the forward's kernels with fla's precision of the intermediates (HYBRIDIZE_GDR_INTER=bf16; ours only, shapes
#            0-4), and correctness with them (kernels_correctness.py --only bf16 --inter-variants bf16)
#   PART=90  the scan swept at head dim 64 (shape 4: BV, warps, stages, with and without the solve folded in), both gates
#   PART=91  the scan at head dim <= 64 with the solve folded in capped at 32 value columns (narrow_solve_bv): correctness
#            of every case, the forward's kernels beside fla's at shape 4, and kernel_graphs.py at shape 4; the same
#            two with the cap off (HYBRIDIZE_GDR_SCAN_NARROW_SOLVE_BV=0) in the same call
#   PART=92  the final round-17 code (the cap for scalar gates only): correctness of every case, the forward's kernels
#            beside fla's at shape 4, and the issue's table (ours, SDPA, decode) at shape 4
#   PART=93  after the review (the scan's SPLIT 1/3 and 2/4 branches merged; one graph-capture helper): correctness of
#            every case, the forward's kernels at shapes 0, 1, 4 (ours), kernel_timeline.py --graph at shape 0
# Round 18:
#   PART=94  the KDA dh scan's products as bf16 pairs (HYBRIDIZE_GDR_DH_SPLIT_KDA=1): correctness of the KDA cases with
#            it, the dh scan swept with it off and on (kda, shapes 0, 1, 4), KDA fwd+bwd kernels at shape 0 off and on
#   PART=95  chunk matrices (T, A, Aqk, dA, dM) stored and loaded as their lower triangle only (tril_mask): correctness
#            of every case; the forward's kernels at shapes 0, 1, 4, this code and round 17's (hybridize/ of dcdd928
#            unpacked into .dev/r17 and put first on PYTHONPATH), alternating (CODES sets the order)
#   PART=96  the same two codes: forward kernels at shapes 2 and 3, fwd+bwd kernels at shape 0
#   PART=97  per-channel gates' scale q e^G written by the pairs kernel for the output kernel (OUTPUT_CONFIG["qg"]):
#            correctness of every case; KDA forward kernels at shapes 0-4 with it on and off (HYBRIDIZE_GDR_QG=0)
#   PART=98  the KDA pairs kernel (decayed keys) over its key columns per step (BK 16, 32, 64) and warps, with and
#            without scale q e^G for the output kernel, at shapes 0, 1, 4 (kernel_stages.py --split-only "pairs decayed BK")
#   PART=99  the final round-18 code: PART=80's recipe (correctness of every case, the forward's kernels beside fla's
#            at shapes 0-2 in one process, fwd+bwd kernels at shape 0)
#   PART=100 the final round-18 code: PART=76's recipe (the issue's table: ours, SDPA, decode; fla's forward kernels
#            beside ours at shapes 3 and 4)
#   PART=101 the GDN dh scan at 2 and 3 stages (BV 16, 32; shapes 0, 4), and KDA fwd+bwd kernels at head dim 64 with
#            the dh scan's bf16 pairs off and on (HYBRIDIZE_GDR_DH_SPLIT_KDA)
#   PART=102 the GDN dh scan at 3 stages (BWD_CONFIG["split_stages"]): correctness of every case; the dh scan at 2
#            and 3 stages at the default BV (shapes 1 and 3: BV 64); GDN fwd+bwd kernels at shapes 0, 1, 4 with 3 and
#            with 2 stages (HYBRIDIZE_GDR_DH_SPLIT_STAGES=2)
#   PART=103 the final round-18 code after PART=102: the issue's table at shape 2 (GDN fwd+bwd at 32K against SDPA)
#   PART=104 the backward's chunk kernel (_bwd_kernel) at 2 pipeline stages (HYBRIDIZE_GDR_BWD_STAGES=2): correctness of
#            every case with it; fwd+bwd kernels at shapes 0, 1, 4 with 1 and 2 stages
#   PART=105 the final round-18 code (the backward's chunk kernel at 2 stages): the issue's table at shapes 0 and 2
# Round 19:
#   PART=106 the KDA backward's decayed operands in fp16 with the fused L2 norm (BWD_CONFIG["decayed16"]): correctness
#            of every case; the dh scan swept with fp32 and fp16 operands (shapes 0, 1, 4); KDA fwd+bwd kernels with
#            the fused L2 norm (HYBRIDIZE_BENCH_L2=1) at shapes 0, 1, 4, fp16 on and off (HYBRIDIZE_GDR_DECAYED16=0)
#   PART=107 fla's KDA fwd+bwd kernels beside ours, both with the fused L2 norm (shape 0; fla autotunes for minutes)
#   PART=108 (ran on an uncommitted version whose HYBRIDIZE_GDR_DECAYED16 took "kg" (kg alone in fp16), "both" or "0";
#            the committed code takes 1 (= "both") or 0) correctness of every case; KDA fwd+bwd kernels with the fused
#            L2 norm at shapes 0, 1, 4 with "kg", "0" and "both", alternating twice
#   PART=109 (ran at b8720e3; that code was reverted after it) the dh scan's state-free term (q e^G)^T do formed per
#            chunk in parallel (HYBRIDIZE_GDR_QDO=1): KDA correctness; KDA fwd+bwd kernels at shapes 0, 1, 4 with it
#            on and off, with the fused L2 norm (twice) and without
#   PART=110 (ran at 1961908; reverted after it) the backward's recompute scan with kg as a bf16 hi + lo pair
#            (BWD_CONFIG["kg_pair"]): correctness of every case; KDA fwd+bwd kernels at shapes 0, 1, 4: with the fused
#            L2 norm, pair on / off and decayed16 on / off; without it, pair on / off
#   PART=111 why the backward's recompute scan takes twice the forward scan's time: scan_recompute_probe.py at shapes
#            0, 1, 4 (the forward's scan, the recompute, states in bf16, no stores, 32 value columns)
#   PART=112 the backward's key-side kernel launch swept again for KDA at shapes 0, 1, 4 (kernel_stages.py --bwd-sweep,
#            BK 16 / 32 / 64, BV 32 / 64, 8 warps, 1 / 2 / 3 stages): whole chunk_bwd
#   PART=113 the key-side kernel's stages: KDA at BK 32, BV 32 with 3 and 4 stages; GDN at its launch (BK 64, BV 32)
#            with 2 and 3 (kernel_stages.py --bwd-sweep, shapes 0, 1, 4)
#   PART=114 the round-19 code (KDA's split backward at BV 32, 3 stages; decayed16): correctness of every case; fwd+bwd
#            kernels at shapes 0, 1, 4 (ours); the issue's table at shapes 0-2 (ours, SDPA)
#   PART=115 fla's fwd+bwd kernels beside ours at shape 0, KDA, without and with the fused L2 norm
#   PART=116 the fused L2 norm's outputs kept for the backward (autograd.KEEP_NORMALISED): correctness of every case;
#            fwd+bwd kernels with the fused norm at shapes 0, 1, 4, kept and recomputed (HYBRIDIZE_GDR_KEEP_L2=0); KDA
#            beside fla at shape 0 with the fused norm
#   PART=117 (ran at 3e197a5; reverted after it) the KDA split backward's pairwise gradients from column blocks of
#            dA and dM (BWD_CONFIG["sliced"]): correctness of every case; fwd+bwd kernels at shapes 0, 1, 4 sliced and
#            not (HYBRIDIZE_GDR_BWD_SLICED=0); the key-side launch around its default; KDA fwd+bwd beside fla at shape 0
# Round 20:
#   PART=118 (ran at a29b834; the side stream and overlap_bench.py were reverted after calls 1-5, see d8c5ceb) the
#            backward's recompute scan on a side stream beside the dh scan (autograd.OVERLAP): correctness of every
#            case; overlap_bench.py (gradients bitwise equal with and without; fwd+bwd wall and CUDA-graph medians)
#   PART=119 (ran at 85f9606; reverted after PART=120) the KDA dh scan with q e^G pre-transposed (HYBRIDIZE_GDR_DH_QT) and w^T dvn as bf16 pairs
#            (HYBRIDIZE_GDR_DH_WSPLIT): correctness of every case; KDA fwd+bwd kernels at shapes 0, 1, 4 for each of the
#            four settings
#   PART=120 (ran at 3f1fa68 and affb0a2; reverted) the KDA dh scan's launch swept with and without dh_qt / dh_wsplit (kernel_stages.py --dh-sweep 0,1,4)
#   PART=121 the backward's per-chunk states h (HYBRIDIZE_GDR_BWD_H16) and dh (HYBRIDIZE_GDR_DH_STORE16) stored in
#            bf16: correctness of every case with each; fwd+bwd kernels at shapes 0, 1, 4 (both gate kinds) with each
#   PART=122 the KDA dh scan's launch swept again with dh stored in bf16 (BWD_CONFIG["dh_store16"]): shapes 0, 1, 4
#   (round 20 also re-ran PART=114 and PART=115's recipes on its final code: calls 10 and 11)
#   PART=123 the forward's kernels beside fla's at all five shapes, both gate kinds (kernel_profile.py --modes fwd): the
#            forward scan's h store now rounds through _common.stored
#   PART=124 the dh scan at 32 value columns (HYBRIDIZE_GDR_DH_BV=32) beside the shipped 64 at 64 documents x heads:
#            fwd+bwd kernels at (4,4096,16,128) and (2,16384,32,128), both gate kinds; correctness of the 16-bit cases
# Round 21 (Nsight Compute; what the sequential kernels' steps wait on):
#   PART=125 Nsight Compute (ncu --set full, source-level stall sampling) on the sequential kernels through
#            kernel_ncu.py: ours and fla's KDA fwd+bwd at (1,8192,16,128); IMPLS, NCU_ENV, TAG, NCU_KERNELS pick
#   PART=126 (ran on uncommitted code, since changed) G_last one chunk ahead in the forward scan and the dh scan:
#            correctness, fwd+bwd kernels at shapes 0, 1, 4 with and without
#   PART=127 the SASS of our sequential kernels with source lines (nvdisasm -g of Triton's cached cubins; kernel_ncu.py
#            --sass maps ncu's samples to Python lines with it), then PART=125 for fla's dh kernel alone
#   PART=128 (ran on uncommitted code: the dh scan's prefetch levels and the forward scan's u tile were dropped) the
#            forward scan's u tile and beta and the dh scan's G_last, Aqk^T do and w one chunk ahead
#   PART=129 the KDA forward scan with beta one chunk ahead too (HYBRIDIZE_GDR_PREFETCH=2) against G_last alone (1):
#            correctness, KDA fwd and fwd+bwd kernels at all five shapes
#   PART=130 scalar gates' forward scan with G_last and beta one chunk ahead (HYBRIDIZE_GDR_PREFETCH_GDN=2, and 1):
#            correctness, GDN fwd and fwd+bwd kernels at all five shapes
#   (round 21 also re-ran PART=123 on its final code: call 10)
# Round 22:
#   PART=131 scalar gates at 16 documents x heads: the forward with the solve in the scan (HYBRIDIZE_GDR_SCAN_SOLVE_MIN=0)
#            beside the solve kernel (the default there), fla beside, shapes 0 and 2; then ncu on that scan (shape 0)
#   PART=132 per-channel gates' dh scan as SPLIT 3 (HYBRIDIZE_GDR_DH_QSPLIT: scale q e^G as a bf16 pair from the decayed
#            kernel, both state-side products as bf16 pairs): correctness of every case (with it and GDN's solve in the
#            scan at every size), KDA fwd+bwd kernels at shapes 0, 1, 4 without and with it
#   PART=133 (ran on uncommitted code; HYBRIDIZE_GDR_DH_QFORM is gone, its form 6 is the shipped SPLIT 3) SPLIT 3 gave inf or wrong KDA gradients on the H100 (call 2; right under the interpreter): the 16-bit KDA
#            cases under its three forms of the state-side products (HYBRIDIZE_GDR_DH_QFORM 0 chained, 1 summed, 2 one
#            chain) and other pipeline depths (HYBRIDIZE_GDR_DH_STAGES); then (CFGS="3_0 4_0 5_0") 3: the [K, C] tiles
#            loaded as such instead of tl.trans, 4: the q pair with w^T dvn in tf32, 5: q e^G in tf32 with the w pairs;
#            (CFGS=6_0 PROFILE_QFORMS="off 4 6") 6: as 4 with the [K, C] tiles loaded as such, and KDA fwd+bwd kernels
#   PART=134 the round-22 code: correctness of every case, GDN forward kernels beside fla's at all five shapes, KDA
#            fwd+bwd kernels (ours) at all five
#   PART=135 KDA fwd+bwd kernels beside fla's at (1,8192,16,128) (fla's backward autotunes for minutes)
#   PART=136 the KDA dh scan's G_last (1) and Aqk^T do (2) one chunk ahead (HYBRIDIZE_GDR_DH_PREFETCH, SPLIT 3 only, now at
#            186 registers): KDA correctness at 2, KDA fwd+bwd kernels at shapes 0, 1, 4 at 0, 1, 2
#   PART=137 the final round-22 code (dh prefetch "auto"): correctness of every case, KDA fwd+bwd kernels at all five
#            shapes, then beside fla's at (1,8192,16,128)
#   PART=138 ncu on the round-22 KDA dh scan (shape 0); the GDN output kernel swept at head dim 64 (shape 4, "mixed")
#   PART=139 the SASS (nvdisasm -g) of the round-22 dh scan, to read PART=138's samples per Python line (PART=127's
#            first half)
#   PART=140 (ran on uncommitted code, reverted: slower) the dh scan's G_last prefetch issued before dh's store: KDA
#            correctness, KDA fwd+bwd kernels at shapes 0, 1, 4
# Round 23:
#   PART=141 the output kernel's fp16 fallback called, not inlined (HYBRIDIZE_GDR_OUTPUT_CALL), with a register cap
#            (HYBRIDIZE_GDR_OUTPUT_MAXNREG) or 8 warps: correctness, GDN and KDA forward kernels at shapes 0 and 4; ncu
#            of GDN's forward at head dim 64, ours and fla's
#   PART=142 the output kernel's fallback called at head dims <= 64 (OUTPUT_CONFIG["call_max_dim"]): correctness of every
#            case, GDN forward kernels beside fla's at all five shapes and KDA's at head dim 64; at head dim 64 the scan's
#            16-column blocks (HYBRIDIZE_GDR_SCAN_NARROW_SOLVE_BV=16) and the output kernel's 32-column key blocks
#            (HYBRIDIZE_GDR_OUTPUT_BK=32). Every log in $OUT/part142.tgz
#   PART=143 chunk_bounds as one round of loads (Layout.chunks holds each chunk's document bounds): correctness of every
#            case, GDN forward kernels beside fla's at all five shapes, KDA's at head dim 64 (logs in $OUT/part143.tgz)
#   PART=144 KDA fwd+bwd kernels at all five shapes, and beside fla's at (1,8192,16,128) (logs in $OUT/part144.tgz)
#   PART=145 GDN's forward at head dim 64: the solve kernel instead of the solve in the scan
#            (HYBRIDIZE_GDR_SCAN_SOLVE_MIN=1000), the scan at 64 value columns (HYBRIDIZE_GDR_SCAN_NARROW_SOLVE_BV=64), the
#            defaults beside fla; the pairs kernel's no-Aqk launches swept alone (logs in $OUT/part145.tgz)
#   PART=146 GDN's scan at head dim 64 with whole 64-column blocks (narrow_solve_bv 32 -> 0, no cap): correctness of the
#            GDN cases, GDN forward kernels beside fla's at head dim 64 (logs in $OUT/part146.tgz)
#   PARTs 147-149 ran at commit 91fb571, whose experimental knobs (DH_LOW, DH_KG16, DH_QCAT) were then removed.
#   PART=147 the KDA dh scan's lower-precision products (HYBRIDIZE_GDR_DH_LOW=0/1/2/3: kg dh in bf16; w^T dvn too;
#            kg dh as a bf16 pair): KDA correctness (fla beside at level 0) and KDA fwd+bwd kernels at shapes 0 and 4
#   PART=148 the KDA dh scan with kg rounded to bf16 before it (HYBRIDIZE_GDR_DH_KG16=1, half its bytes), at DH_LOW 0, 1
#            and 3: KDA fwd+bwd kernels at shapes 0 and 4, KDA correctness at the fastest
#   PART=149 the KDA dh scan's two q e^G products as one (HYBRIDIZE_GDR_DH_QCAT=1: hi and lo side by side against do
#            stacked twice): fwd+bwd kernels at shapes 0 and 4 with and without, KDA bf16 correctness with it; the dh
#            scan's launch swept alone (BV 16/32, 2/4 warps, 2/3 stages) at shape 0, then 8 warps
#   PART=150 the final code of round 24 (the parallel kernels without their unused cu argument) beside fla: forward
#            kernel sums at all five shapes (both gates), KDA fwd+bwd at (1,8192,16,128) (logs in $OUT/part150.tgz)
#   PART=151 the same code: correctness of every case; forward kernel sums beside fla at shapes 3 and 4 (PART=150's
#            step ran out of time there); the issue's wall-time rows for ours and SDPA at (1,32768,16,128) with the decode
#            rows (bench_kernels.py --ours-only; logs in $OUT/part151.tgz)
#   PART=152 the cases past fp16's range (a GDN one at head dim 64 added: the output kernel's fallback as a call), at
#            the default call_max_dim and with the fallback inlined (HYBRIDIZE_GDR_OUTPUT_CALL_MAX_DIM=0)
#   PART=153 (ran at commit 3133765; its knob was then removed) the KDA dh scan storing each chunk's dh after the
#            step's products (HYBRIDIZE_GDR_DH_STORE_LATE=1; round 22's ncu had the G_last prefetch load waiting on a
#            long scoreboard next to the store): fwd+bwd kernels at shapes 0, 1 and 4 with and without, KDA correctness
#   PART=154 (ran at commit d3fdc1a; its knobs were then removed) the KDA dh scan with kg cast to bf16 by torch
#            (HYBRIDIZE_GDR_DH_KG16=1: 2 stages; =3: 3 stages, which then fit in shared memory, so each tile's load is
#            issued two steps ahead instead of after the step's last product) at DH_LOW 0 (tf32 kg dh), 1 (bf16 kg dh)
#            and 3 (kg dh as a bf16 pair): fwd+bwd kernels at shapes 0, 1 and 4, KDA correctness
#   PART=155 the shipped dh_kg16 (kg in bf16 from the decayed pass, 3 stages up to 32 value columns): KDA correctness;
#            KDA fwd+bwd kernels at shapes 0, 2 and 4 with and without (HYBRIDIZE_GDR_DH_KG16=0), at shape 0 with the
#            fused L2 norm too (kg in fp16 from the solve, now at 3 stages); shapes 1 and 3 at 32 value columns
#            (HYBRIDIZE_GDR_DH_BV=32, so 3 stages) against their default 64
#   PART=156 (ran at commit 024c812; its knob became BWD_CONFIG["recompute_kg16"]) the recompute's solve writing kg in
#            bf16 (HYBRIDIZE_GDR_SOLVE_KG16=1: the recompute scan and the dh scan both take it, so the decayed pass forms
#            no kg): KDA correctness; fwd+bwd kernels at shapes 0 and 2, off/on
#   PART=157 round 25's code (dh_kg16, recompute_kg16): correctness of every case (a pre-normalised aligned KDA case
#            added); KDA fwd+bwd kernels at all five shapes, ours
#   PART=158 the same code: the pre-normalised aligned case with both round-25 changes off; KDA fwd+bwd kernels at
#            (1,8192,16,128) beside fla's; the wall-time rows at (1,32768,16,128)
#   PART=159 (ran at e87244d, where it was opt-in; shipped on from head dim 128) the KDA dh scan's kg dh as two bf16
#            products of dh's hi + lo where kg is bf16 (HYBRIDIZE_GDR_DH_KG_PAIR=1; round 24's DH_LOW 3, 0.253 vs 0.271
#            ms at 3 stages in PART 154): fwd+bwd kernels at shapes 0, 2 and 4 off/on, KDA correctness on; then KDA
#            fwd+bwd beside fla at (1,8192,16,128) with it on
#   PART=160 round 25's final code: KDA fwd+bwd kernel sums beside fla's at the other four shapes (as many as fit in the
#            call; fla autotunes per shape on a fresh machine)
#   PART=2   the issue's table with fla beside (bench_kernels.py; SHAPES=0,4 by default)
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .dev/fla/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/site:.:${PYTHONPATH:-} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"

# step LOG SECONDS [VAR=VALUE ...] SCRIPT [ARGS ...]: python3 benchmarks/SCRIPT ARGS with that environment
# and time limit, its output in $OUT/LOG.log (and its files in $OUT/LOG, except for the correctness
# script, which writes none); prints the exit code
step() {
  local log=$1 secs=$2 rc
  shift 2
  local envs=() out=()
  while [[ "$1" == *=* ]]; do envs+=("$1"); shift; done
  local script=$1
  shift
  [[ "$script" == kernels_correctness.py ]] || out=(--out "$OUT/$log")
  env ${envs[@]+"${envs[@]}"} timeout "$secs" python3 "benchmarks/$script" "$@" ${out[@]+"${out[@]}"} \
    > "$OUT/$log.log" 2>&1
  rc=$?
  echo "$log (${envs[*]:-defaults}) rc=$rc"
}
# rows LOG PATTERN [PREFIX]: the lines of $OUT/LOG.log that match, each after PREFIX
rows() { grep "$2" "$OUT/$1.log" | sed "s/^/${3:-}/"; }
ours_ok() { grep "\[ours\]" "$OUT/$1.log" | cut -c1-170; }
BENCH=(bench_kernels.py --ours-only --skip-versions --no-fla-decode --warm 16)
BF16_NONE=(HYBRIDIZE_GDR_INTER=bf16 HYBRIDIZE_GDR_RECOMPUTE=none)

# compare VAR BASE NEW: correctness with VAR=NEW; fwd+bwd at shapes 0 and 4 with VAR=BASE and VAR=NEW in
# the same call (ours only); then where NEW's fwd+bwd time goes, kernel by kernel
compare() {
  local var=$1 base=$2 new=$3 val
  step "correctness_$new" 150 "$var=$new" kernels_correctness.py --jobs 16 --no-ref-check
  for val in "$base" "$new"; do
    step "bench_$val" 100 "$var=$val" "${BENCH[@]}" --shapes 0,4
    rows "bench_$val" "^| [GK]D[AN] f" "$var=$val "
  done
  step "profile_$new" 80 "$var=$new" kernel_profile.py --shapes 0 --modes fwd+bwd --no-fla
  rows "profile_$new" "sum of kernels\|_bwd"
  ours_ok "correctness_$new"
}

# defaults LOG SECONDS ARGS...: with the defaults, correctness of every case, wall times at shapes 0, 2
# and 4, then kernel_profile.py ARGS (its output in $OUT/LOG.log)
defaults() {
  local log=$1 secs=$2
  shift 2
  step correctness 150 kernels_correctness.py --jobs 16 --no-ref-check
  step bench_default 150 "${BENCH[@]}" --shapes 0,2,4
  step "$log" "$secs" kernel_profile.py "$@"
  rows bench_default "^| [GK]D[AN] f\|^| decode" "default "
  rows "$log" "sum of kernels"
  ours_ok correctness
}

# pack N: the logs and result folders under $OUT into $OUT/partN.tgz ($OUT returns at most 8 files)
pack() { (cd "$OUT" && shopt -s nullglob && tar czf "part$1.tgz" ./*.log ./*/ && rm -rf ./*.log ./*/); }

# sass_dump TAG KERNEL...: ours' fwd+bwd once with an empty Triton cache, then `nvdisasm -g` of each named kernel's cached
# cubin (its SASS with Python source lines) into $OUT/sassTAG.tgz; kernel_ncu.py --sass reads it
sass_dump() {
  local tag=$1 nvdis f d name
  shift
  export TRITON_CACHE_DIR=/tmp/tcache$tag
  rm -rf "$TRITON_CACHE_DIR"
  python3 benchmarks/kernel_ncu.py --impl ours --shape ${NCU_SHAPE:-0} --gate ${NCU_GATE:-kda} > "$OUT/run$tag.log" 2>&1
  echo "ours run rc=$?"
  nvdis=$(command -v nvdisasm || echo /usr/local/cuda/bin/nvdisasm)
  mkdir -p "$OUT/sass$tag"
  for name in "$@"; do
    for f in $(find "$TRITON_CACHE_DIR" -name "$name.cubin"); do
      d=$(basename "$(dirname "$f")")
      "$nvdis" -g -c "$f" > "$OUT/sass$tag/${name}_$d.sass" 2>&1
      grep -m1 -o '"num_warps": [0-9]*\|"num_stages": [0-9]*' "$(dirname "$f")"/*.json | tr '\n' ' '
      echo "$f: $(wc -l < "$OUT/sass$tag/${name}_$d.sass") lines"
    done
  done
  (cd "$OUT" && tar czf "sass$tag.tgz" "sass$tag" && rm -rf "sass$tag")
}

# fwd_round23: correctness of every case, GDN forward kernels beside fla's at all five shapes, KDA's at head dim 64
fwd_round23() {
  step correctness 150 kernels_correctness.py --jobs 16 --no-ref-check
  rows correctness "PASS\|FAILED"
  ours_ok correctness | grep "FAIL\|aligned"
  step profile_gdn_fwd 300 kernel_profile.py --shapes 0,1,2,3,4 --modes fwd --gates gdn
  rows profile_gdn_fwd "sum of kernels"
  step profile_kda_fwd 150 kernel_profile.py --shapes 4 --modes fwd --gates kda
  rows profile_kda_fwd "sum of kernels\|_output_kernel\|fwd_kernel_o"
}

# kda_round CASES ROWS: correctness of every case (ours' rows matching CASES shown), then KDA fwd+bwd kernels at all
# five shapes, ours only (the rows matching ROWS shown)
kda_round() {
  step correctness 150 kernels_correctness.py --jobs 16 --no-ref-check
  rows correctness "PASS\|FAILED"
  ours_ok correctness | grep "$1"
  step profile_kda 200 kernel_profile.py --shapes 0,1,2,3,4 --modes fwd+bwd --no-fla --gates kda
  rows profile_kda "$2"
}

case "${PART:-1}" in
160)
  step profile_kda_fla4 540 kernel_profile.py --shapes 4,1,3,2 --modes fwd+bwd --gates kda
  rows profile_kda_fla4 "sum of kernels"
  pack 160
  ;;
159)
  for pair in 0 1 0 1; do
    step "profile_pair$pair" 100 HYBRIDIZE_GDR_DH_KG_PAIR=$pair kernel_profile.py --shapes 0,2,4 --modes fwd+bwd --no-fla \
      --gates kda
    rows "profile_pair$pair" "sum of kernels\|_dh_kernel" "kg pair $pair: "
  done
  step correctness_pair 120 HYBRIDIZE_GDR_DH_KG_PAIR=1 kernels_correctness.py --jobs 16 --no-ref-check --only kda
  rows correctness_pair "PASS\|FAILED"
  grep "^| kda bf16" "$OUT/correctness_pair.log"
  step profile_kda_fla 330 HYBRIDIZE_GDR_DH_KG_PAIR=1 kernel_profile.py --shapes 0 --modes fwd+bwd --gates kda
  rows profile_kda_fla "sum of kernels\|_dh_kernel\|dhu"
  pack 159
  ;;
157)
  kda_round "FAIL\|aligned\|kda bf16" "sum of kernels\|_dh_kernel\|_scan_kernel"
  pack 157
  ;;
158)
  step correctness_prenorm_off 100 HYBRIDIZE_GDR_RECOMPUTE_KG16=0 HYBRIDIZE_GDR_DH_KG16=0 kernels_correctness.py --jobs 16 \
    --no-ref-check --only prenorm
  grep "^| kda" "$OUT/correctness_prenorm_off.log" | sed "s/^/kg16 off: /"
  step profile_kda_fla 400 kernel_profile.py --shapes 0 --modes fwd+bwd --gates kda
  rows profile_kda_fla "sum of kernels\|_dh_kernel\|dhu\|_scan_kernel\|fwd_kernel_h"
  step bench 150 "${BENCH[@]}" --shapes 2
  rows bench "^| [GK]D[AN] f"
  pack 158
  ;;
155)
  step correctness_kda 150 kernels_correctness.py --jobs 16 --no-ref-check --only kda
  rows correctness_kda "PASS\|FAILED"
  grep "^| kda bf16" "$OUT/correctness_kda.log"
  for kg in 1 0 1 0; do
    step "profile_kg$kg" 100 HYBRIDIZE_GDR_DH_KG16=$kg kernel_profile.py --shapes 0,2,4 --modes fwd+bwd --no-fla --gates kda
    rows "profile_kg$kg" "sum of kernels\|_dh_kernel\|_decayed_kernel" "kg16 $kg: "
  done
  for kg in 1 0; do
    step "profile_l2_kg$kg" 80 HYBRIDIZE_BENCH_L2=1 HYBRIDIZE_GDR_DH_KG16=$kg kernel_profile.py --shapes 0 --modes fwd+bwd \
      --no-fla --gates kda
    rows "profile_l2_kg$kg" "sum of kernels\|_dh_kernel\|_decayed_kernel" "l2 kg16 $kg: "
  done
  for bv in 0 32; do
    step "profile_bv$bv" 100 HYBRIDIZE_GDR_DH_BV=$bv kernel_profile.py --shapes 1,3 --modes fwd+bwd --no-fla --gates kda
    rows "profile_bv$bv" "sum of kernels\|_dh_kernel" "dh BV $bv: "
  done
  pack 155
  ;;
153)
  for late in 0 1 0 1; do
    step "profile_late$late" 150 HYBRIDIZE_GDR_DH_STORE_LATE=$late kernel_profile.py --shapes 0,1,4 --modes fwd+bwd \
      --no-fla --gates kda
    rows "profile_late$late" "sum of kernels\|_dh_kernel" "late $late: "
  done
  step correctness_late 200 HYBRIDIZE_GDR_DH_STORE_LATE=1 kernels_correctness.py --jobs 16 --no-ref-check --only kda
  rows correctness_late "PASS\|FAILED" "late: "
  grep "^| kda bf16 D128" "$OUT/correctness_late.log" | sed "s/^/late: /"
  pack 153
  ;;
152)
  for cmd in 64 0; do
    step "correctness_big$cmd" 150 HYBRIDIZE_GDR_OUTPUT_CALL_MAX_DIM=$cmd kernels_correctness.py --jobs 16 --no-ref-check \
      --only big
    rows "correctness_big$cmd" "PASS\|FAILED" "call_max_dim $cmd: "
    grep "^| [gk]d[an] bf16" "$OUT/correctness_big$cmd.log" | sed "s/^/call_max_dim $cmd: /"
  done
  pack 152
  ;;
150)
  step profile_fwd 180 kernel_profile.py --shapes 0,1,2,3,4 --modes fwd --gates gdn,kda
  rows profile_fwd "sum of kernels"
  step profile_kda_fla 380 kernel_profile.py --shapes 0 --modes fwd+bwd --gates kda
  rows profile_kda_fla "sum of kernels\|_dh_kernel\|dhu"
  pack 150
  ;;
151)
  step correctness 150 kernels_correctness.py --jobs 16 --no-ref-check
  rows correctness "PASS\|FAILED"
  ours_ok correctness | grep "FAIL\|aligned"
  step profile_fwd34 150 kernel_profile.py --shapes 3,4 --modes fwd --gates gdn,kda
  rows profile_fwd34 "sum of kernels"
  step bench 250 "${BENCH[@]}" --shapes 2
  rows bench "^| [GK]D[AN] f\|^| decode"
  pack 151
  ;;
149)
  for qc in 0 1; do
    step "profile_qcat$qc" 150 HYBRIDIZE_GDR_DH_QCAT=$qc kernel_profile.py --shapes 0,4 --modes fwd+bwd --no-fla --gates kda
    rows "profile_qcat$qc" "sum of kernels\|_dh_kernel" "qcat $qc: "
  done
  step correctness_qcat 200 HYBRIDIZE_GDR_DH_QCAT=1 kernels_correctness.py --jobs 16 --no-ref-check --only "kda"
  rows correctness_qcat "PASS\|FAILED" "qcat: "
  grep "^| kda bf16 D128" "$OUT/correctness_qcat.log" | sed "s/^/qcat: /"
  step dh_sweep 300 kernel_stages.py --shapes "" --dh-sweep 0 --dh-gates kda --no-fla \
    --dh-grid "bv=16,32;warps=2,4;stages=2,3;dvn=kernel"
  grep "dh sweep" "$OUT/dh_sweep.log" | grep -v " all: "
  step dh_sweep8 150 kernel_stages.py --shapes "" --dh-sweep 0 --dh-gates kda --no-fla \
    --dh-grid "bv=16,32;warps=8;stages=2;dvn=kernel"
  grep "dh sweep" "$OUT/dh_sweep8.log" | grep -v " all: "; tail -3 "$OUT/dh_sweep8.log"
  pack 149
  ;;
148)
  for low in 0 1 3; do
    step "profile_kg16_low$low" 150 HYBRIDIZE_GDR_DH_KG16=1 HYBRIDIZE_GDR_DH_LOW=$low kernel_profile.py --shapes 0,4 \
      --modes fwd+bwd --no-fla --gates kda
    rows "profile_kg16_low$low" "sum of kernels\|_dh_kernel\|elementwise\|copy" "kg16 low $low: "
  done
  step profile_base 150 kernel_profile.py --shapes 0,4 --modes fwd+bwd --no-fla --gates kda
  rows profile_base "sum of kernels\|_dh_kernel" "base: "
  for low in 0 1 3; do
    step "correctness_kg16_low$low" 200 HYBRIDIZE_GDR_DH_KG16=1 HYBRIDIZE_GDR_DH_LOW=$low kernels_correctness.py \
      --jobs 16 --no-ref-check --only "kda bf16"
    rows "correctness_kg16_low$low" "PASS\|FAILED" "kg16 low $low: "
    grep "^| kda bf16 D128" "$OUT/correctness_kg16_low$low.log" | sed "s/^/kg16 low $low: /"
  done
  pack 148
  ;;
147)
  for low in 0 1 2 3; do
    fl=(); [ "$low" = 0 ] && fl=(--fla)
    step "correctness_low$low" 200 HYBRIDIZE_GDR_DH_LOW=$low kernels_correctness.py --jobs 16 --no-ref-check --only kda \
      ${fl[@]+"${fl[@]}"}
    rows "correctness_low$low" "PASS\|FAILED" "low $low: "
    grep "^| kda bf16" "$OUT/correctness_low$low.log" | sed "s/^/low $low: /"
    step "profile_low$low" 150 HYBRIDIZE_GDR_DH_LOW=$low kernel_profile.py --shapes 0,4 --modes fwd+bwd --no-fla \
      --gates kda
    rows "profile_low$low" "sum of kernels\|_dh_kernel" "low $low: "
  done
  pack 147
  ;;
146)
  step correctness 150 kernels_correctness.py --jobs 16 --no-ref-check --only gdn
  rows correctness "PASS\|FAILED"
  ours_ok correctness | grep "FAIL\|D64"
  step profile_fla 100 kernel_profile.py --shapes 4 --modes fwd --gates gdn
  rows profile_fla "sum of kernels\|_pairs\|_scan\|_output"
  pack 146
  ;;
145)
  step profile_fla 100 kernel_profile.py --shapes 4 --modes fwd --gates gdn
  rows profile_fla "sum of kernels\|_pairs\|_scan\|_solve\|_output"
  for cfg in solvekernel bv64; do
    envs=HYBRIDIZE_GDR_SCAN_SOLVE_MIN=1000
    [ "$cfg" = bv64 ] && envs=HYBRIDIZE_GDR_SCAN_NARROW_SOLVE_BV=64
    step "profile_$cfg" 100 $envs kernel_profile.py --shapes 4 --modes fwd --gates gdn --no-fla
    rows "profile_$cfg" "sum of kernels\|_pairs\|_scan\|_solve\|_output" "$cfg: "
  done
  step split_sweep 150 kernel_stages.py --shapes "" --split-sweep 4 --split-only "no-Aqk" --sweep-gates gdn \
    --sweep-inter mixed --no-fla
  grep -i "no-Aqk" "$OUT/split_sweep.log" | head -20
  pack 145
  ;;
143)
  fwd_round23
  pack 143
  ;;
144)
  step profile_kda 150 kernel_profile.py --shapes 0,1,2,3,4 --modes fwd+bwd --no-fla --gates kda
  rows profile_kda "sum of kernels\|_dh_kernel"
  step profile_kda_fla 420 kernel_profile.py --shapes 0 --modes fwd+bwd --gates kda
  rows profile_kda_fla "sum of kernels\|_dh_kernel\|dhu"
  pack 144
  ;;
142)
  fwd_round23
  for cfg in bv16 bk32; do
    envs=HYBRIDIZE_GDR_SCAN_NARROW_SOLVE_BV=16
    [ "$cfg" = bk32 ] && envs=HYBRIDIZE_GDR_OUTPUT_BK=32
    step "profile_$cfg" 100 $envs kernel_profile.py --shapes 4 --modes fwd --gates gdn,kda --no-fla
    rows "profile_$cfg" "sum of kernels\|_scan_kernel\|_output_kernel" "$cfg: "
  done
  pack 142
  ;;
141)
  step correctness 150 kernels_correctness.py --jobs 16 --no-ref-check --only bf16
  rows correctness "PASS\|FAILED"
  ours_ok correctness | grep "FAIL\|aligned"
  step profile_fla 200 kernel_profile.py --shapes 0,4 --modes fwd --gates gdn,kda
  rows profile_fla "sum of kernels\|_output_kernel\|fwd_kernel_o"
  for cfg in ${CFGS:-0_0_4 1_0_4 1_128_4 1_0_8 1_136_4}; do
    IFS=_ read -r call cap warps <<< "$cfg"
    step "profile_$cfg" 120 HYBRIDIZE_GDR_OUTPUT_CALL=$call HYBRIDIZE_GDR_OUTPUT_MAXNREG=$cap \
      HYBRIDIZE_GDR_OUTPUT_WARPS=$warps kernel_profile.py --shapes 0,4 --modes fwd --gates gdn,kda --no-fla
    rows "profile_$cfg" "sum of kernels\|_output_kernel" "call_cap_warps=$cfg: "
  done
  [ -n "${NCU_GDN64:-1}" ] && IMPLS="ours fla" NCU_KERNELS="_pairs|_scan|_output|kkt|fwd_kernel_o|fwd_kernel_h|recompute" \
    TAG=_gdn64 NCU_SHAPE=4 NCU_GATE=gdn NCU_ARGS=--fwd-only NCU_SECS=150 PART=125 bash benchmarks/kernels_next_gpu.sh
  ;;
140)
  step correctness 150 kernels_correctness.py --jobs 16 --no-ref-check --only kda
  rows correctness "PASS\|FAILED"
  ours_ok correctness | grep "FAIL\|bf16"
  step profile_kda 150 kernel_profile.py --shapes 0,1,4 --modes fwd+bwd --no-fla --gates kda
  rows profile_kda "sum of kernels\|_dh_kernel"
  ;;
139)
  sass_dump 139 _dh_kernel
  ;;
138)
  step output_sweep 200 kernel_stages.py --shapes "" --output-sweep 4 --sweep-gates gdn --sweep-inter mixed --no-fla
  grep -i "output" "$OUT/output_sweep.log" | head -40
  IMPLS=ours NCU_KERNELS=_dh_kernel TAG=_dh22 NCU_SECS=250 PART=125 bash benchmarks/kernels_next_gpu.sh
  ;;
137)
  kda_round "FAIL\|aligned" "sum of kernels\|_dh_kernel"
  PART=135 bash benchmarks/kernels_next_gpu.sh
  ;;
136)
  step correctness 150 HYBRIDIZE_GDR_DH_PREFETCH=2 kernels_correctness.py --jobs 16 --no-ref-check --only kda
  rows correctness "PASS\|FAILED"
  ours_ok correctness | grep "FAIL\|bf16"
  for val in 0 1 2; do
    step "profile_pf$val" 150 HYBRIDIZE_GDR_DH_PREFETCH=$val kernel_profile.py --shapes 0,1,4 --modes fwd+bwd --no-fla \
      --gates kda
    rows "profile_pf$val" "sum of kernels\|_dh_kernel" "dh_prefetch=$val: "
  done
  ;;
134)
  step correctness 150 kernels_correctness.py --jobs 16 --no-ref-check
  rows correctness "PASS\|FAILED"
  ours_ok correctness | grep "FAIL\|aligned"
  step profile_gdn_fwd 250 kernel_profile.py --shapes 0,1,2,3,4 --modes fwd --gates gdn
  rows profile_gdn_fwd "sum of kernels"
  step profile_kda 150 kernel_profile.py --shapes 0,1,2,3,4 --modes fwd+bwd --no-fla --gates kda
  rows profile_kda "sum of kernels\|_dh_kernel"
  ;;
135)
  step profile_kda_fla 560 kernel_profile.py --shapes 0 --modes fwd+bwd --gates kda
  rows profile_kda_fla "sum of kernels\|_dh_kernel\|dhu"
  ;;
133)
  for cfg in ${CFGS:-0_0 1_0 2_0 0_3 0_1}; do
    step "correctness_$cfg" 120 HYBRIDIZE_GDR_DH_QFORM=${cfg%_*} HYBRIDIZE_GDR_DH_STAGES=${cfg#*_} kernels_correctness.py \
      --jobs 16 --no-ref-check --only "kda bf16"
    ours_ok "correctness_$cfg" | sed "s/^/qform_stages=$cfg: /"
  done
  for val in ${PROFILE_QFORMS:-}; do
    # "off": SPLIT 3 off (HYBRIDIZE_GDR_DH_QSPLIT=0), the tf32 dh scan
    qs=1; [ "$val" = off ] && qs=0
    step "profile_qform$val" 150 HYBRIDIZE_GDR_DH_QSPLIT=$qs HYBRIDIZE_GDR_DH_QFORM=${val/off/0} kernel_profile.py \
      --shapes 0,1,4 --modes fwd+bwd --no-fla \
      --gates kda
    rows "profile_qform$val" "sum of kernels\|_dh_kernel" "dh_qform=$val: "
  done
  ;;
132)
  step correctness 150 kernels_correctness.py --jobs 16 --no-ref-check
  rows correctness "PASS\|FAILED"
  ours_ok correctness | grep "FAIL\|kda bf16\|gdn bf16 D128 \[\|aligned"
  for val in ${QSPLITS:-0 1}; do
    step "profile_qsplit$val" 150 HYBRIDIZE_GDR_DH_QSPLIT=$val kernel_profile.py --shapes 0,1,4 --modes fwd+bwd --no-fla \
      --gates kda
    rows "profile_qsplit$val" "sum of kernels\|_dh_kernel\|_decayed" "dh_qsplit=$val: "
  done
  ;;
131)
  for val in 32 0; do
    step "profile_min$val" 200 HYBRIDIZE_GDR_SCAN_SOLVE_MIN=$val kernel_profile.py --shapes 0,2 --modes fwd --gates gdn
    rows "profile_min$val" "sum of kernels\|_scan_kernel\|_solve_kernel\|_pairs_kernel" "solve_min=$val: "
  done
  IMPLS=ours NCU_ENV=HYBRIDIZE_GDR_SCAN_SOLVE_MIN=0 NCU_GATE=gdn NCU_KERNELS=_scan_kernel TAG=_gdn_solve NCU_SECS=200 NCU_ARGS=--fwd-only \
    PART=125 bash benchmarks/kernels_next_gpu.sh
  ;;
125)
  # IMPLS (default "ours fla"), NCU_ENV (VAR=VALUE ... for ours), TAG (a suffix for the files), NCU_SHAPE, NCU_GATE,
  # NCU_ARGS (more kernel_ncu.py arguments, e.g. --fwd-only)
  NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  echo "ncu: $NCU ($($NCU --version | tail -1))"
  for impl in ${IMPLS:-ours fla}; do
    name=ncu_$impl${TAG:-}
    mkdir -p "$OUT/$name"
    timeout ${NCU_SECS:-400} env ${NCU_ENV:-} "$NCU" --clock-control none --profile-from-start off \
      -k regex:"${NCU_KERNELS:-_dh_kernel|_scan_kernel|dhu|fwd_kernel_h}" --set full --import-source yes \
      -f -o "$OUT/$name/report" python3 benchmarks/kernel_ncu.py --impl $impl --shape ${NCU_SHAPE:-0} \
      --gate ${NCU_GATE:-kda} ${NCU_ARGS:-} > "$OUT/$name/run.log" 2>&1
    echo "$name (${NCU_ENV:-defaults}) rc=$?"; grep "==PROF== Profiling" "$OUT/$name/run.log" | cut -c1-100
    [ -f "$OUT/$name/report.ncu-rep" ] || { tail -5 "$OUT/$name/run.log"; continue; }
    "$NCU" -i "$OUT/$name/report.ncu-rep" --page details > "$OUT/$name/details.txt" 2>&1
    "$NCU" -i "$OUT/$name/report.ncu-rep" --page source --csv --print-source sass > "$OUT/$name/sass.csv" 2>&1
    python3 benchmarks/kernel_ncu.py --summarize "$OUT/$name/sass.csv" --top 12 > "$OUT/$name/summary.txt" 2>&1
    grep -E "^  [A-Za-z_]|Duration|Issue Slots Busy|Registers Per" "$OUT/$name/details.txt" | head -40
    (cd "$OUT" && tar czf "$name.tgz" --exclude=report.ncu-rep "$name" && rm -rf "$name")
  done
  ;;
130)
  # scalar gates' forward scan with G_last (1) and beta (2, where it does the solve) one chunk ahead
  step correctness 150 HYBRIDIZE_GDR_PREFETCH_GDN=2 kernels_correctness.py --jobs 16 --no-ref-check
  rows correctness "PASS\|FAILED"
  ours_ok correctness | grep "FAIL\|aligned"
  for val in 0 2 1; do
    step "profile_gdn$val" 150 HYBRIDIZE_GDR_PREFETCH_GDN=$val kernel_profile.py --shapes 0,1,2,3,4 --modes fwd,fwd+bwd \
      --no-fla --gates gdn
    rows "profile_gdn$val" "sum of kernels\|_scan_kernel" "prefetch_gdn=$val: "
  done
  ;;
129)
  # the KDA forward scan with beta one chunk ahead too (HYBRIDIZE_GDR_PREFETCH=2) against G_last alone (1, the default)
  step correctness 150 HYBRIDIZE_GDR_PREFETCH=2 kernels_correctness.py --jobs 16 --no-ref-check
  rows correctness "PASS\|FAILED"
  ours_ok correctness | grep "FAIL\|aligned"
  for val in 1 2; do
    step "profile_pf$val" 150 HYBRIDIZE_GDR_PREFETCH=$val kernel_profile.py --shapes 0,1,2,3,4 --modes fwd,fwd+bwd \
      --no-fla --gates kda
    rows "profile_pf$val" "sum of kernels\|_scan_kernel" "prefetch=$val: "
  done
  ;;
128)
  # (history: ran on uncommitted code; HYBRIDIZE_GDR_DH_PREFETCH and the u tile's prefetch are gone) the sequential
  # kernels' loads that feed no product as loaded, one chunk ahead. Forward scan: HYBRIDIZE_GDR_PREFETCH
  # (per-channel gates) 1 = G_last, 2 = and u's tile and beta; HYBRIDIZE_GDR_PREFETCH_GDN the same for scalar gates.
  # dh scan: HYBRIDIZE_GDR_DH_PREFETCH 1 = G_last, 2 = and Aqk^T do (dvl), 3 = and w
  step correctness 150 HYBRIDIZE_GDR_PREFETCH_GDN=2 HYBRIDIZE_GDR_DH_PREFETCH=3 kernels_correctness.py --jobs 16 \
    --no-ref-check
  rows correctness "PASS\|FAILED"
  ours_ok correctness | grep "FAIL\|aligned"
  for cfg in ${CFGS:-1_0_0 2_2_0 2_2_2 2_2_3}; do
    IFS=_ read -r pk pg pd <<< "$cfg"
    step "profile_$cfg" 100 HYBRIDIZE_GDR_PREFETCH=$pk HYBRIDIZE_GDR_PREFETCH_GDN=$pg HYBRIDIZE_GDR_DH_PREFETCH=$pd \
      kernel_profile.py --shapes 0,1,4 --modes fwd+bwd --no-fla
    rows "profile_$cfg" "sum of kernels\|_scan_kernel\|_dh_kernel" "kda_gdn_dh=$cfg: "
  done
  ;;
127)
  # the SASS of our sequential kernels with source lines, to read ncu's per-instruction stall samples (PART=125's
  # sass.csv) against the Python lines; then PART=125 for fla alone
  sass_dump 127 _dh_kernel _scan_kernel
  IMPLS=fla NCU_KERNELS=dhu NCU_SECS=${NCU_SECS:-450} PART=125 bash benchmarks/kernels_next_gpu.sh
  ;;
126)
  # (history: ran on uncommitted code whose dh scan also had the G_last prefetch) the sequential kernels' G_last
  # loaded one chunk ahead against in the step
  step correctness 150 kernels_correctness.py --jobs 16 --no-ref-check
  rows correctness "PASS\|FAILED"
  ours_ok correctness | grep "FAIL\|aligned"
  for val in 1 0; do
    step "profile_pf$val" 130 HYBRIDIZE_GDR_PREFETCH=$val kernel_profile.py --shapes 0,1,4 --modes fwd+bwd --no-fla
    rows "profile_pf$val" "sum of kernels\|_dh_kernel\|_scan_kernel" "prefetch=$val: "
  done
  ;;
124)
  for val in 0 32; do
    step "profile_bv$val" 150 HYBRIDIZE_GDR_DH_BV=$val kernel_profile.py --shapes 1,3 --modes fwd+bwd --no-fla
    rows "profile_bv$val" "sum of kernels\|_dh_kernel" "dh_BV=$val: "
  done
  step correctness_bv32 150 HYBRIDIZE_GDR_DH_BV=32 kernels_correctness.py --jobs 16 --no-ref-check
  ours_ok correctness_bv32 | grep "FAIL\|aligned"
  rows correctness_bv32 "PASS\|FAILED"
  ;;
123)
  step profile_fwd 540 kernel_profile.py --shapes 0,1,2,3,4 --modes fwd
  rows profile_fwd "sum of kernels"
  ;;
122)
  step dh_sweep 500 kernel_stages.py --shapes "" --dh-sweep 0,1,4 --dh-gates kda --sweep-inter mixed --no-fla \
    --dh-grid "bv=16,32,64;warps=4;stages=1,2,3;dvn=kernel"
  rows dh_sweep "^| dh sweep"
  ;;
121)
  for cfg in 1_0 0_1 1_1; do
    step "correctness_$cfg" 150 HYBRIDIZE_GDR_BWD_H16=${cfg%_*} HYBRIDIZE_GDR_DH_STORE16=${cfg#*_} \
      kernels_correctness.py --jobs 16 --no-ref-check --only bf16
  done
  for cfg in 0_0 1_0 0_1 1_1; do
    step "profile_$cfg" 100 HYBRIDIZE_GDR_BWD_H16=${cfg%_*} HYBRIDIZE_GDR_DH_STORE16=${cfg#*_} kernel_profile.py \
      --shapes 0,1,4 --modes fwd+bwd --no-fla
    rows "profile_$cfg" "sum of kernels" "h16_dh16=$cfg: "
  done
  for cfg in 1_0 0_1 1_1; do
    ours_ok "correctness_$cfg" | grep "FAIL\|aligned" | sed "s/^/h16_dh16=$cfg: /"
    rows "correctness_$cfg" "PASS\|FAILED" "h16_dh16=$cfg: "
  done
  ;;
120)
  step dh_sweep 540 kernel_stages.py --shapes "" --dh-sweep "${SHAPES:-0,1,4}" --dh-gates kda --sweep-inter mixed --no-fla \
    --dh-grid "bv=16,32,64;warps=4;stages=1,2;dvn=kernel;qt=0,1;wsplit=0,1"
  rows dh_sweep "^| dh sweep"
  ;;
119)
  step correctness 200 kernels_correctness.py --jobs 16 --no-ref-check
  for cfg in 1_1 0_0 1_0 0_1; do
    step "profile_$cfg" 120 HYBRIDIZE_GDR_DH_QT=${cfg%_*} HYBRIDIZE_GDR_DH_WSPLIT=${cfg#*_} kernel_profile.py \
      --shapes 0,1,4 --modes fwd+bwd --no-fla --gates kda
    rows "profile_$cfg" "sum of kernels\|_dh_kernel\|_decayed" "qt_wsplit=$cfg: "
  done
  ours_ok correctness | grep "FAIL\|aligned"
  rows correctness "PASS\|FAILED"
  ;;
118)
  step correctness 200 kernels_correctness.py --jobs 16 --no-ref-check
  step overlap 330 overlap_bench.py --shapes "${SHAPES:-0,4}" ${FLA:+--fla}
  rows overlap "^| [GK]D[AN]"
  ours_ok correctness | grep "FAIL\|aligned"
  rows correctness "PASS\|FAILED"
  ;;
106)
  step correctness 200 kernels_correctness.py --jobs 16 --no-ref-check
  step dh_sweep 240 kernel_stages.py --shapes "" --dh-sweep 0,1,4 --dh-gates kda --sweep-inter mixed --no-fla \
    --dh-grid "bv=16,32;warps=4;stages=1,2,3;dvn=kernel;dec=32,16"
  for val in 1 0; do
    step "profile_d$val" 150 HYBRIDIZE_BENCH_L2=1 HYBRIDIZE_GDR_DECAYED16=$val kernel_profile.py --shapes 0,1,4 \
      --modes fwd+bwd --no-fla --gates kda
    rows "profile_d$val" "sum of kernels\|_dh_kernel\|_scan_kernel\|_solve_kernel\|_decayed" "decayed16=$val: "
  done
  rows dh_sweep "^| dh sweep"
  ours_ok correctness | grep "FAIL\|aligned"
  rows correctness "PASS\|FAILED"
  ;;
110)
  step correctness 200 kernels_correctness.py --jobs 16 --no-ref-check
  for cfg in 1_1 0_1 1_0 0_0; do
    step "profile_l2_$cfg" 150 HYBRIDIZE_BENCH_L2=1 HYBRIDIZE_GDR_BWD_KG_PAIR=${cfg%_*} HYBRIDIZE_GDR_DECAYED16=${cfg#*_} \
      kernel_profile.py --shapes 0,1,4 --modes fwd+bwd --no-fla --gates kda
  done
  for val in 1 0; do
    step "profile_nol2_$val" 150 HYBRIDIZE_GDR_BWD_KG_PAIR=$val kernel_profile.py --shapes 0,1,4 --modes fwd+bwd \
      --no-fla --gates kda
  done
  for run in l2_1_1 l2_0_1 l2_1_0 l2_0_0 nol2_1 nol2_0; do
    rows "profile_$run" "sum of kernels\|_dh_kernel\|_scan_kernel\|_solve" "pair/dec16 $run: "
  done
  ours_ok correctness | grep "FAIL\|aligned"
  rows correctness "PASS\|FAILED"
  ;;
117)
  step correctness 200 kernels_correctness.py --jobs 16 --no-ref-check
  for val in 1 0; do
    step "profile_sliced$val" 120 HYBRIDIZE_GDR_BWD_SLICED=$val kernel_profile.py --shapes 0,1,4 --modes fwd+bwd \
      --no-fla --gates kda
  done
  step bwd_sweep 150 kernel_stages.py --shapes "" --bwd-sweep 0,1 --bwd-gates kda --sweep-inter mixed --no-fla \
    --bwd-grid "bk=32;bv=32,64;warps=8;stages=2,3"
  rows profile_sliced1 "sum of kernels\|_bwd_kernel" "sliced: "
  rows profile_sliced0 "sum of kernels\|_bwd_kernel" "unsliced: "
  rows bwd_sweep "^| bwd sweep" | cut -c1-300
  ours_ok correctness | grep "FAIL\|aligned"
  rows correctness "PASS\|FAILED"
  step profile_fla 200 kernel_profile.py --shapes 0 --modes fwd+bwd --gates kda
  rows profile_fla "sum of kernels"
  ;;
116)
  step correctness 200 kernels_correctness.py --jobs 16 --no-ref-check
  for val in 1 0; do
    step "profile_keep$val" 150 HYBRIDIZE_BENCH_L2=1 HYBRIDIZE_GDR_KEEP_L2=$val kernel_profile.py --shapes 0,1,4 \
      --modes fwd+bwd --no-fla
  done
  step profile_fla_l2 280 HYBRIDIZE_BENCH_L2=1 kernel_profile.py --shapes 0 --modes fwd+bwd --gates kda
  rows profile_keep1 "sum of kernels" "keep: "
  rows profile_keep0 "sum of kernels" "recompute: "
  rows profile_fla_l2 "sum of kernels" "fused L2: "
  ours_ok correctness | grep "FAIL\|aligned"
  rows correctness "PASS\|FAILED"
  ;;
114)
  step correctness 200 kernels_correctness.py --jobs 16 --no-ref-check
  step profile_bwd 150 kernel_profile.py --shapes 0,1,4 --modes fwd+bwd --no-fla
  step bench 220 "${BENCH[@]}" --shapes 0,1,2
  rows profile_bwd "sum of kernels\|_bwd_kernel\|_dh_kernel"
  rows bench "^| [GK]D[AN] f"
  ours_ok correctness | grep "FAIL\|aligned"
  rows correctness "PASS\|FAILED"
  ;;
115)
  step profile_fla 280 kernel_profile.py --shapes 0 --modes fwd+bwd --gates kda
  step profile_fla_l2 280 HYBRIDIZE_BENCH_L2=1 kernel_profile.py --shapes 0 --modes fwd+bwd --gates kda
  rows profile_fla "sum of kernels" "no L2: "
  rows profile_fla_l2 "sum of kernels" "fused L2: "
  ;;
113)
  step bwd_kda 300 kernel_stages.py --shapes "" --bwd-sweep 0,1,4 --bwd-gates kda --sweep-inter mixed --no-fla \
    --bwd-grid "bk=32;bv=32;warps=8;stages=3,4"
  step bwd_gdn 300 kernel_stages.py --shapes "" --bwd-sweep 0,1,4 --bwd-gates gdn --sweep-inter mixed --no-fla \
    --bwd-grid "bk=64;bv=32;warps=8;stages=2,3"
  rows bwd_kda "^| bwd sweep" | cut -c1-300
  rows bwd_gdn "^| bwd sweep" | cut -c1-300
  ;;
112)
  step bwd_sweep 400 kernel_stages.py --shapes "" --bwd-sweep 0,1,4 --bwd-gates kda --sweep-inter mixed --no-fla \
    --bwd-grid "bk=16,32,64;bv=32,64;warps=8;stages=1,2,3"
  rows bwd_sweep "^| bwd sweep" | cut -c1-400
  ;;
111)
  step probe 300 scan_recompute_probe.py --shapes 0,1,4
  rows probe "^| scan probe"
  ;;
108)
  step correctness 200 kernels_correctness.py --jobs 16 --no-ref-check
  for rep in 1 2; do
    for val in kg 0 both; do
      step "profile_${val}_$rep" 150 HYBRIDIZE_BENCH_L2=1 HYBRIDIZE_GDR_DECAYED16=$val kernel_profile.py --shapes 0,1,4 \
        --modes fwd+bwd --no-fla --gates kda
    done
  done
  for rep in 1 2; do
    for val in kg 0 both; do
      rows "profile_${val}_$rep" "sum of kernels\|_dh_kernel\|_scan_kernel" "$val ($rep): "
    done
  done
  ours_ok correctness | grep "FAIL\|aligned"
  rows correctness "PASS\|FAILED"
  ;;
107)
  step profile_fla 400 HYBRIDIZE_BENCH_L2=1 kernel_profile.py --shapes 0 --modes fwd+bwd --gates kda
  rows profile_fla "sum of kernels"
  ;;
105)
  step bench 200 "${BENCH[@]}" --shapes 0,2
  rows bench "^| [GK]D[AN] f" "default "
  ;;
104)
  step correctness 200 HYBRIDIZE_GDR_BWD_STAGES=2 kernels_correctness.py --jobs 16 --no-ref-check
  for val in 1 2; do
    step "profile_s$val" 150 HYBRIDIZE_GDR_BWD_STAGES=$val kernel_profile.py --shapes 0,1,4 --modes fwd+bwd --no-fla
    rows "profile_s$val" "sum of kernels\|_bwd_kernel" "stages $val: "
  done
  ours_ok correctness | grep "FAIL" | head -8
  rows correctness "PASS\|FAILED"
  ;;
103)
  step bench_32k 200 "${BENCH[@]}" --shapes 2
  rows bench_32k "^| [GK]D[AN] f" "default "
  ;;
102)
  step correctness 200 kernels_correctness.py --jobs 16 --no-ref-check
  step dh_sweep 150 kernel_stages.py --shapes "" --dh-sweep 1,3 --dh-gates gdn --sweep-inter mixed --no-fla \
    --dh-grid "bv=64;warps=4;stages=2,3;dvn=kernel"
  for val in 3 2; do
    step "profile_s$val" 100 HYBRIDIZE_GDR_DH_SPLIT_STAGES=$val kernel_profile.py --shapes 0,1,4 --modes fwd+bwd --no-fla \
      --gates gdn
    rows "profile_s$val" "sum of kernels\|_dh_kernel" "stages $val: "
  done
  ours_ok correctness | grep "FAIL\|aligned"
  rows correctness "PASS\|FAILED"
  rows dh_sweep "^| dh\|rror"
  ;;
101)
  step dh_sweep 200 kernel_stages.py --shapes "" --dh-sweep 0,4 --dh-gates gdn --sweep-inter mixed --no-fla \
    --dh-grid "bv=16,32;warps=4;stages=2,3;dvn=kernel"
  for val in 0 1 0 1; do
    step "profile_$val" 100 HYBRIDIZE_GDR_DH_SPLIT_KDA=$val kernel_profile.py --shapes 4 --modes fwd+bwd --no-fla --gates kda
    rows "profile_$val" "sum of kernels\|_dh_kernel" "split $val: "
  done
  rows dh_sweep "^| dh\|rror"
  ;;
98)
  step sweep_pairs 300 kernel_stages.py --shapes "" --split-sweep 0,1,4 --split-only "pairs decayed BK" --sweep-gates kda \
    --sweep-inter mixed --no-fla
  rows sweep_pairs "^| split"
  ;;
97)
  step correctness 200 kernels_correctness.py --jobs 16 --no-ref-check
  for val in 1 0 1 0; do
    step "profile_qg$val" 100 HYBRIDIZE_GDR_QG=$val kernel_profile.py --shapes 0,1,2,3,4 --modes fwd --no-fla --gates kda
    rows "profile_qg$val" "sum of kernels\|_output\|_pairs" "qg $val: "
  done
  ours_ok correctness | grep "FAIL" | head -8
  rows correctness "PASS\|FAILED"
  ;;
95)
  step correctness 200 kernels_correctness.py --jobs 16 --no-ref-check
  for code in ${CODES:-new r17 new r17}; do
    if [[ $code == r17 ]]; then pp=.dev/r17:$PYTHONPATH; else pp=$PYTHONPATH; fi
    step "profile_$code" 90 "PYTHONPATH=$pp" kernel_profile.py --shapes 0,1,4 --modes fwd --no-fla
    rows "profile_$code" "sum of kernels\|_pairs\|_solve" "$code "
  done
  ours_ok correctness | grep "FAIL" | head -8
  rows correctness "PASS\|FAILED"
  ;;
96)
  for code in ${CODES:-new r17}; do
    if [[ $code == r17 ]]; then pp=.dev/r17:$PYTHONPATH; else pp=$PYTHONPATH; fi
    step "profile_$code" 150 "PYTHONPATH=$pp" kernel_profile.py --shapes 2,3 --modes fwd --no-fla
    step "profile_bwd_$code" 100 "PYTHONPATH=$pp" kernel_profile.py --shapes 0 --modes fwd+bwd --no-fla
    rows "profile_$code" "sum of kernels" "$code "
    rows "profile_bwd_$code" "sum of kernels\|_bwd\|_dh" "$code "
  done
  ;;
94)
  step correctness 200 HYBRIDIZE_GDR_DH_SPLIT_KDA=1 kernels_correctness.py --jobs 16 --no-ref-check --only kda
  step dh_sweep 240 kernel_stages.py --shapes "" --dh-sweep 0,1,4 --dh-gates kda --sweep-inter mixed --no-fla \
    --dh-grid "bv=16,32,64;warps=4;stages=2,3;dvn=kernel;split=0,1"
  for val in 0 1; do
    step "profile_$val" 100 HYBRIDIZE_GDR_DH_SPLIT_KDA=$val kernel_profile.py --shapes 0 --modes fwd+bwd --no-fla --gates kda
    rows "profile_$val" "sum of kernels\|_dh_kernel" "split $val: "
  done
  ours_ok correctness | grep "FAIL" | head -8
  rows correctness "PASS\|FAILED"
  rows dh_sweep "^| dh\|rror"
  ;;
83)
  step graphs 200 kernel_graphs.py --shapes 0,1,2,3,4 --no-fla --check 10
  step correctness 200 kernels_correctness.py --jobs 16 --no-ref-check
  ours_ok correctness | grep "FAIL" | head -8
  rows correctness "PASS\|FAILED"
  rows graphs "^| \|Error\|error"
  ;;
86)
  step timeline 150 kernel_timeline.py --shapes 0
  step timeline_s2 100 HYBRIDIZE_GDR_SCAN_STAGES=2 kernel_timeline.py --shapes 0 --modes auto
  step timeline_s1 100 HYBRIDIZE_GDR_SCAN_STAGES=1 kernel_timeline.py --shapes 0 --modes auto
  cat "$OUT/timeline.log" "$OUT/timeline_s2.log" "$OUT/timeline_s1.log"
  ;;
87)
  for seg in 8 32 128; do
    step "graphs_seg$seg" 120 HYBRIDIZE_GDR_OVERLAP_SEG=$seg kernel_graphs.py --shapes 0,2 --gates gdn --no-fla --check 5
    rows "graphs_seg$seg" "^| [GK]D\|rror" "seg $seg "
  done
  step timeline_graph 100 HYBRIDIZE_GDR_OVERLAP_SEG=32 kernel_timeline.py --shapes 0 --gates gdn --graph
  cat "$OUT/timeline_graph.log"
  ;;
93)
  step correctness 200 kernels_correctness.py --jobs 16 --no-ref-check
  step profile 120 kernel_profile.py --shapes 0,1,4 --modes fwd --no-fla
  step timeline_graph 100 kernel_timeline.py --shapes 0 --graph
  ours_ok correctness | grep "FAIL" | head -8
  rows correctness "PASS\|FAILED"
  rows profile "sum of kernels\|_scan"
  grep "span\|_scan_kernel:" "$OUT/timeline_graph.log"
  ;;
92)
  step correctness 200 kernels_correctness.py --jobs 16 --no-ref-check
  step profile_fla 150 kernel_profile.py --shapes 4 --modes fwd
  step bench 150 "${BENCH[@]}" --shapes 4
  ours_ok correctness | grep "FAIL" | head -8
  rows correctness "PASS\|FAILED"
  rows profile_fla "sum of kernels\|_scan"
  rows bench "^| [GK]D[AN] f\|^| decode"
  ;;
91)
  step correctness 200 kernels_correctness.py --jobs 16 --no-ref-check
  step profile_fla 150 kernel_profile.py --shapes 4 --modes fwd
  step graphs_fla 100 kernel_graphs.py --shapes 4
  step profile_off 80 HYBRIDIZE_GDR_SCAN_NARROW_SOLVE_BV=0 kernel_profile.py --shapes 4 --modes fwd --no-fla
  step graphs_off 80 HYBRIDIZE_GDR_SCAN_NARROW_SOLVE_BV=0 kernel_graphs.py --shapes 4 --no-fla
  ours_ok correctness | grep "FAIL\|D64" | head -12
  rows correctness "PASS\|FAILED"
  rows profile_fla "sum of kernels\|_scan" "cap 32: "
  rows profile_off "sum of kernels\|_scan" "no cap: "
  rows graphs_fla "^| [GK]" "cap 32: "
  rows graphs_off "^| [GK]" "no cap: "
  ;;
90)
  step sweep_scan_d64 300 kernel_stages.py --shapes "" --sweep 4 --sweep-gates gdn,kda --sweep-inter mixed --no-fla
  rows sweep_scan_d64 "sweep"
  ;;
89)
  step profile_bf16 150 HYBRIDIZE_GDR_INTER=bf16 kernel_profile.py --shapes 0,1,2,3,4 --modes fwd --no-fla
  step correctness_bf16 150 kernels_correctness.py --jobs 16 --no-ref-check --only bf16 --inter-variants bf16
  rows profile_bf16 "sum of kernels\|rror"
  grep "aligned" "$OUT/correctness_bf16.log" | grep -i "bf16" | cut -c1-200 | head -12
  rows correctness_bf16 "PASS\|FAILED"
  ;;
88)
  step sweep_pairs 300 kernel_stages.py --shapes "" --split-sweep 0,1 --split-only "pairs decayed" --sweep-gates gdn,kda \
    --sweep-inter mixed --no-fla
  rows sweep_pairs "^| split"
  ;;
84|85)
  step graphs_fla 280 kernel_graphs.py --shapes "${SHAPES:-$([[ $PART == 84 ]] && echo 0,1,2 || echo 3,4)}"
  [[ $PART == 84 ]] && step timeline_graph 100 kernel_timeline.py --shapes 0 --graph
  rows graphs_fla "^| \|rror\|capture"
  [[ $PART == 84 ]] && grep "span" "$OUT/timeline_graph.log"
  ;;
82)
  step correctness 200 kernels_correctness.py --jobs 16 --no-ref-check
  step profile 120 kernel_profile.py --shapes 1,3 --modes fwd --no-fla
  ours_ok correctness | grep "FAIL\|aligned"
  rows correctness "PASS\|FAILED"
  rows profile "sum of kernels\|Error"
  ;;
81)
  for code in ${CODES:-r14 r16 r14 r16}; do
    if [[ $code == r14 ]]; then pp=.r14:$PYTHONPATH; else pp=$PYTHONPATH; fi
    step "bench_$code" 140 "PYTHONPATH=$pp" "${BENCH[@]}" --shapes 0,4
    rows "bench_$code" "^| [GK]D[AN] f" "$code "
  done
  ;;
80|99)
  step correctness 200 kernels_correctness.py --jobs 16 --no-ref-check
  step profile_fla 240 kernel_profile.py --shapes 0,1,2 --modes fwd
  step profile_bwd 100 kernel_profile.py --shapes 0 --modes fwd+bwd --no-fla
  ours_ok correctness | grep "FAIL\|aligned"
  rows correctness "PASS\|FAILED"
  rows profile_fla "sum of kernels"
  rows profile_bwd "sum of kernels"
  ;;
79)
  for val in 64x2 32x3 32x2; do
    step "profile_launch_$val" 100 "HYBRIDIZE_GDR_SPLIT_KG_LAUNCH=$val" kernel_profile.py --shapes 1,3 --modes fwd --no-fla
  done
  step correctness_bv64 200 HYBRIDIZE_GDR_SCAN_SOLVE_MIN=0 kernels_correctness.py --jobs 16 --no-ref-check --scan-bv 64
  for val in 64x2 32x3 32x2; do
    rows "profile_launch_$val" "KDA.*sum of kernels\|KDA.*_scan\|Error" "$val "
  done
  ours_ok correctness_bv64 | grep "kda\|FAIL"
  rows correctness_bv64 "PASS\|FAILED"
  ;;
78)
  step correctness 200 kernels_correctness.py --jobs 16 --no-ref-check
  for val in fp32 bf16 split; do
    step "profile_kg_$val" 100 "HYBRIDIZE_GDR_KG_FORMAT=$val" kernel_profile.py --shapes 0,1,2,3,4 --modes fwd --no-fla
  done
  ours_ok correctness | grep "kda\|FAIL"
  rows correctness "PASS\|FAILED"
  for val in fp32 bf16 split; do
    rows "profile_kg_$val" "KDA.*sum of kernels\|KDA.*_scan\|KDA.*_pairs" "$val "
  done
  ;;
77)
  step correctness_kg16 200 HYBRIDIZE_GDR_KG16=1 kernels_correctness.py --jobs 16 --no-ref-check
  for val in 0 1; do
    step "profile_kg16_$val" 90 "HYBRIDIZE_GDR_KG16=$val" kernel_profile.py --shapes 0,1,2,3,4 --modes fwd --no-fla
  done
  step sweep_kg16 200 HYBRIDIZE_GDR_KG16=1 kernel_stages.py --shapes "" --sweep 0,2 --sweep-gates kda --no-fla
  ours_ok correctness_kg16 | grep "kda\|FAIL"
  rows correctness_kg16 "PASS\|FAILED"
  rows profile_kg16_0 "KDA.*sum of kernels\|KDA.*_scan" "kg32 "
  rows profile_kg16_1 "KDA.*sum of kernels\|KDA.*_scan\|KDA.*_pairs" "kg16 "
  rows sweep_kg16 "solve"
  ;;
76|100)
  step bench_all 260 "${BENCH[@]}" --shapes 0,1,2,3,4
  step profile_fla 300 kernel_profile.py --shapes 3,4 --modes fwd
  rows bench_all "^| [GK]D[AN] f\|^| decode" "default "
  rows profile_fla "sum of kernels"
  ;;
75)
  step correctness 200 kernels_correctness.py --jobs 16 --no-ref-check
  for val in 0 1; do
    step "profile_decayed$val" 90 "HYBRIDIZE_GDR_PAIRS_DECAYED=$val" kernel_profile.py --shapes 0,1,2,3,4 --modes fwd \
      --no-fla
  done
  step profile_fla 230 kernel_profile.py --shapes 0,1,2,3,4 --modes fwd
  ours_ok correctness | grep "kda\|FAIL"
  rows correctness "PASS\|FAILED"
  rows profile_decayed0 "KDA.*sum of kernels\|KDA.*_pairs\|KDA.*_decayed" "decayed0 "
  rows profile_decayed1 "KDA.*sum of kernels\|KDA.*_pairs" "decayed1 "
  rows profile_fla "sum of kernels"
  ;;
74)
  step correctness_loads 200 HYBRIDIZE_GDR_PAIRS_LOADS=1 kernels_correctness.py --jobs 16 --no-ref-check
  step sweep_pairs 200 kernel_stages.py --shapes "" --split-sweep 0,1,2 --sweep-gates kda --sweep-inter mixed --no-fla \
    --split-only "pairs + inverse doubling"
  for val in 0 1; do
    step "profile_loads$val" 90 "HYBRIDIZE_GDR_PAIRS_LOADS=$val" kernel_profile.py --shapes 0,1,2,4 --modes fwd --no-fla
  done
  ours_ok correctness_loads | grep "kda\|FAIL"
  rows correctness_loads "PASS\|FAILED"
  rows sweep_pairs "^| split"
  rows profile_loads0 "sum of kernels\|_pairs" "loads0 "
  rows profile_loads1 "sum of kernels\|_pairs" "loads1 "
  ;;
1) compare HYBRIDIZE_GDR_RECOMPUTE solve none ;;
3) compare HYBRIDIZE_GDR_BWD fused split ;;
4)
  NEW=(HYBRIDIZE_GDR_INVERSE=doubling HYBRIDIZE_GDR_PAIRS_INVERSE=1)
  STAGES=(kernel_stages.py --shapes 0,4 --designs split,full --inter fp32,bf16 --no-fla)
  step correctness_prep 150 "${NEW[@]}" kernels_correctness.py --jobs 16 --no-ref-check
  step stages_base 240 "${STAGES[@]}" --split-sweep 0,4
  step stages_new 120 "${NEW[@]}" "${STAGES[@]}"
  rows stages_base "^| [GK]D[AN]" "base "
  rows stages_new "^| [GK]D[AN]" "new "
  rows stages_base "^| split"
  ours_ok correctness_prep
  ;;
5)
  step correctness_gdn 100 kernels_correctness.py --jobs 16 --no-ref-check --only gdn
  step profile_default 150 kernel_profile.py --shapes 0,4 --modes fwd,fwd+bwd
  step profile_bf16_none 80 "${BF16_NONE[@]}" kernel_profile.py --shapes 0,4 --modes fwd,fwd+bwd --no-fla
  for inter in fp32 bf16; do
    step "bench_none_$inter" 110 HYBRIDIZE_GDR_INTER=$inter HYBRIDIZE_GDR_RECOMPUTE=none "${BENCH[@]}" --shapes 0,2
    rows "bench_none_$inter" "^| [GK]D[AN] f" "none $inter "
  done
  rows profile_default "sum of kernels"
  rows profile_bf16_none "sum of kernels"
  ours_ok correctness_gdn
  ;;
6)
  step profile_bf16_none_fla 280 "${BF16_NONE[@]}" kernel_profile.py --shapes 0 --modes fwd,fwd+bwd
  step profile_default 80 kernel_profile.py --shapes 0,4 --modes fwd,fwd+bwd --no-fla
  step bench_default 130 "${BENCH[@]}" --shapes 0,2,4
  rows bench_default "^| [GK]D[AN] f\|^| decode"
  rows profile_bf16_none_fla "sum of kernels"
  rows profile_default "sum of kernels"
  ;;
7)
  step profile_kda_bwd_fla 500 "${BF16_NONE[@]}" kernel_profile.py --shapes 0 --modes fwd+bwd --gates kda
  rows profile_kda_bwd_fla "sum of kernels"
  ;;
8)
  step correctness_solve_all 120 HYBRIDIZE_GDR_SOLVE_ALL=1 kernels_correctness.py --jobs 16 --no-ref-check
  step stages 300 kernel_stages.py --shapes 0 --designs split --inter fp32,bf16 --no-fla --split-sweep 0 \
    --output-sweep 0
  rows stages "^| [GK]D[AN]\|solve\|output sweep"
  ours_ok correctness_solve_all
  ;;
9)
  step bench_default 140 "${BENCH[@]}" --shapes 0,2,4
  step bench_bf16_none 120 "${BF16_NONE[@]}" "${BENCH[@]}" --shapes 0,2
  step profile_default 80 kernel_profile.py --shapes 0 --modes fwd,fwd+bwd --no-fla
  rows bench_default "^| [GK]D[AN] f" "default "
  rows bench_bf16_none "^| [GK]D[AN] f" "bf16+none "
  rows profile_default "sum of kernels"
  ;;
10)
  step correctness_kda 100 HYBRIDIZE_GDR_PAIRS_INVERSE_KDA=1 kernels_correctness.py --jobs 16 --no-ref-check \
    --only kda
  for val in 0 1; do
    step "stages_$val" 100 HYBRIDIZE_GDR_PAIRS_INVERSE_KDA=$val kernel_stages.py --shapes 0,4 --designs split \
      --inter fp32,bf16 --no-fla
    rows "stages_$val" "^| KDA" "PAIRS_INVERSE_KDA=$val "
  done
  step sweep 150 kernel_stages.py --shapes 0 --designs split --inter bf16 --no-fla --split-sweep 0
  rows sweep "pairs"
  ours_ok correctness_kda
  ;;
11)
  step correctness_mixed 150 HYBRIDIZE_GDR_INTER=mixed kernels_correctness.py --jobs 16 --no-ref-check
  for val in fp32 mixed; do
    step "bench_$val" 110 HYBRIDIZE_GDR_INTER=$val "${BENCH[@]}" --shapes 0,4
  done
  step profile_mixed 80 HYBRIDIZE_GDR_INTER=mixed kernel_profile.py --shapes 0 --modes fwd,fwd+bwd --no-fla
  for val in fp32 mixed; do rows "bench_$val" "^| [GK]D[AN] f" "$val "; done
  rows profile_mixed "sum of kernels"
  ours_ok correctness_mixed
  ;;
12)
  P=(kernel_profile.py --modes fwd+bwd --no-fla)
  step prof_d64_fp32 60 HYBRIDIZE_GDR_INTER=fp32 "${P[@]}" --shapes 4 --gates gdn
  step prof_d64_mixed 60 HYBRIDIZE_GDR_INTER=mixed "${P[@]}" --shapes 4 --gates gdn
  step prof_d64_mixed_dh32 60 HYBRIDIZE_GDR_INTER=mixed HYBRIDIZE_GDR_DH16= "${P[@]}" --shapes 4 --gates gdn
  step prof_kda_mixed_wh32 60 HYBRIDIZE_GDR_INTER=mixed HYBRIDIZE_GDR_WH16=gdn "${P[@]}" --shapes 0 --gates kda
  for wh in gdn,kda gdn; do
    step "sweep_kda_wh16_$wh" 150 HYBRIDIZE_GDR_WH16=$wh kernel_stages.py --shapes "" --sweep 0 --sweep-gates kda \
      --sweep-inter mixed --no-fla
    rows "sweep_kda_wh16_$wh" "scan sweep" "WH16=$wh " | cut -c1-400
  done
  for log in prof_d64_fp32 prof_d64_mixed prof_d64_mixed_dh32 prof_kda_mixed_wh32; do
    rows $log "sum of kernels\|_scan_kernel\|_dh_kernel\|_bwd_kernel\|_prep_kernel\|_solve\|_output" "$log "
  done
  ;;
13)
  step correctness_gdn_dh32 100 HYBRIDIZE_GDR_INTER=mixed HYBRIDIZE_GDR_DH16= kernels_correctness.py --jobs 16 \
    --no-ref-check --only gdn
  P=(kernel_profile.py --modes fwd+bwd --no-fla --shapes 0 --gates gdn)
  step prof_mixed 60 HYBRIDIZE_GDR_INTER=mixed "${P[@]}"
  step prof_mixed_dh32 60 HYBRIDIZE_GDR_INTER=mixed HYBRIDIZE_GDR_DH16= "${P[@]}"
  step prof_fwd_fla 150 HYBRIDIZE_GDR_INTER=mixed kernel_profile.py --modes fwd --shapes 0 --gates gdn
  for val in fp32 mixed; do
    step "bench32k_$val" 120 HYBRIDIZE_GDR_INTER=$val "${BENCH[@]}" --shapes 2
    rows "bench32k_$val" "^| GDN f" "$val "
  done
  for log in prof_mixed prof_mixed_dh32 prof_fwd_fla; do
    rows $log "sum of kernels\|_dh_kernel" "$log "
  done
  ours_ok correctness_gdn_dh32
  ;;
14) defaults profile_default 100 --shapes 0,4 --modes fwd,fwd+bwd --no-fla ;;
15)
  S=(kernel_stages.py --shapes 0 --designs split --inter fp32,mixed --no-fla)
  for regs in 0 1; do
    step "stages_kda_regs$regs" 120 HYBRIDIZE_GDR_MIXED_GATES=gdn,kda HYBRIDIZE_GDR_KG_REGS=$regs "${S[@]}"
    rows "stages_kda_regs$regs" "^| KDA" "KG_REGS=$regs "
  done
  ;;
16)
  # call 6 ran this with an experiment since removed: HYBRIDIZE_GDR_REGS=none|scan|all (all: w and kg
  # in the dh scan and vn in the output kernel through registers too; none = KG_REGS=0, scan = 1)
  step correctness 150 HYBRIDIZE_GDR_MIXED_GATES=gdn,kda kernels_correctness.py --jobs 16 --no-ref-check
  P=(kernel_profile.py --shapes 0 --modes fwd+bwd --no-fla)
  step prof_kda_fp32 70 "${P[@]}" --gates kda
  for regs in 0 1; do
    step "prof_mixed_$regs" 90 HYBRIDIZE_GDR_MIXED_GATES=gdn,kda HYBRIDIZE_GDR_KG_REGS=$regs "${P[@]}"
  done
  for log in prof_kda_fp32 prof_mixed_0 prof_mixed_1; do
    rows $log "sum of kernels\|_scan_kernel\|_dh_kernel\|_output\|_bwd_kernel" "$log "
  done
  ours_ok correctness
  ;;
17) defaults profile_fla_fwd 200 --shapes 0 --modes fwd ;;
18)
  # an experiment since removed (not helpful): HYBRIDIZE_GDR_BWD_REGS=1 passed h, dh, vn (and dvb, and
  # the value kernel's vn, dvn) through registers in the backward's stage 2
  P=(kernel_profile.py --shapes 0,4 --modes fwd+bwd --no-fla)
  for regs in 0 1; do
    step "prof_bwd_regs$regs" 150 HYBRIDIZE_GDR_BWD_REGS=$regs "${P[@]}"
    rows "prof_bwd_regs$regs" "sum of kernels\|_bwd_kernel\|_bwd_values" "BWD_REGS=$regs "
  done
  ;;
19) defaults profile_default 100 --shapes 0 --modes fwd,fwd+bwd --no-fla ;;
20)
  step bwd_sweep 420 kernel_stages.py --shapes "" --bwd-sweep 0 --no-fla
  rows bwd_sweep "bwd sweep" | cut -c1-600
  ;;
21)
  step correctness 150 kernels_correctness.py --jobs 16 --no-ref-check
  step bench_default 150 "${BENCH[@]}" --shapes 0,2,4
  step bwd_sweep 150 kernel_stages.py --shapes "" --bwd-sweep 4 --no-fla
  rows bench_default "^| [GK]D[AN] f" "default "
  rows bwd_sweep "bwd sweep" | cut -c1-600
  ours_ok correctness
  ;;
22) defaults profile_default 100 --shapes 0,4 --modes fwd+bwd --no-fla ;;
23)
  step sweeps_mixed 500 kernel_stages.py --shapes "" --sweep 0 --sweep-gates gdn,kda --sweep-inter mixed \
    --dh-sweep 0 --no-fla
  rows sweeps_mixed "scan sweep\|dh sweep [GK]D[AN] (1,8192,16,128) |" | cut -c1-400
  ;;
24)
  step correctness 150 kernels_correctness.py --jobs 16 --no-ref-check
  step bench_default 120 "${BENCH[@]}" --shapes 0,2
  step bench_bf16 70 HYBRIDIZE_GDR_INTER=bf16 "${BENCH[@]}" --shapes 0
  rows bench_default "^| [GK]D[AN] f" "default "
  rows bench_bf16 "^| [GK]D[AN] f" "bf16 "
  ours_ok correctness
  ;;
25)
  step correctness 170 kernels_correctness.py --jobs 16 --no-ref-check --inter-variants fp32
  step bench_default 120 "${BENCH[@]}" --shapes 0,2
  step bench_stages2 80 HYBRIDIZE_GDR_SCAN_STAGES=2 "${BENCH[@]}" --shapes 0
  step bench_l2 80 "${BENCH[@]}" --shapes 0 --l2
  rows bench_default "^| [GK]D[AN] f" "default "
  rows bench_stages2 "^| KDA f" "scan stages 2 "
  rows bench_l2 "^| [GK]D[AN] f" "fused l2 "
  grep "inter=fp32" "$OUT/correctness.log" | cut -c1-170
  ours_ok correctness
  ;;
26)
  step correctness 170 kernels_correctness.py --jobs 16 --no-ref-check
  step bench_all 260 "${BENCH[@]}" --shapes 0,1,2,3,4
  step profile_fla_fwd 150 kernel_profile.py --shapes 0,3 --modes fwd
  rows bench_all "^| [GK]D[AN] f\|^| decode" "default "
  rows profile_fla_fwd "sum of kernels"
  ours_ok correctness
  ;;
27)
  step profile_fla_kda 360 kernel_profile.py --shapes 0 --modes fwd+bwd --gates kda
  step profile_l2_fwd 100 HYBRIDIZE_BENCH_L2=1 kernel_profile.py --shapes 0 --modes fwd
  step profile_l2_bwd 100 HYBRIDIZE_BENCH_L2=1 kernel_profile.py --shapes 0 --modes fwd+bwd --no-fla
  rows profile_fla_kda "sum of kernels"
  rows profile_l2_fwd "sum of kernels" "fused l2 "
  rows profile_l2_bwd "sum of kernels" "fused l2 "
  ;;
28)
  step correctness 170 kernels_correctness.py --jobs 16 --no-ref-check
  step bench_default 120 "${BENCH[@]}" --shapes 0,4
  step profile_l2 150 HYBRIDIZE_BENCH_L2=1 kernel_profile.py --shapes 0 --modes fwd,fwd+bwd --no-fla
  rows bench_default "^| [GK]D[AN] f" "default "
  rows profile_l2 "sum of kernels\|_unit\|_out_grad\|_bwd_kernel\|_solve" "fused l2 "
  ours_ok correctness
  ;;
29)
  step profile_fla_d64 290 kernel_profile.py --shapes 4 --modes fwd,fwd+bwd
  step profile_fla_shapes 280 kernel_profile.py --shapes 1,2,3 --modes fwd
  rows profile_fla_d64 "sum of kernels"
  rows profile_fla_shapes "sum of kernels"
  ;;
30)
  step sweeps_d64 540 kernel_stages.py --shapes "" --sweep 4 --sweep-gates kda --sweep-inter mixed --split-sweep 4 \
    --output-sweep 4 --no-fla
  rows sweeps_d64 "scan sweep\|output sweep" | cut -c1-300
  rows sweeps_d64 "^| split"
  ;;
31)
  step correctness 170 kernels_correctness.py --jobs 16 --no-ref-check
  step bench_shapes 200 "${BENCH[@]}" --shapes 0,1,3,4
  step profile_fla_d64 150 kernel_profile.py --shapes 4 --modes fwd
  rows bench_shapes "^| [GK]D[AN] f" "default "
  rows profile_fla_d64 "sum of kernels\|_scan"
  ours_ok correctness
  ;;
32)
  step correctness_bv 200 kernels_correctness.py --jobs 16 --no-ref-check --only bf16 --scan-bv 32,64
  step bench_shapes 150 "${BENCH[@]}" --shapes 1,3
  rows bench_shapes "^| [GK]D[AN] f" "default "
  ours_ok correctness_bv
  ;;
33)
  step correctness 170 kernels_correctness.py --jobs 16 --no-ref-check
  step profile_split 150 kernel_profile.py --shapes 0,4 --modes fwd --gates gdn
  step profile_split_bwd 100 kernel_profile.py --shapes 0,4 --modes fwd+bwd --gates gdn --no-fla
  step profile_nosplit 120 HYBRIDIZE_GDR_SPLIT=0 kernel_profile.py --shapes 0,4 --modes fwd,fwd+bwd --gates gdn --no-fla
  rows profile_split "sum of kernels\|_scan" "split "
  rows profile_split_bwd "sum of kernels\|_scan" "split "
  rows profile_nosplit "sum of kernels\|_scan" "nosplit "
  ours_ok correctness
  ;;
34)
  step correctness 170 kernels_correctness.py --jobs 16 --no-ref-check
  step profile_split 120 kernel_profile.py --shapes 0,4 --modes fwd,fwd+bwd --gates gdn --no-fla
  step profile_nosplit 120 HYBRIDIZE_GDR_SPLIT=0 kernel_profile.py --shapes 0,4 --modes fwd,fwd+bwd --gates gdn --no-fla
  rows profile_split "sum of kernels\|_scan\|_dh" "split "
  rows profile_nosplit "sum of kernels\|_scan\|_dh" "nosplit "
  ours_ok correctness
  ;;
35)
  step correctness 150 HYBRIDIZE_GDR_SPLIT_KG=1 kernels_correctness.py --jobs 16 --no-ref-check --only kda
  step profile_kg 150 HYBRIDIZE_GDR_SPLIT_KG=1 kernel_profile.py --shapes 0,4 --modes fwd,fwd+bwd --gates kda --no-fla
  step profile_base 150 kernel_profile.py --shapes 0,4 --modes fwd,fwd+bwd --gates kda --no-fla
  rows profile_kg "sum of kernels\|_scan" "split kg "
  rows profile_base "sum of kernels\|_scan" "base "
  ours_ok correctness
  ;;
36)
  for v in "HYBRIDIZE_GDR_DH_STAGES=2" "HYBRIDIZE_GDR_DH_CHAIN=0" "HYBRIDIZE_GDR_DH_WARPS=8" \
           "HYBRIDIZE_GDR_DH_CHAIN=0 HYBRIDIZE_GDR_DH_STAGES=2"; do
    name=$(echo "$v" | tr ' =' '__')
    step "correctness_$name" 100 $v kernels_correctness.py --jobs 16 --no-ref-check --only "gdn bf16"
    echo "== $v"; ours_ok "correctness_$name"
  done
  ;;
37)
  step correctness 170 kernels_correctness.py --jobs 16 --no-ref-check
  step profile_split 110 kernel_profile.py --shapes 0,4 --modes fwd+bwd --gates gdn --no-fla
  step profile_nosplit 110 HYBRIDIZE_GDR_SPLIT=0 kernel_profile.py --shapes 0,4 --modes fwd+bwd --gates gdn --no-fla
  rows profile_split "sum of kernels\|_scan\|_dh" "split "
  rows profile_nosplit "sum of kernels\|_scan\|_dh" "nosplit "
  ours_ok correctness
  ;;
38)
  step correctness 170 kernels_correctness.py --jobs 16 --no-ref-check
  step profile_fwd 120 kernel_profile.py --shapes 0 --modes fwd
  step profile_bwd 100 kernel_profile.py --shapes 0 --modes fwd+bwd --no-fla
  step profile_nosplit 120 HYBRIDIZE_GDR_SPLIT=0 kernel_profile.py --shapes 0 --modes fwd,fwd+bwd --no-fla
  rows profile_fwd "sum of kernels\|_solve" "split "
  rows profile_bwd "sum of kernels\|_solve" "split "
  rows profile_nosplit "sum of kernels\|_solve" "nosplit "
  ours_ok correctness
  ;;
39)
  NEW=(HYBRIDIZE_GDR_SPLIT_O=1 HYBRIDIZE_GDR_SPLIT_KDA_DH=1)
  step correctness 170 "${NEW[@]}" kernels_correctness.py --jobs 16 --no-ref-check
  step profile_new 150 "${NEW[@]}" kernel_profile.py --shapes 0,4 --modes fwd+bwd --no-fla
  step profile_base 150 kernel_profile.py --shapes 0,4 --modes fwd+bwd --no-fla
  rows profile_new "sum of kernels\|_output\|_dh" "new "
  rows profile_base "sum of kernels\|_output\|_dh" "base "
  ours_ok correctness
  ;;
40)
  step correctness 170 HYBRIDIZE_GDR_BWD_H16=1 kernels_correctness.py --jobs 16 --no-ref-check
  step profile_new 150 HYBRIDIZE_GDR_BWD_H16=1 kernel_profile.py --shapes 0,4 --modes fwd+bwd --no-fla
  step profile_base 150 kernel_profile.py --shapes 0,4 --modes fwd+bwd --no-fla
  rows profile_new "sum of kernels\|_bwd_kernel\|_scan" "h16 "
  rows profile_base "sum of kernels\|_bwd_kernel\|_scan" "base "
  ours_ok correctness
  ;;
41)
  step bench_all 280 "${BENCH[@]}" --shapes 0,1,2,3,4
  step profile_fla_fwd 200 kernel_profile.py --shapes 0,4 --modes fwd
  rows bench_all "^| [GK]D[AN] f\|^| decode" "default "
  rows profile_fla_fwd "sum of kernels"
  ;;
42)
  step profile_fla_shapes 400 kernel_profile.py --shapes 1,2,3 --modes fwd
  rows profile_fla_shapes "sum of kernels"
  ;;
43)
  step sweep_scan 300 kernel_stages.py --shapes "" --sweep 4,0 --sweep-gates gdn --sweep-inter mixed --no-fla
  step profile_d64 90 kernel_profile.py --shapes 4 --modes fwd --gates gdn --no-fla
  step profile_d64_split 90 HYBRIDIZE_GDR_PREP=split kernel_profile.py --shapes 4 --modes fwd --gates gdn --no-fla
  rows sweep_scan "scan sweep" | cut -c1-400
  rows profile_d64 "sum of kernels\|ours |" "v3 prep "
  rows profile_d64_split "sum of kernels\|ours |" "split prep "
  ;;
44)
  step correctness 400 kernels_correctness.py --jobs 16 --no-ref-check --inter-variants fp32,input
  ours_ok correctness
  ;;
45)
  step profile_qk 150 kernel_profile.py --shapes 0,1,4 --modes fwd --gates gdn --no-fla
  step profile_noqk 150 HYBRIDIZE_GDR_QK=0 kernel_profile.py --shapes 0,1,4 --modes fwd --gates gdn --no-fla
  step profile_full 150 HYBRIDIZE_GDR_PREP=full kernel_profile.py --shapes 0,1 --modes fwd --gates gdn --no-fla
  step sweep_qk 200 kernel_stages.py --shapes "" --split-sweep 0 --output-sweep 0 --sweep-gates gdn --sweep-inter mixed --no-fla
  rows profile_qk "sum of kernels\|ours |" "qk "
  rows profile_noqk "sum of kernels\|ours |" "stored Aqk "
  rows profile_full "sum of kernels\|ours |" "v3 prep "
  rows sweep_qk "sweep" | cut -c1-600
  ;;
47)
  step correctness_gdn 200 kernels_correctness.py --jobs 16 --no-ref-check --only gdn --inter-variants fp32
  step profile_solve 200 kernel_profile.py --shapes 0,1,2,3,4 --modes fwd --gates gdn --no-fla
  step profile_nosolve 200 HYBRIDIZE_GDR_SCAN_SOLVE=0 kernel_profile.py --shapes 0,1,2,3,4 --modes fwd --gates gdn --no-fla
  step profile_solve_bwd 100 kernel_profile.py --shapes 0 --modes fwd+bwd --gates gdn --no-fla
  rows profile_solve "sum of kernels" "solve in scan "
  rows profile_nosolve "sum of kernels" "solve kernel "
  rows profile_solve "(1,8192,16,128) ours |" "solve in scan "
  rows profile_nosolve "(1,8192,16,128) ours |" "solve kernel "
  rows profile_solve_bwd "sum of kernels"
  ours_ok correctness_gdn
  ;;
48)
  step sweep_solve 200 kernel_stages.py --shapes "" --sweep 0,1 --sweep-gates gdn --sweep-inter mixed --no-fla
  step sweep_output 180 kernel_stages.py --shapes "" --output-sweep 1,3 --sweep-gates gdn,kda --sweep-inter mixed --no-fla
  step profile_nh32 100 HYBRIDIZE_GDR_SCAN_SOLVE_MIN=0 kernel_profile.py --shapes 2x8192x16x128,1x8192x32x128 --modes fwd --gates gdn --no-fla
  step profile_nh32_off 100 HYBRIDIZE_GDR_SCAN_SOLVE=0 kernel_profile.py --shapes 2x8192x16x128,1x8192x32x128 --modes fwd --gates gdn --no-fla
  rows sweep_solve "sweep" | cut -c1-300
  rows sweep_output "sweep" | cut -c1-300
  rows profile_nh32 "sum of kernels" "solve in scan "
  rows profile_nh32_off "sum of kernels" "solve kernel "
  ;;
49)
  step correctness 300 kernels_correctness.py --jobs 16 --no-ref-check
  step correctness_solve 200 HYBRIDIZE_GDR_SCAN_SOLVE_MIN=0 kernels_correctness.py --jobs 16 --no-ref-check --only gdn
  ours_ok correctness
  ours_ok correctness_solve | sed "s/^/solve in scan: /"
  rows correctness "PASS\|FAILED"
  rows correctness_solve "PASS\|FAILED"
  ;;
50)
  step correctness 300 kernels_correctness.py --jobs 16 --no-ref-check
  step correctness_solve 200 HYBRIDIZE_GDR_SCAN_SOLVE_MIN=0 kernels_correctness.py --jobs 16 --no-ref-check --only gdn
  step profile_vn16 150 kernel_profile.py --shapes 0,1,2,3,4 --modes fwd --no-fla
  step profile_vn32 150 HYBRIDIZE_GDR_VN16=0 kernel_profile.py --shapes 0,1,2,3,4 --modes fwd --no-fla
  ours_ok correctness
  ours_ok correctness_solve | sed "s/^/solve in scan: /"
  rows correctness "PASS\|FAILED"
  rows correctness_solve "PASS\|FAILED"
  rows profile_vn16 "sum of kernels" "vn fp16 "
  rows profile_vn32 "sum of kernels" "vn fp32 "
  rows profile_vn16 "(4,4096,16,128) ours |" "vn fp16 "
  rows profile_vn32 "(4,4096,16,128) ours |" "vn fp32 "
  ;;
51)
  step correctness 300 kernels_correctness.py --jobs 16 --no-ref-check
  step correctness_fused 200 HYBRIDIZE_GDR_SCAN_SOLVE_MIN=0 HYBRIDIZE_GDR_FUSE_O_MIN=0 kernels_correctness.py --jobs 16 --no-ref-check --only gdn
  step profile_fused 150 HYBRIDIZE_GDR_FUSE_O_MIN=0 kernel_profile.py --shapes 0,1,2,3,4,2x8192x16x128 --modes fwd --gates gdn --no-fla
  step profile_unfused 150 HYBRIDIZE_GDR_FUSE_O_MIN=1000000 kernel_profile.py --shapes 0,1,2,3,4,2x8192x16x128 --modes fwd --gates gdn --no-fla
  step profile_bwd 120 kernel_profile.py --shapes 1,3 --modes fwd+bwd --gates gdn --no-fla
  step profile_bwd_unfused 120 HYBRIDIZE_GDR_FUSE_O_MIN=1000000 kernel_profile.py --shapes 1,3 --modes fwd+bwd --gates gdn --no-fla
  ours_ok correctness
  ours_ok correctness_fused | sed "s/^/fused: /"
  rows correctness "PASS\|FAILED"
  rows correctness_fused "PASS\|FAILED"
  rows profile_fused "sum of kernels" "fused "
  rows profile_unfused "sum of kernels" "unfused "
  rows profile_bwd "sum of kernels" "default "
  rows profile_bwd_unfused "sum of kernels" "unfused "
  rows profile_fused "(4,4096,16,128) ours |" "fused "
  ;;
52)
  step correctness_solve 300 HYBRIDIZE_GDR_SCAN_SOLVE_MIN=0 kernels_correctness.py --jobs 16 --no-ref-check
  step profile_kda_solve 150 HYBRIDIZE_GDR_SCAN_SOLVE_MIN=0 kernel_profile.py --shapes 0,1,2,3,4,2x8192x16x128 --modes fwd --gates kda --no-fla
  step profile_kda_nosolve 150 HYBRIDIZE_GDR_SCAN_SOLVE_KDA=0 kernel_profile.py --shapes 0,1,2,3,4,2x8192x16x128 --modes fwd --gates kda --no-fla
  step profile_kda_bwd 120 kernel_profile.py --shapes 1,3 --modes fwd+bwd --gates kda --no-fla
  step profile_kda_bwd_nosolve 120 HYBRIDIZE_GDR_SCAN_SOLVE_KDA=0 kernel_profile.py --shapes 1,3 --modes fwd+bwd --gates kda --no-fla
  ours_ok correctness_solve | grep "kda\|FAIL"
  rows correctness_solve "PASS\|FAILED"
  rows profile_kda_solve "sum of kernels" "solve in scan "
  rows profile_kda_nosolve "sum of kernels" "solve kernel "
  rows profile_kda_bwd "sum of kernels" "solve in scan "
  rows profile_kda_bwd_nosolve "sum of kernels" "solve kernel "
  rows profile_kda_solve "(4,4096,16,128) ours |" "solve in scan "
  ;;
53)
  step sweep_kda_solve 300 kernel_stages.py --shapes "" --sweep 1 --sweep-gates kda --sweep-inter mixed --no-fla
  rows sweep_kda_solve "sweep" | cut -c1-300
  ;;
72)
  for rep in 1 2; do
    step "profile_vn16_$rep" 120 kernel_profile.py --shapes 4 --modes fwd,fwd+bwd --no-fla
    step "profile_vn32_$rep" 120 HYBRIDIZE_GDR_VN16=0 kernel_profile.py --shapes 4 --modes fwd,fwd+bwd --no-fla
  done
  for rep in 1 2; do
    rows "profile_vn16_$rep" "sum of kernels\|_output\|_scan_kernel" "vn16 $rep "
    rows "profile_vn32_$rep" "sum of kernels\|_output\|_scan_kernel" "vn32 $rep "
  done
  ;;
69)
  step profile_fla 340 kernel_profile.py --shapes 0,1,2,3,4 --modes fwd
  step bench_all 220 "${BENCH[@]}" --shapes 0,1,2,3,4
  rows profile_fla "sum of kernels"
  rows bench_all "^| [GK]D[AN] f\|^| decode" "default "
  ;;
60|64)
  step correctness 200 kernels_correctness.py --jobs 16 --no-ref-check
  step profile_fla 340 kernel_profile.py --shapes 0,1,2,3,4 --modes fwd
  ours_ok correctness | grep "FAIL\|big" | head -8
  rows correctness "PASS\|FAILED"
  rows profile_fla "sum of kernels"
  ;;
61|65)
  step correctness_solve 150 HYBRIDIZE_GDR_SCAN_SOLVE_MIN=0 kernels_correctness.py --jobs 16 --no-ref-check --only gdn
  step bench_all 250 "${BENCH[@]}" --shapes 0,1,2,3,4
  rows correctness_solve "PASS\|FAILED"
  rows bench_all "^| [GK]D[AN] f\|^| decode" "default "
  ;;
59)
  step correctness 200 kernels_correctness.py --jobs 16 --no-ref-check
  step correctness_solve 120 HYBRIDIZE_GDR_SCAN_SOLVE_MIN=0 kernels_correctness.py --jobs 16 --no-ref-check --only gdn
  step sweep_output 150 kernel_stages.py --shapes "" --output-sweep 0,1 --sweep-gates gdn,kda --sweep-inter mixed --no-fla
  step profile 100 kernel_profile.py --shapes 0,1,2,3,4 --modes fwd --no-fla
  ours_ok correctness | grep "FAIL\|big" | head -8
  rows correctness "PASS\|FAILED"
  rows correctness_solve "PASS\|FAILED"
  python benchmarks/output_sweep_table.py "$OUT/sweep_output.log"
  rows profile "sum of kernels"
  ;;
54)
  step correctness 200 kernels_correctness.py --jobs 16 --no-ref-check
  step correctness_bv64 200 HYBRIDIZE_GDR_SCAN_SOLVE_MIN=0 kernels_correctness.py --jobs 16 --no-ref-check --scan-bv 64
  step bench_all 200 "${BENCH[@]}" --shapes 0,1,2,3,4
  step profile_fla 230 kernel_profile.py --shapes 0,1,2,3 --modes fwd
  ours_ok correctness | grep "kda\|FAIL"
  ours_ok correctness_bv64 | grep "BV=64"
  rows correctness "PASS\|FAILED"
  rows correctness_bv64 "PASS\|FAILED"
  rows bench_all "^| [GK]D[AN] f" "default "
  rows profile_fla "sum of kernels"
  ;;
46)
  step correctness 300 kernels_correctness.py --jobs 16 --no-ref-check
  step correctness_solve 200 HYBRIDIZE_GDR_SCAN_SOLVE_MIN=0 kernels_correctness.py --jobs 16 --no-ref-check --only gdn
  step sweep_output 200 kernel_stages.py --shapes "" --output-sweep 0,1 --sweep-gates gdn,kda --sweep-inter mixed --no-fla
  ours_ok correctness
  ours_ok correctness_solve | sed "s/^/solve in scan: /"
  rows correctness "PASS\|FAILED"
  rows correctness_solve "PASS\|FAILED"
  rows sweep_output "sweep" | cut -c1-300
  ;;
*)
  step bench 580 bench_kernels.py --warm 16 --shapes "${SHAPES:-0,4}" --skip-versions
  rows bench "^|"
  ;;
esac
