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
             seed: int = 0) -> dict[str, float]:
    """Train-loop stand-in: sample, draw `group` Bernoulli(true p) outcomes per problem, record; repeat.

    Returns the zero-advantage group share and the mean |true p - 0.5| of the sampled problems."""
    rng = np.random.default_rng(seed)
    dist = []
    for step in range(steps):
        ids = sched.sample(batch, step=step, rng=rng)
        wins = rng.random((len(ids), group)) < np.array([true_p[i] for i in ids])[:, None]
        sched.record(step, [(pid, g, bool(wins[k, g])) for k, pid in enumerate(ids) for g in range(group)])
        dist += [abs(true_p[i] - 0.5) for i in ids]
    s = sched.stats()
    return {"zero_adv_frac": s["zero_adv_frac"], "mean_dist_from_half": float(np.mean(dist))}
