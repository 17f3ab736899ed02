#!/usr/bin/env bash
# The CUDA path, on a machine with at least one NVIDIA GPU: installs the CUDA build (vllm==0.32.0, torch CUDA),
# builds a random-init model of Qwen2.5-1.5B's shape (28 layers, width 1536, 12 heads / 2 KV heads, MLP
# 8960; the Qwen2.5 tokenizer when TOKENIZER points at it, else a trained BPE), and runs `ssp rl` for a few
# steps with real vLLM on CUDA, DeepSpeed ZeRO on CUDA (NCCL) and the weight sync learner -> engines, from
# configs/qwen2.5-math-1.5b-gpu.yaml with only the sizes below changed. Prints tokens/s, the step split and
# the sync time per step; the last line is JSON. Absolute speed figures of this project count only from here.
#
# Usage: bash benchmarks/gpu_smoke.sh [STEPS]       env: VENV (.venv-gpu), TOKENIZER (a Qwen2.5 tokenizer dir),
#        WHEELS (a folder of wheels to install offline), GPUS (default: all visible)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-6}
VENV=${VENV:-.venv-gpu}
GPUS=${GPUS:-$(nvidia-smi -L | wc -l)}
RUN=runs/gpu-smoke-$(date +%Y%m%d-%H%M%S)
[ "$GPUS" -ge 1 ] || { echo "gpu_smoke: no NVIDIA GPU visible (nvidia-smi -L)" >&2; exit 2; }

if [ ! -x "$VENV/bin/ssp" ]; then
  python3 -m venv "$VENV"
  if [ -n "${WHEELS:-}" ]; then
    "$VENV/bin/pip" install -q --no-index --find-links "$WHEELS" -e ".[gpu,dev]"
  else
    "$VENV/bin/pip" install -q -e ".[gpu,dev]"
  fi
fi
"$VENV/bin/python" -c "import torch, vllm; assert torch.cuda.is_available(); print('torch', torch.__version__, 'vllm', vllm.__version__, torch.cuda.get_device_name())"

TOK=()
[ -n "${TOKENIZER:-}" ] && TOK=("model.tiny.tokenizer_from=$TOKENIZER")
# One GPU: the engine and the learner share it (engine 45% of memory); more: half the GPUs each.
ENGINES=$(( GPUS > 1 ? GPUS / 2 : 1 )); LEARNERS=$(( GPUS > 1 ? GPUS - ENGINES : 1 ))
PER_ENGINE=$([ "$GPUS" -gt 1 ] && echo 1 || echo 0.5); PER_LEARNER=$PER_ENGINE
"$VENV/bin/ssp" rl --config configs/qwen2.5-math-1.5b-gpu.yaml "run_dir=$RUN" \
  model.path=artifacts/qwen2.5-1.5b-shape model.source=tiny model.tiny.vocab_size=32000 model.tiny.hidden_size=1536 \
  model.tiny.num_layers=28 model.tiny.num_heads=12 model.tiny.num_kv_heads=2 model.tiny.intermediate_size=8960 \
  model.tiny.max_position_embeddings=4096 "${TOK[@]}" \
  "data.train=[]" "data.eval=[]" \
  sampling.max_tokens=1024 engine.max_model_len=2048 engine.max_num_batched_tokens=16384 engine.gpu_memory_utilization=0.45 \
  cluster.num_gpus="$GPUS" cluster.num_cpus=16 rollout.num_engines="$ENGINES" \
  rollout.num_gpus_per_engine="$PER_ENGINE" learner.num_actors="$LEARNERS" learner.num_gpus_per_actor="$PER_LEARNER" \
  learner.zero_stage=2 learner.micro_batch_tokens=32768 \
  rl.batch_problems=64 rl.group_size=8 rl.eval_every=0 rl.eval_max_problems=64 rl.checkpoint_every=0 \
  "rl.phases=[{name: smoke, steps: $STEPS, max_tokens: 1024, subdomains: []}]"

"$VENV/bin/python" - "$RUN" <<'EOF'
import json, statistics, sys
from pathlib import Path
recs = [json.loads(x) for x in (Path(sys.argv[1]) / "metrics.jsonl").read_text().splitlines()]
steps = [r for r in recs if "samples" in r and r["step"] > 0]  # step 0 warms up (CUDA graphs, NCCL)
med = lambda k: statistics.median(r.get(k, 0.0) for r in steps)
wall = med("step_wall_s")
fig = {"gpu_tokens_per_s": round(med("tokens_per_s"), 1), "gpu_s_per_step": round(wall, 2),
       **{f"gpu_{p}_s": round(med(f"time_{p}"), 3) for p in ("generate", "verify", "train", "sync")},
       "gpu_sync_fraction": round(med("time_sync") / wall, 4)}
print(json.dumps(fig))
EOF
