"""Pure metrics: unbiased pass@k, Pass@1 of k samples, cons@k (majority vote), paired gains."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from math import comb


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    return 1.0 - comb(n - c, k) / comb(n, k)


def mean_pass_at_k(per_problem: list[tuple[int, int]], k: int) -> float:
    """Mean unbiased pass@k over problems given (n, c) pairs; k=1 is Pass@1 of n samples."""
    return sum(pass_at_k(n, c, k) for n, c in per_problem) / max(len(per_problem), 1)


def cons_at_n(answers: list[str | None], scores: list[float]) -> float:
    """Majority vote (the official VibeThinker rule): answers compared as raw strings, responses without one
    left out of the vote. On a tie every mode counts: the problem scores the mean correctness of all
    responses whose answer is among the modes if any of them is correct, else 0."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return 0.0
    top = max(counts.values())
    voted = [s for a, s in zip(answers, scores) if a is not None and counts[a] == top]
    return sum(voted) / len(voted) if any(s > 0 for s in voted) else 0.0


def pass1_se(samples: list[list[float]]) -> float:
    """Standard error of Pass@1 over problems: the sample standard deviation of the per-problem mean scores
    over sqrt(problems). The eval's own noise, from which problems happen to be in the set and which samples
    were drawn (0 with fewer than two problems)."""
    means = [sum(s) / len(s) for s in samples if s]
    return statistics.stdev(means) / math.sqrt(len(means)) if len(means) > 1 else 0.0


def summarize(samples: list[list[float]], ks: list[int] = (), answers: list[list[str | None]] | None = None,
              truncated: list[list[bool]] | None = None, tokens: list[list[int]] | None = None) -> dict[str, float]:
    """One dataset's figures from its per-problem lists of 0/1 scores (n samples each): `pass1` (mean of all
    scores), `passN` (any correct), unbiased `pass@k` for each k <= n, and when given `consN` (from the vote
    answers), `truncation` (share of responses that hit the length limit) and `mean_tokens`."""
    if not samples:
        return {"problems": 0}
    n = min(len(s) for s in samples)
    flat = [x for s in samples for x in s]
    out = {"problems": len(samples), "n": n, "pass1": sum(flat) / len(flat),
           "pass1_se": pass1_se(samples), f"pass{n}": sum(any(x > 0 for x in s) for s in samples) / len(samples)}
    for k in sorted({k for k in ks if k <= n}):
        out[f"pass@{k}"] = mean_pass_at_k([(len(s), sum(x > 0 for x in s)) for s in samples], k)
    if answers is not None:
        out[f"cons{n}"] = sum(cons_at_n(a, s) for a, s in zip(answers, samples)) / len(samples)
    if truncated is not None:
        t = [x for s in truncated for x in s]
        out["truncation"] = sum(t) / len(t)
    if tokens is not None:
        t = [x for s in tokens for x in s]
        out["mean_tokens"] = sum(t) / len(t)
    return out


def paired_gain(before: dict[str, int], after: dict[str, int], n_before: int, n_after: int) -> tuple[float, float]:
    """Pass@1 gain from `before` to `after` over the problems both evaluated ({id: correct of n samples}) and
    its standard error: the sample standard deviation of the per-problem differences over sqrt(problems). The
    pairing takes out which problems happen to be easy, so the error is the change's own noise."""
    ids = sorted(before.keys() & after.keys())
    if len(ids) < 2:
        raise ValueError(f"paired_gain needs at least two problems evaluated both times, got {len(ids)}")
    d = [after[i] / n_after - before[i] / n_before for i in ids]
    return statistics.fmean(d), statistics.stdev(d) / math.sqrt(len(d))
