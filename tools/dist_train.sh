#!/usr/bin/env bash
# Distributed training through torchrun (mmengine's pytorch launcher):
#   tools/dist_train.sh CONFIG NPROC [train.py options]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR and PORT as for torchrun.
# Without CUDA the gloo backend is used (CPU DDP).
CONFIG=$1
NPROC=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" \
    --master_port="$PORT" \
    "$(dirname "$0")/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
