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
#   PART=4 bash benchmarks/kernels_next_gpu.sh   round 9's prep opt-ins (the inverse by block doubling,
#                                                the pairs kernel inverting A itself): correctness with
#                                                both on, the v5 kernels' sweep (with solve BK 128), the
#                                                forward's stages without and with them
#   PART=5 bash benchmarks/kernels_next_gpu.sh   after round 9's new defaults: correctness of the GDN
#                                                cases (head dim 64 now keeps the v3 prep's G, T, Aqk),
#                                                every kernel's time beside fla's (kernel_profile.py),
#                                                the same with bf16 intermediates and RECOMPUTE=none,
#                                                and wall times with RECOMPUTE=none at 8K and 32K
#   PART=6 bash benchmarks/kernels_next_gpu.sh   round 9's closing run: every kernel beside fla's at
#                                                (1,8192,16,128) with fla's precision (bf16
#                                                intermediates) and recompute none; the defaults'
#                                                kernels (shapes 0, 4) and wall times (shapes 0, 2, 4)
#   PART=8 bash benchmarks/kernels_next_gpu.sh   the solve in one program per chunk (HYBRIDIZE_GDR_SOLVE_ALL=1):
#                                                correctness, the v5 sweep with it, the output kernel's sweep
#   PART=10 bash benchmarks/kernels_next_gpu.sh  the per-channel pairs kernel inverting A itself: KDA
#                                                correctness, forward stages without and with it, sweep
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
# compare VAR BASE NEW: correctness with VAR=NEW; fwd+bwd at shapes 0 and 4 with VAR=BASE and VAR=NEW in
# the same call (ours only); then where NEW's fwd+bwd time goes, kernel by kernel
compare() {
  local var=$1 base=$2 new=$3 val
  env "$var=$new" timeout 150 python3 benchmarks/kernels_correctness.py --jobs 16 --no-ref-check \
    > "$OUT/correctness_$new.log" 2>&1
  echo "correctness ($var=$new) rc=$?"
  for val in "$base" "$new"; do
    env "$var=$val" timeout 100 python3 benchmarks/bench_kernels.py --ours-only --shapes 0,4 --skip-versions \
      --no-fla-decode --warm 16 --out "$OUT/bench_$val" > "$OUT/bench_$val.log" 2>&1
    echo "bench $var=$val rc=$?"
    grep "^| [GK]D[AN] f" "$OUT/bench_$val.log" | sed "s/^/$var=$val /"
  done
  env "$var=$new" timeout 80 python3 benchmarks/kernel_profile.py --shapes 0 --modes fwd+bwd --no-fla \
    --out "$OUT/profile_$new" > "$OUT/profile_$new.log" 2>&1
  echo "profile ($var=$new) rc=$?"
  grep "sum of kernels\|_bwd" "$OUT/profile_$new.log"
  grep "\[ours\]" "$OUT/correctness_$new.log" | cut -c1-170
}
if [ "${PART:-1}" = 1 ]; then
  compare HYBRIDIZE_GDR_RECOMPUTE solve none
elif [ "${PART}" = 4 ]; then
  NEW="HYBRIDIZE_GDR_INVERSE=doubling HYBRIDIZE_GDR_PAIRS_INVERSE=1"
  env $NEW timeout 150 python3 benchmarks/kernels_correctness.py --jobs 16 --no-ref-check > "$OUT/correctness_prep.log" 2>&1
  echo "correctness ($NEW) rc=$?"
  timeout 240 python3 benchmarks/kernel_stages.py --shapes 0,4 --designs split,full --inter fp32,bf16 --no-fla \
    --split-sweep 0,4 --out "$OUT/stages_base" > "$OUT/stages_base.log" 2>&1
  echo "stages (base) rc=$?"
  env $NEW timeout 120 python3 benchmarks/kernel_stages.py --shapes 0,4 --designs split,full --inter fp32,bf16 --no-fla \
    --out "$OUT/stages_new" > "$OUT/stages_new.log" 2>&1
  echo "stages ($NEW) rc=$?"
  grep "^| [GK]D[AN]" "$OUT/stages_base.log" | sed "s/^/base /"
  grep "^| [GK]D[AN]" "$OUT/stages_new.log" | sed "s/^/new /"
  grep "^| split" "$OUT/stages_base.log"
  grep "\[ours\]" "$OUT/correctness_prep.log" | cut -c1-170
