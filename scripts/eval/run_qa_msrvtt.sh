#!/usr/bin/env bash
# MSRVTT-QA zero-shot inference (reference §7.3): one generate process per visible GPU, then merge.
# Usage: bash scripts/eval/run_qa_msrvtt.sh CKPT DATA_ROOT OUT [videopanda eval generate options...]
#   DATA_ROOT holds MSRVTT_Zero_Shot_QA/ (also found as GPT_Zero_Shot_QA/MSRVTT_Zero_Shot_QA/ or eval/GPT_Zero_Shot_QA/MSRVTT_Zero_Shot_QA/).
#   Example: CUDA_VISIBLE_DEVICES=0,1,2,3 bash scripts/eval/run_qa_msrvtt.sh runs/finetune DATA_ROOT runs/eval/msrvtt
#   Then judge: bash scripts/eval/eval_qa_msrvtt.sh runs/eval/msrvtt gpt-4o-mini-2024-07-18
set -euo pipefail
source "$(dirname "$0")/common.sh"
if (( $# < 3 )); then
  sed -n '2,6p' "$0" >&2
  exit 2
fi
generate_sharded msrvtt_qa "$@"
