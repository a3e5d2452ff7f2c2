#!/usr/bin/env bash
# The CLI workflow on one model: plan -> convert -> eval -> push (dry run).
#   bash examples/cli_workflow.sh                 # SmolLM2-135M-Instruct, CPU is enough
#   bash examples/cli_workflow.sh MODEL OUT_DIR   # any alias, Hub id, local directory or .gguf
set -euo pipefail
model=${1:-smollm2-135m}
out=${2:-out/cli-example}
mkdir -p "$out"
hybridize plan "$model" --ratio 3:1 --contexts 8K,128K -o "$out/plan.yaml" --force
hybridize convert "$model" --plan "$out/plan.yaml" -o "$out/hybrid" --force
hybridize eval "$out/hybrid" --max-tokens 2048 --json > "$out/eval.json"
cat "$out/eval.json"
hybridize push "$out/hybrid" your-name/hybrid-example --dry-run
