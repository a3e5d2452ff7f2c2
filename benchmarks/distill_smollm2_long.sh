#!/usr/bin/env bash
# One long `hybridize distill` of SmolLM2-135M-Instruct 3:1 (both stages in one run, so the teacher is
# the original model throughout), spread over device calls of at most 10 minutes: each call runs the
# CLI for LIMIT seconds, `timeout` sends SIGTERM, the run saves a checkpoint at the end of its step and
# exits 143, and the next call (same warm machine, same WORK) continues it with --resume.
# Run from the repo root after `. .dev/m2/device-setup.sh` (so $HYBRIDIZE_DEVICE_MODEL exists):
#   LIMIT=480 bash benchmarks/distill_smollm2_long.sh   # again until it prints "finished"
# Knobs: MIXER (gdn|kda), ATT_TOKENS, KD_TOKENS, KD_LR, LORA_LR, TRAIN, WORK, EVAL (1: recall evals at the end).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=.:${PYTHONPATH:-}
MIXER=${MIXER:-gdn}; W=${WORK:-/tmp/distill-work}; LIMIT=${LIMIT:-480}; OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" "$W"
SP=$(python3 -c "import site; print(site.getsitepackages()[0])")
NAME=long-$MIXER
if [ ! -f "$W/smol-$MIXER/config.json" ]; then
  python3 benchmarks/distill_smollm2.py --gguf "$HYBRIDIZE_DEVICE_MODEL" --mixer "$MIXER" --work "$W" --prepare-only \
    2>&1 | grep -v "Loading\|Writing\|Converting"
fi
cat > "$W/$NAME.yaml" <<EOF
model: $W/smol-$MIXER
output: $W/$NAME
teacher: $W/teacher
data: ["$SP/**/*.py", "$SP/*.dist-info/METADATA"]
seq_len: 2048
batch_size: 8
eval_tokens: ${EVAL_TOKENS:-128K}
eval_every: ${EVAL_EVERY:-250}
checkpoint_every: ${CKPT_EVERY:-100}
backend: auto
attention: {tokens: ${ATT_TOKENS:-2M}, lr: 1e-3}
kd: {tokens: ${KD_TOKENS:-25M}, lr: ${KD_LR:-3e-4}, lora_lr: ${LORA_LR:-3e-4}, train: ${TRAIN:-lora}}
EOF
if [ -f "$W/$NAME/config.json" ]; then echo "finished earlier: $W/$NAME"; else
  RESUME=$([ -d "$W/$NAME.run/checkpoints" ] && echo --resume)
  timeout --preserve-status -s TERM "$LIMIT" python3 -m hybridize distill -c "$W/$NAME.yaml" $RESUME > "$OUT/$NAME.log" 2>&1
  echo "distill rc $? (143: stopped with a checkpoint, run again; 0: finished)"
  grep -v "Loading\|Writing\|Converting" "$OUT/$NAME.log" | tr '\r' '\n' | grep -v "━" | tail -15
fi
cp "$W/$NAME.run/metrics.jsonl" "$OUT/${NAME}_metrics.jsonl" 2>/dev/null
if [ -f "$W/$NAME/config.json" ]; then
  echo finished; cp "$W/$NAME/loss.png" "$OUT/${NAME}_loss.png"; cp "$W/$NAME/hybridize.json" "$OUT/${NAME}_record.json"
  if [ "${EVAL:-0}" = 1 ]; then
    python3 benchmarks/bench_smollm2.py --checkpoint "$W/$NAME" --out "$OUT/eval" --skip-bench 2>&1 | tail -12
  fi
fi
