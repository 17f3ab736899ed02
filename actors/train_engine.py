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
from contextlib import contextmanager
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


def _logp_entropy(logits: Tensor, tgt: Tensor, ent_grad: bool | None) -> tuple[Tensor, Tensor | None]:
    """fp32 log_softmax of `logits` [B, t, V] -> the targets' log-probs [B, t], and the entropy [B, t] unless
    `ent_grad` is None (computed with grad only if `ent_grad`)."""
    logsm = torch.log_softmax(logits.float(), -1)
    logp = logsm.gather(-1, tgt[..., None]).squeeze(-1)
    if ent_grad is None:
        return logp, None
    with torch.set_grad_enabled(ent_grad):
        return logp, -(logsm.exp() * logsm).sum(-1)


def _final_logits(config, logits: Tensor) -> Tensor:
    """What an HF causal LM's forward does to the LM head's output before returning it: Cohere's
    `logit_scale`, Granite's `logits_scaling`, Gemma 2/3's `final_logit_softcapping` (Qwen2: nothing)."""
    if getattr(config, "logit_scale", None) is not None:
        logits = logits * config.logit_scale
    if getattr(config, "logits_scaling", None) is not None:
        logits = logits / config.logits_scaling
    if getattr(config, "final_logit_softcapping", None) is not None:
        logits = torch.tanh(logits / config.final_logit_softcapping) * config.final_logit_softcapping
    return logits


@contextmanager
def _forward_as(module: torch.nn.Module, fn: Callable):
    """Calls of `module` run `fn` instead of its forward for a while, still inside the module's hooks."""
    before = module.__dict__.get("forward")
    module.forward = fn
    try:
        yield
    finally:
        del module.forward
        if before is not None:
            module.forward = before


def _chunked_logp(head: Callable[[Tensor], Tensor], config, h: Tensor, tgt: Tensor, chunk: int,
                  ent_grad: bool | None) -> tuple[Tensor, Tensor | None]:
    """`head` (LM head forward) + log_softmax + gather (+ entropy) over `chunk` of the tokens' hidden states
    `h` [N, H] (targets `tgt` [N]) at a time. With grad on, each chunk runs under activation checkpointing:
    its logits are freed after the forward and recomputed in the backward, so neither pass holds more than
    one chunk's [chunk, V] logits."""
    from torch.utils.checkpoint import checkpoint

    def one(h_c: Tensor, tgt_c: Tensor) -> tuple[Tensor, Tensor | None]:
        return _logp_entropy(_final_logits(config, head(h_c)), tgt_c, ent_grad)

    parts = []
    for s in range(0, max(1, h.shape[0]), chunk):
        args = (h[s: s + chunk], tgt[s: s + chunk])
        parts.append(checkpoint(one, *args, use_reentrant=False, preserve_rng_state=False)
                     if torch.is_grad_enabled() else one(*args))
    logp = torch.cat([p[0] for p in parts])
    return logp, None if ent_grad is None else torch.cat([p[1] for p in parts])


def token_logprobs(model, ids: Tensor, attn: Tensor, with_entropy: bool, entropy_grad: bool = False, *,
                   chunk: int = 0) -> tuple[Tensor, Tensor | None]:
    """log pi(ids[t] | ids[<t]) as [B, T] (column 0 is 0), and the per-token entropy if asked.

    `model`: an HF causal LM, or a TrainEngine (run through its DeepSpeed engine). chunk = 0: the model's own
    forward, its [B, T, V] logits at once. chunk > 0: the decoder's hidden states once, then `_chunked_logp`
    (LM head, log_softmax, gather, entropy per `chunk` of the B x T tokens): the same values and gradients up
    to fp32 rounding without full-vocabulary logits for the whole micro-batch. That runs as the HF model's
    forward inside DeepSpeed's (whose output hooks open ZeRO's backward), and all chunks run inside one call
    of the LM head module: ZeRO-3 gathers its weight once per pass, the same collectives on every rank
    whatever its token count."""
    pad = torch.nn.functional.pad
    outer = getattr(model, "ds", model)  # TrainEngine -> its DeepSpeed engine (or the bare model)
    hf = getattr(outer, "module", outer)  # DeepSpeed engine -> the HF model
    ent_grad = (entropy_grad and torch.is_grad_enabled()) if with_entropy else None
    base, head = getattr(hf, "base_model", hf), hf.get_output_embeddings()
    if chunk <= 0 or base is hf or head is None:
        logits = outer(input_ids=ids, attention_mask=attn).logits[:, :-1]
        logp, ent = _logp_entropy(logits, ids[:, 1:], ent_grad)
        return pad(logp, (1, 0)), None if ent is None else pad(ent, (1, 0))
    head_forward = head.forward

    def chunks(h: Tensor, tgt: Tensor) -> tuple[Tensor, Tensor | None]:
        return _chunked_logp(head_forward, hf.config, h, tgt, chunk, ent_grad)

    def forward(input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor | None]:
        h = base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)[0]
        tgt = pad(input_ids[:, 1:], (0, 1))  # the last position predicts nothing: computed, then dropped
        with _forward_as(head, chunks):
            logp, ent = head(h.flatten(0, 1), tgt.flatten())
        logp, ent = (None if x is None else pad(x.view(input_ids.shape)[:, :-1], (1, 0)) for x in (logp, ent))
        return logp, ent

    if outer is hf:
        return forward(ids, attn)
    with _forward_as(hf, forward):
        return outer(input_ids=ids, attention_mask=attn)


class TrainEngine:
    """An HF causal LM wrapped by DeepSpeed ZeRO on one rank; the process group must already exist.

    `backward(loss)` takes a loss whose per-token weights were normalised over the global batch, and
    undoes DeepSpeed's averaging over ranks; `step()` is the optimizer boundary.
    """

    def __init__(self, model_path: str, *, device: str, zero_stage: int, dtype: str, grad_clip: float, lr: float,
                 weight_decay: float, schedule: Callable[[int], float], seed: int, rank: int, world: int,
                 gradient_checkpointing: bool = False) -> None:
        import deepspeed
        from transformers import AutoModelForCausalLM

        from actors.ds_config import ds_config

        random.seed(seed)
        torch.manual_seed(seed)
        self.model_path, self.device, self.rank, self.world = model_path, device, rank, world
        self.torch_device = torch.device("cuda", 0) if device == "cuda" else torch.device("cpu")
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        model.config.use_cache = False
        self.params = sum(p.numel() for p in model.parameters())  # before ZeRO-3 partitions them (for MFU)
        if gradient_checkpointing:  # HF checkpoints its decoder layers in training mode only
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.train()
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
        """`save_pretrained` safetensors, config.json, generation_config.json + the tokenizer with its chat template
        (a collective; rank 0 writes). The saved config has the KV cache on again (training turns it off)."""
        sd = self.state_dict()
        if sd is None:
            return
        from transformers import AutoTokenizer

        module = self.ds.module
        module.config.use_cache = True
        try:
            module.save_pretrained(path, state_dict=sd, safe_serialization=True)
        finally:
            module.config.use_cache = False
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
