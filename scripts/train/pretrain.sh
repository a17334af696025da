#!/usr/bin/env bash
# Stage: pretrain (configs/train/pretrain.yaml). Usage: bash scripts/train/pretrain.sh NODE_RANK MASTER_ADDR [key.sub=value ...]
# Environment: DATA_ROOT, CKPT_ROOT, RUN_ROOT, NNODES, GPUS_PER_NODE, MASTER_PORT (see scripts/train/common.sh).
exec bash "$(dirname "$0")/common.sh" pretrain "$@"
