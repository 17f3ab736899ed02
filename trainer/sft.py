"""A short SFT warm-up on solution traces (plain PyTorch on one process).

It teaches the tiny model the answer format before RL, so the Signal stage starts from a policy with a
non-zero pass rate. The full Spectrum stage (checkpoints scored by Pass@K, merged) builds on it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ssp.config import cfg
from trainer.data import Problem, build_prompt


@dataclass
class SFTConfig:
    steps: int = cfg(150, "optimizer steps of the warm-up (0 = skip)", ge=0)
    batch_size: int = cfg(32, "sequences per step", ge=1)
    lr: float = cfg(2e-3, "AdamW learning rate", gt=0)
    weight_decay: float = cfg(0.0, "AdamW weight decay", ge=0)
    seed: int = cfg(0, "shuffle/init seed")


def sft_pairs(tokenizer, problems: list[Problem], instruction: str = "") -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids + eos) for every trace of every problem."""
    pairs = []
    for p in problems:
        prompt = tokenizer(build_prompt(tokenizer, p, instruction), add_special_tokens=False)["input_ids"]
        for trace in p.solutions:
            resp = tokenizer(trace, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            pairs.append((prompt, resp))
    return pairs


def collate(pairs: list[tuple[list[int], list[int]]], pad_id: int) -> dict:
    """Right-padded input ids, attention mask, and labels that are -100 outside the response."""
    import torch  # here, not at import: the config tree (and so `ssp config`) must load without torch

    width = max(len(p) + len(r) for p, r in pairs)
    ids = torch.full((len(pairs), width), pad_id)
    labels = torch.full((len(pairs), width), -100)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    for i, (p, r) in enumerate(pairs):
        seq = p + r
        ids[i, : len(seq)] = torch.tensor(seq)
        labels[i, len(p) : len(seq)] = torch.tensor(r)
        mask[i, : len(seq)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def warmup(model_path: str | Path, out_dir: str | Path, problems: list[Problem], config: SFTConfig,
           instruction: str = "") -> list[float]:
    """SFT `model_path` on the problems' traces, save to `out_dir`; returns the loss curve."""
    import torch
    from transformers import AutoModelForCausalLM

    from trainer.tiny_model import load_tokenizer

    torch.manual_seed(config.seed)
    tok = load_tokenizer(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model.train()
    pairs = sft_pairs(tok, problems, instruction)
    if not pairs:
        raise ValueError("sft: no solution traces in the training problems (field 'solutions')")
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    rng, losses = random.Random(config.seed), []
    for _ in (bar := tqdm(range(config.steps), desc="sft warm-up", leave=False, mininterval=5)):
        batch = collate(rng.sample(pairs, min(config.batch_size, len(pairs))), tok.pad_token_id)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    return losses
