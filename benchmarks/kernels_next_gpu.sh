#!/usr/bin/env bash
# The GPU run that decided whether the v4 prep (16-row blocks) becomes the default (issue 3). Round 6
# ran PART=1 (cut at 420 s: v4 compiles slowly) and part of PART=2: v4 was slower, it stays opt-in.
# On the device, from the repo root, with the fla wheel carried in .dev/fla:
#   PART=1 bash benchmarks/kernels_next_gpu.sh     correctness of v4 on the H100 (+ bf16 intermediates, fla beside)
#   PART=2 bash benchmarks/kernels_next_gpu.sh     stage timings, v3 vs v4, fp32 vs bf16 intermediates
#   PART=3 bash benchmarks/kernels_next_gpu.sh     v4 prep and scan launch-option sweeps
# (three calls, each under the 600 s limit; make them back to back so the compile cache stays warm).
# Logs go to $OUT; each part prints its table last.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .dev/fla/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/site:.:${PYTHONPATH:-} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
if [ "${PART:-1}" = 1 ]; then
  timeout 420 python3 benchmarks/kernels_correctness.py --jobs 16 --design blocks --fla --inter-variants input \
    > "$OUT/correctness_blocks.log" 2>&1
  echo "correctness rc=$?"
  grep -A40 "^| case" "$OUT/correctness_blocks.log" | cut -c1-180
elif [ "$PART" = 2 ]; then
  timeout 540 python3 benchmarks/kernel_stages.py --shapes 0,2,4 --designs full,blocks --inter fp32,bf16 --no-fla \
    --out "$OUT" 2>&1 | grep -v Warn
else
  timeout 540 python3 benchmarks/kernel_stages.py --shapes 0 --designs blocks --inter bf16 --no-fla \
    --prep-sweep 0 --sweep 0 --sweep-inter bf16 --out "$OUT" 2>&1 | grep -v Warn
fi
