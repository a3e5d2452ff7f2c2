#!/usr/bin/env bash
# `hybridize distill` on several GPUs of one host, through `accelerate launch`: DDP, then FSDP2
# stopped by SIGTERM mid-stage 2 and resumed, on the same data; then stage 2 + LoRA of a
# Llama-3-8B-shaped model under FSDP2. Model: SmolLM2-135M's shape with random weights and a
# one-character-per-token tokenizer (no download, no GGUF needed); data: Python's standard library.
# From the repo root (datasets must be importable: `. .dev/m1/device-setup.sh` on the device):
#   N=2 bash benchmarks/distill_multigpu.sh
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=.:${PYTHONPATH:-}
N=${N:-2}; W=${WORK:-/tmp/multigpu}; OUT=${OUT:-/tmp/out}; mkdir -p "$W" "$OUT"
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
python3 - "$W" <<'PY'
import sys
from pathlib import Path
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from tests.conftest import char_tokenizer
from hybridize import api
w = Path(sys.argv[1])
torch.manual_seed(0)
config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                     num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                     rope_theta=100000.0, tie_word_embeddings=True, eos_token_id=1, bos_token_id=1)
LlamaForCausalLM(config).save_pretrained(w / "teacher")
char_tokenizer().save_pretrained(w / "teacher")
api.convert(str(w / "teacher"), api.plan(str(w / "teacher"), ratio="3:1", mixer="gdn"), w / "hybrid", force=True)
print("teacher and 3:1 hybrid written")
PY
ARGS="$W/hybrid --data stdlib --attention-tokens ${ATT_TOKENS:-1M} --tokens ${KD_TOKENS:-2M} --seq-len ${SEQ:-2048} -b ${B:-8} --eval-tokens ${EVAL_TOKENS:-64K} --checkpoint-every 20 --force"
FSDP="--use_fsdp --fsdp_version 2 --fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP --fsdp_reshard_after_forward true"
run() {  # name, seconds, accelerate flags...
  local name=$1 limit=$2; shift 2
  timeout --preserve-status -s TERM "$limit" python3 -m accelerate.commands.launch --num_processes "$N" --mixed_precision bf16 "$@" \
    -m hybridize distill $ARGS -o "$W/$name" >> "$OUT/$name.log" 2>&1
  echo "$name: rc $?"
}
[ "${SKIP_DDP:-0}" = 1 ] || run ddp 300 --multi_gpu
run fsdp "${STOP_AFTER:-95}" $FSDP  # SIGTERM mid-run: a checkpoint at the end of the step, exit 143
grep -h "stopped" "$OUT/fsdp.log" | tail -1
ARGS="${ARGS/--force/--resume}"
run fsdp 300 $FSDP
for name in ddp fsdp; do
  cp "$W/$name.run/metrics.jsonl" "$OUT/${name}_metrics.jsonl" 2>/dev/null
  grep -h "held-out\|resuming" "$OUT/$name.log" | tail -4
done
python3 - "$W" <<'PY'
import json, sys
from pathlib import Path
w = Path(sys.argv[1])
print("| run | held-out ppl | original | top-1 | KL | stage 1 tok/s | stage 2 tok/s | peak GiB (s1 / s2) |")
print("|---|---|---|---|---|---|---|---|")
for name in ("ddp", "fsdp"):
    rec = w / name / "hybridize.json"
    if not rec.is_file():
        print(f"| {name} | not finished | | | | | | |"); continue
    r = json.loads(rec.read_text()); e = r["evaluation"]["kd"]; st = r["stages"]
    speed = {s: round(x["tokens"] / max(x["seconds"], 1e-9)) for s, x in st.items()}
    print(f"| {name} | {e['ppl']:.3f} | {e['teacher_ppl']:.3f} | {e['top1_agreement']:.1%} | {e['kl']:.4f} | "
          f"{speed.get('attention'):,} | {speed.get('kd'):,} | {st['attention']['peak_memory'] / 2**30:.1f} / "
          f"{st['kd']['peak_memory'] / 2**30:.1f} |")
PY
if [ "${SKIP_8B:-0}" != 1 ]; then
  timeout 240 python3 -m accelerate.commands.launch --num_processes "$N" --mixed_precision bf16 $FSDP benchmarks/distill_throughput.py \
    --shape llama8b --stage kd --seq-len 4096 --steps 4 --json "$OUT/llama8b_fsdp.json" > "$OUT/llama8b_fsdp.log" 2>&1
  echo "8b fsdp rc $?"; grep "^|" "$OUT/llama8b_fsdp.log" | tail -1
fi
