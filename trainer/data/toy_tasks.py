"""Verifiable toy problems a tiny model can learn on CPU in minutes: the `classic` preset here, the `graded`
one (a continuum of difficulty, what `make demo` uses) in graded_tasks.py; `generate` makes either.

Four math subdomains (add, sub, mul, mod: the paper's algebra/geometry/calculus/statistics split in
miniature) with difficulty levels = digit counts, and a `code` subdomain whose answers are short Python
functions checked by running asserts. Every problem carries several distinct valid solution traces
(the "spectrum"), so Pass@K can exceed Pass@1 after SFT.

Records use the same schema as data/eval/: math `{id, problem, answer, source, subdomain, level}`,
code `{id, prompt, tests, test_imports, entry_point, reference_solution, source, subdomain, level}`,
plus `solutions` (the SFT traces, each a full assistant response).
"""

from __future__ import annotations

import json
import random
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from trainer.config import ToyTaskConfig

MATH_SUBDOMAINS = ("add", "sub", "mul", "mod")
SUBDOMAINS = (*MATH_SUBDOMAINS, "code")
SOURCE = "ssp-rl toy tasks (generated)"


def _think(steps: str, answer: str) -> str:
    return f"<think>{steps}</think>\n\\boxed{{{answer}}}"


def _operand(rng: random.Random, level: int) -> int:
    return rng.randint(10 ** (level - 1) if level > 1 else 0, 10**level - 1)


def _add(a: int, b: int) -> tuple[str, int, list[str]]:
    c = a + b
    tens, ones = b - b % 10, b % 10
    return f"What is {a} + {b}?", c, [
        _think(f"{a} + {b} = {c}", str(c)),
        _think(f"{b} + {a} = {c}", str(c)),
        _think(f"{a} + {tens} = {a + tens}, {a + tens} + {ones} = {c}", str(c)),
    ]


def _sub(a: int, b: int) -> tuple[str, int, list[str]]:
    a, b = max(a, b), min(a, b)
    c = a - b
    tens, ones = b - b % 10, b % 10
    return f"What is {a} - {b}?", c, [
        _think(f"{a} - {b} = {c}", str(c)),
        _think(f"{b} + {c} = {a}, so {a} - {b} = {c}", str(c)),
        _think(f"{a} - {tens} = {a - tens}, {a - tens} - {ones} = {c}", str(c)),
    ]


def _mul(a: int, b: int) -> tuple[str, int, list[str]]:
    c = a * b
    tens, ones = b - b % 10, b % 10
    return f"What is {a} * {b}?", c, [
        _think(f"{a} * {b} = {c}", str(c)),
        _think(f"{b} * {a} = {c}", str(c)),
        _think(f"{a} * {tens} = {a * tens}, {a} * {ones} = {a * ones}, {a * tens} + {a * ones} = {c}", str(c)),
    ]


def _mod(a: int, b: int) -> tuple[str, int, list[str]]:
    b = max(b, 2)
    q, r = divmod(a, b)
    return f"What is {a} mod {b}?", r, [
        _think(f"{a} mod {b} = {r}", str(r)),
        _think(f"{a} = {q} * {b} + {r}", str(r)),
        _think(f"{q} * {b} = {q * b}, {a} - {q * b} = {r}", str(r)),
    ]


_MATH: dict[str, Callable[[int, int], tuple[str, int, list[str]]]] = {
    "add": _add, "sub": _sub, "mul": _mul, "mod": _mod}

_CODE_OPS = [("+", "plus"), ("-", "minus"), ("*", "times")]


def _code(rng: random.Random, level: int) -> dict:
    k = _operand(rng, level)
    op, word = rng.choice(_CODE_OPS)
    expr = f"x {op} {k}"
    prompt = f"Write a Python function f(x) that returns x {word} {k}."
    fn = eval(f"lambda x: {expr}")  # noqa: S307 - our own generated expression
    xs = [rng.randint(-20, 20) for _ in range(3)]
    swapped = f"{k} {op} x" if op != "-" else f"-{k} + x"
    solutions = [
        f"def f(x):\n    return {expr}",
        f"def f(x):\n    return {swapped}",
        f"def f(x):\n    y = x\n    y = y {op} {k}\n    return y",
    ]
    return {
        "id": f"toy-code-L{level}-{'pmt'[[o for o, _ in _CODE_OPS].index(op)]}{k}",
        "prompt": prompt,
        "tests": [f"assert f({x}) == {fn(x)}" for x in xs],
        "test_imports": [],
        "entry_point": "f",
        "reference_solution": solutions[0],
        "solutions": [f"<think>{s.splitlines()[-1].strip()}</think>\n```python\n{s}\n```" for s in solutions],
        "source": SOURCE, "subdomain": "code", "level": level,
    }


