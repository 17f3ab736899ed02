"""What travels through one RL step, end to end: a `Rollout` is made by an engine (actors/rollout.py), judged by
the verifier (its reward), given its group advantage by the pure function (actors/losses.py `score`) and
trained on by the learner (actors/learner.py `collate`), the same object all the way. No Ray, torch or vLLM
here, so every room can import it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Rollout:
    problem_id: str
    sample_idx: int
    prompt_ids: list[int]
    response_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str  # "stop" | "length"
    weight_version: int
    # set by the RL loop once the batch is verified (actors/losses.py `score`), read by the learner:
    reward: float = 0.0  # the verdict's reward
    advantage: float = 0.0  # A' = w * A within its group: computed once, by `score`
    mgpo_w: float = 1.0  # the group's MGPO weight w
