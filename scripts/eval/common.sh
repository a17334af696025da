# Shared by the evaluation launchers in scripts/eval/ (sourced, not run).
#   generate_sharded TASK CKPT DATA_ROOT OUT [generate options...]   one process per visible GPU, then merge
#   judge_and_aggregate OUT PROFILE [judge options...]                 judge OUT/predictions.jsonl, tables in OUT/results
# GPUs: CUDA_VISIBLE_DEVICES (as the reference scripts), else every GPU nvidia-smi lists, else one CPU process.
# Every step resumes: rerun the same command after a crash or a kill (with the same GPU count).

_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if [[ -x "$_REPO/.venv/bin/videopanda" ]]; then
  VIDEOPANDA=("$_REPO/.venv/bin/videopanda")
else
  VIDEOPANDA=(videopanda)
fi

gpu_list() {
  if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
    echo "${CUDA_VISIBLE_DEVICES//,/ }"
  elif command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | tr '\n' ' '
  fi
}

generate_sharded() {
  local task=$1 ckpt=$2 data_root=$3 out=$4
  shift 4
  local gpus
  read -ra gpus <<< "$(gpu_list)"
  local n=${#gpus[@]}
  if (( n <= 1 )); then
    "${VIDEOPANDA[@]}" eval generate --model "$ckpt" --task "$task" --data-root "$data_root" --out "$out" "$@"
    return
  fi
  mkdir -p "$out/logs"
  echo "[eval] $task: $n shards on GPUs ${gpus[*]}; logs in $out/logs/"
  local pids=() k
  for k in "${!gpus[@]}"; do
    CUDA_VISIBLE_DEVICES=${gpus[$k]} "${VIDEOPANDA[@]}" eval generate --model "$ckpt" --task "$task" \
      --data-root "$data_root" --out "$out" --num-shards "$n" --shard "$k" --no-progress "$@" \
      > "$out/logs/shard$k.log" 2>&1 &
    pids+=("$!")
  done
  local failed=0 pid
  for pid in "${pids[@]}"; do
    wait "$pid" || failed=1
  done
  if (( failed )); then
    echo "[eval] $task: a shard failed (see $out/logs/); rerun the same command to resume" >&2
    return 1
  fi
  "${VIDEOPANDA[@]}" eval merge --out "$out"
}

judge_and_aggregate() {
  local out=$1 profile=$2
  shift 2
  "${VIDEOPANDA[@]}" eval judge --predictions "$out/predictions.jsonl" --profile "$profile" "$@"
  "${VIDEOPANDA[@]}" eval aggregate "$out" --out "$out/results"
}
