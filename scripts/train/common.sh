#!/usr/bin/env bash
# Shared launcher for the three stages: `source`d by prealign.sh / pretrain.sh / finetune.sh.
#   Usage: bash scripts/train/<stage>.sh NODE_RANK MASTER_ADDR [key.sub=value ...]
# Environment (with defaults):
#   DATA_ROOT        data               folder with train/train_json/*.json and the videos (reference §6.1)
#   CKPT_ROOT        checkpoints        EVE-7B-Pretrain-v1.0/ and LanguageBind_Video_merge/ live here
#   RUN_ROOT         runs               stage outputs: RUN_ROOT/prealign, RUN_ROOT/pretrain, RUN_ROOT/finetune
#   NNODES           1                  nodes in the job (the paper: 16)
#   GPUS_PER_NODE    all visible GPUs   processes per node (the paper: 4)
#   MASTER_PORT      29500
#   PYTHON           .venv/bin/python if present, else python
set -euo pipefail
STAGE=$1; shift
NODE_RANK=${1:-0}; MASTER_ADDR=${2:-127.0.0.1}
shift $(( $# >= 2 ? 2 : $# ))
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
DATA_ROOT=${DATA_ROOT:-data}
CKPT_ROOT=${CKPT_ROOT:-checkpoints}
RUN_ROOT=${RUN_ROOT:-runs}
NNODES=${NNODES:-1}
MASTER_PORT=${MASTER_PORT:-29500}
PYTHON=${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python )}
if [[ -z "${GPUS_PER_NODE:-}" ]]; then
  GPUS_PER_NODE=$("$PYTHON" -c "import torch; print(max(1, torch.cuda.device_count()))" 2>/dev/null || echo 1)
fi

case $STAGE in
  prealign) INIT=(model.init_from="$CKPT_ROOT/EVE-7B-Pretrain-v1.0" model.tokenizer="$CKPT_ROOT/EVE-7B-Pretrain-v1.0") ;;
  pretrain) INIT=(model.init_from="$RUN_ROOT/prealign") ;;
  finetune) INIT=(model.init_from="$RUN_ROOT/pretrain") ;;
  *) echo "unknown stage $STAGE" >&2; exit 2 ;;
esac

echo "[$STAGE] node $NODE_RANK/$NNODES, $GPUS_PER_NODE GPUs per node, master $MASTER_ADDR:$MASTER_PORT"
exec "$PYTHON" -m torch.distributed.run \
  --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node "$GPUS_PER_NODE" \
  --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
  -m videopanda.train "configs/train/$STAGE.yaml" \
  data.root="$DATA_ROOT" \
  distill.teacher_path="$CKPT_ROOT/LanguageBind_Video_merge" \
  output_dir="$RUN_ROOT/$STAGE" \
  "${INIT[@]}" "$@"
