#!/usr/bin/env bash
# The entrypoint of k8s/rayjob-ssp.yaml: all of SSP on a KubeRay cluster, stage by stage.
#   ssp spectrum (SFT on Ray Train, probe, merge) -> ssp rl from the merged model (MGPO) -> ssp eval (math)
# Usage: cluster/jobs/k8s_stages.sh [CONFIG=/etc/ssp/ssp.yaml] [RUN=/data/runs/ssp] [key.sub=value ...]
# The placement overrides match k8s/raycluster.yaml (verifiers on the CPU group, engines on the GPU group)
# and the scheduler uses k8s/redis.yaml (password from $SSP_REDIS_PASSWORD). Kept here, not in the
# RayJob's entrypoint: KubeRay's submitter passes the entrypoint through a shell of its own.
# Rerunnable: when the RayJob is retried on a new cluster (its backoffLimit, e.g. after the head node was lost)
# each stage continues from what the last attempt left on the PVC: spectrum keeps its finished parts, rl
# continues from its last checkpoint (--auto-resume) or does nothing if it finished, eval runs again.
set -euo pipefail
cd "$(dirname "$0")/../.."
CONFIG=${1:-/etc/ssp/ssp.yaml}; RUN=${2:-/data/runs/ssp}; shift $(( $# < 2 ? $# : 2 ))
K8S=("scheduler.redis_url=redis://ssp-redis:6379/0" "rollout.resources={ssp_gpu: 1}" "verifier.resources={ssp_cpu: 1}"
     "$@")
python -m ssp.cli spectrum --config "$CONFIG" "run_dir=$RUN/spectrum" "${K8S[@]}"
python -m ssp.cli rl --config "$CONFIG" "run_dir=$RUN/rl" "model.path=$RUN/spectrum/merged" "${K8S[@]}" --auto-resume
python -m ssp.cli eval --config "$CONFIG" --model "$RUN/rl/final-model" --suite math "run_dir=$RUN" "${K8S[@]}"
