"""The losses of the one training engine. The RL loss, top to bottom: rewards -> group advantages
(GRPO / Dr. GRPO) -> MGPO weight -> clipped policy loss with optional KL, entropy bonus and a train/inference mismatch correction (TIS or ICEPOP). Beside it, the SFT loss.

Conventions (hand-checked in tests/test_losses.py):
- std is the *population* std of the group's rewards (ddof=0, `torch.std(unbiased=False)`).
- Aggregation modes are expressed as per-token weights over the whole batch (see `token_weights`), so the
  loss of a batch is `sum(weights * per_token_loss)`; micro-batches and data-parallel shards simply add up.
- Registries (`ADVANTAGES`, `AGGREGATIONS`, `KL_ESTIMATORS`) map a config string to one small function;
  a new variant is one function plus one dict entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import get_args

import torch
from torch import Tensor

from actors.config import (  # noqa: F401
    ADVANTAGE_NAMES,
    AGGREGATION_NAMES,
    CORRECTION_NAMES,
    KL_NAMES,
    OVERLONG_NAMES,
    LossConfig,
)
from actors.records import Rollout
from ssp.mgpo import kl_to_half

# ---- rewards -> advantages ---------------------------------------------------------------------------

def long2short(rewards: Tensor, lengths: Tensor, lam: float = 0.2) -> Tensor:
    """r' = r + lam*(s - mean s)/max|s - mean s| over correct responses (r == 1), s = 1/length. Zero-sum."""
    correct = rewards == 1
    if lam == 0 or correct.sum() < 2:
        return rewards
    s = 1.0 / lengths[correct].double()
    dev = s - s.mean()
    scale = dev.abs().max()
    if scale == 0:
        return rewards
    out = rewards.clone().double()
    out[correct] += lam * dev / scale
    return out.to(rewards.dtype)


# An estimator sees one group: its rewards (after any shaping), the responses' lengths, and the loss config.
Estimator = Callable[[Tensor, Tensor, "LossConfig"], Tensor]


def grpo_advantage(r: Tensor, lengths: Tensor, c: LossConfig) -> Tensor:
    std = r.std(unbiased=False) if r.numel() > 1 else r.new_zeros(())
    return torch.where(std > 0, (r - r.mean()) / (std + c.eps), torch.zeros_like(r))


def drgrpo_advantage(r: Tensor, lengths: Tensor, c: LossConfig) -> Tensor:
    return r - r.mean()


ADVANTAGES: dict[str, Estimator] = {"grpo": grpo_advantage, "drgrpo": drgrpo_advantage}


def mgpo_weight(r: Tensor, lam: float) -> Tensor:
    """w = exp(-lam * D_ME), D_ME = KL(Bernoulli(p_c) || Bernoulli(0.5)), p_c = share of r == 1."""
    d = kl_to_half((r == 1).double().mean().item())  # the scheduler's priority uses the same function
    return torch.tensor(math.exp(-lam * d), dtype=torch.float64)


