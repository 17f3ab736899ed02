"""Pure metrics: unbiased pass@k, Pass@1 of k samples, cons@k (majority vote), KL to a fair coin."""

from __future__ import annotations

import math
from collections import Counter
from math import comb


def kl_to_half(p: float) -> float:
    """KL(Bernoulli(p) || Bernoulli(0.5)) in nats: MGPO's entropy deviation D_ME, used by the loss's weight
    and by the scheduler's priority."""
    return sum(q * math.log(2 * q) for q in (p, 1 - p) if q > 0)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    return 1.0 - comb(n - c, k) / comb(n, k)


def mean_pass_at_k(per_problem: list[tuple[int, int]], k: int) -> float:
    """Mean unbiased pass@k over problems given (n, c) pairs; k=1 is Pass@1 of n samples."""
    return sum(pass_at_k(n, c, k) for n, c in per_problem) / max(len(per_problem), 1)


def cons_at_k(answers: list[str | None], rewards: list[float]) -> float:
    """1 if the most common extracted answer (ties: first seen) is a correct one, else 0."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return 0.0
    top = counts.most_common(1)[0][0]
    return float(any(a == top and r > 0 for a, r in zip(answers, rewards)))
