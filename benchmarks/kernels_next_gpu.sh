#!/usr/bin/env bash
# The next GPU run for issue 3 (written in round 7). Two calls, each under 600 s:
#   PART=1 bash benchmarks/kernels_next_gpu.sh   (1) the backward's two opt-ins, the dh scan fed q e^G
#                                                and kg (HYBRIDIZE_GDR_DH=kernel) and the shared decay
#                                                factors (HYBRIDIZE_GDR_BWD_FACTORS=shared): KDA
#                                                correctness, then fwd+bwd in all four combinations;
#                                                (2) head dim 64, "auto" vs v3 prep side by side;
#                                                (3) fla's forward stage by stage, to see whether its
#                                                2x slower forward in round 7 repeats
#   PART=2 bash benchmarks/kernels_next_gpu.sh   the table with fla beside (bench_kernels.py,
#                                                shapes 0 and 4; SHAPES=1,2 or 3 for the others)
# From the repo root on the device, with the fla wheel carried in .dev/fla. Logs go to $OUT.
# Round 7 ran the previous version (v5 prep sweep and defaults): benchmarks/RESULTS.md, "Kernels, round 7".
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .dev/fla/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/site:.:${PYTHONPATH:-} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
if [ "${PART:-1}" = 1 ]; then
  HYBRIDIZE_GDR_DH=kernel HYBRIDIZE_GDR_BWD_FACTORS=shared timeout 130 python3 benchmarks/kernels_correctness.py \
    --jobs 16 --no-ref-check --only kda > "$OUT/correctness_bwd.log" 2>&1
  echo "correctness (both backward opt-ins) rc=$?"
  for v in "scan per_product" "kernel per_product" "scan shared" "kernel shared"; do
    set -- $v
    HYBRIDIZE_GDR_DH=$1 HYBRIDIZE_GDR_BWD_FACTORS=$2 timeout 70 python3 benchmarks/bench_kernels.py --ours-only \
      --shapes 0 --skip-versions --no-fla-decode --warm 8 --out "$OUT/bench_$1_$2" > "$OUT/bench_$1_$2.log" 2>&1
    echo "bench dh=$1 factors=$2 rc=$?"
    grep "^| KDA f" "$OUT/bench_$1_$2.log" | sed "s/^/dh=$1 factors=$2 /"
  done
  for design in auto full; do
    HYBRIDIZE_GDR_PREP=$design timeout 70 python3 benchmarks/bench_kernels.py --ours-only --shapes 4 --skip-versions \
      --no-fla-decode --warm 8 --out "$OUT/bench_d64_$design" > "$OUT/bench_d64_$design.log" 2>&1
    echo "bench head dim 64, prep $design rc=$?"
    grep "^| [GK]DA f" "$OUT/bench_d64_$design.log" | sed "s/^/prep=$design /"
  done
  timeout 130 python3 benchmarks/kernel_stages.py --shapes 0 --designs split --inter fp32 --out "$OUT/stages" \
    > "$OUT/stages.log" 2>&1
  echo "stages with fla rc=$?"
  grep "^| " "$OUT/stages.log" | cut -c1-170
  grep "\[ours\]" "$OUT"/correctness_bwd.log | cut -c1-170
else
  timeout 560 python3 benchmarks/bench_kernels.py --warm 16 --shapes "${SHAPES:-0,4}" --skip-versions --out "$OUT" \
    > "$OUT/bench.log" 2>&1
  echo "bench rc=$?"
  grep "^|" "$OUT/bench.log"
fi
