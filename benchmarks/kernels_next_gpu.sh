#!/usr/bin/env bash
# The next GPU run for issue 3 (written in round 8). Two calls, each under 600 s:
#   PART=1 bash benchmarks/kernels_next_gpu.sh   (1) correctness with the backward's two new opt-ins
#                                                (HYBRIDIZE_GDR_DVN=kernel: Aqk^T do before the dh scan;
#                                                HYBRIDIZE_GDR_RECOMPUTE=solve: the backward re-runs only
#                                                the prep's solve); (2) the dh scan swept alone
#                                                (kernel_stages.py --dh-sweep); (3) kernel_profile.py,
#                                                defaults and opt-ins
#   PART=3 bash benchmarks/kernels_next_gpu.sh   the backward's stage 2 split in two kernels
#                                                (HYBRIDIZE_GDR_BWD=split): correctness, timing beside
#                                                the fused default, kernel profile
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
  # (1) correctness with the two new backward opt-ins on: Aqk^T do formed before the dh scan, and the
  # forward keeping G, T, Aqk so that the backward re-runs only the prep's solve
  HYBRIDIZE_GDR_DVN=kernel HYBRIDIZE_GDR_RECOMPUTE=solve timeout 150 python3 benchmarks/kernels_correctness.py \
    --jobs 16 --no-ref-check > "$OUT/correctness_optins.log" 2>&1
  echo "correctness (dvn kernel, recompute solve) rc=$?"
  # (2) the dh scan alone over its launch and where Aqk^T do is formed, with chunk_bwd's total
  timeout 200 python3 benchmarks/kernel_stages.py --shapes "" --dh-sweep 0 --out "$OUT/dh" > "$OUT/dh_sweep.log" 2>&1
  echo "dh sweep rc=$?"
  grep "^| dh" "$OUT/dh_sweep.log"
  # (3) kernel by kernel, defaults and with the opt-ins (ours only)
  timeout 90 python3 benchmarks/kernel_profile.py --shapes 0 --modes fwd+bwd --no-fla --out "$OUT" \
    > "$OUT/profile_default.log" 2>&1
  echo "profile (defaults) rc=$?"
  HYBRIDIZE_GDR_DVN=kernel HYBRIDIZE_GDR_RECOMPUTE=solve timeout 90 python3 benchmarks/kernel_profile.py --shapes 0 \
    --modes fwd+bwd --no-fla --out "$OUT/optins" > "$OUT/profile_optins.log" 2>&1
  echo "profile (opt-ins) rc=$?"
  grep -h "sum of kernels\|_dh_kernel\|_local_dvn" "$OUT"/profile_*.log
  grep "\[ours\]" "$OUT"/correctness_optins.log | cut -c1-170
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
