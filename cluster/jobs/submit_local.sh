#!/usr/bin/env bash
# Start a local Ray head (if none) and submit `ssp rl` to it with `ray job submit`.
# Usage: cluster/jobs/submit_local.sh [configs/tiny-cpu.yaml] [key.sub=value ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
CONFIG=${1:-configs/tiny-cpu.yaml}; shift || true
export PATH="$PWD/.venv/bin:$PATH"   # the head (and so the job's `python`) runs from this venv
RAY=.venv/bin/ray
PORT=${SSP_DASHBOARD_PORT:-8265}
if ! $RAY status >/dev/null 2>&1; then
  $RAY start --head --num-cpus "${SSP_NUM_CPUS:-8}" --dashboard-host 127.0.0.1 --dashboard-port "$PORT" \
    --metrics-export-port "${SSP_METRICS_PORT:-8080}" --disable-usage-stats
fi
exec bash cluster/jobs/submit.sh "http://127.0.0.1:$PORT" "$CONFIG" "$@"
