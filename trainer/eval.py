"""Evaluation on held-out problems: Pass@1 of k samples, unbiased pass@k, cons@k, per subdomain.

`evaluate` drives whatever rollout pool and verifier pool it is given (the RL loop passes its own, so
the numbers are for the current weights; the Spectrum probe pushes each checkpoint into the engines and
calls it per checkpoint). One implementation of Pass@k for both.
"""

from __future__ import annotations

from collections import defaultdict

from trainer.data import Problem
from trainer.metrics import cons_at_k, mean_pass_at_k


def stratified_subset(problems: list[Problem], cap: int) -> list[Problem]:
    """Every ceil(n/cap)-th problem (at most `cap`; 0 = all): the held-out problems an eval runs on."""
    every = -(-len(problems) // cap) if cap else 1
    return problems[::every][: cap or None]


def evaluate(rollout_pool, verifier_pool, problems: list[Problem], k: int, overrides: dict | None = None,
             ks: tuple[int, ...] = ()) -> dict:
    """k samples per problem: Pass@1 (mean over the k), unbiased pass@j for j in (k, *ks), cons@k; overall and
    per subdomain (`pass1/{sub}`, `pass{j}/{sub}`)."""
    from actors.verifier import requests_for

    rollouts = rollout_pool.generate(problems, k, overrides)
    results = verifier_pool.verify(requests_for({p.id: p for p in problems}, rollouts))
    per: dict[str, list] = defaultdict(list)
    for r, res in zip(rollouts, results):
        per[r.problem_id].append(res)
    rows = {p.id: (k, sum(x.reward > 0 for x in per[p.id])) for p in problems}
    cons = {p.id: cons_at_k([x.answer for x in per[p.id]], [x.reward for x in per[p.id]]) for p in problems}
    js = sorted({1, k, *ks})
    out = {f"pass{j}": mean_pass_at_k(list(rows.values()), j) for j in js}
    out.update({f"cons{k}": sum(cons.values()) / max(len(cons), 1), "problems": len(problems), "k": k})
    for sub in sorted({p.subdomain for p in problems}):
        ids = [p.id for p in problems if p.subdomain == sub]
        out.update({f"pass{j}/{sub}": mean_pass_at_k([rows[i] for i in ids], j) for j in js})
    return out
