#!/usr/bin/env bash
# Shared launcher of the three stages, run by prealign.sh / pretrain.sh / finetune.sh:
#   bash scripts/train/<stage>.sh NODE_RANK MASTER_ADDR [key.sub=value ...]
# Run it on every node (NODE_RANK 0..NNODES-1) with the same MASTER_ADDR; the extra arguments are config overrides.
# Environment (defaults in brackets), as the reference's scripts:
#   DATA_ROOT      [data]          holds train/train_json/*.json and the videos under train/ (reference §6.1)
#   CKPT_ROOT      [checkpoints]   where the downloaded checkpoints live
#   EVE_CKPT       [$CKPT_ROOT/EVE-7B-Pretrain-v1.0]      pre-alignment's start (converted on load) and tokenizer
#   TEACHER_CKPT   [$CKPT_ROOT/LanguageBind_Video_merge]  the frozen distillation teacher
#   RUN_ROOT       [runs]          stage outputs: RUN_ROOT/prealign, RUN_ROOT/pretrain, RUN_ROOT/finetune
#   INIT_FROM      [the previous stage's output; EVE_CKPT for prealign]
#   NNODES         [1]             nodes in the job (the paper: 16)
#   GPUS_PER_NODE  [all visible GPUs, at least 1]   processes per node (the paper: 4)
#   MASTER_PORT    [29500]
#   PYTHON         [.venv/bin/python if present, else python]
#   DRY_RUN        [0]             1: print the command instead of running it
# A stage that was killed resumes from its newest checkpoint when relaunched with the same command.
set -euo pipefail
STAGE=$1
shift
NODE_RANK=${1:-0}
MASTER_ADDR=${2:-127.0.0.1}
shift $(($# >= 2 ? 2 : $#))
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

DATA_ROOT=${DATA_ROOT:-data}
CKPT_ROOT=${CKPT_ROOT:-checkpoints}
EVE_CKPT=${EVE_CKPT:-$CKPT_ROOT/EVE-7B-Pretrain-v1.0}
TEACHER_CKPT=${TEACHER_CKPT:-$CKPT_ROOT/LanguageBind_Video_merge}
RUN_ROOT=${RUN_ROOT:-runs}
NNODES=${NNODES:-1}
MASTER_PORT=${MASTER_PORT:-29500}
PYTHON=${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python)}
if [[ -z "${GPUS_PER_NODE:-}" ]]; then
  GPUS_PER_NODE=$("$PYTHON" -c "import torch; print(max(1, torch.cuda.device_count()))" 2>/dev/null || echo 1)
fi

case $STAGE in
  prealign) INIT=(model.init_from="${INIT_FROM:-$EVE_CKPT}" model.tokenizer="${INIT_FROM:-$EVE_CKPT}") ;;
  pretrain) INIT=(model.init_from="${INIT_FROM:-$RUN_ROOT/prealign}") ;;
  finetune) INIT=(model.init_from="${INIT_FROM:-$RUN_ROOT/pretrain}") ;;
  *)
    echo "unknown stage '$STAGE' (prealign, pretrain or finetune)" >&2
    exit 2
    ;;
esac

CMD=("$PYTHON" -m torch.distributed.run
  --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node "$GPUS_PER_NODE"
  --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT"
  -m videopanda.train "configs/train/$STAGE.yaml"
  data.root="$DATA_ROOT"
  distill.teacher_path="$TEACHER_CKPT"
  output_dir="$RUN_ROOT/$STAGE"
  "${INIT[@]}" "$@")

echo "[$STAGE] node $NODE_RANK of $NNODES, $GPUS_PER_NODE processes per node, master $MASTER_ADDR:$MASTER_PORT" >&2
if [[ "${DRY_RUN:-0}" == 1 ]]; then
  printf '%q ' "${CMD[@]}"
  echo
  exit 0
fi
exec "${CMD[@]}"
