"""Reward integrity for math (issue 27): the strict training reward gives nothing for a hedge.

Every class is a table of (response, gold, options, reward): the trick must score 0, the same wrong answer
without the trick scores 0 (negative control), and the legitimate form of the same thing scores 1 (positive
neighbour), so that the rule does not punish honest answers. Checked through `MathChecker`, the killable helper
process the verifier actors (and so `ssp verify` and `ssp rl`) run the reward in.
"""

from __future__ import annotations

import pytest

from actors.verifier.math_checker import MathChecker
from actors.verifier.protocols import grade_vibethinker

T = "<think>Let me work it out.</think>\n"
MC = {"A": "12", "B": "15", "C": "18", "D": "21"}

# class -> [(response, gold, options, expected reward)]
CLASSES: dict[str, list[tuple[str, str, dict, int]]] = {
    "where_read": [
        ("<think>I guess \\boxed{18} but let me check", "18", {}, 0),  # truncated: thinking never closed
        ("<think>the answer is 18</think \\boxed{18}", "18", {}, 0),  # malformed closing tag
        ("<think>so 18<\\think>\\boxed{18}", "18", {}, 0),
        ("<think>x</think>\\boxed{17}\n</think>\\boxed{18}", "18", {}, 0),  # a second </think> moves nothing
        ("\\boxed{18}", "18", {}, 0),  # the model must think: no </think>, no answer
        ("<think>\\boxed{18}</think>\\boxed{17}", "18", {}, 0),  # the box in the thinking is not the answer
        ("<think>I guess \\boxed{17} but let me check", "18", {}, 0),  # control
        (T + "\\boxed{18}", "18", {}, 1),  # positive
        ("\\boxed{18}", "18", {"think": "optional"}, 1),  # a model that does not think
        ("<think>\\boxed{18}", "18", {"think": "optional"}, 0),  # ... but an open think block is not an answer
    ],
    "several_candidates": [
        (T + "\\boxed{18 \\text{ or } 21}", "18", {}, 0),
        (T + "\\boxed{18, 21}", "18", {}, 0),
        (T + "\\boxed{18 \\lor 21}", "18", {}, 0),
        (T + "\\boxed{\\pm 18}", "18", {}, 0),
        (T + "\\boxed{18 \\quad 21}", "39", {}, 0),  # two numbers side by side (math-verify adds them)
        (T + "\\boxed{18; 21}", "18", {}, 0),
        (T + "\\boxed{\\{18, 21\\}}", "18", {}, 0),
        (T + "The answer is \\boxed{21}. Actually \\boxed{18}.", "18", {}, 0),  # boxes that disagree
        (T + "\\boxed{18} or \\fbox{21}", "18", {}, 0),
        (T + "\\boxed{18}, or possibly 21.", "18", {}, 0),  # an unboxed alternative in the final text
        (T + "It is \\boxed{18} if n is even; otherwise 21.", "18", {}, 0),
        (T + "The answer is not \\boxed{18}.", "18", {}, 0),  # a negation
        (T + "We need x or 18.\nAnswer: x or 18", "18", {"unboxed": True}, 0),
        (T + "There are 18 apples.", "18", {"unboxed": True}, 0),  # a number picked out of other text
        (T + "\\boxed{18 \\text{ (rounded)}}", "18", {}, 0),  # a qualified value
        (T + "\\boxed{18\\dots}", "18", {}, 0),
        (T + "\\boxed{18+}", "18", {}, 0),  # "18 or more"
        (T + "\\boxed{\\begin{cases} 18 \\\\ 21 \\end{cases}}", "18", {}, 0),
        (T + "\\boxed{18}\n\n$21$", "18", {}, 0),  # another value shown after the answer
        (T + "\\boxed{18}\n\n21", "18", {}, 0),
        (T + "\\boxed{18} <think>maybe 21", "18", {}, 0),  # thinking reopened after the answer
        (T + "\\boxed{17 \\text{ or } 21}", "18", {}, 0),  # control
        (T + "The answer is \\boxed{18}.", "18", {}, 1),  # positive
        (T + "**Final Answer**\n\\[\n\\boxed{18}\n\\]", "18", {}, 1),
        (T + "So $x = \\boxed{18}$.\nWe used 2 steps.", "18", {}, 1),
        (T + "So \\boxed{18}. Checking again: \\boxed{18}", "18", {}, 1),  # boxes that agree
        (T + "\\boxed{18, 21}", "\\{18, 21\\}", {}, 1),  # a set gold given as a set
        (T + "\\boxed{\\{21, 18\\}}", "\\{18, 21\\}", {}, 1),
        (T + "\\boxed{18, 22}", "\\{18, 21\\}", {}, 0),
        (T + "\\boxed{\\pm 3}", "\\pm 3", {}, 1),
        (T + "Final answer: 18", "18", {"unboxed": True}, 1),
    ],
    "relation": [
        (T + "\\boxed{15 + 3 = 18}", "18", {}, 0),
        (T + "\\boxed{17 = 18}", "18", {}, 0),  # a false relation
        (T + "\\boxed{x > 18}", "18", {}, 0),
        (T + "\\boxed{x \\geq 18}", "18", {}, 0),
        (T + "\\boxed{x \\approx 18}", "18", {}, 0),
        (T + "\\boxed{x = 17 = 18}", "18", {}, 0),
        (T + "\\boxed{f(x) = 18}", "18", {}, 0),
        (T + "\\boxed{x = 17}", "18", {}, 0),  # control
        (T + "\\boxed{x = 18}", "18", {}, 1),  # positive: one variable = the value
        (T + "\\boxed{n=18}", "18", {}, 1),
        (T + "\\boxed{y = 2x + 1}", "y = 2x + 1", {}, 1),  # the gold is a relation
        (T + "\\boxed{y = 1 + 2x}", "y = 2x + 1", {}, 1),
        (T + "\\boxed{y = 2x + 2}", "y = 2x + 1", {}, 0),
    ],
    "multiple_choice": [
        (T + "\\boxed{C}", "C", {}, 1),  # not multiple-choice: a plain symbol answer
        (T + "C. Clearly 18", "C", {"unboxed": True}, 0),  # an ordinary word read as a letter: no
        (T + "Clearly 18.\nAnswer: Clearly", "C", {"unboxed": True}, 0),
        (T + "\\boxed{B, C}", "C", {"choices": MC}, 0),  # several letters
        (T + "\\boxed{B \\text{ or } C}", "C", {"choices": MC}, 0),
        (T + "Not \\boxed{A}; it is \\boxed{C}", "C", {"choices": MC}, 0),  # an option named to reject it
        (T + "\\boxed{C. 21}", "C", {"choices": MC}, 0),  # C with D's text
        (T + "\\boxed{18}", "C", {"choices": MC}, 0),  # the option's value, not its letter
        (T + "\\boxed{B}", "C", {"choices": MC}, 0),  # control
        (T + "\\boxed{C}", "C", {"choices": MC}, 1),  # positive
        (T + "\\boxed{(C)}", "C", {"choices": MC}, 1),
        (T + "\\boxed{\\text{(C)}}", "(C)", {"choices": MC}, 1),
        (T + "\\boxed{C. 18}", "C", {"choices": MC}, 1),
    ],
    "approximation": [
        (T + "\\boxed{1.414}", "\\sqrt{2}", {}, 0),
        (T + "\\boxed{1.4142135623730951}", "\\sqrt{2}", {}, 0),
        (T + "\\boxed{0.3333333}", "\\frac{1}{3}", {}, 0),
        (T + "\\boxed{3.14159265}", "\\pi", {}, 0),
        (T + "\\boxed{18.0000001}", "18", {}, 0),  # near-equal to an exact integer
        (T + "\\boxed{17.9999999}", "18", {}, 0),
        (T + "\\boxed{\\frac{1}{3}}", "0.3", {}, 0),  # an exact answer is not a decimal gold it rounds to
        (T + "\\boxed{1.5}", "\\sqrt{2}", {}, 0),  # control
        (T + "\\boxed{\\sqrt{2}}", "\\sqrt{2}", {}, 1),  # positive
        (T + "\\boxed{\\frac{2}{\\sqrt{2}}}", "\\sqrt{2}", {}, 1),
        (T + "\\boxed{0.5}", "\\frac{1}{2}", {}, 1),  # a decimal that is exactly the fraction
        (T + "\\boxed{18.0}", "18", {}, 1),
        (T + "\\boxed{3.14}", "3.14", {}, 1),  # a decimal gold at its precision
        (T + "\\boxed{3.1416}", "3.14", {}, 1),
        (T + "\\boxed{3.1}", "3.14", {}, 0),
        (T + "\\boxed{3.15}", "3.14", {}, 0),
    ],
    "hidden_text": [
        (T + "<!-- \\boxed{18} -->\\boxed{17}", "18", {}, 0),
        (T + "<!-- \\boxed{18}", "18", {}, 0),
        (T + "\\boxed{17} % \\boxed{18}\n", "18", {}, 0),
        (T + "\\iffalse \\boxed{18} \\fi \\boxed{17}", "18", {}, 0),
        (T + "\\phantom{\\boxed{18}}", "18", {}, 0),
        (T + "<!-- \\boxed{18} -->", "18", {}, 0),  # only hidden: no answer
        (T + "[//]: # (\\boxed{18})\n\\boxed{17}", "18", {}, 0),  # a markdown comment
        (T + "<span style=\"display:none\">\\boxed{18}</span>\\boxed{17}", "18", {}, 0),  # a hidden element
        (T + "\\boxed{\\textcolor{white}{18}}", "18", {}, 0),  # white ink
        (T + "<!-- note --> \\boxed{17}", "18", {}, 0),  # control
        (T + "<!-- \\boxed{17} --> \\boxed{18}", "18", {}, 1),  # the visible box is the answer
        (T + "\\boxed{18}\n[//]: # (\\boxed{17})", "18", {}, 1),
        (T + "A 50% rise, so \\boxed{18}", "18", {}, 1),  # a percent sign is not a comment
    ],
    "infinity": [
        (T + "\\boxed{\\infty}", "\\infty", {}, 1),
        (T + "\\boxed{inf}", "\\infty", {}, 1),
        (T + "\\boxed{Infinity}", "\\infty", {}, 1),
        (T + "\\boxed{\\infty}", "inf", {}, 1),
        (T + "\\boxed{-\\infty}", "\\infty", {}, 0),
        (T + "\\boxed{\\infty}", "18", {}, 0),
        (T + "\\boxed{18}", "\\infty", {}, 0),
        (T + "\\boxed{(-\\infty, 3]}", "(-\\infty, 3]", {}, 1),
    ],
    "program_text": [  # responses ending in program text such as `or 0`, against the gold 0
        (T + "```python\ndef f(x):\n    return x or 0\n```", "0", {}, 0),
        (T + "return count or 0", "0", {"unboxed": True}, 0),
        (T + "The value is a or 0", "0", {"unboxed": True}, 0),
        (T + "\\boxed{0}", "0", {}, 1),
    ],
}
ALL = [(name, *case) for name, cases in CLASSES.items() for case in cases]


