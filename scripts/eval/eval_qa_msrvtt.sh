#!/usr/bin/env bash
# MSRVTT-QA: judge the predictions of run_qa_msrvtt.sh with a pinned judge profile, then write the results tables.
# Usage: bash scripts/eval/eval_qa_msrvtt.sh OUT PROFILE [videopanda eval judge options...]
#   PROFILE: a name in configs/eval/judges/ (gpt-4o-mini-2024-07-18, gpt-3.5-turbo-0125, vllm-qwen2.5-7b-instruct,
#   exact) or a YAML path. OpenAI profiles read the key from OPENAI_API_KEY. Rerunning pays only for what is missing.
#   Results: OUT/judge-PROFILE/judgments.jsonl and OUT/results/results.{json,md,csv}.
set -euo pipefail
source "$(dirname "$0")/common.sh"
if (( $# < 2 )); then
  sed -n '2,6p' "$0" >&2
  exit 2
fi
judge_and_aggregate "$@"
