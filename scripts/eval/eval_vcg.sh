#!/usr/bin/env bash
# Video-ChatGPT benchmark: judge the five dimensions (correctness, detail, context on the generic questions; temporal;
# consistency with both questions), then one results table with their average.
# Usage: bash scripts/eval/eval_vcg.sh OUT PROFILE [videopanda eval judge options...]
#   OUT is the folder of run_vcg.sh. PROFILE: an LLM judge in configs/eval/judges/ or a YAML path (not `exact`).
#   Results: OUT/results/results.{json,md,csv}, with the vcg_average of the five dimensions.
set -euo pipefail
source "$(dirname "$0")/common.sh"
if (( $# < 2 )); then
  sed -n '2,6p' "$0" >&2
  exit 2
fi
out=$1 profile=$2
shift 2
for task in vcg_generic vcg_temporal vcg_consistency; do
  "${VIDEOPANDA[@]}" eval judge --predictions "$out/$task/predictions.jsonl" --task "$task" --profile "$profile" "$@"
done
"${VIDEOPANDA[@]}" eval aggregate "$out" --out "$out/results"