@pytest.fixture(scope="module")
def checker():
    c = MathChecker(timeout_s=10)
    yield c
    c.close()


def test_every_class_scores_its_trick_zero_and_its_honest_form_one(checker):
    wrong = []
    for name, response, gold, options, want in ALL:
        res = checker.check(response, gold, "strict", **options)
        assert not res.reason.startswith(("verifier_error", "timeout")), (response, res.reason)
        if res.reward != want:
            wrong.append((name, response, gold, options, want, res.reason))
    assert not wrong, wrong
    for name, cases in CLASSES.items():  # each class has its attacks, its control and its positive neighbour
        assert {c[3] for c in cases} == {0, 1}, name


def test_reasons_say_why(checker):
    assert checker.check("<think>so 18", "18").reason == "no_think_end"
    assert checker.check(T + "\\boxed{18, 21}", "18").reason == "hedged"
    assert checker.check(T + "\\boxed{x > 18}", "18").reason == "relation"
    assert checker.check("<think>a</think>b</think>\\boxed{18}", "18").reason == "think_malformed"
    assert checker.check(T + "\\boxed{17}", "18").reason == "wrong_answer"


# The eval protocol (VibeThinker's rule) follows the same no-hedge principle, and its own extractor.
VIBETHINKER = [
    ("\\boxed{B, C}", "C", 0), ("\\boxed{B \\text{ or } C}", "C", 0), ("\\boxed{17 = 18}", "18", 0),
    ("\\boxed{2+1=3}", "3", 0), ("\\boxed{18 \\text{ or } 21}", "18", 0), ("\\boxed{18 \\text{ if } n > 2}", "18", 0),
    ("\\boxed{21} no wait \\boxed{18}", "18", 0), ("<!-- \\boxed{18} --> \\boxed{17}", "18", 0),
    ("\\boxed {18}", "18", 0), ("$\\boxed 18$", "18", 0), ("\\fbox{18}", "18", 0),  # not boxes in this protocol
    ("\\boxed{17}", "18", 0),  # control
    ("\\boxed{18}", "18", 1), ("\\boxed{x = 18}", "18", 1), ("\\boxed{C}", "C", 1), ("\\boxed{18} and \\boxed{18}", "18", 1),
    ("\\boxed{-10/9}", "-\\frac{10}{9}", 1), ("\\boxed{(1.0,2.0)}", "(1,2)", 1), ("\\boxed{32,\\!349}", "32349", 1),
    ("\\boxed{\\begin{bmatrix}1 \\\\ 2\\end{bmatrix}}", "\\begin{pmatrix}1 \\\\ 2\\end{pmatrix}", 1),
    ("\\boxed{inf}", "\\infty", 1), ("\\boxed{Infinity}", "\\infty", 1), ("\\boxed{1e999}", "5", 0),  # no OverflowError
    ("\\boxed{-inf}", "\\infty", 0),
    ("\\boxed{\\frac{-10}{9}}", "-\\frac{10}{9}", 1), ("\\boxed{-\\frac{10}{9}}", "-10/9", 1), ("\\boxed{10/9}", "-10/9", 0),
]


@pytest.mark.parametrize("answer,gold,want", VIBETHINKER)
def test_vibethinker_protocol_no_hedge_and_its_extractor(answer, gold, want):
    assert grade_vibethinker("<think>x</think>" + answer, gold)[0] == want
