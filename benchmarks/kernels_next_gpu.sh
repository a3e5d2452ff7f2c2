#!/usr/bin/env bash
# The next GPU run for issue 3 (written in round 6). Two questions, one call each (each under 600 s):
#   PART=1 bash benchmarks/kernels_next_gpu.sh   kg by its own kernel (HYBRIDIZE_GDR_KG=kernel): KDA
#                                                correctness on the H100, then stage timings with kg
#                                                formed in the scan (default) and by the kernel
#   PART=2 bash benchmarks/kernels_next_gpu.sh   the table with fla beside (bench_kernels.py,
#                                                shapes 0 and 4; SHAPES=1,2 or 3 for the others)
# From the repo root on the device, with the fla wheel carried in .dev/fla. Logs go to $OUT.
# Round 6 ran the previous version of this script (v4 prep): v4 was slower and stays opt-in.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .dev/fla/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/site:.:${PYTHONPATH:-} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
if [ "${PART:-1}" = 1 ]; then
  HYBRIDIZE_GDR_KG=kernel timeout 240 python3 benchmarks/kernels_correctness.py --jobs 16 --no-ref-check --only kda \
    > "$OUT/correctness_kg.log" 2>&1
  echo "correctness (kg kernel) rc=$?"
  for kg in scan kernel; do
    HYBRIDIZE_GDR_KG=$kg timeout 150 python3 benchmarks/kernel_stages.py --shapes 0,2 --designs full \
      --inter fp32,bf16 --no-fla --out "$OUT/stages_$kg" 2>&1 | grep KDA | sed "s/^/kg=$kg /"
  done
  grep "\[ours\]" "$OUT/correctness_kg.log" | cut -c1-150
else
  timeout 560 python3 benchmarks/bench_kernels.py --warm 16 --shapes "${SHAPES:-0,4}" --out "$OUT" \
    > "$OUT/bench.log" 2>&1
  echo "bench rc=$?"
  grep "^|" "$OUT/bench.log"
fi
