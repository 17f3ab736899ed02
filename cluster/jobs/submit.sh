#!/usr/bin/env bash
# Submit one SSP stage to a Ray cluster with `ray job submit`: the same command for a local head
# (`ssp cluster up`) and a remote one (KubeRay: port-forward the head's dashboard port 8265).
#
# Usage: cluster/jobs/submit.sh [--no-wait] STAGE [ssp arguments ...]
#   STAGE     spectrum | sft | probe | rl | eval | serve | pipeline   (runs `ssp STAGE ...` on the cluster)
#   --no-wait return once the job is accepted; follow it with the printed `ray job logs` command
# The cluster: RAY_ADDRESS (the dashboard URL, http://HOST:8265): this directory is uploaded as the job's
# working_dir (so relative paths in the config resolve inside that copy: give shared, absolute paths for
# outputs, as the KubeRay RayJob does with its PVC). RAY_ADDRESS unset: the head `ssp cluster up` started on
# this machine, and the job runs in this directory (outputs land here, as with a plain `ssp STAGE`).
# Examples: cluster/jobs/submit.sh eval --suite toy --limit 4 --k 2
#           cluster/jobs/submit.sh --no-wait rl --config configs/tiny-cpu.yaml rl.steps=20
# The job's runtime_env: this directory as working_dir and the process env of cluster/env.py (the one source).
# The head must have this project's dependencies installed (same venv or image as the workers).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${SSP_PYTHON:-.venv/bin/python}
WAIT=1
if [ "${1:-}" = "--no-wait" ]; then WAIT=0; shift; fi
STAGE=${1:?usage: cluster/jobs/submit.sh [--no-wait] STAGE [ssp arguments ...]}; shift
case "$STAGE" in
  spectrum|sft|probe|rl|eval|serve|pipeline) ;;
  *) echo "submit.sh: unknown stage '$STAGE'; valid: spectrum sft probe rl eval serve pipeline" >&2; exit 2 ;;
esac
if [ "$STAGE" = serve ] && [[ " $* " != *" --detach "* ]]; then set -- "$@" --detach; fi  # a job must return
WORKDIR=(--working-dir .); CMD=(python -m ssp.cli "$STAGE" "$@")
if [ -z "${RAY_ADDRESS:-}" ]; then
  RAY_ADDRESS=$($PY -m cluster.local --dashboard-url) || {
    echo "submit.sh: no RAY_ADDRESS and no cluster from \`ssp cluster up\`; start one or set RAY_ADDRESS" >&2; exit 2; }
  WORKDIR=(); CMD=(bash -c "cd $(printf %q "$PWD") && exec python -m ssp.cli $STAGE $(printf '%q ' "$@")")
fi
export RAY_ADDRESS
# Ray 2.60 heads with token auth (ssp cluster up) need it on the client too: ~/.ray/auth_token or RAY_AUTH_TOKEN
if [ -f "$HOME/.ray/auth_token" ] || [ -n "${RAY_AUTH_TOKEN:-}" ]; then export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}; fi
ID="ssp-$STAGE-$(date +%Y%m%d-%H%M%S)-$RANDOM"
RAY="$(dirname "$PY")/ray"
echo "job $ID on $RAY_ADDRESS: ssp $STAGE $*"
echo "  logs:   $RAY job logs --address $RAY_ADDRESS --follow $ID"
echo "  status: $RAY job status --address $RAY_ADDRESS $ID    stop: $RAY job stop --address $RAY_ADDRESS $ID"
ARGS=(job submit --address "$RAY_ADDRESS" --submission-id "$ID" "${WORKDIR[@]}"
      --runtime-env-json "$($PY -m cluster.env --runtime-env)")
if [ "$WAIT" = 0 ]; then ARGS+=(--no-wait); fi
exec "$RAY" "${ARGS[@]}" -- "${CMD[@]}"  # ray quotes each argument
