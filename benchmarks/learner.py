"""Training tokens/s of the DeepSpeed learner (ZeRO-2, 1 and 2 actors) beside a plain PyTorch AdamW loop.

Same tiny model (or --model), same batch, same loss and micro-batching; one thread per process (the learner
actors run with OMP_NUM_THREADS=1, so the torch loop does too), except arm ds1t2: one actor with
`learner.threads_per_rank=2` (both cores in one rank, no gradient exchange). Tokens = response tokens trained.
Last line: JSON.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STEPS, WARMUP = 6, 2  # (--model: use a small model, each step trains 32 samples)
ARMS = {"torch": None, "ds1": (1, 1), "ds2": (2, 1), "ds1t2": (1, 2)}  # DeepSpeed arms: (actors, threads per rank)


def make_samples(groups: int = 8, size: int = 4, seed: int = 0) -> list:
    """Scored rollouts (half of each group right), as the RL loop hands them to the learner."""
    from actors.config import LossConfig
    from actors.losses import score
    from actors.records import Rollout

    rng = random.Random(seed)
    out, rewards = [], []
    for g in range(groups):
        prompt = [rng.randrange(10, 300) for _ in range(24)]
        for i in range(size):
            n = rng.randint(32, 96)
            out.append(Rollout(f"g{g}", i, prompt, [rng.randrange(10, 300) for _ in range(n)], [-5.0] * n, "", "stop", 0))
            rewards.append(float(i % 2))
    return score(out, rewards, LossConfig())


def torch_tok_s(model_dir: str, samples: list, c) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    from actors.learner import collate
    from actors.losses import policy_loss
    from actors.train_engine import plan_micro_batches, token_logprobs

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=c.lr)
    b = collate(samples, c.loss, pad_id=0)
    (plan,) = plan_micro_batches(b.attention_mask.sum(1).tolist(), b.keep, c.micro_batch_tokens, 1)
    tokens, t0 = 0.0, 0.0
    for step in range(WARMUP + STEPS):
        if step == WARMUP:
            tokens, t0 = 0.0, time.perf_counter()
        for idx in plan:
            rows = torch.tensor(idx)
            t = int(b.attention_mask[rows].sum(1).max())
            ids, attn = b.input_ids[rows, :t], b.attention_mask[rows, :t]
            logp, ent = token_logprobs(model, ids, attn, True)
            loss, m = policy_loss(logp, logp.detach(), b.advantages[rows], b.weights[rows, :t], c.loss,
                                  entropy=ent)
            loss.backward()
            tokens += m["tokens"]
        torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
        opt.step()
        opt.zero_grad()
    return tokens / (time.perf_counter() - t0)


def ds_tok_s(model_dir: str, samples: list, c, actors: int, threads: int = 1) -> float:
    from dataclasses import replace

    from actors.learner import LearnerGroup

    c = replace(c, threads_per_rank=threads)
    group = LearnerGroup(c, model_dir, actors)
    try:
        tokens, t0 = 0.0, 0.0
        for step in range(WARMUP + STEPS):
            if step == WARMUP:
                tokens, t0 = 0.0, time.perf_counter()
            tokens += group.step(samples)["tokens"]
        return tokens / (time.perf_counter() - t0)
    finally:
        group.shutdown()


def main() -> None:
    import argparse

    import ray

    from actors.config import LearnerConfig
    from trainer.config import TinyModelConfig
    from trainer.models.tiny import build

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="an HF model dir (default: a tiny model built here)")
    ap.add_argument("--arms", nargs="+", default=["torch", "ds1", "ds2"], choices=list(ARMS))
    args = ap.parse_args()
    c = LearnerConfig(zero_stage=2, lr=1e-4, micro_batch_tokens=2048)
    samples = make_samples()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or str(build(TinyModelConfig(), tmp))
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
        try:
            res = {f"{arm}_tok_s": torch_tok_s(model_dir, samples, c) if arm == "torch"
                   else ds_tok_s(model_dir, samples, c, *ARMS[arm]) for arm in args.arms}
        finally:
            ray.shutdown()
    res = {k: round(v, 1) for k, v in res.items()}
    for arm, base in [(a, "torch") for a in ARMS if a != "torch"] + [("ds1t2", "ds2")]:
        if f"{arm}_tok_s" in res and f"{base}_tok_s" in res:
            res[f"{arm}_vs_{base}"] = round(res[f"{arm}_tok_s"] / res[f"{base}_tok_s"], 3)
    print(f"{args.model or 'tiny model (4 layers)'}, {len(samples)} samples, {STEPS} timed steps, ZeRO-2, "
          "1 thread per process (ds1t2: 2)")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
