"""The one source of the process environment the project's processes need (drivers, Ray workers, jobs).

`process_env()` is what every process gets; `learner_env(device)` adds the learner ranks' own. The CLI and
the test suite `apply()` it to themselves, the Ray cluster passes it to its workers as a runtime env, and
`python -m cluster.env --runtime-env` prints it for `ray job submit` (cluster/jobs/submit.sh). Values
already set in the environment win, so a user can override any of them.
"""

from __future__ import annotations

import json
import os
import sys

# vLLM's CPU backend: no OpenMP thread pinning (cores are shared with the learner), the engine in this
# process (starts in seconds; engine.in_process=false turns it off). VLLM_CPU_KVCACHE_SPACE comes from
# engine.kv_cache_gib (actors/engine.py set_engine_env), not from here.
# RAY_TRAIN_ENABLE_STATE_TRACKING: Ray Train runs (`ssp sft`) appear in the dashboard's Train view.
_BASE = {
    "RAY_TRAIN_ENABLE_STATE_TRACKING": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
}


def process_env() -> dict[str, str]:
    """The variables every process of a run needs, with the caller's own values taking precedence."""
    return {k: os.environ.get(k, v) for k, v in _BASE.items()}


def learner_env(device: str, threads: int = 1) -> dict[str, str]:
    """A learner rank's (RL learner actors and SFT workers): `learner.threads_per_rank` OpenMP threads,
    DeepSpeed's accelerator from `learner.device`."""
    return {**process_env(), "OMP_NUM_THREADS": str(threads), "DS_ACCELERATOR": "cuda" if device == "cuda" else "cpu"}


def apply() -> None:
    """Set the variables in this process (only those not already set). While a cluster from `ssp cluster up`
    runs, also Ray's token auth mode, which Ray reads when it is imported (so: first thing in a process)."""
    for k, v in _BASE.items():
        os.environ.setdefault(k, v)
    from cluster.state import default_state_dir, live_state

    if live_state(default_state_dir()):
        os.environ.setdefault("RAY_AUTH_MODE", "token")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--runtime-env"]:  # the JSON `ray job submit --runtime-env-json` takes
        print(json.dumps({"env_vars": process_env(), "excludes": [".venv", "runs", "artifacts", ".git"]}))
    else:
        print("\n".join(f"export {k}={v}" for k, v in process_env().items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
