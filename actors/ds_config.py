"""DeepSpeed config dict and process-group setup for the learner; device choices come from LearnerConfig."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any


def ds_config(zero_stage: int, dtype: str, grad_clip: float) -> dict[str, Any]:
    """ZeRO-2/3 with caller-owned gradient accumulation (one `engine.step()` per optimizer step)."""
    return {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "managed_gradient_accumulation": False,  # backward() accumulates; step() is the boundary
        "gradient_clipping": grad_clip,
        "zero_optimization": {"stage": zero_stage, "overlap_comm": False, "contiguous_gradients": True},
        "bf16": {"enabled": dtype == "bfloat16"},
        "zero_allow_untested_optimizer": True,  # client torch.optim.AdamW: no FusedAdam JIT build
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def init_process_group(device: str, rank: int, world_size: int, master_addr: str | None = None,
                       master_port: int | None = None) -> None:
    """torch.distributed (gloo on CPU, NCCL on GPU) set up by us before DeepSpeed, unless a launcher (Ray
    Train) already did: then DeepSpeed joins that group.

    On CPU, DeepSpeed's TorchBackend would JIT-build its `deepspeed_shm_comm` C++ op (~40 s) on first
    use; that op only serves inference all-reduce, so we mark it incompatible and DeepSpeed uses gloo.
    """
    import deepspeed
    import torch.distributed as dist

    if device == "cpu":
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    if not dist.is_initialized():
        os.environ.update(MASTER_ADDR=str(master_addr), MASTER_PORT=str(master_port), RANK=str(rank),
                          WORLD_SIZE=str(world_size), LOCAL_RANK="0")
        dist.init_process_group("gloo" if device == "cpu" else "nccl", rank=rank, world_size=world_size,
                                timeout=timedelta(minutes=10))
    deepspeed.init_distributed(dist_backend="gloo" if device == "cpu" else "nccl")
