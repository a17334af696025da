#!/usr/bin/env bash
# Video-ChatGPT benchmark inference: generic, temporal and consistency questions, one process per visible GPU each.
# Usage: bash scripts/eval/run_vcg.sh CKPT DATA_ROOT OUT [videopanda eval generate options...]
#   DATA_ROOT holds Benchmarking_QA/{generic,temporal,consistency}_qa.json and Test_Videos/
#   (also found under Video_5_Benchmark/ or eval/Video_5_Benchmark/). Writes OUT/vcg_{generic,temporal,consistency}/.
#   Then judge: bash scripts/eval/eval_vcg.sh OUT gpt-4o-mini-2024-07-18
set -euo pipefail
source "$(dirname "$0")/common.sh"
if (( $# < 3 )); then
  sed -n '2,6p' "$0" >&2
  exit 2
fi
ckpt=$1 data_root=$2 out=$3
shift 3
for task in vcg_generic vcg_temporal vcg_consistency; do
  generate_sharded "$task" "$ckpt" "$data_root" "$out/$task" "$@"
done