elif [ "${PART}" = 5 ]; then
  timeout 100 python3 benchmarks/kernels_correctness.py --jobs 16 --no-ref-check --only gdn > "$OUT/correctness_gdn.log" 2>&1
  echo "correctness (gdn cases) rc=$?"
  timeout 150 python3 benchmarks/kernel_profile.py --shapes 0,4 --modes fwd,fwd+bwd --out "$OUT/profile_default" \
    > "$OUT/profile_default.log" 2>&1
  echo "profile (default, fla beside) rc=$?"
  env HYBRIDIZE_GDR_INTER=bf16 HYBRIDIZE_GDR_RECOMPUTE=none timeout 80 python3 benchmarks/kernel_profile.py --shapes 0,4 \
    --modes fwd,fwd+bwd --no-fla --out "$OUT/profile_bf16_none" > "$OUT/profile_bf16_none.log" 2>&1
  echo "profile (bf16 intermediates, recompute none) rc=$?"
  for inter in fp32 bf16; do
    env HYBRIDIZE_GDR_INTER=$inter HYBRIDIZE_GDR_RECOMPUTE=none timeout 110 python3 benchmarks/bench_kernels.py --ours-only \
      --shapes 0,2 --skip-versions --no-fla-decode --warm 16 --out "$OUT/bench_none_$inter" > "$OUT/bench_none_$inter.log" 2>&1
    echo "bench (recompute none, $inter intermediates) rc=$?"
    grep "^| [GK]D[AN] f" "$OUT/bench_none_$inter.log" | sed "s/^/none $inter /"
  done
  grep "sum of kernels" "$OUT/profile_default.log" "$OUT/profile_bf16_none.log"
  grep "\[ours\]" "$OUT/correctness_gdn.log" | cut -c1-170
elif [ "${PART}" = 6 ]; then
  env HYBRIDIZE_GDR_INTER=bf16 HYBRIDIZE_GDR_RECOMPUTE=none timeout 280 python3 benchmarks/kernel_profile.py --shapes 0 \
    --modes fwd,fwd+bwd --out "$OUT/profile_bf16_none_fla" > "$OUT/profile_bf16_none_fla.log" 2>&1
  echo "profile (bf16 intermediates, recompute none, fla beside) rc=$?"
  timeout 80 python3 benchmarks/kernel_profile.py --shapes 0,4 --modes fwd,fwd+bwd --no-fla --out "$OUT/profile_default" \
    > "$OUT/profile_default.log" 2>&1
  echo "profile (defaults) rc=$?"
  timeout 130 python3 benchmarks/bench_kernels.py --ours-only --shapes 0,2,4 --skip-versions --no-fla-decode --warm 16 \
    --out "$OUT/bench_default" > "$OUT/bench_default.log" 2>&1
  echo "bench (defaults) rc=$?"
  grep "^| [GK]D[AN] f\|^| decode" "$OUT/bench_default.log"
  grep "sum of kernels" "$OUT/profile_bf16_none_fla.log" "$OUT/profile_default.log"
elif [ "${PART}" = 7 ]; then  # PART=6's first profile timed out in fla's KDA backward: that case alone
  env HYBRIDIZE_GDR_INTER=bf16 HYBRIDIZE_GDR_RECOMPUTE=none timeout 500 python3 benchmarks/kernel_profile.py --shapes 0 \
    --modes fwd+bwd --gates kda --out "$OUT/profile_kda_bwd_fla" > "$OUT/profile_kda_bwd_fla.log" 2>&1
  echo "profile (KDA fwd+bwd, bf16 intermediates, recompute none, fla beside) rc=$?"
  grep "sum of kernels" "$OUT/profile_kda_bwd_fla.log"
