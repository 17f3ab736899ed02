"""Math rewards: extraction, math-verify equivalence, the eval sets' gold answers, and the hard timeout."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from actors.verifier.math_answer import last_boxed
from actors.verifier.math_checker import MathChecker, extract_math_answer
from actors.verifier.math_reward import grade_strict as grade_math

T = "<think>work</think>"  # the toy traces' shape: thinking closed, then the answer


def test_extraction():
    assert last_boxed(r"x \boxed{\frac{1}{2}} y") == r"\frac{1}{2}"
    assert last_boxed(r"\boxed{1} then \boxed{ {a}_{ {b} } }") == " {a}_{ {b} } "
    assert last_boxed(r"\boxed {7}") == "7" and last_boxed(r"$\boxed 7$") == "7" and last_boxed(r"\fbox{7}") == "7"
    assert last_boxed("no box") is None
    assert last_boxed(r"\boxed{unclosed") is None
    assert extract_math_answer(r"<think>\boxed{1}</think> so \boxed{2}") == "2"
    assert extract_math_answer(r"<think>\boxed{1}</think> no answer") is None
    assert grade_math(T + "nothing to see", "5") == (0.0, "format_miss", None)
    assert grade_math(T + "the answer is 5", "5")[:2] == (0.0, "format_miss")  # unboxed: only when configured
    assert grade_math(T + "The final answer is $5$.", "5", unboxed=True)[:2] == (1.0, "correct")
    assert grade_math(T + "I think 5.\nFinal answer: 5", "5", unboxed=True)[:2] == (1.0, "correct")
    assert grade_math(T + "Final answer: 5\nor 6", "5", unboxed=True)[:2] == (0.0, "format_miss")  # not the last line


# (response, gold, expected reward): the classes of issue 12, each with near misses that must stay 0.
CLASSES = [
    # several boxes make one answer when the gold is several values (a set, a list of pairs)
    (r"So \boxed{(2, 2)} and \boxed{(6, 2)}.", "(2, 2), (6, 2)", 1), (r"\boxed{(2, 2)}", "(2, 2), (6, 2)", 0),
    (r"\boxed{(2, 2)} and \boxed{(6, 3)}", "(2, 2), (6, 2)", 0),
    (r"\boxed{1}, \boxed{2}, \boxed{3}", r"\{1,2,3\}", 1), (r"\boxed{1}, \boxed{2}", r"\{1,2,3\}", 0),
    (r"\boxed{1}, \boxed{2}, \boxed{4}", r"\{1,2,3\}", 0),
    # ... but boxes that disagree on a single-valued gold are a hedge, whichever comes last
    (r"first \boxed{3}, finally \boxed{5}", "5", 0), (r"first \boxed{5}, finally \boxed{3}", "5", 0),
    (r"first \boxed{5}; check: \boxed{5}", "5", 1),
    # a list of acceptable golds
    (r"\boxed{1/2}", ["0.5", "1/2"], 1), (r"\boxed{0.5}", ["0.5", "1/2"], 1), (r"\boxed{0.6}", ["0.5", "1/2"], 0),
    (r"\boxed{x}", ["a", "b"], 0),
    # thousands separators, decimal comma
    (r"\boxed{1 000}", "1000", 1), (r"\boxed{1\,000}", "1000", 1), (r"\boxed{10,455}", "10455", 1),
    (r"\boxed{1 000 000}", "1000000", 1), (r"\boxed{1000,99}", "1000.99", 1), (r"\boxed{3,5}", "3.5", 1),
    (r"\boxed{1 001}", "1000", 0), (r"\boxed{10,456}", "10455", 0), (r"\boxed{1000,98}", "1000.99", 0),
    (r"\boxed{10,455}", "10.455", 0), (r"\boxed{(1, 2)}", "1.2", 0), (r"\boxed{1 000}", "1", 0),
]


def test_issue12_classes_and_near_misses(checkers):
    results = _check_all(checkers, [(T + r, g) for r, g, _ in CLASSES])
    wrong = [(r, g, want, res.reason) for (r, g, want), res in zip(CLASSES, results) if res.reward != want]
    assert not wrong, wrong
    assert all(not res.reason.startswith("verifier_error") for res in results)


PAIRS = [  # (response answer, gold, equivalent)
    ("025", "25", True), ("0025", "25", True), ("25", "025", True), ("204", "204", True), ("24", "204", False),
    ("0.5", r"\frac{1}{2}", True), (r"\dfrac{1}{2}", r"\frac{1}{2}", True), (r"\tfrac12", r"\frac{1}{2}", True),
    ("1/2", r"\frac{1}{2}", True), (r"\frac{2}{4}", r"\frac{1}{2}", True), ("0.25", r"\frac{1}{2}", False),
    (r"\frac{1}{3}", "0.3", False), ("0.75", r"\frac34", True), (r"\frac{3}{4}", "0.75", True),
    (r"2\sqrt{2}", r"\sqrt{8}", True), (r"\sqrt{2}", r"\sqrt{3}", False), (r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}", True),
    (r"50\%", "50", True), (r"50\%", r"50\%", True), ("0.5", r"50\%", True), (r"25\%", "25", True),
    (r"[1, 2)", r"[1,2)", True), (r"[1,2]", r"[1,2)", False), (r"(-\infty, 3]", r"(-\infty,3]", True),
    (r"(0, \infty)", r"(0,\infty)", True), (r"(0,1)", r"[0,1]", False),
    (r"\{1,2,3\}", r"\{3,2,1\}", True), (r"\{1,2\}", r"\{1,2,3\}", False),
    (r"(1, 2)", r"(1,2)", True), (r"(2,1)", r"(1,2)", False), (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})", True),
    (r"x^2 + 2x + 1", r"(x+1)^2", True), (r"x^2+1", r"(x+1)^2", False), (r"2x", r"x+x", True),
    (r"\pi", r"\pi", True), (r"2\pi", r"\pi", False), (r"\frac{\pi}{2}", r"\frac{\pi}{2}", True),
    ("-3", "-3", True), ("3", "-3", False), (r"-\frac{1}{2}", "-0.5", True), (r"\frac{-1}{2}", r"-\frac{1}{2}", True),
    ("1,000", "1000", True), ("1000", "1000", True), ("100", "1000", False), ("10^3", "1000", True),
    (r"\$18", "18", True), (r"18 \text{ dollars}", "18", True), (r"17", "18", False),
    (r"\frac{1}{2}\,", r"\frac{1}{2}", True), (r"\frac {1} {2}", r"\frac{1}{2}", True), (r"\ 12", "12", True),
    ("3.0", "3", True), ("3.14", r"\pi", False), ("999", "1000", False), ("7", "7.0", True),
    (r"x=5", "5", True), (r"x = 4", "5", False), (r"\text{(C)}", r"\text{(C)}", True), (r"\text{(B)}", r"\text{(C)}", False),
    (r"30^\circ", "30", True), (r"\sqrt{16}", "4", True), (r"\frac{10}{4}", r"\frac{5}{2}", True), ("2.5", r"\frac{5}{2}", True),
    ("2.4", r"\frac{5}{2}", False), ("-1", "1", False), ("0", "0", True), ("", "1", False),
]


@pytest.fixture(scope="module")
def checkers():
    cs = [MathChecker(timeout_s=10), MathChecker(timeout_s=10)]
    yield cs
    for c in cs:
        c.close()


def _check_all(checkers, items, **options):
    """Check (response, gold) pairs over two killable helpers; returns Results in order."""
    chunks = [items[0::2], items[1::2]]

    def run(k):
        return [checkers[k].check(r, g, **options) for r, g in chunks[k]]

    with ThreadPoolExecutor(2) as ex:
        a, b = ex.map(run, [0, 1])
    out = [None] * len(items)
    out[0::2], out[1::2] = a, b
    return out


def test_pairs_table(checkers):
    assert len(PAIRS) >= 60
    results = _check_all(checkers, [(f"{T}so \\boxed{{{a}}}", g) for a, g, _ in PAIRS])
    wrong = [(a, g, eq, r.reason) for (a, g, eq), r in zip(PAIRS, results) if (r.reward == 1.0) != eq]
    assert not wrong, wrong


def test_eval_answers_verify_against_themselves(checkers, shared_dir):
    items = []
    for f in sorted((shared_dir / "data/math/eval").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            items.append((rec["id"], rec["answer"]))
    assert len(items) > 1900
    results = _check_all(checkers, [(f"<think>work</think>Final: \\boxed{{{a}}}", a) for _, a in items])
    bad = [(i, a, r.reason) for (i, a), r in zip(items, results) if r.reward != 1.0]
    assert not bad, bad[:20]


def test_timeout_kills_helper_and_recovers():
    c = MathChecker(timeout_s=1.5)
    try:
        t0 = time.perf_counter()
        r = c.check(T + r"\boxed{9^{9^{9^{9}}}}", "1")
        assert (r.reward, r.reason) == (0.0, "timeout")
        assert time.perf_counter() - t0 < 6  # includes the helper's start
        assert c.restarts == 1
        assert c.check(T + r"\boxed{2}", "2").reason == "correct"
    finally:
        c.close()
