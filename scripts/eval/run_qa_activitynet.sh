#!/usr/bin/env bash
# ActivityNet-QA zero-shot inference (reference §7.3): one generate process per visible GPU, then merge.
# Usage: bash scripts/eval/run_qa_activitynet.sh CKPT DATA_ROOT OUT [videopanda eval generate options...]
#   DATA_ROOT holds Activitynet_Zero_Shot_QA/ (also found as GPT_Zero_Shot_QA/Activitynet_Zero_Shot_QA/ or eval/GPT_Zero_Shot_QA/Activitynet_Zero_Shot_QA/).
#   Example: CUDA_VISIBLE_DEVICES=0,1,2,3 bash scripts/eval/run_qa_activitynet.sh runs/finetune DATA_ROOT runs/eval/activitynet
#   Then judge: bash scripts/eval/eval_qa_activitynet.sh runs/eval/activitynet gpt-4o-mini-2024-07-18
set -euo pipefail
source "$(dirname "$0")/common.sh"
if (( $# < 3 )); then
  sed -n '2,6p' "$0" >&2
  exit 2
fi
generate_sharded activitynet_qa "$@"