def group_advantages(rewards: Tensor, groups: list[str], lengths: Tensor, c: LossConfig,
                     shaping: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per-sample advantage A' = w*A (computed within each group) and the group's MGPO weight w. `shaping` (a
    length penalty, see OVERLONG) is added to the rewards the advantage sees; w reads the binary rewards."""
    adv = torch.zeros(len(groups), dtype=torch.float64)
    w = torch.ones(len(groups), dtype=torch.float64)
    for g in dict.fromkeys(groups):
        idx = torch.tensor([i for i, x in enumerate(groups) if x == g])
        r = long2short(rewards[idx].double(), lengths[idx], c.long2short_lambda)
        if shaping is not None:
            r = r + shaping[idx].double()
        wg = mgpo_weight(rewards[idx], c.mgpo_lambda)  # on the raw (binary) correctness
        adv[idx] = wg * ADVANTAGES[c.advantage](r, lengths[idx], c)
        w[idx] = wg
    return adv.float(), w.float()


def no_penalty(lengths: Tensor, max_tokens: int | None, buffer: int) -> Tensor:
    return torch.zeros(len(lengths), dtype=torch.float64)


def dapo_overlong(lengths: Tensor, max_tokens: int | None, buffer: int) -> Tensor:
    """DAPO's soft overlong penalty: 0 up to max_tokens - buffer, then linear down to -1 at max_tokens."""
    if max_tokens is None:
        return no_penalty(lengths, max_tokens, buffer)
    start = max_tokens - buffer
    return ((start - lengths.double()) / buffer).clamp(min=-1.0, max=0.0)


OVERLONG: dict[str, Callable[[Tensor, int | None, int], Tensor]] = {"off": no_penalty, "dapo": dapo_overlong}


def score(rollouts: list[Rollout], rewards: list[float], c: LossConfig, max_tokens: int | None = None) -> list[Rollout]:
    """The rollouts with their training reward, group advantage A' = w*A and MGPO weight w set: the one place
    the advantage is computed (the RL loop calls it; the learner trains on what it is given). A response cut at
    `max_tokens` scores 0 with `truncated: zero` (it never finished, as in VibeThinker's eval rule); the
    `overlong` penalty (registry OVERLONG) shapes what the advantage sees near the limit."""
    rewards = [0.0 if c.truncated == "zero" and r.finish_reason == "length" else float(x)
               for r, x in zip(rollouts, rewards)]
    lengths = torch.tensor([len(r.response_ids) for r in rollouts])
    adv, w = group_advantages(torch.tensor(rewards, dtype=torch.float64), [r.problem_id for r in rollouts],
                              lengths, c, OVERLONG[c.overlong](lengths, max_tokens, c.overlong_buffer))
    return [replace(r, reward=x, advantage=float(a), mgpo_w=float(wi))
            for r, x, a, wi in zip(rollouts, rewards, adv.tolist(), w.tolist())]


# ---- aggregation: per-token weights over the whole batch ---------------------------------------------

def seq_mean_token_mean(mask: Tensor, group_idx: Tensor, norm_length: int) -> Tensor:
    """Mean over a response's tokens, then over its group, then over prompts."""
    n_groups = int(group_idx.unique().numel())
    group_size = torch.bincount(group_idx)[group_idx].float()
    per_seq = 1.0 / (mask.sum(1).clamp(min=1) * group_size * n_groups)
    return mask * per_seq[:, None]


def token_mean(mask: Tensor, group_idx: Tensor, norm_length: int) -> Tensor:
    """Every response token in the batch counts equally (DAPO)."""
    return mask / mask.sum().clamp(min=1)


def seq_mean_token_sum_norm(mask: Tensor, group_idx: Tensor, norm_length: int) -> Tensor:
    """Token sum divided by a constant length, then mean over responses (Dr. GRPO)."""
    return mask / (norm_length * mask.shape[0])


AGGREGATIONS: dict[str, Callable[[Tensor, Tensor, int], Tensor]] = {
    "seq-mean-token-mean": seq_mean_token_mean,
    "token-mean": token_mean,
    "seq-mean-token-sum-norm": seq_mean_token_sum_norm,
}


def token_weights(mask: Tensor, group_idx: Tensor, c: LossConfig) -> Tensor:
    return AGGREGATIONS[c.aggregation](mask.float(), group_idx, c.norm_length)


# ---- KL estimators (log-ratio x = logp - ref_logp, samples from pi_theta) -----------------------------

KL_ESTIMATORS: dict[str, Callable[[Tensor], Tensor]] = {
    "k1": lambda x: x,
    "k2": lambda x: 0.5 * x**2,
    "k3": lambda x: torch.exp(-x) - 1 + x,
}


# ---- train/inference mismatch: r = pi_old_learner / pi_rollout per token -> a per-token factor ----------

CORRECTIONS: dict[str, Callable[[Tensor, LossConfig], Tensor]] = {
    "off": lambda r, c: torch.ones_like(r),
    "tis": lambda r, c: r.clamp(max=c.tis_cap),  # truncated importance sampling
    "icepop": lambda r, c: r * ((r >= c.icepop_low) & (r <= c.icepop_high)),  # IS weight, 0 outside the band
}


def correction_name(c: LossConfig, mode: str = "sync") -> str:
    """`is_correction`, with auto resolved for `rl.mode`: tis when rollouts may lag the learner, else off."""
    if c.is_correction != "auto":
        return c.is_correction
    return "off" if mode == "sync" else "tis"


# ---- the policy loss -----------------------------------------------------------------------------------

def policy_loss(logp: Tensor, old_logp: Tensor, adv: Tensor, weights: Tensor, c: LossConfig,
                ref_logp: Tensor | None = None, rollout_logp: Tensor | None = None,
                entropy: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
    """sum(weights * per-token loss). Shapes [B, T] (adv: [B]); `weights` is zero off the response tokens.

    Returns the loss and token-mean metrics over this batch's response tokens (plus `tokens`).
    """
    mask = weights != 0
    a = adv[:, None]
    ratio = torch.exp(logp - old_logp)
    pg_unclipped = -a * ratio
    pg_clipped = -a * ratio.clamp(1 - c.clip_low, 1 + c.clip_high)
    per_token = torch.maximum(pg_unclipped, pg_clipped)
    correction = correction_name(c)  # the RL loop resolves auto before the learner starts
    factor = ratio_is = torch.ones_like(per_token)
    if correction != "off" and rollout_logp is not None:
        ratio_is = torch.exp(old_logp - rollout_logp).detach()
        factor = CORRECTIONS[correction](ratio_is, c)
        per_token = per_token * factor
    if c.kl_coef and ref_logp is not None:
        per_token = per_token + c.kl_coef * KL_ESTIMATORS[c.kl_estimator](logp - ref_logp)
    if c.entropy_coef and entropy is not None:
        per_token = per_token - c.entropy_coef * entropy
    loss = (weights * per_token).sum()

    n = mask.sum().clamp(min=1)
    with torch.no_grad():
        metrics = {
            "clip_frac": ((pg_clipped > pg_unclipped) & mask).sum().item() / n.item(),
            "approx_kl": (0.5 * (logp - old_logp) ** 2 * mask).sum().item() / n.item(),
            "entropy": (entropy * mask).sum().item() / n.item() if entropy is not None else 0.0,
            "is_frac": ((factor != ratio_is) & mask).sum().item() / n.item(),  # capped (tis) or dropped (icepop)
            "tokens": float(mask.sum().item()),
        }
    return loss, metrics


def sft_loss(logp: Tensor, weights: Tensor) -> Tensor:
    """Supervised negative log-likelihood, sum(weights * -logp): `weights` is 1/(response tokens of the
    global batch) on response tokens and zero on the prompt and padding, so ranks and micro-batches add up
    to the token-mean, as in `policy_loss`."""
    return -(weights * logp).sum()


for _registry, _names in ((ADVANTAGES, ADVANTAGE_NAMES), (AGGREGATIONS, AGGREGATION_NAMES), (KL_ESTIMATORS, KL_NAMES),
                        (OVERLONG, OVERLONG_NAMES), (CORRECTIONS, CORRECTION_NAMES)):
    assert set(_registry) == set(get_args(_names)), f"registry {sorted(_registry)} != config choices {_names}"
