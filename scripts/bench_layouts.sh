#!/usr/bin/env bash
# DP=3 vs PP=3 on 3 simulated hosts (issue 21's benchmark): the same seeded requests, streamed at
# one concurrency, against each layout served by `onenode cluster serve`. Results (JSON + PNG)
# land in bench/results/layout-<name>.*; docs/performance.md quotes them.
# Usage: scripts/bench_layouts.sh [CONCURRENCY] [NUM_REQUESTS]
set -euo pipefail
cd "$(dirname "$0")/.."
ON=.venv/bin/onenode
MODEL=/root/.cache/huggingface/models/SmolLM2-135M-Instruct
CONC=${1:-32} NUM=${2:-96} NAME=onbench PORT=${ONENODE_BENCH_PORT:-8471}
IMAGE=$(cat .onenode/image.tag 2>/dev/null || echo onenode:latest)
declare -A LAYOUTS=(
  [dp3]="--data-parallel-size 3 --data-parallel-backend ray"
  [pp3]="--pipeline-parallel-size 3"
)
$ON model fetch-demo
trap '$ON cluster down --name $NAME >/dev/null 2>&1 || true' EXIT
for layout in dp3 pp3; do
  $ON cluster up --nodes 3 --name "$NAME" --image "$IMAGE" --api-port "$PORT" \
    --cpus-per-node 1 --object-store-memory 256m
  # shellcheck disable=SC2086  # the layout is a list of flags
  $ON cluster serve "$MODEL" --name "$NAME" --port "$PORT" --detach ${LAYOUTS[$layout]} \
    --max-model-len 1024 --kv-cache-space-gib 0.5 --served-model-name smol
  $ON bench serve --url "http://127.0.0.1:$PORT" --concurrency "$CONC" --num-requests "$NUM" \
    --prompt-len 32,256 --output-len 32,96 --vocab-size 49152 --name "layout-$layout"
  $ON cluster down --name "$NAME"
done
