#!/usr/bin/env bash
# The next GPU run for issue 3 (written in round 8). Calls, each under 600 s:
#   PART=1 bash benchmarks/kernels_next_gpu.sh   the forward keeping everything the backward reads
#                                                (HYBRIDIZE_GDR_RECOMPUTE=none, opt-in): correctness,
#                                                fwd+bwd beside the default "solve", kernel profile
#                                                (round 8's PART=1 ran the dvn/recompute-solve opt-ins
#                                                and the dh sweep: see git history and RESULTS.md)
#   PART=3 bash benchmarks/kernels_next_gpu.sh   the backward's stage 2 split in two kernels
#                                                (HYBRIDIZE_GDR_BWD=split): correctness, timing beside
#                                                the fused design, kernel profile (ran in round 8)
#   PART=2 bash benchmarks/kernels_next_gpu.sh   the table with fla beside (bench_kernels.py,
#                                                shapes 0 and 4; SHAPES=1,2 or 3 for the others)
# From the repo root on the device, with the fla wheel carried in .dev/fla. Logs go to $OUT.
# Round 8's first call ran the previous PART=1 (the dh scan fed q e^G and kg, shared decay factors; head
# dim 64 auto vs v3; fla stage by stage): benchmarks/RESULTS.md, "Kernels, round 8".
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .dev/fla/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/site:.:${PYTHONPATH:-} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
if [ "${PART:-1}" = 1 ]; then
  # (1) correctness with the forward keeping everything the backward reads (HYBRIDIZE_GDR_RECOMPUTE=none)
  HYBRIDIZE_GDR_RECOMPUTE=none timeout 150 python3 benchmarks/kernels_correctness.py --jobs 16 --no-ref-check \
    > "$OUT/correctness_none.log" 2>&1
  echo "correctness (recompute none) rc=$?"
  # (2) fwd+bwd with the default ("solve") and "none", same call; then where "none"'s time goes
  for mode in solve none; do
    HYBRIDIZE_GDR_RECOMPUTE=$mode timeout 100 python3 benchmarks/bench_kernels.py --ours-only --shapes 0,4 \
      --skip-versions --no-fla-decode --warm 16 --out "$OUT/bench_$mode" > "$OUT/bench_$mode.log" 2>&1
    echo "bench recompute $mode rc=$?"
    grep "^| [GK]D[AN] f" "$OUT/bench_$mode.log" | sed "s/^/recompute=$mode /"
  done
  HYBRIDIZE_GDR_RECOMPUTE=none timeout 80 python3 benchmarks/kernel_profile.py --shapes 0 --no-fla \
    --out "$OUT/profile_none" > "$OUT/profile_none.log" 2>&1
  echo "profile (recompute none) rc=$?"
  grep "sum of kernels" "$OUT/profile_none.log"
  grep "\[ours\]" "$OUT"/correctness_none.log | cut -c1-170
elif [ "${PART}" = 3 ]; then
  # stage 2 of the backward split (HYBRIDIZE_GDR_BWD=split): correctness, then fwd+bwd beside the
  # fused default in the same call, and where the split one's time goes
  HYBRIDIZE_GDR_BWD=split timeout 150 python3 benchmarks/kernels_correctness.py --jobs 16 --no-ref-check \
    > "$OUT/correctness_split.log" 2>&1
  echo "correctness (split backward) rc=$?"
  for design in fused split; do
    HYBRIDIZE_GDR_BWD=$design timeout 100 python3 benchmarks/bench_kernels.py --ours-only --shapes 0,4 \
      --skip-versions --no-fla-decode --warm 16 --out "$OUT/bench_$design" > "$OUT/bench_$design.log" 2>&1
    echo "bench backward $design rc=$?"
    grep "^| [GK]D[AN] f" "$OUT/bench_$design.log" | sed "s/^/bwd=$design /"
  done
  HYBRIDIZE_GDR_BWD=split timeout 80 python3 benchmarks/kernel_profile.py --shapes 0 --modes fwd+bwd --no-fla \
    --out "$OUT/profile_split" > "$OUT/profile_split.log" 2>&1
  echo "profile (split backward) rc=$?"
  grep "sum of kernels\|_bwd" "$OUT/profile_split.log"
  grep "\[ours\]" "$OUT"/correctness_split.log | cut -c1-170
else
  timeout 580 python3 benchmarks/bench_kernels.py --warm 16 --shapes "${SHAPES:-0,4}" --skip-versions --out "$OUT" \
    > "$OUT/bench.log" 2>&1
  echo "bench rc=$?"
  grep "^|" "$OUT/bench.log"
fi