elif [ "${PART}" = 8 ]; then
  env HYBRIDIZE_GDR_SOLVE_ALL=1 timeout 120 python3 benchmarks/kernels_correctness.py --jobs 16 --no-ref-check \
    > "$OUT/correctness_solve_all.log" 2>&1
  echo "correctness (HYBRIDIZE_GDR_SOLVE_ALL=1) rc=$?"
  timeout 300 python3 benchmarks/kernel_stages.py --shapes 0 --designs split --inter fp32,bf16 --no-fla \
    --split-sweep 0 --output-sweep 0 --out "$OUT/stages" > "$OUT/stages.log" 2>&1
  echo "stages rc=$?"
  grep "^| [GK]D[AN]\|solve\|output sweep" "$OUT/stages.log"
  grep "\[ours\]" "$OUT/correctness_solve_all.log" | cut -c1-170
elif [ "${PART}" = 9 ]; then  # round 9's last call: the final defaults, and fla's precision with recompute none
  timeout 140 python3 benchmarks/bench_kernels.py --ours-only --shapes 0,2,4 --skip-versions --no-fla-decode --warm 16 \
    --out "$OUT/bench_default" > "$OUT/bench_default.log" 2>&1
  echo "bench (defaults) rc=$?"
  env HYBRIDIZE_GDR_INTER=bf16 HYBRIDIZE_GDR_RECOMPUTE=none timeout 120 python3 benchmarks/bench_kernels.py --ours-only \
    --shapes 0,2 --skip-versions --no-fla-decode --warm 16 --out "$OUT/bench_bf16_none" > "$OUT/bench_bf16_none.log" 2>&1
  echo "bench (bf16 intermediates, recompute none) rc=$?"
  timeout 80 python3 benchmarks/kernel_profile.py --shapes 0 --modes fwd,fwd+bwd --no-fla --out "$OUT/profile_default" \
    > "$OUT/profile_default.log" 2>&1
  echo "profile (defaults) rc=$?"
  grep "^| [GK]D[AN] f" "$OUT/bench_default.log" | sed "s/^/default /"
  grep "^| [GK]D[AN] f" "$OUT/bench_bf16_none.log" | sed "s/^/bf16+none /"
  grep "sum of kernels" "$OUT/profile_default.log"
elif [ "${PART}" = 10 ]; then  # the per-channel pairs kernel inverting A itself (HYBRIDIZE_GDR_PAIRS_INVERSE_KDA=1)
  env HYBRIDIZE_GDR_PAIRS_INVERSE_KDA=1 timeout 100 python3 benchmarks/kernels_correctness.py --jobs 16 --no-ref-check \
    --only kda > "$OUT/correctness_kda.log" 2>&1
  echo "correctness (kda cases, HYBRIDIZE_GDR_PAIRS_INVERSE_KDA=1) rc=$?"
  for val in 0 1; do
    env HYBRIDIZE_GDR_PAIRS_INVERSE_KDA=$val timeout 100 python3 benchmarks/kernel_stages.py --shapes 0,4 --designs split \
      --inter fp32,bf16 --no-fla --out "$OUT/stages_$val" > "$OUT/stages_$val.log" 2>&1
    echo "stages (HYBRIDIZE_GDR_PAIRS_INVERSE_KDA=$val) rc=$?"
    grep "^| KDA" "$OUT/stages_$val.log" | sed "s/^/PAIRS_INVERSE_KDA=$val /"
  done
  timeout 150 python3 benchmarks/kernel_stages.py --shapes 0 --designs split --inter bf16 --no-fla --split-sweep 0 \
    --out "$OUT/sweep" > "$OUT/sweep.log" 2>&1
  echo "sweep rc=$?"
  grep "pairs" "$OUT/sweep.log"
  grep "\[ours\]" "$OUT/correctness_kda.log" | cut -c1-170
elif [ "${PART}" = 3 ]; then
  compare HYBRIDIZE_GDR_BWD fused split
else
  timeout 580 python3 benchmarks/bench_kernels.py --warm 16 --shapes "${SHAPES:-0,4}" --skip-versions --out "$OUT" \
    > "$OUT/bench.log" 2>&1
  echo "bench rc=$?"
  grep "^|" "$OUT/bench.log"
fi
