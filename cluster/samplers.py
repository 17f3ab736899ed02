"""The scheduler's samplers: how `ProblemScheduler.sample` picks n problems, one small class each behind the
`Sampler` seam (registry SAMPLERS, names = `scheduler.sampler`'s choices), and the pure weights they use.

- bands: problems are bucketed by smoothed pass rate; bands are drawn by weight x count (the unseen ones by
  subdomain, the parked ones at `reprobe`), the member within a band by the server (scheduler.lua `sample`).
- thompson (MoPPS): draw p ~ Beta(posterior) for every problem not dropped; take the n nearest 0.5.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Protocol, get_args, get_type_hints

import numpy as np

from cluster.config import SchedulerConfig
from ssp.mgpo import kl_to_half


class Pool(Protocol):
    """What a sampler reads from the scheduler (cluster/scheduler.py ProblemScheduler is the one there is)."""

    config: SchedulerConfig

    def cells(self) -> dict[str, tuple[int, int]]: ...
    def draw_bands(self, args: list[Any]) -> list[str]: ...
    def pool(self) -> list[Any]: ...


def priority(p: float, kind: str, lam: float) -> float:
    """Sampling weight of a problem with pass rate p; 1.0 at p=0.5 for every kind."""
    if kind == "mgpo":
        return math.exp(-lam * kl_to_half(p))
    if kind == "p1mp":
        return 4 * p * (1 - p)
    if kind == "uniform":
        return 1.0
    raise ValueError(f"scheduler.priority must be mgpo, p1mp or uniform, got {kind!r}")


def band_names(k: int) -> list[str]:
    """The bands every run has; the unseen ones, u:<subdomain>, come from the registered subdomains."""
    return ["p0", "p1", "x"] + [str(b) for b in range(k)]


def band_label(name: str, k: int) -> str:
    fixed = {"p0": "parked@0", "p1": "parked@1", "x": "dropped"}
    if name.startswith("u:"):
        return f"unseen {name[2:] or '(no subdomain)'}"
    return fixed.get(name) or f"p^ {int(name) / k:.2f}-{(int(name) + 1) / k:.2f}"


def band_weights(c: SchedulerConfig) -> list[float]:
    """Per-problem weight of each band in band_names() order (band centre for the p-hat bins)."""
    if c.priority == "uniform":
        return [1.0, 1.0, 0.0] + [1.0] * c.bands
    bins = [priority((b + 0.5) / c.bands, c.priority, c.lam) for b in range(c.bands)]
    return [c.reprobe, c.reprobe, 0.0] + bins


def p_hat(c: SchedulerConfig, attempts: int, correct: int) -> float:
    """Beta-smoothed pass rate (correct + alpha) / (attempts + alpha + beta)."""
    return (correct + c.alpha) / (attempts + c.alpha + c.beta)


def unseen_weight(c: SchedulerConfig, attempts: int, correct: int) -> float:
    """Per-problem weight of an unseen problem whose subdomain has `attempts` so far (the cell prior)."""
    if c.priority == "uniform":
        return 1.0
    if c.cell_prior_attempts <= 0 or attempts < c.cell_prior_attempts:
        return c.unseen_weight
    return c.unseen_weight * priority(p_hat(c, attempts, correct), c.priority, c.lam)


def unseen_prior(c: SchedulerConfig, attempts: int, correct: int) -> tuple[float, float]:
    """Beta prior of an unseen problem whose subdomain has `attempts` so far (thompson's cell prior): centred on
    the subdomain's p-hat with strength alpha+beta once it has cell_prior_attempts, else (alpha, beta)."""
    if c.cell_prior_attempts <= 0 or attempts < c.cell_prior_attempts:
        return c.alpha, c.beta
    p = p_hat(c, attempts, correct)
    return (c.alpha + c.beta) * p, (c.alpha + c.beta) * (1 - p)


def fit_prior(counts: np.ndarray, fallback: tuple[float, float], min_problems: int = 32) -> tuple[float, float]:
    """Beta(a, b) fitted by moments to the pass rates of the problems in `counts` (rows: attempts, correct)
    with attempts >= 2, the binomial noise of each rate taken out of the variance; `fallback` until
    `min_problems` such problems exist or when all rates are 0 or all are 1."""
    seen = counts[counts[:, 0] >= 2]
    if len(seen) < min_problems:
        return fallback
    n, r = seen[:, 0], seen[:, 1] / seen[:, 0]
    m = float(r.mean())
    if not 0 < m < 1:
        return fallback
    var = float(r.var()) - float(np.mean(r * (1 - r) / (n - 1)))  # Var(rate) = Var(p) + E[p(1-p)/n]
    strength = m * (1 - m) / min(max(var, 1e-6), m * (1 - m) * 0.99) - 1  # a + b
    return m * strength, (1 - m) * strength


class Sampler:
    """Picks n distinct problem ids from a scheduler's pool. A new sampler is one subclass and one SAMPLERS entry."""

    def __init__(self, scheduler: Pool):
        self.scheduler, self.config = scheduler, scheduler.config

    def sample(self, n: int, rng: np.random.Generator) -> list[str]:
        raise NotImplementedError


class BandsSampler(Sampler):
    def sample(self, n: int, rng: np.random.Generator) -> list[str]:
        """The band allocation is seeded by rng; the member picked within a band is the server's SRANDMEMBER."""
        c = self.config
        cells = self.scheduler.cells()
        names = [f"u:{sub}" for sub in cells] + band_names(c.bands)
        weights = [unseen_weight(c, a, k) for a, k in cells.values()] + band_weights(c)
        first = int(c.explore == "first" and c.priority != "uniform")
        return self.scheduler.draw_bands([n, first, len(names), *names, *weights, *rng.random(n).tolist()])


class ThompsonSampler(Sampler):
    def sample(self, n: int, rng: np.random.Generator) -> list[str]:
        """MoPPS: draw p~Beta(posterior) for every problem not dropped, return the n with the highest priority(p).

        mgpo and p1mp are both symmetric and decreasing in |p - 0.5|, so the n closest to 0.5 are taken;
        priority=uniform draws n uniformly. Cost: one round trip (posteriors) plus O(pool) numpy. Fully seeded."""
        ids, al, be = self.posteriors()
        if len(ids) < n:
            raise ValueError(f"scheduler: asked for {n} distinct problems but only {len(ids)} are eligible "
                             "(dropped ones excluded); lower the batch size")
        if self.config.priority == "uniform":
            pick = rng.choice(len(ids), n, replace=False)
        else:
            pick = np.argsort(np.abs(rng.beta(al, be) - 0.5), kind="stable")[:n]
        return [ids[i] for i in pick]

    def posteriors(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Ids (sorted) and Beta posteriors (alpha + tc, beta + ta - tc) of every problem not dropped, with ta/tc
        the decayed counts and (alpha, beta) fitted to them (thompson_prior=fitted) or the configured ones;
        unseen problems get unseen_prior(their subdomain's counts).

        One round trip (the pool script in scheduler.lua: an HGETALL and an SMEMBERS per subdomain, joined into
        a few strings), then O(pool) splitting, numpy and a sort by id (for reproducibility) here. The whole
        sample() measured on 2 busy cores: ~20 ms at 10k problems, ~0.3-0.5 s at 100k (mostly the reply and
        the sort)."""
        c = self.config
        reply = self.scheduler.pool()
        seen = reply[0].split("\n") if reply[0] else []
        ids = seen[0::2]
        counts = np.array(" ".join(seen[1::2]).split(), dtype=float).reshape(-1, 2)
        if c.thompson_prior == "fitted":
            a0, b0 = fit_prior(counts, (c.alpha, c.beta))
            c = replace(c, alpha=a0, beta=b0)
        al, be = [c.alpha + counts[:, 1]], [c.beta + counts[:, 0] - counts[:, 1]]
        for i in range(1, len(reply), 4):
            members = reply[i + 1].split("\n") if reply[i + 1] else []
            a0, b0 = unseen_prior(c, int(reply[i + 2]), int(reply[i + 3]))
            ids += members
            al.append(np.full(len(members), a0))
            be.append(np.full(len(members), b0))
        order = sorted(range(len(ids)), key=ids.__getitem__)
        return [ids[i] for i in order], np.concatenate(al)[order], np.concatenate(be)[order]


SAMPLERS: dict[str, type[Sampler]] = {"bands": BandsSampler, "thompson": ThompsonSampler}
_choices = set(get_args(get_type_hints(SchedulerConfig)["sampler"]))
assert set(SAMPLERS) == _choices, f"SAMPLERS {sorted(SAMPLERS)} != scheduler.sampler's choices {sorted(_choices)}"
