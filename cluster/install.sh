#!/usr/bin/env bash
# Installs what ssp-rl needs on this machine: system packages (apt, when missing) and the venv.
# Idempotent. Usage: cluster/install.sh [VENV_DIR] ; SSP_DEVICE=gpu selects the CUDA vLLM build.
set -euo pipefail
VENV=${1:-.venv}
DEVICE=${SSP_DEVICE:-cpu}

# System packages the tests and the sandbox need: a real Redis server, bubblewrap, seccomp for the
# system python that runs sandboxed code.
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v bwrap >/dev/null || need+=(bubblewrap)
/usr/bin/python3 -c "import seccomp" 2>/dev/null || need+=(python3-seccomp)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  fi
fi

[ -x "$VENV/bin/python" ] || python3.11 -m venv "$VENV"
PIP=("$VENV/bin/pip" install -q)
# The CPU torch wheel (2.13.0+cpu) may lie in a local wheel folder; pip takes it from there.
[ -d /opt/wheels ] && PIP+=(--find-links /opt/wheels)
"${PIP[@]}" --upgrade pip wheel
"${PIP[@]}" -e ".[${DEVICE},dev]"
# PyPI's torchvision/torchaudio/torchcodec are CUDA builds that break `import transformers` models.
"$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" -c "import torch, vllm, ray, deepspeed; print('installed: torch', torch.__version__, '| vllm', vllm.__version__, '| ray', ray.__version__, '| deepspeed', deepspeed.__version__)"
