"""The one evaluator: n samples per problem from the rollout engines, scored by the verifier pool while the
engines keep generating, summed up by trainer/eval/metrics.py.

`score_stream` is the engine of it: problems stream out of the engines as they finish and their samples go
straight to the verifiers (in threads), so scoring overlaps generation. `ssp eval` (trainer/eval/run.py)
records what it yields; `evaluate` is the short form `ssp rl`'s held-out eval and `ssp probe` call on the
engines' current weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

from actors.verifier.protocols import vote_answer
from trainer.data.problems import Problem
from trainer.eval.metrics import summarize

TRAINING_REWARD = {"math": "math-verify", "code": "sandbox"}  # the grader RL trains on, per kind


@dataclass
class Scored:
    """One problem's samples and their scores under each grader (the first is the primary one)."""
    problem: Problem
    texts: list[str]
    tokens: list[int]
    truncated: list[bool]
    scores: dict[str, list[float]]
    reasons: dict[str, list[str]]

    def by(self, primary: dict[str, str] | None = None) -> list[float]:
        """The scores of `primary[kind]` (default, or when that grader did not run: the first grader)."""
        g = (primary or {}).get(self.problem.kind)
        return self.scores[g] if g in self.scores else next(iter(self.scores.values()))


def stratified_subset(problems: list[Problem], cap: int) -> list[Problem]:
    """Every ceil(n/cap)-th problem (at most `cap`; 0 = all): the held-out problems an eval runs on."""
    every = -(-len(problems) // cap) if cap else 1
    return problems[::every][: cap or None]


def score_stream(rollout_pool, verifier_pool, problems: list[Problem], n: int,
                 graders: dict[str, list[str]] | None = None, overrides: dict | None = None,
                 instruction: str | None = None, threads: int = 4) -> Iterator[Scored]:
    """Yields each problem, scored, as soon as its samples are generated and verified. `graders[kind]` lists
    the graders to run on every sample (default: the training reward); the first is the primary one."""
    from actors.verifier.pool import requests_for

    graders = {**{k: [v] for k, v in TRAINING_REWARD.items()}, **(graders or {})}

    def score(p: Problem, rollouts: list) -> Scored:
        modes = graders[p.kind]
        reqs = [r for m in modes for r in requests_for({p.id: p}, rollouts, {p.kind: m})]
        res = verifier_pool.verify(reqs)
        k = len(rollouts)
        return Scored(p, [r.text for r in rollouts], [len(r.response_ids) for r in rollouts],
                      [r.finish_reason == "length" for r in rollouts],
                      {m: [x.reward for x in res[i * k:(i + 1) * k]] for i, m in enumerate(modes)},
                      {m: [x.reason for x in res[i * k:(i + 1) * k]] for i, m in enumerate(modes)})

    with ThreadPoolExecutor(threads) as pool:
        pending: set = set()
        for p, rollouts in rollout_pool.stream(problems, n, overrides, instruction):
            pending.add(pool.submit(score, p, rollouts))
            for f in [f for f in pending if f.done()]:
                pending.discard(f)
                yield f.result()
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                yield f.result()


def figures(scored: list[Scored], ks: list[int] = (), primary: dict[str, str] | None = None) -> dict[str, float]:
    """trainer/metrics.summarize over scored problems, each scored by `primary[its kind]` (default: the first
    grader that ran on it)."""
    return summarize([s.by(primary) for s in scored], ks,
                     answers=[[vote_answer(t) for t in s.texts] for s in scored],
                     truncated=[s.truncated for s in scored], tokens=[s.tokens for s in scored])


def evaluate(rollout_pool, verifier_pool, problems: list[Problem], k: int, overrides: dict | None = None,
             ks: tuple[int, ...] = ()) -> dict:
    """k samples per problem, scored by the training reward: `pass1` (mean of the k), unbiased `pass{j}` for j
    in (k, *ks), `cons{k}`, truncation, mean tokens; per subdomain `pass{j}/{sub}`; `per_problem`: {id: correct
    samples of the k}; `pass1_by_level` where the problems have levels."""
    scored = list(score_stream(rollout_pool, verifier_pool, problems, k, overrides=overrides))
    js = sorted({1, k, *ks})

    def keyed(group: list[Scored]) -> dict[str, float]:
        f = figures(group, js)
        return {**f, **{f"pass{j}": f[f"pass@{j}"] for j in js}}

    out = {key: v for key, v in keyed(scored).items() if "@" not in key}
    out["k"] = k
    # correct samples of k per problem: what a paired comparison of two evals of the same problems needs
    out["per_problem"] = {s.problem.id: int(sum(x > 0 for x in s.by())) for s in scored}
    levels = sorted({s.problem.level for s in scored if s.problem.level is not None})
    if levels:  # Pass@1 per difficulty level, where the problems have one
        out["pass1_by_level"] = {str(lv): keyed([s for s in scored if s.problem.level == lv])["pass1"] for lv in levels}
    for sub in sorted({p.subdomain for p in problems}):
        f = keyed([s for s in scored if s.problem.subdomain == sub])
        out.update({f"pass{j}/{sub}": f[f"pass{j}"] for j in js})
    return out
