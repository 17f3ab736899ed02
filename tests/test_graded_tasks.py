"""The graded toy preset: right answers, traces that compute them, code that passes its tests, difficulty that
grows with the level, responses that fit the demo's 64 tokens, and a pool of tens of thousands."""

import re
import statistics

import pytest

from trainer.config import ToyTaskConfig
from trainer.data import toy_tasks

LEVELS = [1, 2, 3, 4, 5, 6]


@pytest.fixture(scope="module")
def recs():
    return toy_tasks.generate(ToyTaskConfig(preset="graded", levels=LEVELS, per_cell=150, seed=5))


def _py(expr: str) -> int:
    assert re.fullmatch(r"[\d +\-*/()mod]+", expr), expr
    return eval(expr.replace("mod", "%"))  # our own generated arithmetic


def test_every_cell_present_unique_ids_and_deterministic(recs):
    assert {(r["subdomain"], r["level"]) for r in recs} == {(s, lv) for s in toy_tasks.SUBDOMAINS for lv in LEVELS}
    assert len({r["id"] for r in recs}) == len(recs) == len({toy_tasks.identity(r) for r in recs})
    again = toy_tasks.generate(ToyTaskConfig(preset="graded", levels=LEVELS, per_cell=150, seed=5))
    other = toy_tasks.generate(ToyTaskConfig(preset="graded", levels=LEVELS, per_cell=150, seed=6))
    assert again == recs and {r["id"] for r in other} != {r["id"] for r in recs}


def test_gold_is_the_arithmetic_and_every_trace_step_is_right(recs):
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "mod": lambda a, b: a % b,
           "//": lambda a, b: a // b}
    for r in (r for r in recs if r["subdomain"] != "code"):
        expr = re.fullmatch(r"What is (.+)\?", r["problem"]).group(1)
        assert int(r["answer"]) == _py(expr) >= 0, r
        assert len(set(r["solutions"])) == len(r["solutions"]) <= 3
        assert len(r["solutions"]) >= 2 or r["solutions"][0].count(" = ") == 1  # one-step problems: one trace
        for sol in r["solutions"]:
            think, box = re.fullmatch(r"<think>(.*)</think>\n\\boxed\{(-?\d+)\}", sol).groups()
            assert box == r["answer"]
            for step in think.split(", "):
                lhs, rhs = step.rsplit(" = ", 1)
                m = re.fullmatch(r"(-?\d+) (\+|-|\*|mod|//) (-?\d+)", lhs)
                assert int(rhs) == (ops[m[2]](int(m[1]), int(m[3])) if m else _py(lhs)), (step, r)


def test_code_solutions_pass_their_tests_both_branches_tested_and_wrong_code_fails(recs):
    code = [r for r in recs if r["subdomain"] == "code"]
    templates = set()
    for r in code:
        templates.add(re.sub(r"-?\d+", "N", r["prompt"]))
        for sol in r["solutions"]:
            env: dict = {}
            exec(re.search(r"```python\n(.*?)```", sol, re.S).group(1) + "\n" + "\n".join(r["tests"]), env)
        for wrong in ("def f(x):\n    return x + 1000\n", "def f(x):\n    return x\n"):
            env = {}
            exec(wrong, env)
            assert any(not eval(t.removeprefix("assert "), env) for t in r["tests"]), (wrong, r)
        if "if x is more than" in r["prompt"]:
            t = int(re.search(r"more than (-?\d+)", r["prompt"]).group(1))
            xs = [int(x) for x in re.findall(r"assert f\((-?\d+)\)", "\n".join(r["tests"]))]
            assert min(xs) <= t < max(xs), r  # both branches
    kinds = {"then" in t and "if" not in t and "larger" not in t for t in templates}
    assert kinds == {True, False} and any("larger" in t for t in templates) and any(" if x" in t for t in templates)


def test_difficulty_grows_with_level(recs):
    """Mean digits in the problem (math) or prompt length (code) and answer digits (not
    mod's remainders) rise from level 1 to 6."""
    def size(r):
        return len(re.findall(r"\d", r["problem"])) if "problem" in r else len(r["prompt"])

    for sub in toy_tasks.SUBDOMAINS:
        sizes = [statistics.mean(size(r) for r in recs if r["subdomain"] == sub and r["level"] == lv) for lv in LEVELS]
        assert sizes[-1] > 1.8 * sizes[0] and sizes[3] > sizes[0], (sub, sizes)
        if sub in ("add", "sub", "mul"):  # a remainder stays small
            digits = [statistics.mean(len(r["answer"]) for r in recs if r["subdomain"] == sub and r["level"] == lv)
                      for lv in LEVELS]
            assert digits[-1] >= digits[0] + 1.5, (sub, digits)


def test_every_trace_fits_the_demos_response_budget(recs, tiny_model_dir):
    """tiny-cpu.yaml samples 64 tokens: every trace plus its end-of-text token must fit, or SFT teaches answers
    RL then scores 0 as truncated."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    longest = max(len(tok(s).input_ids) for r in recs for s in r["solutions"])
    assert 40 < longest + 1 <= 64, longest


def test_the_demo_pool_is_tens_of_thousands_and_the_split_is_clean():
    from ssp.config import load_config
    from ssp.tree import SSPConfig
    from tests.conftest import REPO
    from trainer.data.decontam import normalise

    toy = load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml").data.toy
    assert toy.preset == "graded"
    recs = toy_tasks.generate(toy)
    train, held = toy_tasks.split(recs, seed=toy.seed)
    assert len(recs) > 20_000 and len(train) > 15_000 and len(held) > 4_000
    held_texts = {tuple(normalise(toy_tasks.text_of(r))) for r in held}
    assert not [r["id"] for r in train if tuple(normalise(toy_tasks.text_of(r))) in held_texts]


def test_graded_levels_beyond_six_are_refused_at_load():
    from ssp.config import ConfigError, load_config
    from ssp.tree import SSPConfig

    with pytest.raises(ConfigError, match=r"data.toy.levels.*graded preset has levels 1-6, got \[7\]"):
        load_config(SSPConfig, None, ["data.toy.preset=graded", "data.toy.levels=[1,7]"])
