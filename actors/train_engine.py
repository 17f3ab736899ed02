"""The one training engine: per-rank DeepSpeed code shared by both drivers.

Ray Train runs it for SFT (trainer/spectrum/sft.py, a fixed supervised pass); the learner actors run it for RL
(actors/learner.py, a step whenever the loop asks). Both hand it micro-batches planned by the same
token budget (`plan_micro_batches`) and per-token weights that already sum to the right total over the
whole global batch, so micro-batches and ranks add up exactly; only the loss function differs
(actors/losses.py: `policy_loss`, `sft_loss`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor


def lr_lambda(warmup_steps: int, total_steps: int = 0, floor: float = 1.0) -> Callable[[int], float]:
    """LR multiplier: linear warm-up over `warmup_steps`, then cosine decay to `floor` at `total_steps`
    (floor=1.0, or total_steps=0: constant after warm-up, the RL learner's default)."""
    warm = max(1, warmup_steps)

    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warm
        if total_steps <= warmup_steps or floor >= 1.0:
            return 1.0
        t = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    return f


def plan_micro_batches(lengths: list[int], keep: list[int], budget: int, world: int) -> list[list[list[int]]]:
    """Per rank, a list of micro-batches (sample indices); every rank gets the same count.

    A micro-batch holds rows while rows x longest row <= budget. A rank short of micro-batches gets copies
    of `[-1]` (run sample 0 at zero weight) so collectives stay matched.
    """
    micro: list[list[int]] = []
    for i in sorted(keep, key=lambda j: -lengths[j]):
        if micro and (len(micro[-1]) + 1) * max(lengths[j] for j in micro[-1] + [i]) <= budget:
            micro[-1].append(i)
        else:
            micro.append([i])
    per_rank: list[list[list[int]]] = [micro[r::world] for r in range(world)]
    most = max(len(m) for m in per_rank)
    return [m + [[-1]] * (most - len(m)) for m in per_rank]


def token_logprobs(model, ids: Tensor, attn: Tensor, with_entropy: bool,
                   entropy_grad: bool = False) -> tuple[Tensor, Tensor | None]:
    """log pi(ids[t] | ids[<t]) as [B, T] (column 0 is 0), and the per-token entropy if asked."""
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
    logsm = torch.log_softmax(logits, -1)
    logp = torch.nn.functional.pad(logsm.gather(-1, ids[:, 1:, None]).squeeze(-1), (1, 0))
    ent = None
    if with_entropy:
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            ent = torch.nn.functional.pad(-(logsm.exp() * logsm).sum(-1), (1, 0))
    return logp, ent


class TrainEngine:
    """An HF causal LM wrapped by DeepSpeed ZeRO on one rank; the process group must already exist.

    `backward(loss)` takes a loss whose per-token weights were normalised over the global batch, and
    undoes DeepSpeed's averaging over ranks; `step()` is the optimizer boundary.
    """

    def __init__(self, model_path: str, *, device: str, zero_stage: int, dtype: str, grad_clip: float, lr: float,
                 weight_decay: float, schedule: Callable[[int], float], seed: int, rank: int, world: int) -> None:
        import deepspeed
        from transformers import AutoModelForCausalLM

        from actors.ds_config import ds_config

        random.seed(seed)
        torch.manual_seed(seed)
        self.model_path, self.device, self.rank, self.world = model_path, device, rank, world
        self.torch_device = torch.device("cuda", 0) if device == "cuda" else torch.device("cpu")
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        model.config.use_cache = False
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        self.ds, *_ = deepspeed.initialize(model=model, optimizer=opt, lr_scheduler=sched,
                                           config=ds_config(zero_stage, dtype, grad_clip))

    def __call__(self, **kw):
        return self.ds(**kw)

    def backward(self, loss: Tensor) -> None:
        self.ds.backward(loss * self.world, scale_wrt_gas=False)  # DeepSpeed averages over ranks

    def step(self) -> dict[str, float]:
        """The optimizer step; returns the global grad norm and the learning rate this step used."""
        lr = self.ds.get_lr()[0]
        self.ds.step()
        norm = self.ds.get_global_grad_norm()
        return {"grad_norm": float(norm) if norm is not None else float("nan"), "lr": lr}

    def state_dict(self) -> dict[str, Tensor] | None:
        """Full parameters gathered on every rank (a collective); returned by rank 0 only."""
        import deepspeed

        module = self.ds.module
        with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
            if self.rank != 0:
                return None
            return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}

    def save_hf(self, path: str | Path) -> None:
        """`save_pretrained` safetensors + tokenizer (a collective; rank 0 writes)."""
        sd = self.state_dict()
        if sd is None:
            return
        from transformers import AutoTokenizer

        self.ds.module.save_pretrained(path, state_dict=sd, safe_serialization=True)
        AutoTokenizer.from_pretrained(self.model_path).save_pretrained(path)

    def save_checkpoint(self, path: str | Path) -> None:
        """Model, optimizer and scheduler shards plus this rank's RNG (a collective)."""
        self.ds.save_checkpoint(str(path), tag="ckpt")
        rng = {"torch": torch.get_rng_state(), "python": random.getstate(),
               "cuda": torch.cuda.get_rng_state_all() if self.device == "cuda" else None}
        torch.save(rng, Path(path) / f"rng_rank{self.rank}.pt")

    def load_checkpoint(self, path: str | Path) -> None:
        self.ds.load_checkpoint(str(path), tag="ckpt")
        rng = torch.load(Path(path) / f"rng_rank{self.rank}.pt", weights_only=False)
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        if rng["cuda"] is not None:
            torch.cuda.set_rng_state_all(rng["cuda"])
