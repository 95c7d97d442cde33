#!/usr/bin/env bash
# Drop-in for vLLM's examples/online_serving/run_cluster.sh, same argument order:
#   scripts/run_cluster.sh IMAGE HEAD_IP --head|--worker HF_HOME [docker options...]
# It only forwards to the `run_cluster` command (structured docker options, Ray token auth,
# readiness waits); see docs/runbook.md.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if command -v run_cluster >/dev/null 2>&1; then
  exec run_cluster "$@"
elif [ -x "$HERE/.venv/bin/run_cluster" ]; then
  exec "$HERE/.venv/bin/run_cluster" "$@"
fi
exec python3 -m cluster.run_cluster "$@"
