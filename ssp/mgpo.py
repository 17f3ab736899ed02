"""The MGPO math, a ground helper every room may import: the entropy deviation of a group's pass rate from a
fair coin, used by the loss's advantage weight w = exp(-lambda * D_ME) and by the scheduler's priority."""

from __future__ import annotations

import math


def kl_to_half(p: float) -> float:
    """KL(Bernoulli(p) || Bernoulli(0.5)) in nats: MGPO's entropy deviation D_ME, used by the loss's weight
    and by the scheduler's priority."""
    return sum(q * math.log(2 * q) for q in (p, 1 - p) if q > 0)