def text_of(rec: dict) -> str:
    """The problem text a model sees (math `problem`, code `prompt`)."""
    return rec.get("problem") or rec["prompt"]


def identity(rec: dict) -> str:
    """A problem's identity: its text, case- and whitespace-normalised (ids derive from it)."""
    return " ".join(text_of(rec).lower().split())


def generate(config: ToyTaskConfig) -> list[dict]:
    """All problems for `config`, deterministic in the seed, one per distinct problem text (`identity`);
    ids are content-derived. A classic cell that cannot hold `per_cell` distinct problems is said so, once;
    a graded cell holds up to `per_cell` (its easiest levels hold fewer: there are only 81 sums of two digits)."""
    for sub in config.subdomains:
        if sub not in SUBDOMAINS:
            raise ValueError(f"toy_tasks.subdomains: unknown subdomain {sub!r}; known: {list(SUBDOMAINS)}")
    out: dict[str, dict] = {}
    if config.preset == "graded":
        from trainer.data import graded_tasks

        for sub in config.subdomains:
            for level in config.levels:
                rng, made, misses = random.Random(f"{config.seed}-{sub}-{level}"), 0, 0
                while made < config.per_cell and misses < 200:  # 200 duplicates in a row: the cell is full
                    rec = graded_tasks.problem(sub, level, rng)
                    if identity(rec) in out:
                        misses += 1
                        continue
                    out[identity(rec)], made, misses = rec, made + 1, 0
        return list(out.values())
    rng = random.Random(config.seed)
    short: list[str] = []
    for sub in config.subdomains:
        for level in config.levels:
            made, tries = 0, 0
            while made < config.per_cell and tries < config.per_cell * 50:
                tries += 1
                if sub == "code":
                    rec = _code(rng, level)
                else:
                    a, b = _operand(rng, level), _operand(rng, level)
                    problem, answer, sols = _MATH[sub](a, b)  # sub and mod may reorder or clamp a, b
                    operands = "-".join(re.findall(r"\d+", problem))
                    rec = {"id": f"toy-{sub}-L{level}-{operands}", "problem": problem, "answer": str(answer),
                           "solutions": list(dict.fromkeys(sols)), "source": SOURCE, "subdomain": sub, "level": level}
                if identity(rec) not in out:
                    out[identity(rec)] = rec
                    made += 1
            if made < config.per_cell:
                short.append(f"{sub}/L{level}: {made}")
    if short:
        warnings.warn(f"data.toy.per_cell={config.per_cell} is more than some cells hold; generated "
                      + ", ".join(short), stacklevel=2)
    recs = list(out.values())
    assert len({r["id"] for r in recs}) == len(recs), "toy task ids must be unique"
    return recs


def split(records: list[dict], eval_frac: float = 0.2, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Deterministic train/held-out split, stratified by subdomain, with no held-out text in train.

    Records are deduplicated by `identity` first. Then train drops every problem whose text, under the
    10-gram decontamination normaliser (which reads `7 + 3` and `7 * 3` alike), equals a held-out one's.
    """
    from trainer.data.decontam import normalise

    unique = list({identity(r): r for r in records}.values())
    rng = random.Random(seed)
    train, held = [], []
    for sub in SUBDOMAINS:
        group = sorted((r for r in unique if r["subdomain"] == sub), key=lambda r: r["id"])
        rng.shuffle(group)
        n = int(len(group) * eval_frac)
        held += group[:n]
        train += group[n:]
    held_texts = {tuple(normalise(text_of(r))) for r in held}
    return [r for r in train if tuple(normalise(text_of(r))) not in held_texts], held


def write_jsonl(records: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def corpus(records: list[dict]) -> Iterator[str]:
    """Text for tokenizer training: every prompt and every trace."""
    for r in records:
        yield r.get("problem") or r["prompt"]
        yield from r["solutions"]
