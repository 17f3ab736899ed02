"""Test and benchmark helpers for the scheduler: a training-loop stand-in and batched recording."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cluster.scheduler import ProblemScheduler


@dataclass(frozen=True)
class Outcome:
    """One verified sample: problem, index within its group, correct or not."""

    problem_id: str
    sample_idx: int
    correct: bool


def record_many(sched: ProblemScheduler, batches: Iterable[tuple[int, Iterable[Any]]]) -> int:
    """Record several (step, results) batches in one pipelined round trip; each batch stays atomic."""
    all_args = [sched._record_args(step, results) for step, results in batches]

    def go() -> list[Any]:
        pipe = sched.client.pipeline(transaction=False)
        for args in all_args:
            sched._run("record", args, client=pipe)
        return pipe.execute()

    applied = sum(int(x) for x in sched._call(go))
    sched._after_record(applied)
    return applied


def simulate(sched: ProblemScheduler, true_p: dict[str, float], steps: int, batch: int, group: int = 8,
             seed: int = 0, drift: float = 0.0) -> dict[str, float]:
    """Train-loop stand-in: sample, draw `group` Bernoulli(true p) outcomes per problem, record; repeat.

    `drift`: a learning policy; at step t every true p is sigmoid(logit(p) + drift * t).
    Returns the zero-advantage group share and the mean |true p - 0.5| of the sampled problems."""
    rng = np.random.default_rng(seed)
    with np.errstate(divide="ignore"):
        logit = {pid: float(np.log(p) - np.log1p(-p)) for pid, p in true_p.items()}
    dist = []
    for step in range(steps):
        ids = sched.sample(batch, step=step, rng=rng)
        p = 1 / (1 + np.exp(-(np.array([logit[i] for i in ids]) + drift * step)))
        wins = rng.random((len(ids), group)) < p[:, None]
        sched.record(step, [(pid, g, bool(wins[k, g])) for k, pid in enumerate(ids) for g in range(group)])
        dist += np.abs(p - 0.5).tolist()
    s = sched.stats()
    return {"zero_adv_frac": s["zero_adv_frac"], "mean_dist_from_half": float(np.mean(dist))}
