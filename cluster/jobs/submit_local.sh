#!/usr/bin/env bash
# Start a local Ray head (if none) and submit `ssp rl` to it with `ray job submit`.
# Usage: cluster/jobs/submit_local.sh [configs/tiny-cpu.yaml] [key.sub=value ...]
# The head it starts has token auth on (the token is generated into ~/.ray/auth_token, mode 600, if missing)
# and binds to 127.0.0.1 only: GCS, raylet, dashboard and agents are not reachable from other hosts.
set -euo pipefail
cd "$(dirname "$0")/../.."
CONFIG=${1:-configs/tiny-cpu.yaml}; shift || true
export PATH="$PWD/.venv/bin:$PATH"   # the head (and so the job's `python`) runs from this venv
RAY=.venv/bin/ray
PORT=${SSP_DASHBOARD_PORT:-8265}
export RAY_AUTH_MODE=token
if [ -z "${RAY_AUTH_TOKEN:-}" ]; then
  (umask 077; $RAY get-auth-token --generate >/dev/null)
  chmod 600 "$HOME/.ray/auth_token"
fi
if ! $RAY status >/dev/null 2>&1; then
  $RAY start --head --node-ip-address 127.0.0.1 --num-cpus "${SSP_NUM_CPUS:-8}" \
    --dashboard-host 127.0.0.1 --dashboard-port "$PORT" \
    --metrics-export-port "${SSP_METRICS_PORT:-8080}" --disable-usage-stats
fi
exec bash cluster/jobs/submit.sh "http://127.0.0.1:$PORT" "$CONFIG" "$@"
