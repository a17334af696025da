#!/usr/bin/env bash
# Stage finetune (configs/train/finetune.yaml), on every node of the job:
#   bash scripts/train/finetune.sh NODE_RANK MASTER_ADDR [key.sub=value ...]
# Environment: DATA_ROOT, CKPT_ROOT, EVE_CKPT, TEACHER_CKPT, RUN_ROOT, INIT_FROM, NNODES, GPUS_PER_NODE, MASTER_PORT
# (defaults and meaning in scripts/train/common.sh).
exec bash "$(dirname "$0")/common.sh" finetune "$@"
