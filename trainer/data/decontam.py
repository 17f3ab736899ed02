"""`ssp decontaminate`: the paper's 10-gram rule.

Lower-case, turn punctuation (and LaTeX symbols) into spaces, split on whitespace; a train item that
shares any n-gram (n=10) with any eval item is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from trainer.data.problems import Problem

_PUNCT = re.compile(r"[^\w\s]|_")


def normalise(text: str) -> list[str]:
    return _PUNCT.sub(" ", text.lower()).split()


def ngrams(text: str, n: int = 10) -> set[tuple[str, ...]]:
    words = normalise(text)
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@dataclass
class DecontamReport:
    kept: list[Problem]
    dropped: list[tuple[Problem, str, str]] = field(default_factory=list)  # (problem, eval id, example)

    def counts(self) -> dict[str, int]:
        return {"kept": len(self.kept), "dropped": len(self.dropped)}


def decontaminate(train: list[Problem], evals: list[Problem], n: int = 10) -> DecontamReport:
    index: dict[tuple[str, ...], str] = {}
    for e in evals:
        for g in ngrams(e.prompt, n):
            index.setdefault(g, e.id)
    report = DecontamReport(kept=[])
    for p in train:
        hit = next((g for g in ngrams(p.prompt, n) if g in index), None)
        if hit is None:
            report.kept.append(p)
        else:
            report.dropped.append((p, index[hit], " ".join(hit)))
    return report
