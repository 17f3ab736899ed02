#!/usr/bin/env bash
# Submit `ssp rl` to a Ray cluster (local or remote) with a runtime env; the same command either way.
# Usage: cluster/jobs/submit.sh http://HEAD:8265 configs/tiny-cpu.yaml [key.sub=value ...]
# The head must have this project installed (same venv/image as the workers, e.g. the KubeRay image).
set -euo pipefail
cd "$(dirname "$0")/../.."
ADDRESS=${1:?Ray dashboard address, e.g. http://127.0.0.1:8265}; CONFIG=${2:?config file}; shift 2
# Ray 2.60 heads require a token; send ~/.ray/auth_token (or RAY_AUTH_TOKEN) when there is one.
if [ -f "$HOME/.ray/auth_token" ] || [ -n "${RAY_AUTH_TOKEN:-}" ]; then export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}; fi
exec .venv/bin/ray job submit --address "$ADDRESS" --working-dir . \
  --runtime-env-json "$(.venv/bin/python -m cluster.env --runtime-env)" \
  -- python -m ssp.cli rl --config "$CONFIG" "$@"
