"""What travels through one RL step, end to end: a `Problem` (from the data loaders, trainer/data/problems.py) is sampled
by the scheduler and prompted to the engines; a `Rollout` is made by an engine (actors/rollout.py), judged by
the verifier (its reward), given its group advantage by the pure function (actors/losses.py `score`) and
trained on by the learner (actors/learner.py `collate`), the same object all the way. No Ray, torch or vLLM
here, so every room can import it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Problem:
    id: str
    prompt: str
    kind: str  # "math" | "code"
    answer: str | None = None  # math gold
    tests: dict[str, Any] | None = None  # code tests, in the verifier's format
    subdomain: str = "unknown"
    level: int | None = None
    solutions: list[str] = field(default_factory=list)  # SFT traces, when the source has them
    source: str = ""
    starter_code: str = ""  # code problems: the signature a solution must fill in (LiveCodeBench)
    choices: dict[str, str] | None = None  # multiple-choice math: letter -> option text (the gold is a letter)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
